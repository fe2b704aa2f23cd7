//! `ringback emulate huawei` against a live ringback on PostgreSQL and Tansu, time-scaled: the
//! platform's calls, its never-retried status pushes and its merged, retried fee pushes (the fee
//! URL goes through a proxy that is down at first, so the first attempts fail and the retries
//! land), malformed pushes kept as dead letters, and an app calling the emulator's callVerify
//! API as the seed's Node.js sample does; then the oracle's verdict.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::kafka::{create_topics, Tansu};
use crate::common::proxy::Proxy;
use crate::common::{spawn_app_with, Backend};
use ringback::auth::aksk::{self, DigestVariant};
use ringback::config::{Config, KafkaConfig};
use ringback::emulate::{huawei, ledger, verify};

const APP_KEY: &str = "emulated-app-key";
const APP_SECRET: &str = "emulated-app-secret-0123456789";

/// A live ringback on PostgreSQL with `sources` (TOML) added, publishing to a Tansu broker of
/// its own on which the topics of `kinds` exist; and what the oracle checks (its database and
/// those topics).
async fn live(sources: String, kinds: &[&str]) -> (Tansu, crate::common::TestApp, Config) {
    let tansu = Tansu::start();
    let prefix = format!("emu{}", uuid::Uuid::new_v4().simple());
    let topics = KafkaConfig {
        topic_prefix: prefix.clone(),
        ..Default::default()
    };
    let names: Vec<String> = kinds.iter().map(|k| topics.topic(k)).collect();
    create_topics(&tansu.bootstrap, &names, 1).await;
    let (bootstrap, p) = (tansu.bootstrap.clone(), prefix.clone());
    let app = spawn_app_with(
        Backend::Postgres,
        move |c| {
            c.sources
                .extend(Config::from_toml(&sources).unwrap().sources);
            c.kafka.brokers = bootstrap.into();
            c.kafka.topic_prefix = p;
            c.kafka.sweep_interval = Duration::from_millis(200);
        },
        None,
    )
    .await;
    let mut target = Config {
        database: app.db.database_config(),
        ..Config::default()
    };
    target.kafka.brokers = tansu.bootstrap.as_str().into();
    target.kafka.topic_prefix = prefix;
    (tansu, app, target)
}

/// The seed's `voiceVerificationCodeAPI` in Rust: `X-AKSK` over `Nonce + Created`, the body
/// with the call's callback URLs in Base64.
async fn call_verify(api: &str, secret: &str, callee: &str, hooks: &str) -> (u16, Value) {
    let nonce = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    let created = chrono::Utc::now().format(aksk::CREATED_FORMAT).to_string();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = json!({
        "displayNbr": "+8653159511234",
        "calleeNbr": callee,
        "languageType": 2,
        "preTone": "test.wav",
        "verifyCode": "1234",
        "statusUrl": b64(hooks),
        "feeUrl": b64(hooks),
        "userData": "customerId123",
    });
    let res = reqwest::Client::new()
        .post(format!("{api}{}", huawei::CALL_VERIFY))
        .header("content-type", "application/json;charset=UTF-8")
        .header(
            "authorization",
            r#"WSSE realm="SDP",profile="UsernameToken",type="Appkey""#,
        )
        .header(
            "x-aksk",
            aksk::app_header_value(APP_KEY, secret.as_bytes(), &nonce, &created),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_huawei_emulator_s_pushes_are_stored_once_published_and_its_retries_land() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), APP_SECRET).unwrap();
    // Signed as the emulator signs: over the URL it posts to (no public_url).
    let (_tansu, app, target) = live(
        format!(
            "[sources.emu]\nkind = \"huawei-voicecall\"\nauth = \"aksk\"\n\
             app_key = \"{APP_KEY}\"\napp_secret_file = \"{}\"\n\
             created_zones = [\"utc\", \"beijing\"]\n",
            secret.path().display()
        ),
        &["call-status", "cdr"],
    )
    .await;
    let hooks = format!("{}/hooks/emu", app.address);
    let upstream = app.address.trim_start_matches("http://").to_owned();
    // The fee URL: through a proxy that refuses connections for the first second.
    let fees = Proxy::start(&upstream).await;
    fees.down();
    let fee_url = format!("http://127.0.0.1:{}/hooks/emu", fees.port);

    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.jsonl");
    let api_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = huawei::Options {
        status_url: hooks.clone(),
        fee_url,
        app_key: APP_KEY.into(),
        app_secret: APP_SECRET.into(),
        digest: DigestVariant::Newline,
        beijing_created: true,
        calls_per_second: 40.0,
        duration: Duration::from_secs(3),
        seed: 7,
        // A platform hour a real second: the fee retries come a second apart.
        time_scale: 3600.0,
        listen: Some(format!("127.0.0.1:{api_port}")),
        malformed: 0.05,
        ledger: ledger_path.clone(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(huawei::run(options, stop));

    // An app asks for a verification call (once its API is up), with the wrong secret first.
    let api = format!("http://127.0.0.1:{api_port}");
    let mut answer = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let (status, body) = match tokio::time::timeout(Duration::from_secs(2), async {
            call_verify(&api, "not-the-secret-0123456789", "+8613500000001", &hooks).await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => continue,
        };
        assert_eq!(status, 401, "{body}");
        answer = Some(call_verify(&api, APP_SECRET, "+8613500000001", &hooks).await);
        break;
    }
    let (status, body) = answer.expect("the emulator's API answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resultcode"], "0");
    let session = body["sessionId"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fees.up();

    let summary = run.await.unwrap().unwrap();
    assert!(
        summary.calls >= 100 && summary.calls_from_api == 1,
        "{summary:?}"
    );
    assert!(
        summary.fee_attempts > summary.fee_pushes,
        "fee pushes were retried: {summary:?}"
    );
    assert_eq!(summary.fee_abandoned, 0, "{summary:?}");
    assert!(summary.malformed > 0, "{summary:?}");

    // The app's call: its status events and its CDR reached ringback.
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM call_events WHERE session_id = $1 ORDER BY occurred_at",
    )
    .bind(&session)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        events.first().map(String::as_str),
        Some("callout"),
        "{events:?}"
    );
    assert!(events.len() >= 2, "{events:?}");
    let cdrs: i64 = sqlx::query_scalar("SELECT count(*) FROM cdrs WHERE session_id = $1")
        .bind(&session)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(cdrs, 1);

    // The oracle.
    let attempts = ledger::read(&ledger_path).unwrap();
    let verdict = verify::verify(&attempts, &target, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("{}", verdict.render());
    assert!(verdict.clean, "{}", verdict.render());
    assert!(verdict.retries > 0 && verdict.acknowledged_records > 200);
    assert_eq!(verdict.on_kafka, Some(verdict.acknowledged_records));
    assert_eq!(verdict.malformed_dead_lettered, verdict.malformed);

    // An oracle that can fail: a record ringback never got is missing.
    let mut forged = attempts.clone();
    let mut extra = forged
        .iter()
        .find(|a| a.acknowledged() && !a.records.is_empty())
        .unwrap()
        .clone();
    extra.push_id = "forged".into();
    extra.records[0].id = uuid::Uuid::new_v4();
    forged.push(extra);
    let verdict = verify::verify(&forged, &target, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        !verdict.clean && verdict.missing_count == 1,
        "{}",
        verdict.render()
    );
    pool.close().await;
    app.stop().await;
}

/// `ringback emulate event-grid` against a live ringback on PostgreSQL and Tansu, once per
/// schema: the Event Grid schema with the secret in the URL's query, CloudEvents with it in a
/// delivery-property header. The handshake first, then batches; ringback is down (a proxy
/// refusing connections) for the first second, so the first attempts fail and the retries land;
/// a fifth of the acknowledged batches come again and are answered as duplicates. Ringback's
/// side shows it: each handshake kept with the emulator's request id, each retry that reached it
/// counted in `ringback_sender_retries_total`. In the CloudEvents round the incoming calls are
/// answered, and their Call Automation callbacks (transfers among them) are stored and published
/// as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_grid_emulator_s_batches_are_stored_once_through_retries_and_redeliveries() {
    use ringback::emulate::event_grid::{self, Schema};
    const SECRET: &str = "event-grid-secret-0123456789";
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), SECRET).unwrap();
    // The Entra-style token's key, made before ringback starts so that it reads the JWKS.
    let keys = tempfile::tempdir().unwrap();
    let jwt = |audience: &str| event_grid::Jwt {
        audience: audience.into(),
        issuer: "https://sts.windows.net/emulated-tenant/".into(),
        key_file: keys.path().join("key.der"),
        jwks_file: keys.path().join("jwks.json"),
    };
    jwt("api://ringback-events").prepare().unwrap();
    let (_tansu, app, target) = live(
        format!(
            "[sources.acs]\nkind = \"azure-communication\"\nauth = \"shared-secret\"\n\
             secret_file = \"{}\"\nsecret_query = \"code\"\nsecret_header = \"x-eg-secret\"\n\
             allowed_origins = [\"eventgrid.azure.net\"]\n\
             [sources.acs-jwt]\nkind = \"azure-communication\"\nauth = \"jwt\"\n\
             jwks_file = \"{}\"\njwt_audiences = [\"api://ringback-events\"]\n",
            secret.path().display(),
            keys.path().join("jwks.json").display()
        ),
        &[
            "phone-events",
            "call-events",
            "chat-events",
            "webhook-events",
        ],
    )
    .await;
    let upstream = app.address.trim_start_matches("http://").to_owned();

    // The secret in the query, in a delivery-property header, an Entra-style token.
    let rounds = [
        (Schema::EventGrid, "query"),
        (Schema::CloudEvents, "header"),
        (Schema::EventGrid, "jwt"),
    ];
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    // Attempts after the first: all of them, and those that reached ringback (answered,
    // whatever the answer; one cut by the proxy going down may have reached it too).
    let (mut retries_sent, mut retries_reaching) = (0, 0);
    let mut answered_calls = 0;
    for (i, (schema, auth)) in rounds.into_iter().enumerate() {
        let proxy = Proxy::start(&upstream).await;
        let base = format!("http://127.0.0.1:{}/hooks/acs", proxy.port);
        let (endpoint, header, token) = match auth {
            "query" => (format!("{base}?code={SECRET}"), None, None),
            "header" => (
                base,
                Some(("x-eg-secret".to_owned(), SECRET.to_owned())),
                None,
            ),
            _ => (
                format!("{base}-jwt"),
                None,
                Some(jwt("api://ringback-events")),
            ),
        };
        let dir = tempfile::tempdir().unwrap();
        let options = event_grid::Options {
            endpoint,
            schema,
            header,
            jwt: token,
            subscription: "ringback-test".into(),
            events_per_second: 200.0,
            duration: Duration::from_secs(3),
            seed: 11 + i as u64,
            // The first retry (10 s) after a tenth of a second, the second (30 s) after 0.3 s…
            time_scale: 100.0,
            max_events: 10,
            batch_bytes: 64 * 1024,
            redeliver: 0.2,
            dead_letter_dir: dir.path().join("dead"),
            // Straight to ringback, not through the proxy: Call Automation does not retry.
            call_automation: (schema == Schema::CloudEvents)
                .then(|| format!("{}/hooks/acs", app.address)),
            ledger: dir.path().join("ledger.jsonl"),
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let run = tokio::spawn(event_grid::run(options, stop));
        // The handshake passes; then ringback "goes away" for a second.
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.down();
        tokio::time::sleep(Duration::from_secs(1)).await;
        proxy.up();
        let summary = run.await.unwrap().unwrap();
        assert!(summary.events >= 400, "{schema:?}: {summary:?}");
        assert!(
            summary.attempts > summary.batches + summary.redeliveries,
            "retried: {summary:?}"
        );
        assert!(
            summary.redeliveries > 0 && summary.dead_lettered == 0,
            "{summary:?}"
        );

        let attempts = ledger::read(&dir.path().join("ledger.jsonl")).unwrap();
        assert_eq!(attempts[0].push, "handshake");
        assert_eq!(attempts[0].status, Some(200));
        // The handshake as ringback kept it, by the request id the emulator sent.
        let kept: Option<String> =
            sqlx::query_scalar("SELECT kind FROM handshakes WHERE request_id = $1")
                .bind(&attempts[0].request_id)
                .fetch_optional(&pool)
                .await
                .unwrap();
        let want = match schema {
            Schema::EventGrid => "eventgrid-validation",
            Schema::CloudEvents => "cloudevents-options",
        };
        assert_eq!(kept.as_deref(), Some(want), "{schema:?}");
        let retries = attempts
            .iter()
            .filter(|a| a.push == "events" && a.attempt > 1);
        retries_sent += retries.clone().count();
        retries_reaching += retries.filter(|a| a.status.is_some()).count();
        if schema == Schema::CloudEvents {
            assert!(summary.calls_answered > 0, "{summary:?}");
            assert!(
                summary.callbacks >= 6 * summary.calls_answered,
                "{summary:?}"
            );
            assert_eq!(
                summary.callbacks_acknowledged, summary.callbacks,
                "{summary:?}"
            );
            answered_calls = summary.calls_answered;
        }
        // Redeliveries are further attempts of acknowledged batches, answered as duplicates.
        let verdict = verify::verify(&attempts, &target, Duration::from_secs(30))
            .await
            .unwrap();
        eprintln!("{schema:?}: {}", verdict.render());
        assert!(verdict.clean, "{schema:?}: {}", verdict.render());
        assert_eq!(verdict.on_kafka, Some(verdict.acknowledged_records));
        assert!(verdict.retries > 0);
        assert!(verdict.resent_after_ack > 0);
        assert_eq!(verdict.resent_answered_duplicate, verdict.resent_after_ack);
    }
    // A token for another audience: the handshake is refused, so the subscription fails.
    let dir = tempfile::tempdir().unwrap();
    let refused = event_grid::run(
        event_grid::Options {
            endpoint: format!("{}/hooks/acs-jwt", app.address),
            schema: Schema::EventGrid,
            header: None,
            jwt: Some(jwt("api://someone-else")),
            subscription: "wrong-audience".into(),
            events_per_second: 10.0,
            duration: Duration::from_millis(100),
            seed: 99,
            time_scale: 100.0,
            max_events: 10,
            batch_bytes: 64 * 1024,
            redeliver: 0.0,
            dead_letter_dir: dir.path().join("dead"),
            call_automation: None,
            ledger: dir.path().join("ledger.jsonl"),
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(format!("{refused:#}").contains("handshake"), "{refused:#}");
    // Every retry that reached ringback was counted as one, and nothing else was.
    assert!(retries_reaching > 0);
    let sent = retries_sent as f64;
    let counted = app
        .metric("ringback_sender_retries_total{source=\"acs\"}")
        .await
        .unwrap_or(0.0)
        + app
            .metric("ringback_sender_retries_total{source=\"acs-jwt\"}")
            .await
            .unwrap_or(0.0);
    assert!(
        (retries_reaching as f64..=sent).contains(&counted),
        "{counted} counted; {retries_reaching} reached ringback of {sent}"
    );
    // Each answered call's callbacks, from connected to disconnected, under its Call
    // Automation connection id; transfers with their outcome.
    for event in ["CallConnected", "CallDisconnected"] {
        let calls: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT call_connection_id) FROM acs_call_events WHERE event_type = $1",
        )
        .bind(format!("Microsoft.Communication.{event}"))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(calls, answered_calls as i64, "{event}");
    }
    let transfers: Vec<(String, Option<i32>)> = sqlx::query_as(
        "SELECT event_type, result_code FROM acs_call_events WHERE event_type LIKE '%CallTransfer%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        !transfers.is_empty(),
        "some answered calls were transferred"
    );
    for (kind, code) in &transfers {
        let want = if kind.ends_with("Accepted") { 200 } else { 500 };
        assert_eq!(*code, Some(want), "{kind}");
    }
    // Redeliveries made no second row: every event id is stored once.
    for table in ["phone_number_events", "acs_call_events", "chat_events"] {
        let dup: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (SELECT event_id FROM {table} GROUP BY source, event_id HAVING count(*) > 1) d"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(dup, 0, "{table}");
    }
    pool.close().await;
    app.stop().await;
}

/// `ringback emulate standard-webhooks` against a live ringback on PostgreSQL and Tansu: the
/// sender rotates its secret (every attempt carries signatures under the old and the new one;
/// ringback knows the new one only), ringback is unreachable for the first half second so first
/// attempts fail and Svix's retries (time-scaled) land, and a fifth of the messages are sent again
/// after a 2xx the sender "lost": each attempt re-signed with its own timestamp, every retry of a
/// stored message answered as a duplicate, every message stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standard_webhooks_emulator_s_resigned_retries_are_answered_as_duplicates() {
    use ringback::emulate::standard_webhooks;
    const OLD: &str = "whsec_b2xkLXNlY3JldC1vZi10aGUtc2VuZGVyLTAxMjM=";
    const NEW: &str = "whsec_bmV3LXNlY3JldC1vZi10aGUtc2VuZGVyLTAxMjM=";
    let (_tansu, app, target) = live(
        format!(
            "[sources.sw]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\n\
             secrets = [\"{NEW}\"]\ntype_pointer = \"/type\"\n"
        ),
        &["webhook-events"],
    )
    .await;
    let proxy = Proxy::start(app.address.trim_start_matches("http://")).await;
    proxy.down();
    let dir = tempfile::tempdir().unwrap();
    let options = standard_webhooks::Options {
        endpoint: format!("http://127.0.0.1:{}/hooks/sw", proxy.port),
        secrets: vec![OLD.into(), NEW.into()],
        messages_per_second: 100.0,
        duration: Duration::from_secs(2),
        seed: 5,
        // The first retry (5 s) after 50 ms, the second (5 min) after 3 s.
        time_scale: 100.0,
        lost_acks: 0.2,
        ledger: dir.path().join("ledger.jsonl"),
    };
    let run = tokio::spawn(standard_webhooks::run(
        options,
        tokio_util::sync::CancellationToken::new(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.up();
    let summary = run.await.unwrap().unwrap();
    assert!(
        summary.messages >= 150 && summary.failed == 0,
        "{summary:?}"
    );
    assert!(summary.resent_after_ack > 0, "{summary:?}");

    let attempts = ledger::read(&dir.path().join("ledger.jsonl")).unwrap();
    let verdict = verify::verify(&attempts, &target, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("{}", verdict.render());
    assert!(verdict.clean, "{}", verdict.render());
    assert!(verdict.retries > 0 && verdict.resent_after_ack > 0);
    assert_eq!(verdict.resent_answered_duplicate, verdict.resent_after_ack);
    assert_eq!(verdict.on_kafka, Some(verdict.acknowledged_records));
    assert_eq!(verdict.acknowledged_records as u64, summary.messages);
    app.stop().await;
}
