//! Deciding what a [`ScopeSet`] allows.
//!
//! Each FHIR REST [`Interaction`] needs one SMART permission letter on the resource type:
//!
//! | letter | interactions |
//! |---|---|
//! | `r` | read, vread, instance history |
//! | `s` | type search, system search, type history, system history |
//! | `c` | create |
//! | `u` | update (including upsert), patch |
//! | `d` | delete |
//!
//! Scopes combine as a union, `*` covers every type, and write never implies read.
//! System-level interactions ask for the type `*`, which only a `*` scope covers.
//!
//! Granular scopes (`?param=value`) only ever restrict. They never count for
//! [`ScopeSet::permits`] (which answers for the whole type), and they grant only `r` and `s`:
//! inside their filter, through [`ScopeSet::constraints`]. A `c`, `u` or `d` letter in a
//! granular scope grants nothing.

use std::collections::{HashMap, HashSet};

use super::{Context, Permissions, ResourceScope, ResourceType, ScopeSet};
use crate::form::{is_parameter, lenient_parameter_name, percent_decode_strict};

/// A FHIR REST interaction that SMART permission letters cover. New interactions may be added.
///
/// ```
/// use smart_auth::scopes::{Interaction, ScopeSet};
///
/// let set = ScopeSet::parse("system/Observation.rs");
/// assert!(set.permits(Interaction::Read, "Observation"));
/// assert!(set.permits(Interaction::HistoryInstance, "Observation")); // `r` covers it
/// assert!(!set.permits(Interaction::Create, "Observation"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Interaction {
    /// `GET [type]/[id]`.
    Read,
    /// `GET [type]/[id]/_history/[vid]`.
    Vread,
    /// `GET [type]/[id]/_history`.
    HistoryInstance,
    /// `GET [type]/_history`.
    HistoryType,
    /// `GET /_history`.
    HistorySystem,
    /// `POST [type]`.
    Create,
    /// `PUT [type]/[id]`, including update-as-create.
    Update,
    /// `PATCH [type]/[id]`.
    Patch,
    /// `DELETE [type]/[id]`.
    Delete,
    /// `GET [type]?...` or `POST [type]/_search`.
    SearchType,
    /// `GET [base]?...` or `POST /_search`.
    SearchSystem,
}

impl Interaction {
    /// Every interaction.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, ScopeSet};
    ///
    /// // `system/*.cruds` allows every interaction on every type.
    /// let set = ScopeSet::parse("system/*.cruds");
    /// assert!(Interaction::ALL.iter().all(|&interaction| set.permits(interaction, "*")));
    /// ```
    pub const ALL: [Self; 11] = [
        Self::Read,
        Self::Vread,
        Self::HistoryInstance,
        Self::HistoryType,
        Self::HistorySystem,
        Self::Create,
        Self::Update,
        Self::Patch,
        Self::Delete,
        Self::SearchType,
        Self::SearchSystem,
    ];

    /// The single SMART permission letter this interaction needs. Scope enforcement asks
    /// more of some requests: a patch also needs `r` on its type (its answer and a JSON
    /// Patch `test` read the resource; see
    /// [`FhirRequest::access`](super::FhirRequest::access)), a conditional write `s`.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Permissions};
    ///
    /// assert_eq!(Interaction::Read.required_permission(), Permissions::READ);
    /// assert_eq!(Interaction::SearchType.required_permission(), Permissions::SEARCH);
    /// assert_eq!(Interaction::Patch.required_permission(), Permissions::UPDATE);
    /// ```
    #[must_use]
    pub const fn required_permission(self) -> Permissions {
        match self {
            Self::Read | Self::Vread | Self::HistoryInstance => Permissions::READ,
            Self::HistoryType | Self::HistorySystem | Self::SearchType | Self::SearchSystem => {
                Permissions::SEARCH
            }
            Self::Create => Permissions::CREATE,
            Self::Update | Self::Patch => Permissions::UPDATE,
            Self::Delete => Permissions::DELETE,
        }
    }

    /// The FHIR code of the interaction, e.g. `search-type`.
    ///
    /// ```
    /// use smart_auth::scopes::Interaction;
    ///
    /// assert_eq!(Interaction::SearchType.code(), "search-type");
    /// assert_eq!(Interaction::HistoryInstance.code(), "history-instance");
    /// ```
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Vread => "vread",
            Self::HistoryInstance => "history-instance",
            Self::HistoryType => "history-type",
            Self::HistorySystem => "history-system",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::SearchType => "search-type",
            Self::SearchSystem => "search-system",
        }
    }
}

/// One permission a request needs: an interaction on a resource type.
///
/// ```
/// use smart_auth::scopes::{Interaction, Requirement, ResourceType, ScopeSet};
///
/// let requirement = Requirement::new(Interaction::SearchType, ResourceType::Named("Observation".into()));
/// assert!(ScopeSet::parse("user/Observation.s").permits_requirement(&requirement));
/// assert!(!ScopeSet::parse("user/Observation.r").permits_requirement(&requirement));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The interaction, which determines the permission letter.
    pub interaction: Interaction,
    /// The type it applies to; [`ResourceType::Any`] means every type (system level).
    pub resource_type: ResourceType,
}

impl Requirement {
    /// Builds a requirement.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Requirement, ResourceType};
    ///
    /// let system_search = Requirement::new(Interaction::SearchSystem, ResourceType::Any);
    /// assert_eq!(system_search.resource_type.as_str(), "*");
    /// ```
    #[must_use]
    pub fn new(interaction: Interaction, resource_type: ResourceType) -> Self {
        Self {
            interaction,
            resource_type,
        }
    }

    /// The smallest v2 scope in `context` that meets this requirement, e.g.
    /// `system/Observation.s`. See [`ScopeSet::insufficient_scope_hint`].
    ///
    /// ```
    /// use smart_auth::scopes::{Context, Interaction, Requirement, ResourceType};
    ///
    /// let requirement = Requirement::new(Interaction::Update, ResourceType::Named("Patient".into()));
    /// assert_eq!(requirement.hint(Context::System), "system/Patient.u");
    /// ```
    #[must_use]
    pub fn hint(&self, context: Context) -> String {
        ScopeSet::insufficient_scope_hint(self.interaction, self.resource_type.as_str(), context)
    }
}

/// Which resources of one type the granted scopes cover, for one interaction.
///
/// Several granular scopes on the same type are OR'ed; the parameters inside one scope are
/// AND'ed. A scope without a query removes all filtering.
///
/// ```
/// use smart_auth::scopes::{ScopeSet, SearchConstraints};
///
/// let set = ScopeSet::parse("user/Observation.rs?category=laboratory user/Condition.rs");
/// assert_eq!(
///     set.search_constraints(None, "Observation"),
///     SearchConstraints::AnyOf(vec![vec![("category".into(), "laboratory".into())]]),
/// );
/// assert_eq!(set.search_constraints(None, "Condition"), SearchConstraints::Unconstrained);
/// assert_eq!(set.search_constraints(None, "Patient"), SearchConstraints::Denied);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchConstraints {
    /// No scope grants the interaction on this type.
    Denied,
    /// A scope grants it without any filter.
    Unconstrained,
    /// Only resources that match at least one of these parameter sets are covered. Each inner
    /// list holds `(parameter, value)` pairs that must all hold. Duplicated sets are removed.
    AnyOf(Vec<Vec<(String, String)>>),
}

impl SearchConstraints {
    /// Whether nothing is granted.
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// let set = ScopeSet::parse("user/Observation.rs");
    /// assert!(set.search_constraints(None, "Patient").is_denied());
    /// assert!(!set.search_constraints(None, "Observation").is_denied());
    /// ```
    #[must_use]
    pub fn is_denied(&self) -> bool {
        matches!(self, Self::Denied)
    }

    /// Whether everything of the type is granted.
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// let set = ScopeSet::parse("user/Observation.rs user/Condition.rs?clinical-status=active");
    /// assert!(set.search_constraints(None, "Observation").is_unconstrained());
    /// assert!(!set.search_constraints(None, "Condition").is_unconstrained());
    /// ```
    #[must_use]
    pub fn is_unconstrained(&self) -> bool {
        matches!(self, Self::Unconstrained)
    }

    /// What either grants: the union (`Unconstrained` if either is, the parameter sets of
    /// both without repeats).
    ///
    /// ```
    /// use smart_auth::scopes::SearchConstraints;
    /// let lab = SearchConstraints::AnyOf(vec![vec![("category".into(), "laboratory".into())]]);
    /// assert_eq!(SearchConstraints::Denied.or(lab.clone()), lab);
    /// assert!(lab.or(SearchConstraints::Unconstrained).is_unconstrained());
    /// ```
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        match (self, other) {
            (Self::Unconstrained, _) | (_, Self::Unconstrained) => Self::Unconstrained,
            (Self::Denied, other) | (other, Self::Denied) => other,
            (Self::AnyOf(mut sets), Self::AnyOf(more)) => {
                // A hash set keeps this linear however many granular scopes there are.
                let mut seen: HashSet<Vec<(String, String)>> = sets.iter().cloned().collect();
                sets.extend(more.into_iter().filter(|set| seen.insert(set.clone())));
                Self::AnyOf(sets)
            }
        }
    }

    /// Checks one resource (for example a read result, or an entry in search results) against
    /// the constraints.
    ///
    /// `lookup` receives a search parameter name as written in the scope (for example
    /// `category`, or `code:in` when the scope uses a modifier) and returns the values the
    /// resource has for that parameter. A parameter set matches when, for each of its
    /// `(parameter, value)` pairs, `lookup(parameter)` yields a value equal to `value`.
    ///
    /// The comparison is exact string equality, so the caller must return values in the form
    /// the scope uses. For token parameters that is usually `system|code`
    /// (e.g. `http://terminology.hl7.org/CodeSystem/observation-category|laboratory`), exactly
    /// as the caller would index the resource for search. Modifiers, chains and comma-separated
    /// alternatives are not interpreted: a caller that cannot evaluate such a parameter should
    /// return no values, which fails closed.
    ///
    /// [`SearchConstraints::Denied`] never matches and
    /// [`SearchConstraints::Unconstrained`] always matches.
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// let set = ScopeSet::parse("user/Observation.rs?category=laboratory");
    /// let constraints = set.read_constraints(None, "Observation");
    ///
    /// // The values an Observation has for each search parameter, as the server indexes them.
    /// let lab_result = |name: &str| match name {
    ///     "category" => vec!["laboratory"],
    ///     _ => vec![],
    /// };
    /// let vital_sign = |name: &str| match name {
    ///     "category" => vec!["vital-signs"],
    ///     _ => vec![],
    /// };
    /// assert!(constraints.matches(lab_result));
    /// assert!(!constraints.matches(vital_sign));
    /// ```
    pub fn matches<F, I, V>(&self, mut lookup: F) -> bool
    where
        F: FnMut(&str) -> I,
        I: IntoIterator<Item = V>,
        V: AsRef<str>,
    {
        match self {
            Self::Denied => false,
            Self::Unconstrained => true,
            Self::AnyOf(sets) => sets.iter().any(|set| {
                set.iter().all(|(name, wanted)| {
                    lookup(name)
                        .into_iter()
                        .any(|value| value.as_ref() == wanted)
                })
            }),
        }
    }
}

impl ScopeSet {
    /// Whether some scope, in any context, grants `interaction` on the whole of
    /// `resource_type`, with no filter.
    ///
    /// `resource_type` is a type name such as `Observation`, or `*` for "every type", which
    /// only a `*` scope covers (use it for system-level search and history).
    ///
    /// `patient/` scopes count only when the set has a patient context
    /// ([`ScopeSet::with_patient_context`]). When a `patient/` scope would have granted the
    /// check but was skipped for that reason, one debug event is logged.
    ///
    /// Granular scopes (`patient/Observation.rs?category=laboratory`) never count here: they
    /// allow only the resources inside their filter, never the whole type. A caller that
    /// applies the filter asks [`ScopeSet::constraints`] (or [`ScopeSet::search_constraints`],
    /// [`ScopeSet::read_constraints`], [`ScopeSet::permits_search_query`]) instead.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, ScopeSet};
    ///
    /// let set = ScopeSet::parse("system/Observation.cruds?category=laboratory");
    /// assert!(!set.permits(Interaction::SearchType, "Observation"));
    /// assert!(!set.permits(Interaction::Create, "Observation"));
    /// assert!(!set.search_constraints(None, "Observation").is_denied());
    /// ```
    #[must_use]
    pub fn permits(&self, interaction: Interaction, resource_type: &str) -> bool {
        self.grants_whole_type(None, interaction, resource_type)
    }

    /// Like [`ScopeSet::permits`], counting only scopes of one `context`.
    ///
    /// ```
    /// use smart_auth::scopes::{Context, Interaction, ScopeSet};
    ///
    /// let set = ScopeSet::parse("user/Observation.rs system/Patient.r");
    /// assert!(set.permits_in(Context::User, Interaction::Read, "Observation"));
    /// assert!(!set.permits_in(Context::System, Interaction::Read, "Observation"));
    /// assert!(set.permits_in(Context::System, Interaction::Read, "Patient"));
    /// ```
    #[must_use]
    pub fn permits_in(
        &self,
        context: Context,
        interaction: Interaction,
        resource_type: &str,
    ) -> bool {
        self.grants_whole_type(Some(context), interaction, resource_type)
    }

    /// Like [`ScopeSet::permits`] for a [`Requirement`].
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Requirement, ResourceType, ScopeSet};
    ///
    /// let set = ScopeSet::parse("system/*.s");
    /// // System-level search asks for the type `*`, which this `*` scope covers.
    /// assert!(set.permits_requirement(&Requirement::new(Interaction::SearchSystem, ResourceType::Any)));
    /// ```
    #[must_use]
    pub fn permits_requirement(&self, requirement: &Requirement) -> bool {
        self.permits(requirement.interaction, requirement.resource_type.as_str())
    }

    /// Whether what a type-level search on `resource_type` with this raw query string returns
    /// of `resource_type` stays inside what the scopes grant: either [`ScopeSet::permits`]
    /// allows the search, or the query itself applies the filter of one granted granular
    /// scope. The other types an `_include` or `_revinclude` adds are not checked here: a
    /// caller that gates a search with this alone must require whole-type grants on them
    /// too, as [`ScopeEnforcement`](crate::ScopeEnforcement) does.
    ///
    /// The query applies a filter when it carries every `(parameter, value)` pair of that
    /// filter, with the same name and exactly the same value, and no other value for those
    /// names, counted ignoring ASCII case and surrounding spaces as a lenient server counts
    /// them (`category=laboratory&category=vital-signs`, or `CATEGORY=vital-signs` beside
    /// it, would be read by some servers as the second alone). Other parameters only narrow
    /// a FHIR search, so they may be present; but a query that could bring back resources
    /// outside the filter does not count: one with `_contained`, `_query` or `_graph` in
    /// any case, an `_include` or `_revinclude` that may add resources of the searched type
    /// (naming it in any case, `*` as the type or the `_include`'s parameter, no target type
    /// but for a parameter with one possible target, a type not written as FHIR writes
    /// type names, any modifier such as `:iterate`, an `_include` value of more than three
    /// `:`-separated parts, which any comma list of targeted includes is), or a parameter
    /// name holding a control character or a character beyond ASCII. An `_include` or
    /// `_revinclude` that adds another type (`_revinclude=Provenance:target`,
    /// `_include=Observation:subject:Patient`) leaves the filter on what the search
    /// returns of its own type; what it adds needs grants of its own, which
    /// [`ScopeEnforcement`](crate::ScopeEnforcement) requires. A query that holds any pair
    /// whose text is ambiguous to decode (a `+`, a `;`, a bad `%` escape, bytes that are
    /// not UTF-8) carries no filter at all: the whole query is refused, not only that
    /// pair.
    ///
    /// The filter of a scope on every type (`system/*.rs?category=laboratory`) counts for a
    /// search (here, and in [`ScopeSet::constraints`] and
    /// [`ScopeSet::search_constraints`] for the handler's own filtering) only when it uses
    /// parameters every resource type has (`_id`, `_lastUpdated`, `_tag`,
    /// `_profile`, `_security`, `_source`): on a type without the parameter (`Patient`
    /// has no `category`), a lenient server (`Prefer: handling=lenient`, the default of
    /// several) ignores it and answers the search unfiltered.
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// let set = ScopeSet::parse("system/Observation.rs?category=laboratory");
    /// assert!(set.permits_search_query("Observation", Some("category=laboratory&code=x")));
    /// assert!(!set.permits_search_query("Observation", Some("code=x")));
    /// assert!(!set.permits_search_query("Observation", None));
    ///
    /// // A filter naming a parameter twice is left to the handler.
    /// let repeated = ScopeSet::parse("system/Observation.rs?category=lab&category=vital-signs");
    /// assert!(!repeated.permits_search_query("Observation", Some("category=lab&category=vital-signs")));
    ///
    /// // What `_revinclude` adds of another type leaves the filter (the Provenances need a
    /// // grant of their own); HAPI's `*` parameter may add anything.
    /// assert!(set.permits_search_query("Observation", Some("category=laboratory&_revinclude=Provenance:target")));
    /// assert!(!set.permits_search_query("Observation", Some("category=laboratory&_include=Observation:*:Patient")));
    ///
    /// let every_type = ScopeSet::parse("system/*.rs?category=laboratory system/*.rs?_tag=t");
    /// assert!(!every_type.permits_search_query("Patient", Some("category=laboratory")));
    /// assert!(every_type.permits_search_query("Patient", Some("_tag=t")));
    /// ```
    #[must_use]
    pub fn permits_search_query(&self, resource_type: &str, query: Option<&str>) -> bool {
        self.permits_search_criteria(resource_type, &SearchCriteria::new(query))
    }

    /// [`ScopeSet::permits_search_query`] for criteria read at most once however many
    /// types they are checked for: a query of 60 KiB checked for each of 500 types in
    /// `_type` is split and decoded once, and each check then costs the size of the
    /// filters, not of the query.
    pub(crate) fn permits_search_criteria(
        &self,
        resource_type: &str,
        criteria: &SearchCriteria<'_>,
    ) -> bool {
        if self.permits(Interaction::SearchType, resource_type) {
            return true;
        }
        if criteria.text.is_none() {
            return false;
        }
        let SearchConstraints::AnyOf(sets) = self.search_constraints(None, resource_type) else {
            return false;
        };
        let Some(query) = criteria.read(self) else {
            return false;
        };
        if query
            .added_types
            .contains(&resource_type.to_ascii_lowercase())
        {
            return false;
        }
        sets.iter().any(|set| {
            // A filter that names one parameter twice (`category=a&category=b`, FHIR's AND)
            // cannot be carried safely: a server that keeps one of the repeats searches
            // outside it. It is left to the handler.
            let mut names = HashSet::new();
            if !set.iter().all(|(name, _)| names.insert(lenient_name(name))) {
                return false;
            }
            // Every pair of the filter is in the query, and a filtered parameter carries no
            // other value besides (as many different values in the query as in the filter):
            // FHIR ANDs repeats, but a server that keeps one of them would search outside
            // the filter.
            let carries_all = set.iter().all(|(name, value)| {
                query
                    .exact
                    .get(name.as_str())
                    .is_some_and(|values| values.contains(value.as_str()))
            });
            carries_all && {
                let mut filter_values: HashMap<String, HashSet<&str>> = HashMap::new();
                for (name, value) in set.iter() {
                    filter_values
                        .entry(lenient_name(name))
                        .or_default()
                        .insert(value);
                }
                filter_values.iter().all(|(name, values)| {
                    query.lenient.get(name).is_some_and(|carried| {
                        carried.len() == values.len()
                            && values.iter().all(|value| carried.contains(*value))
                    })
                })
            }
        })
    }

    /// The granular filters that apply to `interaction` on `resource_type`.
    ///
    /// `context` limits the check to one context; `None` takes the union over all contexts.
    /// The result does not say which context a filter came from; `patient/` grants are always
    /// further limited to the patient's compartment, which the caller enforces. When scopes of
    /// several contexts are granted, call this once per context to keep them apart.
    ///
    /// ```
    /// use smart_auth::scopes::{Context, Interaction, ScopeSet, SearchConstraints};
    ///
    /// let set = ScopeSet::parse("patient/Observation.rs?category=vital-signs system/Observation.c")
    ///     .with_patient_context(true);
    /// let only_patient = set.constraints(Some(Context::Patient), Interaction::Read, "Observation");
    /// assert_eq!(
    ///     only_patient,
    ///     SearchConstraints::AnyOf(vec![vec![("category".into(), "vital-signs".into())]]),
    /// );
    /// // The `c` grant of the system scope is whole-type.
    /// assert!(set.constraints(None, Interaction::Create, "Observation").is_unconstrained());
    /// ```
    #[must_use]
    pub fn constraints(
        &self,
        context: Option<Context>,
        interaction: Interaction,
        resource_type: &str,
    ) -> SearchConstraints {
        if self.grants_whole_type(context, interaction, resource_type) {
            return SearchConstraints::Unconstrained;
        }
        let mut sets: Vec<Vec<(String, String)>> = Vec::new();
        // A hash set keeps this linear however many granular scopes the token holds.
        let mut seen: HashSet<&[(String, String)]> = HashSet::new();
        for scope in self.granting_scopes(context, interaction, resource_type) {
            if seen.insert(&scope.query) {
                sets.push(scope.query.clone());
            }
        }
        if sets.is_empty() {
            SearchConstraints::Denied
        } else {
            SearchConstraints::AnyOf(sets)
        }
    }

    /// Whether some scope grants `interaction` on `resource_type`, whole or through a
    /// filter: [`ScopeSet::constraints`] is not [`SearchConstraints::Denied`], without
    /// building the filters.
    pub(crate) fn grants_some(
        &self,
        context: Option<Context>,
        interaction: Interaction,
        resource_type: &str,
    ) -> bool {
        self.granting_scopes(context, interaction, resource_type)
            .next()
            .is_some()
    }

    /// The filters for a type-level search (`s`) on `resource_type`. See
    /// [`ScopeSet::constraints`].
    ///
    /// A server may either add the filters to the search or reject searches that could return
    /// other resources; it must answer searches inside the filters in full.
    ///
    /// ```
    /// use smart_auth::scopes::{ScopeSet, SearchConstraints};
    ///
    /// let set = ScopeSet::parse(
    ///     "user/Observation.rs?category=laboratory user/Observation.rs?category=vital-signs",
    /// );
    /// // Two granular scopes are OR'ed: a search may use either filter.
    /// let SearchConstraints::AnyOf(sets) = set.search_constraints(None, "Observation") else {
    ///     panic!("granular constraints");
    /// };
    /// assert_eq!(sets.len(), 2);
    /// ```
    #[must_use]
    pub fn search_constraints(
        &self,
        context: Option<Context>,
        resource_type: &str,
    ) -> SearchConstraints {
        self.constraints(context, Interaction::SearchType, resource_type)
    }

    /// The filters for reading (`r`) a resource of `resource_type`: a read result that does
    /// not [match](SearchConstraints::matches) must not be returned. See
    /// [`ScopeSet::constraints`].
    ///
    /// ```
    /// use smart_auth::scopes::ScopeSet;
    ///
    /// // Search (`s`) without read (`r`): a resource may be found, not read by id.
    /// let set = ScopeSet::parse("user/Observation.s");
    /// assert!(set.read_constraints(None, "Observation").is_denied());
    /// assert!(set.search_constraints(None, "Observation").is_unconstrained());
    /// ```
    #[must_use]
    pub fn read_constraints(
        &self,
        context: Option<Context>,
        resource_type: &str,
    ) -> SearchConstraints {
        self.constraints(context, Interaction::Read, resource_type)
    }

    /// The smallest v2 scope that would allow `interaction` on `resource_type` in `context`,
    /// for the `scope` attribute of a 403 `insufficient_scope` challenge.
    ///
    /// Example: `(SearchType, "Observation", System)` gives `system/Observation.s`. A
    /// `resource_type` that is neither `*` nor a valid type name is replaced by `*`, so the
    /// result is always a well-formed scope and safe to put in a header.
    ///
    /// ```
    /// use smart_auth::scopes::{Context, Interaction, ScopeSet};
    ///
    /// let hint = ScopeSet::insufficient_scope_hint(Interaction::SearchType, "Observation", Context::System);
    /// assert_eq!(hint, "system/Observation.s");
    /// // A type name that is not one becomes `*`, so the hint is always a valid scope.
    /// let hint = ScopeSet::insufficient_scope_hint(Interaction::Read, "bad\"type", Context::User);
    /// assert_eq!(hint, "user/*.r");
    /// ```
    #[must_use]
    pub fn insufficient_scope_hint(
        interaction: Interaction,
        resource_type: &str,
        context: Context,
    ) -> String {
        let resource = ResourceType::parse(resource_type).unwrap_or(ResourceType::Any);
        format!("{context}/{resource}.{}", interaction.required_permission())
    }

    /// Whether a scope without a filter grants `interaction` on all of `resource_type`.
    fn grants_whole_type(
        &self,
        context: Option<Context>,
        interaction: Interaction,
        resource_type: &str,
    ) -> bool {
        self.granting_scopes(context, interaction, resource_type)
            .any(|scope| !scope.is_granular())
    }

    /// The resource scopes that grant `interaction` on `resource_type`, granular ones
    /// included, in `context` (all contexts for `None`).
    ///
    /// A granular scope only counts for `r` and `s` interactions: its filter says which
    /// resources may be read or found, and a `c`, `u` or `d` letter in it grants nothing (the
    /// layer cannot see whether a written resource would match the filter). `patient/` scopes
    /// count only with a patient context; skipping one for that reason is logged once.
    fn granting_scopes<'a>(
        &'a self,
        context: Option<Context>,
        interaction: Interaction,
        resource_type: &'a str,
    ) -> impl Iterator<Item = &'a ResourceScope> + 'a {
        let needed = interaction.required_permission();
        let filter_applies =
            needed.contains(Permissions::READ) || needed.contains(Permissions::SEARCH);
        let searches = needed.contains(Permissions::SEARCH);
        let mut logged = false;
        self.resource_scopes().filter(move |scope| {
            let applies = context.is_none_or(|wanted| wanted == scope.context)
                && scope.permissions.contains(needed)
                && scope.resource.covers(resource_type)
                && (filter_applies || !scope.is_granular())
                && !(searches && filters_every_type_by_its_own_parameters(scope));
            if applies && scope.context == Context::Patient && !self.has_patient_context() {
                if !logged {
                    logged = true;
                    tracing::debug!(
                        interaction = interaction.code(),
                        "ignoring patient/ scopes: the token has no patient context"
                    );
                }
                return false;
            }
            applies
        })
    }
}

/// Whether `scope` is a granular scope on every type (`system/*.rs?category=…`) whose
/// filter uses a parameter some type lacks: for a search it filters nothing on such a type
/// (a lenient server ignores the parameter and answers the whole type), and the layer knows
/// no type's own parameters, so it counts for no search. Reads are not affected: a resource
/// without the parameter does not match the filter.
fn filters_every_type_by_its_own_parameters(scope: &ResourceScope) -> bool {
    scope.resource == ResourceType::Any
        && scope.is_granular()
        && !scope
            .query
            .iter()
            .all(|(name, _)| is_parameter_of_every_type(name))
}

/// Whether a filter's parameter name (before any `:modifier`) is a search parameter of
/// every resource type (FHIR R4 and R5, `Resource`'s own).
fn is_parameter_of_every_type(name: &str) -> bool {
    let base = name.split_once(':').map_or(name, |(base, _)| base);
    matches!(
        base,
        "_id" | "_lastUpdated" | "_tag" | "_profile" | "_security" | "_source"
    )
}

/// What a parameter adds to a search's results that a filter would not match.
#[derive(Debug, PartialEq, Eq)]
enum Widening<'a> {
    /// Nothing: it only narrows.
    None,
    /// Resources of these types (an `_include` or `_revinclude` naming the type it adds):
    /// the filter no longer holds for a search of one of them.
    Types(Vec<&'a str>),
    /// Anything, or no one can tell: `_contained`, `_query`, `_graph`, an `_include` or
    /// `_revinclude` with a modifier (`:iterate` follows links from what it added), `*`
    /// as the type or as the `_include`'s parameter, no type named (for an `_include`
    /// whose parameter can point at several types), and a name with a control character
    /// or a character beyond ASCII.
    All,
}

/// What the parameter `name=value` adds to a search (names matched as a lenient server
/// matches them, before any `:modifier`). `_revinclude=Provenance:target` adds
/// Provenances and `_include=Observation:subject:Patient` Patients: a filter on the
/// searched type still holds for what the search itself returns (and the types added
/// need whole-type grants of their own, which enforcement requires); an `_include`
/// without a target type (`Observation:has-member`) may add the searched type itself.
fn widening<'a>(name: &str, value: &'a str) -> Widening<'a> {
    let (base, modifier) = name
        .split_once(':')
        .map_or((name, None), |(base, modifier)| (base, Some(modifier)));
    if lenient_parameter_name(base).is_none()
        || ["_contained", "_query", "_graph"]
            .iter()
            .any(|parameter| is_parameter(base, parameter))
    {
        return Widening::All;
    }
    // The type each comma-separated item adds: `_revinclude`'s source type (first part),
    // `_include`'s target type (third part).
    let revinclude = if is_parameter(base, "_revinclude") {
        true
    } else if is_parameter(base, "_include") {
        false
    } else {
        return Widening::None;
    };
    if modifier.is_some() || (!revinclude && include_reaches_every_type(value)) {
        return Widening::All;
    }
    let mut types = Vec::new();
    for item in value.split(',') {
        let added_type = if revinclude {
            item.split(':').next()
        } else {
            include_target(item)
        };
        match added_type {
            Some(name) if is_resource_type_name(name) => types.push(name),
            _ => return Widening::All,
        }
    }
    Widening::Types(types)
}

/// Whether an `_include` value reaches every type whatever its items name: one of more
/// than three `:`-separated parts (`Observation:has-member:Patient:x`, or a comma list a
/// server reads as one value), where IBM's server takes no target type and includes
/// every target of the parameter.
pub(crate) fn include_reaches_every_type(value: &str) -> bool {
    value.split(':').count() > 3
}

/// The type one `_include` item (`Source:parameter[:Target]`) adds: its target type, or
/// without one the one type the parameter can point at ([`single_target_type`]); `None`
/// when it may add any type (no such type, or HAPI's `*` parameter, as in
/// `Observation:*:Patient`, which includes every reference whatever the target says).
pub(crate) fn include_target(item: &str) -> Option<&str> {
    let mut parts = item.split(':');
    let (source, parameter, target) = (parts.next(), parts.next(), parts.next());
    if parameter == Some("*") {
        return None;
    }
    target.or_else(|| single_target_type(source?, parameter?))
}

/// The one type a reference search parameter of `source` can point at, for the parameters
/// where FHIR (R4, R4B and R5 alike) allows only one, so that an `_include` without a target
/// type (`MedicationRequest:medication`, as US Core's searches write it) needs `r` on that
/// type rather than on every type. Names are compared exactly, as FHIR writes them.
/// `patient` is not listed: R4's shared `patient` parameter reads DeviceUseStatement's
/// `subject` unfiltered, which may be a Group, and servers that index the parameter by
/// its declared targets (Patient and Group) include Groups for any type.
pub(crate) fn single_target_type(source: &str, parameter: &str) -> Option<&'static str> {
    match (source, parameter) {
        (
            "MedicationRequest"
            | "MedicationDispense"
            | "MedicationAdministration"
            | "MedicationStatement",
            "medication",
        ) => Some("Medication"),
        ("PractitionerRole", "practitioner") => Some("Practitioner"),
        ("PractitionerRole", "organization") => Some("Organization"),
        ("PractitionerRole", "location") => Some("Location"),
        ("PractitionerRole", "endpoint") => Some("Endpoint"),
        ("PractitionerRole", "service") => Some("HealthcareService"),
        _ => None,
    }
}

/// A FHIR resource type name as written: an upper-case ASCII letter, then ASCII letters.
fn is_resource_type_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.bytes().all(|byte| byte.is_ascii_alphabetic())
}

/// A parameter name as a lenient server matches it ([`lenient_parameter_name`]), in ASCII
/// lower case; [`widening`] has refused the names it cannot read.
fn lenient_name(name: &str) -> String {
    lenient_parameter_name(name)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// Search criteria (a raw query string) as granular filters are matched against them,
/// read the first time a check needs them and kept for the next (checks of one request,
/// against one scope set).
pub(crate) struct SearchCriteria<'a> {
    text: Option<&'a str>,
    /// Boxed: most checks never read the query, and the cell stays one word.
    read: std::cell::OnceCell<Option<Box<FilterQuery>>>,
}

/// The pairs of a query that can carry a filter, by name (only the names some filter of
/// the scope set uses: other parameters only narrow): `None` from [`SearchCriteria::read`]
/// is a query that carries none (ambiguous to decode, or with a parameter that widens the
/// results).
struct FilterQuery {
    /// Each decoded name as written, with its decoded values.
    exact: HashMap<String, HashSet<String>>,
    /// Each name as a lenient server matches it (`CATEGORY` and ` category` are
    /// `category` to it), with the different values the query gives it.
    lenient: HashMap<String, HashSet<String>>,
    /// The types `_include` and `_revinclude` add, in ASCII lower case (as a lenient
    /// server compares type names): a search of one of them carries no filter.
    added_types: HashSet<String>,
}

impl<'a> SearchCriteria<'a> {
    pub(crate) fn new(text: Option<&'a str>) -> Self {
        Self {
            text,
            read: std::cell::OnceCell::new(),
        }
    }

    /// The query as `scopes`' filters are matched against it: read on the first call,
    /// with the names of every filter in `scopes` (the same set for every call).
    fn read(&self, scopes: &ScopeSet) -> Option<&FilterQuery> {
        self.read
            .get_or_init(|| {
                let pairs = strict_query_pairs(self.text?)?;
                let mut added_types = HashSet::new();
                for (name, value) in &pairs {
                    match widening(name, value) {
                        Widening::None => {}
                        Widening::Types(types) => {
                            added_types.extend(types.into_iter().map(str::to_ascii_lowercase));
                        }
                        Widening::All => return None,
                    }
                }
                let filter_names: HashSet<String> = scopes
                    .resource_scopes()
                    .flat_map(|scope| scope.query.iter())
                    .map(|(name, _)| lenient_name(name))
                    .collect();
                let mut query = FilterQuery {
                    exact: HashMap::new(),
                    lenient: HashMap::new(),
                    added_types,
                };
                for (name, value) in pairs {
                    let lenient = lenient_name(&name);
                    if !filter_names.contains(&lenient) {
                        continue;
                    }
                    query
                        .lenient
                        .entry(lenient)
                        .or_default()
                        .insert(value.clone());
                    query.exact.entry(name).or_default().insert(value);
                }
                Some(Box::new(query))
            })
            .as_deref()
    }
}

/// Splits a raw query string into decoded pairs, or `None` when some pair is ambiguous: a `+`
/// (a space to some decoders, a plus to others), a `;` (a separator to some servers, part of
/// the value to others), a bad `%` escape, or bytes that are not UTF-8. Empty pieces
/// (`a=1&&b=2`) are skipped.
fn strict_query_pairs(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            if pair.contains(['+', ';']) {
                return None;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode_strict(name)?, percent_decode_strict(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `grants_some` answers as `constraints(..).is_denied()` does, without building the
    /// filters: whole-type and granular grants, every context, with and without a patient.
    #[test]
    fn grants_some_agrees_with_constraints() {
        let sets = [
            "system/Observation.rs",
            "patient/Observation.rs?category=laboratory",
            "user/Observation.cruds?category=laboratory system/Patient.r",
            "patient/*.read user/Encounter.write",
            "system/*.c",
            "",
        ];
        let interactions = [
            Interaction::Read,
            Interaction::SearchType,
            Interaction::Create,
            Interaction::Update,
            Interaction::Delete,
        ];
        for text in sets {
            for patient in [true, false] {
                let set = ScopeSet::parse(text).with_patient_context(patient);
                for context in [None, Some(Context::Patient), Some(Context::System)] {
                    for interaction in interactions {
                        for resource_type in ["Observation", "Patient", "Encounter", "*"] {
                            assert_eq!(
                                set.grants_some(context, interaction, resource_type),
                                !set.constraints(context, interaction, resource_type)
                                    .is_denied(),
                                "{text} {patient} {context:?} {interaction:?} {resource_type}"
                            );
                        }
                    }
                }
            }
        }
    }
    use Interaction::*;

    /// A set with a patient context, so that `patient/` scopes count.
    fn with_patient(claim: &str) -> ScopeSet {
        ScopeSet::parse(claim).with_patient_context(true)
    }

    /// The interactions the set permits on `resource_type`, for compact assertions.
    fn permitted(set: &ScopeSet, resource_type: &str) -> Vec<Interaction> {
        Interaction::ALL
            .into_iter()
            .filter(|interaction| set.permits(*interaction, resource_type))
            .collect()
    }

    #[test]
    fn required_permission_per_interaction() {
        let cases = [
            (Read, "r"),
            (Vread, "r"),
            (HistoryInstance, "r"),
            (HistoryType, "s"),
            (HistorySystem, "s"),
            (SearchType, "s"),
            (SearchSystem, "s"),
            (Create, "c"),
            (Update, "u"),
            (Patch, "u"),
            (Delete, "d"),
        ];
        assert_eq!(cases.len(), Interaction::ALL.len());
        for (interaction, letter) in cases {
            assert_eq!(interaction.required_permission().to_string(), letter);
        }
        assert_eq!(SearchType.code(), "search-type");
        assert_eq!(HistoryInstance.code(), "history-instance");
    }

    #[test]
    fn letters_map_to_interactions() {
        // The letter decides, whatever the level; `permits(SearchSystem, "Observation")` asks
        // about a system search limited to Observation (e.g. by `_type`).
        let search: &[Interaction] = &[HistoryType, HistorySystem, SearchType, SearchSystem];
        let read: &[Interaction] = &[Read, Vread, HistoryInstance];
        let write: &[Interaction] = &[Create, Update, Patch, Delete];
        let read_search: Vec<Interaction> = [read, search].concat();
        let all: Vec<Interaction> = Interaction::ALL.to_vec();
        let cases: &[(&str, &[Interaction])] = &[
            ("user/Observation.r", read),
            ("user/Observation.s", search),
            ("user/Observation.c", &[Create]),
            ("user/Observation.u", &[Update, Patch]),
            ("user/Observation.d", &[Delete]),
            ("user/Observation.cud", write),
            ("user/Observation.write", write),
            ("user/Observation.r user/Observation.s", &read_search),
            ("user/Observation.read", &read_search),
            ("user/Observation.cruds", &all),
            ("user/*.cruds", &all),
            ("user/Patient.cruds", &[]),
            ("openid fhirUser launch/patient", &[]),
        ];
        for (claim, expected) in cases {
            let mut expected = expected.to_vec();
            expected
                .sort_by_key(|interaction| Interaction::ALL.iter().position(|i| i == interaction));
            assert_eq!(
                permitted(&ScopeSet::parse(claim), "Observation"),
                expected,
                "{claim}"
            );
        }
    }

    #[test]
    fn v1_and_v2_grant_the_same() {
        let pairs = [("read", "rs"), ("write", "cud"), ("*", "cruds")];
        for context in Context::ALL {
            for resource_type in ["Observation", "*"] {
                for (v1, v2) in pairs {
                    let v1_set = with_patient(&format!("{context}/{resource_type}.{v1}"));
                    let v2_set = with_patient(&format!("{context}/{resource_type}.{v2}"));
                    for requested in ["Observation", "Patient", "*"] {
                        assert_eq!(
                            permitted(&v1_set, requested),
                            permitted(&v2_set, requested),
                            "{context}/{resource_type} {v1} vs {v2} on {requested}"
                        );
                    }
                }
            }
        }
        let read = with_patient("patient/Observation.read");
        assert!(read.permits(Read, "Observation") && read.permits(SearchType, "Observation"));
    }

    #[test]
    fn write_never_implies_read() {
        let set = with_patient("patient/Observation.c patient/Patient.write");
        assert_eq!(permitted(&set, "Observation"), [Create]);
        assert!(!set.permits(Read, "Patient"));
        assert!(!set.permits(SearchType, "Patient"));
    }

    #[test]
    fn resource_types_and_wildcards() {
        let set = ScopeSet::parse("system/Observation.rs system/*.c");
        assert!(set.permits(Read, "Observation"));
        assert!(!set.permits(Read, "observation"));
        assert!(!set.permits(Read, "Patient"));
        assert!(set.permits(Create, "Patient"));
        assert!(set.permits(Create, "AnyFutureType"));
        assert!(set.permits(Create, "*"));
        assert!(!set.permits(SearchSystem, "*"));
        assert!(ScopeSet::parse("system/*.s").permits(SearchSystem, "*"));
        assert!(ScopeSet::parse("system/*.s").permits(HistorySystem, "*"));
    }

    #[test]
    fn rejected_and_other_scopes_grant_nothing() {
        let set = with_patient(
            "patient/Observation.dus */Observation.rs Patient/Observation.rs \
             patient/Observation.read?category=x patient.Observation.rs?category=x \
             http://smarthealthit.org/fhir/scopes/patient/*.read",
        );
        for requested in ["Observation", "*"] {
            assert!(permitted(&set, requested).is_empty(), "{requested}");
        }
        assert_eq!(set.rejected().len(), 4);
    }

    #[test]
    fn patient_scopes_need_a_patient_context() {
        let claim = "patient/Observation.rs user/Patient.r system/Group.r";
        let without = ScopeSet::parse(claim);
        let with = with_patient(claim);
        assert!(!without.permits(Read, "Observation"));
        assert!(with.permits(Read, "Observation"));
        assert!(without.search_constraints(None, "Observation").is_denied());
        assert!(
            with.search_constraints(None, "Observation")
                .is_unconstrained()
        );
        // Other contexts are unaffected.
        for set in [&without, &with] {
            assert!(set.permits(Read, "Patient"));
            assert!(set.permits(Read, "Group"));
        }
    }

    #[test]
    fn permits_in_one_context() {
        let set = with_patient("patient/Observation.rs user/Patient.r system/*.s");
        let cases = [
            (Context::Patient, Read, "Observation", true),
            (Context::User, Read, "Observation", false),
            (Context::System, SearchType, "Observation", true),
            (Context::System, Read, "Observation", false),
            (Context::User, Read, "Patient", true),
            (Context::Patient, Read, "Patient", false),
            (Context::System, SearchSystem, "*", true),
            (Context::User, SearchSystem, "*", false),
        ];
        for (context, interaction, resource_type, expected) in cases {
            assert_eq!(
                set.permits_in(context, interaction, resource_type),
                expected,
                "{context} {interaction:?} {resource_type}"
            );
        }
        let no_patient = ScopeSet::parse("patient/Observation.rs");
        assert!(!no_patient.permits_in(Context::Patient, Read, "Observation"));
    }

    #[test]
    fn permits_requirement_matches_permits() {
        let set = ScopeSet::parse("system/Observation.s system/*.r");
        let cases = [
            (SearchType, ResourceType::Named("Observation".into()), true),
            (SearchType, ResourceType::Named("Patient".into()), false),
            (SearchType, ResourceType::Any, false),
            (Read, ResourceType::Any, true),
        ];
        for (interaction, resource_type, expected) in cases {
            let requirement = Requirement::new(interaction, resource_type);
            assert_eq!(
                set.permits_requirement(&requirement),
                expected,
                "{requirement:?}"
            );
        }
    }

    const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    const VITALS: &str = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn search_constraints_combine() {
        let lab = format!("patient/Observation.rs?category={LAB}");
        let vitals = format!("patient/Observation.rs?category={VITALS}");
        let cases: Vec<(String, SearchConstraints)> = vec![
            ("patient/Patient.rs".into(), SearchConstraints::Denied),
            ("patient/Observation.r".into(), SearchConstraints::Denied),
            (
                "patient/Observation.s".into(),
                SearchConstraints::Unconstrained,
            ),
            ("patient/*.rs".into(), SearchConstraints::Unconstrained),
            (
                lab.clone(),
                SearchConstraints::AnyOf(vec![pairs(&[("category", LAB)])]),
            ),
            (
                format!("{lab} {vitals} {lab}"),
                SearchConstraints::AnyOf(vec![
                    pairs(&[("category", LAB)]),
                    pairs(&[("category", VITALS)]),
                ]),
            ),
            (
                format!("{lab} patient/Observation.s"),
                SearchConstraints::Unconstrained,
            ),
            (
                format!("{lab} patient/*.s"),
                SearchConstraints::Unconstrained,
            ),
            (
                "patient/Observation.rs?category=a&status=final".into(),
                SearchConstraints::AnyOf(vec![pairs(&[("category", "a"), ("status", "final")])]),
            ),
            (
                "patient/*.s?_security=R".into(),
                SearchConstraints::AnyOf(vec![pairs(&[("_security", "R")])]),
            ),
        ];
        for (claim, expected) in cases {
            assert_eq!(
                with_patient(&claim).search_constraints(None, "Observation"),
                expected,
                "{claim}"
            );
        }
    }

    #[test]
    fn constraints_per_interaction_and_context() {
        let set = with_patient(&format!(
            "patient/Observation.r patient/Observation.s?category={LAB} \
             user/Observation.rs?category={VITALS}"
        ));
        assert_eq!(
            set.read_constraints(Some(Context::Patient), "Observation"),
            SearchConstraints::Unconstrained
        );
        assert_eq!(
            set.search_constraints(Some(Context::Patient), "Observation"),
            SearchConstraints::AnyOf(vec![pairs(&[("category", LAB)])])
        );
        assert_eq!(
            set.search_constraints(Some(Context::User), "Observation"),
            SearchConstraints::AnyOf(vec![pairs(&[("category", VITALS)])])
        );
        assert_eq!(
            set.search_constraints(None, "Observation"),
            SearchConstraints::AnyOf(vec![
                pairs(&[("category", LAB)]),
                pairs(&[("category", VITALS)])
            ])
        );
        assert!(
            set.search_constraints(Some(Context::System), "Observation")
                .is_denied()
        );
        assert_eq!(
            set.constraints(None, Create, "Observation"),
            SearchConstraints::Denied
        );
    }

    #[test]
    fn constraints_match_resources() {
        let constraints = SearchConstraints::AnyOf(vec![
            pairs(&[("category", LAB)]),
            pairs(&[("category", VITALS), ("status", "final")]),
        ]);
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("category", LAB)], true),
            (&[("category", "other"), ("category", LAB)], true),
            (&[("category", VITALS)], false),
            (&[("category", VITALS), ("status", "final")], true),
            (&[("category", VITALS), ("status", "preliminary")], false),
            (&[("category", "laboratory")], false),
            (&[], false),
        ];
        for (resource, expected) in cases {
            let lookup = |name: &str| -> Vec<String> {
                resource
                    .iter()
                    .filter(|(param, _)| *param == name)
                    .map(|(_, value)| (*value).to_owned())
                    .collect()
            };
            assert_eq!(constraints.matches(lookup), *expected, "{resource:?}");
        }
        let no_values = |_: &str| std::iter::empty::<&str>();
        assert!(SearchConstraints::Unconstrained.matches(no_values));
        assert!(!SearchConstraints::Denied.matches(|_: &str| [LAB]));
    }

    /// A filter on every type counts for searches (the layer's and the handler's alike)
    /// only through parameters every type has; for reads it always counts, since a
    /// resource without the parameter does not match it.
    #[test]
    fn filters_on_every_type_search_only_by_common_parameters() {
        let set = ScopeSet::parse("system/*.rs?category=lab system/*.rs?_tag=t&_security=s");
        for interaction in [
            Interaction::SearchType,
            Interaction::HistoryType,
            Interaction::SearchSystem,
        ] {
            assert_eq!(
                set.constraints(None, interaction, "Patient"),
                SearchConstraints::AnyOf(vec![pairs(&[("_tag", "t"), ("_security", "s")])]),
                "{interaction:?}"
            );
        }
        assert_eq!(
            set.read_constraints(None, "Patient"),
            SearchConstraints::AnyOf(vec![
                pairs(&[("category", "lab")]),
                pairs(&[("_tag", "t"), ("_security", "s")]),
            ])
        );
        let only_category = ScopeSet::parse("user/*.s?category=lab");
        assert!(
            only_category
                .search_constraints(None, "Patient")
                .is_denied()
        );
        assert!(!only_category.grants_some(None, Interaction::SearchType, "Observation"));
        // Named for the type, the same filter counts.
        let named = ScopeSet::parse("user/Observation.s?category=lab");
        assert!(!named.search_constraints(None, "Observation").is_denied());
    }

    #[test]
    fn granular_scopes_only_restrict() {
        for context in Context::ALL {
            for scope_type in ["Observation", "*"] {
                for bits in 1..=31 {
                    let letters = Permissions::from_bits(bits);
                    let claim = format!("{context}/{scope_type}.{letters}?category=laboratory");
                    let set = with_patient(&claim);
                    for requested in ["Observation", "*"] {
                        for interaction in Interaction::ALL {
                            let needed = interaction.required_permission();
                            assert!(
                                !set.permits(interaction, requested),
                                "{claim} {interaction:?} {requested}"
                            );
                            assert!(
                                !set.permits_in(context, interaction, requested),
                                "{claim} {interaction:?} {requested}"
                            );
                            let covered = scope_type == "*" || requested == scope_type;
                            // `category` is no parameter of every type: a filter by it on
                            // `*` counts for reads only.
                            let filtered = needed == Permissions::READ
                                || (needed == Permissions::SEARCH && scope_type != "*");
                            let expected = if covered && filtered && letters.contains(needed) {
                                SearchConstraints::AnyOf(vec![pairs(&[("category", "laboratory")])])
                            } else {
                                SearchConstraints::Denied
                            };
                            assert_eq!(
                                set.constraints(None, interaction, requested),
                                expected,
                                "{claim} {interaction:?} {requested}"
                            );
                        }
                    }
                }
            }
        }
        // A plain scope next to a granular one still grants the whole type.
        let set = with_patient("patient/Observation.cruds?category=x patient/Observation.c");
        assert_eq!(permitted(&set, "Observation"), [Create]);
        assert!(set.constraints(None, Delete, "Observation").is_denied());
    }

    #[test]
    fn search_queries_that_carry_a_filter() {
        let set = ScopeSet::parse(
            "system/Observation.rs?category=http://loinc.org%7Clab&status=final \
             system/Observation.s?code=a,b system/Condition.rs?category=x system/Patient.s",
        );
        let cases = [
            (
                "Observation",
                Some("category=http://loinc.org|lab&status=final"),
                true,
            ),
            (
                "Observation",
                Some("status=final&category=http://loinc.org%7Clab"),
                true,
            ),
            (
                "Observation",
                Some("status=final&category=http%3A%2F%2Floinc.org%7clab&_count=5"),
                true,
            ),
            ("Observation", Some("category=http://loinc.org|lab"), false),
            ("Observation", Some("status=final"), false),
            ("Observation", Some("code=a,b"), true),
            ("Observation", Some("code=a"), false),
            ("Observation", Some("code=a,b,c"), false),
            ("Observation", Some("code:not=a,b"), false),
            ("Observation", Some("Code=a,b"), false),
            (
                "Observation",
                Some("code=a,b&_include=Observation:has-member"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&_include:iterate=Observation:subject"),
                false,
            ),
            // What `_revinclude` and `_include` add of another type leaves the filter on
            // the searched type (those types need their own grants); the searched type,
            // `*`, no type, or `:iterate` does not.
            (
                "Observation",
                Some("code=a,b&_revinclude=Provenance:target"),
                true,
            ),
            (
                "Observation",
                Some("code=a,b&_include=Observation:subject:Patient"),
                true,
            ),
            (
                "Observation",
                Some("code=a,b&_revinclude=Provenance:target,Observation:has-member"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&_include=Observation:has-member:Observation"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&_include=Observation:subject:OBSERVATION"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&_include=Observation:subject"),
                false,
            ),
            // A fourth part, or a comma list read as one value: no target type to IBM's
            // server, which includes every target of the parameter.
            (
                "Observation",
                Some("code=a,b&_include=Observation:has-member:Patient:Patient"),
                false,
            ),
            (
                "Observation",
                Some(
                    "code=a,b&_include=Observation:has-member:Patient,Observation:subject:Patient",
                ),
                false,
            ),
            ("Observation", Some("code=a,b&_revinclude=*"), false),
            // HAPI's wildcard parameter includes every reference whatever the target says;
            // a parameter with one possible target adds that type.
            (
                "Observation",
                Some("code=a,b&_include=Observation:*:Patient"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&_include=MedicationRequest:medication"),
                true,
            ),
            (
                "Observation",
                Some("code=a,b&_include=Observation:has-member"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&_revinclude=provenance:target"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&_revinclude:iterate=Provenance:target"),
                false,
            ),
            ("Observation", Some("code=a,b&_revinclude="), false),
            ("Observation", Some("code=a,b&_contained=true"), false),
            ("Observation", Some("code=a,b&_query=everything"), false),
            ("Observation", Some("code=a%2Cb"), true),
            // A filtered parameter with another value too: servers differ on which counts.
            ("Observation", Some("code=a,b&code=a,b"), true),
            ("Observation", Some("code=a,b&code=c"), false),
            ("Observation", Some("code=c&code=a,b"), false),
            ("Observation", Some("code=a,b&code="), false),
            ("Observation", Some("code=a,b&code:not=c"), true),
            // The same name in another case or with spaces: a lenient server reads it as
            // another value of the filtered parameter.
            ("Observation", Some("code=a,b&CODE=c"), false),
            ("Observation", Some("Code=c&code=a,b"), false),
            ("Observation", Some("code=a,b&%20code=c"), false),
            ("Observation", Some("code=a,b&Code=a,b"), true),
            (
                "Observation",
                Some("code=a,b&_INCLUDE=Observation:subject"),
                false,
            ),
            (
                "Observation",
                Some("code=a,b&%20_revinclude=Provenance:target"),
                true,
            ),
            (
                "Observation",
                Some("code=a,b&%20_revinclude=Observation:has-member"),
                false,
            ),
            ("Observation", Some("code=a,b&_Contained=true"), false),
            ("Observation", Some("code=a,b&_graph=x"), false),
            ("Observation", Some("code=a,b&%00code=c"), false),
            ("Observation", Some("code=a,b&c%C5%BFde=c"), false),
            ("Observation", Some("code=a,b&x=1+2"), false),
            ("Observation", Some("code=a,b&x=%zz"), false),
            ("Observation", Some("code=a,b&x=%FF"), false),
            ("Observation", Some("code=a,b&&"), true),
            ("Observation", Some(""), false),
            ("Observation", None, false),
            ("Condition", Some("category=x"), true),
            ("Condition", Some("code=a,b"), false),
            ("Patient", None, true),
            ("Patient", Some("_include=Patient:link"), true),
            ("Encounter", Some("category=x"), false),
        ];
        for (resource_type, query, expected) in cases {
            assert_eq!(
                set.permits_search_query(resource_type, query),
                expected,
                "{resource_type}?{query:?}"
            );
        }
        // Patient scopes need a patient context here too.
        let patient = ScopeSet::parse("patient/Observation.rs?category=x");
        assert!(!patient.permits_search_query("Observation", Some("category=x")));
        let patient = patient.with_patient_context(true);
        assert!(patient.permits_search_query("Observation", Some("category=x")));
    }

    #[test]
    fn many_granular_scopes_stay_linear() {
        let claim: Vec<String> = (0..30_000)
            .map(|index| format!("system/Observation.rs?code={index}"))
            .collect();
        let set = ScopeSet::parse(&claim.join(" "));
        let SearchConstraints::AnyOf(sets) = set.search_constraints(None, "Observation") else {
            panic!("granular constraints");
        };
        assert_eq!(sets.len(), 30_000);
        assert!(set.permits_search_query("Observation", Some("code=29999")));
        assert!(!set.permits_search_query("Observation", Some("code=30000")));
    }

    #[test]
    fn insufficient_scope_hints() {
        let cases = [
            (
                SearchType,
                "Observation",
                Context::System,
                "system/Observation.s",
            ),
            (Read, "Patient", Context::Patient, "patient/Patient.r"),
            (Vread, "Patient", Context::User, "user/Patient.r"),
            (Patch, "Observation", Context::User, "user/Observation.u"),
            (
                Delete,
                "Observation",
                Context::System,
                "system/Observation.d",
            ),
            (
                Create,
                "Observation",
                Context::System,
                "system/Observation.c",
            ),
            (SearchSystem, "*", Context::System, "system/*.s"),
            (Read, "bad\"type", Context::System, "system/*.r"),
            (Read, "", Context::System, "system/*.r"),
        ];
        for (interaction, resource_type, context, expected) in cases {
            let hint = ScopeSet::insufficient_scope_hint(interaction, resource_type, context);
            assert_eq!(hint, expected);
            // The hint is itself a scope that grants the interaction.
            let set = ScopeSet::parse(&hint).with_patient_context(true);
            let requested = ResourceType::parse(resource_type).map_or("*", |_| resource_type);
            assert!(set.permits(interaction, requested), "{hint}");
        }
        let requirement = Requirement::new(HistoryType, ResourceType::Any);
        assert_eq!(requirement.hint(Context::User), "user/*.s");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::config;
    use proptest::prelude::*;

    /// `text` with each byte percent-encoded (either hex case) or kept, per `choices`;
    /// the characters that separate pairs are always encoded.
    fn encode(text: &str, choices: &[u8]) -> String {
        let mut out = String::new();
        for (index, byte) in text.bytes().enumerate() {
            let choice = choices[index % choices.len()];
            let must = matches!(byte, b'&' | b'=' | b'+' | b'%' | b'#') || !byte.is_ascii_graphic();
            match choice % 3 {
                0 => out.push_str(&format!("%{byte:02X}")),
                1 => out.push_str(&format!("%{byte:02x}")),
                _ if must => out.push_str(&format!("%{byte:02X}")),
                _ => out.push(char::from(byte)),
            }
        }
        out
    }

    fn parameter() -> impl Strategy<Value = (String, String)> {
        (
            prop::sample::select(vec![
                "code",
                "category",
                "_include",
                "_revinclude:iterate",
                "_contained",
                "_query",
                "_count",
                "patient",
                "category:not",
                "_has:Observation:code",
            ]),
            prop::sample::select(vec![
                "laboratory",
                "x",
                "",
                "a&b",
                "a=b",
                "1+1",
                "caf\u{e9}",
            ]),
        )
            .prop_map(|(name, value)| (name.to_owned(), value.to_owned()))
    }

    proptest! {
        #![proptest_config(config(1024))]

        /// A search under `system/Observation.rs?category=laboratory` is permitted exactly
        /// when the query carries `category=laboratory`, no other `category` value and no
        /// parameter that widens the results, however its names and values are percent-encoded and in whatever order.
        #[test]
        fn granular_search_reads_the_decoded_query(
            mut pairs in proptest::collection::vec(parameter(), 0..5),
            required in any::<bool>(),
            at in any::<prop::sample::Index>(),
            choices in proptest::collection::vec(any::<u8>(), 1..8),
        ) {
            if required {
                pairs.insert(at.index(pairs.len() + 1), ("category".to_owned(), "laboratory".to_owned()));
            }
            let query = pairs
                .iter()
                .map(|(name, value)| format!("{}={}", encode(name, &choices), encode(value, &choices)))
                .collect::<Vec<_>>()
                .join("&");
            let expected = pairs.iter().any(|(n, v)| n == "category" && v == "laboratory")
                && !pairs.iter().any(|(n, v)| n == "category" && v != "laboratory")
                && !pairs.iter().any(|(name, value)| match widening(name, value) {
                    Widening::None => false,
                    Widening::Types(types) => types.iter().any(|t| t.eq_ignore_ascii_case("Observation")),
                    Widening::All => true,
                });
            let set = ScopeSet::parse("system/Observation.rs?category=laboratory");
            prop_assert_eq!(set.permits_search_query("Observation", Some(&query)), expected, "{}", query);
            prop_assert!(!set.permits_search_query("Patient", Some(&query)));
        }

        /// Any query bytes: an answer, never a panic; a query with a `+` or a bad escape
        /// never satisfies a filter.
        #[test]
        fn hostile_queries_never_satisfy_filters_by_accident(query in "[a-z_=&%+0-9A-F:\u{e9}]{0,40}") {
            let set = ScopeSet::parse("system/Observation.rs?category=laboratory");
            let permitted = set.permits_search_query("Observation", Some(&query));
            if permitted {
                prop_assert!(!query.contains('+'));
                prop_assert!(strict_query_pairs(&query).is_some());
            }
        }
    }
}
