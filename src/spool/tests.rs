use std::path::Path;

use chrono::Utc;
use uuid::Uuid;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::SpoolConfig;
use crate::domain::{Code, DeadLetter, DeadLetterScope, Handshake, Row};
use crate::simulate::sample;
use crate::sources::{huawei, ParseContext};

fn config(dir: &Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        enabled: true,
        path: dir.join("spool.db"),
        fallback_after: Duration::from_secs(1),
        max_bytes,
        min_free_bytes: 0,
    }
}

async fn open(dir: &Path, max_bytes: u64) -> (Arc<Spool>, TaskTracker, CancellationToken) {
    let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
    let spool = Spool::open(
        &config(dir, max_bytes),
        Arc::new(Metrics::new()),
        &tasks,
        stop.clone(),
    )
    .await
    .unwrap();
    (spool, tasks, stop)
}

async fn close(spool: Arc<Spool>, tasks: TaskTracker, stop: CancellationToken) {
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    spool.close().await;
}

/// A batch of every shape a batch can hold: CDRs, a call event, a dead letter, a handshake.
fn batch(seed: u64) -> Vec<Row> {
    let ctx = ParseContext {
        source: "hw".into(),
        received_at: Utc::now().trunc_subsecs(6),
        region: None,
    };
    let body = sample::fee_body(seed, 3, Utc::now()).to_string();
    let mut records = Row::records(huawei::parse_body(body.as_bytes(), &ctx).unwrap().records);
    let session = sample::session_id(seed, 1, Utc::now());
    let status = sample::status_body("answer", &session, Utc::now()).to_string();
    let parsed = huawei::parse_body(status.as_bytes(), &ctx).unwrap();
    records.extend(Row::records(parsed.records));
    records.push(Row::DeadLetter(Box::new(DeadLetter {
        id: Uuid::new_v4(),
        source: "hw".into(),
        received_at: ctx.received_at,
        request_id: Some("r-1".into()),
        scope: DeadLetterScope::Record,
        record_index: Some(2),
        code: Code::InvalidValue,
        detail: "callerNum is not a number".into(),
        field: Some("feeLst[2].callerNum".into()),
        body: Some(b"{\"x\":1}".to_vec()),
        headers: serde_json::json!({"x-request-id": "r-1"}),
        auth: Some("aksk".into()),
    })));
    records.push(Row::Handshake(Box::new(Handshake {
        id: Uuid::new_v4(),
        source: "acs".into(),
        received_at: ctx.received_at,
        request_id: None,
        kind: crate::domain::HandshakeKind::CloudeventsOptions,
        detail: serde_json::json!({"origin": "eventgrid.azure.net"}),
    })));
    records
}

#[tokio::test]
async fn batches_survive_a_restart_in_order_and_read_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<Row>> = (0..3).map(batch).collect();
    let (spool, tasks, stop) = open(dir.path(), 1 << 30).await;
    assert!(!spool.is_active());
    assert!(
        spool.append(&batches[0], false).await.is_none(),
        "inactive: not spooled"
    );
    for b in &batches {
        spool.append(b, true).await.unwrap().unwrap();
    }
    assert!(spool.is_active());
    close(spool, tasks, stop).await;

    let (spool, tasks, stop) = open(dir.path(), 1 << 30).await;
    assert!(
        spool.is_active(),
        "a spool that holds batches starts active"
    );
    let status = spool.status();
    assert_eq!((status.entries, status.mode), (3, SpoolMode::Spooling));
    for want in &batches {
        let entry = spool.oldest().await.unwrap().unwrap();
        assert_eq!(entry.rows.as_ref().unwrap(), want);
        assert!(!spool.finish_if_empty().await, "not empty yet");
        spool.remove(&entry).await.unwrap();
    }
    assert!(spool.oldest().await.unwrap().is_none());
    assert!(spool.finish_if_empty().await);
    assert!(!spool.is_active());
    assert_eq!(
        spool.status().drained_records,
        batches.iter().map(Vec::len).sum::<usize>() as u64
    );
    close(spool, tasks, stop).await;
}

#[tokio::test]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, tasks, stop) = open(dir.path(), 1 << 30).await;
    let appends: Vec<_> = (0..64)
        .map(|seed| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(&batch(seed), true).await.unwrap() })
        })
        .collect();
    for a in appends {
        a.await.unwrap().unwrap();
    }
    let status = spool.status();
    assert_eq!(status.entries, 64);
    assert!(
        status.writes < 64,
        "64 concurrent appends took {} transactions: no group commit",
        status.writes
    );
    close(spool, tasks, stop).await;
}

#[tokio::test]
async fn a_full_spool_refuses_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let one = serde_json::to_vec(&batch(1)).unwrap().len() as u64;
    let (spool, tasks, stop) = open(dir.path(), one * 2 + one / 2).await;
    spool.append(&batch(1), true).await.unwrap().unwrap();
    spool.append(&batch(2), true).await.unwrap().unwrap();
    let refused = spool.append(&batch(3), true).await.unwrap();
    assert!(
        matches!(refused, Err(SpoolError::Full { .. })),
        "{refused:?}"
    );
    assert_eq!(spool.status().entries, 2);
    assert!(!spool.has_room() || spool.status().bytes + one > spool.status().max_bytes);
    close(spool, tasks, stop).await;
}

#[tokio::test]
async fn a_damaged_file_is_moved_aside_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("spool.db"),
        b"this is not a SQLite database at all, not even close",
    )
    .unwrap();
    let (spool, tasks, stop) = open(dir.path(), 1 << 30).await;
    assert_eq!(spool.status().corruption_events, 1);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("spool.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    spool.append(&batch(1), true).await.unwrap().unwrap();
    assert_eq!(spool.status().entries, 1);
    close(spool, tasks, stop).await;
}

#[tokio::test]
async fn what_a_damaged_file_still_holds_is_kept_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<Row>> = (0..40).map(batch).collect();
    let (spool, tasks, stop) = open(dir.path(), 1 << 30).await;
    for b in &batches {
        spool.append(b, true).await.unwrap().unwrap();
    }
    close(spool, tasks, stop).await;
    // Damage the second half of the file (a disk that lost writes, not a crash SQLite's
    // journal covers).
    let path = dir.path().join("spool.db");
    let mut bytes = std::fs::read(&path).unwrap();
    let half = bytes.len() / 2;
    for b in &mut bytes[half..] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("spool.db-wal"));

    let (spool, tasks, stop) = open(dir.path(), 1 << 30).await;
    assert_eq!(spool.status().corruption_events, 1, "counted");
    let mut kept = Vec::new();
    while let Some(entry) = spool.oldest().await.unwrap() {
        kept.push(entry.rows.clone().unwrap());
        spool.remove(&entry).await.unwrap();
    }
    assert!(
        kept.len() < batches.len(),
        "the damaged entries are not kept"
    );
    // What was kept is exactly what was written, in order.
    for (got, want) in kept.iter().zip(&batches) {
        assert_eq!(got, want);
    }
    spool.append(&batch(99), true).await.unwrap().unwrap();
    close(spool, tasks, stop).await;
}

#[tokio::test]
async fn an_entry_of_a_newer_format_is_set_aside_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, tasks, stop) = open(dir.path(), 1 << 30).await;
    spool.append(&batch(1), true).await.unwrap().unwrap();
    sqlx::query("UPDATE entries SET version = ?1")
        .bind(FORMAT_VERSION + 1)
        .execute(&spool.pool)
        .await
        .unwrap();
    let entry = spool.oldest().await.unwrap().unwrap();
    let reason = entry.rows.as_ref().unwrap_err().clone();
    assert!(reason.contains("newer"), "{reason}");
    spool.fail(&entry, &reason).await.unwrap();
    let status = spool.status();
    assert_eq!((status.entries, status.failed_entries), (0, 1));
    assert!(spool.oldest().await.unwrap().is_none());
    close(spool, tasks, stop).await;
}

/// The spool bytes one request can cause: its records as the spool writes them (JSON), for the
/// largest bodies a sender may send: 1 MiB of ACS events, the fewer the larger, and a
/// 50-CDR fee push. docs/reference/endpoints.md states the bound this checks (at most 4 times the body).
#[test]
fn the_spool_bytes_of_a_request_are_bounded_by_its_body() {
    let ctx = ParseContext {
        source: "acs".into(),
        received_at: Utc::now(),
        region: None,
    };
    let sms = |i: usize, pad: usize| {
        serde_json::json!({"specversion": "1.0", "id": format!("sms-{i}"), "source": "/acs",
            "type": "Microsoft.Communication.SMSReceived", "subject": "/phonenumber/15555555555",
            "time": "2026-11-24T00:27:47Z", "data": {"MessageId": format!("m-{i}"),
            "From": "15555555555", "To": "+14255550123", "Message": "\"quoted\" ".repeat(pad),
            "ReceivedTimestamp": "2026-11-24T00:27:47Z"}})
        .to_string()
    };
    for pad in [0, 10, 1_000, 50_000] {
        let (mut events, mut size) = (Vec::new(), 2);
        loop {
            let e = sms(events.len(), pad);
            if size + e.len() + 1 > 1 << 20 || events.len() == crate::sources::acs::MAX_EVENTS {
                break;
            }
            size += e.len() + 1;
            events.push(e);
        }
        let body = format!("[{}]", events.join(","));
        let crate::sources::Delivery::Records(parsed) =
            crate::sources::acs::parse_body(body.as_bytes(), &ctx).unwrap()
        else {
            panic!("records")
        };
        let spooled = serde_json::to_vec(&parsed.records).unwrap().len();
        let ratio = spooled as f64 / body.len() as f64;
        eprintln!(
            "{} events of {pad}: {spooled} spool bytes for a body of {} ({ratio:.2}x)",
            events.len(),
            body.len()
        );
        assert!(
            ratio <= 4.0,
            "{} events of {pad}: {spooled} spool bytes for a body of {}",
            events.len(),
            body.len()
        );
    }
    let fee = sample::fee_body(1, 50, Utc::now()).to_string();
    let records = huawei::parse_body(fee.as_bytes(), &ctx).unwrap().records;
    let spooled = serde_json::to_vec(&records).unwrap().len();
    eprintln!(
        "50 CDRs: {spooled} spool bytes for a fee body of {}",
        fee.len()
    );
    assert!(
        spooled <= 4 * fee.len(),
        "{spooled} spool bytes for a fee body of {}",
        fee.len()
    );
}
