//! `ringback emulate`: fakes of the platforms ringback ingests from, with their delivery rules
//! (retries, merging, signing), as a realistic traffic source and an end-to-end check of a
//! deployment. Each emulator writes a [`ledger`] of every delivery attempt and its answer;
//! [`verify`] then checks the target's database (and Kafka) against it and gives a verdict.
//!
//! Where `ringback simulate` sends well-formed pushes as fast as asked, an emulator behaves as
//! the platform: `huawei` never retries a status push and retries a fee push up to 6 times an
//! hour apart (`--time-scale` compresses the hour), merges CDRs, serves the app-facing call API.

pub mod call_automation;
pub mod event_grid;
pub mod huawei;
pub mod ledger;
pub mod standard_webhooks;
pub mod verify;

/// The emulators' HTTP client: `timeout` a request (the platform's), and no connection kept
/// idle longer than 2 s, under the 5 s keep-alive servers commonly close idle connections at:
/// a push sent on a connection the server is closing that instant fails, and a platform that
/// never retries (Huawei's status pushes) would lose it for the client's sake, not the
/// receiver's.
fn client(timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()?)
}

use ledger::Answer;

/// Reads the answer to a push (the whole body, so the connection can carry the next one).
async fn settle(sent: Result<reqwest::Response, reqwest::Error>) -> Answer {
    match sent {
        Ok(res) => {
            let status = res.status().as_u16();
            let body = res.bytes().await.unwrap_or_default();
            let duplicates = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("duplicates")?.as_u64());
            Answer {
                status: Some(status),
                error: None,
                duplicates,
            }
        }
        Err(e) => Answer {
            status: None,
            error: Some(crate::error::error_chain(&e)),
            duplicates: None,
        },
    }
}

/// How ringback would parse what is posted to `url`: as the source named by its last path
/// segment (`…/hooks/<source>`, which record ids derive from), received now.
fn context(url: &str) -> crate::sources::ParseContext {
    let source = url::Url::parse(url)
        .ok()
        .and_then(|u| u.path_segments()?.next_back().map(str::to_owned))
        .unwrap_or_default();
    crate::sources::ParseContext {
        source: source.into(),
        received_at: chrono::Utc::now(),
        region: None,
    }
}

/// Platform time `d` as real time at `time_scale` platform seconds per real second.
fn scaled(d: std::time::Duration, time_scale: f64) -> std::time::Duration {
    d.div_f64(time_scale.max(f64::MIN_POSITIVE))
}
