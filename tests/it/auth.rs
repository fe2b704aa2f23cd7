//! AKSK failures: 401 with a distinct code each, kept as metadata-only dead letters.

use chrono::{Duration, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::both_stores;
use crate::common::{fixture, spawn_app, x_aksk, x_aksk_at, Backend, APP_SECRET, PUBLIC_URL};

async fn code_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn each_auth_failure_is_401_with_its_own_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = fixture("huawei/fee.json");
    let post = |h: String| {
        let body = body.clone();
        let app = &app;
        async move { app.post_with("hw", body, &[("x-aksk", h)]).await }
    };

    let wrong_secret = x_aksk_at(PUBLIC_URL, "n1", Utc::now(), "not-the-secret");
    assert_eq!(
        code_of(post(wrong_secret).await).await,
        (401, "signature_mismatch".into())
    );

    let wrong_url = x_aksk("https://elsewhere.example.com/hooks/hw");
    assert_eq!(
        code_of(post(wrong_url).await).await,
        (401, "signature_mismatch".into())
    );

    let stale = x_aksk_at(
        PUBLIC_URL,
        "n2",
        Utc::now() - Duration::minutes(10),
        APP_SECRET,
    );
    assert_eq!(
        code_of(post(stale).await).await,
        (401, "stale_created".into())
    );

    let fresh = x_aksk(PUBLIC_URL);
    assert_eq!(post(fresh.clone()).await.status(), 200);
    assert_eq!(
        code_of(post(fresh).await).await,
        (401, "nonce_reused".into())
    );

    let unknown_key = x_aksk(PUBLIC_URL).replace(crate::common::APP_KEY, "someone-else");
    assert_eq!(
        code_of(post(unknown_key).await).await,
        (401, "unknown_app_key".into())
    );

    let res = app.post_with("hw", body.clone(), &[]).await;
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(code_of(res).await, (401, "auth_missing".into()));

    assert_eq!(
        code_of(post("Basic Zm9vOmJhcg==".into()).await).await,
        (401, "auth_malformed".into())
    );

    // Only the one good request wrote a CDR; each failure is a dead letter without a body.
    assert_eq!(app.db.count("cdrs").await, 1);
    let rows = app
        .db
        .rows("SELECT code, CASE WHEN body IS NULL THEN 1 ELSE 0 END, CAST(headers AS TEXT) FROM dead_letters ORDER BY received_at")
        .await;
    let codes: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        codes,
        [
            "signature_mismatch",
            "signature_mismatch",
            "stale_created",
            "nonce_reused",
            "unknown_app_key",
            "auth_missing",
            "auth_malformed"
        ]
    );
    for row in &rows {
        assert_eq!(row.get::<i32, _>(1), 1, "auth failures keep no body");
        let headers: String = row.get(2);
        assert!(
            !headers.contains("Zm9vOmJhcg=="),
            "secrets must be redacted: {headers}"
        );
    }
    app.stop().await;
}

async fn an_open_source_needs_no_signature(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app
        .post_with("open", fixture("huawei/answer.json"), &[])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.db.count("call_events").await, 1);
    app.stop().await;
}

both_stores!(
    each_auth_failure_is_401_with_its_own_code,
    an_open_source_needs_no_signature
);
