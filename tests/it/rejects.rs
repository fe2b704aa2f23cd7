//! Bad input gets a specific answer, and every refused body or record is kept.

use chrono::Utc;
use serde_json::{json, Value};
use sqlx::Row;

use crate::both_stores;
use crate::common::{fixture, spawn_app, spawn_app_with, Backend};
use ringback::simulate::sample;

async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (status, body["error"].clone())
}

async fn invalid_envelopes_are_400_and_kept_raw(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases: [(String, &str, Option<&str>); 4] = [
        // Truncated: the field says where reading stopped.
        (
            "{\"eventType\": \"fee\", \"feeLst\": [".into(),
            "invalid_json",
            Some("feeLst"),
        ),
        (
            r#"{"eventType":"hangup","statusInfo":{"sessionId":"s"}}"#.into(),
            "unknown_event_type",
            Some("eventType"),
        ),
        (
            sample::fee_body(9, 51, Utc::now()).to_string(),
            "fee_list_too_long",
            Some("feeLst"),
        ),
        (
            r#"{"eventType":"answer","statusInfo":{"sessionId":"s","timestamp":"soon"}}"#.into(),
            "invalid_time",
            Some("statusInfo.timestamp"),
        ),
    ];
    for (body, code, field) in &cases {
        let (status, error) = error_of(app.post_signed(body.clone()).await).await;
        assert_eq!(status, 400, "{code}");
        assert_eq!(error["code"], *code);
        assert_eq!(error["field"].as_str(), *field, "{error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    let rows = app
        .db
        .rows("SELECT code, scope, body, field FROM dead_letters ORDER BY received_at")
        .await;
    assert_eq!(rows.len(), cases.len());
    for (row, (body, code, field)) in rows.iter().zip(&cases) {
        assert_eq!(row.get::<String, _>(0), *code);
        assert_eq!(row.get::<String, _>(1), "request");
        assert_eq!(
            row.get::<Vec<u8>, _>(2),
            body.as_bytes(),
            "the raw body is kept byte for byte"
        );
        assert_eq!(row.get::<Option<String>, _>(3).as_deref(), *field);
    }
    assert_eq!(
        app.db.count("cdrs").await + app.db.count("call_events").await,
        0
    );
    app.stop().await;
}

async fn a_bad_record_is_refused_alone_and_listed(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = sample::fee_body(4, 4, Utc::now());
    body["feeLst"][1]["direction"] = json!("outbound");
    body["feeLst"][3]["ttsPlayTimes"] = json!(1.5);
    let res = app.post_signed(body.to_string()).await;
    assert_eq!(
        res.status(),
        200,
        "valid records are committed, so the push succeeded"
    );
    let json: Value = res.json().await.unwrap();
    assert_eq!(json["accepted"], 2);
    assert_eq!(
        json["rejected"],
        json!([
            {"index": 1, "code": "invalid_type", "field": "feeLst[1].direction",
             "message": json["rejected"][0]["message"]},
            {"index": 3, "code": "invalid_type", "field": "feeLst[3].ttsPlayTimes",
             "message": json["rejected"][1]["message"]},
        ])
    );
    assert!(json["rejected"][0]["message"]
        .as_str()
        .unwrap()
        .contains("invalid type"));
    assert_eq!(app.db.count("cdrs").await, 2);
    let rows = app
        .db
        .rows("SELECT record_index, code, field, body FROM dead_letters WHERE scope = 'record' ORDER BY record_index")
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<Option<i32>, _>(0), Some(1));
    assert_eq!(rows[0].get::<String, _>(2), "feeLst[1].direction");
    let kept: Value = serde_json::from_slice(&rows[0].get::<Vec<u8>, _>(3)).unwrap();
    assert_eq!(
        kept, body["feeLst"][1],
        "the refused record is kept as sent"
    );
    app.stop().await;
}

async fn wrong_content_type_is_415_and_oversize_is_413(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.http.max_body_bytes = 4096, None).await;
    let res = app
        .client
        .post(format!("{}/hooks/open", app.address))
        .header("content-type", "text/plain")
        .body(fixture("huawei/answer.json"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(res).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    let big = sample::fee_body(1, 10, Utc::now()).to_string();
    assert!(big.len() > 4096);
    let (status, error) = error_of(app.post_with("open", big, &[]).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (413, Some("body_too_large"))
    );

    let codes: Vec<String> = app
        .db
        .rows("SELECT code FROM dead_letters ORDER BY received_at")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(codes, ["unsupported_media_type", "body_too_large"]);
    app.stop().await;
}

async fn unknown_sources_are_404_and_health_is_200(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, error) = error_of(app.post_with("nope", "{}", &[]).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("unknown_source"))
    );
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    app.stop().await;
}

both_stores!(
    invalid_envelopes_are_400_and_kept_raw,
    a_bad_record_is_refused_alone_and_listed,
    wrong_content_type_is_415_and_oversize_is_413,
    unknown_sources_are_404_and_health_is_200,
);
