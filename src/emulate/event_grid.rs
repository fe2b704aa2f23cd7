//! `ringback emulate event-grid`: a fake Event Grid subscription to an Azure Communication
//! Services resource's events, delivering to a webhook as Event Grid does:
//! - **the validation handshake first**: with the Event Grid schema, a
//!   `Microsoft.EventGrid.SubscriptionValidationEvent` (`aeg-event-type: SubscriptionValidation`)
//!   whose `validationCode` must come back as `{"validationResponse": …}`; with CloudEvents 1.0,
//!   an `OPTIONS` with `WebHook-Request-Origin: eventgrid.azure.net` that must be allowed
//!   (`WebHook-Allowed-Origin`). A failed handshake fails the subscription: nothing is sent;
//! - **batches** of at most `max_events` events and about `batch_bytes` bytes (Event Grid's
//!   "max events per batch" and "preferred batch size"), `aeg-event-type: Notification`,
//!   `aeg-subscription-name`, `aeg-delivery-count` (0 on the first attempt), `aeg-data-version`,
//!   `aeg-metadata-version`; CloudEvents as `application/cloudevents-batch+json`;
//! - **retries** on the documented schedule (10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h,
//!   6 h, then every 12 h) within the event time-to-live (24 h) and at most 30 attempts, compressed
//!   by `time_scale`; `400` and `413` are not retried. A batch that runs out is **dead-lettered**:
//!   written to `dead_letter_dir` as Event Grid writes to its storage container;
//! - **redeliveries**: a share of batches answered 2xx is delivered again, the same events with
//!   the same ids (at-least-once delivery), which the receiver must answer as duplicates;
//! - **auth** as the subscription is configured: a secret in the endpoint URL's query (it is
//!   part of `endpoint`), in a delivery-property header (`header`), or an Entra-style token
//!   (`jwt`): `Authorization: Bearer` an ES256 JWT with the subscription's audience and a tenant
//!   issuer, signed by a key the emulator makes at start and whose JWKS it writes to a file for
//!   the receiver (`jwks_file` in ringback; Entra publishes its keys at a URL instead).
//!
//! With `call_automation` set, each incoming call is also "answered" with that URL as its
//! `callbackUri`, and its Call Automation callbacks are posted there (see [`call_automation`]).
//!
//! The events are the recorded ACS samples of `tests/fixtures/acs/` (SMS received and delivery
//! reports, incoming calls, call started/ended and participants, recording files, chat
//! messages and threads), each given an id of its own and the current time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::call_automation::{self, Call};
use super::ledger::{Carried, Ledger, Push};

/// Event Grid's retry schedule for webhooks (after the first attempt); then every 12 hours.
pub const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(3 * 3600),
    Duration::from_secs(6 * 3600),
];
/// Between the later retries.
pub const RETRY_LATER: Duration = Duration::from_secs(12 * 3600);
/// Event time-to-live (the default, 1 440 minutes).
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// Delivery attempts at most (the default).
pub const MAX_ATTEMPTS: u32 = 30;

/// The event schema of the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schema {
    EventGrid,
    CloudEvents,
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The subscription's webhook endpoint (with `?code=…` when the secret rides in the URL).
    pub endpoint: String,
    pub schema: Schema,
    /// A delivery-property header carrying a secret: (name, value).
    pub header: Option<(String, String)>,
    /// Entra-style tokens on every request.
    pub jwt: Option<Jwt>,
    pub subscription: String,
    pub events_per_second: f64,
    pub duration: Duration,
    pub seed: u64,
    /// Platform seconds per real second: the retry schedule shrinks by it.
    pub time_scale: f64,
    pub max_events: usize,
    pub batch_bytes: usize,
    /// The share of batches answered 2xx that are delivered again.
    pub redeliver: f64,
    pub dead_letter_dir: std::path::PathBuf,
    /// The `callbackUri` incoming calls are answered with: their Call Automation callbacks go
    /// there. `None`: calls ring unanswered, as far as the emulator is concerned.
    pub call_automation: Option<String>,
    pub ledger: std::path::PathBuf,
}

/// How the emulator's tokens look, where their key is kept and where its JWKS goes.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub audience: String,
    pub issuer: String,
    /// The signing key (PKCS#8 DER): made on first use, then kept, so the JWKS stays the same
    /// from one run to the next.
    pub key_file: std::path::PathBuf,
    pub jwks_file: std::path::PathBuf,
}

impl Jwt {
    /// Makes (or reads) the key and writes its JWKS: for the receiver to be configured with
    /// before the run. Runs do it too.
    pub fn prepare(&self) -> anyhow::Result<()> {
        Signer::make(self).map(drop)
    }
}

/// A signing key made for the run.
struct Signer {
    key: jsonwebtoken::EncodingKey,
    kid: String,
    audience: String,
    issuer: String,
}

impl Signer {
    /// A new P-256 key; its JWKS written to `jwt.jwks_file`.
    fn make(jwt: &Jwt) -> anyhow::Result<Self> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        use sha2::Digest as _;
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = match std::fs::read(&jwt.key_file) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let made = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| anyhow::anyhow!("generating a P-256 key"))?;
                std::fs::write(&jwt.key_file, made.as_ref()).with_context(|| {
                    format!("keeping the signing key in {}", jwt.key_file.display())
                })?;
                made.as_ref().to_vec()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", jwt.key_file.display())),
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| anyhow::anyhow!("{} is not a P-256 key", jwt.key_file.display()))?;
        // Uncompressed point: 0x04, x, y. The key id is a digest of it: the same key, the same id.
        let point = pair.public_key().as_ref();
        let kid: String = sha2::Sha256::digest(point)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        std::fs::write(&jwt.jwks_file, jwks.to_string())
            .with_context(|| format!("writing the JWKS to {}", jwt.jwks_file.display()))?;
        Ok(Self {
            key: jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
            kid,
            audience: jwt.audience.clone(),
            issuer: jwt.issuer.clone(),
        })
    }

    /// A token valid for an hour from now.
    fn token(&self) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let now = Utc::now().timestamp();
        let claims = json!({
            "aud": self.audience, "iss": self.issuer, "sub": "event-grid",
            "iat": now, "nbf": now - 60, "exp": now + 3600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).expect("an ES256 token signs")
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub events: u64,
    pub batches: u64,
    pub attempts: u64,
    pub acknowledged: u64,
    pub redeliveries: u64,
    pub dead_lettered: u64,
    /// Incoming calls answered with `call_automation` as their `callbackUri`.
    #[serde(default)]
    pub calls_answered: u64,
    /// Call Automation callbacks posted, and those answered 2xx.
    #[serde(default)]
    pub callbacks: u64,
    #[serde(default)]
    pub callbacks_acknowledged: u64,
}

/// The recorded samples, one per event type, in both schemas (`tests/fixtures/acs/`), with the
/// share of traffic each gets.
const SAMPLES: [(&str, &str, &str, u32); 16] = [
    (
        "SMSReceived",
        include_str!("../../tests/fixtures/acs/eventgrid/SMSReceived.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/SMSReceived.json"),
        22,
    ),
    (
        "SMSDeliveryReportReceived",
        include_str!("../../tests/fixtures/acs/eventgrid/SMSDeliveryReportReceived.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/SMSDeliveryReportReceived.json"),
        18,
    ),
    (
        "IncomingCall",
        include_str!("../../tests/fixtures/acs/eventgrid/IncomingCall.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/IncomingCall.json"),
        10,
    ),
    (
        "CallStarted",
        include_str!("../../tests/fixtures/acs/eventgrid/CallStarted.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/CallStarted.json"),
        8,
    ),
    (
        "CallEnded",
        include_str!("../../tests/fixtures/acs/eventgrid/CallEnded.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/CallEnded.json"),
        8,
    ),
    (
        "CallParticipantAdded",
        include_str!("../../tests/fixtures/acs/eventgrid/CallParticipantAdded.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/CallParticipantAdded.json"),
        4,
    ),
    (
        "CallParticipantRemoved",
        include_str!("../../tests/fixtures/acs/eventgrid/CallParticipantRemoved.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/CallParticipantRemoved.json"),
        4,
    ),
    (
        "RecordingFileStatusUpdated",
        include_str!("../../tests/fixtures/acs/eventgrid/RecordingFileStatusUpdated.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/RecordingFileStatusUpdated.json"),
        4,
    ),
    (
        "ChatMessageReceived",
        include_str!("../../tests/fixtures/acs/eventgrid/ChatMessageReceived.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/ChatMessageReceived.json"),
        6,
    ),
    (
        "ChatMessageReceivedInThread",
        include_str!("../../tests/fixtures/acs/eventgrid/ChatMessageReceivedInThread.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/ChatMessageReceivedInThread.json"),
        6,
    ),
    (
        "ChatMessageEdited",
        include_str!("../../tests/fixtures/acs/eventgrid/ChatMessageEdited.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/ChatMessageEdited.json"),
        2,
    ),
    (
        "ChatMessageDeleted",
        include_str!("../../tests/fixtures/acs/eventgrid/ChatMessageDeleted.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/ChatMessageDeleted.json"),
        2,
    ),
    (
        "ChatThreadCreated",
        include_str!("../../tests/fixtures/acs/eventgrid/ChatThreadCreated.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/ChatThreadCreated.json"),
        2,
    ),
    (
        "ChatThreadParticipantAdded",
        include_str!("../../tests/fixtures/acs/eventgrid/ChatThreadParticipantAdded.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/ChatThreadParticipantAdded.json"),
        2,
    ),
    (
        "ChatThreadParticipantRemoved",
        include_str!("../../tests/fixtures/acs/eventgrid/ChatThreadParticipantRemoved.json"),
        include_str!("../../tests/fixtures/acs/cloudevents/ChatThreadParticipantRemoved.json"),
        1,
    ),
    (
        "ChatParticipantAddedToThreadWithUser",
        include_str!(
            "../../tests/fixtures/acs/eventgrid/ChatParticipantAddedToThreadWithUser.json"
        ),
        include_str!(
            "../../tests/fixtures/acs/cloudevents/ChatParticipantAddedToThreadWithUser.json"
        ),
        1,
    ),
];

/// A sample as one event object (the fixtures hold it alone or in a one-element array).
fn sample(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).expect("the fixtures are JSON");
    match v {
        Value::Array(mut a) => a.remove(0),
        other => other,
    }
}

/// Event `n` of the run: a sample drawn by share, with an id of its own and the current time.
fn event(schema: Schema, seed: u64, n: u64) -> Value {
    let mut rng = fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let total: u32 = SAMPLES.iter().map(|s| s.3).sum();
    let mut pick = rng.u32(0..total);
    let (_, eg, ce, _) = SAMPLES
        .iter()
        .find(|s| {
            if pick < s.3 {
                true
            } else {
                pick -= s.3;
                false
            }
        })
        .expect("a share is drawn");
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let id = format!("emu-{seed}-{n:010}-{:08x}", rng.u32(..));
    let mut event = sample(if schema == Schema::EventGrid { eg } else { ce });
    event["id"] = json!(id);
    event[if schema == Schema::EventGrid {
        "eventTime"
    } else {
        "time"
    }] = json!(now);
    if event["data"]["incomingCallContext"].is_string() {
        // A call of its own: the callbacks of its answer name it.
        use base64::Engine as _;
        let call = uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes()).into_uuid();
        event["data"]["correlationId"] = json!(call.to_string());
        event["data"]["serverCallId"] = json!(base64::engine::general_purpose::STANDARD
            .encode(format!("https://conv-emulated.conv.skype.com/conv/{call}")));
    }
    event
}

/// The records ringback makes of a batch posted to `endpoint`, for the ledger.
fn carried(endpoint: &str, body: &str) -> Vec<Carried> {
    match crate::sources::acs::parse_body(body.as_bytes(), &super::context(endpoint)) {
        Ok(crate::sources::Delivery::Records(parsed)) => Carried::of(&parsed.records),
        _ => Vec::new(),
    }
}

struct Subscription {
    opts: Options,
    signer: Option<Signer>,
    http: reqwest::Client,
    ledger: Ledger,
    tasks: TaskTracker,
    events: AtomicU64,
    batches: AtomicU64,
    attempts: AtomicU64,
    acknowledged: AtomicU64,
    redeliveries: AtomicU64,
    dead_lettered: AtomicU64,
    calls_answered: AtomicU64,
    callbacks: AtomicU64,
    callbacks_acknowledged: AtomicU64,
}

impl Subscription {
    fn real(&self, d: Duration) -> Duration {
        super::scaled(d, self.opts.time_scale)
    }

    /// `req` with the subscription's credentials: its delivery-property header, its token.
    fn authorised(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some((name, value)) = &self.opts.header {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(signer) = &self.signer {
            req = req.bearer_auth(signer.token());
        }
        req
    }

    /// One attempt: the batch with Event Grid's headers.
    async fn send(&self, body: &str, delivery_count: u32) -> (super::Answer, String) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let content_type = match self.opts.schema {
            Schema::EventGrid => "application/json; charset=utf-8",
            Schema::CloudEvents => "application/cloudevents-batch+json; charset=utf-8",
        };
        let mut req = self
            .http
            .post(&self.opts.endpoint)
            .header("content-type", content_type)
            .header("aeg-event-type", "Notification")
            .header(
                "aeg-subscription-name",
                self.opts.subscription.to_uppercase(),
            )
            .header("aeg-delivery-count", delivery_count.to_string())
            .header("aeg-data-version", "1.0")
            .header("aeg-metadata-version", "1")
            .header("x-request-id", &request_id);
        req = self.authorised(req);
        (
            super::settle(req.body(body.to_owned()).send().await).await,
            request_id,
        )
    }

    /// A batch delivered until answered 2xx, on the retry schedule, or dead-lettered; then,
    /// for a share of them, delivered again.
    async fn deliver(&self, events: Vec<Value>, stop: CancellationToken) {
        let body = Value::Array(events).to_string();
        let push = Push {
            platform: "event-grid",
            kind: "events",
            id: uuid::Uuid::new_v4().to_string(),
            url: self.opts.endpoint.clone(),
            malformed: false,
            records: carried(&self.opts.endpoint, &body),
        };
        self.batches.fetch_add(1, Ordering::Relaxed);
        let mut waited = Duration::ZERO;
        let mut acked = false;
        let mut attempts = 0;
        for attempt in 1..=MAX_ATTEMPTS {
            attempts = attempt;
            let (answer, request_id) = self.send(&body, attempt - 1).await;
            let status = answer.status;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            acked = status.is_some_and(|s| (200..300).contains(&s));
            let final_refusal = matches!(status, Some(400 | 413));
            let wait = RETRY_SCHEDULE
                .get(attempt as usize - 1)
                .copied()
                .unwrap_or(RETRY_LATER);
            let will_retry =
                !acked && !final_refusal && attempt < MAX_ATTEMPTS && waited + wait <= TTL;
            self.ledger
                .write(&push.attempt(attempt, request_id, &answer, will_retry));
            if acked || !will_retry {
                break;
            }
            waited += wait;
            tokio::select! {
                () = tokio::time::sleep(self.real(wait)) => {}
                () = stop.cancelled() => break,
            }
        }
        if !acked {
            self.dead_letter(&push.id, &body);
            return;
        }
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
        let mut rng = fastrand::Rng::new();
        if self.opts.redeliver > 0.0 && rng.f64() < self.opts.redeliver {
            // At-least-once: the same events again, as after a lost acknowledgement (one more
            // attempt of the same push in the ledger).
            let (answer, request_id) = self.send(&body, attempts).await;
            self.attempts.fetch_add(1, Ordering::Relaxed);
            self.redeliveries.fetch_add(1, Ordering::Relaxed);
            self.ledger
                .write(&push.attempt(attempts + 1, request_id, &answer, false));
        }
    }

    /// Plays an answered call's Call Automation callbacks to `url`, in order, a few platform
    /// seconds apart, each sent once (see [`call_automation`]).
    async fn play_call(&self, url: &str, call: Call, seed: u64, stop: CancellationToken) {
        self.calls_answered.fetch_add(1, Ordering::Relaxed);
        let mut rng = fastrand::Rng::with_seed(seed);
        for (n, name) in call_automation::script(&mut rng).into_iter().enumerate() {
            let gap = Duration::from_millis(rng.u64(500..3_000));
            tokio::select! {
                () = tokio::time::sleep(self.real(gap)) => {}
                () = stop.cancelled() => return,
            }
            let body = call_automation::callback(name, &call, n).to_string();
            let push = Push {
                platform: "call-automation",
                kind: "callback",
                id: uuid::Uuid::new_v4().to_string(),
                url: url.to_owned(),
                malformed: false,
                records: carried(url, &body),
            };
            let request_id = uuid::Uuid::new_v4().to_string();
            let req = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("x-request-id", &request_id);
            let answer = super::settle(self.authorised(req).body(body).send().await).await;
            self.callbacks.fetch_add(1, Ordering::Relaxed);
            if answer.status.is_some_and(|s| (200..300).contains(&s)) {
                self.callbacks_acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            self.ledger
                .write(&push.attempt(1, request_id, &answer, false));
        }
    }

    /// Writes a batch that ran out of attempts where Event Grid's dead-letter container is.
    fn dead_letter(&self, push_id: &str, body: &str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        let path = self.opts.dead_letter_dir.join(format!("{push_id}.json"));
        if let Err(e) = std::fs::create_dir_all(&self.opts.dead_letter_dir)
            .and_then(|()| std::fs::write(&path, body))
        {
            tracing::error!(path = %path.display(), "writing a dead-lettered batch: {e}");
        }
    }

    /// The subscription's validation handshake; an error when the endpoint does not complete it.
    async fn handshake(&self) -> anyhow::Result<()> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let (status, error, ok) = match self.opts.schema {
            Schema::EventGrid => {
                let code = uuid::Uuid::new_v4().to_string();
                let mut event = sample(include_str!("../../tests/fixtures/acs/validation.json"));
                event["id"] = json!(uuid::Uuid::new_v4().to_string());
                event["eventTime"] = json!(Utc::now().to_rfc3339());
                event["data"]["validationCode"] = json!(code);
                let mut req = self
                    .http
                    .post(&self.opts.endpoint)
                    .header("content-type", "application/json; charset=utf-8")
                    .header("aeg-event-type", "SubscriptionValidation")
                    .header(
                        "aeg-subscription-name",
                        self.opts.subscription.to_uppercase(),
                    )
                    .header("aeg-delivery-count", "0")
                    .header("x-request-id", &request_id);
                req = self.authorised(req);
                match req.body(json!([event]).to_string()).send().await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        let answer: Value = res.json().await.unwrap_or(Value::Null);
                        (
                            Some(status),
                            None,
                            answer["validationResponse"] == json!(code),
                        )
                    }
                    Err(e) => (None, Some(crate::error::error_chain(&e)), false),
                }
            }
            Schema::CloudEvents => {
                let mut req = self
                    .http
                    .request(reqwest::Method::OPTIONS, &self.opts.endpoint)
                    .header("webhook-request-origin", "eventgrid.azure.net")
                    .header("webhook-request-rate", "120")
                    .header("x-request-id", &request_id);
                req = self.authorised(req);
                match req.send().await {
                    Ok(res) => {
                        let allowed = res
                            .headers()
                            .get("webhook-allowed-origin")
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|o| o == "eventgrid.azure.net" || o == "*");
                        (Some(res.status().as_u16()), None, allowed)
                    }
                    Err(e) => (None, Some(crate::error::error_chain(&e)), false),
                }
            }
        };
        let push = Push {
            platform: "event-grid",
            kind: "handshake",
            id: request_id.clone(),
            url: self.opts.endpoint.clone(),
            malformed: false,
            records: Vec::new(),
        };
        let answer = super::ledger::Answer {
            status,
            error: error.clone(),
            duplicates: None,
        };
        self.ledger
            .write(&push.attempt(1, request_id, &answer, false));
        anyhow::ensure!(
            ok,
            "the endpoint did not complete the validation handshake (status {status:?}{})",
            error.map(|e| format!(", {e}")).unwrap_or_default()
        );
        Ok(())
    }
}

/// Validates the subscription, then delivers events at the asked rate for `duration` (or until
/// `stop`), then lets the batches in flight run out their retries.
pub async fn run(opts: Options, stop: CancellationToken) -> anyhow::Result<Summary> {
    anyhow::ensure!(opts.time_scale > 0.0, "--time-scale must be above 0");
    anyhow::ensure!(
        (1..=5_000).contains(&opts.max_events),
        "--max-events: 1 to 5000 (Event Grid's range)"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&opts.redeliver),
        "--redeliver is a share, 0 to 1"
    );
    for url in std::iter::once(&opts.endpoint).chain(&opts.call_automation) {
        url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    }
    let signer = opts.jwt.as_ref().map(Signer::make).transpose()?;
    let sub = Arc::new(Subscription {
        signer,
        http: super::client(Duration::from_secs(30))?,
        ledger: Ledger::create(&opts.ledger)?,
        tasks: TaskTracker::new(),
        events: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        attempts: AtomicU64::new(0),
        acknowledged: AtomicU64::new(0),
        redeliveries: AtomicU64::new(0),
        dead_lettered: AtomicU64::new(0),
        calls_answered: AtomicU64::new(0),
        callbacks: AtomicU64::new(0),
        callbacks_acknowledged: AtomicU64::new(0),
        opts,
    });
    sub.handshake().await?;

    let until = tokio::time::sleep(sub.opts.duration);
    tokio::pin!(until);
    let mut every = tokio::time::interval(Duration::from_secs_f64(
        1.0 / sub.opts.events_per_second.max(1e-9),
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // A batch closes at `max_events`, at `batch_bytes`, or 100 ms after its first event.
    let mut batch: Vec<Value> = Vec::new();
    let mut bytes = 0;
    let mut flush_at = tokio::time::Instant::now();
    let mut n = 0u64;
    let flush = |batch: &mut Vec<Value>, bytes: &mut usize| {
        if batch.is_empty() {
            return;
        }
        let events = std::mem::take(batch);
        *bytes = 0;
        let (s, stop) = (sub.clone(), stop.clone());
        sub.tasks
            .spawn(async move { s.deliver(events, stop).await });
    };
    loop {
        tokio::select! {
            () = &mut until => break,
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(flush_at), if !batch.is_empty() => flush(&mut batch, &mut bytes),
            _ = every.tick() => {
                let e = event(sub.opts.schema, sub.opts.seed, n);
                if let Some(url) = &sub.opts.call_automation {
                    let mut rng = fastrand::Rng::with_seed(sub.opts.seed ^ n.rotate_left(17));
                    if let Some(call) = Call::answering(&e, &mut rng) {
                        let (s, stop, url, seed) = (sub.clone(), stop.clone(), url.clone(), rng.u64(..));
                        sub.tasks.spawn(async move { s.play_call(&url, call, seed, stop).await });
                    }
                }
                n += 1;
                sub.events.fetch_add(1, Ordering::Relaxed);
                let size = e.to_string().len();
                if !batch.is_empty() && bytes + size > sub.opts.batch_bytes {
                    flush(&mut batch, &mut bytes);
                }
                if batch.is_empty() {
                    flush_at = tokio::time::Instant::now() + Duration::from_millis(100);
                }
                batch.push(e);
                bytes += size;
                if batch.len() >= sub.opts.max_events {
                    flush(&mut batch, &mut bytes);
                }
            }
        }
    }
    flush(&mut batch, &mut bytes);
    sub.tasks.close();
    sub.tasks.wait().await;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Ok(Summary {
        events: get(&sub.events),
        batches: get(&sub.batches),
        attempts: get(&sub.attempts),
        acknowledged: get(&sub.acknowledged),
        redeliveries: get(&sub.redeliveries),
        dead_lettered: get(&sub.dead_lettered),
        calls_answered: get(&sub.calls_answered),
        callbacks: get(&sub.callbacks),
        callbacks_acknowledged: get(&sub.callbacks_acknowledged),
    })
}
