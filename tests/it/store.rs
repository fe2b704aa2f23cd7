//! Store conformance: the same suite against PostgreSQL and SQLite.

use crate::both_stores;
use chrono::{SubsecRound, TimeZone, Utc};
use sqlx::Row;

use crate::common::{Backend, TestDb};
use std::time::Duration;
use uuid::Uuid;

use ringback::domain::{self, DeadLetter, DeadLetterScope, Nonce, Outcome, Record, RecordKind};
use ringback::publish;
use ringback::simulate::sample;
use ringback::sources::huawei;
use ringback::sources::ParseContext;

/// As the ingest builds it: the receipt time in microseconds, which both stores keep exactly.
fn ctx() -> ParseContext {
    ParseContext {
        source: "hw".into(),
        received_at: Utc::now().trunc_subsecs(6),
        region: None,
    }
}

fn fee_records(seed: u64, n: usize) -> Vec<Record> {
    let end = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let mut records = Vec::new();
    // Bodies hold at most 50; bigger batches are built from several.
    for chunk in 0..n.div_ceil(50) {
        let count = (n - chunk * 50).min(50);
        let body = sample::fee_body(seed * 1000 + chunk as u64, count, end).to_string();
        records.extend(huawei::parse_body(body.as_bytes(), &ctx()).unwrap().records);
    }
    records
}

fn dead_letter() -> domain::Row {
    domain::Row::DeadLetter(Box::new(DeadLetter {
        id: uuid::Uuid::new_v4(),
        source: "hw".into(),
        received_at: Utc::now(),
        request_id: Some("req-1".into()),
        scope: DeadLetterScope::Request,
        record_index: None,
        code: ringback::domain::Code::InvalidJson,
        detail: "EOF while parsing".into(),
        field: None,
        body: Some(b"{\"eventType\": \xff".to_vec()),
        headers: serde_json::json!({"content-type": "application/json"}),
        auth: Some("aksk".into()),
    }))
}

async fn migrations_are_idempotent(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
    db.drop_db().await;
}

async fn a_second_commit_of_the_same_records_is_all_duplicates(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let records = fee_records(1, 50);
    let first = store
        .commit(&crate::common::rows(&records), &[])
        .await
        .unwrap();
    assert_eq!(first, vec![Outcome::Inserted; 50]);
    let again = store
        .commit(&crate::common::rows(&records), &[])
        .await
        .unwrap();
    assert_eq!(again, vec![Outcome::Duplicate; 50]);
    assert_eq!(db.count("cdrs").await, 50);
    store.close().await;
    db.drop_db().await;
}

async fn the_same_record_twice_in_one_batch_is_one_row(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut records = fee_records(2, 2);
    records.insert(1, records[0].clone());
    let status = sample::status_body("answer", "s-1", Utc::now()).to_string();
    let event = huawei::parse_body(status.as_bytes(), &ctx())
        .unwrap()
        .records
        .remove(0);
    records.push(event.clone());
    records.push(event);
    let outcomes = store
        .commit(&crate::common::rows(&records), &[])
        .await
        .unwrap();
    use Outcome::{Duplicate, Inserted};
    assert_eq!(
        outcomes,
        [Inserted, Duplicate, Inserted, Inserted, Duplicate]
    );
    assert_eq!(db.count("cdrs").await, 2);
    assert_eq!(db.count("call_events").await, 1);
    store.close().await;
    db.drop_db().await;
}

async fn dead_letters_keep_their_bytes_and_are_never_deduplicated(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let outcomes = store
        .commit(&[dead_letter(), dead_letter()], &[])
        .await
        .unwrap();
    assert_eq!(outcomes, [Outcome::Inserted, Outcome::Inserted]);
    let rows = db
        .rows("SELECT body, body_bytes, request_id FROM dead_letters")
        .await;
    assert_eq!(rows.len(), 2);
    let sent: &[u8] = b"{\"eventType\": \xff";
    assert_eq!(rows[0].get::<Vec<u8>, _>(0), sent);
    assert_eq!(rows[0].get::<Option<i32>, _>(1), Some(sent.len() as i32));
    assert_eq!(
        rows[0].get::<Option<String>, _>(2).as_deref(),
        Some("req-1")
    );
    store.close().await;
    db.drop_db().await;
}

async fn batches_larger_than_one_statement_are_chunked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    // More rows than one statement takes on either backend (SQLite 666, PostgreSQL 1250).
    let records = fee_records(3, 1500);
    let outcomes = store
        .commit(&crate::common::rows(&records), &[])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::Inserted));
    assert_eq!(db.count("cdrs").await, 1500);
    store.close().await;
    db.drop_db().await;
}

async fn a_refused_record_rolls_back_its_whole_batch(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut records = fee_records(4, 3);
    if let Record::Cdr(c) = &mut records[2] {
        c.direction = 7; // the CHECK constraint refuses it
    }
    let mut rows = crate::common::rows(&records);
    rows.push(dead_letter());
    let err = store.commit(&rows, &[]).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(db.count("cdrs").await, 0);
    assert_eq!(db.count("dead_letters").await, 0);
    store.close().await;
    db.drop_db().await;
}

async fn typed_columns_hold_the_parsed_values(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut body: serde_json::Value =
        serde_json::from_str(&crate::common::fixture("huawei/fee.json")).unwrap();
    body["feeLst"][0]["callEndTime"] = "2019-01-24 03:04:30".into(); // before the answer
    let records = huawei::parse_body(body.to_string().as_bytes(), &ctx())
        .unwrap()
        .records;
    store
        .commit(&crate::common::rows(&records), &[])
        .await
        .unwrap();
    let sql = match backend {
        Backend::Postgres => {
            "SELECT CAST(EXTRACT(EPOCH FROM call_end_time) AS BIGINT), \
             CAST(EXTRACT(EPOCH FROM answered_at) AS BIGINT), array_to_string(flags, ','), \
             talk_seconds, raw->>'icid' FROM cdrs"
        }
        Backend::Sqlite => {
            "SELECT unixepoch(call_end_time), unixepoch(answered_at), \
             (SELECT group_concat(value) FROM json_each(flags)), talk_seconds, \
             json_extract(raw, '$.icid') FROM cdrs"
        }
    };
    let row = &db.rows(sql).await[0];
    let end = Utc
        .with_ymd_and_hms(2019, 1, 24, 3, 4, 30)
        .unwrap()
        .timestamp();
    let answer = Utc
        .with_ymd_and_hms(2019, 1, 24, 3, 4, 38)
        .unwrap()
        .timestamp();
    assert_eq!(row.get::<i64, _>(0), end);
    assert_eq!(row.get::<i64, _>(1), answer);
    assert_eq!(row.get::<String, _>(2), "end_before_answer");
    assert_eq!(
        row.get::<Option<i32>, _>(3),
        None,
        "no talk time when the order is impossible"
    );
    assert_eq!(row.get::<String, _>(4), "CAE-20190124110424-12019775");
    store.close().await;
    db.drop_db().await;
}

async fn report_views_explain_codes_and_sum_days(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store
        .commit(&crate::common::rows(&fee_records(5, 50)), &[])
        .await
        .unwrap();
    // Unanswered sample notification calls carry release point 514, which lies inside the SIP
    // range 400-699 too: the narrower, specific meaning wins.
    let meaning = db
        .rows(
            "SELECT DISTINCT ul_fail_reason_meaning FROM cdrs_explained WHERE ul_fail_reason = 514",
        )
        .await;
    assert_eq!(meaning.len(), 1);
    assert_eq!(meaning[0].get::<String, _>(0), "振铃超时");
    let q850 = db
        .rows("SELECT DISTINCT call_out_unasw_rsn_meaning FROM cdrs_explained WHERE call_out_unasw_rsn = 19")
        .await;
    assert_eq!(q850[0].get::<String, _>(0), "无用户应答");
    // PostgreSQL's cdr_daily is a rollup, folded on a timer; SQLite's a view.
    let maintainer = store.maintainer().unwrap();
    maintainer.fold_rollups("UTC").await.unwrap();
    let daily = db
        .rows("SELECT CAST(SUM(calls) AS BIGINT), CAST(SUM(answered) AS BIGINT), CAST(SUM(talk_seconds) AS BIGINT) FROM cdr_daily")
        .await;
    let talk = db
        .scalar_i64("SELECT CAST(SUM(talk_seconds) AS BIGINT) FROM cdrs")
        .await;
    assert_eq!(daily[0].get::<i64, _>(0), 50);
    assert_eq!(daily[0].get::<i64, _>(1), 40);
    assert_eq!(daily[0].get::<i64, _>(2), talk);
    assert!(talk > 0);
    store.close().await;
    db.drop_db().await;
}

fn with_outbox(records: &[Record]) -> Vec<ringback::domain::OutboxEntry> {
    records.iter().map(ringback::message::encode).collect()
}

/// The outbox entries of a submission's records (none for its other rows).
fn rows_outbox(rows: &[domain::Row]) -> Vec<ringback::domain::OutboxEntry> {
    rows.iter()
        .filter_map(domain::Row::record)
        .map(ringback::message::encode)
        .collect()
}

async fn outbox_entries_come_with_new_records_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let records = fee_records(6, 50);
    let entries = with_outbox(&records);
    store
        .commit(&crate::common::rows(&records), &entries)
        .await
        .unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap().pending, 50);
    // A platform retry: duplicates, so no new entry.
    store
        .commit(&crate::common::rows(&records), &entries)
        .await
        .unwrap();
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (50, 0));
    assert!(backlog.oldest.is_some());
    store.close().await;
    db.drop_db().await;
}

/// A retried push whose first half is already stored: the new half is inserted with its
/// outbox entries (in commit order), the stored half answered as duplicates with none.
async fn a_partly_stored_batch_inserts_only_its_new_records(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let records = fee_records(8, 50);
    let entries = with_outbox(&records);
    store
        .commit(&crate::common::rows(&records[..25]), &entries[..25])
        .await
        .unwrap();
    let outcomes = store
        .commit(&crate::common::rows(&records), &entries)
        .await
        .unwrap();
    let mut expected = vec![Outcome::Duplicate; 25];
    expected.extend([Outcome::Inserted; 25]);
    assert_eq!(outcomes, expected);
    assert_eq!(db.count("cdrs").await, 50);
    assert_eq!(db.count("outbox_records").await, 50);
    let claimed = claim(
        &*store,
        100,
        std::time::Duration::from_secs(60),
        std::time::Duration::ZERO,
    )
    .await;
    let ids: Vec<_> = claimed.iter().map(|e| e.id).collect();
    let want: Vec<_> = entries.iter().map(|e| e.id).collect();
    assert_eq!(ids, want, "one entry per record, in commit order");
    store.close().await;
    db.drop_db().await;
}

/// A batch as a busy server builds them: CDRs, call events and ACS events together, plus a
/// dead letter. PostgreSQL commits batches of only CDRs and call events as one statement and
/// the others in a transaction; either way every new record gets exactly one outbox entry and
/// a retry none.
async fn mixed_batches_get_one_outbox_entry_per_new_record(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let acs = acs_records("eventgrid/CallStarted.json");
    assert!(!acs.is_empty());
    let hot: Vec<domain::Row> = [
        fee_records(20, 5),
        status("callout", "s-1"),
        status("answer", "s-1"),
    ]
    .concat()
    .into_iter()
    .map(domain::Row::Record)
    .collect();
    let mut mixed: Vec<domain::Row> = [fee_records(21, 3), status("callout", "s-2"), acs.clone()]
        .concat()
        .into_iter()
        .map(domain::Row::Record)
        .collect();
    mixed.push(dead_letter());
    for batch in [&hot, &mixed] {
        let outcomes = store.commit(batch, &rows_outbox(batch)).await.unwrap();
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Inserted),
            "{outcomes:?}"
        );
    }
    let published = |rows: &[domain::Row]| rows_outbox(rows).len() as i64;
    let want = published(&hot) + published(&mixed);
    assert_eq!(
        want,
        5 + 2 + 3 + 1 + acs.len() as i64,
        "every record but the dead letter"
    );
    assert_eq!(store.outbox_backlog().await.unwrap().pending, want);
    // Retries, each with one record that is new.
    let retry_hot = [
        hot.clone(),
        crate::common::rows(&status("disconnect", "s-1")),
    ]
    .concat();
    // A retried request's dead letter is a new one (dead letters are never deduplicated).
    let mut retry_mixed = [mixed.clone(), crate::common::rows(&fee_records(22, 1))].concat();
    retry_mixed.retain(|r| !matches!(r, domain::Row::DeadLetter(_)));
    retry_mixed.push(dead_letter());
    for batch in [&retry_hot, &retry_mixed] {
        let outcomes = store.commit(batch, &rows_outbox(batch)).await.unwrap();
        let inserted = outcomes.iter().filter(|o| **o == Outcome::Inserted).count();
        let dead_letters = batch
            .iter()
            .filter(|r| matches!(r, domain::Row::DeadLetter(_)))
            .count();
        assert_eq!(inserted, 1 + dead_letters, "{outcomes:?}");
    }
    assert_eq!(store.outbox_backlog().await.unwrap().pending, want + 2);
    let claimed = claim(&*store, 1000, Duration::from_secs(60), Duration::ZERO).await;
    let mut ids: Vec<_> = claimed.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as i64, want + 2, "one entry per record");
    store.close().await;
    db.drop_db().await;
}

/// A status push's record (a call event), at a fixed event time.
fn status(event: &str, session: &str) -> Vec<Record> {
    let at = Utc.with_ymd_and_hms(2026, 11, 21, 8, 0, 0).unwrap();
    let body = sample::status_body(event, session, at).to_string();
    huawei::parse_body(body.as_bytes(), &ctx()).unwrap().records
}

/// The records of an ACS fixture.
fn acs_records(fixture: &str) -> Vec<Record> {
    let body = std::fs::read(format!("tests/fixtures/acs/{fixture}")).unwrap();
    match ringback::sources::acs::parse_body(&body, &ctx()).unwrap() {
        ringback::sources::Delivery::Records(parsed) => parsed.records,
        _ => panic!("a fixture of records"),
    }
}

/// CDRs, call events and ACS events of hot and mixed batches.
fn every_kind() -> Vec<Vec<Record>> {
    let acs = [
        acs_records("eventgrid/CallStarted.json"),
        acs_records("eventgrid/ChatMessageReceived.json"),
    ]
    .concat();
    vec![
        [
            fee_records(30, 50),
            status("callout", "s-1"),
            status("collectInfo", "s-1"),
        ]
        .concat(),
        [status("disconnect", "s-1"), acs, fee_records(31, 3)].concat(),
    ]
}

/// What a catch-up publishes is exactly what the fast path would have: on PostgreSQL the
/// entries of CDRs and call events are stored without their value, which is rebuilt from the
/// record's row when they are claimed.
async fn claimed_entries_are_the_messages_of_the_commit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut want = Vec::new();
    for batch in every_kind() {
        let entries = with_outbox(&batch);
        store
            .commit(&crate::common::rows(&batch), &entries)
            .await
            .unwrap();
        want.extend(entries);
    }
    let rebuilt = want
        .iter()
        .filter(|e| matches!(e.kind, RecordKind::Cdr | RecordKind::CallStatus))
        .count() as i64;
    assert_eq!(rebuilt, 50 + 2 + 1 + 3);
    assert!(want.len() as i64 > rebuilt, "other kinds too");
    let stored_without = db
        .scalar_i64(
            "SELECT COUNT(*) FROM outbox_records r JOIN outbox o ON o.id = r.row_id \
             WHERE o.payload IS NULL",
        )
        .await;
    let expected = match backend {
        Backend::Postgres => rebuilt,
        Backend::Sqlite => 0,
    };
    assert_eq!(stored_without, expected);
    let claimed = claim(&*store, 1000, Duration::from_secs(60), Duration::ZERO).await;
    assert_eq!(claimed.len(), want.len());
    // Value for value, and in commit order for each key (PostgreSQL keeps a commit's CDRs and
    // call events in one row, so a batch's other kinds may come before or after them).
    let by_key = |entries: &[ringback::domain::OutboxEntry]| {
        let mut keys: std::collections::BTreeMap<String, Vec<_>> = Default::default();
        for e in entries {
            keys.entry(e.key.clone()).or_default().push(e.clone());
        }
        keys
    };
    assert_eq!(
        by_key(&claimed),
        by_key(&want),
        "in commit order, value for value"
    );
    store.close().await;
    db.drop_db().await;
}

/// PostgreSQL keeps a commit's CDRs and call events in one outbox row named after the first of
/// them (its other kinds keep a row each); `outbox_records` lists them one by one. A row given
/// back with some of its records already on Kafka is trimmed of them, so a catch-up sends only
/// the others; trimmed of all, it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_commit_s_records_share_one_outbox_row() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    assert!(store.commit_rows());
    let batch = every_kind().pop().unwrap();
    let entries = with_outbox(&batch);
    store
        .commit(&crate::common::rows(&batch), &entries)
        .await
        .unwrap();
    let hot: Vec<Uuid> = entries
        .iter()
        .filter(|e| matches!(e.kind, RecordKind::Cdr | RecordKind::CallStatus))
        .map(|e| e.id)
        .collect();
    let others = entries.len() - hot.len();
    assert!(hot.len() > 2 && others > 0, "{} and {others}", hot.len());
    let row = ringback::domain::commit_row_id(hot[0]);
    let rows = db
        .rows("SELECT CAST(id AS TEXT), kind, cardinality(ids) FROM outbox ORDER BY seq")
        .await;
    assert_eq!(
        rows.len(),
        1 + others,
        "one row for the commit, one per other record"
    );
    let commit: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<String, _>(1) == "commit")
        .collect();
    assert_eq!(commit.len(), 1);
    assert_eq!(commit[0].get::<String, _>(0), row.to_string());
    assert_eq!(commit[0].get::<i32, _>(2) as usize, hot.len());
    let listed: Vec<String> = db
        .rows(&format!(
            "SELECT CAST(id AS TEXT) FROM outbox_records WHERE row_id = '{row}' ORDER BY ord"
        ))
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let want: Vec<String> = hot.iter().map(Uuid::to_string).collect();
    assert_eq!(listed, want, "the commit's records in commit order");
    assert_eq!(
        store.outbox_backlog().await.unwrap().pending as usize,
        entries.len()
    );

    // A 0.2.0 replica beside this one in a rolling upgrade marks a commit's row failed (it
    // knows no kind "commit"); the next start of any upgraded replica gives it back.
    db.execute("UPDATE outbox SET failed_at = now(), last_error = 'unknown record kind \"commit\"' WHERE kind = 'commit'")
        .await;
    assert_eq!(store.outbox_backlog().await.unwrap().failed, 1);
    store.migrate().await.unwrap();
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(
        (backlog.pending as usize, backlog.failed),
        (entries.len(), 0)
    );

    // Given back with its first two records delivered: claimed again without them.
    store.trim_commit_row(row, &hot[..2]).await.unwrap();
    let claimed = claim(&*store, 1000, Duration::from_secs(60), Duration::ZERO).await;
    let claimed_hot: Vec<Uuid> = claimed
        .iter()
        .filter(|e| matches!(e.kind, RecordKind::Cdr | RecordKind::CallStatus))
        .map(|e| e.id)
        .collect();
    assert_eq!(claimed_hot, hot[2..]);
    assert_eq!(claimed.len(), entries.len() - 2);
    // Trimmed of the rest, the row is gone.
    store.trim_commit_row(row, &hot[2..]).await.unwrap();
    assert_eq!(
        db.scalar_i64("SELECT COUNT(*) FROM outbox WHERE kind = 'commit'")
            .await,
        0
    );
    store.close().await;
    db.drop_db().await;
}

/// An entry whose value cannot be rebuilt (its record's row deleted, or its JSON no longer
/// valid) is marked failed with the reason at its claim, never published half-made nor
/// claimed forever; the others are claimed as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_entry_that_cannot_be_rebuilt_is_marked_failed() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let records = fee_records(32, 5);
    let entries = with_outbox(&records);
    store
        .commit(&crate::common::rows(&records), &entries)
        .await
        .unwrap();
    db.execute(&format!("DELETE FROM cdrs WHERE id = '{}'", entries[1].id))
        .await;
    db.execute(&format!(
        "UPDATE cdrs SET raw = '{{\"sessionId\": 7}}' WHERE id = '{}'",
        entries[3].id
    ))
    .await;
    let claimed = claim(&*store, 100, Duration::from_secs(60), Duration::ZERO).await;
    let ids: Vec<_> = claimed.iter().map(|e| e.id).collect();
    assert_eq!(ids, [entries[0].id, entries[2].id, entries[4].id]);
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (3, 2));
    let errors = db
        .rows("SELECT CAST(id AS TEXT), last_error FROM outbox WHERE failed_at IS NOT NULL ORDER BY seq")
        .await;
    let error = |i: usize| errors[i].get::<String, _>(1);
    assert_eq!(errors[0].get::<String, _>(0), entries[1].id.to_string());
    assert!(error(0).contains("no longer stored"), "{}", error(0));
    assert!(error(1).contains("no longer parses"), "{}", error(1));
    store.close().await;
    db.drop_db().await;
}

async fn claims_follow_commit_order_and_never_overlap(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let records = fee_records(7, 100);
    let entries = with_outbox(&records);
    // Ten commits of ten: on PostgreSQL ten rows of ten records, claimed whole.
    for commit in 0..10 {
        let range = commit * 10..commit * 10 + 10;
        store
            .commit(
                &crate::common::rows(&records[range.clone()]),
                &entries[range],
            )
            .await
            .unwrap();
    }
    // The outbox row of entry `i`: its own, or its commit's.
    let row = |i: usize| {
        if store.commit_rows() {
            ringback::domain::commit_row_id(entries[i / 10 * 10].id)
        } else {
            entries[i].id
        }
    };
    let position = |id| entries.iter().position(|e| e.id == id).unwrap();
    let lease = Duration::from_secs(60);

    // Two publishers (two pools, as two replicas would have) claim at the same time.
    let other = db.store().await;
    let (a, b) = tokio::join!(
        claim(&*store, 30, lease, Duration::ZERO),
        claim(&*other, 30, lease, Duration::ZERO)
    );
    assert_eq!(a.len() + b.len(), 60);
    let mut ids: Vec<_> = a.iter().chain(&b).map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "no entry was claimed twice");
    // Each claim is in commit order, and together they are the first 60 entries.
    for claim in [&a, &b] {
        let order: Vec<_> = claim.iter().map(|e| position(e.id)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!(order.iter().all(|&p| p < 60));
    }
    assert_eq!(a[0].payload, entries[position(a[0].id)].payload);

    // Leased entries are not claimed again; released ones are, first (a commit's row whole).
    let rest = claim(&*store, 100, lease, Duration::ZERO).await;
    assert_eq!(rest.len(), 40);
    let first = position(a[0].id);
    store
        .release_outbox(&[row(first)], "broker down")
        .await
        .unwrap();
    let again = claim(&*store, 100, lease, Duration::ZERO).await;
    let released: Vec<_> = (0..100)
        .filter(|&i| row(i) == row(first))
        .map(|i| entries[i].id)
        .collect();
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), released);

    // Young entries wait for the fast path.
    store.release_outbox(&[row(first)], "x").await.unwrap();
    let young = claim(&*store, 100, lease, Duration::from_secs(3600)).await;
    assert!(young.is_empty());

    let mut published: Vec<_> = (0..90).map(row).collect();
    published.dedup();
    store.mark_published(&published, true).await.unwrap();
    store
        .mark_failed(entries[90].id, "message too large")
        .await
        .unwrap();
    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (9, 1));
    assert_eq!(
        store
            .prune_outbox(Utc::now() - chrono::Duration::hours(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_outbox(Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        published.len() as u64
    );
    assert_eq!(db.count("outbox_records").await, 10);
    // Without retention, publishing deletes at once (a commit's row with all its records).
    store.mark_published(&[row(91)], false).await.unwrap();
    let (records_left, pending) = match store.commit_rows() {
        true => (1, 0),
        false => (9, 8),
    };
    assert_eq!(db.count("outbox_records").await, records_left);
    assert_eq!(store.outbox_backlog().await.unwrap().pending, pending);
    other.close().await;
    store.close().await;
    db.drop_db().await;
}

async fn replay_pages_walk_a_time_range(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut all = Vec::new();
    for (i, minute) in [0, 10, 20].into_iter().enumerate() {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 8, minute, 0).unwrap();
        let body = sample::fee_body(100 + i as u64, 30, at).to_string();
        let ctx = ParseContext {
            source: "hw".into(),
            received_at: at,
            region: None,
        };
        let records = huawei::parse_body(body.as_bytes(), &ctx).unwrap().records;
        store
            .commit(&crate::common::rows(&records), &[])
            .await
            .unwrap();
        all.push(records);
    }
    let since = Utc.with_ymd_and_hms(2026, 11, 21, 8, 5, 0).unwrap();
    let until = Utc.with_ymd_and_hms(2026, 11, 21, 8, 20, 0).unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .replay_page(RecordKind::Cdr, since, until, after, 7)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.received_at, last.id));
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let mut want: Vec<_> = all[1].iter().map(|r| r.id()).collect();
    want.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, want, "exactly the records received in [08:05, 08:20)");
    assert_eq!(seen.len(), 30, "no record twice across pages");
    store.close().await;
    db.drop_db().await;
}

/// A request's records behind its nonce, as the ingest submits them.
fn guarded(nonce: &str, body: &[u8], records: Vec<domain::Row>) -> Vec<domain::Row> {
    let expires = Utc::now() + chrono::Duration::minutes(10);
    let n = records.len() as u32;
    let mut batch = vec![domain::Row::Nonce(Box::new(Nonce::new(
        "hw".into(),
        nonce.into(),
        expires,
        n,
        body,
    )))];
    batch.extend(records);
    batch
}

/// A nonce guards its request's records: taken by another request (a replay with another
/// body), nothing of the replay is stored, on the one-statement path (CDRs only) and the
/// transaction path (with a dead letter); taken by the same request (a commit retried after
/// its answer was lost), it is no replay. Other requests of the same batch are unaffected.
async fn a_taken_nonce_keeps_its_records_out(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let first = guarded("n1", b"body-1", crate::common::rows(&fee_records(1, 3)));
    assert_eq!(
        store.commit(&first, &[]).await.unwrap(),
        vec![Outcome::Inserted; 4]
    );
    // The same request again: reclaimed, its records duplicates.
    assert_eq!(
        store.commit(&first, &[]).await.unwrap(),
        [vec![Outcome::Inserted], vec![Outcome::Duplicate; 3]].concat()
    );
    for with_dead_letter in [false, true] {
        let mut replay = crate::common::rows(&fee_records(2, 2));
        if with_dead_letter {
            replay.push(dead_letter());
        }
        let mut batch = guarded("n1", b"forged", replay);
        // Another request in the same batch, with a nonce of its own.
        batch.extend(guarded(
            "n2",
            b"other",
            crate::common::rows(&fee_records(3, 1)),
        ));
        let outcomes = store.commit(&batch, &[]).await.unwrap();
        assert_eq!(
            outcomes[0],
            Outcome::Duplicate,
            "the replay's nonce is taken"
        );
        let replayed = if with_dead_letter { 3 } else { 2 };
        assert!(
            outcomes[1..=replayed]
                .iter()
                .all(|o| *o == Outcome::Duplicate),
            "{outcomes:?}"
        );
        // n2's request: new in the first round; in the second the same request again
        // (reclaimed, its CDR a duplicate).
        let n2 = if with_dead_letter {
            [Outcome::Inserted, Outcome::Duplicate]
        } else {
            [Outcome::Inserted, Outcome::Inserted]
        };
        assert_eq!(&outcomes[replayed + 1..], &n2[..], "{outcomes:?}");
    }
    assert_eq!(db.count("cdrs").await, 4, "3 of the first request, 1 of n2");
    assert_eq!(
        db.count("dead_letters").await,
        0,
        "the replay's dead letter is left out"
    );
    assert_eq!(db.count("nonces").await, 2);
    store.close().await;
    db.drop_db().await;
}

/// `ringback dead-letters`: filters, one lease at a time, an outcome only from the holder,
/// a lapsed lease taken over, a finished letter taken by no later run.
async fn dead_letter_leases_exclude_each_other(backend: Backend) {
    use ringback::store::dead_letters::{Filter, Finished, Reprocessed as Done};
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store
        .commit(&[dead_letter(), dead_letter()], &[])
        .await
        .unwrap();
    let letters = store.dead_letters().unwrap();
    let pending = Filter {
        pending: true,
        ..Filter::default()
    };
    let all = letters.page(&pending, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].received_at <= all[1].received_at);
    let by_id = Filter {
        ids: vec![all[1].id],
        ..Filter::default()
    };
    assert_eq!(
        letters.page(&by_id, None, 10).await.unwrap()[0].id,
        all[1].id
    );
    let other = Filter {
        code: Some("invalid_utf8".into()),
        ..Filter::default()
    };
    assert!(letters.page(&other, None, 10).await.unwrap().is_empty());
    let after = Some((all[0].received_at, all[0].id));
    assert_eq!(letters.page(&pending, after, 10).await.unwrap().len(), 1);

    let now = Utc::now();
    let soon = now + chrono::Duration::minutes(5);
    let letter = &all[0];
    assert!(letters.claim(letter, "a", now, soon, false).await.unwrap());
    assert!(
        !letters.claim(letter, "b", now, soon, false).await.unwrap(),
        "held by a"
    );
    let done = Finished {
        outcome: Done::Refused,
        code: Some("invalid_utf8".into()),
        detail: Some("still not UTF-8".into()),
        records: Vec::new(),
    };
    assert!(
        !letters.finish(letter, "b", now, &done).await.unwrap(),
        "b holds no lease"
    );
    // a's lease lapses: b takes the letter over, and a can no longer finish it.
    let later = soon + chrono::Duration::seconds(1);
    assert!(letters
        .claim(
            letter,
            "b",
            later,
            later + chrono::Duration::minutes(5),
            false
        )
        .await
        .unwrap());
    assert!(!letters.finish(letter, "a", later, &done).await.unwrap());
    assert!(letters.finish(letter, "b", later, &done).await.unwrap());
    let left = letters.page(&pending, None, 10).await.unwrap();
    assert_eq!(left.len(), 1, "a finished letter is not pending");
    assert!(!letters
        .claim(letter, "c", later, later, false)
        .await
        .unwrap());
    // --again takes refused letters back.
    let again = Filter {
        again: true,
        ..pending.clone()
    };
    assert_eq!(letters.page(&again, None, 10).await.unwrap().len(), 2);
    assert!(letters
        .claim(letter, "c", later, later, true)
        .await
        .unwrap());
    let shown = letters.page(&by_id, None, 10).await.unwrap();
    assert_eq!(shown.len(), 1);
    let first = letters
        .page(
            &Filter {
                ids: vec![letter.id],
                ..Filter::default()
            },
            None,
            1,
        )
        .await
        .unwrap()
        .remove(0);
    assert_eq!(first.reprocess_outcome.as_deref(), Some("refused"));
    assert_eq!(first.reprocess_code.as_deref(), Some("invalid_utf8"));
    assert_eq!(first.reprocess_records, Some(Vec::new()));
    assert_eq!(first.headers["content-type"], "application/json");
    store.close().await;
    db.drop_db().await;
}

/// Two replicas (two stores, two pools on one database) commit the same events at once, each
/// copy with other time fields (another month: another partition on PostgreSQL): a CDR whose
/// end time moved, and an ACS event redelivered with another `time`. Each is stored once,
/// with one outbox entry; whichever commit came second answers it as a duplicate.
async fn concurrent_copies_with_other_times_are_stored_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = (db.store().await, db.store().await);
    let september = Utc.with_ymd_and_hms(2026, 9, 21, 8, 0, 0).unwrap();
    let fee = sample::fee_body(7, 20, september).to_string();
    let copies = |month: u32| {
        let end = Utc.with_ymd_and_hms(2026, month, 21, 8, 0, 0).unwrap();
        // The same CDRs (same icid), their times moved to `month`.
        let fee = fee.replace("2026-09-", &format!("2026-{month:02}-"));
        let mut records = huawei::parse_body(fee.as_bytes(), &ctx()).unwrap().records;
        let sms = serde_json::json!([{"specversion": "1.0", "id": "sms-1", "source": "/acs",
            "type": "Microsoft.Communication.SMSReceived", "subject": "/phonenumber/1",
            "time": end.to_rfc3339(), "data": {"MessageId": "m", "From": "15555555555",
            "To": "+14255550123", "Message": "hi"}}])
        .to_string();
        let acs = ParseContext {
            source: "acs".into(),
            received_at: Utc::now().trunc_subsecs(6),
            region: None,
        };
        match ringback::sources::acs::parse_body(sms.as_bytes(), &acs).unwrap() {
            ringback::sources::Delivery::Records(p) => records.extend(p.records),
            ringback::sources::Delivery::Validation { .. } => unreachable!(),
        }
        records
    };
    let (early, late) = (copies(9), copies(11));
    assert_eq!(early.len(), 21);
    assert!(early
        .iter()
        .zip(&late)
        .all(|(x, y)| x.id() == y.id() && x != y));
    let outbox_of =
        |records: &[Record]| -> Vec<_> { records.iter().map(ringback::message::encode).collect() };
    let (oe, ol) = (outbox_of(&early), outbox_of(&late));
    let (early_rows, late_rows) = (crate::common::rows(&early), crate::common::rows(&late));
    let (ra, rb) = tokio::join!(a.commit(&early_rows, &oe), b.commit(&late_rows, &ol));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    for (i, (x, y)) in ra.iter().zip(&rb).enumerate() {
        let mut both = [*x, *y];
        both.sort_by_key(|o| *o == Outcome::Duplicate);
        assert_eq!(
            both,
            [Outcome::Inserted, Outcome::Duplicate],
            "record {i}: {x:?} {y:?}"
        );
    }
    assert_eq!(db.count("cdrs").await, 20);
    assert_eq!(db.count("phone_number_events").await, 1);
    assert_eq!(db.count("outbox_records").await, 21);
    a.close().await;
    b.close().await;
    db.drop_db().await;
}

/// `dead-letters list --request-id`: the letters of one request, by the X-Request-Id its
/// answer carried.
async fn dead_letters_are_found_by_request_id(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut other = dead_letter();
    if let domain::Row::DeadLetter(d) = &mut other {
        d.request_id = Some("req-2".into());
    }
    store
        .commit(&[dead_letter(), other, dead_letter()], &[])
        .await
        .unwrap();
    let letters = store.dead_letters().expect("both stores keep dead letters");
    let filter = |id: &str| ringback::store::dead_letters::Filter {
        request_id: Some(id.into()),
        ..Default::default()
    };
    let found = letters.page(&filter("req-1"), None, 10).await.unwrap();
    assert_eq!(found.len(), 2);
    assert!(found
        .iter()
        .all(|l| l.request_id.as_deref() == Some("req-1")));
    let found = letters.page(&filter("req-2"), None, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(letters
        .page(&filter("req-3"), None, 10)
        .await
        .unwrap()
        .is_empty());
    store.close().await;
    db.drop_db().await;
}

both_stores!(
    dead_letters_are_found_by_request_id,
    concurrent_copies_with_other_times_are_stored_once,
    dead_letter_leases_exclude_each_other,
    a_taken_nonce_keeps_its_records_out,
    outbox_entries_come_with_new_records_only,
    claimed_entries_are_the_messages_of_the_commit,
    a_partly_stored_batch_inserts_only_its_new_records,
    mixed_batches_get_one_outbox_entry_per_new_record,
    claims_follow_commit_order_and_never_overlap,
    replay_pages_walk_a_time_range,
    report_views_explain_codes_and_sum_days,
    migrations_are_idempotent,
    a_second_commit_of_the_same_records_is_all_duplicates,
    the_same_record_twice_in_one_batch_is_one_row,
    dead_letters_keep_their_bytes_and_are_never_deduplicated,
    batches_larger_than_one_statement_are_chunked,
    a_refused_record_rolls_back_its_whole_batch,
    typed_columns_hold_the_parsed_values,
);

/// Claims as the publisher does: the entries' messages, rebuilt where the outbox keeps none (an
/// entry that cannot be rebuilt marked failed).
async fn claim(
    store: &dyn ringback::store::Store,
    limit: u32,
    lease: Duration,
    min_age: Duration,
) -> Vec<ringback::domain::OutboxEntry> {
    let claimed = store
        .claim_outbox(limit, lease, min_age, false)
        .await
        .unwrap();
    publish::ready(store, &Default::default(), claimed)
        .await
        .unwrap()
}
