//! [`TestIssuer`]: an in-process authorization server for tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::token::TokenBuilder;
use crate::algorithm::SigningAlgorithm;
use crate::clock::{Clock, SystemClock};
use crate::signing::{KeyType, TestKey};

/// How the issuer answers requests for its JWK Set: a fault-injection hook for this crate's
/// own key-cache tests. Hidden from the docs and not part of the API: no semver promise.
///
/// ```no_run
/// # async fn run() {
/// use smart_auth::testing::{JwksBehaviour, TestIssuer};
/// let issuer = TestIssuer::start().await;
/// issuer.set_jwks_behaviour(JwksBehaviour::Status(500));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[doc(hidden)]
pub enum JwksBehaviour {
    /// 200 with the published keys.
    Normal,
    /// An empty response with this status.
    Status(u16),
    /// The normal answer, after this delay.
    Delay(Duration),
    /// 200 with a body of this many bytes, streamed in 64 KiB chunks without a
    /// `Content-Length`.
    Oversized(usize),
    /// 302 to a copy of the key set at `/jwks-copy.json`.
    Redirect,
    /// 200 with this exact body.
    Body(String),
    /// The normal answer once [`TestIssuer::open_jwks_gate`] has been called: a request
    /// that arrives before waits for it (counted in
    /// [`jwks_fetches`](TestIssuer::jwks_fetches) as it arrives). For tests that need
    /// every concurrent request waiting on one fetch before the fetch ends.
    Gated,
}

struct IssuerState {
    url: String,
    audience: String,
    clock: Arc<dyn Clock>,
    keys: Mutex<Keys>,
    jwks: Mutex<JwksBehaviour>,
    cache_control: Mutex<Option<String>>,
    discovery_issuer: Mutex<Option<String>>,
    discovery_jwks_uri: Mutex<Option<String>>,
    smart_configuration_enabled: Mutex<bool>,
    smart_configuration_fetches: AtomicUsize,
    openid_configuration_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
    jwks_copy_fetches: AtomicUsize,
    jwks_bytes_sent: Arc<AtomicUsize>,
    last_jwks_headers: Mutex<HeaderMap>,
    /// Whether [`JwksBehaviour::Gated`] answers may go.
    jwks_gate: tokio::sync::watch::Sender<bool>,
}

struct Keys {
    generation: usize,
    /// The fixed tag of every `kid`, else a random one per rotation.
    tag: Option<String>,
    published: Vec<Arc<TestKey>>,
    current: HashMap<KeyTypeKey, Arc<TestKey>>,
}

/// `KeyType` as a map key.
type KeyTypeKey = u8;

fn slot(key_type: KeyType) -> KeyTypeKey {
    key_type as u8
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An authorization server on `127.0.0.1` for tests. See the [module docs](super).
///
/// It publishes one key of each type: RSA (for RS256/384/512 and PS256/384/512, its JWK
/// without `alg`), P-256 (`ES256`), P-384 (`ES384`), P-521 (`ES512`) and Ed25519
/// (`EdDSA`, which also signs `Ed25519` tokens, RFC 9864). It stops when
/// dropped. Each instance has its own keys and counters: tests share nothing.
///
/// ```
/// use smart_auth::{TokenVerifier, testing::TestIssuer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let issuer = TestIssuer::start().await;
/// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
///
/// let token = issuer.token().scope("system/Patient.rs").sign();
/// let claims = verifier.verify(&token).await?;
/// assert_eq!(claims.iss(), issuer.url());
/// assert_eq!(claims.scopes(), ["system/Patient.rs"]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestIssuer {
    state: Arc<IssuerState>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for IssuerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerState")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Settings for a [`TestIssuer`]; see [`TestIssuer::builder`].
///
/// ```
/// use smart_auth::testing::TestIssuer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let issuer = TestIssuer::builder()
///     .path("/realms/test")
///     .audience("https://api.example.org/fhir")
///     .start()
///     .await;
/// assert!(issuer.url().ends_with("/realms/test"));
/// assert_eq!(issuer.audience(), "https://api.example.org/fhir");
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct TestIssuerBuilder {
    audience: Option<String>,
    clock: Arc<dyn Clock>,
    path: String,
    key_tag: Option<String>,
}

impl TestIssuerBuilder {
    /// A fixed tag in every `kid` instead of a random one, so that two issuers publish the
    /// same `kid`s for different keys (a multi-issuer test: a key must be chosen by issuer
    /// first, then by `kid`).
    ///
    /// ```
    /// # async fn run() {
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::testing::TestIssuer;
    ///
    /// let a = TestIssuer::builder().key_tag("same").start().await;
    /// let b = TestIssuer::builder().key_tag("same").start().await;
    /// assert_eq!(
    ///     a.current_kid(SigningAlgorithm::RS256),
    ///     b.current_kid(SigningAlgorithm::RS256)
    /// );
    /// # }
    /// ```
    pub fn key_tag(mut self, tag: impl Into<String>) -> Self {
        self.key_tag = Some(tag.into());
        self
    }

    /// The `aud` of minted tokens (default `https://fhir.example.test/r4`).
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::builder().audience("https://api.example.org/fhir").start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience("https://api.example.org/fhir")
    ///     .build()?;
    /// let claims = verifier.verify(&issuer.token().sign()).await?;
    /// assert_eq!(claims.aud(), ["https://api.example.org/fhir"]);
    /// # Ok(()) }
    /// ```
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The clock for `iat`/`exp` of minted tokens (default the system clock). Share a
    /// [`ManualClock`](crate::ManualClock) with the layer to move both.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ErrorKind, ManualClock, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let clock = ManualClock::new();
    /// let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .clock(clock.clone())
    ///     .no_token_cache()
    ///     .build()?;
    ///
    /// let token = issuer.token().expires_in_secs(60).sign();
    /// assert!(verifier.verify(&token).await.is_ok());
    /// clock.advance(Duration::from_secs(3600)); // no sleeping: both see the hour pass
    /// assert_eq!(verifier.verify(&token).await.unwrap_err().kind(), ErrorKind::Expired);
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A path under which the issuer lives, such as `/realms/test` (default none).
    ///
    /// ```
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::builder().path("/realms/test/").start().await;
    /// assert!(issuer.url().ends_with("/realms/test")); // the trailing slash is dropped
    /// assert_eq!(issuer.jwks_uri(), format!("{}/jwks.json", issuer.url()));
    /// # }
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into().trim_end_matches('/').to_owned();
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound; a test cannot go on without one.
    ///
    /// ```
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::builder().audience("https://fhir.test").start().await;
    /// assert!(issuer.url().starts_with("http://127.0.0.1:"));
    /// # }
    /// ```
    pub async fn start(self) -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        let base = format!("http://{address}{}", self.path);
        let mut keys = Keys {
            generation: 0,
            tag: self.key_tag,
            published: Vec::new(),
            current: HashMap::new(),
        };
        rotate(&mut keys);
        let state = Arc::new(IssuerState {
            url: base,
            audience: self
                .audience
                .unwrap_or_else(|| "https://fhir.example.test/r4".to_owned()),
            clock: self.clock,
            keys: Mutex::new(keys),
            jwks: Mutex::new(JwksBehaviour::Normal),
            cache_control: Mutex::new(None),
            discovery_issuer: Mutex::new(None),
            discovery_jwks_uri: Mutex::new(None),
            smart_configuration_enabled: Mutex::new(true),
            smart_configuration_fetches: AtomicUsize::new(0),
            openid_configuration_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            jwks_copy_fetches: AtomicUsize::new(0),
            jwks_bytes_sent: Arc::new(AtomicUsize::new(0)),
            last_jwks_headers: Mutex::new(HeaderMap::new()),
            jwks_gate: tokio::sync::watch::Sender::new(false),
        });
        let path = &self.path;
        let router = Router::new()
            .route(
                &format!("{path}/.well-known/smart-configuration"),
                get(smart_configuration),
            )
            .route(
                &format!("{path}/.well-known/openid-configuration"),
                get(openid_configuration),
            )
            .route(&format!("{path}/jwks.json"), get(jwks))
            .route(&format!("{path}/jwks-copy.json"), get(jwks_copy))
            .with_state(Arc::clone(&state));
        // The server ends with the test: the task is aborted on drop, and every connection
        // with it.
        let server = tokio::spawn(crate::serve::serve(
            listener,
            router,
            crate::serve::Limits::TEST_ISSUER,
        ));
        TestIssuer { state, server }
    }
}

fn rotate(keys: &mut Keys) {
    keys.generation += 1;
    // A random tag keeps kids unique across issuers, as real ones are.
    let tag = keys.tag.clone().unwrap_or_else(|| {
        let mut tag = [0u8; 3];
        aws_lc_rs::rand::fill(&mut tag).expect("system randomness");
        format!("{:02x}{:02x}{:02x}", tag[0], tag[1], tag[2])
    });
    let generation = format!("{}-{tag}", keys.generation);
    let fresh = [
        (KeyType::Rsa, format!("rsa-{generation}"), None),
        (
            KeyType::P256,
            format!("p256-{generation}"),
            Some(SigningAlgorithm::ES256),
        ),
        (
            KeyType::P384,
            format!("p384-{generation}"),
            Some(SigningAlgorithm::ES384),
        ),
        (
            KeyType::P521,
            format!("p521-{generation}"),
            Some(SigningAlgorithm::ES512),
        ),
        (
            KeyType::Ed25519,
            format!("ed25519-{generation}"),
            Some(SigningAlgorithm::EdDSA),
        ),
    ];
    keys.published.clear();
    keys.current.clear();
    for (key_type, kid, alg) in fresh {
        let key = Arc::new(TestKey::generate(key_type, kid, alg));
        keys.published.push(Arc::clone(&key));
        keys.current.insert(slot(key_type), key);
    }
}

impl TestIssuer {
    /// Starts an issuer with the default settings.
    ///
    /// ```
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// assert_eq!(issuer.audience(), "https://fhir.example.test/r4"); // the default
    /// # }
    /// ```
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Settings for an issuer.
    ///
    /// ```
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::builder().path("/oauth2").start().await;
    /// assert!(issuer.url().ends_with("/oauth2"));
    /// # }
    /// ```
    pub fn builder() -> TestIssuerBuilder {
        TestIssuerBuilder {
            audience: None,
            clock: Arc::new(SystemClock),
            path: String::new(),
            key_tag: None,
        }
    }

    /// The issuer URL (`http://127.0.0.1:<port>[path]`): the `iss` of minted tokens.
    ///
    /// ```
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// assert!(issuer.url().starts_with("http://127.0.0.1:"));
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// The `aud` of minted tokens.
    ///
    /// ```
    /// use smart_auth::{SmartAuthLayer, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smart_auth::ConfigError> {
    /// let issuer = TestIssuer::start().await;
    /// // The layer under test accepts the issuer's tokens when it checks this audience.
    /// let layer = SmartAuthLayer::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    pub fn audience(&self) -> &str {
        &self.state.audience
    }

    /// The URL of the JWK Set.
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// // With the key set's URL given, the verifier skips discovery.
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .jwks_uri(issuer.jwks_uri())
    ///     .build()?;
    /// verifier.verify(&issuer.token().sign()).await?;
    /// assert_eq!(issuer.smart_configuration_fetches(), 0);
    /// assert_eq!(issuer.jwks_fetches(), 1);
    /// # Ok(()) }
    /// ```
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks.json", self.state.url)
    }

    /// Starts minting a token.
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let claims = verifier.verify(&issuer.token().sign()).await?;
    /// // The defaults: a backend-services client with `system/*.rs`.
    /// assert_eq!(claims.client_id(), Some("test-client"));
    /// assert_eq!(claims.scopes(), ["system/*.rs"]);
    /// # Ok(()) }
    /// ```
    pub fn token(&self) -> TokenBuilder<'_> {
        TokenBuilder::new(self, crate::clock::unix_seconds(self.now()))
    }

    /// The `kid` of the current key that signs `alg` tokens.
    ///
    /// ```no_run
    /// # async fn run() {
    /// use smart_auth::SigningAlgorithm;
    /// let issuer = smart_auth::testing::TestIssuer::builder().start().await;
    /// assert!(!issuer.current_kid(SigningAlgorithm::RS256).is_empty());
    /// # }
    /// ```
    pub fn current_kid(&self, alg: SigningAlgorithm) -> String {
        self.key_for(alg).kid.clone()
    }

    /// Signs exactly these header and payload texts (base64url-encoded as they are) with
    /// the current key for `alg`: for tokens the [`TokenBuilder`] cannot express, such as
    /// duplicate member names, `null` members or odd whitespace. The header text must name
    /// `alg` (and a `kid`, see [`current_kid`](Self::current_kid)) itself.
    ///
    /// ```no_run
    /// # async fn run() {
    /// use smart_auth::SigningAlgorithm;
    /// let issuer = smart_auth::testing::TestIssuer::builder().start().await;
    /// let kid = issuer.current_kid(SigningAlgorithm::RS256);
    /// let header = format!(r#"{{"alg":"RS256","kid":"{kid}","typ":"at+jwt","typ":"JWT"}}"#);
    /// let token = issuer.sign_texts(SigningAlgorithm::RS256, &header, r#"{"iss":"x"}"#);
    /// assert_eq!(token.split('.').count(), 3);
    /// # }
    /// ```
    pub fn sign_texts(&self, alg: SigningAlgorithm, header: &str, payload: &str) -> String {
        self.key_for(alg).compact_jws_of_texts(alg, header, payload)
    }

    /// Signs exactly `signing_input`, taken as it is (not encoded), with the current key for
    /// `alg`, and appends the signature as a last segment: for tokens no encoder makes,
    /// whose signature is nonetheless valid, such as a payload segment holding a dot, padding
    /// or the standard base64 alphabet. The header segment must name `alg` itself.
    ///
    /// ```no_run
    /// # async fn run() {
    /// use base64::Engine as _;
    /// use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    /// use smart_auth::SigningAlgorithm;
    /// let issuer = smart_auth::testing::TestIssuer::builder().start().await;
    /// let kid = issuer.current_kid(SigningAlgorithm::ES256);
    /// let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#));
    /// let payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#);
    /// // Four segments, the signature valid over the first three.
    /// let token = issuer.sign_signing_input(
    ///     SigningAlgorithm::ES256,
    ///     &format!("{header}.{payload}.{payload}"),
    /// );
    /// assert_eq!(token.split('.').count(), 4);
    /// # }
    /// ```
    pub fn sign_signing_input(&self, alg: SigningAlgorithm, signing_input: &str) -> String {
        self.key_for(alg)
            .compact_jws_of_signing_input(alg, signing_input)
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.state.clock.now()
    }

    pub(crate) fn key_for(&self, alg: SigningAlgorithm) -> Arc<TestKey> {
        let keys = lock(&self.state.keys);
        Arc::clone(&keys.current[&slot(KeyType::for_algorithm(alg))])
    }

    pub(crate) fn key_by_kid(&self, kid: &str) -> Option<Arc<TestKey>> {
        lock(&self.state.keys)
            .published
            .iter()
            .find(|key| key.kid == kid)
            .cloned()
    }

    /// Replaces every key with a new one under a new `kid`; tokens minted from now on use
    /// the new keys, and the old ones are no longer published.
    ///
    /// ```
    /// use smart_auth::{SigningAlgorithm, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let old = issuer.current_kid(SigningAlgorithm::RS256);
    /// issuer.rotate_keys();
    /// assert_ne!(issuer.current_kid(SigningAlgorithm::RS256), old);
    /// let published = issuer.jwks();
    /// assert!(published["keys"].as_array().unwrap().iter().all(|key| key["kid"] != old.as_str()));
    /// # }
    /// ```
    pub fn rotate_keys(&self) {
        rotate(&mut lock(&self.state.keys));
    }

    /// Publishes one more key of the type `alg` needs, with `alg` in its JWK, and returns
    /// its `kid`. Sign with it through [`TokenBuilder::kid`].
    ///
    /// ```
    /// use smart_auth::{SigningAlgorithm, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let kid = issuer.add_key(SigningAlgorithm::ES256);
    /// let token = issuer.token().alg(SigningAlgorithm::ES256).kid(&kid).sign();
    ///
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// assert!(verifier.verify(&token).await.is_ok());
    /// # Ok(()) }
    /// ```
    pub fn add_key(&self, alg: SigningAlgorithm) -> String {
        let mut keys = lock(&self.state.keys);
        let kid = format!(
            "extra-{}-{}",
            alg.name().to_ascii_lowercase(),
            keys.published.len()
        );
        let key = Arc::new(TestKey::generate(
            KeyType::for_algorithm(alg),
            kid.clone(),
            Some(alg),
        ));
        keys.published.push(key);
        kid
    }

    /// The public JWK Set as served.
    ///
    /// ```
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let jwks = issuer.jwks();
    /// let keys = jwks["keys"].as_array().unwrap();
    /// assert_eq!(keys.len(), 5); // RSA, P-256, P-384, P-521, Ed25519
    /// assert!(keys.iter().all(|key| key.get("d").is_none())); // public parts only
    /// # }
    /// ```
    pub fn jwks(&self) -> Value {
        let keys = lock(&self.state.keys);
        json!({ "keys": keys.published.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
    }

    /// How the JWK Set endpoint answers from now on.
    #[doc(hidden)]
    pub fn set_jwks_behaviour(&self, behaviour: JwksBehaviour) {
        *lock(&self.state.jwks) = behaviour;
    }

    /// Lets the requests held by [`JwksBehaviour::Gated`] be answered, and every later one
    /// at once.
    #[doc(hidden)]
    pub fn open_jwks_gate(&self) {
        self.state.jwks_gate.send_replace(true);
    }

    /// A `Cache-Control` header for JWK Set responses (default none).
    #[doc(hidden)]
    pub fn set_jwks_cache_control(&self, value: Option<&str>) {
        *lock(&self.state.cache_control) = value.map(str::to_owned);
    }

    /// The `issuer` written into the discovery documents (default: [`url`](Self::url)).
    #[doc(hidden)]
    pub fn set_discovery_issuer(&self, issuer: &str) {
        *lock(&self.state.discovery_issuer) = Some(issuer.to_owned());
    }

    /// The `jwks_uri` written into the discovery documents (default: [`jwks_uri`](Self::jwks_uri)).
    #[doc(hidden)]
    pub fn set_discovery_jwks_uri(&self, uri: &str) {
        *lock(&self.state.discovery_jwks_uri) = Some(uri.to_owned());
    }

    /// Makes `/.well-known/smart-configuration` answer 404, so that clients fall back to
    /// OpenID Connect discovery.
    #[doc(hidden)]
    pub fn disable_smart_configuration(&self) {
        *lock(&self.state.smart_configuration_enabled) = false;
    }

    /// How often `/.well-known/smart-configuration` was requested.
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// assert_eq!(issuer.smart_configuration_fetches(), 0); // building fetches nothing
    /// verifier.warm_up().await?;
    /// assert_eq!(issuer.smart_configuration_fetches(), 1);
    /// # Ok(()) }
    /// ```
    pub fn smart_configuration_fetches(&self) -> usize {
        self.state
            .smart_configuration_fetches
            .load(Ordering::SeqCst)
    }

    /// How often `/.well-known/openid-configuration` was requested.
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// verifier.warm_up().await?;
    /// // The SMART document answered, so OpenID discovery was never needed.
    /// assert_eq!(issuer.openid_configuration_fetches(), 0);
    /// # Ok(()) }
    /// ```
    pub fn openid_configuration_fetches(&self) -> usize {
        self.state
            .openid_configuration_fetches
            .load(Ordering::SeqCst)
    }

    /// How often the JWK Set was requested.
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// verifier.verify(&issuer.token().sign()).await?;
    /// verifier.verify(&issuer.token().sign()).await?;
    /// assert_eq!(issuer.jwks_fetches(), 1); // the key set is cached
    /// # Ok(()) }
    /// ```
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How often the redirect target of [`JwksBehaviour::Redirect`] was requested.
    #[doc(hidden)]
    pub fn jwks_redirect_target_fetches(&self) -> usize {
        self.state.jwks_copy_fetches.load(Ordering::SeqCst)
    }

    /// How many body bytes [`JwksBehaviour::Oversized`] handed to the connection.
    #[doc(hidden)]
    pub fn jwks_bytes_sent(&self) -> usize {
        self.state.jwks_bytes_sent.load(Ordering::SeqCst)
    }

    /// The headers of the latest JWK Set request.
    #[doc(hidden)]
    pub fn last_jwks_request_headers(&self) -> HeaderMap {
        lock(&self.state.last_jwks_headers).clone()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn discovery_issuer(state: &IssuerState) -> String {
    lock(&state.discovery_issuer)
        .clone()
        .unwrap_or_else(|| state.url.clone())
}

fn discovery_jwks_uri(state: &IssuerState) -> String {
    lock(&state.discovery_jwks_uri)
        .clone()
        .unwrap_or_else(|| format!("{}/jwks.json", state.url))
}

fn json_response(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn smart_configuration(State(state): State<Arc<IssuerState>>) -> Response {
    state
        .smart_configuration_fetches
        .fetch_add(1, Ordering::SeqCst);
    if !*lock(&state.smart_configuration_enabled) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let url = &state.url;
    json_response(&json!({
        "issuer": discovery_issuer(&state),
        "jwks_uri": discovery_jwks_uri(&state),
        "token_endpoint": format!("{url}/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": ["system/*.rs"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn openid_configuration(State(state): State<Arc<IssuerState>>) -> Response {
    state
        .openid_configuration_fetches
        .fetch_add(1, Ordering::SeqCst);
    let url = &state.url;
    json_response(&json!({
        "issuer": discovery_issuer(&state),
        "jwks_uri": discovery_jwks_uri(&state),
        "token_endpoint": format!("{url}/token"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

fn key_set(state: &IssuerState) -> Value {
    let keys = lock(&state.keys);
    json!({ "keys": keys.published.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
}

async fn jwks(State(state): State<Arc<IssuerState>>, headers: HeaderMap) -> Response {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    *lock(&state.last_jwks_headers) = headers;
    let behaviour = lock(&state.jwks).clone();
    let mut response = match behaviour {
        JwksBehaviour::Normal => json_response(&key_set(&state)),
        JwksBehaviour::Status(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        JwksBehaviour::Delay(delay) => {
            tokio::time::sleep(delay).await;
            json_response(&key_set(&state))
        }
        JwksBehaviour::Oversized(bytes) => oversized(bytes, Arc::clone(&state.jwks_bytes_sent)),
        JwksBehaviour::Redirect => (
            StatusCode::FOUND,
            [(header::LOCATION, format!("{}/jwks-copy.json", state.url))],
        )
            .into_response(),
        JwksBehaviour::Body(body) => {
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        JwksBehaviour::Gated => {
            let mut gate = state.jwks_gate.subscribe();
            // The sender lives in `state`, held here: never closed while waiting.
            let _ = gate.wait_for(|open| *open).await;
            json_response(&key_set(&state))
        }
    };
    let cache_control = lock(&state.cache_control)
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok());
    if let Some(value) = cache_control {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

async fn jwks_copy(State(state): State<Arc<IssuerState>>) -> Response {
    state.jwks_copy_fetches.fetch_add(1, Ordering::SeqCst);
    json_response(&key_set(&state))
}

/// A JSON-looking body of `total` bytes produced chunk by chunk, counting what it handed
/// out, so a test can see that the client stopped reading.
fn oversized(total: usize, sent: Arc<AtomicUsize>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let stream = futures_util::stream::unfold(0usize, move |produced| {
        let sent = Arc::clone(&sent);
        async move {
            if produced >= total {
                return None;
            }
            let size = CHUNK.min(total - produced);
            let mut chunk = vec![b' '; size];
            if produced == 0 {
                chunk[0] = b'{';
            }
            sent.fetch_add(size, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), produced + size))
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
