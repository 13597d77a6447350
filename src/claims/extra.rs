//! [`SmartClaims::extra`](super::SmartClaims::extra): the payload deserialized into a
//! caller's type, with errors that never quote the token.
//!
//! serde_json's own `Value` deserializer writes the offending value into its errors
//! (`invalid type: string "…", expected u32`), and a handler may well log that error. This
//! deserializer walks the same `Value` tree with its own error type, which keeps only the
//! kind of an unexpected value, and hands the message over as a `serde_json::Error`.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    self, DeserializeOwned, Deserializer, Expected, IntoDeserializer, Unexpected, Visitor,
};
use serde_json::{Map, Value};

/// Deserializes the payload object into `T`.
pub(super) fn from_claims<T: DeserializeOwned>(
    payload: &Map<String, Value>,
) -> Result<T, serde_json::Error> {
    T::deserialize(Object(payload)).map_err(|Redacted(message)| de::Error::custom(message))
}

/// An error message without values from the token.
#[derive(Debug)]
struct Redacted(String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

impl de::Error for Redacted {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self(message.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self(format!(
            "invalid type: {}, expected {expected}",
            kind(&unexpected)
        ))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self(format!(
            "invalid value: {}, expected {expected}",
            kind(&unexpected)
        ))
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self(format!("unknown variant, expected {}", one_of(expected)))
    }

    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        Self(format!("unknown member, expected {}", one_of(expected)))
    }
}

/// What an unexpected value was, without the value.
fn kind(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "a number",
        Unexpected::Char(_) => "a character",
        Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "null",
        Unexpected::Option => "an optional value",
        Unexpected::NewtypeStruct => "a newtype struct",
        Unexpected::Seq => "an array",
        Unexpected::Map => "an object",
        Unexpected::Enum => "an enum",
        Unexpected::UnitVariant
        | Unexpected::NewtypeVariant
        | Unexpected::TupleVariant
        | Unexpected::StructVariant => "an enum variant",
        Unexpected::Other(_) => "another value",
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "none".to_owned(),
        names => format!("one of `{}`", names.join("`, `")),
    }
}

/// The payload object itself.
struct Object<'de>(&'de Map<String, Value>);

/// One JSON value of the payload.
struct Node<'de>(&'de Value);

fn visit_object<'de, V: Visitor<'de>>(
    object: &'de Map<String, Value>,
    visitor: V,
) -> Result<V::Value, Redacted> {
    let mut members = MapDeserializer::new(
        object
            .iter()
            .map(|(name, value)| (name.as_str(), Node(value))),
    );
    let value = visitor.visit_map(&mut members)?;
    members.end()?;
    Ok(value)
}

impl<'de> Deserializer<'de> for Object<'de> {
    type Error = Redacted;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Redacted> {
        visit_object(self.0, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Redacted> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Redacted> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> Deserializer<'de> for Node<'de> {
    type Error = Redacted;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Redacted> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(value) => visitor.visit_bool(*value),
            Value::Number(number) => {
                if let Some(value) = number.as_u64() {
                    visitor.visit_u64(value)
                } else if let Some(value) = number.as_i64() {
                    visitor.visit_i64(value)
                } else {
                    visitor.visit_f64(number.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(text) => visitor.visit_borrowed_str(text),
            Value::Array(items) => {
                let mut items = SeqDeserializer::new(items.iter().map(Node));
                let value = visitor.visit_seq(&mut items)?;
                items.end()?;
                Ok(value)
            }
            Value::Object(object) => visit_object(object, visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Redacted> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Redacted> {
        visitor.visit_newtype_struct(self)
    }

    /// Externally tagged, as serde_json reads enums: `"Variant"` or `{"Variant": …}`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Redacted> {
        match self.0 {
            Value::String(variant) => {
                visitor.visit_enum(de::value::BorrowedStrDeserializer::new(variant))
            }
            Value::Object(object) if object.len() == 1 => {
                visitor.visit_enum(de::value::MapAccessDeserializer::new(MapDeserializer::new(
                    object
                        .iter()
                        .map(|(name, value)| (name.as_str(), Node(value))),
                )))
            }
            Value::Object(_) => Err(de::Error::invalid_value(
                Unexpected::Map,
                &"an object with a single member",
            )),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Redacted> for Node<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn payload(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("object"),
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Org {
        org: String,
        #[serde(default)]
        level: Option<u8>,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Read,
        Write { reason: String },
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct WithEnum {
        mode: Mode,
        other: Option<Mode>,
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let cases = [
            json!({"org": "acme", "iss": "x", "exp": 1}),
            json!({"org": "acme", "level": 3, "tags": ["a", "b"]}),
            json!({"org": "acme", "level": null}),
        ];
        for case in cases {
            let ours: Org = from_claims(&payload(case.clone())).expect("fits");
            let theirs: Org = serde_json::from_value(case.clone()).expect("fits");
            assert_eq!(ours, theirs, "{case}");
        }
        let case = json!({"mode": {"write": {"reason": "r"}}, "other": "read"});
        let ours: WithEnum = from_claims(&payload(case.clone())).expect("fits");
        assert_eq!(
            ours,
            serde_json::from_value::<WithEnum>(case).expect("fits")
        );
        let value: Value =
            from_claims(&payload(json!({"a": [1, -2, 2.5, null, true]}))).expect("any JSON");
        assert_eq!(value, json!({"a": [1, -2, 2.5, null, true]}));
        let map: std::collections::BTreeMap<String, Value> =
            from_claims(&payload(json!({"a": 1}))).expect("a map");
        assert_eq!(map.len(), 1);
        let wrapped: Option<Org> = from_claims(&payload(json!({"org": "o"}))).expect("some");
        assert_eq!(wrapped.map(|org| org.org), Some("o".to_owned()));
    }

    #[test]
    fn errors_never_quote_the_token() {
        const SECRET: &str = "s3cr3t-Value";
        let cases = [
            json!({"org": 5}),
            json!({}),
            json!({"org": "o", "level": SECRET}),
            json!({"org": "o", "level": 300}),
            json!({"org": "o", "level": -1}),
            json!({"org": "o", "tags": SECRET}),
            json!({"org": "o", "tags": [SECRET, 1]}),
            json!({"org": ["o"]}),
        ];
        for case in cases {
            let error = from_claims::<Org>(&payload(case.clone())).expect_err("does not fit");
            let message = error.to_string();
            assert!(!message.contains(SECRET), "{message}");
            assert!(!message.contains("300"), "{message}");
        }
        for case in [
            json!({"mode": SECRET, "other": null}),
            json!({"mode": {SECRET: {}}, "other": null}),
            json!({"mode": {"read": null, "write": {}}, "other": null}),
            json!({"mode": "read", "other": SECRET}),
        ] {
            let message = from_claims::<WithEnum>(&payload(case.clone()))
                .expect_err("does not fit")
                .to_string();
            assert!(!message.contains(SECRET), "{message}");
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            org: String,
        }
        let message = from_claims::<Strict>(&payload(json!({"org": "o", SECRET: 1})))
            .expect_err("unknown member")
            .to_string();
        assert_eq!(message, "unknown member, expected one of `org`");
        let message = from_claims::<Org>(&payload(json!({"org": SECRET.len()})))
            .expect_err("wrong type")
            .to_string();
        assert_eq!(message, "invalid type: a number, expected a string");
        let message = from_claims::<Org>(&payload(json!({})))
            .expect_err("missing")
            .to_string();
        assert_eq!(message, "missing field `org`");
    }
}
