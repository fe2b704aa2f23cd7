//! `[http]`: the listeners and the bounds of a request.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address. Loopback by default; set `0.0.0.0:8080` to serve other hosts.
    pub addr: String,
    /// The admin listener: `/metrics`, `/readyz` with its detail and `/healthz`, apart from the
    /// hooks (which it does not serve). Unset: `addr` serves everything. With it set, `addr`
    /// serves the hooks, `/healthz` and `/readyz` as a status word only, and no `/metrics`.
    pub admin_addr: Option<String>,
    /// The token the admin API (`/admin/api/…`, on `admin_addr` only) requires as
    /// `Authorization: Bearer …`: the environment variable holding it. Without a token (here or
    /// in `admin_token_file`) the admin API is not served.
    pub admin_token_env: Option<String>,
    /// …or the file holding it (a mounted secret).
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Largest request body accepted, in bytes (413 beyond). A 50-CDR fee body is ~60 KiB.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub shutdown_timeout: Duration,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still served, before the
    /// listener closes: the time a load balancer or Kubernetes takes to stop sending new
    /// requests here (docs/operations/deploy.md). 0 closes at once.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub drain_delay: Duration,
    /// A client must send the request head within this time (slow senders are cut off: 408).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub client_request_timeout: Duration,
    /// …and the whole body within this time (408 `body_timeout`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub body_timeout: Duration,
    /// Most concurrent connections per worker; beyond it new connections wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Most request headers a hook request may carry (431 beyond).
    pub max_headers: usize,
    /// Most bytes of header names and values together (431 beyond).
    pub max_header_bytes: usize,
}

const fn default_max_body_bytes() -> usize {
    1024 * 1024
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            admin_addr: None,
            admin_token_env: None,
            admin_token_file: None,
            max_body_bytes: default_max_body_bytes(),
            workers: 0,
            shutdown_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            client_request_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "http.addr",
                "expected host:port, e.g. 127.0.0.1:8080",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        if self.admin_token_env.is_some() && self.admin_token_file.is_some() {
            return Err(invalid(
                "http.admin_token_env",
                "set admin_token_env or admin_token_file, not both",
            ));
        }
        if self.admin_token().is_some() && self.admin_addr.is_none() {
            return Err(invalid(
                "http.admin_token_env",
                "the admin API is served on http.admin_addr only: set it too",
            ));
        }
        Ok(())
    }

    /// Where the admin API's token is, if set.
    pub fn admin_token(&self) -> Option<crate::auth::SecretRef> {
        match (&self.admin_token_env, &self.admin_token_file) {
            (Some(var), _) => Some(crate::auth::SecretRef::Env(var.clone())),
            (None, Some(path)) => Some(crate::auth::SecretRef::File(path.clone())),
            (None, None) => None,
        }
    }
}
