//! RFC 6749 section 5.2 error answers.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// An OAuth error answer. The description is static text: nothing from the request, and
/// never a secret, is echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) description: &'static str,
    /// `WWW-Authenticate` for failures of HTTP authentication (Basic or Bearer).
    pub(crate) challenge: Option<&'static str>,
}

impl OAuthError {
    pub(crate) fn invalid_request(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn unsupported_grant_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        )
    }

    pub(crate) fn invalid_scope() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "none of the requested scopes may be granted to this client",
        )
    }

    /// Client authentication by assertion failed.
    pub(crate) fn invalid_client(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_client", description)
    }

    /// Client authentication by HTTP Basic failed: 401 with a challenge (RFC 6749 5.2).
    pub(crate) fn invalid_basic_client() -> Self {
        Self {
            challenge: Some("Basic realm=\"smart-auth development server\""),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        }
    }

    fn new(status: StatusCode, code: &'static str, description: &'static str) -> Self {
        Self {
            status,
            code,
            description,
            challenge: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "error_description": self.description });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(challenge) = self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
