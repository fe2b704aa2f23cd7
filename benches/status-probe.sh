#!/usr/bin/env bash
# A quick probe of the status path, for A/B runs and profiles that the full benchmark
# (`cargo bench --bench e2e`, several minutes) is too long for. It starts Tansu and
# `ringback serve` with the benchmark's configuration on a fresh PostgreSQL database, warms up,
# then runs `ringback simulate --traffic status` at 32 connections and at 128, 10 s each
# (PROBE_SECS), and prints each phase's events/s and p50/p99, and for the 32-connection phase
# how busy the machine's CPUs were (jiffies from /proc/stat: busy = user+nice+system).
#
# Its database starts empty, so it says nothing about plans and indexes on grown tables: forced
# generic plans looked 20 % faster here and cost PostgreSQL twice the CPU per status event in
# the benchmark, whose status phases run after 300 000 CDRs (docs/development/benchmarks.md). Use it to
# profile and to narrow a question down; claim figures from `cargo bench --bench e2e`.
#
#   BIN=target/release/ringback bash benches/status-probe.sh
#   SERVER_ENV="RINGBACK__BATCH__WORKERS=8 RINGBACK__DATABASE__MAX_CONNECTIONS=12" bash benches/status-probe.sh
#   PERF=1 bash benches/status-probe.sh   # perf record -a -g over the 32-connection phase
#   PROBE_SQL="DROP INDEX call_events_received_id_idx" bash benches/status-probe.sh
#   PROBE_DB_QUERY="?sslmode=disable" bash benches/status-probe.sh   # no TLS to PostgreSQL
#   PROBE_TRAFFIC=fee bash benches/status-probe.sh   # fee pushes of 50 CDRs instead
#   PROBE_AUTH=none bash benches/status-probe.sh   # no X-AKSK: no signature check, no nonce row
#
# The server publishes to Kafka as in production: the topics are made before it starts, and the
# last line gives the publisher's mode and backlog at the end (`live`, a backlog near 0: it kept
# up). For the 32-connection phase it also prints the server's and the broker's own CPU (jiffies
# of their processes); PostgreSQL's is about the busy jiffies less theirs and the load
# generator's.
#
# Needs PostgreSQL on 127.0.0.1:5432 and Tansu (RINGBACK_TANSU, or where .ci/run installs it).
set -euo pipefail
BIN=${BIN:-target/release/ringback}
SECS=${PROBE_SECS:-10}
TANSU=${RINGBACK_TANSU:-$HOME/.cache/ringback-tools/tansu-0.6.0/bin/tansu}
PG=${PROBE_PG:-postgres://postgres@127.0.0.1:5432}
HTTP_PORT=${PROBE_HTTP_PORT:-18080}
KAFKA_PORT=${PROBE_KAFKA_PORT:-19092}
DB=ringback_probe
dir=$(mktemp -d)
printf bench-secret-0123456 > "$dir/secret"
if [ "${PROBE_AUTH:-aksk}" = none ]; then
  auth='auth = "none"'
else
  auth="auth = \"aksk\"
app_key = \"bench-app\"
app_secret_file = \"$dir/secret\"
public_url = \"http://127.0.0.1:$HTTP_PORT/hooks/huawei\""
fi
cat > "$dir/probe.toml" <<TOML
[sources.huawei]
kind = "huawei-voicecall"
$auth
[kafka]
brokers = "127.0.0.1:$KAFKA_PORT"
topic_prefix = "probe"
[kafka.new_topics]
partitions = 3
replication_factor = 1
[database]
max_connections = 8
[log]
level = "warn"
TOML
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null
"$TANSU" broker --listener-url tcp://127.0.0.1:$KAFKA_PORT \
  --advertised-listener-url tcp://127.0.0.1:$KAFKA_PORT --storage-engine memory://tansu/ \
  > "$dir/tansu.log" 2>&1 &
tansu=$!
for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$KAFKA_PORT) 2> /dev/null && break; sleep 0.1; done
# Topics first, so the publisher goes live at once (without them it only fills the outbox).
"$BIN" --config "$dir/probe.toml" topics create > /dev/null
# shellcheck disable=SC2086 # SERVER_ENV is a list of NAME=VALUE words
env ${SERVER_ENV:-} RINGBACK__DATABASE__URL="$PG/$DB${PROBE_DB_QUERY:-}" \
  RINGBACK__HTTP__ADDR=127.0.0.1:$HTTP_PORT RINGBACK__SPOOL__PATH="$dir/spool.db" \
  "$BIN" --config "$dir/probe.toml" serve > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server $tansu 2>/dev/null; wait $server $tansu 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" > /dev/null && break; sleep 0.1; done
# A schema variant to measure (the server has migrated by now), e.g. an index dropped.
[ -n "${PROBE_SQL:-}" ] && psql "$PG/$DB" -qc "$PROBE_SQL"
simulate() { # connections seed seconds
  RINGBACK_SIMULATE_SECRET=bench-secret-0123456 "$BIN" simulate --target "http://127.0.0.1:$HTTP_PORT/hooks/huawei" \
    --traffic "${PROBE_TRAFFIC:-status}" --app-key bench-app --seed "$2" --connections "$1" --duration "${3}s"
}
simulate 8 1 3 > /dev/null # warm-up
if [ -n "${PERF:-}" ]; then
  perf record -F 999 -g -a -o "${PERF_OUT:-perf.data}" -- sleep "$SECS" > /dev/null 2>&1 &
  perf=$!
fi
read -r _ u n s idle _ < /proc/stat
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in jiffies
sv0=$(cpu $server) tz0=$(cpu $tansu)
echo "32 connections: $(simulate 32 2 "$SECS")"
read -r _ u2 n2 s2 idle2 _ < /proc/stat
echo "32 connections: server CPU jiffies $(($(cpu $server) - sv0)), broker $(($(cpu $tansu) - tz0))"
echo "32 connections: CPU jiffies busy $((u2 + n2 + s2 - u - n - s)), idle $((idle2 - idle))"
[ -n "${perf:-}" ] && wait "$perf"
echo "128 connections: $(simulate 128 3 "$SECS")"
sleep 1
echo "publisher at the end: $(curl -s "http://127.0.0.1:$HTTP_PORT/readyz" | grep -o '"publisher":{[^}]*}')"
