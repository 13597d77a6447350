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
    /// `Retry-After` seconds, for answers about a full store.
    pub(crate) retry_after: Option<u64>,
}

/// The realm of every challenge this server sends.
pub(crate) const BASIC_CHALLENGE: &str = "Basic realm=\"smart-auth development server\"";

/// The challenges for a Bearer caller of the introspection endpoint whose token failed.
const BEARER_CALLER_CHALLENGE: &str = "Bearer realm=\"smart-auth development server\", \
    error=\"invalid_token\", Basic realm=\"smart-auth development server\"";

const MALFORMED_BEARER_CHALLENGE: &str = "Bearer realm=\"smart-auth development server\", \
    error=\"invalid_request\", Basic realm=\"smart-auth development server\"";

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

    /// Client authentication failed without `Authorization` credentials (an assertion, or a
    /// method sent in the form this server does not support): 400 (RFC 6749 section 5.2).
    pub(crate) fn invalid_client(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_client", description)
    }

    /// This answer as the introspection endpoint gives it: a caller whose credentials are
    /// invalid gets 401 whatever way it authenticated (RFC 7662 section 2.3), with the
    /// Basic challenge every 401 needs, where the token endpoint answers 400 for a failed
    /// assertion (RFC 6749 section 5.2). A resource server reads a 400 there as a verdict
    /// on the token it asked about, not on its own credentials.
    pub(crate) fn at_introspection(self) -> Self {
        if self.code == "invalid_client" && self.status == StatusCode::BAD_REQUEST {
            Self {
                status: StatusCode::UNAUTHORIZED,
                challenge: Some(BASIC_CHALLENGE),
                ..self
            }
        } else {
            self
        }
    }

    /// Client authentication by HTTP Basic failed: 401 with a challenge (RFC 6749 5.2).
    pub(crate) fn invalid_basic_client() -> Self {
        Self {
            challenge: Some(BASIC_CHALLENGE),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        }
    }

    /// The request carries no client authentication this server supports (none at all,
    /// another HTTP scheme, or malformed Basic credentials): 401 `invalid_client` with a
    /// Basic challenge, since RFC 9110 requires a challenge with every 401 and Basic is the
    /// HTTP scheme this server accepts. A method sent in the form that this server does not
    /// support is 400 [`invalid_client`](Self::invalid_client) instead.
    pub(crate) fn unauthenticated() -> Self {
        Self {
            challenge: Some(BASIC_CHALLENGE),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication is required: HTTP Basic or a JWT client assertion",
            )
        }
    }

    /// A Bearer token presented to the introspection endpoint does not authenticate the
    /// caller (no active token of this server, or another client than the form's
    /// `client_id`): 401 as RFC 6750 section 3 says (RFC 7662 section 2.3), with the Basic
    /// challenge beside it for the other way to authenticate.
    pub(crate) fn invalid_bearer_caller(description: &'static str) -> Self {
        Self {
            challenge: Some(BEARER_CALLER_CHALLENGE),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
        }
    }

    /// A Bearer credential that is no `b64token` (`Bearer a b`): 400 `invalid_request`
    /// with a challenge (RFC 6750 section 3.1).
    pub(crate) fn malformed_bearer_caller() -> Self {
        Self {
            challenge: Some(MALFORMED_BEARER_CHALLENGE),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the bearer token is malformed",
            )
        }
    }

    /// An authenticated client asks to act on a token issued to another client
    /// (RFC 7009 section 2.1: the request is refused).
    pub(crate) fn unauthorized_client(description: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// A registration request the server refuses (RFC 7591 section 3.2.2).
    pub(crate) fn invalid_client_metadata(description: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            description,
        )
    }

    /// A registration body that is not JSON: 415 (RFC 9110 section 15.5.16).
    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_client_metadata",
            "the body must be application/json",
        )
    }

    /// A request whose `Host` is not this server: 421 (RFC 9110 section 15.5.20).
    pub(crate) fn misdirected() -> Self {
        Self::new(
            StatusCode::MISDIRECTED_REQUEST,
            "invalid_request",
            "the Host header does not name this server",
        )
    }

    /// A bounded store (tokens, clients, assertion ids, key sets) is full of live
    /// entries: 503 with `Retry-After`, rather than growing without bound.
    pub(crate) fn store_full(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the development server is at its configured capacity; retry later",
            )
        }
    }

    /// The server's clock reads a time so far ahead that a token's `exp` cannot be
    /// written: 500 `server_error`, and no token is issued.
    /// A request not answered in time (its body sent too slowly): 408.
    pub(crate) fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            "the request was not received in time",
        )
    }

    pub(crate) fn clock_out_of_range() -> Self {
        Self::server_error("the server clock is out of range")
    }

    /// The server failed at its own work (signing, writing an answer): 500
    /// `server_error`, and nothing is issued.
    pub(crate) fn server_error(description: &'static str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            description,
        )
    }

    fn new(status: StatusCode, code: &'static str, description: &'static str) -> Self {
        Self {
            status,
            code,
            description,
            challenge: None,
            retry_after: None,
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
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
