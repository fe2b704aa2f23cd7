//! One call's timeline, for `ringback calls show`, and records found by id, dedupe key or
//! number, for `ringback events find`. The timeline: its status events (Huawei) or Call
//! Automation events (ACS) in order, its CDRs with their codes explained from the lookup tables,
//! the dead letters whose body names it, and whether each record has reached Kafka. Every query
//! goes by an indexed column (`session_id`, `icid`, `call_connection_id`, `server_call_id`,
//! `correlation_id`; dead letters by `received_at` within a bounded window) and is capped.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row, SqlitePool};

use super::dialect::{on_pool, Dialect};
use super::StoreError;
use crate::domain::RecordKind;

/// Rows of each kind a timeline shows at most.
const CAP: i64 = 500;
/// How far around the call's records its dead letters are looked for: a fee push comes up to 6
/// retries an hour apart after the call, a refused status push at its time.
const LETTERS_BEFORE: i64 = 1;
const LETTERS_AFTER: i64 = 8;

/// The database the calls are in.
#[derive(Debug, Clone)]
pub enum Calls {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Whether a record is on Kafka: its outbox entry published (or already deleted after
/// publishing), waiting, or failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnKafka {
    Published,
    Pending,
    Failed,
}

/// One event of the call, Huawei status or ACS Call Automation.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// What the event says beyond its type (numbers, hang-up cause and its meaning, result).
    pub detail: serde_json::Map<String, serde_json::Value>,
    pub kafka: OnKafka,
}

/// The call's CDR, its durations and codes explained.
#[derive(Debug, Clone, Serialize)]
pub struct Cdr {
    pub id: String,
    pub source: String,
    pub icid: Option<String>,
    pub session_id: String,
    pub caller_num: String,
    pub callee_num: String,
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub answered: bool,
    pub ring_seconds: Option<i64>,
    pub talk_seconds: Option<i64>,
    pub billable_minutes: Option<i64>,
    pub ul_fail_reason: Option<i64>,
    pub ul_fail_reason_meaning: Option<String>,
    pub fwd_unasw_rsn: Option<i64>,
    pub fwd_unasw_rsn_meaning: Option<String>,
    pub call_out_unasw_rsn: Option<i64>,
    pub call_out_unasw_rsn_meaning: Option<String>,
    pub kafka: OnKafka,
}

/// A dead letter whose body names the call.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub id: String,
    pub source: String,
    pub received_at: DateTime<Utc>,
    pub request_id: Option<String>,
    pub code: String,
    pub detail: String,
    pub field: Option<String>,
}

/// Everything stored about one call.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// What was asked for.
    pub id: String,
    /// Huawei's session id, when the call is a Huawei one.
    pub session_id: Option<String>,
    pub events: Vec<Event>,
    pub cdrs: Vec<Cdr>,
    pub dead_letters: Vec<Letter>,
}

impl Timeline {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.cdrs.is_empty() && self.dead_letters.is_empty()
    }
}

/// `$1`, `$2`… or `?1`, `?2`….
fn p(d: &Dialect, n: usize) -> String {
    format!("{}{n}", d.placeholder)
}

macro_rules! cdr_of {
    ($row:expr) => {{
        let r = $row;
        Cdr {
            id: r.try_get("id")?,
            source: r.try_get("source")?,
            icid: r.try_get("icid")?,
            session_id: r.try_get("session_id")?,
            caller_num: r.try_get("caller_num")?,
            callee_num: r.try_get("callee_num")?,
            started_at: r.try_get("started_at")?,
            answered_at: r.try_get("answered_at")?,
            ended_at: r.try_get("ended_at")?,
            answered: r.try_get("answered")?,
            ring_seconds: r.try_get::<Option<i32>, _>("ring_seconds")?.map(i64::from),
            talk_seconds: r.try_get::<Option<i32>, _>("talk_seconds")?.map(i64::from),
            billable_minutes: r
                .try_get::<Option<i32>, _>("billable_minutes")?
                .map(i64::from),
            ul_fail_reason: r
                .try_get::<Option<i32>, _>("ul_fail_reason")?
                .map(i64::from),
            ul_fail_reason_meaning: r.try_get("ul_fail_reason_meaning")?,
            fwd_unasw_rsn: r.try_get::<Option<i32>, _>("fwd_unasw_rsn")?.map(i64::from),
            fwd_unasw_rsn_meaning: r.try_get("fwd_unasw_rsn_meaning")?,
            call_out_unasw_rsn: r
                .try_get::<Option<i32>, _>("call_out_unasw_rsn")?
                .map(i64::from),
            call_out_unasw_rsn_meaning: r.try_get("call_out_unasw_rsn_meaning")?,
            kafka: OnKafka::Published,
        }
    }};
}

/// An [`Event`] of a row with `id`, `source`, `event_type`, `occurred_at`, `received_at`.
macro_rules! event_of {
    ($row:expr, $detail:expr) => {{
        let r = $row;
        Event {
            id: r.try_get("id")?,
            source: r.try_get("source")?,
            event_type: r.try_get("event_type")?,
            occurred_at: r.try_get("occurred_at")?,
            received_at: r.try_get("received_at")?,
            detail: $detail,
            kafka: OnKafka::Published,
        }
    }};
}

/// Adds `key: value` to `map` when the value is not null.
fn put(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: serde_json::Value) {
    if !value.is_null() {
        map.insert(key.to_owned(), value);
    }
}

impl Calls {
    /// The timeline of the call `id` names: a Huawei session id or icid, or an ACS call
    /// connection id, server call id or correlation id.
    pub async fn timeline(&self, id: &str) -> Result<Timeline, StoreError> {
        let mut cdrs = self.cdrs(id).await?;
        // Asked by icid: the events are the CDR's session's.
        let session = cdrs
            .first()
            .map(|c| c.session_id.clone())
            .unwrap_or_else(|| id.to_owned());
        if session != id {
            cdrs = self.cdrs(&session).await?;
        }
        let mut events = self.status_events(&session).await?;
        let huawei = !events.is_empty() || !cdrs.is_empty();
        events.extend(self.acs_events(id).await?);
        events.sort_by_key(|e| (e.occurred_at, e.received_at));
        let times = events
            .iter()
            .map(|e| e.received_at)
            .chain(cdrs.iter().filter_map(|c| c.ended_at));
        let (first, last) = times.fold((None, None), |(lo, hi), t| {
            (
                Some(lo.map_or(t, |lo: DateTime<Utc>| lo.min(t))),
                Some(hi.map_or(t, |hi: DateTime<Utc>| hi.max(t))),
            )
        });
        let now = Utc::now();
        let (from, to) = match (first, last) {
            (Some(first), Some(last)) => (
                first - Duration::hours(LETTERS_BEFORE),
                last + Duration::hours(LETTERS_AFTER),
            ),
            // Nothing stored: its letters, if any, of the last week.
            _ => (now - Duration::days(7), now + Duration::minutes(1)),
        };
        let dead_letters = self.letters_naming(id, from, to).await?;
        let ids: Vec<String> = events
            .iter()
            .map(|e| e.id.clone())
            .chain(cdrs.iter().map(|c| c.id.clone()))
            .collect();
        let states = self.kafka_states(&ids).await?;
        for e in &mut events {
            e.kafka = states.get(&e.id).copied().unwrap_or(OnKafka::Published);
        }
        for c in &mut cdrs {
            c.kafka = states.get(&c.id).copied().unwrap_or(OnKafka::Published);
        }
        Ok(Timeline {
            id: id.to_owned(),
            session_id: huawei.then_some(session),
            events,
            cdrs,
            dead_letters,
        })
    }

    async fn cdrs(&self, id: &str) -> Result<Vec<Cdr>, StoreError> {
        on_pool!(Calls, self, |pool, d| {
            let sql = format!(
                "SELECT CAST(id AS TEXT) AS id, source, icid, session_id, caller_num, \
                        callee_num, started_at, answered_at, ended_at, answered, ring_seconds, \
                        talk_seconds, billable_minutes, ul_fail_reason, ul_fail_reason_meaning, \
                        fwd_unasw_rsn, fwd_unasw_rsn_meaning, call_out_unasw_rsn, \
                        call_out_unasw_rsn_meaning \
                   FROM cdrs_explained WHERE session_id = {a} OR icid = {a} \
                  ORDER BY received_at LIMIT {CAP}",
                a = p(d, 1)
            );
            let rows = sqlx::query(&sql).bind(id).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(cdr_of!(r));
            }
            Ok(out)
        })
    }

    async fn status_events(&self, session: &str) -> Result<Vec<Event>, StoreError> {
        on_pool!(Calls, self, |pool, d| {
            let sql = format!(
                "SELECT CAST(id AS TEXT) AS id, source, event_type, occurred_at, received_at, \
                        caller, called, party_type, digit_info, state_code, state_desc, \
                        state_meaning \
                   FROM call_events_explained WHERE session_id = {} \
                  ORDER BY occurred_at, received_at LIMIT {CAP}",
                p(d, 1)
            );
            let rows = sqlx::query(&sql).bind(session).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut detail = serde_json::Map::new();
                for key in ["caller", "called", "party_type", "digit_info", "state_desc"] {
                    put(
                        &mut detail,
                        key,
                        r.try_get::<Option<String>, _>(key)?.into(),
                    );
                }
                put(
                    &mut detail,
                    "state_code",
                    r.try_get::<Option<i32>, _>("state_code")?.into(),
                );
                put(
                    &mut detail,
                    "state_meaning",
                    r.try_get::<Option<String>, _>("state_meaning")?.into(),
                );
                out.push(event_of!(r, detail));
            }
            Ok(out)
        })
    }

    async fn acs_events(&self, id: &str) -> Result<Vec<Event>, StoreError> {
        on_pool!(Calls, self, |pool, d| {
            let sql = format!(
                "SELECT CAST(id AS TEXT) AS id, source, event_type, occurred_at, received_at, \
                        call_connection_id, server_call_id, correlation_id, participant_phone, \
                        result_code, result_sub_code, result_message, end_reason_code, \
                        transfer_target, duration_seconds \
                   FROM acs_call_events \
                  WHERE call_connection_id = {a} OR server_call_id = {a} \
                        OR correlation_id = {a} \
                  ORDER BY occurred_at, received_at LIMIT {CAP}",
                a = p(d, 1)
            );
            let rows = sqlx::query(&sql).bind(id).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut detail = serde_json::Map::new();
                for key in [
                    "call_connection_id",
                    "server_call_id",
                    "correlation_id",
                    "participant_phone",
                    "result_message",
                    "transfer_target",
                ] {
                    put(
                        &mut detail,
                        key,
                        r.try_get::<Option<String>, _>(key)?.into(),
                    );
                }
                for key in ["result_code", "result_sub_code", "end_reason_code"] {
                    put(&mut detail, key, r.try_get::<Option<i32>, _>(key)?.into());
                }
                put(
                    &mut detail,
                    "duration_seconds",
                    r.try_get::<Option<f64>, _>("duration_seconds")?.into(),
                );
                out.push(event_of!(r, detail));
            }
            Ok(out)
        })
    }

    /// Dead letters received in `[from, to)` whose body holds `id` (its bytes).
    async fn letters_naming(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Letter>, StoreError> {
        on_pool!(Calls, self, |pool, d| {
            let holds = if d.placeholder == "$" {
                "position(convert_to($1, 'UTF8') in body) > 0"
            } else {
                "instr(body, CAST(?1 AS BLOB)) > 0"
            };
            let sql = format!(
                "SELECT CAST(id AS TEXT) AS id, source, received_at, request_id, code, detail, \
                        field \
                   FROM dead_letters \
                  WHERE received_at >= {} AND received_at < {} AND body IS NOT NULL AND {holds} \
                  ORDER BY received_at, id LIMIT {CAP}",
                p(d, 2),
                p(d, 3)
            );
            let rows = sqlx::query(&sql)
                .bind(id)
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(Letter {
                    id: r.try_get("id")?,
                    source: r.try_get("source")?,
                    received_at: r.try_get("received_at")?,
                    request_id: r.try_get("request_id")?,
                    code: r.try_get("code")?,
                    detail: r.try_get("detail")?,
                    field: r.try_get("field")?,
                });
            }
            Ok(out)
        })
    }

    /// The outbox state of the records `ids` that are still in the outbox (`outbox_records`):
    /// absent means published and deleted (`kafka.retention`).
    async fn kafka_states(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, OnKafka>, StoreError> {
        let mut states = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(states);
        }
        on_pool!(Calls, self, |pool, d| {
            // One line per record, in a row of its own (by the outbox's unique index on `id`)
            // or in its commit's (PostgreSQL: a scan of the commit rows, few while Kafka
            // keeps up).
            let list = if d.placeholder == "$" {
                "SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb) AS v(value)"
            } else {
                "SELECT value FROM json_each(?1)"
            };
            let sql = format!(
                "SELECT CAST(id AS TEXT) AS id, published_at IS NOT NULL AS published, \
                        failed_at IS NOT NULL AS failed \
                   FROM outbox_records WHERE id IN ({list})"
            );
            let json = serde_json::to_string(ids).expect("strings serialise");
            let rows = sqlx::query(&sql).bind(json).fetch_all(pool).await?;
            for r in &rows {
                let state = match (
                    r.try_get::<bool, _>("published")?,
                    r.try_get::<bool, _>("failed")?,
                ) {
                    (true, _) => OnKafka::Published,
                    (false, true) => OnKafka::Failed,
                    (false, false) => OnKafka::Pending,
                };
                states.insert(r.try_get::<String, _>("id")?, state);
            }
            Ok(states)
        })
    }
}

/// What `ringback events find` looks for.
#[derive(Debug, Clone)]
pub enum Find {
    /// A record id (the `ce_id` on Kafka).
    Id(uuid::Uuid),
    /// A dedupe key at any of `sources` (the configured ones: the lookup goes by the unique
    /// `(source, dedupe_key)` index), or the id an ACS or Standard Webhooks sender gave the
    /// event (Event Grid or CloudEvents `id`, `webhook-id`; by the `event_id` index).
    Key { key: String, sources: Vec<String> },
    /// A phone number (E.164, as stored) in calls, CDRs and SMS/phone events in `[since, until)`
    /// (by `occurred_at`: a CDR's is its end): the newest 500 of each kind.
    Number {
        number: String,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
}

/// A record found.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The record kind (`call-status`, `cdr`, `phone-events`, …): its topic.
    pub kind: &'static str,
    pub id: String,
    pub source: String,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub dedupe_key: String,
    /// The call or conversation it belongs to: a session id, call connection, thread, number
    /// or subject (`ringback calls show` takes the call ones).
    pub belongs_to: Option<String>,
    /// The record's JSON as it was received.
    pub raw: serde_json::Value,
    pub kafka: OnKafka,
}

/// What a record of `kind` belongs to, as an SQL expression.
const fn belongs_to(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::CallStatus | RecordKind::Cdr => "session_id",
        RecordKind::PhoneEvent => "phone_number",
        RecordKind::AcsCallEvent => "COALESCE(call_connection_id, server_call_id, correlation_id)",
        RecordKind::ChatEvent => "thread_id",
        RecordKind::WebhookEvent => "subject",
    }
}

/// The columns of a record table that hold phone numbers, each the first column of an index
/// with `occurred_at` second; empty for tables without numbers.
const fn number_columns(kind: RecordKind) -> &'static [&'static str] {
    match kind {
        RecordKind::CallStatus => &["caller", "called"],
        RecordKind::Cdr => &["caller_num", "callee_num"],
        RecordKind::PhoneEvent => &["phone_number"],
        _ => &[],
    }
}

impl Calls {
    /// The records `what` names, oldest first, at most 500 of each kind (for a number, the
    /// newest 500).
    pub async fn find(&self, what: &Find) -> Result<Vec<Found>, StoreError> {
        let mut found = Vec::new();
        for kind in RecordKind::ALL {
            match what {
                Find::Id(id) => {
                    let id = id.to_string();
                    found.extend(self.find_in(kind, FindBy::Id, &[&id], None).await?);
                }
                Find::Key { key, sources } => {
                    for source in sources {
                        let params = [source.as_str(), key.as_str()];
                        found.extend(self.find_in(kind, FindBy::Key, &params, None).await?);
                    }
                    if kind != RecordKind::CallStatus && kind != RecordKind::Cdr {
                        let by_event = self.find_in(kind, FindBy::EventId, &[key], None).await?;
                        // A full dedupe key pasted is found both ways: once is enough.
                        for f in by_event {
                            if !found.iter().any(|g| g.id == f.id) {
                                found.push(f);
                            }
                        }
                    }
                }
                Find::Number {
                    number,
                    since,
                    until,
                } => {
                    found.extend(
                        self.find_in(kind, FindBy::Number, &[number], Some((*since, *until)))
                            .await?,
                    );
                }
            }
        }
        found.sort_by_key(|f| (f.occurred_at, f.received_at));
        let ids: Vec<String> = found.iter().map(|f| f.id.clone()).collect();
        let states = self.kafka_states(&ids).await?;
        for f in &mut found {
            f.kafka = states.get(&f.id).copied().unwrap_or(OnKafka::Published);
        }
        Ok(found)
    }

    async fn find_in(
        &self,
        kind: RecordKind,
        by: FindBy,
        texts: &[&str],
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<Found>, StoreError> {
        on_pool!(Calls, self, |pool, d| {
            let fields = format!(
                "CAST(id AS TEXT) AS id, source, occurred_at, received_at, dedupe_key, \
                 {} AS belongs_to, raw{} AS raw",
                belongs_to(kind),
                d.text_cast
            );
            let table = kind.table();
            let condition = match by {
                FindBy::Id => format!("id = {}{}", p(d, 1), d.uuid_cast),
                FindBy::Key => format!("source = {} AND dedupe_key = {}", p(d, 1), p(d, 2)),
                FindBy::EventId => format!("event_id = {}", p(d, 1)),
                FindBy::Number => String::new(),
            };
            let sql = if let FindBy::Number = by {
                // The newest 500 of each number column, each read backwards along its
                // `(number, occurred_at)` index, so a number on every call (the platform's
                // display number) costs 500 rows, not all of them; then the newest 500.
                let sides: Vec<String> = number_columns(kind)
                    .iter()
                    .map(|column| {
                        format!(
                            "SELECT * FROM (SELECT {fields} FROM {table} \
                               WHERE {column} = {} AND occurred_at >= {} AND occurred_at < {} \
                               ORDER BY occurred_at DESC LIMIT {CAP}) {column}_side",
                            p(d, 1),
                            p(d, 2),
                            p(d, 3)
                        )
                    })
                    .collect();
                if sides.is_empty() {
                    return Ok(Vec::new());
                }
                format!(
                    "SELECT * FROM ({}) found ORDER BY occurred_at DESC LIMIT {CAP}",
                    sides.join(" UNION ")
                )
            } else {
                format!("SELECT {fields} FROM {table} WHERE {condition} ORDER BY occurred_at LIMIT {CAP}")
            };
            let mut query = sqlx::query(&sql);
            for t in texts {
                query = query.bind(*t);
            }
            if let Some((since, until)) = range {
                query = query.bind(since).bind(until);
            }
            let rows = query.fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let raw: String = r.try_get("raw")?;
                out.push(Found {
                    kind: kind.as_str(),
                    id: r.try_get("id")?,
                    source: r.try_get("source")?,
                    occurred_at: r.try_get("occurred_at")?,
                    received_at: r.try_get("received_at")?,
                    dedupe_key: r.try_get("dedupe_key")?,
                    belongs_to: r.try_get("belongs_to")?,
                    raw: serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw)),
                    kafka: OnKafka::Published,
                });
            }
            Ok(out)
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum FindBy {
    Id,
    /// `(source, dedupe_key)`, the unique index of every record table.
    Key,
    /// `event_id` of the ACS and Standard Webhooks tables (migration 0017 / SQLite 0014).
    EventId,
    Number,
}

/// Records a source sent of one kind since an instant (the console's overview).
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub source: String,
    pub kind: &'static str,
    pub records: i64,
    /// At least `records`: more came than the overview counts ([`ACTIVITY_CAP`] per kind).
    pub capped: bool,
    pub last_received_at: DateTime<Utc>,
}

/// Rows of each kind the overview counts at most: the count walks the `(received_at, id)`
/// index backwards from now, so its cost is bounded whatever the load.
pub const ACTIVITY_CAP: i64 = 10_000;

/// A partitioned table's monthly partitions (PostgreSQL).
#[derive(Debug, Clone, Serialize)]
pub struct Partitions {
    pub table: String,
    pub months: i64,
    pub oldest: Option<String>,
    pub newest: Option<String>,
}

impl Calls {
    /// Per source and kind, the records received since `since` and the last one's time.
    pub async fn activity(&self, since: DateTime<Utc>) -> Result<Vec<Activity>, StoreError> {
        let mut out = Vec::new();
        for kind in RecordKind::ALL {
            on_pool!(Calls, self, |pool, d| {
                let sql = format!(
                    "SELECT source, COUNT(*) AS n, MAX(received_at) AS last FROM \
                       (SELECT source, received_at FROM {} WHERE received_at >= {} \
                         ORDER BY received_at DESC LIMIT {}) recent \
                     GROUP BY source ORDER BY source",
                    kind.table(),
                    p(d, 1),
                    ACTIVITY_CAP + 1
                );
                let rows = sqlx::query(&sql).bind(since).fetch_all(pool).await?;
                let total: i64 = rows.iter().map(|r| r.get::<i64, _>("n")).sum();
                for r in &rows {
                    out.push(Activity {
                        source: r.try_get("source")?,
                        kind: kind.as_str(),
                        records: r.try_get("n")?,
                        capped: total > ACTIVITY_CAP,
                        last_received_at: r.try_get("last")?,
                    });
                }
                Ok::<_, StoreError>(())
            })?;
        }
        Ok(out)
    }

    /// The monthly partitions of each partitioned table; empty on SQLite (not partitioned).
    pub async fn partitions(&self) -> Result<Vec<Partitions>, StoreError> {
        let Self::Postgres(pool) = self else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT p.relname::text AS parent, count(*) AS months, \
                    min(c.relname::text) AS oldest, max(c.relname::text) AS newest \
               FROM pg_inherits i \
               JOIN pg_class c ON c.oid = i.inhrelid \
               JOIN pg_class p ON p.oid = i.inhparent \
              WHERE p.relkind = 'p' AND c.relname NOT LIKE '%\\_default' \
                AND p.relnamespace = 'public'::regnamespace \
              GROUP BY p.relname ORDER BY p.relname",
        )
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Partitions {
                    table: r.try_get("parent")?,
                    months: r.try_get("months")?,
                    oldest: r.try_get("oldest")?,
                    newest: r.try_get("newest")?,
                })
            })
            .collect()
    }
}
