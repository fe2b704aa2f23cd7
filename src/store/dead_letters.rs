//! The dead letters' side of `ringback dead-letters`: finding them, leasing one to a
//! reprocessor, and recording what became of it (migration 0012 / SQLite 0010).
//!
//! Two reprocessors (two machines, or a run started twice) never work on one letter at once: a
//! reprocessor leases a letter with one conditional `UPDATE` (the database's row lock decides
//! who wins), and only the holder of the lease may record the outcome. A run that dies keeps
//! its lease until it lapses; the letter is then free again. A letter with an outcome is done
//! and taken by no later run; `--again` gives still-refused ones another try.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row, SqlitePool};
use uuid::Uuid;

use super::dialect::{on_pool, Dialect};
use super::StoreError;

/// The database the dead letters are in.
#[derive(Debug, Clone)]
pub enum DeadLetters {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Which dead letters: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub source: Option<String>,
    pub code: Option<String>,
    /// Of the request answered with this `X-Request-Id`.
    pub request_id: Option<String>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    pub until: Option<DateTime<Utc>>,
    /// These ids only (empty: any).
    pub ids: Vec<Uuid>,
    /// Only the letters a reprocess would take: with a body, and never reprocessed (or, with
    /// `again`, still refused after it).
    pub pending: bool,
    pub again: bool,
}

/// What became of a reprocessed dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reprocessed {
    /// It now parses; at least one of its records is new.
    Committed,
    /// It now parses, and every record was stored already.
    Duplicate,
    /// Some records now parse (stored); the others are still refused.
    Partial,
    /// Still refused.
    Refused,
}

impl Reprocessed {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::Duplicate => "duplicate",
            Self::Partial => "partial",
            Self::Refused => "refused",
        }
    }
}

/// A dead letter as stored, with what reprocessing made of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Letter {
    pub id: Uuid,
    pub source: String,
    pub received_at: DateTime<Utc>,
    pub request_id: Option<String>,
    /// `request` (the whole body) or `record` (one record of a multi-record body).
    pub scope: String,
    pub record_index: Option<i32>,
    pub code: String,
    pub detail: String,
    pub field: Option<String>,
    #[serde(skip)]
    pub body: Option<Vec<u8>>,
    pub body_bytes: Option<i32>,
    /// The request's headers (JSON object, secrets redacted).
    pub headers: serde_json::Value,
    pub reprocessed_at: Option<DateTime<Utc>>,
    pub reprocess_outcome: Option<String>,
    pub reprocess_code: Option<String>,
    pub reprocess_detail: Option<String>,
    /// The ids of the records it became.
    pub reprocess_records: Option<Vec<Uuid>>,
    /// How the source authenticated when the input arrived (see `domain::DeadLetter::auth`).
    pub auth: Option<String>,
}

/// What a reprocessor records for a letter it holds.
#[derive(Debug, Clone)]
pub struct Finished {
    pub outcome: Reprocessed,
    /// Why it is still (partly) refused.
    pub code: Option<String>,
    pub detail: Option<String>,
    pub records: Vec<Uuid>,
}

/// The columns a [`Letter`] is read from.
fn columns(d: &Dialect) -> String {
    let t = d.text_cast;
    format!(
        "CAST(id AS TEXT) AS id, source, received_at, request_id, scope, record_index, code, \
         detail, field, body, body_bytes, headers{t} AS headers, reprocessed_at, \
         reprocess_outcome, reprocess_code, reprocess_detail, reprocess_records{t} AS records, \
         auth"
    )
}

/// A bound parameter of a query being built.
enum Param {
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
}

/// `WHERE …` of `filter` after the `(received_at, id)` cursor, its parameters in order.
fn conditions(
    d: &Dialect,
    filter: &Filter,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> (String, Vec<Param>) {
    let mut sql = Vec::new();
    let mut params = Vec::new();
    let mut add = |clause: &dyn Fn(&str) -> String, p: Param| {
        params.push(p);
        sql.push(clause(&format!("{}{}", d.placeholder, params.len())));
    };
    if let Some(source) = &filter.source {
        add(&|p| format!("source = {p}"), Param::Text(source.clone()));
    }
    if let Some(code) = &filter.code {
        add(&|p| format!("code = {p}"), Param::Text(code.clone()));
    }
    if let Some(request_id) = &filter.request_id {
        add(
            &|p| format!("request_id = {p}"),
            Param::Text(request_id.clone()),
        );
    }
    if let Some(since) = filter.since {
        add(&|p| format!("received_at >= {p}"), Param::Time(since));
    }
    if let Some(until) = filter.until {
        add(&|p| format!("received_at < {p}"), Param::Time(until));
    }
    if !filter.ids.is_empty() {
        let ids: Vec<String> = filter.ids.iter().map(Uuid::to_string).collect();
        add(
            &|p| {
                format!(
                    "CAST(id AS TEXT) IN (SELECT value FROM {})",
                    json_values(d, p)
                )
            },
            Param::Text(serde_json::to_string(&ids).expect("strings serialise")),
        );
    }
    if let Some((at, id)) = after {
        params.push(Param::Time(at));
        params.push(Param::Text(id.to_string()));
        let n = params.len();
        sql.push(format!(
            "(received_at > {p}{} OR (received_at = {p}{} AND id > {p}{n}{}))",
            n - 1,
            n - 1,
            d.uuid_cast,
            p = d.placeholder
        ));
    }
    let mut clauses = sql;
    if filter.pending {
        clauses.push("body IS NOT NULL".to_owned());
        clauses.push(if filter.again {
            "(reprocess_outcome IS NULL OR reprocess_outcome = 'refused')".to_owned()
        } else {
            "reprocess_outcome IS NULL".to_owned()
        });
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (clause, params)
}

/// The elements of a JSON array of strings bound as parameter `p`, as a table of `value`.
fn json_values(d: &Dialect, p: &str) -> String {
    if d.placeholder == "$" {
        format!("jsonb_array_elements_text({p}::jsonb) AS v(value)")
    } else {
        format!("json_each({p})")
    }
}

macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut q = $query;
        for p in $params {
            q = match p {
                Param::Text(s) => q.bind(s),
                Param::Time(t) => q.bind(t),
                Param::Int(i) => q.bind(i),
            };
        }
        q
    }};
}

macro_rules! letter_of {
    ($row:expr) => {{
        let row = $row;
        let records: Option<String> = row.try_get("records")?;
        let headers: String = row.try_get("headers")?;
        Letter {
            id: parse_uuid(row.try_get::<String, _>("id")?)?,
            source: row.try_get("source")?,
            received_at: row.try_get("received_at")?,
            request_id: row.try_get("request_id")?,
            scope: row.try_get("scope")?,
            record_index: row.try_get("record_index")?,
            code: row.try_get("code")?,
            detail: row.try_get("detail")?,
            field: row.try_get("field")?,
            body: row.try_get("body")?,
            body_bytes: row.try_get("body_bytes")?,
            headers: serde_json::from_str(&headers).unwrap_or(serde_json::Value::Null),
            reprocessed_at: row.try_get("reprocessed_at")?,
            reprocess_outcome: row.try_get("reprocess_outcome")?,
            reprocess_code: row.try_get("reprocess_code")?,
            reprocess_detail: row.try_get("reprocess_detail")?,
            reprocess_records: records.and_then(|r| serde_json::from_str(&r).ok()),
            auth: row.try_get("auth")?,
        }
    }};
}

fn parse_uuid(text: String) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&text).map_err(|e| StoreError::Rejected(sqlx::Error::Decode(Box::new(e))))
}

impl DeadLetters {
    /// Up to `limit` letters of `filter` after the cursor, in arrival order.
    pub async fn page(
        &self,
        filter: &Filter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Letter>, StoreError> {
        on_pool!(DeadLetters, self, |pool, d| {
            let (clause, mut params) = conditions(d, filter, after);
            params.push(Param::Int(i64::from(limit)));
            let sql = format!(
                "SELECT {} FROM dead_letters {clause} ORDER BY received_at, id LIMIT {}{}",
                columns(d),
                d.placeholder,
                params.len()
            );
            let rows = bind_params!(sqlx::query(&sql), params)
                .fetch_all(pool)
                .await?;
            let mut letters = Vec::with_capacity(rows.len());
            for row in &rows {
                letters.push(letter_of!(row));
            }
            Ok(letters)
        })
    }

    /// Letters received since `since` by `(source, code)`, most first, counting at most
    /// `cap + 1` letters in all (the console's overview: a flood of refusals costs it `cap`
    /// rows, not the flood).
    pub async fn counts_since(
        &self,
        since: DateTime<Utc>,
        cap: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        on_pool!(DeadLetters, self, |pool, d| {
            let sql = format!(
                "SELECT source, code, COUNT(*) AS n FROM \
                   (SELECT source, code FROM dead_letters WHERE received_at >= {}1 LIMIT {}) recent \
                 GROUP BY source, code ORDER BY n DESC, source, code",
                d.placeholder,
                cap + 1
            );
            let rows = sqlx::query(&sql).bind(since).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get("source")?, r.try_get("code")?, r.try_get("n")?)))
                .collect()
        })
    }

    /// The letter `id`, if there is one.
    pub async fn one(&self, id: Uuid) -> Result<Option<Letter>, StoreError> {
        let filter = Filter {
            ids: vec![id],
            ..Filter::default()
        };
        Ok(self.page(&filter, None, 1).await?.pop())
    }

    /// Leases `letter` to `claimant` until `until`, unless it has an outcome (and `again` does
    /// not take it back) or another claimant's lease runs past `now`. True when leased.
    pub async fn claim(
        &self,
        letter: &Letter,
        claimant: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        again: bool,
    ) -> Result<bool, StoreError> {
        let done = if again {
            "(reprocess_outcome IS NULL OR reprocess_outcome = 'refused')"
        } else {
            "reprocess_outcome IS NULL"
        };
        on_pool!(DeadLetters, self, |pool, d| {
            let p = d.placeholder;
            let sql = format!(
                "UPDATE dead_letters SET reprocess_claimed_by = {p}1, reprocess_claimed_until = {p}2 \
                 WHERE id = {p}3{} AND received_at = {p}4 AND {done} \
                   AND (reprocess_claimed_until IS NULL OR reprocess_claimed_until < {p}5 \
                        OR reprocess_claimed_by = {p}1)",
                d.uuid_cast
            );
            let done = sqlx::query(&sql)
                .bind(claimant)
                .bind(until)
                .bind(letter.id.to_string())
                .bind(letter.received_at)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Records what became of a letter `claimant` holds, and ends the lease. False when the
    /// lease was lost (it lapsed and another reprocessor took the letter).
    pub async fn finish(
        &self,
        letter: &Letter,
        claimant: &str,
        at: DateTime<Utc>,
        finished: &Finished,
    ) -> Result<bool, StoreError> {
        let ids: Vec<String> = finished.records.iter().map(Uuid::to_string).collect();
        let records = serde_json::to_string(&ids).expect("strings serialise");
        on_pool!(DeadLetters, self, |pool, d| {
            let p = d.placeholder;
            let sql = format!(
                "UPDATE dead_letters SET reprocessed_at = {p}1, reprocess_outcome = {p}2, \
                   reprocess_code = {p}3, reprocess_detail = {p}4, reprocess_records = {p}5{}, \
                   reprocess_claimed_until = NULL \
                 WHERE id = {p}6{} AND received_at = {p}7 AND reprocess_claimed_by = {p}8",
                d.json_cast, d.uuid_cast
            );
            let done = sqlx::query(&sql)
                .bind(at)
                .bind(finished.outcome.as_str())
                .bind(finished.code.as_deref())
                .bind(finished.detail.as_deref())
                .bind(&records)
                .bind(letter.id.to_string())
                .bind(letter.received_at)
                .bind(claimant)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
