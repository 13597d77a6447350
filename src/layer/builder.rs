//! [`SmartAuthBuilder`]: every setting of the layer, checked once in `build`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::public::{PublicRoutes, is_canonical_config_path};
use super::{AuthMode, SmartAuthLayer};
use crate::algorithm::SigningAlgorithm;
use crate::claims::ClaimNames;
use crate::clock::{Clock, SystemClock};
use crate::enforce::ScopeEnforcement;
use crate::error::ConfigError;
use crate::fetch::{Fetcher, default_client, is_allowed_url};
use crate::jwks::{KeySource, KeyStore, RefreshPolicy};
use crate::response::{Challenge, is_valid_realm};
use crate::token_cache::{TokenCache, TokenCachePolicy};
use crate::verifier::{AudienceRule, TokenTypePolicy, TokenVerifier, VerifierConfig};

/// Builds a [`SmartAuthLayer`] (or a bare [`TokenVerifier`]). Get one from
/// [`SmartAuthLayer::builder`].
///
/// Every setting has a secure default; `build` checks them all and does no network I/O.
///
/// ```
/// use std::time::Duration;
/// use smart_auth::{SigningAlgorithm, SmartAuthLayer, TokenTypePolicy};
///
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .algorithms([SigningAlgorithm::RS384, SigningAlgorithm::ES384])
///     .token_type(TokenTypePolicy::Rfc9068)
///     .leeway(Duration::from_secs(30))
///     .fhir_base_path("/r4")
///     .build()
///     .expect("valid configuration");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SmartAuthBuilder {
    issuer: String,
    audiences: Vec<String>,
    any_audience: bool,
    leeway: Duration,
    algorithms: Vec<SigningAlgorithm>,
    token_type: TokenTypePolicy,
    scope_claims: Vec<String>,
    client_id_claims: Vec<String>,
    patient_claims: Vec<String>,
    fhir_user_claims: Vec<String>,
    realm: Option<String>,
    http_client: Option<reqwest::Client>,
    fetch_timeout: Duration,
    max_response_size: usize,
    jwks_uri: Option<String>,
    refresh: RefreshPolicy,
    clock: Arc<dyn Clock>,
    max_token_length: usize,
    mode: AuthMode,
    public: PublicRoutes,
    enforcement: Option<ScopeEnforcement>,
    #[cfg(feature = "introspection")]
    introspection: Option<crate::introspection::Introspection>,
    token_cache: TokenCachePolicy,
}

impl SmartAuthBuilder {
    pub(crate) fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            any_audience: false,
            leeway: Duration::from_secs(60),
            algorithms: SigningAlgorithm::DEFAULT.to_vec(),
            token_type: TokenTypePolicy::default(),
            scope_claims: vec!["scope".into(), "scp".into()],
            client_id_claims: vec!["client_id".into(), "azp".into(), "cid".into()],
            patient_claims: vec!["patient".into()],
            fhir_user_claims: vec!["fhirUser".into()],
            realm: None,
            http_client: None,
            fetch_timeout: Duration::from_secs(5),
            max_response_size: 1024 * 1024,
            jwks_uri: None,
            refresh: RefreshPolicy::default(),
            clock: Arc::new(SystemClock),
            max_token_length: 16 * 1024,
            mode: AuthMode::Required,
            public: PublicRoutes::default(),
            enforcement: None,
            #[cfg(feature = "introspection")]
            introspection: None,
            token_cache: TokenCachePolicy::default(),
        }
    }

    /// Adds an accepted audience: a token's `aud` must contain at least one of them. Use
    /// your FHIR base URL.
    ///
    /// **Without any audience**, the layer cannot tell whom a token was minted for, so it
    /// accepts only tokens whose `typ` header says they are access tokens (`at+jwt` or
    /// `application/at+jwt`, RFC 9068): the issuer's ID tokens and other JWTs, whose `aud`
    /// is some client, are refused with 401 `invalid_token`, and a warning is logged the
    /// first time. Many issuers type their access tokens `JWT`; with them, configure the
    /// audience (RFC 9068 section 4 requires the resource server to check it).
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// **Insecure:** accepts tokens whatever their `aud` and `typ`, including tokens the
    /// issuer minted for other resource servers and its ID tokens. Only for a deployment
    /// where every token of the issuer is meant for this API; prefer
    /// [`audience`](Self::audience). A warning is logged at first use. Combined with
    /// `audience`, `build` fails with [`ConfigError::ConflictingAudience`].
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .insecure_accept_any_audience()
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn insecure_accept_any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Clock tolerance for `exp`, `nbf` and `iat` (default 60 s, at most 10 min).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The accepted signature algorithms (default: all of [`SigningAlgorithm::DEFAULT`]).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Which `typ` headers are accepted (default [`TokenTypePolicy::Lenient`]).
    pub fn token_type(mut self, policy: TokenTypePolicy) -> Self {
        self.token_type = policy;
        self
    }

    /// The claims to read scopes from, first present wins (default `scope`, `scp`). The
    /// value may be a space-separated string or an array of strings.
    pub fn scope_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The claims to read the client id from, first present wins (default `client_id`,
    /// `azp`, `cid`).
    pub fn client_id_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.client_id_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The claims to read the patient in context from, first present wins (default
    /// `patient`), for issuers that put it elsewhere. The value is checked as the `patient`
    /// claim is: a string that is no FHIR id is no launch context, another JSON type makes
    /// the token invalid.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .patient_claims(["launch_response_patient", "patient"])
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn patient_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.patient_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The claims to read the user's FHIR resource from, first present wins (default
    /// `fhirUser`), for issuers that use another name such as `extension_fhirUser`. The
    /// value is checked as the `fhirUser` claim is: a blank string is absent, another JSON
    /// type makes the token invalid.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .fhir_user_claims(["fhirUser", "extension_fhirUser"])
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn fhir_user_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fhir_user_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The `realm` of `WWW-Authenticate` challenges (default: the first audience, else
    /// `fhir`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The HTTP client for every discovery and key fetch (proxies, custom roots). The
    /// layer's own limits still apply: per-request timeout, body cap, and no redirects (a
    /// response from another URL than the one asked for is refused).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The time limit of each fetch, from connecting to the last body byte (default 5 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The largest discovery or key-set document read (default 1 MiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Uses this key-set URL instead of discovering it from the issuer.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// How the key cache refreshes (see [`RefreshPolicy`]).
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.refresh = policy;
        self
    }

    /// The time source (default the system clock). Tests pass a
    /// [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The longest token accepted, checked before any parsing (default 16 KiB).
    pub fn max_token_length(mut self, bytes: usize) -> Self {
        self.max_token_length = bytes;
        self
    }

    /// Lets requests without credentials through to the inner service, without claims;
    /// handlers take `Option<SmartClaims>`. A request with an invalid token is still
    /// refused.
    pub fn optional(mut self) -> Self {
        self.mode = AuthMode::Optional;
        self
    }

    /// The FHIR base path (for example `/fhir/r4`), as clients send it (the full path, also
    /// when the layer sits inside an axum `Router::nest`). Exactly these are public for
    /// `GET`/`HEAD`: `{base}/metadata`, `{base}/.well-known/smart-configuration` and the root
    /// `/.well-known/smart-configuration`.
    ///
    /// Without this setting the base is that of [`enforce_scopes`](Self::enforce_scopes)
    /// when set, else the server root: only `/metadata` and
    /// `/.well-known/smart-configuration` are public. Public paths are compared byte for
    /// byte with the request path (no query): `/fhir/%6Detadata`, `/fhir//metadata`,
    /// `/fhir/metadata/` and `/FHIR/metadata` need a token.
    ///
    /// `build` refuses a base that does not start with `/` or is not written canonically
    /// (an empty, `.` or `..` segment; `%`, `;`, `\`, `?`, `#`, whitespace or control
    /// characters). Trailing slashes are dropped.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/fhir/r4")
    ///     .fhir_base_path("/fhir/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn fhir_base_path(mut self, base_path: impl Into<String>) -> Self {
        self.public.base_path = Some(base_path.into());
        self
    }

    /// Another exact path that needs no token, for any method (a health check). Compared
    /// byte for byte with the request path, like the base path (and checked the same way
    /// by `build`, except that a trailing slash is kept).
    pub fn public_path(mut self, path: impl Into<String>) -> Self {
        self.public.extra.push(path.into());
        self
    }

    /// Requires a token for `metadata` and `.well-known/smart-configuration` too (see
    /// [`fhir_base_path`](Self::fhir_base_path) for which paths these are).
    pub fn protect_discovery_and_metadata(mut self) -> Self {
        self.public.discovery_and_metadata = false;
        self
    }

    /// Requires a token for CORS preflight requests too (browsers send none, so this
    /// breaks browser clients). By default exactly a preflight passes without one: `OPTIONS`
    /// with one non-empty `Origin`, one `Access-Control-Request-Method` naming a method, no
    /// `Authorization` and no body; it reaches the inner service without claims.
    pub fn protect_cors_preflight(mut self) -> Self {
        self.public.cors_preflight = false;
        self
    }

    /// Checks every verified request against the token's SMART scopes before the handler
    /// runs (see [`ScopeEnforcement`]); refused requests get 403 `insufficient_scope`.
    pub fn enforce_scopes(mut self, enforcement: ScopeEnforcement) -> Self {
        self.enforcement = Some(enforcement);
        self
    }

    /// Validates tokens by RFC 7662 introspection, instead of or besides local JWT
    /// validation (see [`Introspection`](crate::Introspection)).
    #[cfg(feature = "introspection")]
    pub fn introspection(mut self, introspection: crate::introspection::Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// How verified tokens are cached (default [`TokenCachePolicy::default`]: on, 10,000
    /// tokens, 5 min).
    ///
    /// With the cache, a request whose token this layer verified before (a token is stored
    /// the second time it verifies) skips parsing and the signature check; `exp`, `nbf`
    /// and `iat` are still checked on every request against the configured clock, with the
    /// same leeway. The cache belongs to this layer alone. Trade-off: a key removed from
    /// the issuer's JWK Set stays trusted for tokens already cached until the key set is
    /// refetched, the entry's max age passes or the token expires (see
    /// [`TokenCachePolicy`]). Use [`no_token_cache`](Self::no_token_cache) to verify every
    /// signature.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{SmartAuthLayer, TokenCachePolicy};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .token_cache(TokenCachePolicy::default().max_age(Duration::from_secs(60)))
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn token_cache(mut self, policy: TokenCachePolicy) -> Self {
        self.token_cache = policy;
        self
    }

    /// Turns the verified-token cache off: every request's token is parsed and its
    /// signature checked. The same as `.token_cache(TokenCachePolicy::disabled())`.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .no_token_cache()
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn no_token_cache(self) -> Self {
        self.token_cache(TokenCachePolicy::disabled())
    }

    /// Checks the settings and builds the layer. No network I/O.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn build(self) -> Result<SmartAuthLayer, ConfigError> {
        let realm = self.checked_realm()?;
        let public = self.checked_public_routes()?;
        let mode = self.mode;
        let enforcement = self.enforcement.clone();
        let verifier = self.build_verifier()?;
        Ok(SmartAuthLayer::from_parts(
            Ok(verifier),
            Challenge::new(&realm),
            mode,
            public,
            enforcement,
        ))
    }

    /// Checks the settings and builds only the verifier, for use outside tower.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    pub fn build_verifier(self) -> Result<TokenVerifier, ConfigError> {
        checked_url(&self.issuer, "issuer")?;
        let realm = self.checked_realm()?;
        let source = match &self.jwks_uri {
            Some(uri) => KeySource::Fixed(checked_url(uri, "jwks_uri")?),
            None => KeySource::Discover {
                issuer: self.issuer.clone(),
            },
        };
        if self.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        for (names, field) in [
            (&self.scope_claims, "scope_claims"),
            (&self.client_id_claims, "client_id_claims"),
            (&self.patient_claims, "patient_claims"),
            (&self.fhir_user_claims, "fhir_user_claims"),
        ] {
            if names.is_empty() || names.iter().any(|name| name.trim().is_empty()) {
                return Err(ConfigError::InvalidClaimNames { field });
            }
        }
        let limits = [
            (self.fetch_timeout.is_zero(), "fetch_timeout"),
            (self.max_response_size == 0, "max_response_size"),
            (self.max_token_length == 0, "max_token_length"),
            (self.leeway > Duration::from_secs(600), "leeway"),
        ];
        if let Some((_, field)) = limits.into_iter().find(|(bad, _)| *bad) {
            return Err(ConfigError::InvalidLimit { field });
        }
        self.refresh.validate()?;
        self.token_cache.validate()?;
        let fetcher = Fetcher {
            client: self
                .http_client
                .map_or_else(|| default_client(self.fetch_timeout), Ok)
                .map_err(|_| ConfigError::HttpClient)?,
            timeout: self.fetch_timeout,
            max_body: self.max_response_size,
        };
        #[cfg(feature = "introspection")]
        let introspection = match self.introspection {
            Some(settings) => {
                settings.validate()?;
                if let Some(endpoint) = &settings.endpoint {
                    checked_url(endpoint, "introspection endpoint")?;
                }
                Some(Arc::new(crate::introspection::Introspector::new(
                    settings,
                    self.issuer.clone(),
                    fetcher.clone(),
                    Arc::clone(&self.clock),
                )))
            }
            None => None,
        };
        let keys = KeyStore::new(source, fetcher, self.refresh, Arc::clone(&self.clock));
        let mut algorithms: Vec<_> = self
            .algorithms
            .iter()
            .map(|a| a.to_jsonwebtoken())
            .collect();
        algorithms.dedup();
        let audience = match (self.audiences.is_empty(), self.any_audience) {
            (false, false) => AudienceRule::OneOf(self.audiences),
            (true, false) => AudienceRule::TypedAccessTokensOnly,
            (true, true) => AudienceRule::AnyInsecure,
            (false, true) => return Err(ConfigError::ConflictingAudience),
        };
        let config = VerifierConfig {
            issuer: self.issuer,
            audience,
            leeway_secs: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            algorithms,
            token_type: self.token_type,
            claim_names: ClaimNames {
                scope: self.scope_claims,
                client_id: self.client_id_claims,
                patient: self.patient_claims,
                fhir_user: self.fhir_user_claims,
            },
            max_token_length: self.max_token_length,
            realm: Arc::from(realm),
            clock: self.clock,
            #[cfg(feature = "introspection")]
            introspection,
        };
        Ok(TokenVerifier::new(
            config,
            keys,
            TokenCache::new(&self.token_cache),
        ))
    }

    /// The public routes with checked paths; the base path trimmed of trailing slashes and,
    /// when not set, taken from the scope enforcement.
    fn checked_public_routes(&self) -> Result<PublicRoutes, ConfigError> {
        let mut public = self.public.clone();
        if public
            .extra
            .iter()
            .chain(&public.base_path)
            .any(|path| !is_canonical_config_path(path))
        {
            return Err(ConfigError::InvalidPath);
        }
        public.base_path = match (&public.base_path, &self.enforcement) {
            (Some(base), _) => Some(base.trim_end_matches('/').to_owned()),
            (None, Some(enforcement)) => Some(enforcement.base_path().to_owned()),
            (None, None) => None,
        };
        Ok(public)
    }

    /// The realm of challenges and of errors raised from the claims: the configured one,
    /// else the first audience when it is a valid realm, else `fhir`.
    fn checked_realm(&self) -> Result<String, ConfigError> {
        let realm = match &self.realm {
            Some(realm) => realm.clone(),
            None => self
                .audiences
                .first()
                .filter(|aud| is_valid_realm(aud))
                .cloned()
                .unwrap_or_else(|| "fhir".to_owned()),
        };
        if is_valid_realm(&realm) {
            Ok(realm)
        } else {
            Err(ConfigError::InvalidRealm)
        }
    }
}

/// An absolute `https` URL (or `http` to loopback) without query or fragment.
fn checked_url(value: &str, field: &'static str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| ConfigError::InvalidUrl {
        field,
        reason: "not an absolute URL",
    })?;
    if !is_allowed_url(&url) {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must be https (http only for loopback hosts)",
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must not have a query or fragment",
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must not carry credentials",
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_are_checked_and_the_base_defaults_to_enforcement() {
        let b = || SmartAuthBuilder::new("https://as.example");
        for bad in [
            "fhir",
            "",
            "//",
            "/fhir//r4",
            "/%66hir",
            "/fhir/../x",
            "/fhir;v",
            "/fh ir",
        ] {
            assert_eq!(
                b().fhir_base_path(bad).build().unwrap_err(),
                ConfigError::InvalidPath,
                "{bad:?}"
            );
            assert_eq!(
                b().public_path(bad).build().unwrap_err(),
                ConfigError::InvalidPath,
                "{bad:?}"
            );
        }
        let base = |builder: SmartAuthBuilder| builder.checked_public_routes().unwrap().base_path;
        assert_eq!(base(b()), None);
        assert_eq!(
            base(b().fhir_base_path("/fhir/r4/")),
            Some("/fhir/r4".into())
        );
        assert_eq!(base(b().fhir_base_path("/")), Some(String::new()));
        assert_eq!(
            base(b().enforce_scopes(ScopeEnforcement::new("/fhir"))),
            Some("/fhir".into())
        );
        assert_eq!(
            base(
                b().enforce_scopes(ScopeEnforcement::new("/fhir"))
                    .fhir_base_path("/api")
            ),
            Some("/api".into())
        );
    }

    fn error(builder: SmartAuthBuilder) -> ConfigError {
        builder.build().expect_err("must be refused")
    }

    #[test]
    fn refuses_bad_configuration() {
        let b = || SmartAuthBuilder::new("https://as.example");
        assert!(b().build().is_ok());
        assert!(
            SmartAuthBuilder::new("http://127.0.0.1:9000/issuer")
                .build()
                .is_ok()
        );
        assert_eq!(
            error(SmartAuthBuilder::new("as.example")),
            ConfigError::InvalidUrl {
                field: "issuer",
                reason: "not an absolute URL"
            }
        );
        assert!(matches!(
            error(SmartAuthBuilder::new("http://as.example")),
            ConfigError::InvalidUrl {
                field: "issuer",
                ..
            }
        ));
        assert!(matches!(
            error(SmartAuthBuilder::new("https://as.example?x=1")),
            ConfigError::InvalidUrl {
                field: "issuer",
                ..
            }
        ));
        assert!(matches!(
            error(SmartAuthBuilder::new("https://u:p@as.example")),
            ConfigError::InvalidUrl {
                field: "issuer",
                ..
            }
        ));
        assert!(matches!(
            error(b().jwks_uri("http://keys.example/jwks")),
            ConfigError::InvalidUrl {
                field: "jwks_uri",
                ..
            }
        ));
        assert_eq!(error(b().algorithms([])), ConfigError::NoAlgorithms);
        assert!(b().insecure_accept_any_audience().build().is_ok());
        assert_eq!(
            error(
                b().audience("https://fhir.example")
                    .insecure_accept_any_audience()
            ),
            ConfigError::ConflictingAudience
        );
        assert_eq!(error(b().realm("a\"b")), ConfigError::InvalidRealm);
        assert_eq!(
            error(b().scope_claims(Vec::<String>::new())),
            ConfigError::InvalidClaimNames {
                field: "scope_claims"
            }
        );
        assert_eq!(
            error(b().client_id_claims([""])),
            ConfigError::InvalidClaimNames {
                field: "client_id_claims"
            }
        );
        assert_eq!(
            error(b().scope_claims([" "])),
            ConfigError::InvalidClaimNames {
                field: "scope_claims"
            }
        );
        assert_eq!(
            error(b().patient_claims(Vec::<String>::new())),
            ConfigError::InvalidClaimNames {
                field: "patient_claims"
            }
        );
        assert_eq!(
            error(b().patient_claims(["patient", ""])),
            ConfigError::InvalidClaimNames {
                field: "patient_claims"
            }
        );
        assert_eq!(
            error(b().fhir_user_claims(Vec::<&str>::new())),
            ConfigError::InvalidClaimNames {
                field: "fhir_user_claims"
            }
        );
        assert_eq!(
            error(b().fhir_user_claims(["extension_fhirUser", "\t"])),
            ConfigError::InvalidClaimNames {
                field: "fhir_user_claims"
            }
        );
        assert!(
            b().patient_claims(["launch_response_patient"])
                .fhir_user_claims(["extension_fhirUser", "fhirUser"])
                .build()
                .is_ok()
        );
        assert_eq!(
            error(b().fetch_timeout(Duration::ZERO)),
            ConfigError::InvalidLimit {
                field: "fetch_timeout"
            }
        );
        assert_eq!(
            error(b().max_response_size(0)),
            ConfigError::InvalidLimit {
                field: "max_response_size"
            }
        );
        assert_eq!(
            error(b().max_token_length(0)),
            ConfigError::InvalidLimit {
                field: "max_token_length"
            }
        );
        assert_eq!(
            error(b().leeway(Duration::from_secs(3600))),
            ConfigError::InvalidLimit { field: "leeway" }
        );
        assert_eq!(error(b().public_path("health")), ConfigError::InvalidPath);
        assert_eq!(error(b().fhir_base_path("fhir")), ConfigError::InvalidPath);
        assert!(matches!(
            error(b().refresh_policy(RefreshPolicy::default().default_ttl(Duration::ZERO))),
            ConfigError::InvalidLimit { .. }
        ));
        assert_eq!(
            error(b().token_cache(TokenCachePolicy::default().max_entries(0))),
            ConfigError::InvalidLimit {
                field: "token_cache"
            }
        );
        assert!(
            b().token_cache(TokenCachePolicy::disabled().max_entries(0))
                .build()
                .is_ok()
        );
    }
}
