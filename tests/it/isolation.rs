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

/// Waits until the spool is empty and inactive (drained); false if it is not within 15 s.
async fn spool_drained(app: &TestApp) -> bool {
    for _ in 0..150 {
        if app.metric("ringback_spool_entries").await == Some(0.0)
            && app.metric("ringback_spool_spooling").await == Some(0.0)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The pipeline takes the next push.
async fn assert_the_pipeline_goes_on(app: &TestApp, session: &str) {
    let (status, body) = post(app, "open", status_push(session, "fine")).await;
    assert_eq!(
        (status, body["accepted"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
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
    assert_the_pipeline_goes_on(&app, "after").await;
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
    assert!(
        spool_drained(&app).await,
        "the spool drains past its poisoned entries"
    );
    check_poisoned_outcome(&app, Backend::Postgres).await;
    assert_eq!(app.metric("ringback_spool_failed_total").await, Some(0.0));
    let (status, ready) = app.readyz_until("ready").await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &Value::from("ready")),
        "{ready}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_in_the_spool_fails_alone_postgres() {
    a_nul_character_in_the_spool_fails_alone().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_without_a_spool_fails_alone_postgres() {
    a_nul_character_without_a_spool_fails_alone().await
}

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn with_standard_webhooks(c: &mut Config) {
    let extra = Config::from_toml(&format!(
        "[sources.sw]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\n\
         secrets = [\"{SW_SECRET}\"]\n"
    ))
    .unwrap();
    c.sources.extend(extra.sources);
}

async fn send_webhook(app: &TestApp, id: &str, ts: i64, body: &str) -> (u16, Value) {
    use ringback::auth::standard_webhooks::{decode_secret, sign};
    let secret = decode_secret(SW_SECRET).unwrap();
    let res = app
        .client
        .post(format!("{}/hooks/sw", app.address))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign(&secret, id, &ts.to_string(), body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Every Standard Webhooks sender signs each attempt with that attempt's timestamp: the retry
/// of a stored message (same webhook-id, later timestamp) is a duplicate, not a 500.
async fn a_standard_webhooks_retry_with_a_later_timestamp_is_a_duplicate(backend: Backend) {
    let app = spawn_app_with(backend, with_standard_webhooks, None).await;
    let body = r#"{"type": "invoice.paid", "amount": 42}"#;
    let now = chrono::Utc::now().timestamp();
    let (status, first) = send_webhook(&app, "msg_retry", now - 240, body).await;
    assert_eq!(
        (status, first["accepted"].as_i64()),
        (200, Some(1)),
        "{first}"
    );
    for later in [now - 100, now] {
        let (status, again) = send_webhook(&app, "msg_retry", later, body).await;
        assert_eq!(
            (status, again["duplicates"].as_i64()),
            (200, Some(1)),
            "{again}"
        );
    }
    assert_eq!(app.db.count("webhook_events").await, 1);
    app.stop().await;
}

/// 100 000 empty events in 300 KB: refused before any event is read, one dead letter. 5 000
/// invalid events (the most a delivery may hold): answered one by one, kept as ONE
/// request-scope letter holding the body, not 5 000 letters each with the headers.
async fn a_huge_array_is_refused_cheaply(backend: Backend) {
    let app = spawn_app_with(backend, with_acs, None).await;
    let huge = format!("[{}{{}}]", "{},".repeat(99_999));
    let (status, body) = post(&app, "acs", huge).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "too_many_events", "{body}");
    assert_eq!(app.db.count("dead_letters").await, 1);
    let most = format!("[{}{{}}]", "{},".repeat(4_999));
    let (status, body) = post(&app, "acs", most).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(5_000));
    assert_eq!(
        app.db.count("dead_letters").await,
        2,
        "one letter for the body"
    );
    let scope = app
        .db
        .rows("SELECT scope, body_bytes FROM dead_letters WHERE code <> 'too_many_events'")
        .await;
    let (scope, bytes): (String, i32) =
        (sqlx::Row::get(&scope[0], 0), sqlx::Row::get(&scope[0], 1));
    assert_eq!((scope.as_str(), bytes), ("request", 15_001));
    app.stop().await;
}

/// 2 000 requests with a wrong X-AKSK: each is 401, counted; at most a minute's few are kept
/// as rows; and they do not spend the source's rate limit, so the platform's next push goes
/// through.
async fn forged_requests_leave_counters_not_rows(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            let hw = c.sources.get_mut("hw").expect("hw source");
            hw.rate_limit = Some(ringback::config::RateLimit {
                per_second: std::num::NonZeroU32::new(5).unwrap(),
                burst: std::num::NonZeroU32::new(5).unwrap(),
            });
        },
        None,
    )
    .await;
    let forged = || {
        crate::common::x_aksk_at(
            crate::common::PUBLIC_URL,
            &uuid::Uuid::new_v4().simple().to_string(),
            chrono::Utc::now(),
            "a-forger-does-not-know-it",
        )
    };
    let padding = "x".repeat(6 * 1024);
    let mut statuses = Vec::new();
    for _ in 0..125 {
        let headers: Vec<[(&str, String); 2]> = (0..16)
            .map(|_| [("x-aksk", forged()), ("x-padding", padding.clone())])
            .collect();
        let sends = headers
            .iter()
            .map(|h| app.post_with("hw", crate::common::fixture("huawei/answer.json"), h));
        for res in futures_util::future::join_all(sends).await {
            statuses.push(res.status().as_u16());
        }
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let rows = app.db.count("dead_letters").await;
    let bound = i64::from(ringback::ingest::AUTH_FAILURE_LETTERS_PER_MINUTE) * 2;
    assert!(rows <= bound, "{rows} rows for 2 000 forged requests");
    let failures = app
        .metric("ringback_auth_failures_total{code=\"signature_mismatch\",source=\"hw\"}")
        .await;
    assert_eq!(failures, Some(2000.0));
    let res = app
        .post_signed(crate::common::fixture("huawei/answer.json"))
        .await;
    assert_eq!(res.status(), 200, "the platform's budget is untouched");
    app.stop().await;
}

/// A shared secret sent in a header is not kept with a refused body's letter, nor any other
/// header outside the allow-list; rows kept before are scrubbed by the migration.
async fn no_secret_is_kept(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    let secret = "s3cr3t-value-0123456789";
    std::fs::write(&secret_file, secret).unwrap();
    let app = spawn_app_with(
        backend,
        |c| {
            let extra = Config::from_toml(&format!(
                "[sources.acs-secret]\nkind = \"azure-communication\"\nauth = \"shared-secret\"\n\
                 secret_file = \"{}\"\n",
                secret_file.display()
            ))
            .unwrap();
            c.sources.extend(extra.sources);
        },
        None,
    )
    .await;
    for body in ["{\"not\": \"an event\"}", "[{}, {}, {}]", "nonsense"] {
        let res = app
            .client
            .post(format!("{}/hooks/acs-secret", app.address))
            .header("content-type", "application/json")
            .header("x-ringback-secret", secret)
            .header("x-api-token", "tok_live_42")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error() || res.status() == 200);
    }
    let headers = app
        .db
        .rows("SELECT CAST(headers AS TEXT) FROM dead_letters")
        .await;
    assert!(headers.len() >= 3);
    for row in &headers {
        let h: String = sqlx::Row::get(row, 0);
        assert!(!h.contains(secret) && !h.contains("tok_live"), "{h}");
        assert!(h.contains("[redacted]"), "{h}");
    }
    // A letter kept with the secret before the allow-list, scrubbed by the migration.
    let store = app.db.store().await;
    let old = ringback::domain::Row::DeadLetter(Box::new(ringback::domain::DeadLetter {
        id: uuid::Uuid::new_v4(),
        source: "acs-secret".into(),
        received_at: chrono::Utc::now(),
        request_id: None,
        scope: ringback::domain::DeadLetterScope::Request,
        record_index: None,
        code: ringback::domain::Code::InvalidJson,
        detail: "old".into(),
        field: None,
        body: None,
        headers: serde_json::json!({"x-ringback-secret": secret, "content-type": "application/json"}),
        auth: Some("shared-secret".into()),
    }));
    store.commit(&[old], &[]).await.unwrap();
    let scrub = match backend {
        Backend::Postgres => {
            include_str!("../../src/store/migrations/postgres/0014_scrub_dead_letter_headers.sql")
        }
        Backend::Sqlite => {
            include_str!("../../src/store/migrations/sqlite/0011_scrub_dead_letter_headers.sql")
        }
    };
    app.db.execute(scrub).await;
    let row = app
        .db
        .rows("SELECT CAST(headers AS TEXT) FROM dead_letters WHERE detail = 'old'")
        .await;
    let h: String = sqlx::Row::get(&row[0], 0);
    assert!(!h.contains(secret) && h.contains("application/json"), "{h}");
    app.stop().await;
}

/// A CloudEvents handshake repeated is kept once per origin.
async fn a_repeated_handshake_is_kept_once(backend: Backend) {
    let app = spawn_app_with(backend, with_acs, None).await;
    for _ in 0..5 {
        let res = app
            .client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/hooks/acs", app.address),
            )
            .header("webhook-request-origin", "eventgrid.azure.net")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(app.db.count("handshakes").await, 1);
    app.stop().await;
}

both_stores!(
    a_nul_character_fails_alone,
    a_redelivery_with_another_time_is_a_duplicate,
    a_standard_webhooks_retry_with_a_later_timestamp_is_a_duplicate,
    a_huge_array_is_refused_cheaply,
    forged_requests_leave_counters_not_rows,
    no_secret_is_kept,
    a_repeated_handshake_is_kept_once,
);

/// `http.admin_addr`: metrics and the readiness detail on the admin listener only, hooks on
/// the public one only; `/readyz` answers from the background check, not a ping per probe.
async fn the_admin_listener_keeps_operators_data_apart(backend: Backend) {
    let (app, handles) = crate::durability::spawn_wrapped(backend, false, 1_000_000, |c| {
        c.http.admin_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let admin = app.admin_address.clone().expect("admin listener");
    let get = |url: String| {
        let client = app.client.clone();
        async move {
            let res = client.get(url).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    assert_eq!(get(format!("{}/metrics", app.address)).await.0, 404);
    let (status, metrics) = get(format!("{admin}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("ringback_records_total"));
    let (status, public) = get(format!("{}/readyz", app.address)).await;
    assert_eq!((status, public.as_str()), (200, r#"{"status":"ready"}"#));
    let (status, detail) = get(format!("{admin}/readyz")).await;
    assert_eq!(status, 200);
    assert!(
        detail.contains("\"store\"") && detail.contains("\"publisher\""),
        "{detail}"
    );
    assert_eq!(get(format!("{admin}/healthz")).await.0, 200);
    let on_admin = app
        .client
        .post(format!("{admin}/hooks/open"))
        .header("content-type", "application/json")
        .body(status_push("admin", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_admin.status(), 404, "no hook on the admin listener");
    let (status, body) = post(&app, "open", status_push("public", "x")).await;
    assert_eq!(status, 200, "{body}");
    let before = handles.pings.load(std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    for _ in 0..200 {
        get(format!("{admin}/readyz")).await;
        get(format!("{}/readyz", app.address)).await;
    }
    let pings = handles.pings.load(std::sync::atomic::Ordering::SeqCst) - before;
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        pings <= seconds + 2,
        "{pings} pings for 400 probes in {seconds}s"
    );
    app.stop().await;
}

mod admin {
    use super::*;
    crate::both_stores!(the_admin_listener_keeps_operators_data_apart);
}

/// One request of a generated run.
#[derive(Debug, Clone)]
enum Push {
    /// Event `step` (callout, alerting, answer, disconnect) of call `call`, NUL in its user
    /// data when `poisoned`.
    Status { call: u8, step: u8, poisoned: bool },
    /// An SMS of id `id`, delivered at `minute` (a redelivery when the id was sent before).
    Sms { id: u8, minute: u8, poisoned: bool },
}

const STEPS: [&str; 4] = ["callout", "alerting", "answer", "disconnect"];

fn push_body(push: &Push) -> (&'static str, String) {
    match push {
        Push::Status {
            call,
            step,
            poisoned,
        } => {
            let user_data = if *poisoned { "x\\u0000y" } else { "fine" };
            let body = format!(
                r#"{{"eventType":"{}","statusInfo":{{"sessionId":"prop-call-{call}","timestamp":"2026-11-24 03:04:{:02}","userData":"{user_data}"}}}}"#,
                STEPS[usize::from(*step)],
                10 + step
            );
            ("open", body)
        }
        Push::Sms {
            id,
            minute,
            poisoned,
        } => {
            let text = if *poisoned { "nul \\u0000" } else { "hello" };
            let id = if *poisoned {
                format!("poison-{id}")
            } else {
                format!("sms-{id}")
            };
            (
                "acs",
                sms(
                    &id,
                    text,
                    &format!("2026-{:02}-24T00:{:02}:00Z", 1 + minute % 12, minute % 60),
                ),
            )
        }
    }
}

fn pushes() -> impl proptest::strategy::Strategy<Value = Vec<Push>> {
    use proptest::prelude::*;
    let status =
        (0u8..4, 0u8..4, proptest::bool::weighted(0.15)).prop_map(|(call, step, poisoned)| {
            Push::Status {
                call,
                step,
                poisoned,
            }
        });
    let sms =
        (0u8..6, 0u8..120, proptest::bool::weighted(0.15)).prop_map(|(id, minute, poisoned)| {
            Push::Sms {
                id,
                minute,
                poisoned,
            }
        });
    proptest::collection::vec(prop_oneof![3 => status, 2 => sms], 1..30)
}

/// Generated runs of valid, poisoned and redelivered pushes (redeliveries with altered
/// times), through a direct commit or through the spool and its drain: every valid record is
/// stored once, one call's events in the order sent, every poisoned record is a dead letter,
/// and the pipeline takes the next push.
async fn a_generated_run_isolates_every_poisoned_record(pushes: Vec<Push>, spooled: bool) {
    use std::collections::{BTreeMap, BTreeSet};
    let (app, handles) = crate::durability::spawn_wrapped(
        Backend::Postgres,
        false,
        if spooled { 0 } else { 1_000_000 },
        |c| {
            with_acs(c);
            c.spool.fallback_after = Duration::from_millis(100);
        },
    )
    .await;
    // One call's pushes in order, calls and SMS side by side.
    let mut lanes: BTreeMap<String, Vec<Push>> = BTreeMap::new();
    for p in &pushes {
        let lane = match p {
            Push::Status { call, .. } => format!("call-{call}"),
            Push::Sms { .. } => "sms".to_owned(),
        };
        lanes.entry(lane).or_default().push(p.clone());
    }
    let app_ref = &app;
    let runs = lanes.values().map(|lane| async move {
        for p in lane {
            let (source, body) = push_body(p);
            let (status, answer) = post(app_ref, source, body).await;
            let poisoned = matches!(
                p,
                Push::Status { poisoned: true, .. } | Push::Sms { poisoned: true, .. }
            );
            assert!(
                status == 200 || (poisoned && !spooled && status == 400),
                "{p:?}: {status} {answer}"
            );
        }
    });
    futures_util::future::join_all(runs).await;
    handles.gate.add_permits(1_000_000);
    assert!(spool_drained(&app).await, "the spool drains");
    // What should be stored: each valid status event once, each valid SMS id once.
    let statuses: BTreeSet<(u8, u8)> = pushes
        .iter()
        .filter_map(|p| match p {
            Push::Status {
                call,
                step,
                poisoned: false,
            } => Some((*call, *step)),
            _ => None,
        })
        .collect();
    let sms_ids: BTreeSet<u8> = pushes
        .iter()
        .filter_map(|p| match p {
            Push::Sms {
                id,
                poisoned: false,
                ..
            } => Some(*id),
            _ => None,
        })
        .collect();
    // PostgreSQL refuses a NUL when it reads the row, before any conflict: a poisoned push is a
    // dead letter, unless it shares its identity with a valid push of the same batch, where it
    // is the same record twice and left out as a duplicate before the database sees it. So a
    // poisoned push whose identity no valid push has is always a dead letter (a redelivery of
    // a poisoned SMS too), and no letter is made of anything else.
    let is_poisoned = |p: &&Push| {
        matches!(
            p,
            Push::Status { poisoned: true, .. } | Push::Sms { poisoned: true, .. }
        )
    };
    let poisoned = pushes.iter().filter(is_poisoned).count();
    let without_valid_twin = pushes
        .iter()
        .filter(is_poisoned)
        .filter(|p| match p {
            Push::Status { call, step, .. } => !statuses.contains(&(*call, *step)),
            Push::Sms { .. } => true,
        })
        .count();
    assert_eq!(
        app.db.count("call_events").await,
        statuses.len() as i64,
        "{pushes:?}"
    );
    assert_eq!(
        app.db.count("phone_number_events").await,
        sms_ids.len() as i64,
        "{pushes:?}"
    );
    let letters = unstorable_letters(&app).await;
    assert!(
        (without_valid_twin as i64..=poisoned as i64).contains(&letters),
        "{letters} letters for {poisoned} poisoned pushes, {without_valid_twin} without a valid \
         twin; {pushes:?}"
    );
    // One call's events in the order they were sent: the outbox's commit order.
    let rows = app
        .db
        .rows("SELECT o.key, e.event_type FROM outbox o JOIN call_events e ON e.id = o.id::uuid ORDER BY o.seq")
        .await;
    let mut committed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        committed
            .entry(sqlx::Row::get(r, 0))
            .or_default()
            .push(sqlx::Row::get(r, 1));
    }
    for (key, events) in &committed {
        let call: u8 = key.trim_start_matches("prop-call-").parse().unwrap();
        let mut seen = BTreeSet::new();
        let sent: Vec<String> = pushes
            .iter()
            .filter_map(|p| match p {
                Push::Status {
                    call: c,
                    step,
                    poisoned: false,
                } if *c == call && seen.insert(*step) => Some(STEPS[usize::from(*step)].to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(events, &sent, "call {call}; {pushes:?}");
    }
    assert_the_pipeline_goes_on(&app, "after-the-run").await;
    app.stop().await;
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("RINGBACK_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(8),
        ..proptest::prelude::ProptestConfig::default()
    })]

    #[test]
    fn generated_runs_isolate_poisoned_records(pushes in pushes(), spooled in proptest::bool::ANY) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(a_generated_run_isolates_every_poisoned_record(pushes, spooled));
    }
}
