//! [`ClientError`]: why the client has no token.

use std::fmt;

use super::key::KeyError;

/// Why [`BackendServiceClient`](super::BackendServiceClient) could not get a token.
///
/// Neither `Display` nor `Debug` ever shows a client secret, an assertion or an access
/// token. [`OAuth`](Self::OAuth) carries what the authorization server said, trimmed to
/// printable text.
///
/// ```
/// use smart_auth::client::ClientError;
/// let error = ClientError::OAuth {
///     status: 401,
///     error: "invalid_client".into(),
///     description: Some("unknown kid".into()),
/// };
/// assert_eq!(
///     error.to_string(),
///     "the token endpoint answered 401 invalid_client: unknown kid"
/// );
/// assert_eq!(error.oauth_error(), Some("invalid_client"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The builder's settings are incomplete or invalid (no I/O happened).
    Config(&'static str),
    /// The key could not be loaded or could not sign.
    Key(KeyError),
    /// Finding the token endpoint in `{fhir_base}/.well-known/smart-configuration` failed.
    Discovery {
        /// What went wrong, without response contents.
        reason: String,
    },
    /// The token request did not complete: connection, TLS, a redirect (never followed)
    /// or an oversized answer.
    Transport {
        /// What went wrong, without response contents.
        reason: String,
    },
    /// The token request took longer than the configured timeout.
    Timeout,
    /// The authorization server refused the request with an RFC 6749 section 5.2 error.
    OAuth {
        /// The HTTP status, normally 400 or 401.
        status: u16,
        /// The `error` code, such as `invalid_client` or `invalid_scope`.
        error: String,
        /// `error_description`, when the server sent one.
        description: Option<String>,
    },
    /// The server answered with an error status and no OAuth error body.
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
    },
    /// A success answer that is not a usable token response: not a JSON object, no
    /// `access_token` or one that cannot go in an `Authorization` header as one credential
    /// (a space, `,`, `"`, `\`, a control or non-ASCII character), a `token_type` other
    /// than `Bearer`, an `expires_in` that is neither a non-negative number nor a string of
    /// digits, or a lifetime under one second (from `expires_in` or, without it, from the
    /// access token's own `iat` and `exp`, see [`AccessToken::expires_at`](crate::client::AccessToken::expires_at)).
    InvalidTokenResponse(&'static str),
    /// [`authorize`](crate::client::BackendServiceClient::authorize) was given a request
    /// the token must not go with: not `https` (`http` only for loopback hosts), to another
    /// origin than the FHIR server's (or one added with
    /// [`also_authorize_origin`](crate::client::BackendServiceClientBuilder::also_authorize_origin)),
    /// or a request that cannot be built.
    TokenNotForUrl,
}

impl ClientError {
    /// The server's OAuth `error` code, for [`ClientError::OAuth`].
    ///
    /// ```
    /// use smart_auth::client::ClientError;
    /// assert_eq!(ClientError::Timeout.oauth_error(), None);
    /// ```
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            Self::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(problem) => write!(f, "invalid client configuration: {problem}"),
            Self::Key(error) => write!(f, "client key: {error}"),
            Self::Discovery { reason } => {
                write!(f, "discovering the token endpoint failed: {reason}")
            }
            Self::Transport { reason } => write!(f, "the token request failed: {reason}"),
            Self::Timeout => f.write_str("the token request timed out"),
            Self::OAuth {
                status,
                error,
                description,
            } => {
                write!(f, "the token endpoint answered {status} {error}")?;
                if let Some(description) = description {
                    write!(f, ": {description}")?;
                }
                Ok(())
            }
            Self::UnexpectedStatus { status } => {
                write!(
                    f,
                    "the token endpoint answered HTTP {status} without an OAuth error"
                )
            }
            Self::InvalidTokenResponse(problem) => write!(f, "invalid token response: {problem}"),
            Self::TokenNotForUrl => f.write_str(
                "the access token is not sent to this URL (not https or another origin)",
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Key(error) => Some(error),
            _ => None,
        }
    }
}

impl From<KeyError> for ClientError {
    fn from(error: KeyError) -> Self {
        Self::Key(error)
    }
}
