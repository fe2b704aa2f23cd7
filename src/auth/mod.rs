//! Who may write: every way a source authenticates its sender, and the secrets they use. No
//! I/O but reading secrets and JWKS keys; the configuration names which one a source uses
//! (`config::AuthConfig`), and `ingest` builds and calls it.

pub mod aksk;
pub mod jwt;
mod secret;
pub mod shared_secret;
pub mod standard_webhooks;

pub use secret::{constant_time_eq, Secret, SecretError, SecretRef};

use aksk::AuthError;

use crate::domain::Code;

/// A refused credential: a stable code, a message that tells what is wrong without telling what
/// would have been right, and the `WWW-Authenticate` challenge to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthFailure {
    pub code: Code,
    pub message: String,
    pub challenge: Option<&'static str>,
}

impl AuthFailure {
    pub(crate) fn new(
        code: Code,
        message: impl Into<String>,
        challenge: Option<&'static str>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            challenge,
        }
    }
}

impl From<AuthError> for AuthFailure {
    fn from(e: AuthError) -> Self {
        Self::new(
            e.code(),
            e.to_string(),
            Some("AKSK realm=\"SDP\",profile=\"UsernameToken\",type=\"Appkey\""),
        )
    }
}
