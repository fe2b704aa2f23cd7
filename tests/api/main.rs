//! HTTP API tests: the real application on port 0, a fresh database per test, both stores.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod durability;
mod fleet;
mod hostile;
mod huawei;
mod isolation;
mod limits;
mod numbers;
mod rejects;
mod simulate;
mod standard_webhooks;
