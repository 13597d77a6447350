//! A development SMART authorization server (feature `dev-server`).
//!
//! **For development and tests only**: it keeps everything in memory, registers any
//! client that asks, and serves plain `http` on loopback. It lets the whole SMART Backend
//! Services flow run on one machine: discovery, registration, the token endpoint
//! (`client_credentials` with `private_key_jwt` or `client_secret_basic`), token
//! introspection (RFC 7662) and revocation (RFC 7009).
//!
//! | endpoint | what it does |
//! |---|---|
//! | `GET /.well-known/smart-configuration`, `GET /.well-known/openid-configuration`, `GET /.well-known/oauth-authorization-server` | discovery: SMART, and RFC 8414 metadata made from the same source (the same document at both RFC 8414 paths) |
//! | `GET /jwks.json` | the server's public signing key |
//! | `POST /register` | RFC 7591 subset: `jwks`, `jwks_uri` or a generated secret, `scope` |
//! | `POST /token` | `grant_type=client_credentials` |
//! | `POST /introspect` | RFC 7662, for clients authenticated by Basic credentials, a client assertion, or a Bearer token of this server |
//! | `POST /revoke` | RFC 7009, for clients authenticated by Basic credentials or a client assertion |
//!
//! Client assertions at the introspection and revocation endpoints also name the token
//! endpoint (or the issuer) as their `aud` (RFC 7523 section 3 allows it, and one rule is
//! simpler).
//!
//! What it refuses, with the RFC 6749 section 5.2 error codes:
//!
//! - Requests whose `Host` is not the bound address (or `localhost`) with its port (which
//!   may be left out on port 80 or 443): 421, so a web page using DNS rebinding cannot
//!   reach the endpoints. (The server speaks HTTP/1.1 only.)
//! - Token requests: the client is authenticated before its scope is judged (RFC 6749
//!   section 4.4.2); no client authentication (401 `invalid_client` with a Basic
//!   challenge), two methods at once (`invalid_request`), malformed Basic credentials (401),
//!   `client_secret_post` or other assertion types (400 `invalid_client`: the Inferno kits
//!   require 400 there), and a form `client_id` other than
//!   the authenticated client (`invalid_client`). Form bodies are decoded strictly: bad
//!   escapes and repeated parameters are `invalid_request`; a scope string that is not
//!   space-separated scope tokens, or is longer than 8 KiB or 256 tokens, is
//!   `invalid_scope` (at registration too); bodies over 64 KiB get 413.
//! - Client assertions (RFC 7523 section 3, SMART): header `kid` and `typ` (`JWT`, or
//!   RFC 7523bis's `client-authentication+jwt`) required, no `crit`/`cty`; `iss` = `sub` =
//!   the client; `aud` this server only: the token endpoint URL (SMART) or the issuer
//!   (RFC 7523bis, RFC 9126) under a host name the server answers to,
//!   `http://127.0.0.1:PORT/token`, `http://localhost:PORT/token`, `http://127.0.0.1:PORT`
//!   or `http://localhost:PORT` (a string, or an array of such strings only, compared as
//!   exact strings); `exp` at most five minutes ahead; `nbf` and `iat` not in the future;
//!   times may have fractions (RFC 7519 section 2: `exp` is rounded down, `nbf` and `iat`
//!   up), and a second is allowed beyond the future-side limits for clients that round
//!   their clock up (`Math.round`); a fresh `jti`; unique JSON member names. All within the
//!   [clock leeway](DevAuthServerBuilder::clock_leeway). Failures are 400
//!   `invalid_client` (RFC 7521 section 4.2.1), but 401 with a `Basic` challenge at the
//!   introspection endpoint (RFC 7662 section 2.3).
//! - Basic credentials: the client id and the secret are each accepted form-decoded
//!   (RFC 6749 section 2.3.1) or as sent (RFC 7617 clients, `curl -u`).
//! - Registration (RFC 7591): `Content-Type: application/json` (else 415), key sets of
//!   public asymmetric keys only (`invalid_client_metadata` for `d`, `p`, `q`, `dp`, `dq`,
//!   `qi`, `oth`, `k` or `kty: oct`), each key with a non-empty `kid` unique within the
//!   set (SMART), in code too ([`KeySetError`]); a key set fetched from a `jwks_uri` must
//!   follow the same rules. Without a
//!   [ceiling](DevAuthServerBuilder::registration_scope_ceiling) a registration holds the
//!   scopes it asks for; with one, only those the ceiling covers.
//! - Client assertions answer one `invalid_client` description whether their client id is
//!   unknown, names a client with a secret, or names no registered key (`kid`, `alg`,
//!   `jku`): before the signature is checked, nothing tells which ids exist.
//! - Introspection and revocation: a client revokes only its own tokens (RFC 7009 section
//!   2.1: another client's token is refused with `unauthorized_client` and stays valid);
//!   a client introspects only its own tokens (others read `{"active": false}`), whether
//!   it authenticates or presents one of its access tokens, unless it was registered in
//!   code as a resource server with
//!   [`ClientRegistration::allow_introspecting_any_token`].
//! - State is bounded: issued tokens, HTTP-registered clients, seen assertion ids and
//!   fetched key sets expire and are capped (see the builder); a full store answers 503
//!   `temporarily_unavailable` with `Retry-After`. One client holds at most its share of
//!   the tokens ([`max_tokens_per_client`](DevAuthServerBuilder::max_tokens_per_client))
//!   and of the seen assertion ids
//!   ([`max_seen_assertions_per_client`](DevAuthServerBuilder::max_seen_assertions_per_client)),
//!   so that it cannot fill a store for the others; the clients registered over HTTP share
//!   one such share, of at most half the store (at least one entry), so that registering
//!   many cannot fill one for the clients registered in code.
//! - Time and connections are bounded: at most 256 connections are served at once, a
//!   client has 10 s to send a request's headers (or to start the next one on a kept-alive
//!   connection), and a request not answered within 30 s (a body sent a byte at a time)
//!   gets 408 and its connection closed.
//!
//! Access tokens are RFC 9068 JWTs (`typ: at+jwt`, RS256, `iss`, `sub` = `client_id`,
//! `client_id`, `aud` = the configured FHIR base URL, `iat`, `exp`, `jti`, `scope`) that
//! [`SmartAuthLayer`](crate::SmartAuthLayer) accepts, or opaque strings with
//! [`DevAuthServerBuilder::opaque_tokens`] (for introspection).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
//!
//! let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir").start().await?;
//! server.register(ClientRegistration::client_secret_basic("reporting", "s3cret", ["system/*.rs"]));
//! println!("token endpoint: {}", server.token_endpoint());
//! # Ok(()) }
//! ```

mod assertion;
mod clients;
mod deadline;
mod expiring;
mod grant;
mod jwks_cache;
mod oauth;
mod request;
#[cfg(feature = "fuzzing")]
pub(crate) use request::{is_scope_string, parse_form, presented_authentication};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

pub use crate::serve::serve_with_limits;
pub use clients::{ClientRegistration, KeySetError};
use clients::{Credential, check_client_key_set};
use expiring::ExpiringMap;
use jwks_cache::JwksCache;
use oauth::OAuthError;
use request::{Presented, Spellings};

use crate::algorithm::SigningAlgorithm;
use crate::clock::{Clock, SystemClock, unix_seconds};
use crate::discovery::{Capability, SmartConfiguration};
use crate::fetch::{Fetcher, default_client};
use crate::jwks::KeySet;
use crate::signing::{KeyType, SigningKey};

/// How clients authenticate at the token, introspection and revocation endpoints.
const CLIENT_AUTH_METHODS: [&str; 2] = ["private_key_jwt", "client_secret_basic"];

/// The largest request body any endpoint reads (413 beyond).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest accepted registered `jwks_uri`.
const MAX_JWKS_URI_LEN: usize = 2048;

/// The longest [`DevAuthServerBuilder::token_lifetime`]: 24 hours.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use smart_auth::dev_server::{DevAuthServer, MAX_TOKEN_LIFETIME};
///
/// let longest = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
///     .token_lifetime(MAX_TOKEN_LIFETIME)
///     .start()
///     .await;
/// assert!(longest.is_ok());
/// let longer = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
///     .token_lifetime(MAX_TOKEN_LIFETIME + Duration::from_secs(1))
///     .start()
///     .await;
/// assert_eq!(longer.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
/// # Ok(()) }
/// ```
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The largest [`DevAuthServerBuilder::clock_leeway`]: 10 minutes (the bound
/// [`VerifierBuilder::leeway`](crate::VerifierBuilder::leeway) has too).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use smart_auth::dev_server::{DevAuthServer, MAX_CLOCK_LEEWAY};
///
/// let tolerant = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
///     .clock_leeway(MAX_CLOCK_LEEWAY)
///     .start()
///     .await;
/// assert!(tolerant.is_ok());
/// let too_tolerant = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
///     .clock_leeway(MAX_CLOCK_LEEWAY + Duration::from_secs(1))
///     .start()
///     .await;
/// assert_eq!(too_tolerant.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
/// # Ok(()) }
/// ```
pub const MAX_CLOCK_LEEWAY: Duration = Duration::from_secs(600);

/// Settings of a [`DevAuthServer`]; see [`DevAuthServer::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use smart_auth::dev_server::DevAuthServer;
///
/// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
///     .token_lifetime(Duration::from_secs(60))
///     .opaque_tokens()
///     .start()
///     .await?;
/// assert!(server.url().starts_with("http://127.0.0.1:"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct DevAuthServerBuilder {
    audience: String,
    address: SocketAddr,
    clock: Arc<dyn Clock>,
    token_lifetime: Duration,
    clock_leeway: Duration,
    opaque_tokens: bool,
    http_client: Option<reqwest::Client>,
    registration_scopes: Option<Vec<String>>,
    limits: Limits,
}

/// Capacities and lifetimes of the server's state.
#[derive(Debug, Clone, Copy)]
struct Limits {
    leeway_secs: i64,
    max_tokens: usize,
    max_tokens_per_client: usize,
    max_clients: usize,
    client_lifetime_secs: i64,
    max_seen_assertions: usize,
    max_seen_assertions_per_client: usize,
    jwks_cache_ttl_secs: i64,
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl DevAuthServerBuilder {
    /// The loopback address to bind (default `127.0.0.1:0`, an ephemeral port).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::net::SocketAddr;
    /// use smart_auth::dev_server::DevAuthServer;
    ///
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
    ///     .start()
    ///     .await?;
    /// # let _ = server;
    ///
    /// // Development only: an address other machines can reach is refused.
    /// let refused = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .bind(SocketAddr::from(([0, 0, 0, 0], 0)))
    ///     .start()
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok(()) }
    /// ```
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.address = address;
        self
    }

    /// The clock for `iat`, `exp`, assertion checks and the expiry of stored state
    /// (default the system clock).
    ///
    /// ```
    /// # #[cfg(feature = "client")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::client::BackendServiceClient;
    /// use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
    /// use smart_auth::ManualClock;
    ///
    /// const FHIR: &str = "http://127.0.0.1:8080/fhir";
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let server = DevAuthServer::builder(FHIR).clock(clock.clone()).start().await?;
    /// server.register(ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]));
    /// let client = BackendServiceClient::builder(FHIR)
    ///     .token_endpoint(server.token_endpoint())
    ///     .client_id("app")
    ///     .client_secret_basic("s3cret")
    ///     .scope("system/Patient.rs")
    ///     .clock(clock)
    ///     .build()?;
    /// let token = client.access_token().await?;
    /// assert_eq!(token.expires_at(), 1_700_000_000 + 300); // issued on the server's clock
    /// # Ok(()) }
    /// # #[cfg(not(feature = "client"))]
    /// # fn main() {}
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long access tokens live (default 300 s, the SMART Backend Services advice), in
    /// whole seconds (a fraction is dropped). It must be at least 1 s and at most
    /// [`MAX_TOKEN_LIFETIME`] (24 hours); [`start`](Self::start) refuses any other value.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .token_lifetime(Duration::from_secs(3600));
    /// ```
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Issues opaque random access tokens, which only introspection can resolve, instead
    /// of JWTs.
    ///
    /// ```
    /// # #[cfg(feature = "client")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::client::BackendServiceClient;
    /// use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
    /// use smart_auth::{Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// const FHIR: &str = "http://127.0.0.1:8080/fhir";
    /// let server = DevAuthServer::builder(FHIR).opaque_tokens().start().await?;
    /// server.register(ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]));
    /// server.register(
    ///     ClientRegistration::client_secret_basic("fhir-api", "api-secret", Vec::<String>::new())
    ///         .allow_introspecting_any_token(),
    /// );
    /// let client = BackendServiceClient::builder(FHIR)
    ///     .token_endpoint(server.token_endpoint())
    ///     .client_id("app")
    ///     .client_secret_basic("s3cret")
    ///     .scope("system/Patient.rs")
    ///     .build()?;
    /// let token = client.access_token().await?;
    /// assert_ne!(token.access_token().split('.').count(), 3); // no JWT
    ///
    /// // Only introspection tells what it grants.
    /// let verifier = TokenVerifier::builder(server.url())
    ///     .audience(FHIR)
    ///     .introspection(
    ///         Introspection::new(IntrospectionAuth::basic("fhir-api", "api-secret"))
    ///             .endpoint(server.introspection_endpoint()),
    ///     )
    ///     .build()?;
    /// let claims = verifier.verify(token.access_token()).await?;
    /// assert_eq!(claims.client_id(), Some("app"));
    /// # Ok(()) }
    /// # #[cfg(not(feature = "client"))]
    /// # fn main() {}
    /// ```
    pub fn opaque_tokens(mut self) -> Self {
        self.opaque_tokens = true;
        self
    }

    /// The HTTP client for fetching clients' `jwks_uri` (default: no redirects, 5 s). Keep
    /// loopback hosts away from the environment's proxies, as
    /// [`VerifierBuilder::http_client`](crate::VerifierBuilder::http_client) explains.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use smart_auth::dev_server::DevAuthServer;
    ///
    /// // For clients registered with a `jwks_uri`: the fetches go through this client.
    /// let http = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .timeout(Duration::from_secs(2))
    ///     .build()?;
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir").http_client(http).start().await?;
    /// # let _ = server;
    /// # Ok(()) }
    /// ```
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Clock difference tolerated in client assertions' `exp`, `nbf` and `iat`
    /// (default none: client and server usually share a machine in development), in whole
    /// seconds. At most [`MAX_CLOCK_LEEWAY`] (10 minutes); [`start`](Self::start) refuses
    /// more.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .clock_leeway(Duration::from_secs(30));
    /// ```
    pub fn clock_leeway(mut self, leeway: Duration) -> Self {
        self.clock_leeway = leeway;
        self
    }

    /// The most unexpired access tokens kept for introspection and revocation (default
    /// 100 000). Beyond it the token endpoint answers 503 until tokens expire.
    ///
    /// ```
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .max_tokens(10_000);
    /// ```
    pub fn max_tokens(mut self, max: usize) -> Self {
        self.limits.max_tokens = max;
        self
    }

    /// The most unexpired access tokens one client holds at once (default 10 000, at least
    /// 1, never more than [`max_tokens`](Self::max_tokens)): beyond it that client's token
    /// requests answer 503 until its tokens expire or are revoked, while other clients are
    /// served, so that one client cannot fill the store for all. The clients registered
    /// over HTTP hold one such share between them, and never more than half the store (at
    /// least one entry).
    ///
    /// ```
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .max_tokens_per_client(100);
    /// ```
    pub fn max_tokens_per_client(mut self, max: usize) -> Self {
        self.limits.max_tokens_per_client = max;
        self
    }

    /// The most clients registered over HTTP at once (default 1 000; clients registered
    /// in code with [`DevAuthServer::register`] do not count). Beyond it registration
    /// answers 503 until registrations expire.
    ///
    /// ```
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .max_clients(50);
    /// ```
    pub fn max_clients(mut self, max: usize) -> Self {
        self.limits.max_clients = max;
        self
    }

    /// How long a client registered over HTTP stays registered (default 24 hours). Its
    /// `client_secret_expires_at` says so.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .client_lifetime(Duration::from_secs(3600));
    /// ```
    pub fn client_lifetime(mut self, lifetime: Duration) -> Self {
        self.limits.client_lifetime_secs = seconds(lifetime).max(1);
        self
    }

    /// The most assertion ids (`jti`) remembered for replay detection (default 100 000).
    /// Each is kept until its assertion expires; beyond the cap new assertions are
    /// answered 503, never accepted unchecked.
    ///
    /// ```
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .max_seen_assertions(10_000);
    /// ```
    pub fn max_seen_assertions(mut self, max: usize) -> Self {
        self.limits.max_seen_assertions = max;
        self
    }

    /// The most assertion ids one client has remembered at once (default 10 000, at least
    /// 1, never more than [`max_seen_assertions`](Self::max_seen_assertions)): beyond it that
    /// client's assertions answer 503 until its earlier ones expire, while other clients
    /// are served, so that one client cannot fill the replay store for all. The clients
    /// registered over HTTP hold one such share between them, and never more than half
    /// the store (at least one entry).
    ///
    /// ```
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .max_seen_assertions_per_client(1_000);
    /// ```
    pub fn max_seen_assertions_per_client(mut self, max: usize) -> Self {
        self.limits.max_seen_assertions_per_client = max;
        self
    }

    /// The scopes a client registered over HTTP (`POST /register`) may hold at most: each
    /// requested scope that one of these covers is registered (as a token request's
    /// scopes are granted: same context, the type or `*`, the permissions, no other
    /// query), the others are dropped, and a registration left with none is refused with
    /// `invalid_client_metadata`. Without it, registration grants whatever a caller asks
    /// for, which suits a private test setup only: anyone who reaches the server can then
    /// give itself every scope.
    ///
    /// ```
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .registration_scope_ceiling(["system/Patient.rs", "system/Observation.rs"]);
    /// ```
    pub fn registration_scope_ceiling<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.registration_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// How long, at most, a key set fetched from a client's `jwks_uri` is used before it
    /// is fetched again (default 300 s, at least 1 s). A shorter `Cache-Control: max-age`
    /// from the client's key server wins; `max-age=0`, `no-cache` and `no-store` mean the
    /// next assertion fetches the key set again. An assertion whose `kid` the cached set
    /// lacks (the client rotated its keys) fetches it again too, at most once per 10 s
    /// per URL.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = smart_auth::dev_server::DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .jwks_cache_ttl(Duration::from_secs(60));
    /// ```
    pub fn jwks_cache_ttl(mut self, ttl: Duration) -> Self {
        self.limits.jwks_cache_ttl_secs = seconds(ttl).max(1);
        self
    }

    /// Binds and starts serving.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput) when the address is not a
    /// loopback address (this server is for development only), when the
    /// [token lifetime](Self::token_lifetime) is under 1 s or over [`MAX_TOKEN_LIFETIME`],
    /// or when the [clock leeway](Self::clock_leeway) is over [`MAX_CLOCK_LEEWAY`]; any
    /// error binding the address.
    ///
    /// ```no_run
    /// # async fn run() {
    /// use std::time::Duration;
    /// use smart_auth::dev_server::DevAuthServer;
    /// let refused = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .token_lifetime(Duration::from_secs(7 * 24 * 3600))
    ///     .start()
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    /// # }
    /// ```
    pub async fn start(self) -> std::io::Result<DevAuthServer> {
        let invalid = |reason: &'static str| {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                reason,
            ))
        };
        if !self.address.ip().is_loopback() {
            return invalid("the development server binds loopback addresses only");
        }
        let token_lifetime_secs = self.token_lifetime.as_secs();
        if token_lifetime_secs == 0 || token_lifetime_secs > MAX_TOKEN_LIFETIME.as_secs() {
            return invalid("token_lifetime must be at least 1 s and at most 24 hours");
        }
        if self.clock_leeway > MAX_CLOCK_LEEWAY {
            return invalid("clock_leeway must be at most 10 minutes");
        }
        let mut limits = self.limits;
        limits.leeway_secs = seconds(self.clock_leeway);
        let listener = tokio::net::TcpListener::bind(self.address).await?;
        let bound = listener.local_addr()?;
        let url = format!("http://{bound}");
        let own_hosts = own_hosts(bound);
        let timeout = Duration::from_secs(5);
        let mut tag = [0u8; 4];
        aws_lc_rs::rand::fill(&mut tag)
            .map_err(|_| std::io::Error::other("no system randomness"))?;
        let key = SigningKey::try_generate(
            KeyType::Rsa,
            format!("dev-{}", URL_SAFE_NO_PAD.encode(tag)),
            Some(SigningAlgorithm::RS256),
        )
        .map_err(|_| std::io::Error::other("key generation failed"))?;
        let state = Arc::new(ServerState {
            token_endpoint: format!("{url}/token"),
            url: url.clone(),
            audience: self.audience,
            clock: self.clock,
            token_lifetime_secs: seconds(self.token_lifetime),
            opaque_tokens: self.opaque_tokens,
            key,
            fetcher: Fetcher {
                client: match self.http_client {
                    Some(client) => client,
                    None => default_client(timeout).map_err(std::io::Error::other)?,
                },
                timeout,
                max_body: 256 * 1024,
            },
            limits,
            own_audiences: [&own_hosts[0], &own_hosts[1]]
                .into_iter()
                .flat_map(|host| [format!("http://{host}/token"), format!("http://{host}")])
                .collect(),
            own_hosts,
            static_clients: Mutex::new(HashMap::new()),
            dynamic_clients: Mutex::new(ExpiringMap::new(limits.max_clients)),
            tokens: Mutex::new(
                ExpiringMap::with_owner_quota(
                    limits.max_tokens,
                    limits
                        .max_tokens_per_client
                        .clamp(1, limits.max_tokens.max(1)),
                    |record: &TokenRecord| &record.quota_owner,
                )
                .with_shared_owner(clients::HTTP_REGISTERED_CLIENTS),
            ),
            seen_assertions: Mutex::new(
                ExpiringMap::with_owner_quota(
                    limits.max_seen_assertions,
                    limits
                        .max_seen_assertions_per_client
                        .clamp(1, limits.max_seen_assertions.max(1)),
                    |owner: &String| owner.as_str(),
                )
                .with_shared_owner(clients::HTTP_REGISTERED_CLIENTS),
            ),
            registration_scopes: self.registration_scopes,
            // Every live client has at most one URL; room for twice the HTTP-registered
            // ones leaves plenty for the clients registered in code.
            jwks_cache: JwksCache::new(
                limits.max_clients.saturating_mul(2).max(64),
                limits.jwks_cache_ttl_secs,
            ),
            token_requests: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/smart-configuration", get(smart_configuration))
            .route(
                "/.well-known/openid-configuration",
                get(openid_configuration),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                get(openid_configuration),
            )
            .route("/jwks.json", get(jwks))
            .route("/register", post(register))
            .route("/token", post(token))
            .route("/introspect", post(introspect))
            .route("/revoke", post(revoke))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(axum::middleware::from_fn(deadline::limit_request_time))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                require_own_host,
            ))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(crate::serve::serve_with_limits(listener, router));
        Ok(DevAuthServer { state, server })
    }
}

/// A running development authorization server. It stops when dropped. See the
/// [module docs](self).
///
/// ```
/// # #[cfg(feature = "client")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use smart_auth::TokenVerifier;
/// use smart_auth::client::BackendServiceClient;
/// use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
///
/// const FHIR: &str = "http://127.0.0.1:8080/fhir";
/// let server = DevAuthServer::builder(FHIR).start().await?;
/// server.register(ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]));
///
/// // A backend service gets a token ...
/// let client = BackendServiceClient::builder(FHIR)
///     .token_endpoint(server.token_endpoint())
///     .client_id("app")
///     .client_secret_basic("s3cret")
///     .scope("system/Patient.rs")
///     .build()?;
/// let token = client.access_token().await?;
///
/// // ... and the FHIR API accepts it.
/// let verifier = TokenVerifier::builder(server.url()).audience(FHIR).build()?;
/// let claims = verifier.verify(token.access_token()).await?;
/// assert_eq!(claims.client_id(), Some("app"));
/// assert_eq!(claims.scopes(), ["system/Patient.rs"]);
/// # Ok(()) }
/// # #[cfg(not(feature = "client"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct DevAuthServer {
    state: Arc<ServerState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for DevAuthServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The SHA-256 of an access token: tokens are stored and looked up by digest, so the
/// server's memory holds no usable token.
type TokenDigest = [u8; 32];

fn digest(token: &str) -> TokenDigest {
    crate::digest::sha256(token.as_bytes())
}

struct ServerState {
    url: String,
    token_endpoint: String,
    audience: String,
    clock: Arc<dyn Clock>,
    /// Between 1 and 86 400 (checked by `start`).
    token_lifetime_secs: i64,
    opaque_tokens: bool,
    key: SigningKey,
    fetcher: Fetcher,
    limits: Limits,
    /// The `Host` values this server answers to (see [`own_hosts`]): its bound address
    /// and `localhost` with its port, then on port 80 or 443 both without it.
    own_hosts: Vec<String>,
    /// The token endpoint's URL and the issuer under the first two `own_hosts`, with the
    /// port (the first is `token_endpoint`): the `aud` values a client assertion may carry.
    own_audiences: Vec<String>,
    /// Clients registered in code: the operator's, kept until replaced.
    static_clients: Mutex<HashMap<String, ClientRegistration>>,
    /// Clients registered over HTTP: expiring and capped.
    dynamic_clients: Mutex<ExpiringMap<String, ClientRegistration>>,
    /// Issued access tokens by digest, until they expire or are revoked.
    tokens: Mutex<ExpiringMap<TokenDigest, TokenRecord>>,
    /// `(client_id, jti)` of accepted assertions (the client id again as the value, for
    /// the per-client quota), until the assertion could no longer be accepted anyway.
    seen_assertions: Mutex<ExpiringMap<(String, String), String>>,
    /// The most scopes a client registered over HTTP may hold (`None`: whatever it asks).
    registration_scopes: Option<Vec<String>>,
    jwks_cache: JwksCache,
    token_requests: AtomicUsize,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAuthServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct TokenRecord {
    client_id: String,
    /// Whose share of the store it counts toward ([`ClientRegistration::quota_owner`]).
    quota_owner: Box<str>,
    scope: String,
    issued_at: i64,
    expires_at: i64,
    jti: String,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DevAuthServer {
    /// Settings for a server whose tokens are for the FHIR API at `audience` (its base URL).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::dev_server::DevAuthServer;
    ///
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir").start().await?;
    /// assert_eq!(server.token_requests(), 0);
    /// # Ok(()) }
    /// ```
    pub fn builder(audience: impl Into<String>) -> DevAuthServerBuilder {
        DevAuthServerBuilder {
            audience: audience.into(),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock: Arc::new(SystemClock),
            token_lifetime: Duration::from_secs(300),
            clock_leeway: Duration::ZERO,
            opaque_tokens: false,
            http_client: None,
            registration_scopes: None,
            limits: Limits {
                // Set from `clock_leeway` by `start`.
                leeway_secs: 0,
                max_tokens: 100_000,
                max_tokens_per_client: 10_000,
                max_clients: 1_000,
                client_lifetime_secs: 24 * 3600,
                max_seen_assertions: 100_000,
                max_seen_assertions_per_client: 10_000,
                jwks_cache_ttl_secs: 300,
            },
        }
    }

    /// The issuer URL (`http://127.0.0.1:<port>`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::dev_server::DevAuthServer;
    ///
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir").start().await?;
    /// assert!(server.url().starts_with("http://127.0.0.1:"));
    /// assert_eq!(server.configuration().token_endpoint(), server.token_endpoint());
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// The token endpoint URL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::dev_server::DevAuthServer;
    ///
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir").start().await?;
    /// assert_eq!(server.token_endpoint(), format!("{}/token", server.url()));
    /// # Ok(()) }
    /// ```
    pub fn token_endpoint(&self) -> &str {
        &self.state.token_endpoint
    }

    /// The introspection endpoint URL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::dev_server::DevAuthServer;
    /// use smart_auth::{Introspection, IntrospectionAuth};
    ///
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir").start().await?;
    /// assert_eq!(server.introspection_endpoint(), format!("{}/introspect", server.url()));
    /// // Where a resource server sends its introspection requests:
    /// let introspection = Introspection::new(IntrospectionAuth::basic("fhir-api", "s3cret"))
    ///     .endpoint(server.introspection_endpoint());
    /// # let _ = introspection;
    /// # Ok(()) }
    /// ```
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.state.url)
    }

    /// The discovery document this server publishes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::SmartAuthLayer;
    /// use smart_auth::dev_server::DevAuthServer;
    ///
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir").start().await?;
    /// let configuration = server.configuration();
    /// assert_eq!(configuration.grant_types_supported(), ["client_credentials"]);
    ///
    /// // The FHIR API can publish it as its own discovery document.
    /// let auth = SmartAuthLayer::builder(server.url()).fhir_base("http://127.0.0.1:8080/fhir").build()?;
    /// let discovery = auth.discovery(configuration);
    /// assert_eq!(discovery.paths(), ["/fhir/.well-known/smart-configuration"]);
    /// # Ok(()) }
    /// ```
    pub fn configuration(&self) -> SmartConfiguration {
        self.state.configuration()
    }

    /// Registers (or replaces) a client. Clients registered here never expire and do not
    /// count towards [`max_clients`](DevAuthServerBuilder::max_clients).
    ///
    /// ```
    /// # #[cfg(feature = "client")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::client::BackendServiceClient;
    /// use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
    ///
    /// const FHIR: &str = "http://127.0.0.1:8080/fhir";
    /// let server = DevAuthServer::builder(FHIR).start().await?;
    /// let client = || {
    ///     BackendServiceClient::builder(FHIR)
    ///         .token_endpoint(server.token_endpoint())
    ///         .client_id("app")
    ///         .client_secret_basic("s3cret")
    ///         .scope("system/Patient.rs")
    ///         .build()
    /// };
    /// assert!(client()?.access_token().await.is_err()); // no such client yet
    ///
    /// server.register(ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]));
    /// assert!(client()?.access_token().await.is_ok());
    /// # Ok(()) }
    /// # #[cfg(not(feature = "client"))]
    /// # fn main() {}
    /// ```
    pub fn register(&self, registration: ClientRegistration) {
        lock(&self.state.static_clients).insert(registration.client_id.clone(), registration);
    }

    /// Revokes an access token; introspection reports it inactive from now on. Returns
    /// whether the token was known and active.
    ///
    /// ```
    /// # #[cfg(feature = "client")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::client::BackendServiceClient;
    /// use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
    /// use smart_auth::{ErrorKind, Introspection, IntrospectionAuth, TokenVerifier};
    ///
    /// const FHIR: &str = "http://127.0.0.1:8080/fhir";
    /// let server = DevAuthServer::builder(FHIR).opaque_tokens().start().await?;
    /// server.register(ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]));
    /// server.register(
    ///     ClientRegistration::client_secret_basic("fhir-api", "api-secret", Vec::<String>::new())
    ///         .allow_introspecting_any_token(),
    /// );
    /// let client = BackendServiceClient::builder(FHIR)
    ///     .token_endpoint(server.token_endpoint())
    ///     .client_id("app")
    ///     .client_secret_basic("s3cret")
    ///     .scope("system/Patient.rs")
    ///     .build()?;
    /// let token = client.access_token().await?;
    /// let verifier = TokenVerifier::builder(server.url())
    ///     .audience(FHIR)
    ///     .introspection(
    ///         Introspection::new(IntrospectionAuth::basic("fhir-api", "api-secret"))
    ///             .endpoint(server.introspection_endpoint())
    ///             .cache_ttl(std::time::Duration::ZERO), // ask on every request
    ///     )
    ///     .build()?;
    /// assert!(verifier.verify(token.access_token()).await.is_ok());
    ///
    /// assert!(server.revoke(token.access_token()));
    /// let error = verifier.verify(token.access_token()).await.unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::InactiveToken);
    /// assert!(!server.revoke(token.access_token())); // not active any more
    /// # Ok(()) }
    /// # #[cfg(not(feature = "client"))]
    /// # fn main() {}
    /// ```
    pub fn revoke(&self, access_token: &str) -> bool {
        let now = self.state.now();
        let mut tokens = lock(&self.state.tokens);
        let key = digest(access_token);
        tokens.get(&key, now).is_some() && tokens.remove(&key).is_some()
    }

    /// How many token requests (successful or not) the server answered.
    ///
    /// ```
    /// # #[cfg(feature = "client")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::client::BackendServiceClient;
    /// use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
    ///
    /// const FHIR: &str = "http://127.0.0.1:8080/fhir";
    /// let server = DevAuthServer::builder(FHIR).start().await?;
    /// server.register(ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]));
    /// let client = BackendServiceClient::builder(FHIR)
    ///     .token_endpoint(server.token_endpoint())
    ///     .client_id("app")
    ///     .client_secret_basic("s3cret")
    ///     .scope("system/Patient.rs")
    ///     .build()?;
    /// client.access_token().await?;
    /// client.access_token().await?; // the client's cached token: no second request
    /// assert_eq!(server.token_requests(), 1);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "client"))]
    /// # fn main() {}
    /// ```
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::Relaxed)
    }

    /// How many issued tokens are stored (unexpired ones, and expired ones not yet
    /// dropped); never more than [`max_tokens`](DevAuthServerBuilder::max_tokens).
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use smart_auth::dev_server::DevAuthServer;
    /// let server = DevAuthServer::builder("http://127.0.0.1:8080/fhir")
    ///     .max_tokens(1_000)
    ///     .start()
    ///     .await?;
    /// assert!(server.stored_tokens() <= 1_000);
    /// # Ok(()) }
    /// ```
    pub fn stored_tokens(&self) -> usize {
        lock(&self.state.tokens).len()
    }
}

impl ServerState {
    fn now(&self) -> i64 {
        unix_seconds(self.clock.now())
    }

    fn client(&self, client_id: &str, now: i64) -> Option<ClientRegistration> {
        if let Some(client) = lock(&self.static_clients).get(client_id) {
            return Some(client.clone());
        }
        lock(&self.dynamic_clients)
            .get(&client_id.to_owned(), now)
            .cloned()
    }

    /// The SMART configuration: the one source of what the server states about itself;
    /// [`authorization_server_metadata`](Self::authorization_server_metadata) is made
    /// from it.
    fn configuration(&self) -> SmartConfiguration {
        let url = &self.url;
        let algorithms: Vec<&str> = SigningAlgorithm::DEFAULT.iter().map(|a| a.name()).collect();
        // No `issuer`: SMART states it only with `sso-openid-connect`, which this server
        // does not offer. Its OpenID metadata (`/.well-known/openid-configuration`) names it.
        SmartConfiguration::builder()
            .jwks_uri(format!("{url}/jwks.json"))
            .token_endpoint(self.token_endpoint.as_str())
            .registration_endpoint(format!("{url}/register"))
            .introspection_endpoint(format!("{url}/introspect"))
            .revocation_endpoint(format!("{url}/revoke"))
            .grant_types_supported(["client_credentials"])
            .token_endpoint_auth_methods_supported(CLIENT_AUTH_METHODS)
            // RFC 8414 section 2: each list naming `private_key_jwt` comes with the
            // algorithms its assertions may use.
            .token_endpoint_auth_signing_alg_values_supported(algorithms.iter().copied())
            // Introspection and revocation take the same client authentication (plus, for
            // introspection, a Bearer token of this server, for which no method name is
            // registered).
            .extra(
                "introspection_endpoint_auth_methods_supported",
                json!(CLIENT_AUTH_METHODS),
            )
            .extra(
                "introspection_endpoint_auth_signing_alg_values_supported",
                json!(algorithms),
            )
            .extra(
                "revocation_endpoint_auth_methods_supported",
                json!(CLIENT_AUTH_METHODS),
            )
            .extra(
                "revocation_endpoint_auth_signing_alg_values_supported",
                json!(algorithms),
            )
            .scopes_supported([
                "system/*.cruds",
                "system/*.rs",
                "system/*.read",
                "system/*.write",
            ])
            .capabilities([
                Capability::ClientConfidentialAsymmetric,
                Capability::ClientConfidentialSymmetric,
                Capability::PermissionV1,
                Capability::PermissionV2,
            ])
            .build()
            // Every URL is this server's own loopback URL: the document is always valid.
            .expect("the development server's configuration is valid")
    }

    /// The RFC 8414 authorization server metadata, served at
    /// `/.well-known/openid-configuration` and at RFC 8414's own
    /// `/.well-known/oauth-authorization-server`: the SMART configuration's members, so the two
    /// documents cannot disagree, without SMART's own (`capabilities`, and
    /// `code_challenge_methods_supported`: there is no authorization endpoint, so no
    /// PKCE), plus `issuer` and the two members OpenID Connect Discovery requires of
    /// every provider (`subject_types_supported`, `id_token_signing_alg_values_supported`).
    ///
    /// No `response_types_supported`: response types are used at an authorization
    /// endpoint, which this server lacks, and RFC 8414 section 3.2 omits a member with no
    /// elements (RFC 8414 erratum 7793 proposes to require the member only where the
    /// authorization endpoint is used).
    fn authorization_server_metadata(&self) -> Result<Map<String, Value>, OAuthError> {
        let unwritable = || OAuthError::server_error("the server could not write its answer");
        let Value::Object(mut document) =
            serde_json::to_value(self.configuration()).map_err(|_| unwritable())?
        else {
            return Err(unwritable());
        };
        document.remove("capabilities");
        document.remove("code_challenge_methods_supported");
        document.insert("issuer".into(), json!(self.url));
        document.insert("subject_types_supported".into(), json!(["public"]));
        document.insert(
            "id_token_signing_alg_values_supported".into(),
            json!([SigningAlgorithm::RS256.name()]),
        );
        Ok(document)
    }

    /// Issues an access token and records it; 503 when the token store is full, 500 when
    /// the clock reads so far ahead that the expiry cannot be written or signing fails.
    fn issue(&self, client: &ClientRegistration, scope: &str) -> Result<(String, i64), OAuthError> {
        let client_id = client.client_id.as_str();
        let now = self.now();
        let lifetime = self.token_lifetime_secs;
        let expires_at = now
            .checked_add(lifetime)
            .ok_or_else(OAuthError::clock_out_of_range)?;
        let jti = random_id();
        let token = if self.opaque_tokens {
            random_id() + &random_id()
        } else {
            let mut header = Map::new();
            header.insert("typ".into(), json!("at+jwt"));
            header.insert("kid".into(), json!(self.key.kid));
            let claims = json!({
                "iss": self.url, "sub": client_id, "client_id": client_id, "aud": self.audience,
                "iat": now, "exp": expires_at, "jti": jti, "scope": scope,
            });
            // An RSA key always fits RS256; should signing fail anyway, no token is issued.
            signed_token(
                self.key
                    .try_compact_jws(SigningAlgorithm::RS256, header, &claims),
            )?
        };
        let record = TokenRecord {
            client_id: client_id.to_owned(),
            quota_owner: client.quota_owner().into(),
            scope: scope.to_owned(),
            issued_at: now,
            expires_at,
            jti,
        };
        lock(&self.tokens)
            .insert(digest(&token), record, expires_at, now)
            .map_err(|full| OAuthError::store_full(full.retry_after_secs))?;
        Ok((token, lifetime))
    }

    /// The unexpired, unrevoked record of `token`.
    fn active_token(&self, token: &str, now: i64) -> Option<TokenRecord> {
        lock(&self.tokens).get(&digest(token), now).cloned()
    }
}

/// The `Host` values this server answers to: its bound address and `localhost`, each with
/// the bound port; on port 80 or 443 also without it, as clients leave a default port out
/// (RFC 9110 section 7.2; 443 for a server behind a TLS-terminating proxy).
fn own_hosts(bound: SocketAddr) -> Vec<String> {
    let port = bound.port();
    let mut hosts = vec![bound.to_string(), format!("localhost:{port}")];
    if port == 80 || port == 443 {
        hosts.push(match bound {
            SocketAddr::V4(address) => address.ip().to_string(),
            SocketAddr::V6(address) => format!("[{}]", address.ip()),
        });
        hosts.push("localhost".to_owned());
    }
    hosts
}

/// Answers only requests addressed to this server (see [`is_addressed_to`]). A web page
/// that gets its own host name resolved to 127.0.0.1 (DNS rebinding) sends its own name,
/// and is refused with 421 Misdirected Request (RFC 9110 section 15.5.20) before any
/// endpoint runs.
async fn require_own_host(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    if is_addressed_to(
        &state.own_hosts,
        request.version(),
        request.headers(),
        request.uri(),
    ) {
        next.run(request).await
    } else {
        OAuthError::misdirected().into_response()
    }
}

/// Whether a request names one of `own_hosts` (compared without letter case) as its
/// host, and no other: at most one `Host` header, which HTTP/1.x requires (RFC 9112
/// section 3.2); the authority of the request target when it has one (an absolute-form
/// HTTP/1.1 target, or HTTP/2's `:authority`, which may replace `Host` there, RFC 9113
/// section 8.3.1); each one present must be ours.
fn is_addressed_to(
    own_hosts: &[String],
    version: http::Version,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> bool {
    let is_own = |host: &str| own_hosts.iter().any(|own| own.eq_ignore_ascii_case(host));
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return false,
        (Some(value), None) => match value.to_str() {
            Ok(host) if is_own(host) => Some(host),
            _ => return false,
        },
        (None, None) => None,
    };
    let host_required = version < http::Version::HTTP_2;
    match uri.authority() {
        Some(authority) => is_own(authority.as_str()) && (host.is_some() || !host_required),
        None => host.is_some(),
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A signed access token, or 500 `server_error` when signing failed (or produced
/// nothing): a failure is never answered, or stored, as an empty token.
fn signed_token<E>(signed: Result<String, E>) -> Result<String, OAuthError> {
    match signed {
        Ok(token) if !token.is_empty() => Ok(token),
        _ => Err(OAuthError::server_error(
            "the server could not sign the access token",
        )),
    }
}

/// `value` as JSON text, or 500 `server_error` when it cannot be written: a failure is
/// never answered as an empty 200 document.
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, OAuthError> {
    match serde_json::to_string(value) {
        Ok(text) if !text.is_empty() => Ok(text),
        _ => Err(OAuthError::server_error(
            "the server could not write its answer",
        )),
    }
}

async fn smart_configuration(State(state): State<Arc<ServerState>>) -> Response {
    public_document(json_text(&state.configuration()))
}

async fn openid_configuration(State(state): State<Arc<ServerState>>) -> Response {
    public_document(
        state
            .authorization_server_metadata()
            .and_then(|document| json_text(&document)),
    )
}

/// A discovery document as JSON any origin may read, or the error that kept it from
/// being written.
fn public_document(body: Result<String, OAuthError>) -> Response {
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            body,
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn jwks(State(state): State<Arc<ServerState>>) -> Response {
    let body = json!({ "keys": [state.key.jwk] });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Whether two secrets are equal, in a time that tells neither where they first differ
/// nor how long the expected one is: their SHA-256 digests, of one length, are compared
/// in constant time (a comparison of the texts ends at once when the lengths differ).
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (
        crate::digest::sha256(a.as_bytes()),
        crate::digest::sha256(b.as_bytes()),
    );
    aws_lc_rs::constant_time::verify_slices_are_equal(&a, &b).is_ok()
}

/// What a secret is compared with when the id names no secret client, so that an unknown
/// id costs the time of a known one.
const NO_SECRET: &str = "no client has this secret: it is compared for the time it takes";

/// Authenticates a client by its Basic credentials.
fn authenticate_basic(
    state: &ServerState,
    id: &Spellings,
    secret: &Spellings,
    now: i64,
) -> Result<ClientRegistration, OAuthError> {
    // Both spellings are compared, whichever matches: the time taken does not tell which.
    let matches = |expected: &str| {
        let decoded = secret
            .decoded
            .as_deref()
            .is_some_and(|decoded| constant_time_eq(expected, decoded));
        decoded | constant_time_eq(expected, &secret.as_sent)
    };
    // Either spelling of the id may name the client (`svc+reports` as sent by `curl -u`).
    let mut compared = false;
    let found = id
        .each()
        .filter_map(|id| state.client(id, now))
        .find(|client| match &client.credential {
            // An empty secret authenticates nobody: "app:" would otherwise be a password.
            Credential::Secret(expected) => {
                compared = true;
                matches(expected) & !expected.is_empty()
            }
            _ => false,
        });
    if !compared {
        // Unknown ids, and clients without a secret, take a comparison's time too.
        let _ = matches(NO_SECRET);
    }
    found.ok_or_else(OAuthError::invalid_basic_client)
}

/// Authenticates the client of a token, introspection or revocation request: exactly one
/// of HTTP Basic, a JWT client assertion, or (where `bearer_allowed`, for introspection)
/// a Bearer token of this server, whose client is then the caller. A form `client_id`
/// must name the authenticated client.
async fn authenticate_client(
    state: &ServerState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    bearer_allowed: bool,
) -> Result<ClientRegistration, OAuthError> {
    let now = state.now();
    let form_client_id = form.get("client_id");
    match request::presented_authentication(headers, form, bearer_allowed)? {
        Presented::Basic { id, secret } => {
            let client = authenticate_basic(state, &id, &secret, now)?;
            if form_client_id.is_some_and(|form_id| *form_id != client.client_id) {
                return Err(OAuthError::invalid_basic_client());
            }
            Ok(client)
        }
        Presented::Assertion(text) => {
            let unverified = assertion::read(&text)?;
            if form_client_id.is_some_and(|form_id| {
                *form_id != unverified.issuer || !unverified.subject_is(form_id)
            }) {
                return Err(OAuthError::invalid_client(
                    "client_id differs from the assertion's iss and sub",
                ));
            }
            authenticate_assertion(state, &unverified, now).await
        }
        Presented::Bearer(token) => {
            let not_active = || {
                OAuthError::invalid_bearer_caller(
                    "the bearer token is not an active token of this server",
                )
            };
            let record = state.active_token(&token, now).ok_or_else(not_active)?;
            if form_client_id.is_some_and(|form_id| *form_id != record.client_id) {
                return Err(OAuthError::invalid_bearer_caller(
                    "client_id differs from the bearer token's client",
                ));
            }
            state.client(&record.client_id, now).ok_or_else(not_active)
        }
    }
}

async fn authenticate_assertion(
    state: &ServerState,
    unverified: &assertion::UnverifiedAssertion<'_>,
    now: i64,
) -> Result<ClientRegistration, OAuthError> {
    let client = state
        .client(&unverified.issuer, now)
        .ok_or_else(assertion::no_registered_key)?;
    let keys = match assertion::key_source(&client, unverified)? {
        assertion::KeySource::Inline(keys) => Arc::clone(keys),
        assertion::KeySource::Url(uri) => {
            let lacks_key = |keys: &KeySet| unverified.kid_is_missing_from(keys);
            state
                .jwks_cache
                .get(&state.fetcher, uri, now, lacks_key)
                .await?
        }
    };
    // The fetch may have taken seconds: the assertion is judged, and its id kept, at the
    // time it is accepted.
    let now = state.now();
    let verified = assertion::verify(
        unverified,
        &keys,
        &client.client_id,
        &state.own_audiences,
        now,
        state.limits.leeway_secs,
    )?;
    let fresh = lock(&state.seen_assertions)
        .insert_new(
            (client.client_id.clone(), verified.jti),
            client.quota_owner().to_owned(),
            verified.usable_until,
            now,
        )
        .map_err(|full| OAuthError::store_full(full.retry_after_secs))?;
    if !fresh {
        return Err(OAuthError::invalid_client(
            "this client assertion was already used",
        ));
    }
    Ok(client)
}

async fn token(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.token_requests.fetch_add(1, Ordering::Relaxed);
    match token_response(&state, &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn token_response(
    state: &ServerState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let form = request::parse_form(headers, body)?;
    match form.get("grant_type").map(String::as_str) {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::unsupported_grant_type()),
    }
    // The client first (RFC 6749 section 4.4.2: the server MUST authenticate it): a caller
    // without valid credentials learns nothing about what the scope would have given.
    let client = authenticate_client(state, headers, &form, false).await?;
    // RFC 6749 section 3.3: without a default scope, an omitted one is an invalid scope.
    let Some(requested) = form.get("scope") else {
        return Err(OAuthError {
            description: "scope is required",
            ..OAuthError::invalid_scope()
        });
    };
    if !request::is_scope_string(requested) {
        return Err(OAuthError {
            description: "scope must be scope tokens separated by single spaces",
            ..OAuthError::invalid_scope()
        });
    }
    let granted = grant::granted_scopes(requested, &client.scopes);
    if granted.is_empty() {
        return Err(OAuthError::invalid_scope());
    }
    let scope = granted.join(" ");
    let (access_token, expires_in) = state.issue(&client, &scope)?;
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// The caller and the `token` parameter of an introspection or revocation request.
async fn token_request(
    state: &ServerState,
    headers: &HeaderMap,
    body: &[u8],
    bearer_allowed: bool,
) -> Result<(ClientRegistration, String), OAuthError> {
    let form = request::parse_form(headers, body)?;
    let caller = authenticate_client(state, headers, &form, bearer_allowed).await?;
    let token = form
        .get("token")
        .cloned()
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    Ok((caller, token))
}

async fn introspect(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (caller, token) = match token_request(&state, &headers, &body, true).await {
        Ok(found) => found,
        Err(error) => return error.at_introspection().into_response(),
    };
    let now = state.now();
    let body = match state.active_token(&token, now) {
        Some(record) if caller.introspects_any_token || caller.client_id == record.client_id => {
            json!({
                "active": true,
                "scope": record.scope,
                "client_id": record.client_id,
                "sub": record.client_id,
                "iss": state.url,
                "aud": state.audience,
                "iat": record.issued_at,
                "exp": record.expires_at,
                "jti": record.jti,
                "token_type": "Bearer",
            })
        }
        // Unknown, expired, revoked, or another client's token (for a caller that may
        // only introspect its own): nothing else is said.
        _ => json!({ "active": false }),
    };
    json_response(StatusCode::OK, &body)
}

async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (caller, token) = match token_request(&state, &headers, &body, false).await {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    let now = state.now();
    let key = digest(&token);
    let mut tokens = lock(&state.tokens);
    match tokens.get(&key, now) {
        // RFC 7009 section 2.2: unknown (and expired) tokens are answered 200 as well.
        None => StatusCode::OK.into_response(),
        Some(record) if record.client_id == caller.client_id => {
            tokens.remove(&key);
            StatusCode::OK.into_response()
        }
        // RFC 7009 section 2.1: the token was not issued to this client; the request is
        // refused and the token stays valid.
        Some(_) => {
            drop(tokens);
            OAuthError::unauthorized_client("the token was not issued to this client")
                .into_response()
        }
    }
}

/// RFC 7591 subset. Open registration: anyone may register (development only), for the
/// `client_credentials` grant with `private_key_jwt` (`jwks` or `jwks_uri`) or
/// `client_secret_basic` (a generated secret).
async fn register(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match registration(&state, &headers, &body) {
        Ok(answer) => json_response(StatusCode::CREATED, &answer),
        Err(error) => error.into_response(),
    }
}

fn registration(
    state: &ServerState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let invalid = OAuthError::invalid_client_metadata;
    if !request::is_json(headers) {
        return Err(OAuthError::unsupported_media_type());
    }
    let metadata = crate::json::object_with_unique_members(body)
        .map_err(|_| invalid("the body must be one JSON object with unique member names"))?;
    let scope = match metadata.get("scope") {
        Some(Value::String(scope)) if request::is_scope_string(scope) => scope.clone(),
        Some(_) => {
            return Err(invalid(
                "scope must be scope tokens separated by single spaces",
            ));
        }
        None => return Err(invalid("scope is required")),
    };
    match metadata.get("grant_types") {
        None => {}
        Some(Value::Array(grants))
            if !grants.is_empty() && grants.iter().all(|grant| grant == "client_credentials") => {}
        Some(_) => return Err(invalid("grant_types may only be [\"client_credentials\"]")),
    }
    let method = match metadata.get("token_endpoint_auth_method") {
        None => None,
        Some(Value::String(method))
            if method == "private_key_jwt" || method == "client_secret_basic" =>
        {
            Some(method.as_str())
        }
        Some(_) => {
            return Err(invalid(
                "token_endpoint_auth_method must be private_key_jwt or client_secret_basic",
            ));
        }
    };
    let scopes: Vec<String> = match &state.registration_scopes {
        None => scope.split(' ').map(str::to_owned).collect(),
        Some(ceiling) => grant::granted_scopes(&scope, ceiling),
    };
    if scopes.is_empty() {
        return Err(invalid(
            "no requested scope is one that clients registered here may hold",
        ));
    }
    let scope = scopes.join(" ");
    let now = state.now();
    let expires_at = now.saturating_add(state.limits.client_lifetime_secs);
    let client_id = random_id();
    let mut answer = Map::new();
    let credential = match (method, metadata.get("jwks"), metadata.get("jwks_uri")) {
        (Some("private_key_jwt") | None, Some(jwks), None) => {
            let keys =
                check_client_key_set(jwks).map_err(|problem| invalid(problem.description()))?;
            // Only public members are left at this point: echoing the set is safe.
            answer.insert("jwks".into(), jwks.clone());
            Credential::Jwks(keys)
        }
        (Some("private_key_jwt") | None, None, Some(Value::String(uri))) => {
            let allowed = uri.len() <= MAX_JWKS_URI_LEN
                && reqwest::Url::parse(uri)
                    .is_ok_and(|url| crate::fetch::is_allowed_discovered_url(&url));
            if !allowed {
                return Err(invalid(
                    "jwks_uri must be an https URL (http only for loopback) without user info \
                     or fragment",
                ));
            }
            answer.insert("jwks_uri".into(), json!(uri));
            Credential::JwksUri(uri.clone())
        }
        // RFC 7591 section 2: without a method, `client_secret_basic` is meant.
        (Some("client_secret_basic") | None, None, None) => {
            let secret = random_id() + &random_id();
            answer.insert("client_secret".into(), json!(secret));
            answer.insert("client_secret_expires_at".into(), json!(expires_at));
            Credential::Secret(secret)
        }
        _ => {
            return Err(invalid(
                "give jwks or jwks_uri for private_key_jwt, or neither for client_secret_basic",
            ));
        }
    };
    answer.insert("client_id".into(), json!(client_id));
    answer.insert("client_id_issued_at".into(), json!(now));
    answer.insert(
        "token_endpoint_auth_method".into(),
        json!(credential.method()),
    );
    answer.insert("grant_types".into(), json!(["client_credentials"]));
    answer.insert("scope".into(), json!(scope));
    let registration = ClientRegistration {
        client_id: client_id.clone(),
        credential,
        scopes,
        introspects_any_token: false,
        registered_over_http: true,
    };
    lock(&state.dynamic_clients)
        .insert(client_id, registration, expires_at, now)
        .map_err(|full| OAuthError::store_full(full.retry_after_secs))?;
    Ok(Value::Object(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(error: OAuthError) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_signing_failure_is_a_server_error_not_an_empty_token() {
        assert_eq!(
            signed_token::<()>(Ok("a.b.c".to_owned())),
            Ok("a.b.c".to_owned())
        );
        for failed in [Err(aws_lc_rs::error::Unspecified), Ok(String::new())] {
            let error = signed_token(failed).unwrap_err();
            assert_eq!(
                answer(error).await,
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({
                        "error": "server_error",
                        "error_description": "the server could not sign the access token",
                    })
                )
            );
        }
        // The development server's own key refuses an algorithm it does not fit: that
        // error reaches the helper, not an empty string.
        let key = SigningKey::try_generate(KeyType::Rsa, "k".into(), Some(SigningAlgorithm::RS256))
            .unwrap();
        let refused = key.try_compact_jws(SigningAlgorithm::ES256, Map::new(), &json!({}));
        assert_eq!(
            signed_token(refused).map_err(|e| (e.status, e.code)),
            Err((StatusCode::INTERNAL_SERVER_ERROR, "server_error"))
        );
    }

    /// The Host decision: the port may be left out only on 80 and 443, and a request
    /// without `Host` (HTTP/2) is judged by the authority of its target.
    #[test]
    fn host_decision() {
        let on_8080 = own_hosts(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let on_80 = own_hosts(SocketAddr::from(([127, 0, 0, 1], 80)));
        let on_443 = own_hosts(SocketAddr::from(([127, 0, 0, 1], 443)));
        let v6_on_80 = own_hosts(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 80)));
        assert_eq!(on_8080, ["127.0.0.1:8080", "localhost:8080"]);
        assert_eq!(
            on_80,
            ["127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"]
        );
        assert_eq!(v6_on_80, ["[::1]:80", "localhost:80", "[::1]", "localhost"]);
        let decide = |own: &[String], version, hosts: &[&str], target: &str| {
            let mut headers = HeaderMap::new();
            for host in hosts {
                headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
            }
            is_addressed_to(own, version, &headers, &target.parse().unwrap())
        };
        use http::Version;
        const H1: Version = Version::HTTP_11;
        const H2: Version = Version::HTTP_2;
        /// Own hosts, HTTP version, `Host` values, request target, answer.
        type Row<'a> = (&'a [String], Version, &'a [&'a str], &'a str, bool);
        let rows: &[Row<'_>] = &[
            // Host header, origin-form target (HTTP/1.1).
            (&on_8080, H1, &["127.0.0.1:8080"], "/token", true),
            (&on_8080, H1, &["LOCALHOST:8080"], "/token", true),
            (&on_8080, H1, &["127.0.0.1"], "/token", false),
            (&on_8080, H1, &["localhost"], "/token", false),
            (&on_8080, H1, &["127.0.0.1:80"], "/token", false),
            (&on_8080, H1, &["evil.example:8080"], "/token", false),
            (&on_80, H1, &["127.0.0.1"], "/token", true),
            (&on_80, H1, &["localhost"], "/token", true),
            (&on_80, H1, &["127.0.0.1:80"], "/token", true),
            (&on_80, H1, &["localhost:80"], "/token", true),
            (&on_80, H1, &["evil.example"], "/token", false),
            (&on_80, H1, &["127.0.0.1:8080"], "/token", false),
            (&on_443, H1, &["localhost"], "/token", true),
            (&on_443, H1, &["127.0.0.1:443"], "/token", true),
            (&v6_on_80, H1, &["[::1]"], "/token", true),
            (&v6_on_80, H1, &["::1"], "/token", false),
            // None, or two.
            (&on_8080, H1, &[], "/token", false),
            (&on_80, H1, &[], "/token", false),
            (
                &on_8080,
                H1,
                &["127.0.0.1:8080", "127.0.0.1:8080"],
                "/token",
                false,
            ),
            (
                &on_8080,
                H1,
                &["127.0.0.1:8080", "evil.example"],
                "/token",
                false,
            ),
            // HTTP/2 without Host: the target's authority (`:authority`).
            (&on_8080, H2, &[], "http://127.0.0.1:8080/token", true),
            (&on_8080, H2, &[], "http://localhost:8080/token", true),
            (&on_8080, H2, &[], "http://127.0.0.1/token", false),
            (&on_8080, H2, &[], "http://evil.example:8080/token", false),
            (&on_8080, H2, &[], "http://user@127.0.0.1:8080/token", false),
            (&on_80, H2, &[], "http://localhost/token", true),
            (&on_80, H2, &[], "http://127.0.0.1/token", true),
            (&on_80, H2, &[], "http://evil.example/token", false),
            (&on_8080, H2, &[], "/token", false),
            (&on_8080, H2, &["127.0.0.1:8080"], "/token", true),
            (
                &on_8080,
                H2,
                &["evil.example"],
                "http://127.0.0.1:8080/token",
                false,
            ),
            // HTTP/1.x needs Host (RFC 9112 section 3.2), even with an absolute-form target.
            (&on_8080, H1, &[], "http://127.0.0.1:8080/token", false),
            (
                &on_80,
                Version::HTTP_10,
                &[],
                "http://127.0.0.1/token",
                false,
            ),
            // Both: each must be ours.
            (
                &on_8080,
                H1,
                &["127.0.0.1:8080"],
                "http://127.0.0.1:8080/token",
                true,
            ),
            (
                &on_8080,
                H1,
                &["127.0.0.1:8080"],
                "http://evil.example/token",
                false,
            ),
            (
                &on_8080,
                H1,
                &["evil.example"],
                "http://127.0.0.1:8080/token",
                false,
            ),
        ];
        for (own, version, hosts, target, expected) in rows {
            assert_eq!(
                decide(own, *version, hosts, target),
                *expected,
                "{own:?} {version:?} {hosts:?} {target}"
            );
        }
    }

    /// Serialises to an error.
    struct Unwritable;

    impl serde::Serialize for Unwritable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }

    #[tokio::test]
    async fn an_unwritable_document_is_a_server_error_not_an_empty_body() {
        assert_eq!(json_text(&json!({"a": 1})), Ok(r#"{"a":1}"#.to_owned()));
        let error = json_text(&Unwritable).unwrap_err();
        assert_eq!(
            answer(error).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({
                    "error": "server_error",
                    "error_description": "the server could not write its answer",
                })
            )
        );
        // Non-string map keys cannot be JSON either.
        let map: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(json_text(&map).is_err());
    }
}
