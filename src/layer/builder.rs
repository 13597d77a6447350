//! [`SmartAuthBuilder`]: the HTTP settings of the layer, and the issuers it accepts, checked
//! once in `build`.

use std::time::Duration;

use super::public::PublicRoutes;
use super::{AuthMode, SmartAuthLayer};
use crate::algorithm::SigningAlgorithm;
use crate::claims::SmartClaims;
use crate::clock::Clock;
use crate::config_path::is_canonical_config_path;
use crate::enforce::ScopeEnforcement;
use crate::error::AuthError;
use crate::error::{ConfigError, Refusal};
use crate::issuers::Issuers;
use crate::jwks::{RefreshPolicy, StaticKeys};
use crate::response::{BodyHook, Challenge, DEFAULT_REALM, RefusalBody, is_valid_realm};
use crate::scopes::starts_fhir_interaction;
use crate::token_cache::TokenCachePolicy;
use crate::verifier::{TokenTypePolicy, TokenVerifier, VerifierBuilder, checked_url};

/// Why a public path would open FHIR to anonymous callers, if it would: it is the FHIR
/// base path (`base`, `""` for the root; a batch or system search there), or under it
/// with a first segment that starts a FHIR interaction (`Patient`, `_history`, `$export`,
/// `metadata`, which is public for `GET` already). The base is matched without case, as
/// the classifier matches it.
fn public_path_problem(path: &str, base: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    let under_base = path
        .get(..base.len())
        .filter(|prefix| prefix.eq_ignore_ascii_case(base))
        .map(|_| &path[base.len()..]);
    match under_base {
        Some("") => Some("it is the FHIR base: every interaction there would need no token"),
        Some(rest) => rest
            .strip_prefix('/')
            .and_then(|rest| rest.split('/').next())
            .filter(|first| starts_fhir_interaction(first))
            .map(|_| "it starts a FHIR interaction, which would need no token"),
        None => None,
    }
}

/// Where a layer's issuer comes from: a [`VerifierBuilder`] (built by the layer's `build`,
/// which gives it the [FHIR base](SmartAuthBuilder::fhir_base) as its default audience) or
/// a [`TokenVerifier`] built before (shared with other code, used as it is).
///
/// Sealed: implemented for these two types only.
///
/// ```
/// use smart_auth::{SmartAuthLayer, TokenVerifier};
///
/// // A `VerifierBuilder`: the layer builds it, with the FHIR base as its audience.
/// let from_builder = SmartAuthLayer::builder("https://auth.example.org")
///     .fhir_base("https://api.example.org/fhir")
///     .build()?;
/// // A `TokenVerifier` built before, shared with other code, used as it is.
/// let verifier = TokenVerifier::builder("https://auth.example.org")
///     .audience("https://api.example.org/fhir")
///     .build()?;
/// let from_verifier = SmartAuthLayer::from_verifier(verifier)
///     .fhir_base("https://api.example.org/fhir")
///     .build()?;
/// # let _ = (from_builder, from_verifier);
/// # Ok::<(), smart_auth::ConfigError>(())
/// ```
pub trait IntoVerifier: sealed::Sealed {
    /// The verifier, built with `base` as the audience when it has none of its own.
    #[doc(hidden)]
    fn into_verifier(self, base: Option<&str>) -> Result<TokenVerifier, ConfigError>;
    /// The first configured audience, the default realm of the layer.
    #[doc(hidden)]
    fn first_audience(&self) -> Option<&str>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::verifier::VerifierBuilder {}
    impl Sealed for crate::verifier::TokenVerifier {}
}

impl IntoVerifier for VerifierBuilder {
    fn into_verifier(self, base: Option<&str>) -> Result<TokenVerifier, ConfigError> {
        match base {
            Some(base) => self.default_audience(base).build(),
            None => self.build(),
        }
    }

    fn first_audience(&self) -> Option<&str> {
        VerifierBuilder::first_audience(self)
    }
}

impl IntoVerifier for TokenVerifier {
    /// Used as it is; with a FHIR base, it must check an audience of its own (a built
    /// verifier cannot take the base as its audience, and without one it would accept
    /// access tokens meant for any other API of the issuer).
    fn into_verifier(self, base: Option<&str>) -> Result<TokenVerifier, ConfigError> {
        if base.is_some() && self.checks_no_audience() {
            return Err(ConfigError::VerifierWithoutAudience);
        }
        Ok(self)
    }

    fn first_audience(&self) -> Option<&str> {
        TokenVerifier::first_audience(self)
    }
}

/// A further issuer of a layer.
#[derive(Debug, Clone)]
enum Extra {
    Builder(Box<VerifierBuilder>),
    Built(TokenVerifier),
}

/// Builds a [`SmartAuthLayer`]. Get one from [`SmartAuthLayer::builder`] (one issuer,
/// configured here) or [`SmartAuthLayer::from_verifier`] (a verifier built before).
///
/// The layer's own settings are HTTP facts: the [FHIR base](Self::fhir_base), optional
/// mode, public routes, scope enforcement and the realm. The verifier settings
/// ([`audience`](Self::audience) to [`validate`](Self::validate)) configure the issuer
/// given to [`SmartAuthLayer::builder`]; they are the settings of its
/// [`VerifierBuilder`]. Further issuers come with their own settings
/// ([`issuer`](Self::issuer), [`verifier`](Self::verifier)).
///
/// Every setting has a secure default; `build` checks them all and does no network I/O.
///
/// ```
/// use std::time::Duration;
/// use smart_auth::{ScopeEnforcement, SigningAlgorithm, SmartAuthLayer, TokenTypePolicy};
///
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .fhir_base("https://fhir.example.org/r4")
///     .algorithms([SigningAlgorithm::RS384, SigningAlgorithm::ES384])
///     .token_type(TokenTypePolicy::Rfc9068)
///     .leeway(Duration::from_secs(30))
///     .enforce_scopes(ScopeEnforcement::new())
///     .build()
///     .expect("valid configuration");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SmartAuthBuilder<V = VerifierBuilder> {
    first: V,
    extra: Vec<Extra>,
    fhir_base: Option<String>,
    served_path: Option<String>,
    realm: Option<String>,
    mode: AuthMode,
    public: PublicRoutes,
    enforcement: Option<ScopeEnforcement>,
    refusal_body: Option<BodyHook>,
}

impl<V: IntoVerifier> SmartAuthBuilder<V> {
    pub(crate) fn with_first(first: V) -> Self {
        Self {
            first,
            extra: Vec::new(),
            fhir_base: None,
            served_path: None,
            realm: None,
            mode: AuthMode::Required,
            public: PublicRoutes::default(),
            enforcement: None,
            refusal_body: None,
        }
    }

    /// The FHIR base URL (for example `https://api.example.org/fhir/r4`), said once for
    /// everything that depends on it:
    ///
    /// - the **audience** every issuer without audiences of its own accepts (a token's
    ///   `aud` must name this URL, as written here with or without one final `/`); a [`TokenVerifier`] built
    ///   before keeps its own settings and must then have an audience (else `build` fails
    ///   with [`ConfigError::VerifierWithoutAudience`]);
    /// - the **base path** of [scope enforcement](Self::enforce_scopes) and of the
    ///   public routes: its path (`/fhir/r4`), as clients send it; `{base}/metadata`,
    ///   `{base}/.well-known/smart-configuration` and `/.well-known/smart-configuration`
    ///   are public for plain `GET`/`HEAD` reads (no method override, no other path in a
    ///   path-override header, no form body);
    /// - the location of the discovery document served by
    ///   [`SmartAuthLayer::discovery`];
    /// - the default realm of challenges.
    ///
    /// Without it the base path is the root (only `/metadata` and
    /// `/.well-known/smart-configuration` are public) and each issuer needs its own
    /// audience (else only tokens typed `at+jwt` are accepted, see
    /// [`audience`](Self::audience)).
    ///
    /// `build` refuses a URL that is not `https` (plain `http` for loopback hosts only),
    /// carries a query, fragment or credentials, or whose path is not written canonically
    /// (an empty, `.` or `..` segment; `%`, `;`, `\`, whitespace or control characters)
    /// or is not written in its normal form (an upper-case host, a default port): the
    /// audience is compared byte for byte, as written and with or without one final `/`
    /// (`https://api.example.org/fhir/r4/` names the same base). Trailing slashes are
    /// dropped from the path.
    ///
    /// ```
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir/r4")
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// assert_eq!(layer.fhir_base_path(), "/fhir/r4");
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn fhir_base(mut self, url: impl Into<String>) -> Self {
        self.fhir_base = Some(url.into());
        self
    }

    /// The path under which this server receives FHIR requests, when it differs from the
    /// path of the public [`fhir_base`](Self::fhir_base) URL (a reverse proxy that
    /// rewrites paths). Rarely needed: by default the path of `fhir_base` is used. The
    /// full path the router sees, also when the layer sits inside an axum
    /// `Router::nest`. Checked like the path of `fhir_base`.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    ///
    /// // Clients call https://api.example.org/fhir; the proxy forwards /fhir/x as /x.
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .served_at_path("/")
    ///     .build()?;
    /// assert_eq!(layer.fhir_base_path(), "");
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn served_at_path(mut self, path: impl Into<String>) -> Self {
        self.served_path = Some(path.into());
        self
    }

    /// Accepts the tokens of another issuer too, checked with that issuer's keys and
    /// settings alone (see [`Issuers`](crate::Issuers) for how a token's issuer is
    /// chosen). Its builder gets the [FHIR base](Self::fhir_base) as its audience when it
    /// has none of its own.
    ///
    /// ```
    /// use smart_auth::{SmartAuthLayer, TokenVerifier};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .issuer(TokenVerifier::builder("https://login.partner.example"))
    ///     .build()?;
    /// assert_eq!(layer.issuers().iter().count(), 2);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn issuer(mut self, issuer: VerifierBuilder) -> Self {
        self.extra.push(Extra::Builder(Box::new(issuer)));
        self
    }

    /// Accepts the tokens of a verifier built before (shared with other code, such as a
    /// queue consumer), used as it is.
    ///
    /// ```
    /// use smart_auth::{SmartAuthLayer, TokenVerifier};
    ///
    /// let partner = TokenVerifier::builder("https://login.partner.example")
    ///     .audience("https://api.example.org/fhir")
    ///     .build()?;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .verifier(partner.clone())
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn verifier(mut self, verifier: TokenVerifier) -> Self {
        self.extra.push(Extra::Built(verifier));
        self
    }

    /// The `realm` of `WWW-Authenticate` challenges (default: the FHIR base URL, else the
    /// first issuer's first audience, else `fhir`). Handlers' refusals behind the layer
    /// get it too.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .realm("patient-api")
    ///     .build()?;
    /// let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// let response = app.oneshot(http::Request::get("/fhir/Patient/1").body(Body::empty())?).await?;
    /// assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="patient-api""#);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Lets requests without credentials through to the inner service, without claims;
    /// handlers take `Option<SmartClaims>`. A request with an invalid token is still
    /// refused. [Scope enforcement](Self::enforce_scopes) checks only requests with a
    /// verified token: an anonymous request reaches the handler unchecked, and the handler
    /// decides what it may do. The handler's answers get `Vary: authorization` (added to
    /// their own `Vary`), so that a shared cache never gives the answer to an anonymous
    /// request to one with a token, or the other way round.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url()).audience(issuer.audience()).optional().build()?;
    /// assert_eq!(status(layer.clone(), None).await?, 200); // anonymous: through, without claims
    /// let expired = issuer.token().expires_in_secs(-3600).sign();
    /// assert_eq!(status(layer, Some(&expired)).await?, 401); // a bad token is still refused
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn optional(mut self) -> Self {
        self.mode = AuthMode::Optional;
        self
    }

    /// Another exact path that needs no token, for any method (a health check). Compared
    /// byte for byte with the request path, like the base path (and checked the same way
    /// by `build`, except that a trailing slash is kept). `build` refuses, with
    /// [`ConfigError::InvalidRoutePath`], a path that would open FHIR to anonymous callers:
    /// the FHIR base itself (a batch, a system search there) or a path under it whose first
    /// segment starts an interaction (a resource type, `metadata`, a `_` name, an operation).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{ConfigError, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .public_path("/health")
    ///     .build()?;
    /// let app = Router::new().route("/health", get(|| async { "up" })).layer(layer);
    /// let response = app.oneshot(http::Request::get("/health").body(Body::empty())?).await?;
    /// assert_eq!(response.status(), 200); // no token needed
    ///
    /// // A path that would open FHIR itself is refused.
    /// let open = SmartAuthLayer::builder(issuer.url())
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .public_path("/fhir/Patient")
    ///     .build();
    /// assert!(matches!(open, Err(ConfigError::InvalidRoutePath { .. })));
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn public_path(mut self, path: impl Into<String>) -> Self {
        self.public.extra.push(path.into());
        self
    }

    /// Requires a token for `metadata` and `.well-known/smart-configuration` too (see
    /// [`fhir_base`](Self::fhir_base) for which paths these are).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let app = |layer| Router::new().route("/fhir/metadata", get(|| async { "{}" })).layer(layer);
    /// let metadata = || http::Request::get("/fhir/metadata").body(Body::empty());
    /// let builder = || SmartAuthLayer::builder(issuer.url()).fhir_base("https://api.example.org/fhir");
    ///
    /// let open = app(builder().build()?).oneshot(metadata()?).await?;
    /// assert_eq!(open.status(), 200);
    /// let protected = app(builder().protect_discovery_and_metadata().build()?).oneshot(metadata()?).await?;
    /// assert_eq!(protected.status(), 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn protect_discovery_and_metadata(mut self) -> Self {
        self.public.discovery_and_metadata = false;
        self
    }

    /// Lets CORS preflight requests to every path through without a token (browsers send
    /// none), for an app whose CORS layer sits *behind* this one. Exactly a preflight
    /// passes: `OPTIONS` with one non-empty `Origin`, one `Access-Control-Request-Method`
    /// naming a method, no `Authorization`, no body and no method-override header; it
    /// reaches the inner service without claims.
    ///
    /// By default only preflights for the public discovery and metadata paths pass, and
    /// every other `OPTIONS` request needs a token: an inner service that does not route
    /// by method (a tonic gRPC server, an axum `any` route, a fallback) would otherwise run
    /// for an anonymous caller who merely adds two headers. Put a CORS layer (such as
    /// tower-http's `CorsLayer`) *outside* this layer instead: it answers preflights itself.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://fhir.example.org/r4")
    ///     .allow_cors_preflight_without_token()
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn allow_cors_preflight_without_token(mut self) -> Self {
        self.public.cors_preflight = true;
        self
    }

    /// Checks every verified request against the token's SMART scopes before the handler
    /// runs (see [`ScopeEnforcement`]); refused requests get 403 `insufficient_scope`, or 400
    /// `invalid_request` when they cannot be read one way only. The
    /// enforcement's base path is the path of the [FHIR base](Self::fhir_base), or
    /// [`served_at_path`](Self::served_at_path): one of the two is required
    /// ([`ConfigError::EnforcementWithoutBase`] otherwise), `served_at_path("/")` for an API
    /// at the root. Without it, the prefix an API is mounted under (`/Fhir`, `/Acme`) would
    /// read as a resource type, and the interactions under it as others than they are.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::builder().audience("https://api.example.org/fhir").start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .fhir_base(issuer.audience())
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// let patients = issuer.token().scope("system/Patient.rs").sign();
    /// assert_eq!(status(layer.clone(), Some(&patients)).await?, 200);
    /// let observations = issuer.token().scope("system/Observation.rs").sign();
    /// assert_eq!(status(layer, Some(&observations)).await?, 403); // insufficient_scope
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn enforce_scopes(mut self, enforcement: ScopeEnforcement) -> Self {
        self.enforcement = Some(enforcement);
        self
    }

    /// Builds the body of every refusal with `hook` instead of the FHIR `OperationOutcome`,
    /// for APIs that do not speak FHIR. Only the body and extra headers are the hook's: the
    /// status, the `WWW-Authenticate` challenge and `Retry-After` stay exactly as RFC 6750
    /// and the layer say. Refusals raised behind the layer (a handler's
    /// [`AuthError`], an extractor's rejection) get the same body. The hook sees the
    /// [`AuthError`], whose [`kind`](AuthError::kind) and
    /// [`answer`](crate::ErrorKind::answer) say what happened; never put token contents in
    /// a body.
    ///
    /// ```
    /// use smart_auth::{RefusalBody, SmartAuthLayer};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://api.example.org")
    ///     .refusal_body(|error| {
    ///         let answer = error.kind().answer();
    ///         RefusalBody::json(&serde_json::json!({
    ///             "error": answer.bearer_error.unwrap_or("unauthorized"),
    ///             "error_description": answer.description,
    ///         }))
    ///     })
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn refusal_body<F>(mut self, hook: F) -> Self
    where
        F: Fn(&AuthError) -> RefusalBody + Send + Sync + 'static,
    {
        self.refusal_body = Some(BodyHook::new(hook));
        self
    }

    /// Checks the settings and builds the layer. No network I/O.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    ///
    /// ```
    /// use smart_auth::{ConfigError, SmartAuthLayer};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .build()?;
    /// assert_eq!(layer.fhir_base_path(), "/fhir");
    ///
    /// let error = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir?version=4") // a base URL carries no query
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidUrl { field: "fhir_base", .. }));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn build(self) -> Result<SmartAuthLayer, ConfigError> {
        let (base_url, base_path) = self.checked_base()?;
        let realm = self.checked_realm(base_url.as_deref())?;
        let public = self.checked_public_routes(base_path.clone())?;
        let enforcement = match (self.enforcement, base_path.as_deref()) {
            (None, _) => None,
            (Some(_), None) => return Err(ConfigError::EnforcementWithoutBase),
            (Some(enforcement), Some(base)) => {
                let enforcement = enforcement.at_base(base);
                let enforcement = match base_url.as_deref() {
                    Some(url) => enforcement.with_base_url(url),
                    None => enforcement,
                };
                Some(enforcement.checked()?)
            }
        };
        let mut verifiers = vec![self.first.into_verifier(base_url.as_deref())?];
        for extra in self.extra {
            verifiers.push(match extra {
                Extra::Builder(builder) => builder.into_verifier(base_url.as_deref())?,
                Extra::Built(verifier) => verifier.into_verifier(base_url.as_deref())?,
            });
        }
        Ok(SmartAuthLayer::from_parts(
            Issuers::new(verifiers)?,
            Challenge::with_body(&realm, self.refusal_body),
            self.mode,
            public,
            enforcement,
            base_url,
            base_path.unwrap_or_default(),
        ))
    }

    /// The FHIR base URL (as given) and the base path (trimmed of trailing slashes; from
    /// `served_at_path` or the URL), both checked.
    fn checked_base(&self) -> Result<(Option<String>, Option<String>), ConfigError> {
        let url_path = match &self.fhir_base {
            Some(base) => {
                let url = checked_url(base, "fhir_base")?;
                // The URL is also the audience, compared byte for byte: it must be written
                // as the URL parser writes it (no `..` it would resolve, no upper-case
                // host), or the audience and the paths would disagree.
                let written = url.as_str();
                if written != base && written.strip_suffix('/') != Some(base.as_str()) {
                    return Err(ConfigError::InvalidUrl {
                        field: "fhir_base",
                        reason: "not written in its normal form",
                    });
                }
                Some(url.path().to_owned())
            }
            None => None,
        };
        let path = match self.served_path.as_ref().or(url_path.as_ref()) {
            Some(path) if is_canonical_config_path(path) => {
                Some(path.trim_end_matches('/').to_owned())
            }
            Some(_) => return Err(ConfigError::InvalidPath),
            None => None,
        };
        Ok((self.fhir_base.clone(), path))
    }

    /// The public routes with checked paths: canonical, and none that opens FHIR to
    /// anonymous callers (the base itself, or a path under it that starts a FHIR
    /// interaction, [`starts_fhir_interaction`]).
    fn checked_public_routes(
        &self,
        base_path: Option<String>,
    ) -> Result<PublicRoutes, ConfigError> {
        let mut public = self.public.clone();
        if !public
            .extra
            .iter()
            .all(|path| is_canonical_config_path(path))
        {
            return Err(ConfigError::InvalidPath);
        }
        let base = base_path.as_deref().unwrap_or("");
        for path in &public.extra {
            if let Some(reason) = public_path_problem(path, base) {
                return Err(ConfigError::InvalidRoutePath {
                    setting: "public_path",
                    path: path.clone(),
                    reason,
                });
            }
        }
        public.base_path = base_path;
        Ok(public)
    }

    /// The realm of challenges: the configured one, else the FHIR base URL, else the first
    /// issuer's first audience when it is a valid realm, else `fhir`.
    fn checked_realm(&self, base_url: Option<&str>) -> Result<String, ConfigError> {
        let realm = match &self.realm {
            Some(realm) => realm.clone(),
            None => base_url
                .or_else(|| self.first.first_audience())
                .filter(|candidate| is_valid_realm(candidate))
                .unwrap_or(DEFAULT_REALM)
                .to_owned(),
        };
        if is_valid_realm(&realm) {
            Ok(realm)
        } else {
            Err(ConfigError::InvalidRealm)
        }
    }
}

/// The settings of the issuer given to [`SmartAuthLayer::builder`]: each sets the
/// [`VerifierBuilder`] setting of the same name.
impl SmartAuthBuilder<VerifierBuilder> {
    pub(crate) fn new(issuer: impl Into<String>) -> Self {
        Self::with_first(VerifierBuilder::new(issuer))
    }

    fn first(mut self, set: impl FnOnce(VerifierBuilder) -> VerifierBuilder) -> Self {
        self.first = set(self.first);
        self
    }

    /// Adds an accepted audience of this issuer's tokens; see
    /// [`VerifierBuilder::audience`]. Usually not needed: the
    /// [FHIR base](Self::fhir_base) is the default audience.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.first(|b| b.audience(audience))
    }

    /// **Insecure:** see [`VerifierBuilder::insecure_accept_any_audience`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// // Every token of the issuer passes, whatever its `aud`: only for an issuer that serves
    /// // this API alone.
    /// let layer = SmartAuthLayer::builder(issuer.url()).insecure_accept_any_audience().build()?;
    /// let token = issuer.token().audience("https://some-other-api.example").sign();
    /// assert_eq!(status(layer, Some(&token)).await?, 200);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn insecure_accept_any_audience(self) -> Self {
        self.first(VerifierBuilder::insecure_accept_any_audience)
    }

    /// See [`VerifierBuilder::leeway`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use std::time::Duration;
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .leeway(Duration::ZERO)
    ///     .build()?;
    /// let just_expired = issuer.token().expires_in_secs(-5).sign();
    /// assert_eq!(status(layer, Some(&just_expired)).await?, 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn leeway(self, leeway: Duration) -> Self {
        self.first(|b| b.leeway(leeway))
    }

    /// See [`VerifierBuilder::algorithms`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SigningAlgorithm, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .algorithms([SigningAlgorithm::ES384])
    ///     .build()?;
    /// let es384 = issuer.token().alg(SigningAlgorithm::ES384).sign();
    /// assert_eq!(status(layer.clone(), Some(&es384)).await?, 200);
    /// let rs256 = issuer.token().alg(SigningAlgorithm::RS256).sign();
    /// assert_eq!(status(layer, Some(&rs256)).await?, 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn algorithms(self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.first(|b| b.algorithms(algorithms))
    }

    /// See [`VerifierBuilder::token_type`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, TokenTypePolicy, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .token_type(TokenTypePolicy::AtJwt)
    ///     .build()?;
    /// let typed_jwt = issuer.token().header("typ", "JWT").sign();
    /// assert_eq!(status(layer, Some(&typed_jwt)).await?, 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn token_type(self, policy: TokenTypePolicy) -> Self {
        self.first(|b| b.token_type(policy))
    }

    /// See [`VerifierBuilder::scope_claims`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::builder().audience("https://api.example.org/fhir").start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .fhir_base(issuer.audience())
    ///     .scope_claims(["scp"])
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// // Scopes in `scp` (as an array) count; the `scope` claim is not read any more.
    /// let token = issuer.token().without("scope").claim("scp", serde_json::json!(["system/Patient.rs"])).sign();
    /// assert_eq!(status(layer.clone(), Some(&token)).await?, 200);
    /// let token = issuer.token().scope("system/Patient.rs").sign();
    /// assert_eq!(status(layer, Some(&token)).await?, 403);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn scope_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.first(|b| b.scope_claims(names))
    }

    /// See [`VerifierBuilder::client_id_claims`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .client_id_claims(["clientId"])
    ///     .require_client_id()
    ///     .build()?;
    /// let token = issuer.token().without("client_id").claim("clientId", "app-7").sign();
    /// assert_eq!(status(layer, Some(&token)).await?, 200);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn client_id_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.first(|b| b.client_id_claims(names))
    }

    /// See [`VerifierBuilder::patient_claims`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::builder().audience("https://api.example.org/fhir").start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .fhir_base(issuer.audience())
    ///     .patient_claims(["launch_patient"])
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// // `patient/` scopes count only with a patient in context, read here from `launch_patient`.
    /// let token = issuer.token().scope("patient/Patient.rs").claim("launch_patient", "1").sign();
    /// assert_eq!(status(layer.clone(), Some(&token)).await?, 200);
    /// let token = issuer.token().scope("patient/Patient.rs").claim("patient", "1").sign();
    /// assert_eq!(status(layer, Some(&token)).await?, 403);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn patient_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.first(|b| b.patient_claims(names))
    }

    /// See [`VerifierBuilder::fhir_user_claims`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .fhir_user_claims(["extension_fhirUser"])
    ///     .build()?;
    /// // A value of the wrong JSON type in a claim the layer reads makes the token invalid.
    /// let token = issuer.token().claim("extension_fhirUser", 42).sign();
    /// assert_eq!(status(layer.clone(), Some(&token)).await?, 401);
    /// let token = issuer.token().claim("extension_fhirUser", "Practitioner/7").sign();
    /// assert_eq!(status(layer, Some(&token)).await?, 200);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn fhir_user_claims<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.first(|b| b.fhir_user_claims(names))
    }

    /// See [`VerifierBuilder::accept_missing_audience_for_clients`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .accept_missing_audience_for_clients(["cognito-app"])
    ///     .build()?;
    /// let without_aud = |client: &str| issuer.token().without("aud").claim("client_id", client).sign();
    /// assert_eq!(status(layer.clone(), Some(&without_aud("cognito-app"))).await?, 200);
    /// assert_eq!(status(layer, Some(&without_aud("another-app"))).await?, 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn accept_missing_audience_for_clients<I, S>(self, clients: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.first(|b| b.accept_missing_audience_for_clients(clients))
    }

    /// See [`VerifierBuilder::required_claim`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .required_claim("tenant", "north")
    ///     .build()?;
    /// let north = issuer.token().claim("tenant", "north").sign();
    /// assert_eq!(status(layer.clone(), Some(&north)).await?, 200);
    /// let south = issuer.token().claim("tenant", "south").sign();
    /// assert_eq!(status(layer, Some(&south)).await?, 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn required_claim(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.first(|b| b.required_claim(name, value))
    }

    /// See [`VerifierBuilder::require_client_id`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .require_client_id()
    ///     .build()?;
    /// let anonymous_client = issuer.token().without("client_id").sign();
    /// assert_eq!(status(layer, Some(&anonymous_client)).await?, 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn require_client_id(self) -> Self {
        self.first(VerifierBuilder::require_client_id)
    }

    /// See [`VerifierBuilder::scope_context_separator`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::builder().audience("https://api.example.org/fhir").start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .fhir_base(issuer.audience())
    ///     .scope_context_separator('.')
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// // The issuer writes `system.Patient.rs` (a `/` is not allowed in its scope names).
    /// let token = issuer.token().scope("system.Patient.rs").sign();
    /// assert_eq!(status(layer, Some(&token)).await?, 200);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn scope_context_separator(self, separator: char) -> Self {
        self.first(|b| b.scope_context_separator(separator))
    }

    /// See [`VerifierBuilder::http_client`].
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    ///
    /// let http = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .user_agent("fhir-api/1.0")
    ///     .build()?;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .http_client(http)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn http_client(self, client: reqwest::Client) -> Self {
        self.first(|b| b.http_client(client))
    }

    /// See [`VerifierBuilder::fetch_timeout`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, SmartAuthLayer};
    ///
    /// let builder = || SmartAuthLayer::builder("https://auth.example.org").fhir_base("https://api.example.org/fhir");
    /// assert!(builder().fetch_timeout(Duration::from_secs(2)).build().is_ok());
    /// let error = builder().fetch_timeout(Duration::from_secs(120)).build().unwrap_err(); // over 60 s
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "fetch_timeout" }));
    /// ```
    pub fn fetch_timeout(self, timeout: Duration) -> Self {
        self.first(|b| b.fetch_timeout(timeout))
    }

    /// See [`VerifierBuilder::max_response_size`].
    ///
    /// ```
    /// use smart_auth::{ConfigError, SmartAuthLayer};
    ///
    /// let builder = || SmartAuthLayer::builder("https://auth.example.org").fhir_base("https://api.example.org/fhir");
    /// assert!(builder().max_response_size(4 * 1024 * 1024).build().is_ok());
    /// let error = builder().max_response_size(64 * 1024 * 1024).build().unwrap_err(); // over 16 MiB
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "max_response_size" }));
    /// ```
    pub fn max_response_size(self, bytes: usize) -> Self {
        self.first(|b| b.max_response_size(bytes))
    }

    /// See [`VerifierBuilder::jwks_uri`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .jwks_uri(issuer.jwks_uri())
    ///     .build()?;
    /// assert_eq!(status(layer, Some(&issuer.token().sign())).await?, 200);
    /// assert_eq!(issuer.smart_configuration_fetches(), 0); // no discovery
    /// assert_eq!(issuer.jwks_fetches(), 1);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn jwks_uri(self, uri: impl Into<String>) -> Self {
        self.first(|b| b.jwks_uri(uri))
    }

    /// See [`VerifierBuilder::static_keys`].
    ///
    /// ```
    /// use smart_auth::{SmartAuthLayer, StaticKeys};
    ///
    /// let keys = StaticKeys::from_jwks_json(r#"{"keys": [{
    ///     "kty": "OKP", "crv": "Ed25519", "kid": "signer-2024",
    ///     "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"
    /// }]}"#)?;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .static_keys(keys)
    ///     .build()?;
    /// let verifier = layer.issuers().get("https://auth.example.org").expect("configured");
    /// assert_eq!(verifier.key_cache_status().keys, 1); // there at once, never fetched
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn static_keys(self, keys: StaticKeys) -> Self {
        self.first(|b| b.static_keys(keys))
    }

    /// See [`VerifierBuilder::refresh_policy`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{RefreshPolicy, SmartAuthLayer};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .refresh_policy(RefreshPolicy::default().default_ttl(Duration::from_secs(300)))
    ///     .build();
    /// assert!(layer.is_ok());
    /// ```
    pub fn refresh_policy(self, policy: RefreshPolicy) -> Self {
        self.first(|b| b.refresh_policy(policy))
    }

    /// See [`VerifierBuilder::clock`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use std::time::Duration;
    /// use smart_auth::{ManualClock, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let clock = ManualClock::new();
    /// let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .clock(clock.clone())
    ///     .build()?;
    /// let token = issuer.token().expires_in_secs(300).sign();
    /// assert_eq!(status(layer.clone(), Some(&token)).await?, 200);
    /// clock.advance(Duration::from_secs(3600)); // an hour later, without waiting for it
    /// assert_eq!(status(layer, Some(&token)).await?, 401);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn clock(self, clock: impl Clock) -> Self {
        self.first(|b| b.clock(clock))
    }

    /// See [`VerifierBuilder::max_token_length`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .max_token_length(1024)
    ///     .build()?;
    /// let bulky = issuer.token().claim("padding", "x".repeat(2048)).sign();
    /// assert_eq!(status(layer, Some(&bulky)).await?, 401); // refused before parsing
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn max_token_length(self, bytes: usize) -> Self {
        self.first(|b| b.max_token_length(bytes))
    }

    /// See [`VerifierBuilder::introspection`].
    ///
    /// ```
    /// use smart_auth::{Introspection, IntrospectionAuth, IntrospectionMode, SmartAuthLayer};
    ///
    /// // Opaque tokens are asked about at the endpoint; JWTs are still checked locally.
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .introspection(
    ///         Introspection::new(IntrospectionAuth::basic("fhir-api", "s3cret"))
    ///             .mode(IntrospectionMode::NonJwtTokens),
    ///     )
    ///     .build();
    /// assert!(layer.is_ok());
    /// ```
    #[cfg(feature = "introspection")]
    pub fn introspection(self, introspection: crate::introspection::Introspection) -> Self {
        self.first(|b| b.introspection(introspection))
    }

    /// See [`VerifierBuilder::token_cache`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{SmartAuthLayer, TokenCachePolicy};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .token_cache(TokenCachePolicy::default().max_entries(1_000).max_age(Duration::from_secs(60)))
    ///     .build();
    /// assert!(layer.is_ok());
    /// ```
    pub fn token_cache(self, policy: TokenCachePolicy) -> Self {
        self.first(|b| b.token_cache(policy))
    }

    /// See [`VerifierBuilder::no_token_cache`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .no_token_cache()
    ///     .build()?;
    /// let token = issuer.token().sign();
    /// for _ in 0..3 {
    ///     assert_eq!(status(layer.clone(), Some(&token)).await?, 200); // each one verified in full
    /// }
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn no_token_cache(self) -> Self {
        self.first(VerifierBuilder::no_token_cache)
    }

    /// See [`VerifierBuilder::validate`]: for the tokens of the first issuer (a verifier
    /// added with [`issuer`](Self::issuer) has its own checks).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use axum::{Router, body::Body, routing::get};
    /// # use tower::ServiceExt as _;
    /// # // GET /fhir/Patient/1 through an app behind `layer`, with `token` when given.
    /// # async fn status(layer: smart_auth::SmartAuthLayer, token: Option<&str>) -> Result<http::StatusCode, Box<dyn std::error::Error>> {
    /// #     let app = Router::new().route("/fhir/Patient/{id}", get(|| async { "ok" })).layer(layer);
    /// #     let mut request = http::Request::get("/fhir/Patient/1");
    /// #     if let Some(token) = token { request = request.header("authorization", format!("Bearer {token}")); }
    /// #     Ok(app.oneshot(request.body(Body::empty())?).await?.status())
    /// # }
    /// use smart_auth::{Refusal, SmartAuthLayer, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let layer = SmartAuthLayer::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .validate(|claims| match claims.client_id() {
    ///         Some("blocked-client") => Err(Refusal::InvalidToken),
    ///         _ => Ok(()),
    ///     })
    ///     .build()?;
    /// let blocked = issuer.token().claim("client_id", "blocked-client").sign();
    /// assert_eq!(status(layer.clone(), Some(&blocked)).await?, 401);
    /// assert_eq!(status(layer, Some(&issuer.token().sign())).await?, 200);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn validate<F>(self, check: F) -> Self
    where
        F: Fn(&SmartClaims) -> Result<(), Refusal> + Send + Sync + 'static,
    {
        self.first(|b| b.validate(check))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fhir_base_is_checked_and_gives_every_base() {
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
                b().served_at_path(bad).build().unwrap_err(),
                ConfigError::InvalidPath,
                "{bad:?}"
            );
            assert_eq!(
                b().public_path(bad).build().unwrap_err(),
                ConfigError::InvalidPath,
                "{bad:?}"
            );
        }
        for bad in [
            "https://api.example//fhir",
            "https://api.example/%66hir",
            "https://api.example/fhir;v",
        ] {
            assert_eq!(
                b().fhir_base(bad).build().unwrap_err(),
                ConfigError::InvalidPath,
                "{bad:?}"
            );
        }
        for bad in [
            "/fhir",
            "http://api.example/fhir",
            "https://api.example/fhir?x=1",
            "https://api.example/fhir#f",
            "https://u:p@api.example/fhir",
            "https://api.example/fhir/../x",
            "https://api.example/./fhir",
            "https://API.example/fhir",
            "https://api.example:443/fhir",
        ] {
            assert!(
                matches!(
                    b().fhir_base(bad).build().unwrap_err(),
                    ConfigError::InvalidUrl {
                        field: "fhir_base",
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
        let layer = |builder: SmartAuthBuilder| builder.build().unwrap();
        assert_eq!(layer(b()).fhir_base_path(), "");
        assert_eq!(
            layer(b().fhir_base("https://api.example")).fhir_base_path(),
            ""
        );
        assert_eq!(layer(b()).fhir_base(), None);
        let based = layer(
            b().fhir_base("https://api.example/fhir/r4/")
                .enforce_scopes(ScopeEnforcement::new()),
        );
        assert_eq!(based.fhir_base_path(), "/fhir/r4");
        assert_eq!(based.fhir_base(), Some("https://api.example/fhir/r4/"));
        assert_eq!(
            based.scope_enforcement().map(ScopeEnforcement::base_path),
            Some("/fhir/r4")
        );
        assert_eq!(based.shared.public.base_path.as_deref(), Some("/fhir/r4"));
        assert_eq!(
            based.issuers().iter().next().unwrap().first_audience(),
            Some("https://api.example/fhir/r4/"),
            "the base URL is the default audience, exactly as written"
        );
        assert_eq!(
            layer(b().fhir_base("https://api.example/").served_at_path("/")).fhir_base_path(),
            ""
        );
        let own_audience = layer(
            b().fhir_base("https://api.example/fhir")
                .audience("https://other.example/fhir"),
        );
        assert_eq!(
            own_audience
                .issuers()
                .iter()
                .next()
                .unwrap()
                .first_audience(),
            Some("https://other.example/fhir"),
            "an issuer's own audience wins"
        );
        let any = layer(
            b().fhir_base("https://api.example/fhir")
                .insecure_accept_any_audience(),
        );
        assert_eq!(any.issuers().iter().next().unwrap().first_audience(), None);
    }

    #[test]
    fn realm_defaults_to_the_base_then_the_audience() {
        let b = || SmartAuthBuilder::new("https://as.example");
        let realm = |builder: SmartAuthBuilder| {
            let layer = builder.build().unwrap();
            layer.shared.challenge.realm().to_owned()
        };
        assert_eq!(realm(b()), "fhir");
        assert_eq!(
            realm(b().audience("https://aud.example")),
            "https://aud.example"
        );
        assert_eq!(
            realm(
                b().audience("https://aud.example")
                    .fhir_base("https://base.example/fhir")
            ),
            "https://base.example/fhir"
        );
        assert_eq!(
            realm(b().fhir_base("https://base.example/fhir").realm("api")),
            "api"
        );
    }

    #[test]
    fn several_issuers_need_distinct_identifiers() {
        let b = || SmartAuthBuilder::new("https://as.example");
        assert_eq!(
            error(b().issuer(TokenVerifier::builder("https://as.example"))),
            ConfigError::DuplicateIssuer
        );
        assert!(matches!(
            error(b().issuer(TokenVerifier::builder("http://as2.example"))),
            ConfigError::InvalidUrl {
                field: "issuer",
                ..
            }
        ));
        let layer = b()
            .fhir_base("https://api.example/fhir")
            .issuer(TokenVerifier::builder("https://as.example/"))
            .build()
            .unwrap();
        let issuers: Vec<_> = layer.issuers().iter().map(TokenVerifier::issuer).collect();
        assert_eq!(issuers, ["https://as.example", "https://as.example/"]);
        assert!(
            layer
                .issuers()
                .iter()
                .all(|v| v.first_audience() == Some("https://api.example/fhir"))
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
        assert_eq!(
            error(
                b().insecure_accept_any_audience()
                    .accept_missing_audience_for_clients(["app-1"])
            ),
            ConfigError::ConflictingAudience
        );
        for blank in ["", " ", "\t"] {
            assert_eq!(
                error(b().audience(blank)),
                ConfigError::InvalidClaimRule { field: "audience" }
            );
            assert_eq!(
                error(b().audience("https://fhir.example.org").audience(blank)),
                ConfigError::InvalidClaimRule { field: "audience" }
            );
            assert_eq!(
                error(b().required_claim(blank, "access")),
                ConfigError::InvalidClaimRule {
                    field: "required_claim"
                }
            );
            assert_eq!(
                error(b().accept_missing_audience_for_clients(["app-1", blank])),
                ConfigError::InvalidClaimRule {
                    field: "accept_missing_audience_for_clients"
                }
            );
        }
        for separator in ['/', ' ', '"', '\\', '\t', '\0', 'é', '\u{7f}'] {
            assert_eq!(
                error(b().scope_context_separator(separator)),
                ConfigError::InvalidClaimRule {
                    field: "scope_context_separator"
                },
                "{separator:?}"
            );
        }
        for separator in ['.', '-', '_', ':', '|'] {
            assert!(b().scope_context_separator(separator).build().is_ok());
        }
        // An empty required value is a rule like any other; no client list is no rule.
        assert!(b().required_claim("token_use", "").build().is_ok());
        assert!(
            b().accept_missing_audience_for_clients(Vec::<String>::new())
                .build()
                .is_ok()
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
        // 5 ms (meant as 5 s) would fail every fetch; 100 ms and 60 s are the bounds.
        for timeout in [
            Duration::ZERO,
            Duration::from_millis(5),
            Duration::from_millis(99),
        ] {
            assert_eq!(
                error(b().fetch_timeout(timeout)),
                ConfigError::InvalidLimit {
                    field: "fetch_timeout"
                },
                "{timeout:?}"
            );
        }
        for timeout in [Duration::from_millis(100), Duration::from_secs(60)] {
            assert!(b().fetch_timeout(timeout).build().is_ok(), "{timeout:?}");
        }
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
        // Ceilings: a value in the wrong unit must not lift a bound.
        assert_eq!(
            error(b().fetch_timeout(Duration::from_secs(61))),
            ConfigError::InvalidLimit {
                field: "fetch_timeout"
            }
        );
        assert_eq!(
            error(b().max_response_size(16 * 1024 * 1024 + 1)),
            ConfigError::InvalidLimit {
                field: "max_response_size"
            }
        );
        assert_eq!(
            error(b().max_token_length(1024 * 1024 + 1)),
            ConfigError::InvalidLimit {
                field: "max_token_length"
            }
        );
        // Floors: a size meant in KiB or MiB must not refuse every token or fetch.
        assert_eq!(
            error(b().max_token_length(16)),
            ConfigError::InvalidLimit {
                field: "max_token_length"
            }
        );
        assert_eq!(
            error(b().max_response_size(1)),
            ConfigError::InvalidLimit {
                field: "max_response_size"
            }
        );
        assert!(
            b().max_token_length(512)
                .max_response_size(4096)
                .build()
                .is_ok()
        );
        assert!(
            b().fetch_timeout(Duration::from_secs(60))
                .max_response_size(16 * 1024 * 1024)
                .max_token_length(1024 * 1024)
                .build()
                .is_ok()
        );
        assert_eq!(error(b().public_path("health")), ConfigError::InvalidPath);
        assert_eq!(error(b().served_at_path("fhir")), ConfigError::InvalidPath);
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
