//! ringback: durable ingest of telephony platform callbacks.
//!
//! Data flow (docs/architecture.md): `ingest` (HTTP, auth) → `sources` (platform wire formats
//! into `domain` records) → `batch` (one bounded queue, group commit) → `store` (one
//! transaction per batch) → answer.

// No unsafe code, save the test-only hook that makes librdkafka raise a fatal error on demand
// (`publish::producer`, behind the `testkit` feature the tests and benches turn on).
#![cfg_attr(not(feature = "testkit"), forbid(unsafe_code))]
#![cfg_attr(feature = "testkit", deny(unsafe_code))]

pub mod admin;
pub mod auth;
pub mod batch;
pub mod config;
pub mod domain;
pub mod emulate;
pub mod error;
pub mod ingest;
pub mod maintenance;
pub mod message;
pub mod metrics;
pub mod publish;
pub mod retry;
pub mod simulate;
pub mod sources;
pub mod spool;
pub mod startup;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
