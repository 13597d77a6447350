//! SMART on FHIR scopes: parsing, permission checks and request classification.
//!
//! This module is pure: it does no I/O and knows nothing about HTTP libraries.
//! It has three parts:
//!
//! * parsing scope strings into [`Scope`] values and collecting them in a [`ScopeSet`];
//! * deciding whether a [`ScopeSet`] allows an [`Interaction`] on a resource type, and which
//!   granular filters ([`SearchConstraints`]) apply;
//! * classifying a FHIR REST request (method + path) into a [`FhirRequest`], so that it can be
//!   mapped to the permissions it needs ([`AccessRule`]).
//!
//! # Scope grammar
//!
//! A token's scope claim is a list of scope tokens separated by single space characters
//! (RFC 6749 3.3), or a JSON array with one scope token per item. Each scope is one of:
//!
//! ```text
//! resource scope  = context "/" type "." permissions [ "?" query ]
//! context         = "patient" | "user" | "system"            (case-sensitive)
//! type            = "*" | [A-Z][A-Za-z]+                       (case-sensitive)
//! permissions     = v1 | v2
//! v1              = "read" | "write" | "*"                     (SMART v1 and Bulk Data v1)
//! v2              = an ordered, non-empty subset of "c" "r" "u" "d" "s", e.g. "rs", "cud"
//! query           = param "=" value *( "&" param "=" value )   (v2 permissions only)
//!
//! launch          = "launch"
//! launch context  = "launch/" [a-z]+ [ "?role=" role ]         e.g. "launch/patient"
//! identity        = "openid" | "fhirUser" | "profile"
//! refresh         = "offline_access" | "online_access"
//! other           = anything else (URIs, "__" extensions, other OAuth scopes)
//! ```
//!
//! Any ordered subset is valid, so `.rd` means read + delete; `.dus` (out of order), `.rr`
//! (repeated) and `.Rs` (upper case) are not.
//!
//! v1 permissions are rewritten to their v2 meaning: `read` = `rs`, `write` = `cud`,
//! `*` = `cruds`. The original syntax is remembered in [`ResourceScope::version`], but a
//! scope always displays in the v2 form.
//!
//! Query parameter names and values are percent-decoded (`%7C` becomes `|`). A `+` is kept
//! as a literal `+`; it is not read as a space. Parameters keep their order. Modifiers
//! (`code:in`), chains (`patient.birthdate`) and `_filter` are kept as plain parameter names and
//! are not interpreted.
//!
//! # Separators and characters (RFC 6749 3.3)
//!
//! Only the space character (0x20) separates scopes; runs of spaces and leading or trailing
//! spaces are ignored. A scope token may hold only printable ASCII other than space, `"` and
//! `\` (`%x21 / %x23-5B / %x5D-7E`). A token with any other character (TAB, CR, LF, FF, VT,
//! NUL, DEL or another control character, `"`, `\`, a non-ASCII character) is **dropped
//! whole**: it is never split further, it becomes a [`RejectedScope`] with
//! [`RejectReason::InvalidCharacter`], and it grants nothing. So
//! `"system/Patient.rs<TAB>system/*.cruds"` is one malformed token that grants neither
//! scope. In an array claim each item is one token, so an item holding a space is dropped
//! the same way. Nothing is case-folded: `.READ` or `.Read` are invalid permissions.
//!
//! # Malformed scopes
//!
//! A scope is treated as an *attempted resource scope* when the text before its first `/` is
//! `patient`, `user` or `system` in any letter case, or is `*`. Such a scope must follow the
//! grammar exactly. If it does not, it becomes a [`RejectedScope`] with a [`RejectReason`] and
//! grants nothing; the rest of the token still counts. Examples: `patient/Observation.dus`
//! (letters out of order), `patient/Observation.` (no letters), `*/Observation.rs` (wildcard
//! context, a smart-launcher extension), `Patient/Observation.rs` (context in the wrong case),
//! `patient/observation.rs` (bad type), `patient/Observation.read?category=x` (a query on v1
//! permissions: granular filters only exist in v2, and rejecting is the fail-closed choice).
//!
//! A `launch/...` scope that is not `launch/` + lowercase letters (+ optional `?role=...`) is
//! rejected too. Everything else that is not recognised is kept as [`Scope::Other`]. This includes
//! the URI forms of SMART scopes (`http://smarthealthit.org/fhir/scopes/...`), which therefore
//! grant nothing.
//!
//! # Permission checks
//!
//! Scopes combine as a union. `*` as the type covers every type, including ones added later.
//! Write never implies read. See [`ScopeSet::permits`] for the patient-context rule and
//! [`ScopeSet::search_constraints`] for granular (query) scopes.
//!
//! Granular scopes only restrict. [`ScopeSet::permits`] answers for the whole type, so a
//! granular scope never makes it true; it grants `r` and `s` only inside its filter (see
//! [`ScopeSet::constraints`] and [`ScopeSet::permits_search_query`]), and its `c`, `u` and
//! `d` letters grant nothing.

mod interaction;
mod matching;
mod parse;

pub use interaction::{
    AccessRule, Classified, Classifier, FhirRequest, Operation, OperationLevel, export_requirements,
};
pub(crate) use interaction::{is_smart_configuration_path, starts_fhir_interaction};
pub use matching::{Interaction, Requirement, SearchConstraints};
pub(crate) use matching::{
    SearchCriteria, include_reaches_every_type, include_target, single_target_type,
};
pub use parse::{
    Context, Permissions, RejectReason, RejectedScope, ResourceScope, ResourceType, Scope,
    ScopeSyntax,
};
pub(crate) use parse::{is_resource_type_name, is_scope_token, split_scope_string};

/// The parsed scopes of one access token.
///
/// Build it with [`ScopeSet::parse`] (space-separated string claim) or
/// [`FromIterator`] (array claim, e.g. `scp`, one scope token per item). Parsing never fails:
/// malformed scopes, including tokens with characters outside the RFC 6749 scope-token set,
/// end up in [`ScopeSet::rejected`] and grant nothing.
///
/// # Patient context
///
/// `patient/` scopes only grant access when the token carries a patient context (the `patient`
/// launch parameter). The set cannot see the token's other claims, so the caller states this with
/// [`ScopeSet::with_patient_context`]. The default is **no** patient context: a set built without
/// that call ignores all `patient/` scopes in permission checks (fail closed). The parsed scopes
/// are still listed by [`ScopeSet::scopes`].
///
/// ```
/// use smart_auth::scopes::{Interaction, ScopeSet};
///
/// let set = ScopeSet::parse("system/Observation.rs patient/Patient.r openid");
/// assert!(set.permits(Interaction::Read, "Observation"));
/// assert!(!set.permits(Interaction::Read, "Patient")); // no patient in context
///
/// let set = set.with_patient_context(true);
/// assert!(set.permits(Interaction::Read, "Patient"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    /// Every scope token as it appeared, malformed ones and duplicates included.
    raw: Vec<String>,
    /// Recognised scopes, without duplicates, in first-seen order.
    scopes: Vec<Scope>,
    /// Attempted resource or launch scopes that failed to parse, without duplicates.
    rejected: Vec<RejectedScope>,
    /// Whether the token has a patient context, which `patient/` scopes need.
    has_patient_context: bool,
}

impl ScopeSet {
    /// Returns an empty set, which permits nothing.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, ScopeSet};
    ///
    /// let set = ScopeSet::new();
    /// assert!(set.is_empty());
    /// assert!(!set.permits(Interaction::Read, "Patient"));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets whether the token carries a patient context.
    ///
    /// Pass `true` only when the token (or introspection response) has a usable `patient`
    /// value (see [`SmartClaims::patient`](crate::SmartClaims::patient): an empty or
    /// whitespace-only value is no patient context). Without it, `patient/` scopes grant
    /// nothing.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, ScopeSet};
    ///
    /// let set = ScopeSet::parse("patient/Observation.rs");
    /// assert!(!set.permits(Interaction::Read, "Observation"));
    /// assert!(set.with_patient_context(true).permits(Interaction::Read, "Observation"));
    /// ```
    #[must_use]
    pub fn with_patient_context(mut self, has_patient_context: bool) -> Self {
        self.has_patient_context = has_patient_context;
        self
    }

    /// Whether `patient/` scopes are honoured by permission checks.
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// let set = ScopeSet::parse("patient/Observation.rs");
    /// assert!(!set.has_patient_context()); // the default: fail closed
    /// assert!(set.with_patient_context(true).has_patient_context());
    /// ```
    #[must_use]
    pub fn has_patient_context(&self) -> bool {
        self.has_patient_context
    }

    /// Every scope string as it appeared in the claim, in order, duplicates included.
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// let set = ScopeSet::parse("openid openid patient/Observation.dus");
    /// assert_eq!(set.raw(), ["openid", "openid", "patient/Observation.dus"]);
    /// ```
    #[must_use]
    pub fn raw(&self) -> &[String] {
        &self.raw
    }

    /// The recognised scopes, in first-seen order, without duplicates.
    ///
    /// ```
    /// use smart_auth::scopes::{Scope, ScopeSet};
    ///
    /// let set = ScopeSet::parse("openid openid launch patient/Observation.dus");
    /// // Duplicates are dropped, and so is the malformed scope.
    /// assert_eq!(set.scopes(), [Scope::OpenId, Scope::Launch]);
    /// ```
    #[must_use]
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The scopes that looked like SMART resource or launch scopes but were malformed.
    ///
    /// ```
    /// use smart_auth::scopes::{RejectReason, ScopeSet};
    ///
    /// let set = ScopeSet::parse("openid patient/Observation.dus");
    /// assert_eq!(set.rejected().len(), 1);
    /// assert_eq!(set.rejected()[0].raw, "patient/Observation.dus");
    /// assert_eq!(set.rejected()[0].reason, RejectReason::InvalidPermissions);
    /// ```
    #[must_use]
    pub fn rejected(&self) -> &[RejectedScope] {
        &self.rejected
    }

    /// The resource scopes (`patient/`, `user/`, `system/`) of the set.
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// let set = ScopeSet::parse("openid system/Patient.rs launch user/*.read");
    /// let written: Vec<String> = set.resource_scopes().map(ToString::to_string).collect();
    /// assert_eq!(written, ["system/Patient.rs", "user/*.rs"]); // v1 `read` shown as `rs`
    /// ```
    pub fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> {
        self.scopes.iter().filter_map(|scope| match scope {
            Scope::Resource(resource) => Some(resource),
            _ => None,
        })
    }

    /// Whether the set holds this exact scope (compared after parsing).
    ///
    /// ```
    /// use smart_auth::scopes::{Scope, ScopeSet};
    ///
    /// let set = ScopeSet::parse("user/Observation.rs openid");
    /// assert!(set.contains(&Scope::OpenId));
    /// assert!(set.contains(&"user/Observation.rs".parse()?));
    /// // An exact match, not a permission check: `rs` holds `r`, yet is another scope.
    /// assert!(!set.contains(&"user/Observation.r".parse()?));
    /// # Ok::<(), smart_auth::scopes::RejectedScope>(())
    /// ```
    #[must_use]
    pub fn contains(&self, scope: &Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Whether the claim held no scope at all (neither valid nor rejected).
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// assert!(ScopeSet::parse("").is_empty());
    /// // A malformed scope grants nothing, but the claim was not empty.
    /// assert!(!ScopeSet::parse("patient/Observation.").is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}
