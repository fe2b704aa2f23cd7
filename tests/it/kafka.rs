//! Records reach Kafka: end to end against a real Kafka-protocol broker (Tansu), broker
//! outages (librdkafka's mock cluster), a crash between commit and delivery, and replay.

use crate::both_stores;
use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::Row;

use crate::common::kafka::{consume, create_topics, free_port, Consumed, Tansu};
use crate::common::{spawn_app_with, start_app, Backend, TestApp, TestDb};
use ringback::config::{Config, KafkaConfig};
use ringback::publish::kafka::EmbeddedBroker;
use ringback::simulate::sample;
use ringback::sources::huawei;
use ringback::sources::ParseContext;

const EVENTS: [&str; 4] = ["callout", "alerting", "answer", "disconnect"];

fn kafka_tweak(brokers: &str, prefix: &str) -> impl FnOnce(&mut Config) {
    let brokers = brokers.to_owned();
    let prefix = prefix.to_owned();
    move |c: &mut Config| {
        c.kafka.brokers = brokers.into();
        c.kafka.topic_prefix = prefix;
        c.kafka.message_timeout = Duration::from_secs(3);
        c.kafka.sweep_interval = Duration::from_millis(200);
        c.kafka.sweep_grace = Duration::from_millis(500);
        c.kafka.max_backoff = Duration::from_millis(500);
    }
}

/// A Tansu broker with this test's Huawei topics (3 partitions each), and their prefix.
async fn tansu_with_topics() -> (Tansu, String, KafkaConfig) {
    let tansu = Tansu::start();
    let prefix = prefix();
    let topics = KafkaConfig {
        topic_prefix: prefix.clone(),
        ..Default::default()
    };
    create_topics(
        &tansu.bootstrap,
        &[topics.topic("cdr"), topics.topic("call-status")],
        3,
    )
    .await;
    (tansu, prefix, topics)
}

/// An in-process mock cluster (for fault injection) with this test's topics, its address,
/// the topic prefix and the config naming the topics.
fn embedded_with_topics() -> (EmbeddedBroker, String, String, KafkaConfig) {
    let prefix = prefix();
    let config = KafkaConfig {
        topic_prefix: prefix.clone(),
        ..Default::default()
    };
    let broker = EmbeddedBroker::start(&config, 3).unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();
    (broker, bootstrap, prefix, config)
}

fn prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

async fn ids_of(db: &TestDb, table: &str) -> BTreeSet<String> {
    db.rows(&format!("SELECT CAST(id AS TEXT) FROM {table}"))
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

fn assert_cloudevents(m: &Consumed, ce_type: &str) {
    let h = &m.headers;
    assert_eq!(h["ce_specversion"], "1.0");
    assert_eq!(h["ce_id"], m.value["id"].as_str().unwrap());
    assert_eq!(h["ce_type"], ce_type);
    assert_eq!(h["ce_source"], "/ringback/sources/open");
    assert!(h["ce_time"].ends_with('Z'), "{:?}", h["ce_time"]);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(m.value["schema"], "ringback.record.v1");
    assert_eq!(m.key, m.value["data"]["session_id"].as_str().unwrap());
}

async fn post_fees(app: &TestApp, bodies: u64) {
    let end = Utc::now();
    for seed in 0..bodies {
        let body = sample::fee_body(seed, 50, end).to_string();
        let res = app.post_with("open", body, &[]).await;
        assert_eq!(res.status(), 200);
    }
}

/// Status flows of `calls` sessions, interleaved: every call's callout, then every alerting…
async fn post_status_flows(app: &TestApp, calls: u64) -> Vec<String> {
    let start = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let sessions: Vec<String> = (0..calls)
        .map(|n| sample::session_id(42, n, start))
        .collect();
    for (step, event) in EVENTS.iter().enumerate() {
        for session in &sessions {
            let at = start + chrono::Duration::seconds(step as i64 * 5);
            let body = sample::status_body(event, session, at).to_string();
            assert_eq!(app.post_with("open", body, &[]).await.status(), 200);
        }
    }
    sessions
}

async fn every_record_reaches_kafka_with_its_headers_in_call_order(backend: Backend) {
    let (tansu, prefix, topics) = tansu_with_topics().await;
    let app = spawn_app_with(backend, kafka_tweak(&tansu.bootstrap, &prefix), None).await;

    const BODIES: u64 = 4;
    post_fees(&app, BODIES).await;
    let sessions = post_status_flows(&app, 6).await;

    let cdrs = consume(
        &tansu.bootstrap,
        &topics.topic("cdr"),
        200,
        Duration::from_secs(60),
    )
    .await;
    let ids: BTreeSet<String> = cdrs.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(
        ids.len(),
        (BODIES * 50) as usize,
        "every record id, no loss"
    );
    assert_eq!(
        ids,
        ids_of(&app.db, "cdrs").await,
        "exactly the committed records"
    );
    for m in &cdrs {
        assert_cloudevents(m, "io.ringback.cdr.v1");
        assert_eq!(m.value["kind"], "cdr");
    }

    let events = consume(
        &tansu.bootstrap,
        &topics.topic("call-status"),
        24,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(events.len(), 24, "no failure, so no re-send");
    let mut by_session: HashMap<&str, Vec<&Consumed>> = HashMap::new();
    for m in &events {
        assert_cloudevents(m, "io.ringback.call-status.v1");
        by_session.entry(m.key.as_str()).or_default().push(m);
    }
    for session in &sessions {
        let mut msgs = by_session
            .remove(session.as_str())
            .expect("every call is on Kafka");
        let partitions: BTreeSet<i32> = msgs.iter().map(|m| m.partition).collect();
        assert_eq!(partitions.len(), 1, "one call, one partition");
        msgs.sort_by_key(|m| m.offset);
        let order: Vec<&str> = msgs
            .iter()
            .map(|m| m.value["data"]["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(order, EVENTS, "{session}: in call order");
    }
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;
    app.stop().await;
}

/// Outbox entries not yet published (delivery acknowledged and marked).
const UNPUBLISHED: &str = "SELECT COUNT(*) FROM outbox_records WHERE published_at IS NULL";

/// Waits until every outbox entry is published, read from the outbox itself (the
/// `ringback_outbox_pending` gauge is refreshed on a timer and may predate a commit).
async fn wait_until_published(db: &TestDb) {
    for _ in 0..300 {
        if db.scalar_i64(UNPUBLISHED).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db.scalar_i64(UNPUBLISHED).await, 0, "outbox published");
}

async fn wait_for_metric(app: &TestApp, name: &str, want: f64) {
    for _ in 0..300 {
        if app.metric(name).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never became {want}: {:?}", app.metric(name).await);
}

async fn a_broker_outage_is_buffered_in_the_outbox_and_drained(backend: Backend) {
    let (broker, bootstrap, prefix, config) = embedded_with_topics();
    // librdkafka keeps undelivered messages for the whole message timeout: with the default
    // 30 s, the backlog below must show while the publisher still waits on them.
    let tweak = kafka_tweak(&bootstrap, &prefix);
    let tweak = move |c: &mut Config| {
        tweak(c);
        c.kafka.message_timeout = KafkaConfig::default().message_timeout;
    };
    let app = spawn_app_with(backend, tweak, None).await;

    post_fees(&app, 1).await;
    assert_eq!(
        consume(
            &bootstrap,
            &config.topic("cdr"),
            50,
            Duration::from_secs(30)
        )
        .await
        .len(),
        50
    );

    broker.set_up(false);
    let end = Utc::now();
    for seed in 10..13 {
        let res = app
            .post_with("open", sample::fee_body(seed, 50, end).to_string(), &[])
            .await;
        assert_eq!(res.status(), 200, "ingest goes on while the broker is down");
    }
    let mut peak = 0.0;
    for _ in 0..100 {
        peak = app.metric("ringback_outbox_pending").await.unwrap_or(0.0);
        // A reading may still count the first 50, consumed but not yet marked published (a
        // busy machine): the backlog settles at what the outage holds back.
        if peak == 150.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(peak, 150.0, "the backlog shows the undelivered records");
    let ready: serde_json::Value = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["status"], "ready",
        "the database is the buffer: still ready"
    );
    assert_eq!(ready["publisher"]["backlog"], 150);

    broker.set_up(true);
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;
    let all = consume(
        &bootstrap,
        &config.topic("cdr"),
        200,
        Duration::from_secs(30),
    )
    .await;
    let ids: BTreeSet<String> = all.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(ids, ids_of(&app.db, "cdrs").await);
    assert_eq!(ids.len(), 200);
    app.stop().await;
}

async fn shutdown_leaves_what_it_cannot_publish_for_the_next_start(backend: Backend) {
    let (broker, bootstrap, prefix, config) = embedded_with_topics();
    let tweak = |deadline: u64| {
        let base = kafka_tweak(&bootstrap, &prefix);
        move |c: &mut Config| {
            base(c);
            c.kafka.message_timeout = Duration::from_secs(30);
            c.kafka.shutdown_deadline = Duration::from_secs(deadline);
        }
    };
    broker.set_up(false);
    let app = spawn_app_with(backend, tweak(1), None).await;
    post_fees(&app, 1).await;
    let started = std::time::Instant::now();
    let db = app.stop_keep_db().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?}",
        started.elapsed()
    );
    assert_eq!(db.scalar_i64(UNPUBLISHED).await, 50, "left in the outbox");

    broker.set_up(true);
    let app = start_app(db, tweak(10), None).await;
    let got = consume(
        &bootstrap,
        &config.topic("cdr"),
        50,
        Duration::from_secs(30),
    )
    .await;
    let ids: BTreeSet<String> = got.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(ids, ids_of(&app.db, "cdrs").await);
    // A graceful stop with the broker up publishes what is in flight and marks it.
    post_fees(&app, 2).await;
    let db = app.stop_keep_db().await;
    assert_eq!(db.scalar_i64(UNPUBLISHED).await, 0);
    db.drop_db().await;
}

/// A start with leftovers while the broker is down: the catch-up waits on their deliveries for
/// up to the message timeout (30 s), and meanwhile the backlog gauges and `/readyz` still
/// count what arrives; once the broker is back, everything is published from the outbox.
async fn a_catch_up_stuck_on_a_down_broker_still_reports_its_backlog(backend: Backend) {
    let (broker, bootstrap, prefix, config) = embedded_with_topics();
    let tweak = || {
        let base = kafka_tweak(&bootstrap, &prefix);
        move |c: &mut Config| {
            base(c);
            c.kafka.message_timeout = Duration::from_secs(30);
            c.kafka.shutdown_deadline = Duration::from_secs(1);
        }
    };
    broker.set_up(false);
    let app = spawn_app_with(backend, tweak(), None).await;
    post_fees(&app, 1).await;
    let app = start_app(app.stop_keep_db().await, tweak(), None).await;
    for seed in 20..22 {
        let res = app
            .post_with(
                "open",
                sample::fee_body(seed, 50, Utc::now()).to_string(),
                &[],
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    let readyz = || async {
        let res = app.client.get(format!("{}/readyz", app.address)).send();
        res.await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let mut ready = readyz().await;
    for _ in 0..50 {
        if ready["publisher"]["backlog"] == 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = readyz().await;
    }
    assert_eq!(ready["publisher"]["backlog"], 150, "{ready}");
    assert_eq!(ready["publisher"]["mode"], "catching_up", "{ready}");
    assert_eq!(app.metric("ringback_outbox_pending").await, Some(150.0));

    broker.set_up(true);
    let got = consume(
        &bootstrap,
        &config.topic("cdr"),
        150,
        Duration::from_secs(60),
    )
    .await;
    let ids: BTreeSet<String> = got.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(ids, ids_of(&app.db, "cdrs").await);
    assert_eq!(ids.len(), 150);
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;
    app.stop().await;
}

/// Fast-path batches that time out against a down broker, one after the other, are caught up
/// from the outbox once it is back, and each record is on Kafka exactly once. (With the
/// idempotent producer, librdkafka fails the later batch together with the first, so this
/// does not leave one in flight during the catch-up; the benchmark's start-up `QueueFull`
/// does, which is what the catch-up's settling of in-flight deliveries is for.)
async fn batches_timed_out_on_a_down_broker_are_caught_up_once_each(backend: Backend) {
    let (broker, bootstrap, prefix, config) = embedded_with_topics();
    let base = kafka_tweak(&bootstrap, &prefix);
    let tweak = move |c: &mut Config| {
        base(c);
        c.kafka.message_timeout = Duration::from_secs(6);
    };
    let app = spawn_app_with(backend, tweak, None).await;
    // Topic metadata first, so that the first batch is sent, not held for it.
    post_fees(&app, 1).await;
    consume(
        &bootstrap,
        &config.topic("cdr"),
        50,
        Duration::from_secs(30),
    )
    .await;
    // And acknowledged: on the broker is not enough. Taken down before its acknowledgement
    // arrives (a loaded machine), the first batch times out as "possibly persisted" and is
    // rightly sent again, at least once, which is not what this test is about.
    wait_until_published(&app.db).await;
    broker.set_up(false);
    let post = |seed: u64| {
        let body = sample::fee_body(seed, 50, Utc::now()).to_string();
        let post = app.post_with("open", body, &[]);
        async move { assert_eq!(post.await.status(), 200) }
    };
    post(30).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    post(31).await;
    // The first batch times out at 6 s, and the catch-up starts.
    tokio::time::sleep(Duration::from_secs(4)).await;
    broker.set_up(true);
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;
    // Everything on the topic, duplicates included: read for a while past the 150 ids.
    let got = consume(
        &bootstrap,
        &config.topic("cdr"),
        151,
        Duration::from_secs(5),
    )
    .await;
    let ids: BTreeSet<String> = got.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(ids, ids_of(&app.db, "cdrs").await);
    assert_eq!(ids.len(), 150);
    // The ids sent twice, if any: ids derive from the pushes' seeds, so they tell which push.
    let mut sent = std::collections::BTreeMap::<&str, usize>::new();
    for m in &got {
        *sent.entry(m.headers["ce_id"].as_str()).or_default() += 1;
    }
    let twice: Vec<_> = sent
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        got.len(),
        150,
        "no record sent twice; sent again: {twice:?}"
    );
    app.stop().await;
}

async fn a_message_that_can_never_be_sent_is_marked_failed_not_retried(backend: Backend) {
    let (_broker, bootstrap, prefix, config) = embedded_with_topics();
    let base = kafka_tweak(&bootstrap, &prefix);
    let app = spawn_app_with(
        backend,
        move |c: &mut Config| {
            base(c);
            // A CDR's message (~1.6 KB) is over this limit; a status event's (~0.6 KB) is not.
            c.kafka
                .client
                .insert("message.max.bytes".into(), "1200".into());
        },
        None,
    )
    .await;
    post_fees(&app, 1).await;
    let session = post_status_flows(&app, 1).await;
    wait_for_metric(&app, "ringback_outbox_failed", 50.0).await;
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;
    let failed = app
        .db
        .rows("SELECT last_error FROM outbox WHERE failed_at IS NOT NULL")
        .await;
    assert_eq!(failed.len(), 50);
    assert!(
        failed[0]
            .get::<String, _>(0)
            .to_lowercase()
            .contains("too large"),
        "the reason is kept: {}",
        failed[0].get::<String, _>(0)
    );
    let events = consume(
        &bootstrap,
        &config.topic("call-status"),
        4,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(events.len(), 4, "the other messages are unaffected");
    assert!(events.iter().all(|m| m.key == session[0]));
    let failed_metric = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(failed_metric
        .lines()
        .any(|l| l.starts_with("ringback_kafka_messages_total")
            && l.contains("outcome=\"failed\"")
            && l.ends_with(" 50")));
    app.stop().await;
}

fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ringback.toml");
    std::fs::write(
        &path,
        "[http]\nworkers = 1\n[sources.open]\nkind = \"huawei-voicecall\"\nauth = \"none\"\n",
    )
    .unwrap();
    path
}

struct Server {
    child: std::process::Child,
    base: String,
}

async fn run_binary(config: &std::path::Path, db: &str, brokers: &str, prefix: &str) -> Server {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringback"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("RINGBACK__HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("RINGBACK__DATABASE__URL", db)
        .env("RINGBACK__KAFKA__BROKERS", brokers)
        .env("RINGBACK__KAFKA__TOPIC_PREFIX", prefix)
        .env("RINGBACK__KAFKA__MESSAGE_TIMEOUT", "60s")
        .env("RINGBACK__SPOOL__PATH", config.with_file_name("spool.db"))
        .env("RINGBACK__KAFKA__SWEEP_INTERVAL", "200ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return Server { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ringback did not start");
}

async fn a_crash_between_commit_and_delivery_loses_nothing(backend: Backend) {
    let (tansu, prefix, topics) = tansu_with_topics().await;
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());

    // First run: the brokers it knows are unreachable, so nothing is delivered.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let mut server = run_binary(&config, &db.url, &nowhere, &prefix).await;
    let client = reqwest::Client::new();
    for seed in 0..2 {
        let res = client
            .post(format!("{}/hooks/open", server.base))
            .header("content-type", "application/json")
            .body(sample::fee_body(seed, 50, Utc::now()).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(db.scalar_i64(UNPUBLISHED).await, 100);
    server.child.kill().unwrap(); // SIGKILL: no drain, no goodbye
    server.child.wait().unwrap();

    // Second run, with the brokers back: the leftovers are published. When the first run was
    // killed while its start-up catch-up held some of them (pushes that arrive before the
    // publisher is live are claimed from the outbox, leased for message_timeout + 40 s), the
    // second run takes those once the lease is over: wait past it (a CI run under load once
    // had half of them leased at 60 s).
    let mut server = run_binary(&config, &db.url, &tansu.bootstrap, &prefix).await;
    let got = consume(
        &tansu.bootstrap,
        &topics.topic("cdr"),
        100,
        Duration::from_secs(150),
    )
    .await;
    let ids: BTreeSet<String> = got.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(ids, ids_of(&db, "cdrs").await);
    assert_eq!(ids.len(), 100);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    db.drop_db().await;
}

async fn replay_resends_exactly_a_time_range(backend: Backend) {
    let tansu = Tansu::start();
    let live = prefix();
    let replayed = prefix();
    let cfg = |p: &str| KafkaConfig {
        topic_prefix: p.to_owned(),
        ..Default::default()
    };
    create_topics(
        &tansu.bootstrap,
        &[
            cfg(&live).topic("cdr"),
            cfg(&live).topic("call-status"),
            cfg(&replayed).topic("cdr"),
        ],
        3,
    )
    .await;
    let app = spawn_app_with(backend, kafka_tweak(&tansu.bootstrap, &live), None).await;

    let first = sample::fee_body(0, 50, Utc::now()).to_string();
    assert_eq!(
        app.post_with("open", first.clone(), &[]).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = Utc::now();
    let end = Utc::now();
    let mut want = BTreeSet::new();
    for seed in [7, 8] {
        let body = sample::fee_body(seed, 50, end).to_string();
        let ctx = ParseContext {
            source: "open".into(),
            received_at: end,
            region: None,
        };
        let parsed = huawei::parse_body(body.as_bytes(), &ctx).unwrap();
        want.extend(parsed.records.iter().map(|r| r.id().to_string()));
        let res = app.post_with("open", body, &[]).await;
        assert_eq!(res.status(), 200);
    }
    let until = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The first body again (a platform retry): duplicates, no new rows, nothing to replay.
    assert_eq!(app.post_with("open", first, &[]).await.status(), 200);
    let res = app
        .post_with("open", sample::fee_body(9, 50, Utc::now()).to_string(), &[])
        .await;
    assert_eq!(res.status(), 200);

    let out = Command::new(env!("CARGO_BIN_EXE_ringback"))
        .args([
            "replay",
            "--kind",
            "cdr",
            "--since",
            &since.to_rfc3339(),
            "--until",
            &until.to_rfc3339(),
        ])
        .env("RINGBACK__DATABASE__URL", &app.db.url)
        .env("RINGBACK__KAFKA__BROKERS", &tansu.bootstrap)
        .env("RINGBACK__KAFKA__TOPIC_PREFIX", &replayed)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("done: 100 records"), "{stdout}");

    let got = consume(
        &tansu.bootstrap,
        &cfg(&replayed).topic("cdr"),
        101,
        Duration::from_secs(15),
    )
    .await;
    let distinct: BTreeSet<&str> = got.iter().map(|m| m.headers["ce_id"].as_str()).collect();
    assert_eq!(distinct.len(), 100, "exactly the range, nothing more");
    let ids: BTreeSet<String> = got.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(
        ids, want,
        "the records of seeds 7 and 8, received in the range"
    );
    // The replayed messages are the live ones: same id, key and value.
    let live_msgs = consume(
        &tansu.bootstrap,
        &cfg(&live).topic("cdr"),
        200,
        Duration::from_secs(30),
    )
    .await;
    let live_by_id: HashMap<&str, &Consumed> = live_msgs
        .iter()
        .map(|m| (m.headers["ce_id"].as_str(), m))
        .collect();
    for m in &got {
        let original = live_by_id
            .get(m.headers["ce_id"].as_str())
            .unwrap_or_else(|| {
                panic!(
                    "replayed {} was not published live ({} live ids; {} replayed)",
                    m.headers["ce_id"],
                    live_by_id.len(),
                    got.len()
                )
            });
        assert_eq!(m.value, original.value);
        assert_eq!(m.key, original.key);
    }
    app.stop().await;
}

/// Fee pushes of 50 CDRs with these seeds, each answered 200.
async fn post_fee_seeds(app: &TestApp, seeds: std::ops::Range<u64>) {
    let end = Utc::now();
    for seed in seeds {
        let body = sample::fee_body(seed, 50, end).to_string();
        assert_eq!(app.post_with("open", body, &[]).await.status(), 200);
    }
}

/// An app on PostgreSQL publishing to `tansu` under `prefix` (3 s message timeout).
async fn app_on(tansu: &Tansu, prefix: &str) -> TestApp {
    spawn_app_with(
        Backend::Postgres,
        kafka_tweak(&tansu.bootstrap, prefix),
        None,
    )
    .await
}

/// Every CDR committed is read back from the broker, once per id.
async fn assert_all_cdrs_published(app: &TestApp, bootstrap: &str, topics: &KafkaConfig) {
    let want = ids_of(&app.db, "cdrs").await;
    let got = consume(
        bootstrap,
        &topics.topic("cdr"),
        want.len(),
        Duration::from_secs(30),
    )
    .await;
    let ids: BTreeSet<String> = got.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(ids, want, "every committed CDR is on the topic");
}

/// The publisher must recover from a real broker paused past `kafka.message_timeout` (its
/// state kept): the entries that timed out during the pause are published once it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_paused_past_the_message_timeout_is_caught_up() {
    let (tansu, prefix, topics) = tansu_with_topics().await;
    let app = app_on(&tansu, &prefix).await;
    post_fees(&app, 2).await;
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;

    tansu.signal("STOP");
    post_fee_seeds(&app, 20..24).await;
    // Past the 3 s message timeout: librdkafka gives up on what it held.
    tokio::time::sleep(Duration::from_secs(8)).await;
    tansu.signal("CONT");

    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;
    assert_all_cdrs_published(&app, &tansu.bootstrap, &topics).await;
    app.stop().await;
}

/// A producer with a fatal error (an idempotent producer's lost sequence) can never send
/// again: the publisher replaces it, and what waited is published, against a real broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_with_a_fatal_error_is_replaced() {
    let (tansu, prefix, topics) = tansu_with_topics().await;
    let app = app_on(&tansu, &prefix).await;
    post_fees(&app, 1).await;
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;

    app.publisher.inject_fatal_error();
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_fee_seeds(&app, 40..43).await;
    // The backlog gauge is a periodic reading and may still say 0 from before the pushes:
    // wait for the replacement itself, then for every CDR on the topic.
    wait_for_metric(
        &app,
        "ringback_kafka_producer_restarts_total{reason=\"fatal\"}",
        1.0,
    )
    .await;
    assert_all_cdrs_published(&app, &tansu.bootstrap, &topics).await;
    assert_eq!(app.publisher.status().producer_restarts, 1);
    app.stop().await;
}

/// …and from a broker killed and started again with its state lost (the topics are created
/// again, as an operator would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_restarted_without_its_state_is_caught_up() {
    let (mut tansu, prefix, topics) = tansu_with_topics().await;
    let app = app_on(&tansu, &prefix).await;
    post_fees(&app, 1).await;
    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;

    tansu.kill();
    post_fee_seeds(&app, 30..33).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let tansu = Tansu::start_on(tansu.port());
    create_topics(
        &tansu.bootstrap,
        &[topics.topic("cdr"), topics.topic("call-status")],
        3,
    )
    .await;

    wait_for_metric(&app, "ringback_outbox_pending", 0.0).await;
    // The first body's CDRs went with the lost state; the others must all be there.
    let want = ids_of(&app.db, "cdrs").await;
    let got = consume(
        &tansu.bootstrap,
        &topics.topic("cdr"),
        150,
        Duration::from_secs(30),
    )
    .await;
    let ids: BTreeSet<String> = got.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(
        ids.len(),
        150,
        "the three bodies sent while the broker was away"
    );
    assert!(ids.is_subset(&want));
    app.stop().await;
}

/// Pushes whose end-user text holds U+0000 (which PostgreSQL refuses), mixed into concurrent
/// valid traffic: every valid record is committed and published, one call's events in order
/// on Kafka; on PostgreSQL each poisoned one is a dead letter (SQLite stores it, and publishes
/// it like any other).
async fn poisoned_records_do_not_stop_publishing(backend: Backend) {
    let (tansu, prefix, topics) = tansu_with_topics().await;
    let app = spawn_app_with(backend, kafka_tweak(&tansu.bootstrap, &prefix), None).await;
    let poisoned = |n: u64| {
        let body = sample::status_body("answer", &format!("poison-{n}"), Utc::now()).to_string();
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["statusInfo"]["userData"] = serde_json::json!("nul \u{0} in user data");
        v.to_string()
    };
    let poison = async {
        for n in 0..3 {
            let res = app.post_with("open", poisoned(n), &[]).await;
            let (status, body) = (res.status().as_u16(), res.text().await.unwrap());
            match backend {
                Backend::Postgres => assert!(
                    status == 400 && body.contains("unstorable_record"),
                    "{status} {body}"
                ),
                Backend::Sqlite => assert_eq!(status, 200, "{body}"),
            }
        }
    };
    let (sessions, ()) = tokio::join!(post_status_flows(&app, 6), poison);
    let stored = i64::from(backend == Backend::Sqlite) * 3;
    assert_eq!(app.db.count("call_events").await, 24 + stored);
    let letters = app
        .db
        .scalar_i64("SELECT COUNT(*) FROM dead_letters WHERE code = 'unstorable_record'")
        .await;
    assert_eq!(letters, 3 - stored);
    let want = usize::try_from(24 + stored).unwrap();
    let events = consume(
        &tansu.bootstrap,
        &topics.topic("call-status"),
        want,
        Duration::from_secs(60),
    )
    .await;
    let ids: BTreeSet<String> = events.iter().map(|m| m.headers["ce_id"].clone()).collect();
    assert_eq!(
        ids,
        ids_of(&app.db, "call_events").await,
        "every committed record published"
    );
    for session in &sessions {
        let mut msgs: Vec<&Consumed> = events.iter().filter(|m| &m.key == session).collect();
        msgs.sort_by_key(|m| m.offset);
        let mut seen = BTreeSet::new();
        let order: Vec<&str> = msgs
            .iter()
            .filter(|m| seen.insert(m.headers["ce_id"].clone()))
            .map(|m| m.value["data"]["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(order, EVENTS, "{session}: in call order");
    }
    wait_until_published(&app.db).await;
    app.stop().await;
}

both_stores!(
    poisoned_records_do_not_stop_publishing,
    every_record_reaches_kafka_with_its_headers_in_call_order,
    a_broker_outage_is_buffered_in_the_outbox_and_drained,
    shutdown_leaves_what_it_cannot_publish_for_the_next_start,
    a_catch_up_stuck_on_a_down_broker_still_reports_its_backlog,
    batches_timed_out_on_a_down_broker_are_caught_up_once_each,
    a_message_that_can_never_be_sent_is_marked_failed_not_retried,
    a_crash_between_commit_and_delivery_loses_nothing,
    replay_resends_exactly_a_time_range,
);

/// The ClickHouse path (deploy/clickhouse): the messages a real ringback run published to a
/// real broker, fed to schema.sql in chDB (in-process ClickHouse, from PyPI; `.ci/run`
/// installs it), give the same rollups as PostgreSQL's, with some messages delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_rollups_from_the_topics_equal_postgres() {
    const TZ: &str = "Asia/Shanghai";
    let (tansu, prefix, topics) = tansu_with_topics().await;
    let kafka = kafka_tweak(&tansu.bootstrap, &prefix);
    let app = spawn_app_with(
        Backend::Postgres,
        move |c: &mut Config| {
            kafka(c);
            c.report.timezone = TZ.into();
        },
        None,
    )
    .await;
    // Three days of fee pushes at several hours, with varied fields, a retry of each third
    // push, and disconnects with several state codes.
    let first = Utc.with_ymd_and_hms(2026, 11, 20, 15, 30, 0).unwrap();
    for n in 0..18u64 {
        let end = first + chrono::Duration::minutes(n as i64 * 217);
        let mut body = sample::fee_body(500 + n, 1 + (n as usize * 7) % 50, end);
        for (i, info) in body["feeLst"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            info["appKey"] = serde_json::json!(["app-a", "app-b"][(i + n as usize) % 2]);
            info["direction"] = serde_json::json!((i / 3) % 2);
        }
        for _ in 0..(1 + u64::from(n % 3 == 0)) {
            assert_eq!(
                app.post_with("open", body.to_string(), &[]).await.status(),
                200
            );
        }
        let mut status = sample::status_body("disconnect", &format!("ch-{n}"), end);
        status["statusInfo"]["stateCode"] = serde_json::json!([0, 3, 4][n as usize % 3]);
        assert_eq!(
            app.post_with("open", status.to_string(), &[])
                .await
                .status(),
            200
        );
    }
    let (cdrs, events) = (
        app.db.count("cdrs").await,
        app.db.count("call_events").await,
    );
    let wait = Duration::from_secs(60);
    let cdr_msgs = consume(&tansu.bootstrap, &topics.topic("cdr"), cdrs as usize, wait).await;
    let status_msgs = consume(
        &tansu.bootstrap,
        &topics.topic("call-status"),
        events as usize,
        wait,
    )
    .await;
    let store = app.db.store().await;
    store.maintainer().unwrap().fold_rollups(TZ).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, msgs: &[&Consumed]| {
        let path = dir.path().join(name);
        let lines: Vec<String> = msgs.iter().map(|m| m.value.to_string()).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path.display().to_string()
    };
    let all_cdrs: Vec<&Consumed> = cdr_msgs.iter().collect();
    let all_status: Vec<&Consumed> = status_msgs.iter().collect();
    // At least once: a consumer that reads some messages again.
    let again: Vec<&Consumed> = cdr_msgs
        .iter()
        .step_by(5)
        .chain(status_msgs.iter().step_by(4))
        .collect();
    let files = [
        write("cdr.jsonl", &all_cdrs),
        write("call-status.jsonl", &all_status),
        write("redelivered.jsonl", &again),
    ];
    let python = std::env::var("RINGBACK_CHDB_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/ringback-tools/chdb-venv/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&python)
        .arg(format!("{root}/tests/clickhouse/rollups.py"))
        .arg(format!("{root}/deploy/clickhouse/schema.sql"))
        .arg(TZ)
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{python} (chDB; .ci/run installs it): {e}"));
    assert!(
        out.status.success(),
        "chDB: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut clickhouse: HashMap<String, Vec<String>> = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (table, row) = line.split_once('\t').unwrap();
        clickhouse.entry(table.into()).or_default().push(row.into());
    }
    let postgres = [
        (
            "cdr_hourly",
            "to_char(hour, 'YYYY-MM-DD HH24:MI:SS'), source, app_key, service_type, direction, \
             calls, answered, talk_seconds, billable_minutes, ring_seconds, ring_calls, \
             pdd_seconds, pdd_calls, flagged",
        ),
        (
            "cdr_daily",
            "day, source, app_key, service_type, direction, calls, answered, talk_seconds, \
             billable_minutes, ring_seconds, ring_calls, pdd_seconds, pdd_calls, flagged",
        ),
        (
            "cdr_numbers_daily",
            "day, source, role, number, calls, answered, talk_seconds, billable_minutes",
        ),
        ("hangup_causes_daily", "day, source, kind, code, calls"),
    ];
    for (table, fields) in postgres {
        let mut pg: Vec<String> = app
            .db
            .rows(&format!("SELECT concat_ws('|', {fields}) FROM {table}"))
            .await
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        pg.sort();
        let mut ch = clickhouse.remove(table).unwrap_or_default();
        ch.sort();
        assert!(!pg.is_empty(), "{table}: the run filled it");
        assert_eq!(ch, pg, "{table}: ClickHouse's rollup equals PostgreSQL's");
    }
    let counts = clickhouse.remove("count").unwrap();
    assert!(counts.contains(&format!("cdrs|{cdrs}")), "{counts:?}");
    assert!(
        counts.contains(&format!("call_events|{events}")),
        "{counts:?}"
    );
    store.close().await;
    app.stop().await;
}
