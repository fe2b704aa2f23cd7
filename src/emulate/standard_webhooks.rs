//! `ringback emulate standard-webhooks`: a Svix-like sender of Standard Webhooks.
//!
//! Each message has a `webhook-id` of its own (`msg_…`) that every attempt repeats; each
//! attempt is signed afresh, with its own `webhook-timestamp` (`v1,` HMAC-SHA256 of
//! `id.timestamp.body` under each secret: during a rotation, with the old and the new secret,
//! two signatures space-separated). An attempt not answered 2xx within 15 s is retried on Svix's
//! schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the one before (8 attempts in all),
//! compressed by `time_scale`; after the last the message fails. The receiver must store a
//! message once however many attempts reach it, and answer a re-signed retry of a stored one as
//! a duplicate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ledger::{Carried, Ledger, Push};
use crate::auth::standard_webhooks as sw;

/// Waits before each retry (Svix's schedule; the first attempt goes at once).
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoint: String,
    /// The signing secrets (`whsec_…`): one, or two during a rotation (each attempt carries a
    /// signature under each).
    pub secrets: Vec<String>,
    pub messages_per_second: f64,
    pub duration: Duration,
    pub seed: u64,
    pub time_scale: f64,
    /// The share of messages whose first attempt the sender "loses" after it was answered 2xx
    /// (a timeout on its side), so it tries again: a retry of a message already stored.
    pub lost_acks: f64,
    pub ledger: std::path::PathBuf,
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub messages: u64,
    pub attempts: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Retries of messages already answered 2xx (`lost_acks`).
    pub resent_after_ack: u64,
}

const TYPES: [&str; 5] = [
    "invoice.paid",
    "invoice.payment_failed",
    "user.created",
    "user.deleted",
    "subscription.renewed",
];

struct Sender {
    opts: Options,
    secrets: Vec<Vec<u8>>,
    http: reqwest::Client,
    ledger: Ledger,
    tasks: TaskTracker,
    messages: AtomicU64,
    attempts: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    resent: AtomicU64,
}

impl Sender {
    fn real(&self, d: Duration) -> Duration {
        super::scaled(d, self.opts.time_scale)
    }

    /// One attempt, signed now under every secret.
    async fn send(&self, id: &str, body: &str) -> (super::Answer, String) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let timestamp = Utc::now().timestamp().to_string();
        let signature = self
            .secrets
            .iter()
            .map(|s| sw::sign(s, id, &timestamp, body.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ");
        let sent = self
            .http
            .post(&self.opts.endpoint)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .header("x-request-id", &request_id)
            .body(body.to_owned())
            .send()
            .await;
        (super::settle(sent).await, request_id)
    }

    /// A message tried until answered 2xx or out of retries.
    async fn deliver(&self, n: u64, stop: CancellationToken) {
        let mut rng =
            fastrand::Rng::with_seed(self.opts.seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        let id = format!("msg_emu{}x{n:010}", self.opts.seed);
        let event_type = TYPES[rng.usize(..TYPES.len())];
        let body = json!({
            "type": event_type,
            "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": {"id": format!("obj_{n}"), "amount": rng.u32(100..100_000), "currency": "EUR"},
        })
        .to_string();
        let push = Push {
            platform: "standard-webhooks",
            kind: "message",
            id: id.clone(),
            url: self.opts.endpoint.clone(),
            malformed: false,
            records: self.carried(&id, &body),
        };
        let lose_ack = self.opts.lost_acks > 0.0 && rng.f64() < self.opts.lost_acks;
        let mut delivered = false;
        for attempt in 1..=1 + RETRY_SCHEDULE.len() as u32 {
            let (answer, request_id) = self.send(&id, &body).await;
            let status = answer.status;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            delivered |= ok;
            // A lost acknowledgement: answered 2xx, but the sender saw a timeout and tries again.
            let resend = ok && lose_ack && attempt == 1;
            let will_retry = (!ok || resend) && (attempt as usize) <= RETRY_SCHEDULE.len();
            self.ledger
                .write(&push.attempt(attempt, request_id, &answer, will_retry));
            if resend {
                self.resent.fetch_add(1, Ordering::Relaxed);
            }
            if !will_retry {
                break;
            }
            let wait = RETRY_SCHEDULE[attempt as usize - 1];
            tokio::select! {
                () = tokio::time::sleep(self.real(wait)) => {}
                () = stop.cancelled() => break,
            }
        }
        if delivered {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The record ringback makes of a message (its id comes from the source and `webhook-id`).
    fn carried(&self, id: &str, body: &str) -> Vec<Carried> {
        let timestamp = Utc::now().timestamp().to_string();
        let headers = sw::WebhookHeaders {
            id,
            timestamp: &timestamp,
            signature: "",
        };
        let ctx = super::context(&self.opts.endpoint);
        crate::sources::standard_webhooks::parse_body(
            body.as_bytes(),
            Some(&headers),
            "/type",
            &ctx,
        )
        .map(|p| Carried::of(&p.records))
        .unwrap_or_default()
    }
}

/// Sends messages at the asked rate for `duration` (or until `stop`), then lets the retries run
/// out.
pub async fn run(opts: Options, stop: CancellationToken) -> anyhow::Result<Summary> {
    anyhow::ensure!(opts.time_scale > 0.0, "--time-scale must be above 0");
    anyhow::ensure!(
        (1..=2).contains(&opts.secrets.len()),
        "one secret, or two during a rotation"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&opts.lost_acks),
        "--lost-acks is a share, 0 to 1"
    );
    url::Url::parse(&opts.endpoint).with_context(|| format!("{} is not a URL", opts.endpoint))?;
    let secrets = opts
        .secrets
        .iter()
        .map(|s| sw::decode_secret(s).context("a secret is not whsec_ + Base64"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sender = Arc::new(Sender {
        secrets,
        http: super::client(Duration::from_secs(15))?,
        ledger: Ledger::create(&opts.ledger)?,
        tasks: TaskTracker::new(),
        messages: AtomicU64::new(0),
        attempts: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        opts,
    });
    let until = tokio::time::sleep(sender.opts.duration);
    tokio::pin!(until);
    let mut every = tokio::time::interval(Duration::from_secs_f64(
        1.0 / sender.opts.messages_per_second.max(1e-9),
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0;
    loop {
        tokio::select! {
            () = &mut until => break,
            () = stop.cancelled() => break,
            _ = every.tick() => {
                sender.messages.fetch_add(1, Ordering::Relaxed);
                let (s, stop) = (sender.clone(), stop.clone());
                sender.tasks.spawn(async move { s.deliver(n, stop).await });
                n += 1;
            }
        }
    }
    sender.tasks.close();
    sender.tasks.wait().await;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Ok(Summary {
        messages: get(&sender.messages),
        attempts: get(&sender.attempts),
        delivered: get(&sender.delivered),
        failed: get(&sender.failed),
        resent_after_ack: get(&sender.resent),
    })
}
