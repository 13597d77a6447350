//! Checking a `private_key_jwt` client assertion (RFC 7523 section 3, RFC 7521 section
//! 4.2, SMART Backend Services "Authenticating to the token endpoint").
//!
//! The header and the claims are parsed once, strictly (member names unique at every
//! depth), before the signature is checked; the claim rules run only on a verified
//! assertion, so an unauthenticated caller learns nothing beyond "not a valid assertion".

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::clients::{ClientRegistration, Credential};
use super::oauth::OAuthError;
use crate::algorithm::SigningAlgorithm;
use crate::json::object_with_unique_members;
use crate::jwks::{KeySet, Selection};
use crate::jwt;

/// The longest an assertion may live: SMART says `exp` no more than five minutes ahead.
pub(crate) const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;

/// The longest accepted assertion, in characters.
const MAX_ASSERTION_LEN: usize = 16 * 1024;

/// The longest accepted `jti` (the replay cache keeps each one for the assertion's life).
const MAX_JTI_LEN: usize = 256;

/// An assertion whose header passed the rules and whose claims are a strict JSON object,
/// signature not yet checked.
pub(crate) struct UnverifiedAssertion<'a> {
    segments: jwt::Segments<'a>,
    alg: SigningAlgorithm,
    kid: String,
    jku: Option<String>,
    claims: Map<String, Value>,
    /// The `iss` claim: which client this claims to be.
    pub(crate) issuer: String,
}

/// What a verified assertion leaves for replay detection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub(crate) jti: String,
    /// Until when the assertion could be accepted (its `exp` plus the leeway).
    pub(crate) usable_until: i64,
}

fn not_a_valid_jwt() -> OAuthError {
    OAuthError::invalid_client("the client assertion is not a valid signed JWT")
}

fn strict_object(segment: &str) -> Result<Map<String, Value>, OAuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| not_a_valid_jwt())?;
    object_with_unique_members(&bytes).map_err(|_| not_a_valid_jwt())
}

/// Whether a `typ` value names the media type `application/jwt` (SMART), or
/// `application/client-authentication+jwt`, the explicit type RFC 7523bis gives client
/// assertions (RFC 7515 section 4.1.9: compared without case, `application/` implied when
/// there is no `/`). Other types (`at+jwt`) are tokens of another kind.
fn is_jwt_type(typ: &str) -> bool {
    let subtype = match typ.split_once('/') {
        Some((kind, subtype)) if kind.eq_ignore_ascii_case("application") => subtype,
        Some(_) => return false,
        None => typ,
    };
    subtype.eq_ignore_ascii_case("jwt") || subtype.eq_ignore_ascii_case("client-authentication+jwt")
}

/// Reads an assertion's header and claims.
///
/// Header rules: `alg` a string naming one of the asymmetric algorithms this crate
/// verifies; `kid` a non-empty string (SMART); `typ` a string naming the `JWT` media type
/// (SMART) or `client-authentication+jwt` (RFC 7523bis); no `crit` (no extension is understood) and no `cty` (the payload is a claims
/// set, not a nested JWT); `jku`, when present, a string. Claims: a JSON object with a
/// non-empty string `iss`.
pub(crate) fn read(assertion: &str) -> Result<UnverifiedAssertion<'_>, OAuthError> {
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(not_a_valid_jwt());
    }
    let segments = jwt::split(assertion).map_err(|_| not_a_valid_jwt())?;
    let header = strict_object(segments.header)?;
    let alg = match header.get("alg") {
        Some(Value::String(name)) => SigningAlgorithm::from_name(name).ok_or_else(|| {
            OAuthError::invalid_client("the client assertion's alg is not supported")
        })?,
        _ => return Err(not_a_valid_jwt()),
    };
    let kid = match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
        _ => {
            return Err(OAuthError::invalid_client(
                "the client assertion's header needs a kid string",
            ));
        }
    };
    match header.get("typ") {
        Some(Value::String(typ)) if is_jwt_type(typ) => {}
        _ => {
            return Err(OAuthError::invalid_client(
                "the client assertion's header needs typ JWT",
            ));
        }
    }
    if header.contains_key("crit") || header.contains_key("cty") {
        return Err(OAuthError::invalid_client(
            "the client assertion's header has crit or cty",
        ));
    }
    let jku = match header.get("jku") {
        None => None,
        Some(Value::String(jku)) => Some(jku.clone()),
        Some(_) => return Err(not_a_valid_jwt()),
    };
    // And the rules the resource server holds access tokens' headers to: no `b64` (RFC
    // 7797), no JWE `enc`, no `zip` other than `NONE`, the registered parameters (`x5c`,
    // `jwk`, …) of their JSON types, and claims repeated in the header (RFC 7519 section
    // 5.3) the same as in the claims.
    let header_bytes = jwt::decode_segment(segments.header).map_err(|_| not_a_valid_jwt())?;
    let jose = jwt::read_header(&header_bytes, SigningAlgorithm::DEFAULT)
        .map_err(|_| not_a_valid_jwt())?;
    let claims = strict_object(segments.payload)?;
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) if !iss.is_empty() => iss.clone(),
        _ => return Err(OAuthError::invalid_client("iss must be the client id")),
    };
    if let Some(replicated) = &jose.replicated {
        let sub = claims.get("sub").and_then(Value::as_str);
        let aud: Vec<String> = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|value| value.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if !replicated.agree_with(&issuer, sub, &aud) {
            return Err(OAuthError::invalid_client(
                "the client assertion's header repeats a claim with another value",
            ));
        }
    }
    Ok(UnverifiedAssertion {
        segments,
        alg,
        kid,
        jku,
        claims,
        issuer,
    })
}

impl UnverifiedAssertion<'_> {
    /// Whether the `sub` claim is exactly `client_id` (checked again after the signature).
    pub(crate) fn subject_is(&self, client_id: &str) -> bool {
        self.claims.get("sub").and_then(Value::as_str) == Some(client_id)
    }

    /// Whether no key of `keys` carries this assertion's `kid`: the client may have
    /// rotated its keys since the set was fetched.
    pub(crate) fn kid_is_missing_from(&self, keys: &KeySet) -> bool {
        keys.select(Some(&self.kid), self.alg) == Selection::NotFound
    }
}

/// Where the client's keys come from for this assertion: the registered set, or the
/// registered URL (which a `jku` header must equal).
pub(crate) enum KeySource<'a> {
    Inline(&'a Arc<KeySet>),
    Url(&'a str),
}

pub(crate) fn key_source<'a>(
    client: &'a ClientRegistration,
    assertion: &UnverifiedAssertion<'_>,
) -> Result<KeySource<'a>, OAuthError> {
    let source = match &client.credential {
        Credential::Jwks(jwks) => KeySource::Inline(jwks),
        Credential::JwksUri(uri) => KeySource::Url(uri),
        Credential::Secret(_) => {
            return Err(no_registered_key());
        }
    };
    if let Some(jku) = &assertion.jku {
        let registered = match source {
            KeySource::Url(uri) => Some(uri),
            KeySource::Inline(_) => None,
        };
        if registered != Some(jku.as_str()) {
            return Err(no_registered_key());
        }
    }
    Ok(source)
}

/// The one answer for an assertion whose client, `kid`, `alg` or `jku` names no key
/// registered for `private_key_jwt`: before the signature is checked, the answer must not
/// tell an unknown client id from a client that uses a secret or from a key-based one (an
/// attacker would learn which ids exist and how they authenticate).
pub(crate) fn no_registered_key() -> OAuthError {
    OAuthError::invalid_client(
        "the assertion's client, kid, alg or jku names no key registered for private_key_jwt",
    )
}

/// Which way a fractional NumericDate is brought to whole seconds.
#[derive(Debug, Clone, Copy)]
enum Rounding {
    Down,
    Up,
}

/// A NumericDate claim (RFC 7519 section 2: seconds, a fraction allowed) in whole
/// seconds: absent is `Ok(None)`; a JSON integer as it is; another finite number rounded
/// as `rounding` says. `exp` is rounded down and `nbf` and `iat` up, so that rounding
/// never makes an assertion valid earlier or longer. Anything else (a string, `null`, a
/// number beyond the range of `i64`) is refused.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    rounding: Rounding,
) -> Result<Option<i64>, OAuthError> {
    // -2^63 and 2^63: every whole `f64` in [MIN, MAX) converts to `i64` exactly.
    const MIN: f64 = -9_223_372_036_854_775_808.0;
    const MAX: f64 = 9_223_372_036_854_775_808.0;
    let refused =
        || OAuthError::invalid_client("exp, nbf and iat must be NumericDate numbers (seconds)");
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(number) = value else {
        return Err(refused());
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(Some(seconds));
    }
    let seconds = number.as_f64().ok_or_else(refused)?;
    let whole = match rounding {
        Rounding::Down => seconds.floor(),
        Rounding::Up => seconds.ceil(),
    };
    if whole.is_finite() && (MIN..MAX).contains(&whole) {
        // In range and whole: the conversion is exact.
        Ok(Some(whole as i64))
    } else {
        Err(refused())
    }
}

/// What the future-side rules allow beyond the leeway: a second, for clients that round
/// their clock to the nearest second (`Math.round(Date.now() / 1000)`, which RFC 7519
/// section 2 permits) while this server rounds its own down: `exp = now + 300` from such a
/// client reads as 301 here half the time.
const ROUNDING_ALLOWANCE_SECS: i64 = 1;

/// The time rules, with `leeway` seconds of tolerated clock difference: `exp` required,
/// after `now - leeway` and at most five minutes (plus leeway and a second for rounding)
/// ahead; `nbf` and `iat`, when present, not after `now + leeway` and a second, and `iat`
/// before `exp`. Fractional times are rounded as [`numeric_date`] says. Returns `exp`.
fn check_times(claims: &Map<String, Value>, now: i64, leeway: i64) -> Result<i64, OAuthError> {
    let ahead = leeway.saturating_add(ROUNDING_ALLOWANCE_SECS);
    let Some(exp) = numeric_date(claims, "exp", Rounding::Down)? else {
        return Err(OAuthError::invalid_client("exp is required"));
    };
    if exp.saturating_add(leeway) <= now {
        return Err(OAuthError::invalid_client(
            "the client assertion has expired",
        ));
    }
    if exp > now.saturating_add(MAX_ASSERTION_LIFETIME_SECS.saturating_add(ahead)) {
        return Err(OAuthError::invalid_client(
            "exp is more than five minutes ahead",
        ));
    }
    let nbf = numeric_date(claims, "nbf", Rounding::Up)?;
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(ahead)) {
        return Err(OAuthError::invalid_client(
            "the client assertion is not valid yet (nbf)",
        ));
    }
    let iat = numeric_date(claims, "iat", Rounding::Up)?;
    if iat.is_some_and(|iat| iat > now.saturating_add(ahead) || iat >= exp) {
        return Err(OAuthError::invalid_client(
            "iat is in the future or not before exp",
        ));
    }
    Ok(exp)
}

/// `aud` names this server and nothing else: one of `own` (the token endpoint URL, as
/// SMART writes it, or the issuer identifier, as RFC 7523bis prefers and RFC 9126 section
/// 2 requires servers to accept; each under every host name the server answers to), as a
/// string or as an array whose members are all such strings (RFC 7519 section 4.1.3). An
/// array with any other member is refused: the assertion was also meant for someone else,
/// who could replay it here.
///
/// The comparison is exact: RFC 7519 section 2 compares `StringOrURI` values as
/// case-sensitive strings, without canonicalisation, so `LOCALHOST`, a trailing slash, a
/// default port or userinfo make another audience.
fn audience_is_only(claims: &Map<String, Value>, own: &[String]) -> bool {
    let is_own = |aud: &Value| matches!(aud, Value::String(aud) if own.contains(aud));
    match claims.get("aud") {
        Some(aud @ Value::String(_)) => is_own(aud),
        Some(Value::Array(auds)) => !auds.is_empty() && auds.iter().all(is_own),
        _ => false,
    }
}

/// Verifies the signature with the client's key set, then checks the claims. The caller
/// records the returned `jti` for replay detection.
pub(crate) fn verify(
    assertion: &UnverifiedAssertion<'_>,
    keys: &KeySet,
    client_id: &str,
    own_audiences: &[String],
    now: i64,
    leeway: i64,
) -> Result<Verified, OAuthError> {
    let index = match keys.select(Some(&assertion.kid), assertion.alg) {
        Selection::Found(index) => index,
        Selection::NotFound
        | Selection::Unusable
        | Selection::Several(_)
        | Selection::Ambiguous => return Err(no_registered_key()),
    };
    jwt::verify_signature(&assertion.segments, keys.get(index), assertion.alg)
        .map_err(|_| OAuthError::invalid_client("the client assertion's signature is not valid"))?;
    let claims = &assertion.claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(OAuthError::invalid_client(
            "iss and sub must both be the client id",
        ));
    }
    if !audience_is_only(claims, own_audiences) {
        return Err(OAuthError::invalid_client(
            "aud must be the token endpoint URL (or the issuer), and only this server",
        ));
    }
    let exp = check_times(claims, now, leeway)?;
    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => jti.clone(),
        _ => {
            return Err(OAuthError::invalid_client(
                "jti must be a string of 1 to 256 bytes",
            ));
        }
    };
    Ok(Verified {
        jti,
        usable_until: exp.saturating_add(leeway),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn typ_names_the_jwt_media_type() {
        for good in [
            "JWT",
            "jwt",
            "Jwt",
            "application/jwt",
            "APPLICATION/JWT",
            "client-authentication+jwt",
            "application/client-authentication+jwt",
            "Client-Authentication+JWT",
        ] {
            assert!(is_jwt_type(good), "{good}");
        }
        for bad in [
            "",
            "at+jwt",
            "JWS",
            "JOSE",
            " JWT",
            "JWT ",
            "text/jwt",
            "application/",
            "jwt/",
            "application/at+jwt",
            "client-authentication",
            "client-authentication+jws",
            "text/client-authentication+jwt",
        ] {
            assert!(!is_jwt_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn time_edges() {
        let now = 1_000;
        let rows: &[(Value, i64, bool)] = &[
            (json!({"exp": 1_001}), 0, true),
            (json!({"exp": 1_000}), 0, false),
            (json!({"exp": 1_000}), 1, true),
            (json!({"exp": 995}), 5, false),
            (json!({"exp": 1_300}), 0, true),
            // A second beyond five minutes (and the leeway) for clients that round
            // their clock up: `now + 300` read a second later.
            (json!({"exp": 1_301}), 0, true),
            (json!({"exp": 1_302}), 0, false),
            (json!({"exp": 1_311}), 10, true),
            (json!({"exp": 1_312}), 10, false),
            (json!({"exp": 1_100, "nbf": 1_000}), 0, true),
            (json!({"exp": 1_100, "nbf": 1_001}), 0, true),
            (json!({"exp": 1_100, "nbf": 1_002}), 0, false),
            (json!({"exp": 1_100, "nbf": 1_031}), 30, true),
            (json!({"exp": 1_100, "nbf": 1_032}), 30, false),
            (json!({"exp": 1_100, "iat": 1_000}), 0, true),
            (json!({"exp": 1_100, "iat": 1_001}), 0, true),
            (json!({"exp": 1_100, "iat": 1_002}), 0, false),
            (json!({"exp": 1_100, "iat": 1_100}), 200, false),
            // Fractions (RFC 7519 section 2): exp rounded down, nbf and iat up.
            (json!({"exp": 1_100.0}), 0, true),
            (json!({"exp": 1_001.0}), 0, true),
            (json!({"exp": 1_000.9}), 0, false),
            (json!({"exp": 1_000.9}), 1, true),
            (json!({"exp": 1_301.9}), 0, true),
            (json!({"exp": 1_302.5}), 0, false),
            (json!({"exp": 1_100, "nbf": 999.5}), 0, true),
            (json!({"exp": 1_100, "nbf": 1_000.1}), 0, true),
            (json!({"exp": 1_100, "nbf": 1_001.1}), 0, false),
            (json!({"exp": 1_100, "nbf": 1_001.1}), 1, true),
            (json!({"exp": 1_100, "iat": 999.1}), 0, true),
            (json!({"exp": 1_100, "iat": 1_001.5}), 0, false),
            (json!({"exp": 1_100.5, "iat": 1_100.2}), 200, false),
            (json!({"exp": 1_100, "nbf": -0.5}), 0, true),
            // Beyond the range of i64.
            (json!({"exp": 1e300}), 0, false),
            (json!({"exp": -1e300}), 0, false),
            (json!({"exp": 9.3e18}), 0, false),
            (json!({"exp": 1_100, "nbf": -1e300}), 0, false),
            (json!({"exp": 1_100, "iat": -9.3e18}), 0, false),
            (json!({"exp": 1_100, "iat": 1e19}), 0, false),
            (json!({"exp": "1100"}), 0, false),
            (json!({"exp": null}), 0, false),
            (json!({"exp": 1_100, "nbf": null}), 0, false),
            (json!({"exp": 1_100, "iat": true}), 0, false),
            (json!({"exp": u64::MAX}), 0, false),
            (json!({}), 0, false),
        ];
        for (row, leeway, ok) in rows {
            assert_eq!(
                check_times(&claims(row.clone()), now, *leeway).is_ok(),
                *ok,
                "{row} leeway {leeway}"
            );
        }
    }

    #[test]
    fn audience_forms() {
        let own = [
            "http://127.0.0.1:1/token".to_owned(),
            "http://localhost:1/token".to_owned(),
            "http://127.0.0.1:1".to_owned(),
            "http://localhost:1".to_owned(),
        ];
        let [ip, name, issuer, named_issuer] = [&own[0], &own[1], &own[2], &own[3]];
        let rows = [
            (json!({"aud": ip}), true),
            (json!({"aud": name}), true),
            (json!({"aud": [ip]}), true),
            (json!({"aud": [name]}), true),
            // The issuer (RFC 7523bis, RFC 9126), and arrays of this server's names only.
            (json!({"aud": issuer}), true),
            (json!({"aud": named_issuer}), true),
            (json!({"aud": [issuer, ip]}), true),
            (json!({"aud": [ip, ip]}), true),
            (json!({"aud": [ip, name]}), true),
            (json!({"aud": [ip, "https://other"]}), false),
            (json!({"aud": [issuer, "https://other"]}), false),
            (json!({"aud": [ip, 1]}), false),
            (json!({"aud": [ip, null]}), false),
            (json!({"aud": []}), false),
            (json!({"aud": "http://127.0.0.1:1/token/"}), false),
            (json!({"aud": "http://localhost:1/token/"}), false),
            (json!({"aud": "http://127.0.0.1:1/token?x=1"}), false),
            (json!({"aud": "http://localhost:1/token?"}), false),
            (json!({"aud": "http://127.0.0.1:1/token#f"}), false),
            (json!({"aud": "http://localhost:1/token#"}), false),
            (json!({"aud": "http://127.0.0.1:2/token"}), false),
            (json!({"aud": "http://localhost:2/token"}), false),
            (json!({"aud": "http://localhost/token"}), false),
            (json!({"aud": "http://127.0.0.1:1/tokens"}), false),
            (json!({"aud": "http://127.0.0.1:1/revoke"}), false),
            (json!({"aud": "http://localhost:1/introspect"}), false),
            (json!({"aud": "http://127.0.0.1:1/"}), false),
            (json!({"aud": "http://localhost:1/"}), false),
            (json!({"aud": "http://LOCALHOST:1"}), false),
            (json!({"aud": "https://127.0.0.1:1"}), false),
            (json!({"aud": "http://LOCALHOST:1/token"}), false),
            (json!({"aud": "http://Localhost:1/token"}), false),
            (json!({"aud": "HTTP://127.0.0.1:1/token"}), false),
            (json!({"aud": "http://127.0.0.1:1/TOKEN"}), false),
            (json!({"aud": "https://127.0.0.1:1/token"}), false),
            (json!({"aud": "https://localhost:1/token"}), false),
            (json!({"aud": "http://a@127.0.0.1:1/token"}), false),
            (json!({"aud": "http://a@localhost:1/token"}), false),
            (
                json!({"aud": "http://localhost:1@127.0.0.1:1/token"}),
                false,
            ),
            (json!({"aud": "http://localhost.:1/token"}), false),
            (json!({"aud": "http://127.1:1/token"}), false),
            (json!({"aud": "http://[::1]:1/token"}), false),
            (json!({"aud": "http://127.0.0.1:01/token"}), false),
            (json!({"aud": "http://127.0.0.1:1/./token"}), false),
            (json!({"aud": "http://127.0.0.1:1//token"}), false),
            (json!({"aud": " http://127.0.0.1:1/token"}), false),
            (json!({"aud": "http://127.0.0.1:1/token "}), false),
            (json!({"aud": "http://127.0.0.1:1/token\u{0}"}), false),
            (json!({"aud": "127.0.0.1:1/token"}), false),
            (json!({"aud": "localhost:1"}), false),
            (json!({"aud": ""}), false),
            (json!({"aud": null}), false),
            (json!({"aud": {"0": ip}}), false),
            (json!({"aud": [[ip]]}), false),
            (json!({}), false),
        ];
        for (row, ok) in rows {
            assert_eq!(audience_is_only(&claims(row.clone()), &own), ok, "{row}");
        }
        // With no own URL, nothing is an audience.
        assert!(!audience_is_only(&claims(json!({"aud": ip})), &[]));
    }
}
