//! Minting tokens: [`TokenBuilder`].

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::issuer::TestIssuer;
use crate::algorithm::SigningAlgorithm;
use crate::clock::unix_seconds;
use crate::signing::KeyType;

/// A token being minted by a [`TestIssuer`]. Get one from [`TestIssuer::token`].
///
/// The defaults make a valid SMART Backend Services access token: header
/// `{"alg": "RS256", "typ": "at+jwt", "kid": …}` and claims `iss` (the issuer), `sub` and
/// `client_id` (`test-client`), `aud` (the issuer's audience), `iat` (now), `exp` (now +
/// 5 min), a random `jti` and `scope` `system/*.rs`.
///
/// ```no_run
/// # async fn run() {
/// use smart_auth::{SigningAlgorithm, testing::TestIssuer};
/// let issuer = TestIssuer::start().await;
/// let token = issuer
///     .token()
///     .alg(SigningAlgorithm::ES384)
///     .scope("system/Observation.rs")
///     .claim("patient", "123")
///     .expires_in_secs(60)
///     .sign();
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct TokenBuilder<'a> {
    issuer: &'a TestIssuer,
    alg: SigningAlgorithm,
    kid: Kid,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

#[derive(Debug)]
enum Kid {
    Default,
    Named(String),
    Omitted,
}

impl<'a> TokenBuilder<'a> {
    pub(crate) fn new(issuer: &'a TestIssuer, now: i64) -> Self {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).expect("system randomness");
        let claims = json!({
            "iss": issuer.url(),
            "sub": "test-client",
            "client_id": "test-client",
            "aud": issuer.audience(),
            "iat": now,
            "exp": now + 300,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "scope": "system/*.rs",
        });
        let Value::Object(claims) = claims else {
            unreachable!("a JSON object literal")
        };
        let mut header = Map::new();
        header.insert("typ".into(), json!("at+jwt"));
        Self {
            issuer,
            alg: SigningAlgorithm::RS256,
            kid: Kid::Default,
            header,
            claims,
        }
    }

    /// The signing algorithm (default RS256). The issuer signs with its current key of the
    /// matching type.
    ///
    /// ```
    /// use smart_auth::{SigningAlgorithm, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url())
    ///     .audience(issuer.audience())
    ///     .algorithms([SigningAlgorithm::ES256])
    ///     .build()?;
    /// assert!(verifier.verify(&issuer.token().alg(SigningAlgorithm::ES256).sign()).await.is_ok());
    /// assert!(verifier.verify(&issuer.token().sign()).await.is_err()); // RS256 is not allowed here
    /// # Ok(()) }
    /// ```
    pub fn alg(mut self, alg: SigningAlgorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Signs with the published key of this `kid` and names it in the header. A `kid` that
    /// is unknown, or whose key does not fit the algorithm, is still written into the
    /// header, and the token is signed with the default key of the algorithm: useful to
    /// test unknown keys and key-family confusion.
    ///
    /// ```
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let token = issuer.token().kid("no-such-key").sign();
    /// assert_eq!(verifier.verify(&token).await.unwrap_err().kind(), ErrorKind::UnknownKey);
    /// # Ok(()) }
    /// ```
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Kid::Named(kid.into());
        self
    }

    /// Leaves `kid` out of the header.
    ///
    /// ```
    /// use base64::Engine as _;
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let token = issuer.token().no_kid().sign();
    /// let header = token.split('.').next().unwrap_or_default();
    /// let header: serde_json::Value =
    ///     serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header)?)?;
    /// assert!(header.get("kid").is_none());
    /// assert_eq!(header["alg"], "RS256");
    /// # Ok(()) }
    /// ```
    pub fn no_kid(mut self) -> Self {
        self.kid = Kid::Omitted;
        self
    }

    /// Sets (or with `Value::Null`, removes) a header parameter other than `alg` and `kid`.
    ///
    /// ```
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// // A `crit` header the verifier does not understand makes the token invalid.
    /// let token = issuer.token().header("crit", serde_json::json!(["exp"])).sign();
    /// assert_eq!(verifier.verify(&token).await.unwrap_err().kind(), ErrorKind::CriticalHeader);
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        set(&mut self.header, name, value.into());
        self
    }

    /// Sets (or with `Value::Null`, removes) a claim.
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let token = issuer.token().claim("patient", "123").claim("tenant", "north").sign();
    /// let claims = verifier.verify(&token).await?;
    /// assert_eq!(claims.patient(), Some("123"));
    /// assert_eq!(claims.tenant(), Some("north"));
    /// # Ok(()) }
    /// ```
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        set(&mut self.claims, name, value.into());
        self
    }

    /// Removes a claim.
    ///
    /// ```
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let token = issuer.token().without("exp").sign();
    /// assert_eq!(verifier.verify(&token).await.unwrap_err().kind(), ErrorKind::InvalidClaim);
    /// # Ok(()) }
    /// ```
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// The `scope` claim.
    ///
    /// ```
    /// use smart_auth::{TokenVerifier, scopes::Interaction, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let token = issuer.token().scope("system/Observation.rs system/Patient.r").sign();
    /// let claims = verifier.verify(&token).await?;
    /// assert!(claims.permits(Interaction::SearchType, "Observation"));
    /// assert!(!claims.permits(Interaction::SearchType, "Patient"));
    /// # Ok(()) }
    /// ```
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }

    /// The `aud` claim.
    ///
    /// ```
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let token = issuer.token().audience("https://another-api.example").sign();
    /// assert_eq!(verifier.verify(&token).await.unwrap_err().kind(), ErrorKind::WrongAudience);
    /// # Ok(()) }
    /// ```
    pub fn audience(self, audience: &str) -> Self {
        self.claim("aud", audience)
    }

    /// `exp` relative to the issuer's clock; negative for an expired token.
    ///
    /// ```
    /// use smart_auth::{ErrorKind, TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let expired = issuer.token().expires_in_secs(-600).sign();
    /// assert_eq!(verifier.verify(&expired).await.unwrap_err().kind(), ErrorKind::Expired);
    /// # Ok(()) }
    /// ```
    pub fn expires_in_secs(self, seconds: i64) -> Self {
        let now = unix_seconds(self.issuer.now());
        self.claim("exp", now + seconds)
    }

    /// `exp` = now + `lifetime`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{TokenVerifier, testing::TestIssuer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let issuer = TestIssuer::start().await;
    /// let verifier = TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()?;
    /// let token = issuer.token().lifetime(Duration::from_secs(3600)).sign();
    /// let claims = verifier.verify(&token).await?;
    /// assert_eq!(claims.exp() - claims.iat().unwrap_or_default(), 3600);
    /// # Ok(()) }
    /// ```
    pub fn lifetime(self, lifetime: Duration) -> Self {
        self.expires_in_secs(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX))
    }

    /// Signs the token.
    ///
    /// ```
    /// use smart_auth::testing::TestIssuer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let issuer = TestIssuer::start().await;
    /// let token = issuer.token().sign();
    /// assert_eq!(token.split('.').count(), 3); // a compact JWS: header.payload.signature
    /// # }
    /// ```
    pub fn sign(self) -> String {
        let key = match &self.kid {
            Kid::Named(kid) => self
                .issuer
                .key_by_kid(kid)
                .filter(|key| key.key_type == KeyType::for_algorithm(self.alg))
                .unwrap_or_else(|| self.issuer.key_for(self.alg)),
            _ => self.issuer.key_for(self.alg),
        };
        let mut header = self.header;
        match self.kid {
            Kid::Default => {
                header.insert("kid".into(), json!(key.kid));
            }
            Kid::Named(kid) => {
                header.insert("kid".into(), json!(kid));
            }
            Kid::Omitted => {}
        }
        key.compact_jws(self.alg, header, &Value::Object(self.claims))
    }
}

fn set(map: &mut Map<String, Value>, name: &str, value: Value) {
    if value.is_null() {
        map.remove(name);
    } else {
        map.insert(name.to_owned(), value);
    }
}

/// Signs `header` and `claims` with HMAC-SHA256 under `secret`, whatever `header` says.
///
/// For negative tests only: a resource server using this crate refuses every such token
/// (for example one "signed" with the bytes of the issuer's public key, the classic
/// algorithm-confusion attack).
///
/// ```
/// let token = smart_auth::testing::sign_hs256(
///     b"public key bytes",
///     &serde_json::json!({"alg": "HS256"}),
///     &serde_json::json!({"iss": "x"}),
/// );
/// assert_eq!(token.split('.').count(), 3);
/// ```
pub fn sign_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}
