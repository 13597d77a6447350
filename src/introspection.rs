//! Token introspection (RFC 7662) for opaque and revocable tokens (feature
//! `introspection`).
//!
//! See [`Introspection`] for the modes and settings.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use http::HeaderValue;
use moka::Expiry;
use moka::future::Cache;
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::clock::{Clock, unix_seconds};
use crate::error::{AuthError, ConfigError, ErrorKind};
use crate::fetch::{self, FetchError, Fetcher, is_allowed_discovered_url, is_allowed_url_named_by};
use crate::form::{form_encode, form_encode_credential};
use crate::json::{StrictJsonError, object_with_unique_members};
use crate::metrics::Introspected;

/// When the layer asks the authorization server about a token.
///
/// ```
/// use smart_auth::IntrospectionMode;
/// assert_eq!(IntrospectionMode::default(), IntrospectionMode::Only);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IntrospectionMode {
    /// Every token is introspected; none is validated locally (opaque tokens).
    #[default]
    Only,
    /// JWTs are validated locally first, then introspected to catch revocation.
    AfterJwt,
    /// JWTs (three dot-separated segments, the first a base64url JSON object, so starting
    /// with `e`) are validated locally; every other token (PASETO's `v4.local.…` too) is
    /// introspected.
    NonJwtTokens,
}

/// How the layer authenticates to the introspection endpoint (RFC 7662 section 2.1
/// requires some authentication).
///
/// ```
/// use smart_auth::IntrospectionAuth;
/// let auth = IntrospectionAuth::basic("resource-server", "s3cret");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum IntrospectionAuth {
    /// HTTP Basic with client credentials (each part form-encoded, RFC 6749 section 2.3.1).
    Basic {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: String,
    },
    /// A fixed bearer token.
    Bearer(String),
    /// A bearer token obtained (and renewed) by the crate's SMART Backend Services client.
    /// It goes to the introspection endpoint configured or discovered from the issuer,
    /// whatever origins the client itself would send its token to
    /// ([`authorize`](crate::client::BackendServiceClient::authorize)): the endpoint is the
    /// issuer's, as its keys are.
    #[cfg(feature = "client")]
    Client(crate::client::BackendServiceClient),
}

impl IntrospectionAuth {
    /// HTTP Basic client credentials.
    ///
    /// ```
    /// use smart_auth::IntrospectionAuth;
    ///
    /// let auth = IntrospectionAuth::basic("resource-server", "s3cret");
    /// assert!(matches!(auth, IntrospectionAuth::Basic { ref client_id, .. } if client_id == "resource-server"));
    /// ```
    pub fn basic(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::Basic {
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    /// A fixed bearer token. It must be a `b64token` (RFC 6750 section 2.1), or the layer
    /// is not built ([`ConfigError::InvalidIntrospectionCredentials`]).
    ///
    /// ```
    /// use smart_auth::{ConfigError, Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// let verifier = |auth| {
    ///     TokenVerifier::builder("https://auth.example.org")
    ///         .audience("https://fhir.example.org/r4")
    ///         .introspection(Introspection::new(auth))
    ///         .build()
    /// };
    /// assert!(verifier(IntrospectionAuth::bearer("rs-token-123")).is_ok());
    /// // A space cannot be sent in a Bearer header: refused when the verifier is built.
    /// let error = verifier(IntrospectionAuth::bearer("rs token")).unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidIntrospectionCredentials));
    /// ```
    pub fn bearer(token: impl Into<String>) -> Self {
        Self::Bearer(token.into())
    }

    /// The `Authorization` value; `None` for a client, whose token is fetched per call.
    fn fixed_header(&self) -> Option<HeaderValue> {
        let value = match self {
            Self::Basic { client_id, secret } => {
                let credentials = format!(
                    "{}:{}",
                    form_encode_credential(client_id),
                    form_encode_credential(secret)
                );
                format!("Basic {}", STANDARD.encode(credentials))
            }
            Self::Bearer(token) => format!("Bearer {token}"),
            #[cfg(feature = "client")]
            Self::Client(_) => return None,
        };
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl std::fmt::Debug for IntrospectionAuth {
    /// Never prints credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { client_id, .. } => f
                .debug_struct("Basic")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::Bearer(_) => f.write_str("Bearer(..)"),
            #[cfg(feature = "client")]
            Self::Client(client) => f.debug_tuple("Client").field(client).finish(),
        }
    }
}

/// Token introspection settings, for
/// [`SmartAuthBuilder::introspection`](crate::SmartAuthBuilder::introspection).
///
/// For each token the layer POSTs `token=…&token_type_hint=access_token` to the endpoint
/// with `Accept: application/json` and the configured authentication.
///
/// **The answer** (RFC 7662 section 2.2) makes the token active only if it is one JSON
/// object with unique member names, says `"active": true` (the JSON boolean: `"true"` or
/// `1` do not count) and carries an `exp` in the future. The members the layer reads must
/// have their JSON types, or the token is refused (401 `invalid_token`), never accepted
/// with the member skipped: `client_id`, `username`, `token_type`, `sub`, `iss` and `jti`
/// are strings, `exp`, `iat` and `nbf` numbers, `aud` and `scope` a string or an array of
/// strings (RFC 7662's `scope` is a space-separated string; Gluu, UAA and Spring send a
/// list). `token_type`, when present, must name an access token: `Bearer`,
/// `access_token`, `urn:ietf:params:oauth:token-type:access_token`, `at+jwt` or
/// `application/at+jwt`, compared ASCII case-insensitively (RFC 6749 section 5.1);
/// `refresh_token`, an ID token type, `N_A` or `DPoP` (a proof-of-possession token sent
/// without its proof) are refused. `iss`, when present, must equal the configured issuer
/// exactly; `aud`, when present, must name an accepted audience (an empty array names
/// none). The answer's `scope`, `client_id`, `sub`, `patient`, `encounter`, `fhirContext`,
/// `fhirUser` and `tenant` become the request's [`SmartClaims`](crate::SmartClaims), as for
/// a JWT.
///
/// **Failures.** An answer about one token never answers for other tokens:
///
/// | the endpoint answers | this request | other requests |
/// |---|---|---|
/// | 200 with an answer (a boolean `active`) that does not make the token active | 401 `invalid_token` | unaffected |
/// | 400, 409, 410, 413 or 422 (some servers answer so for tokens they do not know) | 401 `invalid_token` | unaffected |
/// | 408 or 429 | 503, `Retry-After` | unaffected |
/// | 401 or 403: it refuses the resource server's own credentials (RFC 7662 section 2.3), logged as an error when the check below is refused too, else as a warning (no token to check with, or the check throttled) or at debug level (the endpoint answers for another token, or fails on it otherwise: an outage, warned about as such) | 503, `Retry-After` | 503 for the failure cooldown |
/// | another 4xx (404, 405, 415, ...: about the endpoint's address, the request's form or the way to it, the same for every token) | 503, `Retry-After` | 503 for the failure cooldown |
/// | a redirect, 5xx, a body that is not a JSON object or has no boolean `active` | 503, `Retry-After` | 503 for the failure cooldown |
/// | a connection closed without an answer, or no answer in time | 503, `Retry-After` | 503 for the failure cooldown |
/// | no connection could be made | 503, `Retry-After` | 503 for the failure cooldown |
///
/// The failure cooldown (default 10 s) answers 503 without calling. Before a failure
/// after the query was sent (every row above the last: a status, a redirect, a body, a
/// closed connection, a timeout, which a firewall or an intrusion prevention system in
/// front of the endpoint may give a token it blocks) starts it, the endpoint is asked
/// again about the last token it found active (not expired since): only if it fails on
/// that one too is it down (a timeout then costs the check's own timeout as well). A
/// connection not made within half the fetch timeout is the last row. If it still finds it
/// active, or no such token is known (after a start, or a quiet spell), or the check is
/// throttled (408, 429; no check is made for a second after that), the failure may be
/// about this token alone (a firewall in front of the endpoint blocking a token that looks
/// like an attack, a server bug): this token gets 503 for the refusal time, at most the
/// cooldown (`Retry-After` says how long), without further calls, while other tokens are
/// asked about as usual. A check that found the endpoint well is trusted for a second.
/// One such check runs at a time, and calls admitted while it runs wait for its verdict:
/// an outage meets at most [`max_concurrent_calls`](Self::max_concurrent_calls) calls
/// plus the one check. With no active token known to check with, an endpoint that takes
/// queries and fails after them is no proven outage: each token gets its own 503, and its
/// call holds a slot until it fails (those beyond the slots get 503 after
/// [`max_queue_wait`](Self::max_queue_wait)), so that no token can start the cooldown for
/// every client before the first one is verified.
/// With `IntrospectionAuth::Client` (feature `client`), a 401 or 403 not shown to be
/// about one token drops the client's token (at most once per cooldown), in case it was
/// revoked.
///
/// **Bounds.** Answers are cached by the token's SHA-256: active ones for the TTL (default
/// 60 s) but never past the token's `exp`, refusals briefly (default 10 s) to blunt
/// floods. So a token revoked at the authorization server stays accepted for up to the TTL;
/// `cache_ttl(Duration::ZERO)` asks for every request. Concurrent lookups of one token
/// share one call (a call whose lookup is dropped runs on to record its verdict, and the
/// next lookup of that token makes its own). At most
/// [`max_concurrent_calls`](Self::max_concurrent_calls) calls (default 32) run at once;
/// a lookup that finds them all busy waits for a free one at most
/// [`max_queue_wait`](Self::max_queue_wait) (default 1 s), then gets 503 with
/// `Retry-After`. Fetch limits as for keys: 5 s, 256 KiB, no redirects, `https` except for
/// loopback. Cache lifetimes and the cooldown run on tokio's monotonic clock, not on the
/// configured [`Clock`](crate::Clock) (which is for token times such as `exp`): setting
/// the wall clock back or forward neither stretches nor shortens them.
///
/// ```
/// use smart_auth::{Introspection, IntrospectionAuth, IntrospectionMode, SmartAuthLayer};
///
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .introspection(
///         Introspection::new(IntrospectionAuth::basic("resource-server", "s3cret"))
///             .endpoint("https://auth.example.org/introspect")
///             .mode(IntrospectionMode::AfterJwt),
///     )
///     .build()?;
/// # Ok::<(), smart_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Introspection {
    pub(crate) endpoint: Option<String>,
    pub(crate) auth: IntrospectionAuth,
    pub(crate) mode: IntrospectionMode,
    pub(crate) active_ttl: Duration,
    pub(crate) inactive_ttl: Duration,
    pub(crate) capacity: u64,
    pub(crate) failure_cooldown: Duration,
    pub(crate) max_concurrent_calls: usize,
    pub(crate) max_queue_wait: Duration,
    pub(crate) require_audience: bool,
    pub(crate) accept_untyped_answers: bool,
}

impl Introspection {
    /// Introspection with this authentication; the endpoint comes from the issuer's
    /// metadata (`introspection_endpoint`) unless [`endpoint`](Self::endpoint) is set.
    ///
    /// ```
    /// use smart_auth::{Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// // The endpoint is discovered from the issuer's metadata when the first token comes.
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .introspection(Introspection::new(IntrospectionAuth::basic("rs", "s3cret")))
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn new(auth: IntrospectionAuth) -> Self {
        Self {
            endpoint: None,
            auth,
            mode: IntrospectionMode::default(),
            active_ttl: Duration::from_secs(60),
            inactive_ttl: Duration::from_secs(10),
            capacity: 10_000,
            failure_cooldown: Duration::from_secs(10),
            max_concurrent_calls: 32,
            max_queue_wait: Duration::from_secs(1),
            require_audience: false,
            accept_untyped_answers: false,
        }
    }

    /// The introspection endpoint.
    ///
    /// ```
    /// use smart_auth::{Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// let introspection = Introspection::new(IntrospectionAuth::basic("rs", "s3cret"))
    ///     .endpoint("https://auth.example.org/oauth2/introspect");
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .introspection(introspection)
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// When to introspect (default [`IntrospectionMode::Only`]).
    ///
    /// ```
    /// use smart_auth::{Introspection, IntrospectionAuth, IntrospectionMode, TokenVerifier};
    ///
    /// // JWTs are checked locally and then asked about, so that revoked ones are refused.
    /// let introspection = Introspection::new(IntrospectionAuth::bearer("rs-token"))
    ///     .endpoint("https://auth.example.org/introspect")
    ///     .mode(IntrospectionMode::AfterJwt);
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .introspection(introspection)
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn mode(mut self, mode: IntrospectionMode) -> Self {
        self.mode = mode;
        self
    }

    /// How long an active answer is reused (default 60 s; never past the token's `exp`;
    /// at most one day). Zero turns the cache off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// let verifier = |ttl| {
    ///     TokenVerifier::builder("https://auth.example.org")
    ///         .audience("https://fhir.example.org/r4")
    ///         .introspection(Introspection::new(IntrospectionAuth::bearer("rs-token")).cache_ttl(ttl))
    ///         .build()
    /// };
    /// assert!(verifier(Duration::ZERO).is_ok()); // every request asks the endpoint
    /// let error = verifier(Duration::from_secs(2 * 24 * 3600)).unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "cache_ttl" }));
    /// ```
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.active_ttl = ttl;
        self
    }

    /// How long a refusal (inactive token, or an answer refused for its shape) is reused
    /// (default 10 s; at most one day).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// let verifier = |ttl| {
    ///     TokenVerifier::builder("https://auth.example.org")
    ///         .audience("https://fhir.example.org/r4")
    ///         .introspection(
    ///             Introspection::new(IntrospectionAuth::bearer("rs-token")).inactive_cache_ttl(ttl),
    ///         )
    ///         .build()
    /// };
    /// assert!(verifier(Duration::from_secs(30)).is_ok());
    /// let error = verifier(Duration::from_secs(2 * 24 * 3600)).unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "inactive_cache_ttl" }));
    /// ```
    pub fn inactive_cache_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_ttl = ttl;
        self
    }

    /// The most answers kept (default 10,000), an active answer counting once for every
    /// 4 KiB begun of the memory it takes once read (an estimate of the parsed claims, at
    /// least its body's length; at most the whole capacity): an authorization server that
    /// echoes large user attributes into its answers (up to the 256 KiB read) fills the
    /// cache with fewer of them, so that the default holds about 40 MiB of answers at most,
    /// whatever their size or shape. At most 1,000,000; zero turns the cache off.
    ///
    /// ```
    /// use smart_auth::{Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// let introspection = Introspection::new(IntrospectionAuth::bearer("rs-token")).cache_capacity(50_000);
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .introspection(introspection)
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self
    }

    /// How long after the endpoint was found down (or refusing the resource server's
    /// credentials) no call is made and every uncached token gets 503 (default 10 s; 1 s to
    /// one day). A failure after the query was sent (an HTTP status, a body that is
    /// no introspection answer, a closed connection, a timeout) is an outage only when the endpoint no longer
    /// finds active the last token it found active, which is asked about again: one token
    /// a firewall blocks gets 503 alone.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// let verifier = |cooldown| {
    ///     TokenVerifier::builder("https://auth.example.org")
    ///         .audience("https://fhir.example.org/r4")
    ///         .introspection(
    ///             Introspection::new(IntrospectionAuth::bearer("rs-token")).failure_cooldown(cooldown),
    ///         )
    ///         .build()
    /// };
    /// assert!(verifier(Duration::from_secs(5)).is_ok());
    /// let error = verifier(Duration::from_secs(2 * 24 * 3600)).unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "failure_cooldown" }));
    /// ```
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.failure_cooldown = cooldown;
        self
    }

    /// The most calls to the endpoint in flight at once (default 32; 1 to 1,024). Lookups
    /// of one token share one call, so this bounds the calls for distinct tokens.
    ///
    /// ```
    /// use smart_auth::{Introspection, IntrospectionAuth};
    /// let settings = Introspection::new(IntrospectionAuth::bearer("rs-token"))
    ///     .max_concurrent_calls(8);
    /// ```
    pub fn max_concurrent_calls(mut self, calls: usize) -> Self {
        self.max_concurrent_calls = calls;
        self
    }

    /// How long a lookup waits for a free call when all
    /// [`max_concurrent_calls`](Self::max_concurrent_calls) are busy, before it is answered
    /// 503 with `Retry-After` (default 1 s; zero answers at once; at most 60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{Introspection, IntrospectionAuth};
    /// let settings = Introspection::new(IntrospectionAuth::bearer("rs-token"))
    ///     .max_queue_wait(Duration::from_millis(250));
    /// ```
    pub fn max_queue_wait(mut self, wait: Duration) -> Self {
        self.max_queue_wait = wait;
        self
    }

    /// Refuses an active answer without `aud`. RFC 7662 makes `aud` optional, so by default
    /// an answer is checked against the configured audience only when it has one or when it
    /// has no `token_type` (unless [`insecure_accept_untyped_answers`](Self::insecure_accept_untyped_answers)
    /// says otherwise; an answer with neither proves nothing about the token's kind:
    /// some servers answer so for refresh tokens; such an answer must name an audience even
    /// for clients accepted without one), and an answer whose `token_type` names an
    /// access token but which has no `aud` is taken as the authorization server's word that
    /// the token is for this caller; with an authorization server that names the audience in its answers
    /// (Keycloak, Okta, ...), this makes a token minted for another resource server 401
    /// even when its answer leaves `aud` out. Clients accepted without an audience
    /// ([`accept_missing_audience_for_clients`](crate::VerifierBuilder::accept_missing_audience_for_clients))
    /// still are. With [`insecure_accept_any_audience`](crate::VerifierBuilder::insecure_accept_any_audience),
    /// `build` fails with [`ConfigError::ConflictingAudience`].
    ///
    /// It applies where the answer decides: [`IntrospectionMode::Only`], and tokens that are
    /// no JWT under [`IntrospectionMode::NonJwtTokens`]. Under [`IntrospectionMode::AfterJwt`]
    /// the JWT's own `aud` is checked (always required there) and the answer says only
    /// whether the token is still active.
    ///
    /// ```
    /// use smart_auth::{ConfigError, Introspection, IntrospectionAuth, TokenVerifier};
    /// let settings = || Introspection::new(IntrospectionAuth::bearer("rs-token")).require_audience();
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .introspection(settings())
    ///     .build();
    /// assert!(verifier.is_ok());
    /// let any = TokenVerifier::builder("https://auth.example.org")
    ///     .insecure_accept_any_audience()
    ///     .introspection(settings())
    ///     .build();
    /// assert!(matches!(any, Err(ConfigError::ConflictingAudience)));
    /// ```
    pub fn require_audience(mut self) -> Self {
        self.require_audience = true;
        self
    }

    /// Takes an active answer that names neither the token's type (`token_type`) nor its
    /// audience (`aud`) for an access token meant for this API, trusting the authorization
    /// server to answer so for access tokens only. SMART App Launch's own introspection
    /// example has this shape, and so do the answers of the SMART reference server
    /// (smart-launcher) and Inferno's. By default such an answer is refused (401): RFC
    /// 7662 makes both members optional, and some servers answer with neither for a
    /// refresh token (panva's oidc-provider, Medplum), which is never meant for a
    /// resource server (RFC 6749 section 1.5), so an answer with neither proves nothing
    /// about the token's kind. Insecure with such a server: its refresh tokens pass as
    /// access tokens. An answer that names an audience is still checked against it, and
    /// [`require_audience`](Self::require_audience) still refuses one without.
    ///
    /// ```
    /// use smart_auth::{Introspection, IntrospectionAuth, IntrospectionMode, TokenVerifier};
    /// let verifier = TokenVerifier::builder("https://launch.smarthealthit.org/v/r4/auth")
    ///     .audience("https://launch.smarthealthit.org/v/r4/fhir")
    ///     .introspection(
    ///         Introspection::new(IntrospectionAuth::bearer("rs-token"))
    ///             .mode(IntrospectionMode::Only)
    ///             .insecure_accept_untyped_answers(),
    ///     )
    ///     .build();
    /// assert!(verifier.is_ok());
    /// ```
    pub fn insecure_accept_untyped_answers(mut self) -> Self {
        self.accept_untyped_answers = true;
        self
    }

    /// Refuses settings that cannot work or are surely mistakes: call slots outside 1 to
    /// [`MAX_CONCURRENT_CALLS`], a cache over [`MAX_CACHE_CAPACITY`], a failure cooldown
    /// under 1 s, a queue wait over [`MAX_QUEUE_WAIT`], a duration past [`MAX_DURATION`]
    /// (one day, which no deployment needs and whose deadlines could overflow the
    /// clock), a fixed bearer credential that is no `b64token`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        // Bounded as the verifier's own limits are, against unit mistakes and settings
        // that would let a stream of distinct hostile tokens open a connection each.
        if self.max_concurrent_calls == 0 || self.max_concurrent_calls > MAX_CONCURRENT_CALLS {
            return Err(ConfigError::InvalidLimit {
                field: "max_concurrent_calls",
            });
        }
        if self.capacity > MAX_CACHE_CAPACITY {
            return Err(ConfigError::InvalidLimit {
                field: "cache_capacity",
            });
        }
        // Zero would let a down endpoint be called by every request.
        if self.failure_cooldown < Duration::from_secs(1) {
            return Err(ConfigError::InvalidLimit {
                field: "failure_cooldown",
            });
        }
        if self.max_queue_wait > MAX_QUEUE_WAIT {
            return Err(ConfigError::InvalidLimit {
                field: "max_queue_wait",
            });
        }
        if let IntrospectionAuth::Bearer(token) = &self.auth
            && crate::bearer::token_text(token.as_bytes()).is_err()
        {
            return Err(ConfigError::InvalidIntrospectionCredentials);
        }
        let durations = [
            (self.active_ttl, "cache_ttl"),
            (self.inactive_ttl, "inactive_cache_ttl"),
            (self.failure_cooldown, "failure_cooldown"),
            (self.max_queue_wait, "max_queue_wait"),
        ];
        if let Some((_, field)) = durations.into_iter().find(|(d, _)| *d > MAX_DURATION) {
            return Err(ConfigError::InvalidLimit { field });
        }
        Ok(())
    }
}

/// The longest any introspection duration setting may be: one day.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The most calls in flight at once that may be configured.
const MAX_CONCURRENT_CALLS: usize = 1024;

/// The most answers the cache may be configured to keep (as the token cache's bound).
const MAX_CACHE_CAPACITY: u64 = 1_000_000;

/// The longest a lookup may be configured to wait for a call slot (as the longest fetch
/// timeout).
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(60);

/// `now + ttl` on the monotonic clock. The settings are bounded by [`MAX_DURATION`]; a
/// deadline past the clock's range would still mean "do not reuse", never a panic.
fn deadline(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl).unwrap_or(now)
}

/// A cached answer about one token.
#[derive(Debug, Clone)]
struct Answer {
    verdict: Verdict,
    /// How long it may be reused; the cache's own expiry, which bounds its memory.
    ttl: Duration,
    /// Until when it may be reused, on tokio's monotonic clock: checked on every hit, so
    /// that tests can drive it with tokio's paused time.
    reusable_until: Instant,
    /// Its share of the cache's capacity: one for every 4 KiB begun of what an active
    /// answer takes in memory (see [`answer_weight`]), at least one.
    weight: u32,
}

/// The cache's weight of an active answer taking about `bytes` of memory: one per 4 KiB
/// begun, at least one and at most `capacity` (a heavier entry would never be kept, and
/// every request would call).
fn answer_weight(bytes: usize, capacity: u64) -> u32 {
    let pages = u64::try_from(bytes.div_ceil(4096)).unwrap_or(u64::MAX);
    u32::try_from(pages.clamp(1, capacity.max(1))).unwrap_or(u32::MAX)
}

/// What an answer says about a token.
#[derive(Debug, Clone)]
enum Verdict {
    /// Active, with these claims, until `exp` (seconds since the Unix epoch).
    Active {
        claims: Arc<Map<String, Value>>,
        exp: i64,
    },
    /// Not an active access token, for this reason.
    Refused(ErrorKind),
}

struct AnswerExpiry;

/// The SHA-256 of a token: the introspection cache's key. A collision would give one
/// token another's answer, so the hash is a cryptographic one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(token: &str) -> Self {
        Self(crate::digest::sha256(token.as_bytes()))
    }
}

impl Expiry<TokenDigest, Answer> for AnswerExpiry {
    fn expire_after_create(
        &self,
        _: &TokenDigest,
        answer: &Answer,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(answer.ttl)
    }
}

/// Why no answer about a token could be had (the request gets 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The endpoint is down, unusable, or refuses the resource server's own credentials:
    /// every token would fare the same, so the failure cooldown starts.
    Down(FetchError),
    /// Every call slot stayed busy for the whole queue wait.
    Saturated,
    /// The endpoint was found down while this lookup waited for a call slot: no call
    /// inside the failure cooldown.
    CoolingDown,
    /// The endpoint asked to slow down (429) or gave up on the request (408).
    Throttled(u16),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Down(error) => error.fmt(f),
            Self::Saturated => f.write_str("every introspection call slot stayed busy"),
            Self::CoolingDown => f.write_str("the introspection endpoint failed recently"),
            Self::Throttled(status) => {
                write!(
                    f,
                    "the introspection endpoint is throttling (HTTP {status})"
                )
            }
        }
    }
}

impl std::error::Error for Unavailable {}

/// What an HTTP error status from the introspection endpoint means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusMeaning {
    /// Not about the token: the endpoint is down, or refuses the resource server.
    Down,
    /// Not about the token, nor a lasting state: this request only.
    Throttled,
    /// About this token alone: it is not an active token this server will vouch for.
    ThisToken,
}

/// RFC 7662 section 2.3: a well-formed, authorized query about an inactive or unknown
/// token gets `"active": false`, and 401 means the caller's own credentials were refused.
/// So 401 and 403 say nothing about the token and hold for every token (down), as do the
/// statuses about the endpoint's address, the request's form or the way to it, which are
/// the same for every token (RFC 9110 section 15.5: 404, 405, 406, 407, 411, 412, 414,
/// 415, 417, 421, 426, 428, 431, ...). Only the statuses a token's content can cause refuse
/// this one token: 400 (a JWT the server does not know), 409, 410, 413 (a token too
/// large) and 422. Whether an endpoint "down" by its status is down for every token is
/// still checked with another token before the outage starts (see `Introspector::call`).
fn status_meaning(status: u16) -> StatusMeaning {
    match status {
        408 | 429 => StatusMeaning::Throttled,
        400 | 409 | 410 | 413 | 422 => StatusMeaning::ThisToken,
        _ => StatusMeaning::Down,
    }
}

/// Runs introspection for a verifier.
pub(crate) struct Introspector {
    settings: Introspection,
    issuer: String,
    authorization: Option<HeaderValue>,
    fetcher: Fetcher,
    clock: Arc<dyn Clock>,
    endpoint: tokio::sync::OnceCell<Url>,
    /// Answers by the token's SHA-256: an entry's size does not grow with the token, so
    /// refusals cached for large garbage tokens cost no more than any other.
    cache: Cache<TokenDigest, Answer>,
    /// One permit per call in flight.
    call_slots: Arc<Semaphore>,
    /// When the endpoint was last found down (monotonic).
    last_failure: Mutex<Option<Instant>>,
    /// The last token the endpoint said was active, with its `exp`: asked about again when
    /// the endpoint fails on another token, to tell a failure about that token from an
    /// outage. Only an active answer counts: anyone can make the endpoint answer "inactive".
    /// (With its digest, which is what a failed token is compared with: the token itself
    /// never meets attacker bytes in a comparison.)
    last_active: Mutex<Option<(Arc<str>, TokenDigest, i64)>>,
    /// When asking about that token again last found the endpoint answering (monotonic):
    /// checks within a second of it are not made again.
    last_healthy: Mutex<Option<Instant>>,
    /// Held while a failure is judged (the endpoint asked about that token): calls that
    /// got a slot meanwhile wait for the verdict instead of meeting the same outage.
    judging: tokio::sync::Mutex<()>,
    /// When a throttled answer was last warned about (monotonic).
    last_throttle_warning: Mutex<Option<Instant>>,
    /// When a 401/403 from the endpoint was last logged as an error (monotonic).
    last_refusal_error: Mutex<Option<Instant>>,
    /// When a 401/403 from the endpoint was last logged as a warning (monotonic).
    last_refusal_warning: Mutex<Option<Instant>>,
    /// When a health check was last throttled (monotonic): none is made again within a
    /// second of it.
    last_throttled_check: Mutex<Option<Instant>>,
    /// When an answer naming a member twice was last warned about (monotonic).
    last_duplicate_warning: Mutex<Option<Instant>>,
    /// The discovery of the endpoint in flight, shared by the lookups waiting for it, with
    /// its task (a finished task's result is not reused: after a failure, the next
    /// discovery is a new one).
    discovery: Mutex<Option<(SharedDiscovery, tokio::task::AbortHandle)>>,
    /// When the client's token was last dropped after a 401/403 (monotonic).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    last_renewal: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    pub(crate) fn new(
        settings: Introspection,
        issuer: String,
        mut fetcher: Fetcher,
        clock: Arc<dyn Clock>,
    ) -> Self {
        fetcher.max_body = fetcher.max_body.min(256 * 1024);
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .weigher(|_, answer: &Answer| answer.weight)
            .expire_after(AnswerExpiry)
            .build();
        let slots = settings
            .max_concurrent_calls
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            authorization: settings.auth.fixed_header(),
            call_slots: Arc::new(Semaphore::new(slots)),
            settings,
            issuer,
            fetcher,
            clock,
            endpoint: tokio::sync::OnceCell::new(),
            cache,
            last_failure: Mutex::new(None),
            last_active: Mutex::new(None),
            last_healthy: Mutex::new(None),
            judging: tokio::sync::Mutex::new(()),
            last_throttle_warning: Mutex::new(None),
            last_refusal_error: Mutex::new(None),
            last_refusal_warning: Mutex::new(None),
            last_throttled_check: Mutex::new(None),
            last_duplicate_warning: Mutex::new(None),
            discovery: Mutex::new(None),
            last_renewal: Mutex::new(None),
        }
    }

    pub(crate) fn mode(&self) -> IntrospectionMode {
        self.settings.mode
    }

    /// Whether an active answer must name an audience.
    pub(crate) fn requires_audience(&self) -> bool {
        self.settings.require_audience
    }

    /// Whether an active answer with neither `token_type` nor `aud` is taken for an access
    /// token of this API ([`Introspection::insecure_accept_untyped_answers`]).
    pub(crate) fn accepts_untyped_answers(&self) -> bool {
        self.settings.accept_untyped_answers
    }

    /// The active token's claims, as the introspection answer states them, with `iss`
    /// filled in from the configuration when the answer has none.
    pub(crate) async fn introspect(
        self: &Arc<Self>,
        token: &str,
    ) -> Result<Arc<Map<String, Value>>, AuthError> {
        let key = TokenDigest::of(token);
        let answer = match self.cache.get(&key).await {
            Some(answer) if Instant::now() < answer.reusable_until => {
                crate::metrics::introspection_cache_hit();
                answer
            }
            cached => {
                if cached.is_some() {
                    // Past its lifetime on the monotonic clock (the cache's own expiry
                    // runs on a clock tokio's paused time does not move). Two lookups
                    // racing here may cost one extra call, never a stale answer.
                    self.cache.invalidate(&key).await;
                }
                self.look_up(key, token).await?
            }
        };
        match answer.verdict {
            Verdict::Active { claims, exp } if exp > unix_seconds(self.clock.now()) => Ok(claims),
            Verdict::Active { .. } => Err(AuthError::new(ErrorKind::InactiveToken)),
            Verdict::Refused(ErrorKind::IntrospectionUnavailable) => {
                // How long this answer is kept: asking sooner gets it again.
                let wait = answer
                    .reusable_until
                    .saturating_duration_since(Instant::now());
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(AuthError::new(ErrorKind::IntrospectionUnavailable)
                    .with_retry_after(Duration::from_secs(seconds.max(1))))
            }
            Verdict::Refused(kind) => Err(AuthError::new(kind)),
        }
    }

    /// Asks the endpoint (one call shared by concurrent lookups of the same token) and
    /// caches the answer; failures are never cached.
    async fn look_up(self: &Arc<Self>, key: TokenDigest, token: &str) -> Result<Answer, AuthError> {
        if self.cooling_down() {
            tracing::debug!("introspection failed recently: answering 503 without calling");
            return Err(AuthError::new(ErrorKind::IntrospectionUnavailable)
                .with_retry_after(self.cooldown_left()));
        }
        let this = Arc::clone(self);
        let token_owned: Box<str> = token.into();
        // Once it holds a call slot, the call runs as a task of its own (spawned only by
        // the lookup that makes it): the verdict on a failure (the health check, the
        // failure cooldown) is recorded even when the request that asked is dropped
        // meanwhile (its client gone, an outer timeout shorter than a call and its check),
        // or each such request would leave the outage unrecorded and every later token
        // would meet it again. The slot is waited for here, so a dropped request leaves no
        // task queued for one: detached calls are never more than the slots.
        let call = async move {
            if this.endpoint.get().is_none() {
                let (discovery, started_here) = this.discovery();
                match discovery.await {
                    // The lookup that started the discovery reports its failure (a
                    // warning); those that joined it are answered as the cooldown it
                    // started answers (at debug level), not with one warning each.
                    Err(Unavailable::Down(_)) if !started_here => {
                        return Err(Unavailable::CoolingDown);
                    }
                    found => found?,
                }
            }
            let acquire = Arc::clone(&this.call_slots).acquire_owned();
            let Ok(Ok(slot)) = tokio::time::timeout(this.settings.max_queue_wait, acquire).await
            else {
                return Err(Unavailable::Saturated);
            };
            tokio::spawn(async move {
                let called = AssertUnwindSafe(this.call(&token_owned, slot))
                    .catch_unwind()
                    .await;
                called.unwrap_or_else(|_| Err(this.failed_in_a_panic()))
            })
            .await
            // Cancelled with its runtime: nothing to record.
            .unwrap_or(Err(Unavailable::Down(FetchError::TaskFailed)))
        };
        self.cache
            .try_get_with(key, call)
            .await
            .map_err(|failure: Arc<Unavailable>| {
                match *failure {
                    // The cooldown was started by `call`, before its slot was freed.
                    Unavailable::Down(_) => {
                        tracing::warn!(error = %failure, "token introspection failed");
                    }
                    // Per request, and frequent under load: not worth a warning each.
                    Unavailable::Saturated | Unavailable::CoolingDown => {
                        tracing::debug!(error = %failure, "token introspection refused");
                    }
                    // Per request too while the endpoint throttles (no cooldown starts): a
                    // warning a second at most, the rest at debug level.
                    Unavailable::Throttled(_) if first_in_a_second(&self.last_throttle_warning) => {
                        tracing::warn!(error = %failure, "token introspection refused");
                    }
                    Unavailable::Throttled(_) => {
                        tracing::debug!(error = %failure, "token introspection refused");
                    }
                }
                let wait = match *failure {
                    Unavailable::Down(_) | Unavailable::CoolingDown => self.cooldown_left(),
                    // A free slot is at most one queue wait away.
                    Unavailable::Saturated => self.settings.max_queue_wait,
                    // This request only: asking again soon is fine.
                    Unavailable::Throttled(_) => Duration::from_secs(1),
                };
                AuthError::new(ErrorKind::IntrospectionUnavailable)
                    .with_retry_after(wait)
                    .with_source(Unavailable::clone(&failure))
            })
    }

    /// The discovery of the endpoint: the one in flight, or a new one. It runs as a task,
    /// so that its failure starts the cooldown even when every request waiting for it is
    /// dropped meanwhile, and there is one such task at a time, however many lookups of
    /// distinct tokens wait for it (dropped requests leave no task each behind).
    ///
    /// Returns it with whether this call started it.
    fn discovery(self: &Arc<Self>) -> (SharedDiscovery, bool) {
        let mut slot = lock(&self.discovery);
        if let Some((running, task)) = slot.as_ref()
            && !task.is_finished()
        {
            return (running.clone(), false);
        }
        let finder = Arc::clone(self);
        let task = tokio::spawn(async move {
            let found = AssertUnwindSafe(finder.endpoint()).catch_unwind().await;
            found.map_or_else(
                |_| Err(finder.failed_in_a_panic()),
                |found| found.map(|_| ()),
            )
        });
        let abort = task.abort_handle();
        let shared = async move {
            task.await
                // Cancelled with its runtime: nothing to record.
                .unwrap_or(Err(Unavailable::Down(FetchError::TaskFailed)))
        }
        .boxed()
        .shared();
        *slot = Some((shared.clone(), abort));
        (shared, true)
    }

    /// Starts the failure cooldown.
    fn record_failure(&self) {
        *lock(&self.last_failure) = Some(Instant::now());
    }

    /// What is left of the failure cooldown (zero when none runs).
    fn cooldown_left(&self) -> Duration {
        let last = *lock(&self.last_failure);
        last.map_or(Duration::ZERO, |at| {
            self.settings.failure_cooldown.saturating_sub(at.elapsed())
        })
    }

    fn cooling_down(&self) -> bool {
        let last = *lock(&self.last_failure);
        last.is_some_and(|at| at.elapsed() < self.settings.failure_cooldown)
    }

    /// The endpoint's URL, discovered once. A failed discovery starts the failure cooldown
    /// and is not tried again inside it: lookups that waited for it (one discovery runs at
    /// a time) give up at once instead of each trying again after the last.
    async fn endpoint(&self) -> Result<&Url, Unavailable> {
        if let Some(url) = self.endpoint.get() {
            return Ok(url);
        }
        self.endpoint
            .get_or_try_init(|| async {
                if self.cooling_down() {
                    return Err(Unavailable::CoolingDown);
                }
                let found = self.find_endpoint().await;
                if let Err(error) = &found {
                    // Its address could not be had: counted as a failed call.
                    tracing::debug!(%error, "the introspection endpoint could not be found");
                    crate::metrics::introspection_call(Introspected::Error);
                    self.record_failure();
                }
                found.map_err(Unavailable::Down)
            })
            .await
    }

    /// The configured endpoint, or the one the issuer's metadata names.
    async fn find_endpoint(&self) -> Result<Url, FetchError> {
        let uri = match &self.settings.endpoint {
            Some(uri) => uri.clone(),
            None => {
                let document = fetch::discover_metadata(&self.fetcher, &self.issuer, |doc| {
                    fetch::names_absolute_url(doc, "introspection_endpoint")
                })
                .await?;
                document
                    .get("introspection_endpoint")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        let from_issuer = self.settings.endpoint.is_none();
        match (Url::parse(&uri), Url::parse(&self.issuer)) {
            (Ok(url), _) if !from_issuer && is_allowed_discovered_url(&url) => Ok(url),
            (Ok(url), Ok(issuer)) if from_issuer && is_allowed_url_named_by(&url, &issuer) => {
                Ok(url)
            }
            _ => Err(FetchError::InsecureUrl),
        }
    }

    /// A call or discovery that panicked (in a hook it called), caught in its task so that
    /// it counts whether or not its lookup still waits: it tells nothing about the token,
    /// so the endpoint is taken as down, as for any failure no token explains.
    fn failed_in_a_panic(&self) -> Unavailable {
        self.record_failure();
        Unavailable::Down(FetchError::TaskFailed)
    }

    /// One call to the endpoint, inside one of the call slots (`_slot`, held until the
    /// verdict is in).
    ///
    /// A failure that means the endpoint is down starts the failure cooldown before the
    /// slot is freed, and a lookup that got a slot waits for a failure being judged, then
    /// checks the cooldown again: lookups that queued for a slot while the endpoint failed
    /// do not call it (nor wait for a call) inside the cooldown, so at most
    /// `max_concurrent_calls` calls and one health check meet each outage.
    async fn call(&self, token: &str, _slot: OwnedSemaphorePermit) -> Result<Answer, Unavailable> {
        let endpoint = self.endpoint().await?;
        // A failure being judged now decides whether this call is made at all.
        drop(self.judging.lock().await);
        if self.cooling_down() {
            return Err(Unavailable::CoolingDown);
        }
        let outcome = self.counted_call(endpoint, token).await;
        match outcome {
            Ok(answer) => {
                if let Verdict::Active { exp, .. } = answer.verdict {
                    *lock(&self.last_active) =
                        Some((Arc::from(token), TokenDigest::of(token), exp));
                }
                Ok(answer)
            }
            Err(Unavailable::Down(error)) => {
                let health = if may_concern_this_token(&error) {
                    let _judging = self.judging.lock().await;
                    if self.cooling_down() {
                        // Another call met the outage and its verdict is in: no
                        // second check, and the cooldown keeps its start.
                        return Err(Unavailable::Down(error));
                    }
                    self.health(endpoint, token).await
                } else {
                    Health::Failing
                };
                // The check's own refusal names the credentials at fault, whatever this
                // call met.
                let error = match health {
                    Health::Refused(status) => FetchError::Status(status),
                    _ => error,
                };
                self.log_refusal_of_credentials(&error, health);
                if !health.is_down() {
                    // The endpoint vouches for another token, or no token is known to test
                    // it with (after a start, or a quiet spell): not proven down, and one
                    // token must not put every client in the cooldown. This token alone
                    // gets 503, kept briefly, so asking again costs the endpoint nothing.
                    tracing::debug!(
                        ?health,
                        "the introspection endpoint failed on one token: no outage"
                    );
                    if health == Health::Unknown {
                        self.renew_credentials(&error);
                    }
                    return Ok(self.unavailable_for_this_token());
                }
                self.renew_credentials(&error);
                self.record_failure();
                Err(Unavailable::Down(error))
            }
            Err(other) => Err(other),
        }
    }

    /// After the endpoint failed on `token` once the query was sent (an HTTP status, a
    /// body that is no introspection answer, a redirect, a closed connection, a timeout):
    /// whether it still says that the
    /// last token it found active (and not expired since) is active. Without this check,
    /// one token that a firewall in front of the endpoint blocks (`../../etc/passwd` is a
    /// valid `b64token`) would start the failure cooldown for every client, again and
    /// again. A check that found the endpoint well less than a second ago is not made
    /// again, so a burst of such tokens costs one extra call a second.
    async fn health(&self, endpoint: &Url, token: &str) -> Health {
        let within_a_second =
            |at: &Option<Instant>| at.is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if within_a_second(&lock(&self.last_healthy)) {
            return Health::Well;
        }
        // A check the endpoint throttled tells nothing, and asking again at once is what
        // it asked not to be done.
        if within_a_second(&lock(&self.last_throttled_check)) {
            return Health::Unknown;
        }
        let now = unix_seconds(self.clock.now());
        let failed = TokenDigest::of(token);
        let reference = lock(&self.last_active)
            .clone()
            .filter(|(_, digest, exp)| *exp > now && *digest != failed);
        let Some((reference, reference_digest, _)) = reference else {
            return Health::Unknown;
        };
        match self.counted_call(endpoint, &reference).await {
            Ok(Answer {
                verdict: Verdict::Active { .. },
                ..
            }) => {}
            // A well-formed answer that the reference is no longer active (revoked since,
            // or replaced by a newer token): the endpoint answers all the same. Counting
            // it as down would let a client that revoked its own token start the cooldown
            // for everyone with one blocked token after another. The reference is
            // forgotten: it proves nothing any more. And the answer replaces the cached
            // one, so that the revocation holds for the token at once, not only once its
            // active answer's time in the cache is up.
            Ok(
                refused @ Answer {
                    verdict: Verdict::Refused(_),
                    ..
                },
            ) => {
                {
                    let mut last_active = lock(&self.last_active);
                    if last_active
                        .as_ref()
                        .is_some_and(|(last, _, _)| Arc::ptr_eq(last, &reference))
                    {
                        *last_active = None;
                    }
                }
                self.cache.insert(reference_digest, refused).await;
            }
            // Throttled: the endpoint answers, if slowly; that proves no outage, and a
            // flood of tokens that makes it throttle must not start the cooldown.
            Err(Unavailable::Throttled(_)) => {
                *lock(&self.last_throttled_check) = Some(Instant::now());
                return Health::Unknown;
            }
            Err(Unavailable::Down(FetchError::Status(status @ (401 | 403)))) => {
                return Health::Refused(status);
            }
            Err(_) => return Health::Failing,
        }
        *lock(&self.last_healthy) = Some(Instant::now());
        Health::Well
    }

    /// Logs a 401 or 403 from the endpoint by what the health check made of it: an error
    /// when a token found active before was refused with 401 or 403 too (the resource
    /// server's own credentials), a warning when no such token could tell (its
    /// credentials, or a firewall in front of the endpoint refusing this token), debug
    /// when the endpoint still answers for another token (the firewall: anyone can send
    /// such tokens, and each must not raise an alarm). A check that failed otherwise is
    /// an outage, warned about as every other (`look_up`). Once a second at most each,
    /// with a limiter of its own: a warning never hides an error.
    fn log_refusal_of_credentials(&self, error: &FetchError, health: Health) {
        let FetchError::Status(status @ (401 | 403)) = *error else {
            return;
        };
        match health {
            Health::Well | Health::Failing => tracing::debug!(
                ?health,
                status,
                "the introspection endpoint refused one token's call"
            ),
            Health::Refused(_) if first_in_a_second(&self.last_refusal_error) => tracing::error!(
                status,
                "the introspection endpoint refuses the resource server's own credentials \
                 (a token it found active before is refused too): check the \
                 IntrospectionAuth settings"
            ),
            Health::Unknown if first_in_a_second(&self.last_refusal_warning) => tracing::warn!(
                status,
                "the introspection endpoint refused a call, and no token it found active \
                 lately could be asked about to tell (none known, or the check throttled) \
                 whether it refuses the resource server's own credentials (check the \
                 IntrospectionAuth settings) or a firewall in front of it refuses this token"
            ),
            Health::Refused(_) | Health::Unknown => {}
        }
    }

    /// The answer for a token the endpoint failed on while not proven down: 503, kept for
    /// the refusal time but never longer than the failure cooldown.
    fn unavailable_for_this_token(&self) -> Answer {
        let ttl = self
            .settings
            .inactive_ttl
            .min(self.settings.failure_cooldown);
        Answer {
            verdict: Verdict::Refused(ErrorKind::IntrospectionUnavailable),
            ttl,
            reusable_until: deadline(ttl),
            weight: 1,
        }
    }

    /// After a 401 or 403 not shown to be about one token: with the crate's own client as
    /// credentials, its token may have been revoked, so the next call gets a new one (at
    /// most once per failure cooldown: a token a firewall blocks must not make the layer
    /// ask the token endpoint again and again).
    fn renew_credentials(&self, error: &FetchError) {
        #[cfg(feature = "client")]
        if let (FetchError::Status(401 | 403), IntrospectionAuth::Client(client)) =
            (error, &self.settings.auth)
        {
            let mut last = lock(&self.last_renewal);
            if last.is_none_or(|at| at.elapsed() >= self.settings.failure_cooldown) {
                *last = Some(Instant::now());
                client.clear_cached_token();
            }
        }
        #[cfg(not(feature = "client"))]
        let _ = error;
    }

    /// [`Introspector::call_in_slot`], counted in the metrics.
    async fn counted_call(&self, endpoint: &Url, token: &str) -> Result<Answer, Unavailable> {
        let outcome = self.call_in_slot(endpoint, token).await;
        crate::metrics::introspection_call(match &outcome {
            Ok(Answer {
                verdict: Verdict::Active { .. },
                ..
            }) => Introspected::Active,
            Ok(_) => Introspected::Inactive,
            Err(_) => Introspected::Error,
        });
        outcome
    }

    /// The call itself, made while holding a call slot.
    async fn call_in_slot(&self, endpoint: &Url, token: &str) -> Result<Answer, Unavailable> {
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        match self.post(endpoint, body).await {
            Ok(fetched) => self.judge(&fetched.body),
            Err(FetchError::Status(status)) => match status_meaning(status) {
                StatusMeaning::ThisToken => {
                    tracing::debug!(
                        status,
                        "the introspection endpoint refused to answer about one token: \
                         treated as not active"
                    );
                    Ok(self.refusal(ErrorKind::InactiveToken))
                }
                StatusMeaning::Throttled => Err(Unavailable::Throttled(status)),
                // Whether it is an outage is decided in `call`, by the health check; a 401
                // or 403 is logged there.
                StatusMeaning::Down => Err(Unavailable::Down(FetchError::Status(status))),
            },
            Err(error) => Err(Unavailable::Down(error)),
        }
    }

    /// POSTs the form with the configured authentication.
    async fn post(&self, endpoint: &Url, body: String) -> Result<fetch::Fetched, FetchError> {
        #[cfg(feature = "client")]
        if let IntrospectionAuth::Client(client) = &self.settings.auth {
            let access_token = client.access_token().await.map_err(|error| {
                FetchError::NotSent(format!("obtaining a token to introspect with: {error}"))
            })?;
            let mut header =
                HeaderValue::from_str(&format!("Bearer {}", access_token.access_token())).map_err(
                    |_| FetchError::NotSent("the obtained token is not a header value".into()),
                )?;
            header.set_sensitive(true);
            return self.fetcher.post_form(endpoint, body, Some(&header)).await;
        }
        self.fetcher
            .post_form(endpoint, body, self.authorization.as_ref())
            .await
    }

    /// Reads a 200 answer. A body that is not one JSON object means the endpoint does not
    /// speak RFC 7662 (down); everything else is an answer about this token.
    fn judge(&self, body: &[u8]) -> Result<Answer, Unavailable> {
        let response = match object_with_unique_members(body) {
            Ok(response) => response,
            Err(StrictJsonError::DuplicateMember) => {
                // Once a second at most: each new token gets such an answer from a server
                // that writes a member twice in every one.
                if first_in_a_second(&self.last_duplicate_warning) {
                    tracing::warn!(
                        "an introspection answer names a member twice: the token is refused"
                    );
                } else {
                    tracing::debug!(
                        "an introspection answer names a member twice: the token is refused"
                    );
                }
                return Ok(self.refusal(ErrorKind::InactiveToken));
            }
            Err(StrictJsonError::NotAnObject) => {
                return Err(Unavailable::Down(FetchError::NotJsonObject));
            }
        };
        // RFC 7662 section 2.2: `active` is required, a boolean. An object without one
        // says nothing about the token (a server answering `{}` or `"active": "true"` to
        // every query, a gateway's JSON error page).
        if !response.get("active").is_some_and(Value::is_boolean) {
            return Err(Unavailable::Down(FetchError::NotIntrospectionAnswer));
        }
        let now = unix_seconds(self.clock.now());
        Ok(match read_answer(response, now, &self.issuer) {
            Ok((claims, exp)) => {
                let until_exp = Duration::from_secs(u64::try_from(exp - now).unwrap_or(0));
                let ttl = self.settings.active_ttl.min(until_exp);
                let bytes = body.len().max(crate::json::parsed_size(&claims));
                Answer {
                    verdict: Verdict::Active {
                        claims: Arc::new(claims),
                        exp,
                    },
                    ttl,
                    reusable_until: deadline(ttl),
                    weight: answer_weight(bytes, self.settings.capacity),
                }
            }
            Err(kind) => self.refusal(kind),
        })
    }

    fn refusal(&self, kind: ErrorKind) -> Answer {
        let ttl = self.settings.inactive_ttl;
        Answer {
            verdict: Verdict::Refused(kind),
            ttl,
            reusable_until: deadline(ttl),
            weight: 1,
        }
    }
}

/// Whether a failed call may have failed because of the token it asked about: every
/// failure after the token was sent (a status, a body that is no introspection answer, a
/// redirect, and also a connection reset or no answer in time, which is how a firewall
/// or an intrusion prevention system in front of the endpoint may treat a token it
/// blocks). A request never sent (no connection, no credentials) cannot have.
fn may_concern_this_token(error: &FetchError) -> bool {
    match error {
        FetchError::Status(_)
        | FetchError::NotJsonObject
        | FetchError::NotIntrospectionAnswer
        | FetchError::DuplicateMember
        | FetchError::TooLarge
        | FetchError::Redirected
        | FetchError::Transport(_)
        | FetchError::TimedOut => true,
        FetchError::NotSent(_)
        | FetchError::InsecureUrl
        | FetchError::IssuerMismatch
        | FetchError::IssuerMissing
        | FetchError::NoMetadata
        | FetchError::InvalidJwksUri
        | FetchError::ServedStale
        | FetchError::KeySet(_)
        | FetchError::TaskFailed => false,
    }
}

/// Whether the endpoint is known to answer, after it failed on one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// It answers the last token it found active: still active, or (a well-formed
    /// answer all the same) no longer.
    Well,
    /// It failed on that token too (or on a transport level).
    Failing,
    /// It refused the call about that token too, with this status (401 or 403): it
    /// refuses the resource server's own credentials.
    Refused(u16),
    /// No unexpired token it found active is known to ask about, or the check was
    /// throttled (408, 429: the endpoint answers, if slowly).
    Unknown,
}

impl Health {
    /// Whether the endpoint is down for every token: the failure cooldown starts.
    fn is_down(self) -> bool {
        matches!(self, Self::Failing | Self::Refused(_))
    }
}

/// A discovery of the introspection endpoint, awaited by every lookup that needs it.
type SharedDiscovery = futures_util::future::Shared<BoxFuture<'static, Result<(), Unavailable>>>;

/// Whether nothing was noted in `last` in the last second (and notes now if so): a log
/// line that a stream of requests could repeat is written once a second at most.
fn first_in_a_second(last: &Mutex<Option<Instant>>) -> bool {
    let now = Instant::now();
    let mut last = lock(last);
    let first = last.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
    if first {
        *last = Some(now);
    }
    first
}

/// Locks `mutex`; a panic while it was held leaves its value usable (a plain value).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The string members of an answer (RFC 7662 section 2.2, and RFC 7519 for `sub`, `iss`
/// and `jti`). `scope` is a string too, or a list of strings as some servers write it
/// (Gluu, UAA, Spring's `check_token`), read as a JWT's `scope` list is.
const STRING_MEMBERS: [&str; 6] = ["client_id", "username", "token_type", "sub", "iss", "jti"];

/// The time members of an answer: numbers of seconds since the Unix epoch.
const TIME_MEMBERS: [&str; 3] = ["exp", "iat", "nbf"];

/// The `token_type` values that name an access token usable as a bearer token, compared
/// ASCII case-insensitively: the RFC 6750 type, the RFC 7009 / RFC 7662 hint name, the
/// RFC 8693 identifier and the RFC 9068 JWT type.
const ACCESS_TOKEN_TYPES: [&str; 5] = [
    "bearer",
    "access_token",
    "urn:ietf:params:oauth:token-type:access_token",
    "at+jwt",
    "application/at+jwt",
];

/// Reads an answer about a token: its claims and `exp` when it states an active access
/// token in the expected shape, else the reason it is refused. `iss` is filled in with
/// `issuer` when the answer has none.
pub(crate) fn read_answer(
    mut response: Map<String, Value>,
    now: i64,
    issuer: &str,
) -> Result<(Map<String, Value>, i64), ErrorKind> {
    if response.get("active") != Some(&Value::Bool(true)) {
        return Err(ErrorKind::InactiveToken);
    }
    // A member of the wrong JSON type is refused, never skipped: skipping `scope: [..]` or
    // `aud: 5` would read an answer differently from the server that wrote it.
    if STRING_MEMBERS
        .iter()
        .any(|name| response.get(*name).is_some_and(|value| !value.is_string()))
        || TIME_MEMBERS
            .iter()
            .any(|name| response.get(*name).is_some_and(|value| !value.is_number()))
    {
        return Err(ErrorKind::InvalidClaim);
    }
    for name in ["aud", "scope"] {
        match response.get(name) {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => return Err(ErrorKind::InvalidClaim),
        }
    }
    if let Some(Value::String(token_type)) = response.get("token_type")
        && !ACCESS_TOKEN_TYPES
            .iter()
            .any(|accepted| token_type.eq_ignore_ascii_case(accepted))
    {
        return Err(ErrorKind::UnsupportedTokenType);
    }
    if let Some(Value::String(named)) = response.get("iss")
        && named != issuer
    {
        return Err(ErrorKind::WrongIssuer);
    }
    // RFC 7662 makes `exp` optional; this crate requires it, so that no answer is
    // trusted without an end.
    let Some(exp) = response.get("exp").and_then(numeric_date) else {
        return Err(ErrorKind::InactiveToken);
    };
    if exp <= now {
        return Err(ErrorKind::InactiveToken);
    }
    response.remove("active");
    response
        .entry("iss")
        .or_insert_with(|| Value::String(issuer.to_owned()));
    Ok((response, exp))
}

/// A JSON number as whole seconds (fractions floored, as RFC 7519 NumericDate allows;
/// numbers past `i64` saturate).
fn numeric_date(value: &Value) -> Option<i64> {
    let Value::Number(number) = value else {
        return None;
    };
    Some(if let Some(seconds) = number.as_i64() {
        seconds
    } else if number.is_u64() {
        i64::MAX
    } else {
        // `as` saturates at the i64 bounds.
        number
            .as_f64()
            .map_or(i64::MAX, |seconds| seconds.floor() as i64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer weighs one per 4 KiB of memory begun, at least one and at most the
    /// capacity: the default capacity holds 10,000 small answers or 156 taking 256 KiB, a
    /// capacity of 2 one answer of any size.
    #[test]
    fn answers_weigh_by_their_size() {
        for (length, capacity, weight) in [
            (0, 10_000, 1),
            (1, 10_000, 1),
            (4096, 10_000, 1),
            (4097, 10_000, 2),
            (9000, 10_000, 3),
            (256 * 1024, 10_000, 64),
            (usize::MAX, u64::MAX, u32::MAX),
            (9000, 2, 2),
            (9000, 0, 1),
        ] {
            assert_eq!(
                answer_weight(length, capacity),
                weight,
                "{length} {capacity}"
            );
        }
    }

    /// Dense JSON weighs by what it takes once parsed, not by its text: a 256 KiB answer
    /// of zeros in a list is about 4 MiB of values.
    #[test]
    fn answers_weigh_by_their_parsed_size() {
        let zeros = vec![Value::from(0); 128 * 1024];
        let text =
            serde_json::to_string(&serde_json::json!({ "active": true, "x": zeros })).unwrap();
        let claims: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let parsed = crate::json::parsed_size(&claims);
        assert!(
            parsed >= 15 * text.len(),
            "{parsed} for {} bytes",
            text.len()
        );
        assert!(answer_weight(text.len().max(parsed), 10_000) >= 1000);
        // Text-heavy answers weigh about their text.
        let long = "a".repeat(64 * 1024);
        let text =
            serde_json::to_string(&serde_json::json!({ "active": true, "x": long })).unwrap();
        let claims: Map<String, Value> = serde_json::from_str(&text).unwrap();
        let parsed = crate::json::parsed_size(&claims);
        // (The top-level object counts as one B-tree node besides.)
        assert!(
            parsed >= text.len() - 32 && parsed <= text.len() + 1024,
            "{parsed}"
        );
    }

    /// Every failure after the query was sent may be a firewall's answer to its token (and
    /// is checked with another token before an outage starts); one before it cannot be.
    #[test]
    fn only_failures_after_the_query_may_concern_its_token() {
        let after = [
            FetchError::Status(403),
            FetchError::NotJsonObject,
            FetchError::NotIntrospectionAnswer,
            FetchError::DuplicateMember,
            FetchError::TooLarge,
            FetchError::Redirected,
            FetchError::Transport("connection closed before message completed".into()),
            FetchError::TimedOut,
        ];
        for error in after {
            assert!(may_concern_this_token(&error), "{error:?}");
        }
        let before = [
            FetchError::NotSent("connection refused".into()),
            FetchError::InsecureUrl,
            FetchError::NoMetadata,
        ];
        for error in before {
            assert!(!may_concern_this_token(&error), "{error:?}");
        }
    }

    #[test]
    fn statuses_a_token_cannot_cause_mean_down() {
        let rows = [
            (400, StatusMeaning::ThisToken),
            (404, StatusMeaning::Down),
            (405, StatusMeaning::Down),
            (406, StatusMeaning::Down),
            (411, StatusMeaning::Down),
            (415, StatusMeaning::Down),
            (407, StatusMeaning::Down),
            (412, StatusMeaning::Down),
            (414, StatusMeaning::Down),
            (421, StatusMeaning::Down),
            (431, StatusMeaning::Down),
            (451, StatusMeaning::Down),
            (499, StatusMeaning::Down),
            (409, StatusMeaning::ThisToken),
            (410, StatusMeaning::ThisToken),
            (413, StatusMeaning::ThisToken),
            (422, StatusMeaning::ThisToken),
            (401, StatusMeaning::Down),
            (403, StatusMeaning::Down),
            (408, StatusMeaning::Throttled),
            (429, StatusMeaning::Throttled),
            (500, StatusMeaning::Down),
            (502, StatusMeaning::Down),
            (503, StatusMeaning::Down),
            (599, StatusMeaning::Down),
            (304, StatusMeaning::Down),
            (100, StatusMeaning::Down),
        ];
        for (status, meaning) in rows {
            assert_eq!(status_meaning(status), meaning, "{status}");
        }
    }

    const ISSUER: &str = "https://as.example";
    const NOW: i64 = 1_700_000_000;

    /// An active answer with `changes` applied (`null` removes a member).
    fn answer_with(changes: Value) -> Map<String, Value> {
        let mut answer = serde_json::json!({
            "active": true, "exp": NOW + 60, "iss": ISSUER, "scope": "system/Patient.rs",
            "client_id": "c1", "token_type": "Bearer", "aud": "https://fhir.example",
        });
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                answer.as_object_mut().unwrap().remove(name);
            } else {
                answer[name] = value.clone();
            }
        }
        answer.as_object().unwrap().clone()
    }

    #[test]
    fn hostile_answers_are_refused_with_exact_reasons() {
        use serde_json::json;
        let rows = [
            // `active` must be the JSON boolean true.
            (json!({"active": false}), ErrorKind::InactiveToken),
            (json!({"active": "true"}), ErrorKind::InactiveToken),
            (json!({"active": 1}), ErrorKind::InactiveToken),
            (json!({"active": [true]}), ErrorKind::InactiveToken),
            (json!({"active": {"value": true}}), ErrorKind::InactiveToken),
            (json!({"active": null}), ErrorKind::InactiveToken),
            // `exp` is required, in the future, and a number.
            (json!({"exp": null}), ErrorKind::InactiveToken),
            (json!({"exp": NOW}), ErrorKind::InactiveToken),
            (json!({"exp": NOW - 1}), ErrorKind::InactiveToken),
            (
                json!({"exp": (NOW + 60).to_string()}),
                ErrorKind::InvalidClaim,
            ),
            (json!({"exp": true}), ErrorKind::InvalidClaim),
            (json!({"exp": [NOW + 60]}), ErrorKind::InvalidClaim),
            (json!({"nbf": "0"}), ErrorKind::InvalidClaim),
            (json!({"iat": {}}), ErrorKind::InvalidClaim),
            (json!({"iat": false}), ErrorKind::InvalidClaim),
            // `scope` and the other string members.
            (
                json!({"scope": ["system/Patient.rs", 5]}),
                ErrorKind::InvalidClaim,
            ),
            (json!({"scope": [null]}), ErrorKind::InvalidClaim),
            (
                json!({"scope": [["system/Patient.rs"]]}),
                ErrorKind::InvalidClaim,
            ),
            (json!({"scope": 5}), ErrorKind::InvalidClaim),
            (json!({"scope": {"a": 1}}), ErrorKind::InvalidClaim),
            (json!({"client_id": 7}), ErrorKind::InvalidClaim),
            (json!({"username": ["u"]}), ErrorKind::InvalidClaim),
            (json!({"sub": 1}), ErrorKind::InvalidClaim),
            (json!({"jti": false}), ErrorKind::InvalidClaim),
            (
                json!({"iss": ["https://as.example"]}),
                ErrorKind::InvalidClaim,
            ),
            (json!({"token_type": 1}), ErrorKind::InvalidClaim),
            // `aud`: a string or an array of strings.
            (json!({"aud": 5}), ErrorKind::InvalidClaim),
            (json!({"aud": {"a": "b"}}), ErrorKind::InvalidClaim),
            (
                json!({"aud": ["https://fhir.example", 5]}),
                ErrorKind::InvalidClaim,
            ),
            (json!({"aud": true}), ErrorKind::InvalidClaim),
            // `token_type` must name an access token.
            (
                json!({"token_type": "refresh_token"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "Refresh_Token"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "id_token"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "urn:ietf:params:oauth:token-type:id_token"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "N_A"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "DPoP"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "mac"}),
                ErrorKind::UnsupportedTokenType,
            ),
            (json!({"token_type": ""}), ErrorKind::UnsupportedTokenType),
            (
                json!({"token_type": "Bearer "}),
                ErrorKind::UnsupportedTokenType,
            ),
            (
                json!({"token_type": "Bearer\u{0}"}),
                ErrorKind::UnsupportedTokenType,
            ),
            // `iss` must be the configured issuer exactly.
            (
                json!({"iss": "https://as.example/"}),
                ErrorKind::WrongIssuer,
            ),
            (json!({"iss": "https://AS.example"}), ErrorKind::WrongIssuer),
            (json!({"iss": ""}), ErrorKind::WrongIssuer),
        ];
        for (changes, kind) in rows {
            assert_eq!(
                read_answer(answer_with(changes.clone()), NOW, ISSUER).unwrap_err(),
                kind,
                "{changes}"
            );
        }
    }

    #[test]
    fn well_formed_answers_are_active() {
        use serde_json::json;
        let rows = [
            json!({}),
            json!({"token_type": null}),
            json!({"token_type": "bearer"}),
            json!({"token_type": "BEARER"}),
            json!({"token_type": "access_token"}),
            json!({"token_type": "urn:ietf:params:oauth:token-type:access_token"}),
            json!({"token_type": "at+jwt"}),
            json!({"token_type": "application/AT+JWT"}),
            json!({"iss": null, "aud": null, "scope": null}),
            json!({"aud": ["https://fhir.example", "other"]}),
            // An empty list is well-formed here; the verifier finds it names no audience.
            json!({"aud": []}),
            json!({"exp": (NOW + 60) as f64 + 0.5, "iat": NOW as f64, "nbf": NOW}),
            // `scope` as a list (Gluu, UAA, Spring's `check_token`).
            json!({"scope": ["system/Patient.rs", "launch"]}),
            json!({"scope": []}),
        ];
        for changes in rows {
            let (claims, exp) =
                read_answer(answer_with(changes.clone()), NOW, ISSUER).expect("active");
            assert_eq!(exp, NOW + 60, "{changes}");
            assert!(!claims.contains_key("active"), "{changes}");
            assert_eq!(claims["iss"], ISSUER, "{changes}");
        }
    }

    #[test]
    fn numeric_dates() {
        use serde_json::json;
        assert_eq!(numeric_date(&json!(5)), Some(5));
        assert_eq!(numeric_date(&json!(-5)), Some(-5));
        assert_eq!(numeric_date(&json!(5.9)), Some(5));
        assert_eq!(numeric_date(&json!(u64::MAX)), Some(i64::MAX));
        assert_eq!(numeric_date(&json!(1e300)), Some(i64::MAX));
        assert_eq!(numeric_date(&json!(-1e300)), Some(i64::MIN));
        assert_eq!(numeric_date(&json!("5")), None);
    }

    /// Every limit is bounded on both sides where a mistake (a unit, a zero) would let
    /// hostile tokens open a connection each or call a down endpoint on every request.
    #[test]
    fn limits_out_of_bounds_are_configuration_errors() {
        let settings = || Introspection::new(IntrospectionAuth::bearer("t"));
        assert!(settings().validate().is_ok());
        let refused = |field| Err(ConfigError::InvalidLimit { field });
        let secs = Duration::from_secs;
        for calls in [0, 1025, usize::MAX] {
            let result = settings().max_concurrent_calls(calls).validate();
            assert_eq!(result, refused("max_concurrent_calls"), "{calls}");
        }
        for calls in [1, 1024] {
            assert!(settings().max_concurrent_calls(calls).validate().is_ok());
        }
        for entries in [1_000_001, u64::MAX] {
            let result = settings().cache_capacity(entries).validate();
            assert_eq!(result, refused("cache_capacity"), "{entries}");
        }
        for entries in [0, 1_000_000] {
            assert!(settings().cache_capacity(entries).validate().is_ok());
        }
        for cooldown in [Duration::ZERO, Duration::from_millis(999), secs(2 * 86_400)] {
            let result = settings().failure_cooldown(cooldown).validate();
            assert_eq!(result, refused("failure_cooldown"), "{cooldown:?}");
        }
        for wait in [secs(61), Duration::MAX] {
            let result = settings().max_queue_wait(wait).validate();
            assert_eq!(result, refused("max_queue_wait"), "{wait:?}");
        }
        for wait in [Duration::ZERO, secs(60)] {
            assert!(settings().max_queue_wait(wait).validate().is_ok());
        }
    }

    /// Basic credentials are form-encoded (RFC 6749 section 2.3.1), keeping the characters
    /// that need no encoding as they are: servers that do not decode them (many do not)
    /// read `~` in a secret as `~`.
    #[test]
    fn basic_credentials_keep_unreserved_characters() {
        let header = IntrospectionAuth::basic("rs:1 x", "a~b*c-d.e_f+g%h")
            .fixed_header()
            .unwrap();
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "rs%3A1+x:a~b*c-d.e_f%2Bg%25h");
    }

    #[test]
    fn credentials_never_print() {
        let basic = format!("{:?}", IntrospectionAuth::basic("id", "s3cret"));
        assert!(basic.contains("id") && !basic.contains("s3cret"));
        assert!(!format!("{:?}", IntrospectionAuth::bearer("tok3n")).contains("tok3n"));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::{config, json_object};
    use proptest::prelude::*;

    const ANSWER_NAMES: &[&str] = &[
        "active",
        "exp",
        "iat",
        "nbf",
        "scope",
        "client_id",
        "username",
        "token_type",
        "sub",
        "iss",
        "jti",
        "aud",
    ];
    const ISSUER: &str = "https://issuer.example";
    const NOW: i64 = 1_700_000_000;

    proptest! {
        #![proptest_config(config(1024))]

        /// Any strict answer: refused with `InactiveToken`, `InvalidClaim`,
        /// `UnsupportedTokenType` or `WrongIssuer`, or accepted only when it says
        /// `"active": true`, ends in the future, names this issuer (or none) and has every
        /// member of its registered type.
        #[test]
        fn introspection_answers_are_documented(
            text in json_object(ANSWER_NAMES),
            active in any::<bool>(),
            exp in proptest::option::of(prop_oneof![Just(NOW + 60), Just(NOW), Just(i64::MAX)]),
        ) {
            // Half the answers get the members an accepted answer needs, so both sides run.
            let text = match (active, exp) {
                (true, Some(exp)) => format!(r#"{{"active":true,"exp":{exp},"outer":{text}}}"#),
                _ => text,
            };
            let Ok(answer) = object_with_unique_members(text.as_bytes()) else {
                return Ok(());
            };
            match read_answer(answer.clone(), NOW, ISSUER) {
                Ok((claims, exp)) => {
                    prop_assert_eq!(answer.get("active"), Some(&Value::Bool(true)));
                    prop_assert!(exp > NOW);
                    prop_assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
                    for name in STRING_MEMBERS {
                        prop_assert!(claims.get(name).is_none_or(Value::is_string));
                    }
                    prop_assert!(!claims.contains_key("active"));
                }
                Err(kind) => prop_assert!(
                    matches!(kind, ErrorKind::InactiveToken | ErrorKind::InvalidClaim | ErrorKind::UnsupportedTokenType | ErrorKind::WrongIssuer),
                    "{:?}", kind
                ),
            }
        }
    }
}
