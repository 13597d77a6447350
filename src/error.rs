//! Errors: [`AuthError`] for a request that was refused, [`ConfigError`] for a layer that
//! could not be built.
//!
//! Every way a request can fail is one [`ErrorKind`], and [`ErrorKind::answer`] is the one
//! exhaustive mapping from a kind to its HTTP answer (status, RFC 6750 `error` code,
//! `error_description` and FHIR `OperationOutcome` issue code).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// Why a request was refused.
///
/// The list may grow; match with a wildcard arm.
///
/// # Example
///
/// ```
/// use smart_auth::ErrorKind;
/// assert_eq!(ErrorKind::Expired.answer().status, http::StatusCode::UNAUTHORIZED);
/// assert_eq!(ErrorKind::Expired.answer().bearer_error, Some("invalid_token"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request carried no credentials: no `Authorization` header, or a scheme other
    /// than `Bearer`.
    MissingToken,
    /// The request is malformed: a `Bearer` header without a token, a token that is not
    /// `b64token` syntax, more than one credential, or a token in the query string.
    InvalidRequest,
    /// The token is longer than the configured limit.
    TokenTooLarge,
    /// The token is not a well-formed signed JWT (segments, base64url, JSON).
    MalformedToken,
    /// The token's `alg` is not on the allow-list (this includes `none` and every HMAC
    /// algorithm), or does not fit the key it names.
    UnsupportedAlgorithm,
    /// The token's `typ` header is not accepted by the configured policy, or its claims
    /// mark it as another kind of JWT than an access token (an ID token's `at_hash`, a
    /// logout token's `events`, Keycloak's payload `typ` `ID` or `Refresh`, a `token_use`
    /// other than `access` or `access_token`, a `tokenName` or `token_usage` other than
    /// `access_token`).
    UnsupportedTokenType,
    /// The token carries a `crit` header, which this crate never accepts.
    CriticalHeader,
    /// No key of the issuer fits the token's `kid` and `alg`; or, with several issuers, the
    /// token names none of them (or no `iss`).
    UnknownKey,
    /// The signature does not verify.
    InvalidSignature,
    /// `iss` is missing or differs from the configured issuer.
    WrongIssuer,
    /// `aud` is missing or names none of the accepted audiences.
    WrongAudience,
    /// `exp` has passed (after leeway).
    Expired,
    /// `nbf` or `iat` lies in the future (after leeway).
    NotYetValid,
    /// A claim is missing where required (`exp`) or has the wrong JSON type.
    InvalidClaim,
    /// Token introspection says the token is not active (revoked, expired, unknown).
    InactiveToken,
    /// The token is valid but its scopes do not allow the request.
    InsufficientScope,
    /// The issuer's keys could not be obtained and no usable cached copy exists.
    KeysUnavailable,
    /// The token introspection endpoint could not be asked, or answered nonsense.
    IntrospectionUnavailable,
    /// The token is valid, but the verifier's validation hook refused it
    /// ([`VerifierBuilder::validate`](crate::VerifierBuilder::validate) returned
    /// [`Refusal::InvalidToken`]).
    RefusedByPolicy,
    /// An extractor ran on a route that no [`crate::SmartAuthLayer`] covers.
    LayerMissing,
    /// The token is sender-constrained: it carries a confirmation claim (`cnf`, RFC 7800),
    /// such as a DPoP key thumbprint (`jkt`, RFC 9449) or a certificate thumbprint
    /// (`x5t#S256`, RFC 8705). Its holder must prove possession of that key, which a plain
    /// `Bearer` request cannot do, so it is refused (RFC 9449 section 7.2).
    SenderConstrained,
    /// The token is valid, but scope enforcement cannot read the request one way only, so
    /// no scope could allow it (RFC 6750 section 3.1, `invalid_request`: "otherwise
    /// malformed"): a path with a dot segment, an empty segment or an encoded `/`, a
    /// target without a path (`host:port`, for `CONNECT` only), a method or path override
    /// that names no method or path (or names both, or too many), a repeated
    /// `If-None-Exist`, one longer than 8 KiB or a path-override header naming another
    /// target that long, a `GET` or `HEAD` with a form body.
    MalformedRequest,
}

/// The HTTP answer for an [`ErrorKind`]: see [`ErrorKind::answer`].
///
/// ```
/// use http::StatusCode;
/// use smart_auth::ErrorKind;
///
/// let answer = ErrorKind::InsufficientScope.answer();
/// assert_eq!(answer.status, StatusCode::FORBIDDEN);
/// assert_eq!(answer.bearer_error, Some("insufficient_scope"));
/// assert!(answer.challenge);
/// assert_eq!(answer.issue_code, "forbidden");
///
/// // No challenge when the server, not the token, is at fault.
/// assert!(!ErrorKind::KeysUnavailable.answer().challenge);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer {
    /// The HTTP status code.
    pub status: StatusCode,
    /// The RFC 6750 `error` attribute of the `WWW-Authenticate: Bearer` challenge, when
    /// the answer carries one.
    pub bearer_error: Option<&'static str>,
    /// Whether a `WWW-Authenticate: Bearer` challenge is sent at all.
    pub challenge: bool,
    /// A short, static description. It never contains anything from the request.
    pub description: &'static str,
    /// The FHIR `OperationOutcome.issue.code`.
    pub issue_code: &'static str,
}

impl ErrorKind {
    /// How many kinds there are.
    pub(crate) const COUNT: usize = 22;

    /// Every kind, in declaration order, so that `ALL[kind.index()] == kind`.
    pub(crate) const ALL: [Self; Self::COUNT] = [
        Self::MissingToken,
        Self::InvalidRequest,
        Self::TokenTooLarge,
        Self::MalformedToken,
        Self::UnsupportedAlgorithm,
        Self::UnsupportedTokenType,
        Self::CriticalHeader,
        Self::UnknownKey,
        Self::InvalidSignature,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::Expired,
        Self::NotYetValid,
        Self::InvalidClaim,
        Self::InactiveToken,
        Self::InsufficientScope,
        Self::KeysUnavailable,
        Self::IntrospectionUnavailable,
        Self::RefusedByPolicy,
        Self::LayerMissing,
        Self::SenderConstrained,
        Self::MalformedRequest,
    ];

    /// The position of this kind in [`ALL`](Self::ALL), for tables built once. The match
    /// is exhaustive, so a new kind cannot be forgotten here.
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::MissingToken => 0,
            Self::InvalidRequest => 1,
            Self::TokenTooLarge => 2,
            Self::MalformedToken => 3,
            Self::UnsupportedAlgorithm => 4,
            Self::UnsupportedTokenType => 5,
            Self::CriticalHeader => 6,
            Self::UnknownKey => 7,
            Self::InvalidSignature => 8,
            Self::WrongIssuer => 9,
            Self::WrongAudience => 10,
            Self::Expired => 11,
            Self::NotYetValid => 12,
            Self::InvalidClaim => 13,
            Self::InactiveToken => 14,
            Self::InsufficientScope => 15,
            Self::KeysUnavailable => 16,
            Self::IntrospectionUnavailable => 17,
            Self::RefusedByPolicy => 18,
            Self::LayerMissing => 19,
            Self::SenderConstrained => 20,
            Self::MalformedRequest => 21,
        }
    }

    /// A stable snake_case name for this kind, such as `"expired"` or
    /// `"invalid_signature"`: the `kind` label of the `metrics` feature's refusal counter,
    /// and a fit for logs and dashboards. A kind's name never changes.
    ///
    /// # Example
    ///
    /// ```
    /// use smart_auth::ErrorKind;
    /// assert_eq!(ErrorKind::Expired.metric_label(), "expired");
    /// assert_eq!(ErrorKind::InsufficientScope.metric_label(), "insufficient_scope");
    /// ```
    pub const fn metric_label(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidRequest => "invalid_request",
            Self::TokenTooLarge => "token_too_large",
            Self::MalformedToken => "malformed_token",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::CriticalHeader => "critical_header",
            Self::UnknownKey => "unknown_key",
            Self::InvalidSignature => "invalid_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::InvalidClaim => "invalid_claim",
            Self::InactiveToken => "inactive_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::KeysUnavailable => "keys_unavailable",
            Self::IntrospectionUnavailable => "introspection_unavailable",
            Self::RefusedByPolicy => "refused_by_policy",
            Self::LayerMissing => "layer_missing",
            Self::SenderConstrained => "sender_constrained",
            Self::MalformedRequest => "malformed_request",
        }
    }

    /// The one mapping from an error kind to its HTTP answer (RFC 6750 section 3.1).
    ///
    /// # Example
    ///
    /// ```
    /// use smart_auth::ErrorKind;
    /// let answer = ErrorKind::MissingToken.answer();
    /// assert_eq!(answer.status, http::StatusCode::UNAUTHORIZED);
    /// assert_eq!(answer.bearer_error, None); // a bare challenge
    /// ```
    pub const fn answer(self) -> Answer {
        const fn invalid_token(description: &'static str, issue_code: &'static str) -> Answer {
            Answer {
                status: StatusCode::UNAUTHORIZED,
                bearer_error: Some("invalid_token"),
                challenge: true,
                description,
                issue_code,
            }
        }
        match self {
            Self::MissingToken => Answer {
                status: StatusCode::UNAUTHORIZED,
                bearer_error: None,
                challenge: true,
                description: "an access token is required",
                issue_code: "login",
            },
            Self::InvalidRequest => Answer {
                status: StatusCode::BAD_REQUEST,
                bearer_error: Some("invalid_request"),
                challenge: true,
                description: "malformed or repeated credentials",
                issue_code: "invalid",
            },
            Self::TokenTooLarge => invalid_token("the access token is too large", "unknown"),
            Self::MalformedToken => invalid_token("the access token is malformed", "unknown"),
            Self::UnsupportedAlgorithm => {
                invalid_token("the token's signing algorithm is not accepted", "unknown")
            }
            Self::UnsupportedTokenType => {
                invalid_token("the token type is not accepted", "unknown")
            }
            Self::CriticalHeader => {
                invalid_token("the token has critical header parameters", "unknown")
            }
            Self::UnknownKey => invalid_token("the token's signing key is not known", "unknown"),
            Self::InvalidSignature => {
                invalid_token("the token's signature is not valid", "unknown")
            }
            Self::WrongIssuer => invalid_token("the token is from another issuer", "unknown"),
            Self::WrongAudience => invalid_token("the token is for another audience", "unknown"),
            Self::Expired => invalid_token("the access token has expired", "expired"),
            Self::NotYetValid => invalid_token("the access token is not yet valid", "unknown"),
            Self::InvalidClaim => {
                invalid_token("the token has a missing or invalid claim", "unknown")
            }
            Self::InactiveToken => invalid_token("the access token is not active", "unknown"),
            Self::RefusedByPolicy => invalid_token(
                "the access token is refused by the server's policy",
                "unknown",
            ),
            Self::SenderConstrained => invalid_token(
                "the token is bound to a key and cannot be used as a Bearer token",
                "unknown",
            ),
            Self::MalformedRequest => Answer {
                status: StatusCode::BAD_REQUEST,
                bearer_error: Some("invalid_request"),
                challenge: true,
                description: "the request cannot be read as one FHIR interaction",
                issue_code: "invalid",
            },
            Self::InsufficientScope => Answer {
                status: StatusCode::FORBIDDEN,
                bearer_error: Some("insufficient_scope"),
                challenge: true,
                description: "the token's scopes do not allow this request",
                issue_code: "forbidden",
            },
            Self::KeysUnavailable => Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                bearer_error: None,
                challenge: false,
                description: "the token issuer's keys are unavailable",
                issue_code: "transient",
            },
            Self::IntrospectionUnavailable => Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                bearer_error: None,
                challenge: false,
                description: "the token introspection endpoint is unavailable",
                issue_code: "transient",
            },
            Self::LayerMissing => Answer {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                bearer_error: None,
                challenge: false,
                // What is wrong is the server's setup, which the client need not learn
                // (nor which library it uses): the error log says it.
                description: "internal server error",
                issue_code: "exception",
            },
        }
    }
}

/// A refused request: the [`ErrorKind`] plus, for some kinds, context.
///
/// `AuthError` is cheap to clone. The layer puts a copy into the extensions of every
/// response it refuses, so outer layers can inspect why:
///
/// ```
/// # fn inspect(response: http::Response<()>) {
/// if let Some(error) = response.extensions().get::<smart_auth::AuthError>() {
///     println!("refused: {}", error.kind().answer().description);
/// }
/// # }
/// ```
///
/// Its `Display` and `source` never contain token contents.
#[derive(Clone)]
pub struct AuthError {
    kind: ErrorKind,
    required_scope: Option<Arc<str>>,
    /// For 503 answers: whole seconds until asking again may succeed.
    retry_after_secs: Option<u32>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl AuthError {
    /// An error of the given kind without further context.
    ///
    /// ```
    /// use smart_auth::{AuthError, ErrorKind};
    /// let error = AuthError::new(ErrorKind::Expired);
    /// assert_eq!(error.kind(), ErrorKind::Expired);
    /// ```
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            required_scope: None,
            retry_after_secs: None,
            source: None,
        }
    }

    /// A 403 `insufficient_scope` error naming a scope that would allow the request (sent as
    /// the challenge's `scope` attribute: its space-separated scope tokens, runs of
    /// whitespace made one space, a token with a character RFC 6750 does not allow in a
    /// scope, or longer than 1 KiB, left out, and no attribute at all when no token is
    /// left).
    ///
    /// ```
    /// use smart_auth::{AuthError, ErrorKind};
    /// let error = AuthError::insufficient_scope("system/Observation.rs");
    /// assert_eq!(error.kind(), ErrorKind::InsufficientScope);
    /// assert_eq!(error.required_scope(), Some("system/Observation.rs"));
    /// ```
    pub fn insufficient_scope(scope: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InsufficientScope,
            required_scope: Some(Arc::from(scope.into())),
            retry_after_secs: None,
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// How long until the unavailable service (keys, introspection) may be asked again,
    /// rounded up to whole seconds, at least 1: the 503 answer's `Retry-After`.
    pub(crate) fn with_retry_after(mut self, wait: Duration) -> Self {
        let mut secs = wait.as_secs();
        if wait.subsec_nanos() > 0 {
            secs = secs.saturating_add(1);
        }
        self.retry_after_secs = Some(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        self
    }

    /// For a 503 answer ([`ErrorKind::KeysUnavailable`],
    /// [`ErrorKind::IntrospectionUnavailable`]): how long until asking again may succeed,
    /// the value of its `Retry-After` header (the remaining failure cooldown, for example).
    /// `None` for other errors, whose answer has no `Retry-After`.
    ///
    /// ```
    /// use smart_auth::{AuthError, ErrorKind};
    /// assert_eq!(AuthError::new(ErrorKind::Expired).retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_secs
            .map(|secs| Duration::from_secs(secs.into()))
    }

    /// What went wrong.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let error = verifier.verify(&issuer.token().audience("https://other.example").sign()).await;
    /// assert_eq!(error.unwrap_err().kind(), ErrorKind::WrongAudience);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// For [`ErrorKind::InsufficientScope`], the scope that would allow the request.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::{AuthError, ErrorKind, scopes::Interaction, testing::ClaimsBuilder};
    ///
    /// let claims = ClaimsBuilder::new().scope("system/Patient.rs").build();
    /// let error = claims.require(Interaction::Create, "Observation").unwrap_err();
    /// assert_eq!(error.required_scope(), Some("system/Observation.c"));
    /// assert_eq!(AuthError::new(ErrorKind::Expired).required_scope(), None);
    /// # }
    /// ```
    pub fn required_scope(&self) -> Option<&str> {
        self.required_scope.as_deref()
    }
}

impl From<ErrorKind> for AuthError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Debug for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthError")
            .field("kind", &self.kind)
            .field("required_scope", &self.required_scope)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.answer().description)
    }
}

impl StdError for AuthError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn StdError + 'static))
    }
}

/// Why a [validation hook](crate::VerifierBuilder::validate) refuses a verified token. The
/// answer keeps RFC 6750's exact form: the hook chooses which of the two refusals, never
/// the status or the challenge.
///
/// ```
/// use smart_auth::{ErrorKind, Refusal, AuthError};
/// let error = AuthError::from(Refusal::InvalidToken);
/// assert_eq!(error.kind(), ErrorKind::RefusedByPolicy);
/// let error = AuthError::from(Refusal::insufficient_scope("system/Patient.rs"));
/// assert_eq!(error.kind(), ErrorKind::InsufficientScope);
/// assert_eq!(error.required_scope(), Some("system/Patient.rs"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The token must not be used here at all: 401 `invalid_token`
    /// ([`ErrorKind::RefusedByPolicy`]).
    InvalidToken,
    /// The token is fine, but it does not allow this: 403 `insufficient_scope`
    /// ([`ErrorKind::InsufficientScope`]), with the scope that would allow the request when
    /// one is named.
    InsufficientScope {
        /// A scope that would allow the request, sent as the challenge's `scope` attribute.
        scope: Option<String>,
    },
}

impl Refusal {
    /// A 403 refusal naming a scope that would allow the request.
    ///
    /// ```
    /// use smart_auth::Refusal;
    /// assert_eq!(
    ///     Refusal::insufficient_scope("user/Patient.rs"),
    ///     Refusal::InsufficientScope { scope: Some("user/Patient.rs".into()) }
    /// );
    /// ```
    pub fn insufficient_scope(scope: impl Into<String>) -> Self {
        Self::InsufficientScope {
            scope: Some(scope.into()),
        }
    }
}

impl From<Refusal> for AuthError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidToken => Self::new(ErrorKind::RefusedByPolicy),
            Refusal::InsufficientScope { scope: Some(scope) } => Self::insufficient_scope(scope),
            Refusal::InsufficientScope { scope: None } => Self::new(ErrorKind::InsufficientScope),
        }
    }
}

/// A configuration that cannot work, found when the layer is built.
///
/// ```
/// use smart_auth::{ConfigError, SmartAuthLayer};
/// let error = SmartAuthLayer::builder("ftp://issuer.example").build().unwrap_err();
/// assert!(matches!(error, ConfigError::InvalidUrl { field: "issuer", .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL is not absolute, not `https` (plain `http` is allowed for loopback hosts only),
    /// or carries a query or fragment where none is allowed.
    InvalidUrl {
        /// Which setting holds the URL.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The algorithm allow-list is empty.
    NoAlgorithms,
    /// The realm contains characters that cannot appear in a quoted header value.
    InvalidRealm,
    /// A claim-name list is empty or holds an empty or whitespace-only name.
    InvalidClaimNames {
        /// Which setting holds the list.
        field: &'static str,
    },
    /// A limit or duration is zero or out of its range.
    InvalidLimit {
        /// Which setting holds the value.
        field: &'static str,
    },
    /// A configured path (FHIR base path, `served_at_path`, a public path) is not written
    /// one way only: it must start with `/` and have no empty, `.` or `..` segment (a final
    /// `/` aside), no `%`, `;`, `\`, `?`, `#`, `{`, `}`, whitespace or control character,
    /// and no segment starting with `:` or `*`.
    InvalidPath,
    /// A path given to a setting that opens a route (a
    /// [public path](crate::SmartAuthBuilder::public_path), a path of
    /// [`ScopeEnforcement::allow_any_token_under`](crate::ScopeEnforcement::allow_any_token_under))
    /// cannot be one: it is not written one way only, or it names a FHIR interaction,
    /// which would then be let through.
    InvalidRoutePath {
        /// The setting: `public_path` or `allow_any_token_under`.
        setting: &'static str,
        /// The path as given.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The parameter given to
    /// [`ScopeEnforcement::handler_checks_paging_links`](crate::ScopeEnforcement::handler_checks_paging_links)
    /// cannot be one: it would let searches through with any token.
    InvalidPagingParameter {
        /// The parameter as given.
        parameter: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The default HTTP client could not be built (its TLS backend failed to start).
    HttpClient,
    /// Audiences were configured, or introspection answers were to name one
    /// ([`Introspection::require_audience`](crate::Introspection::require_audience)), and
    /// every audience was allowed as well
    /// ([`insecure_accept_any_audience`](crate::SmartAuthBuilder::insecure_accept_any_audience)):
    /// one of the two is a mistake.
    ConflictingAudience,
    /// A [`TokenVerifier`](crate::TokenVerifier) built without an audience was given to a
    /// layer with a [FHIR base](crate::SmartAuthBuilder::fhir_base): a built verifier
    /// keeps its own settings, so it would not check that tokens name the base. Give it the
    /// audience when building it (or, knowingly, `insecure_accept_any_audience`).
    VerifierWithoutAudience,
    /// Scope enforcement was asked for without a FHIR base
    /// ([`fhir_base`](crate::SmartAuthBuilder::fhir_base) or
    /// [`served_at_path`](crate::SmartAuthBuilder::served_at_path), `"/"` for an API at the
    /// root): the prefix an API is mounted under (`/Fhir`, `/Acme`) would read as a
    /// resource type.
    EnforcementWithoutBase,
    /// A registry of issuers was given no verifier.
    NoIssuer,
    /// Two verifiers of one layer name the same issuer: the token's `iss` could not choose
    /// between them.
    DuplicateIssuer,
    /// More than one issuer of a layer introspects tokens that are not JWTs: an opaque
    /// token names no issuer, so it could not choose between them.
    AmbiguousIntrospection,
    /// Keys given directly ([`StaticKeys`](crate::StaticKeys)) cannot be used: the text is
    /// not a JWK Set or PEM public key, a key breaks the import policy, the algorithm does
    /// not fit the key, or the file cannot be read. The reason never quotes key material.
    InvalidStaticKeys {
        /// What is wrong.
        reason: &'static str,
    },
    /// Both [`static_keys`](crate::SmartAuthBuilder::static_keys) and
    /// [`jwks_uri`](crate::SmartAuthBuilder::jwks_uri) are configured: the keys come from
    /// one place only.
    ConflictingKeySource,
    /// Introspection is configured but no audience is: an introspection answer has no
    /// `typ` to show it is an access token for this server, so without an audience (or an
    /// explicit [`insecure_accept_any_audience`](crate::SmartAuthBuilder::insecure_accept_any_audience))
    /// a token minted for another resource server would be accepted.
    IntrospectionWithoutAudience,
    /// The resource server's own bearer token for the introspection endpoint
    /// ([`IntrospectionAuth::bearer`](crate::IntrospectionAuth::bearer)) is not a
    /// `b64token` (RFC 6750 section 2.1), so it could not be sent.
    InvalidIntrospectionCredentials,
    /// A token rule is unusable: an [audience](crate::VerifierBuilder::audience), a
    /// [required claim](crate::VerifierBuilder::required_claim) or a
    /// [client accepted without an audience](crate::VerifierBuilder::accept_missing_audience_for_clients)
    /// is blank, or the [scope separator](crate::VerifierBuilder::scope_context_separator)
    /// is not a visible ASCII character other than `/`, `"` and `\`.
    InvalidClaimRule {
        /// Which setting holds the rule.
        field: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl { field, reason } => write!(f, "invalid {field} URL: {reason}"),
            Self::NoAlgorithms => f.write_str("the algorithm allow-list is empty"),
            Self::InvalidRealm => f.write_str("the realm is not a valid quoted-string"),
            Self::InvalidClaimNames { field } => write!(f, "{field} must list non-empty names"),
            Self::InvalidLimit { field } => write!(f, "{field} is out of range"),
            Self::InvalidPath => f.write_str(
                "a configured path must start with '/' and be written one way only (no empty, \
                 '.' or '..' segment, no %, ;, \\, ?, #, braces, whitespace or control \
                 character, no segment starting with ':' or '*')",
            ),
            Self::InvalidRoutePath {
                setting,
                path,
                reason,
            } => write!(
                f,
                "{setting} {:?}: {reason}",
                path.chars().take(64).collect::<String>()
            ),
            Self::InvalidPagingParameter { parameter, reason } => write!(
                f,
                "handler_checks_paging_links {:?}: {reason}",
                parameter.chars().take(64).collect::<String>()
            ),
            Self::HttpClient => f.write_str("the HTTP client could not be built"),
            Self::ConflictingAudience => f.write_str(
                "audiences are configured and every audience is accepted too: choose one",
            ),
            Self::VerifierWithoutAudience => f.write_str(
                "a verifier built without an audience cannot take the layer's FHIR base as its \
                 audience: give it one when building it",
            ),
            Self::EnforcementWithoutBase => f.write_str(
                "scope enforcement needs the FHIR base: set fhir_base or served_at_path \
                 (\"/\" for an API at the root)",
            ),
            Self::NoIssuer => f.write_str("no issuer is configured"),
            Self::DuplicateIssuer => f.write_str("two verifiers are configured for one issuer"),
            Self::AmbiguousIntrospection => {
                f.write_str("more than one issuer introspects opaque tokens: at most one may")
            }
            Self::InvalidStaticKeys { reason } => write!(f, "invalid static keys: {reason}"),
            Self::ConflictingKeySource => {
                f.write_str("static keys and a jwks_uri are both configured: choose one")
            }
            Self::IntrospectionWithoutAudience => f.write_str(
                "introspection needs an audience: configure the FHIR base URL as the audience",
            ),
            Self::InvalidIntrospectionCredentials => {
                f.write_str("the introspection bearer token is not a valid b64token")
            }
            Self::InvalidClaimRule { field } => write!(f, "{field} is blank or unusable"),
        }
    }
}

impl StdError for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind with its exact answer. The match keeps this table exhaustive.
    #[test]
    fn every_kind_maps_to_its_rfc6750_answer() {
        let all = [
            ErrorKind::MissingToken,
            ErrorKind::InvalidRequest,
            ErrorKind::TokenTooLarge,
            ErrorKind::MalformedToken,
            ErrorKind::UnsupportedAlgorithm,
            ErrorKind::UnsupportedTokenType,
            ErrorKind::CriticalHeader,
            ErrorKind::UnknownKey,
            ErrorKind::InvalidSignature,
            ErrorKind::WrongIssuer,
            ErrorKind::WrongAudience,
            ErrorKind::Expired,
            ErrorKind::NotYetValid,
            ErrorKind::InvalidClaim,
            ErrorKind::InactiveToken,
            ErrorKind::InsufficientScope,
            ErrorKind::KeysUnavailable,
            ErrorKind::IntrospectionUnavailable,
            ErrorKind::RefusedByPolicy,
            ErrorKind::LayerMissing,
            ErrorKind::SenderConstrained,
            ErrorKind::MalformedRequest,
        ];
        for kind in all {
            let expected: (u16, Option<&str>, bool) = match kind {
                ErrorKind::MissingToken => (401, None, true),
                ErrorKind::InvalidRequest | ErrorKind::MalformedRequest => {
                    (400, Some("invalid_request"), true)
                }
                ErrorKind::TokenTooLarge
                | ErrorKind::MalformedToken
                | ErrorKind::UnsupportedAlgorithm
                | ErrorKind::UnsupportedTokenType
                | ErrorKind::CriticalHeader
                | ErrorKind::UnknownKey
                | ErrorKind::InvalidSignature
                | ErrorKind::WrongIssuer
                | ErrorKind::WrongAudience
                | ErrorKind::Expired
                | ErrorKind::NotYetValid
                | ErrorKind::InvalidClaim
                | ErrorKind::InactiveToken
                | ErrorKind::SenderConstrained
                | ErrorKind::RefusedByPolicy => (401, Some("invalid_token"), true),
                ErrorKind::InsufficientScope => (403, Some("insufficient_scope"), true),
                ErrorKind::KeysUnavailable | ErrorKind::IntrospectionUnavailable => {
                    (503, None, false)
                }
                ErrorKind::LayerMissing => (500, None, false),
            };
            let answer = kind.answer();
            assert_eq!(
                (
                    answer.status.as_u16(),
                    answer.bearer_error,
                    answer.challenge
                ),
                expected,
                "{kind:?}"
            );
            assert!(
                !answer.description.contains('"') && !answer.description.contains('\\'),
                "{kind:?}: descriptions must be valid inside a quoted-string"
            );
        }
    }

    #[test]
    fn all_lists_every_kind_at_its_index() {
        for (position, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), position, "{kind:?}");
        }
    }

    /// Metric labels are distinct, snake_case, and the variant's name: a label is a
    /// promise to dashboards, so this pins every one.
    #[test]
    fn metric_labels_are_distinct_snake_case_variant_names() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let label = kind.metric_label();
            assert!(seen.insert(label), "{label} twice");
            let camel: String = label
                .split('_')
                .map(|word| word[..1].to_ascii_uppercase() + &word[1..])
                .collect();
            assert_eq!(format!("{kind:?}"), camel);
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_at_least_one() {
        let wait = |d: Duration| {
            AuthError::new(ErrorKind::KeysUnavailable)
                .with_retry_after(d)
                .retry_after()
        };
        assert_eq!(wait(Duration::ZERO), Some(Duration::from_secs(1)));
        assert_eq!(wait(Duration::from_millis(1)), Some(Duration::from_secs(1)));
        assert_eq!(wait(Duration::from_secs(10)), Some(Duration::from_secs(10)));
        assert_eq!(
            wait(Duration::from_millis(9_001)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            wait(Duration::MAX),
            Some(Duration::from_secs(u32::MAX.into()))
        );
        assert_eq!(AuthError::new(ErrorKind::Expired).retry_after(), None);
    }

    #[test]
    fn expired_uses_the_expired_issue_code() {
        assert_eq!(ErrorKind::Expired.answer().issue_code, "expired");
        assert_eq!(ErrorKind::MissingToken.answer().issue_code, "login");
    }
}
