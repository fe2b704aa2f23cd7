//! The oracle: an emulator's ledger checked against the target's database (PostgreSQL or
//! SQLite) and Kafka. Every record of a push answered `200` must be stored once (its id, which
//! ringback derives from the source and the record's dedupe key, is in its table: ids are
//! unique there, so "once" is "present") and published (its outbox entry gone or marked
//! published, and, when brokers are given, its `ce_id` read back from its topic); every push sent
//! malformed must have been refused and kept as a dead letter (found by the `X-Request-Id` the
//! emulator sent); every push the platform gave up on (a status push not answered 200: never
//! retried; a fee push after its last retry) is reported as lost. The verdict is clean when
//! nothing is missing, unpublished, unrefused or lost.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use uuid::Uuid;

use super::ledger::Attempt;
use crate::config::Config;
use crate::domain::RecordKind;

/// At most this many examples of each problem are listed.
const EXAMPLES: usize = 20;

/// What the oracle found.
#[derive(Debug, Default, Serialize)]
pub struct Verdict {
    pub pushes: usize,
    pub attempts: usize,
    /// Attempts after the first (the platform's retries).
    pub retries: usize,
    /// Distinct records of pushes answered 200.
    pub acknowledged_records: usize,
    pub stored: usize,
    /// Acknowledged records not in their table (examples).
    pub missing: Vec<Uuid>,
    pub missing_count: usize,
    /// Stored records whose outbox entry is still waiting (or failed for good).
    pub unpublished: usize,
    /// Read back from Kafka (when brokers were given).
    pub on_kafka: Option<usize>,
    pub missing_on_kafka: Vec<Uuid>,
    pub missing_on_kafka_count: usize,
    /// Pushes sent malformed on purpose.
    pub malformed: usize,
    /// Malformed pushes with a dead letter of their request id.
    pub malformed_dead_lettered: usize,
    /// Malformed pushes answered 2xx, or refused without a dead letter (request ids).
    pub malformed_not_kept: Vec<String>,
    /// Pushes the platform gave up on (never acknowledged, no retry left): what, and the last
    /// answer.
    pub lost: Vec<String>,
    pub lost_count: usize,
    /// Attempts of a push already acknowledged (a retry after a lost acknowledgement, a
    /// redelivery) that were answered 2xx, and of those, answered as duplicates.
    pub resent_after_ack: usize,
    pub resent_answered_duplicate: usize,
    /// Per push kind: pushes, acknowledged, lost.
    pub by_push: BTreeMap<String, (usize, usize, usize)>,
    pub clean: bool,
}

impl Verdict {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} pushes in {} attempts ({} retries); {} records acknowledged, {} stored, {} \
             missing, {} unpublished",
            self.pushes,
            self.attempts,
            self.retries,
            self.acknowledged_records,
            self.stored,
            self.missing_count,
            self.unpublished
        );
        if let Some(k) = self.on_kafka {
            out += &format!(
                "; {k} read back from Kafka, {} missing there",
                self.missing_on_kafka_count
            );
        }
        out += &format!(
            "; {} malformed pushes, {} kept as dead letters; {} pushes lost by the platform's rules; \
             {} pushes sent again after a 2xx, {} answered as duplicates",
            self.malformed,
            self.malformed_dead_lettered,
            self.lost_count,
            self.resent_after_ack,
            self.resent_answered_duplicate
        );
        for (push, (n, ok, lost)) in &self.by_push {
            out += &format!("\n  {push}: {n} pushes, {ok} acknowledged, {lost} lost");
        }
        for id in &self.missing {
            out += &format!("\n  missing: {id}");
        }
        for id in &self.missing_on_kafka {
            out += &format!("\n  not on Kafka: {id}");
        }
        for r in &self.malformed_not_kept {
            out += &format!("\n  malformed but not a dead letter: request {r}");
        }
        for p in &self.lost {
            out += &format!("\n  lost: {p}");
        }
        out += if self.clean {
            "\nverdict: CLEAN"
        } else {
            "\nverdict: NOT CLEAN"
        };
        out
    }
}

/// The database the target writes to.
enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres") {
            Ok(Self::Postgres(sqlx::PgPool::connect(url).await?))
        } else {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
            Ok(Self::Sqlite(
                sqlx::SqlitePool::connect_with(options.read_only(true)).await?,
            ))
        }
    }

    /// The first column of `sql`'s rows, as text.
    async fn texts(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
        })
    }
}

/// `'id', 'id', …` (UUIDs print as hex and dashes: safe to inline).
fn list<'a>(ids: impl Iterator<Item = &'a Uuid>) -> String {
    ids.map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Of `ids`, those in `table` (by `column`, compared as text).
async fn present(
    db: &Db,
    table: &str,
    column: &str,
    ids: &[Uuid],
) -> anyhow::Result<HashSet<Uuid>> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT CAST({column} AS TEXT) FROM {table} WHERE {column} IN ({})",
            list(chunk.iter())
        );
        for text in db.texts(&sql).await? {
            found.insert(text.parse()?);
        }
    }
    Ok(found)
}

/// Checks `attempts` against the database and Kafka `config` names, waiting up to `wait` for
/// the publisher to catch up.
pub async fn verify(
    attempts: &[Attempt],
    config: &Config,
    wait: Duration,
) -> anyhow::Result<Verdict> {
    let db = Db::connect(&config.database.url)
        .await
        .context("connecting to the target's database")?;
    let mut v = Verdict {
        attempts: attempts.len(),
        retries: attempts.iter().filter(|a| a.attempt > 1).count(),
        ..Verdict::default()
    };
    // Per push: its attempts in order.
    let mut pushes: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        pushes.entry(&a.push_id).or_default().push(a);
    }
    v.pushes = pushes.len();
    let mut acknowledged: BTreeMap<Uuid, &'static str> = BTreeMap::new();
    let mut malformed = Vec::new();
    for (push_id, tries) in &pushes {
        let last = tries.last().expect("a push has an attempt");
        let ok = tries.iter().any(|a| a.acknowledged());
        if let Some(first) = tries.iter().position(|a| a.acknowledged()) {
            for again in tries[first + 1..].iter().filter(|a| a.acknowledged()) {
                v.resent_after_ack += 1;
                if again.duplicates.is_some_and(|d| d > 0) {
                    v.resent_answered_duplicate += 1;
                }
            }
        }
        let entry = v.by_push.entry(last.push.clone()).or_default();
        entry.0 += 1;
        if last.malformed {
            malformed.push(*last);
            continue;
        }
        if ok {
            entry.1 += 1;
            for r in &last.records {
                acknowledged.insert(r.id, kind_name(&r.kind));
            }
        } else if !last.will_retry && last.push != "handshake" {
            // (A failed handshake fails the run itself.)
            entry.2 += 1;
            v.lost_count += 1;
            if v.lost.len() < EXAMPLES {
                let answer = match (last.status, &last.error) {
                    (Some(status), _) => format!("answered {status}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "no answer".into(),
                };
                v.lost.push(format!(
                    "{} push {push_id} after {} attempt(s): {answer}",
                    last.push, last.attempt
                ));
            }
        }
    }
    v.acknowledged_records = acknowledged.len();

    // Malformed pushes: refused, and kept with their request id.
    v.malformed = malformed.len();
    let request_ids: Vec<&str> = malformed.iter().map(|a| a.request_id.as_str()).collect();
    let mut kept = HashSet::new();
    for chunk in request_ids.chunks(500) {
        let quoted: Vec<String> = chunk
            .iter()
            .map(|r| format!("'{}'", r.replace('\'', "''")))
            .collect();
        let sql = format!(
            "SELECT request_id FROM dead_letters WHERE request_id IN ({})",
            quoted.join(",")
        );
        kept.extend(db.texts(&sql).await?);
    }
    for a in &malformed {
        if !a.acknowledged() && kept.contains(&a.request_id) {
            v.malformed_dead_lettered += 1;
        } else if v.malformed_not_kept.len() < EXAMPLES {
            v.malformed_not_kept.push(a.request_id.clone());
        }
    }

    // Stored once, then published: polled until it holds or `wait` is over.
    let deadline = Instant::now() + wait;
    let by_kind = |ids: &BTreeMap<Uuid, &'static str>| {
        let mut m: BTreeMap<&'static str, Vec<Uuid>> = BTreeMap::new();
        for (id, kind) in ids {
            m.entry(*kind).or_default().push(*id);
        }
        m
    };
    // Outbox-only mode publishes nothing, and an embedded broker lives in the target's
    // process: only real brokers can be read back.
    let brokers = config.kafka.brokers.real();
    let kafka_on = brokers.is_some();
    loop {
        let mut stored = HashSet::new();
        for (kind, ids) in by_kind(&acknowledged) {
            let table = RecordKind::from_name(kind)
                .with_context(|| format!("a record kind ringback does not know: {kind}"))?
                .table();
            stored.extend(present(&db, table, "id", &ids).await?);
        }
        let stored_ids: Vec<Uuid> = stored.iter().copied().collect();
        let waiting = {
            let mut waiting = 0;
            for chunk in stored_ids.chunks(500) {
                let sql = format!(
                    "SELECT CAST(id AS TEXT) FROM outbox_records WHERE published_at IS NULL AND id IN ({})",
                    list(chunk.iter())
                );
                waiting += db.texts(&sql).await?.len();
            }
            waiting
        };
        v.stored = stored.len();
        v.unpublished = if kafka_on { waiting } else { 0 };
        let missing: Vec<Uuid> = acknowledged
            .keys()
            .filter(|id| !stored.contains(id))
            .copied()
            .collect();
        v.missing_count = missing.len();
        v.missing = missing.into_iter().take(EXAMPLES).collect();
        if (v.missing_count == 0 && v.unpublished == 0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    if let Some(brokers) = brokers {
        let since = attempts.iter().map(|a| a.at).min();
        let read = read_back(config, brokers, &by_kind(&acknowledged), since).await?;
        let missing: Vec<Uuid> = acknowledged
            .keys()
            .filter(|id| !read.contains(id))
            .copied()
            .collect();
        v.on_kafka = Some(acknowledged.len() - missing.len());
        v.missing_on_kafka_count = missing.len();
        v.missing_on_kafka = missing.into_iter().take(EXAMPLES).collect();
    }
    v.clean = v.missing_count == 0
        && v.resent_answered_duplicate == v.resent_after_ack
        && v.unpublished == 0
        && v.missing_on_kafka_count == 0
        && v.malformed_not_kept.is_empty()
        && v.lost_count == 0;
    Ok(v)
}

fn kind_name(kind: &str) -> &'static str {
    RecordKind::from_name(kind).map_or("?", RecordKind::as_str)
}

/// The `ce_id`s of `want` read back from their topics, from a minute before `since`, until all
/// are seen or nothing new came for ten seconds.
async fn read_back(
    config: &Config,
    brokers: &str,
    want: &BTreeMap<&str, Vec<Uuid>>,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<HashSet<Uuid>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};

    let mut client = crate::publish::kafka::client_config(brokers, &config.kafka)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    client
        .set("group.id", format!("ringback-verify-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false");
    let topics: Vec<String> = want.keys().map(|k| config.kafka.topic(k)).collect();
    let wanted: HashSet<Uuid> = want.values().flatten().copied().collect();
    let from = since.map_or(0, |t| t.timestamp_millis() - 60_000);
    tokio::task::spawn_blocking(move || -> anyhow::Result<HashSet<Uuid>> {
        let consumer: BaseConsumer = client.create().context("a Kafka consumer")?;
        let mut at_time = TopicPartitionList::new();
        for topic in &topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("metadata of {topic}"))?;
            for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
                at_time.add_partition_offset(topic, p.id(), Offset::Offset(from))?;
            }
        }
        let start = consumer
            .offsets_for_times(at_time, Duration::from_secs(10))
            .context("offsets for the run's start")?;
        let mut assigned = TopicPartitionList::new();
        for e in start.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::End,
            };
            assigned.add_partition_offset(e.topic(), e.partition(), offset)?;
        }
        consumer.assign(&assigned)?;
        let mut seen = HashSet::new();
        let mut idle = Instant::now();
        while seen.len() < wanted.len() && idle.elapsed() < Duration::from_secs(10) {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            idle = Instant::now();
            let id = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "ce_id"))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<Uuid>().ok());
            if let Some(id) = id.filter(|id| wanted.contains(id)) {
                seen.insert(id);
            }
        }
        Ok(seen)
    })
    .await?
}
