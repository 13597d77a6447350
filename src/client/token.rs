//! The token request on the wire, and [`AccessToken`].

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Url};
use serde_json::Value;

use super::error::ClientError;

/// The largest token response read; a larger one is refused.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The longest `error` or `error_description` kept from a server's answer.
const MAX_ERROR_TEXT: usize = 256;

/// The longest lifetime a token is kept for, whatever its `expires_in` (one day).
const MAX_TOKEN_LIFETIME_SECONDS: i64 = 24 * 60 * 60;

/// An access token from the token endpoint.
///
/// `Debug` hides the token itself. [`BackendServiceClient::authorize`] attaches it to
/// requests for you.
///
/// [`BackendServiceClient::authorize`]: super::BackendServiceClient::authorize
///
/// ```
/// use smart_auth::client::AccessToken;
/// let token = AccessToken::new("eyJhbGciOi...", 1_700_000_300, "system/Patient.rs");
/// assert_eq!(token.token_type(), "Bearer");
/// assert!(!format!("{token:?}").contains("eyJ"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    access_token: String,
    token_type: String,
    expires_at: i64,
    scope: String,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl AccessToken {
    /// A `Bearer` token, for tests of code that takes one.
    ///
    /// ```
    /// use smart_auth::client::AccessToken;
    /// let token = AccessToken::new("abc", 1_700_000_300, "system/*.rs");
    /// assert_eq!(token.access_token(), "abc");
    /// ```
    pub fn new(access_token: impl Into<String>, expires_at: i64, scope: impl Into<String>) -> Self {
        Self {
            access_token: access_token.into(),
            token_type: "Bearer".to_owned(),
            expires_at,
            scope: scope.into(),
        }
    }

    /// The token itself: what goes after `Bearer ` in the `Authorization` header.
    ///
    /// ```
    /// # use smart_auth::client::AccessToken;
    /// let token = AccessToken::new("abc", 0, "");
    /// assert_eq!(format!("Bearer {}", token.access_token()), "Bearer abc");
    /// ```
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// `token_type` as the server wrote it (`Bearer` in any letter case).
    ///
    /// ```
    /// # use smart_auth::client::AccessToken;
    /// assert!(AccessToken::new("abc", 0, "").token_type().eq_ignore_ascii_case("bearer"));
    /// ```
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When the token expires, in seconds since the Unix epoch: the client's clock at the
    /// request plus `expires_in` (a number, or a string of digits). Without `expires_in`,
    /// when the token is a JWT that states an integer `exp` (read, not verified): the
    /// client's clock plus what is left of it by the server's clock (the answer's `Date`),
    /// else plus `exp - iat` (not past `exp` by the client's clock while that is ahead),
    /// else until `exp`; otherwise the request time plus 300 s. Never more than a day
    /// ahead.
    ///
    /// ```
    /// # use smart_auth::client::AccessToken;
    /// assert_eq!(AccessToken::new("abc", 1_700_000_300, "").expires_at(), 1_700_000_300);
    /// ```
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// The granted scopes, space separated: the response's `scope`, or the requested
    /// scopes when the server sent none (RFC 6749 section 5.1).
    ///
    /// ```
    /// # use smart_auth::client::AccessToken;
    /// let token = AccessToken::new("abc", 0, "system/Patient.rs system/Observation.rs");
    /// assert_eq!(token.scope().split(' ').count(), 2);
    /// ```
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

/// What came back from the token endpoint.
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    /// A 429 or 503 answer's `Retry-After` in delta-seconds, at most [`MAX_RETRY_AFTER`].
    pub(crate) retry_after: Option<u64>,
    /// The answer's `Date` (RFC 9110 section 6.6.1), Unix seconds: the server's clock.
    pub(crate) server_date: Option<i64>,
}

/// The longest wait a server's `Retry-After` can impose on the client, in seconds.
pub(crate) const MAX_RETRY_AFTER: u64 = 300;

/// A `Retry-After` of delta-seconds (RFC 9110 section 10.2.3), capped; an HTTP-date or
/// anything else is not read.
fn retry_after_seconds(headers: &http::HeaderMap) -> Option<u64> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(
        value
            .parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(MAX_RETRY_AFTER),
    )
}

/// POSTs the form to the token endpoint with `Accept: application/json`, within
/// `timeout`, refusing redirects and bodies over [`MAX_RESPONSE_BYTES`]. The form is
/// sent once: never again to a redirect target, whatever the HTTP client's policy.
pub(crate) async fn post_form(
    http: &Client,
    endpoint: &Url,
    form: String,
    authorization: Option<HeaderValue>,
    timeout: Duration,
) -> Result<RawResponse, ClientError> {
    let mut request = http
        .post(endpoint.clone())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        // A body that cannot be replayed: a client that follows redirects (an injected one
        // may) stops at a 307 or 308 instead of sending the assertion or secret-bearing
        // form to the redirect target. Its length is still known, so it goes out with
        // Content-Length, not chunked.
        .body(reqwest::Body::wrap(form))
        .timeout(timeout);
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    let exchange = async {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = matches!(status.as_u16(), 429 | 503)
            .then(|| retry_after_seconds(response.headers()))
            .flatten();
        let server_date = response
            .headers()
            .get(http::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| httpdate::parse_http_date(text).ok())
            .map(crate::clock::unix_seconds);
        // An injected client may follow redirects: an answer from elsewhere is refused.
        if status.is_redirection() || response.url() != endpoint {
            return Err(ClientError::Transport {
                reason: "refusing to follow a redirect".to_owned(),
            });
        }
        let too_large = || ClientError::Transport {
            reason: format!("the answer exceeds {MAX_RESPONSE_BYTES} bytes"),
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        crate::json::strip_byte_order_mark(&mut body);
        Ok(RawResponse {
            status: status.as_u16(),
            body,
            retry_after,
            server_date,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

fn transport_error(error: reqwest::Error) -> ClientError {
    if error.is_timeout() {
        return ClientError::Timeout;
    }
    // reqwest's own message is terse ("error sending request"); the causes say why
    // (connection refused, TLS). None of them contains a body or a credential.
    let error = error.without_url();
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    ClientError::Transport { reason }
}

/// Reads a token endpoint answer. A success must be a JSON object (member names unique)
/// with a non-empty `access_token` and a `token_type` of `Bearer` (any case); its
/// lifetime is read by [`lifetime`]. An error status with an `error` member becomes
/// [`ClientError::OAuth`].
pub(crate) fn parse_response(
    response: &RawResponse,
    requested_scope: &str,
    now: i64,
) -> Result<AccessToken, ClientError> {
    let parsed = crate::json::object_with_unique_members(&response.body);
    if parsed == Err(crate::json::StrictJsonError::DuplicateMember) && response.status < 300 {
        // Two values for one member: which one the server meant is unknown.
        return Err(ClientError::InvalidTokenResponse(
            "the body names a member twice",
        ));
    }
    let document = parsed.ok();
    // An OAuth error is one whatever the status: some servers answer it with 200.
    let error_in_success = document.as_ref().is_some_and(|doc| {
        !doc.contains_key("access_token")
            && doc
                .get("error")
                .and_then(Value::as_str)
                .is_some_and(|code| !code.is_empty())
    });
    if !(200..300).contains(&response.status) || error_in_success {
        let oauth_error = document
            .as_ref()
            .and_then(|doc| doc.get("error"))
            .and_then(Value::as_str)
            .filter(|code| !code.is_empty());
        return Err(match oauth_error {
            Some(error) => ClientError::OAuth {
                status: response.status,
                error: printable(error),
                description: document
                    .as_ref()
                    .and_then(|doc| doc.get("error_description"))
                    .and_then(Value::as_str)
                    .map(printable),
            },
            None => ClientError::UnexpectedStatus {
                status: response.status,
            },
        });
    }
    let document = document.ok_or(ClientError::InvalidTokenResponse(
        "the body is not a JSON object",
    ))?;
    let access_token = match document.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => {
            return Err(ClientError::InvalidTokenResponse(
                "access_token is missing or not a string",
            ));
        }
    };
    // It goes in `Authorization: Bearer <token>` as one credential: a space, comma, quote
    // or backslash would smuggle a second credential or parameter into the header, and a
    // control or non-ASCII character is no header text. Other visible characters pass,
    // although RFC 6750's `b64token` has fewer: real servers use them (Salesforce's
    // tokens hold `!`), and the server that issued the token reads them.
    if !is_header_safe_token(access_token) {
        return Err(ClientError::InvalidTokenResponse(
            "access_token holds a character that cannot go in an Authorization header as one credential",
        ));
    }
    let token_type = match document.get("token_type") {
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => kind,
        _ => {
            return Err(ClientError::InvalidTokenResponse(
                "token_type is missing or not Bearer",
            ));
        }
    };
    let expires_in = lifetime(
        document.get("expires_in"),
        access_token,
        response.server_date.unwrap_or(now),
        response.server_date.is_some(),
    )?;
    let scope = match document.get("scope") {
        None | Some(Value::Null) => requested_scope,
        Some(Value::String(scope)) => scope,
        Some(_) => {
            return Err(ClientError::InvalidTokenResponse("scope is not a string"));
        }
    };
    Ok(AccessToken {
        access_token: access_token.clone(),
        token_type: token_type.clone(),
        expires_at: now.saturating_add(expires_in),
        scope: scope.to_owned(),
    })
}

/// How long a token is used when neither `expires_in` nor the token itself says (RFC 6749
/// section 5.1 makes `expires_in` only RECOMMENDED): short, so that a token the server
/// gave a shorter life is not sent long after it expired.
const DEFAULT_LIFETIME_SECONDS: i64 = 300;

/// The token's lifetime in whole seconds, from `expires_in`, else from the access token's
/// own `exp` ([`jwt_lifetime`]), else [`DEFAULT_LIFETIME_SECONDS`]. A lifetime under one second is refused
/// (such a token cannot be used, and caching it would send one request per call); one
/// beyond a day is cut to a day, so a token is replaced at least daily.
fn lifetime(
    expires_in: Option<&Value>,
    access_token: &str,
    now: i64,
    server_clock: bool,
) -> Result<i64, ClientError> {
    let (seconds, source) = match expires_in {
        Some(Value::Number(number)) => {
            let seconds = number
                .as_f64()
                .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                .ok_or(ClientError::InvalidTokenResponse(
                    "expires_in is not a non-negative number",
                ))?;
            // Float to integer `as` saturates; whole seconds are enough.
            (seconds as i64, "expires_in")
        }
        // Some servers (Microsoft Entra ID's v1 endpoint) send the number as a string.
        // Only plain digits count: no sign, exponent, fraction or space.
        Some(Value::String(text))
            if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) =>
        {
            // Only an overflow can fail here: so many digits are far beyond a day.
            (text.parse::<i64>().unwrap_or(i64::MAX), "expires_in")
        }
        Some(Value::String(_)) => {
            return Err(ClientError::InvalidTokenResponse(
                "expires_in is a string that is not a whole number of seconds",
            ));
        }
        None | Some(Value::Null) => match jwt_lifetime(access_token, now, server_clock) {
            Some(seconds) => (seconds, "the access token's iat and exp"),
            None => (DEFAULT_LIFETIME_SECONDS, "the default"),
        },
        Some(_) => {
            return Err(ClientError::InvalidTokenResponse(
                "expires_in is not a number",
            ));
        }
    };
    if seconds < 1 {
        return Err(ClientError::InvalidTokenResponse(
            "the token expires in less than one second",
        ));
    }
    let seconds = seconds.min(MAX_TOKEN_LIFETIME_SECONDS);
    tracing::debug!(seconds, source, "token lifetime");
    Ok(seconds)
}

/// How long an access token that is a JWS lives, read from its payload (a JSON object with
/// unique member names) without checking the signature: it only decides how long the
/// token is cached, never whether anything is allowed. `now` is the server's clock when
/// `server_clock` (the answer's `Date`): then `exp - now`, which also refuses a stale
/// token. Else `now` is this machine's, which may run ahead of or behind the server's:
/// with integer `iat` and `exp`, `exp - iat` (the server's own reckoning), but not past
/// `exp` by this clock when that is still ahead; with `exp` alone, `exp - now`.
fn jwt_lifetime(access_token: &str, now: i64, server_clock: bool) -> Option<i64> {
    let payload = crate::jwt::payload_bytes(access_token.as_bytes())?;
    let claims = crate::json::object_with_unique_members(&payload).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    let until_exp = exp.saturating_sub(now);
    if server_clock {
        return Some(until_exp);
    }
    match claims.get("iat").and_then(Value::as_i64) {
        Some(iat) if iat < exp => {
            let issued_for = exp.saturating_sub(iat);
            Some(if until_exp > 0 {
                issued_for.min(until_exp)
            } else {
                issued_for
            })
        }
        _ => Some(until_exp),
    }
}

/// Whether an access token can go in `Authorization: Bearer <token>` as exactly one
/// credential: visible ASCII without a space, `,`, `"` or `\`.
fn is_header_safe_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && !matches!(byte, b',' | b'"' | b'\\'))
}

/// Server text fit for a message and a log line: each character beyond printable ASCII
/// replaced by `?`, length capped. RFC 6749 section 5.2 allows no other in `error` and
/// `error_description`; beyond the control characters, Unicode's line separators
/// (U+2028) would forge log lines and its bidirectional overrides (U+202E) reorder what a
/// reader sees.
fn printable(text: &str) -> String {
    text.chars()
        .take(MAX_ERROR_TEXT)
        .map(|c| if matches!(c, ' '..='~') { c } else { '?' })
        .collect()
}

/// The response as JSON with `access_token` (and any `refresh_token` or `id_token`)
/// replaced, for traces that may be printed.
pub(crate) fn redacted_body(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut document)) => {
            for secret in ["access_token", "refresh_token", "id_token"] {
                if let Some(value) = document.get_mut(secret) {
                    let length = value.as_str().map_or(0, str::len);
                    *value = Value::String(format!("<redacted, {length} characters>"));
                }
            }
            Value::Object(document)
        }
        Ok(other) => other,
        Err(_) => Value::String(format!("<{} bytes, not JSON>", body.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    fn answer(status: u16, body: Value) -> RawResponse {
        RawResponse {
            status,
            body: body.to_string().into_bytes(),
            retry_after: None,
            server_date: None,
        }
    }

    #[test]
    fn success() {
        let token = parse_response(
            &answer(
                200,
                json!({"access_token": "t", "token_type": "bearer", "expires_in": 300, "scope": "a"}),
            ),
            "a b",
            1_000,
        )
        .unwrap();
        assert_eq!(
            (
                token.access_token(),
                token.token_type(),
                token.expires_at(),
                token.scope()
            ),
            ("t", "bearer", 1_300, "a")
        );
        let token = parse_response(
            &answer(
                200,
                json!({"access_token": "t", "token_type": "Bearer", "expires_in": 59.9}),
            ),
            "a b",
            1_000,
        )
        .unwrap();
        assert_eq!((token.expires_at(), token.scope()), (1_059, "a b"));
    }

    #[test]
    fn success_bodies_that_name_a_member_twice_are_refused() {
        for body in [
            r#"{"access_token":"t","access_token":"u","token_type":"Bearer","expires_in":300}"#,
            r#"{"access_token":"t","token_type":"Bearer","token_type":"N_A","expires_in":300}"#,
            r#"{"access_token":"t","token_type":"Bearer","expires_in":300,"\u0065xpires_in":9}"#,
        ] {
            let raw = RawResponse {
                status: 200,
                body: body.as_bytes().to_vec(),
                retry_after: None,
                server_date: None,
            };
            assert!(
                matches!(
                    parse_response(&raw, "s", 0),
                    Err(ClientError::InvalidTokenResponse(
                        "the body names a member twice"
                    ))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn invalid_success_bodies() {
        let good = json!({"access_token": "t", "token_type": "Bearer", "expires_in": 300});
        let with = |name: &str, value: Value| {
            let mut body = good.clone();
            if value.is_null() {
                body.as_object_mut().unwrap().remove(name);
            } else {
                body[name] = value;
            }
            parse_response(&answer(200, body), "s", 0).unwrap_err()
        };
        let cases = [
            with("access_token", Value::Null),
            with("access_token", json!("")),
            with("access_token", json!(12)),
            with("access_token", json!("line\nbreak")),
            // Not one credential: a second credential or parameter would follow.
            with("access_token", json!("a b")),
            with("access_token", json!("abc, Basic Zm9vOmJhcg==")),
            with("access_token", json!("a\"b")),
            with("access_token", json!("a\\b")),
            with("access_token", json!("a\tb")),
            with("access_token", json!("a\u{0}b")),
            with("access_token", json!("a\u{7f}b")),
            with("access_token", json!("\u{e9}t\u{e9}")),
            // Too short to use.
            with("expires_in", json!(0)),
            with("expires_in", json!(0.4)),
            with("token_type", Value::Null),
            with("token_type", json!("DPoP")),
            with("expires_in", json!(-1)),
            with("scope", json!(["a"])),
            parse_response(&answer(200, json!([1])), "s", 0).unwrap_err(),
            parse_response(
                &RawResponse {
                    status: 200,
                    body: b"<html>".to_vec(),
                    retry_after: None,
                    server_date: None,
                },
                "s",
                0,
            )
            .unwrap_err(),
        ];
        for error in cases {
            assert!(
                matches!(error, ClientError::InvalidTokenResponse(_)),
                "{error:?}"
            );
        }
        // Visible characters beyond RFC 6750's b64token, as real servers write them
        // (Salesforce: `!`), go in the header as one credential.
        for token in [
            "00Dxx0000001gPL!AQ4AQFkK.abc",
            "ab=c",
            "=abc",
            "a;b",
            "a(b)",
        ] {
            let body = json!({"access_token": token, "token_type": "Bearer", "expires_in": 60});
            assert_eq!(
                parse_response(&answer(200, body), "s", 0)
                    .unwrap()
                    .access_token(),
                token
            );
        }
    }

    /// Padding and every b64token character are kept; lifetimes are whole seconds, at most
    /// a day.
    #[test]
    fn usable_success_bodies() {
        let token = |access_token: &str, expires_in: Value| {
            let body = json!({"access_token": access_token, "token_type": "bEaReR", "expires_in": expires_in});
            parse_response(&answer(200, body), "s", 1_000).unwrap()
        };
        let parsed = token("aZ09-._~+/==", json!(1.9));
        assert_eq!(parsed.access_token(), "aZ09-._~+/==");
        assert_eq!(parsed.expires_at(), 1_001);
        assert_eq!(token("t", json!(300)).expires_at(), 1_300);
        assert_eq!(token("t", json!(86_400)).expires_at(), 87_400);
        assert_eq!(token("t", json!(86_401)).expires_at(), 87_400);
        assert_eq!(token("t", json!(1e300)).expires_at(), 87_400);
    }

    /// `expires_in` as a string of ASCII digits (Microsoft Entra ID's v1 endpoint) reads
    /// as the number, within the same bounds; any other string is refused.
    #[test]
    fn expires_in_as_a_string_of_digits() {
        let parse = |expires_in: Value| {
            let body =
                json!({"access_token": "t", "token_type": "Bearer", "expires_in": expires_in});
            parse_response(&answer(200, body), "s", 1_000)
        };
        for (text, expires_at) in [
            ("3599", 4_599),
            ("1", 1_001),
            ("0300", 1_300),
            ("86400", 87_400),
            ("86401", 87_400),
            ("99999999999999999999999", 87_400),
        ] {
            assert_eq!(
                parse(json!(text)).unwrap().expires_at(),
                expires_at,
                "{text}"
            );
        }
        for text in [
            "", "0", "00", "-1", "+30", "3e2", "30.5", "30.", " 30", "30 ", "3 0", "0x1E",
            "\u{661}", "thirty",
        ] {
            assert!(
                matches!(
                    parse(json!(text)),
                    Err(ClientError::InvalidTokenResponse(_))
                ),
                "{text:?}"
            );
        }
        for other in [json!(true), json!([300]), json!({"seconds": 300})] {
            assert!(
                matches!(
                    parse(other.clone()),
                    Err(ClientError::InvalidTokenResponse(_))
                ),
                "{other}"
            );
        }
    }

    /// A compact JWS with these claims and a placeholder signature.
    fn unsigned_jwt(claims: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"at+jwt"}"#);
        format!("{header}.{}.c2lnbmF0dXJl", URL_SAFE_NO_PAD.encode(claims))
    }

    /// Without `expires_in`: the access token's own integer `exp` when it is a JWT whose
    /// payload is a JSON object (same bounds), else 300 s.
    #[test]
    fn missing_expires_in() {
        let parse = |access_token: &str, expires_in: Option<Value>| {
            let mut body = json!({"access_token": access_token, "token_type": "Bearer"});
            if let Some(expires_in) = expires_in {
                body["expires_in"] = expires_in;
            }
            parse_response(&answer(200, body), "s", 1_000)
        };
        let rows = [
            // The token's own exp, capped at a day.
            (unsigned_jwt(r#"{"exp":1600}"#), 1_600),
            (unsigned_jwt(r#"{"exp":1001,"iat":900}"#), 1_001),
            // With iat, the server's own lifetime: this clock 4,000 s behind the server's
            // (not 4,300 s of use), or 300 s ahead of it (not refused as expired).
            (unsigned_jwt(r#"{"exp":5300,"iat":5000}"#), 1_300),
            (unsigned_jwt(r#"{"exp":700,"iat":400}"#), 1_300),
            // An iat not before exp says nothing: exp alone.
            (unsigned_jwt(r#"{"exp":1600,"iat":1600}"#), 1_600),
            (unsigned_jwt(r#"{"exp":87400}"#), 87_400),
            (unsigned_jwt(r#"{"exp":100000}"#), 87_400),
            // No usable exp, or not a JWT: the default.
            ("opaque-token".to_owned(), 1_300),
            (unsigned_jwt(r#"{"iat":900}"#), 1_300),
            (unsigned_jwt(r#"{"exp":"1600"}"#), 1_300),
            (unsigned_jwt(r#"{"exp":1600.5}"#), 1_300),
            (unsigned_jwt(r#"{"exp":null}"#), 1_300),
            (unsigned_jwt(r#"[1600]"#), 1_300),
            (unsigned_jwt("not json"), 1_300),
            (unsigned_jwt(r#"{"exp":1600,"exp":90000}"#), 1_300),
            ("a.b.c.d.e".to_owned(), 1_300),
        ];
        for (token, expires_at) in rows {
            assert_eq!(
                parse(&token, None).unwrap().expires_at(),
                expires_at,
                "{token}"
            );
            // `null` states no lifetime either.
            assert_eq!(
                parse(&token, Some(Value::Null)).unwrap().expires_at(),
                expires_at,
                "{token}"
            );
        }
        // A stated expires_in wins over the token's exp.
        let token = unsigned_jwt(r#"{"exp":1600}"#);
        assert_eq!(parse(&token, Some(json!(60))).unwrap().expires_at(), 1_060);
        // An exp less than a second ahead: the token cannot be used.
        for exp in [1_000, 999, 0, -5, i64::MIN] {
            let token = unsigned_jwt(&format!(r#"{{"exp":{exp}}}"#));
            assert!(
                matches!(
                    parse(&token, None),
                    Err(ClientError::InvalidTokenResponse(_))
                ),
                "{exp}"
            );
        }
    }

    /// With the answer's `Date`, the server's clock decides how long a token without
    /// `expires_in` lives (`exp - Date`), whatever this machine's clock says: a stale token
    /// (a server handing out a cached one near its end) is refused.
    #[test]
    fn the_servers_date_decides_the_lifetime() {
        let with_date = |claims: &str, date: i64| RawResponse {
            status: 200,
            body: json!({"access_token": unsigned_jwt(claims), "token_type": "Bearer"})
                .to_string()
                .into_bytes(),
            retry_after: None,
            server_date: Some(date),
        };
        // This clock reads 1,000; the server's 5,000: 300 s left by the server's.
        let token = parse_response(&with_date(r#"{"iat":4900,"exp":5300}"#, 5_000), "s", 1_000);
        assert_eq!(token.unwrap().expires_at(), 1_300);
        // Expired by the server's clock, though `exp - iat` is 295 s.
        let stale = parse_response(&with_date(r#"{"iat":4702,"exp":4997}"#, 5_000), "s", 5_000);
        assert!(matches!(stale, Err(ClientError::InvalidTokenResponse(_))));
    }

    #[test]
    fn error_answers() {
        let error = parse_response(
            &answer(
                400,
                json!({"error": "invalid_scope", "error_description": "no\u{7}pe"}),
            ),
            "s",
            0,
        )
        .unwrap_err();
        assert_eq!(
            error,
            ClientError::OAuth {
                status: 400,
                error: "invalid_scope".into(),
                description: Some("no?pe".into()),
            }
        );
        let long = "x".repeat(1000);
        let error = parse_response(&answer(401, json!({"error": long})), "s", 0).unwrap_err();
        assert_eq!(error.oauth_error().map(str::len), Some(MAX_ERROR_TEXT));
        // An OAuth error answered with 200 is still one.
        let error =
            parse_response(&answer(200, json!({"error": "invalid_client"})), "s", 0).unwrap_err();
        assert_eq!(error.oauth_error(), Some("invalid_client"));
        for body in [json!({"error": ""}), json!({"message": "x"}), json!("x")] {
            assert_eq!(
                parse_response(&answer(503, body), "s", 0).unwrap_err(),
                ClientError::UnexpectedStatus { status: 503 }
            );
        }
    }

    #[test]
    fn redaction() {
        let body = json!({"access_token": "secret", "token_type": "Bearer", "refresh_token": "r"});
        let redacted = redacted_body(body.to_string().as_bytes());
        assert_eq!(redacted["access_token"], "<redacted, 6 characters>");
        assert_eq!(redacted["refresh_token"], "<redacted, 1 characters>");
        assert_eq!(redacted["token_type"], "Bearer");
        assert_eq!(redacted_body(b"oops"), json!("<4 bytes, not JSON>"));
    }
}
