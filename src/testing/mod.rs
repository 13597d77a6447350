//! A test kit for applications protected by [`SmartAuthLayer`](crate::SmartAuthLayer)
//! (feature `testing`).
//!
//! [`TestIssuer`] is a small authorization server that runs inside your test on
//! `127.0.0.1` with an ephemeral port. It serves SMART and OpenID discovery documents and
//! a JWK Set, and mints real signed access tokens with any claims, algorithm, `kid` and
//! lifetime. Point the layer at [`TestIssuer::url`] and call your app with its tokens:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use smart_auth::{SmartAuthLayer, SmartClaims, testing::TestIssuer};
//! use tower::ServiceExt as _;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = TestIssuer::start().await;
//! let app = Router::new()
//!     .route("/fhir/Patient/{id}", get(|c: SmartClaims| async move { c.client_id().unwrap_or("").to_owned() }))
//!     .layer(SmartAuthLayer::builder(issuer.url()).audience(issuer.audience()).build()?);
//!
//! let token = issuer.token().scope("system/Patient.rs").sign();
//! let request = http::Request::get("/fhir/Patient/1")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```
//!
//! The issuer also counts the fetches it serves and rotates its keys on demand. The hooks
//! that make it misbehave (failing, slow or oversized key sets, redirects, wrong discovery
//! documents), with which this crate tests its own key cache, are hidden from these docs
//! and are not part of the API: they carry no semver promise.
//!
//! # Handlers without tokens
//!
//! To test a handler's own logic, no issuer is needed: [`ClaimsBuilder`] makes
//! [`SmartClaims`](crate::SmartClaims) that behave like verified ones, and
//! [`ClaimsLayer`] hands them to every request in place of the auth layer:
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use smart_auth::SmartClaims;
//! use smart_auth::testing::{ClaimsBuilder, ClaimsLayer};
//! use tower::ServiceExt as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let claims = ClaimsBuilder::new().patient("123").scope("patient/*.rs").build();
//! let app = Router::new()
//!     .route("/whoami", get(|c: SmartClaims| async move { c.patient().unwrap_or("").to_owned() }))
//!     .layer(ClaimsLayer::new(claims));
//! let response = app.oneshot(http::Request::get("/whoami").body(Body::empty())?).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```

mod claims;
mod issuer;
mod token;

pub use claims::{ClaimsBuilder, ClaimsLayer, WithClaims, WithClaimsFuture};
#[doc(hidden)]
pub use issuer::JwksBehaviour;
pub use issuer::{TestIssuer, TestIssuerBuilder};
pub use token::{TokenBuilder, sign_hs256};
