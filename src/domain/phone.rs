use serde::{Deserialize, Serialize};

/// A country of numbers sent without a country code (ISO 3166-1 alpha-2, e.g. `CN`).
pub type Region = phonenumber::country::Id;
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

    /// [`parse_lenient`](Self::parse_lenient), then a national number (no `+`, no `00`) of
    /// `region` in E.164 (`075512345678` in CN → `+8675512345678`), when the region's numbering
    /// plan says it is a valid number there. Anything else (short codes, extensions, numbers
    /// not valid in the region) is kept as `parse_lenient` gives it: better unjoined than
    /// wrongly joined.
    pub fn parse_in(raw: &str, region: Option<Region>) -> Option<Self> {
        let lenient = Self::parse_lenient(raw)?;
        let Some(region) = region else {
            return Some(lenient);
        };
        let national = lenient.0.bytes().all(|b| b.is_ascii_digit());
        if !national {
            return Some(lenient);
        }
        match phonenumber::parse(Some(region), &lenient.0) {
            Ok(number) if number.is_valid() => Some(Self(
                number.format().mode(phonenumber::Mode::E164).to_string(),
            )),
            _ => Some(lenient),
        }
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

    fn in_region(raw: &str, region: &str) -> Option<String> {
        PhoneNumber::parse_in(raw, Some(region.parse().unwrap())).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn national_numbers_take_the_region_s_country_code() {
        // A Shenzhen landline and a mobile, as a Chinese platform may send them.
        assert_eq!(
            in_region("(0755) 1234.5678", "CN").as_deref(),
            Some("+8675512345678")
        );
        assert_eq!(
            in_region("13800000022", "CN").as_deref(),
            Some("+8613800000022")
        );
        // The same line sent in E.164 by another platform: the same text.
        assert_eq!(
            in_region("+86 138-0000-0022", "CN").as_deref(),
            Some("+8613800000022")
        );
        assert_eq!(
            in_region("020 7946 0018", "GB").as_deref(),
            Some("+442079460018")
        );
        assert_eq!(
            in_region("(415) 555-2671", "US").as_deref(),
            Some("+14155552671")
        );
    }

    #[test]
    fn what_is_not_a_valid_national_number_is_kept() {
        // A short code, an extension, a SIP URI: as parse_lenient gives them.
        assert_eq!(in_region("10086", "CN").as_deref(), Some("10086"));
        assert_eq!(in_region("8001", "CN").as_deref(), Some("8001"));
        assert_eq!(
            in_region("sip:8001@pbx.example", "CN").as_deref(),
            Some("sip:8001@pbx.example")
        );
        // No region: national numbers are only compacted.
        assert_eq!(
            PhoneNumber::parse_in("0755 1234 5678", None).map(|p| p.as_str().to_owned()),
            Some("075512345678".into())
        );
    }
}
