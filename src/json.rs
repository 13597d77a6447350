//! Strict JSON for security-relevant documents: an object whose member names are unique at
//! every depth.
//!
//! RFC 8259 leaves the meaning of duplicate member names to each parser; some keep the
//! first value, some the last. When the component that checks a document and the one that
//! acts on it pick different duplicates, an attacker gets to say two things at once
//! (RFC 8725 section 3.1 lists this among the JWT bypass classes). RFC 7515 section 5.2 and
//! RFC 7519 section 4 let a parser refuse such input, so this crate refuses it in JWT
//! headers and payloads, introspection answers and the key and discovery documents.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a document is not a strict JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// Not JSON, or JSON that is not an object at the top level.
    NotAnObject,
    /// Some object (at any depth) names a member twice.
    DuplicateMember,
}

/// Parses `bytes` as a JSON object whose objects, at every depth, have unique member names.
///
/// serde_json's nesting limit (128) still applies, so hostile nesting costs bounded stack.
pub(crate) fn object_with_unique_members(
    bytes: &[u8],
) -> Result<Map<String, Value>, StrictJsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = UniqueValue
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    match value {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(StrictJsonError::NotAnObject),
        Err(error) if error.to_string().starts_with(DUPLICATE) => {
            Err(StrictJsonError::DuplicateMember)
        }
        Err(_) => Err(StrictJsonError::NotAnObject),
    }
}

/// The message that marks a duplicate member (never shown to anyone; it only tells the
/// two error kinds apart, and holds no document contents).
const DUPLICATE: &str = "duplicate member name";

/// A JSON value whose objects have unique member names.
struct UniqueValue;

impl<'de> DeserializeSeed<'de> for UniqueValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(UniqueValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.contains_key(&name) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value = access.next_value_seed(UniqueValue)?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_objects_with_unique_members() {
        let map = object_with_unique_members(br#" {"a":1,"b":{"a":[{"a":null}]},"c":-1.5} "#)
            .expect("strict object");
        assert_eq!(map.len(), 3);
        assert_eq!(map["b"]["a"][0]["a"], Value::Null);
        // The same name in sibling objects or at other depths is not a duplicate.
        assert!(object_with_unique_members(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#).is_ok());
    }

    #[test]
    fn refuses_duplicates_at_every_depth() {
        let rows: &[&[u8]] = &[
            br#"{"a":1,"a":1}"#,
            br#"{"a":1,"a":2}"#,
            br#"{"a":null,"a":"x"}"#,
            br#"{"x":{"a":1,"a":2}}"#,
            br#"{"x":[{"b":1},{"a":1,"a":2}]}"#,
            // The same name spelled with an escape is the same name.
            br#"{"alg":"RS256","\u0061lg":"none"}"#,
            br#"{"a\/b":1,"a/b":2}"#,
        ];
        for row in rows {
            assert_eq!(
                object_with_unique_members(row),
                Err(StrictJsonError::DuplicateMember),
                "{}",
                String::from_utf8_lossy(row)
            );
        }
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        let rows: &[&[u8]] = &[
            b"",
            b"[]",
            b"1",
            b"\"s\"",
            b"null",
            b"{",
            b"{}{}",
            b"{} x",
            br#"{"a":1,}"#,
            br#"{'a':1}"#,
            b"{\"a\":\"\xff\"}",
        ];
        for row in rows {
            assert_eq!(
                object_with_unique_members(row),
                Err(StrictJsonError::NotAnObject),
                "{}",
                String::from_utf8_lossy(row)
            );
        }
    }

    #[test]
    fn hostile_nesting_is_refused_without_overflow() {
        let deep = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert_eq!(
            object_with_unique_members(deep.as_bytes()),
            Err(StrictJsonError::NotAnObject)
        );
        let deep_array = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            object_with_unique_members(deep_array.as_bytes()),
            Err(StrictJsonError::NotAnObject)
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::{config, deep_nesting, json_object, json_value};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(config(1024))]

        /// The strict reading agrees with serde_json's wherever it accepts, accepts only
        /// objects, and refuses whatever serde_json refuses; hostile nesting is an error,
        /// never a stack overflow.
        #[test]
        fn strict_reading_agrees_with_serde_json(
            text in prop_oneof![json_object(&["a", "b"]), json_value(&["a"]), deep_nesting()],
        ) {
            let loose = serde_json::from_str::<Value>(&text);
            match object_with_unique_members(text.as_bytes()) {
                Ok(map) => prop_assert_eq!(loose.ok(), Some(Value::Object(map))),
                Err(StrictJsonError::NotAnObject) => {
                    prop_assert!(!matches!(loose, Ok(Value::Object(_))), "{}", text);
                }
                Err(StrictJsonError::DuplicateMember) => {
                    prop_assert!(text.matches(':').count() >= 2);
                }
            }
        }

        /// Adding a member that is already there, at the top level or nested, makes an
        /// accepted document a duplicate.
        #[test]
        fn a_repeated_member_is_always_found(
            text in json_object(&["a", "b"]),
            nested in any::<bool>(),
        ) {
            if let Ok(map) = object_with_unique_members(text.as_bytes())
                && let Some((name, value)) = map.iter().next()
            {
                let name = serde_json::to_string(name).unwrap();
                let inner = text.trim().trim_start_matches('{');
                let repeated = if nested {
                    format!(r#"{{"outer":[{{{name}:{value},{inner}]}}"#)
                } else {
                    format!("{{{name}:{value},{inner}")
                };
                prop_assert_eq!(
                    object_with_unique_members(repeated.as_bytes()).err(),
                    Some(StrictJsonError::DuplicateMember),
                    "{}", repeated
                );
            }
        }
    }
}
