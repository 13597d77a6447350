//! A SMART Backend Services client (feature `client`): gets access tokens with the OAuth
//! 2.0 client credentials grant and attaches them to outgoing requests.
//!
//! [`BackendServiceClient`] finds the token endpoint in the FHIR server's
//! `/.well-known/smart-configuration` (or takes it from you), authenticates with a signed
//! JWT assertion (`private_key_jwt`, RFC 7523, the SMART way) or with HTTP Basic
//! (`client_secret_basic`), and keeps the token until shortly before it expires. Many
//! tasks can share one client: while a token is being fetched, the others wait for it
//! instead of asking again (or, while the cached one is still valid, use that).
//!
//! ```no_run
//! use smart_auth::SigningAlgorithm;
//! use smart_auth::client::{BackendServiceClient, ClientKey};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pem = std::fs::read_to_string("client-key.pem")?;
//! let key = ClientKey::from_pkcs8_pem(&pem, SigningAlgorithm::ES384, "backend-2024")?;
//! let client = BackendServiceClient::builder("https://fhir.example.org/r4")
//!     // The credentials go to this authorization server only, whatever the FHIR
//!     // server's discovery document names (RFC 9700 section 4.9.1).
//!     .trust_token_endpoint_origin("https://auth.example.org")
//!     .client_id("my-backend-service")
//!     .private_key_jwt(key)
//!     .scopes(["system/Patient.rs", "system/Observation.rs"])
//!     .build()?;
//!
//! let http = reqwest::Client::new();
//! let request = client
//!     .authorize(http.get("https://fhir.example.org/r4/Patient?name=smith"))
//!     .await?;
//! let bundle = request.send().await?.text().await?;
//! # Ok(()) }
//! ```
//!
//! Every request the client makes goes to an `https` URL (plain `http` only to loopback
//! hosts), follows no redirects and has a timeout (10 s by default); token answers over
//! 64 KiB are refused. Errors name what went wrong and, for an OAuth error, the server's
//! `error` code; they never contain secrets, assertions or tokens.

mod assertion;
mod error;
mod key;
mod token;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::FutureExt as _;
use http::HeaderValue;
use reqwest::Url;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};
use url::Origin;

use crate::clock::{Clock, SystemClock, unix_seconds};
use crate::fetch::{
    Fetcher, default_client, is_allowed_discovered_url, is_allowed_url, is_allowed_url_named_by,
};
use crate::form::form_encode_credential;

pub use error::ClientError;
pub use key::{ClientKey, KeyError};
pub use token::AccessToken;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(30);
const MAX_DISCOVERY_BYTES: usize = 1024 * 1024;

/// A client secret; `Debug` never shows it.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone)]
enum Authentication {
    PrivateKeyJwt(ClientKey),
    ClientSecretBasic(Secret),
}

impl Authentication {
    fn method(&self) -> &'static str {
        match self {
            Self::PrivateKeyJwt(_) => "private_key_jwt",
            Self::ClientSecretBasic(_) => "client_secret_basic",
        }
    }

    /// `failure` without the server's words when its answer (`body`, read whole, before
    /// any text is cut to length) quotes this client's secret, as written or form-encoded
    /// as it was sent, or the `credentials` (the `Authorization` value) it was sent: a
    /// server echoing its input. Errors get logged, and the secret must not be. Texts
    /// shorter than 8 characters are not looked for: a secret that short is found in any
    /// sentence, and guessed anyway.
    fn withheld_from(
        &self,
        failure: ClientError,
        body: &[u8],
        credentials: Option<&HeaderValue>,
    ) -> ClientError {
        let Self::ClientSecretBasic(Secret(secret)) = self else {
            return failure;
        };
        let ClientError::OAuth {
            status,
            error,
            description,
        } = failure
        else {
            return failure;
        };
        let encoded = credentials
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "));
        let form_encoded = form_encode_credential(secret);
        // The answer as sent, and its texts as JSON decodes them, whole (a JSON encoder
        // may write `+` as `\u002B` or `/` as `\/`).
        let decoded: Vec<String> = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|answer| match answer {
                Value::Object(members) => Some(members),
                _ => None,
            })
            .map(|members| {
                members
                    .into_iter()
                    .filter_map(|(_, value)| match value {
                        Value::String(text) => Some(text),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = String::from_utf8_lossy(body);
        let sought: Vec<&str> = [Some(secret.as_str()), Some(form_encoded.as_str()), encoded]
            .into_iter()
            .flatten()
            .filter(|text| text.len() >= 8)
            .collect();
        let quotes = |text: &str| sought.iter().any(|sought| text.contains(sought));
        if !quotes(&body) && !decoded.iter().any(|text| quotes(text)) {
            return ClientError::OAuth {
                status,
                error,
                description,
            };
        }
        // The code is kept when it is one (short, of the characters codes are made of,
        // quoting nothing), for callers that act on it.
        let is_code = error.len() <= 64
            && error
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte == b'_')
            && !quotes(&error);
        ClientError::OAuth {
            status,
            error: if is_code { error } else { WITHHELD.to_owned() },
            description: Some(WITHHELD.to_owned()),
        }
    }
}

/// What stands in an error for a server's text that quoted the client's secret.
const WITHHELD: &str = "<withheld: the server's text quoted this client's credentials>";

/// The token endpoint and where it came from.
#[derive(Debug, Clone)]
struct Endpoint {
    /// As configured or discovered: the assertion's `aud` unless another is configured.
    text: String,
    url: Url,
    discovered: Option<Discovered>,
}

/// Settings for a [`BackendServiceClient`]; from [`BackendServiceClient::builder`].
///
/// ```
/// use smart_auth::client::BackendServiceClient;
/// let client = BackendServiceClient::builder("https://fhir.example.org/r4")
///     .token_endpoint("https://auth.example.org/token")
///     .client_id("reporting")
///     .client_secret_basic("s3cret")
///     .scope("system/Observation.rs")
///     .build()?;
/// assert!(!format!("{client:?}").contains("s3cret"));
/// # Ok::<(), smart_auth::client::ClientError>(())
/// ```
#[derive(Debug)]
#[must_use = "call .build() to make the client"]
pub struct BackendServiceClientBuilder {
    fhir_base_url: String,
    token_endpoint: Option<String>,
    assertion_audience: Option<String>,
    client_id: String,
    authentication: Option<Authentication>,
    scopes: Vec<String>,
    resources: Vec<String>,
    /// Origins besides the FHIR server's that `authorize` may send the token to.
    other_token_origins: Vec<String>,
    /// The origins a discovered token endpoint may be on; empty: any.
    trusted_token_endpoint_origins: Vec<String>,
    /// More parameters for the token request's form.
    extra_parameters: Vec<(String, String)>,
    http: Option<reqwest::Client>,
    timeout: Duration,
    refresh_margin: Duration,
    clock: Arc<dyn Clock>,
}

impl BackendServiceClientBuilder {
    /// Lets [`authorize`](BackendServiceClient::authorize) attach the token to requests
    /// for this origin too, besides the FHIR server's own: for a Bulk Data file server on
    /// another host whose files need the token (`requiresAccessToken`). Only the scheme,
    /// host and port of `url` count; it must be `https` (`http` only for loopback hosts).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .also_authorize_origin("https://files.example.org");
    /// ```
    pub fn also_authorize_origin(mut self, url: impl Into<String>) -> Self {
        self.other_token_origins.push(url.into());
        self
    }

    /// Uses this token endpoint instead of discovering it; the FHIR base URL is then not
    /// contacted. It must be `https` (`http` only for loopback hosts), written as an RFC
    /// 3986 URI (`scheme://host…`, ASCII: an internationalized host in its `xn--` form).
    /// ASCII whitespace around it is dropped (a value read from a file keeps its line
    /// break); whitespace, a control character or another character a URI may not hold
    /// inside is refused by `build`, since the text goes into the assertion's `aud` as
    /// written and every reader must find the same host in it.
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .token_endpoint("https://auth.example.org/token");
    /// ```
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// Accepts a discovered token endpoint only on this origin (call again for more).
    /// Discovery asks the FHIR server where its token endpoint is, and the client sends its
    /// credentials there and the token it gets back to the FHIR server: a FHIR base that
    /// is not the one you meant (a customer typed it in, a DNS name was taken over) could
    /// name an authorization server that trusts this client, collect the tokens, or collect
    /// a client secret (RFC 9700 section 4.9.1). With origins pinned, a token endpoint
    /// elsewhere is a [`ClientError::Discovery`] before anything is sent to it. Without
    /// them, a discovered endpoint on another origin than the FHIR server's is used with
    /// `private_key_jwt` and a warning is logged (Oracle Health and others legitimately keep
    /// it elsewhere; an assertion names that endpoint as its audience and expires within
    /// minutes), and refused with `client_secret_basic` (a secret can be replayed by
    /// whoever receives it): pin the origin or configure the
    /// [`token_endpoint`](Self::token_endpoint).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .trust_token_endpoint_origin("https://auth.example.org");
    /// ```
    pub fn trust_token_endpoint_origin(mut self, origin: impl Into<String>) -> Self {
        self.trusted_token_endpoint_origins.push(origin.into());
        self
    }

    /// The `aud` of the client assertions (`private_key_jwt`). By default it is the token
    /// endpoint URL, as configured or discovered (without the whitespace around it), as
    /// SMART Backend Services asks. This value is trimmed the same way, and refused by
    /// `build` with whitespace or a control character inside, and (when it holds a `:`,
    /// as a URI does) with a character a URI may not hold; any other string is a valid
    /// `aud` (RFC 7519's StringOrURI).
    /// Some servers want another value: Auth0 and the RFC 7523 update draft
    /// (rfc7523bis) want the authorization server's issuer identifier. It needs a
    /// configured [`token_endpoint`](Self::token_endpoint): an assertion for that
    /// audience must only ever be sent to that server, never to an endpoint a FHIR server
    /// names (which could replay it there).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .token_endpoint("https://tenant.auth0.example/oauth/token")
    ///     .assertion_audience("https://tenant.auth0.example/");
    /// ```
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// The client id the authorization server gave this service at registration
    /// (required).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4").client_id("reporting");
    /// ```
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Authenticates with a JWT assertion signed by `key` (`private_key_jwt`, what SMART
    /// Backend Services asks for). Replaces an earlier
    /// [`client_secret_basic`](Self::client_secret_basic).
    ///
    /// ```
    /// # use smart_auth::{SigningAlgorithm, client::{BackendServiceClient, ClientKey}};
    /// let key = ClientKey::generate(SigningAlgorithm::RS384, "k1")?;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4").private_key_jwt(key);
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn private_key_jwt(mut self, key: ClientKey) -> Self {
        self.authentication = Some(Authentication::PrivateKeyJwt(key));
        self
    }

    /// Authenticates with HTTP Basic: the client id and `secret`, each form-urlencoded as
    /// RFC 6749 section 2.3.1 says (`client_secret_basic`). Letters, digits, `-`, `.`,
    /// `_`, `~` and `*` are sent as they are, since many servers do not form-decode Basic
    /// credentials; a space is sent as `+`, anything else as `%XX`. Replaces an earlier
    /// [`private_key_jwt`](Self::private_key_jwt). The secret goes to a discovered token
    /// endpoint on another origin than the FHIR server's only when that origin is pinned
    /// with [`trust_token_endpoint_origin`](Self::trust_token_endpoint_origin).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .client_secret_basic("s3cret");
    /// ```
    pub fn client_secret_basic(mut self, secret: impl Into<String>) -> Self {
        self.authentication = Some(Authentication::ClientSecretBasic(Secret(secret.into())));
        self
    }

    /// Requests a scope, such as `system/Patient.rs`. A value with spaces counts as
    /// several scopes; repeats are ignored. At least one scope is required, and
    /// [`build`](Self::build) refuses a scope holding a character RFC 6749 section 3.3 does
    /// not allow (a quote, a backslash, a control character, anything beyond ASCII).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .scope("system/Patient.rs")
    ///     .scope("system/Observation.rs system/Encounter.rs");
    /// ```
    pub fn scope(mut self, scope: impl AsRef<str>) -> Self {
        for scope in scope.as_ref().split_ascii_whitespace() {
            if !self.scopes.iter().any(|known| known == scope) {
                self.scopes.push(scope.to_owned());
            }
        }
        self
    }

    /// Requests several scopes; see [`scope`](Self::scope).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .scopes(["system/Patient.rs", "system/Observation.rs"]);
    /// ```
    pub fn scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        scopes
            .into_iter()
            .fold(self, |builder, scope| builder.scope(scope))
    }

    /// Adds a `resource` parameter (RFC 8707 resource indicator) to token requests, for
    /// servers that issue tokens per resource server. Not part of SMART; most servers
    /// need none.
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .resource("https://fhir.example.org/r4");
    /// ```
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Another parameter for every token request's form, for servers that want one beyond
    /// SMART's: Auth0 names the API in `audience` (without it a default tenant refuses
    /// `client_credentials`). The names the client writes itself (`grant_type`, `scope`,
    /// `resource`, `client_assertion`, `client_assertion_type`, `client_id`,
    /// `client_secret`) and names given twice are refused by `build`.
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .token_endpoint("https://tenant.auth0.example/oauth/token")
    ///     .token_request_parameter("audience", "https://fhir.example.org/r4");
    /// ```
    pub fn token_request_parameter(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.extra_parameters.push((name.into(), value.into()));
        self
    }

    /// The HTTP client for discovery and token requests. The default refuses redirects;
    /// with your own, redirected answers are still refused, the token request's form
    /// (assertion or secret) is never sent again to a 307/308 target, and the timeout
    /// still applies. A client that follows redirects still makes the discovery GET
    /// and the downgraded GET of a 301/302/303 (without the form) before the answer is
    /// refused; give it [`reqwest::redirect::Policy::none`] to avoid both.
    ///
    /// A client built with `reqwest::Client::builder()` sends requests through the proxies the
    /// environment names (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`), loopback hosts
    /// included unless `NO_PROXY` lists them; the crate's own client sends those directly.
    /// Plain `http` to a loopback host would then cross the network in clear to the proxy,
    /// credentials and tokens included: exempt them
    /// (`.proxy(reqwest::Proxy::all(url)?.no_proxy(reqwest::NoProxy::from_string("localhost,127.0.0.0/8,::1")))`)
    /// or turn proxies off (`.no_proxy()`).
    ///
    /// ```
    /// # use smart_auth::client::BackendServiceClient;
    /// let http = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .build()
    ///     .unwrap();
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4").http_client(http);
    /// ```
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The time limit for discovery and for each token request, connecting and reading
    /// included (default 10 s; 100 ms to 5 min, else `build` fails).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .timeout(Duration::from_secs(3));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long before expiry a cached token is replaced (default 30 s). For tokens that
    /// live less than twice the margin, half their lifetime is used instead, so a short
    /// lived token is still reused for a while.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use smart_auth::client::BackendServiceClient;
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .refresh_margin(Duration::from_secs(60));
    /// ```
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The clock for assertion times and token expiry; tests pass a
    /// [`ManualClock`](crate::ManualClock).
    ///
    /// ```
    /// # use smart_auth::{ManualClock, client::BackendServiceClient};
    /// let builder = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .clock(ManualClock::at_unix(1_700_000_000));
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and makes the client. No network I/O happens here.
    ///
    /// ```
    /// use smart_auth::client::{BackendServiceClient, ClientError};
    /// let error = BackendServiceClient::builder("http://fhir.example.org")
    ///     .client_id("app")
    ///     .client_secret_basic("s")
    ///     .scope("system/*.rs")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(error, ClientError::Config(_)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] when the client id, the authentication method or the
    /// scopes are missing, the secret or the [assertion audience](Self::assertion_audience)
    /// is empty, the token endpoint or the assertion audience holds whitespace, a control
    /// character or (a URI) another character a URI may not hold (once the ASCII
    /// whitespace around it is dropped), or the token endpoint
    /// (or, without one, the FHIR base URL) is not an `https` URL (`http` only for loopback
    /// hosts).
    pub fn build(self) -> Result<BackendServiceClient, ClientError> {
        if self.client_id.is_empty() {
            return Err(ClientError::Config("client_id is required"));
        }
        let authentication = match self.authentication {
            None => {
                return Err(ClientError::Config(
                    "no client authentication: call private_key_jwt or client_secret_basic",
                ));
            }
            Some(Authentication::ClientSecretBasic(Secret(secret))) if secret.is_empty() => {
                return Err(ClientError::Config("the client secret is empty"));
            }
            Some(authentication) => authentication,
        };
        if self.scopes.is_empty() {
            return Err(ClientError::Config("at least one scope is required"));
        }
        let assertion_audience = match self.assertion_audience.as_deref().map(audience_text) {
            None => None,
            Some(Some("")) => return Err(ClientError::Config("the assertion audience is empty")),
            Some(Some(audience)) => Some(audience.to_owned()),
            Some(None) => {
                return Err(ClientError::Config(
                    "the assertion audience holds whitespace, a control character or another character a URI may not hold",
                ));
            }
        };
        // Zero (or 5 ms meant as 5 s) fails every request; hours hold the refresh (and
        // every caller) that long.
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.timeout) {
            return Err(ClientError::Config(
                "the timeout must be 100 ms to 5 minutes",
            ));
        }
        const CLIENT_WRITTEN: [&str; 7] = [
            "grant_type",
            "scope",
            "resource",
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "client_secret",
        ];
        for (index, (name, _)) in self.extra_parameters.iter().enumerate() {
            if name.is_empty()
                || CLIENT_WRITTEN.contains(&name.as_str())
                || self.extra_parameters[..index]
                    .iter()
                    .any(|(earlier, _)| earlier == name)
            {
                return Err(ClientError::Config(
                    "a token request parameter is empty, given twice, or one the client writes itself",
                ));
            }
        }
        if self.assertion_audience.is_some() && self.token_endpoint.is_none() {
            return Err(ClientError::Config(
                "an assertion audience needs a configured token endpoint: a discovered one \
                 could replay the assertion at that audience",
            ));
        }
        if !self
            .scopes
            .iter()
            .all(|scope| crate::scopes::is_scope_token(scope))
        {
            return Err(ClientError::Config(
                "a scope holds a character RFC 6749 does not allow (a quote, a backslash, a control character or non-ASCII)",
            ));
        }
        // A token endpoint may have a query (some servers name a policy there), never user
        // info or a fragment: the user info would go along as Basic authentication.
        let allowed = |text: &str| Url::parse(text).ok().filter(is_allowed_discovered_url);
        // The FHIR base and the origins: also nothing that would bend the URLs built from
        // them or send credentials along (no query, fragment or user info).
        let plain = |text: &str| allowed(text).filter(|url| url.query().is_none());
        let endpoint = match self.token_endpoint {
            Some(text) => {
                let text = aud_text(&text).ok_or(ClientError::Config(
                    "the token endpoint holds whitespace, a control character or another character a URI may not hold",
                ))?;
                let url =
                    allowed(text)
                        .filter(|_| has_authority(text))
                        .ok_or(ClientError::Config(
                            "the token endpoint must be an https URL (http only for loopback)",
                        ))?;
                let endpoint = Endpoint {
                    text: text.to_owned(),
                    url,
                    discovered: None,
                };
                OnceCell::new_with(Some(endpoint))
            }
            None => {
                plain(&self.fhir_base_url).ok_or(ClientError::Config(
                    "the FHIR base URL must be an https URL (http only for loopback) without \
                     query, fragment or credentials",
                ))?;
                OnceCell::new()
            }
        };
        let mut token_origins: Vec<Origin> = plain(&self.fhir_base_url)
            .map(|url| url.origin())
            .into_iter()
            .collect();
        for text in &self.other_token_origins {
            let url = plain(text).ok_or(ClientError::Config(
                "an origin to authorize must be an https URL (http only for loopback) without \
                 query, fragment or credentials",
            ))?;
            token_origins.push(url.origin());
        }
        let trusted_token_endpoint_origins = self
            .trusted_token_endpoint_origins
            .iter()
            .map(|text| plain(text).map(|url| url.origin()))
            .collect::<Option<Vec<Origin>>>()
            .ok_or(ClientError::Config(
                "a trusted token endpoint origin must be an https URL (http only for \
                 loopback) without query, fragment or credentials",
            ))?;
        let http = match self.http {
            Some(http) => http,
            None => default_client(self.timeout)
                .map_err(|_| ClientError::Config("the HTTP client could not be built"))?,
        };
        Ok(BackendServiceClient {
            inner: Arc::new(Inner {
                fhir_base_url: self.fhir_base_url,
                token_origins,
                trusted_token_endpoint_origins,
                extra_parameters: self.extra_parameters,
                endpoint,
                assertion_audience,
                client_id: self.client_id,
                authentication,
                scope: self.scopes.join(" "),
                resources: self.resources,
                fetcher: Fetcher {
                    client: http,
                    timeout: self.timeout,
                    max_body: MAX_DISCOVERY_BYTES,
                },
                refresh_margin: self.refresh_margin,
                clock: self.clock,
                cached: ArcSwapOption::empty(),
                refresh: Arc::new(Mutex::new(RefreshState::default())),
                finished: AtomicU64::new(0),
                retry_after: AtomicU64::new(0),
            }),
        })
    }
}

/// Gets and caches access tokens for a SMART backend service (feature `client`).
///
/// Cheap to clone; clones share the token cache. See the [module](self) documentation
/// for a complete example.
///
/// ```no_run
/// use smart_auth::client::BackendServiceClient;
///
/// # async fn run() -> Result<(), smart_auth::client::ClientError> {
/// let client = BackendServiceClient::builder("https://fhir.example.org/r4")
///     .client_id("reporting")
///     .client_secret_basic("s3cret")
///     .scope("system/Observation.rs")
///     .build()?;
/// let token = client.access_token().await?;
/// println!("token valid until {}", token.expires_at());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BackendServiceClient {
    inner: Arc<Inner>,
}

struct Inner {
    fhir_base_url: String,
    /// Where `authorize` may send the token: the FHIR server's origin and those added.
    token_origins: Vec<Origin>,
    /// The origins a discovered token endpoint may be on; empty: any.
    trusted_token_endpoint_origins: Vec<Origin>,
    /// More parameters for the token request's form.
    extra_parameters: Vec<(String, String)>,
    endpoint: OnceCell<Endpoint>,
    /// The assertions' `aud` when not the token endpoint URL.
    assertion_audience: Option<String>,
    client_id: String,
    authentication: Authentication,
    scope: String,
    resources: Vec<String>,
    fetcher: Fetcher,
    refresh_margin: Duration,
    clock: Arc<dyn Clock>,
    cached: ArcSwapOption<Cached>,
    refresh: Arc<Mutex<RefreshState>>,
    /// Token requests finished; tells a waiting caller whether one ended while it waited.
    finished: AtomicU64,
    /// The `Retry-After` seconds of the latest token request's answer (0: none).
    retry_after: AtomicU64,
}

/// A token and when to replace it.
struct Cached {
    token: AccessToken,
    /// When the request that got it started, by the client's clock (Unix seconds) and on
    /// the monotonic clock ("cached" below). Its expiry is the client's clock's, so a
    /// clock set back since would stretch its life by the step (and every call would be
    /// refused with 401 once the server's expiry passed): the time passed is also counted
    /// on the monotonic clock, which no step moves, and the token's life ends by
    /// whichever ends first. A clock read earlier than `cached_at` was set back by an
    /// unknown step: the token is not handed out then.
    cached_at: i64,
    cached_instant: tokio::time::Instant,
    /// Seconds after `cached_at` from which it is due for replacement.
    refresh_after: i64,
}

impl Cached {
    /// Whole seconds passed since it was cached, on the monotonic clock.
    fn seconds_held(&self) -> i64 {
        i64::try_from(self.cached_instant.elapsed().as_secs()).unwrap_or(i64::MAX)
    }

    /// Whether the token is not yet due for replacement at `now`, by the clock and by
    /// the time passed since it was cached.
    fn fresh_at(&self, now: i64) -> bool {
        now >= self.cached_at
            && now < self.cached_at.saturating_add(self.refresh_after)
            && self.seconds_held() < self.refresh_after
    }

    /// The seconds of life the token has left at `now`, by the clock and by the time
    /// passed since it was cached; 0 after a clock set back to before it was cached.
    fn life_left_at(&self, now: i64) -> i64 {
        if now < self.cached_at {
            return 0;
        }
        let expires_at = self.token.expires_at();
        let lifetime = expires_at.saturating_sub(self.cached_at);
        expires_at
            .saturating_sub(now)
            .min(lifetime.saturating_sub(self.seconds_held()))
    }
}

#[derive(Default)]
struct RefreshState {
    /// How the latest token request failed, shared with the callers that waited for it.
    last_error: Option<ClientError>,
    /// Token requests failed in a row since the last success.
    failures: u32,
    /// Before this time (Unix seconds) no new token request is made after a failure: the
    /// longer of the server's `Retry-After` and a backoff doubling from 1 s to 60 s.
    retry_not_before: i64,
    /// How long that wait was when it began (seconds): more than this left means the
    /// clock was set back since, which must not stretch the wait (nor end it).
    backoff_seconds: i64,
}

/// The longest backoff after failed token requests, in seconds (a server's `Retry-After`
/// may ask for more, up to [`token::MAX_RETRY_AFTER`]).
const MAX_BACKOFF_SECONDS: i64 = 60;

impl RefreshState {
    /// The error to answer with instead of a new request, while backing off. A clock set
    /// back since the wait began cuts what is left to the wait's own length, counted from
    /// the stepped clock's now: the step neither stretches the wait nor ends it.
    fn backing_off(&mut self, now: i64) -> Option<ClientError> {
        if self.retry_not_before.saturating_sub(now) > self.backoff_seconds {
            self.retry_not_before = now.saturating_add(self.backoff_seconds);
        }
        (now < self.retry_not_before)
            .then(|| self.last_error.clone())
            .flatten()
    }

    /// Notes a failed token request at `now`; `retry_after` is the server's, if it said.
    fn failed(&mut self, error: &ClientError, now: i64, retry_after: Option<u64>) {
        self.failures = self.failures.saturating_add(1);
        // 1, 2, 4 … 32 s, then 60 s: the shift stops at 6, far from overflowing.
        let doubling = (1_i64 << self.failures.saturating_sub(1).min(6)).min(MAX_BACKOFF_SECONDS);
        let asked = retry_after.map_or(0, |seconds| i64::try_from(seconds).unwrap_or(i64::MAX));
        self.backoff_seconds = doubling.max(asked);
        self.retry_not_before = now.saturating_add(self.backoff_seconds);
        self.last_error = Some(error.clone());
    }

    fn succeeded(&mut self) {
        *self = RefreshState::default();
    }
}

impl fmt::Debug for BackendServiceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("BackendServiceClient")
            .field("fhir_base_url", &inner.fhir_base_url)
            .field(
                "token_endpoint",
                &inner.endpoint.get().map(|endpoint| &endpoint.text),
            )
            .field("client_id", &inner.client_id)
            .field("authentication", &inner.authentication.method())
            .field("scope", &inner.scope)
            .finish_non_exhaustive()
    }
}

/// The discovery step: where the SMART configuration was read and what it said. Part of
/// a [`TokenRequestTrace`].
///
/// ```no_run
/// # async fn run(client: smart_auth::client::BackendServiceClient) -> Result<(), smart_auth::client::ClientError> {
/// let (trace, _token) = client.request_token_verbose().await?;
/// if let Some(discovered) = trace.discovered {
///     println!("GET {}\n{:#}", discovered.url, discovered.document);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Discovered {
    /// The URL fetched: `{fhir_base}/.well-known/smart-configuration`.
    pub url: String,
    /// The document as received, shared: each trace names the one copy the client keeps
    /// (a document of up to 1 MiB can take many times that parsed).
    pub document: Arc<Value>,
}

/// Every step of one token request, safe to print: for demos and troubleshooting. From
/// [`BackendServiceClient::request_token_verbose`].
///
/// The signed assertion, the client secret and the access token are left out; the
/// assertion's header and claims are included.
///
/// ```no_run
/// # async fn run(client: smart_auth::client::BackendServiceClient) -> Result<(), smart_auth::client::ClientError> {
/// let (trace, _token) = client.request_token_verbose().await?;
/// println!("{} to {}", trace.auth_method, trace.token_endpoint);
/// for (name, value) in &trace.form {
///     println!("  {name}={value}");
/// }
/// println!("{} {:#}", trace.response_status, trace.response_body);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenRequestTrace {
    /// The discovery step, or `None` when the token endpoint was configured.
    pub discovered: Option<Discovered>,
    /// The URL the request was posted to.
    pub token_endpoint: String,
    /// `private_key_jwt` or `client_secret_basic`.
    pub auth_method: &'static str,
    /// The assertion's JOSE header (`private_key_jwt` only).
    pub assertion_header: Option<Value>,
    /// The assertion's claims (`private_key_jwt` only).
    pub assertion_claims: Option<Value>,
    /// The form fields sent, with the assertion replaced by a placeholder.
    pub form: Vec<(String, String)>,
    /// The answer's HTTP status.
    pub response_status: u16,
    /// The answer's body as JSON, with `access_token` replaced by a placeholder.
    pub response_body: Value,
}

impl BackendServiceClient {
    /// Starts configuring a client for the FHIR server at `fhir_base_url`; the token
    /// endpoint is discovered from `{fhir_base_url}/.well-known/smart-configuration` on
    /// first use unless [`token_endpoint`](BackendServiceClientBuilder::token_endpoint)
    /// is given.
    ///
    /// ```
    /// # use smart_auth::{SigningAlgorithm, client::{BackendServiceClient, ClientKey}};
    /// let client = BackendServiceClient::builder("https://fhir.example.org/r4")
    ///     .client_id("reporting")
    ///     .private_key_jwt(ClientKey::generate(SigningAlgorithm::ES384, "k1")?)
    ///     .scope("system/Patient.rs")
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(fhir_base_url: impl Into<String>) -> BackendServiceClientBuilder {
        BackendServiceClientBuilder {
            fhir_base_url: fhir_base_url.into(),
            token_endpoint: None,
            assertion_audience: None,
            client_id: String::new(),
            authentication: None,
            scopes: Vec::new(),
            resources: Vec::new(),
            other_token_origins: Vec::new(),
            trusted_token_endpoint_origins: Vec::new(),
            extra_parameters: Vec::new(),
            http: None,
            timeout: DEFAULT_TIMEOUT,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            clock: Arc::new(SystemClock),
        }
    }

    /// A valid access token: the cached one while it is fresh, else a new one from the
    /// token endpoint. Concurrent callers share one request; if it fails, the callers
    /// that waited for it get its outcome.
    ///
    /// A token is replaced a little before it expires (see
    /// [`refresh_margin`](BackendServiceClientBuilder::refresh_margin)). If that request
    /// fails (an OAuth error, 429 or 503, a timeout, no connection) while the cached token
    /// still expires at least one second from now by this client's clock, the cached
    /// token is returned instead of the error, and calls in the next 1 to 5 s (a quarter of the
    /// time left) get it without asking the token endpoint again; once it has
    /// expired, the error is returned. While one caller replaces a still valid token, the
    /// others get that token at once instead of waiting for the token endpoint.
    ///
    /// After a failure the client backs off for the longer of the server's `Retry-After`
    /// (on 429 and 503, in seconds, at most 300) and a wait of 1 s doubling with each
    /// failure in a row up to 60 s: meanwhile calls get the last error (or the still valid
    /// cached token) without a new request. A success resets it.
    ///
    /// ```no_run
    /// # async fn run(client: smart_auth::client::BackendServiceClient) -> Result<(), smart_auth::client::ClientError> {
    /// let token = client.access_token().await?;
    /// let header = format!("Bearer {}", token.access_token());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Any [`ClientError`] but [`Config`](ClientError::Config): discovery, transport,
    /// timeout, the server's OAuth error, an unusable answer, or a signing failure, when
    /// no cached token is left that expires a second or more from now.
    pub async fn access_token(&self) -> Result<AccessToken, ClientError> {
        if let Some(token) = self.fresh_token() {
            return Ok(token);
        }
        let seen = self.inner.finished.load(Ordering::SeqCst);
        // While another caller replaces a token that is still valid, this one uses it
        // rather than wait on the token endpoint (up to the timeout when it is slow).
        let mut state = match Arc::clone(&self.inner.refresh).try_lock_owned() {
            Ok(state) => state,
            Err(_) => match self.still_valid_token() {
                Some(token) => return Ok(token),
                None => Arc::clone(&self.inner.refresh).lock_owned().await,
            },
        };
        if let Some(token) = self.fresh_token() {
            return Ok(token);
        }
        // A request that ended while this caller waited failed: its answer is as recent
        // as a new one would be.
        let shared = if self.inner.finished.load(Ordering::SeqCst) == seen {
            None
        } else {
            state.last_error.clone()
        };
        let result = match shared.or_else(|| state.backing_off(self.now())) {
            Some(error) => Err(error),
            None => self.refresh(state).await.map(|(_, token)| token),
        };
        result.or_else(|error| self.unexpired_token_despite(error))
    }

    /// After a failed refresh: the cached token while it expires at least a second from
    /// now (by this client's clock), else `error`. The next attempt waits a quarter of the
    /// time left, 1 to 5 s: callers meanwhile get the cached token without asking the token
    /// endpoint, which is failing or throttling. A token not yet due for replacement (one
    /// another caller got since the refresh lock was released) is returned as it is.
    fn unexpired_token_despite(&self, error: ClientError) -> Result<AccessToken, ClientError> {
        let cached = self.inner.cached.load_full();
        let now = self.now();
        let life_left = cached.as_ref().map_or(0, |cached| cached.life_left_at(now));
        match cached {
            Some(cached) if cached.fresh_at(now) => Ok(cached.token.clone()),
            Some(cached) if life_left >= 1 => {
                let retry_in = (life_left / 4).clamp(1, 5);
                tracing::debug!(
                    %error,
                    expires_at = cached.token.expires_at(),
                    retry_in,
                    "replacing the access token failed; the cached one is used until it expires"
                );
                let token = cached.token.clone();
                // Due again `retry_in` from now, by the clock and by the time held.
                let held = cached
                    .seconds_held()
                    .max(now.saturating_sub(cached.cached_at));
                let waiting = Some(Arc::new(Cached {
                    token: token.clone(),
                    cached_at: cached.cached_at,
                    cached_instant: cached.cached_instant,
                    refresh_after: held.saturating_add(retry_in.min(life_left)),
                }));
                // Unless `clear_cached_token` dropped the token meanwhile (it does not take
                // the refresh lock): a token cleared as revoked must not come back.
                let _ = self.inner.cached.compare_and_swap(&Some(cached), waiting);
                Ok(token)
            }
            _ => Err(error),
        }
    }

    /// Requests a new token now, whatever is cached and whatever backoff a failure started
    /// (the outcome counts for it as any request's does), and returns it with a
    /// [`TokenRequestTrace`] of the steps: discovery, the assertion's header and claims,
    /// the form, the answer. The new token replaces the cached one.
    ///
    /// ```no_run
    /// # async fn run(client: smart_auth::client::BackendServiceClient) -> Result<(), smart_auth::client::ClientError> {
    /// let (trace, token) = client.request_token_verbose().await?;
    /// if let Some(discovered) = &trace.discovered {
    ///     println!("GET {}", discovered.url);
    /// }
    /// println!("assertion header {:?}", trace.assertion_header);
    /// println!("assertion claims {:?}", trace.assertion_claims);
    /// println!("POST {} -> {} {}", trace.token_endpoint, trace.response_status, trace.response_body);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`access_token`](Self::access_token).
    pub async fn request_token_verbose(
        &self,
    ) -> Result<(TokenRequestTrace, AccessToken), ClientError> {
        let state = Arc::clone(&self.inner.refresh).lock_owned().await;
        self.refresh(state).await
    }

    /// The token endpoint: the configured one, or the one discovered (once, on first
    /// need) from the FHIR server's SMART configuration. A relative `token_endpoint` there
    /// (some older servers publish one) is resolved against the FHIR base URL taken as a
    /// directory: `auth/token` under `https://ehr.example/fhir` is
    /// `https://ehr.example/fhir/auth/token`, `/auth/token` is
    /// `https://ehr.example/auth/token`.
    ///
    /// ```no_run
    /// # async fn run(client: smart_auth::client::BackendServiceClient) -> Result<(), smart_auth::client::ClientError> {
    /// println!("tokens come from {}", client.token_endpoint().await?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Discovery`] when the configuration cannot be fetched, is not a JSON
    /// object, or has no `token_endpoint` that is (absolute, or once resolved) an `https`
    /// URL (`http` only for loopback hosts) without user information or fragment.
    pub async fn token_endpoint(&self) -> Result<String, ClientError> {
        Ok(self.endpoint().await?.text.clone())
    }

    /// Adds `Authorization: Bearer <token>` to `request`, getting a token first if none
    /// is fresh.
    ///
    /// Only for a request to the FHIR server's origin (scheme, host and port of the FHIR
    /// base URL) or to one added with
    /// [`also_authorize_origin`](BackendServiceClientBuilder::also_authorize_origin), over
    /// `https` (`http` only for loopback hosts): a bearer token sent elsewhere, or in clear
    /// text, is a token given away (RFC 6750 section 5.3).
    ///
    /// ```no_run
    /// # async fn run(client: smart_auth::client::BackendServiceClient) -> Result<(), Box<dyn std::error::Error>> {
    /// let http = reqwest::Client::new();
    /// let response = client
    ///     .authorize(http.get("https://fhir.example.org/r4/Patient/123"))
    ///     .await?
    ///     .send()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// The request goes through `request`'s own client: for a FHIR server on a loopback
    /// host over plain `http`, that client must not send it to a proxy the environment
    /// names (see [`BackendServiceClientBuilder::http_client`]), or the token crosses the
    /// network in clear.
    ///
    /// # Errors
    ///
    /// [`ClientError::TokenNotForUrl`] for a request that cannot be built or whose URL is
    /// not one the token may be sent to (no token is requested then); else as
    /// [`access_token`](Self::access_token).
    pub async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let (http, request) = request.build_split();
        let mut request = request.map_err(|_| ClientError::TokenNotForUrl)?;
        let url = request.url();
        if !(is_allowed_url(url) && self.inner.token_origins.contains(&url.origin())) {
            return Err(ClientError::TokenNotForUrl);
        }
        let token = self.access_token().await?;
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", token.access_token())).map_err(|_| {
                ClientError::InvalidTokenResponse(
                    "access_token cannot go in an Authorization header",
                )
            })?;
        value.set_sensitive(true);
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
        Ok(reqwest::RequestBuilder::from_parts(http, request))
    }

    /// Forgets the cached token, so the next call requests a new one: for when an API
    /// refused the token before its expiry (revoked, keys rotated).
    ///
    /// ```no_run
    /// # async fn run(client: smart_auth::client::BackendServiceClient) {
    /// client.clear_cached_token();
    /// # }
    /// ```
    pub fn clear_cached_token(&self) {
        self.inner.cached.store(None);
    }

    /// Forgets the cached token if it is still `refused`, the token an API refused: the
    /// answers to many requests that carried one revoked token clear it once, not the new
    /// token another caller got meanwhile (each clear would cost one more token request).
    /// Returns whether it cleared.
    ///
    /// ```no_run
    /// # async fn run(client: smart_auth::client::BackendServiceClient) -> Result<(), smart_auth::client::ClientError> {
    /// let token = client.access_token().await?;
    /// // ... the API answers 401 to a request with `token` ...
    /// client.clear_cached_token_if(&token);
    /// # Ok(()) }
    /// ```
    pub fn clear_cached_token_if(&self, refused: &AccessToken) -> bool {
        // By value, retried if the cache changed meanwhile: a failed refresh stores the same
        // token again in a new entry, which must be cleared too.
        let mut cleared = false;
        self.inner.cached.rcu(|current| {
            cleared = current
                .as_ref()
                .is_some_and(|cached| cached.token.access_token() == refused.access_token());
            if cleared { None } else { current.clone() }
        });
        cleared
    }

    fn now(&self) -> i64 {
        unix_seconds(self.inner.clock.now())
    }

    /// The cached token while it has life enough for a request in flight (half the refresh
    /// margin, 1 to 5 s), due for replacement or not.
    fn still_valid_token(&self) -> Option<AccessToken> {
        let cached = self.inner.cached.load();
        let cached = cached.as_ref()?;
        let margin = i64::try_from(self.inner.refresh_margin.as_secs() / 2)
            .unwrap_or(i64::MAX)
            .clamp(1, 5);
        (cached.life_left_at(self.now()) >= margin).then(|| cached.token.clone())
    }

    fn fresh_token(&self) -> Option<AccessToken> {
        let cached = self.inner.cached.load();
        let cached = cached.as_ref()?;
        cached.fresh_at(self.now()).then(|| cached.token.clone())
    }

    /// One token request, made while holding the refresh lock, as a task of its own: its
    /// outcome is cached and counted (the backoff after a failure) even when the caller
    /// is dropped meanwhile (a request given up on, an outer timeout shorter than the
    /// token request's). Otherwise each such caller would leave the failure unrecorded,
    /// and the next caller in line would ask the failing endpoint again at once.
    async fn refresh(
        &self,
        mut state: OwnedMutexGuard<RefreshState>,
    ) -> Result<(TokenRequestTrace, AccessToken), ClientError> {
        let client = self.clone();
        let task = tokio::spawn(async move {
            let outcome = AssertUnwindSafe(client.refresh_locked(&mut state))
                .catch_unwind()
                .await;
            outcome.unwrap_or_else(|_| {
                // A panic (in a hook it called) left no outcome: counted as a failure while
                // the lock is still held, so that the callers in line back off instead of
                // each asking again at once.
                let error = ClientError::Transport {
                    reason: "the token request ended abnormally".to_owned(),
                };
                state.failed(&error, client.now(), None);
                client.inner.finished.fetch_add(1, Ordering::SeqCst);
                Err(error)
            })
        });
        task.await.unwrap_or_else(|_| {
            Err(ClientError::Transport {
                reason: "the token request task ended abnormally".to_owned(),
            })
        })
    }

    /// [`refresh`](Self::refresh)'s work, with the refresh lock held.
    async fn refresh_locked(
        &self,
        state: &mut RefreshState,
    ) -> Result<(TokenRequestTrace, AccessToken), ClientError> {
        // Cleared first: if this future is dropped midway, waiters must not take an
        // older failure for this request's outcome.
        state.last_error = None;
        self.inner.retry_after.store(0, Ordering::SeqCst);
        let result = self.request_token().await;
        self.inner.finished.fetch_add(1, Ordering::SeqCst);
        match &result {
            Ok((_, token, (started, started_instant))) => {
                // The token's life is counted from the reading its expiry was fixed with,
                // taken before the request on both clocks: a clock set back while the
                // request runs does not stretch it.
                let (started, started_instant) = (*started, *started_instant);
                let lifetime = token.expires_at().saturating_sub(started).max(0);
                let margin = i64::try_from(self.inner.refresh_margin.as_secs()).unwrap_or(i64::MAX);
                let refresh_after = lifetime - margin.min(lifetime / 2);
                self.inner.cached.store(Some(Arc::new(Cached {
                    token: token.clone(),
                    cached_at: started,
                    cached_instant: started_instant,
                    refresh_after,
                })));
                state.succeeded();
            }
            Err(error) => {
                let retry_after = match self.inner.retry_after.load(Ordering::SeqCst) {
                    0 => None,
                    seconds => Some(seconds),
                };
                state.failed(error, self.now(), retry_after);
            }
        }
        result.map(|(trace, token, _)| (trace, token))
    }

    async fn endpoint(&self) -> Result<&Endpoint, ClientError> {
        self.inner
            .endpoint
            .get_or_try_init(|| self.discover())
            .await
    }

    async fn discover(&self) -> Result<Endpoint, ClientError> {
        let failed = |reason: String| ClientError::Discovery { reason };
        let base = self.inner.fhir_base_url.trim_end_matches('/');
        let url = Url::parse(&format!("{base}/.well-known/smart-configuration"))
            .map_err(|_| failed("the FHIR base URL is invalid".to_owned()))?;
        let fetched = self
            .inner
            .fetcher
            .get(&url, "application/json", false)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let document = crate::fetch::strict_object(&fetched.body)
            .map_err(|error| failed(format!("the SMART configuration: {error}")))?;
        let published = document
            .get("token_endpoint")
            .and_then(Value::as_str)
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| failed("the SMART configuration has no token_endpoint".to_owned()))?;
        let published = aud_text(published)
            .ok_or_else(|| failed("token_endpoint holds whitespace, a control character or another character a URI may not hold".to_owned()))?;
        let (text, endpoint) = match Url::parse(published) {
            Ok(url) if has_authority(published) => (published.to_owned(), Some(url)),
            // SMART: endpoint URLs are absolute, but clients resolve relative ones against
            // the FHIR base for legacy servers. The result (also the assertion's `aud`)
            // must pass the same checks as an absolute URL.
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                match resolve_against_base(base, published) {
                    Some(url) => (url.to_string(), Some(url)),
                    None => (published.to_owned(), None),
                }
            }
            // Unreadable, or without `//` before the host (`https:auth.example/token`).
            Ok(_) | Err(_) => (published.to_owned(), None),
        };
        let endpoint = endpoint
            .filter(|endpoint| is_allowed_url_named_by(endpoint, &url))
            .ok_or_else(|| {
                failed(
                    "token_endpoint is not an https URL (http only for loopback, named by a \
                     loopback http FHIR server) without user info or fragment"
                        .to_owned(),
                )
            })?;
        let origin = endpoint.origin();
        let trusted = &self.inner.trusted_token_endpoint_origins;
        if !trusted.is_empty() && !trusted.contains(&origin) {
            return Err(failed(
                "token_endpoint is on an origin not trusted with this client's credentials"
                    .to_owned(),
            ));
        }
        if trusted.is_empty() && Some(&origin) != self.inner.token_origins.first() {
            // A client secret, unlike an assertion bound to one audience for minutes, can
            // be replayed by whoever receives it: it goes to another origin only when that
            // origin was pinned.
            if matches!(
                self.inner.authentication,
                Authentication::ClientSecretBasic(_)
            ) {
                return Err(failed(
                    "the FHIR server names a token endpoint on another origin: a client \
                     secret goes there only when the origin is pinned with \
                     trust_token_endpoint_origin (or the token_endpoint configured)"
                        .to_owned(),
                ));
            }
            tracing::warn!(
                token_endpoint = %endpoint,
                "the FHIR server names a token endpoint on another origin: this client's \
                 credentials go there (pin it with trust_token_endpoint_origin)"
            );
        }
        tracing::debug!(url = %url, token_endpoint = %endpoint, "discovered the token endpoint");
        Ok(Endpoint {
            text,
            url: endpoint,
            discovered: Some(Discovered {
                url: url.to_string(),
                document: Arc::new(Value::Object(document)),
            }),
        })
    }

    /// One token request; with the token, the clock's reading its expiry counts from and
    /// the monotonic time of that reading.
    async fn request_token(
        &self,
    ) -> Result<(TokenRequestTrace, AccessToken, (i64, tokio::time::Instant)), ClientError> {
        let inner = &self.inner;
        let endpoint = self.endpoint().await?;
        let now = self.now();
        let now_instant = tokio::time::Instant::now();
        let mut form = vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("scope".to_owned(), inner.scope.clone()),
        ];
        for resource in &inner.resources {
            form.push(("resource".to_owned(), resource.clone()));
        }
        form.extend(inner.extra_parameters.iter().cloned());
        let mut trace_form = form.clone();
        let mut authorization = None;
        let mut signed = None;
        match &inner.authentication {
            Authentication::PrivateKeyJwt(key) => {
                let audience = inner
                    .assertion_audience
                    .as_deref()
                    .unwrap_or(&endpoint.text);
                let assertion = assertion::sign(key, &inner.client_id, audience, now)?;
                let assertion_type = (
                    "client_assertion_type".to_owned(),
                    assertion::JWT_BEARER.to_owned(),
                );
                form.push(assertion_type.clone());
                trace_form.push(assertion_type);
                trace_form.push((
                    "client_assertion".to_owned(),
                    format!("<signed JWT, {} characters>", assertion.jwt.len()),
                ));
                form.push(("client_assertion".to_owned(), assertion.jwt.clone()));
                signed = Some(assertion);
            }
            Authentication::ClientSecretBasic(Secret(secret)) => {
                authorization = Some(basic_credentials(&inner.client_id, secret)?);
            }
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let response = token::post_form(
            &inner.fetcher.client,
            &endpoint.url,
            body,
            authorization.clone(),
            inner.fetcher.timeout,
        )
        .await?;
        if let Some(seconds) = response.retry_after {
            inner.retry_after.store(seconds.max(1), Ordering::SeqCst);
        }
        let token = token::parse_response(&response, &inner.scope, now).map_err(|failure| {
            inner
                .authentication
                .withheld_from(failure, &response.body, authorization.as_ref())
        })?;
        tracing::debug!(
            token_endpoint = %endpoint.url,
            method = inner.authentication.method(),
            expires_at = token.expires_at(),
            "obtained an access token"
        );
        let (assertion_header, assertion_claims) = match signed {
            Some(assertion) => (Some(assertion.header), Some(assertion.claims)),
            None => (None, None),
        };
        let trace = TokenRequestTrace {
            discovered: endpoint.discovered.clone(),
            token_endpoint: endpoint.text.clone(),
            auth_method: inner.authentication.method(),
            assertion_header,
            assertion_claims,
            form: trace_form,
            response_status: response.status,
            response_body: token::redacted_body(&response.body),
        };
        Ok((trace, token, (now, now_instant)))
    }
}

/// A URL that goes into an assertion's `aud` (a token endpoint, configured or discovered,
/// or a configured assertion audience), without the ASCII whitespace around it, which is no
/// part of it (a value read from a file or the environment keeps its line break); `None`
/// when anything but the characters RFC 3986 allows in a URI remains: a URL parser drops
/// tabs and line breaks, but `aud` would keep them, and a server comparing it exactly
/// would refuse the assertion without saying why; and a lenient parser reads `\` as `/`,
/// so that `https://fhir.example\@auth.example/token` goes to `fhir.example` while an
/// RFC 3986 reader of `aud` finds the host `auth.example`.
fn aud_text(text: &str) -> Option<&str> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    text.bytes()
        .all(crate::fetch::is_uri_character)
        .then_some(text)
}

/// A configured assertion audience, trimmed as [`aud_text`] trims: a URI (any value with a
/// `:`) held to [`aud_text`]'s rule, any other string (RFC 7519's StringOrURI) only
/// without whitespace, control or invisible format characters inside (a byte order mark
/// pasted with it would make a server comparing exactly refuse it, unseen).
fn audience_text(text: &str) -> Option<&str> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if text.contains(':') {
        return aud_text(text);
    }
    (text.is_empty()
        || (crate::verifier::is_clean_name(text) && !text.chars().any(char::is_whitespace)))
    .then_some(text)
}

/// Whether an absolute URL's text has an authority (`scheme://host…`): a lenient parser
/// finds a host in `https:auth.example/token` or `https:/auth.example/token` too, where an
/// RFC 3986 reader of the same text in `aud` finds none.
fn has_authority(text: &str) -> bool {
    text.split_once(':')
        .is_some_and(|(_, rest)| rest.starts_with("//"))
}

/// A relative reference resolved (RFC 3986 section 5) against the FHIR base URL taken as
/// a directory: with the base `https://ehr.example/fhir/r4`, `auth/token` gives
/// `https://ehr.example/fhir/r4/auth/token`, `/auth/token` gives
/// `https://ehr.example/auth/token` and `../token` gives `https://ehr.example/fhir/token`.
fn resolve_against_base(base: &str, reference: &str) -> Option<Url> {
    let directory = Url::parse(&format!("{}/", base.trim_end_matches('/'))).ok()?;
    directory.join(reference).ok()
}

/// `Basic base64(urlencode(client_id) ":" urlencode(secret))`, RFC 6749 section 2.3.1.
fn basic_credentials(client_id: &str, secret: &str) -> Result<HeaderValue, ClientError> {
    let credentials = format!(
        "{}:{}",
        form_encode_credential(client_id),
        form_encode_credential(secret)
    );
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials)))
        .map_err(|_| ClientError::Config("the client credentials cannot form a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded() {
        let decoded = |id: &str, secret: &str| {
            let value = basic_credentials(id, secret).unwrap();
            assert!(value.is_sensitive());
            let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
            String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
        };
        assert_eq!(
            decoded("my app", "p@ss:w/rd+é"),
            "my+app:p%40ss%3Aw%2Frd%2B%C3%A9"
        );
        // What neither form encoding nor RFC 3986 needs encoded is left as it is.
        assert_eq!(decoded("id", "x~y"), "id:x~y");
        assert_eq!(decoded("Az09-._~*", "aZ.9_~-*"), "Az09-._~*:aZ.9_~-*");
        // Everything else is still encoded.
        assert_eq!(decoded("a:b", "1%2 3"), "a%3Ab:1%252+3");
        assert_eq!(
            decoded("id", "!\"#$&'()+,/;<=>?@[\\]^`{|}\t"),
            "id:%21%22%23%24%26%27%28%29%2B%2C%2F%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D%09"
        );
    }

    #[test]
    fn build_checks() {
        let complete = || {
            BackendServiceClient::builder("https://fhir.example.org")
                .client_id("app")
                .client_secret_basic("s")
                .scope("system/*.rs")
        };
        assert!(complete().build().is_ok());
        let problems = [
            complete().client_id("").build(),
            complete().scope("système/Patient.rs").build(),
            complete().scope("system/Patient.rs\"").build(),
            complete().scope("a\\b").build(),
            complete().scope("a\u{a0}b").build(),
            complete().client_secret_basic("").build(),
            complete().assertion_audience("").build(),
            BackendServiceClient::builder("https://fhir.example.org")
                .client_id("app")
                .scope("a")
                .build(),
            BackendServiceClient::builder("https://fhir.example.org")
                .client_id("app")
                .client_secret_basic("s")
                .scope("  ")
                .build(),
            complete()
                .token_endpoint("http://auth.example.org/token")
                .build(),
            complete().token_endpoint("not a url").build(),
            complete().timeout(Duration::ZERO).build(),
            complete().timeout(Duration::from_secs(301)).build(),
            complete()
                .token_endpoint("https://u:p@auth.example.org/token")
                .build(),
            complete()
                .token_endpoint("https://auth.example.org/token#x")
                .build(),
            BackendServiceClient::builder("ftp://fhir.example.org")
                .client_id("app")
                .client_secret_basic("s")
                .scope("a")
                .build(),
        ];
        for problem in problems {
            assert!(
                matches!(problem, Err(ClientError::Config(_))),
                "{problem:?}"
            );
        }
        // A FHIR base with a query, fragment or credentials would bend the discovery URL
        // or send the credentials along; an origin to authorize likewise.
        for base in [
            "https://fhir.example.org/r4#x",
            "https://fhir.example.org/r4?a=1",
            "https://u:p@fhir.example.org/r4",
            "https://u@fhir.example.org/r4",
        ] {
            let built = BackendServiceClient::builder(base)
                .client_id("app")
                .client_secret_basic("s")
                .scope("a")
                .build();
            assert!(matches!(built, Err(ClientError::Config(_))), "{base}");
            let built = complete().also_authorize_origin(base).build();
            assert!(matches!(built, Err(ClientError::Config(_))), "{base}");
        }
        // A token endpoint may carry a query.
        assert!(
            complete()
                .token_endpoint("https://auth.example.org/token?p=policy")
                .build()
                .is_ok()
        );
        // With a token endpoint, the base URL is not used.
        assert!(
            complete()
                .token_endpoint("http://127.0.0.1:9/token")
                .build()
                .is_ok()
        );
    }

    #[test]
    fn relative_references_resolve_against_the_base_as_a_directory() {
        let rows = [
            (
                "https://ehr.example/fhir/r4",
                "auth/token",
                "https://ehr.example/fhir/r4/auth/token",
            ),
            (
                "https://ehr.example/fhir/r4/",
                "auth/token",
                "https://ehr.example/fhir/r4/auth/token",
            ),
            (
                "https://ehr.example/fhir/r4",
                "/auth/token",
                "https://ehr.example/auth/token",
            ),
            (
                "https://ehr.example/fhir/r4",
                "../token",
                "https://ehr.example/fhir/token",
            ),
            (
                "https://ehr.example/fhir/r4",
                "./token?p=1",
                "https://ehr.example/fhir/r4/token?p=1",
            ),
            ("https://ehr.example", "token", "https://ehr.example/token"),
            (
                "https://ehr.example/fhir",
                "//as.example/token",
                "https://as.example/token",
            ),
        ];
        for (base, reference, expected) in rows {
            assert_eq!(
                resolve_against_base(base, reference)
                    .map(String::from)
                    .as_deref(),
                Some(expected),
                "{base} {reference}"
            );
        }
    }

    #[test]
    fn scopes_are_split_and_deduplicated() {
        let client = BackendServiceClient::builder("https://fhir.example.org")
            .client_id("app")
            .client_secret_basic("s")
            .scope("a b")
            .scopes(["b", "c"])
            .build()
            .unwrap();
        assert_eq!(client.inner.scope, "a b c");
    }
}
