use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use super::*;
use crate::domain::{DeadLetter, DeadLetterScope, Record, Row, UNSTORABLE};
use crate::sources::{huawei, ParseContext};
use crate::store::StoreError;

/// A store that records batch sizes and can fail its next commits.
#[derive(Default)]
struct FakeStore {
    batches: Mutex<Vec<usize>>,
    fail_next: Mutex<Vec<bool>>,
    /// When set, commits wait for a permit (counted in `entered` while they wait).
    gate: Option<tokio::sync::Semaphore>,
    entered: AtomicUsize,
    /// How long a commit with a `callout` event takes.
    delay: Duration,
    /// The call events committed, `session|event`, in commit order.
    call_events: Mutex<Vec<String>>,
    /// A CDR of this session is refused for good, as PostgreSQL refuses a NUL character.
    poison: Option<String>,
    /// The dead letters committed.
    dead_letters: Mutex<Vec<DeadLetter>>,
}

#[async_trait]
impl Store for FakeStore {
    fn backend(&self) -> &'static str {
        "fake"
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn commit(
        &self,
        records: &[Row],
        _outbox: &[crate::domain::OutboxEntry],
    ) -> Result<Vec<Outcome>, StoreError> {
        if let Some(gate) = &self.gate {
            self.entered.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
        }
        // A batch with a call's first event is slow: a later batch of the same call that
        // overlapped it would overtake it.
        let first_events = records
            .iter()
            .any(|r| matches!(r, Row::Record(Record::CallEvent(e)) if e.event_type.as_str() == "callout"));
        if !self.delay.is_zero() && first_events {
            tokio::time::sleep(self.delay).await;
        }
        let poisoned = records
            .iter()
            .any(|r| matches!(r, Row::Record(Record::Cdr(c)) if Some(&c.session_id) == self.poison.as_ref()));
        if poisoned {
            let refusal = sqlx::Error::Protocol("invalid byte sequence: 0x00".into());
            return Err(StoreError::Rejected(refusal));
        }
        let fail = self.fail_next.lock().unwrap().pop();
        if let Some(transient) = fail {
            let e = if transient {
                sqlx::Error::PoolTimedOut
            } else {
                sqlx::Error::RowNotFound
            };
            return Err(e.into());
        }
        self.batches.lock().unwrap().push(records.len());
        for r in records {
            if let Row::DeadLetter(d) = r {
                self.dead_letters.lock().unwrap().push((**d).clone());
            }
        }
        let mut events = self.call_events.lock().unwrap();
        for r in records {
            if let Row::Record(Record::CallEvent(e)) = r {
                events.push(format!("{}|{}", e.session_id, e.event_type.as_str()));
            }
        }
        Ok(vec![Outcome::Inserted; records.len()])
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn close(&self) {}
    // The batcher never reads the outbox back.
    async fn claim_outbox(
        &self,
        _: u32,
        _: Duration,
        _: Duration,
        _: bool,
    ) -> Result<Vec<crate::domain::Claimed>, StoreError> {
        unreachable!()
    }
    async fn mark_published(&self, _: &[uuid::Uuid], _: bool) -> Result<(), StoreError> {
        unreachable!()
    }
    async fn release_outbox(&self, _: &[uuid::Uuid], _: &str) -> Result<(), StoreError> {
        unreachable!()
    }
    async fn release_own_leases(&self) -> Result<u64, StoreError> {
        unreachable!()
    }
    async fn mark_failed(&self, _: uuid::Uuid, _: &str) -> Result<(), StoreError> {
        unreachable!()
    }
    async fn outbox_backlog(&self) -> Result<crate::store::Backlog, StoreError> {
        unreachable!()
    }
    async fn prune_outbox(&self, _: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
        unreachable!()
    }
    async fn purge_nonces(&self, _: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
        unreachable!()
    }
    fn set_owner(&self, _: uuid::Uuid) -> bool {
        unreachable!()
    }
    async fn replay_page(
        &self,
        _: crate::domain::RecordKind,
        _: chrono::DateTime<Utc>,
        _: chrono::DateTime<Utc>,
        _: Option<(chrono::DateTime<Utc>, uuid::Uuid)>,
        _: u32,
    ) -> Result<Vec<crate::domain::StoredRecord>, StoreError> {
        unreachable!()
    }
}

fn records(n: usize, seed: u64) -> Vec<Row> {
    let body = crate::simulate::sample::fee_body(seed, n, Utc::now()).to_string();
    let ctx = ParseContext {
        source: "hw".into(),
        received_at: Utc::now(),
        region: None,
    };
    Row::records(huawei::parse_body(body.as_bytes(), &ctx).unwrap().records)
}

fn config(max_records: usize, linger_ms: u64) -> BatchConfig {
    BatchConfig {
        max_records,
        linger: Duration::from_millis(linger_ms),
        queue_capacity: 16,
        workers: 1,
        commit_retries: 2,
        retry_backoff: Duration::from_millis(10),
        retry_after_secs: 1,
    }
}

#[tokio::test(start_paused = true)]
async fn requests_within_the_linger_share_one_transaction() {
    let store = Arc::new(FakeStore::default());
    let batcher = Batcher::spawn(
        store.clone(),
        config(50, 5),
        CancellationToken::new(),
        &TaskTracker::new(),
        None,
        Arc::new(crate::metrics::Metrics::new()),
        None,
    );
    let submits = (0..3).map(|i| {
        let b = batcher.clone();
        tokio::spawn(async move { b.submit(records(10, i)).await })
    });
    for s in futures_util::future::join_all(submits).await {
        assert_eq!(s.unwrap().unwrap().outcomes.len(), 10);
    }
    assert_eq!(*store.batches.lock().unwrap(), vec![30]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_never_exceeds_max_records_and_never_splits_a_request() {
    let store = Arc::new(FakeStore::default());
    let batcher = Batcher::spawn(
        store.clone(),
        config(50, 5),
        CancellationToken::new(),
        &TaskTracker::new(),
        None,
        Arc::new(crate::metrics::Metrics::new()),
        None,
    );
    let submits = [30, 30, 20].map(|n| {
        let b = batcher.clone();
        tokio::spawn(async move { b.submit(records(n, n as u64)).await })
    });
    for s in futures_util::future::join_all(submits).await {
        s.unwrap().unwrap();
    }
    assert_eq!(*store.batches.lock().unwrap(), vec![30, 50]);
}

#[tokio::test]
async fn a_full_queue_is_refused_at_once() {
    let store = Arc::new(FakeStore::default());
    let cfg = BatchConfig {
        queue_capacity: 1,
        ..config(50, 0)
    };
    // Not spawned: nothing drains the queue.
    let (tx, _rx) = mpsc::channel(cfg.queue_capacity);
    let batcher = Batcher {
        shards: vec![tx].into(),
        in_flight: vec![AtomicUsize::new(0)].into(),
    };
    let b = batcher.clone();
    let first = tokio::spawn(async move { b.submit(records(1, 1)).await });
    tokio::task::yield_now().await;
    while batcher.queue_depth() == 0 {
        tokio::task::yield_now().await;
    }
    let second = batcher.submit(records(1, 2)).await;
    assert!(matches!(second, Err(SubmitError::QueueFull)));
    first.abort();
    drop(store);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_and_permanent_ones_are_not() {
    let store = Arc::new(FakeStore::default());
    store.fail_next.lock().unwrap().extend([true, true]);
    let batcher = Batcher::spawn(
        store.clone(),
        config(50, 0),
        CancellationToken::new(),
        &TaskTracker::new(),
        None,
        Arc::new(crate::metrics::Metrics::new()),
        None,
    );
    assert_eq!(
        batcher.submit(records(2, 1)).await.unwrap().outcomes.len(),
        2
    );

    store.fail_next.lock().unwrap().extend([true, true, true]);
    let err = batcher.submit(records(2, 2)).await.unwrap_err();
    assert!(matches!(err, SubmitError::Store { transient: true }));

    // Refused for good once, the batch is taken apart (see `isolate`): its one submission,
    // committed alone, goes through.
    store.fail_next.lock().unwrap().clear();
    store.fail_next.lock().unwrap().push(false);
    let ok = batcher.submit(records(2, 3)).await.unwrap();
    assert_eq!(ok.outcomes, vec![Outcome::Inserted; 2]);
    assert_eq!(*store.batches.lock().unwrap(), vec![2, 2]);
}

/// Requests gathered into one batch while a commit is held; one holds a record the database
/// refuses for good. Every other request is committed as if it had not been there, the culprit
/// is answered `Refused` and kept as a dead letter with its JSON.
#[tokio::test]
async fn a_record_the_database_refuses_fails_alone() {
    let mut poisoned = records(3, 77);
    let Row::Record(Record::Cdr(culprit)) = &poisoned[1] else {
        panic!("a fee body holds CDRs")
    };
    let store = Arc::new(FakeStore {
        gate: Some(tokio::sync::Semaphore::new(0)),
        poison: Some(culprit.session_id.clone()),
        ..FakeStore::default()
    });
    let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
    let batcher = spawn_plain(store.clone(), config(50, 0), &stop, &tasks);
    // A first request holds the worker (its commit waits at the gate) while the next three
    // gather into one batch.
    let first = tokio::spawn({
        let b = batcher.clone();
        async move { b.submit(records(1, 70)).await }
    });
    while store.entered.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let mut waiting = Vec::new();
    for seed in [71, 72] {
        let b = batcher.clone();
        waiting.push(tokio::spawn(
            async move { b.submit(records(2, seed)).await },
        ));
    }
    let b = batcher.clone();
    let culprit_session = culprit.session_id.clone();
    let bad = tokio::spawn(async move { b.submit(std::mem::take(&mut poisoned)).await });
    while batcher.queue_depth() > 0 || store.entered.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.gate.as_ref().unwrap().add_permits(1000);
    assert_eq!(
        first.await.unwrap().unwrap().outcomes,
        vec![Outcome::Inserted]
    );
    for w in waiting {
        assert_eq!(
            w.await.unwrap().unwrap().outcomes,
            vec![Outcome::Inserted; 2]
        );
    }
    let bad = bad.await.unwrap().unwrap();
    assert_eq!(
        bad.outcomes,
        vec![Outcome::Inserted, Outcome::Refused, Outcome::Inserted]
    );
    let letters = store.dead_letters.lock().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].code, UNSTORABLE);
    assert_eq!(letters[0].scope, DeadLetterScope::Record);
    let body = String::from_utf8(letters[0].body.clone().unwrap()).unwrap();
    assert!(body.contains(&culprit_session), "the CDR as sent: {body}");
    stop.cancel();
}

#[tokio::test]
async fn stopping_commits_what_is_queued_then_refuses() {
    let store = Arc::new(FakeStore::default());
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let batcher = spawn_plain(store.clone(), config(50, 0), &stop, &tasks);
    let b = batcher.clone();
    let pending = tokio::spawn(async move { b.submit(records(3, 1)).await });
    tokio::task::yield_now().await;
    stop.cancel();
    assert_eq!(pending.await.unwrap().unwrap().outcomes.len(), 3);
    tasks.close();
    tasks.wait().await;
    assert!(matches!(
        batcher.submit(records(1, 2)).await,
        Err(SubmitError::Closed)
    ));
}

#[test]
fn one_call_always_goes_to_the_same_worker() {
    let shards: Vec<_> = (0..4).map(|_| mpsc::channel::<Submission>(1)).collect();
    let batcher = Batcher {
        shards: shards
            .iter()
            .map(|(tx, _)| tx.clone())
            .collect::<Vec<_>>()
            .into(),
        in_flight: (0..4).map(|_| AtomicUsize::new(0)).collect(),
    };
    let ctx = ParseContext {
        source: "hw".into(),
        received_at: Utc::now(),
        region: None,
    };
    let index = |records: &[Record]| batcher.shard(&Row::records(records.iter().cloned()));
    let mut used = std::collections::HashSet::new();
    for call in 0..32 {
        let session = crate::simulate::sample::session_id(1, call, Utc::now());
        let worker: Vec<usize> = ["callout", "alerting", "answer", "disconnect"]
            .iter()
            .map(|e| {
                let body =
                    crate::simulate::sample::status_body(e, &session, Utc::now()).to_string();
                index(&huawei::parse_body(body.as_bytes(), &ctx).unwrap().records)
            })
            .collect();
        assert!(
            worker.windows(2).all(|w| w[0] == w[1]),
            "{session}: {worker:?}"
        );
        used.insert(worker[0]);
    }
    assert!(used.len() > 1, "calls spread over the workers");
}

#[tokio::test]
async fn fee_pushes_go_to_idle_workers() {
    let store = Arc::new(FakeStore {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..FakeStore::default()
    });
    let mut config = config(50, 0);
    config.workers = 4;
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let batcher = spawn_plain(store.clone(), config, &stop, &tasks);
    // Four pushes while every commit hangs: each must be on a worker of its own. Hashing by
    // their first call would put two of them on one worker with probability 1 - 4!/4^4.
    let pushes: Vec<_> = (0..4)
        .map(|seed| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit(records(50, 100 + seed)).await })
        })
        .collect();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while store.entered.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.entered.load(Ordering::SeqCst),
        4,
        "a push waited behind another"
    );
    store.gate.as_ref().unwrap().add_permits(4);
    for push in pushes {
        assert_eq!(push.await.unwrap().unwrap().outcomes.len(), 50);
    }
    assert_eq!(
        batcher
            .in_flight
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .sum::<usize>(),
        0
    );
    stop.cancel();
    drop(batcher);
    tasks.close();
    tasks.wait().await;
}

#[tokio::test]
async fn a_lone_request_commits_at_once_and_arrivals_during_a_commit_share_the_next() {
    let store = Arc::new(FakeStore {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..FakeStore::default()
    });
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    // No linger: nothing waits for company.
    let batcher = spawn_plain(store.clone(), config(50, 0), &stop, &tasks);
    let submit = |n: usize, seed: u64| {
        let b = batcher.clone();
        tokio::spawn(async move { b.submit(records(n, seed)).await })
    };
    let wait_entered = |n: usize| {
        let store = store.clone();
        async move {
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while store.entered.load(Ordering::SeqCst) < n && std::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(store.entered.load(Ordering::SeqCst), n);
        }
    };
    let first = submit(1, 1);
    wait_entered(1).await; // committing at once, alone
    let during: Vec<_> = (0..3).map(|i| submit(2, 10 + i)).collect();
    while batcher.queue_depth() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Taken off the queue and prepared while the first commit is in flight, but not
    // committed: one commit at a time.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.entered.load(Ordering::SeqCst), 1);
    store.gate.as_ref().unwrap().add_permits(1);
    first.await.unwrap().unwrap();
    wait_entered(2).await;
    store.gate.as_ref().unwrap().add_permits(1);
    for d in during {
        assert_eq!(d.await.unwrap().unwrap().outcomes.len(), 2);
    }
    assert_eq!(
        *store.batches.lock().unwrap(),
        vec![1, 6],
        "the three share one commit"
    );
    stop.cancel();
    drop(batcher);
    tasks.close();
    tasks.wait().await;
}

/// Commits of one call's records complete in arrival order: calls interleaved over four
/// workers, a store whose commits take a while (so batches pile up behind them), each call's
/// events submitted one after another without waiting for the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_calls_records_commit_in_arrival_order_behind_a_slow_store() {
    const EVENTS: [&str; 4] = ["callout", "alerting", "answer", "disconnect"];
    let store = Arc::new(FakeStore {
        delay: Duration::from_millis(20),
        ..FakeStore::default()
    });
    let mut cfg = config(50, 0);
    cfg.workers = 4;
    cfg.queue_capacity = 4096;
    let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
    let batcher = spawn_plain(store.clone(), cfg, &stop, &tasks);
    let ctx = ParseContext {
        source: "hw".into(),
        received_at: Utc::now(),
        region: None,
    };
    let calls = 8;
    let mut answers = Vec::new();
    // Round-robin over the calls: each call's next event is queued before the previous one's
    // commit has finished.
    for event in EVENTS {
        for call in 0..calls {
            let session = format!("call-{call}");
            let body =
                crate::simulate::sample::status_body(event, &session, Utc::now()).to_string();
            let records = Row::records(huawei::parse_body(body.as_bytes(), &ctx).unwrap().records);
            let b = batcher.clone();
            let (queued_tx, queued) = oneshot::channel::<()>();
            answers.push(tokio::spawn(async move {
                let submit = b.submit(records);
                tokio::pin!(submit);
                // Signal once the submission is queued (polled once), then wait for it.
                let first = futures_util::poll!(&mut submit);
                let _ = queued_tx.send(());
                match first {
                    std::task::Poll::Ready(r) => r,
                    std::task::Poll::Pending => submit.await,
                }
            }));
            queued.await.unwrap();
        }
    }
    for a in answers {
        a.await.unwrap().unwrap();
    }
    let order = store.call_events.lock().unwrap().clone();
    assert_eq!(order.len(), calls * EVENTS.len());
    for call in 0..calls {
        let seen: Vec<&str> = order
            .iter()
            .filter_map(|o| o.strip_prefix(&format!("call-{call}|")))
            .collect();
        assert_eq!(seen, EVENTS, "call-{call} committed out of order");
    }
    stop.cancel();
    drop(batcher);
    tasks.close();
    tasks.wait().await;
}

/// The model of the spool's guarantee, checked on random histories: a database that goes up and
/// down, ringback restarting (the batcher and the spool closed and opened again on the same
/// file), pushes of call events in between. Every push answered Ok (committed, or spooled) ends
/// up stored exactly once, and each call's events in the order they were answered.
mod spool_model {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::config::SpoolConfig;

    /// Up or down; keeps each id once, in commit order, as `ON CONFLICT DO NOTHING` does.
    #[derive(Default)]
    struct ModelStore {
        down: AtomicBool,
        stored: Mutex<Vec<Uuid>>,
    }

    #[async_trait]
    impl Store for ModelStore {
        fn backend(&self) -> &'static str {
            "model"
        }
        async fn migrate(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn commit(
            &self,
            records: &[Row],
            _outbox: &[crate::domain::OutboxEntry],
        ) -> Result<Vec<Outcome>, StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(sqlx::Error::PoolTimedOut.into());
            }
            let mut stored = self.stored.lock().unwrap();
            let mut seen: HashSet<Uuid> = stored.iter().copied().collect();
            let mut outcomes = Vec::with_capacity(records.len());
            for r in records {
                if seen.insert(r.id()) {
                    stored.push(r.id());
                    outcomes.push(Outcome::Inserted);
                } else {
                    outcomes.push(Outcome::Duplicate);
                }
            }
            Ok(outcomes)
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn close(&self) {}
        async fn claim_outbox(
            &self,
            _: u32,
            _: Duration,
            _: Duration,
            _: bool,
        ) -> Result<Vec<crate::domain::Claimed>, StoreError> {
            unreachable!()
        }
        async fn mark_published(&self, _: &[Uuid], _: bool) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn release_outbox(&self, _: &[Uuid], _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn release_own_leases(&self) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn mark_failed(&self, _: Uuid, _: &str) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn outbox_backlog(&self) -> Result<crate::store::Backlog, StoreError> {
            unreachable!()
        }
        async fn prune_outbox(&self, _: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
            unreachable!()
        }
        async fn purge_nonces(&self, _: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
            unreachable!()
        }
        fn set_owner(&self, _: Uuid) -> bool {
            unreachable!()
        }
        async fn replay_page(
            &self,
            _: crate::domain::RecordKind,
            _: chrono::DateTime<Utc>,
            _: chrono::DateTime<Utc>,
            _: Option<(chrono::DateTime<Utc>, Uuid)>,
            _: u32,
        ) -> Result<Vec<crate::domain::StoredRecord>, StoreError> {
            unreachable!()
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// The next event of call `call`.
        Push {
            call: u64,
        },
        DbDown,
        DbUp,
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4u64).prop_map(|call| Op::Push { call }),
            1 => Just(Op::DbDown),
            1 => Just(Op::DbUp),
            1 => Just(Op::Restart),
        ]
    }

    /// A running batcher with its spool.
    struct Running {
        batcher: Batcher,
        spool: Arc<Spool>,
        stop: CancellationToken,
        tasks: TaskTracker,
        spool_tasks: TaskTracker,
    }

    async fn start(store: &Arc<ModelStore>, dir: &std::path::Path) -> Running {
        let (stop, tasks, spool_tasks) = (
            CancellationToken::new(),
            TaskTracker::new(),
            TaskTracker::new(),
        );
        let config = SpoolConfig {
            enabled: true,
            path: dir.join("spool.db"),
            fallback_after: Duration::from_millis(200),
            max_bytes: 1 << 30,
            min_free_bytes: 0,
        };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let spool = Spool::open(&config, metrics.clone(), &spool_tasks, stop.clone())
            .await
            .unwrap();
        let mut batch = super::config(50, 0);
        batch.workers = 2;
        let batcher = Batcher::spawn(
            store.clone(),
            batch,
            stop.clone(),
            &tasks,
            None,
            metrics,
            Some(Spooling {
                spool: spool.clone(),
                fallback_after: config.fallback_after,
            }),
        );
        Running {
            batcher,
            spool,
            stop,
            tasks,
            spool_tasks,
        }
    }

    async fn stop(r: Running) {
        r.stop.cancel();
        drop(r.batcher);
        r.tasks.close();
        r.tasks.wait().await;
        r.spool_tasks.close();
        r.spool_tasks.wait().await;
        r.spool.close().await;
    }

    /// Call `call`'s `n`th event: its own session, a timestamp of its own.
    fn event(call: u64, n: u64) -> Record {
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        let session = crate::simulate::sample::session_id(77, call, start);
        let at = start + chrono::Duration::seconds(n as i64);
        let body = crate::simulate::sample::status_body(
            ["callout", "alerting", "answer", "disconnect"][(n % 4) as usize],
            &session,
            at,
        )
        .to_string();
        let ctx = ParseContext {
            source: "hw".into(),
            received_at: start,
            region: None,
        };
        huawei::parse_body(body.as_bytes(), &ctx)
            .unwrap()
            .records
            .remove(0)
    }

    use chrono::TimeZone;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn what_was_acknowledged_is_stored_once_in_order(ops in prop::collection::vec(op(), 1..30)) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(ModelStore::default());
                let mut running = start(&store, dir.path()).await;
                let mut next = [0u64; 4];
                // Per call, the ids acknowledged, in the order they were.
                let mut acked: Vec<Vec<Uuid>> = vec![Vec::new(); 4];
                for op in &ops {
                    match op {
                        Op::Push { call } => {
                            let record = event(*call, next[*call as usize]);
                            next[*call as usize] += 1;
                            let id = record.id();
                            if running.batcher.submit(vec![record.into()]).await.is_ok() {
                                acked[*call as usize].push(id);
                            }
                        }
                        Op::DbDown => store.down.store(true, Ordering::SeqCst),
                        Op::DbUp => store.down.store(false, Ordering::SeqCst),
                        Op::Restart => {
                            stop(running).await;
                            running = start(&store, dir.path()).await;
                        }
                    }
                }
                store.down.store(false, Ordering::SeqCst);
                let until = std::time::Instant::now() + Duration::from_secs(20);
                while running.spool.is_active() && std::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert!(!running.spool.is_active(), "the spool drains once the database is up");
                stop(running).await;
                let stored = store.stored.lock().unwrap().clone();
                let position: std::collections::HashMap<Uuid, usize> =
                    stored.iter().enumerate().map(|(i, id)| (*id, i)).collect();
                for (call, ids) in acked.iter().enumerate() {
                    let at: Vec<usize> = ids
                        .iter()
                        .map(|id| *position.get(id).unwrap_or_else(|| {
                            panic!("call {call}: acknowledged {id} is not stored; ops {ops:?}")
                        }))
                        .collect();
                    assert!(
                        at.windows(2).all(|w| w[0] < w[1]),
                        "call {call}: stored out of order {at:?}; ops {ops:?}"
                    );
                }
            });
        }
    }
}

/// A batcher with no publisher and no spool, stopped by `stop`.
fn spawn_plain(
    store: Arc<FakeStore>,
    config: BatchConfig,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> Batcher {
    Batcher::spawn(
        store,
        config,
        stop.clone(),
        tasks,
        None,
        Arc::new(crate::metrics::Metrics::new()),
        None,
    )
}
