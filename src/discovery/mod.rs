//! Publishing `/.well-known/smart-configuration`, the document SMART clients read to find
//! the authorization server's endpoints (SMART App Launch 2.2, "Conformance").
//!
//! 1. Build a validated [`SmartConfiguration`]: by hand with
//!    [`SmartConfiguration::builder`], with the
//!    [`backend_services`](SmartConfiguration::backend_services) preset, or from the
//!    authorization server's own metadata with
//!    [`from_issuer`](SmartConfiguration::from_issuer).
//! 2. Serve it with [`SmartDiscoveryLayer`] (tower) or its
//!    [`router`](SmartDiscoveryLayer::router) (axum); the auth layer makes one at its own
//!    FHIR base with [`SmartAuthLayer::discovery`](crate::SmartAuthLayer::discovery).
//!
//! ```
//! use axum::{Router, routing::get};
//! use smart_auth::SmartAuthLayer;
//! use smart_auth::discovery::SmartConfiguration;
//!
//! let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
//!     .scopes_supported(["system/*.rs"])
//!     .introspection_endpoint("https://auth.example.org/introspect")
//!     .build()?;
//! let auth = SmartAuthLayer::builder("https://auth.example.org")
//!     .fhir_base("https://api.example.org/fhir")
//!     .build()?;
//! let discovery = auth.discovery(configuration);
//! let app: Router = Router::new()
//!     .route("/fhir/Patient/{id}", get(|| async { "patient" }))
//!     .merge(discovery.router())
//!     .layer(auth);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod document;
mod serve;

pub use document::{
    AssociatedEndpoint, BrandIdentifier, Capability, DiscoveryError, SmartConfiguration,
    SmartConfigurationBuilder,
};
pub use serve::{ResponseFuture, SmartDiscovery, SmartDiscoveryLayer};
