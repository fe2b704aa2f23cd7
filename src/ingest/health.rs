//! `GET /healthz`, `/readyz` and `/metrics`.

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::store::Store;

pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// How long a health check waits for the database.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Pings the store, records the result in `ringback_store_up`, and says why when it failed.
pub async fn check_store(store: &dyn Store, metrics: &Metrics) -> Result<(), String> {
    let result = match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!(
            "the database did not answer within {}s",
            PING_TIMEOUT.as_secs()
        )),
    };
    metrics.store_checked(result.is_ok());
    result
}

/// Ready when the store answers, or, with a spool, while the spool has room: a database outage
/// must not pull every replica out of the load balancer while pushes can still be kept durably
/// (`status` then says `spooling`). The publisher's state is reported, not required: while the
/// brokers are away the database is the buffer, and ingest goes on.
///
/// Draining (after SIGTERM) is never ready, whatever else holds: new requests should go to
/// another replica while this one still answers the ones already on their way.
pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "draining",
            "publisher": state.publisher.status(),
        }));
    }
    let backend = state.store.backend();
    let store = match check_store(state.store.as_ref(), &state.metrics).await {
        Ok(()) => serde_json::json!({"ok": true, "backend": backend}),
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            serde_json::json!({"ok": false, "backend": backend, "error": error})
        }
    };
    let store_ok = store["ok"] == true;
    let spool = state.spool.as_ref().map(|s| s.status());
    let spool_room = state.spool.as_ref().is_some_and(|s| s.has_room());
    let ready = store_ok || spool_room;
    let status = match (store_ok, spool_room) {
        (true, _) => "ready",
        (false, true) => "spooling",
        (false, false) => "not_ready",
    };
    let mut body = serde_json::json!({
        "status": status,
        "store": store,
        "publisher": state.publisher.status(),
    });
    if let Some(spool) = spool {
        body["spool"] = serde_json::json!(spool);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
