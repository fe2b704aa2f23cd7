//! The in-process suites, one test binary (the crate links once): the real application on port
//! 0, a fresh database per test, both stores. The process-level suites (faults, fleet, tls,
//! cli) stand apart.

#[path = "../common/mod.rs"]
mod common;

mod acs;
mod admin;
mod analytics;
mod auth;
mod calls;
mod contracts;
mod dead_letters;
mod durability;
mod emulate;
mod fleet;
mod fuzz;
mod hostile;
mod huawei;
mod isolation;
mod kafka;
mod layers;
mod limits;
mod numbers;
mod observability;
mod properties;
mod rejects;
mod simulate;
mod spool;
mod standard_webhooks;
mod store;
