//! What the benchmarks compare against: a bare `jsonwebtoken` decode, set up the way an
//! application without this crate would, plus running already-ready futures.

use futures_util::FutureExt as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use smart_auth::SigningAlgorithm;
use smart_auth::testing::TestIssuer;

/// The JWK the issuer publishes for `token`'s `kid`.
pub fn published_jwk(issuer: &TestIssuer, token: &str) -> serde_json::Value {
    let kid = jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid");
    let jwks = issuer.jwks();
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's key")
        .clone()
}

/// The `jsonwebtoken` key and validation for `token`, from the issuer's published JWK:
/// the same key, issuer, audience and algorithm the verifier checks.
pub fn bare_decoder(
    issuer: &TestIssuer,
    token: &str,
    alg: SigningAlgorithm,
) -> (DecodingKey, Validation) {
    let jwk: Jwk = serde_json::from_value(published_jwk(issuer, token)).expect("jwk");
    let key = DecodingKey::from_jwk(&jwk).expect("key");
    let mut validation = Validation::new(alg.name().parse().expect("algorithm"));
    validation.set_audience(&[issuer.audience()]);
    validation.set_issuer(&[issuer.url()]);
    (key, validation)
}

/// Runs a future that is ready at its first poll (verification with warm keys never
/// waits), without the cost of a runtime round trip in the measurement.
pub fn ready<F: std::future::Future>(future: F) -> F::Output {
    future.now_or_never().expect("ready without waiting")
}
