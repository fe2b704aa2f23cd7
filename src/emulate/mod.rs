//! `ringback emulate`: fakes of the platforms ringback ingests from, with their delivery rules
//! (retries, merging, signing), as a realistic traffic source and an end-to-end check of a
//! deployment. Each emulator writes a [`ledger`] of every delivery attempt and its answer;
//! [`verify`] then checks the target's database (and Kafka) against it and gives a verdict.
//!
//! Where `ringback simulate` sends well-formed pushes as fast as asked, an emulator behaves as
//! the platform: `huawei` never retries a status push and retries a fee push up to 6 times an
//! hour apart (`--time-scale` compresses the hour), merges CDRs, serves the app-facing call API.

pub mod event_grid;
pub mod huawei;
pub mod ledger;
pub mod verify;

/// The emulators' HTTP client: 30 s a request (Event Grid's timeout), and no connection kept
/// idle longer than 2 s, under the 5 s keep-alive servers commonly close idle connections at:
/// a push sent on a connection the server is closing that instant fails, and a platform that
/// never retries (Huawei's status pushes) would lose it for the client's sake, not the
/// receiver's.
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()?)
}

/// The answer to a push: its status, or why none came. The body is read (and dropped), so the
/// connection can carry the next push.
async fn settle(sent: Result<reqwest::Response, reqwest::Error>) -> (Option<u16>, Option<String>) {
    match sent {
        Ok(res) => {
            let status = res.status().as_u16();
            let _ = res.bytes().await;
            (Some(status), None)
        }
        Err(e) => (None, Some(crate::error::error_chain(&e))),
    }
}
