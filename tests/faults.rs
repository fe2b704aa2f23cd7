//! Fault injection against the real parts: ringback as a process of its own, the machine's
//! PostgreSQL (stopped for real with `pg_ctlcluster … stop -m immediate`), a Tansu broker
//! (paused with SIGSTOP, killed and restarted), and load from `ringback simulate` at a fixed
//! rate, its latency counted from each request's scheduled send time.
//!
//! The oracle, for every scenario: every record answered 2xx (the simulator's `--acks` file) is
//! in PostgreSQL once, and on Kafka (distinct `ce_id`; redeliveries counted); each call's events
//! reach Kafka in the order they were sent (one connection, so the send order is the answer
//! order). Each scenario prints one line of figures.
//!
//! Short by default (part of `cargo test`, about two minutes in all); `RINGBACK_FAULTS=long`
//! runs the documented figures (60 s outages, 20 kills): `RINGBACK_FAULTS=long cargo test
//! --test faults -- --nocapture`. The scenarios run one at a time: they stop the database the
//! others would use, and cargo runs one test binary at a time.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;

use common::kafka::{create_topics, Consumed, Tansu};
use common::server::Ringback;
use common::{Backend, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_ringback");

/// One scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn long() -> bool {
    std::env::var("RINGBACK_FAULTS").is_ok_and(|v| v == "long")
}

/// `short` normally, `long` with `RINGBACK_FAULTS=long`.
fn pick<T>(short: T, long_: T) -> T {
    if long() {
        long_
    } else {
        short
    }
}

/// The machine's PostgreSQL cluster, stopped for real; started again on drop, so a failing
/// scenario leaves it running.
struct PgOutage {
    version: String,
}

impl PgOutage {
    fn begin() -> Self {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian PostgreSQL cluster")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .next()
            .expect("a PostgreSQL version");
        let status = Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                &version,
                "main",
                "stop",
                "-m",
                "immediate",
            ])
            .status()
            .expect("pg_ctlcluster");
        assert!(status.success(), "stopping PostgreSQL");
        Self { version }
    }

    fn end(self) {
        drop(self);
    }
}

impl Drop for PgOutage {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, "main", "start"])
            .status();
        for _ in 0..100 {
            if std::net::TcpStream::connect("127.0.0.1:5432").is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A `ringback simulate` run in the background: call flows of status pushes at `rate`/s over
/// one connection, for `secs`, writing what was answered 2xx to an acks file.
struct Load {
    child: Child,
    acks: PathBuf,
}

impl Load {
    fn start(target: &str, rate: u32, secs: u64, seed: u64, dir: &Path) -> Self {
        Self::start_on(target, rate, secs, seed, dir, 1)
    }

    /// Over `connections` connections: faster than one when each answer waits long, but the
    /// answers of one call's events may then come in another order than they were generated.
    fn start_on(
        target: &str,
        rate: u32,
        secs: u64,
        seed: u64,
        dir: &Path,
        connections: u32,
    ) -> Self {
        let acks = dir.join(format!("acks-{seed}.tsv"));
        let child = Command::new(BIN)
            .args([
                "simulate",
                "--json",
                "--traffic",
                "status",
                "--connections",
                &connections.to_string(),
            ])
            .args(["--target", target, "--rate", &rate.to_string()])
            .args([
                "--duration",
                &format!("{secs}s"),
                "--seed",
                &seed.to_string(),
            ])
            .args(["--acks", acks.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the simulator");
        Self { child, acks }
    }

    /// The simulator's report, and the records it got 2xx for.
    fn finish(self) -> (serde_json::Value, Vec<Acked>) {
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "the simulator failed");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
        let acked = std::fs::read_to_string(&self.acks)
            .unwrap()
            .lines()
            .map(|l| {
                let mut f = l.split('\t');
                Acked {
                    id: f.next().unwrap().to_owned(),
                    key: f.nth(1).unwrap().to_owned(),
                    event: f.next().unwrap().to_owned(),
                }
            })
            .collect();
        (report, acked)
    }
}

struct Acked {
    id: String,
    key: String,
    event: String,
}

/// What a scenario found.
struct Verdict {
    acked: usize,
    stored: usize,
    published: usize,
    redeliveries: usize,
    out_of_order: usize,
}

/// The ids of the call events `db` holds.
async fn stored_ids(db: &TestDb) -> BTreeSet<String> {
    db.rows("SELECT CAST(id AS TEXT) FROM call_events")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn verify(
    stored: BTreeSet<String>,
    bootstrap: &str,
    prefix: &str,
    acked: &[Acked],
) -> Verdict {
    let want: BTreeSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    let topic = format!("{prefix}.call-status");
    // Until every acknowledged id is read (a count would stop early: records committed but
    // not acknowledged, a kill having cut their answer, are on the topic too).
    let wanted: BTreeSet<String> = want.iter().map(|id| id.to_string()).collect();
    let messages: Vec<Consumed> =
        common::kafka::consume_until(bootstrap, &topic, Duration::from_secs(60), move |ids| {
            wanted.iter().all(|id| ids.contains(id))
        })
        .await;
    let mut seen = BTreeSet::new();
    let mut redeliveries = 0;
    // Each call's events as Kafka has them (first delivery of each id, in partition order).
    let mut by_call: HashMap<String, Vec<String>> = HashMap::new();
    let mut sorted = messages.clone();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    for m in &sorted {
        let id = m.headers["ce_id"].clone();
        if !seen.insert(id) {
            redeliveries += 1;
            continue;
        }
        by_call.entry(m.key.clone()).or_default().push(
            m.value["data"]["event_type"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    // Each call's events as they were answered (one connection: the order they were sent).
    let mut sent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in acked {
        sent.entry(a.key.as_str())
            .or_default()
            .push(a.event.as_str());
    }
    let mut out_of_order = 0;
    for (call, events) in &sent {
        let on_kafka: Vec<&str> = by_call
            .get(*call)
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|e| events.contains(e))
                    .collect()
            })
            .unwrap_or_default();
        if on_kafka != *events {
            out_of_order += 1;
            eprintln!("out of order: call {call}: sent {events:?}, on Kafka {on_kafka:?}");
        }
    }
    let missing: Vec<&&str> = want.iter().filter(|id| !seen.contains(**id)).collect();
    if !missing.is_empty() {
        eprintln!(
            "not on Kafka: {missing:?} ({} messages read)",
            messages.len()
        );
        for a in acked.iter().filter(|a| missing.contains(&&a.id.as_str())) {
            eprintln!("  {} {} {}", a.id, a.key, a.event);
        }
    }
    Verdict {
        acked: want.len(),
        stored: want.iter().filter(|id| stored.contains(**id)).count(),
        published: want.iter().filter(|id| seen.contains(**id)).count(),
        redeliveries,
        out_of_order,
    }
}

fn report_line(name: &str, report: &serde_json::Value, v: &Verdict, extra: &str) {
    let statuses = &report["statuses"];
    let non_2xx: u64 = statuses
        .as_object()
        .unwrap()
        .iter()
        .filter(|(s, _)| !s.starts_with('2'))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    eprintln!(
        "FAULTS {name}: requests {}, non-2xx {non_2xx} {statuses}, p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms; acked {}, stored {}, on Kafka {}, redeliveries {}, calls out of order {}{extra}",
        report["requests"],
        report["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        report["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
        report["latency_ms"]["max"].as_f64().unwrap_or(0.0),
        v.acked,
        v.stored,
        v.published,
        v.redeliveries,
        v.out_of_order,
    );
}

fn assert_nothing_lost(v: &Verdict) {
    assert!(v.acked > 0, "the load was answered");
    assert_eq!(v.stored, v.acked, "every acknowledged record is stored");
    assert_eq!(
        v.published, v.acked,
        "every acknowledged record is on Kafka"
    );
    assert_eq!(v.out_of_order, 0, "each call's events in the order sent");
}

/// A proxy in front of `db`'s PostgreSQL, and the database's URL through it.
async fn behind_proxy(db: &TestDb) -> (common::proxy::Proxy, String) {
    let proxy = common::proxy::Proxy::start(&common::pg_host_port(&db.url)).await;
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    (proxy, url.to_string())
}

/// A broker with this scenario's topics, and the prefix.
async fn broker() -> (Tansu, String) {
    let tansu = Tansu::start();
    let prefix = format!("f{}", uuid::Uuid::new_v4().simple());
    create_topics(
        &tansu.bootstrap,
        &[format!("{prefix}.call-status"), format!("{prefix}.cdr")],
        3,
    )
    .await;
    (tansu, prefix)
}

const RATE: u32 = 100;

/// What every scenario starts with: a database, a broker with the topics, ringback serving.
struct Setup {
    db: TestDb,
    tansu: Tansu,
    prefix: String,
    app: Ringback,
    work: tempfile::TempDir,
}

impl Setup {
    /// A scenario's parts put together, with a fresh work directory.
    fn of(db: TestDb, tansu: Tansu, prefix: String, app: Ringback) -> Self {
        Self {
            db,
            tansu,
            prefix,
            app,
            work: tempfile::tempdir().unwrap(),
        }
    }

    async fn new() -> Self {
        let db = TestDb::new(Backend::Postgres).await;
        let (tansu, prefix) = broker().await;
        let app = Ringback::start(&db.url, &tansu.bootstrap, &prefix).await;
        Self {
            db,
            tansu,
            prefix,
            app,
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// The emulators' oracle on their ledgers' `attempts`, against this scenario's database and
    /// broker.
    async fn oracle(
        &self,
        attempts: &[ringback::emulate::ledger::Attempt],
    ) -> ringback::emulate::verify::Verdict {
        let mut target = ringback::config::Config {
            database: self.db.database_config(),
            ..Default::default()
        };
        target.kafka.brokers = self.tansu.bootstrap.as_str().into();
        target.kafka.topic_prefix = self.prefix.clone();
        ringback::emulate::verify::verify(attempts, &target, Duration::from_secs(60))
            .await
            .unwrap()
    }

    /// The load: call flows at `RATE`/s for `secs`.
    fn load(&self, secs: u64, seed: u64) -> Load {
        Load::start(&self.app.target(), RATE, secs, seed, self.work.path())
    }

    /// Waits for the load to end and everything to settle, checks the oracle, prints the
    /// scenario's line (with `extra` and the time from `since` until settled); returns the
    /// load's report.
    async fn finish(
        self,
        name: &str,
        load: Load,
        since: Instant,
        extra: String,
    ) -> serde_json::Value {
        self.finish_with(name, load, since, extra, true).await
    }

    /// As [`finish`](Self::finish); `ordered`: whether each call's events were sent one after
    /// another (one connection), so their order on Kafka is checked too.
    async fn finish_with(
        self,
        name: &str,
        load: Load,
        since: Instant,
        extra: String,
        ordered: bool,
    ) -> serde_json::Value {
        let (report, acked) = tokio::task::spawn_blocking(move || load.finish())
            .await
            .unwrap();
        self.app.settle(Duration::from_secs(120)).await;
        let settled = since.elapsed();
        let stored = stored_ids(&self.db).await;
        let v = verify(stored, &self.tansu.bootstrap, &self.prefix, &acked).await;
        let restarts = self
            .app
            .metric("ringback_kafka_producer_restarts_total")
            .await
            .unwrap_or(0.0);
        let peaks = self.app.stop().await;
        report_line(
            name,
            &report,
            &v,
            &format!(
                "{extra}; settled {settled:.1?} after; producer restarts {restarts}; \
                 peak RSS {} MiB",
                peaks.iter().max().unwrap_or(&0) / 1024
            ),
        );
        if ordered {
            assert_nothing_lost(&v);
        } else {
            assert_nothing_lost(&Verdict {
                out_of_order: 0,
                ..v
            });
        }
        self.db.drop_db().await;
        report
    }
}

fn non_2xx(report: &serde_json::Value) -> u64 {
    report["statuses"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(s, _)| !s.starts_with('2'))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringback_killed_again_and_again_loses_nothing() {
    let _one = SERIAL.lock().await;
    let mut s = Setup::new().await;
    let kills = pick(4, 20);
    let gaps: Vec<u64> = (0..kills)
        .map(|i| pick(2 + i % 3, 5 + (i * 7) % 16))
        .collect();
    let load = s.load(gaps.iter().sum::<u64>() + 3, 1);
    for gap in gaps {
        tokio::time::sleep(Duration::from_secs(gap)).await;
        s.app.kill9();
        s.app.spawn().await;
    }
    s.finish(
        "ringback SIGKILLed",
        load,
        Instant::now(),
        format!("; {kills} kills"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_under_load_is_ridden_out_by_the_spool() {
    let _one = SERIAL.lock().await;
    let s = Setup::new().await;
    let outage = pick(6, 60);
    let load = s.load(outage + 8, 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = PgOutage::begin();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let spooled = s.app.metric("ringback_spool_records").await.unwrap_or(0.0);
    let ready = reqwest::get(format!("{}/readyz", s.app.base()))
        .await
        .unwrap()
        .status();
    down.end();
    let report = s
        .finish(
            &format!("PostgreSQL stopped {outage} s"),
            load,
            Instant::now(),
            format!(
                "; {spooled} records spooled at the end of the outage, /readyz {ready} during it"
            ),
        )
        .await;
    assert_eq!(ready, 200, "ready while spooling");
    assert!(spooled > 0.0, "the outage was spooled");
    assert_eq!(
        non_2xx(&report),
        0,
        "no push refused while the spool has room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_is_caught_up() {
    let _one = SERIAL.lock().await;
    let s = Setup::new().await;
    let pause = pick(8, 60);
    let load = s.load(pause + 6, 3);
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.tansu.signal("STOP");
    tokio::time::sleep(Duration::from_secs(pause)).await;
    s.tansu.signal("CONT");
    s.finish(
        &format!("broker paused {pause} s"),
        load,
        Instant::now(),
        String::new(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_empty_is_caught_up() {
    let _one = SERIAL.lock().await;
    let mut s = Setup::new().await;
    let port = s.tansu.port();
    let down = pick(6, 30);
    s.tansu.kill();
    let load = s.load(down + 5, 4);
    tokio::time::sleep(Duration::from_secs(down)).await;
    s.tansu = Tansu::start_on(port);
    create_topics(
        &s.tansu.bootstrap,
        &[
            format!("{}.call-status", s.prefix),
            format!("{}.cdr", s.prefix),
        ],
        3,
    )
    .await;
    s.finish(
        &format!("broker killed, restarted empty after {down} s"),
        load,
        Instant::now(),
        String::new(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_the_broker_down_together() {
    let _one = SERIAL.lock().await;
    let s = Setup::new().await;
    let outage = pick(6, 60);
    let load = s.load(outage + 8, 5);
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.tansu.signal("STOP");
    let down = PgOutage::begin();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    down.end();
    s.tansu.signal("CONT");
    s.finish(
        &format!("PostgreSQL and broker down {outage} s"),
        load,
        Instant::now(),
        String::new(),
    )
    .await;
}

/// SIGKILL while the spool holds batches (the database away), and again while the next
/// process drains them: the spool is on disk, so nothing acknowledged is lost, and each record
/// is stored once. (Pushes while a process is dead are refused by the transport, not
/// acknowledged.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringback_killed_while_spooling_and_mid_drain_loses_nothing() {
    let _one = SERIAL.lock().await;
    let mut s = Setup::new().await;
    let outage = pick(6, 30);
    let load = s.load(outage + 10, 6);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = PgOutage::begin();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let spooled = s.app.metric("ringback_spool_records").await.unwrap_or(0.0);
    s.app.kill9();
    down.end();
    s.app.spawn().await;
    // Mid-drain, if the drain is still going.
    let left = s.app.metric("ringback_spool_records").await.unwrap_or(0.0);
    s.app.kill9();
    s.app.spawn().await;
    let report = s
        .finish(
            "ringback SIGKILLed while spooling and mid-drain",
            load,
            Instant::now(),
            format!(
                "; {spooled} records spooled at the first kill, {left} still spooled at the second"
            ),
        )
        .await;
    assert!(
        spooled > 0.0,
        "the first kill hit a spool that held batches"
    );
    let _ = report;
}

/// A replica started while PostgreSQL is down (a pod rescheduled during the outage), on a
/// database it has never migrated: it serves from its spool (ready, `spooling`; the spool
/// `holding`), and once PostgreSQL is back it applies the migrations, then drains the spool in
/// order. On 89699be and before, the start itself failed ("connecting to the database") and
/// every push of the outage was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_the_database_is_down_serves_from_its_spool() {
    let _one = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let (tansu, prefix) = broker().await;
    let outage = pick(6, 60);
    let down = PgOutage::begin();
    let app = Ringback::start(&db.url, &tansu.bootstrap, &prefix).await;
    let s = Setup::of(db, tansu, prefix, app);
    let load = s.load(outage + 6, 7);
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let readyz = reqwest::get(format!("{}/readyz", s.app.base()))
        .await
        .unwrap();
    let ready = readyz.status();
    let body: serde_json::Value = readyz.json().await.unwrap();
    let spooled = s.app.metric("ringback_spool_records").await.unwrap_or(0.0);
    let back = Instant::now();
    down.end();
    let report = s
        .finish(
            &format!("replica started while PostgreSQL was down, {outage} s"),
            load,
            back,
            format!(
                "; {spooled} records spooled at the end of the outage, /readyz {ready} {} \
                 (spool {}) during it",
                body["status"], body["spool"]["mode"]
            ),
        )
        .await;
    assert_eq!(ready, 200, "ready while spooling: {body}");
    assert_eq!(body["status"], "spooling", "{body}");
    assert_eq!(body["spool"]["mode"], "holding", "{body}");
    assert!(spooled > 0.0, "the outage was spooled");
    assert_eq!(
        non_2xx(&report),
        0,
        "no push refused while the spool has room"
    );
}

/// PostgreSQL behind a network path that goes silent (no RST, no answer: a black hole) under
/// load, then comes back with the old connections still silent for good (a firewall or NAT that
/// forgot them). Pushes are spooled within `spool.fallback_after`; the hung connections are
/// noticed by ringback's own deadlines, not the kernel's TCP timeout (about 15 minutes), and
/// replaced, so the spool drains within seconds of the path's return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_database_is_noticed_in_seconds_and_its_connections_replaced() {
    let _one = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let (proxy, url) = behind_proxy(&db).await;
    let (tansu, prefix) = broker().await;
    let app = Ringback::start(&url, &tansu.bootstrap, &prefix).await;
    let s = Setup::of(db, tansu, prefix, app);
    let outage = pick(8, 30);
    let load = s.load(outage + 8, 8);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.blackhole();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let spooled = s.app.metric("ringback_spool_records").await.unwrap_or(0.0);
    let back = Instant::now();
    proxy.up();
    let report = s
        .finish(
            &format!("PostgreSQL black-holed {outage} s"),
            load,
            back,
            format!("; {spooled} records spooled at the end of the outage"),
        )
        .await;
    assert!(spooled > 0.0, "the outage was spooled");
    assert_eq!(
        non_2xx(&report),
        0,
        "no push refused while the spool has room"
    );
}

/// A real failover: ringback's database is a primary with a standby streaming from it
/// (`pg_basebackup`), both clusters of the test's own, behind a TCP proxy standing in for the
/// DNS name. Under load the replication path goes silent for `LAG` (a second proxy, black-holed:
/// the standby falls behind, as it does under a burst or a slow network), then the primary
/// crashes (`pg_ctl stop -m immediate`: commits in flight lose their answer), the standby is
/// promoted and the proxy moved to it. Returns the verdict against the new primary, and how
/// many acknowledged records it lacks.
async fn failover(synchronous: bool) -> (Verdict, usize) {
    use common::pg_cluster::Cluster;
    const LAG: Duration = Duration::from_secs(2);
    let primary = Cluster::primary();
    let replication = common::proxy::Proxy::start(&primary.addr()).await;
    let standby = Cluster::standby_of(&primary, Some(replication.port));
    if synchronous {
        primary.make_synchronous();
    }
    primary.psql("postgres", "CREATE DATABASE rb");
    primary.wait_caught_up(&standby);
    let proxy = common::proxy::Proxy::start(&primary.addr()).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/rb", proxy.port);
    let (tansu, prefix) = broker().await;
    let mut app = Ringback::start(&url, &tansu.bootstrap, &prefix).await;
    let work = tempfile::tempdir().unwrap();
    let secs = pick(10, 40);
    let load = Load::start(
        &app.target(),
        RATE,
        secs,
        if synchronous { 9 } else { 10 },
        work.path(),
    );
    tokio::time::sleep(Duration::from_secs(pick(3, 10))).await;
    // The primary dies; the address leads nowhere until the standby is promoted and the
    // address moved to it.
    replication.blackhole();
    tokio::time::sleep(LAG).await;
    let died = Instant::now();
    primary.crash();
    proxy.down();
    standby.promote();
    proxy.repoint(&standby.addr());
    proxy.up();
    let promoted_after = died.elapsed();
    let (report, acked) = tokio::task::spawn_blocking(move || load.finish())
        .await
        .unwrap();
    let back = Instant::now();
    app.settle(Duration::from_secs(120)).await;
    let settled = back.elapsed();
    let failovers = app
        .metric("ringback_store_failovers_total")
        .await
        .unwrap_or(0.0);
    let pool = sqlx::PgPool::connect(&standby.url("rb")).await.unwrap();
    let stored: BTreeSet<String> = sqlx::query_scalar("SELECT CAST(id AS TEXT) FROM call_events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    pool.close().await;
    let lost = acked.iter().filter(|a| !stored.contains(&a.id)).count();
    // What the new primary lacks is not on Kafka either unless it was published before the
    // crash: the oracle is checked for what it holds.
    let kept: Vec<Acked> = acked
        .into_iter()
        .filter(|a| stored.contains(&a.id))
        .collect();
    let v = verify(stored, &tansu.bootstrap, &prefix, &kept).await;
    app.terminate();
    report_line(
        &format!(
            "PostgreSQL failover ({} replication)",
            if synchronous {
                "synchronous"
            } else {
                "asynchronous"
            }
        ),
        &report,
        &v,
        &format!(
            "; replication silent {LAG:?} before the crash; acknowledged but not on the new \
             primary {lost}; promoted and moved {:.1?} after the crash; settled {settled:.1?} \
             after the load; failovers seen {failovers}",
            promoted_after
        ),
    );
    assert!(failovers >= 1.0, "the failover is seen (a new timeline)");
    (v, lost)
}

/// Synchronous replication (`synchronous_standby_names = '*'`, `synchronous_commit = on`): no
/// acknowledged record is lost in a failover; commits in flight at the crash are stored once or
/// were answered with an error, never acknowledged and missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_with_synchronous_replication_loses_no_acknowledged_record() {
    let _one = SERIAL.lock().await;
    let (v, lost) = failover(true).await;
    assert_eq!(lost, 0, "no acknowledged record lost");
    assert_nothing_lost(&v);
}

/// Asynchronous replication: what the crashed primary committed but had not yet streamed is
/// lost with it (the database's loss window, not ringback's: here the 2 s the standby was cut
/// off, about 200 pushes at 100/s), measured and printed. What the new primary holds is stored
/// once and published in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_with_asynchronous_replication_loses_at_most_the_replication_lag() {
    let _one = SERIAL.lock().await;
    let (v, lost) = failover(false).await;
    assert_nothing_lost(&v);
    assert!(
        lost > 0,
        "the standby was behind: asynchronous commits were lost with the primary"
    );
}

/// The broker behind a path that goes silent (no bytes, no RST) under load, then comes back
/// with the old connections silent for good. The publisher notices by the missing delivery
/// reports (`kafka.message_timeout`), keeps the entries in the outbox, replaces its producer,
/// and catches up once the path is back; pushes are never refused meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_broker_is_noticed_and_caught_up() {
    let _one = SERIAL.lock().await;
    let listen = common::kafka::free_port();
    let proxy = common::proxy::Proxy::start(&format!("127.0.0.1:{listen}")).await;
    let tansu = Tansu::start_advertising(listen, proxy.port);
    let prefix = format!("f{}", uuid::Uuid::new_v4().simple());
    create_topics(
        &tansu.bootstrap,
        &[format!("{prefix}.call-status"), format!("{prefix}.cdr")],
        3,
    )
    .await;
    let db = TestDb::new(Backend::Postgres).await;
    let app = Ringback::start(&db.url, &tansu.bootstrap, &prefix).await;
    let s = Setup::of(db, tansu, prefix, app);
    let outage = pick(8, 30);
    let load = s.load(outage + 8, 11);
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.blackhole();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let pending = s.app.metric("ringback_outbox_pending").await.unwrap_or(0.0);
    let back = Instant::now();
    proxy.up();
    let report = s
        .finish(
            &format!("broker black-holed {outage} s"),
            load,
            back,
            format!("; {pending} entries waiting in the outbox at the end of the outage"),
        )
        .await;
    assert!(
        pending > 0.0,
        "the publisher noticed: entries waited in the outbox"
    );
    assert_eq!(non_2xx(&report), 0, "pushes never depend on the broker");
}

/// Latency spikes on the database's path: every answer held 500 ms, for a few seconds at a
/// time. Commits slower than `spool.fallback_after` are spooled, the rest wait; no push is
/// refused, and the p99 is the spike's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_latency_spikes_cost_latency_not_errors() {
    let _one = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let (proxy, url) = behind_proxy(&db).await;
    let (tansu, prefix) = broker().await;
    let app = Ringback::start(&url, &tansu.bootstrap, &prefix).await;
    let s = Setup::of(db, tansu, prefix, app);
    let (spikes, spike) = (pick(2, 6), Duration::from_secs(pick(3, 5)));
    let load = s.load(2 + spikes * 2 * spike.as_secs() + 4, 12);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..spikes {
        proxy.latency(Duration::from_millis(500));
        tokio::time::sleep(spike).await;
        proxy.latency(Duration::ZERO);
        tokio::time::sleep(spike).await;
    }
    let report = s
        .finish(
            &format!("PostgreSQL answers delayed 500 ms, {spikes} spikes of {spike:?}"),
            load,
            Instant::now(),
            String::new(),
        )
        .await;
    assert_eq!(
        non_2xx(&report),
        0,
        "a slow database costs latency, not errors"
    );
}

/// A power cut under the spool: the spool on a filesystem that keeps unsynced writes in
/// memory and drops them when the power goes (`common::lazyfs`), PostgreSQL stopped so every
/// push is spooled; the power goes while an append is being fsync'd (what it was to sync is
/// lost, its push is not acknowledged) and ringback with it. The restarted process finds in the
/// spool everything it acknowledged (a 2xx only after the fsync), drains it once PostgreSQL is
/// back, and the oracle holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_under_the_spool_loses_nothing_acknowledged() {
    let _one = SERIAL.lock().await;
    let fs = common::lazyfs::LazyFs::mount();
    let spool = fs.mountpoint.join("spool.db");
    let db = TestDb::new(Backend::Postgres).await;
    let (tansu, prefix) = broker().await;
    let mut app = Ringback::start_spooled_at(&db.url, &tansu.bootstrap, &prefix, &spool).await;
    let outage = pick(6, 30);
    let work = tempfile::tempdir().unwrap();
    let load = Load::start(&app.target(), RATE, outage + 8, 13, work.path());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = PgOutage::begin();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let spooled = app.metric("ringback_spool_records").await.unwrap_or(0.0);
    let fsyncs = fs.fsyncs();
    // The power goes while an append is being fsync'd, and the process with it.
    fs.cut_power_during_fsync();
    for _ in 0..200 {
        if fs.is_dark() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        fs.is_dark(),
        "an fsync came while the spool took the outage"
    );
    app.kill9();
    let lost_bytes = fs.lost_bytes();
    fs.power_on();
    app.spawn().await;
    let back = Instant::now();
    down.end();
    let s = Setup {
        work,
        ..Setup::of(db, tansu, prefix, app)
    };
    let report = s
        .finish_with(
            &format!("power cut under the spool, PostgreSQL stopped {outage} s"),
            load,
            back,
            format!(
                "; {spooled} records spooled at the cut, {fsyncs} fsyncs, {lost_bytes} unsynced \
                 bytes lost"
            ),
            true,
        )
        .await;
    assert!(spooled > 0.0, "the outage was spooled");
    assert!(lost_bytes > 0, "the cut dropped unsynced writes");
    let _ = report;
}

/// The spool on a slow disk (each fsync 200 ms) while PostgreSQL is away: appends wait for
/// their fsync, so latency grows, but group commit keeps up with 100 pushes/s and nothing is
/// refused or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_under_the_spool_costs_latency_only() {
    let _one = SERIAL.lock().await;
    let fs = common::lazyfs::LazyFs::mount();
    fs.slow_fsync(Duration::from_millis(200));
    let spool = fs.mountpoint.join("spool.db");
    let db = TestDb::new(Backend::Postgres).await;
    let (tansu, prefix) = broker().await;
    let app = Ringback::start_spooled_at(&db.url, &tansu.bootstrap, &prefix, &spool).await;
    let s = Setup::of(db, tansu, prefix, app);
    let outage = pick(6, 30);
    // Many connections, as a platform delivers: one would wait out every fsync in turn.
    let load = Load::start_on(&s.app.target(), RATE, outage + 8, 14, s.work.path(), 64);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let down = PgOutage::begin();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let spooled = s.app.metric("ringback_spool_records").await.unwrap_or(0.0);
    down.end();
    let report = s
        .finish_with(
            &format!("spool fsync 200 ms, PostgreSQL stopped {outage} s, 64 connections"),
            load,
            Instant::now(),
            format!("; {spooled} records spooled, {} fsyncs", fs.fsyncs()),
            false,
        )
        .await;
    assert!(spooled > 0.0, "the outage was spooled");
    assert_eq!(non_2xx(&report), 0, "a slow disk costs latency, not errors");
}

/// The Huawei platform emulated (`ringback emulate huawei`, in process): its calls, status
/// pushes sent once and never retried, CDRs merged and retried an hour apart (time-scaled), 2 %
/// of the status pushes malformed; PostgreSQL stopped for real in the middle. ringback answers
/// from its spool, so the platform loses nothing it would not retry; the emulator's oracle then
/// checks the ledger against the database and Kafka: every acknowledged record stored once and
/// read back, every malformed push a dead letter, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulated_huawei_platform_through_a_database_outage_loses_nothing() {
    use ringback::emulate::{huawei, ledger};
    let _one = SERIAL.lock().await;
    let s = Setup::new().await;
    let outage = pick(5, 60);
    let ledger_path = s.work.path().join("ledger.jsonl");
    let options = huawei::Options {
        status_url: s.app.target(),
        fee_url: s.app.target(),
        app_key: "emulated".into(),
        app_secret: b"emulated-secret-0123456789".to_vec(),
        digest: ringback::auth::aksk::DigestVariant::Newline,
        beijing_created: false,
        calls_per_second: 30.0,
        duration: Duration::from_secs(outage + 6),
        seed: 3,
        // Calls of up to two minutes last two seconds; a fee retry comes a minute later.
        time_scale: 60.0,
        listen: None,
        malformed: 0.02,
        ledger: ledger_path.clone(),
    };
    let run = tokio::spawn(huawei::run(
        options,
        tokio_util::sync::CancellationToken::new(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = PgOutage::begin();
    tokio::time::sleep(Duration::from_secs(outage)).await;
    let spooled = s.app.metric("ringback_spool_records").await.unwrap_or(0.0);
    down.end();
    let summary = run.await.unwrap().unwrap();
    s.app.settle(Duration::from_secs(120)).await;
    let attempts = ledger::read(&ledger_path).unwrap();
    let verdict = s.oracle(&attempts).await;
    println!(
        "emulated Huawei, PostgreSQL stopped {outage} s: {} calls, {} status pushes, {} fee \
         pushes in {} attempts, {spooled} records spooled at the end of the outage; {}",
        summary.calls,
        summary.status_pushes,
        summary.fee_pushes,
        summary.fee_attempts,
        verdict.render().replace('\n', "; ")
    );
    s.app.stop().await;
    assert!(spooled > 0.0, "the outage was spooled");
    assert!(verdict.clean, "{}", verdict.render());
    assert!(verdict.malformed > 0 && verdict.acknowledged_records > 1000);
    s.db.drop_db().await;
}

/// Senders that retry, emulated with their delivery rules on, through ringback SIGKILLed twice
/// (its port refusing connections until the next process is up): an Event Grid subscription
/// (handshake, batches, a twentieth redelivered) and a Standard Webhooks sender (each attempt
/// re-signed, a twentieth of its 2xx "lost" and resent), both time-scaled 60×. Attempts that
/// meet the dead process fail, and their retries land on the next one; the emulators' oracle
/// then finds every acknowledged record stored once and read back from Kafka, and every resend
/// answered as a duplicate. (Call Automation callbacks are not sent: they are never retried,
/// so those a dead process misses are lost by the platform's own rule.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulated_retrying_senders_through_ringback_killed_lose_nothing() {
    use ringback::emulate::{event_grid, ledger, standard_webhooks};
    const ACS_SECRET: &str = "faults-acs-secret-0123456789";
    const SW_SECRET: &str = "whsec_ZmF1bHRzLXN0YW5kYXJkLXdlYmhvb2tzLTAxMg==";
    let _one = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let (tansu, prefix) = broker().await;
    let kinds = [
        "phone-events",
        "call-events",
        "chat-events",
        "webhook-events",
    ];
    create_topics(&tansu.bootstrap, &kinds.map(|k| format!("{prefix}.{k}")), 3).await;
    let secrets = tempfile::tempdir().unwrap();
    let acs_secret = secrets.path().join("acs-secret");
    std::fs::write(&acs_secret, ACS_SECRET).unwrap();
    let config = format!(
        "[http]\nworkers = 1\n[log]\nlevel = \"warn,ringback=info\"\n\
         [sources.acs]\nkind = \"azure-communication\"\nauth = \"shared-secret\"\n\
         secret_file = \"{}\"\nsecret_query = \"code\"\n\
         [sources.sw]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\n\
         secrets = [\"{SW_SECRET}\"]\ntype_pointer = \"/type\"\n",
        acs_secret.display()
    );
    let app = Ringback::start_with(&db.url, &tansu.bootstrap, &prefix, &config, &[]).await;
    let mut s = Setup::of(db, tansu, prefix, app);
    let base = s.app.base();
    let duration = Duration::from_secs(pick(8, 60));
    let ledgers = [
        s.work.path().join("event-grid.jsonl"),
        s.work.path().join("standard-webhooks.jsonl"),
    ];
    let event_grid = tokio::spawn(event_grid::run(
        event_grid::Options {
            endpoint: format!("{base}/hooks/acs?code={ACS_SECRET}"),
            schema: event_grid::Schema::EventGrid,
            header: None,
            jwt: None,
            subscription: "faults".into(),
            events_per_second: 150.0,
            duration,
            seed: 41,
            // Retries after 0.17 s, 0.5 s, 1 s, 5 s…
            time_scale: 60.0,
            max_events: 10,
            batch_bytes: 64 * 1024,
            redeliver: 0.05,
            dead_letter_dir: s.work.path().join("dead-lettered"),
            call_automation: None,
            ledger: ledgers[0].clone(),
        },
        tokio_util::sync::CancellationToken::new(),
    ));
    let webhooks = tokio::spawn(standard_webhooks::run(
        standard_webhooks::Options {
            endpoint: format!("{base}/hooks/sw"),
            secrets: vec![SW_SECRET.into()],
            messages_per_second: 50.0,
            duration,
            seed: 42,
            // Retries after 0.08 s, 5 s, 30 s…
            time_scale: 60.0,
            lost_acks: 0.05,
            ledger: ledgers[1].clone(),
        },
        tokio_util::sync::CancellationToken::new(),
    ));
    for _ in 0..2 {
        tokio::time::sleep(duration / 3).await;
        s.app.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        s.app.spawn().await;
    }
    let eg = event_grid.await.unwrap().unwrap();
    let sw = webhooks.await.unwrap().unwrap();
    s.app.settle(Duration::from_secs(120)).await;
    let mut attempts = Vec::new();
    for path in &ledgers {
        attempts.extend(ledger::read(path).unwrap());
    }
    let verdict = s.oracle(&attempts).await;
    println!(
        "emulated Event Grid and Standard Webhooks, ringback killed twice: {} batches in {} \
         attempts, {} messages in {} attempts; {}",
        eg.batches,
        eg.attempts,
        sw.messages,
        sw.attempts,
        verdict.render().replace('\n', "; ")
    );
    s.app.stop().await;
    assert!(verdict.clean, "{}", verdict.render());
    // Attempts met the dead processes, and were retried.
    let failed_first = attempts
        .iter()
        .filter(|a| a.attempt == 1 && a.status.is_none())
        .count();
    assert!(failed_first > 0, "no attempt met a dead ringback");
    assert!(verdict.retries > verdict.resent_after_ack);
    assert_eq!(verdict.resent_answered_duplicate, verdict.resent_after_ack);
    assert_eq!(verdict.on_kafka, Some(verdict.acknowledged_records));
    assert_eq!(eg.dead_lettered + sw.failed, 0);
    s.db.drop_db().await;
}
