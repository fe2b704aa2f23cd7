//! Secrets: where they are read from (never the config file, for those that can be elsewhere),
//! a value that never shows itself in logs, and comparison in constant time.

use std::fmt;
use std::path::PathBuf;

/// A secret value. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Compares with `candidate` in constant time (over the content; lengths are hidden by
    /// comparing MACs of both sides).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(&self.0, candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Equality in constant time over the content: both sides are MACed under a fixed key and the
/// fixed-size tags compared with `verify` (constant time), so neither content nor length leaks.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    type HmacSha256 = Hmac<sha2::Sha256>;
    let tag = |v: &[u8]| {
        let mut m = HmacSha256::new_from_slice(b"ringback-compare").expect("any key length");
        m.update(v);
        m
    };
    tag(a).verify(&tag(b).finalize().into_bytes()).is_ok()
}

/// Where a secret is read from: an environment variable or a file (a mounted Kubernetes or
/// Docker secret); a trailing newline in the file is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or empty")]
    EnvUnset(String),
    #[error("file is empty")]
    EmptyFile,
    #[error("cannot read {path}: {source}", path = .0.display(), source = .1)]
    Unreadable(PathBuf, #[source] std::io::Error),
}

impl SecretRef {
    /// Reads the secret now.
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            Self::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                _ => Err(SecretError::EnvUnset(var.clone())),
            },
            Self::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| SecretError::Unreadable(path.clone(), e))?;
                match text.trim_end_matches(['\r', '\n']) {
                    "" => Err(SecretError::EmptyFile),
                    v => Ok(Secret::new(v.to_owned())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
