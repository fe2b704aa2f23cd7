//! Tables analysts keep for years (docs/analytics.md): monthly partitions, retention and
//! rollups, against the real PostgreSQL (and SQLite where it applies).

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, Utc};
use serde_json::{json, Value};
use sqlx::Row;

use crate::common::{Backend, TestDb};
use ringback::domain::{Outcome, Record};
use ringback::simulate::sample;
use ringback::sources::{huawei, ParseContext};
use ringback::store::maintain::Maintainer;
use ringback::store::Store;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Parses `body` as received at `received_at` by source `hw`.
fn parse(body: &Value, received_at: DateTime<Utc>) -> Vec<Record> {
    let ctx = ParseContext {
        source: "hw".into(),
        received_at: received_at.trunc_subsecs(6),
        region: None,
    };
    huawei::parse_body(body.to_string().as_bytes(), &ctx)
        .unwrap()
        .records
}

/// A fee push of `n` CDRs ending at `end`.
fn fee(seed: u64, n: usize, end: DateTime<Utc>) -> Value {
    sample::fee_body(seed, n, end)
}

async fn store_of(db: &TestDb) -> (std::sync::Arc<dyn Store>, Maintainer) {
    let store = db.store().await;
    let maintainer = store.maintainer().expect("a real store has maintenance");
    (store, maintainer)
}

/// Partitions of September 2026 (last month as of `now`) to December.
async fn partitions_from_august(m: &Maintainer) {
    for (table, made) in m.ensure_partitions(at("2026-09-15T00:00:00Z"), 3).await {
        made.unwrap_or_else(|e| panic!("{table}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_cdr_in_an_older_partition_is_still_a_duplicate() {
    let db = TestDb::new(Backend::Postgres).await;
    let (store, m) = store_of(&db).await;
    partitions_from_august(&m).await;
    // Made twice (another replica, the next round): nothing more, no error.
    let again = m.ensure_partitions(at("2026-09-15T00:00:00Z"), 3).await;
    assert!(again.iter().all(|(_, r)| matches!(r, Ok(0))), "{again:?}");

    let body = fee(1, 50, at("2026-09-10T08:00:00Z"));
    let first = parse(&body, at("2026-09-10T08:00:05Z"));
    let outcomes = store
        .commit(&crate::common::rows(&first), &[])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Inserted));
    assert_eq!(
        db.count("cdrs_p2026_09").await,
        50,
        "in its month's partition"
    );
    // A month of newer CDRs in between, in their own partition.
    let november = parse(&fee(2, 50, at("2026-11-21T08:00:00Z")), Utc::now());
    store
        .commit(&crate::common::rows(&november), &[])
        .await
        .unwrap();
    // The platform's retry, received weeks later (another received_at): every CDR is a
    // duplicate of the row in September's partition.
    let retry = parse(&body, at("2026-10-20T09:00:00Z"));
    let outcomes = store
        .commit(&crate::common::rows(&retry), &[])
        .await
        .unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Duplicate),
        "{outcomes:?}"
    );
    assert_eq!(db.count("cdrs").await, 100);
    assert_eq!(db.count("cdrs_p2026_09").await, 50);
    assert_eq!(db.count("cdrs_p2026_11").await, 50);
    assert_eq!(db.count("cdrs_default").await, 0);
    // …and so is a status event retried, in its partition.
    let disconnect = parse(
        &sample::status_body("disconnect", "s-1", at("2026-09-10T08:00:00Z")),
        Utc::now(),
    );
    store
        .commit(&crate::common::rows(&disconnect), &[])
        .await
        .unwrap();
    let outcomes = store
        .commit(&crate::common::rows(&disconnect), &[])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Duplicate]);
    assert_eq!(db.count("call_events_p2026_09").await, 1);
    store.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdr_without_a_time_goes_to_the_default_partition_flagged() {
    let db = TestDb::new(Backend::Postgres).await;
    let (store, m) = store_of(&db).await;
    let mut body = fee(3, 1, Utc::now());
    let info = body["feeLst"][0].as_object_mut().unwrap();
    for key in [
        "callEndTime",
        "callOutStartTime",
        "fwdStartTime",
        "callOutAlertingTime",
        "callOutAnswerTime",
        "fwdAlertingTime",
        "fwdAnswerTime",
    ] {
        info.remove(key);
    }
    let records = parse(&body, Utc::now());
    store
        .commit(&crate::common::rows(&records), &[])
        .await
        .unwrap();
    let row = db
        .rows("SELECT flags::text, occurred_at::text FROM cdrs_default")
        .await;
    assert_eq!(row.len(), 1);
    assert_eq!(row[0].get::<String, _>(0), "{no_time}");
    assert_eq!(row[0].get::<String, _>(1), "1970-01-01 00:00:00+00");
    // A retry of it is still a duplicate (its time, 1970, is its body's, not its receipt's).
    let outcomes = store
        .commit(
            &crate::common::rows(&parse(&body, Utc::now() + chrono::Duration::hours(1))),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Duplicate]);
    let counts = m.default_rows().await.unwrap();
    assert!(counts.contains(&("cdrs", 1)), "{counts:?}");
    store.close().await;
    db.drop_db().await;
}

async fn dropping_expired_partitions_leaves_the_rest_intact(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (store, m) = store_of(&db).await;
    partitions_from_august(&m).await;
    let months = [
        "2026-08-10T08:00:00Z",
        "2026-09-10T08:00:00Z",
        "2026-10-10T08:00:00Z",
        "2026-11-21T08:00:00Z",
    ];
    for (seed, end) in months.iter().enumerate() {
        let records = parse(&fee(seed as u64 + 10, 50, at(end)), Utc::now());
        store
            .commit(&crate::common::rows(&records), &[])
            .await
            .unwrap();
        let events = parse(&sample::status_body("answer", "s", at(end)), Utc::now());
        store
            .commit(&crate::common::rows(&events), &[])
            .await
            .unwrap();
    }
    // 60 days before 2026-12-02: the cut-off is 2026-10-03, so August and September (ended
    // 09-01 and 10-01) are expired; October ends 11-01, after it, and is kept whole.
    let now = at("2026-12-02T12:00:00Z");
    let sixty_days = Some(Duration::from_secs(60 * 86_400));
    let retention = [("cdrs", sixty_days), ("call_events", None)];
    let expired = m.expire(now, &retention).await.unwrap();
    match backend {
        Backend::Postgres => {
            let names: Vec<_> = expired.iter().filter_map(|e| e.partition.clone()).collect();
            assert_eq!(names, vec!["cdrs_p2026_08", "cdrs_p2026_09"]);
            assert_eq!(db.count("cdrs_p2026_10").await, 50);
            let gone: i64 = db
                .scalar_i64(
                    "SELECT count(*) FROM pg_class WHERE relname IN ('cdrs_p2026_08', 'cdrs_p2026_09')",
                )
                .await;
            assert_eq!(gone, 0);
            // The dropped rows' identities went with them (migration 0013): 100 CDR keys left.
            assert_eq!(db.count("record_keys").await, 100);
        }
        Backend::Sqlite => {
            // No partitions: the rows older than the cut-off itself are deleted.
            assert_eq!(expired.len(), 1);
            assert_eq!(expired[0].rows, 100);
        }
    }
    assert_eq!(db.count("cdrs").await, 100, "October's and November's CDRs");
    let left = db
        .scalar_i64("SELECT count(*) FROM cdrs WHERE occurred_at < '2026-10-01'")
        .await;
    assert_eq!(left, 0);
    assert_eq!(db.count("call_events").await, 4, "no retention: kept");
    // Run again (cron, another replica): nothing more to do.
    assert_eq!(m.expire(now, &retention).await.unwrap(), vec![]);
    // The table still takes rows, old and new.
    let records = parse(&fee(99, 50, at("2026-11-22T08:00:00Z")), Utc::now());
    store
        .commit(&crate::common::rows(&records), &[])
        .await
        .unwrap();
    assert_eq!(db.count("cdrs").await, 150);
    store.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dropping_expired_partitions_leaves_the_rest_intact() {
    dropping_expired_partitions_leaves_the_rest_intact(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention_deletes_the_expired_rows_only() {
    dropping_expired_partitions_leaves_the_rest_intact(Backend::Sqlite).await;
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random traffic over four days and many hours: fee pushes whose CDRs vary in app key,
/// direction, release point and Q.850 cause, disconnects with several state codes, and
/// platform retries (the same body again, later) and duplicates within a batch.
fn random_traffic(rng: &mut Rng, batches: usize) -> Vec<Vec<Record>> {
    let start = at("2026-11-20T00:00:00Z");
    let mut sent: Vec<Value> = Vec::new();
    let mut out = Vec::new();
    for b in 0..batches {
        let body = if !sent.is_empty() && rng.below(5) == 0 {
            // A retry of an earlier push.
            sent[rng.below(sent.len() as u64) as usize].clone()
        } else if rng.below(3) == 0 {
            let at = start + chrono::Duration::minutes(rng.below(4 * 24 * 60) as i64);
            let mut body = sample::status_body("disconnect", &format!("call-{b}"), at);
            body["statusInfo"]["stateCode"] = json!([0, 1, 3, 4, 5][rng.below(5) as usize]);
            body
        } else {
            let end = start + chrono::Duration::minutes(rng.below(4 * 24 * 60) as i64);
            let mut body = fee(1_000 + b as u64, 1 + rng.below(50) as usize, end);
            for info in body["feeLst"].as_array_mut().unwrap() {
                info["appKey"] = json!(["app-a", "app-b"][rng.below(2) as usize]);
                info["direction"] = json!(rng.below(2));
                if rng.below(4) == 0 {
                    info["ulFailReason"] = json!([0, 514, 1100, 2001][rng.below(4) as usize]);
                }
                if rng.below(6) == 0 {
                    info["callOutUnaswRsn"] = json!([16, 17, 19, 21][rng.below(4) as usize]);
                }
            }
            body
        };
        sent.push(body.clone());
        let mut records = parse(&body, Utc::now());
        if rng.below(8) == 0 {
            // The same record twice in one batch.
            let again = records[0].clone();
            records.push(again);
        }
        out.push(records);
    }
    out
}

/// Rows of `sql` as text lines, sorted: the rollups and the plain GROUP BY compared as sets.
async fn lines(db: &TestDb, sql: &str) -> Vec<String> {
    let mut lines: Vec<String> = db
        .rows(&format!("SELECT t::text FROM ({sql}) AS t"))
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    lines.sort();
    lines
}

/// Each rollup against the same figures computed with a plain GROUP BY over the raw rows
/// (written here independently of ringback's own statements).
async fn assert_rollups_match_raw_rows(db: &TestDb, tz: &str) {
    let local = format!("(occurred_at AT TIME ZONE '{tz}')");
    let sums = "count(*), count(*) FILTER (WHERE answered), coalesce(sum(talk_seconds), 0), \
                coalesce(sum(billable_minutes), 0), coalesce(sum(ring_seconds), 0), \
                count(ring_seconds), coalesce(sum(pdd_seconds), 0), count(pdd_seconds), \
                count(*) FILTER (WHERE flags <> '{}')";
    let figures = "calls, answered, talk_seconds, billable_minutes, ring_seconds, ring_calls, \
                   pdd_seconds, pdd_calls, flagged";
    let checks = [
        (
            "cdr_hourly",
            format!(
                "SELECT hour, source, app_key, service_type, direction, {figures} FROM cdr_hourly"
            ),
            format!(
                "SELECT date_trunc('hour', {local}), source, app_key, coalesce(service_type, ''), \
                 direction, {sums} FROM cdrs GROUP BY 1, 2, 3, 4, 5"
            ),
        ),
        (
            "cdr_daily",
            format!("SELECT day, source, app_key, service_type, direction, {figures} FROM cdr_daily"),
            format!(
                "SELECT {local}::date, source, app_key, coalesce(service_type, ''), direction, \
                 {sums} FROM cdrs GROUP BY 1, 2, 3, 4, 5"
            ),
        ),
        (
            "cdr_numbers_daily",
            "SELECT day, source, role, number, calls, answered, talk_seconds, billable_minutes \
             FROM cdr_numbers_daily"
                .to_string(),
            format!(
                "SELECT day, source, role, number, count(*), count(*) FILTER (WHERE answered), \
                        coalesce(sum(talk_seconds), 0), coalesce(sum(billable_minutes), 0) \
                 FROM (SELECT {local}::date AS day, source, 'caller' AS role, caller_num AS number, answered, talk_seconds, billable_minutes FROM cdrs \
                       UNION ALL SELECT {local}::date, source, 'callee', callee_num, answered, talk_seconds, billable_minutes FROM cdrs \
                       UNION ALL SELECT {local}::date, source, 'bind', bind_num, answered, talk_seconds, billable_minutes FROM cdrs) AS n \
                 GROUP BY 1, 2, 3, 4"
            ),
        ),
        (
            "hangup_causes_daily",
            "SELECT day, source, kind, code, calls FROM hangup_causes_daily".to_string(),
            format!(
                "SELECT day, source, kind, code, count(*) FROM ( \
                   SELECT {local}::date AS day, source, 'release_point' AS kind, ul_fail_reason AS code \
                     FROM cdrs WHERE ul_fail_reason IS NOT NULL \
                   UNION ALL SELECT {local}::date, source, 'q850', coalesce(fwd_unasw_rsn, call_out_unasw_rsn) \
                     FROM cdrs WHERE coalesce(fwd_unasw_rsn, call_out_unasw_rsn) IS NOT NULL \
                   UNION ALL SELECT {local}::date, source, 'state_code', state_code \
                     FROM call_events WHERE event_type = 'disconnect' AND state_code IS NOT NULL) AS c \
                 GROUP BY 1, 2, 3, 4"
            ),
        ),
    ];
    for (name, rollup, raw) in checks {
        let (rollup, raw) = (lines(db, &rollup).await, lines(db, &raw).await);
        assert!(!raw.is_empty(), "{name}: the traffic fills it");
        assert_eq!(rollup, raw, "{name} equals the GROUP BY over the raw rows");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_group_by_over_the_raw_rows() {
    // Kolkata is UTC+05:30: its hours and days cut UTC hours in half.
    const TZ: &str = "Asia/Kolkata";
    let db = TestDb::new(Backend::Postgres).await;
    let (store, m) = store_of(&db).await;
    let mut rng = Rng(0x5eed_1234_abcd);
    let traffic = random_traffic(&mut rng, 120);
    let (mut inserted, mut duplicates, mut folded) = (0, 0, 0);
    for (i, records) in traffic.iter().enumerate() {
        for o in store
            .commit(&crate::common::rows(records), &[])
            .await
            .unwrap()
        {
            match o {
                Outcome::Inserted => inserted += 1,
                _ => duplicates += 1,
            }
        }
        // Folded now and then, as the timer does, while traffic goes on.
        if i % 17 == 0 {
            folded += m.fold_rollups(TZ).await.unwrap().0;
        }
    }
    assert!(
        duplicates > 20,
        "retries and in-batch duplicates: {duplicates}"
    );
    let (last, waiting) = m.fold_rollups(TZ).await.unwrap();
    folded += last;
    assert_eq!(waiting, 0);
    // Every row inserted was folded once, and only those (a duplicate is never queued).
    let disconnects = db
        .scalar_i64("SELECT count(*) FROM call_events WHERE event_type = 'disconnect'")
        .await;
    assert_eq!(inserted, db.count("cdrs").await + disconnects);
    assert_eq!(folded, inserted as u64);
    assert_rollups_match_raw_rows(&db, TZ).await;

    // Folding again changes nothing; a rebuild of every day gives the same rows.
    assert_eq!(m.fold_rollups(TZ).await.unwrap(), (0, 0));
    let before = lines(&db, "SELECT * FROM cdr_daily").await;
    let day = |s: &str| s.parse::<NaiveDate>().unwrap();
    let rebuilt = m
        .rebuild_rollups(TZ, day("2026-11-19"), day("2026-11-26"))
        .await
        .unwrap();
    assert_eq!(rebuilt.cdrs, db.count("cdrs").await);
    assert_eq!(lines(&db, "SELECT * FROM cdr_daily").await, before);
    assert_rollups_match_raw_rows(&db, TZ).await;

    // A rebuild of some days after the rollups went wrong (here: emptied by hand) puts those
    // days right and leaves the others.
    db.execute("DELETE FROM cdr_daily WHERE day = '2026-11-21'; DELETE FROM cdr_hourly WHERE hour::date = '2026-11-21'").await;
    m.rebuild_rollups(TZ, day("2026-11-21"), day("2026-11-22"))
        .await
        .unwrap();
    assert_rollups_match_raw_rows(&db, TZ).await;

    // More traffic after the rebuild is folded on top of it.
    for records in random_traffic(&mut Rng(77), 30) {
        store
            .commit(&crate::common::rows(&records), &[])
            .await
            .unwrap();
    }
    m.fold_rollups(TZ).await.unwrap();
    assert_rollups_match_raw_rows(&db, TZ).await;

    // The KPI view: ASR and ACD per day, as docs/analytics.md's example query reads them.
    let kpis = db
        .rows(
            "SELECT sum(calls)::bigint, sum(answered)::bigint, \
                    round(sum(answered)::numeric / sum(calls), 4)::text, \
                    round(sum(talk_seconds)::numeric / nullif(sum(answered), 0), 1)::text \
             FROM cdr_daily_kpis",
        )
        .await;
    let (calls, answered) = (kpis[0].get::<i64, _>(0), kpis[0].get::<i64, _>(1));
    assert_eq!(calls, db.count("cdrs").await);
    assert!(answered > 0 && answered < calls);
    store.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_from_two_replicas_at_once_count_each_row_once() {
    const TZ: &str = "Asia/Shanghai";
    let db = TestDb::new(Backend::Postgres).await;
    let (store, m) = store_of(&db).await;
    let (_other_store, other) = store_of(&db).await;
    let traffic = random_traffic(&mut Rng(42), 80);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for records in traffic {
                store
                    .commit(&crate::common::rows(&records), &[])
                    .await
                    .unwrap();
            }
        })
    };
    let fold = |m: Maintainer| async move {
        for _ in 0..40 {
            m.fold_rollups(TZ).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (a, b) = tokio::join!(fold(m.clone()), fold(other.clone()));
    let _ = (a, b);
    writer.await.unwrap();
    m.fold_rollups(TZ).await.unwrap();
    assert_rollups_match_raw_rows(&db, TZ).await;
    store.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_time_zone_is_refused_by_name() {
    let db = TestDb::new(Backend::Postgres).await;
    let (store, m) = store_of(&db).await;
    let err = m.check_timezone("Asia/Shangai").await.unwrap_err();
    let err = ringback::error::error_chain(&err);
    assert!(
        err.contains("time zone \"Asia/Shangai\" not recognized"),
        "{err}"
    );
    m.check_timezone("Asia/Shanghai").await.unwrap();
    store.close().await;
    db.drop_db().await;
}

/// The whole month's partitions exist from the migration on: a deployment started today can
/// take last month's late CDRs and the next months' without a maintenance round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_makes_partitions_around_today() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let now = Utc::now();
    let name = |months: i32| {
        let m = now.date_naive().with_day(1).unwrap();
        let m = if months < 0 {
            m - chrono::Months::new(months.unsigned_abs())
        } else {
            m + chrono::Months::new(months as u32)
        };
        format!("cdrs_p{}", m.format("%Y_%m"))
    };
    for months in [-1, 0, 1, 2, 3] {
        let table = name(months);
        let n = db
            .scalar_i64(&format!(
                "SELECT count(*) FROM pg_class WHERE relname = '{table}'"
            ))
            .await;
        assert_eq!(n, 1, "{table}");
    }
    store.close().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_made_by_two_replicas_at_once_are_made_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let (store, a) = store_of(&db).await;
    let (_other, b) = store_of(&db).await;
    let when = at("2030-06-15T00:00:00Z"); // months no partition exists for yet
    let (made_a, made_b) = tokio::join!(a.ensure_partitions(when, 2), b.ensure_partitions(when, 2));
    let mut total = 0;
    for (table, made) in made_a.into_iter().chain(made_b) {
        total += made.unwrap_or_else(|e| panic!("{table}: {e}"));
    }
    // May to August 2030, for each of the 8 tables, each made by one of them.
    assert_eq!(total, 4 * 8);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname LIKE '%\\_p2030\\_0%'"
        )
        .await,
        4 * 8
    );
    store.close().await;
    db.drop_db().await;
}

/// `ringback maintain`, as cron runs it: partitions, a fold, retention (after the fold: the
/// rollups keep what the dropped rows counted), a rebuild refused where retention dropped the
/// rows, and exit 1 naming the key when the time zone is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintain_command_reports_what_it_did() {
    let db = TestDb::new(Backend::Postgres).await;
    let (store, m) = store_of(&db).await;
    partitions_from_august(&m).await;
    let august = parse(&fee(7, 20, at("2026-08-10T08:00:00Z")), Utc::now());
    store
        .commit(&crate::common::rows(&august), &[])
        .await
        .unwrap();
    let run = |timezone: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ringback"))
            .arg("maintain")
            .args(args)
            .env("RINGBACK__DATABASE__URL", &db.database_config().url)
            .env("RINGBACK__RETENTION__CDRS", "60d")
            .env("RINGBACK__REPORT__TIMEZONE", timezone)
            .env("RINGBACK__LOG__LEVEL", "error")
            .output()
            .unwrap()
    };
    let out = run("Asia/Shanghai", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rollups: 20 rows folded"), "{stdout}");
    assert!(stdout.contains("cdrs: dropped cdrs_p2026_08"), "{stdout}");
    assert_eq!(db.count("cdrs").await, 0);
    // The rollups outlive the raw rows: August's CDRs were folded before their partition went.
    assert_eq!(
        db.scalar_i64("SELECT sum(calls)::bigint FROM cdr_daily")
            .await,
        20
    );
    // A rebuild of days retention has emptied would lose them: refused.
    let out = run(
        "Asia/Shanghai",
        &["--rebuild-rollups", "--since", "2026-08-01"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("retention.cdrs has dropped"), "{stderr}");
    assert_eq!(
        db.scalar_i64("SELECT sum(calls)::bigint FROM cdr_daily")
            .await,
        20
    );
    let out = run("Asia/Shangai", &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("report.timezone \"Asia/Shangai\""),
        "{stderr}"
    );
    store.close().await;
    db.drop_db().await;
}

/// A Grafana macro call's argument list: the text between the parentheses after `at`
/// (balanced), and where the call ends.
fn macro_args(sql: &str, at: usize) -> (String, usize) {
    let open = sql[at..].find('(').unwrap() + at;
    let mut depth = 0;
    for (i, c) in sql[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (sql[open + 1..open + i].to_owned(), open + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced macro in {sql}")
}

/// `sql` as Grafana's PostgreSQL data source sends it for the range `from..to` and the
/// dashboard's variables: `$__timeFilter`, `$__timeGroupAlias`, `$__timeFrom()`, `$__timeTo()`,
/// `$tz`.
fn as_grafana_sends(sql: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let (from, to) = (
        format!(
            "'{}'",
            from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        format!(
            "'{}'",
            to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    );
    let mut sql = sql
        .replace("$__timeFrom()", &from)
        .replace("$__timeTo()", &to)
        .replace("$tz", "UTC");
    while let Some(at) = sql.find("$__timeFilter(") {
        let (expr, end) = macro_args(&sql, at);
        sql = format!(
            "{}{expr} BETWEEN {from} AND {to}{}",
            &sql[..at],
            &sql[end..]
        );
    }
    while let Some(at) = sql.find("$__timeGroupAlias(") {
        let (args, end) = macro_args(&sql, at);
        let (column, interval) = args.rsplit_once(',').unwrap();
        assert_eq!(interval.trim(), "'1h'", "the test knows the hour only");
        let group = format!("floor(extract(epoch from {column})/3600)*3600 AS \"time\"");
        sql = format!("{}{group}{}", &sql[..at], &sql[end..]);
    }
    assert!(
        !sql.contains('$'),
        "a macro or variable the test does not know: {sql}"
    );
    sql
}

/// The "calls" Grafana dashboard (deploy/grafana/calls.json): every panel's SQL, as Grafana
/// sends it, runs against the real schema and finds the rows a call, its CDRs and a refused push
/// made once the rollups are folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_dashboard_queries_run_against_the_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/calls.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let app = crate::common::spawn_app_with(Backend::Postgres, |_| {}, None).await;
    let now = Utc::now();
    let fee = fee(3, 20, now - chrono::TimeDelta::minutes(5));
    assert_eq!(
        app.post_with("open", fee.to_string(), &[]).await.status(),
        200
    );
    let disconnect = sample::status_body("disconnect", "s-dashboard", now);
    assert_eq!(
        app.post_with("open", disconnect.to_string(), &[])
            .await
            .status(),
        200
    );
    assert_eq!(app.post_with("open", "{", &[]).await.status(), 400);
    let (_, m) = store_of(&app.db).await;
    m.fold_rollups("UTC").await.unwrap();

    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 5);
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "${pg}", "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(
                target["datasource"]["type"],
                "grafana-postgresql-datasource"
            );
            let sql = as_grafana_sends(
                target["rawSql"].as_str().unwrap(),
                now - chrono::TimeDelta::days(2),
                now + chrono::TimeDelta::days(1),
            );
            let rows = sqlx::query(&sql)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{title}: {e}\n{sql}"));
            assert!(!rows.is_empty(), "{title}: no rows\n{sql}");
            if target["format"] == "time_series" {
                use sqlx::Column;
                let columns: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
                assert_eq!(columns[0], "time", "{title}: time first");
            }
        }
    }
    pool.close().await;
    app.stop().await;
}
