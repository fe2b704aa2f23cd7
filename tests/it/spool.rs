//! The local spool against the real PostgreSQL, behind a proxy that takes it away
//! (`crate::common::proxy`): pushes the platform never resends are answered 2xx only once on disk,
//! reach the database once it is back, once each and in order, and a full spool refuses with
//! 503 instead of losing anything.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::Row;

use crate::common::disk::LoopDisk;
use crate::common::proxy::Proxy;
use crate::common::{start_app, Backend, TestApp, TestDb};
use ringback::config::Config;
use ringback::simulate::sample;

const EVENTS: [&str; 4] = ["callout", "alerting", "answer", "disconnect"];

/// An app on PostgreSQL reached through `proxy`, its outbox kept (no brokers) so the commit
/// order of each call's records can be read back.
async fn app_behind(proxy: &Proxy, db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    let url = url.to_string();
    start_app(
        db,
        move |c: &mut Config| {
            c.database.url = url;
            c.database.acquire_timeout = Duration::from_secs(1);
            c.kafka.brokers = ringback::config::Brokers::None;
            c.spool.fallback_after = Duration::from_millis(300);
            tweak(c);
        },
        None,
    )
    .await
}

/// Status flows of `calls` calls, interleaved (every call's callout, then every alerting…);
/// returns each answer's JSON.
async fn post_flows(app: &TestApp, calls: u64, seed: u64) -> Vec<serde_json::Value> {
    let start = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let sessions: Vec<String> = (0..calls)
        .map(|n| sample::session_id(seed, n, start))
        .collect();
    let mut answers = Vec::new();
    for (step, event) in EVENTS.iter().enumerate() {
        for session in &sessions {
            let at = start + chrono::Duration::seconds(step as i64 * 5);
            let body = sample::status_body(event, session, at).to_string();
            let res = app.post_with("open", body, &[]).await;
            assert_eq!(
                res.status(),
                200,
                "a push is answered 2xx while the spool has room"
            );
            answers.push(res.json().await.unwrap());
        }
    }
    answers
}

/// Posts 50-CDR fee pushes (seeds from 0) until `refusals` were refused, at most `most` of
/// them; every refusal must be 503 `spool_full` with `Retry-After`. Returns how many were
/// answered 200.
async fn post_fees_until_refused(app: &TestApp, most: u64, refusals: u64) -> i64 {
    let end = Utc::now();
    let (mut stored, mut refused) = (0, 0);
    for seed in 0..most {
        let body = sample::fee_body(seed, 50, end).to_string();
        let res = app.post_with("open", body, &[]).await;
        match res.status().as_u16() {
            200 => stored += 1,
            503 => {
                assert!(res.headers().contains_key("retry-after"));
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "spool_full");
                refused += 1;
                if refused == refusals {
                    break;
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        stored > 0 && refused == refusals,
        "stored {stored}, refused {refused}"
    );
    stored
}

async fn count(db: &TestDb, table: &str) -> i64 {
    db.rows(&format!("SELECT COUNT(*) FROM {table}")).await[0].get(0)
}

async fn wait_until_drained(app: &TestApp) {
    for _ in 0..300 {
        if app.metric("ringback_spool_spooling").await == Some(0.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the spool never drained: {:?} entries",
        app.metric("ringback_spool_entries").await
    );
}

/// Every call's events, in the order their outbox entries were committed, are the order they
/// were sent in.
async fn assert_call_order(db: &TestDb) {
    let rows = db
        .rows("SELECT key, CAST(id AS TEXT) FROM outbox_records WHERE kind = 'call-status' ORDER BY seq, ord")
        .await;
    let types: BTreeMap<String, String> = db
        .rows("SELECT CAST(id AS TEXT), event_type FROM call_events")
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut by_call: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        let (key, id): (String, String) = (r.get(0), r.get(1));
        by_call.entry(key).or_default().push(types[&id].clone());
    }
    assert!(!by_call.is_empty());
    for (call, order) in by_call {
        assert_eq!(order, EVENTS, "{call}: committed in the order sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_spooled_then_drained_once_in_order() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(&crate::common::pg_host_port(&db.url)).await;
    let app = app_behind(&proxy, db, |_| {}).await;

    // Some calls go straight to the database…
    let direct = post_flows(&app, 3, 1).await;
    assert!(direct.iter().all(|a| a.get("spooled").is_none()));
    // …then it goes away: the next pushes are spooled, and the replica stays ready.
    proxy.down();
    let spooled = post_flows(&app, 5, 2).await;
    assert!(
        spooled.iter().all(|a| a["spooled"] == true),
        "every push during the outage says it was spooled"
    );
    let (status, ready) = app.readyz_until("spooling").await;
    assert_eq!(status, 200, "a spooling replica stays in the balancer");
    assert_eq!(ready["status"], "spooling");
    assert_eq!(ready["spool"]["records"], 20);
    assert_eq!(count(&app.db, "call_events").await, 12);

    proxy.up();
    wait_until_drained(&app).await;
    assert_eq!(count(&app.db, "call_events").await, 32, "every event once");
    assert_eq!(
        count(&app.db, "outbox_records").await,
        32,
        "one outbox entry each"
    );
    assert_call_order(&app.db).await;
    // The same pushes again (platform retries): duplicates, no new rows.
    let again = post_flows(&app, 5, 2).await;
    assert!(again.iter().all(|a| a["duplicates"] == 1));
    assert_eq!(count(&app.db, "call_events").await, 32);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_is_spooled_after_fallback_after_and_stored_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(&crate::common::pg_host_port(&db.url)).await;
    let app = app_behind(&proxy, db, |_| {}).await;
    post_flows(&app, 1, 1).await;

    proxy.stall();
    let started = std::time::Instant::now();
    let answers = post_flows(&app, 2, 3).await;
    let waited = started.elapsed();
    assert!(answers.iter().all(|a| a["spooled"] == true));
    assert!(
        waited < Duration::from_secs(8),
        "8 pushes answered in {waited:?}: each waits at most about spool.fallback_after"
    );
    proxy.up();
    wait_until_drained(&app).await;
    // The abandoned commits may have landed too: still one row per event.
    assert_eq!(count(&app.db, "call_events").await, 12);
    assert_eq!(count(&app.db, "outbox_records").await, 12);
    assert_call_order(&app.db).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_and_stores_nothing_it_refused() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(&crate::common::pg_host_port(&db.url)).await;
    let app = app_behind(&proxy, db, |c| c.spool.max_bytes = 1 << 20).await;
    proxy.down();
    let stored = post_fees_until_refused(&app, 60, 5).await;
    proxy.up();
    wait_until_drained(&app).await;
    assert_eq!(
        count(&app.db, "cdrs").await,
        stored * 50,
        "exactly what was answered 2xx"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_spool_holds_at_shutdown_is_drained_at_the_next_start() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(&crate::common::pg_host_port(&db.url)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let app = app_behind(&proxy, db, {
        let path = path.clone();
        move |c| c.spool.path = path
    })
    .await;
    proxy.down();
    post_flows(&app, 2, 4).await;
    let db = app.stop_keep_db().await;
    assert_eq!(count(&db, "call_events").await, 0);
    proxy.up();
    // A new app on the same spool file starts by draining it.
    let app = app_behind(&proxy, db, move |c| c.spool.path = path).await;
    wait_until_drained(&app).await;
    assert_eq!(count(&app.db, "call_events").await, 8);
    assert_call_order(&app.db).await;
    app.stop().await;
}

/// A disk that fills up under the spool: 503 `spool_full` with `Retry-After` once only
/// `spool.min_free_bytes` are left, never a 2xx for what is not on disk, no crash (a WAL index
/// in a memory-mapped file would die of SIGBUS here); once the database is back the spool drains
/// (the room left lets SQLite move its WAL and delete) and takes pushes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_spool_refuses_with_503_then_recovers() {
    let disk = LoopDisk::new(24);
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(&crate::common::pg_host_port(&db.url)).await;
    let path = disk.path().join("spool.db");
    let app = app_behind(&proxy, db, move |c| {
        c.spool.path = path;
        c.spool.min_free_bytes = 8 << 20;
    })
    .await;
    proxy.down();
    let stored = post_fees_until_refused(&app, 400, 3).await;
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "still serving");

    proxy.up();
    wait_until_drained(&app).await;
    assert_eq!(
        count(&app.db, "cdrs").await,
        stored * 50,
        "exactly what was answered 2xx"
    );
    // The disk has room again inside the spool file: an outage is spooled again.
    proxy.down();
    let body = sample::fee_body(1_000, 50, Utc::now()).to_string();
    let res = app.post_with("open", body, &[]).await;
    assert_eq!(res.status(), 200);
    proxy.up();
    wait_until_drained(&app).await;
    assert_eq!(count(&app.db, "cdrs").await, (stored + 1) * 50);
    app.stop().await;
}
