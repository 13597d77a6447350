//! Registered clients and how they authenticate.

use serde_json::Value;

/// How a registered client proves who it is at the token endpoint.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    /// `private_key_jwt` with a key set given at registration.
    Jwks(Value),
    /// `private_key_jwt` with keys published at this URL.
    JwksUri(String),
    /// `client_secret_basic`.
    Secret(String),
}

/// A client the development server knows.
///
/// ```
/// use smart_auth::dev_server::ClientRegistration;
/// let registration = ClientRegistration::client_secret_basic("reporting", "s3cret", ["system/*.rs"]);
/// assert_eq!(registration.client_id(), "reporting");
/// ```
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    pub(crate) client_id: String,
    pub(crate) credential: Credential,
    pub(crate) scopes: Vec<String>,
}

impl ClientRegistration {
    /// A `private_key_jwt` client whose public keys are this JWK Set (`{"keys": [...]}`).
    pub fn private_key_jwt<I, S>(client_id: impl Into<String>, jwks: Value, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new(client_id, Credential::Jwks(jwks), scopes)
    }

    /// A `private_key_jwt` client whose public keys are published at `jwks_uri`.
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
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The scopes the client may be granted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}
