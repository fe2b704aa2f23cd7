//! HTTP: the hook endpoint every source is served at, the handshakes, health, and the
//! middleware around them. One file per role:
//!
//! - [`hook`]: `POST /hooks/{source}`, read as its steps (admit, authenticate, read, parse,
//!   commit, answer);
//! - [`handshake`]: the CloudEvents `OPTIONS` handshake;
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`middleware`]: the request id, and each request counted and timed;
//! - [`dead_letter`]: refused input kept with its reason, headers redacted;
//! - [`openapi`]: the hook contract (OpenAPI 3.1), every error code with its status;
//! - [`reprocess`]: kept input run again through a later parser (`ringback dead-letters`);
//! - [`response`] and [`error`]: what a hook answers;
//! - [`source`]: a configured source, ready to serve.

mod dead_letter;
mod error;
mod handshake;
mod health;
mod hook;
mod middleware;
pub mod openapi;
pub mod reprocess;
mod response;
mod source;

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::web;

pub use dead_letter::redacted_headers;
pub use error::IngestError;
pub use health::{check_store, Health};
pub use middleware::{observe, RequestId};
pub use response::{Accepted, RejectedRecord};
pub use source::{Source, SourceAuth, AUTH_FAILURE_LETTERS_PER_MINUTE};

use crate::batch::Batcher;
use crate::metrics::Metrics;
use crate::publish::PublisherHandle;
use crate::spool::Spool;
use crate::store::Store;

/// Shared by every HTTP worker.
pub struct AppState {
    pub sources: HashMap<String, Arc<Source>>,
    pub batcher: Batcher,
    pub store: Arc<dyn Store>,
    pub publisher: PublisherHandle,
    /// The local spool, when spooling is on.
    pub spool: Option<Arc<Spool>>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub retry_after_secs: u32,
    /// Set on SIGTERM: `/readyz` answers 503 `draining` while requests are still served for
    /// `http.drain_delay`, so the load balancer stops sending here before the listener closes.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Whether X-AKSK nonces are claimed in the database (PostgreSQL, which replicas share).
    /// SQLite serves one process: its memory check is the whole story, and the claim would cost
    /// its single writer a statement per batch (the e2e bench: status 2 891–4 359/s with it,
    /// 4 984–6 594/s without).
    pub shared_nonces: bool,
    /// The database's health as the background check last saw it (`/readyz`).
    pub health: Arc<Health>,
    /// The admin listener's port (`http.admin_addr`), when it is apart from the hooks'.
    pub admin_port: Option<u16>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Any other method is answered 405 with `Allow`, in the error format of every refusal.
    fn only(allow: &'static str) -> actix_web::Route {
        web::to(move || async move {
            Err::<actix_web::HttpResponse, _>(IngestError::MethodNotAllowed { allow })
        })
    }
    cfg.service(
        web::resource("/healthz")
            .route(web::get().to(health::healthz))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(health::readyz))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(health::metrics))
            .default_service(only("GET")),
    )
    .service(
        web::resource("/hooks/{source}")
            .route(web::post().to(hook::hook))
            .route(web::method(actix_web::http::Method::OPTIONS).to(handshake::webhook_options))
            .default_service(only("POST, OPTIONS")),
    );
}
