//! Reading event `data` whose shape drifts across API versions (identifiers flat or under
//! `communicationIdentifier`, `durationOfCall` or `callDurationInSeconds`, PascalCase SMS
//! fields): each field is looked up at every documented path, first hit wins. This is the one
//! place the wire's variants are known; the domain records get one typed value.

use serde_json::Value;

/// A JSON value at the first of `paths` (JSON pointers) that holds something other than null.
pub fn at<'v>(data: &'v Value, paths: &[&str]) -> Option<&'v Value> {
    paths
        .iter()
        .filter_map(|p| data.pointer(p))
        .find(|v| !v.is_null())
}

/// A string (numbers and booleans are spelled out) at the first matching path.
pub fn text(data: &Value, paths: &[&str]) -> Option<String> {
    match at(data, paths)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An integer (or a string holding one) at the first matching path.
pub fn int(data: &Value, paths: &[&str]) -> Option<i64> {
    match at(data, paths)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A number (or a string holding one) at the first matching path.
/// Only finite numbers: a string such as `"NaN"`, `"inf"` or `"1e999"` is no duration.
pub fn number(data: &Value, paths: &[&str]) -> Option<f64> {
    let n = match at(data, paths)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite())
}

/// The raw id of a CommunicationIdentifier, in either shape:
/// `{"communicationIdentifier": {"rawId": …}}` or `{"rawId": …, "phoneNumber": {…}}`.
pub fn identifier(data: &Value, path: &str) -> Option<String> {
    let v = data.pointer(path)?;
    text(
        v,
        &[
            "/communicationIdentifier/rawId",
            "/rawId",
            "/communicationIdentifier/communicationUser/id",
            "/communicationUser/id",
            "/communicationIdentifier/phoneNumber/value",
            "/phoneNumber/value",
            "/communicationIdentifier/microsoftTeamsUser/userId",
            "/microsoftTeamsUser/userId",
            "/identifier/rawId",
        ],
    )
    .or_else(|| v.as_str().map(str::to_owned))
}

/// The phone number of a CommunicationIdentifier, if it is one (`phoneNumber.value`, or a raw
/// id `4:+1425…`).
pub fn identifier_phone(data: &Value, path: &str) -> Option<String> {
    let v = data.pointer(path)?;
    text(
        v,
        &[
            "/communicationIdentifier/phoneNumber/value",
            "/phoneNumber/value",
        ],
    )
    .or_else(|| identifier(data, path).and_then(|raw| raw.strip_prefix("4:").map(str::to_owned)))
    .or_else(|| v.as_str().filter(|s| s.starts_with('+')).map(str::to_owned))
}

/// Number of elements of the array at `path`.
pub fn count(data: &Value, path: &str) -> Option<i32> {
    data.pointer(path)?
        .as_array()
        .and_then(|a| i32::try_from(a.len()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_in_every_shape() {
        let nested = json!({"user": {"communicationIdentifier": {"rawId": "8:acs:1", "communicationUser": {"id": "8:acs:1"}}}});
        let flat = json!({"user": {"rawId": "8:acs:1", "communicationUser": {"id": "8:acs:1"}}});
        let phone = json!({"to": {"kind": "phoneNumber", "rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}}});
        let raw_only = json!({"to": {"rawId": "4:+14255550123"}});
        assert_eq!(identifier(&nested, "/user").as_deref(), Some("8:acs:1"));
        assert_eq!(identifier(&flat, "/user").as_deref(), Some("8:acs:1"));
        assert_eq!(
            identifier_phone(&phone, "/to").as_deref(),
            Some("+14255550123")
        );
        assert_eq!(
            identifier_phone(&raw_only, "/to").as_deref(),
            Some("+14255550123")
        );
        assert_eq!(identifier_phone(&nested, "/user"), None);
    }

    #[test]
    fn numbers_and_alternative_names() {
        let old = json!({"durationOfCall": 49.0});
        let new = json!({"callDurationInSeconds": "49.5"});
        let paths = ["/callDurationInSeconds", "/durationOfCall"];
        assert_eq!(number(&old, &paths), Some(49.0));
        assert_eq!(number(&new, &paths), Some(49.5));
        assert_eq!(int(&json!({"code": "8522"}), &["/code"]), Some(8522));
        assert_eq!(
            text(&json!({"From": null, "from": "+1"}), &["/From", "/from"]).as_deref(),
            Some("+1")
        );
    }
}
