//! `[kafka]`: where committed records are republished, and how.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};
use crate::domain::RecordKind;

/// Where committed records are republished.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers (`host:port,host:port`); `"embedded"` runs an in-process
    /// Kafka-protocol broker (librdkafka's mock cluster, for trying ringback out); `""` means
    /// outbox-only mode: records wait in the outbox until brokers are configured.
    #[schemars(with = "String")]
    pub brokers: Brokers,
    /// Topics are `<topic_prefix>.<kind>` (`ringback.call-status`, `ringback.cdr`).
    pub topic_prefix: String,
    /// Per-kind topic names overriding the prefix rule, e.g. `{ cdr = "billing.cdrs" }`.
    pub topics: BTreeMap<String, String>,
    /// Extra librdkafka settings (`"linger.ms" = "5"`, `"security.protocol" = "SASL_SSL"`).
    /// `enable.idempotence` and `acks` are fixed to `true` and `all`.
    pub client: BTreeMap<String, String>,
    /// librdkafka settings whose values are secrets, read from the named environment
    /// variables: `{ "sasl.password" = "RINGBACK_KAFKA_PASSWORD" }`.
    pub client_env: BTreeMap<String, String>,
    /// What `ringback topics create` creates.
    pub new_topics: NewTopics,
    /// How long librdkafka may try to deliver one message before the publisher falls back
    /// to re-sending from the outbox.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub message_timeout: Duration,
    /// How often the sweeper looks for entries left unpublished (crashes, other replicas).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sweep_interval: Duration,
    /// Entries younger than this are left to the fast path of the replica that committed them.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub sweep_grace: Duration,
    /// Entries one sweep claims at most.
    pub sweep_batch: u32,
    /// Longest pause between attempts while the brokers are unreachable.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_backoff: Duration,
    /// How long published entries stay in the outbox before they are pruned.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub retention: Duration,
    /// On shutdown, how long to keep publishing; what is left stays in the outbox.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_deadline: Duration,
}

/// The topics `ringback topics create` makes, one per record kind (`kafka.topic`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewTopics {
    /// Partitions per topic: the most consumers of one group that can share a topic.
    pub partitions: i32,
    /// Copies of each partition (3 for a production cluster; 1 for a single broker).
    pub replication_factor: i32,
    /// `retention.ms` of the topics; absent: the cluster's default.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub retention: Option<Duration>,
    /// Further topic settings (`"min.insync.replicas" = "2"`, `"compression.type" = "lz4"`).
    pub config: BTreeMap<String, String>,
}

impl Default for NewTopics {
    fn default() -> Self {
        Self {
            partitions: 6,
            replication_factor: 3,
            retention: None,
            config: BTreeMap::new(),
        }
    }
}

/// The embedded broker's name in `kafka.brokers`.
pub const EMBEDDED_BROKER: &str = "embedded";

/// `kafka.brokers`, read once: where the publisher sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Brokers {
    /// `""`: outbox-only mode; records wait in the outbox until brokers are configured.
    None,
    /// `"embedded"`: an in-process broker (librdkafka's mock cluster), for trying ringback out.
    Embedded,
    /// Bootstrap servers, `host:port,host:port`.
    List(String),
}

impl Brokers {
    /// The bootstrap servers of real brokers, if any are configured.
    pub fn real(&self) -> Option<&str> {
        match self {
            Self::List(list) => Some(list),
            Self::None | Self::Embedded => None,
        }
    }
}

impl From<String> for Brokers {
    fn from(value: String) -> Self {
        match value.trim() {
            "" => Self::None,
            EMBEDDED_BROKER => Self::Embedded,
            list => Self::List(list.to_owned()),
        }
    }
}

impl From<&str> for Brokers {
    fn from(value: &str) -> Self {
        value.to_owned().into()
    }
}

impl From<Brokers> for String {
    fn from(brokers: Brokers) -> Self {
        match brokers {
            Brokers::None => String::new(),
            Brokers::Embedded => EMBEDDED_BROKER.into(),
            Brokers::List(list) => list,
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: Brokers::Embedded,
            topic_prefix: "ringback".into(),
            topics: BTreeMap::new(),
            client: BTreeMap::new(),
            client_env: BTreeMap::new(),
            new_topics: NewTopics::default(),
            message_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(5),
            sweep_grace: Duration::from_secs(2),
            sweep_batch: 500,
            max_backoff: Duration::from_secs(30),
            retention: Duration::ZERO,
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

impl KafkaConfig {
    /// The topic records of `kind` go to.
    pub fn topic(&self, kind: &str) -> String {
        self.topics
            .get(kind)
            .cloned()
            .unwrap_or_else(|| format!("{}.{kind}", self.topic_prefix))
    }

    /// Outbox-only mode: no brokers configured.
    pub fn outbox_only(&self) -> bool {
        self.brokers == Brokers::None
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for key in ["enable.idempotence", "acks", "bootstrap.servers"] {
            if self.client.contains_key(key) {
                return Err(invalid(
                    format!("kafka.client.{key}"),
                    "is set by ringback (idempotent producer, acks=all, kafka.brokers)",
                ));
            }
        }
        for key in self.client_env.keys() {
            if self.client.contains_key(key) {
                return Err(invalid(
                    format!("kafka.client_env.{key}"),
                    "is also set in kafka.client: set it in one place",
                ));
            }
        }
        if self.new_topics.partitions < 1 {
            return Err(invalid("kafka.new_topics.partitions", "must be at least 1"));
        }
        if self.new_topics.replication_factor < 1 {
            return Err(invalid(
                "kafka.new_topics.replication_factor",
                "must be at least 1",
            ));
        }
        for kind in self.topics.keys() {
            if !RecordKind::ALL.iter().any(|k| k.as_str() == kind) {
                return Err(invalid(format!("kafka.topics.{kind}"), "not a record kind"));
            }
        }
        if self.message_timeout < Duration::from_secs(1) {
            return Err(invalid("kafka.message_timeout", "must be at least 1s"));
        }
        if self.sweep_batch == 0 {
            return Err(invalid("kafka.sweep_batch", "must be at least 1"));
        }
        Ok(())
    }
}
