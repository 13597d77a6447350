//! FHIR REST scope enforcement for a whole router; documented on [`ScopeEnforcement`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use percent_encoding::{CONTROLS, percent_encode};

use crate::claims::SmartClaims;
use crate::error::{AuthError, ErrorKind};
use crate::form::{
    is_parameter, lenient_parameter_name, lenient_raw_parameter_name, percent_decode_strict,
};
use crate::original_uri::original_uri;
use crate::scopes::{
    AccessRule, Classified, Classifier, Context, FhirRequest, Interaction, Operation, Requirement,
    ResourceType, ScopeSet, SearchCriteria, export_requirements, include_reaches_every_type,
    include_target, single_target_type,
};

/// The header of a FHIR conditional create (`POST [type]` that creates only when a search
/// finds nothing).
const IF_NONE_EXIST: &str = "if-none-exist";

/// Decides what an operation (`$name`) needs: `Some(requirements)` (empty for "allowed to
/// any valid token"), or `None` to refuse it.
type OperationPolicyFn = dyn Fn(&Operation, Option<&str>) -> Option<Vec<Requirement>> + Send + Sync;

/// Which FHIR REST requests the token's scopes must allow.
///
/// Turned on with [`SmartAuthBuilder::enforce_scopes`](crate::SmartAuthBuilder::enforce_scopes).
/// After the token verified, the layer classifies the request (read, search, create,
/// operation, ...) relative to the FHIR base path and checks that the token's scopes allow
/// it, before the handler runs. A request they do not allow gets
/// `403` with `WWW-Authenticate: Bearer …, error="insufficient_scope", scope="<the scopes
/// it lacks>"` (one for each unmet requirement, in order, at most eight) and an
/// `OperationOutcome` (`forbidden`).
///
/// What the layer cannot decide stays with the handler, which must finish the job:
///
/// - **Granular scopes** (`system/Observation.rs?category=…`) only restrict: they never allow
///   create, update, patch or delete, and they allow a read or search only where their
///   filter is applied. By default the layer lets through a type search (`GET [type]?…`)
///   whose own query carries every parameter of one granted filter
///   ([`ScopeSet::permits_search_query`](crate::scopes::ScopeSet::permits_search_query)) and
///   refuses every other request that only a granular scope would allow. A handler that
///   narrows searches and checks read results itself opts in with
///   [`handler_applies_granular_filters`](Self::handler_applies_granular_filters).
/// - **Batch and transaction** bundles (`POST [base]`) are refused (403, no hint), unless
///   the handler [checks each entry](Self::handler_checks_bundle_entries) with
///   [`check_bundle_entry`](Self::check_bundle_entry).
/// - **Patient compartment**: `patient/` scopes count only with a `patient` claim, and only
///   for that patient where the path or a search names one: a read, vread, history,
///   update, patch, delete or instance operation of `Patient/[id]`, a search in the
///   compartment `Patient/[id]/…`, or a search whose `patient` or `subject` parameter
///   (first or later in a chain, `encounter.patient=`), any parameter with `:Patient`, any
///   value written as a Patient's reference (`Appointment?actor=Patient/456`), or `_id`
///   in a search of Patients names another patient, or a form the layer cannot compare
///   (`patient.identifier=`, `patient:identifier=`, `_filter`, `_query`, `_graph`, an
///   absolute URL of a Patient outside the FHIR base URL, even of the one in context),
///   needs `user/` or `system/` scopes (403 otherwise, with a `system/` scope hint for a
///   client that holds `system/` scopes and none for others); parameters in a `POST _search` body are not
///   seen. Granular scopes count there only through the request's own query,
///   even with [`handler_applies_granular_filters`](Self::handler_applies_granular_filters),
///   whose filters would include the `patient/` scopes.
///   The same holds for the criteria of conditional writes (`DELETE Patient?_id=456`, an
///   `If-None-Exist: patient=456`), histories and operations (their query, by `POST` too), and an
///   operation on a population (`Patient/$everything`, any system-level operation) never
///   counts `patient/` scopes. Limiting other requests (`Observation/[id]`, other
///   searches and writes) to that patient's compartment is the handler's job.
/// - **Operations** follow the [operation policy](ScopeEnforcement::operation_policy): by
///   default `$export` needs `s` (or v1 `read`) on every type in `_type` (all types without
///   it) plus `r` on `Group` for a group export, and every other operation is refused. A
///   bulk export reaches a population, so `patient/` scopes never count for it. An
///   operation invoked by `POST` carries its parameters in the body, which the layer does
///   not read: the policy is given no query for it, so a `POST` kick-off needs the scopes of
///   an export of every type.
/// - **Patch** (`PATCH [type]/[id]`, and conditional) needs `r` on the type besides `u`:
///   the server answers with the patched resource when asked (`Prefer:
///   return=representation`, the default of many), and a JSON Patch `test` or a FHIRPath
///   Patch reads any element, so it reads as much as it writes (write does not imply
///   read). An update (`PUT`) sends the whole resource and needs `u` alone.
/// - **Conditional create** (`POST [type]` with an `If-None-Exist` header) needs `s` on the
///   type besides `c`, as conditional update, patch and delete need it besides `u` or `d`:
///   the server searches first, and its answer tells whether the search matched. Their
///   search criteria (the query, or the values of every `If-None-Exist` header) need
///   whole-type grants on the other types they reach, as a search's query does.
/// - **Compartment searches** (`GET [compartment]/[id]/[type]`, `…/*`, and their `_search`
///   forms) need `s` on the searched type (on every type for `*`); limiting the results to
///   the compartment is the handler's job.
/// - **A method-override header counts as a second method.** A request with
///   `X-HTTP-Method-Override`, `X-HTTP-Method` or `X-Method-Override` naming another
///   method (any letter case) is checked as that method too, and needs the scopes of
///   both: a service behind the layer that honours the header runs the other interaction.
///   A value that is no method token is refused (400 `invalid_request`). A `_method`
///   query parameter (the override of Spring, gorilla, Symfony and Express; no FHIR
///   parameter), its name matched as a lenient server reads it (PHP's `.method` and
///   `[method`, and `_method[]` included), counts the same; it is no search criterion of
///   the write it names. Header names are matched with `_` read as `-` (CGI and PHP read
///   both alike).
/// - **A path-override header counts as a second request.** `X-Original-URL` or
///   `X-Rewrite-URL` (either spelling) naming another path or query than the request
///   line's is checked as that path too, with the request's method, and needs the scopes
///   of both: IIS URL Rewrite, Zend Framework 1 and Symfony before CVE-2018-14773's fix
///   serve the path it names. A value that is no path (`/…`), one holding a `#`, one sent
///   together with a method override, one whose query has a `_method` parameter (whatever
///   method it names) or an `access_token` (a second token, RFC 6750 section 2), one that passes as a
///   paging link (the mark would name the request line's page), or another target
///   longer than 8 KiB is refused (400); the token-only paths and the SMART
///   configuration are no shortcut then. A proxy in front that rewrites paths and records
///   the original there must remove the header before the layer.
/// - **A form body is for searches and operations only.** A request whose `Content-Type`
///   is `application/x-www-form-urlencoded` or any `multipart/` type (read as Rack and PHP
///   read it: up to a `;`, `,` or space; an empty type, or a `POST` with a body and no
///   type, counts too) is refused unless it is a search (`POST [type]/_search`) or an
///   operation, the FHIR interactions that take a form: those frameworks read `_method`
///   from a form body first, and the layer reads no bodies. A `GET` or `HEAD` with a form
///   body is refused too, with 400 (Rack merges it over the query).
/// - **Patient-scoped conditional writes pin the patient.** Under `patient/` scopes, a
///   conditional create, update, patch or delete needs the patient in context in its
///   criteria (`_id=` for Patient, `patient=` on the types whose `patient` parameter names
///   a Patient, so none on the others): the server acts on whatever its search finds, in
///   every patient's data. A conditional create carries one `If-None-Exist` header, of at
///   most 8 KiB (two, or a longer one, are refused with 400).
/// - **A delete that cascades needs `d` on every type.** HAPI FHIR deletes every resource
///   that refers to the one deleted when the delete asks for it (`_cascade=delete`, or the
///   header `X-Cascade: delete`): of any type, and of any patient. A delete with a
///   `_cascade` parameter or an `X-Cascade` header, whatever their value, needs a
///   whole-type `d` grant on every type from `user/` or `system/` scopes (`system/*.d`),
///   in a bundle entry's URL too, and so does a batch or transaction whose request has
///   either (HAPI FHIR applies them to each of its delete entries).
/// - **A delete that expunges is refused.** HAPI FHIR's `_expunge` parameter turns a
///   delete into a delete-expunge, which also purges every version of what it deletes:
///   no scope grants that, so a delete with an `_expunge` parameter (whatever its value,
///   however spelled) is refused with 403, in a bundle entry's URL too. (A parameter
///   name that does not decode may be either, and is refused as well.)
/// - **Requests without a token** in [optional](crate::SmartAuthBuilder::optional) mode
///   reach the handler anonymously, unchecked: enforcement applies to the scopes of a
///   verified token. A handler of such a layer that serves anonymous requests decides
///   itself what they may do (`Option<SmartClaims>` is `None` for them).
///
/// Requests that cannot be classified as FHIR interactions under the base path are
/// refused with 403 (no `scope` hint): paths under the base that are no FHIR interaction,
/// and, by default, every path outside the base too, so that a layer whose base does not
/// fit where it is mounted fails closed instead of waving requests through. Routes outside
/// the FHIR API that the same layer covers either need no token
/// ([`public_path`](crate::SmartAuthBuilder::public_path)) or, with
/// [`allow_any_token_outside_base`](Self::allow_any_token_outside_base), only a valid one.
///
/// # Which path is checked
///
/// The path is read as the router reads it and hands it to handlers: each segment
/// percent-decoded once, so `/fhir/%50atient/1` is checked as a read of `Patient` (see
/// [`Classifier`](crate::scopes::Classifier) for the exact rules). A path that
/// cannot be read one way only (`//`, `.` or `..` segments, a malformed escape, or an
/// escape that decodes to `/`, `\`, `;`, `%`, a control character or invalid UTF-8) is
/// refused with 400 (`invalid_request`, RFC 6750 section 3.1: "otherwise malformed";
/// [`ErrorKind::MalformedRequest`]), wherever it points, and so is a target without a path
/// (`host:port`, which axum routes to no route but the fallback).
///
/// A search (by `GET`, or the query of a `POST _search`) that reaches other types needs a
/// whole-type grant on each: `_include` `r` on its target type, `_revinclude`, `_has` and
/// chained parameters `s` on the types they name, `_list` `r` on List; a type left open
/// (`_include=*`, `Observation:subject` without a target, `subject.name`, an `_include`
/// whose parameter is `*` as in HAPI's `Observation:*:Patient`, or whose value has more
/// than three `:`-separated parts, as `Observation:subject:Patient:Patient` or a comma list
/// of targeted includes) is every type, but for an `_include` or a chain link of a parameter FHIR lets point at one type only (a
/// medication request's `medication`, a practitioner role's `practitioner`,
/// `organization`, `location`, `endpoint`, `service`), which needs `r` (`s` for a chain)
/// on that type; and
/// so are `_query`, `_filter` and `_contained` (other than `false`), whose reach the
/// layer cannot tell. Parameter names are matched as a lenient server matches them,
/// ignoring ASCII case and the spaces and control characters around them (`_HAS` counts as
/// `_has`); a name holding a control character or a character beyond ASCII, which no FHIR
/// parameter holds, may mean anything and counts as reaching every type (and as naming
/// another patient). Parameters in a `POST _search` body are not seen: the handler checks
/// them, as the query of the same search by `GET`:
/// `check_bundle_entry(&claims, "GET", &format!("Observation?{body}"))`.
///
/// The base path is the path of the layer's [FHIR base](crate::SmartAuthBuilder::fhir_base),
/// as clients send it: the full request path. Inside an axum
/// `Router::nest` the inner layers see the path without the nest prefix; the layer then
/// reads the original request URI that axum keeps in the
/// `axum::extract::OriginalUri` extension (with the crate's `axum` feature), so the layer
/// may sit on the outer router, on the nested router, or around the whole app, with the
/// same base path. Without that extension (a plain tower stack) the layer reads the
/// request's own URI.
///
/// The check runs inside [`SmartAuthLayer`](crate::SmartAuthLayer) rather than as a layer
/// of its own, so that it can never be placed where no claims exist yet.
///
/// # Example
///
/// ```
/// use smart_auth::{ScopeEnforcement, SmartAuthLayer};
///
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .fhir_base("https://fhir.example.org/r4")
///     .enforce_scopes(ScopeEnforcement::new())
///     .build()?;
/// # Ok::<(), smart_auth::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct ScopeEnforcement {
    classifier: Classifier,
    /// The classifiers of every shorter base (the base without one or more of its leading
    /// segments, down to the root), for requests outside the base: built with the base.
    shorter_bases: Arc<[Classifier]>,
    /// The FHIR base URL the layer was given (`fhir_base`), without a final `/`: a search
    /// naming the patient in context by an absolute URL under it names that patient.
    base_url: Option<Arc<str>>,
    operations: Arc<OperationPolicyFn>,
    /// Whether handlers apply granular filters to reads and searches themselves.
    handler_filters: bool,
    /// Whether a valid token is enough for paths outside the base (else they are refused).
    any_token_outside_base: bool,
    /// Paths under the base, as configured (relative, without a leading `/`), for which a
    /// valid token is enough: a bulk export's status and output URLs.
    any_token_under: Arc<[String]>,
    /// Whether the handler checks each entry of a batch or transaction (else bundles posted
    /// to the base are refused).
    handler_checks_bundle_entries: bool,
    /// The parameter of the server's paging links, when the handler binds each page to
    /// the client whose search made it (else such links need `s` on every type).
    paging_parameter: Option<Arc<str>>,
}

impl fmt::Debug for ScopeEnforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeEnforcement")
            .field("classifier", &self.classifier)
            .field("base_url", &self.base_url)
            .field("operations", &"<fn>")
            .field("handler_filters", &self.handler_filters)
            .field("any_token_outside_base", &self.any_token_outside_base)
            .field("any_token_under", &self.any_token_under)
            .field(
                "handler_checks_bundle_entries",
                &self.handler_checks_bundle_entries,
            )
            .field("paging_parameter", &self.paging_parameter)
            .finish()
    }
}

impl Default for ScopeEnforcement {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopeEnforcement {
    /// Enforcement with the default operation policy. Its base path is the layer's
    /// [FHIR base](crate::SmartAuthBuilder::fhir_base) (or
    /// [`served_at_path`](crate::SmartAuthBuilder::served_at_path)), which a layer that
    /// enforces scopes must have.
    ///
    /// ```
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer};
    ///
    /// assert_eq!(ScopeEnforcement::new().base_path(), ""); // the root, until a layer says
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir/r4")
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// assert_eq!(layer.scope_enforcement().map(ScopeEnforcement::base_path), Some("/fhir/r4"));
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn new() -> Self {
        Self {
            classifier: Classifier::new("/"),
            shorter_bases: Arc::new([]),
            base_url: None,
            operations: Arc::new(default_operation_policy),
            handler_filters: false,
            any_token_outside_base: false,
            any_token_under: Arc::new([]),
            handler_checks_bundle_entries: false,
            paging_parameter: None,
        }
    }

    /// Lets batch and transaction bundles (`POST [base]`) through to the handler, which
    /// then checks every entry with [`check_bundle_entry`](Self::check_bundle_entry) or
    /// [`check_conditional_create_entry`](Self::check_conditional_create_entry) before it
    /// runs any of them. By default such bundles are refused with 403: the layer does not
    /// read bodies, so it cannot tell what their entries do, and a handler that passes a
    /// bundle on unchecked (a proxy in front of a FHIR server) would run every interaction
    /// with any valid token.
    ///
    /// The entries' resources are the handler's to read too: a conditional reference in
    /// one (`"subject": {"reference": "Patient?identifier=http://h|1"}`, FHIR's
    /// "conditional references", also allowed outside bundles by some servers) makes the
    /// server search before it links, and its answer tells whether the search found one:
    /// check each as a search with `check_bundle_entry(&claims, "GET", reference)`, and
    /// under `patient/` scopes refuse those whose criteria do not pin the patient in
    /// context (or have the server refuse conditional references).
    ///
    /// ```
    /// use smart_auth::ScopeEnforcement;
    /// let enforcement = ScopeEnforcement::new().handler_checks_bundle_entries();
    /// ```
    pub fn handler_checks_bundle_entries(mut self) -> Self {
        self.handler_checks_bundle_entries = true;
        self
    }

    /// Lets the paging links of a server that serves them from the base (HAPI FHIR:
    /// `[base]?_getpages=[id]&_getpagesoffset=20&_count=20&_bundletype=searchset`, with
    /// `parameter` `_getpages`) through with any valid token. By default such a link is a
    /// system search and needs `s` on every type, so a token scoped per type cannot page
    /// through its own searches. Only for a server that serves pages by `parameter`: one that
    /// ignores unknown parameters would answer such a link as a search of every type, to
    /// any token. The handler (or the server behind it) must then serve a
    /// page only under the grant whose search made it: the same client
    /// ([`SmartClaims::client_id`](crate::SmartClaims::client_id)), user (`sub`,
    /// `fhirUser`), patient in context and scopes (many users share one client id). The
    /// layer checked the search when it ran, not the page; HAPI binds pages to nothing. A
    /// request let through this way carries a [`PagingLink`] in its extensions.
    ///
    /// A link is a `GET` or `HEAD` of the base or of `[base]/_search`, or a `POST` of the
    /// base without a body or form type (HAPI serves pages to both methods; with a body, a
    /// `POST` of the base is a batch or transaction), whose query holds `parameter` once,
    /// with a value, and otherwise only `_getpagesoffset`, `_pageId`, `_count`, `_offset`, `_bundletype`, the
    /// answer-shaping `_format`, `_pretty`, `_summary`, `_elements`, `_elements:exclude` and
    /// `_total`, and the `_include` and `_revinclude` of the search (which need the scopes
    /// of the types they reach, as in a search), each name written exactly so, and no
    /// `;`. Any other request of the base is checked as before, and bundle entries never
    /// take this way. `build` refuses a `parameter` that is not a `_` name of letters,
    /// digits, `-` and `_`, or that FHIR or this rule already gives a meaning
    /// ([`ConfigError::InvalidPagingParameter`](crate::ConfigError::InvalidPagingParameter)).
    ///
    /// ```
    /// use smart_auth::ScopeEnforcement;
    /// let enforcement = ScopeEnforcement::new().handler_checks_paging_links("_getpages");
    /// ```
    pub fn handler_checks_paging_links(mut self, parameter: impl Into<String>) -> Self {
        self.paging_parameter = Some(Arc::from(parameter.into()));
        self
    }

    /// Lets requests outside the base path through with any valid token, whatever its
    /// scopes (by default they are refused with 403). For an app whose layer also covers
    /// non-FHIR routes (`/admin`, `/jobs`) that need a token but no SMART scope; the base
    /// path must then be right, since a wrong one turns every FHIR request into such a
    /// request. A request outside the base that would be, or would start as, a FHIR
    /// interaction (or a malformed one) under a shorter base, down to the server's root,
    /// is still refused with 403 (segments decoded as under the base: a first segment of
    /// a resource type's shape, `[A-Z][A-Za-z]+`, `metadata`, `_history`, `_search` or an
    /// operation other than a `-poll-status` one; `POST /`; `GET /` with a query): it means
    /// the base is wrong, or the path was stripped where the layer cannot see it (an axum
    /// `nest` without this crate's `axum` feature strips the prefix: `/api/fhir/Observation/1`
    /// reaches a layer whose base is `/api/fhir` as `/Observation/1`, or as
    /// `/fhir/Observation/1` inside `nest("/api", ..)`).
    ///
    /// ```
    /// use smart_auth::ScopeEnforcement;
    /// let enforcement = ScopeEnforcement::new().allow_any_token_outside_base();
    /// ```
    pub fn allow_any_token_outside_base(mut self) -> Self {
        self.any_token_outside_base = true;
        self
    }

    /// Lets requests at or under these paths of the base through with any valid token,
    /// whatever their method and scopes: the status and output URLs of a bulk data export
    /// (`bulkstatus` for `[base]/bulkstatus/[job]`, HAPI FHIR's `$export-poll-status`,
    /// `bulkfiles`). The Bulk Data IG protects them with the same authorization as the
    /// kick-off but asks for no scope of their own, so by default they are refused with
    /// 403 like any request the layer cannot read as FHIR. The handler must then check
    /// that the job belongs to the token's client
    /// ([`SmartClaims::client_id`](crate::SmartClaims::client_id)).
    ///
    /// Each path is relative to the base and written canonically; a request is under it
    /// when its path's segments, as sent (no decoding, case included, the base's too, as a
    /// router matches them), continue the base with exactly these: `bulkstatus` covers
    /// `[base]/bulkstatus` and `[base]/bulkstatus/1/files`, not `[base]/bulkstatus2` nor
    /// `[base]/%62ulkstatus`. A request path that the classifier cannot read (a `..`
    /// segment, an encoded `/`) is never under one. This holds for HTTP requests only, not
    /// for the entries of a bundle ([`check_bundle_entry`](Self::check_bundle_entry)).
    /// [`SmartAuthBuilder::build`](crate::SmartAuthBuilder::build) fails with
    /// [`ConfigError::InvalidRoutePath`](crate::ConfigError::InvalidRoutePath) for
    /// an empty, absolute or non-canonical path, or one that starts where FHIR interactions
    /// are: a resource type, `metadata`, a `_` name (`_history`), an operation other than a
    /// `…-poll-status` one (`$export`, `$graphql`).
    ///
    /// ```
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer};
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .enforce_scopes(
    ///         ScopeEnforcement::new().allow_any_token_under(["bulkstatus", "bulkfiles"]),
    ///     )
    ///     .build()?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn allow_any_token_under<I, S>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.any_token_under = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the settings a builder cannot refuse when they are given: the paths of
    /// [`allow_any_token_under`](Self::allow_any_token_under) and the parameter of
    /// [`handler_checks_paging_links`](Self::handler_checks_paging_links).
    pub(crate) fn checked(self) -> Result<Self, crate::ConfigError> {
        if let Some(parameter) = &self.paging_parameter
            && let Some(reason) = paging_parameter_problem(parameter)
        {
            return Err(crate::ConfigError::InvalidPagingParameter {
                parameter: parameter.to_string(),
                reason,
            });
        }
        match self
            .any_token_under
            .iter()
            .find_map(|path| token_only_path_problem(path).map(|reason| (path, reason)))
        {
            None => Ok(self),
            Some((path, reason)) => Err(crate::ConfigError::InvalidRoutePath {
                setting: "allow_any_token_under",
                path: path.clone(),
                reason,
            }),
        }
    }

    /// Declares that the handlers apply granular scope filters themselves, so that the layer
    /// may let through reads, searches and history requests that only a granular scope
    /// (`…rs?category=…`) allows.
    ///
    /// The handler must then, for each such request, AND the parameters of one set of
    /// [`SmartClaims::require_constraints`](crate::SmartClaims::require_constraints) into the
    /// search (OR across sets), and refuse to return a read or history result that does not
    /// [match](crate::scopes::SearchConstraints::matches). Without this call the layer refuses
    /// those requests, except type searches whose query carries the filter.
    /// Create, update, patch, delete and operations never pass on a granular scope.
    ///
    /// ```
    /// use smart_auth::ScopeEnforcement;
    ///
    /// let enforcement = ScopeEnforcement::new().handler_applies_granular_filters();
    /// ```
    pub fn handler_applies_granular_filters(mut self) -> Self {
        self.handler_filters = true;
        self
    }

    /// Accepts only these resource types; any other type in a path is refused.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, body::Body, routing::get};
    /// use http::{Request, StatusCode};
    /// use smart_auth::ScopeEnforcement;
    /// use smart_auth::testing::{ClaimsBuilder, ClaimsLayer};
    /// use tower::ServiceExt as _;
    ///
    /// let enforcement = ScopeEnforcement::new().resource_types(["Patient", "Observation"]);
    /// let claims = ClaimsBuilder::new().scope("system/*.rs").build();
    /// let app = Router::new()
    ///     .route("/fhir/{type}/{id}", get(|| async { "resource" }))
    ///     .layer(ClaimsLayer::new(claims).enforce_scopes(enforcement, "/fhir"));
    ///
    /// let read = |path: &str| Request::get(path).body(Body::empty());
    /// let response = app.clone().oneshot(read("/fhir/Patient/1")?).await?;
    /// assert_eq!(response.status(), StatusCode::OK);
    /// // `system/*.rs` covers every type, yet the API serves no `Account`.
    /// let response = app.oneshot(read("/fhir/Account/1")?).await?;
    /// assert_eq!(response.status(), StatusCode::FORBIDDEN);
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn resource_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.classifier = self.classifier.with_allowed_types(types);
        self
    }

    /// Replaces the operation policy. The function gets the operation and the request's
    /// raw query string, and returns the requirements (an empty list allows any valid
    /// token) or `None` to refuse. Call [`default_operation_policy`] inside it to keep the
    /// `$export` rules. The layer adds its own rules to what the policy returns: the query
    /// of an operation (by `POST` too) needs scopes on the types it reaches, as a search's
    /// does, and `patient/` scopes count neither for an operation on a population (a bulk
    /// export, an operation of the Patient type, of the whole system or on a Group) nor where
    /// the query names another patient. A request whose requirements (the policy's, each
    /// counted once, and those its query reaches) are more than 512 is refused with a bare
    /// 403 and a debug line on the `smart_auth::rejection` target.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Requirement, ResourceType};
    /// use smart_auth::{ScopeEnforcement, default_operation_policy};
    ///
    /// let enforcement = ScopeEnforcement::new().operation_policy(|operation, query| {
    ///     match operation.name.as_str() {
    ///         // $everything needs read on every type. `patient/` scopes count only on an
    ///         // instance: the patient in context, or another type's instance (such as
    ///         // `Encounter/[id]`), which the handler keeps inside the patient's
    ///         // compartment as it does for a read.
    ///         "everything" => Some(vec![Requirement::new(Interaction::Read, ResourceType::Any)]),
    ///         _ => default_operation_policy(operation, query),
    ///     }
    /// });
    /// ```
    pub fn operation_policy<F>(mut self, policy: F) -> Self
    where
        F: Fn(&Operation, Option<&str>) -> Option<Vec<Requirement>> + Send + Sync + 'static,
    {
        self.operations = Arc::new(policy);
        self
    }

    /// Checks one entry of a batch or transaction bundle, which the layer lets through to
    /// the handler: `method` and `url` are the entry's `request.method` and `request.url`
    /// (relative to the FHIR base, such as `Patient/123` or `Observation?code=x`). An entry
    /// with a `request.ifNoneExist`, whatever its method, goes to
    /// [`check_conditional_create_entry`](Self::check_conditional_create_entry) instead.
    ///
    /// ```
    /// # fn handle(enforcement: &smart_auth::ScopeEnforcement, claims: &smart_auth::SmartClaims) -> Result<(), smart_auth::AuthError> {
    /// for (method, url) in [("GET", "Patient/1"), ("POST", "Observation")] {
    ///     enforcement.check_bundle_entry(claims, method, url)?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The 403 `insufficient_scope` error the layer would answer for that request alone:
    /// with a scope hint where one scope would do, without one for an entry that is no FHIR
    /// interaction or needs more than 512 requirements; the 400 `invalid_request` one
    /// ([`ErrorKind::MalformedRequest`]) for a URL that cannot be read one way only, holds
    /// a `#` (a fragment to a URI parser, criteria to a server that splits at `?` alone)
    /// or is longer than 64 KiB (about the longest target hyper reads). Nested batches are
    /// refused.
    pub fn check_bundle_entry(
        &self,
        claims: &SmartClaims,
        method: &str,
        url: &str,
    ) -> Result<(), AuthError> {
        self.check_entry(method, url, None, claims)
    }

    /// Checks one entry of a batch or transaction bundle that carries a
    /// `request.ifNoneExist`: a conditional create, when its `request.method` is `POST`.
    /// The server searches before it creates, so the entry needs `s` on the type besides
    /// `c` (an answer that the resource exists would otherwise tell a create-only client
    /// what a search finds), and the search criteria need `s` on every other type they look
    /// into, as a search's query does. `method` is the entry's `request.method`, `url` its
    /// `request.url`, such as `Patient`, and `if_none_exist` its `request.ifNoneExist`,
    /// such as `identifier=http://h|1`. Any other method with `ifNoneExist` is refused: a
    /// server ignores the criteria there and runs the method (a `DELETE` so marked would
    /// otherwise be checked as a create).
    ///
    /// ```
    /// # fn handle(enforcement: &smart_auth::ScopeEnforcement, claims: &smart_auth::SmartClaims) -> Result<(), smart_auth::AuthError> {
    /// enforcement.check_conditional_create_entry(claims, "POST", "Patient", "identifier=http://h|1")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The 403 `insufficient_scope` error the layer would answer for that request alone
    /// (a nested batch is refused); the 400 `invalid_request` one
    /// ([`ErrorKind::MalformedRequest`]) for a method other than `POST`, criteria longer
    /// than 8 KiB or holding a `#`, or a URL [`check_bundle_entry`](Self::check_bundle_entry)
    /// refuses so.
    pub fn check_conditional_create_entry(
        &self,
        claims: &SmartClaims,
        method: &str,
        url: &str,
        if_none_exist: &str,
    ) -> Result<(), AuthError> {
        if method != "POST" {
            return Err(malformed_request());
        }
        let criteria = CreateCriteria::of(if_none_exist.as_bytes())?;
        self.check_entry(method, url, Some(&criteria), claims)
    }

    /// Checks a bundle entry's request, `url` relative to the base.
    fn check_entry(
        &self,
        method: &str,
        url: &str,
        if_none_exist: Option<&CreateCriteria>,
        claims: &SmartClaims,
    ) -> Result<(), AuthError> {
        if url.len() > MAX_ENTRY_URL || url.contains('#') {
            return Err(malformed_request());
        }
        let relative = url.trim_start_matches('/');
        // A nested batch or a system search: only `*` scopes could allow it.
        if method == "POST" && (relative.is_empty() || relative.starts_with('?')) {
            return Err(forbidden());
        }
        let base = self.classifier.base_path().trim_end_matches('/');
        let path = format!("{base}/{relative}");
        let query = path.split_once('?').map(|(_, query)| query);
        self.check(
            method,
            &path,
            query,
            if_none_exist,
            Origin::BundleEntry,
            claims,
        )
        .map(|_| ())
    }

    /// The FHIR base path it enforces under, without a trailing slash (`""` for the
    /// root): the layer's, once given to a layer.
    ///
    /// ```
    /// use smart_auth::{ScopeEnforcement, SmartAuthLayer};
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir/")
    ///     .enforce_scopes(ScopeEnforcement::new())
    ///     .build()?;
    /// let enforcement = layer.scope_enforcement().expect("enforcement is on");
    /// assert_eq!(enforcement.base_path(), "/fhir"); // without the trailing slash
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn base_path(&self) -> &str {
        self.classifier.base_path()
    }

    /// This enforcement knowing the layer's FHIR base URL (see `base_url`).
    pub(crate) fn with_base_url(mut self, base_url: &str) -> Self {
        self.base_url = Some(base_url.trim_end_matches('/').into());
        self
    }

    /// This enforcement at the layer's base path, with the same resource types.
    pub(crate) fn at_base(mut self, base_path: &str) -> Self {
        self.classifier = self.classifier.rebased(base_path);
        self.shorter_bases = shorter_bases(self.classifier.base_path());
        self
    }

    /// Checks a verified HTTP request: its method, the path and query clients sent (the
    /// original URI inside `Router::nest`), and the search criteria of a `POST` that carries
    /// `If-None-Exist`. `body_follows`: whether the request's body is known to hold more
    /// than nothing whatever its headers say (an HTTP/2 body needs no `Content-Length`).
    ///
    /// Returns the [`PagingLink`] to put into the request when it was let through as one.
    pub(crate) fn check_request<B>(
        &self,
        request: &http::Request<B>,
        body_follows: bool,
        claims: &SmartClaims,
    ) -> Result<Option<PagingLink>, AuthError> {
        // A path rewritten otherwise than by nesting is no path the layer can read (the
        // server's setup, not the client, is at fault: no 400).
        let uri = original_uri(request).ok_or_else(forbidden)?;
        // A target without a path is the authority form (`host:port`), for CONNECT only
        // (RFC 9112 section 3.2.3): no route matches it, so axum hands it to a fallback
        // (a proxy, say, that forwards it as `/`), and it is no request for the root.
        let path = uri.path_and_query().ok_or_else(malformed_request)?.as_str();
        let headers = request.headers();
        // The SMART configuration needs no scope: with discovery protected
        // (`protect_discovery_and_metadata`), any valid token reads it, as any reads the
        // capability statement. GET and HEAD only, and no method override.
        let method = request.method();
        // Most requests carry none of these: one pass over the few names decides, and
        // every override header's name starts with `x`.
        let (mut overridden_method, mut path_header, mut cascade_named) = (false, false, false);
        for name in headers.keys() {
            if name.as_str().starts_with('x') {
                overridden_method |= is_named(name, &METHOD_OVERRIDE_HEADERS);
                path_header |= is_named(name, &PATH_OVERRIDE_HEADERS);
                cascade_named |= is_named(name, &[CASCADE_HEADER]);
            }
        }
        // A path-override header naming another path (or query) than the request line's
        // names a second request, checked below: none of the shortcuts applies to it.
        let overridden_path = path_header
            && values_named(headers, &PATH_OVERRIDE_HEADERS)
                .any(|value| !names_same_target(value.as_bytes(), path));
        let method_parameters = uri.query().is_some_and(has_method_parameter);
        // A token-only path (a bulk export's status or output) is an HTTP route of its own:
        // any method, and no method override, changes that. Bundle entries never take it.
        if !overridden_path
            && self
                .any_token_under
                .iter()
                .any(|under| self.classifier.is_at_or_under(uri.path(), under))
        {
            return Ok(None);
        }
        if bodiless_method_with_form(method, headers, body_follows) {
            return Err(malformed_request());
        }
        let bodiless = method == http::Method::GET || method == http::Method::HEAD;
        let has_body = || body_follows || announces_body(headers);
        if bodiless
            && !overridden_method
            && !method_parameters
            && !overridden_path
            && crate::scopes::is_smart_configuration_path(uri.path(), self.classifier.base_path())
        {
            return Ok(None);
        }
        let origin = if !bodiless && carries_form_body(method, headers, has_body) {
            Origin::HttpWithForm
        } else {
            Origin::Http {
                body: has_body(),
                cascade_header: cascade_named,
            }
        };
        // The request as `method` on `target` (a path and query as the request line writes
        // them: its own, or one a path-override header names).
        // The `If-None-Exist` criteria, read once for every `POST` checked.
        let if_none_exist_read = std::cell::OnceCell::new();
        let check_as = |method: &str, target: &str| {
            let if_none_exist = if method == "POST" {
                if_none_exist_read
                    .get_or_init(|| if_none_exist_criteria(headers))
                    .as_ref()
                    .map_err(Clone::clone)?
                    .as_ref()
            } else {
                None
            };
            let query = target.split_once('?').map(|(_, query)| query);
            self.check(method, target, query, if_none_exist, origin, claims)
        };
        let passed = check_as(method.as_str(), path)?;
        // Marked as a link when any method a service behind may run lets it through as one.
        let mut passed_as_link = passed == Passed::PagingLink;
        // A method override names a second method: a service behind that honours it runs
        // that interaction, so the request needs its scopes too. Each method is checked
        // once, however often it is named (thousands of `_method=HEAD` would otherwise
        // check the whole query as often); a method that fails ends the request, so the
        // list holds only methods that passed. No client names more than one: a request
        // naming more than `MAX_OVERRIDE_METHODS` others is refused (outside the base,
        // where any method may pass, the list would otherwise grow with the query).
        let mut checked: Vec<String> = Vec::new();
        let mut check_override = |value: Option<&str>| {
            let overridden = value
                .map(str::trim)
                .filter(|text| crate::bearer::is_token(text.as_bytes()))
                .ok_or_else(malformed_request)?;
            // `HEAD` is checked as `GET` (the same interaction), so one stands for both.
            let same = |one: &str, other: &str| {
                let reads = |name: &str| {
                    name.eq_ignore_ascii_case("HEAD") || name.eq_ignore_ascii_case("GET")
                };
                one.eq_ignore_ascii_case(other) || (reads(one) && reads(other))
            };
            if !same(overridden, method.as_str())
                && !checked.iter().any(|done| same(done, overridden))
            {
                if checked.len() == MAX_OVERRIDE_METHODS {
                    return Err(malformed_request());
                }
                let overridden = overridden.to_ascii_uppercase();
                passed_as_link |= check_as(&overridden, path)? == Passed::PagingLink;
                checked.push(overridden);
            }
            Ok::<(), AuthError>(())
        };
        if overridden_method {
            for value in values_named(headers, &METHOD_OVERRIDE_HEADERS) {
                check_override(value.to_str().ok())?;
            }
        }
        if method_parameters {
            for value in method_parameter_values(uri.query().unwrap_or_default()) {
                check_override(value.as_deref())?;
            }
        }
        // A path-override header names a second request, with this method: a service
        // behind that honours it serves that path, so it needs its scopes too. Its value is
        // a path (`/…`, with a query perhaps) as the request line writes one; anything
        // else, a request naming other methods too (which pairs would run?), or more such
        // paths than methods a request may name, is refused.
        if overridden_path {
            if overridden_method || method_parameters {
                return Err(malformed_request());
            }
            let mut named_paths = 0;
            for value in values_named(headers, &PATH_OVERRIDE_HEADERS) {
                // A `#` ends the query for a URI parser and not for others.
                let named = value
                    .to_str()
                    .ok()
                    .filter(|named| named.starts_with('/') && !named.contains('#'))
                    .ok_or_else(malformed_request)?;
                if names_same_target(named.as_bytes(), path) {
                    continue;
                }
                named_paths += 1;
                if named_paths > MAX_OVERRIDE_METHODS || named.len() > MAX_SEARCH_IN_A_HEADER {
                    return Err(malformed_request());
                }
                // Its query is read as the request line's is: a `_method` in it names
                // another method too, and an `access_token` a second token (RFC 6750
                // section 2: one way of sending a token per request).
                if target_names_method(named.as_bytes())
                    || named
                        .split_once('?')
                        .is_some_and(|(_, query)| crate::bearer::has_access_token_parameter(query))
                {
                    return Err(malformed_request());
                }
                // A page named by a header is served by a service behind that honours it,
                // while the mark for the handler would name the request line's page (or
                // none): refused.
                if check_as(method.as_str(), named)? == Passed::PagingLink {
                    return Err(malformed_request());
                }
            }
        }
        Ok(
            match (passed_as_link, &self.paging_parameter, uri.query()) {
                (true, Some(parameter), Some(query)) => {
                    paging_link_page(query, parameter).map(|page| PagingLink {
                        page: page.to_owned(),
                    })
                }
                _ => None,
            },
        )
    }

    /// Checks a verified request as `method`; `if_none_exist` is the search criteria of an
    /// `If-None-Exist` header (a conditional create), if it carries one; `origin`, where the
    /// request comes from (an HTTP request, with or without a form body, or a bundle entry).
    pub(crate) fn check(
        &self,
        method: &str,
        path_and_query: &str,
        query: Option<&str>,
        if_none_exist: Option<&CreateCriteria>,
        origin: Origin,
        claims: &SmartClaims,
    ) -> Result<Passed, AuthError> {
        let form_body = origin == Origin::HttpWithForm;
        let request = match self.classifier.classify(method, path_and_query) {
            Classified::OutsideBase
                if self.any_token_outside_base
                    && !reads_as_fhir_under_a_shorter_base(
                        &self.shorter_bases,
                        method,
                        path_and_query,
                    ) =>
            {
                return Ok(Passed::Checked);
            }
            Classified::OutsideBase => return Err(forbidden()),
            Classified::NotFhir => return Err(forbidden()),
            Classified::Malformed => return Err(malformed_request()),
            Classified::Fhir(request) if if_none_exist.is_some() => request.with_if_none_exist(),
            Classified::Fhir(request) => request,
        };
        // A `POST` of the base with a body is a batch or transaction to the server, whatever
        // its query says: only a bodiless one is a page.
        let paging = match (&request, origin) {
            (FhirRequest::SearchSystem { via_post: false }, Origin::Http { .. }) => true,
            (FhirRequest::BatchOrTransaction, Origin::Http { body, .. }) => !body,
            _ => false,
        };
        if let Some(parameter) = &self.paging_parameter
            && paging
            && let Some(query) = query
            && paging_link_page(query, parameter).is_some()
        {
            // The page of a search checked when it ran; what its includes reach needs the
            // scopes a search's would.
            let reached = types_reached(None, query);
            if reached.len() > MAX_REQUIREMENTS {
                return Err(too_many_requirements(reached.len()));
            }
            return match reached
                .iter()
                .find(|requirement| !claims.scope_set().permits_requirement(requirement))
            {
                None => Ok(Passed::PagingLink),
                Some(requirement) => Err(AuthError::insufficient_scope(
                    claims.scope_hint(requirement.interaction, requirement.resource_type.as_str()),
                )),
            };
        }
        // A form body is in FHIR a search's or an operation's parameters (FHIR's `http.html`
        // summary) and nothing else: on a write it can only be for a service that reads
        // forms, and Spring's `HiddenHttpMethodFilter`, gorilla, Symfony and Rack read a
        // `_method` override from it, which the layer does not see.
        if form_body
            && !matches!(
                request,
                FhirRequest::SearchType { .. }
                    | FhirRequest::SearchCompartment { .. }
                    | FhirRequest::SearchSystem { .. }
                    | FhirRequest::Operation(_)
            )
        {
            return Err(forbidden());
        }
        // HAPI FHIR reads a batch or transaction's `_cascade` and `X-Cascade` for each of
        // its delete entries, which a handler checking the entries one by one does not see:
        // such a bundle needs `d` on every type from `user/` or `system/` scopes first.
        let asks_cascade = || {
            matches!(
                origin,
                Origin::Http {
                    cascade_header: true,
                    ..
                }
            ) || query.is_some_and(|query| names_parameter(query, "_cascade"))
        };
        if matches!(request, FhirRequest::BatchOrTransaction) && asks_cascade() {
            let every_type = Requirement::new(Interaction::Delete, ResourceType::Any);
            if !claims
                .scope_set_without_patient_scopes()
                .permits_requirement(&every_type)
            {
                return Err(refused(claims, &[&every_type], false));
            }
        }
        // HAPI FHIR's `_expunge` turns a delete into a delete-expunge, which also purges
        // every version of what it deletes: more than the FHIR delete `d` grants, and what
        // its `$expunge` and `$delete-expunge` operations do, which the default operation
        // policy refuses. No scope allows it.
        if matches!(
            request,
            FhirRequest::Delete { .. } | FhirRequest::ConditionalDelete { .. }
        ) && query.is_some_and(|query| names_parameter(query, "_expunge"))
        {
            return Err(forbidden());
        }
        let requirements = match request.access() {
            AccessRule::Public => return Ok(Passed::Checked),
            AccessRule::PerEntry if self.handler_checks_bundle_entries => {
                return Ok(Passed::Checked);
            }
            AccessRule::PerEntry => return Err(forbidden()),
            AccessRule::Requires(requirements) => requirements,
            AccessRule::OperationPolicy => {
                let crate::scopes::FhirRequest::Operation(operation) = &request else {
                    return Err(forbidden());
                };
                // A POST operation's parameters are in its body, which the layer does not
                // read: the policy sees no query, so `$export` by POST needs the scopes of
                // an export of every type, whatever a stray query says.
                let parameters = if method == "POST" { None } else { query };
                match (self.operations)(operation, parameters) {
                    // Each kept once, as the layer's own lists are: the bound below
                    // counts distinct requirements.
                    Some(requirements) => {
                        let mut distinct = Requirements::default();
                        distinct.extend(requirements);
                        distinct.into_vec()
                    }
                    None => return Err(forbidden()),
                }
            }
        };
        // A search of every type (system-wide, or of a compartment: `Patient/123/*`) that
        // `_type` limits needs `s` on each type it names rather than on every type: `_type`
        // read as an export's is (every reading of the query, names matched leniently too;
        // no `_type` in one reading, an empty entry or `*` is every type, a name no scope
        // spells is refused). Not for `POST _search`, whose parameters are in the body.
        // (`_type` is read only for such a search: other requests do not pay for it.)
        let system_search_types = match &request {
            FhirRequest::SearchSystem { via_post: false }
            | FhirRequest::SearchCompartment {
                resource_type: None,
                via_post: false,
                ..
            } => query.and_then(type_parameter),
            _ => None,
        };
        let requirements = match system_search_types {
            Some(types) => export_requirements(crate::scopes::OperationLevel::System, Some(&types)),
            None => requirements,
        };
        // The criteria a request searches with: a search's or a conditional write's query,
        // a history's, an operation's (invoked by `POST`, its parameters are in the body,
        // but a server may read a query beside them), and a conditional create's
        // `If-None-Exist`.
        let criteria: Option<&str> = match &request {
            FhirRequest::ConditionalCreate { .. } => if_none_exist.map(|c| c.joined.as_str()),
            FhirRequest::SearchType { .. }
            | FhirRequest::SearchCompartment { .. }
            | FhirRequest::SearchSystem { .. }
            | FhirRequest::ConditionalUpdate { .. }
            | FhirRequest::ConditionalPatch { .. }
            | FhirRequest::ConditionalDelete { .. }
            | FhirRequest::HistoryInstance { .. }
            | FhirRequest::HistoryType { .. }
            | FhirRequest::HistorySystem
            | FhirRequest::Operation(_) => query,
            _ => None,
        };
        let mut reached = criteria
            .map(|criteria| types_reached(request.resource_type(), criteria))
            .unwrap_or_default();
        // A delete that cascades (HAPI FHIR's `_cascade=delete` or `X-Cascade: delete`)
        // also deletes every resource that refers to the one deleted, of any type and any
        // patient: it needs `d` on every type, from `user/` or `system/` scopes.
        let cascade = matches!(
            request,
            FhirRequest::Delete { .. } | FhirRequest::ConditionalDelete { .. }
        ) && asks_cascade();
        if cascade {
            reached.push(Requirement::new(Interaction::Delete, ResourceType::Any));
        }
        // Each requirement is checked against every scope of the token: a query naming
        // thousands of made-up types (`_type=Aaa,Aab,...`) would cost that many scans.
        if requirements.len() + reached.len() > MAX_REQUIREMENTS {
            return Err(too_many_requirements(requirements.len() + reached.len()));
        }
        // `patient/` scopes reach the patient in context only: a path naming another Patient
        // (the Patient itself or its compartment), or criteria naming one, need `user/` or
        // `system/` scopes, and so does an operation on a population: a bulk export, or
        // any operation of the Patient type or the whole system (`Patient/$everything`), or
        // on a Group (`Group/1/$everything`).
        // A conditional write must pin the patient in context in its criteria: the server
        // acts on whatever its search finds, in every patient's data, which a handler cannot
        // narrow afterwards.
        let other_patient = claims.patient().is_some_and(|in_context| {
            request
                .named_patient()
                .is_some_and(|named| named != in_context)
                || criteria.is_some_and(|criteria| {
                    search_names_other_patient(
                        &request,
                        criteria,
                        in_context,
                        self.base_url.as_deref(),
                    )
                })
                || conditional_write_type(&request).is_some_and(|resource_type| {
                    let pinned = |criteria: &str| pins_patient(criteria, resource_type, in_context);
                    // A conditional create's criteria must pin in each way a server may
                    // read them; a write's query in its own.
                    !match (&request, if_none_exist) {
                        (FhirRequest::ConditionalCreate { .. }, Some(create)) => {
                            create.readings.iter().all(|reading| pinned(reading))
                        }
                        _ => criteria.is_some_and(pinned),
                    }
                })
        });
        let population_operation = matches!(&request, FhirRequest::Operation(operation)
            if operation.name.eq_ignore_ascii_case("export")
                || operation.resource_type.as_deref() == Some("Group")
                || (operation.id.is_none()
                    && operation.resource_type.as_deref().is_none_or(|name| name == "Patient")));
        let patient_scopes_count = !(other_patient || population_operation || cascade);
        let scopes = if patient_scopes_count {
            claims.scope_set()
        } else {
            claims.scope_set_without_patient_scopes()
        };
        // A handler applies the filters of the whole scope set (`require_constraints`),
        // `patient/` scopes included: where those must not count, only whole-type grants do.
        let handler_filters = self.handler_filters && patient_scopes_count;
        // A conditional create's criteria must keep a granular filter in each way a server
        // may read them; a query in its own. Each is read once, however many requirements
        // it is checked for (`_type` may name hundreds).
        let create_readings: Option<Vec<SearchCriteria<'_>>> = match (&request, if_none_exist) {
            (FhirRequest::ConditionalCreate { .. }, Some(create)) => Some(
                create
                    .readings
                    .iter()
                    .map(|reading| SearchCriteria::new(Some(reading)))
                    .collect(),
            ),
            _ => None,
        };
        let query_reading = SearchCriteria::new(criteria);
        let readings = create_readings
            .as_deref()
            .unwrap_or(std::slice::from_ref(&query_reading));
        let allowed = |requirement: &Requirement| {
            readings
                .iter()
                .all(|reading| allows(scopes, &request, requirement, reading, handler_filters))
        };
        // Other types a search brings back or looks into need their own whole-type grant:
        // a granular scope's filter cannot apply to them.
        let unmet: Vec<&Requirement> = requirements
            .iter()
            .filter(|requirement| !allowed(requirement))
            .chain(
                reached
                    .iter()
                    .filter(|requirement| !scopes.permits_requirement(requirement)),
            )
            .collect();
        if unmet.is_empty() {
            Ok(Passed::Checked)
        } else {
            Err(refused(claims, &unmet, patient_scopes_count))
        }
    }
}

/// The most scopes a 403's hint names: the request's own, and a few its criteria reach.
const MAX_HINTED_SCOPES: usize = 8;

/// The 403 for the requirements the token's scopes do not meet: `insufficient_scope` with
/// a hint naming a scope for each (RFC 6750 section 3: the scope the request needs; at
/// most [`MAX_HINTED_SCOPES`], each once, in the order the request needs them), or without
/// one where no scope of the token's context could meet them (`patient/` scopes where they
/// do not count).
fn refused(claims: &SmartClaims, unmet: &[&Requirement], patient_scopes_count: bool) -> AuthError {
    if !patient_scopes_count && claims.hint_context() == Context::Patient {
        return forbidden();
    }
    let mut hints: Vec<String> = Vec::new();
    for requirement in unmet {
        let hint = claims.scope_hint(requirement.interaction, requirement.resource_type.as_str());
        if !hints.contains(&hint) {
            hints.push(hint);
        }
        if hints.len() == MAX_HINTED_SCOPES {
            break;
        }
    }
    AuthError::insufficient_scope(hints.join(" "))
}

/// How [`ScopeEnforcement::check`] let a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Passed {
    /// Its scopes allow it.
    Checked,
    /// A paging link ([`ScopeEnforcement::handler_checks_paging_links`]), let through
    /// unchecked: the handler binds the page to its grant.
    PagingLink,
}

/// In the extensions of a request the layer let through as a paging link
/// ([`ScopeEnforcement::handler_checks_paging_links`]) without checking its scopes: the
/// handler must serve the page only under the grant whose search made it (also when only
/// a method override names a method that makes the request a link). The layer puts it into
/// no request it checked (an outer layer's mark is left in place: it only asks for more).
///
/// ```
/// # #[cfg(feature = "axum")]
/// async fn page(
///     claims: smart_auth::SmartClaims,
///     link: Option<axum::Extension<smart_auth::PagingLink>>,
/// ) -> &'static str {
///     if let Some(axum::Extension(link)) = link {
///         // ... look the page `link.page()` up, and serve it only if its search was made
///         // under this grant (client, user, patient in context, scopes) ...
///         # let _ = (link.page(), claims);
///     }
///     "page"
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagingLink {
    page: String,
}

impl PagingLink {
    /// The page's id: the value of the paging parameter, as sent (not decoded).
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Extension, Router, body::Body, routing::get};
    /// use smart_auth::{PagingLink, ScopeEnforcement};
    /// use smart_auth::testing::{ClaimsBuilder, ClaimsLayer};
    /// use tower::ServiceExt as _;
    ///
    /// let enforcement = ScopeEnforcement::new().handler_checks_paging_links("_getpages");
    /// let claims = ClaimsBuilder::new().scope("system/Observation.rs").build();
    /// let app = Router::new()
    ///     .route("/fhir", get(|link: Option<Extension<PagingLink>>| async move {
    ///         link.map(|Extension(link)| link.page().to_owned()).unwrap_or_default()
    ///     }))
    ///     .layer(ClaimsLayer::new(claims).enforce_scopes(enforcement, "/fhir"));
    ///
    /// let request = http::Request::get("/fhir?_getpages=a1b2c3&_getpagesoffset=20").body(Body::empty())?;
    /// let response = app.oneshot(request).await?;
    /// let body = axum::body::to_bytes(response.into_body(), 1024).await?;
    /// assert_eq!(body, "a1b2c3");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub fn page(&self) -> &str {
        &self.page
    }
}

/// Whether the scopes meet one requirement of a classified request. A granular scope
/// counts only where its filter is applied: by the request's own criteria (a type search by
/// `GET`, whose parameters the layer sees, or the search of a conditional write, whose
/// criteria the server runs as they are), or, for reads and other searches, by the handler
/// when `handler_filters` says so. It never counts for operations, nor for `c`, `u` or `d`
/// (see [`ScopeSet::constraints`]).
///
/// [`ScopeSet::constraints`]: crate::scopes::ScopeSet::constraints
fn allows(
    scopes: &ScopeSet,
    request: &FhirRequest,
    requirement: &Requirement,
    criteria: &SearchCriteria<'_>,
    handler_filters: bool,
) -> bool {
    if scopes.permits_requirement(requirement) {
        return true;
    }
    let interaction = requirement.interaction;
    let resource_type = requirement.resource_type.as_str();
    match request {
        FhirRequest::Operation(_) => false,
        // The server runs a conditional write's search itself, unfiltered: only criteria
        // that carry a granular scope's filter keep it inside.
        FhirRequest::ConditionalCreate { .. }
        | FhirRequest::ConditionalUpdate { .. }
        | FhirRequest::ConditionalPatch { .. }
        | FhirRequest::ConditionalDelete { .. } => {
            interaction == Interaction::SearchType
                && scopes.permits_search_criteria(resource_type, criteria)
        }
        FhirRequest::SearchType {
            via_post: false, ..
        }
        | FhirRequest::SearchCompartment {
            via_post: false, ..
        } if interaction == Interaction::SearchType
            && scopes.permits_search_criteria(resource_type, criteria) =>
        {
            true
        }
        // A patch reads the resource it patches (its answer, a JSON Patch `test`), which
        // no handler filter covers: handlers filter what reads, histories and searches
        // return. Its `r` is a whole-type grant or none.
        FhirRequest::Patch { .. } => false,
        _ => handler_filters && scopes.grants_some(None, interaction, resource_type),
    }
}

/// What a search's query needs beyond its own type: `_include` brings back the resources
/// it follows (`r` on the target type), `_revinclude` the resources that refer to the
/// results (`s` on that type; each of a comma-separated list for both), `_has` and chained
/// parameters search other types (`s` on each, a `_has` after a chain's `.` too, and a
/// chained `_sort` key), `_list` reads a List (`r` on List) and `_in` a List, Group or
/// CareTeam (`r` on each). A type the query does not name (`_include=*`,
/// `Observation:subject` without a target type, an untyped chain link `subject.name`) is
/// every type, but for a link whose parameter can point at one type only, of the searched
/// type (`searched`) or of the type the link before it named (see [`chain_reach`]), and so
/// are the parameters whose reach the layer cannot tell: `_query` (a
/// named query the server defines), `_filter` (an expression that may chain anywhere),
/// `_graph` (a GraphDefinition to follow) and `_contained` other than `false` (which
/// brings back the resources that contain the matches). The query is split at `;` as well
/// as `&`, as some servers split it; parameter names are matched as a lenient server matches
/// them ([`lenient_parameter_name`]: ASCII case ignored, spaces, control characters and `+`
/// around them trimmed); a name that does not decode strictly, or holds anything but
/// printable ASCII inside, counts as reaching every type when it has a value. Each
/// requirement is listed once, however often the query repeats it.
fn types_reached(searched: Option<&str>, query: &str) -> Vec<Requirement> {
    // Past the bound the request is refused whatever else it reaches: nothing more is
    // kept (a 60 KiB `_revinclude` list names thousands of types).
    let mut reached = Requirements {
        stop_past_bound: true,
        ..Requirements::default()
    };
    add_types_reached(searched, query, &mut reached);
    reached.into_vec()
}

/// Requirements in the order first found, each kept once: a query that repeats one
/// (`_in=,,,...`, thousands of the same `_include`) costs a lookup per repeat, not an
/// entry, so what a request holds grows with the distinct requirements it names.
#[derive(Default)]
struct Requirements {
    list: Vec<Requirement>,
    /// The list's requirements once it is longer than [`Requirements::SCANNED`]: a short
    /// list (nearly every request's) is searched instead.
    seen: std::collections::HashSet<Requirement>,
    /// Whether to stop keeping requirements one past [`MAX_REQUIREMENTS`]: for the
    /// layer's own lists, which it refuses past the bound, never for a list a policy
    /// returns (a caller may filter it).
    stop_past_bound: bool,
}

impl Requirements {
    const SCANNED: usize = 16;

    fn push(&mut self, requirement: Requirement) {
        if self.stop_past_bound && self.list.len() > MAX_REQUIREMENTS {
            return;
        }
        let known = if self.list.len() <= Self::SCANNED {
            self.list.contains(&requirement)
        } else {
            if self.seen.is_empty() {
                self.seen.extend(self.list.iter().cloned());
            }
            self.seen.contains(&requirement)
        };
        if !known {
            if !self.seen.is_empty() {
                self.seen.insert(requirement.clone());
            }
            self.list.push(requirement);
        }
    }

    fn into_vec(self) -> Vec<Requirement> {
        self.list
    }
}

impl Extend<Requirement> for Requirements {
    fn extend<I: IntoIterator<Item = Requirement>>(&mut self, requirements: I) {
        for requirement in requirements {
            self.push(requirement);
        }
    }
}

/// Adds what [`types_reached`] finds in `query` to `reached`; `searched`, the type the
/// query searches, when one is (the first link of a chain is its parameter).
fn add_types_reached(searched: Option<&str>, query: &str, reached: &mut Requirements) {
    let every_type = || Requirement::new(Interaction::SearchType, ResourceType::Any);
    for pair in query.split(['&', ';']).filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(lenient) = lenient_raw_parameter_name(name) else {
            // A piece without `=` (`name=Dupont;Andr%C3%A9` split at `;`) asks for nothing.
            if pair.contains('=') {
                reached.push(every_type());
            }
            continue;
        };
        let name: &str = &lenient;
        let raw_value = value;
        // Only some values name types; a bad escape there leaves them open.
        let value = || percent_decode_strict(raw_value).unwrap_or_default();
        let base = name.split(':').next().unwrap_or_default();
        // Every parameter with a rule of its own starts with `_`; any other may chain.
        if !base.starts_with('_') {
            chain_reach(searched, name, reached);
            continue;
        }
        let is = |expected: &str| base.eq_ignore_ascii_case(expected);
        if is("_include") {
            let value = value();
            if include_reaches_every_type(&value) {
                reached.push(requirement_on(Interaction::Read, "*"));
            }
            for include in value.split(',') {
                let target = include_target(include).unwrap_or("*");
                reached.push(requirement_on(Interaction::Read, target));
            }
        } else if is("_revinclude") {
            for include in value().split(',') {
                let source = include.split(':').next().unwrap_or("*");
                reached.push(requirement_on(Interaction::SearchType, source));
            }
        } else if is("_query") || is("_filter") || is("_graph") {
            reached.push(every_type());
        } else if is("_contained") {
            if value().trim() != "false" {
                reached.push(every_type());
            }
        } else if is("_list") {
            reached.push(requirement_on(Interaction::Read, "List"));
        } else if is("_in") {
            // `_in=Group/1` names its container's type; an id alone may be any of them.
            const CONTAINERS: [&str; 3] = ["List", "Group", "CareTeam"];
            for reference in value().split(',') {
                match reference.trim().split_once('/') {
                    Some((container, _)) if CONTAINERS.contains(&container) => {
                        reached.push(requirement_on(Interaction::Read, container));
                    }
                    Some(_) => reached.push(requirement_on(Interaction::Read, "*")),
                    None => reached.extend(
                        CONTAINERS.map(|container| requirement_on(Interaction::Read, container)),
                    ),
                }
            }
        } else if is("_sort") {
            // A sort key may be a chain (`-subject:Patient.name`) on servers that allow it;
            // one with a bad escape may be any chain to a server that keeps it as sent.
            match percent_decode_strict(raw_value) {
                Some(keys) => {
                    for key in keys.split(',') {
                        chain_reach(searched, key.trim().trim_start_matches('-'), reached);
                    }
                }
                None => reached.push(every_type()),
            }
        } else {
            chain_reach(searched, name, reached);
        }
    }
}

/// `interaction` on the type `name`, or on every type when `name` is no type name.
fn requirement_on(interaction: Interaction, name: &str) -> Requirement {
    let resource_type = match ResourceType::parse(name) {
        Some(ResourceType::Named(name)) => ResourceType::Named(name),
        _ => ResourceType::Any,
    };
    Requirement::new(interaction, resource_type)
}

/// What a parameter name (or a sort key) searches beyond its own type: `_has:Type:...`,
/// possibly nested and after a chain's `.` too (`subject:Patient._has:Group:member:_id`),
/// and each link of a chain but the last (`reference[:Type].parameter...`), `s` on the
/// type named, or where none is on the one type the link's parameter can point at
/// ([`single_target_type`], for a link whose type is known: the first of a search of
/// `searched`, and each after a link that named or implied its type), else on every type.
fn chain_reach(searched: Option<&str>, name: &str, reached: &mut Requirements) {
    let searched_on = |name: &str| requirement_on(Interaction::SearchType, name);
    if name.contains('_') {
        let mut parts = name.split([':', '.']);
        while let Some(part) = parts.next() {
            if part.eq_ignore_ascii_case("_has") {
                reached.push(searched_on(parts.next().unwrap_or("*")));
            }
        }
    }
    if let Some((links, _last)) = name.rsplit_once('.') {
        // The type whose parameter the next link is.
        let mut source = searched;
        for link in links.split('.') {
            let target = match link.rsplit_once(':') {
                Some((_, target)) => Some(target),
                None => source.and_then(|source| single_target_type(source, link)),
            };
            reached.push(searched_on(target.unwrap_or("*")));
            source = target;
        }
    }
}

/// Whether the criteria a request searches with (a search's query, a conditional write's,
/// a history's or a `GET` operation's, a conditional create's `If-None-Exist`) may ask for
/// another patient's data than `in_context`'s:
/// - a `patient` or `subject` parameter (no modifier, or `:Patient`) whose value names
///   another Patient (`456`, `Patient/456`, `Patient/456/_history/2`, or an absolute URL
///   ending so; one of a comma-separated list is enough), or any absolute URL of a Patient
///   outside the layer's FHIR base URL, the one in context too
///   (`https://other.example/fhir/Patient/123`: another server's), or an empty type
///   (`/456`);
/// - `_id` naming another id, or any value with a `/` (`Observation/456`: servers take
///   the id after the last `/`), where Patients are searched (a search, conditional write,
///   history or operation of the Patient type; a system search or a compartment search of
///   every type unless its `_type` leaves Patient out), or `_id` with a modifier other than `:missing` there;
/// - a `patient` or `subject` parameter the layer cannot compare with the patient in
///   context: chained (`patient._id=`, `patient.identifier=`) or with another modifier
///   (`patient:identifier=`), which are read as naming another patient;
/// - the same in a later link of a chain (`encounter.patient=456`,
///   `subject:Device.patient=456`, `encounter.patient.name=x`), and in any parameter
///   with the `:Patient` type modifier (`performer:Patient=456`);
/// - any parameter whose value is written as another Patient's reference
///   (`Appointment?actor=Patient/456`, `Coverage?beneficiary=Patient/456`), and a bare
///   id in a parameter that can point at a Patient only (`Coverage?beneficiary=456`,
///   `ResearchSubject?individual=456`).
///
/// The query is read as servers splitting at `&` and at `;` read it. Parameters in the
/// body of a `POST _search` are not seen.
///
/// `own_base`: the layer's FHIR base URL, under which an absolute URL is read as the
/// relative reference after it (HAPI FHIR's client sends the absolute ids its parser
/// gives resources); any other absolute URL may be another server's.
fn search_names_other_patient(
    request: &FhirRequest,
    query: &str,
    in_context: &str,
    own_base: Option<&str>,
) -> bool {
    // A search of every type (`[base]?`, `Patient/123/*?`) searches Patients unless its
    // `_type` leaves them out.
    let types_include_patient = || {
        type_parameter(query).is_none_or(|types| {
            types.split(',').any(|name| {
                let name = name.trim_matches(|c: char| c <= ' ');
                name.eq_ignore_ascii_case("Patient") || matches!(name, "*" | "")
            })
        })
    };
    let searches_patients = match request {
        FhirRequest::SearchType { resource_type, .. } => resource_type == "Patient",
        FhirRequest::SearchCompartment { resource_type, .. } => match resource_type {
            Some(resource_type) => resource_type == "Patient",
            None => types_include_patient(),
        },
        FhirRequest::SearchSystem { .. } => types_include_patient(),
        FhirRequest::ConditionalUpdate { resource_type }
        | FhirRequest::ConditionalPatch { resource_type }
        | FhirRequest::ConditionalDelete { resource_type }
        | FhirRequest::ConditionalCreate { resource_type }
        | FhirRequest::HistoryType { resource_type } => resource_type == "Patient",
        FhirRequest::Operation(operation) => operation.resource_type.as_deref() == Some("Patient"),
        _ => false,
    };
    let names_other = |reference: &str| {
        let reference = own_base
            .and_then(|base| under_base(reference, base))
            .unwrap_or(reference);
        // The id is the last segment; with a type before it, that type must be Patient
        // (in any case, as a case-insensitive server reads it).
        let mut segments = reference.rsplit('/');
        let id = segments.next().unwrap_or_default();
        if id.is_empty() {
            return false;
        }
        match segments.next() {
            None => id != in_context,
            // An empty type (`/456`) is no type: HAPI reads the id alone.
            Some(resource_type)
                if resource_type.is_empty() || resource_type.eq_ignore_ascii_case("Patient") =>
            {
                // More before `Patient/[id]` (an absolute URL, `other/fhir/Patient/123`)
                // may be another server's patient of that id: the layer cannot tell this
                // server's base from another's.
                id != in_context || segments.next().is_some()
            }
            Some(_) => false,
        }
    };
    // `_id` names the searched type's resources whatever a value says before its last
    // `/` (HAPI takes the id part of `Observation/456`): only the id itself is the
    // patient in context.
    let other_id = |value: &str| {
        let value = value.trim();
        !value.is_empty() && value != in_context
    };
    // Whether a reference is written with the Patient type (`Patient/456`, an absolute URL
    // ending so, with a version or a trailing `/`), in any case.
    // (Most values are no reference at all: one scan decides.)
    let names_a_patient = |reference: &str| {
        reference.contains('/')
            && reference_readings(reference)
                .into_iter()
                .flatten()
                .any(|reading| {
                    reading
                        .rsplit('/')
                        .nth(1)
                        .is_some_and(|resource_type| resource_type.eq_ignore_ascii_case("Patient"))
                })
    };
    let other = |reference: &str| {
        reference_readings(reference)
            .into_iter()
            .flatten()
            .any(names_other)
    };
    both_readings(query).any(|(name, value)| {
        // A name no one can tell the meaning of may be any of these (with a value: a
        // piece without one, as `;` cuts `name=Dupont;Andr%C3%A9`, asks for nothing).
        let Some(name) = lenient_parameter_name(&name) else {
            return !value.is_empty();
        };
        // Nor can the layer read what an expression or a named query searches
        // (`_filter=subject eq Patient/456`).
        if name.starts_with('_') && !value.is_empty() {
            let base = name.split_once(':').map_or(name, |(base, _)| base);
            if ["_filter", "_query", "_graph"]
                .iter()
                .any(|parameter| base.eq_ignore_ascii_case(parameter))
            {
                return true;
            }
        }
        let is_patient = |name: &str| name.eq_ignore_ascii_case("Patient");
        // Whether a link of the name that is a patient reference names another patient:
        // the last link by its value (or any modifier but `:missing` and `:Patient`), a
        // link that another follows always, unless its type modifier names another type
        // (`subject:Group.name=x`).
        let patient_link_names_other = |modifier: Option<&str>, last: bool| match (last, modifier) {
            (false, None) => true,
            (false, Some(target)) => {
                is_patient(target)
                    || !matches!(ResourceType::parse(target), Some(ResourceType::Named(_)))
            }
            (true, None) => value.split(',').any(other),
            (true, Some(target)) if is_patient(target) => value.split(',').any(other),
            (true, Some(modifier)) => modifier != "missing",
        };
        fn split_link(link: &str) -> (&str, Option<&str>) {
            link.split_once(':')
                .map_or((link, None), |(base, modifier)| (base, Some(modifier)))
        }
        // Every link of a chain that is a patient reference: `patient` or `subject`, or
        // any parameter with the `:Patient` type modifier (`actor:Patient=456`), first
        // (`patient=456`) or later (`encounter.patient=456`, `encounter.patient.name=x`).
        let is_reference = |base: &str, modifier: Option<&str>| {
            base.eq_ignore_ascii_case("patient")
                || base.eq_ignore_ascii_case("subject")
                || modifier.is_some_and(is_patient)
        };
        let (first, chained) = name
            .split_once('.')
            .map_or((name, false), |(first, _)| (first, true));
        let (base, modifier) = split_link(first);
        if !chained {
            // Also a parameter of the searched type that can point at a Patient only
            // (`Coverage?beneficiary=456`): a bare id there is a Patient's.
            let patient_only = modifier.is_none()
                && request
                    .resource_type()
                    .is_some_and(|searched| references_patients_only(searched, base));
            if (is_reference(base, modifier) || patient_only)
                && patient_link_names_other(modifier, true)
            {
                return true;
            }
        } else {
            let mut links = name.split('.').peekable();
            while let Some(link) = links.next() {
                let (base, modifier) = split_link(link);
                if is_reference(base, modifier)
                    && patient_link_names_other(modifier, links.peek().is_none())
                {
                    return true;
                }
            }
        }
        // A value written as a Patient's reference names that patient, whatever the
        // parameter (`Appointment?actor=Patient/456`, `Coverage?beneficiary=Patient/456`).
        if value.contains('/')
            && value
                .split(',')
                .any(|reference| names_a_patient(reference) && other(reference))
        {
            return true;
        }
        if base.eq_ignore_ascii_case("_id") && searches_patients && !chained {
            match modifier {
                None => value.split(',').any(other_id),
                Some(modifier) => modifier != "missing",
            }
        } else {
            false
        }
    })
}

/// Whether `parameter` of `resource_type` is a reference search parameter whose only
/// target is Patient (FHIR R4 and R5) and which is named neither `patient` nor `subject`
/// (those are read as patient references anywhere): a bare id in it names a Patient.
fn references_patients_only(resource_type: &str, parameter: &str) -> bool {
    matches!(
        (resource_type, parameter),
        ("Coverage", "beneficiary") | ("ResearchSubject", "individual")
    )
}

/// The readings of a reference a server may take: without a trailing `/` and without the
/// version after the last `/_history/` (`Patient/456/_history/2` names Patient 456), and
/// cut at the first `/_history` whatever follows (`Patient/456/_history/`,
/// `Patient/456/_history/1/123`).
fn reference_readings(reference: &str) -> [Option<&str>; 2] {
    let mut unversioned = reference.trim().trim_end_matches('/');
    if let Some((resource, version)) = unversioned.rsplit_once("/_history/")
        && !version.contains('/')
    {
        unversioned = resource;
    }
    let before_history = reference
        .trim()
        .split_once("/_history")
        .map(|(resource, _)| resource);
    [Some(unversioned), before_history]
}

/// What follows `base` (an absolute URL without a final `/`) and a `/` in `reference`:
/// the scheme and host compared without case, the path exactly, as servers compare a
/// reference with their own base. `None` when `reference` is not under `base`.
fn under_base<'a>(reference: &'a str, base: &str) -> Option<&'a str> {
    let authority_end = base
        .find("://")
        .and_then(|scheme_end| {
            base[scheme_end + 3..]
                .find('/')
                .map(|at| scheme_end + 3 + at)
        })
        .unwrap_or(base.len());
    let (origin, path) = base.split_at(authority_end);
    let rest = reference
        .get(..origin.len())
        .filter(|start| start.eq_ignore_ascii_case(origin))
        .map(|_| &reference[origin.len()..])?;
    rest.strip_prefix(path)?.strip_prefix('/')
}

/// The search criteria of a conditional create, from its `If-None-Exist` header: `None`
/// without one; refused (400) when the request carries more than one, since servers take
/// the first (HAPI) or join them, and FHIR defines one value.
fn if_none_exist_criteria(headers: &http::HeaderMap) -> Result<Option<CreateCriteria>, AuthError> {
    // Spelt either way ([`is_named`]): a server that folds `_` into `-` reads
    // `If_None_Exist` as the header, and two spellings are two headers.
    let mut values = values_named(headers, &[IF_NONE_EXIST]);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(malformed_request());
    }
    CreateCriteria::of(value.as_bytes()).map(Some)
}

/// The longest search a header names that is read: a conditional create's criteria
/// (`If-None-Exist`), a path-override header's target. 8 KiB, the request line many
/// servers accept (Apache's is 8,190 bytes), which the same search sent as a request would
/// need. Such a search is read several times (the types it reaches, the patients it names,
/// the patient pin; each reading of the criteria), and hyper admits a header of up to
/// 400 KiB: some 50 ms of work per request without this bound.
const MAX_SEARCH_IN_A_HEADER: usize = 8 * 1024;

/// The longest bundle entry URL read: about the longest target hyper reads in a request
/// line (65,534 bytes), so that an entry costs no more to check than a request.
const MAX_ENTRY_URL: usize = 64 * 1024;

/// A conditional create's criteria (an `If-None-Exist` header's value or a bundle entry's
/// `request.ifNoneExist`), in each way a server may read them: as written (Microsoft's FHIR
/// server), and, when it holds a `?`, without everything up to the first one (HAPI, for
/// clients that write `[type]?` before the criteria, which FHIR does not allow) and without
/// everything from it (IBM's). Control bytes and bytes beyond ASCII are percent-encoded, so
/// that they read as they do in a query (a name that is not UTF-8 reaches every type).
pub(crate) struct CreateCriteria {
    /// Every reading joined as one query: the rules that add requirements see each.
    joined: String,
    /// Each reading: the rules that must hold in the server's reading (the patient pin,
    /// a granular filter) must hold in every one.
    readings: Vec<String>,
}

impl CreateCriteria {
    /// The criteria's readings; refused (400) when longer than [`MAX_SEARCH_IN_A_HEADER`]
    /// or holding a `#` (the end of a query to a URI parser, part of it to others).
    fn of(criteria: &[u8]) -> Result<Self, AuthError> {
        if criteria.len() > MAX_SEARCH_IN_A_HEADER || criteria.contains(&b'#') {
            return Err(malformed_request());
        }
        let encode = |reading: &[u8]| percent_encode(reading, CONTROLS).to_string();
        let question_mark = criteria.iter().position(|&byte| byte == b'?');
        let after = question_mark.map(|at| &criteria[at + 1..]);
        let before = question_mark.map(|at| &criteria[..at]);
        let readings: Vec<String> = std::iter::once(criteria)
            .chain(after)
            .chain(before)
            .map(encode)
            .collect();
        // The rules that add requirements read them all: a `?` inside a value changes
        // what it names (`_include=Observation:subject?:Group` reaches Group as written and
        // every type before the `?`).
        let joined = readings.iter().fold(String::new(), |mut joined, reading| {
            // Writing to a `String` cannot fail.
            let _ = write!(joined, "&{reading}");
            joined
        });
        Ok(Self { joined, readings })
    }
}

/// The length of the `[type]?` before a `_typeFilter` query (`Patient?name=x`), up to and
/// including the first `?`, when what precedes that `?` is a run of ASCII letters and digits
/// (maybe empty) after spaces and control characters; `None` when the query has no such
/// prefix.
fn type_prefix_len(query: &str) -> Option<usize> {
    let end = query.find('?')?;
    query[..end]
        .trim_start_matches(|c: char| c <= ' ')
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric())
        .then_some(end + 1)
}

/// Where a request [`ScopeEnforcement::check`] judges comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An HTTP request without a form body; `body`: whether it has a body at all;
    /// `cascade_header`: whether it has a [`CASCADE_HEADER`] header. (With a form body,
    /// only a search or an operation passes, so the header does not matter there.)
    Http { body: bool, cascade_header: bool },
    /// An HTTP request whose body some server may read as a form.
    HttpWithForm,
    /// An entry of a batch or transaction bundle, which a handler checks.
    BundleEntry,
}

/// The header by which HAPI FHIR lets a delete cascade (`X-Cascade: delete`): whatever its
/// value, a delete that carries it (spelt either way, see [`is_named`]) is checked as one
/// that cascades.
pub(crate) const CASCADE_HEADER: &str = "x-cascade";

/// Whether a query names `parameter` (HAPI FHIR's `_cascade` or `_expunge`), whatever its
/// value, its name read as a lenient server reads it; a name that does not decode counts
/// as one.
fn names_parameter(query: &str, parameter: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        crate::form::decoded_raw_parameter_name(name)
            .is_none_or(|name| crate::form::reads_as(&name, parameter))
    })
}

/// Headers by which some frameworks let a request name another method than its own.
pub(crate) const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers some servers and frameworks take the request's path (and query) from instead of
/// the request line: IIS URL Rewrite, Zend Framework 1, Symfony before CVE-2018-14773's fix.
/// Its names, like [`METHOD_OVERRIDE_HEADERS`]', start with `x` (`ScopeEnforcement`'s
/// scan of a request's header names relies on it).
pub(crate) const PATH_OVERRIDE_HEADERS: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// Whether a path-override header's value names the request's own target: the same text,
/// or the same once each is percent-decoded (Azure App Service sets `X-Original-URL` to the
/// decoded target on every request): the path as a whole, the query piece by piece
/// between the same delimiters (`&`, `;`, `=`) and form-decoded (`+` a space, `%2B` a
/// plus: `_include%2B` is no `_include+`), so that an escaped delimiter
/// (`name=x%26_include%3D…`) that a service reading the header's query reads as a
/// parameter of its own makes another target.
pub(crate) fn names_same_target(named: &[u8], target: &str) -> bool {
    use percent_encoding::percent_decode;
    fn split(text: &[u8]) -> (&[u8], Option<&[u8]>) {
        match text.iter().position(|&byte| byte == b'?') {
            Some(at) => (&text[..at], Some(&text[at + 1..])),
            None => (text, None),
        }
    }
    let is_delimiter = |byte: &u8| matches!(byte, b'&' | b';' | b'=');
    // A query piece as a form decoder reads it: `+` is a space, `%2B` a plus.
    let form_decoded = |piece: &[u8]| -> Vec<u8> {
        let spaced: Vec<u8> = piece
            .iter()
            .map(|&byte| if byte == b'+' { b' ' } else { byte })
            .collect();
        percent_decode(&spaced).collect()
    };
    let same_query = |one: &[u8], other: &[u8]| {
        one.iter()
            .filter(|byte| is_delimiter(byte))
            .eq(other.iter().filter(|byte| is_delimiter(byte)))
            && one
                .split(is_delimiter)
                .zip(other.split(is_delimiter))
                .all(|(one, other)| one == other || form_decoded(one) == form_decoded(other))
    };
    if named == target.as_bytes() {
        return true;
    }
    let ((named_path, named_query), (path, query)) = (split(named), split(target.as_bytes()));
    percent_decode(named_path).eq(percent_decode(path))
        && match (named_query, query) {
            (Some(named_query), Some(query)) => same_query(named_query, query),
            (None, None) => true,
            _ => false,
        }
}

/// Whether `name` is one of `list` (lower-case names), an `_` read as `-`: CGI and PHP
/// turn both into the same variable (`HTTP_X_HTTP_METHOD_OVERRIDE`), and Symfony's header
/// bag reads them alike.
pub(crate) fn is_named(name: &http::HeaderName, list: &[&str]) -> bool {
    let name = name.as_str().as_bytes();
    list.iter().any(|wanted| {
        name.len() == wanted.len()
            && name
                .iter()
                .zip(wanted.bytes())
                .all(|(&byte, wanted)| byte == wanted || (byte == b'_' && wanted == b'-'))
    })
}

/// The values of the headers `list` names, spelt either way (see [`is_named`]).
pub(crate) fn values_named<'a>(
    headers: &'a http::HeaderMap,
    list: &'a [&str],
) -> impl Iterator<Item = &'a http::HeaderValue> + 'a {
    headers
        .iter()
        .filter(|(name, _)| is_named(name, list))
        .map(|(_, value)| value)
}

/// The most requirements (an interaction on a type) one check may hold: those of the
/// request itself and those its criteria reach, each list without repeats, those of its
/// method overrides counted apart ([`ScopeEnforcement::check`]). FHIR R5 has 157
/// resource types, and a search reaches each by reading and by searching at most, so no
/// real request comes near; each requirement is checked against every scope of the token,
/// which bounds that work at 512 scans of the scope list per check.
const MAX_REQUIREMENTS: usize = 512;

/// The most methods besides its own a request may name in method overrides (each is
/// checked): FHIR's methods other than the request's are five.
const MAX_OVERRIDE_METHODS: usize = 5;

/// Whether the query has a `_method` parameter, the method override of Spring's
/// `HiddenHttpMethodFilter`, gorilla's `HTTPMethodOverrideHandler`, Symfony and Express's
/// `method-override` (FHIR defines no such parameter), its name read as a lenient server
/// reads it (escaped, in another case, with whitespace around it, and `.method` or
/// `[method`, which PHP renames `_method`), split at `;` too.
pub(crate) fn has_method_parameter(query: &str) -> bool {
    method_parameter_values(query).next().is_some()
}

/// Whether a target a path-override header names (a path and maybe a query, as bytes)
/// has a `_method` parameter in its query ([`has_method_parameter`]); bytes that are not
/// UTF-8 are read as replacement characters, which no name `_method` holds.
pub(crate) fn target_names_method(target: &[u8]) -> bool {
    target
        .iter()
        .position(|&byte| byte == b'?')
        .is_some_and(|at| has_method_parameter(&String::from_utf8_lossy(&target[at + 1..])))
}

/// The values of the `_method` parameters of `query` ([`has_method_parameter`]), decoded;
/// `None` for a value that cannot be decoded (refused, as no method).
fn method_parameter_values(query: &str) -> impl Iterator<Item = Option<Cow<'_, str>>> {
    query.split(['&', ';']).filter_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        crate::form::decoded_raw_parameter_name(name)
            .is_some_and(|name| crate::form::reads_as(&name, "_method"))
            .then(|| crate::form::decoded_raw_parameter_name(value))
    })
}

/// Whether a `GET` or `HEAD` request carries a form (see [`carries_form_body`]). GET and
/// HEAD carry no body in FHIR, and such a request is no plain read: Rack reads a form body
/// for any method and merges it over the query the layer checks (`_method=DELETE` among
/// it). `body_follows`: the body is known to hold more than nothing.
pub(crate) fn bodiless_method_with_form(
    method: &http::Method,
    headers: &http::HeaderMap,
    body_follows: bool,
) -> bool {
    let has_body = || body_follows || announces_body(headers);
    (method == http::Method::GET || method == http::Method::HEAD)
        && carries_form_body(method, headers, has_body)
        && has_body()
}

/// Whether the request's body may be read as a form by some server: a `Content-Type` whose
/// media type (up to the first `;`, `,` or whitespace, as Rack and PHP cut it) is
/// `application/x-www-form-urlencoded` or `multipart/form-data` in any case, an empty one,
/// one that is not text, or (Rack reads a POST without a type as a form) a `POST` with a
/// body (`has_body`) but without any `Content-Type`.
fn carries_form_body(
    method: &http::Method,
    headers: &http::HeaderMap,
    has_body: impl Fn() -> bool,
) -> bool {
    let mut types = headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .peekable();
    if types.peek().is_none() {
        return method == http::Method::POST && has_body();
    }
    types.any(|value| {
        let Ok(text) = value.to_str() else {
            return true;
        };
        let media_type = text
            .trim_start()
            .split([';', ',', ' ', '\t'])
            .next()
            .unwrap_or_default();
        media_type.is_empty()
            || media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded")
            || media_type
                .get(..10)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("multipart/"))
    })
}

/// Whether the request announces a body: a `Transfer-Encoding`, or a `Content-Length`
/// other than `0`.
pub(crate) fn announces_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes() != b"0")
}

/// Why a path given to [`ScopeEnforcement::allow_any_token_under`] cannot be one, if it
/// cannot: it must be relative to the base, written one way only, and start where no FHIR
/// interaction is, since enforcement would be undone for it.
fn token_only_path_problem(path: &str) -> Option<&'static str> {
    let first = path.split('/').next().unwrap_or_default();
    if path.is_empty() {
        Some("it is empty")
    } else if path.starts_with('/') {
        Some("it must be relative to the FHIR base, without a leading '/'")
    } else if path.ends_with('/')
        || !crate::config_path::is_canonical_config_path(&format!("/{path}"))
    {
        Some("it is not written one way only")
    } else if crate::scopes::starts_fhir_interaction(first) && !is_poll_status_segment(first) {
        Some(
            "it starts where FHIR interactions are (a resource type, metadata, a '_' name, an operation other than a '-poll-status' one)",
        )
    } else {
        None
    }
}

/// Whether a request outside the base would be a FHIR interaction, or a malformed one, or
/// would start as one, under a shorter base: the base without one or more of its leading
/// segments, down to the server's root (`/fhir` and `/` for `/api/fhir`). Paths are read
/// as the classifier reads any (segments decoded, `POST /` a batch, `GET /?…` a system
/// search), and a request the classifier finds no FHIR interaction counts when its first
/// segment after that base starts one (a resource type's shape, `metadata`, `_history`,
/// `_search`, an operation: `DELETE /Observation` without criteria, a sixth segment);
/// `-poll-status` operations of the whole server do not count. Outside the base, such a request
/// means the base is wrong, or the path was stripped where the layer cannot see it (a
/// nest without the crate's `axum` feature, or under another axum version, hands
/// `/Observation/1` or `/fhir/Observation/1` to a layer whose base is `/api/fhir`), never
/// a non-FHIR route that any token may reach.
fn reads_as_fhir_under_a_shorter_base(
    shorter_bases: &[Classifier],
    method: &str,
    path_and_query: &str,
) -> bool {
    let path = path_and_query.split('?').next().unwrap_or_default();
    shorter_bases.iter().any(|shorter| {
        match shorter.classify(method, path_and_query) {
            Classified::Fhir(FhirRequest::Operation(operation)) => {
                !(operation.level == crate::scopes::OperationLevel::System
                    && operation.name.ends_with("-poll-status"))
            }
            Classified::Fhir(_) | Classified::Malformed => true,
            Classified::OutsideBase => false,
            Classified::NotFhir => {
                let first = path
                    .split('/')
                    .filter(|segment| !segment.is_empty())
                    .nth(segment_count(shorter.base_path()))
                    .and_then(crate::form::percent_decode_strict)
                    .unwrap_or_default();
                // FHIR's own `_` names only: another (`/_next/static`) is no interaction
                // under the base either.
                let fhir_underscore =
                    !first.starts_with('_') || matches!(first.as_str(), "_history" | "_search");
                crate::scopes::starts_fhir_interaction(&first)
                    && fhir_underscore
                    && !is_poll_status_segment(&first)
            }
        }
    })
}

/// The classifiers of the bases `base_path` shortens to: without its first segment, its
/// first two, and so on down to the root (`/fhir` and `/` for `/api/fhir`; none for the
/// root itself).
fn shorter_bases(base_path: &str) -> Arc<[Classifier]> {
    let segments: Vec<&str> = base_path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    (1..=segments.len())
        .map(|dropped| Classifier::new(&format!("/{}", segments[dropped..].join("/"))))
        .collect()
}

/// The number of segments of a base path (0 for the root).
fn segment_count(base_path: &str) -> usize {
    base_path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .count()
}

/// Whether a first segment after the base names a bulk status operation of the whole
/// server (`$export-poll-status`, HAPI FHIR's), whose URLs the Bulk Data IG asks no scope
/// of: the one kind of FHIR-shaped path that settings may open to any token.
fn is_poll_status_segment(segment: &str) -> bool {
    segment
        .strip_prefix('$')
        .is_some_and(|name| name.ends_with("-poll-status"))
}

/// A 403 without a scope hint: no scope would allow the request.
fn forbidden() -> AuthError {
    AuthError::new(ErrorKind::InsufficientScope)
}

/// A 400: the request cannot be read one way only, so no scope would allow it either.
fn malformed_request() -> AuthError {
    AuthError::new(ErrorKind::MalformedRequest)
}

/// The refusal of a request whose check would hold more than [`MAX_REQUIREMENTS`]
/// requirements, logged (with the count only, which stops one past the limit for what a
/// query reaches) so that an operator can tell it from a missing scope.
fn too_many_requirements(count: usize) -> AuthError {
    tracing::debug!(
        target: "smart_auth::rejection",
        count,
        limit = MAX_REQUIREMENTS,
        "too many scope requirements to check"
    );
    forbidden()
}

/// The default operation policy: `$export` at system, type (`Patient/$export`) and group
/// (`Group/[id]/$export`) level follows [`export_requirements`] with the `_type`
/// parameter, plus `s` on Provenance for `includeAssociatedData=LatestProvenanceResources`
/// or `RelevantProvenanceResources` and on every type for any other value, plus what each
/// `_typeFilter` query looks into (`_has` and chained parameters need `s` on the types they
/// search, as in a search); every other operation is refused.
///
/// ```
/// use smart_auth::default_operation_policy;
/// use smart_auth::scopes::{Operation, OperationLevel};
///
/// let export = Operation { level: OperationLevel::System, name: "export".into(), resource_type: None, id: None };
/// assert_eq!(default_operation_policy(&export, Some("_type=Patient")).unwrap().len(), 1);
/// ```
pub fn default_operation_policy(
    operation: &Operation,
    query: Option<&str>,
) -> Option<Vec<Requirement>> {
    if operation.name != "export" {
        return None;
    }
    let group_export = operation.resource_type.as_deref() == Some("Group");
    let patient_export = operation.resource_type.as_deref() == Some("Patient");
    let allowed_level = match operation.level {
        crate::scopes::OperationLevel::System => true,
        crate::scopes::OperationLevel::Type => patient_export,
        crate::scopes::OperationLevel::Instance => group_export,
    };
    if !allowed_level {
        return None;
    }
    let types = query.and_then(type_parameter);
    let mut requirements = Requirements::default();
    requirements.extend(export_requirements(operation.level, types.as_deref()));
    if let Some(query) = query {
        add_associated_data(query, &mut requirements);
        add_type_filters_reach(query, &mut requirements);
    }
    Some(requirements.into_vec())
}

/// What the `_typeFilter` queries of an export look into: a filter only narrows its type's
/// resources, but a `_has` or chained parameter in it searches other types (exporting the
/// patients who have some Observation tells which have it), and a result parameter such as
/// `_include`, which the Bulk Data IG forbids there, would bring them back. Each query is
/// read as [`types_reached`] reads a search, the IG's older comma-separated form too
/// ([`type_filter_queries`]).
fn add_type_filters_reach(query: &str, reached: &mut Requirements) {
    for (name, filter) in both_readings(query) {
        if lenient_parameter_name(&name).is_none() {
            // A name no one can tell the meaning of may be a `_typeFilter`.
            reached.push(Requirement::new(Interaction::SearchType, ResourceType::Any));
        } else if is_parameter(&name, "_typeFilter") {
            for criteria in type_filter_queries(&filter) {
                add_types_reached(None, criteria, reached);
            }
        }
    }
}

/// The queries of a `_typeFilter` value, each without its prefix ([`type_prefix_len`]):
/// one, or several in the older comma-separated form
/// (`Observation?code=x,Condition?_has:...`). A comma starts another query only where such
/// a prefix follows it (a run of letters and digits, maybe empty, then `?`; which can only
/// find more than a `[type]?` would), so that commas in values
/// (`code=http://loinc.org|1-8,http://loinc.org|2-9`) stay in their query.
fn type_filter_queries(filter: &str) -> Vec<&str> {
    let mut starts = vec![0];
    let mut offset = 0;
    for piece in filter.split(',') {
        if offset > 0 && type_prefix_len(piece).is_some() {
            starts.push(offset);
        }
        offset += piece.len() + 1;
    }
    starts.push(filter.len() + 1);
    starts
        .windows(2)
        .map(|bounds| {
            let query = &filter[bounds[0]..bounds[1] - 1];
            &query[type_prefix_len(query).unwrap_or(0)..]
        })
        .collect()
}

/// What `includeAssociatedData` (Bulk Data 2.0) adds to an export: Provenance resources
/// for `LatestProvenanceResources` and `RelevantProvenanceResources`, and for any other
/// value (`_`-prefixed custom ones) data of unknown types, so every type.
fn add_associated_data(query: &str, reached: &mut Requirements) {
    for (name, value) in both_readings(query) {
        // A name no one can tell the meaning of may be this one.
        if lenient_parameter_name(&name).is_some() && !is_parameter(&name, "includeAssociatedData")
        {
            continue;
        }
        for kind in value.split(',') {
            let resource_type = match kind.trim() {
                "LatestProvenanceResources" | "RelevantProvenanceResources" => {
                    ResourceType::Named("Provenance".to_owned())
                }
                _ => ResourceType::Any,
            };
            reached.push(Requirement::new(Interaction::SearchType, resource_type));
        }
    }
}

/// The percent-decoded `_type` values of a query string as servers may read it, joined by
/// commas (several `_type` parameters add up): `None` when one reading finds none, since a
/// server reading the query that way exports every type (`?_since=x;_type=Patient` has no
/// `_type` for a server that splits at `&` only, `?_TYPE=Patient` none for a server that
/// matches names exactly); else the values of every reading, names matched ignoring case
/// too (`_type=Patient&_TYPE=Group` is Patient and Group to a lenient server). A name no
/// one can tell the meaning of ([`lenient_parameter_name`]) may be a `_type` that says
/// anything: `None` too.
fn type_parameter(query: &str) -> Option<String> {
    // Each reading read once, keeping only the `_type` values (each once: a hash set keeps
    // this linear however many a query repeats).
    let mut seen = std::collections::HashSet::new();
    let mut values: Vec<String> = Vec::new();
    let mut read = |reading: &mut dyn Iterator<Item = (String, String)>| {
        let mut names_type_exactly = false;
        for (name, value) in reading {
            if lenient_parameter_name(&name).is_none() {
                return false;
            }
            names_type_exactly |= name == "_type";
            if is_parameter(&name, "_type") && !seen.contains(&value) {
                seen.insert(value.clone());
                values.push(value);
            }
        }
        names_type_exactly
    };
    let every_reading_names_it = read(&mut crate::form::pairs(query))
        && read(&mut crate::form::pairs_split_at_semicolons_too(query));
    every_reading_names_it.then(|| values.join(","))
}

/// The page a paging link names ([`ScopeEnforcement::handler_checks_paging_links`]), or
/// `None` when the query is no link: `parameter` once with a value (the page), and
/// otherwise only paging and answer-shaping parameters, each written exactly so, split at
/// `&` only (a `;` anywhere disqualifies).
fn paging_link_page<'q>(query: &'q str, parameter: &str) -> Option<&'q str> {
    if query.contains(';') {
        return None;
    }
    let mut page = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == parameter && !value.is_empty() && page.is_none() {
            page = Some(value);
        } else if !PAGING_LINK_PARAMETERS.contains(&name) {
            return None;
        }
    }
    page
}

/// The parameters a paging link may hold beside its own: paging, answer shaping, and the
/// search's includes (whose reach [`ScopeEnforcement::check`] checks).
const PAGING_LINK_PARAMETERS: [&str; 13] = [
    "_getpagesoffset",
    "_pageId",
    "_count",
    "_offset",
    "_bundletype",
    "_format",
    "_pretty",
    "_summary",
    "_elements",
    "_elements:exclude",
    "_total",
    "_include",
    "_revinclude",
];

/// Why a name cannot be a paging link's parameter
/// ([`ScopeEnforcement::handler_checks_paging_links`]), if it cannot: one that FHIR gives a
/// meaning (it would let those searches through with any token), or one written so that
/// servers may read it as another name.
fn paging_parameter_problem(parameter: &str) -> Option<&'static str> {
    const FHIR_PARAMETERS: [&str; 24] = [
        "_id",
        "_type",
        "_has",
        "_list",
        "_filter",
        "_query",
        "_text",
        "_content",
        "_tag",
        "_profile",
        "_security",
        "_source",
        "_lastUpdated",
        "_in",
        "_language",
        "_since",
        "_at",
        "_sort",
        "_contained",
        "_containedType",
        "_graph",
        "_method",
        "_maxresults",
        "_score",
    ];
    let well_formed = parameter.len() > 1
        && parameter.starts_with('_')
        && parameter
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !well_formed {
        Some("it must be a `_` name of ASCII letters, digits, `-` and `_`")
    } else if FHIR_PARAMETERS
        .iter()
        .chain(&PAGING_LINK_PARAMETERS)
        .any(|known| known.eq_ignore_ascii_case(parameter))
    {
        Some("FHIR or the paging link rule already gives it a meaning")
    } else {
        None
    }
}

/// The type a conditional create, update, patch or delete writes: the server acts on
/// whatever its search finds (a create answers with the match), which a handler cannot
/// narrow afterwards.
fn conditional_write_type(request: &FhirRequest) -> Option<&str> {
    match request {
        FhirRequest::ConditionalCreate { resource_type }
        | FhirRequest::ConditionalUpdate { resource_type }
        | FhirRequest::ConditionalPatch { resource_type }
        | FhirRequest::ConditionalDelete { resource_type } => Some(resource_type),
        _ => None,
    }
}

/// The types on which FHIR R4 defines a search parameter `patient` that names the patient
/// the record is about (a reference to a Patient only): where `patient=` can pin a search
/// to one patient. (`subject` may name a Group, Device or Location with the same id;
/// DeviceUseStatement's `patient` may name a Group, so there only `Patient/<id>` pins; other
/// types link a patient through other parameters, or not at all. Device is left out:
/// FHIR R5 removed its `patient`, and a server that ignores an unknown parameter would
/// act on every device; a type R5 dropped or renamed is no type there, which the server
/// refuses.)
const PATIENT_PARAMETER_TYPES: [&str; 64] = [
    "Account",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "BodyStructure",
    "CarePlan",
    "CareTeam",
    "ChargeItem",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "Encounter",
    "EnrollmentRequest",
    "EpisodeOfCare",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GuidanceResponse",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "Invoice",
    "List",
    "MeasureReport",
    "Media",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "MolecularSequence",
    "NutritionOrder",
    "Observation",
    "Person",
    "Procedure",
    "Provenance",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchSubject",
    "RiskAssessment",
    "ServiceRequest",
    "Specimen",
    "SupplyDelivery",
    "Task",
    "VisionPrescription",
];

/// Whether the criteria of a conditional write of `resource_type` pin the patient in
/// context: `_id=in_context` for Patient, `patient` (or `patient:Patient`) naming it (`123`
/// or `Patient/123`) for a type that defines that parameter ([`PATIENT_PARAMETER_TYPES`];
/// on another type a lenient server ignores it, so nothing pins there), written exactly so
/// (a server that matches names exactly ignores `_ID`), and every parameter a lenient
/// server may read as that name (another case, another modifier, a name it cannot be told
/// from, PHP's `.id`) naming it too (a server keeping the last `_id=` would search without
/// one), in the reading of a server splitting at `&` and in that of one splitting at `;`.
fn pins_patient(criteria: &str, resource_type: &str, in_context: &str) -> bool {
    let names: &[&str] = if resource_type == "Patient" {
        &["_id"]
    } else if PATIENT_PARAMETER_TYPES.contains(&resource_type) {
        &["patient"]
    } else {
        return false;
    };
    // A bare id only where the parameter (or its `:Patient` modifier) names Patients alone.
    let names_in_context = |name: &str, value: &str| {
        let bare_id_pins = resource_type != "DeviceUseStatement" || name.ends_with(":Patient");
        (value == in_context && bare_id_pins)
            || (resource_type != "Patient" && value.strip_prefix("Patient/") == Some(in_context))
    };
    let pinned = |pairs: &mut dyn Iterator<Item = (String, String)>| {
        let mut exact = false;
        for (name, value) in pairs {
            let may_be_a_pin = lenient_parameter_name(&name).is_none_or(|name| {
                let base = name.split(':').next().unwrap_or_default();
                names.iter().any(|pin| base.eq_ignore_ascii_case(pin))
            });
            if may_be_a_pin && !names_in_context(&name, &value) {
                return false;
            }
            // `patient:Patient=123` names the type, as exactly as `patient=Patient/123`.
            exact |= names
                .iter()
                .any(|pin| name == *pin || (*pin == "patient" && name == "patient:Patient"));
        }
        exact
    };
    pinned(&mut crate::form::pairs(criteria))
        && pinned(&mut crate::form::pairs_split_at_semicolons_too(criteria))
}

/// The parameters of a query as a server splitting at `&` reads them, then as one splitting
/// at `;` too: a rule that adds requirements for a parameter sees it in either reading.
fn both_readings(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    crate::form::pairs(query).chain(crate::form::pairs_split_at_semicolons_too(query))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requirements are kept once each, in the order first found, below and beyond the
    /// length up to which the list is searched instead of hashed.
    #[test]
    fn requirements_are_kept_once_in_order() {
        for count in [1, Requirements::SCANNED, Requirements::SCANNED + 1, 100] {
            // Type names are letters only.
            let names: Vec<String> = (0..count)
                .map(|n| {
                    let letter = |shift: usize| char::from(b'a' + (n / shift % 26) as u8);
                    format!("T{}{}", letter(26), letter(1))
                })
                .collect();
            let mut kept = Requirements::default();
            for _ in 0..3 {
                for name in &names {
                    kept.push(requirement_on(Interaction::Read, name));
                    kept.push(requirement_on(Interaction::SearchType, name));
                }
            }
            let expected: Vec<Requirement> = names
                .iter()
                .flat_map(|name| {
                    [
                        requirement_on(Interaction::Read, name),
                        requirement_on(Interaction::SearchType, name),
                    ]
                })
                .collect();
            assert_eq!(kept.into_vec(), expected, "{count}");
        }
    }

    /// Past the bound a query's requirements stop being kept: 5,000 distinct types in
    /// `_revinclude` hold one more than the bound, which refuses the request as 5,000 would.
    #[test]
    fn requirements_stop_being_kept_past_the_bound() {
        let names: Vec<String> = (0..5_000u16)
            .map(|n| {
                let letter = |shift: u16| char::from(b'a' + u8::try_from(n / shift % 26).unwrap());
                format!("T{}{}{}", letter(676), letter(26), letter(1))
            })
            .collect();
        let query = format!("_revinclude={}", names.join(","));
        assert_eq!(types_reached(None, &query).len(), MAX_REQUIREMENTS + 1);
        let fewer = format!("_revinclude={}", names[..MAX_REQUIREMENTS].join(","));
        assert_eq!(types_reached(None, &fewer).len(), MAX_REQUIREMENTS);
        // A policy's list is whole: a policy that filters it must not lose the rest.
        let export = Operation {
            level: crate::scopes::OperationLevel::System,
            name: "export".into(),
            resource_type: None,
            id: None,
        };
        let query = format!("_type={}", names[..600].join(","));
        let listed = default_operation_policy(&export, Some(&query)).unwrap();
        assert_eq!(listed.len(), 600);
    }

    /// The types a search query reaches, as `letter type` strings.
    #[test]
    fn types_reached_by_queries() {
        let reached = |query: &str| -> Vec<String> {
            types_reached(None, query)
                .iter()
                .map(|r| format!("{:?} {}", r.interaction, r.resource_type.as_str()))
                .collect()
        };
        let cases: [(&str, &[&str]); 69] = [
            ("name=x&birthdate=ge2000", &[]),
            // An ordinary value, however malformed, reaches nothing.
            ("name=50%&family=%FF", &[]),
            ("_include=Observation:subject:Patient", &["Read Patient"]),
            // HAPI's wildcard parameter includes every reference whatever the target says.
            ("_include=Observation:*:Patient", &["Read *"]),
            // A fourth part, or a comma list read as one value: IBM's server takes no
            // target type and includes every target of the parameter.
            (
                "_include=Observation:subject:Patient:Patient",
                &["Read *", "Read Patient"],
            ),
            (
                "_include=Observation:subject:Patient,Observation:performer:Practitioner",
                &["Read *", "Read Patient", "Read Practitioner"],
            ),
            ("_include=Observation:subject", &["Read *"]),
            // Parameters with one target type need `r` on it alone.
            (
                "_include=MedicationRequest:medication",
                &["Read Medication"],
            ),
            (
                "_include=MedicationDispense:medication",
                &["Read Medication"],
            ),
            // `patient` is not one: R4's DeviceUseStatement.patient reaches Groups.
            ("_include=Observation:patient", &["Read *"]),
            ("_include:iterate=DeviceUseStatement:patient", &["Read *"]),
            (
                "_include=PractitionerRole:practitioner",
                &["Read Practitioner"],
            ),
            ("_include=PractitionerRole:endpoint", &["Read Endpoint"]),
            (
                "_include=PractitionerRole:organization",
                &["Read Organization"],
            ),
            ("_include=PractitionerRole:location", &["Read Location"]),
            (
                "_include=PractitionerRole:service",
                &["Read HealthcareService"],
            ),
            // A written target wins; other names, or another case, stay open.
            (
                "_include=MedicationRequest:medication:Patient",
                &["Read Patient"],
            ),
            ("_include=MedicationRequest:Medication", &["Read *"]),
            ("_include=medicationRequest:medication", &["Read *"]),
            ("_include=Observation:performer", &["Read *"]),
            ("_include=Observation", &["Read *"]),
            ("_include=Observation:patient:*", &["Read *"]),
            ("_include=Observation:subject:%ZZ", &["Read *"]),
            ("_include=Observation:subject:patient", &["Read *"]),
            (
                "_revinclude:iterate=Provenance:target",
                &["SearchType Provenance"],
            ),
            ("_revinclude=", &["SearchType *"]),
            (
                "%5Fhas:Observation:patient:code=1",
                &["SearchType Observation"],
            ),
            (
                "subject:Patient.organization.name=x",
                &["SearchType Patient", "SearchType *"],
            ),
            ("%ZZ=1", &["SearchType *"]),
            ("a=1;_include=*", &["Read *"]),
            // `_has` after a chain's `.`, and inside a `_has` after one.
            (
                "patient:Patient._has:Group:member:_id=102",
                &["SearchType Group", "SearchType Patient"],
            ),
            (
                "_has:Observation:patient:subject:Patient._has:Group:member:_id=1",
                &[
                    "SearchType Observation",
                    "SearchType Group",
                    "SearchType Patient",
                ],
            ),
            (
                "subject._has:Group:member:_id=1",
                &["SearchType Group", "SearchType *"],
            ),
            // Names in another case or with spaces, as a lenient server reads them.
            ("_HAS:Group:member:_id=1", &["SearchType Group"]),
            ("%20_Include=Observation:subject:Patient", &["Read Patient"]),
            ("_REVINCLUDE=Provenance:target", &["SearchType Provenance"]),
            (
                "subject:Patient._Has:Group:member:_id=1",
                &["SearchType Group", "SearchType Patient"],
            ),
            // Parameters whose reach the layer cannot tell reach every type.
            ("_query=everything", &["SearchType *"]),
            ("_QUERY", &["SearchType *"]),
            ("_filter=name%20eq%20x", &["SearchType *"]),
            // Names that PHP, Rack or `qs` read as other names reach every type.
            ("_revinclude[]=Observation:subject", &["SearchType *"]),
            (
                "_include%5B%5D=Observation:subject:Patient",
                &["SearchType *"],
            ),
            (".has:Observation:patient:code=x", &["SearchType *"]),
            ("code[x]=1", &["SearchType *"]),
            ("_contained=true", &["SearchType *"]),
            (
                "_contained=both&_containedType=contained",
                &["SearchType *"],
            ),
            ("_contained:x=", &["SearchType *"]),
            ("_contained=false", &[]),
            ("_list=42", &["Read List"]),
            // A `+` is a space to a form decoder.
            ("+_include=Observation:subject:Patient", &["Read Patient"]),
            ("_query+=x", &["SearchType *"]),
            // Comma-separated includes, R5's `_in` and `_graph`, chained sort keys.
            (
                "_revinclude=Provenance:target,AuditEvent:entity",
                &["SearchType Provenance", "SearchType AuditEvent"],
            ),
            ("_graph=x", &["SearchType *"]),
            ("_sort=-subject:Patient.name,date", &["SearchType Patient"]),
            ("_sort=subject.name", &["SearchType *"]),
            ("_sort=-date,code", &[]),
            // A sort key with a bad escape may be any chain to a server keeping it as sent.
            ("_sort=%ZZ,subject:Patient.birthdate", &["SearchType *"]),
            ("_sort=date%", &["SearchType *"]),
            // Control characters around a name are trimmed as spaces are (Java's `trim`);
            // inside it, and characters beyond ASCII: no one can tell.
            ("%00_has:Group:member:_id=1", &["SearchType Group"]),
            (
                "%01_include%1F=Observation:subject:Patient",
                &["Read Patient"],
            ),
            ("_h%00as:Group:member:_id=1", &["SearchType *"]),
            ("_ha%C5%BF:Group:member:_id=1", &["SearchType *"]),
            ("%C2%A0name=x", &["SearchType *"]),
            // `_in` with a typed reference reads that container only.
            ("_in=Group/1", &["Read Group"]),
            ("_in=1", &["Read List", "Read Group", "Read CareTeam"]),
            ("_List=%24current-problems", &["Read List"]),
            ("has=1&x_has:Group:member:_id=1", &[]),
            ("name:_has=1", &["SearchType *"]),
            // Repeats are listed once.
            (
                "_include=*&_include=*;_revinclude=Provenance:target&_revinclude=Provenance:x",
                &["Read *", "SearchType Provenance"],
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(reached(query), expected, "{query}");
        }
    }

    /// A chain link without a type names the one type its parameter can point at, where
    /// FHIR allows only one and the link's own type is known: the searched type's for the
    /// first link, the type a link named or implied for the next. Elsewhere, every type.
    #[test]
    fn chain_links_with_one_target_type() {
        let reached = |searched: Option<&str>, query: &str| -> Vec<String> {
            types_reached(searched, query)
                .iter()
                .map(|r| format!("{:?} {}", r.interaction, r.resource_type.as_str()))
                .collect()
        };
        let cases: [(Option<&str>, &str, &[&str]); 10] = [
            (
                Some("MedicationRequest"),
                "medication.code=x",
                &["SearchType Medication"],
            ),
            (
                Some("MedicationStatement"),
                "medication.code=x",
                &["SearchType Medication"],
            ),
            (
                Some("PractitionerRole"),
                "practitioner.name=x",
                &["SearchType Practitioner"],
            ),
            (
                Some("PractitionerRole"),
                "_sort=-service.name",
                &["SearchType HealthcareService"],
            ),
            // The next link's own parameter has several targets: every type.
            (
                Some("MedicationRequest"),
                "medication.manufacturer.name=x",
                &["SearchType Medication", "SearchType *"],
            ),
            // A typed link is its type's, whatever the parameter.
            (
                Some("Observation"),
                "subject:PractitionerRole.practitioner.name=x",
                &["SearchType PractitionerRole", "SearchType Practitioner"],
            ),
            // Unknown type, another type's parameter, another spelling: every type.
            (None, "medication.code=x", &["SearchType *"]),
            (Some("Observation"), "medication.code=x", &["SearchType *"]),
            (
                Some("medicationrequest"),
                "medication.code=x",
                &["SearchType *"],
            ),
            (
                Some("MedicationRequest"),
                "subject.name=x",
                &["SearchType *"],
            ),
        ];
        for (searched, query, expected) in cases {
            assert_eq!(reached(searched, query), expected, "{searched:?} {query}");
        }
    }

    #[test]
    fn type_parameter_decoding() {
        assert_eq!(
            type_parameter("_type=Patient,Observation"),
            Some("Patient,Observation".into())
        );
        assert_eq!(
            type_parameter("_type=Patient%2CObservation&x=1"),
            Some("Patient,Observation".into())
        );
        assert_eq!(
            type_parameter("_type=Patient&_type=Group"),
            Some("Patient,Group".into())
        );
        assert_eq!(type_parameter("_since=2020"), None);
        // Read both ways: what either reading finds, or every type when one finds none.
        assert_eq!(type_parameter("_since=2020;_type=Patient"), None);
        assert_eq!(type_parameter(";_type=Patient"), None);
        assert_eq!(
            type_parameter("_type=Patient&x=1;_type=Observation"),
            Some("Patient,Observation".into())
        );
        assert_eq!(
            type_parameter("_type=Patient;_type=Group"),
            Some("Patient;_type=Group,Patient,Group".into())
        );
        // A name in another case: a server matching names exactly sees no `_type`, a
        // lenient one sees its value too.
        assert_eq!(type_parameter("_TYPE=Patient"), None);
        assert_eq!(
            type_parameter("_type=Patient&%00_type=Group"),
            Some("Patient,Group".into())
        );
        assert_eq!(type_parameter("_type=Patient&_ty%00pe=Group"), None);
        assert_eq!(type_parameter("_type=Patient&_%C5%BFince=x"), None);
        assert_eq!(type_parameter("%20_type=Patient"), None);
        assert_eq!(
            type_parameter("_type=Patient&_Type=Group"),
            Some("Patient,Group".into())
        );
    }

    #[test]
    fn type_filter_queries_split_where_a_type_follows_a_comma() {
        let cases: [(&str, &[&str]); 8] = [
            ("Patient?name=x", &["name=x"]),
            (
                "Observation?code=http://loinc.org|1-8,http://loinc.org|2-9",
                &["code=http://loinc.org|1-8,http://loinc.org|2-9"],
            ),
            (
                "Patient?name=x,Patient?_has:Encounter:patient:class=IMP",
                &["name=x", "_has:Encounter:patient:class=IMP"],
            ),
            (
                "name=x,patient?_has:Group:member:_id=1",
                &["name=x", "_has:Group:member:_id=1"],
            ),
            (
                "Observation?code=x, Condition?_has:Group:member:_id=1",
                &["code=x", "_has:Group:member:_id=1"],
            ),
            (
                "?name=x,?_has:Group:member:_id=1",
                &["name=x", "_has:Group:member:_id=1"],
            ),
            (
                "identifier=http://h.org/ids?v.2|1",
                &["identifier=http://h.org/ids?v.2|1"],
            ),
            ("", &[""]),
        ];
        for (filter, expected) in cases {
            assert_eq!(type_filter_queries(filter), expected, "{filter}");
        }
        // A `?` inside a value is no chain.
        assert!(types_reached(None, "identifier=http://h.org/ids?v.2|1").is_empty());
    }

    #[test]
    fn if_none_exist_criteria_read_one_header_every_way() {
        let mut headers = http::HeaderMap::new();
        assert!(if_none_exist_criteria(&headers).unwrap().is_none());
        headers.append(
            http::HeaderName::from_static(IF_NONE_EXIST),
            http::HeaderValue::from_static(""),
        );
        let empty = if_none_exist_criteria(&headers).unwrap().unwrap();
        assert_eq!(empty.joined, "&");
        // A second header: servers take the first or join them; refused.
        headers.append(
            http::HeaderName::from_static(IF_NONE_EXIST),
            http::HeaderValue::from_static("name=x"),
        );
        assert!(if_none_exist_criteria(&headers).is_err());
        let read = |value: &[u8]| CreateCriteria::of(value).expect("short criteria");
        let odd = read(b"_h\xffas:Group:member:_id=1");
        assert_eq!(odd.joined, "&_h%FFas:Group:member:_id=1");
        // A name that is not UTF-8 reaches every type.
        assert_eq!(
            types_reached(None, &odd.joined)
                .iter()
                .map(|r| r.resource_type.as_str())
                .collect::<Vec<_>>(),
            ["*"]
        );
        // A `?`: read as written, after it and before it; all three are joined.
        let prefixed = read(b"x-y?_id=456");
        assert_eq!(prefixed.joined, "&x-y?_id=456&_id=456&x-y");
        assert_eq!(prefixed.readings, ["x-y?_id=456", "_id=456", "x-y"]);
        let typed = read(b"Observation?patient=123");
        assert_eq!(
            typed.readings,
            ["Observation?patient=123", "patient=123", "Observation"]
        );
        assert_eq!(read(b"code=1").readings, ["code=1"]);
        // What the reading before a `?` reaches counts too.
        let include = read(b"patient=123&_include=Observation:subject?:Group");
        let reached: Vec<String> = types_reached(None, &include.joined)
            .iter()
            .map(|r| format!("{:?} {}", r.interaction, r.resource_type.as_str()))
            .collect();
        assert!(reached.contains(&"Read *".to_owned()), "{reached:?}");
    }

    /// Outside the base, what would be FHIR under a shorter base (a prefix stripped by a
    /// nest the layer cannot see through) is told from routes any token may reach.
    #[test]
    fn fhir_under_a_shorter_base_is_told_from_other_routes() {
        let fhir = |method: &str, path: &str| {
            reads_as_fhir_under_a_shorter_base(&shorter_bases("/api/fhir"), method, path)
        };
        for (method, path) in [
            // At the root: the whole prefix stripped.
            ("GET", "/Observation/1"),
            ("GET", "/%4Fbservation/1"),
            ("DELETE", "/Observation"),
            ("PUT", "/Patient"),
            ("PATCH", "/Patient?_format=json"),
            ("DELETE", "/Patient/1/_history"),
            ("POST", "/metadata"),
            ("GET", "/Patient/a_b"),
            ("GET", "/Observation/1/_history/2/$meta/x"),
            ("POST", "/"),
            ("GET", "/?_type=Patient"),
            ("GET", "/?lang=en"),
            ("GET", "/$export"),
            // Under `/fhir`: part of the prefix stripped.
            ("GET", "/fhir/Observation/1"),
            ("DELETE", "/fhir/Observation"),
            ("POST", "/fhir"),
            ("GET", "/FHIR/metadata"),
            // A status operation of a type or an instance is no bulk status URL.
            ("GET", "/Patient/123/$everything-poll-status"),
            ("POST", "/Observation/$x-poll-status"),
        ] {
            assert!(fhir(method, path), "{method} {path}");
        }
        for (method, path) in [
            ("GET", "/admin"),
            ("GET", "/health"),
            ("GET", "/api/v1/users"),
            ("GET", "/favicon.ico"),
            ("GET", "/jobs/123"),
            ("GET", "/"),
            ("HEAD", "/"),
            ("GET", "/_next/static/x"),
            ("GET", "/$export-poll-status?job=1"),
            ("GET", "/fhir/$export-poll-status"),
            ("GET", "/observation/1"),
            ("GET", "/reports/observations"),
        ] {
            assert!(!fhir(method, path), "{method} {path}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::config;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(config(512))]

        /// Any query: the `_method` reading never panics, finds a parameter exactly when it
        /// yields a value, and finds one whenever a piece is named `_method` in one of
        /// the spellings a lenient server reads.
        #[test]
        fn method_parameters_are_read_without_panic(
            pieces in proptest::collection::vec(
                prop_oneof![
                    "[ -~]{0,12}",
                    prop::sample::select(vec![
                        "_method=DELETE", "_METHOD=x", "%5Fmethod=", ".method=a", "[method",
                        "_methods=x", "method=x", "_method%3D", "%ZZ=1", "\u{e9}=1",
                    ]).prop_map(str::to_owned),
                ],
                0..6,
            ),
            separator in prop::sample::select(vec!["&", ";"]),
        ) {
            let query = pieces.join(separator);
            let found = has_method_parameter(&query);
            prop_assert_eq!(found, method_parameter_values(&query).next().is_some());
            let named = pieces.iter().any(|piece| {
                let name = piece.split('=').next().unwrap_or_default();
                ["_method", "_METHOD", "%5Fmethod", ".method", "[method"].contains(&name)
            });
            if named {
                prop_assert!(found, "{}", query);
            }
        }

        /// Any `Content-Type` values: the form reading never panics, and a form type is
        /// found in every spelling Rack and PHP cut it to.
        #[test]
        fn form_types_are_read_without_panic(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
            form in prop::sample::select(vec![
                "application/x-www-form-urlencoded",
                "Multipart/Form-Data; boundary=x",
                " application/x-www-form-urlencoded,",
                "application/x-www-form-urlencoded\tx",
            ]),
        ) {
            let mut headers = http::HeaderMap::new();
            for value in &values {
                if let Ok(value) = http::HeaderValue::from_bytes(value) {
                    headers.append(http::header::CONTENT_TYPE, value);
                }
            }
            let _ = carries_form_body(&http::Method::POST, &headers, || true);
            headers.append(http::header::CONTENT_TYPE, http::HeaderValue::from_static(form));
            prop_assert!(carries_form_body(&http::Method::PUT, &headers, || false), "{:?}", headers);
        }
    }
}
