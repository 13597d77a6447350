//! The compact JWS form of a token: splitting, the protected header, the signature and the
//! payload. No key lookup and no claim rules here (see `verifier`).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::ErrorKind;
use crate::jwks::{VerificationKey, asymmetric_algorithm};

/// The three segments of a compact JWS, borrowed from the token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segments<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
}

/// Splits a token into exactly three segments, without allocating.
pub(crate) fn split(token: &str) -> Result<Segments<'_>, ErrorKind> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(ErrorKind::MalformedToken)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(ErrorKind::MalformedToken)?;
    if payload.contains('.') || header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(ErrorKind::MalformedToken);
    }
    Ok(Segments {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// The protected header parameters this crate acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    /// Any `crit`, whatever its value: this crate understands no extension.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    // `jwk`, `jku`, `x5u`, `x5c` and every other parameter are ignored: keys come only from
    // the issuer's configured or discovered key set.
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// Decodes and checks the protected header: a JSON object with a string `alg` from
/// `allowed`, and no `crit`.
pub(crate) fn parse_header(segment: &str, allowed: &[Algorithm]) -> Result<Header, ErrorKind> {
    let bytes = decode_object(segment)?;
    let raw: RawHeader<'_> =
        serde_json::from_slice(&bytes).map_err(|_| ErrorKind::MalformedToken)?;
    if raw.crit {
        return Err(ErrorKind::CriticalHeader);
    }
    let alg = asymmetric_algorithm(&raw.alg)
        .filter(|alg| allowed.contains(alg))
        .ok_or(ErrorKind::UnsupportedAlgorithm)?;
    Ok(Header {
        alg,
        kid: raw.kid.map(Cow::into_owned),
        typ: raw.typ.map(Cow::into_owned),
    })
}

/// Checks the signature over `header.payload` with the chosen key.
pub(crate) fn verify_signature(
    segments: &Segments<'_>,
    key: &VerificationKey,
    alg: Algorithm,
) -> Result<(), ErrorKind> {
    let signature = URL_SAFE_NO_PAD
        .decode(segments.signature)
        .map_err(|_| ErrorKind::MalformedToken)?;
    // Calling the aws-lc-rs provider directly, rather than jsonwebtoken's process-wide
    // default, means no feature unification elsewhere in the build can make this panic.
    let verifier =
        (jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.verifier_factory)(&alg, &key.key)
            .map_err(|_| ErrorKind::UnsupportedAlgorithm)?;
    verifier
        .verify(segments.signing_input.as_bytes(), &signature)
        .map_err(|_| ErrorKind::InvalidSignature)
}

/// Decodes the payload into a JSON object.
pub(crate) fn decode_payload(segment: &str) -> Result<Map<String, Value>, ErrorKind> {
    let bytes = decode_object(segment)?;
    serde_json::from_slice(&bytes).map_err(|_| ErrorKind::MalformedToken)
}

/// base64url without padding, and a JSON text that is an object (serde would otherwise
/// accept an array for a struct).
fn decode_object(segment: &str) -> Result<Vec<u8>, ErrorKind> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| ErrorKind::MalformedToken)?;
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(bytes),
        _ => Err(ErrorKind::MalformedToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    const ALL: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

    #[test]
    fn splits_exactly_three_segments() {
        assert!(split("a.b.c").is_ok());
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e",
            "..",
            "a..c",
            ".b.c",
            "a.b.",
        ] {
            assert_eq!(split(bad).err(), Some(ErrorKind::MalformedToken), "{bad:?}");
        }
        let segments = split("h.p.s").unwrap();
        assert_eq!(
            (
                segments.header,
                segments.payload,
                segments.signature,
                segments.signing_input
            ),
            ("h", "p", "s", "h.p")
        );
    }

    #[test]
    fn header_rules() {
        let rows: &[(&str, Result<(), ErrorKind>)] = &[
            (r#"{"alg":"RS256","kid":"k","typ":"at+jwt"}"#, Ok(())),
            (
                r#"{"alg":"RS256","jku":"https://evil","jwk":{"kty":"RSA"},"x5u":"https://evil","x5c":["x"]}"#,
                Ok(()),
            ),
            (r#"{"alg":"none"}"#, Err(ErrorKind::UnsupportedAlgorithm)),
            (r#"{"alg":"HS256"}"#, Err(ErrorKind::UnsupportedAlgorithm)),
            (r#"{"alg":"RS384"}"#, Err(ErrorKind::UnsupportedAlgorithm)),
            (r#"{"alg":"rs256"}"#, Err(ErrorKind::UnsupportedAlgorithm)),
            (
                r#"{"alg":"RS256","crit":["exp"]}"#,
                Err(ErrorKind::CriticalHeader),
            ),
            (
                r#"{"alg":"RS256","crit":null}"#,
                Err(ErrorKind::CriticalHeader),
            ),
            (r#"{"alg":256}"#, Err(ErrorKind::MalformedToken)),
            (r#"{"kid":"k"}"#, Err(ErrorKind::MalformedToken)),
            (r#"{"alg":"RS256","kid":5}"#, Err(ErrorKind::MalformedToken)),
            (
                r#"{"alg":"RS256","alg":"RS256"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (r#"["RS256"]"#, Err(ErrorKind::MalformedToken)),
            ("not json", Err(ErrorKind::MalformedToken)),
        ];
        for (header, expected) in rows {
            assert_eq!(
                parse_header(&b64(header), ALL).map(drop),
                *expected,
                "{header}"
            );
        }
        assert_eq!(
            parse_header("eyJhbGciOiJSUzI1NiJ9=", ALL).err(),
            Some(ErrorKind::MalformedToken),
            "padding"
        );
        assert_eq!(
            parse_header("e+J", ALL).err(),
            Some(ErrorKind::MalformedToken),
            "standard alphabet"
        );
    }

    #[test]
    fn payload_must_be_an_object() {
        assert!(decode_payload(&b64(r#"{"a":1}"#)).is_ok());
        for bad in ["[1]", "1", "\"s\"", "{"] {
            assert_eq!(
                decode_payload(&b64(bad)).err(),
                Some(ErrorKind::MalformedToken),
                "{bad}"
            );
        }
    }
}
