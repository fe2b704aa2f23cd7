//! Kafka test support: a Tansu broker per test, topic creation, and a consumer that reads a
//! topic from the beginning.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Where `.ci/run` installs Tansu; `RINGBACK_TANSU` overrides.
pub fn tansu_path() -> String {
    std::env::var("RINGBACK_TANSU").unwrap_or_else(|_| {
        format!(
            "{}/.cache/ringback-tools/tansu-0.6.0/bin/tansu",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Tansu broker (in-memory storage) on a free loopback port, killed on drop.
pub struct Tansu {
    pub bootstrap: String,
    child: Child,
}

impl Tansu {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        Self::start_advertising(port, port)
    }

    /// Listening on `port`, advertising `advertised` to clients (a proxy in front of it).
    pub fn start_advertising(port: u16, advertised: u16) -> Self {
        let path = tansu_path();
        assert!(
            std::path::Path::new(&path).exists(),
            "Tansu is not installed at {path}: run .ci/run (or set RINGBACK_TANSU)"
        );
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised_url = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(&path)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised_url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting tansu");
        let listener = format!("127.0.0.1:{port}");
        let bootstrap = format!("127.0.0.1:{advertised}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&listener).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { bootstrap, child }
    }
}

impl Tansu {
    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the broker a signal (`STOP` pauses it with its state kept, `CONT` resumes it).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.bootstrap.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Kills the broker (SIGKILL); everything it held is lost.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the broker and starts a new one on the same port: everything it held is lost.
    pub fn restart(mut self) -> Self {
        self.kill();
        Self::start_on(self.port())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `topics` with `partitions` partitions each.
pub async fn create_topics(bootstrap: &str, topics: &[String], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: serde_json::Value,
    pub headers: HashMap<String, String>,
}

/// Reads `topic` from the beginning of every partition until messages with `want` distinct
/// `ce_id`s arrived (delivery is at least once, so there may be more messages), or `timeout`.
/// No consumer group.
pub async fn consume(
    bootstrap: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    consume_until(bootstrap, topic, timeout, move |ids| ids.len() >= want).await
}

/// Reads `topic` from the beginning of every partition until `done` holds of the `ce_id`s read
/// so far, or `timeout`.
pub async fn consume_until(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&std::collections::HashSet<String>) -> bool + Send + 'static,
) -> Vec<Consumed> {
    consume_with(bootstrap, &[], topic, timeout, done).await
}

/// [`consume_until`] with extra client settings (TLS, SASL).
pub async fn consume_with(
    bootstrap: &str,
    settings: &[(&str, String)],
    topic: &str,
    timeout: Duration,
    done: impl Fn(&std::collections::HashSet<String>) -> bool + Send + 'static,
) -> Vec<Consumed> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "ringback-tests")
            .set("enable.auto.commit", "false");
        for (k, v) in &settings {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config.create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len();
        assert!(partitions > 0, "topic {topic} has no partitions");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            list.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let deadline = Instant::now() + timeout;
        let mut out: Vec<Consumed> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        while !done(&ids) && Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            // A broker coming back (a test's fault just ended) fails polls for a moment; the
            // deadline bounds it, and the caller's assertions say what was missed.
            let Ok(message) = message else {
                continue;
            };
            let mut headers = HashMap::new();
            if let Some(h) = message.headers() {
                for header in h.iter() {
                    let value = header
                        .value
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    headers.insert(header.key.to_owned(), value.unwrap_or_default());
                }
            }
            ids.insert(headers.get("ce_id").cloned().unwrap_or_default());
            out.push(Consumed {
                partition: message.partition(),
                offset: message.offset(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                value: serde_json::from_slice(message.payload().unwrap_or_default()).unwrap(),
                headers,
            });
        }
        out
    })
    .await
    .unwrap()
}
