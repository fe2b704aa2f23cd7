use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A platform time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a time as `yyyy-MM-dd HH:mm:ss` (UTC), got {0:?}")]
pub struct TimeError(pub String);

/// Parses a platform time: `yyyy-MM-dd HH:mm:ss` in UTC, as Huawei documents it.
///
/// The ISO 8601 spelling of the same instant (`T` separator, optional fractional seconds,
/// optional `Z` or `+00:00`) is accepted too, since it is unambiguous. An explicit offset other
/// than UTC is honoured. Returns `Ok(None)` for an empty string, which platforms send for
/// "no value".
pub fn parse_platform_time(raw: &str) -> Result<Option<DateTime<Utc>>, TimeError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Some(n) = parse_fixed(s.as_bytes()) {
        return Ok(Some(Utc.from_utc_datetime(&n)));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(dt.with_timezone(&Utc)));
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(naive, format) {
            return Ok(Some(Utc.from_utc_datetime(&n)));
        }
    }
    Err(TimeError(raw.to_owned()))
}

/// The documented layout, `yyyy-MM-dd HH:mm:ss` (or with `T`), read without a format
/// interpreter: a CDR carries up to ten times, and this is most of parsing's cost otherwise.
fn parse_fixed(s: &[u8]) -> Option<NaiveDateTime> {
    if s.len() != 19
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b' ' | b'T')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| {
        s[range].iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?.and_hms_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn documented_format_is_utc() {
        assert_eq!(
            parse_platform_time("2019-01-24 03:04:24").unwrap(),
            Some(utc("2019-01-24T03:04:24Z"))
        );
    }

    #[test]
    fn iso_spellings_are_accepted() {
        let want = Some(utc("2019-01-24T03:04:24Z"));
        assert_eq!(parse_platform_time("2019-01-24T03:04:24Z").unwrap(), want);
        assert_eq!(parse_platform_time("2019-01-24T03:04:24").unwrap(), want);
        assert_eq!(
            parse_platform_time("2019-01-24T11:04:24+08:00").unwrap(),
            want
        );
        assert_eq!(
            parse_platform_time("2019-01-24 03:04:24.5").unwrap(),
            Some(utc("2019-01-24T03:04:24.5Z"))
        );
    }

    #[test]
    fn empty_is_none_and_garbage_is_an_error() {
        assert_eq!(parse_platform_time("").unwrap(), None);
        assert!(parse_platform_time("24/01/2019 03:04").is_err());
        assert!(parse_platform_time("2019-13-24 03:04:24").is_err());
        assert!(parse_platform_time("1548299064").is_err());
        assert!(parse_platform_time("2019-01-24 03:04:6x").is_err());
        assert!(parse_platform_time("2019-02-30 03:04:24").is_err());
        assert!(parse_platform_time("2019-01-24 24:04:24").is_err());
    }
}
