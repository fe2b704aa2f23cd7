//! Azure Communication Services: every documented event type in every schema it is published
//! in lands once as a typed row and a Kafka record; handshakes; secrets and JWTs.

use crate::both_stores;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;

use crate::common::kafka::consume;
use crate::common::{fixture, spawn_app_with, Backend, TestApp};
use ringback::config::{Config, KafkaConfig};
use ringback::domain::RecordKind;
use ringback::publish::kafka::EmbeddedBroker;
use ringback::sources::acs::kind_of;

fn fixtures_dir(dir: &str) -> String {
    format!("{}/tests/fixtures/acs/{dir}", env!("CARGO_MANIFEST_DIR"))
}

/// (file, content type, body) of every single-event fixture.
fn fixtures() -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for (dir, content_type) in [
        ("eventgrid", "application/json"),
        ("cloudevents", "application/cloudevents+json; charset=utf-8"),
        ("callautomation", "application/json"),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(fixtures_dir(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let name = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            out.push((name, content_type, std::fs::read_to_string(path).unwrap()));
        }
    }
    out
}

fn event_type(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    let e = if v.is_array() { &v[0] } else { &v };
    e["eventType"]
        .as_str()
        .or(e["type"].as_str())
        .unwrap()
        .to_owned()
}

const ACS_SOURCES: &str = r#"
[sources.acs]
kind = "azure-communication"
auth = "none"
"#;

fn with_sources(extra: String) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        let extra = Config::from_toml(&extra).expect("test source config");
        c.sources.extend(extra.sources);
    }
}

async fn post(app: &TestApp, path: &str, content_type: &str, body: String) -> reqwest::Response {
    app.client
        .post(format!("{}/hooks/{path}", app.address))
        .header("content-type", content_type)
        .header("aeg-event-type", "Notification")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn every_documented_event_lands_once(backend: Backend) {
    let app = spawn_app_with(backend, with_sources(ACS_SOURCES.into()), None).await;
    let all = fixtures();
    assert!(all.len() >= 50, "{} fixtures", all.len());
    let mut want: BTreeMap<&str, i64> = BTreeMap::new();
    for (name, content_type, body) in &all {
        let res = post(&app, "acs", content_type, body.clone()).await;
        let status = res.status();
        let json: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{name}: {json}");
        assert_eq!(
            (json["accepted"].as_i64(), json["duplicates"].as_i64()),
            (Some(1), Some(0)),
            "{name}: {json}"
        );
        *want
            .entry(kind_of(&event_type(body)).unwrap().table())
            .or_default() += 1;
    }
    for (table, n) in &want {
        assert_eq!(app.db.count(table).await, *n, "{table}");
    }
    // Event Grid redelivers: the same events again add nothing.
    for (name, content_type, body) in &all {
        let json: Value = post(&app, "acs", content_type, body.clone())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(json["duplicates"].as_i64(), Some(1), "{name}: {json}");
    }
    for (table, n) in &want {
        assert_eq!(app.db.count(table).await, *n, "{table}");
    }
    assert_eq!(want.len(), 3, "phone, call and chat events: {want:?}");
    app.stop().await;
}

async fn fields_land_in_typed_columns(backend: Backend) {
    let app = spawn_app_with(backend, with_sources(ACS_SOURCES.into()), None).await;
    for (_, content_type, body) in fixtures()
        .into_iter()
        .filter(|(n, _, _)| !n.starts_with("cloudevents"))
    {
        assert_eq!(post(&app, "acs", content_type, body).await.status(), 200);
    }
    let one = |sql: String| {
        let db = &app.db;
        async move {
            db.rows(&sql)
                .await
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("no row: {sql}"))
        }
    };
    let sms = one(
        "SELECT phone_number, direction, from_number, message, schema FROM phone_number_events \
                   WHERE event_type = 'Microsoft.Communication.SMSReceived'"
            .into(),
    )
    .await;
    assert_eq!(sms.get::<String, _>(0), "+14255550123");
    assert_eq!(sms.get::<String, _>(1), "inbound");
    assert_eq!(sms.get::<String, _>(2), "15555555555");
    assert!(
        sms.get::<String, _>(3)
            .contains("\"Azure\" Communication Services events — 你好"),
        "escapes decoded"
    );
    assert_eq!(sms.get::<String, _>(4), "eventgrid");
    let report = one("SELECT phone_number, direction, delivery_status, delivery_attempts, tag FROM phone_number_events \
                      WHERE event_type = 'Microsoft.Communication.SMSDeliveryReportReceived'".into()).await;
    assert_eq!(report.get::<String, _>(0), "+14255550123");
    assert_eq!(report.get::<String, _>(1), "outbound");
    assert_eq!(report.get::<String, _>(2), "Delivered");
    assert_eq!(report.get::<Option<i32>, _>(3), Some(1));
    let incoming = one(
        "SELECT phone_number, from_number, caller_display_name FROM phone_number_events \
                        WHERE event_type = 'Microsoft.Communication.IncomingCall'"
            .into(),
    )
    .await;
    assert_eq!(incoming.get::<String, _>(0), "+14255550123");
    assert_eq!(incoming.get::<String, _>(1), "+16041234567");
    // Both shapes of CallEnded: nested identifiers + callDurationInSeconds, flat + durationOfCall.
    let ended = app.db.rows("SELECT participant_id, duration_seconds, end_reason_code FROM acs_call_events \
                            WHERE event_type = 'Microsoft.Communication.CallEnded' ORDER BY duration_seconds").await;
    assert_eq!(ended.len(), 2);
    assert_eq!(ended[0].get::<f64, _>(1), 49.0);
    assert!((ended[1].get::<f64, _>(1) - 49.4934918).abs() < 1e-9);
    for row in &ended {
        assert!(
            row.get::<String, _>(0).starts_with("8:acs:"),
            "participant from either shape"
        );
        assert_eq!(row.get::<Option<i32>, _>(2), Some(0));
    }
    let added = app
        .db
        .rows(
            "SELECT participant_id FROM acs_call_events \
                            WHERE event_type = 'Microsoft.Communication.CallParticipantAdded'",
        )
        .await;
    assert_eq!(added.len(), 2);
    for row in &added {
        assert!(
            row.get::<String, _>(0).ends_with("0000000c-2"),
            "the added user, not the starter"
        );
    }
    let recording = one(
        "SELECT recording_content_location, recording_duration_ms FROM acs_call_events \
                         WHERE event_type = 'Microsoft.Communication.RecordingFileStatusUpdated'"
            .into(),
    )
    .await;
    assert!(recording.get::<String, _>(0).ends_with("/content/video"));
    assert_eq!(recording.get::<Option<i64>, _>(1), Some(6620));
    let transfer = one("SELECT call_connection_id, result_code, result_sub_code, result_message, transfer_target, \
                        operation_context, schema FROM acs_call_events \
                        WHERE event_type = 'Microsoft.Communication.CallTransferFailed'".into()).await;
    assert_eq!(
        transfer.get::<String, _>(0),
        "421f3500-f5de-4c12-bf61-9e2641433687"
    );
    assert_eq!(transfer.get::<Option<i32>, _>(1), Some(500));
    assert_eq!(transfer.get::<Option<i32>, _>(2), Some(8522));
    assert!(transfer.get::<String, _>(3).contains("did not answer"));
    assert_eq!(transfer.get::<String, _>(4), "4:+14255550199");
    assert_eq!(transfer.get::<String, _>(5), "transfer-1");
    assert_eq!(transfer.get::<String, _>(6), "cloudevents");
    let updated = one("SELECT participant_count FROM acs_call_events \
                       WHERE event_type = 'Microsoft.Communication.ParticipantsUpdated'"
        .into())
    .await;
    assert_eq!(updated.get::<Option<i32>, _>(0), Some(2));
    let chat = one("SELECT thread_id, sender_id, recipient_id, message_body, sender_display_name FROM chat_events \
                    WHERE event_type = 'Microsoft.Communication.ChatMessageReceived'".into()).await;
    assert_eq!(
        chat.get::<String, _>(0),
        "19:6e5d6ca1d75044a49a36a7965ec4a906@thread.v2"
    );
    assert!(chat.get::<String, _>(1).ends_with("0000000c-1"));
    assert!(chat.get::<String, _>(2).ends_with("0000000c-2"));
    assert_eq!(
        chat.get::<String, _>(3),
        "Welcome to Azure Communication Services"
    );
    let joined = one("SELECT participant_id, actor_id FROM chat_events \
                      WHERE event_type = 'Microsoft.Communication.ChatThreadParticipantAdded'"
        .into())
    .await;
    assert!(joined.get::<String, _>(0).ends_with("0000000c-3"));
    assert!(joined.get::<String, _>(1).ends_with("0000000c-1"));
    let created = one("SELECT topic FROM chat_events WHERE event_type = 'Microsoft.Communication.ChatThreadCreated'".into()).await;
    assert_eq!(
        created.get::<String, _>(0),
        "Talk about new Thread Events in common"
    );
    app.stop().await;
}

async fn a_batch_is_judged_event_by_event(backend: Backend) {
    let app = spawn_app_with(backend, with_sources(ACS_SOURCES.into()), None).await;
    let ce = |id: &str, t: &str, data: Value| {
        json!({"specversion": "1.0", "id": id, "source": "/acs", "type": t,
               "time": "2024-01-02T03:04:05.1234567Z", "data": data})
    };
    let batch = json!([
        ce("e1", "Microsoft.Communication.ChatMessageReceivedInThread", json!({"threadId": "t1", "messageId": "m1"})),
        ce("", "Microsoft.Communication.ChatMessageReceivedInThread", json!({"threadId": "t1"})),
        ce("e3", "Microsoft.Communication.SomethingNew", json!({"anything": [1, 2, 3]})),
        ce("e4", "Microsoft.Storage.BlobCreated", json!({})),
        ce("e5", "Microsoft.Communication.SMSReceived", json!({"From": "+1"})),
        ce("e6", "Microsoft.Communication.ChatMessageEdited", json!("text")),
        {"specversion": "1.0", "id": "e7", "type": "Microsoft.Communication.CallConnected", "time": "yesterday", "data": {}},
    ]);
    let res = post(
        &app,
        "acs",
        "application/cloudevents-batch+json",
        batch.to_string(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["accepted"], 2, "{body}");
    let rejected: Vec<(i64, String, String)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
                r["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, "missing_field".into(), "[1].id".into()),
            (3, "unsupported_event_type".into(), "[3].type".into()),
            (4, "missing_field".into(), "[4].data.To".into()),
            (5, "invalid_type".into(), "[5].data".into()),
            (6, "invalid_time".into(), "[6].time".into()),
        ]
    );
    assert_eq!(app.db.count("chat_events").await, 1);
    let generic = app
        .db
        .rows("SELECT event_type, CAST(data AS TEXT) FROM webhook_events")
        .await;
    assert_eq!(
        generic.len(),
        1,
        "an unknown Microsoft.Communication type is kept, not refused"
    );
    assert_eq!(
        generic[0].get::<String, _>(0),
        "Microsoft.Communication.SomethingNew"
    );
    assert_eq!(app.db.count("dead_letters").await, 5);
    // A single bad event (not a batch) refuses the request.
    let res = post(
        &app,
        "acs",
        "application/cloudevents+json",
        ce("x", "Microsoft.Communication.SMSReceived", json!({})).to_string(),
    )
    .await;
    assert_eq!(res.status(), 400);
    app.stop().await;
}

async fn handshakes_answer_as_specified(backend: Backend) {
    let sources = format!("{ACS_SOURCES}\n[sources.acs-strict]\nkind = \"azure-communication\"\nauth = \"none\"\nallowed_origins = [\"eventgrid.azure.net\"]\nallowed_rate = 100\n");
    let app = spawn_app_with(backend, with_sources(sources), None).await;
    let body = std::fs::read_to_string(format!("{}/validation.json", fixtures_dir(""))).unwrap();
    let res = app
        .client
        .post(format!("{}/hooks/acs", app.address))
        .header("content-type", "application/json")
        .header("aeg-event-type", "SubscriptionValidation")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let json: Value = res.json().await.unwrap();
    assert_eq!(
        json,
        json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );

    let options = |source: &str, origin: Option<&str>, rate: Option<&str>| {
        let mut req = app.client.request(
            reqwest::Method::OPTIONS,
            format!("{}/hooks/{source}", app.address),
        );
        if let Some(o) = origin {
            req = req.header("WebHook-Request-Origin", o);
        }
        if let Some(r) = rate {
            req = req.header("WebHook-Request-Rate", r);
        }
        req.send()
    };
    let res = options("acs", Some("eventgrid.azure.net"), Some("120"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["webhook-allowed-origin"],
        "eventgrid.azure.net"
    );
    assert_eq!(res.headers()["webhook-allowed-rate"], "120");
    assert_eq!(res.headers()["allow"], "POST");
    let res = options("acs-strict", Some("eventgrid.azure.net"), Some("500"))
        .await
        .unwrap();
    assert_eq!(
        res.headers()["webhook-allowed-rate"],
        "100",
        "capped by allowed_rate"
    );
    let res = options("acs", Some("eventgrid.azure.net"), None)
        .await
        .unwrap();
    assert!(
        !res.headers().contains_key("webhook-allowed-rate"),
        "no rate asked, none granted"
    );
    let res = options("acs-strict", Some("evil.example.com"), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = options("acs", None, None).await.unwrap();
    assert_eq!(res.status(), 400);
    let res = options("hw", Some("eventgrid.azure.net"), None)
        .await
        .unwrap();
    assert_eq!(res.status(), 405);

    let kinds: BTreeSet<String> = app
        .db
        .rows("SELECT kind FROM handshakes")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["eventgrid-validation".into(), "cloudevents-options".into()])
    );
    // The second OPTIONS of the same origin to `acs` is answered but not kept again.
    assert_eq!(app.db.count("handshakes").await, 3);
    let data = app.db.count("phone_number_events").await + app.db.count("webhook_events").await;
    assert_eq!(data, 0, "a handshake is not a data row");
    app.stop().await;
}

async fn shared_secrets_are_checked(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cr3t-value-0123456\n").unwrap();
    let sources = format!(
        "[sources.acs-secret]\nkind = \"azure-communication\"\nauth = \"shared-secret\"\nsecret_file = \"{}\"\n",
        secret.display()
    );
    let app = spawn_app_with(backend, with_sources(sources), None).await;
    let body =
        std::fs::read_to_string(format!("{}/SMSReceived.json", fixtures_dir("eventgrid"))).unwrap();
    let code = |res: reqwest::Response| async move {
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap();
        (
            status,
            v["error"]["code"].as_str().unwrap_or("ok").to_owned(),
        )
    };
    assert_eq!(
        code(
            post(
                &app,
                "acs-secret?code=s3cr3t-value-0123456",
                "application/json",
                body.clone()
            )
            .await
        )
        .await,
        (200, "ok".into())
    );
    let res = app
        .client
        .post(format!("{}/hooks/acs-secret", app.address))
        .header("content-type", "application/json")
        .header("x-ringback-secret", "s3cr3t-value-0123456")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(code(res).await, (200, "ok".into()));
    let res = post(
        &app,
        "acs-secret?code=wrong",
        "application/json",
        body.clone(),
    )
    .await;
    let (status, c) = code(res).await;
    assert_eq!((status, c.as_str()), (401, "secret_mismatch"));
    assert_eq!(
        code(post(&app, "acs-secret", "application/json", body.clone()).await).await,
        (401, "secret_missing".into())
    );
    let letters = app
        .db
        .rows("SELECT code, CAST(headers AS TEXT) FROM dead_letters")
        .await;
    assert_eq!(letters.len(), 2);
    app.stop().await;
}

mod jwt {
    //! Tokens signed with RSA keys generated here by openssl: no network.

    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    pub struct Key {
        pub pem: Vec<u8>,
        pub jwk: Value,
    }

    pub fn key(dir: &std::path::Path, kid: &str) -> Key {
        let path = dir.join(format!("{kid}.pem"));
        let ok = std::process::Command::new("openssl")
            .args(["genrsa", "-out", path.to_str().unwrap(), "2048"])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success());
        let out = std::process::Command::new("openssl")
            .args(["rsa", "-in", path.to_str().unwrap(), "-noout", "-modulus"])
            .output()
            .unwrap();
        let hex = String::from_utf8(out.stdout).unwrap();
        let hex = hex.trim().trim_start_matches("Modulus=");
        let modulus: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        Key {
            pem: std::fs::read(&path).unwrap(),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                        "n": URL_SAFE_NO_PAD.encode(modulus), "e": "AQAB"}),
        }
    }

    pub fn token(key: &Key, kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(&key.pem).unwrap(),
        )
        .unwrap()
    }

    pub fn claims(aud: &str, iss: &str, exp_in: i64, nbf_in: i64) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"aud": aud, "iss": iss, "exp": now + exp_in, "nbf": now + nbf_in, "iat": now, "sub": "event-grid"})
    }
}

const AUDIENCE: &str = "/subscriptions/50ad1522/resourceGroups/acse2e/providers/Microsoft.Communication/CommunicationServices/acs-contoso";
const ISSUER: &str = "https://acscallautomation.communication.azure.com";

async fn jwts_are_verified_against_the_jwks(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let good = jwt::key(dir.path(), "k1");
    let other = jwt::key(dir.path(), "k2");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [good.jwk]}).to_string()).unwrap();
    let sources = format!(
        "[sources.acs-jwt]\nkind = \"azure-communication\"\nauth = \"jwt\"\njwks_file = \"{}\"\n\
         jwt_audiences = [\"{AUDIENCE}\"]\njwt_issuers = [\"{ISSUER}\"]\njwt_leeway = \"5s\"\n",
        jwks.display()
    );
    let app = spawn_app_with(backend, with_sources(sources), None).await;
    let body = std::fs::read_to_string(format!(
        "{}/CallConnected.json",
        fixtures_dir("callautomation")
    ))
    .unwrap();
    let send = |auth: Option<String>| {
        let mut req = app
            .client
            .post(format!("{}/hooks/acs-jwt", app.address))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let challenge = res
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            let v: Value = res.json().await.unwrap();
            (
                status,
                v["error"]["code"].as_str().unwrap_or("ok").to_owned(),
                challenge,
            )
        }
    };
    let bearer = |t: String| Some(format!("Bearer {t}"));
    let valid = jwt::claims(AUDIENCE, ISSUER, 600, -10);
    let (status, code, _) = send(bearer(jwt::token(&good, "k1", valid.clone()))).await;
    assert_eq!((status, code.as_str()), (200, "ok"));

    let cases = [
        (
            bearer(jwt::token(&other, "k1", valid.clone())),
            "token_bad_signature",
        ),
        (
            bearer(jwt::token(&other, "k2", valid.clone())),
            "token_unknown_key",
        ),
        (
            bearer(jwt::token(
                &good,
                "k1",
                jwt::claims("another-resource", ISSUER, 600, -10),
            )),
            "token_wrong_audience",
        ),
        (
            bearer(jwt::token(
                &good,
                "k1",
                jwt::claims(AUDIENCE, "https://evil.example.com", 600, -10),
            )),
            "token_wrong_issuer",
        ),
        (
            bearer(jwt::token(
                &good,
                "k1",
                jwt::claims(AUDIENCE, ISSUER, -120, -600),
            )),
            "token_expired",
        ),
        (
            bearer(jwt::token(
                &good,
                "k1",
                jwt::claims(AUDIENCE, ISSUER, 600, 300),
            )),
            "token_not_yet_valid",
        ),
        (bearer("not.a.jwt".into()), "token_malformed"),
        (Some("Basic Zm9vOmJhcg==".into()), "token_malformed"),
        (None, "token_missing"),
    ];
    for (auth, want) in cases {
        let (status, code, challenge) = send(auth).await;
        assert_eq!((status, code.as_str()), (401, want));
        assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));
    }
    // HS256 with the public key as the secret: the classic algorithm confusion.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("k1".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &valid,
        &jsonwebtoken::EncodingKey::from_secret(good.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert_eq!(send(bearer(hs)).await.1, "token_bad_algorithm");
    assert_eq!(app.db.count("acs_call_events").await, 1);
    app.stop().await;
}

/// Keys from a JWKS URL are fetched at startup and refreshed: a rotated-in key is accepted
/// after the refresh without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_url_is_fetched_and_refreshed() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let first = jwt::key(dir.path(), "k1");
    let second = jwt::key(dir.path(), "k2");
    let served = Arc::new(Mutex::new(json!({"keys": [first.jwk.clone()]}).to_string()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = served.clone();
    let server = actix_web::HttpServer::new(move || {
        let s = s.clone();
        actix_web::App::new().route(
            "/keys",
            actix_web::web::get().to(move || {
                let body = s.lock().unwrap().clone();
                async move {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    let sources = format!(
        "[sources.acs-jwt]\nkind = \"azure-communication\"\nauth = \"jwt\"\njwks_url = \"http://127.0.0.1:{port}/keys\"\n\
         jwks_refresh = \"300ms\"\njwt_audiences = [\"{AUDIENCE}\"]\n"
    );
    let app = spawn_app_with(Backend::Sqlite, with_sources(sources), None).await;
    let body = std::fs::read_to_string(format!(
        "{}/CallConnected.json",
        fixtures_dir("callautomation")
    ))
    .unwrap();
    let post_with = |key: &jwt::Key, kid: &str| {
        let token = jwt::token(key, kid, jwt::claims(AUDIENCE, ISSUER, 600, -10));
        app.client
            .post(format!("{}/hooks/acs-jwt", app.address))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body.clone())
            .send()
    };
    assert_eq!(post_with(&first, "k1").await.unwrap().status(), 200);
    assert_eq!(
        post_with(&second, "k2").await.unwrap().status(),
        401,
        "not published yet"
    );
    *served.lock().unwrap() = json!({"keys": [first.jwk.clone(), second.jwk.clone()]}).to_string();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        post_with(&second, "k2").await.unwrap().status(),
        200,
        "picked up by the refresh"
    );
    handle.stop(false).await;
    app.stop().await;
}

async fn events_reach_their_kafka_topics(backend: Backend) {
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let kafka = KafkaConfig {
        topic_prefix: prefix.clone(),
        ..Default::default()
    };
    let broker = EmbeddedBroker::start(&kafka, 3).unwrap();
    let bootstrap = broker.bootstrap_servers().to_owned();
    let tweak = {
        let bootstrap = bootstrap.clone();
        move |c: &mut Config| {
            with_sources(ACS_SOURCES.into())(c);
            c.kafka.brokers = bootstrap.into();
            c.kafka.topic_prefix = prefix;
        }
    };
    let app = spawn_app_with(backend, tweak, None).await;
    let all = fixtures();
    let mut want: BTreeMap<RecordKind, usize> = BTreeMap::new();
    for (_, content_type, body) in &all {
        assert_eq!(
            post(&app, "acs", content_type, body.clone()).await.status(),
            200
        );
        *want.entry(kind_of(&event_type(body)).unwrap()).or_default() += 1;
    }
    for (kind, n) in want {
        let topic = kafka.topic(kind.as_str());
        let got = consume(&bootstrap, &topic, n, Duration::from_secs(30)).await;
        let ids: BTreeSet<&str> = got.iter().map(|m| m.headers["ce_id"].as_str()).collect();
        assert_eq!(ids.len(), n, "{topic}");
        for m in &got {
            assert_eq!(m.value["kind"], kind.as_str());
            assert!(
                m.value["data"]["event"]["id"].is_string(),
                "the event as sent rides along"
            );
            assert!(!m.key.is_empty());
            assert_eq!(
                m.headers["ce_type"],
                format!("io.ringback.{}.v1", kind.as_str().trim_end_matches('s'))
            );
        }
        if kind == RecordKind::ChatEvent {
            assert!(
                got.iter().all(|m| m.key == m.value["data"]["thread_id"]),
                "chat keyed by thread"
            );
        }
    }
    app.stop().await;
}

/// Three Call Automation callbacks of three calls share one event id, as the Azure SDK's own
/// samples do: each is an event of its own (CloudEvents identifies an event by source and id),
/// and each is stored; a redelivery of one is a duplicate.
async fn callbacks_of_different_calls_sharing_an_id_are_all_kept(backend: Backend) {
    let app = spawn_app_with(backend, with_sources(ACS_SOURCES.into()), None).await;
    let mut events = Vec::new();
    for (n, name) in ["PlayCompleted", "PlayFailed", "RecognizeFailed"]
        .iter()
        .enumerate()
    {
        let body = fixture(&format!("acs/callautomation/{name}.json"));
        let mut v: Value = serde_json::from_str(&body).unwrap();
        v[0]["id"] = json!("b7a4e1c2-shared");
        v[0]["source"] = json!(format!("calling/callConnections/call-{n}"));
        events.push(v[0].clone());
    }
    let json: Value = post(
        &app,
        "acs",
        "application/cloudevents-batch+json",
        Value::Array(events.clone()).to_string(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        (json["accepted"].as_i64(), json["duplicates"].as_i64()),
        (Some(3), Some(0)),
        "{json}"
    );
    assert_eq!(app.db.count("acs_call_events").await, 3);
    let again: Value = post(
        &app,
        "acs",
        "application/cloudevents-batch+json",
        Value::Array(vec![events[1].clone()]).to_string(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again["duplicates"].as_i64(), Some(1), "{again}");
    assert_eq!(app.db.count("acs_call_events").await, 3);
    app.stop().await;
}

both_stores!(
    callbacks_of_different_calls_sharing_an_id_are_all_kept,
    every_documented_event_lands_once,
    fields_land_in_typed_columns,
    a_batch_is_judged_event_by_event,
    handshakes_answer_as_specified,
    shared_secrets_are_checked,
    jwts_are_verified_against_the_jwks,
    events_reach_their_kafka_topics,
);
