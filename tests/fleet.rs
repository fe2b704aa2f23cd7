//! Two ringback processes (the real binary) on one PostgreSQL and one Tansu, load spread
//! across both by a balancer that follows `/readyz` as a Kubernetes Service or nginx does, and
//! each replica restarted in turn with SIGTERM under load: a rolling deploy. The oracle: every
//! push answered 2xx is in the database exactly once and on Kafka, no push was lost on its way
//! to a draining replica, and the outbox was published once (no message twice).
//!
//! Short by default (part of `cargo test`); `RINGBACK_FLEET=long` restarts each replica five
//! times: `RINGBACK_FLEET=long cargo test --test fleet -- --nocapture`.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;

use common::kafka::{consume_until, create_topics, Tansu};
use common::server::Ringback;
use common::{x_aksk, Backend, TestDb, APP_KEY, APP_SECRET, PUBLIC_URL};

fn rounds() -> usize {
    if std::env::var("RINGBACK_FLEET").is_ok_and(|v| v == "long") {
        5
    } else {
        1
    }
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Session ids of the pushes answered 2xx.
    acked: Mutex<Vec<String>>,
    /// Answered, but not 2xx (status, body).
    refused: Mutex<Vec<(u16, String)>>,
    /// Sent and then lost: the connection failed after the request went out.
    lost: AtomicU64,
    /// Connections refused before anything was sent, retried on the other replica (what
    /// `proxy_next_upstream error` does).
    retried: AtomicU64,
    /// 2xx answers per replica.
    served: [AtomicU64; 2],
}

fn callout(session: &str) -> String {
    format!(
        r#"{{"eventType":"callout","statusInfo":{{"sessionId":"{session}","timestamp":"2026-12-02 03:04:24","caller":"+8613800000022","called":"+8613800000021"}}}}"#
    )
}

/// What the replicas share: a database, a Tansu broker with the Huawei topics of `name`'s
/// prefix, that prefix and the call-status topic.
async fn shared_parts(name: &str) -> (TestDb, Tansu, String, String) {
    let db = TestDb::new(Backend::Postgres).await;
    let tansu = Tansu::start();
    let prefix = format!("{name}{}", std::process::id());
    let topic = format!("{prefix}.call-status");
    let topics = [topic.clone(), format!("{prefix}.cdr")];
    create_topics(&tansu.bootstrap, &topics, 3).await;
    (db, tansu, prefix, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let (db, tansu, prefix, topic) = shared_parts("fleet").await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), APP_SECRET).unwrap();
    let config = format!(
        "[http]\nworkers = 1\ndrain_delay = \"1s\"\n[log]\nlevel = \"warn\"\n\
         [sources.hw]\nkind = \"huawei-voicecall\"\nauth = \"aksk\"\napp_key = \"{APP_KEY}\"\n\
         app_secret_file = \"{}\"\npublic_url = \"{PUBLIC_URL}\"\n",
        secret.path().display()
    );
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(Ringback::start_with(&db.url, &tansu.bootstrap, &prefix, &config, &[]).await);
    }
    let bases: Vec<String> = replicas.iter().map(Ringback::base).collect();

    // The balancer's view: a replica is in rotation while its /readyz answers 200, probed
    // every 100 ms (a readiness probe's period, shortened).
    let ready: Arc<[AtomicBool; 2]> = Arc::new([AtomicBool::new(true), AtomicBool::new(true)]);
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let probe = tokio::spawn({
        let (ready, stop, bases, client) =
            (ready.clone(), stop.clone(), bases.clone(), client.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                for (i, base) in bases.iter().enumerate() {
                    let ok = client
                        .get(format!("{base}/readyz"))
                        .timeout(Duration::from_millis(500))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    ready[i].store(ok, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let tally = Arc::new(Tally::default());
    let sent = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for worker in 0..4u64 {
        let (ready, stop, bases, client, tally, sent) = (
            ready.clone(),
            stop.clone(),
            bases.clone(),
            client.clone(),
            tally.clone(),
            sent.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let session = format!("fleet-{worker}-{n}");
                let first = (sent.fetch_add(1, Ordering::Relaxed) % 2) as usize;
                // In rotation first; both out (a moment of a restart): try both anyway.
                let order = if ready[first].load(Ordering::Relaxed) {
                    [first, 1 - first]
                } else {
                    [1 - first, first]
                };
                for (attempt, &i) in order.iter().enumerate() {
                    let res = client
                        .post(format!("{}/hooks/hw", bases[i]))
                        .header("content-type", "application/json;charset=UTF-8")
                        .header("x-aksk", x_aksk(PUBLIC_URL))
                        .body(callout(&session))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => {
                            tally.served[i].fetch_add(1, Ordering::Relaxed);
                            tally.acked.lock().unwrap().push(session.clone());
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.text().await.unwrap_or_default();
                            tally.refused.lock().unwrap().push((status, body));
                        }
                        Err(e) if e.is_connect() && attempt == 0 => {
                            tally.retried.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(_) => {
                            tally.lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // The rolling deploy: each replica in turn, SIGTERM, back, ready, then the next.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut restarts = 0;
    for _ in 0..rounds() {
        for replica in replicas.iter_mut() {
            let before = tally.acked.lock().unwrap().len();
            replica.terminate();
            replica.spawn().await;
            let back = Instant::now();
            while !client
                .get(format!("{}/readyz", replica.base()))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                assert!(
                    back.elapsed() < Duration::from_secs(20),
                    "replica not ready again"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            restarts += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let during = tally.acked.lock().unwrap().len() - before;
            assert!(during > 0, "the load went on through the restart");
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    probe.await.unwrap();
    let elapsed = started.elapsed();
    for replica in &replicas {
        replica.settle(Duration::from_secs(30)).await;
    }

    let acked: Vec<String> = tally.acked.lock().unwrap().clone();
    let refused = tally.refused.lock().unwrap().clone();
    let lost = tally.lost.load(Ordering::Relaxed);
    let served = [
        tally.served[0].load(Ordering::Relaxed),
        tally.served[1].load(Ordering::Relaxed),
    ];
    // Database: every acknowledged push once, nothing else.
    let rows = db
        .rows(
            "SELECT session_id, CAST(COUNT(*) AS BIGINT) AS n FROM call_events GROUP BY session_id",
        )
        .await;
    let stored: HashMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|s| !stored.contains_key(*s)).collect();
    let twice: Vec<(&String, &i64)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    // Kafka: every stored record, once.
    let ids: HashSet<String> = db
        .rows("SELECT CAST(id AS TEXT) FROM call_events")
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let want = ids.len();
    let messages = consume_until(
        &tansu.bootstrap,
        &topic,
        Duration::from_secs(60),
        move |got| got.len() >= want,
    )
    .await;
    let on_kafka: HashSet<String> = messages
        .iter()
        .map(|m| m.headers["ce_id"].clone())
        .collect();
    let redelivered = messages.len() - on_kafka.len();
    let retried = tally.retried.load(Ordering::Relaxed);
    println!(
        "fleet: {restarts} graceful restarts in {:.1}s; {} pushes acknowledged (replica A {}, B {}), \
         {} refused, {lost} lost in flight, {retried} connections refused and retried on the other \
         replica; {} stored; {} on Kafka, {redelivered} redelivered",
        elapsed.as_secs_f64(),
        acked.len(),
        served[0],
        served[1],
        refused.len(),
        stored.len(),
        on_kafka.len()
    );
    assert!(
        served.iter().all(|&n| n > 50),
        "load spread over both: {served:?}"
    );
    assert!(
        refused.is_empty(),
        "refused: {:?}",
        &refused[..refused.len().min(5)]
    );
    assert_eq!(lost, 0, "pushes lost on their way to a draining replica");
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    assert_eq!(
        stored.len(),
        acked.len(),
        "stored exactly what was acknowledged"
    );
    assert_eq!(on_kafka, ids, "every stored record on Kafka");
    assert_eq!(redelivered, 0, "the outbox was published once");
    for replica in replicas {
        replica.stop().await;
    }
    db.drop_db().await;
}

/// A replica that dies for good (SIGKILL) with entries it committed but never published (the
/// broker was paused): the other replica's sweeper publishes them once they are older than
/// `kafka.sweep_grace` and any lease the dead one held has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_replicas_outbox_is_published_by_the_other() {
    let (db, tansu, prefix, topic) = shared_parts("fleetdead").await;
    let config = "[http]\nworkers = 1\n[log]\nlevel = \"warn\"\n\
                  [sources.open]\nkind = \"huawei-voicecall\"\nauth = \"none\"\n";
    let mut a = Ringback::start_with(&db.url, &tansu.bootstrap, &prefix, config, &[]).await;
    let b = Ringback::start_with(&db.url, &tansu.bootstrap, &prefix, config, &[]).await;
    tansu.signal("STOP");
    let client = reqwest::Client::new();
    for n in 0..100 {
        let res = client
            .post(format!("{}/hooks/open", a.base()))
            .header("content-type", "application/json")
            .body(callout(&format!("dead-{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    a.kill9();
    let pending = db
        .scalar_i64("SELECT COUNT(*) FROM outbox_records WHERE published_at IS NULL")
        .await;
    assert!(pending > 0, "the dead replica left entries unpublished");
    tansu.signal("CONT");
    let ids: HashSet<String> = db
        .rows("SELECT CAST(id AS TEXT) FROM call_events")
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    assert_eq!(ids.len(), 100);
    let want = ids.len();
    let started = Instant::now();
    let messages = consume_until(
        &tansu.bootstrap,
        &topic,
        Duration::from_secs(120),
        move |got| got.len() >= want,
    )
    .await;
    let on_kafka: HashSet<String> = messages
        .iter()
        .map(|m| m.headers["ce_id"].clone())
        .collect();
    println!(
        "dead replica: {pending} entries left unpublished; all {} on Kafka {:.1}s after the broker \
         resumed, {} redelivered",
        on_kafka.len(),
        started.elapsed().as_secs_f64(),
        messages.len() - on_kafka.len()
    );
    assert_eq!(
        on_kafka, ids,
        "the other replica published the dead one's records"
    );
    b.stop().await;
    db.drop_db().await;
}
