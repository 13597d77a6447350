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
//! | `GET /.well-known/smart-configuration`, `GET /.well-known/openid-configuration` | discovery |
//! | `GET /jwks.json` | the server's public signing key |
//! | `POST /register` | RFC 7591 subset: `jwks`, `jwks_uri` or a generated secret, `scope` |
//! | `POST /token` | `grant_type=client_credentials` |
//! | `POST /introspect` | RFC 7662, for callers with Basic client credentials or a Bearer token of this server |
//! | `POST /revoke` | RFC 7009, same authentication |
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
mod grant;
mod oauth;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

pub use clients::ClientRegistration;
use clients::Credential;
use oauth::OAuthError;

use crate::algorithm::SigningAlgorithm;
use crate::clock::{Clock, SystemClock, unix_seconds};
use crate::discovery::{Capability, SmartConfiguration};
use crate::fetch::{Fetcher, default_client};
use crate::form;
use crate::signing::{KeyType, SigningKey};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Settings of a [`DevAuthServer`]; see [`DevAuthServer::builder`].
#[derive(Debug)]
#[must_use]
pub struct DevAuthServerBuilder {
    audience: String,
    address: SocketAddr,
    clock: Arc<dyn Clock>,
    token_lifetime: Duration,
    opaque_tokens: bool,
    http_client: Option<reqwest::Client>,
}

impl DevAuthServerBuilder {
    /// The loopback address to bind (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.address = address;
        self
    }

    /// The clock for `iat`, `exp` and assertion checks (default the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long access tokens live (default 300 s, the SMART Backend Services advice).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Issues opaque random access tokens, which only introspection can resolve, instead
    /// of JWTs.
    pub fn opaque_tokens(mut self) -> Self {
        self.opaque_tokens = true;
        self
    }

    /// The HTTP client for fetching clients' `jwks_uri` (default: no redirects, 5 s).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Binds and starts serving.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound, or is not a loopback address (this server is for
    /// development only).
    pub async fn start(self) -> std::io::Result<DevAuthServer> {
        if !self.address.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the development server binds loopback addresses only",
            ));
        }
        let listener = tokio::net::TcpListener::bind(self.address).await?;
        let url = format!("http://{}", listener.local_addr()?);
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
            token_lifetime: self.token_lifetime,
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
            data: Mutex::new(Data::default()),
        });
        let router = Router::new()
            .route("/.well-known/smart-configuration", get(smart_configuration))
            .route(
                "/.well-known/openid-configuration",
                get(openid_configuration),
            )
            .route("/jwks.json", get(jwks))
            .route("/register", post(register))
            .route("/token", post(token))
            .route("/introspect", post(introspect))
            .route("/revoke", post(revoke))
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(DevAuthServer { state, server })
    }
}

/// A running development authorization server. It stops when dropped. See the
/// [module docs](self).
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

struct ServerState {
    url: String,
    token_endpoint: String,
    audience: String,
    clock: Arc<dyn Clock>,
    token_lifetime: Duration,
    opaque_tokens: bool,
    key: SigningKey,
    fetcher: Fetcher,
    data: Mutex<Data>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAuthServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Data {
    clients: HashMap<String, ClientRegistration>,
    /// Issued access tokens by their full text.
    tokens: HashMap<String, TokenRecord>,
    /// `(client_id, jti)` of accepted assertions, with their `exp`.
    seen_jtis: HashMap<(String, String), i64>,
    token_requests: usize,
}

#[derive(Debug, Clone)]
struct TokenRecord {
    client_id: String,
    scope: String,
    issued_at: i64,
    expires_at: i64,
    jti: String,
    revoked: bool,
}

impl DevAuthServer {
    /// Settings for a server whose tokens are for the FHIR API at `audience` (its base URL).
    pub fn builder(audience: impl Into<String>) -> DevAuthServerBuilder {
        DevAuthServerBuilder {
            audience: audience.into(),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock: Arc::new(SystemClock),
            token_lifetime: Duration::from_secs(300),
            opaque_tokens: false,
            http_client: None,
        }
    }

    /// The issuer URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// The token endpoint URL.
    pub fn token_endpoint(&self) -> &str {
        &self.state.token_endpoint
    }

    /// The introspection endpoint URL.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.state.url)
    }

    /// The discovery document this server publishes.
    pub fn configuration(&self) -> SmartConfiguration {
        self.state.configuration()
    }

    /// Registers (or replaces) a client.
    pub fn register(&self, registration: ClientRegistration) {
        let mut data = self.state.lock();
        data.clients
            .insert(registration.client_id.clone(), registration);
    }

    /// Revokes an access token; introspection reports it inactive from now on. Returns
    /// whether the token was known.
    pub fn revoke(&self, access_token: &str) -> bool {
        self.state
            .lock()
            .tokens
            .get_mut(access_token)
            .map(|record| record.revoked = true)
            .is_some()
    }

    /// How many token requests (successful or not) the server answered.
    pub fn token_requests(&self) -> usize {
        self.state.lock().token_requests
    }
}

impl ServerState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        unix_seconds(self.clock.now())
    }

    fn configuration(&self) -> SmartConfiguration {
        let url = &self.url;
        SmartConfiguration::builder()
            .issuer(url.as_str())
            .jwks_uri(format!("{url}/jwks.json"))
            .token_endpoint(self.token_endpoint.as_str())
            .registration_endpoint(format!("{url}/register"))
            .introspection_endpoint(format!("{url}/introspect"))
            .revocation_endpoint(format!("{url}/revoke"))
            .grant_types_supported(["client_credentials"])
            .token_endpoint_auth_methods_supported(["private_key_jwt", "client_secret_basic"])
            .token_endpoint_auth_signing_alg_values_supported(
                SigningAlgorithm::DEFAULT.iter().map(|a| a.name()),
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

    /// Issues an access token and records it.
    fn issue(&self, client_id: &str, scope: &str) -> (String, i64) {
        let now = self.now();
        let lifetime = i64::try_from(self.token_lifetime.as_secs()).unwrap_or(300);
        let jti = random_id();
        let token = if self.opaque_tokens {
            random_id() + &random_id()
        } else {
            let mut header = Map::new();
            header.insert("typ".into(), json!("at+jwt"));
            header.insert("kid".into(), json!(self.key.kid));
            let claims = json!({
                "iss": self.url, "sub": client_id, "client_id": client_id, "aud": self.audience,
                "iat": now, "exp": now + lifetime, "jti": jti, "scope": scope,
            });
            // An RSA key always fits RS256.
            self.key
                .try_compact_jws(SigningAlgorithm::RS256, header, &claims)
                .unwrap_or_default()
        };
        let record = TokenRecord {
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            issued_at: now,
            expires_at: now + lifetime,
            jti,
            revoked: false,
        };
        let mut data = self.lock();
        data.tokens.retain(|_, record| record.expires_at > now);
        data.tokens.insert(token.clone(), record);
        (token, lifetime)
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

async fn smart_configuration(State(state): State<Arc<ServerState>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        serde_json::to_string(&state.configuration()).unwrap_or_default(),
    )
        .into_response()
}

async fn openid_configuration(State(state): State<Arc<ServerState>>) -> Response {
    let url = &state.url;
    let body = json!({
        "issuer": url,
        "jwks_uri": format!("{url}/jwks.json"),
        "token_endpoint": state.token_endpoint,
        "registration_endpoint": format!("{url}/register"),
        "introspection_endpoint": format!("{url}/introspect"),
        "revocation_endpoint": format!("{url}/revoke"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn jwks(State(state): State<Arc<ServerState>>) -> Response {
    let body = json!({ "keys": [state.key.jwk] });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Parses a form body, refusing repeated parameters (RFC 6749 section 3.2).
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form_type {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    let mut parameters = HashMap::new();
    for (name, value) in form::pairs(text) {
        if parameters.insert(name, value).is_some() {
            return Err(OAuthError::invalid_request("a parameter is repeated"));
        }
    }
    Ok(parameters)
}

/// The client id and secret of an `Authorization: Basic` header (RFC 6749 section 2.3.1:
/// each part form-urlencoded before joining), `Ok(None)` without such a header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_basic_client())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| OAuthError::invalid_basic_client())?;
    let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_basic_client())?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_basic_client)?;
    Ok(Some((form::decode(id), form::decode(secret))))
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// Authenticates a client by its Basic credentials.
fn authenticate_basic(
    state: &ServerState,
    id: &str,
    secret: &str,
) -> Result<ClientRegistration, OAuthError> {
    let data = state.lock();
    match data.clients.get(id) {
        Some(client) => match &client.credential {
            Credential::Secret(expected) if constant_time_eq(expected, secret) => {
                Ok(client.clone())
            }
            _ => Err(OAuthError::invalid_basic_client()),
        },
        None => Err(OAuthError::invalid_basic_client()),
    }
}

async fn token(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.lock().token_requests += 1;
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
    let basic = basic_credentials(headers)?;
    let form = parse_form(headers, body)?;
    match form.get("grant_type").map(String::as_str) {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::unsupported_grant_type()),
    }
    let assertion_type = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    let client = match (basic, assertion_type, assertion) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method",
            ));
        }
        (Some((id, secret)), None, None) => authenticate_basic(state, &id, &secret)?,
        (None, Some(kind), Some(assertion)) => {
            if kind != ASSERTION_TYPE {
                return Err(OAuthError::invalid_request(
                    "unsupported client_assertion_type",
                ));
            }
            authenticate_assertion(state, assertion).await?
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "client_assertion_type and client_assertion go together",
            ));
        }
        (None, None, None) => {
            return Err(OAuthError::invalid_request(
                "client authentication is required",
            ));
        }
    };
    let Some(requested) = form.get("scope").filter(|scope| !scope.trim().is_empty()) else {
        return Err(OAuthError::invalid_request("scope is required"));
    };
    let granted = grant::granted_scopes(requested, &client.scopes);
    if granted.is_empty() {
        return Err(OAuthError::invalid_scope());
    }
    let scope = granted.join(" ");
    let (access_token, expires_in) = state.issue(&client.client_id, &scope);
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    });
    Ok(json_response(StatusCode::OK, &body))
}

async fn authenticate_assertion(
    state: &ServerState,
    text: &str,
) -> Result<ClientRegistration, OAuthError> {
    let unverified = assertion::read(text)?;
    let client = state
        .lock()
        .clients
        .get(&unverified.issuer)
        .cloned()
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    let jwks = match assertion::key_source(&client, &unverified)? {
        assertion::KeySource::Inline(jwks) => jwks.to_string().into_bytes(),
        assertion::KeySource::Url(uri) => {
            let url = reqwest::Url::parse(uri)
                .map_err(|_| OAuthError::invalid_client("the registered JWKS URL is invalid"))?;
            state
                .fetcher
                .get(&url, "application/jwk-set+json, application/json", true)
                .await
                .map_err(|_| OAuthError::invalid_client("the client's JWKS could not be fetched"))?
                .body
        }
    };
    let now = state.now();
    let mut data = state.lock();
    assertion::verify(
        &unverified,
        &jwks,
        &client.client_id,
        &state.token_endpoint,
        now,
        &mut data.seen_jtis,
    )?;
    Ok(client)
}

/// Who may introspect and revoke: a client with valid Basic credentials, or the bearer of
/// an active token of this server.
fn authorize_caller(state: &ServerState, headers: &HeaderMap) -> Result<(), OAuthError> {
    if let Some((id, secret)) = basic_credentials(headers)? {
        return authenticate_basic(state, &id, &secret).map(drop);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let now = state.now();
    let active = bearer.is_some_and(|token| {
        state
            .lock()
            .tokens
            .get(token)
            .is_some_and(|record| !record.revoked && record.expires_at > now)
    });
    if active {
        Ok(())
    } else {
        Err(OAuthError {
            challenge: Some(
                "Bearer realm=\"smart-auth development server\", Basic realm=\"smart-auth development server\"",
            ),
            ..OAuthError::invalid_basic_client()
        })
    }
}

/// The `token` parameter of an introspection or revocation request, after checking who
/// asks.
fn token_parameter(
    state: &ServerState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, OAuthError> {
    authorize_caller(state, headers)?;
    let mut form = parse_form(headers, body)?;
    form.remove("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))
}

async fn introspect(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match token_parameter(&state, &headers, &body) {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    let now = state.now();
    let record = state.lock().tokens.get(&token).cloned();
    let body = match record {
        Some(record) if !record.revoked && record.expires_at > now => json!({
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
        }),
        _ => json!({ "active": false }),
    };
    json_response(StatusCode::OK, &body)
}

async fn revoke(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match token_parameter(&state, &headers, &body) {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    // RFC 7009: unknown tokens are answered 200 as well.
    if let Some(record) = state.lock().tokens.get_mut(&token) {
        record.revoked = true;
    }
    StatusCode::OK.into_response()
}

/// RFC 7591 subset. Open registration: anyone may register (development only).
async fn register(State(state): State<Arc<ServerState>>, body: Bytes) -> Response {
    let invalid = |description: &'static str| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "invalid_client_metadata", "error_description": description }),
        )
    };
    let Ok(Value::Object(metadata)) = serde_json::from_slice::<Value>(&body) else {
        return invalid("the body must be a JSON object");
    };
    let scopes: Vec<String> = match metadata.get("scope") {
        Some(Value::String(scope)) => scope.split_ascii_whitespace().map(str::to_owned).collect(),
        None => return invalid("scope is required"),
        Some(_) => return invalid("scope must be a string"),
    };
    let method = metadata
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str);
    let client_id = random_id();
    let mut answer = Map::new();
    let registration = match (method, metadata.get("jwks"), metadata.get("jwks_uri")) {
        (Some("private_key_jwt") | None, Some(jwks @ Value::Object(_)), None) => {
            if crate::jwks::KeySet::parse(jwks.to_string().as_bytes()).is_err() {
                return invalid("jwks holds no usable public signing key");
            }
            answer.insert("jwks".into(), jwks.clone());
            ClientRegistration::private_key_jwt(client_id.clone(), jwks.clone(), scopes.clone())
        }
        (Some("private_key_jwt") | None, None, Some(Value::String(uri))) => {
            let allowed =
                reqwest::Url::parse(uri).is_ok_and(|url| crate::fetch::is_allowed_url(&url));
            if !allowed {
                return invalid("jwks_uri must be an https URL (http only for loopback)");
            }
            answer.insert("jwks_uri".into(), json!(uri));
            ClientRegistration::private_key_jwt_uri(client_id.clone(), uri.clone(), scopes.clone())
        }
        (Some("client_secret_basic"), None, None) => {
            let secret = random_id() + &random_id();
            answer.insert("client_secret".into(), json!(secret));
            answer.insert("client_secret_expires_at".into(), json!(0));
            ClientRegistration::client_secret_basic(client_id.clone(), secret, scopes.clone())
        }
        _ => {
            return invalid(
                "give jwks or jwks_uri for private_key_jwt, or neither for client_secret_basic",
            );
        }
    };
    answer.insert("client_id".into(), json!(client_id));
    answer.insert("client_id_issued_at".into(), json!(state.now()));
    answer.insert(
        "token_endpoint_auth_method".into(),
        json!(method.unwrap_or("private_key_jwt")),
    );
    answer.insert("grant_types".into(), json!(["client_credentials"]));
    answer.insert("scope".into(), json!(scopes.join(" ")));
    state.lock().clients.insert(client_id, registration);
    json_response(StatusCode::CREATED, &Value::Object(answer))
}
