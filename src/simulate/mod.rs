//! `ringback simulate`: a platform simulator and load generator. It plays Huawei VoiceCall
//! traffic (call flows of status pushes; fee pushes merging up to 50 CDRs that end in the same
//! second), correctly signed with X-AKSK, or ACS Event Grid batches, against a target, at a fixed
//! rate or as fast as N connections allow, for a duration or a count, and reports throughput,
//! the status mix and latency percentiles (HDR histogram).

pub mod sample;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::auth::aksk::{self, DigestVariant};

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Traffic {
    /// Whole call flows: status pushes, and a 50-CDR fee push for every 50 calls.
    Calls,
    /// Only fee pushes of 50 CDRs.
    Fee,
    /// Only status pushes.
    Status,
    /// ACS Event Grid batches of 10 events (SMS, calls, chat).
    Acs,
}

/// How to sign Huawei requests.
#[derive(Debug, Clone)]
pub struct Signer {
    pub app_key: String,
    pub secret: Vec<u8>,
    /// The URL the platform signs (the source's `public_url`).
    pub url: String,
}

/// A load run's settings.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `http://host:port/hooks/<source>`.
    pub target: String,
    pub traffic: Traffic,
    /// Concurrent connections (each sends one request at a time).
    pub connections: usize,
    /// Requests per second over all connections; `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Stop after this long…
    pub duration: Option<Duration>,
    /// …or after this many requests.
    pub count: Option<u64>,
    pub signer: Option<Signer>,
    /// Distinguishes runs, so two runs' records never collide.
    pub seed: u64,
    /// Writes the records of every request answered 2xx to this file, one per line: `id`,
    /// `kind`, `key` and (call status) `event_type`, tab-separated: the oracle of a fault run
    /// (every one of them must end up stored once and on Kafka). Huawei traffic only.
    pub acks: Option<std::path::PathBuf>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub traffic: Traffic,
    pub requests: u64,
    pub records: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub records_per_second: f64,
    /// Requests by HTTP status (`"error"` for transport failures).
    pub statuses: BTreeMap<String, u64>,
    /// In fixed-rate mode from each request's scheduled send time (so a stall is charged to
    /// every request it delayed), else from the actual send.
    pub latency_ms: Latency,
    /// CPU seconds (user + system) this process used during the run, where the platform
    /// tells (Linux): whether the load generator itself was short of CPU.
    pub cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Report {
    /// Records of requests answered 2xx.
    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| s.starts_with('2'))
            .map(|(_, n)| n)
            .sum()
    }

    /// A human summary.
    pub fn render(&self) -> String {
        format!(
            "{:?}: {} requests ({} records) in {:.1}s: {:.0} req/s, {:.0} records/s; \
             status {:?}; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
            self.traffic,
            self.requests,
            self.records,
            self.seconds,
            self.requests_per_second,
            self.records_per_second,
            self.statuses,
            self.latency_ms.p50,
            self.latency_ms.p90,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.cpu_seconds
                .map(|s| format!("; generator CPU {s:.1} s"))
                .unwrap_or_default()
        )
    }
}

/// One request to send.
struct Work {
    body: String,
    records: u64,
}

/// Produces the traffic: request `n` of a run is always the same body.
struct Generator {
    traffic: Traffic,
    seed: u64,
}

const EVENTS: [&str; 4] = ["callout", "alerting", "answer", "disconnect"];

impl Generator {
    fn work(&self, n: u64) -> Work {
        let end = Utc::now().trunc_subsecs(0);
        match self.traffic {
            Traffic::Fee => fee(self.seed, n, end),
            Traffic::Status => status(self.seed, n),
            // 50 calls: 200 status pushes, then one fee push of their 50 CDRs.
            Traffic::Calls => {
                let round = n / 201;
                match n % 201 {
                    200 => fee(self.seed, round, end),
                    i => status(self.seed, round * 200 + i),
                }
            }
            Traffic::Acs => acs(self.seed, n),
        }
    }
}

fn fee(seed: u64, n: u64, end: chrono::DateTime<Utc>) -> Work {
    Work {
        body: sample::fee_body_string(seed.wrapping_mul(1_000_003).wrapping_add(n), 50, end),
        records: 50,
    }
}

fn status(seed: u64, n: u64) -> Work {
    let call = n / 4;
    let start = Utc::now().trunc_subsecs(0);
    let session = sample::session_id(seed, call, start);
    let at = start + chrono::Duration::seconds((n % 4) as i64);
    Work {
        body: sample::status_body(EVENTS[(n % 4) as usize], &session, at).to_string(),
        records: 1,
    }
}

fn acs(seed: u64, n: u64) -> Work {
    let time = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let events: Vec<_> = (0..10)
        .map(|i| {
            let id = format!("sim-{seed}-{n}-{i}");
            let (event_type, data) = match i % 3 {
                0 => (
                    "Microsoft.Communication.SMSReceived",
                    json!({
                    "MessageId": id, "From": "+15555550100", "To": "+14255550123",
                    "Message": "simulated", "ReceivedTimestamp": time}),
                ),
                1 => (
                    "Microsoft.Communication.CallEnded",
                    json!({
                    "serverCallId": format!("call-{seed}-{n}"), "correlationId": id,
                    "callDurationInSeconds": 42.5, "reason": {"code": 0, "subCode": 0}}),
                ),
                _ => (
                    "Microsoft.Communication.ChatMessageReceivedInThread",
                    json!({
                    "threadId": format!("19:thread-{seed}-{}@thread.v2", n % 100),
                    "messageId": id, "messageBody": "hello", "type": "Text"}),
                ),
            };
            json!({"id": id, "topic": "/simulated", "subject": "sim", "eventType": event_type,
                   "eventTime": time, "data": data, "dataVersion": "1.0", "metadataVersion": "1"})
        })
        .collect();
    Work {
        body: serde_json::Value::Array(events).to_string(),
        records: 10,
    }
}

/// The records of the requests answered 2xx (see [`Plan::acks`]).
struct Acks {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
    source: Arc<str>,
}

impl Acks {
    fn create(path: &std::path::Path, target: &url::Url) -> anyhow::Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating --acks {}", path.display()))?;
        // The records' ids name their source: the last segment of `/hooks/<source>`.
        let source = target
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default();
        Ok(Self {
            out: Mutex::new(std::io::BufWriter::new(file)),
            source: source.into(),
        })
    }

    fn write(&self, body: &str) {
        use std::io::Write;
        let ctx = crate::sources::ParseContext {
            source: self.source.clone(),
            received_at: Utc::now(),
            region: None,
        };
        let Ok(parsed) = crate::sources::huawei::parse_body(body.as_bytes(), &ctx) else {
            return;
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        for record in &parsed.records {
            let (kind, event) = match record {
                crate::domain::Record::CallEvent(e) => ("call-status", e.event_type.as_str()),
                _ => (record.kind().as_str(), ""),
            };
            let key = record.ordering_key();
            let _ = writeln!(out, "{}\t{kind}\t{key}\t{event}", record.id());
        }
    }

    fn flush(&self) -> anyhow::Result<()> {
        use std::io::Write;
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush()
            .context("writing --acks")
    }
}

/// How long one request may take before it counts as an `error`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends the requests. A plain `http://` target gets hyper's connection-level HTTP/1.1 client:
/// one kept-alive connection per worker, no pool, no per-request URL parsing or redirect
/// handling, so that the generator spends as little of the machine's CPU as it can (in the
/// e2e benchmark it shares the CPUs with the server it measures). Anything else (`https://`)
/// goes through reqwest.
enum Client {
    Plain {
        /// `host:port` to connect to.
        addr: String,
        /// The `Host` header and the request target (path and query).
        host: hyper::header::HeaderValue,
        path: hyper::Uri,
    },
    Other {
        client: reqwest::Client,
        target: url::Url,
    },
}

/// One worker's connection: the plain client's kept-alive HTTP/1.1 connection, opened on
/// first use and again after a failure.
struct Connection {
    client: Arc<Client>,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(target: &url::Url, connections: usize) -> anyhow::Result<Self> {
        if target.scheme() == "http" {
            let host = target.host_str().context("--target has no host")?;
            let port = target.port_or_known_default().unwrap_or(80);
            let authority = match target.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            let path = &target[url::Position::BeforePath..url::Position::AfterQuery];
            return Ok(Self::Plain {
                addr: format!("{host}:{port}"),
                host: authority.parse()?,
                path: path.parse()?,
            });
        }
        Ok(Self::Other {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .timeout(REQUEST_TIMEOUT)
                .build()?,
            target: target.clone(),
        })
    }

    fn connection(self: &Arc<Self>) -> Connection {
        Connection {
            client: self.clone(),
            sender: None,
        }
    }
}

impl Connection {
    /// Posts `body` and returns the answer's status once its body was read. A plain
    /// connection that failed is opened again for the next request.
    async fn send(
        &mut self,
        traffic: Traffic,
        aksk: Option<String>,
        body: String,
    ) -> anyhow::Result<u16> {
        // The same headers whichever client sends them.
        let headers = [
            Some(("content-type", "application/json;charset=UTF-8".to_owned())),
            (traffic == Traffic::Acs).then(|| ("aeg-event-type", "Notification".to_owned())),
            aksk.map(|value| ("x-aksk", value)),
        ]
        .into_iter()
        .flatten();
        let sender = &mut self.sender;
        match &*self.client {
            Client::Plain { addr, host, path } => {
                let mut request =
                    hyper::Request::post(path.clone()).header(hyper::header::HOST, host.clone());
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let request = request.body(Full::new(Bytes::from(body)))?;
                let exchange = async {
                    let reusable = match sender {
                        Some(s) => s.ready().await.is_ok(),
                        None => false,
                    };
                    if !reusable {
                        *sender = Some(connect(addr).await?);
                    }
                    let s = sender.as_mut().expect("opened above");
                    let response = s.send_request(request).await?;
                    let status = response.status().as_u16();
                    response.into_body().collect().await?;
                    anyhow::Ok(status)
                };
                let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
                if result.is_err() {
                    *sender = None;
                }
                result
            }
            Client::Other { client, target } => {
                let mut request = client.post(target.clone());
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let response = request.body(body).send().await?;
                let status = response.status().as_u16();
                response.bytes().await?;
                Ok(status)
            }
        }
    }
}

/// Opens a kept-alive HTTP/1.1 connection; its driver runs as a task of its own.
async fn connect(addr: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Runs the plan and measures it.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    anyhow::ensure!(plan.connections > 0, "connections must be at least 1");
    anyhow::ensure!(
        plan.duration.is_some() || plan.count.is_some(),
        "give a duration or a count"
    );
    let target: url::Url = plan
        .target
        .parse()
        .with_context(|| format!("--target {} is not a URL", plan.target))?;
    let client = Arc::new(Client::new(&target, plan.connections)?);
    let generator = Arc::new(Generator {
        traffic: plan.traffic,
        seed: plan.seed,
    });
    let next = Arc::new(AtomicU64::new(0));
    // Nonces differ between runs even with the same seed: a second run within the server's
    // replay window would otherwise have its first requests refused as nonce_reused.
    let run_id = uuid::Uuid::new_v4().as_u64_pair().0;
    let records = Arc::new(AtomicU64::new(0));
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    ));
    let statuses = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let acks = match &plan.acks {
        Some(path) => Some(Arc::new(Acks::create(path, &target)?)),
        None => None,
    };
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let plan = Arc::new(plan);
    let mut workers = Vec::new();
    for _ in 0..plan.connections {
        let (mut connection, generator, next, records, histogram, statuses, plan, acks) = (
            client.connection(),
            generator.clone(),
            next.clone(),
            records.clone(),
            histogram.clone(),
            statuses.clone(),
            plan.clone(),
            acks.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if plan.count.is_some_and(|c| n >= c) {
                    break;
                }
                // In fixed-rate mode each request has a slot; its latency counts from the slot,
                // not from when it was actually sent: a stall that delays the sends behind it
                // is charged to them (no coordinated omission).
                let slot = plan
                    .rate
                    .map(|rate| started + Duration::from_secs_f64(n as f64 / rate));
                if let Some(slot) = slot {
                    tokio::time::sleep_until(slot.into()).await;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let work = generator.work(n);
                let aksk = match (&plan.signer, plan.traffic) {
                    (Some(s), traffic) if traffic != Traffic::Acs => {
                        let created = Utc::now().format(aksk::CREATED_FORMAT).to_string();
                        let nonce = format!("{run_id:016x}{n:016x}");
                        Some(aksk::header_value(
                            &s.app_key,
                            &s.secret,
                            &s.url,
                            &nonce,
                            &created,
                            DigestVariant::Newline,
                        ))
                    }
                    _ => None,
                };
                let sent = slot.unwrap_or_else(Instant::now);
                let acked_body = acks.as_ref().map(|_| work.body.clone());
                let outcome = connection.send(plan.traffic, aksk, work.body).await;
                let micros = sent.elapsed().as_micros().max(1) as u64;
                let key = match outcome {
                    Ok(status) => {
                        if (200..300).contains(&status) {
                            records.fetch_add(work.records, Ordering::Relaxed);
                            if let (Some(acks), Some(body)) = (&acks, &acked_body) {
                                acks.write(body);
                            }
                        }
                        status.to_string()
                    }
                    Err(_) => "error".to_owned(),
                };
                histogram
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .saturating_record(micros);
                *statuses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(key)
                    .or_default() += 1;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    if let Some(acks) = &acks {
        acks.flush()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let h = histogram.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let statuses = statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let requests: u64 = statuses.values().sum();
    let records = records.load(Ordering::Relaxed);
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        traffic: plan.traffic,
        requests,
        records,
        seconds,
        requests_per_second: requests as f64 / seconds,
        records_per_second: records as f64 / seconds,
        statuses,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: h.max() as f64 / 1000.0,
        },
        cpu_seconds: process_cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before),
    })
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks; 100 per second on every Linux platform Rust supports.
    Some((utime + stime) / 100.0)
}
