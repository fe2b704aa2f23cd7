//! `ringback topics create` and the brokers' side of `ringback check-config --connect`: an
//! admin client that creates the record kinds' topics, and a metadata request that says what is
//! missing or what failed on the way (DNS, TCP, TLS, authentication).

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use super::kafka::client_config;
use crate::config::KafkaConfig;
use crate::domain::RecordKind;

/// Keeps the errors librdkafka reports while it connects (they say why a request timed out:
/// a name that does not resolve, a refused connection, a failed handshake), instead of only
/// logging them.
#[derive(Default)]
pub struct Diagnosis {
    errors: Mutex<Vec<String>>,
}

impl ClientContext for Diagnosis {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error");
        self.keep(reason);
    }

    /// librdkafka logs a failed connection (`FAIL`) from its own threads, whether or not the
    /// client polls for error events: a metadata request alone does not.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, "kafka client log");
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            self.keep(message);
        }
    }
}

impl Diagnosis {
    fn keep(&self, reason: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < 16 && !errors.iter().any(|e| e == reason) {
            errors.push(reason.to_owned());
        }
    }

    /// What went wrong, most telling first: `(stage, librdkafka's words)`.
    fn explain(&self) -> Option<(&'static str, String)> {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let stage = |e: &str| {
            let e = e.to_ascii_lowercase();
            if e.contains("sasl") || e.contains("authentication") {
                (0, "authentication")
            } else if e.contains("ssl") || e.contains("certificate") || e.contains("handshake") {
                (1, "TLS")
            } else if e.contains("resolve") {
                (2, "DNS")
            } else if e.contains("connect") || e.contains("refused") || e.contains("timed out") {
                (3, "TCP")
            } else {
                (4, "broker")
            }
        };
        errors
            .iter()
            .map(|e| (stage(e), e))
            .min_by_key(|((rank, _), _)| *rank)
            .map(|((_, stage), e)| (stage, e.clone()))
    }
}

/// A topic of ringback's and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    pub topic: String,
    /// `created` or `exists`.
    pub outcome: &'static str,
}

/// The topic of every record kind, in kind order, without repeats (kinds may share a topic).
pub fn wanted(config: &KafkaConfig) -> Vec<String> {
    let mut topics: Vec<String> = RecordKind::ALL
        .iter()
        .map(|k| config.topic(k.as_str()))
        .collect();
    topics.dedup();
    topics
}

fn admin(brokers: &str, config: &KafkaConfig) -> anyhow::Result<AdminClient<Diagnosis>> {
    let client = client_config(brokers, config)?;
    Ok(client.create_with_context(Diagnosis::default())?)
}

/// A client that asks for metadata and can say why it failed: a producer, because polling it
/// delivers librdkafka's logs and errors (rdkafka routes them to the main queue) to
/// [`Diagnosis`]; an admin client never polls that queue.
fn probe(brokers: &str, config: &KafkaConfig) -> anyhow::Result<BaseProducer<Diagnosis>> {
    let mut client = client_config(brokers, config)?;
    // rdkafka derives librdkafka's log level from the `log` crate's, off here (tracing).
    client.set_log_level(RDKafkaLogLevel::Warning);
    Ok(client.create_with_context(Diagnosis::default())?)
}

impl ProducerContext for Diagnosis {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Creates every record kind's topic with `kafka.new_topics`; one that exists is left as it is
/// (so running it again, or from several replicas at once, is safe).
pub async fn create(
    brokers: &str,
    config: &KafkaConfig,
    timeout: Duration,
) -> anyhow::Result<Vec<TopicOutcome>> {
    // Fails early, and with the reason, when the brokers cannot be reached at all.
    metadata(&probe(brokers, config)?, brokers, None, timeout)?;
    let admin = admin(brokers, config)?;
    let settings = &config.new_topics;
    let retention = settings.retention.map(|r| r.as_millis().to_string());
    let topics = wanted(config);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            let mut t = NewTopic::new(
                topic,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            );
            if let Some(ms) = &retention {
                t = t.set("retention.ms", ms);
            }
            for (key, value) in &settings.config {
                t = t.set(key, value);
            }
            t
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = admin.create_topics(&new, &options).await?;
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        outcomes.push(match result {
            Ok(topic) => TopicOutcome {
                topic,
                outcome: "created",
            },
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => TopicOutcome {
                topic,
                outcome: "exists",
            },
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        });
    }
    Ok(outcomes)
}

/// What the brokers said of ringback's topics.
#[derive(Debug)]
pub struct BrokerCheck {
    pub brokers: usize,
    /// `(topic, partitions)` of those that exist.
    pub present: Vec<(String, usize)>,
    pub missing: Vec<String>,
}

/// Asks the brokers for the metadata of every record kind's topic.
pub fn check(
    brokers: &str,
    config: &KafkaConfig,
    timeout: Duration,
) -> anyhow::Result<BrokerCheck> {
    let client = probe(brokers, config)?;
    let mut check = BrokerCheck {
        brokers: 0,
        present: Vec::new(),
        missing: Vec::new(),
    };
    for topic in wanted(config) {
        let metadata = metadata(&client, brokers, Some(&topic), timeout)?;
        check.brokers = metadata.brokers().len();
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty());
        match found {
            Some(t) => check.present.push((topic, t.partitions().len())),
            None => check.missing.push(topic),
        }
    }
    Ok(check)
}

/// A metadata request, its failure explained by what the client saw on the way.
fn metadata(
    probe: &BaseProducer<Diagnosis>,
    brokers: &str,
    topic: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<rdkafka::metadata::Metadata> {
    // A blocking call: off the runtime's worker (CLI commands run on the multi-thread runtime).
    let fetched = tokio::task::block_in_place(|| probe.client().fetch_metadata(topic, timeout));
    fetched.map_err(|e| {
        // Hands the queued logs and errors to the context.
        for _ in 0..100 {
            probe.poll(Duration::ZERO);
        }
        match probe.context().explain() {
            Some((stage, reason)) => anyhow::anyhow!("{stage}: {reason}"),
            None => anyhow::anyhow!("{e}"),
        }
        .context(format!("asking {brokers} for metadata"))
    })
}
