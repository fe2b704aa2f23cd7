//! Hostile requests: each gets its exact status and code, nothing is stored as data, secrets
//! are never echoed, and the service is healthy afterwards.

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::both_stores;
use crate::common::{fixture, spawn_app_with, x_aksk_at, Backend, APP_SECRET, PUBLIC_URL};

struct Case {
    name: &'static str,
    source: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        source: "open",
        content_type: "application/json",
        headers: Vec::new(),
        body: body.into(),
        status,
        code,
    }
}

async fn hostile_requests_get_exact_answers(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.http.max_body_bytes = 64 * 1024, None).await;
    let fee = fixture("huawei/fee.json");
    let deep = format!(
        "{{\"eventType\":\"answer\",\"statusInfo\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let replayed = x_aksk_at(PUBLIC_URL, "replayednonce", Utc::now(), APP_SECRET);
    let mut cases = vec![
        case("truncated JSON", &fee[..fee.len() / 2], 400, "invalid_json"),
        // Read without recursion (no stack exhaustion), then refused for its shape.
        case("deeply nested JSON", deep, 400, "invalid_type"),
        case(
            "huge number",
            fee.replace("\"direction\":0", "\"direction\":1e999999"),
            200,
            "",
        ),
        case(
            "integer beyond i64",
            fee.replace("\"direction\":0", "\"direction\":184467440737095516150"),
            200,
            "",
        ),
        case(
            "invalid UTF-8",
            b"{\"eventType\":\"fee\xff\xfe\"}".to_vec(),
            400,
            "invalid_utf8",
        ),
        case(
            "duplicate keys",
            r#"{"eventType":"answer","eventType":"fee","statusInfo":{}}"#,
            400,
            "duplicate_field",
        ),
        case("empty body", "", 400, "invalid_json"),
        case("JSON null", "null", 400, "invalid_type"),
        case(
            "an array where the envelope object belongs",
            r#"["answer", {"sessionId": "s", "timestamp": "2019-01-24 03:04:24"}]"#,
            400,
            "invalid_type",
        ),
        case(
            "oversized body",
            vec![b' '; 65 * 1024],
            413,
            "body_too_large",
        ),
        Case {
            content_type: "application/x-www-form-urlencoded",
            ..case(
                "form content type",
                fee.clone(),
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: "application/json; charset=iso-8859-1",
            ..case(
                "non-UTF-8 charset",
                fee.clone(),
                415,
                "unsupported_media_type",
            )
        },
        Case {
            source: "hw",
            ..case("missing X-AKSK", fee.clone(), 401, "auth_missing")
        },
        Case {
            source: "hw",
            headers: vec![("x-aksk", "UsernameToken Username=k, Nonce=\"\"".into())],
            ..case("garbled X-AKSK", fee.clone(), 401, "auth_malformed")
        },
        Case {
            source: "hw",
            headers: vec![("x-aksk", replayed.clone())],
            ..case("first use of a signature", fee.clone(), 200, "")
        },
        Case {
            source: "hw",
            headers: vec![("x-aksk", replayed)],
            ..case("replayed signature", fee.clone(), 401, "nonce_reused")
        },
        Case {
            source: "hw",
            headers: vec![(
                "x-aksk",
                x_aksk_at(
                    PUBLIC_URL,
                    "past",
                    Utc::now() - Duration::days(400),
                    APP_SECRET,
                ),
            )],
            ..case(
                "timestamp far in the past",
                fee.clone(),
                401,
                "stale_created",
            )
        },
        Case {
            source: "hw",
            headers: vec![(
                "x-aksk",
                x_aksk_at(
                    PUBLIC_URL,
                    "future",
                    Utc::now() + Duration::days(400),
                    APP_SECRET,
                ),
            )],
            ..case(
                "timestamp far in the future",
                fee.clone(),
                401,
                "stale_created",
            )
        },
    ];
    for c in cases.drain(..) {
        let mut req = app
            .client
            .post(format!("{}/hooks/{}", app.address, c.source))
            .header("content-type", c.content_type)
            .body(c.body);
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(status, c.status, "{}: {text}", c.name);
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", c.name));
        if c.code.is_empty() {
            if c.name != "first use of a signature" {
                // A CDR with an unreadable number: the push succeeds, the record is refused.
                // Past i64, serde_json reads an integer as a float (a type error); past f64,
                // the number is out of range.
                let want = if c.name == "huge number" {
                    "invalid_value"
                } else {
                    "invalid_type"
                };
                assert_eq!(v["rejected"][0]["code"], want, "{}: {v}", c.name);
                assert_eq!(v["rejected"][0]["field"], "feeLst[0].direction");
            }
        } else {
            assert_eq!(v["error"]["code"], c.code, "{}: {v}", c.name);
        }
        assert!(
            !text.contains(APP_SECRET),
            "{}: the secret is never echoed",
            c.name
        );
    }
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "healthy afterwards");
    assert_eq!(
        app.db.count("cdrs").await,
        1,
        "only the one signed, fresh, valid push"
    );
    app.stop().await;
}

both_stores!(hostile_requests_get_exact_answers);
