//! Turning an [`AuthError`] into its HTTP response: status, `WWW-Authenticate` challenge
//! (RFC 6750 section 3) and a FHIR `OperationOutcome` body.
//!
//! Everything that depends only on the error kind and the layer's realm is built once,
//! when the layer is built: a refusal then costs a status, two header clones and a body
//! clone. Only an `insufficient_scope` hint or an error that carries another realm is
//! formatted per response.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Response};

use crate::error::{Answer, AuthError, ErrorKind};
use crate::scopes::is_scope_token;

/// The media type of FHIR JSON resources, with the `charset` FHIR requires on every body
/// (FHIR R4 `http.html#mime-type`: the HTTP default is not UTF-8).
pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The realm used where no layer named one (an extractor on a route without the layer).
pub(crate) const DEFAULT_REALM: &str = "fhir";

/// The `OperationOutcome` body of each error kind, indexed by [`ErrorKind::index`]. They
/// do not depend on the realm, so one set serves every layer.
static BODIES: LazyLock<[Bytes; ErrorKind::COUNT]> =
    LazyLock::new(|| ErrorKind::ALL.map(operation_outcome));

/// The challenge with the default realm, shared by every response made outside a layer.
#[cfg(any(feature = "axum", feature = "testing"))]
static DEFAULT_CHALLENGE: LazyLock<Challenge> = LazyLock::new(|| Challenge::new(DEFAULT_REALM));

/// The parts of every refusal fixed at build time: the realm and, for each error kind,
/// the finished `WWW-Authenticate` value. Cloning is one reference count.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    prepared: Arc<Prepared>,
}

#[derive(Debug)]
struct Prepared {
    realm: Arc<str>,
    /// Indexed by [`ErrorKind::index`]; `None` for kinds answered without a challenge.
    headers: [Option<HeaderValue>; ErrorKind::COUNT],
    /// The user's body for refusals, instead of the `OperationOutcome`.
    body: Option<BodyHook>,
}

/// A hook that builds the body of every refusal: see
/// [`SmartAuthBuilder::refusal_body`](crate::SmartAuthBuilder::refusal_body).
#[derive(Clone)]
pub(crate) struct BodyHook(Arc<BodyFn>);

/// The signature of a refusal body hook.
type BodyFn = dyn Fn(&AuthError) -> RefusalBody + Send + Sync;

impl BodyHook {
    pub(crate) fn new(hook: impl Fn(&AuthError) -> RefusalBody + Send + Sync + 'static) -> Self {
        Self(Arc::new(hook))
    }
}

impl std::fmt::Debug for BodyHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyHook(..)")
    }
}

/// The body (and extra headers) of a refusal, built by a
/// [`refusal_body`](crate::SmartAuthBuilder::refusal_body) hook for APIs that do not speak
/// FHIR. The status, the `WWW-Authenticate` challenge and `Retry-After` stay exactly as
/// RFC 6750 and the layer say: a hook cannot change them.
///
/// ```
/// use smart_auth::{AuthError, ErrorKind, RefusalBody};
///
/// let error = AuthError::new(ErrorKind::Expired);
/// let answer = error.kind().answer();
/// let body = RefusalBody::json(&serde_json::json!({
///     "error": answer.bearer_error,
///     "message": answer.description,
/// }))
/// .header(
///     http::HeaderName::from_static("cache-control"),
///     http::HeaderValue::from_static("no-store"),
/// );
/// assert_eq!(body.content_type(), "application/json");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RefusalBody {
    content_type: HeaderValue,
    body: Bytes,
    headers: HeaderMap,
}

impl RefusalBody {
    /// A body of this media type.
    ///
    /// ```
    /// use smart_auth::RefusalBody;
    /// let body = RefusalBody::new(http::HeaderValue::from_static("text/plain"), "denied\n");
    /// assert_eq!(body.content_type(), "text/plain");
    /// ```
    pub fn new(content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        Self {
            content_type,
            body: body.into(),
            headers: HeaderMap::new(),
        }
    }

    /// A JSON body (`application/json`).
    ///
    /// ```
    /// use smart_auth::RefusalBody;
    ///
    /// let body = RefusalBody::json(&serde_json::json!({"error": "unauthorized"}));
    /// assert_eq!(body.content_type(), "application/json");
    /// ```
    pub fn json(value: &serde_json::Value) -> Self {
        Self::new(
            HeaderValue::from_static("application/json"),
            value.to_string(),
        )
    }

    /// An extra header of the refusal. `WWW-Authenticate`, `Retry-After`, `Content-Type`,
    /// `Content-Length` and `Transfer-Encoding` are the answer's own and are ignored here.
    ///
    /// ```
    /// # #[cfg(feature = "axum")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, body::Body, routing::get};
    /// use http::{HeaderName, HeaderValue, Request, StatusCode};
    /// use smart_auth::{RefusalBody, SmartAuthLayer};
    /// use tower::ServiceExt as _;
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .audience("https://api.example.org")
    ///     .refusal_body(|_error| {
    ///         RefusalBody::new(HeaderValue::from_static("text/plain"), "denied\n").header(
    ///             HeaderName::from_static("x-help"),
    ///             HeaderValue::from_static("https://api.example.org/docs/auth"),
    ///         )
    ///     })
    ///     .build()?;
    /// let app = Router::new().route("/data", get(|| async { "data" })).layer(layer);
    ///
    /// // No token: refused before any key is needed, with the hook's header.
    /// let response = app.oneshot(Request::get("/data").body(Body::empty())?).await?;
    /// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    /// assert_eq!(response.headers()["x-help"], "https://api.example.org/docs/auth");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "axum"))]
    /// # fn main() {}
    /// ```
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The media type of the body.
    ///
    /// ```
    /// use smart_auth::RefusalBody;
    ///
    /// let body = RefusalBody::new(http::HeaderValue::from_static("application/problem+json"), "{}");
    /// assert_eq!(body.content_type(), "application/problem+json");
    /// ```
    pub fn content_type(&self) -> &HeaderValue {
        &self.content_type
    }
}

/// Headers a refusal body hook cannot set: the answer's own.
fn is_answer_header(name: &HeaderName) -> bool {
    [
        &WWW_AUTHENTICATE,
        &RETRY_AFTER,
        &CONTENT_TYPE,
        &CONTENT_LENGTH,
        &TRANSFER_ENCODING,
    ]
    .contains(&name)
}

impl Challenge {
    /// A challenge with this realm. The caller validated it with [`is_valid_realm`].
    #[cfg(any(feature = "axum", feature = "testing", test))]
    pub(crate) fn new(realm: &str) -> Self {
        Self::with_body(realm, None)
    }

    /// A challenge with this realm and, when given, the user's body for refusals.
    pub(crate) fn with_body(realm: &str, body: Option<BodyHook>) -> Self {
        let headers = ErrorKind::ALL.map(|kind| {
            let answer = kind.answer();
            answer
                .challenge
                .then(|| challenge_value(realm, &answer, None))
        });
        Self {
            prepared: Arc::new(Prepared {
                realm: Arc::from(realm),
                headers,
                body,
            }),
        }
    }

    /// The challenge with the default realm `fhir`, built once per process.
    #[cfg(any(feature = "axum", feature = "testing"))]
    pub(crate) fn default_realm() -> Self {
        DEFAULT_CHALLENGE.clone()
    }

    /// The realm.
    #[cfg(test)]
    pub(crate) fn realm(&self) -> &str {
        &self.prepared.realm
    }

    /// The full response for a request the layer refuses itself.
    pub(crate) fn response<B: From<Bytes>>(&self, error: &AuthError) -> Response<B> {
        let mut response = self.unsettled_response(error);
        response.extensions_mut().insert(RealmSettled);
        response
    }

    /// The full response for a refusal raised outside a layer (by a handler or an
    /// extractor): the layer around it, if any, puts its realm in on the way out (see
    /// [`settle_realm`](Self::settle_realm)).
    pub(crate) fn unsettled_response<B: From<Bytes>>(&self, error: &AuthError) -> Response<B> {
        let kind = error.kind();
        let answer = kind.answer();
        let (mut response, length) = match &self.prepared.body {
            None => {
                let body = BODIES[kind.index()].clone();
                let length = body.len();
                let mut response = Response::new(B::from(body));
                let content_type = HeaderValue::from_static(FHIR_JSON);
                response.headers_mut().insert(CONTENT_TYPE, content_type);
                (response, length)
            }
            Some(hook) => custom_response((hook.0)(error)),
        };
        *response.status_mut() = answer.status;
        let headers = response.headers_mut();
        // Said here, so that the answer to `HEAD`, whose body the layer drops, still
        // gives the length `GET` would get (RFC 9110 sections 8.6 and 9.3.2).
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        if let Some(value) = self.header(error) {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if matches!(
            kind,
            ErrorKind::KeysUnavailable | ErrorKind::IntrospectionUnavailable
        ) {
            // The remaining cooldown when the error knows it, else the default cooldown.
            let seconds = error
                .retry_after()
                .map_or(DEFAULT_RETRY_AFTER_SECS, |wait| {
                    u32::try_from(wait.as_secs()).unwrap_or(u32::MAX)
                });
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(error.clone());
        response
    }
}

impl Challenge {
    /// The `WWW-Authenticate` value for this error with this realm, `None` for answers
    /// without a challenge.
    fn header(&self, error: &AuthError) -> Option<HeaderValue> {
        let kind = error.kind();
        let answer = kind.answer();
        if !answer.challenge {
            return None;
        }
        Some(
            match (error.required_scope(), &self.prepared.headers[kind.index()]) {
                (None, Some(prepared)) => prepared.clone(),
                (scope, _) => challenge_value(&self.prepared.realm, &answer, scope),
            },
        )
    }

    /// Puts this realm (and the layer's refusal body, when it has one) into a refusal
    /// raised behind the layer (a handler returning an [`AuthError`], an extractor's
    /// rejection), unless a layer nearer the handler did so already. Responses that carry
    /// no `AuthError` are left untouched. Returns whether the response was rebuilt with
    /// the layer's own body.
    pub(crate) fn settle_realm<B: From<Bytes>>(&self, response: &mut Response<B>) -> bool {
        let extensions = response.extensions();
        let Some(error) = extensions.get::<AuthError>() else {
            return false;
        };
        if extensions.get::<RealmSettled>().is_some() {
            return false;
        }
        if self.prepared.body.is_some() {
            // The whole answer, as the layer gives its own, keeping the headers the inner
            // service set (CORS, `Vary`, tracing ids) unless the answer sets its own.
            let error = error.clone();
            let inner = std::mem::take(response.headers_mut());
            *response = self.response(&error);
            let headers = response.headers_mut();
            let own: Vec<HeaderName> = headers.keys().cloned().collect();
            for (name, value) in &inner {
                if !describes_inner_body(name) && !own.contains(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
            return true;
        }
        let value = self.header(error);
        response.extensions_mut().insert(RealmSettled);
        if let Some(value) = value {
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        false
    }
}

/// Whether a header describes the inner response's body or connection, so that it must not
/// go with a body built in its place (a validator, a digest, a range, hop-by-hop fields).
fn describes_inner_body(name: &HeaderName) -> bool {
    const NAMES: [&str; 20] = [
        "content-length",
        "content-type",
        "content-encoding",
        "content-language",
        "content-location",
        "content-range",
        "content-disposition",
        "content-md5",
        "content-digest",
        "repr-digest",
        "digest",
        "etag",
        "last-modified",
        "accept-ranges",
        "transfer-encoding",
        "trailer",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
    ];
    NAMES.contains(&name.as_str())
}

/// A response with the body and headers a hook built, the answer's own headers left out.
fn custom_response<B: From<Bytes>>(body: RefusalBody) -> (Response<B>, usize) {
    let length = body.body.len();
    let mut response = Response::new(B::from(body.body));
    let headers = response.headers_mut();
    let mut previous = None;
    for (name, value) in body.headers {
        // `HeaderMap`'s iterator names a header only at its first value.
        let name = match name {
            Some(name) => {
                previous = Some(name.clone());
                name
            }
            None => match &previous {
                Some(name) => name.clone(),
                None => continue,
            },
        };
        if !is_answer_header(&name) {
            headers.append(name, value);
        }
    }
    headers.insert(CONTENT_TYPE, body.content_type);
    (response, length)
}

/// `Retry-After` of a 503 whose error carries no wait of its own: the default failure
/// cooldown of the key cache and of introspection.
const DEFAULT_RETRY_AFTER_SECS: u32 = 10;

/// `Bearer realm="…"`, then the error code and description when the answer has one, then
/// the scope hint when there is one.
fn challenge_value(realm: &str, answer: &Answer, scope: Option<&str>) -> HeaderValue {
    let mut value = format!("Bearer realm=\"{realm}\"");
    if let Some(code) = answer.bearer_error {
        value.push_str(", error=\"");
        value.push_str(code);
        value.push_str("\", error_description=\"");
        value.push_str(answer.description);
        value.push('"');
    }
    if let Some(scope) = scope.and_then(scope_hint) {
        value.push_str(", scope=\"");
        value.push_str(&scope);
        value.push('"');
    }
    // Every part is either validated at build time or a static string, so this cannot
    // fail; an empty challenge is still better than a panic.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// The request extension the layer inserts when it lets a request through without
/// verifying it (optional mode without credentials, a public route), so that a required
/// extractor answers 401 instead of naming a missing layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unauthenticated;

/// The response extension that says a layer already put its realm into the challenge of a
/// refusal raised behind it: layers further out leave the challenge alone.
#[derive(Debug, Clone, Copy)]
struct RealmSettled;

/// Whether a realm can stand inside a quoted-string as is: visible ASCII and spaces,
/// without `"` or `\`.
pub(crate) fn is_valid_realm(realm: &str) -> bool {
    realm
        .bytes()
        .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'\\')
}

/// The `scope` attribute's value (RFC 6750 section 3): the hint's scope tokens
/// (`1*( %x21 / %x23-5B / %x5D-7E )`) joined by single spaces, in their order, as many as
/// fit in [`MAX_HINT`] bytes. A token with any other character, or one that does not fit,
/// is left out whole rather than trimmed into a scope nobody named; `None` when no token
/// is left, and the attribute is then omitted.
fn scope_hint(scope: &str) -> Option<String> {
    let mut hint = String::new();
    for token in scope
        .split(|c: char| c.is_ascii_whitespace())
        .filter(|token| is_scope_token(token))
    {
        let separator = if hint.is_empty() { "" } else { " " };
        if hint.len() + separator.len() + token.len() <= MAX_HINT {
            hint.push_str(separator);
            hint.push_str(token);
        }
    }
    (!hint.is_empty()).then_some(hint)
}

/// The longest hint: one built from a request (resource types of 60,000 letters in a path,
/// a few of 1,000 in `_include` parameters) must not make a header proxies refuse (nginx
/// reads an upstream's answer head into 4 or 8 KiB by default). A resource type name has
/// at most 35 letters; granular SMART scopes with their query are longer, but far below
/// this.
const MAX_HINT: usize = 1024;

/// A FHIR OperationOutcome for the error, with a static text only.
pub(crate) fn operation_outcome(kind: ErrorKind) -> Bytes {
    let answer = kind.answer();
    let severity = if answer.status.is_server_error() {
        "fatal"
    } else {
        "error"
    };
    let body = serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": severity,
            "code": answer.issue_code,
            "details": { "text": answer.description },
        }],
    });
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    /// Hostile and sloppy hints: separators other than one space, empty tokens, quotes,
    /// backslashes, control and non-ASCII characters, nothing left at all.
    #[test]
    fn scope_hints_are_normalised_to_valid_tokens() {
        let long = format!("system/{}.r", "A".repeat(1016));
        let longest = format!("system/{}.r", "A".repeat(1015));
        // Seven tokens of 1,000 bytes: the first alone fits, then the short one.
        let type_of = |letter: char| format!("system/{}.r", letter.to_string().repeat(991));
        let many = format!(
            "{} system/Observation.s {}",
            type_of('A'),
            ['B', 'C', 'D', 'E', 'F', 'G'].map(type_of).join(" ")
        );
        let first_fitting = format!("{} system/Observation.s", type_of('A'));
        // Up to the limit exactly, with its separators.
        let filling = ["system/Observation.s"; 48].join(" ");
        assert_eq!(filling.len(), 1007);
        let full = format!("{filling} system/Patient.rs");
        assert_eq!(full.len(), 1025);
        let cases: [(&str, Option<&str>); 19] = [
            (long.as_str(), None),
            (longest.as_str(), Some(longest.as_str())),
            (many.as_str(), Some(first_fitting.as_str())),
            (full.as_str(), Some(filling.as_str())),
            (&full[..1024], Some(&full[..1024])),
            ("system/Patient.rs", Some("system/Patient.rs")),
            ("a b", Some("a b")),
            ("  a   b  ", Some("a b")),
            ("a\tb\r\nc", Some("a b c")),
            ("a\x0bb", None),
            ("", None),
            ("   ", None),
            ("a \"b\" c", Some("a c")),
            ("a\"b", None),
            ("a\\b c", Some("c")),
            ("a\u{0}b", None),
            ("patient/Observation.rs é", Some("patient/Observation.rs")),
            ("!#[]~", Some("!#[]~")),
            ("a\u{7f} b", Some("b")),
        ];
        for (hint, expected) in cases {
            assert_eq!(scope_hint(hint).as_deref(), expected, "{hint:?}");
        }
    }

    fn header(response: &Response<Bytes>) -> Option<&str> {
        response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn challenges_follow_rfc6750() {
        let challenge = Challenge::new("https://fhir.example/r4");
        let missing: Response<Bytes> = challenge.response(&AuthError::new(ErrorKind::MissingToken));
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&missing),
            Some("Bearer realm=\"https://fhir.example/r4\"")
        );

        let expired: Response<Bytes> = challenge.response(&AuthError::new(ErrorKind::Expired));
        assert_eq!(
            header(&expired),
            Some(
                "Bearer realm=\"https://fhir.example/r4\", error=\"invalid_token\", error_description=\"the access token has expired\""
            )
        );
        let body: serde_json::Value = serde_json::from_slice(expired.body()).unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["code"], "expired");

        let scope: Response<Bytes> =
            challenge.response(&AuthError::insufficient_scope("system/Observation.rs\"x"));
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        assert!(!header(&scope).unwrap().contains("scope="));

        let down: Response<Bytes> = challenge.response(&AuthError::new(ErrorKind::KeysUnavailable));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&down), None);
        assert_eq!(down.headers()[RETRY_AFTER], "10");
        assert_eq!(down.headers()[CONTENT_TYPE], FHIR_JSON);
        assert!(down.extensions().get::<AuthError>().is_some());
    }

    #[test]
    fn realms() {
        assert!(is_valid_realm("https://fhir.example/r4"));
        assert!(is_valid_realm("My FHIR API"));
        for bad in ["a\"b", "a\\b", "a\nb", "é"] {
            assert!(!is_valid_realm(bad), "{bad:?}");
        }
    }
}
