//! Numbers in one form: a Huawei source with a default region writes national numbers in
//! E.164, so that they match the same line's numbers from Azure Communication Services.

use ringback::config::Config;
use ringback::simulate::sample;
use serde_json::json;

use crate::both_stores;
use crate::common::{fixture, spawn_app_with, Backend};

fn two_platforms(config: &mut Config) {
    let extra = Config::from_toml(
        r#"
        [sources.cn]
        kind = "huawei-voicecall"
        auth = "none"
        default_region = "CN"

        [sources.acs]
        kind = "azure-communication"
        auth = "none"
        "#,
    )
    .unwrap();
    config.sources.extend(extra.sources);
}

async fn huawei_and_acs_numbers_of_one_line_match(backend: Backend) {
    let app = spawn_app_with(backend, two_platforms, None).await;
    // Huawei sends the caller nationally, the callee with spaces; the bind number is a short
    // code (not a valid national number: kept as sent).
    let mut fee = sample::fee_body(1, 1, chrono::Utc::now());
    fee["feeLst"][0]["callerNum"] = json!("138 0000 0022");
    fee["feeLst"][0]["calleeNum"] = json!("(0755) 1234-5678");
    fee["feeLst"][0]["bindNum"] = json!("10086");
    assert_eq!(
        app.post_with("cn", fee.to_string(), &[]).await.status(),
        200
    );
    let mut status = sample::status_body("answer", "s-1", chrono::Utc::now());
    status["statusInfo"]["caller"] = json!("13800000022");
    assert_eq!(
        app.post_with("cn", status.to_string(), &[]).await.status(),
        200
    );
    // ACS reports an SMS between the same two lines, in E.164.
    let sms = fixture("acs/eventgrid/SMSDeliveryReportReceived.json")
        .replace("+14255550123", "+8613800000022")
        .replace("+15555555555", "+8675512345678");
    assert_eq!(app.post_with("acs", sms, &[]).await.status(), 200);

    let joined = app
        .db
        .scalar_i64(
            "SELECT COUNT(*) FROM cdrs c JOIN phone_number_events p \
             ON p.from_number = c.caller_num AND p.to_number = c.callee_num",
        )
        .await;
    assert_eq!(joined, 1, "the CDR and the SMS name the same two lines");
    let rows = app
        .db
        .rows("SELECT caller_num, callee_num, bind_num, CAST(raw AS TEXT) FROM cdrs")
        .await;
    use sqlx::Row;
    assert_eq!(rows[0].get::<String, _>(0), "+8613800000022");
    assert_eq!(rows[0].get::<String, _>(1), "+8675512345678");
    assert_eq!(rows[0].get::<String, _>(2), "10086");
    assert!(
        rows[0].get::<String, _>(3).contains("138 0000 0022"),
        "raw keeps the number as sent"
    );
    let caller = app
        .db
        .scalar_i64("SELECT COUNT(*) FROM call_events WHERE caller = '+8613800000022'")
        .await;
    assert_eq!(caller, 1);
    // The source without a region keeps national numbers as sent (compacted).
    let mut fee = sample::fee_body(2, 1, chrono::Utc::now());
    fee["feeLst"][0]["callerNum"] = json!("138 0000 0022");
    assert_eq!(
        app.post_with("open", fee.to_string(), &[]).await.status(),
        200
    );
    let kept = app
        .db
        .scalar_i64("SELECT COUNT(*) FROM cdrs WHERE caller_num = '13800000022'")
        .await;
    assert_eq!(kept, 1);
    app.stop().await;
}

both_stores!(huawei_and_acs_numbers_of_one_line_match);
