//! Each table's columns, declared once. A declaration names each column, the type it travels
//! as, and how it is read from a row's value; from it come the column list, the parameter count
//! per row, the multi-row `VALUES` binder both databases use ([`insert_values`]) and the
//! PostgreSQL `UNNEST` binder, one array per column ([`Columns::bind_arrays`], used by
//! `pg_unnest`). Adding a column means: the domain type, the wire type, one line here, and a
//! migration per database.

use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::query_builder::Separated;
use sqlx::{Database, QueryBuilder};

use super::dialect::Dialect;

/// How a column's value travels: its PostgreSQL array element type, and the cast that turns
/// the bound value into the column's type where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Uuid,
    Text,
    /// Bound as text, stored as `jsonb` (PostgreSQL) or text (SQLite).
    Json,
    /// CDR flags: bound as one text (an array literal, or a JSON array on SQLite).
    Flags,
    Int2,
    Int4,
    Int8,
    Float8,
    Bool,
    Time,
    Bytes,
}

impl Ty {
    /// The element type of the bound array in an `UNNEST` insert.
    const fn array(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::Text | Self::Json | Self::Flags => "text",
            Self::Int2 => "int2",
            Self::Int4 => "int4",
            Self::Int8 => "int8",
            Self::Float8 => "float8",
            Self::Bool => "bool",
            Self::Time => "timestamptz",
            Self::Bytes => "bytea",
        }
    }

    /// The cast applied when an `UNNEST` insert selects the column.
    const fn cast(self) -> Option<&'static str> {
        match self {
            Self::Json => Some("jsonb"),
            // An array of arrays must be rectangular: each row's flags travel as one literal.
            Self::Flags => Some("text[]"),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Column {
    pub name: &'static str,
    pub ty: Ty,
}

/// A table's declaration.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// Whether rows are deduplicated on `id` (records), or always inserted (dead letters,
    /// handshakes, outbox entries).
    pub dedupe: bool,
}

impl Table {
    /// Bound parameters per row of a `VALUES` insert.
    pub const fn params(&self) -> usize {
        self.columns.len()
    }

    /// `a, b, c`
    pub fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        names.join(", ")
    }

    /// The pieces of `INSERT INTO t (cols) SELECT <select> FROM UNNEST(<arrays>) AS u(cols)`,
    /// its arrays numbered from `*param` on (which it advances past them): `(select, arrays)`.
    pub fn unnest(&self, param: &mut usize) -> (String, String) {
        let select: Vec<String> = self
            .columns
            .iter()
            .map(|c| match c.ty.cast() {
                Some(cast) => format!("{}::{cast}", c.name),
                None => c.name.to_owned(),
            })
            .collect();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                *param += 1;
                format!("${param}::{}[]", c.ty.array())
            })
            .collect();
        (select.join(", "), arrays.join(", "))
    }

    /// `INSERT INTO t (cols) SELECT … FROM UNNEST(…) AS u(cols) [ON CONFLICT DO NOTHING
    /// RETURNING id]`.
    pub fn unnest_insert(&self, param: &mut usize) -> String {
        self.unnest_insert_guarded(param, None)
    }

    /// [`unnest_insert`](Self::unnest_insert) with one more array, each row's guard (a nonce
    /// id, or NULL), when `claimed` names the CTE of the nonces this statement claimed: a row
    /// is inserted only when it has no guard or its guard was claimed.
    pub fn unnest_insert_guarded(&self, param: &mut usize, claimed: Option<&str>) -> String {
        self.unnest_insert_keyed(param, claimed, None)
    }

    /// [`unnest_insert_guarded`](Self::unnest_insert_guarded) of a table whose rows are only
    /// inserted when the CTE `keys` claimed their id in `record_keys` (see [`key_claim`]).
    pub fn unnest_insert_keyed(
        &self,
        param: &mut usize,
        claimed: Option<&str>,
        keys: Option<&str>,
    ) -> String {
        let names = self.column_list();
        let (select, mut arrays) = self.unnest(param);
        let (mut alias, mut conditions) = (names.clone(), Vec::new());
        if let Some(cte) = claimed {
            *param += 1;
            arrays.push_str(&format!(", ${param}::uuid[]"));
            alias.push_str(", guard");
            conditions.push(format!(
                "(guard IS NULL OR guard IN (SELECT id FROM {cte}))"
            ));
        }
        if let Some(keys) = keys {
            conditions.push(format!("id IN (SELECT id FROM {keys})"));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        // No conflict target: on PostgreSQL the record tables are partitioned and their key is
        // (id, partition time), which a row's retry shares (see migration 0010).
        let tail = if self.dedupe {
            " ON CONFLICT DO NOTHING RETURNING id"
        } else {
            ""
        };
        format!(
            "INSERT INTO {} ({names}) SELECT {select} FROM UNNEST({arrays}) AS u({alias}){filter}{tail}",
            self.name
        )
    }
}

/// The record tables whose ids are claimed in `record_keys` before a row is inserted
/// (PostgreSQL; migration 0013): all but `call_events`, whose id includes its partition time.
pub(crate) const KEYED_TABLES: [&str; 5] = [
    "cdrs",
    "phone_number_events",
    "acs_call_events",
    "chat_events",
    "webhook_events",
];

/// `INSERT INTO record_keys (id) SELECT … ON CONFLICT DO NOTHING RETURNING id` of the ids bound
/// as array `$ids`, each with its guard in array `$guards` when `claimed` names the CTE of the
/// nonces the statement claimed (a key of a refused request is not taken).
pub(crate) fn key_claim(ids: usize, guards: Option<(usize, &str)>) -> String {
    match guards {
        None => format!(
            "INSERT INTO record_keys (id) SELECT id FROM UNNEST(${ids}::uuid[]) AS u(id) \
             ON CONFLICT DO NOTHING RETURNING id"
        ),
        Some((guards, claimed)) => format!(
            "INSERT INTO record_keys (id) SELECT id FROM UNNEST(${ids}::uuid[], ${guards}::uuid[]) \
             AS u(id, guard) WHERE guard IS NULL OR guard IN (SELECT id FROM {claimed}) \
             ON CONFLICT DO NOTHING RETURNING id"
        ),
    }
}

pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// A row type and the table it is stored in.
pub(crate) trait Columns<'a>: Sized {
    const TABLE: &'static Table;

    /// Binds one array per column, in declaration order (PostgreSQL `UNNEST`).
    fn bind_arrays(query: PgQuery<'a>, rows: &[&'a Self]) -> PgQuery<'a>;
}

/// Pushes one row's values onto a `VALUES` list of database `DB`.
pub(crate) trait Values<'a, DB: Database> {
    fn push_row(b: &mut Separated<'_, 'a, DB, &'static str>, row: &'a Self, d: &Dialect);
}

/// `INSERT INTO t (cols) VALUES (…), (…) ON CONFLICT DO NOTHING [RETURNING CAST(id AS TEXT)]`
/// for a chunk of rows (at most `d.max_params / T::TABLE.params()` of them).
pub(crate) fn insert_values<'a, DB, R>(rows: &[&'a R], d: &Dialect) -> QueryBuilder<'a, DB>
where
    DB: Database,
    R: Columns<'a> + Values<'a, DB>,
{
    let table = R::TABLE;
    let mut qb = QueryBuilder::new(format!(
        "INSERT INTO {} ({}) ",
        table.name,
        table.column_list()
    ));
    qb.push_values(rows.iter().copied(), |mut b, row| {
        R::push_row(&mut b, row, d)
    });
    // Rows of the other tables (dead letters, handshakes, outbox entries) have ids of their
    // own; one stored already (a spooled batch committed, then drained again) is skipped.
    qb.push(if table.dedupe {
        " ON CONFLICT DO NOTHING RETURNING CAST(id AS TEXT)"
    } else {
        " ON CONFLICT DO NOTHING"
    });
    qb
}

/// Most rows of a `VALUES` insert whose prepared statement a connection keeps (a batch's
/// usual size, 50 records, fits).
pub(crate) const CACHED_STATEMENT_ROWS: usize = 64;

/// `rows` in chunks of at most as many rows as one statement of dialect `d` can bind.
pub(crate) fn chunks<'r, 'a, R: Columns<'a>>(
    rows: &'r [&'a R],
    d: &Dialect,
) -> std::slice::Chunks<'r, &'a R> {
    rows.chunks((d.max_params / R::TABLE.params()).max(1))
}

/// The table rows of type `R` are stored in.
pub(crate) fn table_of<'a, R: Columns<'a>>(_: &[&'a R]) -> &'static Table {
    R::TABLE
}

/// A value as its `UNNEST` array element.
macro_rules! array_value {
    (Flags, $v:expr) => {
        flags_pg($v)
    };
    ($ty:ident, $v:expr) => {
        $v
    };
}

/// Pushes a value onto a `VALUES` row, with the dialect's cast where its type needs one.
macro_rules! push_value {
    ($b:ident, $d:ident, Uuid, $v:expr) => {
        $b.push_bind($v.to_string()).push_unseparated($d.uuid_cast);
    };
    ($b:ident, $d:ident, Json, $v:expr) => {
        $b.push_bind($v).push_unseparated($d.json_cast);
    };
    ($b:ident, $d:ident, Flags, $v:expr) => {
        $b.push_bind(($d.flags)($v)).push_unseparated($d.flags_cast);
    };
    ($b:ident, $d:ident, $ty:ident, $v:expr) => {
        $b.push_bind($v);
    };
}

/// Declares a table: `table!(CONST: RowType = "name", dedupe, [ "column": Ty => |row| value, … ])`.
macro_rules! table {
    ($table:ident : $row:ty = $name:literal, $dedupe:literal,
     [$( $col:literal : $ty:ident => |$r:ident| $value:expr ),+ $(,)?]) => {
        pub(crate) const $table: Table = Table {
            name: $name,
            columns: &[$( Column { name: $col, ty: Ty::$ty } ),+],
            dedupe: $dedupe,
        };

        impl<'a> Columns<'a> for $row {
            const TABLE: &'static Table = &$table;

            fn bind_arrays(query: PgQuery<'a>, rows: &[&'a Self]) -> PgQuery<'a> {
                $(
                    let query = query.bind(
                        rows.iter().map(|&$r| array_value!($ty, $value)).collect::<Vec<_>>(),
                    );
                )+
                query
            }
        }

        table!(@values Postgres, $row, [$( $ty => |$r| $value ),+]);
        table!(@values Sqlite, $row, [$( $ty => |$r| $value ),+]);
    };
    (@values $db:ty, $row:ty, [$( $ty:ident => |$r:ident| $value:expr ),+]) => {
        impl<'a> Values<'a, $db> for $row {
            fn push_row(b: &mut Separated<'_, 'a, $db, &'static str>, row: &'a Self, d: &Dialect) {
                $( { let $r = row; push_value!(b, d, $ty, $value); } )+
            }
        }
    };
}

// The declarations, after the macros that write them.
mod declared;

pub(crate) use declared::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_table_lists_each_column_once() {
        let tables = [
            &CDRS,
            &CALL_EVENTS,
            &PHONE_EVENTS,
            &ACS_CALL_EVENTS,
            &CHAT_EVENTS,
            &WEBHOOK_EVENTS,
            &DEAD_LETTERS,
            &HANDSHAKES,
            &OUTBOX,
            &NONCES,
        ];
        // The parameter counts the VALUES builders had before the declarations, but for
        // phone_number_events: its hand-kept count said 24 for its 23 columns; the outbox has
        // its owner since, and nonces are new; CDRs have their partition time and post-dial
        // delay since.
        let params = [50, 15, 23, 32, 21, 11, 13, 6, 8, 5];
        for (table, params) in tables.iter().zip(params) {
            let mut names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            assert_eq!(table.params(), params, "{}", table.name);
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), table.columns.len(), "{}", table.name);
        }
    }

    #[test]
    fn an_unnest_insert_numbers_its_arrays_and_casts_json() {
        let mut param = 3;
        let sql = CALL_EVENTS.unnest_insert(&mut param);
        assert_eq!(param, 3 + 15);
        assert!(sql.starts_with("INSERT INTO call_events (id, source, dedupe_key,"));
        assert!(sql.contains("raw::jsonb FROM UNNEST($4::uuid[], $5::text[]"));
        assert!(sql.ends_with("ON CONFLICT DO NOTHING RETURNING id"));
    }

    #[test]
    fn a_guarded_unnest_insert_binds_one_more_array_and_filters_on_it() {
        let mut param = 4;
        let sql = CDRS.unnest_insert_guarded(&mut param, Some("n"));
        assert_eq!(param, 4 + 50 + 1);
        assert!(sql.contains(", $55::uuid[]) AS u("), "{sql}");
        assert!(
            sql.contains(
                ", guard) WHERE (guard IS NULL OR guard IN (SELECT id FROM n)) ON CONFLICT"
            ),
            "{sql}"
        );
    }
}
