//! What the two databases spell differently: casts, placeholders, lists of ids. The SQL both
//! run is written once, here or in `tables`, and spelled per database through a [`Dialect`].

use crate::domain::{CdrFlag, RecordKind};

/// How one database spells what the other spells differently.
pub(crate) struct Dialect {
    /// Appended to a bound uuid text (`::uuid` in PostgreSQL).
    pub uuid_cast: &'static str,
    /// Appended to a bound JSON text (`::jsonb` in PostgreSQL).
    pub json_cast: &'static str,
    /// Appended to a bound flags text (`::text[]` in PostgreSQL).
    pub flags_cast: &'static str,
    /// Renders CDR flags as the bound text.
    pub flags: fn(&[CdrFlag]) -> String,
    /// Most bound parameters in one statement.
    pub max_params: usize,
    /// What comes before a parameter's number (`$1`, `?1`).
    pub placeholder: &'static str,
    /// Appended to an expression read as text (`raw::text` in PostgreSQL).
    pub text_cast: &'static str,
    /// `<id> …`: membership in the list of ids bound as parameter `n`.
    pub ids_in: fn(usize) -> String,
    /// Appended to the claim's row selection so concurrent claimers skip each other's rows.
    pub skip_locked: &'static str,
    /// How many records an outbox row holds: one, or a commit's (`ids`, PostgreSQL).
    pub outbox_records: &'static str,
}

/// `{a,b}`: a PostgreSQL array literal (flag names need no quoting).
pub(crate) fn flags_pg(flags: &[CdrFlag]) -> String {
    let names: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
    format!("{{{}}}", names.join(","))
}

/// `["a","b"]`: a JSON array, queryable with SQLite's json functions.
pub(crate) fn flags_json(flags: &[CdrFlag]) -> String {
    let names: Vec<&str> = flags.iter().map(|f| f.as_str()).collect();
    serde_json::to_string(&names).expect("strings serialise")
}

/// PostgreSQL's spelling.
pub(crate) const POSTGRES: Dialect = Dialect {
    uuid_cast: "::uuid",
    json_cast: "::jsonb",
    flags_cast: "::text[]",
    flags: flags_pg,
    // The protocol allows 65535 bound parameters per statement.
    max_params: 60_000,
    placeholder: "$",
    text_cast: "::text",
    ids_in: |n| format!("= ANY(${n})"),
    skip_locked: " FOR UPDATE SKIP LOCKED",
    outbox_records: "COALESCE(cardinality(ids), 1)",
};

/// SQLite's spelling.
pub(crate) const SQLITE: Dialect = Dialect {
    uuid_cast: "",
    json_cast: "",
    flags_cast: "",
    flags: flags_json,
    // SQLITE_MAX_VARIABLE_NUMBER is 32766 since 3.32.
    max_params: 32_000,
    placeholder: "?",
    text_cast: "",
    // A list of ids is bound as one JSON array text (see `SqliteStore`).
    ids_in: |n| format!("IN (SELECT value FROM json_each(?{n}))"),
    // One writer at a time: the UPDATE itself is the claim.
    skip_locked: "",
    outbox_records: "1",
};

/// The outbox's statements, written once. Placeholders are numbered; lists of ids are bound
/// as the dialect takes them (`ids_in`).
impl Dialect {
    /// The `n`th bound parameter.
    fn p(&self, n: usize) -> String {
        format!("{}{n}", self.placeholder)
    }

    /// Leases up to `$4` unpublished entries created at or before `$3`, or committed by the
    /// owner `$5` (NULL: none), whose lease ended before `$2`, until `$1`, in commit order;
    /// returns them with their `seq`.
    pub fn claim_outbox(&self) -> String {
        format!(
            "UPDATE outbox SET leased_until = {}, attempts = attempts + 1 \
             WHERE seq IN (SELECT seq FROM outbox \
                 WHERE published_at IS NULL AND failed_at IS NULL \
                   AND (leased_until IS NULL OR leased_until < {}) \
                   AND (created_at <= {} OR owner = {}{}) \
                 ORDER BY seq LIMIT {}{}) \
             RETURNING seq, CAST(id AS TEXT) AS id, kind, key, payload, source, occurred_at",
            self.p(1),
            self.p(2),
            self.p(3),
            self.p(5),
            self.uuid_cast,
            self.p(4),
            self.skip_locked
        )
    }

    /// Ends the leases on the unpublished entries of owner `$1`.
    pub fn release_owned(&self) -> String {
        format!(
            "UPDATE outbox SET leased_until = NULL \
             WHERE owner = {}{} AND leased_until IS NOT NULL \
               AND published_at IS NULL AND failed_at IS NULL",
            self.p(1),
            self.uuid_cast
        )
    }

    /// Deletes the entries of the ids list `$1`.
    pub fn delete_published(&self) -> String {
        format!("DELETE FROM outbox WHERE id {}", (self.ids_in)(1))
    }

    /// Marks the entries of the ids list `$2` published at `$1`.
    pub fn mark_published(&self) -> String {
        format!(
            "UPDATE outbox SET published_at = {}, leased_until = NULL WHERE id {}",
            self.p(1),
            (self.ids_in)(2)
        )
    }

    /// Gives back the entries of the ids list `$2`, noting the error `$1`.
    pub fn release_outbox(&self) -> String {
        format!(
            "UPDATE outbox SET leased_until = NULL, last_error = {} WHERE id {}",
            self.p(1),
            (self.ids_in)(2)
        )
    }

    /// Marks entry `$3` failed at `$1` for reason `$2`.
    pub fn mark_failed(&self) -> String {
        format!(
            "UPDATE outbox SET failed_at = {}, last_error = {}, leased_until = NULL WHERE id = {}",
            self.p(1),
            self.p(2),
            self.p(3)
        )
    }

    /// Unpublished entries: how many, the oldest's `created_at`, how many failed.
    pub fn outbox_backlog(&self) -> String {
        format!(
            "SELECT CAST(COALESCE(SUM({n}) FILTER (WHERE failed_at IS NULL), 0) AS BIGINT), \
                    MIN(created_at) FILTER (WHERE failed_at IS NULL), \
                    COUNT(*) FILTER (WHERE failed_at IS NOT NULL) \
             FROM outbox WHERE published_at IS NULL",
            n = self.outbox_records
        )
    }

    /// Deletes entries published before `$1`.
    pub fn prune_outbox(&self) -> String {
        format!("DELETE FROM outbox WHERE published_at < {}", self.p(1))
    }

    /// The claims of the nonces of the ids list `$1`: `id, claim` as text.
    pub fn nonce_claims(&self) -> String {
        format!(
            "SELECT CAST(id AS TEXT), CAST(claim AS TEXT) FROM nonces WHERE id {}",
            (self.ids_in)(1)
        )
    }

    /// Nonces no request could reuse any more (their Created is stale everywhere).
    pub fn purge_nonces(&self) -> String {
        format!("DELETE FROM nonces WHERE expires_at < {}", self.p(1))
    }

    /// Records of `kind` received in [`$1`, `$2`) after the cursor (`$3`, `$4`: the id as text), in
    /// (received_at, id) order, at most `$5`: `id, source, received_at, event_type, raw`.
    pub fn replay_page(&self, kind: RecordKind) -> String {
        let table = kind.table();
        // Every table but `cdrs` has the event type; replay needs it for call-status.
        let event_type = if kind == RecordKind::Cdr {
            format!("NULL{}", self.text_cast)
        } else {
            "event_type".to_owned()
        };
        // A Standard Webhooks event's headers are in its row (see `StoredRecord::webhook`).
        let webhook = if kind == RecordKind::WebhookEvent {
            "CASE WHEN schema = 'standard-webhooks' THEN event_id END AS webhook_id, \
             CASE WHEN schema = 'standard-webhooks' THEN occurred_at END AS webhook_at"
                .to_owned()
        } else {
            "CAST(NULL AS TEXT) AS webhook_id, CAST(NULL AS timestamptz) AS webhook_at".to_owned()
        };
        format!(
            "SELECT CAST(id AS TEXT) AS id, source, received_at, {event_type} AS event_type, \
                    raw{} AS raw, {webhook} \
             FROM {table} WHERE received_at >= {} AND received_at < {} \
               AND (received_at, {table}.id) > ({}, {}{}) \
             ORDER BY {table}.received_at, {table}.id LIMIT {}",
            self.text_cast,
            self.p(1),
            self.p(2),
            self.p(3),
            self.p(4),
            self.uuid_cast,
            self.p(5)
        )
    }
}

/// The same code for both pools of a `$kind` enum with `Postgres(PgPool)` and
/// `Sqlite(SqlitePool)` variants (`$pool` is a `PgPool` in one arm, a `SqlitePool` in the
/// other), with the database's [`Dialect`] as `$d`.
macro_rules! on_pool {
    ($kind:ident, $self:expr, |$pool:ident, $d:ident| $body:expr) => {
        match $self {
            $kind::Postgres($pool) => {
                let $d: &$crate::store::dialect::Dialect = &$crate::store::dialect::POSTGRES;
                $body
            }
            $kind::Sqlite($pool) => {
                let $d: &$crate::store::dialect::Dialect = &$crate::store::dialect::SQLITE;
                $body
            }
        }
    };
}
pub(crate) use on_pool;
