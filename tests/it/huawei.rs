//! Documented Huawei bodies are accepted, land as typed rows, and replays add nothing.

use chrono::{TimeZone, Utc};
use serde_json::Value;
use sqlx::Row;

use crate::both_stores;
use crate::common::{fixture, spawn_app, Backend};
use ringback::simulate::sample;

const STATUS: [&str; 5] = ["callout", "alerting", "answer", "collectInfo", "disconnect"];

async fn status_events_of_every_type_become_rows_once(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in STATUS {
        let res = app
            .post_signed(fixture(&format!("huawei/{name}.json")))
            .await;
        assert_eq!(res.status(), 200, "{name}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            (body["accepted"].as_i64(), body["duplicates"].as_i64()),
            (Some(1), Some(0)),
            "{name}: {body}"
        );
    }
    assert_eq!(app.db.count("call_events").await, 5);

    // Replaying every body (platform retry) answers 200 and adds no row.
    for name in STATUS {
        let res = app
            .post_signed(fixture(&format!("huawei/{name}.json")))
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            (body["accepted"].as_i64(), body["duplicates"].as_i64()),
            (Some(0), Some(1)),
            "{name}: {body}"
        );
    }
    assert_eq!(app.db.count("call_events").await, 5);

    let rows = app
        .db
        .rows("SELECT event_type, state_code, state_desc, digit_info, caller FROM call_events ORDER BY occurred_at")
        .await;
    let types: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    assert_eq!(types, STATUS);
    let disconnect = &rows[4];
    assert_eq!(disconnect.get::<Option<i32>, _>(1), Some(0));
    assert_eq!(
        disconnect.get::<Option<String>, _>(2).as_deref(),
        Some("The user releases the call.")
    );
    assert_eq!(rows[3].get::<Option<String>, _>(3).as_deref(), Some("1"));
    assert_eq!(
        rows[0].get::<Option<String>, _>(4).as_deref(),
        Some("+8613800000022")
    );
    app.stop().await;
}

async fn fee_bodies_of_1_2_and_50_records_become_typed_rows_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let end = Utc.with_ymd_and_hms(2026, 11, 21, 7, 59, 0).unwrap();
    let bodies = [
        fixture("huawei/fee.json"),
        sample::fee_body(2, 2, end).to_string(),
        sample::fee_body(50, 50, end).to_string(),
    ];
    for (body, n) in bodies.iter().zip([1, 2, 50]) {
        let res = app.post_signed(body.clone()).await;
        assert_eq!(res.status(), 200);
        let json: Value = res.json().await.unwrap();
        assert_eq!(json["accepted"], n, "{json}");
        assert_eq!(json["rejected"].as_array().map(Vec::len), Some(0));
    }
    assert_eq!(app.db.count("cdrs").await, 53);

    // Fee pushes are retried by the platform: the same bodies again add nothing.
    for (body, n) in bodies.iter().zip([1, 2, 50]) {
        let json: Value = app.post_signed(body.clone()).await.json().await.unwrap();
        assert_eq!(
            (json["accepted"].as_i64(), json["duplicates"].as_i64()),
            (Some(0), Some(n)),
            "{json}"
        );
    }
    assert_eq!(app.db.count("cdrs").await, 53);

    // The documented sample: typed columns and the derived figures.
    let row = &app
        .db
        .rows(
            "SELECT direction, sp_id, caller_num, service_type, CAST(answered AS INTEGER), \
             ring_seconds, talk_seconds, billable_minutes, ul_fail_reason, host_name \
             FROM cdrs WHERE icid = 'CAE-20190124110424-12019775'",
        )
        .await[0];
    assert_eq!(row.get::<i16, _>(0), 0);
    assert_eq!(row.get::<String, _>(1), "CaaS_Test_01");
    assert_eq!(row.get::<String, _>(2), "+8613800000022");
    assert_eq!(row.get::<String, _>(3), "002");
    assert_eq!(row.get::<i32, _>(4), 1);
    assert_eq!(row.get::<Option<i32>, _>(5), Some(2));
    assert_eq!(row.get::<Option<i32>, _>(6), Some(11));
    assert_eq!(row.get::<Option<i32>, _>(7), Some(1));
    assert_eq!(row.get::<Option<i32>, _>(8), Some(0));
    assert_eq!(
        row.get::<Option<String>, _>(9).as_deref(),
        Some("callenabler245.huaweicaas.com")
    );

    // Every fifth sample call is unanswered: 10 of the 50, plus none of the 1 + 2 others.
    let unanswered = app
        .db
        .scalar_i64("SELECT COUNT(*) FROM cdrs WHERE NOT (answered = TRUE)")
        .await;
    assert_eq!(unanswered, 10);
    app.stop().await;
}

async fn the_raw_record_is_kept_beside_the_typed_columns(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = fixture("huawei/fee.json").replace(
        "\"+8613800000022\",\"calleeNum\"",
        "\"0086 138-0000-0022\",\"calleeNum\"",
    );
    assert!(body.contains("0086 138"), "fixture changed");
    assert_eq!(app.post_signed(body).await.status(), 200);
    let row = &app
        .db
        .rows("SELECT caller_num, CAST(raw AS TEXT) FROM cdrs")
        .await[0];
    assert_eq!(row.get::<String, _>(0), "+8613800000022");
    let raw: Value = serde_json::from_str(&row.get::<String, _>(1)).unwrap();
    assert_eq!(raw["callerNum"], "0086 138-0000-0022");
    assert_eq!(raw["icid"], "CAE-20190124110424-12019775");
    app.stop().await;
}

both_stores!(
    status_events_of_every_type_become_rows_once,
    fee_bodies_of_1_2_and_50_records_become_typed_rows_once,
    the_raw_record_is_kept_beside_the_typed_columns,
);
