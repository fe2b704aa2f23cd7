//! Deserialisers for values platforms spell in more than one way.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A string that some senders emit as a JSON integer (phone numbers, `serviceType`, digits).
/// Integers are turned into their decimal text; floats and other types are refused, since a
/// float can silently lose the digits of a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LenientString(pub String);

impl<'de> de::Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (or an integer)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientString(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientString(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}
