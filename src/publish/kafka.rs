//! The Kafka producer, and the embedded broker for running without servers.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;

use crate::config::KafkaConfig;
use crate::domain::{OutboxEntry, RecordKind};
use crate::message;

/// A setting of `kafka.client_env` whose environment variable is not set.
#[derive(Debug, thiserror::Error)]
#[error("kafka.client_env.{key}: environment variable {var} is not set")]
pub struct MissingEnv {
    pub key: String,
    pub var: String,
}

/// The client settings every Kafka client of ringback shares (producer, admin, checks):
/// `bootstrap.servers`, `kafka.client`, and the secrets of `kafka.client_env` read from the
/// environment.
pub fn client_config(brokers: &str, config: &KafkaConfig) -> Result<ClientConfig, MissingEnv> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("client.id", "ringback");
    for (key, value) in &config.client {
        client.set(key, value);
    }
    for (key, var) in &config.client_env {
        let value = std::env::var(var).map_err(|_| MissingEnv {
            key: key.clone(),
            var: var.clone(),
        })?;
        client.set(key, value);
    }
    Ok(client)
}

/// Builds the idempotent producer: `enable.idempotence=true`, `acks=all`, plus
/// `kafka.client` settings.
pub fn producer(brokers: &str, config: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    let mut client = ClientConfig::new();
    client
        .set(
            "message.timeout.ms",
            config.message_timeout.as_millis().to_string(),
        )
        // librdkafka buffers up to 100 000 messages or 1 GiB by default. Every message it
        // holds is also in the outbox, so a smaller buffer loses nothing: a full one fails the
        // send at once (`QueueFull`) and the publisher catches up from the database instead
        // of growing. With the topics missing, the default let the server reach 445 MiB in a
        // 15 s fee run; with this cap and hand-offs dropped outside live mode, 59 MiB
        // (docs/development/performance-log.md). It is reached for a moment at start-up, before the topics' metadata
        // arrives, and the catch-up then sends from the outbox. `kafka.client` can raise it.
        .set("queue.buffering.max.messages", "10000")
        .set("queue.buffering.max.kbytes", "32768");
    // `kafka.client` and `kafka.client_env` on top of those defaults.
    let shared =
        client_config(brokers, config).map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
    for (key, value) in shared.config_map() {
        client.set(key, value);
    }
    // Last, so `kafka.client` cannot weaken them (config validation refuses it too).
    client.set("enable.idempotence", "true").set("acks", "all");
    client.create()
}

/// A message's CloudEvents headers (`message::headers`), ready for rdkafka.
pub fn headers(entry: &OutboxEntry) -> rdkafka::message::OwnedHeaders {
    let mut owned = rdkafka::message::OwnedHeaders::new_with_capacity(7);
    for (key, value) in message::headers(entry) {
        owned = owned.insert(rdkafka::message::Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    owned
}

/// Whether a delivery error can never succeed on retry: the entry is marked failed instead.
pub fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::InvalidTopic
                | C::UnsupportedForMessageFormat
        )
    )
}

/// Whether a delivery error says the broker no longer accepts this producer's identity (its
/// id or epoch fenced, after a long pause or a broker restart): the instance can never
/// deliver again, though librdkafka may not raise it as fatal. A new producer (a new id) can.
pub fn is_fenced(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(C::ProducerFenced | C::InvalidProducerEpoch | C::InvalidProducerIdMapping)
    )
}

enum Command {
    SetUp(bool),
}

/// An in-process Kafka-protocol broker (librdkafka's mock cluster), on a thread of its own
/// because the mock cluster's handle cannot move between threads. For demos and tests: it
/// keeps messages in memory only.
pub struct EmbeddedBroker {
    bootstrap: String,
    commands: std_mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// Brokers in the embedded cluster.
const EMBEDDED_BROKERS: i32 = 1;

impl EmbeddedBroker {
    /// Starts a cluster with every record kind's topic created with `partitions` partitions.
    pub fn start(config: &KafkaConfig, partitions: i32) -> Result<Self, KafkaError> {
        let topics: Vec<String> = RecordKind::ALL
            .iter()
            .map(|k| config.topic(k.as_str()))
            .collect();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (commands, command_rx) = std_mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(EMBEDDED_BROKERS) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for topic in &topics {
                    if let Err(e) = cluster.create_topic(topic, partitions, EMBEDDED_BROKERS) {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serves commands until the handle is dropped, then drops the cluster.
                while let Ok(command) = command_rx.recv() {
                    match command {
                        Command::SetUp(up) => {
                            for id in 1..=EMBEDDED_BROKERS {
                                let _ = if up {
                                    cluster.broker_up(id)
                                } else {
                                    cluster.broker_down(id)
                                };
                            }
                        }
                    }
                }
            })
            .expect("spawning the embedded broker thread");
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| KafkaError::MockCluster(RDKafkaErrorCode::Fail))??;
        Ok(Self {
            bootstrap,
            commands,
            thread: Some(thread),
        })
    }

    /// `host:port` of its brokers.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Takes the brokers down or brings them back (fault injection).
    pub fn set_up(&self, up: bool) {
        let _ = self.commands.send(Command::SetUp(up));
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let (replacement, _) = std_mpsc::channel();
        drop(std::mem::replace(&mut self.commands, replacement));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
