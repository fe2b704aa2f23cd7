//! `ringback replay`: re-publish stored records of a time range (a new consumer, a lost
//! topic). Records are rebuilt from the JSON they were received as, so their messages are the
//! ones first published: same id, same key, same value.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::config::{KafkaConfig, SourceConfig};
use crate::domain::RecordKind;
use crate::message;
use crate::publish::kafka;
use crate::store::Store;

/// Records read and sent per round trip.
const PAGE: u32 = 500;

/// What to replay.
#[derive(Debug, Clone)]
pub struct Range {
    pub kind: RecordKind,
    /// Received at or after.
    pub since: DateTime<Utc>,
    /// Received before.
    pub until: DateTime<Utc>,
}

/// Sends every record of `range` and waits for each delivery; calls `progress(sent)` after
/// each page. Returns how many were sent. Stops at the first delivery that fails.
pub async fn replay(
    store: &dyn Store,
    producer: &FutureProducer,
    kafka: &KafkaConfig,
    sources: &BTreeMap<String, SourceConfig>,
    range: &Range,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<u64> {
    let topic = kafka.topic(range.kind.as_str());
    let mut after = None;
    let mut sent = 0u64;
    loop {
        let page = store
            .replay_page(range.kind, range.since, range.until, after, PAGE)
            .await
            .context("reading stored records")?;
        let Some(last) = page.last() else { break };
        after = Some((last.received_at, last.id));
        let mut entries = Vec::with_capacity(page.len());
        for stored in &page {
            // The record kind tells the platform; the source's configured kind confirms it.
            match sources.get(&stored.source).map(|s| s.kind) {
                Some(kind) if !kind.record_kinds().contains(&range.kind) => bail!(
                    "source {} is a {} source but holds {} records",
                    stored.source,
                    crate::config::spelling(&kind),
                    range.kind.as_str()
                ),
                _ => {}
            }
            let region = sources.get(&stored.source).and_then(|s| s.default_region);
            entries.push(message::rebuild(range.kind, stored, region)?);
        }
        let deliveries = entries.iter().map(|entry| {
            let record = FutureRecord::to(&topic)
                .key(entry.key.as_bytes())
                .payload(entry.payload.as_bytes())
                .headers(kafka::headers(entry));
            producer.send(record, Timeout::After(kafka.message_timeout))
        });
        for result in join_all(deliveries).await {
            result
                .map_err(|(e, _)| e)
                .context("delivering a replayed record")?;
            sent += 1;
        }
        progress(sent);
    }
    Ok(sent)
}
