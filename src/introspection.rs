//! Token introspection (RFC 7662) for opaque and revocable tokens (feature
//! `introspection`).
//!
//! See [`Introspection`] for the modes and settings.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use moka::Expiry;
use moka::future::Cache;
use reqwest::Url;
use serde_json::{Map, Value};

use crate::clock::{Clock, elapsed, unix_seconds};
use crate::error::{AuthError, ErrorKind};
use crate::fetch::{self, FetchError, Fetcher, is_allowed_url};

/// When the layer asks the authorization server about a token.
///
/// ```
/// use smart_auth::IntrospectionMode;
/// assert_eq!(IntrospectionMode::default(), IntrospectionMode::Only);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IntrospectionMode {
    /// Every token is introspected; none is validated locally (opaque tokens).
    #[default]
    Only,
    /// JWTs are validated locally first, then introspected to catch revocation.
    AfterJwt,
    /// JWTs (three dot-separated segments) are validated locally; every other token is
    /// introspected.
    NonJwtTokens,
}

/// How the layer authenticates to the introspection endpoint (RFC 7662 section 2.1
/// requires some authentication).
///
/// ```
/// use smart_auth::IntrospectionAuth;
/// let auth = IntrospectionAuth::basic("resource-server", "s3cret");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum IntrospectionAuth {
    /// HTTP Basic with client credentials (each part form-encoded, RFC 6749 section 2.3.1).
    Basic {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: String,
    },
    /// A fixed bearer token.
    Bearer(String),
    /// A bearer token obtained (and renewed) by the crate's SMART Backend Services client.
    #[cfg(feature = "client")]
    Client(crate::client::BackendServiceClient),
}

impl IntrospectionAuth {
    /// HTTP Basic client credentials.
    pub fn basic(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self::Basic {
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    /// A fixed bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self::Bearer(token.into())
    }

    /// The `Authorization` value; `None` for a client, whose token is fetched per call.
    fn fixed_header(&self) -> Option<HeaderValue> {
        let value = match self {
            Self::Basic { client_id, secret } => {
                let credentials = format!("{}:{}", form_encode(client_id), form_encode(secret));
                format!("Basic {}", STANDARD.encode(credentials))
            }
            Self::Bearer(token) => format!("Bearer {token}"),
            #[cfg(feature = "client")]
            Self::Client(_) => return None,
        };
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl std::fmt::Debug for IntrospectionAuth {
    /// Never prints credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { client_id, .. } => f
                .debug_struct("Basic")
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::Bearer(_) => f.write_str("Bearer(..)"),
            #[cfg(feature = "client")]
            Self::Client(client) => f.debug_tuple("Client").field(client).finish(),
        }
    }
}

/// Token introspection settings, for
/// [`SmartAuthBuilder::introspection`](crate::SmartAuthBuilder::introspection).
///
/// For each token the layer POSTs `token=…&token_type_hint=access_token` to the endpoint
/// with `Accept: application/json` and the configured authentication. The token is active
/// only if the answer says `"active": true` (the JSON boolean) and carries an `exp` in the
/// future; `iss`, when present, must be the configured issuer and `aud`, when present, must
/// name an accepted audience. The answer's `scope`, `client_id`, `sub`, `patient`,
/// `encounter`, `fhirContext`, `fhirUser` and `tenant` become the request's
/// [`SmartClaims`](crate::SmartClaims), as for a JWT. An inactive token gets 401
/// `invalid_token`; an endpoint that is down, slow, or answers anything else than a JSON
/// object gets 503, never acceptance.
///
/// Answers are cached by the whole token: active ones for the TTL (default 60 s) but
/// never past the token's `exp`, inactive ones briefly (default 10 s) to blunt floods.
/// Concurrent lookups of one token share one request. After a failed call, no call is
/// made for 10 s. Fetch limits as for keys: 5 s, 256 KiB, no redirects, `https` except
/// for loopback.
///
/// ```
/// use smart_auth::{Introspection, IntrospectionAuth, IntrospectionMode, SmartAuthLayer};
///
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .introspection(
///         Introspection::new(IntrospectionAuth::basic("resource-server", "s3cret"))
///             .endpoint("https://auth.example.org/introspect")
///             .mode(IntrospectionMode::AfterJwt),
///     )
///     .build()?;
/// # Ok::<(), smart_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Introspection {
    pub(crate) endpoint: Option<String>,
    pub(crate) auth: IntrospectionAuth,
    pub(crate) mode: IntrospectionMode,
    pub(crate) active_ttl: Duration,
    pub(crate) inactive_ttl: Duration,
    pub(crate) capacity: u64,
    pub(crate) failure_cooldown: Duration,
}

impl Introspection {
    /// Introspection with this authentication; the endpoint comes from the issuer's
    /// metadata (`introspection_endpoint`) unless [`endpoint`](Self::endpoint) is set.
    pub fn new(auth: IntrospectionAuth) -> Self {
        Self {
            endpoint: None,
            auth,
            mode: IntrospectionMode::default(),
            active_ttl: Duration::from_secs(60),
            inactive_ttl: Duration::from_secs(10),
            capacity: 10_000,
            failure_cooldown: Duration::from_secs(10),
        }
    }

    /// The introspection endpoint.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// When to introspect (default [`IntrospectionMode::Only`]).
    pub fn mode(mut self, mode: IntrospectionMode) -> Self {
        self.mode = mode;
        self
    }

    /// How long an active answer is reused (default 60 s; never past the token's `exp`).
    /// Zero turns the cache off.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.active_ttl = ttl;
        self
    }

    /// How long an inactive answer is reused (default 10 s).
    pub fn inactive_cache_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_ttl = ttl;
        self
    }

    /// The most answers kept (default 10,000).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.capacity = entries;
        self
    }

    /// How long after a failed call no call is made (default 10 s).
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.failure_cooldown = cooldown;
        self
    }
}

/// A cached answer with the lifetime it was given.
#[derive(Debug, Clone)]
struct Answer {
    claims: Option<Arc<Map<String, Value>>>,
    ttl: Duration,
}

struct AnswerExpiry;

impl Expiry<Arc<str>, Answer> for AnswerExpiry {
    fn expire_after_create(
        &self,
        _: &Arc<str>,
        answer: &Answer,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(answer.ttl)
    }
}

/// Runs introspection for a verifier.
pub(crate) struct Introspector {
    settings: Introspection,
    issuer: String,
    authorization: Option<HeaderValue>,
    fetcher: Fetcher,
    clock: Arc<dyn Clock>,
    endpoint: tokio::sync::OnceCell<Url>,
    cache: Cache<Arc<str>, Answer>,
    last_failure: Mutex<Option<SystemTime>>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Introspector {
    pub(crate) fn new(
        settings: Introspection,
        issuer: String,
        mut fetcher: Fetcher,
        clock: Arc<dyn Clock>,
    ) -> Self {
        fetcher.max_body = fetcher.max_body.min(256 * 1024);
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .expire_after(AnswerExpiry)
            .build();
        Self {
            authorization: settings.auth.fixed_header(),
            settings,
            issuer,
            fetcher,
            clock,
            endpoint: tokio::sync::OnceCell::new(),
            cache,
            last_failure: Mutex::new(None),
        }
    }

    pub(crate) fn mode(&self) -> IntrospectionMode {
        self.settings.mode
    }

    /// The active token's claims, as the introspection answer states them, with `iss`
    /// filled in from the configuration when the answer has none.
    pub(crate) async fn introspect(
        &self,
        token: &str,
    ) -> Result<Arc<Map<String, Value>>, AuthError> {
        let key: Arc<str> = Arc::from(token);
        let answer = match self.cache.get(&key).await {
            Some(answer) => answer,
            None => {
                if self.cooling_down() {
                    tracing::debug!("introspection failed recently: answering 503 without calling");
                    return Err(AuthError::new(ErrorKind::IntrospectionUnavailable));
                }
                let lookup = async { self.call(token).await };
                self.cache
                    .try_get_with(Arc::clone(&key), lookup)
                    .await
                    .map_err(|error: Arc<FetchError>| {
                        *self
                            .last_failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(self.clock.now());
                        tracing::warn!(error = %error, "token introspection failed");
                        AuthError::new(ErrorKind::IntrospectionUnavailable)
                            .with_source(FetchError::clone(&error))
                    })?
            }
        };
        let now = unix_seconds(self.clock.now());
        match answer.claims {
            Some(claims)
                if claims
                    .get("exp")
                    .and_then(Value::as_i64)
                    .is_some_and(|exp| exp > now) =>
            {
                Ok(claims)
            }
            _ => Err(AuthError::new(ErrorKind::InactiveToken)),
        }
    }

    fn cooling_down(&self) -> bool {
        let last = *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.is_some_and(|at| elapsed(self.clock.now(), at) < self.settings.failure_cooldown)
    }

    async fn endpoint(&self) -> Result<&Url, FetchError> {
        self.endpoint
            .get_or_try_init(|| async {
                let uri = match &self.settings.endpoint {
                    Some(uri) => uri.clone(),
                    None => {
                        let document =
                            fetch::discover_metadata(&self.fetcher, &self.issuer, |doc| {
                                doc.contains_key("introspection_endpoint")
                            })
                            .await?;
                        document
                            .get("introspection_endpoint")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    }
                };
                match Url::parse(&uri) {
                    Ok(url) if is_allowed_url(&url) => Ok(url),
                    _ => Err(FetchError::InsecureUrl),
                }
            })
            .await
    }

    /// One call to the endpoint; an error is never cached.
    async fn call(&self, token: &str) -> Result<Answer, FetchError> {
        let endpoint = self.endpoint().await?;
        let body = format!("token={}&token_type_hint=access_token", form_encode(token));
        #[cfg(feature = "client")]
        if let IntrospectionAuth::Client(client) = &self.settings.auth {
            let access_token = client.access_token().await.map_err(|error| {
                FetchError::Transport(format!("obtaining a token to introspect with: {error}"))
            })?;
            let mut header =
                HeaderValue::from_str(&format!("Bearer {}", access_token.access_token())).map_err(
                    |_| FetchError::Transport("the obtained token is not a header value".into()),
                )?;
            header.set_sensitive(true);
            let fetched = self
                .fetcher
                .post_form(endpoint, body, Some(&header))
                .await?;
            return self.answer(&fetched.body);
        }
        let fetched = self
            .fetcher
            .post_form(endpoint, body, self.authorization.as_ref())
            .await?;
        self.answer(&fetched.body)
    }

    /// Reads an introspection response.
    fn answer(&self, body: &[u8]) -> Result<Answer, FetchError> {
        let response: Map<String, Value> =
            serde_json::from_slice(body).map_err(|_| FetchError::NotJsonObject)?;
        let now = unix_seconds(self.clock.now());
        let exp = response.get("exp").and_then(Value::as_i64);
        let active = response.get("active") == Some(&Value::Bool(true));
        let answer = match exp {
            Some(exp) if active && exp > now => {
                let until_exp = Duration::from_secs(u64::try_from(exp - now).unwrap_or(0));
                let mut claims = response;
                claims.remove("active");
                claims
                    .entry("iss")
                    .or_insert_with(|| Value::String(self.issuer.clone()));
                Answer {
                    claims: Some(Arc::new(claims)),
                    ttl: self.settings.active_ttl.min(until_exp),
                }
            }
            _ => Answer {
                claims: None,
                ttl: self.settings.inactive_ttl,
            },
        };
        Ok(answer)
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b+c/d=é"), "a+b%2Bc%2Fd%3D%C3%A9");
        assert_eq!(crate::form::decode(&form_encode("x:y&z %")), "x:y&z %");
    }

    #[test]
    fn credentials_never_print() {
        let basic = format!("{:?}", IntrospectionAuth::basic("id", "s3cret"));
        assert!(basic.contains("id") && !basic.contains("s3cret"));
        assert!(!format!("{:?}", IntrospectionAuth::bearer("tok3n")).contains("tok3n"));
    }
}
