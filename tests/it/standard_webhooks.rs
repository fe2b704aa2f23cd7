//! Standard Webhooks: signed with whsec_ secrets (two at once, for rotation), refused with a
//! distinct code when forged, stale or tampered with, deduplicated on webhook-id.

use serde_json::Value;
use sqlx::Row;

use crate::both_stores;
use crate::common::{spawn_app_with, Backend, TestApp};
use ringback::auth::standard_webhooks::{decode_secret, sign};
use ringback::config::Config;

const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_c2VjcmV0LW51bWJlci10d28=";

fn tweak(c: &mut Config) {
    let extra = Config::from_toml(&format!(
        "[sources.sw]\nkind = \"standard-webhooks\"\nauth = \"standard-webhooks\"\n\
         secrets = [\"{OLD}\", \"{NEW}\"]\ntype_pointer = \"/event/type\"\n"
    ))
    .unwrap();
    c.sources.extend(extra.sources);
}

async fn send(
    app: &TestApp,
    prefix: &str,
    id: &str,
    ts: i64,
    signature: String,
    body: &str,
) -> (u16, Value) {
    let res = app
        .client
        .post(format!("{}/hooks/sw", app.address))
        .header("content-type", "application/json")
        .header(format!("{prefix}-id"), id)
        .header(format!("{prefix}-timestamp"), ts.to_string())
        .header(format!("{prefix}-signature"), signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn signed(secret: &str, id: &str, ts: i64, body: &str) -> String {
    sign(
        &decode_secret(secret).unwrap(),
        id,
        &ts.to_string(),
        body.as_bytes(),
    )
}

async fn signed_events_are_kept_once_and_forgeries_refused(backend: Backend) {
    let app = spawn_app_with(backend, tweak, None).await;
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"event": {"type": "invoice.paid"}, "amount": 42}"#;
    let (status, json) = send(
        &app,
        "webhook",
        "msg_1",
        now,
        signed(OLD, "msg_1", now, body),
        body,
    )
    .await;
    assert_eq!(
        (status, json["accepted"].as_i64()),
        (200, Some(1)),
        "{json}"
    );
    // The second secret (rotation), and the svix- header spelling.
    let (status, _) = send(
        &app,
        "svix",
        "msg_2",
        now,
        signed(NEW, "msg_2", now, body),
        body,
    )
    .await;
    assert_eq!(status, 200);
    // A retry of msg_1: same webhook-id, a duplicate.
    let (status, json) = send(
        &app,
        "webhook",
        "msg_1",
        now,
        signed(OLD, "msg_1", now, body),
        body,
    )
    .await;
    assert_eq!((status, json["duplicates"].as_i64()), (200, Some(1)));

    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();
    let forged = signed("whsec_ZGlmZmVyZW50LXNlY3JldA==", "msg_3", now, body);
    assert_eq!(
        code(&send(&app, "webhook", "msg_3", now, forged, body).await.1),
        "signature_mismatch"
    );
    let tampered = r#"{"event": {"type": "invoice.paid"}, "amount": 4200}"#;
    assert_eq!(
        code(
            &send(
                &app,
                "webhook",
                "msg_4",
                now,
                signed(OLD, "msg_4", now, body),
                tampered
            )
            .await
            .1
        ),
        "signature_mismatch"
    );
    let old = now - 3600;
    assert_eq!(
        code(
            &send(
                &app,
                "webhook",
                "msg_5",
                old,
                signed(OLD, "msg_5", old, body),
                body
            )
            .await
            .1
        ),
        "timestamp_out_of_tolerance"
    );
    let future = now + 3600;
    assert_eq!(
        code(
            &send(
                &app,
                "webhook",
                "msg_6",
                future,
                signed(OLD, "msg_6", future, body),
                body
            )
            .await
            .1
        ),
        "timestamp_out_of_tolerance"
    );
    assert_eq!(
        code(
            &send(&app, "webhook", "msg_7", now, "v1 garbage".into(), body)
                .await
                .1
        ),
        "signature_malformed"
    );
    let res = app.post_with("sw", body, &[]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        code(&res.json().await.unwrap()),
        "signature_headers_missing"
    );

    let rows = app
        .db
        .rows("SELECT event_id, event_type, schema FROM webhook_events ORDER BY event_id")
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<String, _>(0), "msg_1");
    assert_eq!(rows[0].get::<String, _>(1), "invoice.paid");
    assert_eq!(rows[0].get::<String, _>(2), "standard-webhooks");
    let letters = app.db.rows("SELECT code, body FROM dead_letters").await;
    assert_eq!(letters.len(), 6);
    assert!(
        letters
            .iter()
            .all(|r| r.get::<Option<Vec<u8>>, _>(1).is_none()),
        "signature failures keep no body"
    );
    app.stop().await;
}

both_stores!(signed_events_are_kept_once_and_forgeries_refused);
