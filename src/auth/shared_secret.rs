//! A shared secret the sender puts in the URL's query or in a header (Event Grid webhook
//! delivery with the secret in the subscription URL).

use super::{AuthFailure, Secret};
use crate::domain::Code;

/// A secret the sender puts in the URL's query (`?code=…`) or in a header.
#[derive(Debug)]
pub struct SharedSecret {
    pub secret: Secret,
    pub query: String,
    pub header: String,
}

impl SharedSecret {
    /// `query` is the request's query string; `header` the value of the configured header.
    pub fn verify(&self, query: &str, header: Option<&str>) -> Result<(), AuthFailure> {
        let from_query = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == self.query.as_str())
            .map(|(_, v)| v.into_owned());
        let candidates: Vec<String> = from_query
            .into_iter()
            .chain(header.map(str::to_owned))
            .collect();
        if candidates.is_empty() {
            return Err(AuthFailure::new(
                Code::SecretMissing,
                format!(
                    "the secret is missing: send it as the query parameter {:?} or the header {:?}",
                    self.query, self.header
                ),
                None,
            ));
        }
        // Every candidate is compared, so timing does not tell which one was checked.
        let ok = candidates
            .iter()
            .fold(false, |ok, c| self.secret.matches(c.as_bytes()) | ok);
        if ok {
            Ok(())
        } else {
            Err(AuthFailure::new(
                Code::SecretMismatch,
                "the secret does not match",
                None,
            ))
        }
    }
}
