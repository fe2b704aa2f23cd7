//! `GET /healthz`, `/readyz` and `/metrics`.

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::store::Store;

/// The database's health as the background check last saw it (every second): `/readyz`
/// answers from it, so a flood of probes never reaches the database.
#[derive(Debug, Default)]
pub struct Health {
    failure: std::sync::Mutex<Option<String>>,
}

impl Health {
    /// Records a check's result.
    pub fn record(&self, result: &Result<(), String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = result.clone().err();
    }

    /// The last check's result.
    pub fn store(&self) -> Result<(), String> {
        match &*self.failure.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }
}

/// Whether the request came in on the admin listener (`http.admin_addr`), or there is none
/// (then the one listener serves everything).
pub(super) fn on_admin(req: &actix_web::HttpRequest, state: &AppState) -> bool {
    state
        .admin_port
        .is_none_or(|port| req.app_config().local_addr().port() == port)
}

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
///
/// On the public listener, when an admin listener is set, only the status word: the detail
/// (error texts, backlog, spool) is for operators.
pub(super) async fn readyz(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (status, body) = readiness(&state);
    let mut response = HttpResponse::build(status);
    if on_admin(&req, &state) {
        response.json(body)
    } else {
        response.json(serde_json::json!({"status": body["status"]}))
    }
}

fn readiness(state: &AppState) -> (actix_web::http::StatusCode, serde_json::Value) {
    use actix_web::http::StatusCode;
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        let body = serde_json::json!({
            "status": "draining",
            "publisher": state.publisher.status(),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, body);
    }
    let backend = state.store.backend();
    let store = match state.health.store() {
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
        "version": env!("CARGO_PKG_VERSION"),
        "store": store,
        "publisher": state.publisher.status(),
    });
    if let Some(spool) = spool {
        body["spool"] = serde_json::json!(spool);
    }
    if ready {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

/// `/metrics`, on the admin listener only when one is set.
pub(super) async fn metrics(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !on_admin(&req, &state) {
        return HttpResponse::NotFound().json(serde_json::json!({
            "error": {"code": "not_found", "message": "metrics are served on the admin listener"}
        }));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
