//! axum integration: `SmartClaims` and `Option<SmartClaims>` as handler arguments, and
//! [`AuthError`] as a handler's error response.
//!
//! The extractor never verifies anything: it reads what [`SmartAuthLayer`] put into the
//! request extensions.
//!
//! | layer outcome | `SmartClaims` | `Option<SmartClaims>` |
//! |---|---|---|
//! | valid token | the claims | `Some(claims)` |
//! | no credentials, layer in optional mode | 401 with the layer's challenge | `None` |
//! | a public route (metadata, discovery) | 401 with the layer's challenge | `None` |
//! | no layer on this route | 500 (the error log names the missing layer) | 500 (the same) |
//!
//! (An invalid token never reaches the handler: the layer refuses it in both modes.)
//!
//! [`SmartAuthLayer`]: crate::SmartAuthLayer

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;

use crate::claims::SmartClaims;
use crate::error::{AuthError, ErrorKind};
use crate::response::{Challenge, Unauthenticated};

/// Answers exactly as the layer would: status, `WWW-Authenticate` challenge and an
/// `OperationOutcome` body. The challenge carries the realm `fhir`; behind a
/// [`SmartAuthLayer`](crate::SmartAuthLayer) the layer puts its own realm into it on the way
/// out, so a handler's refusal and the layer's refusals name the same realm.
///
/// ```
/// use axum::response::IntoResponse;
/// use smart_auth::{AuthError, ErrorKind};
/// let response = AuthError::insufficient_scope("system/Observation.rs").into_response();
/// assert_eq!(response.status(), 403);
/// ```
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        Challenge::default_realm()
            .unsettled_response::<Bytes>(&self)
            .map(axum::body::Body::from)
    }
}

fn layer_missing() -> AuthError {
    tracing::error!(
        "SmartClaims extracted on a route that no SmartAuthLayer covers: add the layer to this route"
    );
    AuthError::new(ErrorKind::LayerMissing)
}

impl<S: Send + Sync> FromRequestParts<S> for SmartClaims {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<SmartClaims>() {
            return Ok(claims.clone());
        }
        match parts.extensions.get::<Unauthenticated>() {
            Some(Unauthenticated) => Err(AuthError::new(ErrorKind::MissingToken)),
            None => Err(layer_missing()),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for SmartClaims {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<SmartClaims>() {
            return Ok(Some(claims.clone()));
        }
        if parts.extensions.get::<Unauthenticated>().is_some() {
            return Ok(None);
        }
        Err(layer_missing())
    }
}
