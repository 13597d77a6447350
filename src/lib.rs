//! # smart-auth
//!
//! Turns a Rust FHIR API into a SMART-on-FHIR protected resource server.
//!
//! SMART Backend Services clients trade a signed assertion for a short-lived Bearer access
//! token at their authorization server and call your API with it. This crate checks those
//! tokens: [`SmartAuthLayer`] is a tower layer that verifies each request's
//! `Authorization: Bearer` token against the issuer's published keys (discovered from
//! the issuer, cached and refreshed safely), checks `iss`, `aud`, `exp`/`nbf`/`iat`, the
//! algorithm and the token type, and answers failures exactly as RFC 6750 says, with a
//! FHIR `OperationOutcome` body. Handlers receive the verified [`SmartClaims`]: client
//! identity, scopes and launch context.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use smart_auth::discovery::SmartConfiguration;
//! use smart_auth::{ScopeEnforcement, SmartAuthLayer, SmartClaims};
//!
//! async fn read_patient(claims: SmartClaims) -> String {
//!     format!("{:?} may use {:?}", claims.client_id(), claims.scopes())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = SmartAuthLayer::builder("https://auth.example.org")
//!     .fhir_base("https://api.example.org/fhir") // said once: audience, paths, discovery
//!     .enforce_scopes(ScopeEnforcement::new()) // optional: 403 for out-of-scope requests
//!     .build()?;
//! let discovery = auth.discovery(
//!     SmartConfiguration::backend_services("https://auth.example.org/token").build()?,
//! );
//! let app: Router = Router::new()
//!     .route("/fhir/Patient/{id}", get(read_patient))
//!     .merge(discovery.router())
//!     .layer(auth);
//! # Ok(()) }
//! ```
//!
//! The verification itself stands without tower: [`TokenVerifier::builder`] builds it for
//! one issuer, [`Issuers`] for several (the layer holds one), and [`SmartAuthConfig`] reads
//! the whole configuration from serde data.
//!
//! ## Features
//!
//! - `axum` (default): `SmartClaims` and `Option<SmartClaims>` as handler arguments.
//! - `testing`: [`testing::TestIssuer`], an in-process authorization server that serves
//!   discovery and keys on loopback and mints real signed tokens for your tests, and
//!   [`testing::ClaimsBuilder`] with [`testing::ClaimsLayer`] for handler tests without
//!   any token.
//! - `client`: [`client::BackendServiceClient`], the other side of the flow: a SMART
//!   Backend Services client that discovers the token endpoint, authenticates with a
//!   signed JWT assertion or a client secret, caches the token and attaches it to
//!   outgoing `reqwest` requests.
//! - `introspection`: RFC 7662 token introspection for opaque and revocable tokens
//!   (`Introspection`).
//! - `dev-server`: a development SMART authorization server on loopback
//!   (`dev_server::DevAuthServer`); not for production.
//! - `metrics`: counters and gauges through the `metrics` facade, for any exporter
//!   (Prometheus, StatsD, OpenTelemetry): requests accepted and refused (by
//!   [`ErrorKind`]), key set fetches, token and introspection cache hits. The names,
//!   labels and costs are in [`metrics`] (without the feature, nothing
//!   is recorded and nothing is paid).
//! - `fuzzing`: entry points for the fuzz targets in `fuzz/`. Not part of the API, no
//!   semver promise; never enable it in a build that serves requests.
//!
//! ## Security defaults
//!
//! Asymmetric algorithms only (never `none` or HMAC); the issuer compared exactly; keys
//! only from the issuer's own key set (header `jwk`, `jku`, `x5u`, `x5c` never select a
//! key); `crit`, nested JWTs, header members of the wrong JSON type and JSON with duplicate
//! member names refused; `cnf`-bound (sender-constrained) tokens refused as Bearer tokens;
//! without a configured audience only `at+jwt` tokens accepted (any audience only through
//! [`SmartAuthBuilder::insecure_accept_any_audience`]); public routes matched byte for
//! byte, scope enforcement on the path the router routes and closed outside the FHIR base;
//! tokens over 16 KiB refused before parsing; `https` for every fetch (plain `http` to
//! loopback only), no redirects, bounded times and bodies (key sets: 5 s, 1 MiB); cooldowns on a
//! monotonic clock; no token contents in errors or logs. The README's security section
//! lists every rule with its reason.
//!
//! ## Speed
//!
//! A token the layer verified before is answered from its verified-token cache (see
//! [`TokenCachePolicy`] for exactly when, and for the trade-off), so a backend service
//! that reuses its access token pays for one signature check per token, not per request.
//! Turn the cache off with [`SmartAuthBuilder::no_token_cache`].

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// Entry points for the fuzz targets in `fuzz/`. Not part of the API: no semver promise,
/// present only with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
mod algorithm;
mod base64url;
mod bearer;
mod claims;
#[cfg(feature = "client")]
pub mod client;
mod clock;
mod config;
mod config_path;
#[cfg(feature = "dev-server")]
pub mod dev_server;
mod digest;
pub mod discovery;
mod enforce;
mod error;
#[cfg(feature = "axum")]
mod extractor;
mod fetch;
mod form;
#[cfg(feature = "introspection")]
mod introspection;
mod issuers;
mod json;
mod jwks;
mod jwt;
pub mod layer;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
mod metrics;
mod original_uri;
#[cfg(test)]
mod proptest_support;
mod response;
pub mod scopes;
#[cfg(any(feature = "testing", feature = "dev-server"))]
mod serve;
#[cfg(any(feature = "testing", feature = "dev-server", feature = "client"))]
mod signing;
#[cfg(feature = "testing")]
pub mod testing;
mod token_cache;
mod verifier;

pub use algorithm::{SigningAlgorithm, UnknownAlgorithm};
pub use claims::{Access, FhirContext, SmartClaims};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{EnforcementConfig, IssuerConfig, SmartAuthConfig, TokenCacheConfig};
pub use enforce::{PagingLink, ScopeEnforcement, default_operation_policy};
pub use error::{Answer, AuthError, ConfigError, ErrorKind, Refusal};
#[cfg(feature = "introspection")]
pub use introspection::{Introspection, IntrospectionAuth, IntrospectionMode};
pub use issuers::Issuers;
pub use jwks::{KeyCacheStatus, RefreshPolicy, StaticKeys};
pub use layer::{SmartAuthBuilder, SmartAuthLayer};
pub use response::RefusalBody;
pub use token_cache::TokenCachePolicy;
pub use verifier::{TokenTypePolicy, TokenVerifier, VerifierBuilder};
