//! [`SmartAuthConfig`]: the layer's configuration as data, for deployments that read it
//! from a configuration file or the environment.
//!
//! Every field maps to one builder setting and has the builder's default when absent;
//! durations are whole seconds (`_secs`). Unknown fields are refused, so a misspelt
//! setting is an error instead of a silently ignored security control. The loaded
//! configuration goes through the same checks as the builder's (`build`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::algorithm::SigningAlgorithm;
use crate::enforce::ScopeEnforcement;
use crate::error::ConfigError;
use crate::jwks::StaticKeys;
use crate::layer::{SmartAuthBuilder, SmartAuthLayer};
use crate::token_cache::TokenCachePolicy;

/// Reads an optional setting that, when written, must have a value: an explicit `null`
/// (an unset template variable, a YAML key whose children are all commented out) is an
/// error, never the same as leaving the setting out, which could turn a security setting
/// off unseen.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
use crate::verifier::{TokenTypePolicy, TokenVerifier, VerifierBuilder};

/// Why a list or map written empty is refused.
const WRITTEN_EMPTY: &str = "written empty: leave the setting out instead";

/// Reads a list setting that, when written, must hold something: an empty one (a YAML key
/// whose items are all commented out reads as one) is an error, never the same as leaving
/// the setting out, which for `audiences` or `required_claims` could turn a check off
/// unseen.
fn non_empty_list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let list = Vec::<String>::deserialize(deserializer)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(WRITTEN_EMPTY));
    }
    Ok(list)
}

/// The configuration of a [`SmartAuthLayer`] as data: deserialize it with serde from any
/// format (JSON, TOML, YAML, environment variables through a serde adapter), then
/// [`build`](Self::build) the layer.
///
/// ```
/// use smart_auth::SmartAuthConfig;
///
/// let config: SmartAuthConfig = serde_json::from_str(r#"{
///     "fhir_base": "https://api.example.org/fhir",
///     "issuers": [
///         { "issuer": "https://auth.example.org", "algorithms": ["RS384", "ES384"] },
///         { "issuer": "https://login.partner.example", "token_type": "rfc9068" }
///     ],
///     "enforce_scopes": { "handler_applies_granular_filters": true },
///     "public_paths": ["/health"]
/// }"#)?;
/// let layer = config.build()?;
/// assert_eq!(layer.issuers().iter().count(), 2);
/// assert_eq!(layer.fhir_base_path(), "/fhir");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SmartAuthConfig {
    /// [`SmartAuthBuilder::fhir_base`].
    #[serde(default, deserialize_with = "present")]
    pub fhir_base: Option<String>,
    /// [`SmartAuthBuilder::served_at_path`].
    #[serde(default, deserialize_with = "present")]
    pub served_at_path: Option<String>,
    /// The issuers whose tokens are accepted, at least one; the first is the layer's
    /// first issuer.
    pub issuers: Vec<IssuerConfig>,
    /// [`SmartAuthBuilder::optional`] (default `false`).
    #[serde(default)]
    pub optional: bool,
    /// [`SmartAuthBuilder::public_path`], each one.
    #[serde(default, deserialize_with = "non_empty_list")]
    pub public_paths: Vec<String>,
    /// [`SmartAuthBuilder::protect_discovery_and_metadata`] (default `false`).
    #[serde(default)]
    pub protect_discovery_and_metadata: bool,
    /// [`SmartAuthBuilder::allow_cors_preflight_without_token`] (default `false`).
    #[serde(default)]
    pub allow_cors_preflight_without_token: bool,
    /// [`SmartAuthBuilder::realm`].
    #[serde(default, deserialize_with = "present")]
    pub realm: Option<String>,
    /// [`SmartAuthBuilder::enforce_scopes`]: present (even `{}`) turns enforcement on.
    #[serde(default, deserialize_with = "present")]
    pub enforce_scopes: Option<EnforcementConfig>,
}

/// The settings of one issuer in a [`SmartAuthConfig`]: those of a [`VerifierBuilder`].
///
/// ```
/// use smart_auth::IssuerConfig;
///
/// let issuer: IssuerConfig = serde_json::from_str(r#"{
///     "issuer": "https://auth.example.org",
///     "audiences": ["https://api.example.org/fhir"],
///     "token_type": "at+jwt",
///     "leeway_secs": 30
/// }"#)?;
/// assert_eq!(issuer.leeway_secs, Some(30));
/// // A misspelt setting is an error, never silently ignored.
/// let typo = serde_json::from_str::<IssuerConfig>(r#"{"issuer": "https://a.example", "audience": "x"}"#);
/// assert!(typo.is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// The issuer identifier, compared exactly with each token's `iss`.
    pub issuer: String,
    /// [`VerifierBuilder::audience`], each one (default: the FHIR base).
    #[serde(default, deserialize_with = "non_empty_list")]
    pub audiences: Vec<String>,
    /// [`VerifierBuilder::insecure_accept_any_audience`] (default `false`).
    #[serde(default)]
    pub insecure_accept_any_audience: bool,
    /// [`VerifierBuilder::accept_missing_audience_for_clients`] (default none).
    #[serde(default, deserialize_with = "non_empty_list")]
    pub accept_missing_audience_for_clients: Vec<String>,
    /// [`VerifierBuilder::require_client_id`] (default `false`).
    #[serde(default)]
    pub require_client_id: bool,
    /// [`VerifierBuilder::required_claim`], each one: claim name to required string value.
    /// A name given twice is an error, not a silent choice of one value.
    #[serde(default, deserialize_with = "map_with_unique_names")]
    pub required_claims: BTreeMap<String, String>,
    /// [`VerifierBuilder::scope_context_separator`], a one-character string.
    #[serde(default, deserialize_with = "present")]
    pub scope_context_separator: Option<char>,
    /// [`VerifierBuilder::algorithms`], by JOSE name (`"RS384"`, `"ES384"`, ...).
    #[serde(default, deserialize_with = "present")]
    pub algorithms: Option<Vec<SigningAlgorithm>>,
    /// [`VerifierBuilder::token_type`]: `"lenient"`, `"at+jwt"` or `"rfc9068"`.
    #[serde(default, deserialize_with = "present")]
    pub token_type: Option<TokenTypePolicy>,
    /// [`VerifierBuilder::leeway`], in seconds.
    #[serde(default, deserialize_with = "present")]
    pub leeway_secs: Option<u64>,
    /// [`VerifierBuilder::jwks_uri`].
    #[serde(default, deserialize_with = "present")]
    pub jwks_uri: Option<String>,
    /// [`VerifierBuilder::static_keys`] from a JWK Set file
    /// ([`StaticKeys::from_jwks_file`]).
    #[serde(default, deserialize_with = "present")]
    pub static_jwks_file: Option<PathBuf>,
    /// [`VerifierBuilder::scope_claims`].
    #[serde(default, deserialize_with = "present")]
    pub scope_claims: Option<Vec<String>>,
    /// [`VerifierBuilder::client_id_claims`].
    #[serde(default, deserialize_with = "present")]
    pub client_id_claims: Option<Vec<String>>,
    /// [`VerifierBuilder::patient_claims`].
    #[serde(default, deserialize_with = "present")]
    pub patient_claims: Option<Vec<String>>,
    /// [`VerifierBuilder::fhir_user_claims`].
    #[serde(default, deserialize_with = "present")]
    pub fhir_user_claims: Option<Vec<String>>,
    /// [`VerifierBuilder::fetch_timeout`], in seconds.
    #[serde(default, deserialize_with = "present")]
    pub fetch_timeout_secs: Option<u64>,
    /// [`VerifierBuilder::max_response_size`], in bytes.
    #[serde(default, deserialize_with = "present")]
    pub max_response_size: Option<usize>,
    /// [`VerifierBuilder::max_token_length`], in bytes.
    #[serde(default, deserialize_with = "present")]
    pub max_token_length: Option<usize>,
    /// [`VerifierBuilder::token_cache`].
    #[serde(default, deserialize_with = "present")]
    pub token_cache: Option<TokenCacheConfig>,
}

/// A map of strings whose names are unique (serde's own map takes the last of two).
fn map_with_unique_names<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct UniqueNames;

    impl<'de> serde::de::Visitor<'de> for UniqueNames {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of claim names to strings")
        }

        fn visit_map<A>(self, mut access: A) -> Result<Self::Value, A::Error>
        where
            A: serde::de::MapAccess<'de>,
        {
            let mut map = BTreeMap::new();
            while let Some((name, value)) = access.next_entry::<String, String>()? {
                if map.contains_key(&name) {
                    return Err(serde::de::Error::custom(format_args!(
                        "claim `{name}` is required twice"
                    )));
                }
                map.insert(name, value);
            }
            if map.is_empty() {
                return Err(serde::de::Error::custom(WRITTEN_EMPTY));
            }
            Ok(map)
        }
    }

    deserializer.deserialize_map(UniqueNames)
}

/// [`ScopeEnforcement`] settings in a [`SmartAuthConfig`].
///
/// ```
/// use smart_auth::SmartAuthConfig;
///
/// let config: SmartAuthConfig = serde_json::from_str(r#"{
///     "fhir_base": "https://api.example.org/fhir",
///     "issuers": [{ "issuer": "https://auth.example.org" }],
///     "enforce_scopes": { "resource_types": ["Patient", "Observation"] }
/// }"#)?;
/// let layer = config.build()?;
/// assert_eq!(layer.scope_enforcement().map(|e| e.base_path()), Some("/fhir"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EnforcementConfig {
    /// [`ScopeEnforcement::allow_any_token_outside_base`] (default `false`).
    #[serde(default)]
    pub allow_any_token_outside_base: bool,
    /// [`ScopeEnforcement::handler_applies_granular_filters`] (default `false`).
    #[serde(default)]
    pub handler_applies_granular_filters: bool,
    /// [`ScopeEnforcement::resource_types`]: the resource types the API serves.
    #[serde(default, deserialize_with = "present")]
    pub resource_types: Option<Vec<String>>,
    /// [`ScopeEnforcement::allow_any_token_under`]: paths under the base for which any
    /// valid token is enough (default none).
    #[serde(default, deserialize_with = "non_empty_list")]
    pub allow_any_token_under: Vec<String>,
}

/// [`TokenCachePolicy`] settings in a [`SmartAuthConfig`].
///
/// ```
/// use smart_auth::SmartAuthConfig;
///
/// let config: SmartAuthConfig = serde_json::from_str(r#"{
///     "fhir_base": "https://api.example.org/fhir",
///     "issuers": [{
///         "issuer": "https://auth.example.org",
///         "token_cache": { "max_entries": 50000, "max_age_secs": 60 }
///     }]
/// }"#)?;
/// assert!(config.build().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenCacheConfig {
    /// Whether verified tokens are cached (default `true`).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// [`TokenCachePolicy::max_entries`].
    #[serde(default, deserialize_with = "present")]
    pub max_entries: Option<u64>,
    /// [`TokenCachePolicy::max_age`], in seconds.
    #[serde(default, deserialize_with = "present")]
    pub max_age_secs: Option<u64>,
}

fn enabled() -> bool {
    true
}

impl SmartAuthConfig {
    /// The layer's builder with every setting of this configuration, for settings that
    /// only code can give (a clock, an HTTP client, a validation hook on the first issuer).
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoIssuer`] without issuers, or the error of a static key file that
    /// cannot be read. Every other setting is checked by `build`.
    ///
    /// ```
    /// use smart_auth::SmartAuthConfig;
    ///
    /// let config: SmartAuthConfig = serde_json::from_str(r#"{
    ///     "fhir_base": "https://api.example.org/fhir",
    ///     "issuers": [{ "issuer": "https://auth.example.org" }]
    /// }"#)?;
    /// // Settings only code can give, on top of the file's.
    /// let http = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .user_agent("fhir-api/1.0")
    ///     .build()?;
    /// let layer = config.builder()?.http_client(http).build()?;
    /// assert_eq!(layer.fhir_base(), Some("https://api.example.org/fhir"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(self) -> Result<SmartAuthBuilder, ConfigError> {
        let mut issuers = self.issuers.into_iter();
        let first = issuers.next().ok_or(ConfigError::NoIssuer)?;
        let mut builder = SmartAuthBuilder::with_first(first.verifier_builder()?);
        for issuer in issuers {
            builder = builder.issuer(issuer.verifier_builder()?);
        }
        if let Some(base) = self.fhir_base {
            builder = builder.fhir_base(base);
        }
        if let Some(path) = self.served_at_path {
            builder = builder.served_at_path(path);
        }
        if self.optional {
            builder = builder.optional();
        }
        for path in self.public_paths {
            builder = builder.public_path(path);
        }
        if self.protect_discovery_and_metadata {
            builder = builder.protect_discovery_and_metadata();
        }
        if self.allow_cors_preflight_without_token {
            builder = builder.allow_cors_preflight_without_token();
        }
        if let Some(realm) = self.realm {
            builder = builder.realm(realm);
        }
        if let Some(enforcement) = self.enforce_scopes {
            builder = builder.enforce_scopes(enforcement.enforcement());
        }
        Ok(builder)
    }

    /// Builds the layer. No network I/O (a static key file is read).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting.
    ///
    /// ```
    /// use smart_auth::{ConfigError, SmartAuthConfig};
    ///
    /// let config: SmartAuthConfig = serde_json::from_str(r#"{
    ///     "fhir_base": "https://api.example.org/fhir",
    ///     "issuers": [{ "issuer": "https://auth.example.org", "leeway_secs": 86400 }]
    /// }"#)?;
    /// // The same checks as the builder's: a day of leeway is refused.
    /// assert!(matches!(config.build(), Err(ConfigError::InvalidLimit { field: "leeway" })));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn build(self) -> Result<SmartAuthLayer, ConfigError> {
        self.builder()?.build()
    }
}

impl IssuerConfig {
    /// The verifier builder with these settings.
    ///
    /// # Errors
    ///
    /// The error of a static key file that cannot be read.
    ///
    /// ```
    /// use smart_auth::IssuerConfig;
    ///
    /// let config: IssuerConfig = serde_json::from_str(r#"{
    ///     "issuer": "https://auth.example.org",
    ///     "audiences": ["https://api.example.org/fhir"]
    /// }"#)?;
    /// // A verifier for code outside tower (a queue consumer), from the same settings.
    /// let verifier = config.verifier_builder()?.build()?;
    /// assert_eq!(verifier.issuer(), "https://auth.example.org");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verifier_builder(self) -> Result<VerifierBuilder, ConfigError> {
        let mut builder = TokenVerifier::builder(self.issuer);
        for audience in self.audiences {
            builder = builder.audience(audience);
        }
        if self.insecure_accept_any_audience {
            builder = builder.insecure_accept_any_audience();
        }
        if !self.accept_missing_audience_for_clients.is_empty() {
            builder = builder
                .accept_missing_audience_for_clients(self.accept_missing_audience_for_clients);
        }
        if self.require_client_id {
            builder = builder.require_client_id();
        }
        for (name, value) in self.required_claims {
            builder = builder.required_claim(name, value);
        }
        if let Some(separator) = self.scope_context_separator {
            builder = builder.scope_context_separator(separator);
        }
        if let Some(algorithms) = self.algorithms {
            builder = builder.algorithms(algorithms);
        }
        if let Some(policy) = self.token_type {
            builder = builder.token_type(policy);
        }
        if let Some(secs) = self.leeway_secs {
            builder = builder.leeway(Duration::from_secs(secs));
        }
        if let Some(uri) = self.jwks_uri {
            builder = builder.jwks_uri(uri);
        }
        if let Some(path) = self.static_jwks_file {
            builder = builder.static_keys(StaticKeys::from_jwks_file(path)?);
        }
        if let Some(names) = self.scope_claims {
            builder = builder.scope_claims(names);
        }
        if let Some(names) = self.client_id_claims {
            builder = builder.client_id_claims(names);
        }
        if let Some(names) = self.patient_claims {
            builder = builder.patient_claims(names);
        }
        if let Some(names) = self.fhir_user_claims {
            builder = builder.fhir_user_claims(names);
        }
        if let Some(secs) = self.fetch_timeout_secs {
            builder = builder.fetch_timeout(Duration::from_secs(secs));
        }
        if let Some(bytes) = self.max_response_size {
            builder = builder.max_response_size(bytes);
        }
        if let Some(bytes) = self.max_token_length {
            builder = builder.max_token_length(bytes);
        }
        if let Some(cache) = self.token_cache {
            builder = builder.token_cache(cache.policy());
        }
        Ok(builder)
    }
}

impl EnforcementConfig {
    fn enforcement(self) -> ScopeEnforcement {
        let mut enforcement = ScopeEnforcement::new();
        if self.allow_any_token_outside_base {
            enforcement = enforcement.allow_any_token_outside_base();
        }
        if self.handler_applies_granular_filters {
            enforcement = enforcement.handler_applies_granular_filters();
        }
        if let Some(types) = self.resource_types {
            enforcement = enforcement.resource_types(types);
        }
        if !self.allow_any_token_under.is_empty() {
            enforcement = enforcement.allow_any_token_under(self.allow_any_token_under);
        }
        enforcement
    }
}

impl TokenCacheConfig {
    fn policy(self) -> TokenCachePolicy {
        let mut policy = if self.enabled {
            TokenCachePolicy::default()
        } else {
            TokenCachePolicy::disabled()
        };
        if let Some(entries) = self.max_entries {
            policy = policy.max_entries(entries);
        }
        if let Some(secs) = self.max_age_secs {
            policy = policy.max_age(Duration::from_secs(secs));
        }
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SmartAuthConfig, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn every_setting_reaches_the_layer() {
        let layer = parse(
            r#"{
                "fhir_base": "https://api.example/fhir/r4",
                "served_at_path": "/r4",
                "issuers": [{
                    "issuer": "https://as.example",
                    "audiences": ["https://api.example/fhir/r4", "https://old.example/r4"],
                    "algorithms": ["ES384"],
                    "token_type": "rfc9068",
                    "leeway_secs": 5,
                    "jwks_uri": "https://as.example/keys",
                    "scope_claims": ["scp"],
                    "client_id_claims": ["azp"],
                    "patient_claims": ["extension_patient"],
                    "fhir_user_claims": ["extension_fhirUser"],
                    "fetch_timeout_secs": 2,
                    "max_response_size": 4096,
                    "max_token_length": 2048,
                    "token_cache": { "max_entries": 10, "max_age_secs": 30 }
                }, {
                    "issuer": "https://partner.example",
                    "token_cache": { "enabled": false }
                }],
                "optional": true,
                "public_paths": ["/health"],
                "allow_cors_preflight_without_token": true,
                "realm": "api",
                "enforce_scopes": {
                    "allow_any_token_outside_base": true,
                    "resource_types": ["Patient", "Observation"],
                    "allow_any_token_under": ["bulkstatus"]
                }
            }"#,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(layer.fhir_base(), Some("https://api.example/fhir/r4"));
        assert_eq!(layer.fhir_base_path(), "/r4");
        let enforcement = format!("{:?}", layer.scope_enforcement().unwrap());
        assert!(
            enforcement.contains(r#"any_token_under: ["bulkstatus"]"#),
            "{enforcement}"
        );
        assert_eq!(
            layer.scope_enforcement().map(ScopeEnforcement::base_path),
            Some("/r4")
        );
        let issuers: Vec<_> = layer.issuers().iter().collect();
        assert_eq!(
            issuers[0].first_audience(),
            Some("https://api.example/fhir/r4")
        );
        assert_eq!(
            issuers[1].first_audience(),
            Some("https://api.example/fhir/r4"),
            "the base is the default audience"
        );
        assert_eq!(issuers[0].max_token_length(), 2048);
        let debug = format!("{layer:?}");
        for expected in [
            "ES384",
            "max_age: 30s",
            "/health",
            "realm: \"api\"",
            "Optional",
        ] {
            assert!(debug.contains(expected), "{expected} in {debug}");
        }
    }

    #[test]
    fn hostile_documents_are_refused() {
        let refused = [
            // Misspelt or unknown settings, at each level.
            r#"{"issuers": [{"issuer": "https://as.example"}], "fhir_bse": "https://x"}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "audience": "https://x"}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example"}], "enforce_scopes": {"strict": true}}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "token_cache": {"size": 1}}]}"#,
            // Wrong types, nulls where a list is required, unknown algorithm names.
            r#"{"issuers": {"issuer": "https://as.example"}}"#,
            r#"{"issuers": [{"issuer": 7}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "algorithms": ["none"]}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "algorithms": ["HS256"]}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "algorithms": ["rs256"]}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "token_type": "strict"}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "token_type": "atjwt"}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "token_type": "AT+JWT"}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "leeway_secs": -1}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example"}], "optional": "yes"}"#,
            r#"{"issuers": null}"#,
            r#"{}"#,
            r#"[]"#,
        ];
        for text in refused {
            assert!(parse(text).is_err(), "{text}");
        }
        for policy in ["lenient", "at+jwt", "rfc9068"] {
            let text = format!(
                r#"{{"issuers": [{{"issuer": "https://as.example", "audiences": ["https://x.example"], "token_type": "{policy}"}}]}}"#
            );
            assert!(parse(&text).is_ok(), "{text}");
        }
        // An explicit `null` is never the same as a setting left out: each optional setting
        // written as `null`, at each level, is an error.
        let top = ["fhir_base", "served_at_path", "realm", "enforce_scopes"];
        let issuer = [
            "scope_context_separator",
            "algorithms",
            "token_type",
            "leeway_secs",
            "jwks_uri",
            "static_jwks_file",
            "scope_claims",
            "client_id_claims",
            "patient_claims",
            "fhir_user_claims",
            "fetch_timeout_secs",
            "max_response_size",
            "max_token_length",
            "token_cache",
        ];
        for name in top {
            let text =
                format!(r#"{{"issuers": [{{"issuer": "https://as.example"}}], "{name}": null}}"#);
            assert!(parse(&text).is_err(), "{text}");
        }
        for name in issuer {
            let text =
                format!(r#"{{"issuers": [{{"issuer": "https://as.example", "{name}": null}}]}}"#);
            assert!(parse(&text).is_err(), "{text}");
        }
        // A list or map written empty (a YAML key whose items are all commented out reads
        // as one) is an error too: `audiences` or `required_claims` would turn a check off.
        for text in [
            r#"{"issuers": [{"issuer": "https://as.example", "audiences": []}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "required_claims": {}}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "accept_missing_audience_for_clients": []}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example"}], "public_paths": []}"#,
            r#"{"issuers": [{"issuer": "https://as.example"}], "enforce_scopes": {"allow_any_token_under": []}}"#,
        ] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains("written empty"), "{text}: {error}");
        }
        for text in [
            r#"{"issuers": [{"issuer": "https://as.example"}], "enforce_scopes": {"resource_types": null}}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "token_cache": {"max_entries": null}}]}"#,
            r#"{"issuers": [{"issuer": "https://as.example", "token_cache": {"max_age_secs": null}}]}"#,
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        let not_built = [
            (r#"{"issuers": []}"#, ConfigError::NoIssuer),
            (
                r#"{"issuers": [{"issuer": "https://as.example"}, {"issuer": "https://as.example"}]}"#,
                ConfigError::DuplicateIssuer,
            ),
            (
                r#"{"issuers": [{"issuer": "https://as.example", "algorithms": []}]}"#,
                ConfigError::NoAlgorithms,
            ),
            (
                r#"{"issuers": [{"issuer": "https://as.example", "leeway_secs": 3600}]}"#,
                ConfigError::InvalidLimit { field: "leeway" },
            ),
            (
                r#"{"issuers": [{"issuer": "https://as.example"}], "public_paths": ["health"]}"#,
                ConfigError::InvalidPath,
            ),
            (
                r#"{"issuers": [{"issuer": "https://as.example", "audiences": ["https://a"], "insecure_accept_any_audience": true}]}"#,
                ConfigError::ConflictingAudience,
            ),
        ];
        for (text, expected) in not_built {
            assert_eq!(
                parse(text).unwrap().build().unwrap_err(),
                expected,
                "{text}"
            );
        }
        let http = parse(r#"{"issuers": [{"issuer": "http://as.example"}]}"#)
            .unwrap()
            .build()
            .unwrap_err();
        assert!(matches!(
            http,
            ConfigError::InvalidUrl {
                field: "issuer",
                ..
            }
        ));
        let missing = parse(
            r#"{"issuers": [{"issuer": "https://as.example", "static_jwks_file": "/nonexistent/keys.json"}]}"#,
        )
        .unwrap()
        .build()
        .unwrap_err();
        assert!(matches!(missing, ConfigError::InvalidStaticKeys { .. }));
    }
}
