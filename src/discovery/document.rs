//! The SMART configuration document: [`SmartConfiguration`], its builder and validation.

use std::fmt;

use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fetch::{
    self, FetchError, Fetcher, default_client, is_allowed_discovered_url, is_allowed_url,
    is_uri_character,
};
use crate::scopes::is_scope_token;

/// A SMART capability (SMART App Launch 2.2, "Capabilities").
///
/// Values this crate does not know (URIs of other specifications, older names such as
/// `context-passthrough-banner`) are kept as [`Capability::Other`] and written back
/// unchanged.
///
/// ```
/// use smart_auth::discovery::Capability;
/// let capability: Capability = serde_json::from_str("\"permission-v2\"").unwrap();
/// assert_eq!(capability, Capability::PermissionV2);
/// let other: Capability = serde_json::from_str("\"https://example.org/cap\"").unwrap();
/// assert_eq!(other.as_str(), "https://example.org/cap");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `launch-ehr`
    LaunchEhr,
    /// `launch-standalone`
    LaunchStandalone,
    /// `authorize-post`
    AuthorizePost,
    /// `client-public`
    ClientPublic,
    /// `client-confidential-symmetric`
    ClientConfidentialSymmetric,
    /// `client-confidential-asymmetric`
    ClientConfidentialAsymmetric,
    /// `sso-openid-connect`
    SsoOpenidConnect,
    /// `context-banner`
    ContextBanner,
    /// `context-style`
    ContextStyle,
    /// `context-ehr-patient`
    ContextEhrPatient,
    /// `context-ehr-encounter`
    ContextEhrEncounter,
    /// `context-standalone-patient`
    ContextStandalonePatient,
    /// `context-standalone-encounter`
    ContextStandaloneEncounter,
    /// `permission-offline`
    PermissionOffline,
    /// `permission-online`
    PermissionOnline,
    /// `permission-patient`
    PermissionPatient,
    /// `permission-user`
    PermissionUser,
    /// `permission-v1`
    PermissionV1,
    /// `permission-v2`
    PermissionV2,
    /// `smart-app-state`
    SmartAppState,
    /// Any other value, kept as sent.
    Other(String),
}

const KNOWN_CAPABILITIES: [(&str, Capability); 20] = [
    ("launch-ehr", Capability::LaunchEhr),
    ("launch-standalone", Capability::LaunchStandalone),
    ("authorize-post", Capability::AuthorizePost),
    ("client-public", Capability::ClientPublic),
    (
        "client-confidential-symmetric",
        Capability::ClientConfidentialSymmetric,
    ),
    (
        "client-confidential-asymmetric",
        Capability::ClientConfidentialAsymmetric,
    ),
    ("sso-openid-connect", Capability::SsoOpenidConnect),
    ("context-banner", Capability::ContextBanner),
    ("context-style", Capability::ContextStyle),
    ("context-ehr-patient", Capability::ContextEhrPatient),
    ("context-ehr-encounter", Capability::ContextEhrEncounter),
    (
        "context-standalone-patient",
        Capability::ContextStandalonePatient,
    ),
    (
        "context-standalone-encounter",
        Capability::ContextStandaloneEncounter,
    ),
    ("permission-offline", Capability::PermissionOffline),
    ("permission-online", Capability::PermissionOnline),
    ("permission-patient", Capability::PermissionPatient),
    ("permission-user", Capability::PermissionUser),
    ("permission-v1", Capability::PermissionV1),
    ("permission-v2", Capability::PermissionV2),
    ("smart-app-state", Capability::SmartAppState),
];

impl Capability {
    /// The capability as written in the document.
    ///
    /// ```
    /// use smart_auth::discovery::Capability;
    ///
    /// assert_eq!(Capability::PermissionV2.as_str(), "permission-v2");
    /// assert_eq!(Capability::Other("x-custom".into()).as_str(), "x-custom");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(value) => value,
            known => KNOWN_CAPABILITIES
                .iter()
                .find(|(_, capability)| capability == known)
                .map_or("", |(name, _)| name),
        }
    }

    /// The same capability as [`parse`](Self::parse) reads its name: `Other("launch-ehr")`
    /// is [`LaunchEhr`](Self::LaunchEhr), so the rules for it apply.
    fn normal(self) -> Self {
        match self {
            Self::Other(name) => Self::parse(&name),
            known => known,
        }
    }

    /// Reads a capability; unknown values become [`Capability::Other`].
    ///
    /// ```
    /// use smart_auth::discovery::Capability;
    ///
    /// assert_eq!(Capability::parse("permission-v2"), Capability::PermissionV2);
    /// assert_eq!(Capability::parse("x-custom"), Capability::Other("x-custom".into()));
    /// ```
    pub fn parse(value: &str) -> Self {
        KNOWN_CAPABILITIES
            .iter()
            .find(|(name, _)| *name == value)
            .map_or_else(
                || Self::Other(value.to_owned()),
                |(_, capability)| capability.clone(),
            )
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Ok(Self::parse(&value))
    }
}

/// An endpoint that shares this server's authorization (`associated_endpoints`).
///
/// ```
/// use smart_auth::discovery::{AssociatedEndpoint, Capability, SmartConfiguration};
///
/// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
///     .associated_endpoint("https://state.example.org/fhir", [Capability::SmartAppState])
///     .build()?;
/// assert_eq!(
///     configuration.associated_endpoints(),
///     [AssociatedEndpoint {
///         url: "https://state.example.org/fhir".into(),
///         capabilities: vec![Capability::SmartAppState],
///     }],
/// );
/// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociatedEndpoint {
    /// The endpoint's URL.
    pub url: String,
    /// What it offers, such as `smart-app-state`.
    pub capabilities: Vec<Capability>,
}

/// The FHIR `Identifier` of the server's primary brand in its brand bundle
/// (`user_access_brand_identifier`, SMART App Launch 2.2, "User-access Brands"): a `value`
/// that matches the `Organization.identifier` of one brand, and (SHOULD) its `system`.
///
/// Read from a document as the object SMART defines; a bare string, as some servers wrote
/// it before 2.2, is read as the `value`. Other `Identifier` members (`use`, `type`, ...)
/// are not kept.
///
/// ```
/// use smart_auth::discovery::{BrandIdentifier, SmartConfiguration};
/// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
///     .user_access_brand_bundle("https://example.org/brands.json")
///     .user_access_brand_identifier(BrandIdentifier::new(
///         Some("urn:ietf:rfc:3986"),
///         "https://example.org",
///     ))
///     .build()?;
/// let served = serde_json::to_value(&configuration).unwrap();
/// assert_eq!(
///     served["user_access_brand_identifier"],
///     serde_json::json!({"system": "urn:ietf:rfc:3986", "value": "https://example.org"})
/// );
/// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BrandIdentifier {
    /// The namespace of the value (`Identifier.system`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The identifier itself (`Identifier.value`).
    pub value: String,
}

impl BrandIdentifier {
    /// An identifier with this `system` (SMART says it SHOULD have one) and `value`.
    ///
    /// ```
    /// use smart_auth::discovery::BrandIdentifier;
    /// let identifier = BrandIdentifier::new(Some("urn:ietf:rfc:3986"), "https://example.org");
    /// assert_eq!(identifier.value, "https://example.org");
    /// ```
    pub fn new(system: Option<impl Into<String>>, value: impl Into<String>) -> Self {
        Self {
            system: system.map(Into::into),
            value: value.into(),
        }
    }

    /// Whether its value, or a system it has, is empty or only whitespace.
    fn is_blank(&self) -> bool {
        let blank = |text: &str| text.trim().is_empty();
        blank(&self.value) || self.system.as_deref().is_some_and(blank)
    }
}

impl<'de> Deserialize<'de> for BrandIdentifier {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Identifier {
            #[serde(default)]
            system: Option<String>,
            value: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Identifier(Identifier),
            Text(String),
        }
        Ok(match Written::deserialize(deserializer)? {
            Written::Identifier(Identifier { system, value }) => Self { system, value },
            Written::Text(value) => Self {
                system: None,
                value,
            },
        })
    }
}

/// Why a SMART configuration is not valid, or could not be obtained. Every variant names
/// the field it is about.
///
/// ```
/// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
/// let error = SmartConfiguration::builder().build().unwrap_err();
/// assert_eq!(error, DiscoveryError::Missing { field: "token_endpoint" });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A required field is absent or empty.
    Missing {
        /// The field.
        field: &'static str,
    },
    /// A URL field is not an absolute `https` URL (`http` only for loopback hosts) written
    /// with RFC 3986's characters only, or it has a fragment (RFC 6749 sections 3.1 and 3.2
    /// forbid one in endpoint URLs) or user information, or it is the `issuer` and has a
    /// query (RFC 8414 section 2 forbids both there).
    InvalidUrl {
        /// The field.
        field: &'static str,
    },
    /// `code_challenge_methods_supported` lacks `S256` or lists `plain`.
    InvalidCodeChallengeMethods,
    /// `client-confidential-asymmetric` is listed but
    /// `token_endpoint_auth_signing_alg_values_supported` names neither `RS384` nor `ES384`.
    MissingAsymmetricAlgorithm,
    /// A value has the wrong JSON type.
    InvalidValue {
        /// The field.
        field: &'static str,
    },
    /// A list holds an entry that is no value of its kind: an empty or blank string, a
    /// character outside visible ASCII, or (in `scopes_supported`) no RFC 6749 scope token.
    InvalidEntry {
        /// The field.
        field: &'static str,
    },
    /// `client-confidential-asymmetric` is listed but `token_endpoint_auth_methods_supported`
    /// lists other methods and not `private_key_jwt`.
    MissingPrivateKeyJwt,
    /// `client-confidential-symmetric` (a client secret sent by HTTP Basic) is listed but
    /// `token_endpoint_auth_methods_supported` lists other methods and not
    /// `client_secret_basic`.
    MissingClientSecretBasic,
    /// Fetching the issuer's metadata failed (`from_issuer`).
    Fetch {
        /// What went wrong, without response contents.
        reason: String,
    },
    /// The issuer's metadata names another issuer (`from_issuer`).
    IssuerMismatch,
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { field } => write!(f, "{field} is required"),
            Self::InvalidUrl { field } => {
                if *field == "issuer" {
                    write!(
                        f,
                        "{field} must be an absolute https URL (http only for loopback) \
                         without a query or fragment"
                    )
                } else {
                    write!(
                        f,
                        "{field} must be an absolute https URL (http only for loopback) \
                         without a fragment"
                    )
                }
            }
            Self::InvalidCodeChallengeMethods => f.write_str(
                "code_challenge_methods_supported must list S256 and must not list plain",
            ),
            Self::MissingAsymmetricAlgorithm => f.write_str(
                "token_endpoint_auth_signing_alg_values_supported must list RS384 or ES384 \
                 when client-confidential-asymmetric is a capability",
            ),
            Self::InvalidValue { field } => write!(f, "{field} has the wrong JSON type"),
            Self::InvalidEntry { field } => {
                write!(f, "{field} holds an empty or malformed entry")
            }
            Self::MissingPrivateKeyJwt => f.write_str(
                "token_endpoint_auth_methods_supported must list private_key_jwt when \
                 client-confidential-asymmetric is a capability",
            ),
            Self::MissingClientSecretBasic => f.write_str(
                "token_endpoint_auth_methods_supported must list client_secret_basic when \
                 client-confidential-symmetric is a capability",
            ),
            Self::Fetch { reason } => write!(f, "fetching the issuer's metadata failed: {reason}"),
            Self::IssuerMismatch => f.write_str("the issuer's metadata names another issuer"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// A validated `/.well-known/smart-configuration` document (SMART App Launch 2.2).
///
/// Every value of this type is valid: it comes from [`SmartConfigurationBuilder::build`],
/// from [`from_issuer`](Self::from_issuer), or from deserializing a document, and all
/// three check the same rules:
///
/// - `token_endpoint` present; `grant_types_supported` not empty; `capabilities` present;
/// - `code_challenge_methods_supported` contains `S256` and never `plain` (`["S256"]` when
///   not given);
/// - `token_endpoint_auth_signing_alg_values_supported` lists `RS384` or `ES384` when
///   `client-confidential-asymmetric` is a capability;
/// - `issuer` and `jwks_uri` present when `sso-openid-connect` is a capability;
/// - `authorization_endpoint` present when `launch-ehr` or `launch-standalone` is a
///   capability (SMART App Launch 2.x);
/// - every URL absolute and `https` (`http` only for loopback hosts), without a fragment;
///   `issuer` also without a query (RFC 8414 section 2).
///
/// SMART says `issuer` is omitted unless `sso-openid-connect` is a capability. A document
/// that states it anyway is accepted (Inferno only warns about it) and written back as
/// given; [`from_issuer`](Self::from_issuer) copies it only with that capability.
///
/// Fields this crate does not know are kept and written back.
///
/// ```
/// use smart_auth::discovery::SmartConfiguration;
///
/// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
///     .scopes_supported(["system/*.rs"])
///     .build()?;
/// let json = serde_json::to_value(&configuration).unwrap();
/// assert_eq!(json["grant_types_supported"][0], "client_credentials");
/// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawConfiguration", into = "RawConfiguration")]
pub struct SmartConfiguration {
    raw: RawConfiguration,
}

/// The document as JSON, unvalidated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct RawConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorization_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    grant_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registration_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    response_types_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    management_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    introspection_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<Capability>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    associated_endpoints: Vec<AssociatedEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_access_brand_bundle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_access_brand_identifier: Option<BrandIdentifier>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl RawConfiguration {
    /// The endpoint URLs of the document (the issuer aside, which has rules of its own),
    /// each with its field's name.
    fn endpoint_urls(&self) -> [(&'static str, Option<&str>); 8] {
        [
            ("jwks_uri", self.jwks_uri.as_deref()),
            (
                "authorization_endpoint",
                self.authorization_endpoint.as_deref(),
            ),
            ("token_endpoint", self.token_endpoint.as_deref()),
            (
                "registration_endpoint",
                self.registration_endpoint.as_deref(),
            ),
            ("management_endpoint", self.management_endpoint.as_deref()),
            (
                "introspection_endpoint",
                self.introspection_endpoint.as_deref(),
            ),
            ("revocation_endpoint", self.revocation_endpoint.as_deref()),
            (
                "user_access_brand_bundle",
                self.user_access_brand_bundle.as_deref(),
            ),
        ]
    }
}

impl TryFrom<RawConfiguration> for SmartConfiguration {
    type Error = DiscoveryError;

    fn try_from(mut raw: RawConfiguration) -> Result<Self, Self::Error> {
        raw.code_challenge_methods_supported
            .get_or_insert_with(|| vec!["S256".to_owned()]);
        validate(&raw)?;
        Ok(Self { raw })
    }
}

/// Whether a list of signing algorithms names one of SMART's two asymmetric client
/// authentication algorithms, RS384 or ES384 (compared exactly, as JWS names are).
fn names_smart_asymmetric_algorithm(algorithms: &[String]) -> bool {
    algorithms
        .iter()
        .any(|alg| alg == "RS384" || alg == "ES384")
}

impl From<SmartConfiguration> for RawConfiguration {
    fn from(configuration: SmartConfiguration) -> Self {
        configuration.raw
    }
}

fn validate(raw: &RawConfiguration) -> Result<(), DiscoveryError> {
    if raw.token_endpoint.is_none() {
        return Err(DiscoveryError::Missing {
            field: "token_endpoint",
        });
    }
    if raw.grant_types_supported.is_empty() {
        return Err(DiscoveryError::Missing {
            field: "grant_types_supported",
        });
    }
    let Some(capabilities) = &raw.capabilities else {
        return Err(DiscoveryError::Missing {
            field: "capabilities",
        });
    };
    let methods = raw
        .code_challenge_methods_supported
        .as_deref()
        .unwrap_or_default();
    if !methods.iter().any(|m| m == "S256") || methods.iter().any(|m| m == "plain") {
        return Err(DiscoveryError::InvalidCodeChallengeMethods);
    }
    // A response type is a space-separated list itself (`code id_token`, OpenID Connect
    // Core 3): single spaces between values.
    if !raw
        .response_types_supported
        .iter()
        .all(|value| value.split(' ').all(is_list_entry))
    {
        return Err(DiscoveryError::InvalidEntry {
            field: "response_types_supported",
        });
    }
    let lists: [(&'static str, &[String]); 4] = [
        ("grant_types_supported", &raw.grant_types_supported),
        (
            "token_endpoint_auth_methods_supported",
            &raw.token_endpoint_auth_methods_supported,
        ),
        (
            "token_endpoint_auth_signing_alg_values_supported",
            &raw.token_endpoint_auth_signing_alg_values_supported,
        ),
        ("code_challenge_methods_supported", methods),
    ];
    for (field, values) in lists {
        if !values.iter().all(|value| is_list_entry(value)) {
            return Err(DiscoveryError::InvalidEntry { field });
        }
    }
    if !capabilities
        .iter()
        .all(|capability| is_list_entry(capability.as_str()))
    {
        return Err(DiscoveryError::InvalidEntry {
            field: "capabilities",
        });
    }
    // RFC 6749 section 3.3: each scope is one token, never two joined by a space.
    if !raw
        .scopes_supported
        .iter()
        .all(|scope| is_scope_token(scope))
    {
        return Err(DiscoveryError::InvalidEntry {
            field: "scopes_supported",
        });
    }
    // RFC 8414 section 2: `none` is never a client authentication signing algorithm.
    // (The list itself is not required with `private_key_jwt`, as that section would have
    // it: SMART App Launch's own full example leaves it out.)
    if raw
        .token_endpoint_auth_signing_alg_values_supported
        .iter()
        .any(|alg| alg == "none")
    {
        return Err(DiscoveryError::InvalidEntry {
            field: "token_endpoint_auth_signing_alg_values_supported",
        });
    }
    if capabilities.contains(&Capability::ClientConfidentialAsymmetric) {
        if !names_smart_asymmetric_algorithm(&raw.token_endpoint_auth_signing_alg_values_supported)
        {
            return Err(DiscoveryError::MissingAsymmetricAlgorithm);
        }
        // An omitted list means `client_secret_basic` alone (RFC 8414 section 2), which
        // contradicts the capability as much as a list without `private_key_jwt` does.
        let methods = &raw.token_endpoint_auth_methods_supported;
        if !methods.iter().any(|method| method == "private_key_jwt") {
            return Err(DiscoveryError::MissingPrivateKeyJwt);
        }
    }
    // SMART's symmetric capability is a client secret sent by HTTP Basic: a list of
    // methods without `client_secret_basic` contradicts it (an omitted list means that
    // method alone).
    if capabilities.contains(&Capability::ClientConfidentialSymmetric) {
        let methods = &raw.token_endpoint_auth_methods_supported;
        if !methods.is_empty() && !methods.iter().any(|method| method == "client_secret_basic") {
            return Err(DiscoveryError::MissingClientSecretBasic);
        }
    }
    // RFC 8414 section 2: the authorization endpoint is required when a grant type uses it.
    if raw
        .grant_types_supported
        .iter()
        .any(|grant| grant == "authorization_code" || grant == "implicit")
        && raw.authorization_endpoint.is_none()
    {
        return Err(DiscoveryError::Missing {
            field: "authorization_endpoint",
        });
    }
    if capabilities.contains(&Capability::SsoOpenidConnect) {
        if raw.issuer.is_none() {
            return Err(DiscoveryError::Missing { field: "issuer" });
        }
        if raw.jwks_uri.is_none() {
            return Err(DiscoveryError::Missing { field: "jwks_uri" });
        }
    }
    // SMART App Launch 2.x: the launch flows need somewhere to send the user, and the
    // grant that follows ("authorization_code" when App Launch is supported).
    if capabilities.contains(&Capability::LaunchEhr)
        || capabilities.contains(&Capability::LaunchStandalone)
    {
        if raw.authorization_endpoint.is_none() {
            return Err(DiscoveryError::Missing {
                field: "authorization_endpoint",
            });
        }
        if !raw
            .grant_types_supported
            .iter()
            .any(|grant| grant == "authorization_code")
        {
            return Err(DiscoveryError::InvalidEntry {
                field: "grant_types_supported",
            });
        }
    }
    if let Some(issuer) = &raw.issuer {
        // RFC 8414 section 2: the issuer has no query and no fragment.
        if check_url(issuer, "issuer")?.query().is_some() {
            return Err(DiscoveryError::InvalidUrl { field: "issuer" });
        }
    }
    for (field, url) in raw.endpoint_urls() {
        if let Some(url) = url {
            check_url(url, field)?;
        }
    }
    for endpoint in &raw.associated_endpoints {
        check_url(&endpoint.url, "associated_endpoints")?;
        // Capabilities as the top-level list has them: one printable token each.
        if !endpoint
            .capabilities
            .iter()
            .all(|capability| is_list_entry(capability.as_str()))
        {
            return Err(DiscoveryError::InvalidEntry {
                field: "associated_endpoints",
            });
        }
    }
    if raw
        .user_access_brand_identifier
        .as_ref()
        .is_some_and(BrandIdentifier::is_blank)
    {
        return Err(DiscoveryError::Missing {
            field: "user_access_brand_identifier",
        });
    }
    Ok(())
}

/// An absolute `https` URL (`http` only for loopback hosts) without a fragment, even an
/// empty one (RFC 6749 sections 3.1 and 3.2 for endpoints; a fragment is never sent to a
/// server, so one in any URL of this document is a mistake or a disguise), and without
/// user information (the document is public).
///
/// The document publishes the text as written, and clients read it with parsers of their
/// own: the text must be a plain RFC 3986 URI (`scheme://authority...`, only the
/// characters RFC 3986 allows), so that every parser finds the host the check found. A
/// lenient (WHATWG) parse alone would pass `http://localhost\@evil.example/token`, whose
/// host is `localhost` there and `evil.example` for an RFC 3986 client.
fn check_url(value: &str, field: &'static str) -> Result<Url, DiscoveryError> {
    let has_authority = value
        .split_once(':')
        .is_some_and(|(_, rest)| rest.starts_with("//"));
    match Url::parse(value) {
        Ok(url)
            if has_authority
                && value.bytes().all(is_uri_character)
                && is_allowed_url(&url)
                && url.fragment().is_none()
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            Ok(url)
        }
        _ => Err(DiscoveryError::InvalidUrl { field }),
    }
}

/// Whether a list entry (a grant type, a method, an algorithm, a capability) is a value:
/// non-empty visible ASCII, without spaces.
fn is_list_entry(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_graphic())
}

macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident: $kind:tt;)*) => {
        $( getters!(@one $(#[$doc])* $name $kind); )*
    };
    (@one $(#[$doc:meta])* $name:ident text) => {
        $(#[$doc])*
        pub fn $name(&self) -> Option<&str> {
            self.raw.$name.as_deref()
        }
    };
    (@one $(#[$doc:meta])* $name:ident list) => {
        $(#[$doc])*
        pub fn $name(&self) -> &[String] {
            &self.raw.$name
        }
    };
}

impl SmartConfiguration {
    /// An empty builder.
    ///
    /// ```
    /// use smart_auth::discovery::{Capability, SmartConfiguration};
    ///
    /// let configuration = SmartConfiguration::builder()
    ///     .token_endpoint("https://auth.example.org/token")
    ///     .grant_types_supported(["client_credentials"])
    ///     .token_endpoint_auth_methods_supported(["client_secret_basic"])
    ///     .capabilities([Capability::ClientConfidentialSymmetric, Capability::PermissionV2])
    ///     .build()?;
    /// assert_eq!(configuration.grant_types_supported(), ["client_credentials"]);
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn builder() -> SmartConfigurationBuilder {
        SmartConfigurationBuilder::default()
    }

    /// A builder preset for SMART Backend Services: `grant_types_supported`
    /// `["client_credentials"]`, `token_endpoint_auth_methods_supported`
    /// `["private_key_jwt"]`, `token_endpoint_auth_signing_alg_values_supported`
    /// `["RS384", "ES384"]` and `capabilities` `["client-confidential-asymmetric",
    /// "permission-v2"]`.
    ///
    /// ```
    /// use smart_auth::discovery::SmartConfiguration;
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// assert_eq!(configuration.token_endpoint(), "https://auth.example.org/token");
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn backend_services(token_endpoint: impl Into<String>) -> SmartConfigurationBuilder {
        Self::builder()
            .token_endpoint(token_endpoint)
            .grant_types_supported(["client_credentials"])
            .token_endpoint_auth_methods_supported(["private_key_jwt"])
            .token_endpoint_auth_signing_alg_values_supported(["RS384", "ES384"])
            .capabilities([
                Capability::ClientConfidentialAsymmetric,
                Capability::PermissionV2,
            ])
    }

    /// Reads the authorization server's own metadata (its SMART configuration, else its
    /// OpenID Connect or RFC 8414 metadata) and builds the document this resource server
    /// should publish: the endpoints, grant types, authentication methods and algorithms,
    /// scopes and capabilities the server states. Fetched with the same limits as the key
    /// discovery of [`SmartAuthLayer`](crate::SmartAuthLayer): `https` (or loopback), no
    /// redirects, 5 s, 1 MiB. OpenID Connect and RFC 8414 metadata must name `issuer` as
    /// their `issuer`; a SMART configuration may leave it out, but any `issuer` it states
    /// must equal `issuer`. The published document carries `issuer` only when the
    /// metadata lists the `sso-openid-connect` capability (SMART omits it otherwise).
    /// Metadata that lists no `grant_types_supported` (Microsoft Entra ID's and Amazon
    /// Cognito's) gives [`DiscoveryError::Missing`] for it: RFC 8414's default for an
    /// omitted list (`authorization_code` and `implicit`) is not this server's to claim;
    /// state the grant types with [`SmartConfigurationBuilder::from_issuer`] and
    /// `grant_types_supported` before `build`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), smart_auth::discovery::DiscoveryError> {
    /// use smart_auth::discovery::SmartConfiguration;
    /// let configuration = SmartConfiguration::from_issuer("https://auth.example.org").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Fetch`] or [`DiscoveryError::IssuerMismatch`] when the metadata
    /// cannot be had, [`DiscoveryError::Missing`] for `issuer` when OpenID Connect or
    /// RFC 8414 metadata names no issuer; a validation error when what it states does not
    /// make a valid document.
    pub async fn from_issuer(issuer: &str) -> Result<Self, DiscoveryError> {
        SmartConfigurationBuilder::from_issuer(issuer, None)
            .await?
            .build()
    }

    /// `token_endpoint`.
    ///
    /// ```
    /// use smart_auth::discovery::SmartConfiguration;
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// assert_eq!(configuration.token_endpoint(), "https://auth.example.org/token");
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn token_endpoint(&self) -> &str {
        self.raw.token_endpoint.as_deref().unwrap_or_default()
    }

    /// `capabilities`.
    ///
    /// ```
    /// use smart_auth::discovery::{Capability, SmartConfiguration};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// assert_eq!(
    ///     configuration.capabilities(),
    ///     [Capability::ClientConfidentialAsymmetric, Capability::PermissionV2],
    /// );
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn capabilities(&self) -> &[Capability] {
        self.raw.capabilities.as_deref().unwrap_or_default()
    }

    /// `code_challenge_methods_supported`.
    ///
    /// ```
    /// use smart_auth::discovery::SmartConfiguration;
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// assert_eq!(configuration.code_challenge_methods_supported(), ["S256"]); // the default
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn code_challenge_methods_supported(&self) -> &[String] {
        self.raw
            .code_challenge_methods_supported
            .as_deref()
            .unwrap_or_default()
    }

    /// `associated_endpoints`.
    ///
    /// ```
    /// use smart_auth::discovery::{Capability, SmartConfiguration};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
    ///     .associated_endpoint("https://state.example.org/fhir", [Capability::SmartAppState])
    ///     .build()?;
    /// assert_eq!(configuration.associated_endpoints()[0].url, "https://state.example.org/fhir");
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn associated_endpoints(&self) -> &[AssociatedEndpoint] {
        &self.raw.associated_endpoints
    }

    /// `user_access_brand_identifier`.
    ///
    /// ```
    /// use smart_auth::discovery::{BrandIdentifier, SmartConfiguration};
    ///
    /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
    /// assert_eq!(preset().build()?.user_access_brand_identifier(), None); // not stated unless set
    /// let brand = BrandIdentifier::new(Some("urn:ietf:rfc:3986"), "https://example.org");
    /// let configuration = preset().user_access_brand_identifier(brand.clone()).build()?;
    /// assert_eq!(configuration.user_access_brand_identifier(), Some(&brand));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn user_access_brand_identifier(&self) -> Option<&BrandIdentifier> {
        self.raw.user_access_brand_identifier.as_ref()
    }

    /// Fields this crate does not model, as sent.
    ///
    /// ```
    /// use smart_auth::discovery::SmartConfiguration;
    ///
    /// let configuration: SmartConfiguration = serde_json::from_value(serde_json::json!({
    ///     "token_endpoint": "https://auth.example.org/token",
    ///     "grant_types_supported": ["client_credentials"],
    ///     "capabilities": ["permission-v2"],
    ///     "https://example.org/fhir/smart-ext": {"tier": "gold"}
    /// }))?;
    /// assert_eq!(configuration.extra()["https://example.org/fhir/smart-ext"]["tier"], "gold");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn extra(&self) -> &Map<String, Value> {
        &self.raw.extra
    }

    getters! {
        /// `issuer`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.issuer(), None); // not stated unless set
        /// let configuration = preset().issuer("https://auth.example.org").build()?;
        /// assert_eq!(configuration.issuer(), Some("https://auth.example.org"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        issuer: text;
        /// `jwks_uri`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.jwks_uri(), None); // not stated unless set
        /// let configuration = preset().jwks_uri("https://auth.example.org/jwks.json").build()?;
        /// assert_eq!(configuration.jwks_uri(), Some("https://auth.example.org/jwks.json"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        jwks_uri: text;
        /// `authorization_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.authorization_endpoint(), None); // not stated unless set
        /// let configuration = preset().authorization_endpoint("https://auth.example.org/authorize").build()?;
        /// assert_eq!(configuration.authorization_endpoint(), Some("https://auth.example.org/authorize"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        authorization_endpoint: text;
        /// `registration_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.registration_endpoint(), None); // not stated unless set
        /// let configuration = preset().registration_endpoint("https://auth.example.org/register").build()?;
        /// assert_eq!(configuration.registration_endpoint(), Some("https://auth.example.org/register"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        registration_endpoint: text;
        /// `management_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.management_endpoint(), None); // not stated unless set
        /// let configuration = preset().management_endpoint("https://auth.example.org/manage").build()?;
        /// assert_eq!(configuration.management_endpoint(), Some("https://auth.example.org/manage"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        management_endpoint: text;
        /// `introspection_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.introspection_endpoint(), None); // not stated unless set
        /// let configuration = preset().introspection_endpoint("https://auth.example.org/introspect").build()?;
        /// assert_eq!(configuration.introspection_endpoint(), Some("https://auth.example.org/introspect"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        introspection_endpoint: text;
        /// `revocation_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.revocation_endpoint(), None); // not stated unless set
        /// let configuration = preset().revocation_endpoint("https://auth.example.org/revoke").build()?;
        /// assert_eq!(configuration.revocation_endpoint(), Some("https://auth.example.org/revoke"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        revocation_endpoint: text;
        /// `user_access_brand_bundle`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.user_access_brand_bundle(), None); // not stated unless set
        /// let configuration = preset().user_access_brand_bundle("https://brands.example.org/bundle.json").build()?;
        /// assert_eq!(configuration.user_access_brand_bundle(), Some("https://brands.example.org/bundle.json"));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        user_access_brand_bundle: text;
        /// `grant_types_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.grant_types_supported(), ["client_credentials"]); // the Backend Services preset
        /// let configuration = preset()
        ///     .authorization_endpoint("https://auth.example.org/authorize") // this grant needs it
        ///     .grant_types_supported(["client_credentials", "authorization_code"])
        ///     .build()?;
        /// assert_eq!(configuration.grant_types_supported(), ["client_credentials", "authorization_code"]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        grant_types_supported: list;
        /// `token_endpoint_auth_methods_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.token_endpoint_auth_methods_supported(), ["private_key_jwt"]); // the Backend Services preset
        /// let configuration = preset().token_endpoint_auth_methods_supported(["private_key_jwt", "client_secret_basic"]).build()?;
        /// assert_eq!(configuration.token_endpoint_auth_methods_supported(), ["private_key_jwt", "client_secret_basic"]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        token_endpoint_auth_methods_supported: list;
        /// `token_endpoint_auth_signing_alg_values_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert_eq!(preset().build()?.token_endpoint_auth_signing_alg_values_supported(), ["RS384", "ES384"]); // the Backend Services preset
        /// let configuration = preset().token_endpoint_auth_signing_alg_values_supported(["ES384"]).build()?;
        /// assert_eq!(configuration.token_endpoint_auth_signing_alg_values_supported(), ["ES384"]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        token_endpoint_auth_signing_alg_values_supported: list;
        /// `scopes_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert!(preset().build()?.scopes_supported().is_empty()); // not stated unless set
        /// let configuration = preset().scopes_supported(["system/Patient.rs", "system/Observation.rs"]).build()?;
        /// assert_eq!(configuration.scopes_supported(), ["system/Patient.rs", "system/Observation.rs"]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        scopes_supported: list;
        /// `response_types_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// assert!(preset().build()?.response_types_supported().is_empty()); // not stated unless set
        /// let configuration = preset().response_types_supported(["code"]).build()?;
        /// assert_eq!(configuration.response_types_supported(), ["code"]);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        response_types_supported: list;
    }

    /// The `rest.security` element of a FHIR CapabilityStatement for servers that assemble
    /// their own `/metadata`: the `SMART-on-FHIR` service coding and the (deprecated but
    /// still read) `oauth-uris` extension with the token, authorize, register, manage,
    /// introspect and revoke endpoints that this document names.
    ///
    /// ```
    /// use smart_auth::discovery::SmartConfiguration;
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let security = configuration.capability_statement_security();
    /// assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn capability_statement_security(&self) -> Value {
        let raw = &self.raw;
        let endpoints = [
            ("token", &raw.token_endpoint),
            ("authorize", &raw.authorization_endpoint),
            ("register", &raw.registration_endpoint),
            ("manage", &raw.management_endpoint),
            ("introspect", &raw.introspection_endpoint),
            ("revoke", &raw.revocation_endpoint),
        ];
        let uris: Vec<Value> = endpoints
            .iter()
            .filter_map(|(name, url)| {
                url.as_ref()
                    .map(|url| serde_json::json!({ "url": name, "valueUri": url }))
            })
            .collect();
        serde_json::json!({
            "extension": [{
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": uris,
            }],
            "service": [{
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                    "display": "SMART-on-FHIR",
                }],
                "text": "OAuth2 using the SMART App Launch profile",
            }],
        })
    }
}

/// Builds a [`SmartConfiguration`]; see [`SmartConfiguration::builder`] and
/// [`SmartConfiguration::backend_services`].
///
/// ```
/// use smart_auth::discovery::{Capability, SmartConfiguration};
/// let configuration = SmartConfiguration::builder()
///     .token_endpoint("https://auth.example.org/token")
///     .grant_types_supported(["client_credentials"])
///     .capabilities([Capability::ClientConfidentialSymmetric])
///     .introspection_endpoint("https://auth.example.org/introspect")
///     .build()?;
/// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SmartConfigurationBuilder {
    raw: RawConfiguration,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $kind:tt;)*) => {
        $( setters!(@one $(#[$doc])* $name $kind); )*
    };
    (@one $(#[$doc:meta])* $name:ident text) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self.raw.$name = Some(value.into());
            self
        }
    };
    (@one $(#[$doc:meta])* $name:ident list) => {
        $(#[$doc])*
        pub fn $name<I, S>(mut self, values: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.raw.$name = values.into_iter().map(Into::into).collect();
            self
        }
    };
}

impl SmartConfigurationBuilder {
    setters! {
        /// `issuer` (required with `sso-openid-connect`, which is the only case SMART
        /// states it in; no query or fragment).
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .issuer("https://auth.example.org")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["issuer"], "https://auth.example.org");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        issuer: text;
        /// `jwks_uri` (required with `sso-openid-connect`).
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .jwks_uri("https://auth.example.org/jwks.json")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["jwks_uri"], "https://auth.example.org/jwks.json");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        jwks_uri: text;
        /// `authorization_endpoint` (required for the launch flows; Inferno's STU2
        /// discovery test also wants it).
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .authorization_endpoint("https://auth.example.org/authorize")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["authorization_endpoint"], "https://auth.example.org/authorize");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        authorization_endpoint: text;
        /// `token_endpoint` (required).
        ///
        /// ```
        /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
        ///
        /// let configuration = SmartConfiguration::builder()
        ///     .token_endpoint("https://auth.example.org/oauth2/token")
        ///     .grant_types_supported(["client_credentials"])
        ///     .capabilities([])
        ///     .build()?;
        /// assert_eq!(configuration.token_endpoint(), "https://auth.example.org/oauth2/token");
        /// let error = SmartConfiguration::builder().grant_types_supported(["client_credentials"]).build();
        /// assert_eq!(error.unwrap_err(), DiscoveryError::Missing { field: "token_endpoint" });
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        token_endpoint: text;
        /// `registration_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .registration_endpoint("https://auth.example.org/register")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["registration_endpoint"], "https://auth.example.org/register");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        registration_endpoint: text;
        /// `management_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .management_endpoint("https://auth.example.org/manage")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["management_endpoint"], "https://auth.example.org/manage");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        management_endpoint: text;
        /// `introspection_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .introspection_endpoint("https://auth.example.org/introspect")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["introspection_endpoint"], "https://auth.example.org/introspect");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        introspection_endpoint: text;
        /// `revocation_endpoint`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .revocation_endpoint("https://auth.example.org/revoke")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["revocation_endpoint"], "https://auth.example.org/revoke");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        revocation_endpoint: text;
        /// `user_access_brand_bundle`.
        ///
        /// ```
        /// use smart_auth::discovery::SmartConfiguration;
        ///
        /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
        ///     .user_access_brand_bundle("https://brands.example.org/bundle.json")
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["user_access_brand_bundle"], "https://brands.example.org/bundle.json");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        user_access_brand_bundle: text;
        /// `grant_types_supported` (required, not empty).
        ///
        /// ```
        /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// let configuration = preset()
        ///     .authorization_endpoint("https://auth.example.org/authorize") // this grant needs it
        ///     .grant_types_supported(["client_credentials", "authorization_code"])
        ///     .build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["grant_types_supported"], serde_json::json!(["client_credentials", "authorization_code"]));
        /// // Required, and never empty.
        /// let error = preset().grant_types_supported(Vec::<String>::new()).build().unwrap_err();
        /// assert_eq!(error, DiscoveryError::Missing { field: "grant_types_supported" });
        /// # let _ = DiscoveryError::InvalidCodeChallengeMethods;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        grant_types_supported: list;
        /// `token_endpoint_auth_methods_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// let configuration = preset().token_endpoint_auth_methods_supported(["private_key_jwt", "client_secret_basic"]).build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["token_endpoint_auth_methods_supported"], serde_json::json!(["private_key_jwt", "client_secret_basic"]));
        /// # let _ = DiscoveryError::InvalidCodeChallengeMethods;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        token_endpoint_auth_methods_supported: list;
        /// `token_endpoint_auth_signing_alg_values_supported` (`RS384` or `ES384` required
        /// with `client-confidential-asymmetric`).
        ///
        /// ```
        /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// let configuration = preset().token_endpoint_auth_signing_alg_values_supported(["ES384"]).build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["token_endpoint_auth_signing_alg_values_supported"], serde_json::json!(["ES384"]));
        /// // `client-confidential-asymmetric` needs RS384 or ES384.
        /// let error = preset().token_endpoint_auth_signing_alg_values_supported(["ES256"]).build().unwrap_err();
        /// assert_eq!(error, DiscoveryError::MissingAsymmetricAlgorithm);
        /// # let _ = DiscoveryError::InvalidCodeChallengeMethods;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        token_endpoint_auth_signing_alg_values_supported: list;
        /// `scopes_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// let configuration = preset().scopes_supported(["system/Patient.rs", "system/Observation.rs"]).build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["scopes_supported"], serde_json::json!(["system/Patient.rs", "system/Observation.rs"]));
        /// # let _ = DiscoveryError::InvalidCodeChallengeMethods;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        scopes_supported: list;
        /// `response_types_supported`.
        ///
        /// ```
        /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
        ///
        /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
        /// let configuration = preset().response_types_supported(["code"]).build()?;
        /// assert_eq!(serde_json::to_value(&configuration)?["response_types_supported"], serde_json::json!(["code"]));
        /// # let _ = DiscoveryError::InvalidCodeChallengeMethods;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        response_types_supported: list;
    }

    /// `capabilities` (required).
    ///
    /// ```
    /// use smart_auth::discovery::{Capability, SmartConfiguration};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
    ///     .capabilities([Capability::ClientConfidentialAsymmetric, Capability::PermissionV1])
    ///     .build()?;
    /// // Replaces the preset's list.
    /// assert!(!configuration.capabilities().contains(&Capability::PermissionV2));
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn capabilities(mut self, capabilities: impl IntoIterator<Item = Capability>) -> Self {
        self.raw.capabilities = Some(capabilities.into_iter().map(Capability::normal).collect());
        self
    }

    /// Adds one capability.
    ///
    /// ```
    /// use smart_auth::discovery::{Capability, SmartConfiguration};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
    ///     .capability(Capability::PermissionOffline)
    ///     .capability(Capability::Other("permission-offline".into())) // the same, not added twice
    ///     .build()?;
    /// assert_eq!(configuration.capabilities().len(), 3);
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn capability(mut self, capability: Capability) -> Self {
        let capability = capability.normal();
        let capabilities = self.raw.capabilities.get_or_insert_with(Vec::new);
        if !capabilities.contains(&capability) {
            capabilities.push(capability);
        }
        self
    }

    /// `code_challenge_methods_supported` (default `["S256"]`; must contain `S256`, never
    /// `plain`).
    ///
    /// ```
    /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
    ///
    /// let plain = SmartConfiguration::backend_services("https://auth.example.org/token")
    ///     .code_challenge_methods_supported(["S256", "plain"])
    ///     .build();
    /// assert_eq!(plain.unwrap_err(), DiscoveryError::InvalidCodeChallengeMethods);
    /// ```
    pub fn code_challenge_methods_supported<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.raw.code_challenge_methods_supported =
            Some(methods.into_iter().map(Into::into).collect());
        self
    }

    /// `user_access_brand_identifier`: the server's primary brand in the bundle that
    /// `user_access_brand_bundle` names (its `value` must not be blank).
    ///
    /// ```
    /// use smart_auth::discovery::{BrandIdentifier, DiscoveryError, SmartConfiguration};
    ///
    /// let preset = || SmartConfiguration::backend_services("https://auth.example.org/token");
    /// let brand = BrandIdentifier::new(Some("urn:ietf:rfc:3986"), "https://example.org");
    /// assert!(preset().user_access_brand_identifier(brand).build().is_ok());
    /// let blank = BrandIdentifier::new(None::<String>, " ");
    /// assert_eq!(
    ///     preset().user_access_brand_identifier(blank).build().unwrap_err(),
    ///     DiscoveryError::Missing { field: "user_access_brand_identifier" }
    /// );
    /// ```
    pub fn user_access_brand_identifier(mut self, identifier: BrandIdentifier) -> Self {
        self.raw.user_access_brand_identifier = Some(identifier);
        self
    }

    /// Adds an `associated_endpoints` entry.
    ///
    /// ```
    /// use smart_auth::discovery::{Capability, SmartConfiguration};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
    ///     .associated_endpoint("https://a.example.org/fhir", [Capability::SmartAppState])
    ///     .associated_endpoint("https://b.example.org/fhir", [Capability::SmartAppState])
    ///     .build()?;
    /// assert_eq!(configuration.associated_endpoints().len(), 2);
    /// # Ok::<(), smart_auth::discovery::DiscoveryError>(())
    /// ```
    pub fn associated_endpoint(
        mut self,
        url: impl Into<String>,
        capabilities: impl IntoIterator<Item = Capability>,
    ) -> Self {
        let mut normal: Vec<Capability> = Vec::new();
        for capability in capabilities.into_iter().map(Capability::normal) {
            if !normal.contains(&capability) {
                normal.push(capability);
            }
        }
        self.raw.associated_endpoints.push(AssociatedEndpoint {
            url: url.into(),
            capabilities: normal,
        });
        self
    }

    /// Adds a field this crate does not model (a later SMART field, or an extension named
    /// by a full URI). Known field names are refused at build.
    ///
    /// ```
    /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
    ///
    /// let builder = || SmartConfiguration::backend_services("https://auth.example.org/token");
    /// let configuration = builder().extra("https://example.org/smart-ext", serde_json::json!(true)).build()?;
    /// assert_eq!(configuration.extra()["https://example.org/smart-ext"], true);
    ///
    /// // A field the document models is set with its own method, never as an extra.
    /// let error = builder().extra("token_endpoint", serde_json::json!("https://x.example")).build();
    /// assert_eq!(error.unwrap_err(), DiscoveryError::InvalidValue { field: "extra" });
    /// # Ok::<(), DiscoveryError>(())
    /// ```
    pub fn extra(mut self, name: impl Into<String>, value: Value) -> Self {
        self.raw.extra.insert(name.into(), value);
        self
    }

    /// Validates and builds the document.
    ///
    /// # Errors
    ///
    /// The first rule the document breaks (see [`SmartConfiguration`]).
    ///
    /// ```
    /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let json = serde_json::to_value(&configuration).expect("serializable");
    /// assert_eq!(json["token_endpoint"], "https://auth.example.org/token");
    ///
    /// let error = SmartConfiguration::backend_services("http://auth.example.org/token").build();
    /// assert_eq!(error.unwrap_err(), DiscoveryError::InvalidUrl { field: "token_endpoint" });
    /// # Ok::<(), DiscoveryError>(())
    /// ```
    pub fn build(self) -> Result<SmartConfiguration, DiscoveryError> {
        // An extra field with a modelled name would be written twice.
        if self
            .raw
            .extra
            .keys()
            .any(|name| KNOWN_FIELDS.contains(&name.as_str()))
        {
            return Err(DiscoveryError::InvalidValue { field: "extra" });
        }
        SmartConfiguration::try_from(self.raw)
    }

    /// A builder filled from the authorization server's metadata; see
    /// [`SmartConfiguration::from_issuer`]. `client` replaces the default HTTP client
    /// (the limits still apply).
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::InvalidUrl`] for an issuer that is not `https` (`http` only for
    /// loopback hosts) or has a query, fragment or credentials (nothing is fetched then);
    /// [`DiscoveryError::Fetch`], [`DiscoveryError::IssuerMismatch`], or
    /// [`DiscoveryError::Missing`] for `issuer` (OpenID Connect or RFC 8414 metadata
    /// without one).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use smart_auth::discovery::SmartConfigurationBuilder;
    /// use smart_auth::testing::TestIssuer;
    ///
    /// let issuer = TestIssuer::start().await;
    /// // What the authorization server states, with a setting of this server on top.
    /// let configuration = SmartConfigurationBuilder::from_issuer(issuer.url(), None)
    ///     .await?
    ///     .scopes_supported(["system/Patient.rs", "system/Observation.rs"])
    ///     .build()?;
    /// assert_eq!(configuration.token_endpoint(), format!("{}/token", issuer.url()));
    /// assert_eq!(configuration.scopes_supported(), ["system/Patient.rs", "system/Observation.rs"]);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn from_issuer(
        issuer: &str,
        client: Option<reqwest::Client>,
    ) -> Result<Self, DiscoveryError> {
        let issuer_url =
            Url::parse(issuer).map_err(|_| DiscoveryError::InvalidUrl { field: "issuer" })?;
        // RFC 8414 section 2: an issuer has no query or fragment (either would swallow or
        // bend the well-known path appended to it); credentials in it would be sent along.
        if !(is_allowed_discovered_url(&issuer_url) && issuer_url.query().is_none()) {
            return Err(DiscoveryError::InvalidUrl { field: "issuer" });
        }
        let timeout = std::time::Duration::from_secs(5);
        let fetcher = Fetcher {
            client: match client {
                Some(client) => client,
                None => default_client(timeout).map_err(|error| DiscoveryError::Fetch {
                    reason: error.to_string(),
                })?,
            },
            timeout,
            max_body: 1024 * 1024,
        };
        let document = fetch::discover_metadata(&fetcher, issuer, |doc| {
            fetch::names_absolute_url(doc, "token_endpoint")
        })
        .await
        .map_err(|error| match error {
            FetchError::IssuerMismatch => DiscoveryError::IssuerMismatch,
            FetchError::IssuerMissing => DiscoveryError::Missing { field: "issuer" },
            other => DiscoveryError::Fetch {
                reason: other.to_string(),
            },
        })?;
        Self::from_metadata(document)?.named_by(&issuer_url)
    }

    /// The document, when every URL in it may be named by metadata fetched from `issuer`:
    /// metadata served over TLS never sends clients to plain `http`, not even to a
    /// loopback address (where a client's own machine would receive its credentials).
    fn named_by(self, issuer: &Url) -> Result<Self, DiscoveryError> {
        let issuer_url = ("issuer", self.raw.issuer.as_deref());
        for (field, url) in std::iter::once(issuer_url).chain(self.raw.endpoint_urls()) {
            // One that is no URL at all is refused when the document is built.
            if let Some(Ok(url)) = url.map(Url::parse)
                && !fetch::is_allowed_url_named_by(&url, issuer)
            {
                return Err(DiscoveryError::InvalidUrl { field });
            }
        }
        Ok(self)
    }

    /// Maps authorization-server metadata onto the document a resource server publishes.
    pub(crate) fn from_metadata(document: Map<String, Value>) -> Result<Self, DiscoveryError> {
        let text = |field: &'static str| -> Result<Option<String>, DiscoveryError> {
            match document.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(value)) => Ok(Some(value.clone())),
                Some(_) => Err(DiscoveryError::InvalidValue { field }),
            }
        };
        let list = |field: &'static str| -> Result<Vec<String>, DiscoveryError> {
            match document.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_owned)
                            .ok_or(DiscoveryError::InvalidValue { field })
                    })
                    .collect(),
                Some(_) => Err(DiscoveryError::InvalidValue { field }),
            }
        };
        let auth_methods = list("token_endpoint_auth_methods_supported")?;
        let signing_algs = list("token_endpoint_auth_signing_alg_values_supported")?;
        let capabilities = match document.get("capabilities") {
            Some(value) if !value.is_null() => list("capabilities")?
                .iter()
                .map(|c| Capability::parse(c))
                .collect(),
            // OpenID Connect / RFC 8414 metadata states no SMART capabilities: derive the
            // client-authentication ones from the methods it supports. SMART's asymmetric
            // authentication needs RS384 or ES384 too; metadata that lists no signing
            // algorithm (Microsoft Entra ID) does not claim it. A `null` says as little.
            _ => {
                let mut derived = Vec::new();
                if auth_methods.iter().any(|m| m == "private_key_jwt")
                    && names_smart_asymmetric_algorithm(&signing_algs)
                {
                    derived.push(Capability::ClientConfidentialAsymmetric);
                }
                if auth_methods.iter().any(|m| m == "client_secret_basic") {
                    derived.push(Capability::ClientConfidentialSymmetric);
                }
                derived
            }
        };
        // Metadata without grant types leaves the field empty, and the build fails: RFC 8414
        // would mean authorization_code and implicit, neither of which is ours to claim.
        let grant_types = list("grant_types_supported")?;
        // SMART App Launch 2.x: `issuer` is stated with `sso-openid-connect` and omitted
        // otherwise. (Discovery has already checked that any issuer is the configured one.)
        let issuer =
            text("issuer")?.filter(|_| capabilities.contains(&Capability::SsoOpenidConnect));
        let raw = RawConfiguration {
            issuer,
            jwks_uri: text("jwks_uri")?,
            authorization_endpoint: text("authorization_endpoint")?,
            grant_types_supported: grant_types,
            token_endpoint: text("token_endpoint")?,
            token_endpoint_auth_methods_supported: auth_methods,
            token_endpoint_auth_signing_alg_values_supported: signing_algs,
            registration_endpoint: text("registration_endpoint")?,
            scopes_supported: list("scopes_supported")?,
            response_types_supported: list("response_types_supported")?,
            management_endpoint: text("management_endpoint")?,
            introspection_endpoint: text("introspection_endpoint")?,
            revocation_endpoint: text("revocation_endpoint")?,
            capabilities: Some(capabilities),
            // The resource server publishes only the safe PKCE method, which the
            // authorization server must support when it names its methods.
            code_challenge_methods_supported: {
                let methods = list("code_challenge_methods_supported")?;
                if !methods.is_empty() && !methods.iter().any(|method| method == "S256") {
                    return Err(DiscoveryError::InvalidCodeChallengeMethods);
                }
                Some(vec!["S256".to_owned()])
            },
            associated_endpoints: Vec::new(),
            user_access_brand_bundle: text("user_access_brand_bundle")?,
            user_access_brand_identifier: match document.get("user_access_brand_identifier") {
                None | Some(Value::Null) => None,
                Some(value) => {
                    let identifier = BrandIdentifier::deserialize(value).map_err(|_| {
                        DiscoveryError::InvalidValue {
                            field: "user_access_brand_identifier",
                        }
                    })?;
                    // A blank one says nothing: left out rather than copied into a
                    // document that would then not build.
                    if identifier.is_blank() {
                        tracing::debug!(
                            "the authorization server's user_access_brand_identifier is blank: left out"
                        );
                        None
                    } else {
                        Some(identifier)
                    }
                }
            },
            extra: Map::new(),
        };
        Ok(Self { raw })
    }
}

/// Field names the document models (kept in step with [`RawConfiguration`]).
const KNOWN_FIELDS: [&str; 18] = [
    "issuer",
    "jwks_uri",
    "authorization_endpoint",
    "grant_types_supported",
    "token_endpoint",
    "token_endpoint_auth_methods_supported",
    "token_endpoint_auth_signing_alg_values_supported",
    "registration_endpoint",
    "scopes_supported",
    "response_types_supported",
    "management_endpoint",
    "introspection_endpoint",
    "revocation_endpoint",
    "capabilities",
    "code_challenge_methods_supported",
    "associated_endpoints",
    "user_access_brand_bundle",
    "user_access_brand_identifier",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn derived_capabilities(metadata: Value) -> Vec<Capability> {
        let Value::Object(document) = metadata else {
            panic!("an object")
        };
        SmartConfigurationBuilder::from_metadata(document)
            .unwrap()
            .grant_types_supported(["client_credentials"])
            .build()
            .unwrap()
            .capabilities()
            .to_vec()
    }

    fn from_metadata(metadata: Value) -> Result<SmartConfigurationBuilder, DiscoveryError> {
        let Value::Object(document) = metadata else {
            panic!("an object")
        };
        SmartConfigurationBuilder::from_metadata(document)
    }

    /// Metadata fetched over TLS names no plain-`http` URL, loopback ones included (a
    /// client's own machine would receive its credentials); metadata of a loopback `http`
    /// issuer may.
    #[test]
    fn metadata_over_tls_names_https_urls_only() {
        let tls = Url::parse("https://as.example").unwrap();
        let loopback = Url::parse("http://127.0.0.1:8080").unwrap();
        let fields = [
            "jwks_uri",
            "authorization_endpoint",
            "token_endpoint",
            "registration_endpoint",
            "management_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
            "user_access_brand_bundle",
        ];
        for field in fields {
            for url in [
                "http://127.0.0.1:8080/x",
                "http://localhost/x",
                "http://[::1]/x",
            ] {
                let mut metadata = json!({"token_endpoint": "https://as.example/token"});
                metadata[field] = json!(url);
                assert_eq!(
                    from_metadata(metadata.clone())
                        .unwrap()
                        .named_by(&tls)
                        .err(),
                    Some(DiscoveryError::InvalidUrl { field }),
                    "{field} {url}"
                );
                assert!(
                    from_metadata(metadata).unwrap().named_by(&loopback).is_ok(),
                    "{field} {url}"
                );
            }
            let mut metadata = json!({"token_endpoint": "https://as.example/token"});
            metadata[field] = json!("https://other.example/x");
            assert!(
                from_metadata(metadata).unwrap().named_by(&tls).is_ok(),
                "{field}"
            );
        }
    }

    /// The document states S256 alone; the authorization server's own list must name it
    /// when it names any, and be a list of strings.
    #[test]
    fn metadata_code_challenge_methods() {
        let with = |methods: Value| {
            from_metadata(json!({
                "token_endpoint": "https://as.example/token",
                "grant_types_supported": ["client_credentials"],
                "capabilities": ["client-confidential-symmetric"],
                "code_challenge_methods_supported": methods,
            }))
            .and_then(SmartConfigurationBuilder::build)
            .map(|document| document.code_challenge_methods_supported().to_vec())
        };
        let s256 = Ok(vec!["S256".to_owned()]);
        assert_eq!(with(json!(["S256"])), s256);
        assert_eq!(with(json!(["plain", "S256"])), s256);
        assert_eq!(with(Value::Null), s256);
        assert_eq!(with(json!([])), s256);
        assert_eq!(
            with(json!(["plain"])),
            Err(DiscoveryError::InvalidCodeChallengeMethods)
        );
        for wrong in [json!("S256"), json!(7), json!({}), json!([1])] {
            assert_eq!(
                with(wrong.clone()),
                Err(DiscoveryError::InvalidValue {
                    field: "code_challenge_methods_supported"
                }),
                "{wrong}"
            );
        }
    }

    /// `capabilities: null` says no more than an absent member: derived from the methods.
    #[test]
    fn null_capabilities_are_derived() {
        let metadata = |capabilities: Option<Value>| {
            let mut metadata = json!({
                "token_endpoint": "https://as.example/token",
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            });
            if let Some(capabilities) = capabilities {
                metadata["capabilities"] = capabilities;
            }
            metadata
        };
        assert_eq!(
            derived_capabilities(metadata(Some(Value::Null))),
            [Capability::ClientConfidentialSymmetric]
        );
        assert_eq!(
            derived_capabilities(metadata(Some(Value::Null))),
            derived_capabilities(metadata(None))
        );
    }

    /// `user_access_brand_identifier` is a FHIR Identifier (SMART 2.2): the IG's own
    /// example reads, round-trips and builds; the pre-2.2 string is read as the value; an
    /// identifier without a value, with a blank one, or of another JSON type is refused.
    #[test]
    fn brand_identifiers_are_fhir_identifiers() {
        let identifier = json!({"system": "urn:ietf:rfc:3986", "value": "https://example.org"});
        let document = json!({
            "token_endpoint": "https://as.example/token",
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["client-confidential-asymmetric"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES384"],
            "user_access_brand_bundle": "https://example.org/brands.json",
            "user_access_brand_identifier": identifier,
        });
        let read: SmartConfiguration = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(
            read.user_access_brand_identifier(),
            Some(&BrandIdentifier::new(
                Some("urn:ietf:rfc:3986"),
                "https://example.org"
            ))
        );
        assert_eq!(
            serde_json::to_value(&read).unwrap()["user_access_brand_identifier"],
            identifier
        );
        let Value::Object(metadata) = document.clone() else {
            unreachable!()
        };
        let mapped = SmartConfigurationBuilder::from_metadata(metadata)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            mapped.user_access_brand_identifier(),
            read.user_access_brand_identifier()
        );
        // Other Identifier members are read and not kept.
        let with_use = json!({"use": "official", "value": "acme"});
        assert_eq!(
            serde_json::from_value::<BrandIdentifier>(with_use).unwrap(),
            BrandIdentifier::new(None::<String>, "acme")
        );
        // The string some servers wrote before 2.2.
        assert_eq!(
            serde_json::from_value::<BrandIdentifier>(json!("https://example.org#brand-1"))
                .unwrap(),
            BrandIdentifier::new(None::<String>, "https://example.org#brand-1")
        );
        for wrong in [
            json!({"system": "urn:ietf:rfc:3986"}),
            json!({"value": 7}),
            json!({"value": "x", "system": 7}),
            json!(7),
            json!(["x"]),
            json!(true),
        ] {
            let mut metadata = document.clone();
            metadata["user_access_brand_identifier"] = wrong.clone();
            assert!(
                serde_json::from_value::<SmartConfiguration>(metadata.clone()).is_err(),
                "{wrong}"
            );
            let Value::Object(metadata) = metadata else {
                unreachable!()
            };
            assert_eq!(
                SmartConfigurationBuilder::from_metadata(metadata).unwrap_err(),
                DiscoveryError::InvalidValue {
                    field: "user_access_brand_identifier"
                },
                "{wrong}"
            );
        }
        for blank in [
            BrandIdentifier::new(None::<String>, ""),
            BrandIdentifier::new(None::<String>, "  "),
            BrandIdentifier::new(Some(""), "acme"),
        ] {
            assert_eq!(
                SmartConfiguration::backend_services("https://as.example/token")
                    .user_access_brand_identifier(blank.clone())
                    .build()
                    .unwrap_err(),
                DiscoveryError::Missing {
                    field: "user_access_brand_identifier"
                },
                "{blank:?}"
            );
            // Copied from an authorization server's metadata, a blank one is left out.
            let mut metadata = document.clone();
            metadata["user_access_brand_identifier"] = serde_json::to_value(&blank).unwrap();
            let Value::Object(metadata) = metadata else {
                unreachable!()
            };
            let mapped = SmartConfigurationBuilder::from_metadata(metadata)
                .unwrap()
                .build()
                .unwrap();
            assert_eq!(mapped.user_access_brand_identifier(), None, "{blank:?}");
        }
    }

    /// OpenID metadata without SMART capabilities: `private_key_jwt` claims SMART's
    /// asymmetric authentication only with RS384 or ES384 listed. Microsoft Entra ID lists
    /// the method and no algorithm: the document builds with the symmetric capability.
    #[test]
    fn asymmetric_capability_is_derived_only_with_a_smart_algorithm() {
        let entra = json!({
            "token_endpoint": "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported":
                ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        });
        assert_eq!(
            derived_capabilities(entra),
            [Capability::ClientConfidentialSymmetric]
        );
        for (algs, asymmetric) in [
            (json!(["RS256"]), false),
            (json!(["RS384"]), true),
            (json!(["ES256", "ES384"]), true),
            (json!(["es384"]), false),
        ] {
            let metadata = json!({
                "token_endpoint": "https://as.example/token",
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": algs,
            });
            let expected: &[Capability] = if asymmetric {
                &[Capability::ClientConfidentialAsymmetric]
            } else {
                &[]
            };
            assert_eq!(derived_capabilities(metadata), expected, "{algs}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::{config, json_object};
    use proptest::prelude::*;

    const METADATA_NAMES: &[&str] = &[
        "issuer",
        "token_endpoint",
        "authorization_endpoint",
        "jwks_uri",
        "capabilities",
        "code_challenge_methods_supported",
        "token_endpoint_auth_methods_supported",
        "scopes_supported",
        "response_types_supported",
        "grant_types_supported",
        "introspection_endpoint",
        "revocation_endpoint",
        "registration_endpoint",
        "management_endpoint",
    ];

    proptest! {
        #![proptest_config(config(512))]

        /// Any strict metadata document: a configuration with a `token_endpoint` taken
        /// from the document, or a `DiscoveryError`; never a panic.
        #[test]
        fn metadata_documents_map_or_are_refused(
            text in json_object(METADATA_NAMES),
            token_endpoint in proptest::option::of(prop::sample::select(vec!["https://as.example/token", "http://127.0.0.1:1/t", "ftp://x", "", "token"])),
        ) {
            let text = match token_endpoint {
                Some(url) => format!(r#"{{"token_endpoint":"{url}","more":{text}}}"#),
                None => text,
            };
            let Ok(document) = crate::fetch::strict_object(text.as_bytes()) else {
                return Ok(());
            };
            if let Ok(built) = SmartConfigurationBuilder::from_metadata(document.clone())
                .and_then(SmartConfigurationBuilder::build)
            {
                prop_assert_eq!(Some(built.token_endpoint()), document.get("token_endpoint").and_then(Value::as_str));
            }
        }

        /// `Cache-Control` values: `max-age` read as whole seconds (zero when unreadable),
        /// `no-store`/`no-cache` as zero, anything else no lifetime; never a panic.
        #[test]
        fn cache_control_values_never_panic(value in "[a-zA-Z0-9=,\" -]{0,40}") {
            if let Some(lifetime) = crate::fetch::parse_max_age(&value) {
                let lower = value.to_ascii_lowercase();
                prop_assert!(lower.contains("max-age") || lower.contains("no-store") || lower.contains("no-cache"));
                prop_assert!(lifetime.as_secs() == 0 || lower.contains("max-age"));
            }
        }
    }
}
