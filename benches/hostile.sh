#!/usr/bin/env bash
# What one hostile sender costs ringback (docs/reference/endpoints.md, "What one sender can and cannot do to others"):
# starts `ringback serve` (release build) on a fresh PostgreSQL database, outbox only, then
# sends, one kind after the other, and reports for each the server's peak RSS (VmHWM), its CPU
# time per request (utime + stime from /proc), the answers, and the rows written:
#
#   huge-array    ACS bodies of 100 000 empty events (300 KB) with 8 KiB of headers
#   max-invalid   ACS bodies of 5 000 invalid events (the most a delivery may hold, ~1 MB)
#   max-valid     ACS bodies of ~2 400 valid SMS events (1 MB): one transaction each
#   bogus-sw      Standard Webhooks, 1 MB body, 300 bogus `v1,` signatures
#   forged-aksk   Huawei pushes with a wrong X-AKSK and 12 KiB of headers
#
#   cargo build --release && bash benches/hostile.sh
#   HOSTILE_REQUESTS=200 HOSTILE_CONCURRENCY=16 bash benches/hostile.sh
#   HOSTILE_ONLY=max-valid,bogus-sw HOSTILE_CONCURRENCY=1 bash benches/hostile.sh
#
# It reports numbers; it asserts nothing. Needs PostgreSQL on 127.0.0.1:5432 and python3.
set -euo pipefail
BIN=${BIN:-target/release/ringback}
PG=${HOSTILE_PG:-postgres://postgres@127.0.0.1:5432}
PORT=${HOSTILE_PORT:-18090}
DB=ringback_hostile
dir=$(mktemp -d)
printf 'hostile-bench-secret-0123' > "$dir/secret"
cat > "$dir/hostile.toml" <<TOML
[http]
max_body_bytes = 1048576
[kafka]
brokers = ""
[log]
level = "warn"
[sources.huawei]
kind = "huawei-voicecall"
auth = "aksk"
app_key = "bench-app"
app_secret_file = "$dir/secret"
public_url = "http://127.0.0.1:$PORT/hooks/huawei"
[sources.acs]
kind = "azure-communication"
auth = "none"
[sources.sw]
kind = "standard-webhooks"
auth = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
TOML
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null
RINGBACK__DATABASE__URL="$PG/$DB" RINGBACK__HTTP__ADDR=127.0.0.1:$PORT \
  RINGBACK__SPOOL__PATH="$dir/spool.db" "$BIN" --config "$dir/hostile.toml" serve \
  > "$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
PID=$server PORT=$PORT PG="$PG/$DB" DIR="$dir" python3 - <<'PY'
import concurrent.futures, http.client, json, os, subprocess, time, uuid

pid, port, db = int(os.environ["PID"]), int(os.environ["PORT"]), os.environ["PG"]
requests = int(os.environ.get("HOSTILE_REQUESTS", "40"))
concurrency = int(os.environ.get("HOSTILE_CONCURRENCY", "8"))
tick = os.sysconf("SC_CLK_TCK")

def status_kb(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

def cpu_seconds():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def rows(table):
    out = subprocess.run(["psql", db, "-Atqc", f"SELECT count(*) FROM {table}"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)

def post(path, body, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, body=body, headers={"content-type": "application/json", **headers})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status

pad = {f"x-pad-{i}": "p" * 1000 for i in range(8)}
sms = lambda i: json.dumps({"specversion": "1.0", "id": f"sms-{uuid.uuid4()}", "source": "/acs", "type": "Microsoft.Communication.SMSReceived", "subject": "/phonenumber/15555555555", "time": "2026-11-24T00:27:47Z", "data": {"MessageId": f"m-{i}", "From": "15555555555", "To": "+14255550123", "Message": "hello", "ReceivedTimestamp": "2026-11-24T00:27:47Z"}})
def max_valid():
    parts, size = [], 2
    while True:
        e = sms(len(parts))
        if size + len(e) + 1 > 1_000_000:
            return "[" + ",".join(parts) + "]"
        parts.append(e); size += len(e) + 1
invalid = "[" + ",".join(json.dumps({"id": f"e{i}", "eventType": "Not.Communication", "x": "y" * 150}) for i in range(5000)) + "]"
sw_body = json.dumps({"type": "t", "blob": "b" * 1_000_000})[:1_000_000 - 2] + '"}'
def sw_headers():
    return {"webhook-id": f"msg_{uuid.uuid4().hex}", "webhook-timestamp": str(int(time.time())),
            "webhook-signature": " ".join(["v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="] * 300)}
def forged():
    return {"authorization": 'AKSK realm="SDP",profile="UsernameToken",type="Appkey"',
            "x-aksk": f'UsernameToken Username="bench-app", PasswordDigest="Zm9yZ2Vk", Nonce="{uuid.uuid4().hex}", Created="{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}"',
            **{f"x-pad-{i}": "p" * 1500 for i in range(8)}}
status = json.dumps({"eventType": "answer", "statusInfo": {"sessionId": "s", "timestamp": "2026-11-24 03:04:31"}})

kinds = [
    ("huge-array", "/hooks/acs", lambda: "[" + "{}," * 99_999 + "{}]", lambda: pad, requests),
    ("max-invalid", "/hooks/acs", lambda: invalid, lambda: pad, requests),
    ("max-valid", "/hooks/acs", max_valid, lambda: {}, requests),
    ("bogus-sw", "/hooks/sw", lambda: sw_body, sw_headers, requests),
    ("forged-aksk", "/hooks/huawei", lambda: status, forged, 2000),
]
only = os.environ.get("HOSTILE_ONLY", "").split(",")
print(f"baseline: RSS {status_kb('VmRSS') / 1024:.0f} MiB")
for name, path, body, headers, n in kinds:
    if only != [""] and name not in only:
        continue
    letters_before = rows("dead_letters")
    cpu_before, started = cpu_seconds(), time.time()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda _: post(path, body(), headers()), range(n)))
    cpu, wall = cpu_seconds() - cpu_before, time.time() - started
    counts = {s: answers.count(s) for s in sorted(set(answers))}
    print(f"{name}: {n} requests x {concurrency}, answers {counts}, peak RSS {status_kb('VmHWM') / 1024:.0f} MiB, "
          f"CPU {1000 * cpu / n:.1f} ms/request, {wall:.1f} s, dead_letters +{rows('dead_letters') - letters_before}")
print(f"rows: phone_number_events {rows('phone_number_events')}, dead_letters {rows('dead_letters')}")
PY
du -b "$dir/spool.db" 2>/dev/null | awk '{print "spool file: " $1 " bytes"}' || true
