//! 2xx means durable: the answer waits for the commit, a failed commit is never a 2xx, a full
//! queue is refused with Retry-After, and shutdown drains what is in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Semaphore;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use ringback::domain::{Claimed, OutboxEntry, Outcome, RecordKind, Row, StoredRecord};
use ringback::store::{Backlog, Store, StoreError};

use crate::both_stores;
use crate::common::{fixture, spawn_app, spawn_app_with, Backend, TestApp};

/// Wraps the real store; commits wait for a permit, or fail.
struct Wrapped {
    inner: Arc<dyn Store>,
    gate: Arc<Semaphore>,
    entered: Arc<AtomicUsize>,
    pings: Arc<AtomicUsize>,
    fail: bool,
}

#[async_trait]
impl Store for Wrapped {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }
    async fn commit(
        &self,
        rows: &[Row],
        outbox: &[OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _permit = self.gate.acquire().await.unwrap();
        if self.fail {
            return Err(StoreError::from(sqlx::Error::PoolTimedOut));
        }
        self.inner.commit(rows, outbox).await
    }
    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
        min_age: Duration,
        own: bool,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.inner.claim_outbox(limit, lease, min_age, own).await
    }
    async fn mark_published(&self, ids: &[Uuid], keep: bool) -> Result<(), StoreError> {
        self.inner.mark_published(ids, keep).await
    }
    async fn release_outbox(&self, ids: &[Uuid], error: &str) -> Result<(), StoreError> {
        self.inner.release_outbox(ids, error).await
    }
    async fn release_own_leases(&self) -> Result<u64, StoreError> {
        self.inner.release_own_leases().await
    }
    async fn mark_failed(&self, id: Uuid, reason: &str) -> Result<(), StoreError> {
        self.inner.mark_failed(id, reason).await
    }
    async fn outbox_backlog(&self) -> Result<Backlog, StoreError> {
        self.inner.outbox_backlog().await
    }
    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.prune_outbox(before).await
    }
    async fn purge_nonces(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.purge_nonces(before).await
    }
    fn set_owner(&self, owner: Uuid) -> bool {
        self.inner.set_owner(owner)
    }
    async fn replay_page(
        &self,
        kind: RecordKind,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        self.inner
            .replay_page(kind, since, until, after, limit)
            .await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.pings.fetch_add(1, Ordering::SeqCst);
        self.inner.ping().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

pub(crate) struct Handles {
    pub gate: Arc<Semaphore>,
    pub entered: Arc<AtomicUsize>,
    /// Pings of the database (health checks).
    pub pings: Arc<AtomicUsize>,
}

pub(crate) async fn spawn_wrapped(
    backend: Backend,
    fail: bool,
    permits: usize,
    tweak: impl FnOnce(&mut ringback::config::Config),
) -> (TestApp, Handles) {
    let gate = Arc::new(Semaphore::new(permits));
    let entered = Arc::new(AtomicUsize::new(0));
    let pings = Arc::new(AtomicUsize::new(0));
    let (g, e, p) = (gate.clone(), entered.clone(), pings.clone());
    let app = spawn_app_with(
        backend,
        tweak,
        Some(Box::new(move |inner| {
            Arc::new(Wrapped {
                inner,
                gate: g,
                entered: e,
                pings: p,
                fail,
            })
        })),
    )
    .await;
    (
        app,
        Handles {
            gate,
            entered,
            pings,
        },
    )
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn the_answer_waits_for_the_commit(backend: Backend) {
    let (app, h) = spawn_wrapped(backend, false, 0, |_| {}).await;
    let app = Arc::new(app);
    let a = app.clone();
    let pending = tokio::spawn(async move { a.post_signed(fixture("huawei/fee.json")).await });
    wait_until("the batch reaches the store", || {
        h.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "answered before the commit");
    assert_eq!(app.db.count("cdrs").await, 0);
    h.gate.add_permits(100);
    let res = pending.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.db.count("cdrs").await, 1);
    Arc::into_inner(app).unwrap().stop().await;
}

/// Without a spool (SQLite, or `spool.enabled = false`); with one, such a batch is spooled
/// (tests/it/spool.rs).
async fn a_failed_commit_is_503_with_retry_after_and_no_row(backend: Backend) {
    let (app, _h) = spawn_wrapped(backend, true, 100, |c| {
        c.spool.enabled = false;
        c.batch.commit_retries = 1;
        c.batch.retry_backoff = Duration::from_millis(10);
    })
    .await;
    let res = app.post_signed(fixture("huawei/fee.json")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable");
    assert_eq!(app.db.count("cdrs").await, 0);
    app.stop().await;
}

/// A real database refusing every record: PostgreSQL fails it at COMMIT (a deferred
/// constraint trigger), SQLite at the insert (SQLite has no deferred triggers).
async fn records_the_database_refuses_are_dead_letters_and_no_row(backend: Backend) {
    let app = spawn_app(backend).await;
    match backend {
        Backend::Postgres => {
            app.db
                .execute(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$; \
                     CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON cdrs \
                     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();",
                )
                .await
        }
        Backend::Sqlite => {
            app.db
                .execute(
                    "CREATE TRIGGER refuse BEFORE INSERT ON cdrs \
                     BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END;",
                )
                .await
        }
    }
    // Every CDR is refused, alone as in its batch: each is kept as a dead letter (see
    // `batch::isolate`), the push is refused as a whole, nothing is stored as a CDR.
    let res = app.post_signed(fixture("huawei/fee.json")).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unstorable_record");
    assert!(
        !body.to_string().contains("at commit") && !body.to_string().contains("by trigger"),
        "internals must not leak: {body}"
    );
    assert_eq!(app.db.count("cdrs").await, 0);
    let letters = app
        .db
        .scalar_i64("SELECT COUNT(*) FROM dead_letters WHERE code = 'unstorable_record'")
        .await;
    assert_eq!(letters, 1, "the fee push's one CDR is a dead letter");
    app.stop().await;
}

async fn a_full_queue_is_503_with_retry_after(backend: Backend) {
    let (app, h) = spawn_wrapped(backend, false, 0, |c| {
        c.batch.queue_capacity = 1;
        c.batch.max_records = 1;
        c.batch.linger = Duration::ZERO;
    })
    .await;
    let app = Arc::new(app);
    let post = |name: &'static str| {
        let a = app.clone();
        tokio::spawn(async move {
            a.post_with("open", fixture(&format!("huawei/{name}.json")), &[])
                .await
        })
    };
    // The first request's batch is stuck in the store; the second is the next batch, gathered
    // while that commit is in flight (group commit); the third waits in the queue.
    let first = post("callout");
    wait_until("the first batch reaches the store", || {
        h.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = post("alerting");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = post("collectInfo");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fourth = app
        .post_with("open", fixture("huawei/answer.json"), &[])
        .await;
    assert_eq!(fourth.status(), 503);
    assert_eq!(fourth.headers()["retry-after"], "5");
    let body: Value = fourth.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");

    h.gate.add_permits(100);
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(second.await.unwrap().status(), 200);
    assert_eq!(third.await.unwrap().status(), 200);
    assert_eq!(app.db.count("call_events").await, 3);
    Arc::into_inner(app).unwrap().stop().await;
}

async fn shutdown_finishes_requests_in_flight(backend: Backend) {
    let (app, h) = spawn_wrapped(backend, false, 0, |_| {}).await;
    let app = Arc::new(app);
    let a = app.clone();
    let pending = tokio::spawn(async move { a.post_signed(fixture("huawei/fee.json")).await });
    wait_until("the batch reaches the store", || {
        h.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    app.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.gate.add_permits(100);
    assert_eq!(pending.await.unwrap().status(), 200);
    let app = Arc::into_inner(app).unwrap();
    assert_eq!(app.db.count("cdrs").await, 1);
    app.stop().await;
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// A flood against a slow store: the excess is refused early (503 + Retry-After), memory stays
/// flat, and every request that got a 2xx is committed exactly once.
async fn a_flood_is_refused_early_and_what_was_accepted_is_committed_once(backend: Backend) {
    let (app, h) = spawn_wrapped(backend, false, 0, |c| {
        c.batch.queue_capacity = 4;
        c.batch.workers = 1;
        c.batch.max_records = 5;
        c.batch.linger = Duration::ZERO;
    })
    .await;
    // The store commits about 100 batches a second.
    let gate = h.gate.clone();
    let trickle = tokio::spawn(async move {
        loop {
            gate.add_permits(1);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let app = Arc::new(app);
    let before = rss_mib();
    let start = chrono::Utc::now();
    let mut tasks = Vec::new();
    for n in 0..600 {
        let a = app.clone();
        tasks.push(tokio::spawn(async move {
            let session = format!("flood-{n}");
            let body = ringback::simulate::sample::status_body("callout", &session, start);
            let res = a.post_with("open", body.to_string(), &[]).await;
            let retry = res.headers().get("retry-after").is_some();
            (res.status().as_u16(), retry)
        }));
    }
    let (mut ok, mut refused) = (0i64, 0);
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (503, true) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    trickle.abort();
    h.gate.add_permits(1000);
    let growth = rss_mib() - before;
    assert!(refused > 0, "the flood was more than the store takes");
    assert!(ok > 0);
    assert_eq!(
        app.db.count("call_events").await,
        ok,
        "every 2xx committed exactly once"
    );
    assert!(growth < 64.0, "memory grew {growth:.0} MiB under the flood");
    Arc::into_inner(app).unwrap().stop().await;
}

/// Connections are not pinged before use (no round trip per batch): when PostgreSQL drops
/// every connection, the next batch fails on a dead one, is retried on a fresh one, and the
/// callback is committed and answered 200 all the same.
#[tokio::test]
async fn connections_postgres_dropped_are_replaced_without_losing_a_callback() {
    use ringback::simulate::sample;
    // No batch retries: only the store's own handling of dropped connections is at work.
    let app = spawn_app_with(Backend::Postgres, |c| c.batch.commit_retries = 0, None).await;
    let end = Utc::now();
    // Several batches at once, so that the pool holds several connections to drop.
    let first = futures_util::future::join_all(
        (1..=8).map(|seed| app.post_signed(sample::fee_body_string(seed, 1, end))),
    )
    .await;
    assert!(first.iter().all(|r| r.status() == 200));
    let killed = app
        .db
        .scalar_i64(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend'",
        )
        .await;
    assert!(killed > 0, "the app held no connection to drop");
    let res = app.post_signed(sample::fee_body_string(100, 4, end)).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(app.db.count("cdrs").await, 12);
    app.stop().await;
}

both_stores!(
    the_answer_waits_for_the_commit,
    a_failed_commit_is_503_with_retry_after_and_no_row,
    records_the_database_refuses_are_dead_letters_and_no_row,
    a_full_queue_is_503_with_retry_after,
    shutdown_finishes_requests_in_flight,
    a_flood_is_refused_early_and_what_was_accepted_is_committed_once,
);

/// After a failover the database's address can lead, for a while, to a server that only reads
/// (a demoted primary, a standby): its answer, SQLSTATE 25006, is an outage, not a refusal of
/// the records (which would make them dead letters), and every connection opened before it is
/// replaced, so once the address leads to a primary again the next commit succeeds. Stood in
/// for here by `default_transaction_read_only` on the test database: sessions opened while it
/// is on stay read-only for good, as connections to a demoted primary do.
#[tokio::test]
async fn a_read_only_database_after_a_failover_is_an_outage_and_its_connections_are_replaced() {
    use ringback::simulate::sample;
    let db = crate::common::TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let name = url::Url::parse(&db.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let fee = |seed| {
        let body = sample::fee_body_string(seed, 2, Utc::now());
        let ctx = ringback::sources::ParseContext {
            source: "hw".into(),
            received_at: Utc::now(),
            region: None,
        };
        let parsed = ringback::sources::huawei::parse_body(body.as_bytes(), &ctx).unwrap();
        Row::records(parsed.records)
    };
    store.commit(&fee(1), &[]).await.unwrap();
    let admin = sqlx::PgPool::connect(&crate::common::pg_admin_url())
        .await
        .unwrap();
    let read_only = |on: bool| {
        let sql = format!("ALTER DATABASE {name} SET default_transaction_read_only = {on}");
        let admin = admin.clone();
        async move { sqlx::query(&sql).execute(&admin).await.unwrap() }
    };
    read_only(true).await;
    // The failover: every session ends; the ones opened from now on are read-only.
    sqlx::query(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let mut read_only_answers = 0;
    for _ in 0..5 {
        match store.commit(&fee(2), &[]).await {
            Err(e) => {
                assert!(e.is_transient(), "a read-only server is an outage: {e:?}");
                if format!("{:?}", e).contains("25006") {
                    read_only_answers += 1;
                }
            }
            Ok(_) => panic!("committed into a read-only database"),
        }
    }
    assert!(read_only_answers > 0, "the database answered read-only");
    read_only(false).await;
    // The address leads to a primary again: connections opened before are replaced, not
    // reused read-only.
    let mut committed = None;
    for _ in 0..20 {
        if let Ok(outcomes) = store.commit(&fee(2), &[]).await {
            committed = Some(outcomes);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(committed, Some(vec![Outcome::Inserted; 2]));
    assert_eq!(db.count("cdrs").await, 4);
    store.close().await;
    admin.close().await;
    db.drop_db().await;
}
