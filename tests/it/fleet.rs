//! Guarantees that must hold across replicas sharing one database, and a replica's drain.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{fixture, start_app, x_aksk, Backend, TestDb, PUBLIC_URL};

async fn code_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap_or_default();
    (status, code.to_owned())
}

/// A fee body whose CDRs are not the fixture's (other icids), `bad` of them invalid.
fn forged_fee(tag: &str, bad: bool) -> String {
    let mut body: Value = serde_json::from_str(&fixture("huawei/fee.json")).unwrap();
    let cdr = body["feeLst"][0].clone();
    let mut forged = cdr.clone();
    forged["icid"] = format!("FORGED-{tag}").into();
    forged["sessionId"] = format!("forged-session-{tag}").into();
    let mut list = vec![forged];
    if bad {
        let mut broken = cdr;
        broken["icid"] = format!("FORGED-BAD-{tag}").into();
        broken["callEndTime"] = "not a time".into();
        list.push(broken);
    }
    body["feeLst"] = list.into();
    body.to_string()
}

/// Two replicas on one PostgreSQL: a signed push accepted by A, its exact X-AKSK header then
/// sent to B with a forged body (Huawei's digest does not cover the body). B refuses it as
/// `nonce_reused` from the nonce A claimed in the database, and stores none of the forged
/// records, on the one-statement path (CDRs only) and on the transaction path (a forged body
/// with an invalid record, which adds a dead letter to the submission).
#[tokio::test]
async fn a_nonce_accepted_by_one_replica_is_refused_by_another() {
    let a = start_app(TestDb::new(Backend::Postgres).await, |_| {}, None).await;
    let b = start_app(a.db.shared(), |_| {}, None).await;
    for (tag, bad) in [("hot", false), ("tx", true)] {
        let header = x_aksk(PUBLIC_URL);
        let res = a
            .post_with(
                "hw",
                fixture("huawei/fee.json"),
                &[("x-aksk", header.clone())],
            )
            .await;
        assert_eq!(res.status(), 200, "{tag}: A accepts the signed push");
        // The same replica refuses the replay from memory…
        let again = a
            .post_with("hw", forged_fee(tag, bad), &[("x-aksk", header.clone())])
            .await;
        assert_eq!(code_of(again).await, (401, "nonce_reused".into()), "{tag}");
        // …and the other replica from the database.
        let replay = b
            .post_with("hw", forged_fee(tag, bad), &[("x-aksk", header)])
            .await;
        assert_eq!(code_of(replay).await, (401, "nonce_reused".into()), "{tag}");
        let forged =
            a.db.scalar_i64("SELECT COUNT(*) FROM cdrs WHERE icid LIKE 'FORGED%'")
                .await;
        assert_eq!(forged, 0, "{tag}: no forged CDR stored");
        let kept =
            a.db.scalar_i64("SELECT COUNT(*) FROM dead_letters WHERE code <> 'nonce_reused'")
                .await;
        assert_eq!(kept, 0, "{tag}: no dead letter of the forged body either");
    }
    assert_eq!(a.db.count("cdrs").await, 1, "the genuine CDR, once");
    assert_eq!(a.db.count("nonces").await, 2);
    let refusals =
        a.db.scalar_i64("SELECT COUNT(*) FROM dead_letters WHERE code = 'nonce_reused'")
            .await;
    assert_eq!(refusals, 4, "each refused replay is kept as a dead letter");
    // A fresh nonce is still accepted by B (the guard refuses replays, not the source).
    let res = b.post_signed(forged_fee("fresh", false)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(a.db.count("cdrs").await, 2);
    b.stop().await;
    a.stop().await;
}

/// Expired nonces are purged; live ones are kept.
#[tokio::test]
async fn expired_nonces_are_purged() {
    let app = start_app(TestDb::new(Backend::Postgres).await, |_| {}, None).await;
    assert_eq!(
        app.post_signed(fixture("huawei/fee.json")).await.status(),
        200
    );
    // Stopped first: its own purge (every minute, the first at start) must not take the
    // expired nonce before this test's does.
    let db = app.stop_keep_db().await;
    db.execute("INSERT INTO nonces VALUES (gen_random_uuid(), gen_random_uuid(), 'hw', 'old', now() - interval '1 minute')")
        .await;
    let store = db.store().await;
    let purged = store.purge_nonces(chrono::Utc::now()).await.unwrap();
    assert_eq!(purged, 1);
    assert_eq!(db.count("nonces").await, 1, "the push's live nonce is kept");
    store.close().await;
    db.drop_db().await;
}

/// On shutdown with `http.drain_delay`, `/readyz` answers 503 `draining` at once while pushes
/// are still accepted, and the listener closes only after the delay.
#[tokio::test]
async fn a_draining_replica_is_unready_but_still_serves() {
    let app = start_app(
        TestDb::new(Backend::Postgres).await,
        |c| c.http.drain_delay = Duration::from_millis(1500),
        None,
    )
    .await;
    let readyz = || app.client.get(format!("{}/readyz", app.address)).send();
    assert_eq!(readyz().await.unwrap().status(), 200);
    let started = Instant::now();
    app.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = readyz().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "draining");
    let res = app.post_signed(fixture("huawei/fee.json")).await;
    assert_eq!(res.status(), 200, "a push during the drain delay is served");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let db = app.stop_keep_db().await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the listener stays open for the drain delay"
    );
    assert_eq!(db.count("cdrs").await, 1);
    db.drop_db().await;
}
