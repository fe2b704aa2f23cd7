use serde::{Deserialize, Serialize};
use std::fmt;

/// A phone number as the platform sent it, normalised where that is safe.
///
/// Platforms vary in how they format numbers (`+86 138-0000-0022`, `008613800000022`,
/// `+8613800000022`). Normalising lets analysts join and filter on one form; anything that does
/// not look like a number (a SIP URI, an extension with letters) is kept exactly as sent, never
/// rejected: a number's format is no reason to lose a call. The raw record keeps the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Normalises `raw`; `None` for an empty or all-blank value.
    pub fn parse_lenient(raw: &str) -> Option<Self> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return None;
        }
        let compact: String = trimmed
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '\u{a0}'))
            .collect();
        let (plus, digits) = match compact.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => match compact.strip_prefix("00") {
                Some(rest) if !rest.is_empty() => (true, rest),
                _ => (false, compact.as_str()),
            },
        };
        let looks_numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let value = match (looks_numeric, plus) {
            (true, true) => format!("+{digits}"),
            (true, false) => digits.to_owned(),
            (false, _) => trimmed.to_owned(),
        };
        Some(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::PhoneNumber;

    fn norm(raw: &str) -> Option<String> {
        PhoneNumber::parse_lenient(raw).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn global_numbers_are_compacted() {
        assert_eq!(norm("+8613800000022").as_deref(), Some("+8613800000022"));
        assert_eq!(
            norm(" +86 138-0000-0022 ").as_deref(),
            Some("+8613800000022")
        );
        assert_eq!(norm("008613800000022").as_deref(), Some("+8613800000022"));
        assert_eq!(norm("(0755) 1234.5678").as_deref(), Some("075512345678"));
    }

    #[test]
    fn non_numbers_are_kept_as_sent() {
        assert_eq!(
            norm(" sip:+8613800000022@ims.example ").as_deref(),
            Some("sip:+8613800000022@ims.example")
        );
        assert_eq!(norm("00").as_deref(), Some("00"));
        assert_eq!(norm("+").as_deref(), Some("+"));
    }

    #[test]
    fn blank_is_absent() {
        assert_eq!(norm(""), None);
        assert_eq!(norm("   "), None);
    }
}
