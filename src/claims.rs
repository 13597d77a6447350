//! The verified identity and context a handler receives: [`SmartClaims`].

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::error::{AuthError, ErrorKind};
use crate::json::{Member, SelectedMembers};
use crate::jwt;

mod extra;
mod strings;
use crate::scopes::{
    Context, Interaction, ScopeSet, ScopeSyntax, SearchConstraints, is_scope_token,
    split_scope_string,
};
use strings::{ClaimStrings, Field};

/// What a token's scopes allow of one interaction on one type, with the limits the scopes
/// set: see [`SmartClaims::require_access`]. The scopes are not the only limit: a `user/`
/// scope allows no more than the user may see, which the server decides.
///
/// ```
/// # #[cfg(feature = "testing")] {
/// use smart_auth::scopes::{Interaction, SearchConstraints};
/// use smart_auth::testing::ClaimsBuilder;
///
/// let claims = ClaimsBuilder::new().scope("patient/Observation.rs").patient("123").build();
/// let access = claims.require_access(Interaction::Read, "Observation").unwrap();
/// assert_eq!(access.patient_compartment(), Some("123"));
/// assert_eq!(access.constraints(), &SearchConstraints::Unconstrained);
/// assert!(!access.is_unlimited_by_scopes());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access<'a> {
    constraints: SearchConstraints,
    patient_compartment: Option<&'a str>,
}

impl<'a> Access<'a> {
    /// The granular filters: [`SearchConstraints::Unconstrained`] for none, else the
    /// parameter sets a resource must match (never [`SearchConstraints::Denied`]).
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::scopes::Interaction;
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().scope("system/Observation.rs?category=laboratory").build();
    /// let access = claims.require_access(Interaction::SearchType, "Observation").unwrap();
    /// assert!(access.constraints().matches(|name| (name == "category").then_some("laboratory")));
    /// # }
    /// ```
    pub fn constraints(&self) -> &SearchConstraints {
        &self.constraints
    }

    /// `Some(id)` when the access is limited to the compartment of `Patient/{id}`, the
    /// patient in context (the grant comes from `patient/` scopes): the handler must not
    /// return, change or reveal anything outside it.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::scopes::Interaction;
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().scope("system/Observation.rs").build();
    /// let access = claims.require_access(Interaction::Read, "Observation").unwrap();
    /// assert_eq!(access.patient_compartment(), None);
    /// # }
    /// ```
    pub fn patient_compartment(&self) -> Option<&'a str> {
        self.patient_compartment
    }

    /// Whether the scopes set no limit: no filter, no compartment. The server's own rules
    /// still apply, and for a grant from `user/` scopes they are the limit: SMART's `user/`
    /// means what the user (`fhirUser`) may see, which only the server knows. A handler
    /// that serves such a grant without applying the user's permissions serves every
    /// patient's data; check [`SmartClaims::fhir_user`] there.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::scopes::Interaction;
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().scope("system/*.rs").build();
    /// let access = claims.require_access(Interaction::Read, "Observation").unwrap();
    /// assert!(access.is_unlimited_by_scopes());
    /// # }
    /// ```
    pub fn is_unlimited_by_scopes(&self) -> bool {
        self.patient_compartment.is_none() && self.constraints.is_unconstrained()
    }
}

/// The claims of a verified access token, as SMART handlers need them.
///
/// The layer inserts a `SmartClaims` into the request extensions after it verified the
/// token; with the `axum` feature it is also a handler argument (`claims: SmartClaims`, or
/// `Option<SmartClaims>` for routes that allow anonymous callers). Cloning is cheap: the
/// claims are shared.
///
/// Every typed accessor was type-checked during verification: a claim this crate
/// interprets that had the wrong JSON type made the token invalid, it was never ignored.
///
/// ```
/// use smart_auth::SmartClaims;
/// # #[cfg(feature = "axum")]
/// async fn read_patient(claims: SmartClaims) -> String {
///     format!(
///         "client {} with scopes {:?}",
///         claims.client_id().unwrap_or("?"),
///         claims.scopes()
///     )
/// }
/// ```
#[derive(Clone)]
pub struct SmartClaims {
    inner: Arc<ClaimsInner>,
}

/// Compact, because the token cache keeps thousands of these: the string claims in one
/// allocation, the parts built only when a handler asks for them in one lazily made box,
/// and the token (shared with the token cache) instead of a parsed copy of its payload.
struct ClaimsInner {
    strings: ClaimStrings,
    expires_at: i64,
    /// `iat`, when `times_present` has [`ISSUED_AT`].
    issued_at: i64,
    /// `nbf`, when `times_present` has [`NOT_BEFORE`].
    not_before: i64,
    times_present: u8,
    /// Whether the token has a `cnf` (RFC 7800) claim, which binds it to a key.
    confirmation: bool,
    /// How the issuer writes the `/` of SMART scopes
    /// ([`VerifierBuilder::scope_context_separator`](crate::VerifierBuilder::scope_context_separator)),
    /// so that a scope hint names a scope the issuer can grant.
    scope_context_separator: Option<char>,
    fhir_context: Box<[FhirContext]>,
    /// The verified token, to read its payload again for [`SmartClaims::claim`] and the
    /// like; `None` when the claims came as an object (introspection, the test kit), which
    /// is then already in [`Lazy::parsed`].
    token: Option<Arc<[u8]>>,
    lazy: OnceLock<Box<Lazy>>,
}

/// [`ClaimsInner::times_present`]: the token has `iat`.
const ISSUED_AT: u8 = 1;
/// [`ClaimsInner::times_present`]: the token has `nbf`.
const NOT_BEFORE: u8 = 2;

/// What is built on first use: verifying a token needs none of it, and with the token
/// cache a token's claims (and so these) are shared by every request that carries it.
#[derive(Default)]
struct Lazy {
    /// [`SmartClaims::scopes`].
    scopes: OnceLock<Box<[String]>>,
    /// [`SmartClaims::aud`]; set at once when `aud` is a list of several.
    audiences: OnceLock<Box<[String]>>,
    /// [`SmartClaims::scope_set`].
    scope_set: OnceLock<ScopeSet>,
    /// [`SmartClaims::scope_set_without_patient_scopes`] (boxed: few requests need it).
    scope_set_without_patient: OnceLock<Box<ScopeSet>>,
    /// The whole claim set: [`SmartClaims::claim`], [`all_claims`](SmartClaims::all_claims)
    /// and [`extra`](SmartClaims::extra).
    parsed: OnceLock<Arc<Map<String, Value>>>,
}

impl ClaimsInner {
    fn lazy(&self) -> &Lazy {
        self.lazy.get_or_init(Box::default)
    }

    /// The whole claim set, decoded again from the token on first use. The payload parsed
    /// as a strict JSON object when the token was verified, so this cannot fail; an empty
    /// set is the harmless answer if it ever did.
    fn object(&self) -> &Map<String, Value> {
        self.lazy().parsed.get_or_init(|| {
            Arc::new(
                self.token
                    .as_deref()
                    .and_then(jwt::payload_bytes)
                    .and_then(|payload| serde_json::from_slice(&payload).ok())
                    .unwrap_or_default(),
            )
        })
    }
}

/// The claims of a JWT payload, read by [`SmartClaims::read_jwt_payload`], until the
/// token joins them.
pub(crate) struct PayloadClaims(ClaimsInner);

impl PayloadClaims {
    /// The claims, keeping the token (shared with the token cache, which keeps it anyway)
    /// to read its payload again for the claims handlers may ask for.
    pub(crate) fn with_token(self, token: Arc<[u8]>) -> SmartClaims {
        let mut inner = self.0;
        inner.token = Some(token);
        SmartClaims {
            inner: Arc::new(inner),
        }
    }
}

/// One entry of the SMART `fhirContext` launch-context array.
///
/// SMART 2.0 sends plain relative references (`"Observation/123"`); SMART 2.1 and later
/// send objects with at least one of `reference`, `canonical` or `identifier`, plus an
/// optional `type` and `role`. Both forms arrive here; a 2.0 string becomes an entry with
/// only [`reference`](Self::reference) set.
///
/// ```
/// # fn show(claims: &smart_auth::SmartClaims) {
/// for context in claims.fhir_context() {
///     if let Some(reference) = context.reference() {
///         println!("{reference} (role {:?})", context.role());
///     }
/// }
/// # }
/// ```
///
/// It serializes to the SMART 2.1 object form, with the absent members left out, whichever
/// form it arrived in:
///
/// ```
/// # fn show(claims: &smart_auth::SmartClaims) -> serde_json::Result<()> {
/// // e.g. [{"reference":"Observation/1"},{"canonical":"http://q|1","type":"Questionnaire"}]
/// let json = serde_json::to_string(claims.fhir_context())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FhirContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canonical: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<Value>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    resource_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

impl FhirContext {
    /// A relative reference such as `Observation/123`.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// // SMART 2.0 sends a bare reference; it arrives as an entry with only `reference`.
    /// let claims = ClaimsBuilder::new()
    ///     .claim("fhirContext", serde_json::json!(["Observation/123"]))
    ///     .build();
    /// assert_eq!(claims.fhir_context()[0].reference(), Some("Observation/123"));
    /// assert_eq!(claims.fhir_context()[0].canonical(), None);
    /// # }
    /// ```
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }
    /// A canonical URL, possibly with `|version`.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new()
    ///     .claim(
    ///         "fhirContext",
    ///         serde_json::json!([{"canonical": "http://example.org/Questionnaire/intake|2"}]),
    ///     )
    ///     .build();
    /// let context = &claims.fhir_context()[0];
    /// assert_eq!(context.canonical(), Some("http://example.org/Questionnaire/intake|2"));
    /// assert_eq!(context.reference(), None);
    /// # }
    /// ```
    pub fn canonical(&self) -> Option<&str> {
        self.canonical.as_deref()
    }
    /// A FHIR `Identifier`, as JSON.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let identifier = serde_json::json!({"system": "urn:oid:1.2.3", "value": "A-7"});
    /// let claims = ClaimsBuilder::new()
    ///     .claim("fhirContext", serde_json::json!([{"identifier": identifier, "type": "Patient"}]))
    ///     .build();
    /// let context = &claims.fhir_context()[0];
    /// assert_eq!(context.identifier().and_then(|id| id["value"].as_str()), Some("A-7"));
    /// # }
    /// ```
    pub fn identifier(&self) -> Option<&Value> {
        self.identifier.as_ref()
    }
    /// The FHIR resource type of the context resource, when stated.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new()
    ///     .claim("fhirContext", serde_json::json!([{"reference": "Encounter/9", "type": "Encounter"}]))
    ///     .build();
    /// assert_eq!(claims.fhir_context()[0].resource_type(), Some("Encounter"));
    /// # }
    /// ```
    pub fn resource_type(&self) -> Option<&str> {
        self.resource_type.as_deref()
    }
    /// The role URI; absent means the SMART default role `launch`.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new()
    ///     .claim(
    ///         "fhirContext",
    ///         serde_json::json!([
    ///             {"reference": "Patient/1", "role": "https://example.org/role/guardian-of"},
    ///             {"reference": "Encounter/9"},
    ///         ]),
    ///     )
    ///     .build();
    /// let contexts = claims.fhir_context();
    /// assert_eq!(contexts[0].role(), Some("https://example.org/role/guardian-of"));
    /// assert_eq!(contexts[1].role(), None); // the default role, `launch`
    /// # }
    /// ```
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// A context entry naming a resource by relative reference (feature `testing`, for
    /// claims built with [`ClaimsBuilder`](crate::testing::ClaimsBuilder)).
    ///
    /// ```
    /// use smart_auth::FhirContext;
    /// let context = FhirContext::from_reference("Observation/123").with_type("Observation");
    /// assert_eq!(
    ///     serde_json::to_value(&context)?,
    ///     serde_json::json!({"reference": "Observation/123", "type": "Observation"})
    /// );
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    #[cfg(feature = "testing")]
    pub fn from_reference(reference: impl Into<String>) -> Self {
        Self {
            reference: Some(reference.into()),
            ..Self::empty()
        }
    }

    /// A context entry naming a resource by canonical URL (feature `testing`).
    ///
    /// ```
    /// use smart_auth::FhirContext;
    /// let context = FhirContext::from_canonical("http://example.org/Questionnaire/q|1");
    /// assert_eq!(context.canonical(), Some("http://example.org/Questionnaire/q|1"));
    /// ```
    #[cfg(feature = "testing")]
    pub fn from_canonical(canonical: impl Into<String>) -> Self {
        Self {
            canonical: Some(canonical.into()),
            ..Self::empty()
        }
    }

    /// A context entry naming a resource by FHIR `Identifier` (feature `testing`).
    ///
    /// ```
    /// use smart_auth::FhirContext;
    /// let context = FhirContext::from_identifier(serde_json::json!({"system": "urn:x", "value": "7"}));
    /// assert!(context.identifier().is_some());
    /// ```
    #[cfg(feature = "testing")]
    pub fn from_identifier(identifier: Value) -> Self {
        Self {
            identifier: Some(identifier),
            ..Self::empty()
        }
    }

    /// Sets the resource type (`type`) (feature `testing`).
    ///
    /// ```
    /// use smart_auth::FhirContext;
    /// let context = FhirContext::from_reference("Patient/1").with_type("Patient");
    /// assert_eq!(context.resource_type(), Some("Patient"));
    /// ```
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn with_type(mut self, resource_type: impl Into<String>) -> Self {
        self.resource_type = Some(resource_type.into());
        self
    }

    /// Sets the role URI (feature `testing`).
    ///
    /// ```
    /// use smart_auth::FhirContext;
    /// let context = FhirContext::from_reference("Patient/2").with_role("https://example.org/role");
    /// assert_eq!(context.role(), Some("https://example.org/role"));
    /// ```
    #[cfg(feature = "testing")]
    #[must_use]
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    #[cfg(feature = "testing")]
    fn empty() -> Self {
        Self {
            reference: None,
            canonical: None,
            identifier: None,
            resource_type: None,
            role: None,
        }
    }

    /// Reads one entry. A `reference` must be a relative reference `Type/id` (or
    /// `Type/id/_history/version`) of a resource type's shape and FHIR ids, agreeing with a
    /// `type` given beside it, and a `type` must have a resource type's shape (SMART App
    /// Launch 2.x, "fhirContext"): anything else (`Patient/1/../../Patient/2`, a URL of
    /// another server, spaces or controls) refuses the token, as a blank value does, since
    /// handlers may build paths from it or authorize by it.
    fn from_value(value: &Value) -> Result<Self, ErrorKind> {
        match value {
            Value::String(reference) if referenced_type(reference).is_none() => {
                Err(ErrorKind::InvalidClaim)
            }
            Value::String(reference) => Ok(Self {
                reference: Some(reference.clone()),
                canonical: None,
                identifier: None,
                resource_type: None,
                role: None,
            }),
            Value::Object(object) => {
                let identifier = match object.get("identifier") {
                    None => None,
                    // An empty identifier names nothing.
                    Some(Value::Object(members)) if members.is_empty() => None,
                    Some(value @ Value::Object(_)) => Some(value.clone()),
                    Some(_) => return Err(ErrorKind::InvalidClaim),
                };
                let role = optional_string(object, "role")?;
                // A blank role would otherwise read as the default role `launch`.
                if role.is_some_and(is_blank) {
                    return Err(ErrorKind::InvalidClaim);
                }
                let context = Self {
                    reference: non_blank_string(object, "reference")?.map(str::to_owned),
                    canonical: non_blank_string(object, "canonical")?.map(str::to_owned),
                    identifier,
                    resource_type: non_blank_string(object, "type")?.map(str::to_owned),
                    role: role.map(str::to_owned),
                };
                let names_something = context.reference.is_some()
                    || context.canonical.is_some()
                    || context.identifier.is_some();
                if !names_something {
                    return Err(ErrorKind::InvalidClaim);
                }
                if let Some(named) = &context.resource_type
                    && !crate::scopes::is_resource_type_name(named)
                {
                    return Err(ErrorKind::InvalidClaim);
                }
                if let Some(reference) = &context.reference {
                    let referenced = referenced_type(reference).ok_or(ErrorKind::InvalidClaim)?;
                    if context
                        .resource_type
                        .as_deref()
                        .is_some_and(|named| named != referenced)
                    {
                        return Err(ErrorKind::InvalidClaim);
                    }
                }
                Ok(context)
            }
            _ => Err(ErrorKind::InvalidClaim),
        }
    }
}

/// The resource type of a relative reference `Type/id` or `Type/id/_history/version`, or
/// `None` when `reference` is no such reference.
fn referenced_type(reference: &str) -> Option<&str> {
    let mut segments = reference.split('/');
    let resource_type = segments.next()?;
    let id = segments.next()?;
    let well_formed = crate::scopes::is_resource_type_name(resource_type)
        && is_fhir_id(id)
        && match (segments.next(), segments.next(), segments.next()) {
            (None, _, _) => true,
            (Some("_history"), Some(version), None) => is_fhir_id(version),
            _ => false,
        };
    well_formed.then_some(resource_type)
}

/// Which claims hold the scopes, the client id, the patient and the user (for each, the
/// first present name wins), the claims a token must carry, and how the issuer spells
/// SMART scopes. Built once, at layer build time.
#[derive(Debug, Clone)]
pub(crate) struct ClaimNames {
    pub(crate) scope: Vec<String>,
    pub(crate) client_id: Vec<String>,
    pub(crate) patient: Vec<String>,
    pub(crate) fhir_user: Vec<String>,
    /// Claims that must be JSON strings with exactly these values.
    pub(crate) required: Vec<(String, String)>,
    /// The character the issuer writes in place of the `/` after `patient`, `user` or
    /// `system` in a scope.
    pub(crate) scope_context_separator: Option<char>,
    /// This server's FHIR base (when a layer built the verifier) and its configured
    /// audiences: the `locations` an `authorization_details` entry names when its grant is
    /// meant for this server.
    pub(crate) locations: Vec<String>,
}

impl Default for ClaimNames {
    /// The SMART names: `scope`, `scp`; `client_id`, `azp`, `cid`, `appid`; `patient`;
    /// `fhirUser`.
    /// No required claim, scopes as SMART writes them.
    fn default() -> Self {
        Self {
            scope: vec!["scope".into(), "scp".into()],
            client_id: vec![
                "client_id".into(),
                "azp".into(),
                "cid".into(),
                "appid".into(),
            ],
            patient: vec!["patient".into()],
            fhir_user: vec!["fhirUser".into()],
            required: Vec::new(),
            scope_context_separator: None,
            locations: Vec::new(),
        }
    }
}

impl ClaimNames {
    /// Whether [`SmartClaims`] reads the claim `name` (so a JWT payload parser must keep
    /// it): the registered and SMART claims, and the configured names.
    pub(crate) fn is_read(&self, name: &str) -> bool {
        matches!(
            name,
            "iss"
                | "sub"
                | "aud"
                | "exp"
                | "nbf"
                | "iat"
                | "jti"
                | "encounter"
                | "tenant"
                | "fhirContext"
                | "cnf"
                | "authorization_details"
        ) || other_token_mark(name).is_some()
            || [&self.scope, &self.client_id, &self.patient, &self.fhir_user]
                .iter()
                .any(|names| names.iter().any(|known| known == name))
            || self.required.iter().any(|(known, _)| known == name)
    }

    /// Whether the claims say the token is not an access token (see [`other_token_mark`]):
    /// one pass over the claims.
    fn marks_another_kind_of_token(raw: &impl ClaimSource) -> bool {
        raw.any_claim(|name, value| match other_token_mark(name) {
            None => false,
            Some(OtherTokenMark::Present) => true,
            Some(OtherTokenMark::KeycloakType) => matches!(
                value,
                Member::Text(typ) if ["ID", "Refresh", "Offline", "Logout"]
                    .iter()
                    .any(|other| typ.eq_ignore_ascii_case(other))
            ),
            Some(OtherTokenMark::TokenUse) => !matches!(
                value,
                Member::Text(token_use) if token_use.eq_ignore_ascii_case("access")
                    || token_use.eq_ignore_ascii_case("access_token")
            ),
            Some(OtherTokenMark::KindName) => {
                !matches!(value, Member::Text(name) if name.eq_ignore_ascii_case("access_token"))
            }
        })
    }

    /// Whether the claims carry every required value: the claim present, a JSON string,
    /// equal byte for byte.
    fn has_required(&self, raw: &impl ClaimSource) -> bool {
        self.required.iter().all(
            |(name, value)| matches!(raw.claim(name), Some(Member::Text(text)) if text == value),
        )
    }
}

/// How a payload claim can mark a JWT as another kind of token than an access token
/// (RFC 8725 section 3.12: one kind of JWT must not pass for another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtherTokenMark {
    /// Only other kinds of JWT carry the claim: an ID token's hashes of the code, access
    /// token and state (`c_hash`, `at_hash`, `s_hash`: OpenID Connect Core 3.1.3.6,
    /// 3.3.2.11, FAPI), a Security Event Token's `events` (RFC 8417; back-channel logout
    /// tokens are SETs), Medplum's refresh tokens' `refresh_secret` (Medplum signs access,
    /// ID and refresh tokens alike, with the client as `aud`). An ID token without them
    /// (they are optional) is not recognised.
    Present,
    /// Keycloak writes the kind in the payload's `typ`: `Bearer` for access tokens; `ID`,
    /// `Refresh`, `Offline` and `Logout` mark the others.
    KeycloakType,
    /// `token_use` says what the token is: `access` (Amazon Cognito) or `access_token`
    /// (Ory Hydra's introspection answers) for an access token; anything else (`id`,
    /// `refresh_token`, another type) marks another kind. Hydra answers for a refresh
    /// token with `active: true` and no `token_type`: this claim is the only sign.
    TokenUse,
    /// The claim names the kind, `access_token` for an access token: ForgeRock AM /
    /// PingOne Advanced Identity Cloud's `tokenName` (`id_token` and others for the other
    /// kinds), OpenIddict's `token_usage` in its introspection answers (`refresh_token`,
    /// `id_token`, `authorization_code`).
    KindName,
}

/// What the claim `name` can say about the kind of token, if anything: the one list of the
/// claims [`ClaimNames::marks_another_kind_of_token`] reads.
fn other_token_mark(name: &str) -> Option<OtherTokenMark> {
    match name {
        "at_hash" | "c_hash" | "s_hash" | "events" | "refresh_secret" => {
            Some(OtherTokenMark::Present)
        }
        "typ" => Some(OtherTokenMark::KeycloakType),
        "token_use" => Some(OtherTokenMark::TokenUse),
        "tokenName" | "token_usage" => Some(OtherTokenMark::KindName),
        _ => None,
    }
}

/// Where claims are read from: a whole claim set, or the members of a JWT payload that
/// [`ClaimNames::is_read`] selected.
pub(crate) trait ClaimSource {
    /// The value of the claim `name`.
    fn claim(&self, name: &str) -> Option<Member<'_>>;

    /// Whether some claim (its name and value) passes `test`: one pass over the claims.
    fn any_claim(&self, test: impl Fn(&str, Member<'_>) -> bool) -> bool;
}

impl ClaimSource for Map<String, Value> {
    fn claim(&self, name: &str) -> Option<Member<'_>> {
        self.get(name).map(Member::of)
    }

    fn any_claim(&self, test: impl Fn(&str, Member<'_>) -> bool) -> bool {
        self.iter()
            .any(|(name, value)| test(name, Member::of(value)))
    }
}

impl ClaimSource for SelectedMembers<'_> {
    fn claim(&self, name: &str) -> Option<Member<'_>> {
        self.get(name)
    }

    fn any_claim(&self, test: impl Fn(&str, Member<'_>) -> bool) -> bool {
        self.any_member(test)
    }
}

/// The members of an `authorization_details` entry (RFC 9396) that replace the token's own
/// claims when the entry's grant is meant for this server (SMART App Launch 2.2,
/// "Authorization Details for Multiple Servers").
const GRANT_MEMBERS: [&str; 4] = ["scope", "patient", "encounter", "fhirContext"];

/// The `smart_on_fhir` entry of the token's `authorization_details` (RFC 9396) whose
/// `locations` name this server (one of `locations`, its FHIR base and configured
/// audiences, with or without one final `/`): a token
/// usable at several FHIR servers may grant each its own scope, patient, encounter and
/// `fhirContext` there. `None` when no entry names this server: the token's own claims
/// apply. Entries of other types are not read. Refused ([`ErrorKind::InvalidClaim`]): a
/// claim that is not an array of objects each with a string `type`, a `smart_on_fhir` entry
/// without a `locations` array of strings, two entries naming this server (which grant
/// would hold?), and, when no location of this server is known (no `http`/`https` URL among
/// `locations`: no FHIR base, and audiences such as `api://fhir` or none), an entry with a
/// grant of its own (it may be meant for this server). Locations compare as URLs (scheme
/// and host in any case, a default port written or not, one final `/` or none).
fn grant_for_this_server<'a>(
    raw: &'a impl ClaimSource,
    locations: &[String],
) -> Result<Option<&'a Map<String, Value>>, ErrorKind> {
    let Some(details) = raw.claim("authorization_details") else {
        return Ok(None);
    };
    let Member::Json(Value::Array(entries)) = details else {
        return Err(ErrorKind::InvalidClaim);
    };
    let mut found = None;
    let base_known = locations.iter().any(|ours| is_web_url(ours));
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err(ErrorKind::InvalidClaim);
        };
        match entry.get("type") {
            Some(Value::String(kind)) if kind == "smart_on_fhir" => {}
            Some(Value::String(_)) => continue,
            _ => return Err(ErrorKind::InvalidClaim),
        }
        let Some(Value::Array(named)) = entry.get("locations") else {
            return Err(ErrorKind::InvalidClaim);
        };
        let mut names_this_server = false;
        for location in named {
            let Value::String(location) = location else {
                return Err(ErrorKind::InvalidClaim);
            };
            names_this_server |= locations.iter().any(|ours| same_location(ours, location));
        }
        let grants = GRANT_MEMBERS.iter().any(|name| entry.contains_key(*name));
        if !base_known && grants {
            return Err(ErrorKind::InvalidClaim);
        }
        if names_this_server {
            if found.is_some() {
                return Err(ErrorKind::InvalidClaim);
            }
            found = Some(entry);
        }
    }
    Ok(found)
}

/// Whether `text` is an absolute `http` or `https` URL: where a FHIR server is found.
fn is_web_url(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|url| matches!(url.scheme(), "https" | "http"))
}

/// Whether a grant's location names the same server as `ours`: the same text, one final
/// `/` aside, or the same URL once both are parsed (RFC 3986 section 6.2.2: scheme and
/// host compare case-insensitively, a default port is the same as none).
fn same_location(ours: &str, location: &str) -> bool {
    if ours == location || crate::fetch::differs_only_by_final_slash(ours, location) {
        return true;
    }
    match (url::Url::parse(ours), url::Url::parse(location)) {
        (Ok(ours), Ok(location)) => {
            ours.as_str().trim_end_matches('/') == location.as_str().trim_end_matches('/')
        }
        _ => false,
    }
}

/// The value of the first of `names` present in `object`, with its name.
fn first_present<'a>(
    object: &'a impl ClaimSource,
    names: &'a [String],
) -> Option<(&'a str, Member<'a>)> {
    names
        .iter()
        .find_map(|name| object.claim(name).map(|value| (name.as_str(), value)))
}

impl SmartClaims {
    /// Reads the claims this crate interprets out of a verified payload, checking their
    /// JSON types. Issuer, audience and time checks are the verifier's job. A shared
    /// payload (an introspection answer the cache keeps) is kept shared, not copied.
    #[cfg(any(
        test,
        feature = "introspection",
        feature = "testing",
        feature = "fuzzing"
    ))]
    pub(crate) fn from_payload(
        raw: impl Into<Arc<Map<String, Value>>>,
        names: &ClaimNames,
    ) -> Result<Self, ErrorKind> {
        let raw = raw.into();
        let inner = Self::interpret(raw.as_ref(), names)?;
        let lazy = inner.lazy.get_or_init(Box::default);
        let _ = lazy.parsed.set(raw);
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// As [`from_payload`](Self::from_payload), for a verified JWT: `raw` holds the members
    /// [`ClaimNames::is_read`] selected from the payload. The token comes next, with
    /// [`PayloadClaims::with_token`].
    pub(crate) fn read_jwt_payload(
        raw: &SelectedMembers<'_>,
        names: &ClaimNames,
    ) -> Result<PayloadClaims, ErrorKind> {
        Self::interpret(raw, names).map(PayloadClaims)
    }

    /// Whether the token carries a `cnf` claim (RFC 7800): it is bound to a key.
    pub(crate) fn has_confirmation(&self) -> bool {
        self.inner.confirmation
    }

    /// The claims this crate interprets; the caller then sets the whole claim set.
    fn interpret(raw: &impl ClaimSource, names: &ClaimNames) -> Result<ClaimsInner, ErrorKind> {
        if !names.has_required(raw) {
            return Err(ErrorKind::RefusedByPolicy);
        }
        if ClaimNames::marks_another_kind_of_token(raw) {
            return Err(ErrorKind::UnsupportedTokenType);
        }
        let issuer = optional_string(raw, "iss")?.ok_or(ErrorKind::WrongIssuer)?;
        let expires_at =
            optional_numeric_date(raw, "exp", Round::Down)?.ok_or(ErrorKind::InvalidClaim)?;
        // One audience is kept with the other strings; a list of several as a list.
        let (audience, audiences) = match raw.claim("aud") {
            None => (None, None),
            Some(Member::Text(aud)) => (Some(aud), None),
            Some(Member::Json(Value::Array(items))) => {
                let items = items
                    .iter()
                    .map(|item| item.as_str().ok_or(ErrorKind::InvalidClaim))
                    .collect::<Result<Vec<&str>, _>>()?;
                match items.as_slice() {
                    [] => (None, None),
                    [one] => (Some(*one), None),
                    _ => (None, Some(items)),
                }
            }
            Some(_) => return Err(ErrorKind::InvalidClaim),
        };
        // A grant the token makes for this server alone replaces the token's own scope and
        // launch context.
        let here = grant_for_this_server(raw, &names.locations)?;
        let in_grant = |name: &str| here.and_then(|grant| grant.get(name)).map(Member::of);
        let scope_claim =
            in_grant("scope").or_else(|| names.scope.iter().find_map(|name| raw.claim(name)));
        let scope_text = match scope_claim {
            None => Cow::Borrowed(""),
            Some(Member::Text(list)) => scope_text_of_string(list),
            Some(Member::Json(Value::Array(items))) => {
                let items = items
                    .iter()
                    .map(|item| item.as_str().ok_or(ErrorKind::InvalidClaim))
                    .collect::<Result<Vec<&str>, _>>()?;
                Cow::Owned(well_formed_scope_text(items.into_iter()))
            }
            Some(_) => return Err(ErrorKind::InvalidClaim),
        };
        let scope_text = match names.scope_context_separator {
            Some(separator) => with_smart_context_slash(scope_text, separator),
            None => scope_text,
        };
        let client_id = match names.client_id.iter().find_map(|name| raw.claim(name)) {
            None => None,
            // A blank client id identifies no client.
            Some(Member::Text(id)) => (!is_blank(id)).then_some(id),
            Some(_) => return Err(ErrorKind::InvalidClaim),
        };
        let fhir_context = match in_grant("fhirContext").or_else(|| raw.claim("fhirContext")) {
            None => Vec::new(),
            Some(Member::Json(Value::Array(items))) => items
                .iter()
                .map(FhirContext::from_value)
                .collect::<Result<_, _>>()?,
            // Keycloak's SMART mappers write the array as a string of JSON text.
            Some(Member::Text(text)) => {
                match crate::json::value_with_unique_members(text.as_bytes()) {
                    Ok(Value::Array(items)) => items
                        .iter()
                        .map(FhirContext::from_value)
                        .collect::<Result<_, _>>()?,
                    _ => return Err(ErrorKind::InvalidClaim),
                }
            }
            Some(_) => return Err(ErrorKind::InvalidClaim),
        };
        let patient = match in_grant("patient").map(|value| ("patient", value)) {
            Some((name, value)) => launch_context_id(name, "Patient", value)?,
            None => match first_present(raw, &names.patient) {
                Some((name, value)) => launch_context_id(name, "Patient", value)?,
                None => None,
            },
        };
        let fhir_user = match first_present(raw, &names.fhir_user) {
            Some((name, value)) => fhir_user_reference(name, value)?,
            None => None,
        };
        let subject = non_blank_string(raw, "sub")?;
        let issued_at = optional_numeric_date(raw, "iat", Round::Up)?;
        let not_before = optional_numeric_date(raw, "nbf", Round::Up)?;
        let jwt_id = non_blank_string(raw, "jti")?;
        let encounter = match in_grant("encounter").or_else(|| raw.claim("encounter")) {
            Some(value) => launch_context_id("encounter", "Encounter", value)?,
            None => None,
        };
        let tenant = non_blank_string(raw, "tenant")?;

        let length = [
            subject, client_id, jwt_id, patient, encounter, fhir_user, tenant, audience,
        ]
        .iter()
        .flatten()
        .map(|text| text.len())
        .sum::<usize>()
            + issuer.len()
            + scope_text.len();
        let mut strings = strings::Builder::with_capacity(length);
        strings.set(Field::Issuer, Some(issuer))?;
        strings.set(Field::Subject, subject)?;
        strings.set(Field::ClientId, client_id)?;
        strings.set(Field::JwtId, jwt_id)?;
        strings.set(Field::Scope, Some(&scope_text))?;
        strings.set(Field::Patient, patient)?;
        strings.set(Field::Encounter, encounter)?;
        strings.set(Field::FhirUser, fhir_user)?;
        strings.set(Field::Tenant, tenant)?;
        strings.set(Field::Audience, audience)?;
        let lazy = OnceLock::new();
        if let Some(audiences) = audiences {
            let made = Lazy::default();
            let _ = made
                .audiences
                .set(audiences.into_iter().map(str::to_owned).collect());
            let _ = lazy.set(Box::new(made));
        }
        Ok(ClaimsInner {
            strings: strings.build(),
            expires_at,
            issued_at: issued_at.unwrap_or_default(),
            not_before: not_before.unwrap_or_default(),
            times_present: if issued_at.is_some() { ISSUED_AT } else { 0 }
                | if not_before.is_some() { NOT_BEFORE } else { 0 },
            fhir_context: fhir_context.into(),
            confirmation: raw.claim("cnf").is_some(),
            scope_context_separator: names.scope_context_separator,
            token: None,
            lazy,
        })
    }

    /// Claims from a payload that no token carried, read with the default claim names, for
    /// [`ClaimsBuilder`](crate::testing::ClaimsBuilder).
    #[cfg(feature = "testing")]
    pub(crate) fn from_test_payload(raw: Map<String, Value>) -> Result<Self, ErrorKind> {
        Self::from_payload(raw, &ClaimNames::default())
    }

    /// `iss`: the token's issuer.
    ///
    /// ```
    /// # fn check(claims: &smart_auth::SmartClaims) {
    /// assert_eq!(claims.iss(), claims.issuer());
    /// # }
    /// ```
    pub fn iss(&self) -> &str {
        self.string(Field::Issuer).unwrap_or_default()
    }
    /// The issuer that vouched for this token (its `iss`, which matched a configured issuer
    /// exactly); with several issuers configured this tells handlers which one. The same
    /// string as [`SmartClaims::iss`].
    ///
    /// ```
    /// # fn check(claims: &smart_auth::SmartClaims) {
    /// if claims.issuer() == "https://auth.example.org" {
    ///     // ... a token of the main authorization server ...
    /// }
    /// # }
    /// ```
    pub fn issuer(&self) -> &str {
        self.iss()
    }
    /// `sub`: for SMART Backend Services, normally the client itself. A blank `sub` is
    /// `None`.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().sub("billing-service").build();
    /// assert_eq!(claims.sub(), Some("billing-service"));
    ///
    /// let blank = ClaimsBuilder::new().sub("  ").build();
    /// assert_eq!(blank.sub(), None);
    /// # }
    /// ```
    pub fn sub(&self) -> Option<&str> {
        self.string(Field::Subject)
    }
    /// The client id, from the first present claim of the configured list
    /// (default `client_id`, `azp`, `cid`, `appid`). A blank value identifies no client: `None`.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().client_id("app-1").build();
    /// assert_eq!(claims.client_id(), Some("app-1"));
    ///
    /// // Without `client_id`, the next claim of the default list (`azp`) names the client.
    /// let claims = ClaimsBuilder::new()
    ///     .claim("client_id", serde_json::Value::Null)
    ///     .claim("azp", "app-2")
    ///     .build();
    /// assert_eq!(claims.client_id(), Some("app-2"));
    /// # }
    /// ```
    pub fn client_id(&self) -> Option<&str> {
        self.string(Field::ClientId)
    }
    /// `aud`, always as a list (a single string becomes a list of one).
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let one = ClaimsBuilder::new().aud("https://api.example.org/fhir").build();
    /// assert_eq!(one.aud(), ["https://api.example.org/fhir"]);
    ///
    /// let two = ClaimsBuilder::new()
    ///     .claim("aud", serde_json::json!(["https://a.example", "https://b.example"]))
    ///     .build();
    /// assert_eq!(two.aud(), ["https://a.example", "https://b.example"]);
    /// # }
    /// ```
    pub fn aud(&self) -> &[String] {
        self.inner
            .lazy()
            .audiences
            .get_or_init(|| self.audiences().map(str::to_owned).collect())
    }

    /// The audiences, without listing them as strings.
    pub(crate) fn audiences(&self) -> impl Iterator<Item = &str> {
        let listed = self
            .inner
            .lazy
            .get()
            .and_then(|lazy| lazy.audiences.get())
            .map(|list| list.iter().map(String::as_str));
        self.string(Field::Audience)
            .into_iter()
            .chain(listed.into_iter().flatten())
    }

    /// One of the string claims kept in [`ClaimStrings`].
    #[inline]
    fn string(&self, field: Field) -> Option<&str> {
        self.inner.strings.get(field)
    }
    /// `exp`, in whole seconds since the Unix epoch.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().exp(2_000_000_000).build();
    /// assert_eq!(claims.exp(), 2_000_000_000);
    /// # }
    /// ```
    pub fn exp(&self) -> i64 {
        self.inner.expires_at
    }
    /// `iat`, in whole seconds since the Unix epoch.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().iat(1_700_000_000).build();
    /// assert_eq!(claims.iat(), Some(1_700_000_000));
    ///
    /// let without = ClaimsBuilder::new().claim("iat", serde_json::Value::Null).build();
    /// assert_eq!(without.iat(), None);
    /// # }
    /// ```
    pub fn iat(&self) -> Option<i64> {
        let inner = &self.inner;
        (inner.times_present & ISSUED_AT != 0).then_some(inner.issued_at)
    }
    /// `nbf`, in whole seconds since the Unix epoch.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// // `nbf` is optional, and `ClaimsBuilder` sets none by default.
    /// assert_eq!(ClaimsBuilder::new().build().nbf(), None);
    /// let claims = ClaimsBuilder::new().nbf(1_700_000_000).build();
    /// assert_eq!(claims.nbf(), Some(1_700_000_000));
    /// # }
    /// ```
    pub fn nbf(&self) -> Option<i64> {
        let inner = &self.inner;
        (inner.times_present & NOT_BEFORE != 0).then_some(inner.not_before)
    }
    /// `jti`, the token's unique id (`None` when absent or blank).
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().jti("4d1b7c0e").build();
    /// assert_eq!(claims.jti(), Some("4d1b7c0e"));
    /// assert_eq!(ClaimsBuilder::new().build().jti(), None);
    /// # }
    /// ```
    pub fn jti(&self) -> Option<&str> {
        self.string(Field::JwtId)
    }
    /// The granted scopes as sent, from the first present claim of the configured list
    /// (default `scope`, then `scp`), whether a space-separated string or an array.
    ///
    /// A token usable at several FHIR servers may grant each its own (SMART App Launch 2.2,
    /// `authorization_details`, RFC 9396): when an entry of type `smart_on_fhir` names this
    /// server in its `locations` (the layer's FHIR base or one of the verifier's audiences,
    /// with or without one final `/`), its `scope`, `patient`,
    /// `encounter` and `fhirContext`, where it has them, replace the token's own, here and
    /// in [`patient`](Self::patient), [`encounter`](Self::encounter) and
    /// [`fhir_context`](Self::fhir_context) ([`claim`](Self::claim) still reads the token's
    /// own). Malformed details, two entries naming this server, and, without a configured
    /// audience, an entry with a grant of its own make the token invalid.
    ///
    /// Only well-formed RFC 6749 scope tokens are listed. A string claim is split at space
    /// characters only; a token (or array item) holding any character outside the
    /// scope-token set (TAB, CR, LF or another control character, a space inside an array
    /// item, `"`, `\`, non-ASCII) is dropped whole: it is not listed, not split further,
    /// and grants nothing. Duplicates are kept.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().scope("system/Patient.rs openid").build();
    /// assert_eq!(claims.scopes(), ["system/Patient.rs", "openid"]);
    ///
    /// // A token holding a TAB is dropped whole, not split at it.
    /// let claims = ClaimsBuilder::new().claim("scope", "system/Patient.rs\tx openid").build();
    /// assert_eq!(claims.scopes(), ["openid"]);
    /// # }
    /// ```
    pub fn scopes(&self) -> &[String] {
        self.inner
            .lazy()
            .scopes
            .get_or_init(|| self.scope_tokens().map(str::to_owned).collect())
    }

    /// What the parts built from this token's lists may come to take beyond the usual
    /// token's, once scope enforcement and handlers have read them: each scope parsed into
    /// two scope sets and listed (about 350 bytes), each pair of a granular filter in both
    /// sets (about 256), each audience and launch context an allocation of its own, a
    /// context's `identifier` what its JSON takes parsed; the first 32 scopes, 16 filter
    /// pairs and 4 audiences and contexts, which a usual token's 4 KiB already covers, not
    /// counted. The token cache weighs an entry by it (once, when it stores the entry), so
    /// that tokens listing thousands of scopes cannot make it hold far more than its bound.
    /// (The whole payload parsed for [`claim`](Self::claim) and the like, which only a
    /// handler asks for, is not counted.)
    pub(crate) fn size_beyond_the_usual(&self) -> usize {
        const PER_SCOPE: usize = 352;
        const PER_FILTER_PAIR: usize = 256;
        const PER_AUDIENCE: usize = 64;
        const PER_CONTEXT: usize = 192;
        let (scopes, filter_pairs) =
            self.scope_tokens()
                .fold((0usize, 0usize), |(scopes, pairs), scope| {
                    let scope_pairs = scope.split_once('?').map_or(0, |(_, query)| {
                        1 + query.bytes().filter(|&byte| byte == b'&').count()
                    });
                    (scopes + 1, pairs + scope_pairs)
                });
        let audiences = self.audiences().count().saturating_sub(4);
        let contexts = self.inner.fhir_context.len().saturating_sub(4);
        let identifiers: usize = self
            .inner
            .fhir_context
            .iter()
            .filter_map(|context| match &context.identifier {
                Some(Value::Object(map)) => Some(crate::json::parsed_size(map)),
                _ => None,
            })
            .sum();
        scopes.saturating_sub(32) * PER_SCOPE
            + filter_pairs.saturating_sub(16) * PER_FILTER_PAIR
            + audiences * PER_AUDIENCE
            + contexts * PER_CONTEXT
            + identifiers
            + self.parsed_payload_bound().saturating_sub(8 * 1024)
    }

    /// An upper bound of what the token's payload takes once parsed for
    /// [`claim`](Self::claim) and the like (which a handler or validation hook may ask for,
    /// and which then stays with the claims): every object a B-tree node, every value and
    /// member an entry, plus the text; 0 for claims that did not come from a token.
    fn parsed_payload_bound(&self) -> usize {
        const OBJECT: usize =
            11 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>()) + 16;
        const ENTRY: usize = std::mem::size_of::<String>() + std::mem::size_of::<Value>() + 16;
        let Some(payload) = self
            .inner
            .token
            .as_deref()
            .and_then(|token| std::str::from_utf8(token).ok())
            .and_then(|token| crate::jwt::split(token).ok())
            .and_then(|segments| crate::base64url::decode(segments.payload.as_bytes()))
        else {
            return 0;
        };
        let count = |wanted: u8| payload.iter().filter(|&&byte| byte == wanted).count();
        let objects = count(b'{');
        let values = count(b',') + count(b'[') + objects + 1;
        payload.len() + objects * OBJECT + values * ENTRY
    }

    /// The granted scope tokens, without listing them as strings.
    fn scope_tokens(&self) -> impl Iterator<Item = &str> {
        split_scope_string(self.string(Field::Scope).unwrap_or_default())
    }
    /// Whether the exact scope string was granted.
    ///
    /// ```
    /// # fn check(claims: &smart_auth::SmartClaims) -> bool {
    /// claims.has_scope("system/Patient.rs")
    /// # }
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope_tokens().any(|granted| granted == scope)
    }
    /// The granted scopes, parsed: SMART v1 and v2 resource scopes, launch, identity and
    /// other scopes, and the malformed ones (which grant nothing). `patient/` scopes count
    /// only when the token has a `patient` claim.
    ///
    /// ```
    /// use smart_auth::scopes::Interaction;
    /// # fn check(claims: &smart_auth::SmartClaims) {
    /// let constraints = claims.scope_set().search_constraints(None, "Observation");
    /// # }
    /// ```
    pub fn scope_set(&self) -> &ScopeSet {
        self.inner.lazy().scope_set.get_or_init(|| {
            ScopeSet::from_iter(self.scope_tokens()).with_patient_context(self.patient().is_some())
        })
    }

    /// The scope set with its `patient/` scopes not counting (as without a patient
    /// context), for requests they cannot allow (another patient, a population): built once
    /// per token, not once per request or bundle entry.
    pub(crate) fn scope_set_without_patient_scopes(&self) -> &ScopeSet {
        self.inner
            .lazy()
            .scope_set_without_patient
            .get_or_init(|| Box::new(self.scope_set().clone().with_patient_context(false)))
    }

    /// Whether the scopes allow `interaction` on the whole of `resource_type` (`*` for system
    /// level); granular scopes never do. See [`ScopeSet::permits`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::scopes::Interaction;
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().scope("system/Observation.rs").build();
    /// assert!(claims.permits(Interaction::Read, "Observation"));
    /// assert!(claims.permits(Interaction::SearchType, "Observation"));
    /// assert!(!claims.permits(Interaction::Update, "Observation"));
    /// assert!(!claims.permits(Interaction::Read, "Patient"));
    ///
    /// // A granular scope grants only part of the type, so never the whole of it.
    /// let granular = ClaimsBuilder::new().scope("system/Observation.rs?category=laboratory").build();
    /// assert!(!granular.permits(Interaction::Read, "Observation"));
    /// # }
    /// ```
    pub fn permits(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.scope_set().permits(interaction, resource_type)
    }

    /// Succeeds when the scopes allow `interaction` on the whole of `resource_type`;
    /// otherwise a 403 `insufficient_scope` error naming a scope that would allow it, which a
    /// handler can return as is (it answers exactly as the layer would).
    ///
    /// Granular scopes never satisfy it, since they grant only part of a type: a handler
    /// that applies their filters calls [`SmartClaims::require_constraints`] instead.
    /// A `patient/` scope satisfies it, yet allows only the data of the patient in
    /// context: a handler that answers for a resource by id (whose patient only the data
    /// tells) calls [`SmartClaims::require_access`], which says so.
    ///
    /// ```
    /// use smart_auth::{AuthError, SmartClaims, scopes::Interaction};
    ///
    /// # #[cfg(feature = "axum")]
    /// async fn read_observation(claims: SmartClaims) -> Result<String, AuthError> {
    ///     claims.require(Interaction::Read, "Observation")?;
    ///     Ok("{}".to_owned())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InsufficientScope`] when no granted scope allows the interaction.
    pub fn require(&self, interaction: Interaction, resource_type: &str) -> Result<(), AuthError> {
        if self.permits(interaction, resource_type) {
            return Ok(());
        }
        Err(AuthError::insufficient_scope(
            self.scope_hint(interaction, resource_type),
        ))
    }

    /// Like [`SmartClaims::require`] for a handler that applies granular filters: succeeds
    /// with the filters to apply when some scope grants `interaction` on `resource_type`,
    /// with or without a filter. [`SearchConstraints::Unconstrained`] means no filter; with
    /// [`SearchConstraints::AnyOf`] the handler must narrow a search to those parameter sets
    /// or check a read result against them (see [`SearchConstraints::matches`]).
    ///
    /// Granular scopes grant only `r` and `s`; for `c`, `u` and `d` the answer is the same as
    /// [`SmartClaims::require`]. Like it, it does not say whether the grant is limited to
    /// the patient in context: [`SmartClaims::require_access`] does.
    ///
    /// ```
    /// use smart_auth::{AuthError, SmartClaims, scopes::Interaction};
    ///
    /// # #[cfg(feature = "axum")]
    /// async fn search_observations(claims: SmartClaims) -> Result<String, AuthError> {
    ///     let filters = claims.require_constraints(Interaction::SearchType, "Observation")?;
    ///     // ... AND the parameters of one set into the search, OR across sets ...
    ///     # let _ = filters;
    ///     Ok("{}".to_owned())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// The same 403 `insufficient_scope` error as [`SmartClaims::require`] when no scope
    /// grants the interaction at all.
    pub fn require_constraints(
        &self,
        interaction: Interaction,
        resource_type: &str,
    ) -> Result<SearchConstraints, AuthError> {
        let constraints = self
            .scope_set()
            .constraints(None, interaction, resource_type);
        if constraints.is_denied() {
            return Err(AuthError::insufficient_scope(
                self.scope_hint(interaction, resource_type),
            ));
        }
        Ok(constraints)
    }

    /// What the scopes allow of `interaction` on `resource_type`, with every limit that
    /// comes with it: the granular filters, and the patient compartment when the grant
    /// comes from `patient/` scopes. [`SmartClaims::require`] and
    /// [`SmartClaims::require_constraints`] answer "may it?"; a handler that reads or
    /// searches by id calls this one, because a `patient/` scope allows only the data of
    /// the patient in context, and neither the layer nor those two can tell whose
    /// `Observation/456` is: the handler must (with
    /// [`Access::patient_compartment`], before it answers).
    ///
    /// `user/` and `system/` scopes count first: one that grants the whole type gives
    /// an unlimited [`Access`]. Otherwise `patient/` scopes, when they grant it, give the
    /// compartment of [`SmartClaims::patient`] with their filters; else the filters of the
    /// `user/` and `system/` granular scopes. (When both kinds grant part of the type,
    /// the answer is the `patient/` part: narrower than the union, never wider. A handler
    /// that serves the union asks [`ScopeSet::constraints`] once per context.)
    ///
    /// ```
    /// use smart_auth::{AuthError, SmartClaims, scopes::Interaction};
    ///
    /// # #[cfg(feature = "axum")]
    /// async fn read_observation(claims: SmartClaims) -> Result<String, AuthError> {
    ///     let access = claims.require_access(Interaction::Read, "Observation")?;
    ///     // ... load the Observation ...
    ///     if let Some(patient) = access.patient_compartment() {
    ///         // ... answer 404 unless it is in Patient/{patient}'s compartment ...
    ///         # let _ = patient;
    ///     }
    ///     // ... and check it against access.constraints() ...
    ///     Ok("{}".to_owned())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// The same 403 `insufficient_scope` error as [`SmartClaims::require`] when no scope
    /// grants the interaction at all.
    pub fn require_access(
        &self,
        interaction: Interaction,
        resource_type: &str,
    ) -> Result<Access<'_>, AuthError> {
        let set = self.scope_set();
        let in_context = |context| set.constraints(Some(context), interaction, resource_type);
        let others = in_context(Context::User).or(in_context(Context::System));
        if others.is_unconstrained() {
            return Ok(Access {
                constraints: others,
                patient_compartment: None,
            });
        }
        let patient = in_context(Context::Patient);
        match (self.patient(), patient.is_denied()) {
            // Granted by `patient/` scopes, so there is a patient in context.
            (Some(id), false) => Ok(Access {
                constraints: patient,
                patient_compartment: Some(id),
            }),
            _ if !others.is_denied() => Ok(Access {
                constraints: others,
                patient_compartment: None,
            }),
            _ => Err(AuthError::insufficient_scope(
                self.scope_hint(interaction, resource_type),
            )),
        }
    }

    /// The scope to name in an `insufficient_scope` refusal: the smallest v2 scope that
    /// allows `interaction` on `resource_type` in this client's [context](Self::hint_context),
    /// spelt as the issuer writes scopes (`system.Observation.rs` for an issuer whose
    /// separator is `.`). A client whose resource scopes are all SMART v1 ones
    /// (`system/*.read`) gets a v1 scope (`system/Observation.read`; `write` for `c`, `u`
    /// and `d`): a v1 authorization server refuses v2 letters as `invalid_scope`.
    pub(crate) fn scope_hint(&self, interaction: Interaction, resource_type: &str) -> String {
        let mut hint =
            ScopeSet::insufficient_scope_hint(interaction, resource_type, self.hint_context());
        if self.writes_scopes_in_v1()
            && let Some((scope, _letters)) = hint.rsplit_once('.')
        {
            let v1 = match interaction {
                Interaction::Create
                | Interaction::Update
                | Interaction::Patch
                | Interaction::Delete => "write",
                Interaction::Read
                | Interaction::Vread
                | Interaction::HistoryInstance
                | Interaction::HistoryType
                | Interaction::HistorySystem
                | Interaction::SearchType
                | Interaction::SearchSystem => "read",
            };
            hint = format!("{scope}.{v1}");
        }
        match self.inner.scope_context_separator {
            // The hint is `{context}/{type}.{letters}`: its first `/` is the separator's,
            // and every type is Microsoft's `all` (the spelling the rewrite reads as `*`).
            Some(separator) => {
                let hint = hint.replacen('/', separator.encode_utf8(&mut [0; 4]), 1);
                let every_type = format!("{separator}*.");
                hint.replacen(&every_type, &format!("{separator}all."), 1)
            }
            None => hint,
        }
    }

    /// Whether the token has resource scopes and all of them are written in SMART v1.
    fn writes_scopes_in_v1(&self) -> bool {
        let mut scopes = self.scope_set().resource_scopes().peekable();
        scopes.peek().is_some() && scopes.all(|scope| scope.version == ScopeSyntax::V1)
    }

    /// The context to suggest in `insufficient_scope` hints: `system` for clients that hold
    /// system scopes (backend services), `patient` with a patient in context, else `user`.
    pub(crate) fn hint_context(&self) -> Context {
        let scopes = self.scope_set();
        if scopes
            .resource_scopes()
            .any(|scope| scope.context == Context::System)
        {
            Context::System
        } else if scopes.has_patient_context() {
            Context::Patient
        } else {
            Context::User
        }
    }

    /// Whether both are handles to the same verified claims (not copies).
    #[cfg(all(test, feature = "testing"))]
    pub(crate) fn shares_claims_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// `patient`: the id of the Patient in context, from the first present claim of the
    /// configured list (default `patient`; see
    /// [`VerifierBuilder::patient_claims`](crate::VerifierBuilder::patient_claims)).
    ///
    /// `None` unless the claim is a FHIR resource id (`[A-Za-z0-9-.]{1,64}`, not `.` or
    /// `..`), or a relative reference `Patient/{id}` (as some servers write it), read as its
    /// id: an empty, whitespace-only or otherwise malformed value (an absolute URL too) is
    /// no launch context, and then `patient/` scopes grant nothing. A claim of another JSON
    /// type (`null` included) makes the token invalid.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// assert_eq!(ClaimsBuilder::new().patient("123").build().patient(), Some("123"));
    /// // A relative reference is read as its id; an absolute URL is no launch context.
    /// assert_eq!(ClaimsBuilder::new().patient("Patient/123").build().patient(), Some("123"));
    /// let url = ClaimsBuilder::new().patient("https://ehr.example/Patient/123").build();
    /// assert_eq!(url.patient(), None);
    /// # }
    /// ```
    pub fn patient(&self) -> Option<&str> {
        self.string(Field::Patient)
    }
    /// `encounter`: the id of the Encounter in context (or of an `Encounter/{id}`
    /// reference); `None` for a value that is neither, as for [`SmartClaims::patient`].
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().encounter("Encounter/e-42").build();
    /// assert_eq!(claims.encounter(), Some("e-42"));
    /// assert_eq!(ClaimsBuilder::new().build().encounter(), None);
    /// # }
    /// ```
    pub fn encounter(&self) -> Option<&str> {
        self.string(Field::Encounter)
    }
    /// `fhirUser`: the FHIR resource (Practitioner, Patient, ...) of the user, from the
    /// first present claim of the configured list (default `fhirUser`; see
    /// [`VerifierBuilder::fhir_user_claims`](crate::VerifierBuilder::fhir_user_claims)),
    /// as written: a reference to a Patient, Practitioner, PractitionerRole, RelatedPerson
    /// or Person, relative (`Practitioner/7`) or an absolute `https` (or `http`) URL ending
    /// so. `None` when the claim is absent, empty or whitespace-only; any other value
    /// (whitespace or control characters around or inside, another type, a version, a query
    /// or fragment, user info, a `.` or `..` segment, another JSON type) makes the token
    /// invalid, so that `None` always means the token names no user.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().fhir_user("Practitioner/7").build();
    /// assert_eq!(claims.fhir_user(), Some("Practitioner/7"));
    /// let url = "https://ehr.example/fhir/PractitionerRole/7";
    /// assert_eq!(ClaimsBuilder::new().fhir_user(url).build().fhir_user(), Some(url));
    /// assert_eq!(ClaimsBuilder::new().fhir_user(" ").build().fhir_user(), None);
    /// // A token naming no user resource is invalid (the kit's `build` panics for it).
    /// let elsewhere = std::panic::catch_unwind(|| {
    ///     ClaimsBuilder::new().fhir_user("Practitioner/7/../../Patient/1").build()
    /// });
    /// assert!(elsewhere.is_err());
    /// # }
    /// ```
    pub fn fhir_user(&self) -> Option<&str> {
        self.string(Field::FhirUser)
    }
    /// `tenant`: the organization the launch belongs to; `None` when the claim is absent,
    /// empty or whitespace-only.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().tenant("north-clinic").build();
    /// assert_eq!(claims.tenant(), Some("north-clinic"));
    /// assert_eq!(ClaimsBuilder::new().build().tenant(), None);
    /// # }
    /// ```
    pub fn tenant(&self) -> Option<&str> {
        self.string(Field::Tenant)
    }
    /// `fhirContext`: further context resources (both SMART 2.0 and 2.1+ forms; the array
    /// also when given as a string of JSON text, as Keycloak's SMART mappers write it).
    ///
    /// Empty or whitespace-only `reference`, `canonical` and `type` values, and an empty
    /// `identifier` object, count as absent. An entry that then names nothing, and an entry
    /// with a blank `role`, make the token invalid.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// // Keycloak's mappers send the array as a string of JSON text; it reads the same.
    /// let claims = ClaimsBuilder::new()
    ///     .claim("fhirContext", r#"[{"reference": "Observation/5"}, "Encounter/9"]"#)
    ///     .build();
    /// let references: Vec<_> = claims.fhir_context().iter().filter_map(|c| c.reference()).collect();
    /// assert_eq!(references, ["Observation/5", "Encounter/9"]);
    /// # }
    /// ```
    pub fn fhir_context(&self) -> &[FhirContext] {
        &self.inner.fhir_context
    }
    /// Any claim by name, as JSON.
    ///
    /// ```
    /// # fn check(claims: &smart_auth::SmartClaims) {
    /// let banner = claims.claim("need_patient_banner").and_then(|v| v.as_bool());
    /// # }
    /// ```
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.inner.object().get(name)
    }
    /// Every claim of the token, as JSON.
    ///
    /// ```
    /// # #[cfg(feature = "testing")] {
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().claim("org", "acme").build();
    /// let all = claims.all_claims();
    /// assert_eq!(all["org"], "acme");
    /// assert_eq!(all["iss"], "https://issuer.test"); // the standard claims are there too
    /// # }
    /// ```
    pub fn all_claims(&self) -> &Map<String, Value> {
        self.inner.object()
    }

    /// The token's whole payload deserialized into your own type, for the claims this crate
    /// does not interpret. Declare the members you need; the others are ignored (unless
    /// the type says `#[serde(deny_unknown_fields)]`).
    ///
    /// ```
    /// use serde::Deserialize;
    /// use smart_auth::SmartClaims;
    ///
    /// #[derive(Deserialize)]
    /// struct OrgClaims {
    ///     org: String,
    ///     #[serde(default)]
    ///     departments: Vec<String>,
    /// }
    ///
    /// # #[cfg(feature = "axum")]
    /// async fn handler(claims: SmartClaims) -> Result<String, http::StatusCode> {
    ///     let extra: OrgClaims = claims.extra().map_err(|_| http::StatusCode::FORBIDDEN)?;
    ///     Ok(format!("{} ({} departments)", extra.org, extra.departments.len()))
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// When the payload does not fit `T` (a required member missing, a member of the wrong
    /// type). The message names the expected type and the missing member, never a value of
    /// the token (a message raised by your own `Deserialize` code is passed on as is).
    pub fn extra<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        extra::from_claims(self.inner.object())
    }
}

impl std::fmt::Debug for SmartClaims {
    /// Prints identity and context, never the whole claim set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartClaims")
            .field("iss", &self.iss())
            .field("sub", &self.sub())
            .field("client_id", &self.client_id())
            .field("scopes", &self.scopes())
            .field("exp", &self.inner.expires_at)
            .finish_non_exhaustive()
    }
}

/// The well-formed scope tokens of a space-separated scope string, joined by single
/// spaces. The common case, a string of scope-token characters separated by single
/// spaces, is checked in one branch-free pass over its bytes and copied as it is; any
/// other string goes token by token through [`well_formed_scope_text`].
fn scope_text_of_string(list: &str) -> Cow<'_, str> {
    // Bytes other than space (0x20) and the scope-token bytes (RFC 6749 3.3: 0x21,
    // 0x23-0x5B, 0x5D-0x7E).
    let outside = |byte: u8| {
        u8::from(byte.wrapping_sub(0x20) > 0x5E) | u8::from(byte == b'"') | u8::from(byte == b'\\')
    };
    let clean = list
        .as_bytes()
        .iter()
        .fold(0, |found, &byte| found | outside(byte))
        == 0;
    if clean && !list.starts_with(' ') && !list.ends_with(' ') && !list.contains("  ") {
        return Cow::Borrowed(list);
    }
    Cow::Owned(well_formed_scope_text(split_scope_string(list)))
}

/// The well-formed scope tokens, joined by single spaces; each dropped one is logged with
/// its reason only. A token never holds a space, so splitting the text again gives the
/// same tokens.
fn well_formed_scope_text<'a>(tokens: impl Iterator<Item = &'a str>) -> String {
    let mut text = String::new();
    for token in tokens {
        if !is_scope_token(token) {
            if !token.is_empty() {
                tracing::debug!("dropping a scope token with a character outside RFC 6749 3.3");
            }
            continue;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(token);
    }
    text
}

/// Scope text (well-formed tokens joined by single spaces) with `separator` turned into
/// `/` where it follows a SMART context that starts a token: `patient.Observation.read`
/// becomes `patient/Observation.read` for `.`. The resource `all`, which Microsoft's FHIR
/// servers write for every type, becomes `*` (`patient.all.read` is `patient/*.read`), and
/// so do the permissions `all`, which they write for every interaction (`patient.all.all`,
/// their spelling of `patient/*.*`).
/// Tokens whose scope part (before a granular `?` query) holds a `/` already, and every
/// other scope (`openid`, `launch`, ...), are kept as they are.
fn with_smart_context_slash(text: Cow<'_, str>, separator: char) -> Cow<'_, str> {
    let context_length = |token: &str| {
        let scope_part = token.split_once('?').map_or(token, |(scope, _)| scope);
        if scope_part.contains('/') {
            return None;
        }
        ["patient", "user", "system"]
            .into_iter()
            .find_map(|context| {
                token
                    .strip_prefix(context)
                    .is_some_and(|rest| rest.starts_with(separator))
                    .then_some(context.len())
            })
    };
    if !text.split(' ').any(|token| context_length(token).is_some()) {
        return text;
    }
    let mut rewritten = String::with_capacity(text.len());
    for token in text.split(' ') {
        if !rewritten.is_empty() {
            rewritten.push(' ');
        }
        match context_length(token) {
            Some(length) => {
                rewritten.push_str(&token[..length]);
                rewritten.push('/');
                let rest = &token[length + separator.len_utf8()..];
                // Microsoft's `all`, as the whole resource or the whole permissions.
                fn every(part: &str) -> &str {
                    if part == "all" { "*" } else { part }
                }
                match rest.split_once('.') {
                    Some((resource, permissions)) => {
                        rewritten.push_str(every(resource));
                        rewritten.push('.');
                        rewritten.push_str(every(permissions));
                    }
                    None => rewritten.push_str(rest),
                }
            }
            None => rewritten.push_str(token),
        }
    }
    Cow::Owned(rewritten)
}

/// Whether a string is empty or holds only whitespace.
fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

/// Whether `text` is a FHIR resource id: 1 to 64 of `A-Z a-z 0-9 - .`, but not `.` or
/// `..` (a handler building a URL from it would write a dot segment, which a normalising
/// proxy turns into another path).
fn is_fhir_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
}

/// The resource types a `fhirUser` names (SMART App Launch: the user's own resource).
const FHIR_USER_TYPES: [&str; 5] = [
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
    "Person",
];

/// A present `fhirUser` claim (`name`): a reference to a resource of one of
/// [`FHIR_USER_TYPES`], relative (`Practitioner/7`) or an absolute `https` or `http` URL
/// (the scheme in any case, a host, no empty segment) ending so
/// (`https://ehr.example/fhir/Practitioner/7`), with a FHIR id, kept as written.
/// A blank one is no `fhirUser`; anything else (whitespace or control characters, another
/// type, a version, a query or fragment, user info, a dot segment, a relative reference
/// with more segments, another JSON type) makes the token invalid: a handler that limits a
/// `user/` grant by it, or builds a URL from it, must not be led elsewhere, nor read its
/// absence as a client acting for no user.
fn fhir_user_reference<'a>(name: &str, value: Member<'a>) -> Result<Option<&'a str>, ErrorKind> {
    let Member::Text(text) = value else {
        return Err(ErrorKind::InvalidClaim);
    };
    if is_blank(text) {
        return Ok(None);
    }
    // The scheme in any case (RFC 3986 section 3.1), a host (RFC 9110 section 4.2 allows
    // no empty one), then the path.
    let path = match text.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http") =>
        {
            rest.split_once('/')
                .filter(|(authority, _)| {
                    // A host before any port (`https://:443/` has none).
                    authority
                        .split(':')
                        .next()
                        .is_some_and(|host| !host.is_empty())
                })
                .map(|(_, path)| path)
        }
        Some(_) => None,
        None => Some(text),
    };
    let relative = !text.contains("://");
    let names_a_user = path.is_some_and(|path| {
        let segments: Vec<&str> = path.split('/').collect();
        let [.., resource_type, id] = segments.as_slice() else {
            return false;
        };
        FHIR_USER_TYPES.contains(resource_type)
            && is_fhir_id(id)
            && (!relative || segments.len() == 2)
            && segments
                .iter()
                .all(|segment| !segment.is_empty() && *segment != "." && *segment != "..")
    }) && text
        .bytes()
        .all(|byte| crate::fetch::is_uri_character(byte) && !b"?#%@".contains(&byte));
    if !names_a_user {
        // The value is token content: say only which claim was refused.
        tracing::debug!(claim = name, "a fhirUser that names no user resource");
        return Err(ErrorKind::InvalidClaim);
    }
    Ok(Some(text))
}

/// A string claim where a blank value counts as absent. Other JSON types are invalid.
fn non_blank_string<'a>(
    object: &'a impl ClaimSource,
    name: &str,
) -> Result<Option<&'a str>, ErrorKind> {
    Ok(optional_string(object, name)?.filter(|value| !is_blank(value)))
}

/// A present launch-context id (`patient`, `encounter`) of the claim `name`: a FHIR
/// resource id, or a relative reference to a resource of `resource_type` (`Patient/123`,
/// as some servers write it), which names the same resource.
/// Any other value (another type, an absolute URL, a version, the empty string) is no
/// launch context. Other JSON types are invalid.
fn launch_context_id<'a>(
    name: &str,
    resource_type: &str,
    value: Member<'a>,
) -> Result<Option<&'a str>, ErrorKind> {
    let Member::Text(id) = value else {
        return Err(ErrorKind::InvalidClaim);
    };
    let id = id
        .strip_prefix(resource_type)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(id);
    if !is_fhir_id(id) {
        // The value is token content: say only which claim was ignored.
        tracing::debug!(claim = name, "ignoring a launch context that is no FHIR id");
        return Ok(None);
    }
    Ok(Some(id))
}

fn optional_string<'a>(
    object: &'a impl ClaimSource,
    name: &str,
) -> Result<Option<&'a str>, ErrorKind> {
    match object.claim(name) {
        None => Ok(None),
        Some(Member::Text(value)) => Ok(Some(value)),
        Some(Member::Json(_)) => Err(ErrorKind::InvalidClaim),
    }
}

/// Which way a fractional NumericDate becomes whole seconds: always towards the stricter
/// answer, so that a token is never taken as valid outside its own bounds (`exp` rounds
/// down, `nbf` and `iat` up).
#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// A JSON number (RFC 7519 NumericDate, fractions allowed), as whole seconds rounded the
/// given way.
fn optional_numeric_date(
    object: &impl ClaimSource,
    name: &str,
    round: Round,
) -> Result<Option<i64>, ErrorKind> {
    match object.claim(name) {
        None => Ok(None),
        Some(Member::Json(Value::Number(number))) => {
            if let Some(seconds) = number.as_i64() {
                Ok(Some(seconds))
            } else if let Some(seconds) = number.as_f64() {
                let whole = match round {
                    Round::Down => seconds.floor(),
                    Round::Up => seconds.ceil(),
                };
                // `as` saturates: 1e300 becomes i64::MAX, which is what "far future" means,
                // and -1e300 i64::MIN, the far past. (Numbers beyond `f64` are refused by
                // the JSON reader in every build.)
                Ok(Some(whole as i64))
            } else {
                // u64 values above i64::MAX.
                Ok(Some(i64::MAX))
            }
        }
        Some(_) => Err(ErrorKind::InvalidClaim),
    }
}

/// Checks that the verifier's one-pass reading of a JWT payload (`payload`, its JSON text)
/// answers exactly as reading the whole object does: both refuse the document, or both
/// refuse it with the same error, or both give the same claims. Returns the whole object
/// when the document is one. For the property tests and the fuzz targets: panics on any
/// difference.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn assert_one_pass_reading_agrees(
    payload: &[u8],
    names: &ClaimNames,
) -> Option<Map<String, Value>> {
    use base64::Engine as _;

    let selected = crate::json::selected_members(payload, |name| names.is_read(name));
    let Ok(object) = crate::json::object_with_unique_members(payload) else {
        assert!(
            selected.is_err(),
            "the one-pass reading accepts what the strict one refuses"
        );
        return None;
    };
    let selected = selected.expect("the one-pass reading refuses what the strict one accepts");
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload);
    let token = format!("e30.{encoded}.c2ln");
    let one_pass = SmartClaims::read_jwt_payload(&selected, names)
        .map(|claims| claims.with_token(token.as_bytes().into()));
    let view = |claims: &SmartClaims| {
        (
            (
                claims.iss().to_owned(),
                claims.sub().map(str::to_owned),
                claims.aud().to_vec(),
            ),
            (
                claims.exp(),
                claims.nbf(),
                claims.iat(),
                claims.jti().map(str::to_owned),
            ),
            (
                claims.client_id().map(str::to_owned),
                claims.scopes().to_vec(),
            ),
            (
                claims.patient().map(str::to_owned),
                claims.encounter().map(str::to_owned),
            ),
            (
                claims.fhir_user().map(str::to_owned),
                claims.tenant().map(str::to_owned),
            ),
            (claims.fhir_context().to_vec(), claims.has_confirmation()),
            claims.all_claims().clone(),
        )
    };
    match (one_pass, SmartClaims::from_payload(object.clone(), names)) {
        (Ok(one_pass), Ok(whole)) => assert_eq!(view(&one_pass), view(&whole)),
        (Err(one_pass), Err(whole)) => assert_eq!(one_pass, whole),
        (one_pass, whole) => panic!(
            "the readings disagree: {:?} vs {:?}",
            one_pass.err(),
            whole.err()
        ),
    }
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    fn names() -> ClaimNames {
        ClaimNames::default()
    }

    fn parse(value: Value) -> Result<SmartClaims, ErrorKind> {
        let Value::Object(map) = value else {
            panic!("object")
        };
        SmartClaims::from_payload(map, &names())
    }

    /// `fhirUser` names the user's own resource: relative or absolute references to the
    /// five user types with a FHIR id pass as written, a blank one is none, and the hostile
    /// variants and other JSON types make the token invalid.
    #[test]
    fn fhir_user_is_a_reference_to_a_user_resource() {
        let read = |value: Value| parse(json!({"iss": "i", "exp": 1, "fhirUser": value}));
        for kept in [
            "Practitioner/7",
            "Patient/p-1.2",
            "PractitionerRole/7",
            "RelatedPerson/7",
            "Person/7",
            "https://ehr.example/fhir/r4/Practitioner/7",
            "http://localhost:8080/Practitioner/7",
            "HTTPS://ehr.example/Practitioner/7",
        ] {
            assert_eq!(read(json!(kept)).unwrap().fhir_user(), Some(kept), "{kept}");
        }
        for blank in ["", " ", "\t"] {
            assert_eq!(read(json!(blank)).unwrap().fhir_user(), None, "{blank:?}");
        }
        for refused in [
            " Practitioner/7",
            "Practitioner/7 ",
            "Practitioner/7\r\nx",
            "7",
            "Practitioner",
            "Practitioner/",
            "Organization/7",
            "practitioner/7",
            "Practitioner/7/_history/2",
            "Practitioner/7/../../Patient/1",
            "fhir/Practitioner/7",
            "/Practitioner/7",
            "Practitioner/7?x=1",
            "Practitioner/7#x",
            "Practitioner/%37",
            "Practitioner/..",
            "https://ehr.example/fhir/../Practitioner/7",
            "https://ehr.example",
            "ftp://ehr.example/Practitioner/7",
            "urn:uuid:Practitioner/7",
            "https://ehr.example/Practitioner/7\u{0}",
            "https://user@ehr.example/Practitioner/7",
            // No host, or an empty segment a URL parser reads otherwise.
            "https:///Practitioner/7",
            "https:////evil.example/Practitioner/7",
            "https://ehr.example//Practitioner/7",
            "https://ehr.example/fhir//Practitioner/7",
            "https://:443/Practitioner/7",
        ] {
            assert_eq!(
                read(json!(refused)).err(),
                Some(ErrorKind::InvalidClaim),
                "{refused:?}"
            );
        }
        for invalid in [json!(null), json!(7), json!(["Practitioner/7"])] {
            assert_eq!(
                read(invalid.clone()).err(),
                Some(ErrorKind::InvalidClaim),
                "{invalid}"
            );
        }
    }

    /// SMART 2.2's grants for several servers (`authorization_details`, RFC 9396): the
    /// `smart_on_fhir` entry naming this server replaces the token's scope, patient,
    /// encounter and `fhirContext` (each only where the entry has it); entries for other
    /// servers and of other types leave them; malformed details, two entries for this
    /// server, and a grant that may be meant for a server whose base is unknown are refused.
    #[test]
    fn a_grant_for_this_server_replaces_the_tokens_own() {
        let here = "https://ehr.example/fhir/r2";
        let at = |locations: &[&str]| ClaimNames {
            locations: locations.iter().map(|l| (*l).to_owned()).collect(),
            ..ClaimNames::default()
        };
        let read = |details: Value, names: &ClaimNames| {
            let Value::Object(map) = json!({
                "iss": "https://as.example", "exp": 2_000_000_000, "scope": "patient/*.rs",
                "patient": "r4-123", "encounter": "e-4", "fhirContext": ["Observation/4"],
                "authorization_details": details,
            }) else {
                unreachable!()
            };
            SmartClaims::from_payload(map, names)
        };
        let names = at(&[here, "https://ehr.example/fhir/r2/"]);
        let other_server = json!({
            "type": "smart_on_fhir", "locations": ["https://ehr.example/fhir/r4"],
            "scope": "patient/*.cruds", "patient": "r4-999",
        });
        let this_server = json!({
            "type": "smart_on_fhir", "locations": ["https://x.example", here],
            "fhirVersions": ["1.0.2"], "scope": "patient/Patient.rs", "patient": "Patient/r2-456",
            "fhirContext": [{"reference": "Encounter/9"}],
        });
        let claims = read(
            json!([{"type": "payment_initiation", "locations": 7}, other_server, this_server]),
            &names,
        )
        .unwrap();
        assert_eq!(claims.scopes(), ["patient/Patient.rs"]);
        assert_eq!(claims.patient(), Some("r2-456"));
        // Not in the entry: the token's own.
        assert_eq!(claims.encounter(), Some("e-4"));
        assert_eq!(claims.fhir_context()[0].reference(), Some("Encounter/9"));
        assert!(!claims.permits(Interaction::Read, "Observation"));
        // No entry for this server: the token's own claims.
        for details in [
            json!([]),
            json!([other_server.clone()]),
            json!([{"type": "other"}]),
        ] {
            let claims = read(details.clone(), &names).unwrap();
            assert_eq!(claims.scopes(), ["patient/*.rs"], "{details}");
            assert_eq!(claims.patient(), Some("r4-123"), "{details}");
        }
        // Refused.
        let refused = [
            json!({"type": "smart_on_fhir", "locations": [here]}),
            json!("smart_on_fhir"),
            json!(null),
            json!([null]),
            json!([{"locations": [here]}]),
            json!([{"type": 7}]),
            json!([{"type": "smart_on_fhir"}]),
            json!([{"type": "smart_on_fhir", "locations": here}]),
            json!([{"type": "smart_on_fhir", "locations": [here, 7]}]),
            json!([this_server.clone(), this_server.clone()]),
            // A wrong type in the grant for this server.
            json!([{"type": "smart_on_fhir", "locations": [here], "patient": 7}]),
            json!([{"type": "smart_on_fhir", "locations": [here], "scope": {"a": 1}}]),
        ];
        for details in refused {
            assert_eq!(
                read(details.clone(), &names).err(),
                Some(ErrorKind::InvalidClaim),
                "{details}"
            );
        }
        // This server's base unknown (no audience, or only audiences that are no web
        // URL, such as Okta's `api://default`): a grant may be meant for it.
        for unknown in [
            at(&[]),
            at(&["api://default"]),
            at(&["urn:fhir", "8c1f-4b"]),
        ] {
            assert_eq!(
                read(json!([other_server.clone()]), &unknown).err(),
                Some(ErrorKind::InvalidClaim),
                "{:?}",
                unknown.locations
            );
            let without_grant =
                json!([{"type": "smart_on_fhir", "locations": [here], "fhirVersions": ["4.0.1"]}]);
            assert!(read(without_grant, &unknown).is_ok());
        }
        // This server named in another spelling of its URL: the grant is for it.
        for spelling in [
            "HTTPS://EHR.example/fhir/r2",
            "https://ehr.EXAMPLE/fhir/r2/",
            "https://ehr.example:443/fhir/r2",
        ] {
            let entry = json!([{"type": "smart_on_fhir", "locations": [spelling],
                                "scope": "patient/Patient.rs", "patient": "r2-456"}]);
            let claims = read(entry, &at(&[here])).unwrap();
            assert_eq!(claims.patient(), Some("r2-456"), "{spelling}");
        }
        // The path is no host: another case there is another server.
        let entry = json!([{"type": "smart_on_fhir", "locations": ["https://ehr.example/FHIR/r2"],
                            "scope": "patient/Patient.rs", "patient": "r2-456"}]);
        assert_eq!(read(entry, &at(&[here])).unwrap().patient(), Some("r4-123"));
    }

    /// `aud` in every form: one string, a list of one, several, none, an empty list; the
    /// verifier's unlisted reading agrees with `aud()`, and wrong types are invalid.
    #[test]
    fn audiences_in_every_form() {
        let cases: [(Value, &[&str]); 5] = [
            (json!("https://fhir"), &["https://fhir"]),
            (json!(["https://fhir"]), &["https://fhir"]),
            (json!(["a", "b", "a"]), &["a", "b", "a"]),
            (json!([]), &[]),
            (Value::Null, &[]),
        ];
        for (aud, expected) in cases {
            let mut payload = json!({"iss": "https://as", "exp": 2000});
            if !aud.is_null() {
                payload["aud"] = aud.clone();
            }
            let claims = parse(payload).unwrap();
            assert_eq!(claims.audiences().collect::<Vec<_>>(), expected, "{aud}");
            assert_eq!(claims.aud(), expected, "{aud}");
        }
        for aud in [
            json!(1),
            json!(null),
            json!({}),
            json!(["a", 1]),
            json!([null]),
        ] {
            let payload = json!({"iss": "https://as", "exp": 2000, "aud": aud});
            assert_eq!(parse(payload).err(), Some(ErrorKind::InvalidClaim), "{aud}");
        }
    }

    #[test]
    fn reads_every_smart_claim() {
        let claims = parse(json!({
            "iss": "https://as", "sub": "svc", "azp": "client-1", "aud": ["a", "b"],
            "exp": 2000, "iat": 1000.7, "nbf": 1000, "jti": "j",
            "scp": ["system/Patient.rs", "system/Observation.rs", "launch"],
            "patient": "p1", "encounter": "e1", "fhirUser": "Practitioner/9", "tenant": "t",
            "fhirContext": ["Observation/1", {"canonical": "http://x|1", "type": "Questionnaire"},
                            {"reference": "Patient/2", "role": "https://role"}],
            "custom": {"x": 1}
        }))
        .unwrap();
        assert_eq!(claims.iss(), "https://as");
        assert_eq!(claims.issuer(), "https://as");
        assert_eq!(claims.sub(), Some("svc"));
        assert_eq!(claims.client_id(), Some("client-1"));
        assert_eq!(claims.aud(), ["a", "b"]);
        assert_eq!(
            (claims.exp(), claims.iat(), claims.nbf()),
            (2000, Some(1001), Some(1000))
        );
        assert_eq!(
            claims.scopes(),
            ["system/Patient.rs", "system/Observation.rs", "launch"]
        );
        assert_eq!(
            (claims.patient(), claims.encounter()),
            (Some("p1"), Some("e1"))
        );
        assert_eq!(
            (claims.fhir_user(), claims.tenant()),
            (Some("Practitioner/9"), Some("t"))
        );
        assert_eq!(claims.fhir_context().len(), 3);
        assert_eq!(claims.fhir_context()[0].reference(), Some("Observation/1"));
        assert_eq!(
            claims.fhir_context()[1].resource_type(),
            Some("Questionnaire")
        );
        assert_eq!(claims.fhir_context()[2].role(), Some("https://role"));
        assert_eq!(claims.claim("custom"), Some(&json!({"x": 1})));
    }

    #[test]
    fn a_jwt_payload_kept_as_its_token_gives_the_same_claims() {
        let text = r#"{"iss":"https://as","exp":9,"sub":"s","aud":["a","b"],"cnf":{"jkt":"x"},"custom":{"x":[1,"é\u0000"]},"n":null}"#;
        let Value::Object(object) = serde_json::from_str::<Value>(text).unwrap() else {
            unreachable!()
        };
        let selected = crate::json::selected_members(text.as_bytes(), |name| names().is_read(name))
            .expect("strict");
        let token = format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(text));
        let from_text = SmartClaims::read_jwt_payload(&selected, &names())
            .expect("valid")
            .with_token(token.as_bytes().into());
        let from_object = SmartClaims::from_payload(object.clone(), &names()).expect("valid");
        for claims in [&from_text, &from_object] {
            assert!(claims.has_confirmation());
            assert_eq!(claims.aud(), ["a", "b"]);
            assert_eq!(claims.all_claims(), &object);
            assert_eq!(claims.claim("custom"), Some(&json!({"x": [1, "é\u{0}"]})));
            assert_eq!(claims.claim("n"), Some(&Value::Null));
            assert_eq!(claims.claim("absent"), None);
            #[derive(serde::Deserialize, PartialEq, Debug)]
            struct Custom {
                custom: Value,
            }
            assert_eq!(
                claims.extra::<Custom>().unwrap().custom,
                json!({"x": [1, "é\u{0}"]})
            );
        }
        let plain = parse(json!({"iss": "https://as", "exp": 9})).expect("valid");
        assert!(!plain.has_confirmation());
    }

    /// `token_use`, `tokenName` and `token_usage` are allow-lists: only the access-token
    /// values pass, in
    /// any ASCII case; every other value and every other JSON type marks another kind.
    #[test]
    fn token_use_and_token_name_allow_only_access_tokens() {
        let with = |name: &str, value: Value| {
            parse(json!({"iss": "https://as", "exp": 9, name: value})).map(|_| ())
        };
        for (name, value) in [
            ("token_use", json!("access")),
            ("token_use", json!("ACCESS")),
            ("token_use", json!("access_token")),
            ("tokenName", json!("access_token")),
            ("tokenName", json!("Access_Token")),
            ("token_usage", json!("access_token")),
        ] {
            assert_eq!(with(name, value.clone()), Ok(()), "{name} {value}");
        }
        for (name, value) in [
            ("token_use", json!("id")),
            ("token_use", json!("refresh_token")),
            ("token_use", json!("")),
            ("token_use", json!("access\u{0}")),
            ("token_use", json!("acceſs")),
            ("token_use", Value::Null),
            ("token_use", json!(1)),
            ("token_use", json!({})),
            ("tokenName", json!("id_token")),
            ("tokenName", json!("access")),
            ("tokenName", Value::Null),
            ("tokenName", json!(["access_token"])),
            ("token_usage", json!("refresh_token")),
            ("token_usage", json!("authorization_code")),
            ("token_usage", json!("access")),
        ] {
            assert_eq!(
                with(name, value.clone()),
                Err(ErrorKind::UnsupportedTokenType),
                "{name} {value}"
            );
        }
    }

    #[test]
    fn first_configured_claim_name_wins() {
        let claims = parse(json!({"iss": "i", "exp": 1, "scope": "a b", "scp": ["c"], "client_id": "x", "azp": "y"})).unwrap();
        assert_eq!(claims.scopes(), ["a", "b"]);
        assert_eq!(claims.client_id(), Some("x"));
    }

    #[test]
    fn wrongly_typed_claims_are_invalid_never_ignored() {
        let base = json!({"iss": "i", "exp": 1});
        let bad = [
            ("exp", json!("1")),
            ("exp", json!(null)),
            ("nbf", json!("0")),
            ("iat", json!(true)),
            ("aud", json!(5)),
            ("aud", json!(["a", 1])),
            ("sub", json!(1)),
            ("jti", json!({})),
            ("scope", json!(7)),
            ("scope", json!(["a", 1])),
            ("client_id", json!(3)),
            ("patient", json!(1)),
            ("fhirUser", json!([])),
            ("fhirContext", json!("Observation/1")),
            ("fhirContext", json!([{"type": "Patient"}])),
            (
                "fhirContext",
                json!([{"reference": "Patient/1", "role": ""}]),
            ),
            ("fhirContext", json!([1])),
        ];
        for (name, value) in bad {
            let mut payload = base.clone();
            payload[name] = value.clone();
            assert_eq!(
                parse(payload).err(),
                Some(ErrorKind::InvalidClaim),
                "{name} = {value}"
            );
        }
        assert_eq!(
            parse(json!({"iss": 1, "exp": 1})).err(),
            Some(ErrorKind::InvalidClaim)
        );
        assert_eq!(parse(json!({"exp": 1})).err(), Some(ErrorKind::WrongIssuer));
        assert_eq!(
            parse(json!({"iss": "i"})).err(),
            Some(ErrorKind::InvalidClaim)
        );
    }

    /// Claims with `iss`, `exp` and the given members.
    fn with(members: Value) -> Result<SmartClaims, ErrorKind> {
        let mut payload = json!({"iss": "i", "exp": 1});
        for (name, value) in members.as_object().expect("object") {
            payload[name] = value.clone();
        }
        parse(payload)
    }

    #[test]
    fn scope_tokens_are_split_at_spaces_only() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!("a b"), vec!["a", "b"]),
            (json!("  a   b  "), vec!["a", "b"]),
            (json!(""), vec![]),
            (json!("   "), vec![]),
            (json!("system/Patient.read\tsystem/*.*"), vec![]),
            (
                json!("openid system/Patient.read\tsystem/*.* fhirUser"),
                vec!["openid", "fhirUser"],
            ),
            (json!("patient/*.rs\u{000b}"), vec![]),
            (
                json!("a\nb a\rb a\u{000c}b a\u{0000}b a\u{007f}b a\u{0085}b a\u{00a0}b"),
                vec![],
            ),
            (json!("a\"b a\\b \u{00e9} c"), vec!["c"]),
            (json!("a a a"), vec!["a", "a", "a"]),
            (json!(["a", "b"]), vec!["a", "b"]),
            (
                json!(["a b", "c", "", " d", "e\t", "f\u{0000}g"]),
                vec!["c"],
            ),
            (json!([]), vec![]),
        ];
        for (claim, expected) in cases {
            let claims = with(json!({ "scope": claim.clone() })).expect("valid claims");
            assert_eq!(claims.scopes(), expected.as_slice(), "{claim}");
            assert_eq!(claims.scope_set().raw(), expected.as_slice(), "{claim}");
        }
        let claims = with(json!({"scope": "system/Patient.read\tsystem/*.*"})).expect("valid");
        assert!(!claims.has_scope("system/*.*"));
        assert!(!claims.permits(Interaction::Delete, "Patient"));
        assert!(!claims.permits(Interaction::Read, "Patient"));
    }

    #[test]
    fn blank_or_malformed_launch_context_is_no_context() {
        let long_id = "a".repeat(64);
        let too_long = "a".repeat(65);
        let cases: Vec<(Value, Option<&str>)> = vec![
            (json!("123"), Some("123")),
            (json!("A-b.9"), Some("A-b.9")),
            (json!(long_id.clone()), Some(long_id.as_str())),
            (json!(too_long), None),
            (json!(""), None),
            (json!(" "), None),
            (json!("\t\n"), None),
            (json!(" 123"), None),
            (json!("123 "), None),
            (json!("Observation/123"), None),
            (json!("1,2"), None),
            (json!("1&subject=2"), None),
            (json!("12_3"), None),
            (json!("\u{00e9}"), None),
            (json!("1\u{0000}"), None),
        ];
        for (value, expected) in cases {
            let claims = with(json!({
                "scope": "patient/*.rs",
                "patient": value.clone(),
                "encounter": value.clone()
            }))
            .expect("valid claims");
            assert_eq!(claims.patient(), expected, "{value}");
            assert_eq!(claims.encounter(), expected, "{value}");
            assert_eq!(
                claims.scope_set().has_patient_context(),
                expected.is_some(),
                "{value}"
            );
            assert_eq!(
                claims.permits(Interaction::Read, "Observation"),
                expected.is_some(),
                "{value}"
            );
            assert_eq!(
                claims.hint_context(),
                if expected.is_some() {
                    Context::Patient
                } else {
                    Context::User
                },
                "{value}"
            );
        }
        // Another JSON type, `null` included, makes the token invalid.
        for name in ["patient", "encounter", "fhirUser", "tenant"] {
            for value in [
                json!(null),
                json!(1),
                json!(true),
                json!([]),
                json!({}),
                json!(["1"]),
            ] {
                assert_eq!(
                    with(json!({ name: value.clone() })).err(),
                    Some(ErrorKind::InvalidClaim),
                    "{name} = {value}"
                );
            }
        }
        // No patient claim at all.
        let claims = with(json!({"scope": "patient/*.rs"})).expect("valid");
        assert_eq!(claims.patient(), None);
        assert!(!claims.permits(Interaction::Read, "Observation"));
    }

    #[test]
    fn blank_identity_claims_are_absent() {
        for blank in ["", " ", "\t"] {
            let claims = with(json!({
                "fhirUser": blank, "tenant": blank, "sub": blank, "client_id": blank, "jti": blank,
            }))
            .expect("valid");
            assert_eq!(
                (
                    claims.fhir_user(),
                    claims.tenant(),
                    claims.sub(),
                    claims.client_id(),
                    claims.jti()
                ),
                (None, None, None, None, None),
                "{blank:?}"
            );
        }
        let claims = with(json!({
            "fhirUser": "Practitioner/1", "tenant": "t", "sub": "s", "client_id": "c", "jti": "j",
        }))
        .expect("valid");
        assert_eq!(
            (
                claims.fhir_user(),
                claims.tenant(),
                claims.sub(),
                claims.client_id(),
                claims.jti()
            ),
            (
                Some("Practitioner/1"),
                Some("t"),
                Some("s"),
                Some("c"),
                Some("j")
            )
        );
    }

    /// A launch context written as a relative reference to its type (`Patient/123`, as
    /// Medplum and fhir-works-on-aws write it) names that resource; any other reference
    /// names nothing here.
    #[test]
    fn launch_context_as_a_relative_reference() {
        for (patient, expected) in [
            ("Patient/123", Some("123")),
            ("Patient/A-b.9", Some("A-b.9")),
            ("Patient/", None),
            ("Patient/1/_history/2", None),
            ("Patient/1?x=y", None),
            ("Patient//1", None),
            ("patient/1", None),
            ("Practitioner/1", None),
            ("Encounter/1", None),
            ("https://fhir.example/Patient/1", None),
            ("Patient/Patient/1", None),
            ("Patient/..", None),
            ("Patient/.", None),
            ("..", None),
            (".", None),
            ("Patient/.1", Some(".1")),
        ] {
            let payload = json!({"scope": "patient/*.rs", "patient": patient});
            let claims = with(payload.clone()).unwrap();
            assert_eq!(claims.patient(), expected, "{patient}");
            // The one-pass JWT reading agrees.
            assert_one_pass_reading_agrees(payload.to_string().as_bytes(), &names());
        }
        let claims = with(json!({"encounter": "Encounter/7"})).unwrap();
        assert_eq!(claims.encounter(), Some("7"));
        let claims = with(json!({"encounter": "Patient/7"})).unwrap();
        assert_eq!(claims.encounter(), None);
    }

    /// Keycloak's SMART mappers write `fhirContext` as a string of JSON text: read as the
    /// array it holds; a string that holds anything else is an invalid claim.
    #[test]
    fn fhir_context_as_json_text() {
        let claims = with(json!({"fhirContext": "[{\"reference\":\"Encounter/1\"}]"})).unwrap();
        assert_eq!(claims.fhir_context().len(), 1);
        assert_eq!(claims.fhir_context()[0].reference(), Some("Encounter/1"));
        assert_one_pass_reading_agrees(
            json!({"fhirContext": "[{\"reference\":\"Encounter/1\"}]"})
                .to_string()
                .as_bytes(),
            &names(),
        );
        for text in [
            "",
            "x",
            "{}",
            "\"[]\"",
            "[{\"reference\":\"a\",\"reference\":\"b\"}]",
            "[\"\"]",
        ] {
            assert_eq!(
                with(json!({ "fhirContext": text })).err(),
                Some(ErrorKind::InvalidClaim),
                "{text}"
            );
        }
    }

    #[test]
    fn fhir_context_with_blank_values() {
        let refused = [
            json!([""]),
            json!(["  "]),
            json!([{"reference": ""}]),
            json!([{"reference": " ", "type": "Patient"}]),
            json!([{"canonical": ""}]),
            json!([{"identifier": {}}]),
            json!([{"reference": "", "canonical": "\t", "identifier": {}}]),
            json!([{"reference": "Patient/1", "role": ""}]),
            json!([{"reference": "Patient/1", "role": " "}]),
            json!([{"reference": null}]),
            json!([{"reference": "Patient/1", "type": null}]),
            json!(null),
            json!([null]),
        ];
        for value in refused {
            assert_eq!(
                with(json!({ "fhirContext": value.clone() })).err(),
                Some(ErrorKind::InvalidClaim),
                "{value}"
            );
        }
        let claims = with(json!({"fhirContext": [
            {"reference": "Patient/1", "type": "", "canonical": " "},
            {"canonical": "http://q|1", "reference": ""},
            {"identifier": {"value": "x"}, "reference": "\t"}
        ]}))
        .expect("valid");
        let contexts = claims.fhir_context();
        assert_eq!(contexts.len(), 3);
        assert_eq!(
            (
                contexts[0].reference(),
                contexts[0].resource_type(),
                contexts[0].canonical()
            ),
            (Some("Patient/1"), None, None)
        );
        assert_eq!(
            (contexts[1].canonical(), contexts[1].reference()),
            (Some("http://q|1"), None)
        );
        assert_eq!(contexts[2].reference(), None);
        assert!(contexts[2].identifier().is_some());
    }

    /// What a scope token of [`POOL`] grants, written out by hand as the test's model.
    #[derive(Debug, Clone, Copy)]
    enum Grant {
        /// Nothing (malformed, or no resource scope).
        Nothing,
        /// Letters on a type (`*` for all), without a filter.
        Whole(Context, &'static str, &'static str),
        /// Letters on a type, inside a filter.
        Filtered(Context, &'static str, &'static str),
    }

    /// Scope tokens for the agreement property: plain, granular, v1, malformed, hostile.
    const POOL: &[(&str, Grant)] = &[
        (
            "system/Observation.rs",
            Grant::Whole(Context::System, "Observation", "rs"),
        ),
        (
            "system/Observation.cud",
            Grant::Whole(Context::System, "Observation", "cud"),
        ),
        (
            "system/Observation.u",
            Grant::Whole(Context::System, "Observation", "u"),
        ),
        (
            "system/Observation.cruds?category=lab",
            Grant::Filtered(Context::System, "Observation", "cruds"),
        ),
        (
            "system/Observation.rs?category=lab",
            Grant::Filtered(Context::System, "Observation", "rs"),
        ),
        (
            "system/*.c?category=lab",
            Grant::Filtered(Context::System, "*", "c"),
        ),
        ("system/*.s", Grant::Whole(Context::System, "*", "s")),
        (
            "system/*.rs?category=lab",
            Grant::Filtered(Context::System, "*", "rs"),
        ),
        (
            "user/Patient.read",
            Grant::Whole(Context::User, "Patient", "rs"),
        ),
        ("user/*.write", Grant::Whole(Context::User, "*", "cud")),
        (
            "user/Observation.d?status=final",
            Grant::Filtered(Context::User, "Observation", "d"),
        ),
        (
            "patient/Observation.rs",
            Grant::Whole(Context::Patient, "Observation", "rs"),
        ),
        (
            "patient/*.cruds?category=lab",
            Grant::Filtered(Context::Patient, "*", "cruds"),
        ),
        (
            "patient/Patient.*",
            Grant::Whole(Context::Patient, "Patient", "cruds"),
        ),
        ("system/Observation.dus", Grant::Nothing),
        ("system/Patient.sr", Grant::Nothing),
        ("system/Patient.rr", Grant::Nothing),
        ("system/Patient.read\tsystem/*.*", Grant::Nothing),
        ("system/*.cruds\u{b}", Grant::Nothing),
        ("system/Patient.READ", Grant::Nothing),
        ("openid", Grant::Nothing),
    ];

    /// The model's answer: whether the picked tokens grant `interaction` on `requested`, on
    /// the whole type (`filtered` false) or at least inside some filter (`filtered` true).
    fn model_grants(
        picks: &[(&str, Grant)],
        has_patient: bool,
        interaction: Interaction,
        requested: &str,
        filtered: bool,
    ) -> bool {
        let needed = interaction.required_permission().to_string();
        let filter_letter = needed == "r" || needed == "s";
        picks.iter().any(|(_, grant)| {
            let (context, scope_type, letters, whole) = match *grant {
                Grant::Nothing => return false,
                Grant::Whole(context, scope_type, letters) => (context, scope_type, letters, true),
                Grant::Filtered(context, scope_type, letters) => {
                    (context, scope_type, letters, false)
                }
            };
            // A filter on every type (the pool's use `category`, which some types lack)
            // counts for reads only.
            let counts =
                whole || (filtered && filter_letter && (scope_type != "*" || needed == "r"));
            let covers = scope_type == "*" || (requested != "*" && scope_type == requested);
            counts
                && covers
                && letters.contains(needed.as_str())
                && (context != Context::Patient || has_patient)
        })
    }

    /// A request (method, URL relative to the base) for an interaction on a type, on the
    /// resource `id` for instance interactions, when one exists. Searches carry a parameter
    /// that no granular filter of [`POOL`] uses.
    fn request_for(
        interaction: Interaction,
        resource_type: &str,
        id: &str,
    ) -> Option<(&'static str, String)> {
        use Interaction::*;
        let named = resource_type != "*";
        let t = resource_type;
        Some(match interaction {
            Read if named => ("GET", format!("{t}/{id}")),
            Vread if named => ("GET", format!("{t}/{id}/_history/2")),
            HistoryInstance if named => ("GET", format!("{t}/{id}/_history")),
            HistoryType if named => ("GET", format!("{t}/_history")),
            Create if named => ("POST", t.to_owned()),
            Update if named => ("PUT", format!("{t}/{id}")),
            Patch if named => ("PATCH", format!("{t}/{id}")),
            Delete if named => ("DELETE", format!("{t}/{id}")),
            SearchType if named => ("GET", format!("{t}?code=x")),
            SearchSystem if !named => ("GET", "?code=x".to_owned()),
            HistorySystem if !named => ("GET", "_history".to_owned()),
            _ => return None,
        })
    }

    proptest::proptest! {
        /// `ScopeSet::permits`, `permits_requirement`, `SmartClaims::permits`, `require` and
        /// the enforcement layer give the same answer, for every interaction and type, and
        /// the handler-filter variants agree with `constraints`/`require_constraints`.
        #[test]
        fn permission_checks_agree(
            picks in proptest::collection::vec(proptest::sample::select(POOL.to_vec()), 0..6),
            as_array in proptest::bool::ANY,
            patient in proptest::sample::select(vec![None, Some(""), Some(" "), Some("123")]),
        ) {
            let texts: Vec<&str> = picks.iter().map(|(text, _)| *text).collect();
            let scope = if as_array { json!(texts) } else { json!(texts.join(" ")) };
            let mut members = json!({ "scope": scope });
            if let Some(patient) = patient {
                members["patient"] = json!(patient);
            }
            let claims = with(members).expect("valid claims");
            let set = claims.scope_set();
            let strict = crate::ScopeEnforcement::new().at_base("/fhir");
            let filtering = crate::ScopeEnforcement::new().at_base("/fhir").handler_applies_granular_filters();
            for resource_type in ["Observation", "Patient", "*"] {
                for interaction in Interaction::ALL {
                    let context = format!("{texts:?} {patient:?} {interaction:?} {resource_type}");
                    let permits = set.permits(interaction, resource_type);
                    let has_patient = patient == Some("123");
                    proptest::prop_assert_eq!(
                        permits,
                        model_grants(&picks, has_patient, interaction, resource_type, false),
                        "{}", context
                    );
                    proptest::prop_assert_eq!(
                        !set.constraints(None, interaction, resource_type).is_denied(),
                        model_grants(&picks, has_patient, interaction, resource_type, true),
                        "{}", context
                    );
                    let requirement = crate::scopes::Requirement::new(
                        interaction,
                        crate::scopes::ResourceType::parse(resource_type).expect("valid type"),
                    );
                    let constraints = set.constraints(None, interaction, resource_type);
                    proptest::prop_assert_eq!(set.permits_requirement(&requirement), permits, "{}", context);
                    proptest::prop_assert_eq!(claims.permits(interaction, resource_type), permits, "{}", context);
                    let required = claims.require(interaction, resource_type);
                    proptest::prop_assert_eq!(required.is_ok(), permits, "{}", context);
                    proptest::prop_assert_eq!(constraints.is_unconstrained(), permits, "{}", context);
                    let with_filters = claims.require_constraints(interaction, resource_type);
                    proptest::prop_assert_eq!(with_filters.is_ok(), !constraints.is_denied(), "{}", context);
                    if interaction.required_permission().contains(crate::scopes::Permissions::CREATE)
                        || interaction.required_permission().contains(crate::scopes::Permissions::UPDATE)
                        || interaction.required_permission().contains(crate::scopes::Permissions::DELETE)
                    {
                        // Granular scopes never grant c, u or d.
                        proptest::prop_assert_eq!(with_filters.is_ok(), permits, "{}", context);
                    }
                    // The patient in context, and another one: `patient/` scopes do not reach
                    // a path naming another Patient.
                    for id in ["123", "1"] {
                        let Some((method, url)) = request_for(interaction, resource_type, id) else {
                            continue;
                        };
                        let instance = matches!(
                            interaction,
                            Interaction::Read
                                | Interaction::Vread
                                | Interaction::HistoryInstance
                                | Interaction::Update
                                | Interaction::Patch
                                | Interaction::Delete
                        );
                        let other_patient = has_patient && instance && resource_type == "Patient" && id != "123";
                        // A patch reads as well (`FhirRequest::access`): it needs `r` too.
                        let reads_too = interaction == Interaction::Patch;
                        // Another patient: whole-type grants outside `patient/` scopes only,
                        // handler filters or not.
                        // No handler filter covers a patch's read: a whole-type `r` only.
                        let read_permits = !reads_too
                            || if other_patient {
                                model_grants(&picks, false, Interaction::Read, resource_type, false)
                            } else {
                                set.permits(Interaction::Read, resource_type)
                            };
                        let (layer_permits, layer_filters) = if other_patient {
                            let whole = model_grants(&picks, false, interaction, resource_type, false)
                                && read_permits;
                            (whole, whole)
                        } else {
                            (permits && read_permits, !constraints.is_denied() && read_permits)
                        };
                        let layer = strict.check_bundle_entry(&claims, method, &url);
                        proptest::prop_assert_eq!(layer.is_ok(), layer_permits, "{} {} {}", context, method, url);
                        if let (Err(layer), Err(handler)) = (&layer, &required) {
                            // (A patch the handler would allow is refused for want of `r`: its
                            // hint is for reading, checked by the table tests.)
                            // Without a hint when no scope of the client's hint context could
                            // allow it; a patch lacking `r` too names both.
                            let expected = if other_patient && claims.hint_context() == Context::Patient {
                                None
                            } else if !read_permits {
                                handler.required_scope().map(|hint| {
                                    format!("{hint} {}", claims.scope_hint(Interaction::Read, resource_type))
                                })
                            } else {
                                handler.required_scope().map(str::to_owned)
                            };
                            proptest::prop_assert_eq!(layer.required_scope().map(str::to_owned), expected, "{}", context);
                        }
                        let opted_in = filtering.check_bundle_entry(&claims, method, &url);
                        proptest::prop_assert_eq!(opted_in.is_ok(), layer_filters, "{} {} {}", context, method, url);
                    }
                    if interaction == Interaction::SearchType && resource_type != "*" {
                        let url = format!("{resource_type}?category=lab");
                        let layer = strict.check_bundle_entry(&claims, "GET", &url);
                        proptest::prop_assert_eq!(
                            layer.is_ok(),
                            set.permits_search_query(resource_type, Some("category=lab")),
                            "{} {}", context, url
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fhir_context_serializes_to_the_object_form() {
        let claims = with(json!({"fhirContext": [
            "Observation/1",
            {"canonical": "http://q|1", "type": "Questionnaire"},
            {"reference": "Patient/2", "role": "https://role", "type": " "},
            {"identifier": {"system": "urn:x", "value": "7"}, "type": "Encounter"},
            {"reference": "Patient/3", "canonical": "http://c", "identifier": {"value": "v"},
             "type": "Patient", "role": "https://r", "extension": 1}
        ]}))
        .expect("valid");
        assert_eq!(
            serde_json::to_string(claims.fhir_context()).expect("serializes"),
            concat!(
                r#"[{"reference":"Observation/1"},"#,
                r#"{"canonical":"http://q|1","type":"Questionnaire"},"#,
                r#"{"reference":"Patient/2","role":"https://role"},"#,
                r#"{"identifier":{"system":"urn:x","value":"7"},"type":"Encounter"},"#,
                r#"{"reference":"Patient/3","canonical":"http://c","identifier":{"value":"v"},"#,
                r#""type":"Patient","role":"https://r"}]"#
            )
        );
        // What it serializes to reads back as the same entries.
        let again = with(json!({
            "fhirContext": serde_json::to_value(claims.fhir_context()).expect("serializes")
        }))
        .expect("valid");
        assert_eq!(again.fhir_context(), claims.fhir_context());
    }

    #[test]
    fn registered_claims_by_their_names() {
        let claims = with(json!({
            "iss": "https://as", "sub": "s", "aud": "a", "exp": 20, "nbf": 10, "iat": 11,
            "jti": "j"
        }))
        .expect("valid");
        assert_eq!(
            (claims.iss(), claims.issuer()),
            ("https://as", "https://as")
        );
        assert_eq!(
            (claims.sub(), claims.aud()),
            (Some("s"), &["a".to_owned()][..])
        );
        assert_eq!(
            (claims.exp(), claims.nbf(), claims.iat(), claims.jti()),
            (20, Some(10), Some(11), Some("j"))
        );
        let debug = format!("{claims:?}");
        assert!(debug.contains("iss: \"https://as\""), "{debug}");
        assert!(!debug.contains("\"j\""), "{debug}");
    }

    #[test]
    fn extra_claims_into_a_user_type() {
        #[derive(Debug, serde::Deserialize, PartialEq)]
        struct Mine {
            org: String,
            #[serde(default)]
            site: Option<String>,
            exp: i64,
        }
        let claims = with(json!({"org": "acme", "site": "north", "exp": 5})).expect("valid");
        assert_eq!(
            claims.extra::<Mine>().expect("fits"),
            Mine {
                org: "acme".into(),
                site: Some("north".into()),
                exp: 5
            }
        );
        let claims = with(json!({"org": "acme"})).expect("valid");
        assert_eq!(claims.extra::<Mine>().expect("fits").site, None);
        for wrong in [
            json!({}),
            json!({"org": 1}),
            json!({"org": "o", "site": ["x"]}),
        ] {
            let claims = with(wrong.clone()).expect("valid");
            assert!(claims.extra::<Mine>().is_err(), "{wrong}");
        }
        assert!(
            with(json!({}))
                .expect("valid")
                .extra::<Vec<String>>()
                .is_err()
        );
        assert!(with(json!({})).expect("valid").extra::<u8>().is_err());
        let everything: Value = with(json!({"x": [1]}))
            .expect("valid")
            .extra()
            .expect("any");
        assert_eq!(everything, json!({"iss": "i", "exp": 1, "x": [1]}));
    }

    #[test]
    fn configured_patient_and_fhir_user_claims() {
        let names = ClaimNames {
            patient: vec!["launch_response_patient".into(), "patient".into()],
            fhir_user: vec!["extension_fhirUser".into(), "fhirUser".into()],
            ..ClaimNames::default()
        };
        let parse_with = |members: Value| {
            let mut payload = json!({"iss": "i", "exp": 1, "scope": "patient/*.rs"});
            for (name, value) in members.as_object().expect("object") {
                payload[name] = value.clone();
            }
            let Value::Object(map) = payload else {
                unreachable!("an object")
            };
            SmartClaims::from_payload(map, &names)
        };
        // First present wins, even when its value is no launch context.
        let cases: Vec<(Value, Option<&str>, Option<&str>)> = vec![
            (
                json!({"launch_response_patient": "p1", "patient": "p2"}),
                Some("p1"),
                None,
            ),
            (json!({"patient": "p2"}), Some("p2"), None),
            (
                json!({"launch_response_patient": "https://fhir.example/Patient/1", "patient": "p2"}),
                None,
                None,
            ),
            (
                json!({"launch_response_patient": "Patient/1", "patient": "p2"}),
                Some("1"),
                None,
            ),
            (
                json!({"launch_response_patient": "", "patient": "p2"}),
                None,
                None,
            ),
            (
                json!({"extension_fhirUser": "Practitioner/1", "fhirUser": "Practitioner/2"}),
                None,
                Some("Practitioner/1"),
            ),
            (
                json!({"fhirUser": "Practitioner/2"}),
                None,
                Some("Practitioner/2"),
            ),
            (
                json!({"extension_fhirUser": " ", "fhirUser": "Practitioner/2"}),
                None,
                None,
            ),
        ];
        for (members, patient, fhir_user) in cases {
            let claims = parse_with(members.clone()).expect("valid");
            assert_eq!(
                (claims.patient(), claims.fhir_user()),
                (patient, fhir_user),
                "{members}"
            );
            assert_eq!(
                claims.permits(Interaction::Read, "Observation"),
                patient.is_some(),
                "{members}"
            );
        }
        for name in ["launch_response_patient", "extension_fhirUser"] {
            for value in [json!(null), json!(1), json!(["p"]), json!({})] {
                assert_eq!(
                    parse_with(json!({ name: value.clone() })).err(),
                    Some(ErrorKind::InvalidClaim),
                    "{name} = {value}"
                );
            }
        }
        // Only the configured names are read.
        let only_custom = ClaimNames {
            patient: vec!["pid".into()],
            fhir_user: vec!["user".into()],
            ..ClaimNames::default()
        };
        let Value::Object(map) = json!({
            "iss": "i", "exp": 1, "patient": 5, "fhirUser": [], "pid": "p9", "user": "Patient/9"
        }) else {
            unreachable!("an object")
        };
        let claims = SmartClaims::from_payload(map, &only_custom).expect("valid");
        assert_eq!(
            (claims.patient(), claims.fhir_user()),
            (Some("p9"), Some("Patient/9"))
        );
    }

    /// A fraction never widens the token's window: `exp` rounds down, `nbf` and `iat` up.
    #[test]
    fn fractional_numeric_dates_round_towards_the_stricter_answer() {
        let claims = parse(json!({"iss": "i", "exp": 1000.7, "nbf": 900.2, "iat": 900.7})).unwrap();
        assert_eq!(
            (claims.exp(), claims.nbf(), claims.iat()),
            (1000, Some(901), Some(901))
        );
        let claims = parse(json!({"iss": "i", "exp": -5.5, "nbf": -5.5})).unwrap();
        assert_eq!((claims.exp(), claims.nbf()), (-6, Some(-5)));
        let claims = parse(json!({"iss": "i", "exp": 7.0, "nbf": 7.0, "iat": 1e2})).unwrap();
        assert_eq!(
            (claims.exp(), claims.nbf(), claims.iat()),
            (7, Some(7), Some(100))
        );
    }

    #[test]
    fn huge_numeric_dates_saturate() {
        let claims = parse(json!({"iss": "i", "exp": 1e300})).unwrap();
        assert_eq!(claims.exp(), i64::MAX);
        let claims = parse(json!({"iss": "i", "exp": 18446744073709551615u64})).unwrap();
        assert_eq!(claims.exp(), i64::MAX);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::{config, json_object, json_value};
    use proptest::prelude::*;

    const CLAIM_NAMES: &[&str] = &[
        "iss",
        "exp",
        "aud",
        "scope",
        "scp",
        "client_id",
        "azp",
        "sub",
        "iat",
        "nbf",
        "jti",
        "patient",
        "encounter",
        "fhirUser",
        "tenant",
        "fhirContext",
    ];

    fn names() -> ClaimNames {
        ClaimNames {
            scope: vec!["scope".into(), "scp".into()],
            client_id: vec!["client_id".into(), "azp".into()],
            ..ClaimNames::default()
        }
    }

    proptest! {
        #![proptest_config(config(1024))]

        /// Any strict payload object: claims, `WrongIssuer` (no string `iss`) or
        /// `InvalidClaim`; accepted claims say exactly what the payload says, and hold no
        /// more than it (memory bounded by the payload).
        #[test]
        fn payload_answers_are_documented(text in json_object(CLAIM_NAMES)) {
            let Ok(map) = crate::json::object_with_unique_members(text.as_bytes()) else {
                return Ok(());
            };
            match SmartClaims::from_payload(map.clone(), &names()) {
                Ok(claims) => {
                    prop_assert_eq!(Some(claims.iss()), map.get("iss").and_then(Value::as_str));
                    prop_assert!(map.get("exp").is_some_and(Value::is_number));
                    let scope_text: usize = claims.scopes().iter().map(String::len).sum();
                    prop_assert!(scope_text <= text.len());
                    prop_assert!(claims.fhir_context().len() <= text.len());
                    for id in [claims.patient(), claims.encounter()].into_iter().flatten() {
                        prop_assert!(is_fhir_id(id));
                    }
                    for value in [claims.sub(), claims.client_id(), claims.jti(), claims.fhir_user(), claims.tenant()].into_iter().flatten() {
                        prop_assert!(!is_blank(value));
                    }
                    let _ = claims.scope_set();
                }
                Err(ErrorKind::WrongIssuer) => {
                    prop_assert!(!map.get("iss").is_some_and(Value::is_string));
                }
                Err(kind) => prop_assert_eq!(kind, ErrorKind::InvalidClaim),
            }
        }

        /// The one-pass split of a scope string keeps exactly the well-formed tokens that
        /// splitting and checking token by token keeps.
        #[test]
        fn scope_string_fast_path_agrees(list in "[ -~\t\n\u{7f}\u{80}é\"\\\\]{0,60}") {
            let text = scope_text_of_string(&list);
            prop_assert_eq!(&text, &well_formed_scope_text(split_scope_string(&list)));
            let expected: Vec<&str> =
                split_scope_string(&list).filter(|token| is_scope_token(token)).collect();
            prop_assert_eq!(split_scope_string(&text).collect::<Vec<_>>(), expected);
        }

        /// A JWT payload read in one pass (only the members read, strings borrowed) gives
        /// exactly the answer of reading the whole object.
        #[test]
        fn one_pass_reading_agrees_with_the_whole_object(text in json_object(CLAIM_NAMES)) {
            assert_one_pass_reading_agrees(text.as_bytes(), &names());
        }

        /// The same, for payloads that always have a string `iss` and a numeric `exp`, so
        /// that most of them are valid and every other claim's reading is compared.
        #[test]
        fn one_pass_reading_agrees_on_valid_payloads(
            members in prop::collection::vec(
                (prop::sample::select(CLAIM_NAMES), json_value(CLAIM_NAMES)),
                0..10,
            ),
        ) {
            let mut text = String::from(r#"{"iss":"https://as.example","exp":1700000000"#);
            for (name, value) in members.iter().filter(|(name, _)| !["iss", "exp"].contains(name)) {
                text.push_str(&format!(r#","{name}":{value}"#));
            }
            text.push('}');
            assert_one_pass_reading_agrees(text.as_bytes(), &names());
        }
    }
}
