//! Registered clients and how they authenticate.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::jwks::{KeySet, SECRET_MEMBERS};

/// The most keys a registered key set may hold.
pub(crate) const MAX_KEYS: usize = 16;

/// Why a key set cannot be a client's registered key set: from
/// [`ClientRegistration::private_key_jwt`], and (as its description) in the
/// `invalid_client_metadata` answer of `/register`.
///
/// ```
/// use serde_json::json;
/// use smart_auth::dev_server::{ClientRegistration, KeySetError};
///
/// let no_kid = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]});
/// let error = ClientRegistration::private_key_jwt("app", no_kid, ["system/*.rs"]).unwrap_err();
/// assert_eq!(error, KeySetError::MissingKid);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySetError {
    /// Not an object with a `keys` array of 1 to 16 JWK objects.
    NotAKeySet,
    /// A key holds private or symmetric material (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`,
    /// `k`). Only `/register` answers this; a registration in code leaves such members
    /// out instead.
    PrivateMaterial,
    /// A key's `kty` is not `RSA`, `EC` or `OKP`.
    NotAsymmetric,
    /// A key has no `kid`, or one that is not a non-empty string (SMART: every key
    /// carries a `kid`; the client's assertions name their key by it).
    MissingKid,
    /// Two keys have the same `kid` (SMART: a `kid` is unique within the client's key
    /// set), so an assertion's `kid` would not name one key.
    DuplicateKid,
    /// No key of the set can verify signatures with an algorithm this crate supports.
    NoUsableKey,
}

impl KeySetError {
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::NotAKeySet => {
                "jwks must be an object with a \"keys\" array of 1 to 16 JWK objects"
            }
            Self::PrivateMaterial => {
                "jwks must hold public keys only: no d, p, q, dp, dq, qi, oth or k member"
            }
            Self::NotAsymmetric => "jwks keys must be RSA, EC or OKP keys (kty), never oct",
            Self::MissingKid => "every key in jwks needs a kid, a non-empty string",
            Self::DuplicateKid => "two keys in jwks have the same kid",
            Self::NoUsableKey => "jwks holds no usable public signing key",
        }
    }
}

impl fmt::Display for KeySetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for KeySetError {}

/// Checks that `jwks` is a JWK Set of public asymmetric keys: an object with a `keys`
/// array of 1 to [`MAX_KEYS`] objects, none holding private or symmetric material, each
/// with `kty` `RSA`, `EC` or `OKP` and a non-empty string `kid` that no other key of the
/// set has. (Whether a key can verify is checked separately.)
pub(crate) fn check_public_key_set(jwks: &Value) -> Result<(), KeySetError> {
    let keys = match jwks.get("keys") {
        Some(Value::Array(keys)) if jwks.is_object() && (1..=MAX_KEYS).contains(&keys.len()) => {
            keys
        }
        _ => return Err(KeySetError::NotAKeySet),
    };
    let mut kids = HashSet::new();
    for key in keys {
        let Value::Object(key) = key else {
            return Err(KeySetError::NotAKeySet);
        };
        if SECRET_MEMBERS
            .iter()
            .any(|member| key.contains_key(*member))
        {
            return Err(KeySetError::PrivateMaterial);
        }
        match key.get("kty").and_then(Value::as_str) {
            Some("RSA" | "EC" | "OKP") => {}
            _ => return Err(KeySetError::NotAsymmetric),
        }
        match key.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => {
                if !kids.insert(kid.as_str()) {
                    return Err(KeySetError::DuplicateKid);
                }
            }
            _ => return Err(KeySetError::MissingKid),
        }
    }
    Ok(())
}

/// [`check_public_key_set`], and at least one key that can verify signatures.
pub(crate) fn check_client_key_set(jwks: &Value) -> Result<Arc<KeySet>, KeySetError> {
    check_public_key_set(jwks)?;
    KeySet::parse(jwks.to_string().as_bytes())
        .map(Arc::new)
        .map_err(|_| KeySetError::NoUsableKey)
}

/// The public part of a key set given in code: private members are removed from
/// asymmetric keys, and symmetric (`oct`) keys are left out, so the server never stores a
/// secret it does not need.
fn public_part(jwks: Value) -> Value {
    let Value::Object(mut document) = jwks else {
        return jwks;
    };
    if let Some(Value::Array(keys)) = document.get_mut("keys") {
        keys.retain(|key| key.get("kty").and_then(Value::as_str) != Some("oct"));
        for key in keys.iter_mut() {
            if let Value::Object(key) = key {
                for member in SECRET_MEMBERS {
                    key.remove(member);
                }
            }
        }
    }
    Value::Object(document)
}

/// How a registered client proves who it is at the token endpoint. `Debug` shows no
/// secret and no key material.
#[derive(Clone)]
pub(crate) enum Credential {
    /// `private_key_jwt` with a key set given at registration, parsed then (once, not per
    /// assertion: anyone may name a client and have its keys read).
    Jwks(Arc<KeySet>),
    /// `private_key_jwt` with keys published at this URL.
    JwksUri(String),
    /// `client_secret_basic`.
    Secret(String),
}

impl Credential {
    /// The `token_endpoint_auth_method` of this credential.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Self::Jwks(_) | Self::JwksUri(_) => "private_key_jwt",
            Self::Secret(_) => "client_secret_basic",
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Jwks(keys) => {
                let kids: Vec<&str> = keys.kids().collect();
                f.debug_struct("Jwks").field("kids", &kids).finish()
            }
            Self::JwksUri(uri) => f.debug_tuple("JwksUri").field(uri).finish(),
            Self::Secret(_) => f.write_str("Secret(<redacted>)"),
        }
    }
}

/// A client the development server knows.
///
/// `Debug` never shows the client secret or key material: only the client id, how it
/// authenticates (with key ids or the key set URL), and its scopes.
///
/// ```
/// use smart_auth::dev_server::ClientRegistration;
/// let registration = ClientRegistration::client_secret_basic("reporting", "s3cret", ["system/*.rs"]);
/// assert_eq!(registration.client_id(), "reporting");
/// assert!(!format!("{registration:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct ClientRegistration {
    pub(crate) client_id: String,
    pub(crate) credential: Credential,
    pub(crate) scopes: Vec<String>,
    /// May introspect tokens issued to other clients (a resource server's role).
    pub(crate) introspects_any_token: bool,
    /// Registered over HTTP (anyone may register, up to the client cap), not in code.
    pub(crate) registered_over_http: bool,
}

/// The owner whose share of the token and assertion stores every client registered over
/// HTTP counts toward: one share for all of them, so that registering many clients cannot
/// fill a store for the clients registered in code. HTTP-registered ids are random
/// base64url, so none is this; a client registered in code under it would share it.
pub(crate) const HTTP_REGISTERED_CLIENTS: &str = "\u{0}registered over HTTP";

impl ClientRegistration {
    /// Whose share of the token and assertion stores this client's entries count toward.
    pub(crate) fn quota_owner(&self) -> &str {
        if self.registered_over_http {
            HTTP_REGISTERED_CLIENTS
        } else {
            &self.client_id
        }
    }
}

impl fmt::Debug for ClientRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRegistration")
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("scopes", &self.scopes)
            .field("introspects_any_token", &self.introspects_any_token)
            .finish()
    }
}

impl ClientRegistration {
    /// A `private_key_jwt` client whose public keys are this JWK Set (`{"keys": [...]}`).
    /// Private members (`d`, `p`, …) and symmetric (`oct`) keys are left out: only the
    /// public keys are stored. What is left must be 1 to 16 `RSA`, `EC` or `OKP` keys,
    /// each with a `kid` no other key of the set has, at least one of them usable for
    /// verifying signatures.
    ///
    /// ```
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::client::ClientKey;
    /// use smart_auth::dev_server::ClientRegistration;
    ///
    /// let key = ClientKey::generate(SigningAlgorithm::ES384, "backend-1")?;
    /// let registration =
    ///     ClientRegistration::private_key_jwt("backend", key.public_jwks(), ["system/*.rs"])?;
    /// assert_eq!(registration.client_id(), "backend");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`KeySetError`] when the public part is not such a key set (a key without `kid`,
    /// two keys with the same `kid`, no keys, ...).
    pub fn private_key_jwt<I, S>(
        client_id: impl Into<String>,
        jwks: Value,
        scopes: I,
    ) -> Result<Self, KeySetError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let keys = check_client_key_set(&public_part(jwks))?;
        Ok(Self::new(client_id, Credential::Jwks(keys), scopes))
    }

    /// A `private_key_jwt` client whose public keys are published at `jwks_uri`.
    ///
    /// ```
    /// use smart_auth::dev_server::ClientRegistration;
    ///
    /// let registration = ClientRegistration::private_key_jwt_uri(
    ///     "backend",
    ///     "https://backend.example.org/.well-known/jwks.json",
    ///     ["system/Observation.rs"],
    /// );
    /// assert_eq!(registration.client_id(), "backend");
    /// ```
    pub fn private_key_jwt_uri<I, S>(
        client_id: impl Into<String>,
        jwks_uri: impl Into<String>,
        scopes: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(client_id, Credential::JwksUri(jwks_uri.into()), scopes)
    }

    /// A `client_secret_basic` client.
    ///
    /// ```
    /// use smart_auth::dev_server::ClientRegistration;
    ///
    /// let registration = ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]);
    /// assert_eq!(registration.scopes(), ["system/*.rs"]);
    /// assert!(!format!("{registration:?}").contains("s3cret")); // the secret stays out of logs
    /// ```
    pub fn client_secret_basic<I, S>(
        client_id: impl Into<String>,
        secret: impl Into<String>,
        scopes: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(client_id, Credential::Secret(secret.into()), scopes)
    }

    fn new<I, S>(client_id: impl Into<String>, credential: Credential, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            client_id: client_id.into(),
            credential,
            scopes: scopes.into_iter().map(Into::into).collect(),
            introspects_any_token: false,
            registered_over_http: false,
        }
    }

    /// Lets this client introspect tokens issued to any client, as a resource server does
    /// (RFC 7662), whether it authenticates with its credentials or presents one of its
    /// own access tokens as a Bearer credential.
    ///
    /// Without it a client introspects only the tokens issued to it, and another client's
    /// token reads `{"active": false}`: otherwise anyone holding one of its access tokens
    /// could learn about every client's tokens. Clients registered over HTTP at
    /// `/register` are always limited to their own tokens. Revocation is always limited
    /// to the client's own tokens (RFC 7009 section 2.1).
    ///
    /// ```
    /// use smart_auth::dev_server::ClientRegistration;
    /// let rs = ClientRegistration::client_secret_basic("fhir-api", "s3cret", ["system/*.rs"])
    ///     .allow_introspecting_any_token();
    /// assert!(rs.introspects_any_token());
    /// ```
    pub fn allow_introspecting_any_token(mut self) -> Self {
        self.introspects_any_token = true;
        self
    }

    /// Limits introspection by this client to the tokens issued to it: the default,
    /// undoing [`allow_introspecting_any_token`](Self::allow_introspecting_any_token).
    ///
    /// ```
    /// use smart_auth::dev_server::ClientRegistration;
    /// let app = ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"])
    ///     .allow_introspecting_any_token()
    ///     .own_tokens_only();
    /// assert!(!app.introspects_any_token());
    /// ```
    pub fn own_tokens_only(mut self) -> Self {
        self.introspects_any_token = false;
        self
    }

    /// Whether this client may introspect tokens issued to other clients (see
    /// [`allow_introspecting_any_token`](Self::allow_introspecting_any_token)).
    ///
    /// ```
    /// use smart_auth::dev_server::ClientRegistration;
    /// let app = ClientRegistration::client_secret_basic("app", "s3cret", ["system/*.rs"]);
    /// assert!(!app.introspects_any_token());
    /// ```
    pub fn introspects_any_token(&self) -> bool {
        self.introspects_any_token
    }

    /// The client id.
    ///
    /// ```
    /// use smart_auth::dev_server::ClientRegistration;
    ///
    /// let registration = ClientRegistration::client_secret_basic("reporting", "s3cret", ["system/*.rs"]);
    /// assert_eq!(registration.client_id(), "reporting");
    /// ```
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The scopes the client may be granted.
    ///
    /// ```
    /// use smart_auth::dev_server::ClientRegistration;
    ///
    /// let registration = ClientRegistration::client_secret_basic(
    ///     "reporting",
    ///     "s3cret",
    ///     ["system/Observation.rs", "system/Patient.r"],
    /// );
    /// assert_eq!(registration.scopes(), ["system/Observation.rs", "system/Patient.r"]);
    /// ```
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}
