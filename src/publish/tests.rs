//! The publisher against librdkafka's mock cluster and an outbox kept in memory, where a test
//! can commit an entry at the worst moment.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::kafka::EmbeddedBroker;
use super::*;
use crate::domain::{Claimed, Outcome, Row, StoredRecord};
use crate::store::{Backlog, StoreError};

/// A commit made while a claim runs (after it read the outbox), as another request's would be.
type Hook = Box<dyn FnOnce(&OutboxModel) + Send>;

/// The outbox alone: pending entries in commit order, the ones published, and what to do
/// during the next claim.
#[derive(Default)]
struct OutboxModel {
    pending: Mutex<Vec<OutboxEntry>>,
    leased: Mutex<HashSet<Uuid>>,
    published: Mutex<Vec<Uuid>>,
    during_claim: Mutex<Option<Hook>>,
}

impl OutboxModel {
    fn commit(&self, entry: OutboxEntry) {
        self.pending.lock().unwrap().push(entry);
    }
}

#[async_trait]
impl Store for OutboxModel {
    fn backend(&self) -> &'static str {
        "outbox-model"
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn commit(&self, _: &[Row], _: &[OutboxEntry]) -> Result<Vec<Outcome>, StoreError> {
        unreachable!("the tests commit through OutboxModel::commit")
    }
    async fn claim_outbox(
        &self,
        limit: u32,
        _: Duration,
        _: Duration,
        _: bool,
    ) -> Result<Vec<Claimed>, StoreError> {
        let claimed: Vec<Claimed> = {
            let mut leased = self.leased.lock().unwrap();
            self.pending
                .lock()
                .unwrap()
                .iter()
                .filter(|e| leased.insert(e.id))
                .take(limit as usize)
                .cloned()
                .map(Claimed::Ready)
                .collect()
        };
        let hook = self.during_claim.lock().unwrap().take();
        if let Some(hook) = hook {
            hook(self);
        }
        Ok(claimed)
    }
    async fn mark_published(&self, ids: &[Uuid], _: bool) -> Result<(), StoreError> {
        self.pending
            .lock()
            .unwrap()
            .retain(|e| !ids.contains(&e.id));
        self.published.lock().unwrap().extend(ids);
        Ok(())
    }
    async fn release_outbox(&self, ids: &[Uuid], _: &str) -> Result<(), StoreError> {
        self.leased.lock().unwrap().retain(|id| !ids.contains(id));
        Ok(())
    }
    async fn release_own_leases(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn mark_failed(&self, id: Uuid, _: &str) -> Result<(), StoreError> {
        panic!("entry {id} marked failed")
    }
    async fn outbox_backlog(&self) -> Result<Backlog, StoreError> {
        Ok(Backlog {
            pending: self.pending.lock().unwrap().len() as i64,
            oldest: None,
            failed: 0,
        })
    }
    async fn prune_outbox(&self, _: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn purge_nonces(&self, _: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }
    fn set_owner(&self, _: Uuid) -> bool {
        true
    }
    async fn replay_page(
        &self,
        _: RecordKind,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: Option<(DateTime<Utc>, Uuid)>,
        _: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        unreachable!()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn close(&self) {}
}

fn entry(event: &str) -> OutboxEntry {
    OutboxEntry {
        id: Uuid::new_v4(),
        kind: RecordKind::CallStatus,
        key: "call-1".into(),
        payload: format!(r#"{{"event_type":"{event}"}}"#),
        source: "hw".into(),
        occurred_at: Utc::now(),
    }
}

/// A publisher on a mock cluster with the record kinds' topics, and its outbox.
fn publisher() -> (Publisher, PublisherHandle, Arc<OutboxModel>, EmbeddedBroker) {
    let mut config = KafkaConfig {
        topic_prefix: "unit".into(),
        message_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let broker = EmbeddedBroker::start(&config, 3).unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();
    config.brokers = bootstrap.as_str().into();
    let producer_config = config.clone();
    let producer = Producer::new(Box::new(move || {
        kafka::producer(&bootstrap, &producer_config)
    }))
    .unwrap();
    let store = Arc::new(OutboxModel::default());
    let (publisher, handle) = Publisher::new(
        store.clone(),
        Some(producer),
        config,
        Arc::new(Metrics::new()),
        Regions::default(),
    );
    (publisher, handle, store, broker)
}

/// A call's first event committed just after a catch-up's claim read the outbox (so the claim
/// misses it), and handed off just before the publisher goes live (so the hand-off is
/// dropped): the publisher must not go live leaving it behind, or the call's next event,
/// handed off live, would reach Kafka first. (Seen once in the fault suite: a call's
/// `alerting` before its `callout`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_dropped_as_the_publisher_goes_live_is_not_overtaken() {
    let (mut publisher, handle, store, _broker) = publisher();
    let callout = entry("callout");
    let id = callout.id;
    let offer = handle.clone();
    *store.during_claim.lock().unwrap() = Some(Box::new(move |outbox: &OutboxModel| {
        outbox.commit(callout.clone());
        offer.offer(vec![callout]);
    }));

    publisher.catch_up().await;

    assert_eq!(handle.status().mode, Mode::Live);
    assert_eq!(
        *store.published.lock().unwrap(),
        vec![id],
        "live, so the call's next event goes straight to Kafka: its callout must be out first"
    );
}

/// The same hand-off dropped while the publisher is live (its queue full): no later hand-off is
/// taken until a catch-up has sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_dropped_hand_off_later_ones_wait_for_the_catch_up() {
    let (mut publisher, handle, store, _broker) = publisher();
    publisher.catch_up().await;
    assert_eq!(handle.status().mode, Mode::Live);

    let callout = entry("callout");
    store.commit(callout.clone());
    handle.catch_up(); // as `offer` does when the queue is full
    let alerting = entry("alerting");
    store.commit(alerting.clone());
    handle.offer(vec![alerting.clone()]);
    assert!(
        publisher.rx.try_recv().is_err(),
        "the alerting was taken while its callout waits in the outbox"
    );
    assert!(publisher.check_health(), "the next tick catches up");
    publisher.catch_up().await;
    let published: HashSet<Uuid> = store.published.lock().unwrap().iter().copied().collect();
    assert_eq!(published, HashSet::from([callout.id, alerting.id]));
}
