//! End-to-end benchmark: ringback (release build) against PostgreSQL and a Tansu broker, driven
//! by the simulator (`ringback simulate`, a process of its own); then the same against SQLite.
//! Fee rounds each end with the ceiling — PostgreSQL `COPY` of that round's rows into a table
//! of the same shape, on a quiet server — and the median round stands for the fee path. It
//! counts what was committed and what a consumer reads back from Kafka, splits the CPU between
//! ringback, PostgreSQL, Tansu and the load generator, and prints a table and one JSON line.
//!
//! Run: `cargo bench --bench e2e` (PostgreSQL on 127.0.0.1:5432 and Tansu installed, as
//! `.ci/run` leaves them). `RINGBACK_BENCH_SECS` sets each phase's length (default 10),
//! `RINGBACK_BENCH_ROUNDS` the number of fee rounds (default 5: this shared VM is noisy, and
//! the median of more rounds moves less). `RINGBACK_BENCH_SERVER_BIN=PATH` runs another server
//! binary (an older build) against the same load, to compare two builds on one machine.
//! `RINGBACK_BENCH_SQL` runs SQL on the PostgreSQL database once the server has migrated it (a
//! schema variant, e.g. the rollup triggers disabled). `RINGBACK_BENCH_CONSOLE=1` turns on the
//! admin listener and, through both status phases, has an operator's console polled four times
//! a second (`=flood`: without pause): the overview page, a number's records
//! (`/admin/api/events?number=…`, the newest 500 of each kind) and a page of dead letters, in
//! turn (its cost on ingest: compare with a run without).
//!
//! Last on PostgreSQL, the **realistic mix**: the three platform emulators at once at steady
//! rates, with their delivery rules on (`ringback emulate`, in this process): Huawei calls
//! (status and merged fee pushes in the platform's proportions, 1 % malformed, fee retries on
//! its hourly schedule, time-scaled), an Event Grid subscription (batches, 5 % redelivered, its
//! incoming calls answered with their Call Automation callbacks) and a Standard Webhooks sender
//! (5 % of acknowledgements lost and re-signed retries sent). The emulators' oracle judges the
//! phase: every acknowledged record stored once and read back from Kafka.

use std::collections::HashSet;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use ringback::simulate::Report;

use kafka::free_port;
use ringback::testkit::kafka;

const SECRET: &str = "bench-secret-0123456";
/// The realistic mix's Event Grid subscription secret (in its endpoint's query) and Standard
/// Webhooks signing secret.
const ACS_SECRET: &str = "bench-acs-secret-0123456789";
const SW_SECRET: &str = "whsec_YmVuY2gtc3RhbmRhcmQtd2ViaG9va3MtMDEyMzQ1";
const APP_KEY: &str = "bench-app";
const PARTITIONS: i32 = 3;

fn secs() -> u64 {
    std::env::var("RINGBACK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The topics a run publishes to: every record kind's.
async fn create_topics(bootstrap: &str, prefix: &str) {
    let topics = ringback::config::KafkaConfig {
        topic_prefix: prefix.to_owned(),
        ..Default::default()
    };
    let names: Vec<String> = ringback::domain::RecordKind::ALL
        .iter()
        .map(|k| topics.topic(k.as_str()))
        .collect();
    kafka::create_topics(bootstrap, &names, PARTITIONS).await;
}

/// What a consumer read from a topic.
struct Read {
    messages: u64,
    /// Distinct `ce_id` headers.
    ids: HashSet<String>,
    /// Sum of the partitions' high watermarks as the broker reports them.
    high_watermarks: i64,
}

/// Reads `topic` from the beginning of every partition (no consumer group) until every id
/// of `want` arrived or nothing arrived for 10 s. Not up to the high watermarks: Tansu 0.6.0
/// reports them below the end of its log, so a reader that stops there misses messages.
fn read_topic(bootstrap: &str, topic: &str, want: &HashSet<String>) -> Read {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "ringback-bench")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    let mut high_watermarks = 0;
    for p in 0..PARTITIONS {
        let (_, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        high_watermarks += hi;
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut read = Read {
        messages: 0,
        ids: HashSet::new(),
        high_watermarks,
    };
    let mut missing = want.len();
    let mut idle = Instant::now();
    while missing > 0 && idle.elapsed() < Duration::from_secs(10) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("consume");
        idle = Instant::now();
        read.messages += 1;
        if let Some(id) = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "ce_id"))
            .and_then(|h| h.value)
        {
            let id = String::from_utf8_lossy(id).into_owned();
            if want.contains(&id) && !read.ids.contains(&id) {
                missing -= 1;
            }
            read.ids.insert(id);
        }
    }
    read
}

/// Ids of the rows of `table`.
async fn ids_in(pool: &PgPool, table: &str) -> HashSet<String> {
    sqlx::query_scalar::<_, String>(&format!("SELECT CAST(id AS TEXT) FROM {table}"))
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// CPU seconds (user + system) of one process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every PostgreSQL process (server and backends) so far; backends that ended
/// take theirs with them, which the benchmark avoids by keeping its pools open.
fn postgres_cpu_seconds() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// A histogram of ringback's `/metrics`, as cumulative buckets `(le, count)`, `+Inf` last: the
/// series of `metric` whose labels include every one of `labels` (e.g. `source="huawei"`).
async fn buckets(server: &Server, metric: &str, labels: &[&str]) -> Vec<(String, f64)> {
    let text = scrape(server).await;
    let prefix = format!("{metric}_bucket{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|l| {
            let (series, count) = l.split_once('}')?;
            let le = series.split(',').find_map(|p| p.strip_prefix("le=\""))?;
            labels
                .iter()
                .all(|want| series.split(',').any(|p| p == *want))
                .then(|| {
                    Some((
                        le.trim_end_matches('"').to_owned(),
                        count.trim().parse().ok()?,
                    ))
                })?
        })
        .collect()
}

/// The server's `/metrics`.
async fn scrape(server: &Server) -> String {
    // With the admin listener on (RINGBACK_BENCH_CONSOLE), /metrics is there only.
    reqwest::get(format!(
        "{}/metrics",
        server.admin.as_deref().unwrap_or(&server.base)
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap()
}

/// A histogram's `_count` and `_sum` (all its series added).
async fn count_sum(server: &Server, metric: &str) -> (f64, f64) {
    let text = scrape(server).await;
    let total = |suffix: &str| -> f64 {
        let name = format!("{metric}{suffix}");
        text.lines()
            .filter(|l| l.starts_with(&name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (total("_count"), total("_sum"))
}

/// Commits in a phase: per second, and records per commit (from `ringback_batch_records`).
#[derive(serde::Serialize, Clone, Copy, Default)]
struct Commits {
    per_second: f64,
    records_per_commit: f64,
}

/// A status phase at `connections`, with its commits counted on the server.
async fn status_phase(server: &Server, connections: usize, seed: u64) -> (Report, Commits) {
    const BATCHES: &str = "ringback_batch_records";
    let (count0, sum0) = count_sum(server, BATCHES).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let poller = server
        .admin
        .clone()
        .map(|admin| tokio::spawn(poll_console(admin, stop.clone())));
    let report = load(server, "status", connections, None, seed).await;
    stop.cancel();
    if let Some(poller) = poller {
        let mut took = poller.await.expect("the console poller");
        took.sort_by(f64::total_cmp);
        let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
        eprintln!(
            "console polled {} times during the phase: p50 {:.1} ms, p99 {:.1} ms",
            took.len(),
            at(0.5),
            at(0.99)
        );
    }
    let (count1, sum1) = count_sum(server, BATCHES).await;
    let commits = count1 - count0;
    let stats = Commits {
        per_second: commits / report.seconds,
        records_per_commit: if commits > 0.0 {
            (sum1 - sum0) / commits
        } else {
            0.0
        },
    };
    eprintln!(
        "status at {connections} connections: {} — {:.0} commits/s, {:.1} records per commit",
        report.render(),
        stats.per_second,
        stats.records_per_commit
    );
    (report, stats)
}

/// What a histogram counted between two readings: `(total, over(le))`.
fn counted_since(
    after: Vec<(String, f64)>,
    before: Vec<(String, f64)>,
) -> (f64, impl Fn(&str) -> f64) {
    let diff: Vec<(String, f64)> = after
        .into_iter()
        .zip(before)
        .map(|((le, after), (_, before))| (le, after - before))
        .collect();
    let total = diff.last().map(|(_, n)| *n).unwrap_or(0.0);
    let over = move |le: &str| {
        total
            - diff
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, n)| *n)
                .unwrap_or(0.0)
    };
    (total, over)
}

/// What PostgreSQL did besides serving ringback (cumulative counters; a phase's share is a
/// difference): latency outliers line up with these.
#[derive(Default, Clone, Copy, serde::Serialize)]
struct DbActivity {
    checkpoints: i64,
    checkpoint_buffers: i64,
    autovacuums: i64,
}

impl DbActivity {
    async fn now(pool: &PgPool) -> Self {
        let (checkpoints, checkpoint_buffers): (i64, i64) = sqlx::query_as(
            "SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint FROM pg_stat_bgwriter",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        let autovacuums: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(autovacuum_count + autoanalyze_count), 0)::bigint \
             FROM pg_stat_user_tables",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        Self {
            checkpoints,
            checkpoint_buffers,
            autovacuums,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            checkpoints: self.checkpoints - before.checkpoints,
            checkpoint_buffers: self.checkpoint_buffers - before.checkpoint_buffers,
            autovacuums: self.autovacuums - before.autovacuums,
        }
    }
}

/// Who used the CPUs during a phase.
#[derive(Default, Clone, Copy, serde::Serialize)]
struct CpuSplit {
    ringback: f64,
    postgres: f64,
    tansu: f64,
    load_generator: f64,
}

impl CpuSplit {
    fn now(server: u32, tansu: u32) -> Self {
        Self {
            ringback: cpu_seconds(server),
            postgres: postgres_cpu_seconds(),
            tansu: cpu_seconds(tansu),
            load_generator: 0.0,
        }
    }

    /// The CPU used since `before`, with the load generator's own figure from its report.
    fn since(self, before: Self, report: &Report) -> Self {
        self.since_with(before, report.cpu_seconds.unwrap_or(f64::NAN))
    }

    /// The CPU used since `before`, with the load generator's `load_generator` seconds.
    fn since_with(self, before: Self, load_generator: f64) -> Self {
        Self {
            ringback: self.ringback - before.ringback,
            postgres: self.postgres - before.postgres,
            tansu: self.tansu - before.tansu,
            load_generator,
        }
    }
}

struct Server {
    _child: Killed,
    pid: u32,
    base: String,
    /// The admin listener, with `RINGBACK_BENCH_CONSOLE=1`.
    admin: Option<String>,
}

const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

fn console_polled() -> bool {
    std::env::var_os("RINGBACK_BENCH_CONSOLE").is_some_and(|v| v == "1" || v == "flood")
}

/// The pause between two console polls.
fn console_pause() -> Duration {
    match std::env::var("RINGBACK_BENCH_CONSOLE").as_deref() {
        Ok("flood") => Duration::ZERO,
        _ => Duration::from_millis(250),
    }
}

/// An operator's console polled without pause until `stop`: the overview (signed in), a
/// number's records and a page of dead letters in turn. Returns the polls made and their
/// latencies in ms.
async fn poll_console(admin: String, stop: tokio_util::sync::CancellationToken) -> Vec<f64> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client
        .post(format!("{admin}/admin/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .expect("console login");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut took = Vec::new();
    let pages = [
        (format!("{admin}/admin/"), true),
        (
            format!("{admin}/admin/api/events?number=%2B8613800000022"),
            false,
        ),
        (format!("{admin}/admin/api/dead-letters?limit=100"), false),
    ];
    for (url, console) in pages.iter().cycle() {
        if stop.is_cancelled() {
            break;
        }
        let req = if *console {
            client.get(url).header("cookie", &cookie)
        } else {
            client.get(url).bearer_auth(ADMIN_TOKEN)
        };
        let start = Instant::now();
        let res = req.send().await.expect("a console answer");
        assert!(res.status().is_success(), "{url}: {}", res.status());
        res.bytes().await.unwrap();
        took.push(start.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(console_pause()).await;
    }
    took
}

// `Killed` waits for the child when dropped, which the lint cannot see.
#[allow(clippy::zombie_processes)]
async fn start_ringback(dir: &std::path::Path, db: &str, brokers: &str, prefix: &str) -> Server {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    std::fs::write(dir.join("acs-secret"), ACS_SECRET).unwrap();
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.huawei]\nkind = \"huawei-voicecall\"\nauth = \"aksk\"\napp_key = \"{APP_KEY}\"\n\
             app_secret_file = \"{}\"\npublic_url = \"{base}/hooks/huawei\"\n\
             [sources.acs]\nkind = \"azure-communication\"\nauth = \"shared-secret\"\n\
             secret_file = \"{}\"\nsecret_query = \"code\"\n\
             [sources.sw]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\n\
             secrets = [\"{SW_SECRET}\"]\ntype_pointer = \"/type\"\n\
             [database]\nmax_connections = 8\n[log]\nlevel = \"warn\"\n",
            dir.join("secret").display(),
            dir.join("acs-secret").display()
        ),
    )
    .unwrap();
    // Another server binary (an older build, to compare in the same run on the same machine):
    // this build applies the migrations, the other one runs on them without migrating.
    let other = std::env::var("RINGBACK_BENCH_SERVER_BIN").ok();
    if other.is_some() {
        let status = Command::new(env!("CARGO_BIN_EXE_ringback"))
            .args(["--config", config.to_str().unwrap(), "migrate"])
            .env("RINGBACK__DATABASE__URL", db)
            .stdout(Stdio::null())
            .status()
            .expect("migrating");
        assert!(status.success(), "migrations for the other server binary");
    }
    let admin_port = free_port();
    let mut command = Command::new(other.as_deref().unwrap_or(env!("CARGO_BIN_EXE_ringback")));
    if console_polled() {
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
        command
            .env(
                "RINGBACK__HTTP__ADMIN_ADDR",
                format!("127.0.0.1:{admin_port}"),
            )
            .env("RINGBACK__HTTP__ADMIN_TOKEN_FILE", dir.join("admin-token"));
    }
    let child = command
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env(
            "RINGBACK__DATABASE__MIGRATE_ON_START",
            if other.is_some() { "false" } else { "true" },
        )
        .env("RINGBACK__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("RINGBACK__DATABASE__URL", db)
        .env("RINGBACK__SPOOL__PATH", dir.join("spool.db"))
        .env("RINGBACK__KAFKA__BROKERS", brokers)
        .env("RINGBACK__KAFKA__TOPIC_PREFIX", prefix)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting ringback");
    let pid = child.id();
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return Server {
                _child: Killed(child),
                pid,
                base,
                admin: console_polled().then(|| format!("http://127.0.0.1:{admin_port}")),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ringback did not start");
}

/// Peak RSS (MiB) and CPU seconds of a process so far.
fn usage(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    (hwm_kb / 1024.0, cpu_seconds(pid))
}

/// One load phase: `ringback simulate` in a process of its own (as a user would run it, and
/// so that its CPU is counted apart), for `RINGBACK_BENCH_SECS`.
async fn load(
    server: &Server,
    traffic: &str,
    connections: usize,
    rate: Option<f64>,
    seed: u64,
) -> Report {
    let target = format!("{}/hooks/huawei", server.base);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringback"));
    command
        .args([
            "simulate",
            "--json",
            "--target",
            &target,
            "--traffic",
            traffic,
        ])
        .args(["--app-key", APP_KEY, "--seed", &seed.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--duration", &format!("{}s", secs())])
        .env("RINGBACK_SIMULATE_SECRET", SECRET)
        .env_remove("RINGBACK_CONFIG")
        .stderr(Stdio::inherit());
    if let Some(rate) = rate {
        command.args(["--rate", &format!("{rate:.2}")]);
    }
    let out = command.output().await.expect("running ringback simulate");
    assert!(out.status.success(), "ringback simulate failed");
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).expect("simulate --json prints one report")
}

/// Waits until the outbox is published (or 120 s), returns how long it took.
async fn drained(
    count_pending: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>>,
) -> f64 {
    let started = Instant::now();
    while count_pending().await > 0 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed().as_secs_f64()
}

/// The ceiling's table: the shape of `cdrs` (indexes and constraints included), holding the
/// rows `cdrs` holds now, so that both grow alike from here.
async fn create_ceiling_table(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE TABLE cdrs_ceiling (LIKE cdrs INCLUDING ALL); \
         INSERT INTO cdrs_ceiling SELECT * FROM cdrs",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The ceiling: PostgreSQL `COPY` of the CDR rows received since `since` (one round's) into
/// the ceiling table, in one session — rows per second PostgreSQL takes with no HTTP, no JSON,
/// no batching and no outbox.
async fn copy_ceiling(pool: &PgPool, since: chrono::DateTime<chrono::Utc>) -> (i64, f64) {
    let mut conn = pool.acquire().await.unwrap();
    let mut out = conn
        .copy_out_raw(&format!(
            "COPY (SELECT * FROM cdrs WHERE received_at >= '{}') TO STDOUT",
            since.to_rfc3339()
        ))
        .await
        .unwrap();
    let mut data = Vec::new();
    while let Some(chunk) = out.next().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    drop(out);
    let rows = data.iter().filter(|b| **b == b'\n').count() as i64;
    // Measured on a quiet server: the load's dirty pages written out and its autovacuum
    // runs finished, so that the ceiling is what PostgreSQL can take, not what is left.
    sqlx::query("CHECKPOINT").execute(&mut *conn).await.unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until
        && sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap()
            > 0
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY cdrs_ceiling FROM STDIN")
        .await
        .unwrap();
    copy.send(data).await.unwrap();
    copy.finish().await.unwrap();
    (rows, rows as f64 / started.elapsed().as_secs_f64())
}

/// One fee round: the load phase, then the ceiling of the same rows.
#[derive(serde::Serialize)]
struct Round {
    committed_per_second: f64,
    copy_ceiling_rows_per_second: f64,
    ratio: f64,
    #[serde(skip)]
    report: Report,
    #[serde(skip)]
    phase: Phase,
    #[serde(skip)]
    ids: HashSet<String>,
}

fn rounds() -> usize {
    std::env::var("RINGBACK_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1)
}

#[derive(Default, serde::Serialize)]
struct Phase {
    http_requests_per_second: f64,
    http_records_per_second: f64,
    committed_records: i64,
    committed_per_second: f64,
    on_kafka_records: i64,
    kafka_drain_seconds: f64,
    non_2xx: u64,
    cpu_seconds: CpuSplit,
    latency_ms: serde_json::Value,
}

fn phase(report: &Report, committed: i64, on_kafka: i64, drain: f64, cpu: CpuSplit) -> Phase {
    Phase {
        http_requests_per_second: report.requests_per_second,
        http_records_per_second: report.records_per_second,
        committed_records: committed,
        committed_per_second: committed as f64 / report.seconds,
        on_kafka_records: on_kafka,
        kafka_drain_seconds: drain,
        non_2xx: report.requests - report.ok(),
        cpu_seconds: cpu,
        latency_ms: serde_json::to_value(&report.latency_ms).unwrap(),
    }
}

/// What the realistic mix did (see the module's doc).
#[derive(serde::Serialize)]
struct Mix {
    /// From the first push to the last answer (the tail of calls and retries included).
    seconds: f64,
    pushes: usize,
    attempts: usize,
    retries: usize,
    acknowledged_records: usize,
    stored: usize,
    committed_per_second: f64,
    on_kafka: Option<usize>,
    resent_after_ack: usize,
    resent_answered_duplicate: usize,
    malformed: usize,
    malformed_dead_lettered: usize,
    lost: usize,
    clean: bool,
    cpu_seconds: CpuSplit,
    /// Per source, as ringback timed its requests: (requests, over 25 ms, over 50 ms).
    server_requests: std::collections::BTreeMap<String, (f64, f64, f64)>,
    huawei: ringback::emulate::huawei::Summary,
    event_grid: ringback::emulate::event_grid::Summary,
    standard_webhooks: ringback::emulate::standard_webhooks::Summary,
}

/// The realistic mix: the three emulators at once for `RINGBACK_BENCH_SECS`, then the oracle.
/// Rates: 100 Huawei calls a second (about 450 status pushes and 100 CDRs), 500 ACS events a
/// second in batches of up to 10 (a tenth incoming calls, each answered with about 7 Call
/// Automation callbacks), 100 Standard Webhooks messages a second.
async fn mix_phase(
    server: &Server,
    target: &ringback::config::Config,
    dir: &std::path::Path,
    tansu_pid: u32,
) -> Mix {
    use ringback::emulate::{event_grid, huawei, ledger, standard_webhooks, verify};
    const SOURCES: [&str; 3] = ["huawei", "acs", "sw"];
    const REQUESTS: &str = "ringback_http_request_duration_seconds";
    let duration = Duration::from_secs(secs());
    // Fee retries an hour apart come 6 s apart; Event Grid's and Svix's schedules shrink alike.
    let time_scale = 600.0;
    let ledgers =
        ["huawei", "event-grid", "standard-webhooks"].map(|n| dir.join(format!("mix-{n}.jsonl")));
    let hook = |source: &str| format!("{}/hooks/{source}", server.base);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut requests_before = Vec::new();
    for source in SOURCES {
        let label = format!("source=\"{source}\"");
        requests_before.push(buckets(server, REQUESTS, &[&label]).await);
    }
    let before = CpuSplit::now(server.pid, tansu_pid);
    let me = std::process::id();
    let generator_before = cpu_seconds(me);
    let started = Instant::now();
    let (hw, eg, sw) = tokio::join!(
        huawei::run(
            huawei::Options {
                status_url: hook("huawei"),
                fee_url: hook("huawei"),
                app_key: APP_KEY.into(),
                app_secret: SECRET.as_bytes().to_vec(),
                digest: ringback::auth::aksk::DigestVariant::Newline,
                beijing_created: false,
                calls_per_second: 100.0,
                duration,
                seed: 31,
                time_scale,
                listen: None,
                malformed: 0.01,
                ledger: ledgers[0].clone(),
            },
            stop.clone(),
        ),
        event_grid::run(
            event_grid::Options {
                endpoint: format!("{}?code={ACS_SECRET}", hook("acs")),
                schema: event_grid::Schema::EventGrid,
                header: None,
                jwt: None,
                subscription: "bench".into(),
                events_per_second: 500.0,
                duration,
                seed: 32,
                time_scale,
                max_events: 10,
                batch_bytes: 64 * 1024,
                redeliver: 0.05,
                dead_letter_dir: dir.join("mix-dead-letters"),
                call_automation: Some(format!("{}?code={ACS_SECRET}", hook("acs"))),
                ledger: ledgers[1].clone(),
            },
            stop.clone(),
        ),
        standard_webhooks::run(
            standard_webhooks::Options {
                endpoint: hook("sw"),
                secrets: vec![SW_SECRET.into()],
                messages_per_second: 100.0,
                duration,
                seed: 33,
                time_scale,
                lost_acks: 0.05,
                ledger: ledgers[2].clone(),
            },
            stop.clone(),
        ),
    );
    let seconds = started.elapsed().as_secs_f64();
    let cpu =
        CpuSplit::now(server.pid, tansu_pid).since_with(before, cpu_seconds(me) - generator_before);
    let mut server_requests = std::collections::BTreeMap::new();
    for (source, before) in SOURCES.into_iter().zip(requests_before) {
        let label = format!("source=\"{source}\"");
        let (total, over) = counted_since(buckets(server, REQUESTS, &[&label]).await, before);
        server_requests.insert(source.to_owned(), (total, over("0.025"), over("0.05")));
    }
    let mut attempts = Vec::new();
    for path in &ledgers {
        attempts.extend(ledger::read(path).expect("a ledger"));
    }
    let verdict = verify::verify(&attempts, target, Duration::from_secs(120))
        .await
        .expect("the oracle");
    eprintln!("realistic mix: {}", verdict.render());
    Mix {
        seconds,
        pushes: verdict.pushes,
        attempts: verdict.attempts,
        retries: verdict.retries,
        acknowledged_records: verdict.acknowledged_records,
        stored: verdict.stored,
        committed_per_second: verdict.stored as f64 / seconds,
        on_kafka: verdict.on_kafka,
        resent_after_ack: verdict.resent_after_ack,
        resent_answered_duplicate: verdict.resent_answered_duplicate,
        malformed: verdict.malformed,
        malformed_dead_lettered: verdict.malformed_dead_lettered,
        lost: verdict.lost_count,
        clean: verdict.clean,
        cpu_seconds: cpu,
        server_requests,
        huawei: hw.expect("the Huawei emulator"),
        event_grid: eg.expect("the Event Grid emulator"),
        standard_webhooks: sw.expect("the Standard Webhooks emulator"),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we use: only run on
    // an explicit bench invocation, so CI builds this without running it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("e2e benchmark: run with `cargo bench --bench e2e`");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    let admin_url = std::env::var("RINGBACK_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let tansu = kafka::Tansu::start();
    let bootstrap = tansu.bootstrap.clone();
    let dir = tempfile::tempdir().unwrap();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let db_name = format!("ringback_bench_{}", &run_id[..12]);
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&db_name);
    let pg_url = url.to_string();
    let machine = format!(
        "{} CPUs, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
    eprintln!(
        "ringback e2e benchmark: {machine}; {}s per phase; Tansu at {bootstrap}",
        secs()
    );

    // --- PostgreSQL
    let prefix = format!("pg{}", &run_id[..8]);
    create_topics(&bootstrap, &prefix).await;
    let server = start_ringback(dir.path(), &pg_url, &bootstrap, &prefix).await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg_url)
        .await
        .unwrap();
    let pending = || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap_or(0)
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>>
    };
    // A variant of the schema to measure, e.g. without the rollup triggers:
    // RINGBACK_BENCH_SQL='ALTER TABLE cdrs DISABLE TRIGGER cdrs_rollup_queue; …'.
    if let Ok(sql) = std::env::var("RINGBACK_BENCH_SQL") {
        sqlx::raw_sql(&sql)
            .execute(&pool)
            .await
            .expect("RINGBACK_BENCH_SQL");
        eprintln!("schema variant: {sql}");
    }
    let _ = load(&server, "fee", 4, None, 9).await; // warm-up (its rows are not counted)
    let warm_drain = drained(&pending).await;
    let warm_ids = ids_in(&pool, "cdrs").await;
    eprintln!(
        "warm-up: {} CDRs, drained in {warm_drain:.1}s",
        warm_ids.len()
    );

    let tansu_pid = tansu.pid();
    create_ceiling_table(&pool).await;
    let mut seen = warm_ids.clone();
    let mut fee_rounds = Vec::new();
    for round in 0..rounds() {
        let since = chrono::Utc::now();
        let before = CpuSplit::now(server.pid, tansu_pid);
        let report = load(&server, "fee", 32, None, 10 + round as u64).await;
        let cpu = CpuSplit::now(server.pid, tansu_pid).since(before, &report);
        eprintln!("round {}: {}", round + 1, report.render());
        let drain = drained(&pending).await;
        let ids: HashSet<String> = ids_in(&pool, "cdrs")
            .await
            .difference(&seen)
            .cloned()
            .collect();
        seen.extend(ids.iter().cloned());
        let (_, ceiling) = copy_ceiling(&pool, since).await;
        let phase = phase(&report, ids.len() as i64, 0, drain, cpu);
        eprintln!(
            "round {}: committed {:.0}/s, COPY ceiling {ceiling:.0} rows/s, ratio {:.2}",
            round + 1,
            phase.committed_per_second,
            phase.committed_per_second / ceiling
        );
        fee_rounds.push(Round {
            committed_per_second: phase.committed_per_second,
            copy_ceiling_rows_per_second: ceiling,
            ratio: phase.committed_per_second / ceiling,
            report,
            phase,
            ids,
        });
    }
    // The median round by ratio stands for the fee path.
    fee_rounds.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let median = fee_rounds.len() / 2;

    // Status pushes at 32 connections (the load one platform cluster sends), then at 128.
    let before = CpuSplit::now(server.pid, tansu_pid);
    let (status32, commits32) = status_phase(&server, 32, 6).await;
    let status32_cpu = CpuSplit::now(server.pid, tansu_pid).since(before, &status32);
    let status32_drain = drained(&pending).await;
    let status32_ids = ids_in(&pool, "call_events").await;
    let before = CpuSplit::now(server.pid, tansu_pid);
    let (status, commits128) = status_phase(&server, 128, 2).await;
    let status_cpu = CpuSplit::now(server.pid, tansu_pid).since(before, &status);
    let status_drain = drained(&pending).await;
    let status_ids = ids_in(&pool, "call_events").await;

    // What a consumer reads back: every committed id of the phase must be there.
    let cdr_topic = read_topic(&bootstrap, &format!("{prefix}.cdr"), &seen);
    let status_topic = read_topic(&bootstrap, &format!("{prefix}.call-status"), &status_ids);
    for round in &mut fee_rounds {
        round.phase.on_kafka_records = round.ids.intersection(&cdr_topic.ids).count() as i64;
    }
    let fee_committed: usize = fee_rounds.iter().map(|r| r.ids.len()).sum();
    let fee_kafka: usize = fee_rounds
        .iter()
        .map(|r| r.phase.on_kafka_records as usize)
        .sum();
    let status_kafka = status_ids.intersection(&status_topic.ids).count() as i64;
    let duplicates = (cdr_topic.messages - cdr_topic.ids.len() as u64)
        + (status_topic.messages - status_topic.ids.len() as u64);
    eprintln!(
        "read back: {} + {} messages ({duplicates} redeliveries); the broker's high watermarks say {} + {}",
        cdr_topic.messages,
        status_topic.messages,
        cdr_topic.high_watermarks,
        status_topic.high_watermarks
    );

    let fee = &fee_rounds[median].report;
    let half_rate = fee.requests_per_second / 2.0;
    let before = DbActivity::now(&pool).await;
    const COMMITS: &str = "ringback_store_commit_duration_seconds";
    const REQUESTS: &str = "ringback_http_request_duration_seconds";
    const HUAWEI: &[&str] = &["source=\"huawei\""];
    let commits_before = buckets(&server, COMMITS, &[]).await;
    let requests_before = buckets(&server, REQUESTS, HUAWEI).await;
    let half = load(&server, "fee", 32, Some(half_rate), 3).await;
    let half_db = DbActivity::now(&pool).await.since(before);
    let (total_commits, slow_commits) =
        counted_since(buckets(&server, COMMITS, &[]).await, commits_before);
    // The server's own view of the same requests: a tail the client sees but the server does
    // not is spent outside ringback (the generator, the loopback, scheduling).
    let (total_requests, slow_requests) =
        counted_since(buckets(&server, REQUESTS, HUAWEI).await, requests_before);
    eprintln!(
        "at half the maximum fee rate ({half_rate:.0} req/s): {}",
        half.render()
    );
    let (rss_mb, cpu_s) = usage(server.pid);

    let mut target = ringback::config::Config::default();
    target.database.url = pg_url.clone();
    target.kafka.brokers = bootstrap.as_str().into();
    target.kafka.topic_prefix = prefix.clone();
    let mix = mix_phase(&server, &target, dir.path(), tansu_pid).await;
    drop(server);
    drained(&pending).await;
    pool.close().await;

    // --- SQLite
    let sqlite_url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let prefix = format!("lite{}", &run_id[..8]);
    create_topics(&bootstrap, &prefix).await;
    let server = start_ringback(dir.path(), &sqlite_url, &bootstrap, &prefix).await;
    let lite_fee = load(&server, "fee", 32, None, 4).await;
    eprintln!("SQLite {}", lite_fee.render());
    let lite_status = load(&server, "status", 128, None, 5).await;
    eprintln!("SQLite {}", lite_status.render());
    let (lite_rss, lite_cpu) = usage(server.pid);
    drop(server);
    let lite = sqlx::SqlitePool::connect(&sqlite_url).await.unwrap();
    let lite_cdrs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cdrs")
        .fetch_one(&lite)
        .await
        .unwrap();
    let lite_events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM call_events")
        .fetch_one(&lite)
        .await
        .unwrap();
    lite.close().await;

    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .execute(&admin)
        .await;

    let fee_phase = &fee_rounds[median].phase;
    let ceiling = fee_rounds[median].copy_ceiling_rows_per_second;
    let status32_kafka = status32_ids.intersection(&status_topic.ids).count() as i64;
    let status32_phase = phase(
        &status32,
        status32_ids.len() as i64,
        status32_kafka,
        status32_drain,
        status32_cpu,
    );
    let status_phase = phase(
        &status,
        (status_ids.len() - status32_ids.len()) as i64,
        status_kafka - status32_kafka,
        status_drain,
        status_cpu,
    );
    let ratio = fee_phase.committed_per_second / ceiling;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nringback end-to-end ({machine}; {}s phases)", secs()).unwrap();
    writeln!(
        out,
        "{:<34} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "phase", "HTTP rec/s", "committed/s", "on Kafka", "p50 ms", "p99 ms", "max ms"
    )
    .unwrap();
    for (name, r, p) in [
        ("PostgreSQL fee (32 conns)", fee, fee_phase),
        ("PostgreSQL status (32 conns)", &status32, &status32_phase),
        ("PostgreSQL status (128 conns)", &status, &status_phase),
    ] {
        writeln!(
            out,
            "{name:<34} {:>12.0} {:>12.0} {:>12} {:>9.1} {:>9.1} {:>9.1}",
            r.records_per_second,
            p.committed_per_second,
            p.on_kafka_records,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max
        )
        .unwrap();
    }
    writeln!(
        out,
        "{:<34} {:>12.0} {:>12} {:>12} {:>9.1} {:>9.1} {:>9.1}",
        format!("PostgreSQL fee at {half_rate:.0} req/s"),
        half.records_per_second,
        "",
        "",
        half.latency_ms.p50,
        half.latency_ms.p99,
        half.latency_ms.max
    )
    .unwrap();
    writeln!(
        out,
        "{:<34} {:>12.0} {:>12.0} {:>12} {:>9.1} {:>9.1} {:>9.1}",
        "SQLite fee (32 conns)",
        lite_fee.records_per_second,
        lite_cdrs as f64 / lite_fee.seconds,
        "",
        lite_fee.latency_ms.p50,
        lite_fee.latency_ms.p99,
        lite_fee.latency_ms.max
    )
    .unwrap();
    writeln!(
        out,
        "{:<34} {:>12.0} {:>12.0} {:>12} {:>9.1} {:>9.1} {:>9.1}",
        "SQLite status (128 conns)",
        lite_status.records_per_second,
        lite_events as f64 / lite_status.seconds,
        "",
        lite_status.latency_ms.p50,
        lite_status.latency_ms.p99,
        lite_status.latency_ms.max
    )
    .unwrap();
    for (name, cpu) in [
        ("fee", fee_phase.cpu_seconds),
        ("status", status_phase.cpu_seconds),
    ] {
        writeln!(
            out,
            "CPU seconds in the PostgreSQL {name} phase: ringback {:.1}, PostgreSQL {:.1}, Tansu {:.1}, load generator {:.1}",
            cpu.ringback, cpu.postgres, cpu.tansu, cpu.load_generator
        )
        .unwrap();
    }
    writeln!(
        out,
        "During the half-rate phase PostgreSQL ran {} checkpoints ({} buffers written) and {} autovacuum/autoanalyze runs",
        half_db.checkpoints, half_db.checkpoint_buffers, half_db.autovacuums
    )
    .unwrap();
    writeln!(
        out,
        "Commits in the half-rate phase (ringback's commit histogram): {total_commits:.0}, of which {:.0} took over 25 ms and {:.0} over 50 ms",
        slow_commits("0.025"),
        slow_commits("0.05")
    )
    .unwrap();
    writeln!(
        out,
        "Requests in the half-rate phase as ringback timed them (first byte to answer): {total_requests:.0}, of which {:.0} took over 25 ms and {:.0} over 50 ms",
        slow_requests("0.025"),
        slow_requests("0.05")
    )
    .unwrap();
    writeln!(out, "Kafka read-back: every committed id found = {}; redeliveries (at-least-once duplicates) = {duplicates}", fee_kafka == fee_committed && status_kafka == status_ids.len() as i64).unwrap();
    for (name, c) in [
        ("status (32 conns)", commits32),
        ("status (128 conns)", commits128),
    ] {
        writeln!(
            out,
            "commits in {name}: {:.0}/s, {:.1} records per commit",
            c.per_second, c.records_per_commit
        )
        .unwrap();
    }
    for (i, r) in fee_rounds.iter().enumerate() {
        writeln!(
            out,
            "fee round (sorted by ratio) {}: committed {:.0}/s, COPY ceiling {:.0} rows/s, ratio {:.2}{}",
            i + 1,
            r.committed_per_second,
            r.copy_ceiling_rows_per_second,
            r.ratio,
            if i == median { " (median)" } else { "" }
        )
        .unwrap();
    }
    writeln!(out, "COPY ceiling: {ceiling:.0} rows/s (the median round's rows into cdrs' shape); fee committed/ceiling = {ratio:.2}").unwrap();
    writeln!(
        out,
        "Realistic mix ({:.1} s): {} pushes in {} attempts ({} retries), {} records acknowledged, {} stored ({:.0}/s), {} read back from Kafka; {} resends after a 2xx, {} answered as duplicates; {} malformed, {} kept as dead letters; {} lost by the platforms' rules; verdict {}",
        mix.seconds,
        mix.pushes,
        mix.attempts,
        mix.retries,
        mix.acknowledged_records,
        mix.stored,
        mix.committed_per_second,
        mix.on_kafka.map_or("-".to_owned(), |n| n.to_string()),
        mix.resent_after_ack,
        mix.resent_answered_duplicate,
        mix.malformed,
        mix.malformed_dead_lettered,
        mix.lost,
        if mix.clean { "CLEAN" } else { "NOT CLEAN" }
    )
    .unwrap();
    for (source, (total, over25, over50)) in &mix.server_requests {
        writeln!(out, "  mix requests to {source} as ringback timed them: {total:.0}, of which {over25:.0} over 25 ms and {over50:.0} over 50 ms").unwrap();
    }
    writeln!(
        out,
        "  CPU seconds in the mix: ringback {:.1}, PostgreSQL {:.1}, Tansu {:.1}, emulators {:.1}",
        mix.cpu_seconds.ringback,
        mix.cpu_seconds.postgres,
        mix.cpu_seconds.tansu,
        mix.cpu_seconds.load_generator
    )
    .unwrap();
    writeln!(out, "server (PostgreSQL run): peak RSS {rss_mb:.0} MiB, CPU {cpu_s:.1} s; (SQLite run): peak RSS {lite_rss:.0} MiB, CPU {lite_cpu:.1} s").unwrap();
    let line = json!({
        "machine": machine,
        "phase_seconds": secs(),
        "postgres": {
            "fee": fee_phase,
            "status": status_phase,
            "status_32": status32_phase,
            "status_commits": {"c32": commits32, "c128": commits128},
            "fee_half_rate": {"rate": half_rate, "latency_ms": half.latency_ms, "non_2xx": half.requests - half.ok(), "database": half_db, "commits": total_commits, "commits_over_25ms": slow_commits("0.025"), "commits_over_50ms": slow_commits("0.05"), "server_requests": total_requests, "server_requests_over_25ms": slow_requests("0.025"), "server_requests_over_50ms": slow_requests("0.05")},
            "server_peak_rss_mb": rss_mb,
            "server_cpu_seconds": cpu_s,
            "copy_ceiling_rows_per_second": ceiling,
            "fee_committed_over_ceiling": ratio,
            "fee_rounds": fee_rounds,
            "kafka_redeliveries": duplicates,
            "kafka_messages_read": cdr_topic.messages + status_topic.messages,
            "kafka_high_watermarks_sum": cdr_topic.high_watermarks + status_topic.high_watermarks,
            "realistic_mix": mix,
        },
        "sqlite": {
            "fee": {"http_records_per_second": lite_fee.records_per_second, "committed_per_second": lite_cdrs as f64 / lite_fee.seconds, "latency_ms": lite_fee.latency_ms},
            "status": {"http_records_per_second": lite_status.records_per_second, "committed_per_second": lite_events as f64 / lite_status.seconds, "latency_ms": lite_status.latency_ms},
            "server_peak_rss_mb": lite_rss,
            "server_cpu_seconds": lite_cpu,
        },
    });
    writeln!(out, "{line}").unwrap();
}
