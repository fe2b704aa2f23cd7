//! Kafka test support, shared with the benchmarks: `ringback::testkit::kafka`.

pub use ringback::testkit::kafka::*;
