//! axum extractors: `SmartClaims` and `Option<SmartClaims>` as handler arguments.
//!
//! The extractor never verifies anything: it reads what [`SmartAuthLayer`] put into the
//! request extensions.
//!
//! | layer outcome | `SmartClaims` | `Option<SmartClaims>` |
//! |---|---|---|
//! | valid token | the claims | `Some(claims)` |
//! | no credentials, layer in optional mode | 401 with the layer's challenge | `None` |
//! | no layer on this route | 500 naming the missing layer | 500 naming the missing layer |
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

/// Why `SmartClaims` could not be extracted; answers like the layer would.
///
/// ```
/// use axum::response::IntoResponse;
/// # fn show(rejection: smart_auth::ClaimsRejection) {
/// let response = rejection.into_response();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClaimsRejection {
    error: AuthError,
    challenge: Challenge,
}

impl ClaimsRejection {
    /// The error behind the rejection.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    fn layer_missing() -> Self {
        tracing::error!(
            "SmartClaims extracted on a route that no SmartAuthLayer covers: add the layer to this route"
        );
        Self {
            error: AuthError::new(ErrorKind::LayerMissing),
            challenge: Challenge::new("fhir"),
        }
    }
}

impl IntoResponse for ClaimsRejection {
    fn into_response(self) -> Response {
        self.challenge
            .response::<Bytes>(&self.error)
            .map(axum::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SmartClaims {
    type Rejection = ClaimsRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(claims) = parts.extensions.get::<SmartClaims>() {
            return Ok(claims.clone());
        }
        match parts.extensions.get::<Unauthenticated>() {
            Some(Unauthenticated(challenge)) => Err(ClaimsRejection {
                error: AuthError::new(ErrorKind::MissingToken),
                challenge: challenge.clone(),
            }),
            None => Err(ClaimsRejection::layer_missing()),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for SmartClaims {
    type Rejection = ClaimsRejection;

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
        Err(ClaimsRejection::layer_missing())
    }
}
