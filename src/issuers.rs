//! [`Issuers`]: several [`TokenVerifier`]s, one per authorization server, and the choice
//! of the one that verifies a token.
//!
//! The choice reads the token's `iss` from its payload before anything is verified, and
//! only to pick a verifier: that verifier then checks the token with its own keys and
//! settings alone (the signature, and `iss` again, exactly), so a token signed by one
//! issuer's key that names another issuer is checked against the other issuer's keys and
//! refused. An `iss` that names no configured issuer (or none at all) is refused at
//! once, without any network I/O and without touching any cache, as a token whose
//! signing key is not known ([`ErrorKind::UnknownKey`]): what it names is not verified,
//! so the answer does not repeat it as a finding about the token.

use std::collections::HashMap;

use crate::claims::SmartClaims;
use crate::error::{AuthError, ConfigError, ErrorKind};
use crate::json::Member;
use crate::jwt;
use crate::verifier::{Lookup, TokenVerifier, record_lookup};

/// The verifiers of one or more issuers, keyed by their exact issuer identifier.
///
/// [`SmartAuthLayer`](crate::SmartAuthLayer) holds one; build one yourself to verify tokens
/// of several issuers outside tower. Cloning is cheap: the verifiers are shared.
///
/// ```
/// use smart_auth::{Issuers, TokenVerifier};
///
/// let issuers = Issuers::new([
///     TokenVerifier::builder("https://auth.example.org")
///         .audience("https://fhir.example.org/r4")
///         .build()?,
///     TokenVerifier::builder("https://login.partner.example")
///         .audience("https://fhir.example.org/r4")
///         .build()?,
/// ])?;
/// assert!(issuers.get("https://login.partner.example").is_some());
/// assert!(issuers.get("https://login.partner.example/").is_none());
/// # Ok::<(), smart_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Issuers {
    verifiers: Vec<TokenVerifier>,
    /// Issuer identifier to its index in `verifiers`; empty with one issuer (no choice).
    by_issuer: HashMap<String, usize>,
    /// The verifier that introspects opaque tokens, if one does.
    opaque: Option<usize>,
    /// The longest token any of them accepts: longer ones are refused before parsing.
    max_token_length: usize,
}

impl Issuers {
    /// The registry of these verifiers.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoIssuer`] for an empty list, [`ConfigError::DuplicateIssuer`] when
    /// two verifiers name the same issuer, [`ConfigError::AmbiguousIntrospection`] when
    /// more than one introspects opaque tokens.
    ///
    /// ```
    /// use smart_auth::{ConfigError, Issuers, TokenVerifier};
    ///
    /// let verifier = || {
    ///     TokenVerifier::builder("https://auth.example.org")
    ///         .audience("https://fhir.example.org/r4")
    ///         .build()
    /// };
    /// assert!(Issuers::new([verifier()?]).is_ok());
    /// assert!(matches!(Issuers::new([]), Err(ConfigError::NoIssuer)));
    /// assert!(matches!(Issuers::new([verifier()?, verifier()?]), Err(ConfigError::DuplicateIssuer { .. })));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn new(verifiers: impl IntoIterator<Item = TokenVerifier>) -> Result<Self, ConfigError> {
        let verifiers: Vec<TokenVerifier> = verifiers.into_iter().collect();
        if verifiers.is_empty() {
            return Err(ConfigError::NoIssuer);
        }
        let mut by_issuer = HashMap::with_capacity(verifiers.len());
        for (index, verifier) in verifiers.iter().enumerate() {
            if by_issuer
                .insert(verifier.issuer().to_owned(), index)
                .is_some()
            {
                return Err(ConfigError::DuplicateIssuer);
            }
        }
        // Two issuers that differ only by a final `/` are two issuers to the exact `iss`
        // comparison, but an authorization server writes one of them: the other's tokens
        // never come, and its key discovery fails (the metadata names the other).
        for (at, verifier) in verifiers.iter().enumerate() {
            let issuer = verifier.issuer().trim_end_matches('/');
            if verifiers[..at]
                .iter()
                .any(|earlier| earlier.issuer().trim_end_matches('/') == issuer)
            {
                tracing::warn!(
                    issuer,
                    "two issuers differ only by a final `/`: check which one the authorization \
                     server writes in `iss`"
                );
            }
        }
        if verifiers.len() == 1 {
            by_issuer.clear();
        }
        #[cfg(feature = "introspection")]
        let opaque = {
            let mut opaque = verifiers
                .iter()
                .enumerate()
                .filter(|(_, verifier)| verifier.introspects_opaque_tokens())
                .map(|(index, _)| index);
            let first = opaque.next();
            if opaque.next().is_some() {
                return Err(ConfigError::AmbiguousIntrospection);
            }
            first
        };
        #[cfg(not(feature = "introspection"))]
        let opaque = None;
        let max_token_length = verifiers
            .iter()
            .map(TokenVerifier::max_token_length)
            .max()
            .unwrap_or(0);
        Ok(Self {
            verifiers,
            by_issuer,
            opaque,
            max_token_length,
        })
    }

    /// The verifier of this exact issuer identifier.
    ///
    /// ```
    /// use smart_auth::{Issuers, TokenVerifier};
    ///
    /// let issuers = Issuers::new([TokenVerifier::builder("https://auth.example.org")
    ///     .audience("https://fhir.example.org/r4")
    ///     .build()?])?;
    /// let verifier = issuers.get("https://auth.example.org").expect("configured");
    /// assert_eq!(verifier.issuer(), "https://auth.example.org");
    /// assert!(issuers.get("https://AUTH.example.org").is_none()); // compared exactly
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn get(&self, issuer: &str) -> Option<&TokenVerifier> {
        if self.by_issuer.is_empty() {
            return self.verifiers.first().filter(|v| v.issuer() == issuer);
        }
        self.by_issuer
            .get(issuer)
            .map(|&index| &self.verifiers[index])
    }

    /// Every verifier, in the order given.
    ///
    /// ```
    /// use smart_auth::{Issuers, TokenVerifier};
    ///
    /// let verifier = |issuer: &str| {
    ///     TokenVerifier::builder(issuer).audience("https://fhir.example.org/r4").build()
    /// };
    /// let issuers = Issuers::new([
    ///     verifier("https://auth.example.org")?,
    ///     verifier("https://login.partner.example")?,
    /// ])?;
    /// let names: Vec<&str> = issuers.iter().map(|verifier| verifier.issuer()).collect();
    /// assert_eq!(names, ["https://auth.example.org", "https://login.partner.example"]);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &TokenVerifier> {
        self.verifiers.iter()
    }

    /// Verifies a token with the verifier of the issuer it names (see the
    /// [`Issuers`] docs for how that one is chosen).
    ///
    /// # Errors
    ///
    /// With two or more issuers, [`ErrorKind::UnknownKey`] for a token naming none of them
    /// (with one, that verifier's [`ErrorKind::WrongIssuer`]); else what the chosen
    /// verifier's [`verify`](TokenVerifier::verify) says.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::{ErrorKind, Issuers, TokenVerifier, testing::TestIssuer};
    ///
    /// let (main, partner, stranger) =
    ///     (TestIssuer::start().await, TestIssuer::start().await, TestIssuer::start().await);
    /// let verifier = |issuer: &TestIssuer| {
    ///     TokenVerifier::builder(issuer.url()).audience(issuer.audience()).build()
    /// };
    /// let issuers = Issuers::new([verifier(&main)?, verifier(&partner)?])?;
    ///
    /// // Each token is checked by the verifier of the issuer it names.
    /// let claims = issuers.verify(&partner.token().sign()).await?;
    /// assert_eq!(claims.issuer(), partner.url());
    /// let error = issuers.verify(&stranger.token().sign()).await.unwrap_err();
    /// assert_eq!(error.kind(), ErrorKind::UnknownKey);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn verify(&self, token: &str) -> Result<SmartClaims, AuthError> {
        let (stale, index) = match self.lookup(token.as_bytes()) {
            (Lookup::Hit(claims), index) => {
                self.verifiers[index].check_policy(&claims)?;
                return Ok(claims);
            }
            (Lookup::Stale, index) => (true, Some(index)),
            (Lookup::Miss, _) => (false, None),
        };
        let verifier = match index {
            Some(index) => &self.verifiers[index],
            None => self.choose(token)?,
        };
        verifier.verify_uncached(token, stale).await
    }

    /// The answer of the token caches, without waiting for anything, with the index of the
    /// verifier that answered (the first one on a miss).
    #[inline]
    pub(crate) fn lookup(&self, token: &[u8]) -> (Lookup, usize) {
        if let [only] = self.verifiers.as_slice() {
            return (only.lookup(token), 0);
        }
        // One lookup counted per request, however many caches are asked.
        let mut consulted = false;
        for (index, verifier) in self.verifiers.iter().enumerate() {
            match verifier.lookup_uncounted(token) {
                None => {}
                Some(Lookup::Miss) => consulted = true,
                Some(found) => {
                    record_lookup(&found);
                    return (found, index);
                }
            }
        }
        if consulted {
            record_lookup(&Lookup::Miss);
        }
        (Lookup::Miss, 0)
    }

    /// The verifier at this index (from [`lookup`](Self::lookup)).
    #[inline]
    pub(crate) fn at(&self, index: usize) -> &TokenVerifier {
        &self.verifiers[index]
    }

    /// The verifier for a token the caches do not know: the only one, or the one its `iss`
    /// names.
    pub(crate) fn choose(&self, token: &str) -> Result<&TokenVerifier, AuthError> {
        if self.by_issuer.is_empty() {
            return Ok(&self.verifiers[0]);
        }
        if token.len() > self.max_token_length {
            return Err(ErrorKind::TokenTooLarge.into());
        }
        // Not a JWT (PASETO's `v4.local.…` has three segments too): only introspection can
        // tell what it is, as with one issuer that introspects opaque tokens.
        if let Some(index) = self.opaque
            && !jwt::looks_like_jwt(token)
        {
            return Ok(&self.verifiers[index]);
        }
        let segments = jwt::split(token)?;
        // Read only to choose a verifier; that verifier checks everything, `iss` included.
        // The payload is checked as strictly as for verification, but only `iss` is built.
        let index = jwt::read_payload(
            &jwt::decode_segment(segments.payload)?,
            |name| name == "iss",
            |payload| match payload.get("iss") {
                Some(Member::Text(issuer)) => Ok(self.by_issuer.get(issuer).copied()),
                Some(Member::Json(_)) => Err(ErrorKind::InvalidClaim),
                None => Ok(None),
            },
        )?;
        let index = index.ok_or_else(|| {
            tracing::debug!(target: "smart_auth::rejection", "token naming no configured issuer");
            ErrorKind::UnknownKey
        })?;
        Ok(&self.verifiers[index])
    }
}
