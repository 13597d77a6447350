//! The tower layer: [`SmartAuthLayer`] wraps a service and lets only requests with a valid
//! Bearer token through.
//!
//! For each request the layer
//!
//! 1. lets public routes through untouched (see [Public routes](#public-routes));
//! 2. takes the one Bearer token from the `Authorization` header (RFC 6750 section 2.1;
//!    the scheme name in any case);
//! 3. verifies it with the [`TokenVerifier`], or answers from the layer's verified-token
//!    cache when it verified the same token before (see
//!    [`TokenCachePolicy`](crate::TokenCachePolicy));
//! 4. on success inserts the [`SmartClaims`](crate::SmartClaims) into the request
//!    extensions and calls the inner service; on failure answers itself, exactly as RFC
//!    6750 section 3 says, with a FHIR `OperationOutcome` body and the [`AuthError`] in the
//!    response extensions.
//!
//! | request | answer |
//! |---|---|
//! | no `Authorization`, or a scheme other than `Bearer` | 401, `WWW-Authenticate: Bearer realm="…"` |
//! | `Bearer` without a token, a credential that is not RFC 6750 `b64token` syntax, two credentials, `?access_token=` | 400, `error="invalid_request"` |
//! | a malformed JWT (wrong segments, bad base64url or JSON) | 401, `error="invalid_token"` |
//! | any invalid token | 401, `error="invalid_token"`, a static `error_description` |
//! | a valid token whose scopes do not allow the request ([scope enforcement](crate::ScopeEnforcement)) | 403, `error="insufficient_scope"` |
//! | a valid token on a request scope enforcement cannot read one way only (`/fhir/Patient/../x`) | 400, `error="invalid_request"` |
//! | issuer keys unavailable and none cached, or an unknown `kid` while fetches fail | 503, `Retry-After` (the rest of the cooldowns) |
//! | the introspection endpoint down or busy | 503, `Retry-After` |
//!
//! These are HTTP answers. A gRPC client reads a call's outcome from `grpc-status` on an
//! HTTP 200 (tonic's client does not even map the HTTP status: it reports `INTERNAL`), so
//! a tonic server puts an adapter outside this layer that answers gRPC calls' refusals as
//! gRPC statuses: `examples/grpc/refusals.rs` is one (by the [`AuthError`] in the
//! response's extensions; `UNAUTHENTICATED`, `PERMISSION_DENIED`, `INVALID_ARGUMENT`,
//! `UNAVAILABLE`).
//!
//! # Public routes
//!
//! Without a token, only these pass (each can be turned off on the builder):
//!
//! - `GET` and `HEAD` of `{base}/metadata`, `{base}/.well-known/smart-configuration` and
//!   `/.well-known/smart-configuration`, where `{base}` is the path of
//!   [`fhir_base`](SmartAuthBuilder::fhir_base), else the root (so
//!   [`SmartAuthLayer::new`] opens only `/metadata` and `/.well-known/smart-configuration`),
//!   unless the request names another method (a method-override header or a `_method`
//!   parameter, which a service behind could honour);
//! - exactly a CORS preflight to one of those paths: `OPTIONS` with one non-empty `Origin`,
//!   one `Access-Control-Request-Method` naming a method, no `Authorization`, no body and
//!   no method override (header or `_method` parameter); to every other path only with
//!   [`allow_cors_preflight_without_token`](SmartAuthBuilder::allow_cors_preflight_without_token)
//!   (a preflight reaches the inner service anonymously, and a service that does not route
//!   by method, such as tonic or an `any` route, would run for it: put a CORS layer outside
//!   this one instead);
//! - the exact paths of [`public_path`](SmartAuthBuilder::public_path), any method.
//!
//! A public path matches the request path (without the query) byte for byte. Any other
//! spelling needs a token: a percent-escape (`/fhir/%6Detadata`), `//`, a `.` or `..`
//! segment, a trailing slash or another case. Routers match static routes on the raw path
//! but decode path parameters, so such a spelling reaches another route than the public one
//! (`/%50atient/metadata` reaches `/{type}/{id}` as `Patient`, `metadata`). No suffix of an
//! arbitrary path is public. Requests let through this way carry no claims, even with a
//! token.
//!
//! # Which path the layer reads
//!
//! Public routes and [scope enforcement](crate::ScopeEnforcement) are decided on the path as
//! the client sent it. Inside an axum `Router::nest` the inner layers see the path without
//! the nest prefix; the layer then reads the original URI that axum keeps in the
//! `axum::extract::OriginalUri` extension (crate feature `axum`). So every base path is the
//! full path (`/fhir`, not `/` for a layer inside `nest("/fhir", …)`), and the layer may sit
//! inside the nest, on the outer router, or around the whole app. The extension is used
//! only where nesting explains the difference (the request's path ends the original one);
//! a service that rewrote the path another way is judged on the path its router routes.
//! In a plain tower stack without that extension the layer reads the request's own URI;
//! put it where that URI is the one clients sent.
//!
//! A layer inside a nest covers only the routes of the nested router: a request under the
//! prefix that none of them matches goes to the outer router's fallback, which no layer
//! of the nested router wraps. Give the nested router its own fallback, or put the layer
//! on the outer router, when requests under the prefix must all be checked.
//!
//! In axum, add the layer with `Router::layer` after every route, `merge` and `fallback`:
//! it wraps only what the router holds when it is called. A router merged after it, the
//! discovery router too, brings its own fallback, so axum's 404 for an unrouted path
//! would answer without a token and tell anonymous callers which paths are routed.
//! `Router::route_layer` leaves 404s, 405s and fallbacks unchecked for the same reason.
//!
//! # Optional mode and other credentials
//!
//! In [optional mode](crate::SmartAuthBuilder::optional) a request with another
//! `Authorization` scheme (Basic, DPoP) passes as anonymous with the header left in place:
//! a handler that forwards requests upstream forwards it unchecked. One layer checks tokens
//! against its audiences, not against the host a request names: host-based tenants with
//! their own audiences need one layer each.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use smart_auth::{SmartAuthLayer, SmartClaims};
//!
//! async fn patient(claims: SmartClaims) -> String {
//!     format!("hello {}", claims.client_id().unwrap_or("client"))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = SmartAuthLayer::builder("https://auth.example.org")
//!     .fhir_base("https://fhir.example.org/fhir")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/fhir/Patient/{id}", get(patient))
//!     .layer(auth);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod builder;
mod public;
mod service;

use std::sync::Arc;

use tower_layer::Layer;

pub use builder::{IntoVerifier, SmartAuthBuilder};
pub(crate) use public::PublicRoutes;
pub use service::{ResponseFuture, SmartAuth};

use crate::enforce::ScopeEnforcement;
use crate::error::AuthError;
use crate::issuers::Issuers;
use crate::response::Challenge;
use crate::verifier::TokenVerifier;

/// What happens to requests without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMode {
    /// Refused with 401.
    Required,
    /// Passed on without claims.
    Optional,
}

/// A tower [`Layer`] that protects a service with SMART Bearer tokens. See the
/// [module docs](self).
///
/// ```
/// use smart_auth::SmartAuthLayer;
/// let layer = SmartAuthLayer::new("https://auth.example.org");
/// assert_eq!(layer.fhir_base_path(), "");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SmartAuthLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) issuers: Issuers,
    pub(crate) challenge: Challenge,
    pub(crate) mode: AuthMode,
    pub(crate) public: PublicRoutes,
    pub(crate) enforcement: Option<ScopeEnforcement>,
    fhir_base: Option<String>,
    /// The FHIR base path without a trailing slash, `""` for the root.
    base_path: String,
}

impl SmartAuthLayer {
    /// A layer for tokens from `issuer`, with every other setting at its default: the
    /// one-line start. The issuer must be an `https` URL (`http` only for loopback hosts)
    /// and is compared exactly with each token's `iss`.
    ///
    /// Without an audience the layer accepts only tokens typed `at+jwt` (see
    /// [`SmartAuthBuilder::audience`]); set the FHIR base with
    /// [`builder`](Self::builder) and [`SmartAuthBuilder::fhir_base`] for tokens typed
    /// `JWT`.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::new("https://auth.example.org");
    /// assert_eq!(layer.issuers().iter().count(), 1);
    /// ```
    ///
    /// # Panics
    ///
    /// If `issuer` is not a valid issuer URL: a layer that could only refuse every
    /// request is never built. Use [`builder`](Self::builder) to get the
    /// [`ConfigError`](crate::ConfigError) from `build()` instead.
    pub fn new(issuer: impl Into<String>) -> Self {
        match Self::builder(issuer).build() {
            Ok(layer) => layer,
            Err(error) => panic!("SmartAuthLayer::new: invalid configuration: {error}"),
        }
    }

    /// A builder for every setting, starting from one issuer.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://fhir.example.org/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn builder(issuer: impl Into<String>) -> SmartAuthBuilder {
        SmartAuthBuilder::new(issuer)
    }

    /// A builder starting from a verifier built before (one you also use outside tower,
    /// for example); it keeps its own settings.
    ///
    /// Its audiences are this server's: it accepts a token naming any of them, and a
    /// per-server grant in `authorization_details` whose `locations` name any of them
    /// gives the claims' launch context. A verifier whose audiences name several FHIR
    /// servers, shared by their layers, therefore accepts each server's tokens, and
    /// applies each server's grant, at every one: give each FHIR base a verifier of its
    /// own.
    ///
    /// ```
    /// use smart_auth::{SmartAuthLayer, TokenVerifier};
    ///
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// let layer = SmartAuthLayer::from_verifier(verifier.clone())
    ///     .fhir_base("https://fhir.example.org/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn from_verifier(verifier: TokenVerifier) -> SmartAuthBuilder<TokenVerifier> {
        SmartAuthBuilder::with_first(verifier)
    }

    pub(crate) fn from_parts(
        issuers: Issuers,
        challenge: Challenge,
        mode: AuthMode,
        public: PublicRoutes,
        enforcement: Option<ScopeEnforcement>,
        fhir_base: Option<String>,
        base_path: String,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                issuers,
                challenge,
                mode,
                public,
                enforcement,
                fhir_base,
                base_path,
            }),
        }
    }

    /// The issuers whose tokens this layer accepts, for use outside tower (a gRPC
    /// interceptor, a queue consumer): the same verifiers, caches included.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::new("https://auth.example.org");
    /// let verifier = layer.issuers().get("https://auth.example.org").unwrap();
    /// assert_eq!(verifier.issuer(), "https://auth.example.org");
    /// ```
    pub fn issuers(&self) -> &Issuers {
        &self.shared.issuers
    }

    /// The [FHIR base URL](SmartAuthBuilder::fhir_base), when set.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir/r4")
    ///     .build()?;
    /// assert_eq!(layer.fhir_base(), Some("https://api.example.org/fhir/r4"));
    ///
    /// let without = SmartAuthLayer::builder("https://auth.example.org").audience("api://fhir").build()?;
    /// assert_eq!(without.fhir_base(), None);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn fhir_base(&self) -> Option<&str> {
        self.shared.fhir_base.as_deref()
    }

    /// The FHIR base path the layer works with, without a trailing slash (`""` for the
    /// root): the path of the [FHIR base](SmartAuthBuilder::fhir_base), or
    /// [`served_at_path`](SmartAuthBuilder::served_at_path).
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir/r4/")
    ///     .build()?;
    /// assert_eq!(layer.fhir_base_path(), "/fhir/r4");
    ///
    /// let at_root = SmartAuthLayer::builder("https://auth.example.org").audience("api://fhir").build()?;
    /// assert_eq!(at_root.fhir_base_path(), "");
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn fhir_base_path(&self) -> &str {
        &self.shared.base_path
    }

    /// The scope enforcement the layer runs, at the layer's base path (for
    /// [`ScopeEnforcement::check_bundle_entry`] in a batch handler).
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer, testing::ClaimsBuilder};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// let enforcement = layer.scope_enforcement().expect("enforcement is on");
    ///
    /// // A batch handler checks each entry as the layer checks a request.
    /// let claims = ClaimsBuilder::new().scope("system/Patient.rs").build();
    /// assert!(enforcement.check_bundle_entry(&claims, "GET", "Patient/1").is_ok());
    /// assert!(enforcement.check_bundle_entry(&claims, "DELETE", "Patient/1").is_err());
    /// # }
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn scope_enforcement(&self) -> Option<&ScopeEnforcement> {
        self.shared.enforcement.as_ref()
    }

    /// The discovery layer that serves `configuration` at
    /// `{fhir base path}/.well-known/smart-configuration`, where this layer lets it through
    /// without a token: the base is said once, on this layer's builder.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use smart_auth::SmartAuthLayer;
    /// use smart_auth::discovery::SmartConfiguration;
    ///
    /// let auth = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .build()?;
    /// let configuration =
    ///     SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let discovery = auth.discovery(configuration);
    /// assert_eq!(discovery.paths(), ["/fhir/.well-known/smart-configuration"]);
    /// let app: Router = Router::new()
    ///     .route("/fhir/Patient/{id}", get(|| async { "patient" }))
    ///     .merge(discovery.router())
    ///     .layer(auth);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn discovery(
        &self,
        configuration: crate::discovery::SmartConfiguration,
    ) -> crate::discovery::SmartDiscoveryLayer {
        crate::discovery::SmartDiscoveryLayer::new(configuration)
            .at_checked_base(&self.shared.base_path)
    }

    /// Discovers and fetches the keys of every issuer now, all at once (see
    /// [`TokenVerifier::warm_up`]).
    ///
    /// # Errors
    ///
    /// The first issuer's [`ErrorKind::KeysUnavailable`](crate::ErrorKind::KeysUnavailable)
    /// error, when a fetch fails.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{SmartAuthLayer, TokenVerifier, testing::TestIssuer};
    ///
    /// let (main, partner) = (TestIssuer::start().await, TestIssuer::start().await);
    /// let layer = SmartAuthLayer::builder(main.url())
    ///     .audience(main.audience())
    ///     .issuer(TokenVerifier::builder(partner.url()).audience(partner.audience()))
    ///     .build()?;
    /// layer.warm_up().await?; // before serving: the first requests wait for no key set
    /// assert_eq!((main.jwks_fetches(), partner.jwks_fetches()), (1, 1));
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        let all = self.shared.issuers.iter().map(TokenVerifier::warm_up);
        futures_util::future::join_all(all)
            .await
            .into_iter()
            .collect()
    }
}

impl<S> Layer<S> for SmartAuthLayer {
    type Service = SmartAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SmartAuth::new(inner, Arc::clone(&self.shared))
    }
}
