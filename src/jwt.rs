//! The compact JWS form of a token: splitting, the protected header, the signature and the
//! payload. No key lookup and no claim rules here (see `verifier`).

use std::borrow::Cow;

use crate::algorithm::SigningAlgorithm;
use serde_json::Value;

use crate::base64url;
use crate::error::ErrorKind;
use crate::json::{self, Member, SelectedMembers};
use crate::jwks::VerificationKey;

/// The three segments of a compact JWS, borrowed from the token. Its `Debug` shows their
/// lengths only: never token contents.
///
/// The payload segment may still hold dots (a token of more than three segments, see
/// [`split`]) until it is decoded: decode it before acting on the signature over
/// `signing_input`.
#[derive(Clone, Copy)]
pub(crate) struct Segments<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
}

impl std::fmt::Debug for Segments<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments")
            .field("header_length", &self.header.len())
            .field("payload_length", &self.payload.len())
            .field("signature_length", &self.signature.len())
            .finish()
    }
}

/// Whether a bearer token has the shape of a compact JWS: three segments, the first a JSON
/// object (`{` always encodes to a leading `e`). Other dotted tokens (PASETO's
/// `v4.local.…`) are opaque: only introspection can tell what they are.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.starts_with('e') && token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Splits a token at its first and its last dot into three non-empty segments, without
/// allocating.
///
/// The payload is not searched for more dots: a token with four or more segments has a
/// dot in its payload segment, which decoding it ([`decode_segment`]) refuses, as `.` is
/// outside the base64url alphabet. Every reader of the payload decodes it; the verifier
/// does so right after splitting, so such a token is refused there as before (one pass
/// over the payload instead of two on every fresh token).
pub(crate) fn split(token: &str) -> Result<Segments<'_>, ErrorKind> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(ErrorKind::MalformedToken)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(ErrorKind::MalformedToken)?;
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(ErrorKind::MalformedToken);
    }
    Ok(Segments {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// The protected header parameters this crate acts on, `kid` and `typ` borrowed from the
/// decoded header when they have no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub(crate) alg: SigningAlgorithm,
    pub(crate) kid: Option<Cow<'a, str>>,
    pub(crate) typ: Option<Cow<'a, str>>,
    /// Claims the header repeats, when it does (rare; boxed to keep the common header small).
    pub(crate) replicated: Option<Box<ReplicatedClaims>>,
}

/// `iss`, `sub` and `aud` repeated in the header (RFC 7519 section 5.3). The payload must
/// say the same: a component that routes or logs by the header must not see other claims
/// than the ones verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReplicatedClaims {
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) aud: Option<Vec<String>>,
}

impl ReplicatedClaims {
    /// Whether every repeated claim equals the payload's (`aud` as a set of values).
    pub(crate) fn agree_with(&self, iss: &str, sub: Option<&str>, aud: &[String]) -> bool {
        self.iss.as_deref().is_none_or(|repeated| repeated == iss)
            && self
                .sub
                .as_deref()
                .is_none_or(|repeated| Some(repeated) == sub)
            && self
                .aud
                .as_deref()
                .is_none_or(|repeated| distinct_sorted(repeated) == distinct_sorted(aud))
    }
}

/// The distinct values, sorted: two lists compared as sets in `n log n`, not `n * m` (a
/// signed token may repeat thousands of audiences in its header and payload).
fn distinct_sorted(values: &[String]) -> Vec<&str> {
    let mut sorted: Vec<&str> = values.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// The JSON type a registered header parameter must have when present (RFC 7515 section
/// 4.1, RFC 7519 section 5). `null` is never one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    String,
    Object,
    ArrayOfStrings,
}

/// Registered header parameters this crate does not act on, with their type. They are
/// type-checked all the same: a header that breaks the JOSE rules is not a JWS header,
/// and another component reading it must not see something this crate let pass.
/// `jwk`, `jku`, `x5u`, `x5c` never select a key: keys come only from the issuer's key set.
const IGNORED_PARAMETERS: &[(&str, Expected)] = &[
    ("jku", Expected::String),
    ("jwk", Expected::Object),
    ("x5u", Expected::String),
    ("x5c", Expected::ArrayOfStrings),
    ("x5t", Expected::String),
    ("x5t#S256", Expected::String),
];

fn has_type(value: Member<'_>, expected: Expected) -> bool {
    let value = match value {
        Member::Text(_) => return expected == Expected::String,
        Member::Json(value) => value,
    };
    match expected {
        Expected::String => value.is_string(),
        Expected::Object => value.is_object(),
        Expected::ArrayOfStrings => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
    }
}

/// A string member, or `None` when absent; any other JSON type (`null` included) is
/// malformed.
fn string_member<'a>(
    header: &'a SelectedMembers,
    name: &str,
) -> Result<Option<&'a str>, ErrorKind> {
    match header.get(name) {
        None => Ok(None),
        Some(Member::Text(text)) => Ok(Some(text)),
        Some(Member::Json(_)) => Err(ErrorKind::MalformedToken),
    }
}

/// Checks the decoded protected header: a JSON object with unique member names, a
/// string `alg` from `allowed`, string `kid`, `typ` and `cty` when present, registered
/// parameters of their JSON types, no `crit`, no `cty` announcing a nested JWT, and none of
/// the parameters that would change what the signature covers or how the payload is read
/// (`b64`, `zip` other than `NONE`, `enc`).
pub(crate) fn read_header<'a>(
    bytes: &'a [u8],
    allowed: &[SigningAlgorithm],
) -> Result<Header<'a>, ErrorKind> {
    let mut header = json::selected_members(bytes, is_read_header_parameter)
        .map_err(|_| ErrorKind::MalformedToken)?;
    // Any `crit`, whatever its value: this crate understands no extension.
    if header.contains_key("crit") {
        return Err(ErrorKind::CriticalHeader);
    }
    let alg = string_member(&header, "alg")?.ok_or(ErrorKind::MalformedToken)?;
    // Type-checked here, taken out of the document at the end.
    string_member(&header, "kid")?;
    string_member(&header, "typ")?;
    // A nested JWT (RFC 7519 section 5.2) is never accepted: the claims must be this
    // token's own payload.
    if string_member(&header, "cty")?.is_some_and(announces_nested_jwt) {
        return Err(ErrorKind::MalformedToken);
    }
    // RFC 7797 `b64` and JWE's `zip` change how the payload is read, and JWE's `enc`
    // names a content encryption: none belongs in a signed access token's header.
    // ForgeRock AM writes `"zip": "NONE"` (no compression) into its signed tokens; that
    // value alone changes nothing.
    if header.contains_key("b64")
        || header.contains_key("enc")
        || header
            .get("zip")
            .is_some_and(|zip| !matches!(zip, Member::Text("NONE")))
    {
        return Err(ErrorKind::MalformedToken);
    }
    for (name, expected) in IGNORED_PARAMETERS {
        if header
            .get(name)
            .is_some_and(|value| !has_type(value, *expected))
        {
            return Err(ErrorKind::MalformedToken);
        }
    }
    let replicated = replicated_claims(&header)?;
    let alg = SigningAlgorithm::from_name(alg)
        .filter(|alg| allowed.contains(alg))
        .ok_or(ErrorKind::UnsupportedAlgorithm)?;
    Ok(Header {
        alg,
        kid: header.take_text("kid"),
        typ: header.take_text("typ"),
        replicated,
    })
}

/// [`read_header`] of a segment, for tests: decoded, read, and owned.
#[cfg(test)]
fn parse_header(segment: &str, allowed: &[SigningAlgorithm]) -> Result<Header<'static>, ErrorKind> {
    let owned = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
    let bytes = decode_segment(segment)?;
    let header = read_header(&bytes, allowed)?;
    Ok(Header {
        kid: header.kid.map(owned),
        typ: header.typ.map(owned),
        ..header
    })
}

/// The claims a header repeats, of their JSON types: `iss` and `sub` strings, `aud` a
/// string or an array of strings.
fn replicated_claims(header: &SelectedMembers) -> Result<Option<Box<ReplicatedClaims>>, ErrorKind> {
    let iss = string_member(header, "iss")?;
    let sub = string_member(header, "sub")?;
    let aud = match header.get("aud") {
        None => None,
        Some(Member::Text(one)) => Some(vec![one.to_owned()]),
        Some(Member::Json(Value::Array(items))) => Some(
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or(ErrorKind::MalformedToken)?,
        ),
        Some(Member::Json(_)) => return Err(ErrorKind::MalformedToken),
    };
    if iss.is_none() && sub.is_none() && aud.is_none() {
        return Ok(None);
    }
    Ok(Some(Box::new(ReplicatedClaims {
        iss: iss.map(str::to_owned),
        sub: sub.map(str::to_owned),
        aud,
    })))
}

/// The header parameters [`parse_header`] looks at; the others are checked as JSON only.
fn is_read_header_parameter(name: &str) -> bool {
    matches!(
        name,
        "crit" | "alg" | "kid" | "typ" | "cty" | "b64" | "zip" | "enc" | "iss" | "sub" | "aud"
    ) || IGNORED_PARAMETERS.iter().any(|(known, _)| *known == name)
}

/// `JWT` or `application/jwt`, in any case (RFC 7515 section 4.1.10 lets the
/// `application/` prefix be left out).
fn announces_nested_jwt(cty: &str) -> bool {
    let media_type = cty
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"));
    let subtype = media_type.map_or(cty, |_| &cty[12..]);
    subtype.eq_ignore_ascii_case("JWT")
}

/// Checks the signature over `header.payload` with the chosen key. A payload segment
/// with a dot (more than three segments) is malformed here too, whether or not the caller
/// decoded it first.
#[cfg(feature = "dev-server")]
pub(crate) fn verify_signature(
    segments: &Segments<'_>,
    key: &VerificationKey,
    alg: SigningAlgorithm,
) -> Result<(), ErrorKind> {
    if segments.payload.contains('.') {
        return Err(ErrorKind::MalformedToken);
    }
    verify_signature_over(
        segments.signing_input.as_bytes(),
        segments.signature,
        key,
        alg,
    )
}

/// Checks a base64url `signature` segment over any signing input. [`verify_signature`] is
/// this function applied to `header.payload`; the known-answer vectors (whose messages are
/// arbitrary bytes, not `header.payload`) call it directly.
#[cfg(any(test, feature = "dev-server"))]
pub(crate) fn verify_signature_over(
    signing_input: &[u8],
    signature: &str,
    key: &VerificationKey,
    alg: SigningAlgorithm,
) -> Result<(), ErrorKind> {
    let signature = decode_signature(signature, alg)?;
    verify_decoded_signature(signing_input, &signature, key, alg)
}

/// Decodes a signature segment and checks that its length can be one of `alg`'s: a
/// signature that cannot be is a malformed token, refused before any key is looked up
/// (so it never starts a key-set refetch, as an invalid signature may; an RSA signature
/// of a length some accepted modulus has, but not the key's, is checked and refused as
/// invalid, under the same refetch cooldown as any forged signature). Out of line, so
/// that `bench/fresh_instructions.sh` counts it with the signature check, as before.
#[inline(never)]
pub(crate) fn decode_signature(segment: &str, alg: SigningAlgorithm) -> Result<Vec<u8>, ErrorKind> {
    let signature = decode_segment(segment)?;
    if signature_lengths(alg).contains(&signature.len()) {
        Ok(signature)
    } else {
        Err(ErrorKind::MalformedToken)
    }
}

/// The byte lengths a signature of `alg` may have: fixed for ECDSA (the two coordinates,
/// RFC 7518 section 3.4) and Ed25519 (RFC 8032), the modulus length for RSA, whose moduli
/// this crate accepts from 2048 to 8192 bits.
fn signature_lengths(alg: SigningAlgorithm) -> std::ops::RangeInclusive<usize> {
    use SigningAlgorithm::{
        ES256, ES384, ES512, Ed25519, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512,
    };
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            let bits = crate::jwks::RSA_MODULUS_BITS;
            bits.start().div_ceil(8)..=bits.end().div_ceil(8)
        }
        ES256 | EdDSA | Ed25519 => 64..=64,
        ES384 => 96..=96,
        ES512 => 132..=132,
    }
}

/// Checks a decoded signature over `signing_input` with the chosen key.
pub(crate) fn verify_decoded_signature(
    signing_input: &[u8],
    signature: &[u8],
    key: &VerificationKey,
    alg: SigningAlgorithm,
) -> Result<(), ErrorKind> {
    // The key was parsed once, when its set was read, for each algorithm it may verify.
    let parsed = key.parsed_for(alg).ok_or(ErrorKind::UnsupportedAlgorithm)?;
    parsed
        .verify_sig(signing_input, signature)
        .map_err(|_| ErrorKind::InvalidSignature)
}

/// Decodes the payload into a JSON object with unique member names at every depth.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_payload(segment: &str) -> Result<serde_json::Map<String, Value>, ErrorKind> {
    let bytes = decode_segment(segment)?;
    json::object_with_unique_members(&bytes).map_err(|_| ErrorKind::MalformedToken)
}

/// Checks the decoded payload `bytes` as [`decode_payload`] does, builds only the members
/// `wanted` names and hands them to `read`; returns what `read` made of them.
pub(crate) fn read_payload<T>(
    bytes: &[u8],
    wanted: impl Fn(&str) -> bool,
    read: impl FnOnce(&SelectedMembers<'_>) -> Result<T, ErrorKind>,
) -> Result<T, ErrorKind> {
    let selected = json::selected_members(bytes, wanted).map_err(|_| ErrorKind::MalformedToken)?;
    read(&selected)
}

/// The decoded payload of a compact JWS verified before, or `None` if it is not one.
pub(crate) fn payload_bytes(token: &[u8]) -> Option<Vec<u8>> {
    let segments = split(std::str::from_utf8(token).ok()?).ok()?;
    decode_segment(segments.payload).ok()
}

/// base64url without padding (RFC 7515 section 2).
pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, ErrorKind> {
    base64url::decode(segment.as_bytes()).ok_or(ErrorKind::MalformedToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    /// A repeated `aud` agrees with the payload's as a set: order and repeats do not
    /// matter, a missing or extra value does, for short lists and thousands of values.
    #[test]
    fn repeated_audiences_agree_as_sets() {
        let strings = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect();
        let repeated = |aud: &[&str]| ReplicatedClaims {
            aud: Some(strings(aud)),
            ..ReplicatedClaims::default()
        };
        let agree = |header: &[&str], payload: &[&str]| {
            repeated(header).agree_with("i", None, &strings(payload))
        };
        assert!(agree(&["a", "b"], &["b", "a"]));
        assert!(agree(&["a", "a", "b"], &["b", "a", "b"]));
        assert!(!agree(&["a"], &["a", "b"]));
        assert!(!agree(&["a", "b"], &["a"]));
        assert!(!agree(&[], &["a"]));
        assert!(agree(&[], &[]));
        let many: Vec<String> = (0..5_000).map(|n| n.to_string()).collect();
        let mut reversed = many.clone();
        reversed.reverse();
        let header = ReplicatedClaims {
            aud: Some(many.clone()),
            ..ReplicatedClaims::default()
        };
        assert!(header.agree_with("i", None, &reversed));
        reversed[0] = "other".to_owned();
        assert!(!header.agree_with("i", None, &reversed));
    }

    #[test]
    fn segments_debug_shows_lengths_only() {
        let segments = split("aGVhZGVy.cGF5bG9hZA.c2ln").unwrap();
        assert_eq!(
            format!("{segments:?}"),
            "Segments { header_length: 8, payload_length: 10, signature_length: 4 }"
        );
    }

    const ALL: &[SigningAlgorithm] = &[
        SigningAlgorithm::RS256,
        SigningAlgorithm::ES256,
        SigningAlgorithm::EdDSA,
    ];

    #[test]
    fn splits_exactly_three_segments() {
        assert!(split("a.b.c").is_ok());
        for bad in ["", "a", "a.b", "..", "a..c", ".b.c", "a.b."] {
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
        // More segments: split at the first and the last dot, the payload segment keeps
        // the dots in between, and decoding it refuses them.
        for (token, payload) in [
            // A dot in the group of eight, the group of four, the tail: lengths other
            // than 4n + 1, so that the dot is what decoding refuses.
            ("h.AAA.AAAA.s", "AAA.AAAA"),
            ("h.AA.A.s", "AA.A"),
            ("h.A.A.s", "A.A"),
            ("e30.e30.e30.c2ln", "e30.e30"),
            ("h.AA.A.A.s", "AA.A.A"),
        ] {
            let segments = split(token).unwrap();
            assert_eq!(segments.payload, payload);
            assert_eq!(
                decode_segment(segments.payload),
                Err(ErrorKind::MalformedToken)
            );
        }
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
            (r#"{"alg":null}"#, Err(ErrorKind::MalformedToken)),
            (r#"{"alg":["RS256"]}"#, Err(ErrorKind::MalformedToken)),
            (
                r#"{"alg":"RS256","kid":null}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","kid":["k"]}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","typ":null}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","typ":{"t":1}}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","cty":null}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","cty":true}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","cty":"JWT"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","cty":"jwt"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","cty":"application/JWT"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","cty":"Application/jwt"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (r#"{"alg":"RS256","cty":"json"}"#, Ok(())),
            (r#"{"alg":"RS256","cty":"application/"}"#, Ok(())),
            (
                r#"{"alg":"RS256","b64":false}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","b64":true}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","zip":"DEF"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            // ForgeRock AM's signed tokens: no compression.
            (r#"{"typ":"JWT","zip":"NONE","alg":"RS256"}"#, Ok(())),
            (
                r#"{"alg":"RS256","zip":"none"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","zip":" NONE"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","zip":null}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","zip":["NONE"]}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","zip":"NONE","zip":"DEF"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","\u007aip":"DEF"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            // A JWE header's content encryption: no signed access token has one.
            (
                r#"{"alg":"RS256","enc":"A256GCM"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","enc":null}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","jku":null}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","jwk":"k"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (r#"{"alg":"RS256","x5u":1}"#, Err(ErrorKind::MalformedToken)),
            (
                r#"{"alg":"RS256","x5c":"c"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","x5c":[1]}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","x5t":null}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","x5t#S256":false}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (r#"{"alg":"RS256","x5c":[]}"#, Ok(())),
            (
                r#"{"alg":"RS256","kid":"a","kid":"b"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","\u0061lg":"none"}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (
                r#"{"alg":"RS256","jwk":{"kty":"RSA","kty":"EC"}}"#,
                Err(ErrorKind::MalformedToken),
            ),
            (r#"{"alg":"RS256","ext":null,"other":[1]}"#, Ok(())),
            (r#"{"alg":"RS256"} "#, Ok(())),
            (r#"{"alg":"RS256"} {}"#, Err(ErrorKind::MalformedToken)),
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
        for bad in [
            "[1]",
            "1",
            "\"s\"",
            "{",
            r#"{"a":1,"a":1}"#,
            r#"{"exp":1,"exp":2}"#,
            r#"{"aud":"x","\u0061ud":"y"}"#,
            r#"{"cnf":{"jkt":"a","jkt":"b"}}"#,
            r#"{"a":1} {"a":2}"#,
        ] {
            assert_eq!(
                decode_payload(&b64(bad)).err(),
                Some(ErrorKind::MalformedToken),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::{config, deep_nesting, json_object, json_value};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    const HEADER_NAMES: &[&str] = &[
        "alg", "kid", "typ", "cty", "crit", "b64", "zip", "jku", "jwk", "x5u", "x5c", "x5t",
        "x5t#S256", "enc",
    ];
    const ALLOWED: &[SigningAlgorithm] = &[
        SigningAlgorithm::RS256,
        SigningAlgorithm::ES256,
        SigningAlgorithm::EdDSA,
    ];

    /// A segment: the base64url of some bytes, or text near base64url (padding, the
    /// standard alphabet, whitespace, non-ASCII, a dot).
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
            "[A-Za-z0-9_+/=\\- .\u{e9}]{0,40}",
        ]
    }

    /// A header as JSON text: the registered parameters with values of every JSON type,
    /// duplicates, escapes, nesting.
    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => json_object(HEADER_NAMES),
            1 => json_value(HEADER_NAMES),
            1 => deep_nesting(),
        ]
    }

    proptest! {
        #![proptest_config(config(512))]

        /// Splitting answers three non-empty segments that rebuild the token, or
        /// `MalformedToken`; a token of more than three segments is split at its first
        /// and last dots, and its payload segment then never decodes.
        #[test]
        fn split_is_exact(parts in proptest::collection::vec(segment(), 0..5)) {
            let token = parts.join(".");
            match split(&token) {
                Ok(segments) => {
                    let dots = token.matches('.').count();
                    prop_assert!(dots >= 2);
                    prop_assert_eq!(dots == 2, !segments.payload.contains('.'));
                    if dots > 2 {
                        prop_assert_eq!(decode_segment(segments.payload), Err(ErrorKind::MalformedToken));
                    }
                    prop_assert_eq!(
                        format!("{}.{}", segments.signing_input, segments.signature),
                        token.clone()
                    );
                    prop_assert_eq!(
                        segments.signing_input,
                        format!("{}.{}", segments.header, segments.payload)
                    );
                    prop_assert!(!segments.header.is_empty() && !segments.payload.is_empty() && !segments.signature.is_empty());
                }
                Err(kind) => prop_assert_eq!(kind, ErrorKind::MalformedToken),
            }
        }

        /// The header answer is one of `MalformedToken`, `CriticalHeader`,
        /// `UnsupportedAlgorithm`, or a header whose `alg` is allowed and whose document
        /// has unique members, no `crit`, `b64` or `zip`.
        #[test]
        fn header_answers_are_documented(text in header_text()) {
            let segment = URL_SAFE_NO_PAD.encode(&text);
            match parse_header(&segment, ALLOWED) {
                Ok(header) => {
                    prop_assert!(ALLOWED.contains(&header.alg));
                    let document = json::object_with_unique_members(text.as_bytes());
                    prop_assert!(document.is_ok(), "accepted a header that is not a strict object: {}", text);
                    let document = document.unwrap();
                    for refused in ["crit", "b64", "zip"] {
                        prop_assert!(!document.contains_key(refused));
                    }
                    prop_assert_eq!(document.get("kid").and_then(Value::as_str), header.kid.as_deref());
                    prop_assert_eq!(document.get("typ").and_then(Value::as_str), header.typ.as_deref());
                }
                Err(kind) => prop_assert!(
                    matches!(kind, ErrorKind::MalformedToken | ErrorKind::CriticalHeader | ErrorKind::UnsupportedAlgorithm),
                    "{:?}", kind
                ),
            }
        }

        /// A header document naming a member twice is refused, whichever member.
        #[test]
        fn duplicate_header_members_are_refused(
            name in prop::sample::select(HEADER_NAMES.to_vec()),
            first in json_value(&[]),
        ) {
            let text = format!(r#"{{"alg":"RS256","{name}":{first},"{name}":"RS256"}}"#);
            if serde_json::from_str::<Value>(&text).is_ok() {
                prop_assert!(parse_header(&URL_SAFE_NO_PAD.encode(&text), ALLOWED).is_err());
            }
        }

        /// Any segment, any payload text: the payload is one strict JSON object or
        /// `MalformedToken`.
        #[test]
        fn payload_answers_are_documented(
            text in prop_oneof![json_object(&["iss", "exp", "aud"]), deep_nesting()],
            raw in segment(),
        ) {
            let decoded = decode_payload(&URL_SAFE_NO_PAD.encode(&text));
            prop_assert_eq!(decoded.is_ok(), json::object_with_unique_members(text.as_bytes()).is_ok());
            if let Err(kind) = decoded {
                prop_assert_eq!(kind, ErrorKind::MalformedToken);
            }
            if let Err(kind) = decode_payload(&raw) {
                prop_assert_eq!(kind, ErrorKind::MalformedToken);
            }
            if let Err(kind) = parse_header(&raw, ALLOWED) {
                prop_assert!(matches!(kind, ErrorKind::MalformedToken | ErrorKind::CriticalHeader | ErrorKind::UnsupportedAlgorithm));
            }
        }
    }
}
