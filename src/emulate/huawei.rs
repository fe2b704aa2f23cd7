//! `ringback emulate huawei`: a fake Huawei Cloud VoiceCall platform.
//!
//! It plays calls as the platform does and pushes their status events and CDRs to the
//! customer's URLs, with the platform's delivery rules (`docs/platforms/huawei-reference.md`):
//! - a status push is sent once, in call-state order, and **never retried**;
//! - the CDRs of calls ending in the same second are merged, **at most 50 a push**, and a fee
//!   push that is not answered `200` is **retried up to 6 times, an hour apart** (`time_scale`
//!   compresses the hour: 3600 makes it a second); after that the platform gives up (its
//!   "offline CDR file");
//! - every push is signed with `X-AKSK` over the URL it goes to (`PasswordDigest` in either
//!   documented layout; `Created` in UTC or Beijing time, written with a `Z` either way).
//!
//! Calls come at `calls_per_second`, and from the app-facing API when `listen` is set: the voice
//! verification code call of the seed's Node.js sample, `POST /rest/httpsessions/callVerify/v1.0`
//! with the app's `X-AKSK` (`PasswordDigest = Base64(HMAC-SHA256(app_secret, Nonce + Created))`,
//! as Huawei's API reference gives it for app requests), and `statusUrl` / `feeUrl` in Base64
//! overriding the default URLs for that call. Its answer is Huawei's shape:
//! `{"resultcode":"0","resultdesc":"Success","sessionId":"…"}`; the error `resultcode`s are the
//! emulator's own (the reference does not list the API's).
//!
//! Each call's fate is drawn from a seeded generator (the same seed plays the same calls): 62 %
//! answered and hung up (`stateCode` 0), 15 % unanswered (ring timeout, release point 514,
//! Q.850 19), 6 % rejected while ringing, 8 % busy, 5 % unreachable, 2 % unallocated numbers,
//! 2 % platform failures. Voice playback calls (verification codes, notifications: `serviceType`
//! `001`) collect a digit after the answer half of the time (`collectInfo`); callback calls
//! (`002`) carry the forwarded leg and `partyType`. Every attempt goes to the ledger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ledger::{Carried, Ledger, Push};
use crate::auth::aksk::{self, DigestVariant};
use crate::simulate::sample;

/// Retries of a fee push after its first attempt (the platform's rule).
pub const FEE_RETRIES: u32 = 6;
/// Between two attempts of a fee push, in platform time.
pub const FEE_RETRY_EVERY: Duration = Duration::from_secs(3600);
/// CDRs one fee push carries at most.
pub const FEE_MAX_CDRS: usize = 50;
/// The API path of the voice verification code call.
pub const CALL_VERIFY: &str = "/rest/httpsessions/callVerify/v1.0";

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where status events go unless a call names its own `statusUrl`.
    pub status_url: String,
    /// Where CDRs go unless a call names its own `feeUrl`.
    pub fee_url: String,
    pub app_key: String,
    pub app_secret: Vec<u8>,
    pub digest: DigestVariant,
    /// `Created` in Beijing time (UTC+8, still written with a `Z`), as the current docs say.
    pub beijing_created: bool,
    /// Calls the emulator starts by itself per second (0: only those the API asks for).
    pub calls_per_second: f64,
    /// How long calls keep coming; then the calls in flight end and fee retries run out.
    pub duration: Duration,
    pub seed: u64,
    /// Platform seconds per real second: call lengths and the fee retry hour shrink by it.
    pub time_scale: f64,
    /// Serve the app-facing API here.
    pub listen: Option<String>,
    /// The share of status pushes sent malformed (an unreadable `timestamp`), which ringback
    /// must refuse and keep as dead letters.
    pub malformed: f64,
    pub ledger: std::path::PathBuf,
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub calls: u64,
    pub calls_from_api: u64,
    pub status_pushes: u64,
    pub status_acknowledged: u64,
    /// Status pushes not answered 200: the platform never sends them again.
    pub status_lost: u64,
    pub malformed: u64,
    pub fee_pushes: u64,
    pub fee_attempts: u64,
    pub fee_acknowledged: u64,
    /// Fee pushes still unanswered after the last retry.
    pub fee_abandoned: u64,
    pub cdrs: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    calls_from_api: AtomicU64,
    status_pushes: AtomicU64,
    status_acknowledged: AtomicU64,
    status_lost: AtomicU64,
    malformed: AtomicU64,
    fee_pushes: AtomicU64,
    fee_attempts: AtomicU64,
    fee_acknowledged: AtomicU64,
    fee_abandoned: AtomicU64,
    cdrs: AtomicU64,
}

impl Counters {
    fn summary(&self) -> Summary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Summary {
            calls: get(&self.calls),
            calls_from_api: get(&self.calls_from_api),
            status_pushes: get(&self.status_pushes),
            status_acknowledged: get(&self.status_acknowledged),
            status_lost: get(&self.status_lost),
            malformed: get(&self.malformed),
            fee_pushes: get(&self.fee_pushes),
            fee_attempts: get(&self.fee_attempts),
            fee_acknowledged: get(&self.fee_acknowledged),
            fee_abandoned: get(&self.fee_abandoned),
            cdrs: get(&self.cdrs),
        }
    }
}

/// How a call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Answered,
    NoAnswer,
    Rejected,
    Busy,
    Unreachable,
    Unallocated,
    PlatformFailure,
}

impl Fate {
    /// Drawn with the shares in the module's documentation.
    fn draw(rng: &mut fastrand::Rng) -> Self {
        match rng.u32(0..100) {
            0..62 => Self::Answered,
            62..77 => Self::NoAnswer,
            77..83 => Self::Rejected,
            83..91 => Self::Busy,
            91..96 => Self::Unreachable,
            96..98 => Self::Unallocated,
            _ => Self::PlatformFailure,
        }
    }

    /// (disconnect `stateCode`, its description, CDR `ulFailReason`, Q.850 cause of the leg).
    fn codes(self) -> (i32, &'static str, i32, i32) {
        match self {
            Self::Answered => (0, "The user releases the call.", 0, 16),
            Self::NoAnswer => (8003, "The called party does not answer.", 514, 19),
            Self::Rejected => (8004, "The called party hangs up while ringing.", 515, 16),
            Self::Busy => (8102, "The called party is busy.", 518, 17),
            Self::Unreachable => (8103, "The called party cannot be reached.", 518, 18),
            Self::Unallocated => (8100, "The called number does not exist.", 518, 1),
            Self::PlatformFailure => (8000, "Internal error.", 517, 0),
        }
    }

    fn rings(self) -> bool {
        matches!(self, Self::Answered | Self::NoAnswer | Self::Rejected)
    }
}

/// One call the platform plays.
#[derive(Debug, Clone)]
struct Call {
    session_id: String,
    icid: String,
    caller: String,
    callee: String,
    /// `001` voice playback (verification codes, notifications) or `002` callback.
    service_type: &'static str,
    fate: Fate,
    start: DateTime<Utc>,
    /// Platform time from the start: alerting, answer, end.
    ring_after: TimeDelta,
    answer_after: TimeDelta,
    end_after: TimeDelta,
    collects_digit: bool,
    user_data: Option<String>,
    status_url: String,
    fee_url: String,
}

/// `2026-12-05 10:15:00`.
fn stamp(t: DateTime<Utc>) -> String {
    sample::fmt(t)
}

impl Call {
    fn new(
        seed: u64,
        n: u64,
        start: DateTime<Utc>,
        numbers: Option<(String, String)>,
        urls: (String, String),
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let fate = Fate::draw(&mut rng);
        let callback = numbers.is_none() && rng.u32(0..100) < 30;
        let (caller, callee) = numbers.unwrap_or_else(|| {
            (
                "+8613800000022".to_owned(),
                format!("+86138{:08}", rng.u32(0..100_000_000)),
            )
        });
        let ring_after = TimeDelta::seconds(rng.i64(1..=3));
        let (answer_after, end_after) = match fate {
            Fate::Answered => {
                let answer = ring_after + TimeDelta::seconds(rng.i64(3..=15));
                (answer, answer + TimeDelta::seconds(rng.i64(5..=90)))
            }
            Fate::NoAnswer => (
                ring_after,
                ring_after + TimeDelta::seconds(rng.i64(30..=60)),
            ),
            Fate::Rejected => (ring_after, ring_after + TimeDelta::seconds(rng.i64(2..=10))),
            _ => (TimeDelta::zero(), TimeDelta::seconds(rng.i64(1..=4))),
        };
        Self {
            session_id: sample::session_id(seed, n, start),
            icid: format!("CAE-{}-{seed}-{n}", start.format("%Y%m%d%H%M%S")),
            caller,
            callee,
            service_type: if callback { "002" } else { "001" },
            fate,
            start,
            ring_after,
            answer_after,
            end_after,
            collects_digit: !callback && fate == Fate::Answered && rng.bool(),
            user_data: rng.bool().then(|| format!("order-{n}")),
            status_url: urls.0,
            fee_url: urls.1,
        }
    }

    fn info(&self, at: TimeDelta) -> serde_json::Map<String, Value> {
        let mut info = serde_json::Map::new();
        info.insert("sessionId".into(), json!(self.session_id));
        info.insert("timestamp".into(), json!(stamp(self.start + at)));
        info.insert("caller".into(), json!(self.caller));
        info.insert("called".into(), json!(self.callee));
        if let Some(u) = &self.user_data {
            info.insert("userData".into(), json!(u));
        }
        info
    }

    /// The status pushes, in call-state order, each at its platform time from the start.
    fn events(&self) -> Vec<(TimeDelta, Value)> {
        let push = |event: &str, info: serde_json::Map<String, Value>| json!({"eventType": event, "statusInfo": info});
        let mut out = vec![(
            TimeDelta::zero(),
            push("callout", self.info(TimeDelta::zero())),
        )];
        if self.fate.rings() {
            out.push((
                self.ring_after,
                push("alerting", self.info(self.ring_after)),
            ));
        }
        if self.fate == Fate::Answered {
            out.push((
                self.answer_after,
                push("answer", self.info(self.answer_after)),
            ));
            if self.collects_digit {
                let at = self.answer_after + TimeDelta::seconds(4);
                let mut info = self.info(at);
                info.remove("caller");
                info.remove("called");
                info.insert("digitInfo".into(), json!("1"));
                out.push((at, push("collectInfo", info)));
            }
        }
        let (code, desc, _, _) = self.fate.codes();
        let mut info = self.info(self.end_after);
        if self.service_type == "002" {
            info.insert("partyType".into(), json!(if code == 0 { "1" } else { "0" }));
        }
        info.insert("stateCode".into(), json!(code));
        info.insert("stateDesc".into(), json!(desc));
        out.push((self.end_after, push("disconnect", info)));
        out
    }

    fn end(&self) -> DateTime<Utc> {
        self.start + self.end_after
    }

    /// The call's CDR (one `FeeInfo`), its times those of the status events.
    fn cdr(&self, app_key: &str) -> Value {
        let (_, _, release_point, q850) = self.fate.codes();
        let at = |d: TimeDelta| json!(stamp(self.start + d));
        let mut fee = json!({
            "direction": 0,
            "spId": "CaaS_Emulated_01",
            "appKey": app_key,
            "icid": self.icid,
            "bindNum": "+8675512345678",
            "sessionId": self.session_id,
            "callerNum": self.caller,
            "calleeNum": self.callee,
            "callEndTime": stamp(self.end()),
            "callOutStartTime": at(TimeDelta::zero()),
            "ulFailReason": release_point,
            "sipStatusCode": 0,
            "recordFlag": 0,
            "ttsPlayTimes": 0,
            "ttsTransDuration": 0,
            "serviceType": self.service_type,
            "hostName": "callenabler245.huaweicaas.com",
        });
        let fee = fee.as_object_mut().expect("an object");
        if self.fate.rings() {
            fee.insert("callOutAlertingTime".into(), at(self.ring_after));
        }
        if self.service_type == "001" {
            if self.fate == Fate::Answered {
                fee.insert("callOutAnswerTime".into(), at(self.answer_after));
            } else {
                fee.insert("callOutUnaswRsn".into(), json!(q850));
                fee.insert("failTime".into(), at(self.end_after));
            }
        } else {
            // A callback: the platform calls the caller (the callout leg), then forwards to the
            // callee; the fate is the forwarded leg's.
            fee.insert("callOutAnswerTime".into(), at(self.ring_after));
            fee.insert("fwdDisplayNum".into(), json!(self.caller));
            fee.insert("fwdDstNum".into(), json!(self.callee));
            fee.insert("fwdStartTime".into(), at(self.ring_after));
            if self.fate.rings() {
                fee.insert("fwdAlertingTime".into(), at(self.ring_after));
            }
            if self.fate == Fate::Answered {
                fee.insert("fwdAnswerTime".into(), at(self.answer_after));
            } else {
                fee.insert("fwdUnaswRsn".into(), json!(q850));
            }
        }
        if let Some(u) = &self.user_data {
            fee.insert("userData".into(), json!(u));
        }
        Value::Object(fee.clone())
    }
}

/// What every task of a run shares.
struct Platform {
    opts: Options,
    http: reqwest::Client,
    ledger: Ledger,
    counters: Counters,
    /// The calls being played.
    calls: TaskTracker,
    /// The fee pushes being delivered (with their retries).
    pushes: TaskTracker,
    /// CDRs on their way to be merged into fee pushes.
    fees: mpsc::UnboundedSender<Cdr>,
    next_call: AtomicU64,
    /// The run's runtime. A call the app-facing API starts is played here, not on the API
    /// server's worker runtime: that one ends when the server stops, and with it would go the
    /// call's task and every pooled connection it opened (a later push on one fails with
    /// "dispatch task is gone").
    runtime: tokio::runtime::Handle,
}

/// A CDR on its way to the merger: the fee URL it goes to, and the CDR.
type Cdr = (String, Value);

/// The records ringback makes of `body` sent to `url`, for the ledger.
fn carried(url: &str, body: &str) -> Vec<Carried> {
    crate::sources::huawei::parse_body(body.as_bytes(), &super::context(url))
        .map(|parsed| Carried::of(&parsed.records))
        .unwrap_or_default()
}

impl Platform {
    /// One attempt of a push: signed as the platform signs, answered or not.
    async fn send(&self, url: &str, body: &str) -> (super::Answer, String) {
        let request_id = uuid::Uuid::new_v4().to_string();
        let created = if self.opts.beijing_created {
            Utc::now() + TimeDelta::hours(8)
        } else {
            Utc::now()
        };
        let created = created.format(aksk::CREATED_FORMAT).to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let x_aksk = aksk::header_value(
            &self.opts.app_key,
            &self.opts.app_secret,
            url,
            &nonce,
            &created,
            self.opts.digest,
        );
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json;charset=UTF-8")
            .header(
                "authorization",
                r#"AKSK realm="SDP",profile="UsernameToken",type="Appkey""#,
            )
            .header("x-aksk", x_aksk)
            .header("x-request-id", &request_id)
            .body(body.to_owned())
            .send()
            .await;
        (super::settle(sent).await, request_id)
    }

    /// A status push: once, never again whatever the answer.
    async fn push_status(&self, url: &str, mut body: Value, malformed: bool) {
        if malformed {
            body["statusInfo"]["timestamp"] = json!("not a time");
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
        }
        let text = body.to_string();
        let (answer, request_id) = self.send(url, &text).await;
        let status = answer.status;
        self.counters.status_pushes.fetch_add(1, Ordering::Relaxed);
        let push = Push {
            platform: "huawei",
            kind: "status",
            id: request_id.clone(),
            url: url.to_owned(),
            malformed,
            records: if malformed {
                Vec::new()
            } else {
                carried(url, &text)
            },
        };
        let attempt = push.attempt(1, request_id, &answer, false);
        if status == Some(200) {
            self.counters
                .status_acknowledged
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.status_lost.fetch_add(1, Ordering::Relaxed);
        }
        self.ledger.write(&attempt);
    }

    /// A fee push: tried until answered 200, at most 1 + [`FEE_RETRIES`] times, an hour
    /// (scaled) apart.
    async fn push_fee(&self, url: String, cdrs: Vec<Value>, stop: CancellationToken) {
        let body = json!({"eventType": "fee", "feeLst": cdrs}).to_string();
        let push = Push {
            platform: "huawei",
            kind: "fee",
            id: uuid::Uuid::new_v4().to_string(),
            records: carried(&url, &body),
            url,
            malformed: false,
        };
        self.counters.fee_pushes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .cdrs
            .fetch_add(cdrs.len() as u64, Ordering::Relaxed);
        for attempt in 1..=1 + FEE_RETRIES {
            let (answer, request_id) = self.send(&push.url, &body).await;
            let status = answer.status;
            self.counters.fee_attempts.fetch_add(1, Ordering::Relaxed);
            let done = status == Some(200);
            let will_retry = !done && attempt <= FEE_RETRIES;
            self.ledger
                .write(&push.attempt(attempt, request_id, &answer, will_retry));
            if done {
                self.counters
                    .fee_acknowledged
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            if !will_retry {
                break;
            }
            // An interrupted run (Ctrl-C, SIGTERM) does not wait out the retries.
            tokio::select! {
                () = tokio::time::sleep(self.real(FEE_RETRY_EVERY)) => {}
                () = stop.cancelled() => break,
            }
        }
        self.counters.fee_abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// The platform of a run on the current runtime, and the receiving end of its CDRs (the
    /// fee merger's).
    fn new(opts: Options) -> anyhow::Result<(Arc<Self>, mpsc::UnboundedReceiver<Cdr>)> {
        let (fees, fee_rx) = mpsc::unbounded_channel();
        let platform = Arc::new(Self {
            http: super::client(Duration::from_secs(30))?,
            ledger: Ledger::create(&opts.ledger)?,
            counters: Counters::default(),
            calls: TaskTracker::new(),
            pushes: TaskTracker::new(),
            fees,
            next_call: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            opts,
        });
        Ok((platform, fee_rx))
    }

    /// Platform time as real time.
    fn real(&self, d: Duration) -> Duration {
        super::scaled(d, self.opts.time_scale)
    }

    /// Starts call number `n` (its own task).
    fn start_call(
        self: &Arc<Self>,
        numbers: Option<(String, String)>,
        urls: (String, String),
    ) -> String {
        let n = self.next_call.fetch_add(1, Ordering::Relaxed);
        let call = Call::new(self.opts.seed, n, Utc::now(), numbers, urls);
        let session = call.session_id.clone();
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let platform = self.clone();
        self.calls
            .spawn_on(async move { platform.play(call, n).await }, &self.runtime);
        session
    }

    /// A call's life: its status pushes at their (scaled) times, then its CDR to the merger.
    async fn play(&self, call: Call, n: u64) {
        let mut rng = fastrand::Rng::with_seed(self.opts.seed ^ !n);
        let mut last = TimeDelta::zero();
        for (at, body) in call.events() {
            let wait = (at - last).to_std().unwrap_or_default();
            tokio::time::sleep(self.real(wait)).await;
            last = at;
            let malformed = self.opts.malformed > 0.0 && rng.f64() < self.opts.malformed;
            self.push_status(&call.status_url, body, malformed).await;
        }
        let _ = self
            .fees
            .send((call.fee_url.clone(), call.cdr(&self.opts.app_key)));
    }
}

/// Merges CDRs into fee pushes: those of one URL whose calls ended in the same second, at most
/// 50 a push, sent once no more came for that second for a moment (100 ms real time).
async fn merge_fees(
    platform: Arc<Platform>,
    mut cdrs: mpsc::UnboundedReceiver<Cdr>,
    calls_over: CancellationToken,
    stop: CancellationToken,
) {
    let mut open: HashMap<(String, String), (Vec<Value>, tokio::time::Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let flush = |url: String, list: Vec<Value>| {
        let (p, stop) = (platform.clone(), stop.clone());
        platform
            .pushes
            .spawn(async move { p.push_fee(url, list, stop).await });
    };
    loop {
        tokio::select! {
            () = calls_over.cancelled() => break,
            got = cdrs.recv() => {
                let Some((url, cdr)) = got else { break };
                let end = cdr["callEndTime"].as_str().unwrap_or_default().to_owned();
                let entry = open
                    .entry((url.clone(), end))
                    .or_insert_with(|| (Vec::new(), tokio::time::Instant::now()));
                entry.0.push(cdr);
                if entry.0.len() == FEE_MAX_CDRS {
                    let key = (url, entry.0[0]["callEndTime"].as_str().unwrap_or_default().to_owned());
                    if let Some((list, _)) = open.remove(&key) {
                        flush(key.0, list);
                    }
                }
            }
            _ = tick.tick() => {
                let due: Vec<_> = open
                    .iter()
                    .filter(|(_, (_, since))| since.elapsed() >= Duration::from_millis(100))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in due {
                    if let Some((list, _)) = open.remove(&key) {
                        flush(key.0, list);
                    }
                }
            }
        }
    }
    // The last calls' CDRs: merged with what is open, then everything goes.
    while let Ok((url, cdr)) = cdrs.try_recv() {
        let end = cdr["callEndTime"].as_str().unwrap_or_default().to_owned();
        open.entry((url, end))
            .or_insert_with(|| (Vec::new(), tokio::time::Instant::now()))
            .0
            .push(cdr);
    }
    for ((url, _), (list, _)) in open {
        for chunk in list.chunks(FEE_MAX_CDRS) {
            flush(url.clone(), chunk.to_vec());
        }
    }
}

/// Runs the emulator until `duration` (or `stop`), then lets the calls in flight end and the
/// fee retries run out (or stops them at `stop`). Returns what it did.
pub async fn run(opts: Options, stop: CancellationToken) -> anyhow::Result<Summary> {
    anyhow::ensure!(opts.time_scale > 0.0, "--time-scale must be above 0");
    anyhow::ensure!(
        (0.0..=1.0).contains(&opts.malformed),
        "--malformed is a share, 0 to 1"
    );
    for url in [&opts.status_url, &opts.fee_url] {
        url::Url::parse(url).with_context(|| format!("{url} is not a URL"))?;
    }
    let (platform, fee_rx) = Platform::new(opts)?;
    let calls_over = CancellationToken::new();
    let merger = tokio::spawn(merge_fees(
        platform.clone(),
        fee_rx,
        calls_over.clone(),
        stop.clone(),
    ));
    let api = match &platform.opts.listen {
        Some(addr) => Some(serve_api(addr, platform.clone())?),
        None => None,
    };

    // Calls at the asked rate for the duration.
    let until = tokio::time::sleep(platform.opts.duration);
    tokio::pin!(until);
    let urls = (
        platform.opts.status_url.clone(),
        platform.opts.fee_url.clone(),
    );
    let mut every = tokio::time::interval(Duration::from_secs_f64(
        1.0 / platform.opts.calls_per_second.max(1e-9),
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    every.tick().await;
    loop {
        tokio::select! {
            () = &mut until => break,
            () = stop.cancelled() => break,
            _ = every.tick(), if platform.opts.calls_per_second > 0.0 => {
                platform.start_call(None, urls.clone());
            }
        }
    }
    if let Some(api) = api {
        api.stop(true).await;
    }
    // The calls in flight end and hand their CDRs over; the merger sends what it holds; the
    // fee pushes run out their retries.
    platform.calls.close();
    platform.calls.wait().await;
    calls_over.cancel();
    merger.await.context("the fee merger")?;
    platform.pushes.close();
    platform.pushes.wait().await;
    Ok(platform.counters.summary())
}

/// An answer of the app-facing API, in Huawei's shape.
fn api_answer(
    status: actix_web::http::StatusCode,
    code: &str,
    desc: &str,
) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(status)
        .content_type("application/json;charset=UTF-8")
        .json(json!({"resultcode": code, "resultdesc": desc}))
}

/// The app's `X-AKSK` on an API request: its key, a digest of its secret over `Nonce + Created`,
/// `Created` within five minutes of now.
fn app_authenticated(req: &actix_web::HttpRequest, opts: &Options) -> Result<(), &'static str> {
    let value = req
        .headers()
        .get("x-aksk")
        .and_then(|v| v.to_str().ok())
        .ok_or("X-AKSK is missing")?;
    let token = aksk::parse_header(value).map_err(|_| "X-AKSK is malformed")?;
    if token.username != opts.app_key {
        return Err("unknown app_key");
    }
    let created = chrono::NaiveDateTime::parse_from_str(token.created, aksk::CREATED_FORMAT)
        .map_err(|_| "Created is not yyyy-MM-ddTHH:mm:ssZ")?
        .and_utc();
    if (Utc::now() - created).num_seconds().abs() > 300 {
        return Err("Created is more than five minutes from now");
    }
    let want = aksk::app_header_value(&opts.app_key, &opts.app_secret, token.nonce, token.created);
    let want = aksk::parse_header(&want).expect("our own header parses");
    if !crate::auth::constant_time_eq(
        want.password_digest.as_bytes(),
        token.password_digest.as_bytes(),
    ) {
        return Err("PasswordDigest does not match");
    }
    Ok(())
}

/// A Base64 URL parameter (`statusUrl`, `feeUrl`) decoded; `None` when absent.
fn base64_url(body: &Value, field: &str) -> Result<Option<String>, String> {
    let Some(v) = body.get(field) else {
        return Ok(None);
    };
    let text = v.as_str().ok_or(format!("{field} must be a string"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| format!("{field} must be Base64"))?;
    let url = String::from_utf8(bytes).map_err(|_| format!("{field} is not text"))?;
    url::Url::parse(&url).map_err(|_| format!("{field} is not a URL once decoded"))?;
    Ok(Some(url))
}

/// `POST /rest/httpsessions/callVerify/v1.0`: a voice verification code call.
async fn call_verify(
    req: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    platform: actix_web::web::Data<Arc<Platform>>,
) -> actix_web::HttpResponse {
    use actix_web::http::StatusCode;
    if let Err(why) = app_authenticated(&req, &platform.opts) {
        return api_answer(StatusCode::UNAUTHORIZED, "1010005", why);
    }
    let invalid = |why: &str| api_answer(StatusCode::BAD_REQUEST, "1010002", why);
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return invalid("the body is not JSON");
    };
    let number = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .filter(|n| {
                n.len() > 1 && n.starts_with('+') && n[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .map(str::to_owned)
    };
    let (Some(display), Some(callee)) = (number("displayNbr"), number("calleeNbr")) else {
        return invalid("displayNbr and calleeNbr: numbers in +E.164");
    };
    let code_ok = body
        .get("verifyCode")
        .and_then(Value::as_str)
        .is_some_and(|c| (1..=8).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()));
    if !code_ok {
        return invalid("verifyCode: 1 to 8 digits");
    }
    if body.get("languageType").is_none() || body.get("preTone").is_none() {
        return invalid("languageType and preTone are required");
    }
    let (status_url, fee_url) = match (base64_url(&body, "statusUrl"), base64_url(&body, "feeUrl"))
    {
        (Ok(s), Ok(f)) => (
            s.unwrap_or_else(|| platform.opts.status_url.clone()),
            f.unwrap_or_else(|| platform.opts.fee_url.clone()),
        ),
        (Err(e), _) | (_, Err(e)) => return invalid(&e),
    };
    platform
        .counters
        .calls_from_api
        .fetch_add(1, Ordering::Relaxed);
    let session = platform.start_call(Some((display, callee)), (status_url, fee_url));
    actix_web::HttpResponse::Ok()
        .content_type("application/json;charset=UTF-8")
        .json(json!({"resultcode": "0", "resultdesc": "Success", "sessionId": session}))
}

/// The app-facing API on `addr`, running until stopped.
fn serve_api(addr: &str, platform: Arc<Platform>) -> anyhow::Result<actix_web::dev::ServerHandle> {
    let data = actix_web::web::Data::new(platform);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .route(CALL_VERIFY, actix_web::web::post().to(call_verify))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .with_context(|| format!("binding --listen {addr}"))?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call the app-facing API starts is played on the run's runtime, so it outlives the API
    /// server's worker runtime (gone when the server stops). It used to be played on that
    /// runtime: the call's task died with it, and a pooled connection it had opened failed a
    /// later push with "dispatch task is gone" (seen once in CI).
    #[tokio::test]
    async fn a_call_started_on_another_runtime_outlives_it() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens there: each push fails at once, and the ledger still says it was sent.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/hooks/x");
        let opts = Options {
            status_url: url.clone(),
            fee_url: url.clone(),
            app_key: "k".into(),
            app_secret: b"secret".to_vec(),
            digest: DigestVariant::Newline,
            beijing_created: false,
            calls_per_second: 0.0,
            duration: Duration::ZERO,
            seed: 1,
            time_scale: 3600.0,
            listen: None,
            malformed: 0.0,
            ledger: dir.path().join("ledger.jsonl"),
        };
        let (platform, _cdrs) = Platform::new(opts).unwrap();
        let api = platform.clone();
        std::thread::spawn(move || {
            // The API server's worker runtime: started, used for one request, dropped.
            let worker = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            worker.block_on(async { api.start_call(None, (url.clone(), url)) });
        })
        .join()
        .unwrap();
        platform.calls.close();
        platform.calls.wait().await;
        let attempts = super::super::ledger::read(&platform.opts.ledger).unwrap();
        let status = attempts.iter().filter(|a| a.push == "status").count();
        assert!(status >= 2, "the call's status pushes were sent: {status}");
    }
}
