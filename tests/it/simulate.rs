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
        acks: None,
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

/// In fixed-rate mode latency counts from each request's scheduled send time: a server that
/// stalls once for 1 s delays every request scheduled behind it, and the report shows it (timed
/// from the actual sends, the stall would look like one slow request among fast ones).
#[tokio::test]
async fn fixed_rate_latency_counts_from_the_schedule() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut served = 0u32;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                served += 1;
                if served == 5 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut plan = plan(
        format!("http://127.0.0.1:{port}/hooks/hw"),
        Traffic::Status,
        60,
        APP_SECRET,
    );
    plan.connections = 1;
    plan.rate = Some(50.0);
    let report = simulate::run(plan).await.unwrap();
    assert_eq!(
        report.statuses.get("200"),
        Some(&60),
        "{:?}",
        report.statuses
    );
    // About 50 requests were scheduled during the stall: their latency includes their wait.
    assert!(
        report.latency_ms.p50 > 200.0,
        "p50 {} ms: the stall is not charged to the requests behind it",
        report.latency_ms.p50
    );
}
