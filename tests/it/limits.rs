//! Overload and slow senders: per-source rate limit (429 + Retry-After, every 2xx committed
//! exactly once), body and header timeouts (slow senders are cut off), service healthy after.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::both_stores;
use crate::common::{fixture, spawn_app_with, Backend};
use ringback::config::Config;
use ringback::simulate::sample;

fn limited(c: &mut Config) {
    let extra = Config::from_toml(
        "[sources.limited]\nkind = \"huawei-voicecall\"\nauth = \"none\"\nrate_limit = 2\nrate_burst = 3\n",
    )
    .unwrap();
    c.sources.extend(extra.sources);
    c.http.body_timeout = Duration::from_millis(500);
    c.http.client_request_timeout = Duration::from_millis(500);
}

async fn a_burst_beyond_the_rate_limit_is_refused_with_retry_after(backend: Backend) {
    let app = spawn_app_with(backend, limited, None).await;
    let start = chrono::Utc::now();
    let (mut ok, mut limited_count) = (0, 0);
    for n in 0..10 {
        let body = sample::status_body("callout", &format!("session-{n}"), start).to_string();
        let res = app.post_with("limited", body, &[]).await;
        match res.status().as_u16() {
            200 => ok += 1,
            429 => {
                limited_count += 1;
                let retry: u32 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=5).contains(&retry));
                let v: Value = res.json().await.unwrap();
                assert_eq!(v["error"]["code"], "rate_limited");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (3..=5).contains(&ok),
        "the burst of 3 (plus what refilled) went through: {ok}"
    );
    assert_eq!(ok + limited_count, 10);
    assert_eq!(
        app.db.count("call_events").await,
        ok,
        "every 2xx committed exactly once"
    );
    assert_eq!(
        app.db.count("dead_letters").await,
        0,
        "a refused flood costs no writes"
    );
    // Other sources are not limited by it.
    assert_eq!(
        app.post_with("open", fixture("huawei/answer.json"), &[])
            .await
            .status(),
        200
    );
    app.stop().await;
}

fn raw_request(port: u16, head: &str, body: &[u8]) -> (Duration, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

async fn slow_senders_are_cut_off(backend: Backend) {
    let app = spawn_app_with(backend, limited, None).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    // A body that stops half-way: 408 body_timeout after http.body_timeout.
    let head = format!(
        "POST /hooks/open HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let (elapsed, answer) =
        tokio::task::spawn_blocking(move || raw_request(port, &head, b"{\"eventType\""))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // A request head that never ends: the connection is closed (408 or nothing) promptly.
    let (elapsed, answer) = tokio::task::spawn_blocking(move || {
        raw_request(port, "POST /hooks/open HTTP/1.1\r\nHost: x\r\n", b"")
    })
    .await
    .unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // Still healthy, and the cut-off body was kept as a dead letter (metadata only). Asked on
    // a new connection, as a new client would: reusing the app client's pooled one, idle since
    // start-up, once failed under CI load with hyper's `UnexpectedMessage` (bytes on an idle
    // connection), which says nothing about the server's health after these attacks.
    // It happened again on a new connection (CI, 2026-12-02): a few tries, each on a
    // connection of its own; a server the attacks broke fails them all.
    let mut health = None;
    for _ in 0..3 {
        match reqwest::Client::new()
            .get(format!("{}/healthz", app.address))
            .send()
            .await
        {
            Ok(res) => {
                health = Some(res.status());
                break;
            }
            Err(e) => {
                eprintln!("healthz after the slow senders: {e:?}; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert_eq!(health, Some(reqwest::StatusCode::OK));
    assert_eq!(app.db.count("dead_letters").await, 1);
    app.stop().await;
}

async fn oversized_request_heads_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, limited, None).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let many: String = (0..200).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let huge = format!("X-Huge: {}\r\n", "a".repeat(64 * 1024));
    for extra in [many, huge] {
        let head = format!(
            "POST /hooks/open HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        );
        let (_, answer) = tokio::task::spawn_blocking(move || raw_request(port, &head, b"{}"))
            .await
            .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 431"),
            "{}",
            &answer[..answer.len().min(200)]
        );
    }
    assert_eq!(
        app.db.count("dead_letters").await,
        0,
        "refused before ringback reads it"
    );
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

both_stores!(
    oversized_request_heads_are_refused,
    a_burst_beyond_the_rate_limit_is_refused_with_retry_after,
    slow_senders_are_cut_off,
);
