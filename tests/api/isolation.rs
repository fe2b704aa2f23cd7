//! Isolation: what one sender sends cannot fail another's records or stop the pipeline. A
//! record the database refuses (a NUL character in end-user text) fails alone, live and through
//! the spool; an event delivered again with other time fields is a duplicate.

use std::time::Duration;

use serde_json::Value;

use crate::both_stores;
use crate::common::{spawn_app_with, Backend, TestApp};
use ringback::config::Config;

const ACS: &str = "[sources.acs]\nkind = \"azure-communication\"\nauth = \"none\"\n";

fn with_acs(c: &mut Config) {
    c.sources
        .extend(Config::from_toml(ACS).expect("acs source").sources);
}

/// A Huawei status push of session `session`, with `user_data` (JSON-escaped by the caller).
fn status_push(session: &str, user_data: &str) -> String {
    format!(
        r#"{{"eventType":"answer","statusInfo":{{"sessionId":"{session}","timestamp":"2026-11-24 03:04:31","caller":"+8613800000022","called":"+8613800000021","userData":"{user_data}"}}}}"#
    )
}

/// A CloudEvents SMSReceived of id `id` with `message` (JSON-escaped), at `time`.
fn sms(id: &str, message: &str, time: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/subscriptions/x/acs-contoso","type":"Microsoft.Communication.SMSReceived","subject":"/phonenumber/15555555555","time":"{time}","datacontenttype":"application/json","data":{{"MessageId":"m-{id}","From":"15555555555","To":"+14255550123","Message":"{message}","ReceivedTimestamp":"{time}"}}}}"#
    )
}

/// An Event Grid ChatMessageReceived of id `id` with `body` (JSON-escaped).
fn chat(id: &str, body: &str) -> String {
    format!(
        r#"{{"id":"{id}","topic":"/subscriptions/x/acs-contoso","subject":"thread/19:t@thread.v2","data":{{"messageBody":"{body}","messageId":"m-{id}","senderDisplayName":"Jhon","composeTime":"2026-11-24T00:25:58.927Z","type":"Text","version":1,"threadId":"19:t@thread.v2"}},"eventType":"Microsoft.Communication.ChatMessageReceived","dataVersion":"1.0","metadataVersion":"1","eventTime":"2026-11-24T00:25:59Z"}}"#
    )
}

async fn post(app: &TestApp, source: &str, body: String) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}/hooks/{source}", app.address))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn unstorable_letters(app: &TestApp) -> i64 {
    app.db
        .scalar_i64("SELECT COUNT(*) FROM dead_letters WHERE code = 'unstorable_record'")
        .await
}

/// 30 valid pushes of two sources and three poisoned ones (a NUL in Huawei `userData`, in an
/// SMS text, in one chat message of a two-event delivery), all at once: every valid record is
/// committed, each poisoned one is a dead letter with its JSON, the pipeline goes on.
async fn poisoned_records(app: &TestApp) -> Vec<(u16, Value)> {
    let mut sends = Vec::new();
    for i in 0..20 {
        sends.push(post(app, "open", status_push(&format!("ok-{i}"), "fine")));
    }
    for i in 0..10 {
        sends.push(post(
            app,
            "acs",
            sms(&format!("sms-{i}"), "hello", "2026-11-24T00:27:47Z"),
        ));
    }
    sends.push(post(app, "open", status_push("poisoned", "a\\u0000b")));
    sends.push(post(
        app,
        "acs",
        sms("sms-poisoned", "nul \\u0000 here", "2026-11-24T00:27:47Z"),
    ));
    sends.push(post(
        app,
        "acs",
        format!(
            "[{},{}]",
            chat("chat-ok", "hi"),
            chat("chat-poisoned", "\\u0000")
        ),
    ));
    futures_util::future::join_all(sends).await
}

/// PostgreSQL refuses text with U+0000: the three poisoned records are dead letters holding
/// their JSON as sent. SQLite's text holds it: they are stored like any other.
async fn check_poisoned_outcome(app: &TestApp, backend: Backend) {
    let stored = i64::from(backend == Backend::Sqlite);
    assert_eq!(app.db.count("call_events").await, 20 + stored);
    assert_eq!(app.db.count("phone_number_events").await, 10 + stored);
    assert_eq!(app.db.count("chat_events").await, 1 + stored);
    assert_eq!(unstorable_letters(app).await, 3 * (1 - stored));
    let bodies = app
        .db
        .rows("SELECT body FROM dead_letters WHERE code = 'unstorable_record'")
        .await;
    for row in bodies {
        let body: Vec<u8> = sqlx::Row::get(&row, 0);
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("\\u0000"), "the record as sent: {body}");
    }
}

async fn a_nul_character_fails_alone(backend: Backend) {
    let app = spawn_app_with(backend, with_acs, None).await;
    let answers = poisoned_records(&app).await;
    for (i, (status, body)) in answers[..30].iter().enumerate() {
        assert_eq!(*status, 200, "valid push {i}: {body}");
        assert_eq!(body["accepted"], 1, "valid push {i}: {body}");
    }
    if backend == Backend::Postgres {
        // A push whose only record is refused is refused with the specific code.
        for (status, body) in &answers[30..32] {
            assert_eq!(*status, 400, "{body}");
            assert_eq!(body["error"]["code"], "unstorable_record", "{body}");
        }
        // Within a delivery of two events, the refused one is listed, the other committed.
        let (status, body) = &answers[32];
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["accepted"], 1, "{body}");
        assert_eq!(body["rejected"][0]["index"], 1, "{body}");
        assert_eq!(body["rejected"][0]["code"], "unstorable_record", "{body}");
    } else {
        assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    }
    check_poisoned_outcome(&app, backend).await;
    // The pipeline goes on.
    let (status, body) = post(&app, "open", status_push("after", "fine")).await;
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    app.stop().await;
}

/// With the database slow, the same pushes are spooled (all 200); the drain then commits every
/// valid record and keeps the poisoned ones as dead letters, and empties the spool.
async fn a_nul_character_in_the_spool_fails_alone() {
    let (app, handles) = crate::durability::spawn_wrapped(Backend::Postgres, false, 0, |c| {
        with_acs(c);
        c.spool.fallback_after = Duration::from_millis(200);
    })
    .await;
    let answers = poisoned_records(&app).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["spooled"], true, "{body}");
    }
    handles.gate.add_permits(1_000_000);
    let mut drained = false;
    for _ in 0..300 {
        let entries = app.metric("ringback_spool_entries").await;
        let spooling = app.metric("ringback_spool_spooling").await;
        if entries == Some(0.0) && spooling == Some(0.0) {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "the spool drains past its poisoned entries");
    check_poisoned_outcome(&app, Backend::Postgres).await;
    assert_eq!(app.metric("ringback_spool_failed_total").await, Some(0.0));
    let ready: Value = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    app.stop().await;
}

/// Without a spool, the poisoned requests' batch-mates are committed all the same.
async fn a_nul_character_without_a_spool_fails_alone() {
    let app = spawn_app_with(
        Backend::Postgres,
        |c| {
            with_acs(c);
            c.spool.enabled = false;
        },
        None,
    )
    .await;
    let answers = poisoned_records(&app).await;
    assert!(answers[..30].iter().all(|(s, _)| *s == 200), "{answers:?}");
    check_poisoned_outcome(&app, Backend::Postgres).await;
    app.stop().await;
}

/// A redelivery with other time fields is a duplicate: an SMS event delivered again with
/// another `time` (same CloudEvents source and id), and an Event Grid event again with another
/// `eventTime` (same topic and id), months apart so that PostgreSQL would put them in other
/// partitions.
async fn a_redelivery_with_another_time_is_a_duplicate(backend: Backend) {
    let app = spawn_app_with(backend, with_acs, None).await;
    let (status, body) = post(&app, "acs", sms("again", "hi", "2026-11-24T00:27:47Z")).await;
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    let (status, body) = post(&app, "acs", sms("again", "hi", "2026-09-02T10:00:00Z")).await;
    assert_eq!(
        (status, body["duplicates"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    let first = chat("chat-again", "hi");
    let (status, body) = post(&app, "acs", format!("[{first}]")).await;
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    let later = first.replace("2026-11-24T00:25:59Z", "2025-01-01T00:00:00Z");
    assert_ne!(first, later);
    // Twice in one delivery, and again later: one row.
    let (status, body) = post(&app, "acs", format!("[{later},{later}]")).await;
    assert_eq!(
        (status, body["duplicates"].as_i64()),
        (200, Some(2)),
        "{body}"
    );
    assert_eq!(app.db.count("phone_number_events").await, 1);
    assert_eq!(app.db.count("chat_events").await, 1);
    assert_eq!(app.db.count("outbox").await, 2);
    app.stop().await;
}

both_stores!(
    a_nul_character_fails_alone,
    a_redelivery_with_another_time_is_a_duplicate
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_the_spool_fails_alone_postgres() {
    a_nul_character_in_the_spool_fails_alone().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_without_a_spool_fails_alone_postgres() {
    a_nul_character_without_a_spool_fails_alone().await
}
