-- ringback's Kafka topics into ClickHouse (after schema.sql). Set the brokers, topic names
-- (kafka.topic_prefix, kafka.topics) and, for a managed Kafka, the kafka_* security settings
-- or a named collection. One consumer group per table; add kafka_num_consumers up to the
-- topic's partitions. Each message's value is one JSON record (ringback.record.v1).

CREATE TABLE IF NOT EXISTS ringback.cdr_kafka (message String)
ENGINE = Kafka
SETTINGS kafka_broker_list = 'kafka:9092',
         kafka_topic_list = 'ringback.cdr',
         kafka_group_name = 'clickhouse-ringback-cdr',
         kafka_format = 'JSONAsString',
         kafka_num_consumers = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.cdr_kafka_mv TO ringback.cdr_messages AS
SELECT message FROM ringback.cdr_kafka;

CREATE TABLE IF NOT EXISTS ringback.call_status_kafka (message String)
ENGINE = Kafka
SETTINGS kafka_broker_list = 'kafka:9092',
         kafka_topic_list = 'ringback.call-status',
         kafka_group_name = 'clickhouse-ringback-call-status',
         kafka_format = 'JSONAsString',
         kafka_num_consumers = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS ringback.call_status_kafka_mv TO ringback.call_status_messages AS
SELECT message FROM ringback.call_status_kafka;
