//! Checking a `private_key_jwt` client assertion (RFC 7523 section 3, SMART Backend
//! Services "Authenticating to the token endpoint").

use std::collections::HashMap;

use serde_json::Value;

use super::clients::{ClientRegistration, Credential};
use super::oauth::OAuthError;
use crate::algorithm::SigningAlgorithm;
use crate::jwks::{KeySet, Selection};
use crate::jwt;

/// The longest an assertion may live: SMART says `exp` no more than five minutes ahead.
pub(crate) const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;

/// The parts of an assertion read before its signature is checked: only what is needed to
/// find the client and its key.
pub(crate) struct UnverifiedAssertion<'a> {
    segments: jwt::Segments<'a>,
    header: jwt::Header,
    jku: Option<String>,
    pub(crate) issuer: String,
}

/// Reads the header and the `iss` of an assertion.
pub(crate) fn read(assertion: &str) -> Result<UnverifiedAssertion<'_>, OAuthError> {
    let bad = || OAuthError::invalid_client("the client assertion is not a valid signed JWT");
    if assertion.len() > 16 * 1024 {
        return Err(bad());
    }
    let segments = jwt::split(assertion).map_err(|_| bad())?;
    let algorithms: Vec<_> = SigningAlgorithm::DEFAULT
        .iter()
        .map(|a| a.to_jsonwebtoken())
        .collect();
    let header = jwt::parse_header(segments.header, &algorithms).map_err(|_| bad())?;
    let header_json = jwt::decode_payload(segments.header).map_err(|_| bad())?;
    let jku = match header_json.get("jku") {
        None => None,
        Some(Value::String(jku)) => Some(jku.clone()),
        Some(_) => return Err(bad()),
    };
    let claims = jwt::decode_payload(segments.payload).map_err(|_| bad())?;
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_owned();
    Ok(UnverifiedAssertion {
        segments,
        header,
        jku,
        issuer,
    })
}

/// Where the client's keys come from for this assertion: the registered set, or the
/// registered URL (which a `jku` header must equal).
pub(crate) enum KeySource<'a> {
    Inline(&'a Value),
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
            return Err(OAuthError::invalid_client(
                "this client authenticates with a client secret",
            ));
        }
    };
    if let Some(jku) = &assertion.jku {
        let registered = match source {
            KeySource::Url(uri) => Some(uri),
            KeySource::Inline(_) => None,
        };
        if registered != Some(jku.as_str()) {
            return Err(OAuthError::invalid_client(
                "jku does not match the registered JWKS URL",
            ));
        }
    }
    Ok(source)
}

/// Verifies the signature with the client's key set and checks the claims. `seen_jtis`
/// maps `(client_id, jti)` to the assertion's `exp`, for replay detection.
pub(crate) fn verify(
    assertion: &UnverifiedAssertion<'_>,
    jwks: &[u8],
    client_id: &str,
    token_endpoint: &str,
    now: i64,
    seen_jtis: &mut HashMap<(String, String), i64>,
) -> Result<(), OAuthError> {
    let keys = KeySet::parse(jwks)
        .map_err(|_| OAuthError::invalid_client("the client has no usable key"))?;
    let index = match keys.select(assertion.header.kid.as_deref(), assertion.header.alg) {
        Selection::Found(index) => index,
        Selection::NotFound | Selection::Unusable => {
            return Err(OAuthError::invalid_client(
                "no single registered key fits the assertion's kid and alg",
            ));
        }
    };
    jwt::verify_signature(&assertion.segments, keys.get(index), assertion.header.alg)
        .map_err(|_| OAuthError::invalid_client("the client assertion's signature is not valid"))?;
    let claims = jwt::decode_payload(assertion.segments.payload).map_err(|_| {
        OAuthError::invalid_client("the client assertion is not a valid signed JWT")
    })?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(OAuthError::invalid_client(
            "iss and sub must both be the client id",
        ));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == token_endpoint,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud == token_endpoint),
        _ => false,
    };
    if !audience_ok {
        return Err(OAuthError::invalid_client(
            "aud must be the token endpoint URL",
        ));
    }
    let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
        return Err(OAuthError::invalid_client("exp must be an integer"));
    };
    if exp <= now {
        return Err(OAuthError::invalid_client(
            "the client assertion has expired",
        ));
    }
    if exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return Err(OAuthError::invalid_client(
            "exp is more than five minutes ahead",
        ));
    }
    let Some(jti) = text("jti").filter(|jti| !jti.is_empty()) else {
        return Err(OAuthError::invalid_client("jti is required"));
    };
    seen_jtis.retain(|_, expires| *expires > now);
    let key = (client_id.to_owned(), jti.to_owned());
    if seen_jtis.contains_key(&key) {
        return Err(OAuthError::invalid_client(
            "this client assertion was already used",
        ));
    }
    seen_jtis.insert(key, exp);
    Ok(())
}
