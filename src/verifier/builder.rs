//! [`VerifierBuilder`]: every setting of a [`TokenVerifier`], checked once in `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::{AudienceRule, TokenTypePolicy, TokenVerifier, VerifierConfig};
use crate::algorithm::SigningAlgorithm;
use crate::claims::{ClaimNames, SmartClaims};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, Refusal};
use crate::fetch::{Fetcher, default_client, is_allowed_url, is_uri_character};

/// The longest [`VerifierBuilder::fetch_timeout`] accepted.
const MAX_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The shortest fetch timeout: less (5 ms meant as 5 s) would fail every fetch, and
/// every request with it, with 503.
const MIN_FETCH_TIMEOUT: Duration = Duration::from_millis(100);
/// The largest [`VerifierBuilder::max_response_size`] accepted.
const MAX_RESPONSE_SIZE: usize = 16 * 1024 * 1024;
/// The largest [`VerifierBuilder::max_token_length`] accepted.
const MAX_TOKEN_LENGTH: usize = 1024 * 1024;
/// The least `max_response_size`: a small metadata document or key set fits.
const MIN_RESPONSE_SIZE: usize = 4 * 1024;
/// The least `max_token_length`: a short signed token fits.
const MIN_TOKEN_LENGTH: usize = 512;
use crate::jwks::{KeySource, KeyStore, RefreshPolicy, StaticKeys};
use crate::token_cache::{TokenCache, TokenCachePolicy};

/// Builds a [`TokenVerifier`]: the verification of one issuer's tokens, with no HTTP
/// framework in it. Get one from [`TokenVerifier::builder`].
///
/// Every setting has a secure default; `build` checks them all and does no network I/O.
/// Hand the builder to [`SmartAuthBuilder::issuer`](crate::SmartAuthBuilder::issuer) to
/// accept this issuer's tokens in a layer, or build it and call
/// [`verify`](TokenVerifier::verify) from any transport.
///
/// ```
/// use std::time::Duration;
/// use smart_auth::{SigningAlgorithm, TokenTypePolicy, TokenVerifier};
///
/// let verifier = TokenVerifier::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .algorithms([SigningAlgorithm::RS384, SigningAlgorithm::ES384])
///     .token_type(TokenTypePolicy::Rfc9068)
///     .leeway(Duration::from_secs(30))
///     .build()
///     .expect("valid configuration");
/// assert_eq!(verifier.issuer(), "https://auth.example.org");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct VerifierBuilder {
    issuer: String,
    audiences: Vec<String>,
    /// The layer's FHIR base, when a layer builds this verifier: a location of this server
    /// in `authorization_details`, whatever the audiences are.
    fhir_base: Option<String>,
    any_audience: bool,
    leeway: Duration,
    algorithms: Vec<SigningAlgorithm>,
    token_type: TokenTypePolicy,
    scope_claims: Vec<String>,
    client_id_claims: Vec<String>,
    patient_claims: Vec<String>,
    fhir_user_claims: Vec<String>,
    required_claims: Vec<(String, String)>,
    clients_without_audience: Vec<String>,
    require_client_id: bool,
    scope_context_separator: Option<char>,
    http_client: Option<reqwest::Client>,
    fetch_timeout: Duration,
    max_response_size: usize,
    jwks_uri: Option<String>,
    static_keys: Option<StaticKeys>,
    refresh: RefreshPolicy,
    clock: Arc<dyn Clock>,
    max_token_length: usize,
    #[cfg(feature = "introspection")]
    introspection: Option<crate::introspection::Introspection>,
    token_cache: TokenCachePolicy,
    validator: Option<Validator>,
}

/// A validation hook: [`VerifierBuilder::validate`].
#[derive(Clone)]
pub(crate) struct Validator(Arc<ValidateFn>);

/// The signature of a validation hook.
type ValidateFn = dyn Fn(&SmartClaims) -> Result<(), Refusal> + Send + Sync;

impl Validator {
    pub(crate) fn check(&self, claims: &SmartClaims) -> Result<(), Refusal> {
        (self.0)(claims)
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Validator(..)")
    }
}

impl VerifierBuilder {
    pub(crate) fn new(issuer: impl Into<String>) -> Self {
        // The SMART claim names, said once (in `ClaimNames`).
        let names = ClaimNames::default();
        Self {
            issuer: issuer.into(),
            audiences: Vec::new(),
            fhir_base: None,
            any_audience: false,
            leeway: Duration::from_secs(60),
            algorithms: SigningAlgorithm::DEFAULT.to_vec(),
            token_type: TokenTypePolicy::default(),
            scope_claims: names.scope,
            client_id_claims: names.client_id,
            patient_claims: names.patient,
            fhir_user_claims: names.fhir_user,
            required_claims: Vec::new(),
            clients_without_audience: Vec::new(),
            require_client_id: false,
            scope_context_separator: None,
            http_client: None,
            fetch_timeout: Duration::from_secs(5),
            max_response_size: 1024 * 1024,
            jwks_uri: None,
            static_keys: None,
            refresh: RefreshPolicy::default(),
            clock: Arc::new(SystemClock),
            max_token_length: 16 * 1024,
            #[cfg(feature = "introspection")]
            introspection: None,
            token_cache: TokenCachePolicy::default(),
            validator: None,
        }
    }

    /// The first configured audience, if any (the layer's default realm).
    pub(crate) fn first_audience(&self) -> Option<&str> {
        self.audiences.first().map(String::as_str)
    }

    /// The FHIR base URL as the audience, unless the user chose audiences (or any
    /// audience) for this issuer: as written, and with or without one final `/` (clients
    /// name the base as they know it; AWS HealthLake's endpoints end in `/`). An audience
    /// the user gives is compared exactly.
    pub(crate) fn default_audience(mut self, base: &str) -> Self {
        self.fhir_base = Some(base.to_owned());
        if self.audiences.is_empty() && !self.any_audience {
            let other_spelling = match base.strip_suffix('/') {
                Some(without) => without.to_owned(),
                None => format!("{base}/"),
            };
            self.audiences.push(base.to_owned());
            self.audiences.push(other_spelling);
        }
        self
    }

    /// Adds an accepted audience: a token's `aud` must contain at least one of them. Use
    /// your FHIR base URL.
    ///
    /// **Without any audience**, the layer cannot tell whom a token was minted for, so it
    /// accepts only tokens whose `typ` header says they are access tokens (`at+jwt` or
    /// `application/at+jwt`, RFC 9068): the issuer's ID tokens and other JWTs, whose `aud`
    /// is some client, are refused with 401 `invalid_token`, and a warning is logged the
    /// first time. Many issuers type their access tokens `JWT`; with them, configure the
    /// audience (RFC 9068 section 4 requires the resource server to check it).
    /// [Introspection](Self::introspection) needs an audience: its answers carry no `typ`
    /// ([`ConfigError::IntrospectionWithoutAudience`] otherwise).
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// **Insecure:** accepts tokens whatever their `aud`, including tokens the issuer minted
    /// for other resource servers and, under the default token type policy (which lets
    /// `JWT`-typed tokens through), its ID tokens. Only for a deployment
    /// where every token of the issuer is meant for this API; prefer
    /// [`audience`](Self::audience). A warning is logged at first use. Combined with
    /// `audience`, `build` fails with [`ConfigError::ConflictingAudience`].
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .insecure_accept_any_audience()
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn insecure_accept_any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Also accepts a token whose `aud` names no audience (absent or an empty list) when
    /// its client id (read from [`client_id_claims`](Self::client_id_claims)) is one of
    /// `clients`. A token with an `aud` is still checked against the
    /// [audiences](Self::audience), and a token of any other client without one is still
    /// refused (401 `invalid_token`, [`ErrorKind::WrongAudience`](crate::ErrorKind::WrongAudience)).
    ///
    /// For issuers whose access tokens carry no `aud` at all: Amazon Cognito puts the app
    /// client in `client_id` and `token_use: "access"` beside it (require that too, with
    /// [`required_claim`](Self::required_claim); its ID tokens name the client in `aud`
    /// and are refused). The binding is to the client, not to this server: every API that
    /// trusts the same client accepts the same token. Without any audience, tokens that
    /// have one are all refused, and [introspection](Self::introspection) still needs one.
    /// Combined with [`insecure_accept_any_audience`](Self::insecure_accept_any_audience),
    /// `build` fails with [`ConfigError::ConflictingAudience`]; with a blank client id,
    /// with [`ConfigError::InvalidClaimRule`].
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// // Amazon Cognito access tokens.
    /// let verifier = TokenVerifier::builder(
    ///     "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example",
    /// )
    /// .accept_missing_audience_for_clients(["4p5q6r7s8t9u0v1w2x3y4z5a6b"])
    /// .required_claim("token_use", "access")
    /// .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn accept_missing_audience_for_clients<I, S>(mut self, clients: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.clients_without_audience = clients.into_iter().map(Into::into).collect();
        self
    }

    /// Every accepted token must name its client (in one of the
    /// [`client_id_claims`](Self::client_id_claims), not blank); a token without one is
    /// refused with 401 `invalid_token` ([`ErrorKind::InvalidClaim`](crate::ErrorKind::InvalidClaim)),
    /// introspection answers too. RFC 9068 requires `client_id` in access tokens.
    /// Microsoft Entra ID's access tokens always carry `azp` (v2) or `appid` (v1) and type
    /// themselves `JWT` like its ID tokens, which carry neither: there this refuses an ID
    /// token whose audience is the API's own app registration. It is no defence against
    /// ID tokens in general: OpenID Connect lets them carry `azp` (Google's do), a default
    /// client-id claim. For those issuers use [`TokenTypePolicy::Rfc9068`] (which requires a
    /// client id too) or an audience that names the API, never a client.
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// // Entra ID v2 access tokens: `aud` is the API's application (client) ID.
    /// let verifier = TokenVerifier::builder(
    ///     "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0",
    /// )
    /// .audience("11111111-2222-3333-4444-555555555555")
    /// .require_client_id()
    /// .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn require_client_id(mut self) -> Self {
        self.require_client_id = true;
        self
    }

    /// A claim every accepted token must carry: a JSON string equal to `value`, byte for
    /// byte. Checked once per token, after its signature; a token without it, with another
    /// value or another JSON type is refused with 401 `invalid_token`
    /// ([`ErrorKind::RefusedByPolicy`](crate::ErrorKind::RefusedByPolicy)). Call it again
    /// for more claims; all must hold. Use it for what the issuer marks in a claim of its
    /// own, such as Cognito's `token_use: "access"` or a tenant. A blank name is refused
    /// by `build` ([`ConfigError::InvalidClaimRule`]).
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .required_claim("tenant", "north")
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn required_claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.required_claims.push((name.into(), value.into()));
        self
    }

    /// The character the issuer writes in SMART scopes in place of the `/` after
    /// `patient`, `user` or `system` (Microsoft Entra ID does not allow `/` in a scope
    /// name, so SMART scopes registered there read `patient.Observation.read` or
    /// `system-Patient.rs`). Each scope token that starts with one of those contexts
    /// followed by `separator`, and holds no `/` before a granular query's `?`, is read
    /// with that first `separator` as `/`, and the resource `all` (Microsoft's spelling of
    /// every type: `patient.all.read`) as `*`; every other scope is read as written.
    /// Handlers, scope enforcement and
    /// [`SmartClaims::scopes`](crate::SmartClaims::scopes) see the SMART spelling; the
    /// scope named in an `insufficient_scope` refusal is written the issuer's way
    /// (`system.Observation.rs`), so that a client can ask for it. The
    /// separator must be a visible ASCII character other than `/`, `"` and `\`
    /// ([`ConfigError::InvalidClaimRule`] otherwise).
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// let verifier = TokenVerifier::builder("https://login.microsoftonline.com/tenant-id/v2.0")
    ///     .audience("11111111-2222-3333-4444-555555555555") // the API's client ID
    ///     .scope_context_separator('.')
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn scope_context_separator(mut self, separator: char) -> Self {
        self.scope_context_separator = Some(separator);
        self
    }

    /// Clock tolerance for `exp`, `nbf` and `iat` (default 60 s, at most 10 min).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let just_expired = issuer.token().expires_in_secs(-30).sign();
    ///
    /// let tolerant = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// assert!(tolerant.verify(&just_expired).await.is_ok()); // within the default 60 s
    ///
    /// let strict = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .leeway(Duration::ZERO)
    ///     .build()?;
    /// assert_eq!(strict.verify(&just_expired).await.unwrap_err().kind(), ErrorKind::Expired);
    ///
    /// let too_long = TokenVerifier::builder(issuer.url()).leeway(Duration::from_secs(3600)).build();
    /// assert!(matches!(too_long, Err(ConfigError::InvalidLimit { field: "leeway" })));
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The accepted signature algorithms (default: all of [`SigningAlgorithm::DEFAULT`]),
    /// by the name the token's header gives: allowing `EdDSA` does not allow RFC 9864's
    /// `Ed25519`, although the signature is the same.
    ///
    /// A key is bound to the algorithm its JWK's `alg` names. A key published without
    /// `alg` (Entra ID, AD FS and others publish RSA keys so) verifies every allowed
    /// algorithm of its type: an RSA key RS256 to RS512 and PS256 to PS512. RFC 8725
    /// section 3.1 wants each key used with one algorithm only: list the issuer's
    /// algorithm here to bind its keys to it.
    ///
    /// ```
    /// use smart_auth::{ConfigError, SigningAlgorithm, TokenVerifier};
    ///
    /// // SMART Backend Services names RS384 and ES384.
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .algorithms([SigningAlgorithm::RS384, SigningAlgorithm::ES384])
    ///     .build();
    /// assert!(verifier.is_ok());
    ///
    /// let none = TokenVerifier::builder("https://auth.example.org").algorithms([]).build();
    /// assert!(matches!(none, Err(ConfigError::NoAlgorithms)));
    /// ```
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Which `typ` headers are accepted (default [`TokenTypePolicy::Lenient`]).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{ErrorKind, TokenTypePolicy, TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .token_type(TokenTypePolicy::AtJwt)
    ///     .build()?;
    /// assert!(verifier.verify(&issuer.token().sign()).await.is_ok()); // typed `at+jwt`
    ///
    /// let id_token_like = issuer.token().header("typ", "JWT").sign();
    /// let error = verifier.verify(&id_token_like).await.unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::UnsupportedTokenType);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn token_type(mut self, policy: TokenTypePolicy) -> Self {
        self.token_type = policy;
        self
    }

    /// The claims to read scopes from, first present wins (default `scope`, `scp`). The
    /// value may be a space-separated string or an array of strings.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .scope_claims(["permissions", "scope"])
    ///     .build()?;
    /// let token = issuer
    ///     .token()
    ///     .claim("permissions", serde_json::json!(["system/Patient.rs", "system/Observation.rs"]))
    ///     .sign();
    /// let claims = verifier.verify(&token).await?;
    /// assert_eq!(claims.scopes(), ["system/Patient.rs", "system/Observation.rs"]);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn scope_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The claims to read the client id from, first present wins (default `client_id`,
    /// `azp`, `cid`, `appid`).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .client_id_claims(["clientId"])
    ///     .build()?;
    /// let token = issuer.token().without("client_id").claim("clientId", "app-7").sign();
    /// assert_eq!(verifier.verify(&token).await?.client_id(), Some("app-7"));
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn client_id_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.client_id_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The claims to read the patient in context from, first present wins (default
    /// `patient`), for issuers that put it elsewhere. The value is checked as the `patient`
    /// claim is: a FHIR id, or a `Patient/{id}` reference read as its id; any other string
    /// is no launch context, another JSON type makes the token invalid.
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .patient_claims(["launch_response_patient", "patient"])
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn patient_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.patient_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The claims to read the user's FHIR resource from, first present wins (default
    /// `fhirUser`), for issuers that use another name such as `extension_fhirUser`. The
    /// value is checked as the `fhirUser` claim is: a blank string is absent, another JSON
    /// type makes the token invalid.
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .fhir_user_claims(["fhirUser", "extension_fhirUser"])
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn fhir_user_claims<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fhir_user_claims = names.into_iter().map(Into::into).collect();
        self
    }

    /// The HTTP client for every discovery, key and introspection request (proxies,
    /// custom roots). The layer's own limits still apply: per-request timeout, body cap,
    /// and no redirects (a response from another URL than the one asked for is refused;
    /// an introspection form is never sent again to a 307/308 target). A client that
    /// follows redirects still makes the redirected GET before its answer is refused:
    /// give it [`reqwest::redirect::Policy::none`] to avoid that. Plain `http` is allowed
    /// to loopback hosts, `localhost` among them, which the crate's own client resolves to
    /// 127.0.0.1 and ::1 only; this client resolves it as it is configured to (pin it with
    /// `resolve_to_addrs` if its resolver may answer otherwise).
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
    /// use smart_auth::TokenVerifier;
    /// let http = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .build()
    ///     .unwrap();
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .http_client(http)
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The time limit of each fetch, from connecting to the last body byte (default 5 s;
    /// 100 ms to 60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, TokenVerifier};
    ///
    /// let builder = || TokenVerifier::builder("https://auth.example.org").audience("https://fhir.example.org");
    /// assert!(builder().fetch_timeout(Duration::from_secs(2)).build().is_ok());
    /// let error = builder().fetch_timeout(Duration::from_secs(300)).build().unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "fetch_timeout" }));
    /// ```
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The largest discovery or key-set document read (default 1 MiB, at least 4 KiB, at
    /// most 16 MiB).
    ///
    /// ```
    /// use smart_auth::{ConfigError, TokenVerifier};
    ///
    /// let builder = || TokenVerifier::builder("https://auth.example.org").audience("https://fhir.example.org");
    /// assert!(builder().max_response_size(256 * 1024).build().is_ok());
    /// let error = builder().max_response_size(1024).build().unwrap_err(); // under 4 KiB
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "max_response_size" }));
    /// ```
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Uses this key-set URL instead of discovering it from the issuer. It may carry a
    /// query (Microsoft Entra ID serves an application's own signing keys at
    /// `…/discovery/v2.0/keys?appid=…`), never a fragment.
    ///
    /// ```
    /// use smart_auth::{ConfigError, TokenVerifier};
    ///
    /// let verifier = TokenVerifier::builder("https://login.microsoftonline.com/tenant-id/v2.0")
    ///     .audience("api://fhir")
    ///     .jwks_uri("https://login.microsoftonline.com/tenant-id/discovery/v2.0/keys?appid=app-id")
    ///     .build();
    /// assert!(verifier.is_ok());
    ///
    /// let plain_http = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("api://fhir")
    ///     .jwks_uri("http://keys.example.org/jwks.json")
    ///     .build();
    /// assert!(matches!(plain_http, Err(ConfigError::InvalidUrl { field: "jwks_uri", .. })));
    /// ```
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// Verifies tokens with these keys only, and never fetches any: no discovery, no key
    /// set request, no refresh ([`RefreshPolicy`] does not apply). A token whose `kid` is
    /// not among them is refused at once with 401 `invalid_token`. The issuer URL is still
    /// required: it is the `iss` tokens must carry. Combined with
    /// [`jwks_uri`](Self::jwks_uri), `build` fails with [`ConfigError::ConflictingKeySource`].
    ///
    /// ```
    /// use smart_auth::{StaticKeys, TokenVerifier};
    ///
    /// let keys = StaticKeys::from_jwks_json(r#"{"keys": [{
    ///     "kty": "OKP", "crv": "Ed25519", "kid": "signer-2024",
    ///     "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"
    /// }]}"#)?;
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .static_keys(keys)
    ///     .build()?;
    /// assert_eq!(verifier.key_cache_status().keys, 1);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn static_keys(mut self, keys: StaticKeys) -> Self {
        self.static_keys = Some(keys);
        self
    }

    /// How the key cache refreshes (see [`RefreshPolicy`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{ConfigError, RefreshPolicy, TokenVerifier};
    ///
    /// let builder = || TokenVerifier::builder("https://auth.example.org").audience("https://fhir.example.org");
    /// let policy = RefreshPolicy::default().max_stale(Duration::from_secs(6 * 3600));
    /// assert!(builder().refresh_policy(policy).build().is_ok());
    ///
    /// let never = RefreshPolicy::default().failure_cooldown(Duration::ZERO);
    /// let error = builder().refresh_policy(never).build().unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidLimit { field: "failure_cooldown" }));
    /// ```
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.refresh = policy;
        self
    }

    /// The time source (default the system clock). Tests pass a
    /// [`ManualClock`](crate::ManualClock); a server must not (with a clock that does not
    /// move, tokens valid at start-up never expire).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{ManualClock, TokenVerifier, testing::TestIssuer};
    ///
    /// // A token minted in November 2023, verified by a verifier that lives then too.
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .clock(clock)
    ///     .build()?;
    /// let claims = verifier.verify(&issuer.token().sign()).await?;
    /// assert_eq!(claims.iat(), Some(1_700_000_000));
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The longest token accepted, checked before any parsing (default 16 KiB, at least
    /// 512 bytes, at most 1 MiB).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .max_token_length(2048)
    ///     .build()?;
    /// let bulky = issuer.token().claim("padding", "x".repeat(4096)).sign();
    /// // Refused before parsing, and before any key is fetched.
    /// assert_eq!(verifier.verify(&bulky).await.unwrap_err().kind(), ErrorKind::TokenTooLarge);
    /// assert_eq!(issuer.jwks_fetches(), 0);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn max_token_length(mut self, bytes: usize) -> Self {
        self.max_token_length = bytes;
        self
    }

    /// Validates tokens by RFC 7662 introspection, instead of or besides local JWT
    /// validation (see [`Introspection`](crate::Introspection)).
    ///
    /// ```
    /// use smart_auth::{ConfigError, Introspection, IntrospectionAuth, IntrospectionMode, TokenVerifier};
    ///
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .introspection(
    ///         Introspection::new(IntrospectionAuth::basic("resource-server", "s3cret"))
    ///             .mode(IntrospectionMode::NonJwtTokens),
    ///     )
    ///     .build();
    /// assert!(verifier.is_ok());
    ///
    /// // The settings are checked with the verifier's.
    /// let bad = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .introspection(Introspection::new(IntrospectionAuth::bearer("not a b64token")))
    ///     .build();
    /// assert!(matches!(bad, Err(ConfigError::InvalidIntrospectionCredentials)));
    /// ```
    #[cfg(feature = "introspection")]
    pub fn introspection(mut self, introspection: crate::introspection::Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }

    /// How verified tokens are cached (default [`TokenCachePolicy::default`]: on, 10,000
    /// tokens, 5 min).
    ///
    /// With the cache, a request whose token this layer verified before (a token is stored
    /// the second time it verifies) skips parsing and the signature check; `exp`, `nbf`
    /// and `iat` are still checked on every request against the configured clock, with the
    /// same leeway. The cache belongs to this verifier (and its clones). Trade-off: a key removed from
    /// the issuer's JWK Set stays trusted for tokens already cached until the key set is
    /// refetched, the entry's max age passes or the token expires (see
    /// [`TokenCachePolicy`]). Use [`no_token_cache`](Self::no_token_cache) to verify every
    /// signature.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{TokenCachePolicy, TokenVerifier};
    ///
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .token_cache(TokenCachePolicy::default().max_age(Duration::from_secs(60)))
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn token_cache(mut self, policy: TokenCachePolicy) -> Self {
        self.token_cache = policy;
        self
    }

    /// Turns the verified-token cache off: every request's token is parsed and its
    /// signature checked. The same as `.token_cache(TokenCachePolicy::disabled())`.
    ///
    /// ```
    /// use smart_auth::TokenVerifier;
    ///
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .no_token_cache()
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn no_token_cache(self) -> Self {
        self.token_cache(TokenCachePolicy::disabled())
    }

    /// A check of your own, run on every accepted token after every check of the token by
    /// this crate (for a cached token too, on every request; in the layer, before scope
    /// enforcement): return a [`Refusal`] to refuse the
    /// request with 401 `invalid_token` ([`Refusal::InvalidToken`]) or 403
    /// `insufficient_scope` ([`Refusal::InsufficientScope`]). The answer keeps RFC 6750's
    /// form and the layer's realm; the hook chooses the refusal, not the status. Keep it
    /// fast and free of I/O: it runs inline on the request path. Called again, it adds a
    /// check: every one runs, in the order added, and the first refusal answers (a second
    /// call never drops the first check).
    ///
    /// ```
    /// use smart_auth::{Refusal, TokenVerifier};
    ///
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .validate(|claims| match claims.tenant() {
    ///         Some("north") => Ok(()),
    ///         _ => Err(Refusal::InvalidToken),
    ///     })
    ///     // A second check runs after the first.
    ///     .validate(|claims| match claims.client_id() {
    ///         Some("blocked-client") => Err(Refusal::InvalidToken),
    ///         _ => Ok(()),
    ///     })
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn validate<F>(mut self, check: F) -> Self
    where
        F: Fn(&SmartClaims) -> Result<(), Refusal> + Send + Sync + 'static,
    {
        self.validator = Some(match self.validator.take() {
            None => Validator(Arc::new(check)),
            Some(earlier) => Validator(Arc::new(move |claims: &SmartClaims| {
                earlier.check(claims)?;
                check(claims)
            })),
        });
        self
    }

    /// Checks the settings and builds the verifier. No network I/O.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    ///
    /// ```
    /// use smart_auth::{ConfigError, TokenVerifier};
    ///
    /// let verifier = TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?;
    /// assert_eq!(verifier.issuer(), "https://auth.example.org");
    ///
    /// // An issuer the verifier fetches from (for its key set here) is `https`; plain
    /// // `http` is for loopback issuers, or for one only compared with `iss` (AD FS's).
    /// let error = TokenVerifier::builder("http://auth.example.org").build().unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidUrl { field: "issuer", .. }));
    /// let compared_only = TokenVerifier::builder("http://adfs.example.org/adfs/services/trust")
    ///     .audience("https://fhir.example.org/r4")
    ///     .jwks_uri("https://adfs.example.org/adfs/discovery/keys")
    ///     .build()?;
    /// assert_eq!(compared_only.issuer(), "http://adfs.example.org/adfs/services/trust");
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn build(self) -> Result<TokenVerifier, ConfigError> {
        // The issuer is fetched from (its metadata, for the key set or the introspection
        // endpoint) only when neither is configured: then it must be `https` (`http` for
        // loopback). An issuer only compared with `iss` may be any absolute URL: AD FS
        // writes `http://host/adfs/services/trust` into its access tokens.
        #[cfg(feature = "introspection")]
        let introspection_discovered = self
            .introspection
            .as_ref()
            .is_some_and(|settings| settings.endpoint.is_none());
        #[cfg(not(feature = "introspection"))]
        let introspection_discovered = false;
        let fetched_from =
            (self.jwks_uri.is_none() && self.static_keys.is_none()) || introspection_discovered;
        let issuer_url = checked_url_with(&self.issuer, "issuer", fetched_from)?;
        // The issuer is compared with each token's `iss` as written here; a spelling the
        // URL parser writes otherwise (an upper-case host, a default port) may not be the
        // one the authorization server writes.
        if issuer_url.as_str().trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            tracing::warn!(
                issuer = %self.issuer,
                normal = %issuer_url,
                "the issuer is not written in its normal form: tokens' iss must match it exactly"
            );
        }
        self.check_claim_rules()?;
        let source = match (&self.jwks_uri, self.static_keys) {
            (Some(_), Some(_)) => return Err(ConfigError::ConflictingKeySource),
            (None, Some(keys)) => KeySource::Static(keys),
            (Some(uri), None) => KeySource::Fixed(checked_url(uri, "jwks_uri")?),
            (None, None) => KeySource::Discover {
                issuer: self.issuer.clone(),
            },
        };
        if self.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        // Static keys none of which verifies an accepted algorithm would refuse every
        // token as invalid: a configuration error, said at start-up.
        if let KeySource::Static(keys) = &source
            && !keys.verifies_any_of(&self.algorithms)
        {
            return Err(ConfigError::InvalidStaticKeys {
                reason: "no key verifies any of the accepted algorithms",
            });
        }
        for (names, field) in [
            (&self.scope_claims, "scope_claims"),
            (&self.client_id_claims, "client_id_claims"),
            (&self.patient_claims, "patient_claims"),
            (&self.fhir_user_claims, "fhir_user_claims"),
        ] {
            if names.is_empty() || names.iter().any(|name| !is_clean_name(name)) {
                return Err(ConfigError::InvalidClaimNames { field });
            }
        }
        // Each bound has a ceiling too: a value meant in other units (a timeout in
        // milliseconds) must not hold requests for hours or lift the size caps; and the
        // sizes a floor, so that one meant in KiB or MiB does not refuse every token or
        // make every fetch fail.
        let limits = [
            (
                !(MIN_FETCH_TIMEOUT..=MAX_FETCH_TIMEOUT).contains(&self.fetch_timeout),
                "fetch_timeout",
            ),
            (
                !(MIN_RESPONSE_SIZE..=MAX_RESPONSE_SIZE).contains(&self.max_response_size),
                "max_response_size",
            ),
            (
                !(MIN_TOKEN_LENGTH..=MAX_TOKEN_LENGTH).contains(&self.max_token_length),
                "max_token_length",
            ),
            (self.leeway > Duration::from_secs(600), "leeway"),
        ];
        if let Some((_, field)) = limits.into_iter().find(|(bad, _)| *bad) {
            return Err(ConfigError::InvalidLimit { field });
        }
        self.refresh.validate()?;
        self.token_cache.validate()?;
        // A blank audience would accept tokens with a blank `aud`; one with whitespace
        // around it or a control character in it (a value read from a file with its
        // newline) names no real audience.
        if self
            .audiences
            .iter()
            .any(|audience| !is_clean_name(audience))
        {
            return Err(ConfigError::InvalidClaimRule { field: "audience" });
        }
        let no_audience = self.audiences.is_empty();
        // This server's FHIR base and its audiences: the locations of a grant meant for it
        // in `authorization_details`.
        let mut locations = self.audiences.clone();
        locations.extend(self.fhir_base.clone());
        let audience = match (no_audience, self.any_audience) {
            (false, true) => return Err(ConfigError::ConflictingAudience),
            (_, true) if !self.clients_without_audience.is_empty() => {
                return Err(ConfigError::ConflictingAudience);
            }
            (true, true) => AudienceRule::AnyInsecure,
            (true, false) if self.clients_without_audience.is_empty() => {
                AudienceRule::TypedAccessTokensOnly
            }
            (_, false) => AudienceRule::OneOf {
                audiences: self.audiences,
                clients_without_audience: self.clients_without_audience,
            },
        };
        let fetcher = Fetcher {
            client: self
                .http_client
                .map_or_else(|| default_client(self.fetch_timeout), Ok)
                .map_err(|_| ConfigError::HttpClient)?,
            timeout: self.fetch_timeout,
            max_body: self.max_response_size,
        };
        #[cfg(feature = "introspection")]
        let introspection = match self.introspection {
            // Accepted clients are no audience: an answer without `aud` names no client
            // check of its own.
            Some(_) if no_audience && !self.any_audience => {
                return Err(ConfigError::IntrospectionWithoutAudience);
            }
            // An answer's audience cannot be required where every audience is accepted.
            Some(settings) if settings.require_audience && self.any_audience => {
                return Err(ConfigError::ConflictingAudience);
            }
            Some(settings) => {
                settings.validate()?;
                if let Some(endpoint) = &settings.endpoint {
                    checked_url(endpoint, "introspection endpoint")?;
                }
                Some(Arc::new(crate::introspection::Introspector::new(
                    settings,
                    self.issuer.clone(),
                    fetcher.clone(),
                    Arc::clone(&self.clock),
                )))
            }
            None => None,
        };
        let keys = KeyStore::new(source, fetcher, self.refresh, Arc::clone(&self.clock));
        let mut algorithms = self.algorithms;
        algorithms.dedup();
        let config = VerifierConfig {
            issuer: self.issuer,
            audience,
            leeway_secs: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            algorithms,
            token_type: self.token_type,
            require_client_id: self.require_client_id,
            claim_names: ClaimNames {
                scope: self.scope_claims,
                client_id: self.client_id_claims,
                patient: self.patient_claims,
                fhir_user: self.fhir_user_claims,
                required: self.required_claims,
                scope_context_separator: self.scope_context_separator,
                locations,
            },
            max_token_length: self.max_token_length,
            clock: self.clock,
            validator: self.validator,
            #[cfg(feature = "introspection")]
            introspection,
        };
        Ok(TokenVerifier::new(
            config,
            keys,
            TokenCache::new(&self.token_cache),
        ))
    }
}

impl VerifierBuilder {
    /// The required claims, the clients accepted without an audience and the scope
    /// separator, as `build` accepts them.
    fn check_claim_rules(&self) -> Result<(), ConfigError> {
        // A value may be empty, but like a name it never has whitespace around it or a
        // control character in it (a value read from a file with its newline): compared
        // byte for byte, it would refuse every token.
        if self.required_claims.iter().any(|(name, value)| {
            !is_clean_name(name) || (!value.is_empty() && !is_clean_name(value))
        }) {
            return Err(ConfigError::InvalidClaimRule {
                field: "required_claim",
            });
        }
        if self
            .clients_without_audience
            .iter()
            .any(|client| !is_clean_name(client))
        {
            return Err(ConfigError::InvalidClaimRule {
                field: "accept_missing_audience_for_clients",
            });
        }
        if let Some(separator) = self.scope_context_separator {
            let usable = separator.is_ascii_graphic() && !matches!(separator, '/' | '"' | '\\');
            if !usable {
                return Err(ConfigError::InvalidClaimRule {
                    field: "scope_context_separator",
                });
            }
        }
        Ok(())
    }
}

/// Whether a configured name or value (an audience, a client id, a claim name) is one a
/// token can carry: not blank, without whitespace around it, without control characters
/// or invisible format characters (a byte order mark or a zero-width space left by an
/// editor, a bidirectional override).
pub(crate) fn is_clean_name(text: &str) -> bool {
    !text.trim().is_empty()
        && text.trim() == text
        && !text.chars().any(|c| {
            c.is_control()
                || matches!(
                    c,
                    '\u{00ad}'
                        | '\u{061c}'
                        | '\u{180e}'
                        | '\u{200b}'..='\u{200f}'
                        | '\u{2028}'..='\u{202e}'
                        | '\u{2060}'..='\u{206f}'
                        | '\u{feff}'
                        | '\u{fff9}'..='\u{fffb}'
                        | '\u{e0000}'..='\u{e007f}'
                )
        })
}

/// An absolute `https` URL (or `http` to loopback) without a fragment, and without a
/// query except for a `jwks_uri` or an introspection endpoint.
pub(crate) fn checked_url(value: &str, field: &'static str) -> Result<Url, ConfigError> {
    checked_url_with(value, field, true)
}

/// [`checked_url`], with the scheme rule only for a URL that is `fetched` (one only
/// compared may be `http` to any host).
fn checked_url_with(value: &str, field: &'static str, fetched: bool) -> Result<Url, ConfigError> {
    // The URL parser drops whitespace and tabs and resolves dot segments, but the text is
    // what is compared (the issuer with `iss`) or fetched: it must mean one URL only.
    if !value.bytes().all(is_uri_character) {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "holds a character a URI does not (whitespace, a control character, non-ASCII)",
        });
    }
    if has_dot_segment(value) {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "has a `.` or `..` path segment",
        });
    }
    let url = Url::parse(value).map_err(|_| ConfigError::InvalidUrl {
        field,
        reason: "not an absolute URL",
    })?;
    if fetched && !is_allowed_url(&url) {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must be https (http only for loopback hosts)",
        });
    }
    let is_web_url = matches!(url.scheme(), "https" | "http") && url.host().is_some();
    if !(fetched || is_web_url) {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must be an http or https URL",
        });
    }
    // A key set or introspection endpoint may need a query (Microsoft Entra ID serves an
    // application's own signing keys at `.../keys?appid=...`); an issuer or FHIR base is
    // compared as a whole and may not carry one. No URL here may carry a fragment.
    let query_allowed = matches!(field, "jwks_uri" | "introspection endpoint");
    if (url.query().is_some() && !query_allowed) || url.fragment().is_some() {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: if query_allowed {
                "must not have a fragment"
            } else {
                "must not have a query or fragment"
            },
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must not carry credentials",
        });
    }
    Ok(url)
}

/// Whether the path of `value` (after `scheme://authority`) has a `.` or `..` segment, in
/// any spelling (`%2e`, `%2E`).
fn has_dot_segment(value: &str) -> bool {
    let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    let before_query = after_scheme.split(['?', '#']).next().unwrap_or_default();
    let path = before_query.find('/').map_or("", |at| &before_query[at..]);
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An issuer (and any configured URL) means one URL only: no whitespace, control
    /// character or non-ASCII character the URL parser would drop or encode, no dot
    /// segment it would resolve (the issuer is compared as written, and its discovery URL
    /// must not leave its path). Audiences with whitespace or control characters in them
    /// are refused too.
    #[test]
    fn issuers_and_audiences_mean_one_thing() {
        let issuer = |value: &str| TokenVerifier::builder(value).build().map(|_| ());
        for bad in [
            " https://as.example",
            "https://as.example\n",
            "https://as.example/\r",
            "https://as.exa\tmple",
            "https://as.example/t enant",
            "https://as.example/tenant/..",
            "https://as.example/tenant/.",
            "https://as.example/t/%2e%2e",
            "https://as.example/t/%2E/x",
            "https://as.example/é",
            "https://as.example/a\\b",
            "https://as.example/{tenant}",
        ] {
            assert!(
                matches!(
                    issuer(bad),
                    Err(ConfigError::InvalidUrl {
                        field: "issuer",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        for good in [
            "https://as.example",
            "https://as.example/",
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
            "https://as.example/realms/a.b/..x",
            "http://127.0.0.1:8080/realms/fhir",
        ] {
            assert!(issuer(good).is_ok(), "{good:?}");
        }
        // Only the path's segments count: a query may hold `/..` (a key set's URL).
        assert!(!has_dot_segment("https://keys.example?x=/.."));
        assert!(!has_dot_segment("https://keys.example/a?x=/../b"));
        assert!(has_dot_segment("https://keys.example/a/../b?x=1"));
        for bad in [
            " https://api.example/fhir",
            "https://api.example/fhir\n",
            "a\tb",
            "x\u{a0}",
        ] {
            assert_eq!(
                TokenVerifier::builder("https://as.example")
                    .audience(bad)
                    .build()
                    .map(|_| ())
                    .unwrap_err(),
                ConfigError::InvalidClaimRule { field: "audience" },
                "{bad:?}"
            );
        }
        // The same rule for the other names and values a token is compared with.
        let base = || TokenVerifier::builder("https://as.example").audience("https://api.example");
        for bad in [
            "app-7\n",
            " app",
            "app ",
            "a\u{0}b",
            "",
            "\u{feff}app",
            "a\u{200b}",
        ] {
            let rules: [(VerifierBuilder, ConfigError); 5] = [
                (
                    base().accept_missing_audience_for_clients([bad]),
                    ConfigError::InvalidClaimRule {
                        field: "accept_missing_audience_for_clients",
                    },
                ),
                (
                    base().required_claim(bad, "north"),
                    ConfigError::InvalidClaimRule {
                        field: "required_claim",
                    },
                ),
                (
                    base().client_id_claims([bad]),
                    ConfigError::InvalidClaimNames {
                        field: "client_id_claims",
                    },
                ),
                (
                    base().scope_claims(["scope", bad]),
                    ConfigError::InvalidClaimNames {
                        field: "scope_claims",
                    },
                ),
                (
                    base().patient_claims([bad]),
                    ConfigError::InvalidClaimNames {
                        field: "patient_claims",
                    },
                ),
            ];
            for (builder, expected) in rules {
                assert_eq!(
                    builder.build().map(|_| ()).unwrap_err(),
                    expected,
                    "{bad:?}"
                );
            }
            if !bad.is_empty() {
                assert_eq!(
                    base()
                        .required_claim("tenant", bad)
                        .build()
                        .map(|_| ())
                        .unwrap_err(),
                    ConfigError::InvalidClaimRule {
                        field: "required_claim"
                    },
                    "{bad:?}"
                );
            }
        }
        // A required value may be empty.
        assert!(base().required_claim("tenant", "").build().is_ok());
        // An audience need not be a URL (Entra ID client ids, Auth0 identifiers).
        assert!(
            TokenVerifier::builder("https://as.example")
                .audience("api://fhir-api")
                .audience("00000000-0000-0000-0000-000000000001")
                .build()
                .is_ok()
        );
    }

    /// The FHIR base names the audience with and without one final `/`; audiences the
    /// user gives are taken as written, and no default is added beside them.
    #[test]
    fn the_default_audience_has_both_spellings_of_the_base() {
        let audiences = |builder: VerifierBuilder| builder.audiences;
        assert_eq!(
            audiences(TokenVerifier::builder("https://as").default_audience("https://a/r4")),
            ["https://a/r4", "https://a/r4/"]
        );
        assert_eq!(
            audiences(TokenVerifier::builder("https://as").default_audience("https://a/r4/")),
            ["https://a/r4/", "https://a/r4"]
        );
        assert_eq!(
            audiences(
                TokenVerifier::builder("https://as")
                    .audience("https://a/r4")
                    .default_audience("https://a/r4")
            ),
            ["https://a/r4"]
        );
    }
}
