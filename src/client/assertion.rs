//! The `private_key_jwt` client assertion (RFC 7523, SMART Backend Services
//! "authentication JWT").

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::key::{ClientKey, KeyError};

/// Seconds an assertion stays valid. SMART allows at most 300; a little less leaves room
/// for clock skew between client and server.
pub(crate) const ASSERTION_LIFETIME_SECS: i64 = 240;

/// The `client_assertion_type` value for a JWT assertion.
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A signed assertion and what it says. `Debug` leaves out the signed JWT: until it
/// expires it is a credential.
pub(crate) struct Assertion {
    pub(crate) header: Value,
    pub(crate) claims: Value,
    pub(crate) jwt: String,
}

impl std::fmt::Debug for Assertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assertion")
            .field("header", &self.header)
            .field("claims", &self.claims)
            .field("jwt", &"<redacted>")
            .finish()
    }
}

/// Signs an assertion for `client_id` addressed to `audience` (the token endpoint URL,
/// unless configured otherwise) at `now` (Unix seconds): header `{alg, kid, typ: "JWT"}`
/// plus `x5t#S256` (and `x5t`) when the key names a certificate, claims `{iss, sub, aud, exp, iat,
/// jti}`.
pub(crate) fn sign(
    key: &ClientKey,
    client_id: &str,
    audience: &str,
    now: i64,
) -> Result<Assertion, KeyError> {
    let mut header = Map::new();
    header.insert("kid".into(), json!(key.kid()));
    header.insert("typ".into(), json!("JWT"));
    if let Some(thumbprint) = key.certificate_thumbprint() {
        header.insert("x5t#S256".into(), json!(thumbprint));
    }
    if let Some(thumbprint) = key.legacy_certificate_thumbprint() {
        header.insert("x5t".into(), json!(thumbprint));
    }
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "exp": now.saturating_add(ASSERTION_LIFETIME_SECS),
        "iat": now,
        "jti": jti()?,
    });
    let jwt = key.sign(header.clone(), &claims)?;
    header.insert("alg".into(), json!(key.algorithm().name()));
    Ok(Assertion {
        header: Value::Object(header),
        claims,
        jwt,
    })
}

/// 128 random bits, base64url: unique per assertion, as servers refuse a replayed `jti`.
fn jti() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Crypto)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningAlgorithm;

    fn part(jwt: &str, index: usize) -> Value {
        let segment = jwt.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    #[test]
    fn header_and_claims() {
        let key = ClientKey::generate(SigningAlgorithm::ES384, "k1").unwrap();
        let assertion = sign(&key, "app", "https://as.example/token", 1_000).unwrap();
        assert_eq!(
            part(&assertion.jwt, 0),
            json!({"alg": "ES384", "kid": "k1", "typ": "JWT"})
        );
        assert_eq!(part(&assertion.jwt, 0), assertion.header);
        let claims = part(&assertion.jwt, 1);
        assert_eq!(claims, assertion.claims);
        let jti = claims["jti"].as_str().unwrap().to_owned();
        assert_eq!(URL_SAFE_NO_PAD.decode(&jti).unwrap().len(), 16);
        assert_eq!(
            claims,
            json!({
                "iss": "app", "sub": "app", "aud": "https://as.example/token",
                "exp": 1_240, "iat": 1_000, "jti": jti,
            })
        );
        let debug = format!("{assertion:?}");
        assert!(!debug.contains(&assertion.jwt), "{debug}");
        let again = sign(&key, "app", "https://as.example/token", 1_000).unwrap();
        assert_ne!(again.claims["jti"], claims["jti"]);
    }

    /// A key that names its certificate puts `x5t#S256` in the header: base64url of the
    /// SHA-256 of the DER bytes (here the FIPS 180-2 test vector "abc").
    #[test]
    fn certificate_thumbprint_header() {
        let key = ClientKey::generate(SigningAlgorithm::RS256, "k1")
            .unwrap()
            .with_certificate_thumbprint(b"abc");
        let assertion = sign(&key, "app", "https://login.example/tenant/v2.0", 1_000).unwrap();
        let expected = json!({
            "alg": "RS256", "kid": "k1", "typ": "JWT",
            "x5t#S256": "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
        });
        assert_eq!(part(&assertion.jwt, 0), expected);
        assert_eq!(assertion.header, expected);
        assert_eq!(
            part(&assertion.jwt, 1)["aud"],
            "https://login.example/tenant/v2.0"
        );
        // With the SHA-1 thumbprint too (FIPS 180 test vector "abc"), for AD FS.
        let legacy = key.with_legacy_sha1_certificate_thumbprint(b"abc");
        let assertion = sign(
            &legacy,
            "app",
            "https://adfs.example/adfs/oauth2/token",
            1_000,
        )
        .unwrap();
        assert_eq!(
            part(&assertion.jwt, 0)["x5t"],
            "qZk-NkcGgWq6PiVxeFDCbJzQ2J0"
        );
        assert_eq!(
            part(&assertion.jwt, 0)["x5t#S256"],
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
