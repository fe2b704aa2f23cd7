//! The load generator (`ringback simulate`) against the real application: what it reports is
//! what the server committed.

use std::time::Duration;

use ringback::simulate::{self, Plan, Signer, Traffic};

use crate::both_stores;
use crate::common::{spawn_app, Backend, APP_KEY, APP_SECRET, PUBLIC_URL};

fn plan(target: String, traffic: Traffic, count: u64, secret: &str) -> Plan {
    Plan {
        target,
        traffic,
        connections: 4,
        rate: None,
        duration: None,
        count: Some(count),
        signer: Some(Signer {
            app_key: APP_KEY.into(),
            secret: secret.as_bytes().to_vec(),
            url: PUBLIC_URL.into(),
        }),
        seed: 7,
    }
}

async fn simulated_calls_are_committed_as_reported(backend: Backend) {
    let app = spawn_app(backend).await;
    let target = format!("{}/hooks/hw", app.address);
    // Two rounds of 50 calls: 200 status pushes, then one fee push of 50 CDRs, each.
    let report = simulate::run(plan(target.clone(), Traffic::Calls, 402, APP_SECRET))
        .await
        .unwrap();
    assert_eq!(report.requests, 402, "{}", report.render());
    assert_eq!(
        report.statuses.get("200"),
        Some(&402),
        "{:?}",
        report.statuses
    );
    assert_eq!(report.records, 500);
    assert_eq!(app.db.count("call_events").await, 400);
    assert_eq!(app.db.count("cdrs").await, 100);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);

    // Signed with the wrong secret: every request is refused, and the report says so.
    let report = simulate::run(plan(target, Traffic::Status, 5, "not-the-secret"))
        .await
        .unwrap();
    assert_eq!(
        report.statuses.get("401"),
        Some(&5),
        "{:?}",
        report.statuses
    );
    assert_eq!(report.records, 0);
    assert_eq!(app.db.count("call_events").await, 400);
    app.stop().await;
}

both_stores!(simulated_calls_are_committed_as_reported);

/// Nothing listens: each request is an `error`, none is retried forever.
#[tokio::test]
async fn an_unreachable_target_is_reported_as_errors() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("http://127.0.0.1:{port}/hooks/hw");
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        simulate::run(plan(target, Traffic::Fee, 3, APP_SECRET)),
    )
    .await
    .expect("finishes")
    .unwrap();
    assert_eq!(
        report.statuses.get("error"),
        Some(&3),
        "{:?}",
        report.statuses
    );
    assert_eq!(report.records, 0);
}
