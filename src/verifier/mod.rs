//! Token to claims: the whole validation of one access token, with no HTTP framework in it.
//!
//! Order of checks (RFC 8725, RFC 9068 section 4): length cap, three segments, protected
//! header (`alg` allow-list, no `crit`, `typ` policy), key by `kid` from the issuer's key
//! set, signature, then the claims (types, exact `iss`, `aud`, `exp`, `nbf`, `iat`).
//! Nothing from the payload is looked at before the signature verified.

mod builder;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::algorithm::SigningAlgorithm;
use tracing::Instrument as _;

use crate::claims::{ClaimNames, SmartClaims};
use crate::clock::{Clock, unix_seconds};
use crate::error::{AuthError, ErrorKind};
use crate::fetch::differs_only_by_final_slash;
use crate::jwks::{KeyCacheStatus, KeyStore};
use crate::jwt;
use crate::token_cache::{ClaimWindow, KeySetStamp, TokenCache};

use builder::Validator;
pub use builder::VerifierBuilder;
pub(crate) use builder::checked_url;
#[cfg(feature = "client")]
pub(crate) use builder::is_clean_name;

/// Which `typ` header values are accepted.
///
/// ```
/// use smart_auth::TokenTypePolicy;
/// assert_eq!(TokenTypePolicy::default(), TokenTypePolicy::Lenient);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TokenTypePolicy {
    /// `typ` absent, `JWT`, `application/jwt`, `at+jwt` or `application/at+jwt` (compared
    /// case-insensitively; RFC 7515 section 4.1.9 reads a `typ` without a `/` as if
    /// `application/` preceded it). Many issuers (Microsoft Entra ID among them) send `JWT`.
    #[default]
    Lenient,
    /// Only `at+jwt` or `application/at+jwt`, as RFC 9068 section 4 requires. This keeps
    /// ID tokens and other JWTs from being used as access tokens. The claims RFC 9068
    /// section 2.2 requires besides `iss` and `exp` must be there too: `aud` (naming some
    /// audience, also where the audience check would let a token without one pass: no
    /// audience configured, or a client listed with
    /// [`accept_missing_audience_for_clients`](crate::VerifierBuilder::accept_missing_audience_for_clients)),
    /// a client id (from the [configured claims](crate::VerifierBuilder::client_id_claims)),
    /// `sub`, `iat` and `jti`.
    Rfc9068,
    /// Only `at+jwt` or `application/at+jwt`, as with [`Rfc9068`](Self::Rfc9068), without
    /// the further claims RFC 9068 requires: for issuers that type their access tokens but
    /// leave one of those claims out (Duende IdentityServer's client-credentials tokens
    /// carry no `sub`). In configuration documents: `"at+jwt"`.
    #[serde(rename = "at+jwt")]
    AtJwt,
}

/// Whether a token carries the claims RFC 9068 section 2.2 requires of a JWT access token
/// that the other checks do not demand already (`aud` among them: the audience check may
/// let a token without one pass).
fn has_rfc9068_claims(claims: &SmartClaims) -> bool {
    claims
        .audiences()
        .any(|audience| !audience.trim().is_empty())
        && claims.client_id().is_some()
        && claims.sub().is_some()
        && claims.iat().is_some()
        && claims.jti().is_some()
}

impl TokenTypePolicy {
    fn accepts(self, typ: Option<&str>) -> bool {
        let is_access_token = |t: &str| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        };
        match (self, typ) {
            (Self::Lenient, None) => true,
            (Self::Lenient, Some(t)) => {
                t.eq_ignore_ascii_case("JWT")
                    || t.eq_ignore_ascii_case("application/jwt")
                    || is_access_token(t)
            }
            (Self::Rfc9068 | Self::AtJwt, None) => false,
            (Self::Rfc9068 | Self::AtJwt, Some(t)) => is_access_token(t),
        }
    }
}

/// How a token's audience is checked (RFC 9068 section 4: the resource server must make
/// sure the token was meant for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AudienceRule {
    /// `aud` must name at least one of `audiences` (the configured audiences), or name
    /// none while the token's client id is one of `clients_without_audience`.
    OneOf {
        audiences: Vec<String>,
        clients_without_audience: Vec<String>,
    },
    /// No audience configured: the verifier cannot tell whom a token was minted for, so it
    /// accepts only tokens that say they are access tokens (`typ` `at+jwt` or
    /// `application/at+jwt`, RFC 9068 section 2.1). ID tokens and other JWTs of the same
    /// issuer, whose `aud` is some client, are refused.
    TypedAccessTokensOnly,
    /// Any audience, by the user's explicit choice
    /// ([`insecure_accept_any_audience`](crate::SmartAuthBuilder::insecure_accept_any_audience)).
    AnyInsecure,
}

/// The settings of a [`TokenVerifier`], filled by its [`VerifierBuilder`].
pub(crate) struct VerifierConfig {
    pub(crate) issuer: String,
    pub(crate) audience: AudienceRule,
    pub(crate) leeway_secs: i64,
    pub(crate) algorithms: Vec<SigningAlgorithm>,
    pub(crate) token_type: TokenTypePolicy,
    /// Every token must name its client.
    pub(crate) require_client_id: bool,
    pub(crate) claim_names: ClaimNames,
    pub(crate) max_token_length: usize,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) validator: Option<Validator>,
    #[cfg(feature = "introspection")]
    pub(crate) introspection: Option<Arc<crate::introspection::Introspector>>,
}

/// Verifies access tokens of one issuer and turns them into [`SmartClaims`].
///
/// This is the framework-free core that [`SmartAuthLayer`](crate::SmartAuthLayer) runs for
/// each request; use it directly for other transports (a gRPC interceptor, a queue
/// consumer). Cloning is cheap and clones share the key cache and the
/// [token cache](crate::TokenCachePolicy). Verifying needs a Tokio runtime (key fetches are
/// spawned and timed on it); any web framework, or none, may sit on top.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use smart_auth::TokenVerifier;
///
/// let verifier = TokenVerifier::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .build()?;
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
    /// This verifier's own cache of verified tokens (`None` when turned off).
    tokens: Option<TokenCache>,
    /// Whether the audience rule's warning was logged (once per verifier).
    warned_audience: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.config.issuer)
            .field("audience", &self.config.audience)
            .field("algorithms", &self.config.algorithms)
            .field("keys", &self.keys)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub(crate) fn new(config: VerifierConfig, keys: KeyStore, tokens: Option<TokenCache>) -> Self {
        crate::metrics::describe();
        Self {
            inner: Arc::new(Inner {
                config,
                keys: Arc::new(keys),
                tokens,
                warned_audience: AtomicBool::new(false),
            }),
        }
    }

    /// A builder for a verifier of `issuer`'s tokens. The issuer must be an `https` URL
    /// (`http` only for loopback hosts) where the verifier fetches from it (its metadata,
    /// for the key set or the introspection endpoint), an `http` or `https` URL otherwise;
    /// it is compared exactly with each token's `iss`.
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn builder(issuer: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder::new(issuer)
    }

    /// The configured issuer.
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    ///
    /// let verifier = TokenVerifier::builder("https://auth.example.org/realms/fhir")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// assert_eq!(verifier.issuer(), "https://auth.example.org/realms/fhir");
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// Whether it was built without any audience rule (no audience configured, and not
    /// `insecure_accept_any_audience`): it then accepts `at+jwt` tokens for any audience.
    pub(crate) fn checks_no_audience(&self) -> bool {
        self.inner.config.audience == AudienceRule::TypedAccessTokensOnly
    }

    /// The first accepted audience, if audiences are configured.
    pub(crate) fn first_audience(&self) -> Option<&str> {
        match &self.inner.config.audience {
            AudienceRule::OneOf { audiences, .. } => audiences.first().map(String::as_str),
            AudienceRule::TypedAccessTokensOnly | AudienceRule::AnyInsecure => None,
        }
    }

    /// The longest token this verifier accepts.
    pub(crate) fn max_token_length(&self) -> usize {
        self.inner.config.max_token_length
    }

    /// Whether this verifier introspects tokens that are not JWTs.
    #[cfg(feature = "introspection")]
    pub(crate) fn introspects_opaque_tokens(&self) -> bool {
        use crate::introspection::IntrospectionMode;
        self.inner
            .config
            .introspection
            .as_ref()
            .is_some_and(|introspector| {
                matches!(
                    introspector.mode(),
                    IntrospectionMode::Only | IntrospectionMode::NonJwtTokens
                )
            })
    }

    /// The validation hook's verdict on accepted claims (see
    /// [`VerifierBuilder::validate`]).
    #[inline]
    pub(crate) fn check_policy(&self, claims: &SmartClaims) -> Result<(), AuthError> {
        match &self.inner.config.validator {
            Some(validator) => validator.check(claims).map_err(AuthError::from),
            None => Ok(()),
        }
    }

    /// Discovers and fetches the issuer's keys now, so that the first request does not
    /// wait for them. Optional: without it the first request fetches them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeysUnavailable`] when discovery or the key fetch fails.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// verifier.warm_up().await?; // e.g. before the server starts accepting requests
    /// assert_eq!(issuer.jwks_fetches(), 1);
    /// verifier.verify(&issuer.token().sign()).await?;
    /// assert_eq!(issuer.jwks_fetches(), 1); // the first request found the keys there
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        self.inner.keys.warm_up().await
    }

    /// The state of the key cache, for health checks and metrics.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// assert_eq!(verifier.key_cache_status().keys, 0); // nothing fetched yet
    /// verifier.warm_up().await?;
    /// let status = verifier.key_cache_status();
    /// assert_eq!(status.keys, 5);
    /// assert!(status.fetched_at.is_some() && status.last_failure.is_none());
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn key_cache_status(&self) -> KeyCacheStatus {
        self.inner.keys.status()
    }

    /// Verifies one access token.
    ///
    /// A token this verifier accepted before is answered from its
    /// [token cache](crate::TokenCachePolicy) when the cache may be used for it; the answer
    /// is the same as a fresh verification would give.
    ///
    /// # Errors
    ///
    /// An [`AuthError`] whose [`kind`](AuthError::kind) says what failed; see
    /// [`ErrorKind`] for the list and [`ErrorKind::answer`] for the HTTP answer.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    ///
    /// let claims = verifier.verify(&issuer.token().scope("system/Patient.rs").sign()).await?;
    /// assert_eq!(claims.scopes(), ["system/Patient.rs"]);
    ///
    /// let error = verifier.verify("not-a-jwt").await.unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::MalformedToken);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn verify(&self, token: &str) -> Result<SmartClaims, AuthError> {
        let stale = match self.lookup(token.as_bytes()) {
            Lookup::Hit(claims) => {
                self.check_policy(&claims)?;
                return Ok(claims);
            }
            Lookup::Stale => true,
            Lookup::Miss => false,
        };
        self.verify_uncached(token, stale).await
    }

    /// The full verification, after [`lookup`](Self::lookup) found no usable entry;
    /// `stale` says whether it found an unusable one. The validation hook runs last.
    pub(crate) async fn verify_uncached(
        &self,
        token: &str,
        stale: bool,
    ) -> Result<SmartClaims, AuthError> {
        let span = tracing::debug_span!("smart_auth.verify", outcome = tracing::field::Empty);
        let result = self
            .verify_fresh(token, stale)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(_) => span.record("outcome", "valid"),
            Err(error) => span.record("outcome", tracing::field::debug(error.kind())),
        };
        if let (true, Err(_), Some(cache)) = (stale, &result, &self.inner.tokens) {
            // The entry can never be used again: free it now.
            cache.remove(token.as_bytes());
        }
        let claims = result?;
        self.check_policy(&claims)?;
        Ok(claims)
    }

    /// How many verified tokens the token cache holds, for metrics and tests. It first
    /// finishes the cache's pending maintenance (evictions are applied in batches), so
    /// call it now and then, not on every request. Always 0 with the cache turned off.
    ///
    /// ```no_run
    /// # fn report(verifier: &smart_auth::TokenVerifier) {
    /// println!("{} tokens cached", verifier.cached_tokens());
    /// # }
    /// ```
    pub fn cached_tokens(&self) -> u64 {
        self.inner.tokens.as_ref().map_or(0, TokenCache::len)
    }

    /// The answer from the token cache, without waiting for anything. An entry is used
    /// only when a fresh verification would accept the token (see [`Lookup::Hit`]).
    /// Counted in the cache metrics as one lookup.
    pub(crate) fn lookup(&self, token: &[u8]) -> Lookup {
        let found = self.lookup_uncounted(token);
        if let Some(found) = &found {
            record_lookup(found);
        }
        found.unwrap_or(Lookup::Miss)
    }

    /// [`lookup`](Self::lookup) without counting it: `None` when no cache is consulted (none
    /// configured, or introspection after JWT validation). For a caller that asks several
    /// verifiers about one token and counts one lookup.
    pub(crate) fn lookup_uncounted(&self, token: &[u8]) -> Option<Lookup> {
        // With introspection after JWT validation, a cached JWT must still be introspected:
        // that happens on the asynchronous path.
        #[cfg(feature = "introspection")]
        if self.introspects_after_jwt() {
            return None;
        }
        self.cached(token)
    }

    #[cfg(feature = "introspection")]
    fn introspects_after_jwt(&self) -> bool {
        use crate::introspection::IntrospectionMode;
        self.inner
            .config
            .introspection
            .as_ref()
            .is_some_and(|introspector| introspector.mode() == IntrospectionMode::AfterJwt)
    }

    /// The token cache's answer for a JWT verified before (see [`lookup`](Self::lookup)).
    fn cached(&self, token: &[u8]) -> Option<Lookup> {
        let cache = self.inner.tokens.as_ref()?;
        let now = self.inner.config.clock.now();
        let keys = &self.inner.keys;
        // Hits are not traced: they are almost every request.
        let found = cache.with_entry(token, |entry| {
            entry
                .usable(now, keys.current_generation())
                .then(|| entry.claims.clone())
        });
        Some(match found {
            None => Lookup::Miss,
            Some(None) => Lookup::Stale,
            Some(Some(claims)) => Lookup::Hit(claims),
        })
    }

    /// The full verification; `reused` says the token was cached before, so it is stored
    /// again at once (see `TokenCache::insert`).
    async fn verify_fresh(&self, token: &str, reused: bool) -> Result<SmartClaims, AuthError> {
        let config = &self.inner.config;
        if token.len() > config.max_token_length {
            return Err(ErrorKind::TokenTooLarge.into());
        }
        #[cfg(feature = "introspection")]
        if let Some(introspector) = &config.introspection {
            use crate::introspection::IntrospectionMode;
            let is_jwt = crate::jwt::looks_like_jwt(token);
            match introspector.mode() {
                IntrospectionMode::Only => {
                    return self.verify_by_introspection(introspector, token).await;
                }
                IntrospectionMode::NonJwtTokens if !is_jwt => {
                    return self.verify_by_introspection(introspector, token).await;
                }
                IntrospectionMode::AfterJwt => {
                    let cached = self.cached(token.as_bytes());
                    if let Some(found) = &cached {
                        record_lookup(found);
                    }
                    let claims = match cached {
                        Some(Lookup::Hit(claims)) => claims,
                        _ => self.verify_jwt(token, reused).await?,
                    };
                    introspector.introspect(token).await?;
                    return Ok(claims);
                }
                _ => {}
            }
        }
        self.verify_jwt(token, reused).await
    }

    /// Introspection alone decides; the answer is not kept in the token cache (the
    /// introspection cache has its own, shorter, lifetimes).
    #[cfg(feature = "introspection")]
    async fn verify_by_introspection(
        &self,
        introspector: &Arc<crate::introspection::Introspector>,
        token: &str,
    ) -> Result<SmartClaims, AuthError> {
        let answer = introspector.introspect(token).await?;
        let config = &self.inner.config;
        let claims = SmartClaims::from_payload(answer, &config.claim_names)?;
        let now = unix_seconds(config.clock.now());
        // RFC 7662 makes `aud` optional: checked whenever the answer has one (so an empty
        // list names no accepted audience), or always when the settings require one. With
        // clients accepted without an audience, an answer without one must name such a
        // client, as a JWT without one must. And an answer that does not say the token is
        // an access token (`token_type`, also optional) must name this API: some servers
        // answer for a refresh token (never meant for a resource server, RFC 6749 section
        // 1.5) with neither, `active` and the grant's scopes (panva's oidc-provider, whose
        // refresh tokens have no audience; Medplum).
        // (Unless the settings trust the server to answer so for access tokens only.)
        let untyped =
            claims.claim("token_type").is_none() && !introspector.accepts_untyped_answers();
        let audience_required = claims.claim("aud").is_some()
            || untyped
            || introspector.requires_audience()
            || self.lists_clients_without_audience();
        self.check_claims(&claims, now, audience_required)?;
        // Named, not merely allowed to be missing: a client accepted without an audience,
        // or any audience accepted, says nothing about the token's kind either.
        if untyped && claims.audiences().next().is_none() {
            return Err(ErrorKind::WrongAudience.into());
        }
        Ok(claims)
    }

    /// Local validation of a JWT; a valid one enters the token cache.
    async fn verify_jwt(&self, token: &str, reused: bool) -> Result<SmartClaims, AuthError> {
        let config = &self.inner.config;
        let segments = jwt::split(token)?;
        // First: a payload segment with a dot (a token of four or more segments, which
        // `split` leaves to this) or anything else that is not base64url is refused before
        // the header is read and any key is looked up.
        let payload = jwt::decode_segment(segments.payload)?;
        let header_bytes = jwt::decode_segment(segments.header)?;
        let header = jwt::read_header(&header_bytes, &config.algorithms)?;
        self.check_token_type(header.typ.as_deref())?;
        // Before the key lookup: a signature that cannot be one never starts a refetch.
        let signature = jwt::decode_signature(segments.signature, header.alg)?;
        let verify = |key: &crate::jwks::VerificationKey| {
            jwt::verify_decoded_signature(
                segments.signing_input.as_bytes(),
                &signature,
                key,
                header.alg,
            )
        };
        let chosen = self
            .inner
            .keys
            .key_for(header.kid.as_deref(), header.alg)
            .await?;
        let chosen = match chosen.verify(verify) {
            Ok(()) => chosen,
            Err(refusal @ ErrorKind::InvalidSignature) => {
                // The issuer may have put another key under this `kid`.
                let keys = &self.inner.keys;
                let Some(replaced) = keys
                    .replaced_key(&chosen, header.kid.as_deref(), header.alg)
                    .await
                else {
                    return Err(refusal.into());
                };
                replaced.verify(verify)?;
                replaced
            }
            Err(refusal) => return Err(refusal.into()),
        };
        let names = &config.claim_names;
        // One copy of the token, kept by the claims and, if stored, by the token cache.
        let kept: Arc<[u8]> = Arc::from(token.as_bytes());
        let claims = jwt::read_payload(
            &payload,
            |name| names.is_read(name),
            |payload| SmartClaims::read_jwt_payload(payload, names),
        )?
        .with_token(Arc::clone(&kept));
        let now = config.clock.now();
        self.check_claims(&claims, unix_seconds(now), true)?;
        if config.token_type == TokenTypePolicy::Rfc9068 && !has_rfc9068_claims(&claims) {
            return Err(ErrorKind::InvalidClaim.into());
        }
        if let Some(replicated) = &header.replicated
            && !replicated.agree_with(claims.iss(), claims.sub(), claims.aud())
        {
            return Err(ErrorKind::InvalidClaim.into());
        }
        if let Some(cache) = &self.inner.tokens {
            cache.insert(
                kept,
                reused,
                claims.clone(),
                KeySetStamp {
                    generation: chosen.generation(),
                    fresh_until: self.inner.keys.fresh_until(&chosen),
                },
                now,
                ClaimWindow::of(&claims, config.leeway_secs),
            );
        }
        Ok(claims)
    }

    /// The `typ` header against the configured policy and, without a configured audience,
    /// the rule that only typed access tokens are accepted.
    fn check_token_type(&self, typ: Option<&str>) -> Result<(), ErrorKind> {
        let config = &self.inner.config;
        if !config.token_type.accepts(typ) {
            return Err(ErrorKind::UnsupportedTokenType);
        }
        if config.audience == AudienceRule::TypedAccessTokensOnly {
            self.warn_about_audience(
                "no audience configured: only tokens typed `at+jwt` (RFC 9068) are accepted, \
                 whatever their audience; configure the FHIR base URL as the audience",
            );
            if !TokenTypePolicy::Rfc9068.accepts(typ) {
                return Err(ErrorKind::UnsupportedTokenType);
            }
        }
        Ok(())
    }

    /// Confirmation, issuer, audience (when `audience_required`) and time checks.
    fn check_claims(
        &self,
        claims: &SmartClaims,
        now: i64,
        audience_required: bool,
    ) -> Result<(), ErrorKind> {
        let config = &self.inner.config;
        // A sender-constrained token (RFC 7800 `cnf`: DPoP `jkt`, mTLS `x5t#S256`, or any
        // other confirmation method) is refused whatever the method: a Bearer request
        // cannot prove possession of the key it is bound to (RFC 9449 section 7.2).
        if claims.has_confirmation() {
            return Err(ErrorKind::SenderConstrained);
        }
        if claims.issuer() != config.issuer {
            if differs_only_by_final_slash(claims.issuer(), &config.issuer) {
                tracing::debug!(
                    target: "smart_auth::rejection",
                    configured = %config.issuer,
                    "the token's iss differs from the configured issuer only by a final '/': \
                     configure the issuer exactly as the authorization server writes it"
                );
            }
            return Err(ErrorKind::WrongIssuer);
        }
        if audience_required {
            self.check_audience(claims)?;
        }
        if config.require_client_id && claims.client_id().is_none() {
            return Err(ErrorKind::InvalidClaim);
        }
        check_times(claims, now, config.leeway_secs)
    }

    fn check_audience(&self, claims: &SmartClaims) -> Result<(), ErrorKind> {
        match &self.inner.config.audience {
            AudienceRule::OneOf {
                audiences,
                clients_without_audience,
            } => {
                let mut named = claims.audiences().peekable();
                let accepted = match named.peek() {
                    Some(_) => named.any(|aud| audiences.iter().any(|accepted| accepted == aud)),
                    None => claims.client_id().is_some_and(|client| {
                        clients_without_audience
                            .iter()
                            .any(|accepted| accepted == client)
                    }),
                };
                if accepted {
                    Ok(())
                } else {
                    Err(ErrorKind::WrongAudience)
                }
            }
            // The token type was checked before the signature.
            AudienceRule::TypedAccessTokensOnly => Ok(()),
            AudienceRule::AnyInsecure => {
                self.warn_about_audience(
                    "insecure_accept_any_audience: tokens for any audience of this issuer are \
                     accepted; configure the FHIR base URL as the audience",
                );
                Ok(())
            }
        }
    }

    /// Whether [`VerifierBuilder::accept_missing_audience_for_clients`] named clients.
    #[cfg(feature = "introspection")]
    fn lists_clients_without_audience(&self) -> bool {
        matches!(
            &self.inner.config.audience,
            AudienceRule::OneOf { clients_without_audience, .. } if !clients_without_audience.is_empty()
        )
    }

    fn warn_about_audience(&self, message: &'static str) {
        if !self.inner.warned_audience.swap(true, Ordering::Relaxed) {
            tracing::warn!(issuer = %self.inner.config.issuer, "{message}");
        }
    }
}

/// What the token cache knows about a token.
pub(crate) enum Lookup {
    /// Verified before, and a fresh verification would accept it now: same verifier (so
    /// same issuer, audiences, algorithms), the same key set still fresh, and the times
    /// its claims allow, leeway included, still holding.
    Hit(SmartClaims),
    /// An entry exists but may not be used (too old, past its `exp`, the key set
    /// changed or is due for a refresh): verify afresh, which gives the exact answer.
    Stale,
    /// Not cached (or no cache): verify afresh.
    Miss,
}

/// `exp` (required), `nbf` and `iat` against `now`, all with the same leeway. Run on every
/// fresh verification; a cache hit checks the same bounds through its `ClaimWindow`.
fn check_times(claims: &SmartClaims, now: i64, leeway: i64) -> Result<(), ErrorKind> {
    if now >= claims.exp().saturating_add(leeway) {
        return Err(ErrorKind::Expired);
    }
    let in_future = |at: Option<i64>| at.is_some_and(|at| at > now.saturating_add(leeway));
    if in_future(claims.nbf()) || in_future(claims.iat()) {
        return Err(ErrorKind::NotYetValid);
    }
    Ok(())
}

/// Counts one token-cache lookup in the metrics: a hit, or a miss (stale entries too).
pub(crate) fn record_lookup(found: &Lookup) {
    crate::metrics::token_cache_lookup(matches!(found, Lookup::Hit(_)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9068 section 2.2's claims: `aud` must name some audience, a blank one none,
    /// since with no audience configured no other check reads it.
    #[test]
    fn rfc9068_claims_need_a_real_audience() {
        let claims = |aud: serde_json::Value| {
            let serde_json::Value::Object(map) = serde_json::json!({
                "iss": "https://as.example", "exp": 2_000_000_000, "aud": aud,
                "client_id": "c", "sub": "c", "iat": 1_700_000_000, "jti": "j",
            }) else {
                unreachable!()
            };
            SmartClaims::from_payload(map, &crate::claims::ClaimNames::default()).unwrap()
        };
        assert!(has_rfc9068_claims(&claims(serde_json::json!(
            "https://fhir"
        ))));
        assert!(has_rfc9068_claims(&claims(serde_json::json!([
            "", "api://x"
        ]))));
        for blank in [
            serde_json::json!(""),
            serde_json::json!([" "]),
            serde_json::json!([]),
        ] {
            assert!(!has_rfc9068_claims(&claims(blank.clone())), "{blank}");
        }
    }

    /// When `lookup` may answer from an entry: only while it is younger than max age and
    /// the key set it was verified with is current and within its TTL.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn lookup_uses_an_entry_only_while_it_may_be_used() {
        use crate::testing::TestIssuer;
        use crate::{ManualClock, TokenCachePolicy};
        use std::time::Duration;

        let clock = ManualClock::new();
        let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
        let verifier = TokenVerifier::builder(issuer.url())
            .audience(issuer.audience())
            .clock(clock.clone())
            .token_cache(TokenCachePolicy::default().max_age(Duration::from_secs(30)))
            .build()
            .unwrap();
        let token = issuer.token().lifetime(Duration::from_secs(3600)).sign();
        let hit = |verifier: &TokenVerifier| match verifier.lookup(token.as_bytes()) {
            Lookup::Hit(_) => "hit",
            Lookup::Stale => "stale",
            Lookup::Miss => "miss",
        };
        assert_eq!(hit(&verifier), "miss");
        verifier.verify(&token).await.unwrap();
        assert_eq!(hit(&verifier), "miss", "stored the second time it verifies");
        let stored = verifier.verify(&token).await.unwrap();
        assert_eq!(hit(&verifier), "hit");
        // Hits hand out the stored claims by reference, never a copy.
        let first = verifier.verify(&token).await.unwrap();
        let second = verifier.verify(&token).await.unwrap();
        assert!(first.shares_claims_with(&stored) && second.shares_claims_with(&stored));
        clock.advance(Duration::from_secs(29));
        assert_eq!(hit(&verifier), "hit");
        clock.advance(Duration::from_secs(1));
        assert_eq!(hit(&verifier), "stale", "max age reached");
        verifier.verify(&token).await.unwrap();
        assert_eq!(
            hit(&verifier),
            "hit",
            "verified afresh and stored again at once"
        );
        // The keys pass their 10 min TTL: no cached answers until they are refreshed. (Key
        // ages run on tokio's monotonic clock, token times on `clock`: both move.)
        clock.advance(Duration::from_secs(600 - 30));
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(600)).await;
        tokio::time::resume();
        verifier.verify(&token).await.unwrap();
        assert_eq!(hit(&verifier), "stale", "keys due for a refresh");
        tokio::time::timeout(Duration::from_secs(30), async {
            while verifier.key_cache_status().fetching {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the refresh did not end");
        assert_eq!(issuer.jwks_fetches(), 2, "the refresh has ended");
        assert_eq!(
            hit(&verifier),
            "stale",
            "entry made with the replaced key set"
        );
        verifier.verify(&token).await.unwrap();
        assert_eq!(hit(&verifier), "hit");
        assert_eq!(issuer.jwks_fetches(), 2);
    }

    #[test]
    fn typ_policies() {
        let lenient = [
            None,
            Some("JWT"),
            Some("jwt"),
            Some("at+jwt"),
            Some("application/at+jwt"),
            Some("AT+JWT"),
            Some("application/jwt"),
            Some("APPLICATION/JWT"),
        ];
        for typ in lenient {
            assert!(TokenTypePolicy::Lenient.accepts(typ), "{typ:?}");
        }
        for typ in [
            Some("JOSE"),
            Some("dpop+jwt"),
            Some("id_token"),
            Some(""),
            Some("application/"),
            Some("application/jwt;x=y"),
        ] {
            assert!(!TokenTypePolicy::Lenient.accepts(typ), "{typ:?}");
        }
        for policy in [TokenTypePolicy::Rfc9068, TokenTypePolicy::AtJwt] {
            assert!(policy.accepts(Some("at+jwt")));
            assert!(policy.accepts(Some("AT+JWT")));
            assert!(policy.accepts(Some("application/at+jwt")));
            for typ in [None, Some("JWT"), Some("application/jwt"), Some("")] {
                assert!(!policy.accepts(typ), "{policy:?} {typ:?}");
            }
        }
    }
}
