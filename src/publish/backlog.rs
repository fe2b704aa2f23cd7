//! The outbox backlog's figures (`ringback_outbox_*`, `/readyz`), read on a timer of their own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Status;
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::store::Store;

/// Refreshes the backlog figures every `every` until `stop`.
pub(super) async fn watch(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<Status>>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => refresh(&*store, &metrics, &status).await,
        }
    }
}

/// Reads the outbox backlog into the gauges and `/readyz`. Runs on a timer of its own (see
/// [`Publisher::run`]), so the figures stay current while the publisher waits on a broker
/// that is down, which is when dashboards need them most.
pub(super) async fn refresh(store: &dyn Store, metrics: &Metrics, status: &Mutex<Status>) {
    match store.outbox_backlog().await {
        Ok(b) => {
            let age = b
                .oldest
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics.outbox_backlog(b.pending, age, b.failed);
            let mut status = status.lock().unwrap_or_else(|p| p.into_inner());
            status.backlog = b.pending;
            status.oldest_age_seconds = age;
            status.failed = b.failed;
        }
        Err(e) => tracing::warn!(error = %error_chain(&e), "could not read the outbox backlog"),
    }
}
