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
//! | `Bearer` without a token, a malformed token, two credentials, `?access_token=` | 400, `error="invalid_request"` |
//! | any invalid token | 401, `error="invalid_token"`, a static `error_description` |
//! | issuer keys unavailable and none cached | 503, `Retry-After` (the rest of the failure cooldown) |
//!
//! # Public routes
//!
//! Without a token, only these pass (each can be turned off on the builder):
//!
//! - `GET` and `HEAD` of `{base}/metadata`, `{base}/.well-known/smart-configuration` and
//!   `/.well-known/smart-configuration`, where `{base}` is
//!   [`fhir_base_path`](SmartAuthBuilder::fhir_base_path), else the base of
//!   [`enforce_scopes`](SmartAuthBuilder::enforce_scopes), else the root (so
//!   [`SmartAuthLayer::new`] opens only `/metadata` and `/.well-known/smart-configuration`);
//! - exactly a CORS preflight: `OPTIONS` with one non-empty `Origin`, one
//!   `Access-Control-Request-Method` naming a method, no `Authorization` and no body. It
//!   reaches the inner service anonymously, so answer preflights with a CORS layer (an
//!   `OPTIONS` handler or an `any` route would see it too);
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
//! inside the nest, on the outer router, or around the whole app. In a plain tower stack
//! without that extension the layer reads the request's own URI; put it where that URI is
//! the one clients sent.
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
//!     .audience("https://fhir.example.org/fhir")
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
use std::sync::atomic::{AtomicBool, Ordering};

use tower_layer::Layer;

pub use builder::SmartAuthBuilder;
pub(crate) use public::PublicRoutes;
pub use service::{ResponseFuture, SmartAuth};

use crate::enforce::ScopeEnforcement;
use crate::error::{AuthError, ConfigError, ErrorKind};
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
/// assert!(layer.config_error().is_none());
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SmartAuthLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) verifier: Result<TokenVerifier, ConfigError>,
    pub(crate) challenge: Challenge,
    pub(crate) mode: AuthMode,
    pub(crate) public: PublicRoutes,
    pub(crate) enforcement: Option<ScopeEnforcement>,
    misconfiguration_logged: AtomicBool,
}

impl Shared {
    /// The verifier, or the 500 answer of a misconfigured layer.
    pub(crate) fn verifier(&self) -> Result<&TokenVerifier, AuthError> {
        match &self.verifier {
            Ok(verifier) => Ok(verifier),
            Err(error) => {
                if !self.misconfiguration_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!(%error, "SmartAuthLayer is misconfigured: refusing every protected request");
                }
                Err(AuthError::new(ErrorKind::Misconfigured).with_source(error.clone()))
            }
        }
    }
}

impl SmartAuthLayer {
    /// A layer for tokens from `issuer`, with every other setting at its default. The
    /// issuer must be an `https` URL (`http` only for loopback hosts) and is compared
    /// exactly with each token's `iss`.
    ///
    /// This never fails and never panics. If `issuer` is not a valid URL the layer is
    /// built anyway but refuses every protected request with 500 and logs the
    /// [`ConfigError`] once; check [`config_error`](Self::config_error) at startup, or use
    /// [`builder`](Self::builder) to get the error from `build()`.
    pub fn new(issuer: impl Into<String>) -> Self {
        match Self::builder(issuer).build() {
            Ok(layer) => layer,
            Err(error) => Self::from_parts(
                Err(error),
                Challenge::default_realm(),
                AuthMode::Required,
                PublicRoutes::default(),
                None,
            ),
        }
    }

    /// A builder for every setting.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn builder(issuer: impl Into<String>) -> SmartAuthBuilder {
        SmartAuthBuilder::new(issuer)
    }

    pub(crate) fn from_parts(
        verifier: Result<TokenVerifier, ConfigError>,
        challenge: Challenge,
        mode: AuthMode,
        public: PublicRoutes,
        enforcement: Option<ScopeEnforcement>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                challenge,
                mode,
                public,
                enforcement,
                misconfiguration_logged: AtomicBool::new(false),
            }),
        }
    }

    /// The configuration error of a layer made with [`new`](Self::new), if any.
    pub fn config_error(&self) -> Option<&ConfigError> {
        self.shared.verifier.as_ref().err()
    }

    /// The verifier this layer runs, for use outside tower.
    ///
    /// # Errors
    ///
    /// The configuration error of a layer made with [`new`](Self::new).
    pub fn verifier(&self) -> Result<&TokenVerifier, &ConfigError> {
        self.shared.verifier.as_ref()
    }

    /// Discovers and fetches the issuer's keys now (see [`TokenVerifier::warm_up`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeysUnavailable`] when the fetch fails, [`ErrorKind::Misconfigured`]
    /// for a layer with a configuration error.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        self.shared.verifier()?.warm_up().await
    }
}

impl<S> Layer<S> for SmartAuthLayer {
    type Service = SmartAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SmartAuth::new(inner, Arc::clone(&self.shared))
    }
}
