//! Token to claims: the whole validation of one access token, with no HTTP framework in it.
//!
//! Order of checks (RFC 8725, RFC 9068 section 4): length cap, three segments, protected
//! header (`alg` allow-list, no `crit`, `typ` policy), key by `kid` from the issuer's key
//! set, signature, then the claims (types, exact `iss`, `aud`, `exp`, `nbf`, `iat`).
//! Nothing from the payload is looked at before the signature verified.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jsonwebtoken::Algorithm;
use tracing::Instrument as _;

use crate::claims::{ClaimNames, SmartClaims};
use crate::clock::{Clock, unix_seconds};
use crate::error::{AuthError, ErrorKind};
use crate::jwks::{KeyCacheStatus, KeyStore};
use crate::jwt;
#[cfg(feature = "introspection")]
use serde_json::Map;

/// Which `typ` header values are accepted.
///
/// ```
/// use smart_auth::TokenTypePolicy;
/// assert_eq!(TokenTypePolicy::default(), TokenTypePolicy::Lenient);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenTypePolicy {
    /// `typ` absent, `JWT`, `at+jwt` or `application/at+jwt` (compared case-insensitively).
    /// Many issuers (Microsoft Entra ID among them) send `JWT`.
    #[default]
    Lenient,
    /// Only `at+jwt` or `application/at+jwt`, as RFC 9068 section 4 requires. This keeps
    /// ID tokens and other JWTs from being used as access tokens.
    Rfc9068,
}

impl TokenTypePolicy {
    fn accepts(self, typ: Option<&str>) -> bool {
        let is_access_token = |t: &str| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        };
        match (self, typ) {
            (Self::Lenient, None) => true,
            (Self::Lenient, Some(t)) => t.eq_ignore_ascii_case("JWT") || is_access_token(t),
            (Self::Rfc9068, None) => false,
            (Self::Rfc9068, Some(t)) => is_access_token(t),
        }
    }
}

/// The settings of a [`TokenVerifier`], filled by the layer's builder.
pub(crate) struct VerifierConfig {
    pub(crate) issuer: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway_secs: i64,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) token_type: TokenTypePolicy,
    pub(crate) claim_names: ClaimNames,
    pub(crate) max_token_length: usize,
    pub(crate) clock: Arc<dyn Clock>,
    #[cfg(feature = "introspection")]
    pub(crate) introspection: Option<Arc<crate::introspection::Introspector>>,
}

/// Verifies access tokens of one issuer and turns them into [`SmartClaims`].
///
/// This is the framework-free core that [`SmartAuthLayer`](crate::SmartAuthLayer) runs for
/// each request; use it directly for other transports (a gRPC interceptor, a queue
/// consumer). Cloning is cheap and clones share the key cache.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use smart_auth::SmartAuthLayer;
///
/// let verifier = SmartAuthLayer::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .build_verifier()?;
/// verifier.warm_up().await?; // optional: fetch the keys before the first request
/// let claims = verifier.verify("eyJhbGciOi...").await?;
/// println!("client {:?}", claims.client_id());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: VerifierConfig,
    keys: Arc<KeyStore>,
    warned_no_audience: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.config.issuer)
            .field("audiences", &self.config.audiences)
            .field("algorithms", &self.config.algorithms)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub(crate) fn new(config: VerifierConfig, keys: KeyStore) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                keys: Arc::new(keys),
                warned_no_audience: AtomicBool::new(false),
            }),
        }
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// Discovers and fetches the issuer's keys now, so that the first request does not
    /// wait for them. Optional: without it the first request fetches them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeysUnavailable`] when discovery or the key fetch fails.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        self.inner.keys.warm_up().await
    }

    /// The state of the key cache, for health checks and metrics.
    pub fn key_cache_status(&self) -> KeyCacheStatus {
        self.inner.keys.status()
    }

    /// Verifies one access token.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] whose [`kind`](AuthError::kind) says what failed; see
    /// [`ErrorKind`] for the list and [`ErrorKind::answer`] for the HTTP answer.
    pub async fn verify(&self, token: &str) -> Result<SmartClaims, AuthError> {
        let span = tracing::debug_span!("smart_auth.verify", outcome = tracing::field::Empty);
        let result = self.verify_inner(token).instrument(span.clone()).await;
        match &result {
            Ok(_) => span.record("outcome", "valid"),
            Err(error) => span.record("outcome", tracing::field::debug(error.kind())),
        };
        result
    }

    async fn verify_inner(&self, token: &str) -> Result<SmartClaims, AuthError> {
        let config = &self.inner.config;
        if token.len() > config.max_token_length {
            return Err(ErrorKind::TokenTooLarge.into());
        }
        #[cfg(feature = "introspection")]
        if let Some(introspector) = &config.introspection {
            use crate::introspection::IntrospectionMode;
            let is_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
            match introspector.mode() {
                IntrospectionMode::Only => {
                    return self.verify_by_introspection(introspector, token).await;
                }
                IntrospectionMode::NonJwtTokens if !is_jwt => {
                    return self.verify_by_introspection(introspector, token).await;
                }
                IntrospectionMode::AfterJwt => {
                    let claims = self.verify_jwt(token).await?;
                    introspector.introspect(token).await?;
                    return Ok(claims);
                }
                _ => {}
            }
        }
        self.verify_jwt(token).await
    }

    #[cfg(feature = "introspection")]
    async fn verify_by_introspection(
        &self,
        introspector: &crate::introspection::Introspector,
        token: &str,
    ) -> Result<SmartClaims, AuthError> {
        let answer = introspector.introspect(token).await?;
        let claims =
            SmartClaims::from_payload(Map::clone(&answer), &self.inner.config.claim_names)?;
        // RFC 7662 makes `aud` optional: checked only when the answer has one.
        self.check_claims(&claims, !claims.audiences().is_empty())?;
        Ok(claims)
    }

    async fn verify_jwt(&self, token: &str) -> Result<SmartClaims, AuthError> {
        let config = &self.inner.config;
        let segments = jwt::split(token)?;
        let header = jwt::parse_header(segments.header, &config.algorithms)?;
        if !config.token_type.accepts(header.typ.as_deref()) {
            return Err(ErrorKind::UnsupportedTokenType.into());
        }
        let chosen = self
            .inner
            .keys
            .key_for(header.kid.as_deref(), header.alg)
            .await?;
        jwt::verify_signature(&segments, chosen.key(), header.alg)?;
        let payload = jwt::decode_payload(segments.payload)?;
        let claims = SmartClaims::from_payload(payload, &config.claim_names)?;
        self.check_claims(&claims, true)?;
        Ok(claims)
    }

    fn check_audience(&self, claims: &SmartClaims) -> Result<(), ErrorKind> {
        let config = &self.inner.config;
        if config.audiences.is_empty() {
            if !self.inner.warned_no_audience.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "no audience configured: tokens for any audience of this issuer are accepted; \
                     set the FHIR base URL as the audience"
                );
            }
        } else if !claims
            .audiences()
            .iter()
            .any(|aud| config.audiences.contains(aud))
        {
            return Err(ErrorKind::WrongAudience);
        }
        Ok(())
    }

    /// Issuer, audience (when `audience_required`) and time checks.
    fn check_claims(&self, claims: &SmartClaims, audience_required: bool) -> Result<(), ErrorKind> {
        let config = &self.inner.config;
        if claims.issuer() != config.issuer {
            return Err(ErrorKind::WrongIssuer);
        }
        if audience_required {
            self.check_audience(claims)?;
        }
        let now = unix_seconds(config.clock.now());
        let leeway = config.leeway_secs;
        if now >= claims.expires_at().saturating_add(leeway) {
            return Err(ErrorKind::Expired);
        }
        let in_future = |at: Option<i64>| at.is_some_and(|at| at > now.saturating_add(leeway));
        if in_future(claims.not_before()) || in_future(claims.issued_at()) {
            return Err(ErrorKind::NotYetValid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_policies() {
        let lenient = [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("at+jwt"),
            Some("application/at+jwt"),
            Some("AT+JWT"),
        ];
        for typ in lenient {
            assert!(TokenTypePolicy::Lenient.accepts(typ), "{typ:?}");
        }
        for typ in [Some("JOSE"), Some("dpop+jwt"), Some("id_token"), Some("")] {
            assert!(!TokenTypePolicy::Lenient.accepts(typ), "{typ:?}");
        }
        assert!(TokenTypePolicy::Rfc9068.accepts(Some("at+jwt")));
        assert!(TokenTypePolicy::Rfc9068.accepts(Some("application/at+jwt")));
        for typ in [None, Some("JWT")] {
            assert!(!TokenTypePolicy::Rfc9068.accepts(typ), "{typ:?}");
        }
    }
}
