//! Classifying FHIR REST requests by method and path.
//!
//! [`Classifier::classify`] turns `(method, path)` into a [`Classified`] value. A path under
//! the FHIR base is matched against the FHIR REST URL patterns:
//!
//! | method | path (after the base) | result |
//! |---|---|---|
//! | GET | `/metadata` | capabilities |
//! | GET | `?params` (the base itself with a query) | system search |
//! | GET, POST | `/_search` | system search |
//! | GET | `/_history` | system history |
//! | POST | (the base itself) | batch or transaction |
//! | GET, POST | `/$op` | system operation |
//! | GET | `/T` | type search |
//! | GET, POST | `/T/_search` | type search |
//! | POST | `/T` | create |
//! | PUT, PATCH, DELETE | `/T?params` | conditional update, patch, delete |
//! | GET | `/T/_history` | type history |
//! | GET, POST | `/T/$op` | type operation |
//! | GET, PUT, PATCH, DELETE | `/T/id` | read, update, patch, delete |
//! | GET | `/T/id/_history` | instance history |
//! | GET | `/T/id/_history/vid` | vread |
//! | GET, POST | `/T/id/$op` | instance operation |
//! | GET | `/C/id/T` or `/C/id/*` | compartment search |
//! | GET, POST | `/C/id/T/_search` or `/C/id/*/_search` | compartment search |
//!
//! A compartment `C` is one of FHIR's compartment types (`Patient`, `Encounter`,
//! `RelatedPerson`, `Practitioner`, `Device`, `EpisodeOfCare`). A conditional create
//! (`POST /T` with an `If-None-Exist` header) cannot be told from the path: it is
//! classified as a create, and [`FhirRequest::with_if_none_exist`] makes it conditional.
//!
//! `HEAD` is treated like `GET`. Methods are case-sensitive, as in HTTP. One trailing slash is
//! ignored. The query string only matters where the table shows it. A type `T` must have the
//! shape `[A-Z][A-Za-z]+` (and be in the configured list, if any); an id or version id must
//! match `[A-Za-z0-9\-.]{1,64}`; an operation name must be non-empty and use only
//! `[A-Za-z0-9\-_.]`.
//!
//! How the path is read (percent-decoding, refused spellings) is described on [`Classifier`].
//!
//! Everything under the base that fits no row is [`Classified::NotFhir`]. Callers should deny
//! such requests unless they have their own rule for them: this module cannot tell what
//! permissions they need. [`Classified::Malformed`] must always be denied.

use std::borrow::Cow;

use super::parse::is_resource_type_name;
use super::{Interaction, Requirement, ResourceType};

/// Longest FHIR id, in characters.
const MAX_ID_LEN: usize = 64;

/// The most segments after the base that a FHIR REST pattern has
/// (`T/id/_history/vid`).
const MAX_SEGMENTS: usize = 4;

/// Classifies requests for one FHIR base path.
///
/// # How the path is read
///
/// The path is read the way a router and its handlers read it: every segment is
/// percent-decoded once (`%XX`, either case of hex digit), so `/fhir/%50atient/1` is a read of
/// `Patient` (axum's `Path` extractor would hand the handler `Patient` too). Before anything
/// is matched, a path that cannot be read one way only is [`Classified::Malformed`]:
///
/// - an empty segment (`//`), except one trailing slash;
/// - a `.` or `..` segment, written plainly or escaped (`%2E%2E`);
/// - a `%` not followed by two hex digits, or escapes that decode to invalid UTF-8;
/// - a decoded segment holding `/`, `\`, `;`, `%` (a double escape such as `%252F`) or a
///   control character (including NUL).
///
/// Servers, proxies and frameworks disagree about such paths (one merges `//`, another
/// resolves `..`, a Java server drops `;params`, a second decoder turns `%2550` into `P`), so
/// no reading of them is safe to authorise. The base path is compared with the decoded
/// segments ignoring ASCII case, so that a case-insensitive server behind the check cannot
/// be reached with `/FHIR/...` as if it were outside the base; the rest of the path is
/// compared exactly.
///
/// Reading the decoded form stays safe although routers match static routes on the raw
/// path: an escaped spelling of a fixed segment (`%5Fhistory`, `%24export`, `%6Detadata`)
/// reaches a parameter route instead, with a value (`_history`, `$export`, `metadata`) that
/// is no valid resource type or id there, so no handler can serve a resource for it.
///
/// ```
/// use smart_auth::scopes::{Classified, Classifier, FhirRequest};
///
/// let classifier = Classifier::new("/fhir");
/// assert_eq!(
///     classifier.classify("GET", "/fhir/Patient/123"),
///     Classified::Fhir(FhirRequest::Read { resource_type: "Patient".into(), id: "123".into() }),
/// );
/// assert_eq!(classifier.classify("GET", "/health"), Classified::OutsideBase);
/// assert_eq!(classifier.classify("GET", "/fhir/Patient/../admin"), Classified::Malformed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classifier {
    /// The base path without a trailing slash; empty for `/`.
    base_path: String,
    /// When set, only these resource types are recognised.
    allowed_types: Option<Vec<String>>,
}

impl Classifier {
    /// A classifier for the FHIR base `base_path`, e.g. `/fhir/r4`. A missing leading slash is
    /// added, empty segments are dropped and trailing slashes are removed; `""` and `/` mean
    /// the server root. Any resource type of the right shape is accepted.
    ///
    /// The base is the path as clients send it (the full request path, also when the layer
    /// runs inside an axum `Router::nest`).
    ///
    /// ```
    /// use smart_auth::scopes::Classifier;
    ///
    /// assert_eq!(Classifier::new("fhir/r4/").base_path(), "/fhir/r4");
    /// assert_eq!(Classifier::new("/").base_path(), "");
    /// ```
    #[must_use]
    pub fn new(base_path: &str) -> Self {
        let mut normalised = String::with_capacity(base_path.len() + 1);
        for segment in base_path.split('/').filter(|segment| !segment.is_empty()) {
            normalised.push('/');
            normalised.push_str(segment);
        }
        Self {
            base_path: normalised,
            allowed_types: None,
        }
    }

    /// Recognises only these resource types (compared case-sensitively). Requests for other
    /// types become [`Classified::NotFhir`].
    ///
    /// ```
    /// use smart_auth::scopes::{Classified, Classifier};
    ///
    /// let classifier = Classifier::new("/fhir").with_allowed_types(["Patient", "Observation"]);
    /// assert!(matches!(classifier.classify("GET", "/fhir/Patient/1"), Classified::Fhir(_)));
    /// assert_eq!(classifier.classify("GET", "/fhir/Account/1"), Classified::NotFhir);
    /// ```
    #[must_use]
    pub fn with_allowed_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// This classifier for another base path, with the same allowed types.
    #[must_use]
    pub(crate) fn rebased(self, base_path: &str) -> Self {
        Self {
            allowed_types: self.allowed_types,
            ..Self::new(base_path)
        }
    }

    /// The normalised base path (`""` for the server root).
    ///
    /// ```
    /// use smart_auth::scopes::Classifier;
    ///
    /// assert_eq!(Classifier::new("//api//fhir/").base_path(), "/api/fhir");
    /// ```
    #[must_use]
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// Classifies a request. `path` is the request path as sent (percent-encoded) and may
    /// include a query string. See [above](Classifier) for how the path is read.
    ///
    /// ```
    /// use smart_auth::scopes::{Classified, Classifier, FhirRequest};
    ///
    /// let classifier = Classifier::new("/fhir");
    /// assert_eq!(
    ///     classifier.classify("GET", "/fhir/Observation?code=1234-5"),
    ///     Classified::Fhir(FhirRequest::SearchType {
    ///         resource_type: "Observation".into(),
    ///         via_post: false,
    ///     }),
    /// );
    /// // Segments are percent-decoded once, as the router reads them.
    /// assert!(matches!(
    ///     classifier.classify("GET", "/fhir/%50atient/1"),
    ///     Classified::Fhir(FhirRequest::Read { resource_type, .. }) if resource_type == "Patient"
    /// ));
    /// ```
    #[must_use]
    pub fn classify(&self, method: &str, path: &str) -> Classified {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        // An empty path is the root (RFC 3986 section 6.2.3).
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') {
            // `*` asks about the server as a whole (OPTIONS only, RFC 9110 section 9.3.7).
            // Any other path must start with `/` (RFC 9112 section 3.2.1; HTTP/2's
            // `:path`, RFC 9113 section 8.3.1), yet a relative `fhir/Patient/1` reaches the
            // service when HTTP/2 does not check it, and a proxy behind that joins it to
            // its base serves a resource: unreadable, not outside the base.
            return if path == "*" && method == "OPTIONS" {
                Classified::OutsideBase
            } else {
                Classified::Malformed
            };
        }
        let mut segments = path_segments(path);
        // Up to the longest FHIR pattern after the base; the array keeps the common case
        // free of allocation.
        let mut rest: [Cow<'_, str>; MAX_SEGMENTS] = Default::default();
        let mut count = 0;
        for base_segment in self.base_path.split('/').skip(1) {
            match segments.next() {
                Some(Ok(segment)) if segment.eq_ignore_ascii_case(base_segment) => {}
                Some(Err(MalformedPath)) => return Classified::Malformed,
                Some(Ok(segment)) if is_lenient_spelling_of(&segment, base_segment) => {
                    return Classified::Malformed;
                }
                Some(Ok(_)) | None => {
                    // Outside the base, but an unreadable path is unreadable anywhere.
                    return if segments.any(|segment| segment.is_err()) {
                        Classified::Malformed
                    } else {
                        Classified::OutsideBase
                    };
                }
            }
        }
        for segment in segments {
            let Ok(segment) = segment else {
                return Classified::Malformed;
            };
            if let Some(slot) = rest.get_mut(count) {
                *slot = segment;
            }
            count += 1;
        }
        if count > MAX_SEGMENTS {
            return Classified::NotFhir;
        }
        let [a, b, c, d] = &rest;
        let rest = [a.as_ref(), b.as_ref(), c.as_ref(), d.as_ref()];
        let method = match method {
            "HEAD" => "GET",
            other => other,
        };
        self.classify_segments(method, &rest[..count], query)
            .map_or(Classified::NotFhir, Classified::Fhir)
    }

    /// Whether `path` (a query after it is ignored) is at or under `under`, a canonical
    /// path relative to the base (`bulkstatus`, `jobs/status`): the path's segments, as
    /// sent (no decoding, case included), continue the base's exactly with `under`'s, as a
    /// router matches them, and every segment of the path reads as
    /// [`classify`](Self::classify) reads segments. An unreadable path (a dot segment, an
    /// encoded `/`) is under nothing.
    pub(crate) fn is_at_or_under(&self, path: &str, under: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        let Some(inner) = path.strip_prefix('/') else {
            return false;
        };
        let inner = inner.strip_suffix('/').unwrap_or(inner);
        let mut raw = inner.split('/');
        let mut wanted = self.base_path.split('/').skip(1).chain(under.split('/'));
        wanted.all(|expected| raw.next() == Some(expected))
            && path_segments(path).all(|segment| segment.is_ok())
    }

    /// Matches the path segments after the base.
    fn classify_segments(
        &self,
        method: &str,
        segments: &[&str],
        query: Option<&str>,
    ) -> Option<FhirRequest> {
        // Read only for conditional writes: other requests do not pay for it.
        let has_criteria = || query.is_some_and(has_search_criteria);
        let request = match *segments {
            [] => match method {
                "GET" if query.is_some() => FhirRequest::SearchSystem { via_post: false },
                "POST" => FhirRequest::BatchOrTransaction,
                _ => return None,
            },
            ["metadata"] => match method {
                "GET" => FhirRequest::Capabilities,
                _ => return None,
            },
            ["_history"] => match method {
                "GET" => FhirRequest::HistorySystem,
                _ => return None,
            },
            ["_search"] => match method {
                "GET" | "POST" => FhirRequest::SearchSystem {
                    via_post: method == "POST",
                },
                _ => return None,
            },
            [first] if first.starts_with('$') => {
                operation(method, OperationLevel::System, first, None, None)?
            }
            [type_name] => {
                let resource_type = self.resource_type(type_name)?;
                match method {
                    "GET" => FhirRequest::SearchType {
                        resource_type,
                        via_post: false,
                    },
                    "POST" => FhirRequest::Create { resource_type },
                    // A conditional write needs criteria: without one, a server that lets
                    // a write match several resources would write the whole type.
                    "PUT" if has_criteria() => FhirRequest::ConditionalUpdate { resource_type },
                    "PATCH" if has_criteria() => FhirRequest::ConditionalPatch { resource_type },
                    "DELETE" if has_criteria() => FhirRequest::ConditionalDelete { resource_type },
                    _ => return None,
                }
            }
            [type_name, "_history"] => {
                let resource_type = self.resource_type(type_name)?;
                match method {
                    "GET" => FhirRequest::HistoryType { resource_type },
                    _ => return None,
                }
            }
            [type_name, "_search"] => {
                let resource_type = self.resource_type(type_name)?;
                match method {
                    "GET" | "POST" => FhirRequest::SearchType {
                        resource_type,
                        via_post: method == "POST",
                    },
                    _ => return None,
                }
            }
            [type_name, second] if second.starts_with('$') => {
                let resource_type = self.resource_type(type_name)?;
                operation(
                    method,
                    OperationLevel::Type,
                    second,
                    Some(resource_type),
                    None,
                )?
            }
            [type_name, id] => {
                let resource_type = self.resource_type(type_name)?;
                let id = valid_id(id)?;
                match method {
                    "GET" => FhirRequest::Read { resource_type, id },
                    "PUT" => FhirRequest::Update { resource_type, id },
                    "PATCH" => FhirRequest::Patch { resource_type, id },
                    "DELETE" => FhirRequest::Delete { resource_type, id },
                    _ => return None,
                }
            }
            [type_name, id, "_history"] => {
                let resource_type = self.resource_type(type_name)?;
                let id = valid_id(id)?;
                match method {
                    "GET" => FhirRequest::HistoryInstance { resource_type, id },
                    _ => return None,
                }
            }
            [type_name, id, third] if third.starts_with('$') => {
                let resource_type = self.resource_type(type_name)?;
                let id = valid_id(id)?;
                operation(
                    method,
                    OperationLevel::Instance,
                    third,
                    Some(resource_type),
                    Some(id),
                )?
            }
            [compartment, id, target] if is_compartment(compartment) => {
                let id = valid_id(id)?;
                let resource_type = self.compartment_target(target)?;
                match method {
                    "GET" => FhirRequest::SearchCompartment {
                        compartment: (*compartment).to_owned(),
                        id,
                        resource_type,
                        via_post: false,
                    },
                    _ => return None,
                }
            }
            [compartment, id, target, "_search"] if is_compartment(compartment) => {
                let id = valid_id(id)?;
                let resource_type = self.compartment_target(target)?;
                match method {
                    "GET" | "POST" => FhirRequest::SearchCompartment {
                        compartment: (*compartment).to_owned(),
                        id,
                        resource_type,
                        via_post: method == "POST",
                    },
                    _ => return None,
                }
            }
            [type_name, id, "_history", version_id] => {
                let resource_type = self.resource_type(type_name)?;
                let id = valid_id(id)?;
                let version_id = valid_id(version_id)?;
                match method {
                    "GET" => FhirRequest::Vread {
                        resource_type,
                        id,
                        version_id,
                    },
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(request)
    }

    /// The searched type of a compartment search: `Some(type)`, or `None` for `*` (every
    /// type); not a search target otherwise.
    #[allow(clippy::option_option)]
    fn compartment_target(&self, segment: &str) -> Option<Option<String>> {
        if segment == "*" {
            Some(None)
        } else {
            self.resource_type(segment).map(Some)
        }
    }

    /// Checks a type segment against the shape and the allowed list. A compartment type
    /// or `Group` in another case (`PATIENT`) is no type: a case-insensitive server would
    /// read it as the type whose rules (the patient in context, group exports) are matched
    /// exactly.
    fn resource_type(&self, segment: &str) -> Option<String> {
        let allowed = self
            .allowed_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|allowed| allowed == segment));
        let miscased = COMPARTMENTS
            .iter()
            .chain(&["Group"])
            .any(|name| name.eq_ignore_ascii_case(segment) && *name != segment);
        (is_resource_type_name(segment) && allowed && !miscased).then(|| segment.to_owned())
    }
}

/// The parameters that shape a search's results or paging, or override its method, but
/// select no resources (FHIR search "Result parameters", paging links' own parameters):
/// no search criterion, and no granular scope's filter.
pub(crate) const NO_CRITERION: [&str; 23] = [
    "_format",
    "_pretty",
    "_summary",
    "_elements",
    "_count",
    "_offset",
    "_sort",
    "_total",
    "_include",
    "_revinclude",
    "_contained",
    "_containedType",
    "_graph",
    "_maxresults",
    "_score",
    "_type",
    "_bundletype",
    "_since",
    "_at",
    "_getpagesoffset",
    "_pageId",
    "_page",
    "_cursor",
];

/// Whether a query holds a search criterion: a parameter with a value (FHIR: servers
/// ignore empty parameters) whose name reads one way (strictly decoded, printable ASCII,
/// matched ignoring case) and is not one of those that only shape the answer (`_format`,
/// `_pretty`, `_summary`, `_elements`, `_count`, `_offset`, `_sort`, `_total`) or add to it
/// (`_include`, `_revinclude`, `_contained`, `_containedType`, `_graph`, `_maxresults`,
/// `_score`), nor a system search's, a history's or a page's (`_type`, `_bundletype`,
/// `_since`, `_at`, `_getpagesoffset`, `_pageId`, `_page`, `_cursor`), nor a method override (`_method`, which the framework consumes). `DELETE
/// Observation?`, `DELETE Observation?_format=json`, `?code=` or `?code=,` has none. A
/// piece holding a `;` counts for nothing: a server that splits the query at `;` reads
/// other pairs than one that does not, and Go's `net/url` drops such a piece
/// (`?_format=json;code=x` has no criterion).
fn has_search_criteria(query: &str) -> bool {
    query
        .split('&')
        .filter(|pair| !pair.contains(';'))
        .any(|pair| {
            let Some((name, value)) = pair.split_once('=') else {
                return false;
            };
            // Blank as Java's `trim` and `isBlank` read it; a list of nothing (`,`) too.
            let has_value = crate::form::decoded_raw_parameter_name(value).is_some_and(|value| {
                !value
                    .split(',')
                    .all(|item| item.chars().all(|c| c <= ' ' || c.is_whitespace()))
            });
            has_value
                && crate::form::lenient_raw_parameter_name(name).is_some_and(|name| {
                    let base = name.split(':').next().unwrap_or_default();
                    !base.is_empty()
                        && !crate::form::reads_as(base, "_method")
                        && !NO_CRITERION
                            .iter()
                            .any(|shaping| base.eq_ignore_ascii_case(shaping))
                })
        })
}

/// FHIR's compartment types (R4 and R5): `[base]/[compartment]/[id]/[type]` searches in
/// one of them.
fn is_compartment(segment: &str) -> bool {
    COMPARTMENTS.contains(&segment)
}

/// The compartment types of [`is_compartment`].
const COMPARTMENTS: [&str; 6] = [
    "Patient",
    "Encounter",
    "RelatedPerson",
    "Practitioner",
    "Device",
    "EpisodeOfCare",
];

/// Why a path cannot be read one way only (see [`Classifier`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MalformedPath;

/// The percent-decoded segments of `path` (which starts with `/`, without a query), each
/// or why it is refused: `/` has no segment, and one trailing slash is ignored. Segments
/// without escapes are borrowed.
fn path_segments(path: &str) -> impl Iterator<Item = Result<Cow<'_, str>, MalformedPath>> {
    let inner = path.strip_prefix('/').unwrap_or(path);
    // `/` is the root, without segments; otherwise one trailing slash is dropped (`//`
    // keeps an empty segment, which is refused).
    let inner = (!inner.is_empty()).then(|| inner.strip_suffix('/').unwrap_or(inner));
    inner
        .into_iter()
        .flat_map(|inner| inner.split('/'))
        .map(canonical_segment)
}

/// One decoded segment, or why it is refused. The decoding is the crate's strict one
/// (`percent-encoding` plus the well-formed-escape rule); the refusals after it (empty, dot
/// segments, `/`, `\`, `;`, `%` or a control once decoded) are this classifier's own rules,
/// which no codec knows, so they stay here.
fn canonical_segment(raw: &str) -> Result<Cow<'_, str>, MalformedPath> {
    let decoded = if raw.contains('%') {
        Cow::Owned(crate::form::percent_decode_strict(raw).ok_or(MalformedPath)?)
    } else {
        Cow::Borrowed(raw)
    };
    let ambiguous = decoded.is_empty()
        || decoded == "."
        || decoded == ".."
        || decoded
            .chars()
            .any(|c| matches!(c, '/' | '\\' | ';' | '%') || c.is_control());
    if ambiguous {
        Err(MalformedPath)
    } else {
        Ok(decoded)
    }
}

/// Whether `segment` is not `base_segment` but a server may read it as that: with
/// whitespace around it (Spring's path matcher trimmed it, CVE-2016-5007) or dots after it
/// (IIS drops them), case aside. Such a path is neither under the base nor outside it.
fn is_lenient_spelling_of(segment: &str, base_segment: &str) -> bool {
    segment
        .trim_start_matches(char::is_whitespace)
        .trim_end_matches(|c: char| c.is_whitespace() || c == '.')
        .eq_ignore_ascii_case(base_segment)
}

/// The path of a SMART configuration, after a FHIR base or at the root.
const SMART_CONFIGURATION_PATH: &str = "/.well-known/smart-configuration";

/// Whether `path` is the SMART configuration a FHIR server publishes: at the base
/// (`{base}/.well-known/smart-configuration`, `base_path` `""` for the root) or at the
/// root, compared as sent.
pub(crate) fn is_smart_configuration_path(path: &str, base_path: &str) -> bool {
    path == SMART_CONFIGURATION_PATH
        || path
            .strip_prefix(base_path)
            .is_some_and(|rest| rest == SMART_CONFIGURATION_PATH)
}

/// Whether a first path segment after the FHIR base starts a FHIR interaction, so that a
/// setting opening that path would open FHIR to anonymous callers or any token: a resource
/// type name, `metadata`, a `_` name (`_history`, `_search`) or an operation (`$export`).
pub(crate) fn starts_fhir_interaction(segment: &str) -> bool {
    segment == "metadata"
        || segment.starts_with('_')
        || segment.starts_with('$')
        || crate::scopes::is_resource_type_name(segment)
}

/// Checks an id segment: `[A-Za-z0-9\-.]{1,64}`, but not `.` or `..`.
fn valid_id(segment: &str) -> Option<String> {
    let shape_ok = (1..=MAX_ID_LEN).contains(&segment.len())
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
    (shape_ok && segment != "." && segment != "..").then(|| segment.to_owned())
}

/// Builds an operation request from a `$name` segment; only GET and POST invoke operations.
fn operation(
    method: &str,
    level: OperationLevel,
    segment: &str,
    resource_type: Option<String>,
    id: Option<String>,
) -> Option<FhirRequest> {
    let name = segment.strip_prefix('$')?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    (name_ok && matches!(method, "GET" | "POST")).then(|| {
        FhirRequest::Operation(Operation {
            level,
            name: name.to_owned(),
            resource_type,
            id,
        })
    })
}

/// The outcome of classifying a request.
///
/// ```
/// use smart_auth::scopes::{Classified, FhirRequest};
///
/// assert!(matches!(FhirRequest::classify("GET", "/fhir/metadata", "/fhir"), Classified::Fhir(_)));
/// assert_eq!(FhirRequest::classify("GET", "/fhir/Patient/1/x/y/z", "/fhir"), Classified::NotFhir);
/// assert_eq!(FhirRequest::classify("GET", "/status", "/fhir"), Classified::OutsideBase);
/// assert_eq!(FhirRequest::classify("GET", "/fhir//Patient", "/fhir"), Classified::Malformed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// A FHIR REST interaction under the base.
    Fhir(FhirRequest),
    /// Under the base, but not a FHIR REST interaction this module recognises (unknown method,
    /// bad type or id, unexpected segments). Deny unless you have your own rule.
    NotFhir,
    /// Not under the FHIR base path.
    OutsideBase,
    /// A path that cannot be read one way only (empty or dot segments, bad or ambiguous
    /// percent-escapes; see [`Classifier`]), wherever it points. Always deny: it
    /// cannot be placed under or outside the base with certainty.
    Malformed,
}

/// A recognised FHIR REST request. New kinds may be added.
///
/// ```
/// use smart_auth::scopes::{Classified, FhirRequest};
///
/// let Classified::Fhir(request) = FhirRequest::classify("DELETE", "/fhir/Observation/7", "/fhir")
/// else {
///     panic!("a FHIR request");
/// };
/// assert_eq!(
///     request,
///     FhirRequest::Delete { resource_type: "Observation".into(), id: "7".into() },
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FhirRequest {
    /// `GET [type]/[id]`.
    Read {
        /// Resource type.
        resource_type: String,
        /// Resource id.
        id: String,
    },
    /// `GET [type]/[id]/_history/[vid]`.
    Vread {
        /// Resource type.
        resource_type: String,
        /// Resource id.
        id: String,
        /// Version id.
        version_id: String,
    },
    /// `PUT [type]/[id]`.
    Update {
        /// Resource type.
        resource_type: String,
        /// Resource id.
        id: String,
    },
    /// `PUT [type]?[params]`.
    ConditionalUpdate {
        /// Resource type.
        resource_type: String,
    },
    /// `PATCH [type]/[id]`.
    Patch {
        /// Resource type.
        resource_type: String,
        /// Resource id.
        id: String,
    },
    /// `PATCH [type]?[params]`.
    ConditionalPatch {
        /// Resource type.
        resource_type: String,
    },
    /// `DELETE [type]/[id]`.
    Delete {
        /// Resource type.
        resource_type: String,
        /// Resource id.
        id: String,
    },
    /// `DELETE [type]?[params]`.
    ConditionalDelete {
        /// Resource type.
        resource_type: String,
    },
    /// `GET [type]/[id]/_history`.
    HistoryInstance {
        /// Resource type.
        resource_type: String,
        /// Resource id.
        id: String,
    },
    /// `GET [type]/_history`.
    HistoryType {
        /// Resource type.
        resource_type: String,
    },
    /// `GET /_history`.
    HistorySystem,
    /// `POST [type]`.
    Create {
        /// Resource type.
        resource_type: String,
    },
    /// `POST [type]` with an `If-None-Exist` header (or a bundle entry's
    /// `request.ifNoneExist`): the server searches first, so it needs `s` besides `c`.
    /// Made from [`Create`](Self::Create) by [`with_if_none_exist`](Self::with_if_none_exist).
    ConditionalCreate {
        /// Resource type.
        resource_type: String,
    },
    /// `GET [type]?...` or `GET|POST [type]/_search`.
    SearchType {
        /// Resource type.
        resource_type: String,
        /// Whether it came as `POST [type]/_search` (parameters may be in the body).
        via_post: bool,
    },
    /// `GET [compartment]/[id]/[type]?...` (`[type]` may be `*`), or the same with
    /// `/_search` by `GET` or `POST`: a search of one type, or of every type, in a
    /// compartment. Limiting the results to the compartment is the handler's job.
    SearchCompartment {
        /// The compartment type, such as `Patient`.
        compartment: String,
        /// The compartment's id.
        id: String,
        /// The searched type; `None` for `*`.
        resource_type: Option<String>,
        /// Whether it came as `POST …/_search` (parameters may be in the body).
        via_post: bool,
    },
    /// `GET [base]?...` or `GET|POST [base]/_search`.
    SearchSystem {
        /// Whether it came as `POST /_search` (parameters may be in the body).
        via_post: bool,
    },
    /// `GET /metadata`.
    Capabilities,
    /// `POST [base]`: a batch or transaction Bundle.
    BatchOrTransaction,
    /// An operation (`$name`) at system, type or instance level.
    Operation(Operation),
}

/// An operation invocation such as `Patient/123/$everything`.
///
/// ```
/// use smart_auth::scopes::{Classified, FhirRequest, Operation, OperationLevel};
///
/// let Classified::Fhir(FhirRequest::Operation(operation)) =
///     FhirRequest::classify("GET", "/fhir/Patient/123/$everything", "/fhir")
/// else {
///     panic!("an operation");
/// };
/// assert_eq!(
///     operation,
///     Operation {
///         level: OperationLevel::Instance,
///         name: "everything".into(),
///         resource_type: Some("Patient".into()),
///         id: Some("123".into()),
///     },
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Where the operation was invoked.
    pub level: OperationLevel,
    /// The operation name without the `$`, e.g. `export`.
    pub name: String,
    /// The resource type for type and instance level.
    pub resource_type: Option<String>,
    /// The resource id for instance level.
    pub id: Option<String>,
}

/// Where an operation is invoked.
///
/// ```
/// use smart_auth::scopes::{Classified, FhirRequest, OperationLevel};
///
/// let level = |path| match FhirRequest::classify("GET", path, "/fhir") {
///     Classified::Fhir(FhirRequest::Operation(operation)) => operation.level,
///     _ => panic!("an operation"),
/// };
/// assert_eq!(level("/fhir/$export"), OperationLevel::System);
/// assert_eq!(level("/fhir/Patient/$export"), OperationLevel::Type);
/// assert_eq!(level("/fhir/Patient/1/$everything"), OperationLevel::Instance);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationLevel {
    /// `[base]/$name`.
    System,
    /// `[base]/[type]/$name`.
    Type,
    /// `[base]/[type]/[id]/$name`.
    Instance,
}

/// What a request needs from the token's scopes.
///
/// ```
/// use smart_auth::scopes::{AccessRule, Classified, FhirRequest};
///
/// let access = |method, path| match FhirRequest::classify(method, path, "/fhir") {
///     Classified::Fhir(request) => request.access(),
///     _ => panic!("a FHIR request"),
/// };
/// assert_eq!(access("GET", "/fhir/metadata"), AccessRule::Public);
/// assert_eq!(access("POST", "/fhir"), AccessRule::PerEntry);
/// assert_eq!(access("POST", "/fhir/$export"), AccessRule::OperationPolicy);
/// assert!(matches!(access("GET", "/fhir/Patient/1"), AccessRule::Requires(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessRule {
    /// Needs no scope (the capability statement).
    Public,
    /// Every listed requirement must be permitted.
    Requires(Vec<Requirement>),
    /// A batch or transaction: check each entry as its own request.
    PerEntry,
    /// An operation: SMART defines no letters for operations, so the caller's policy decides.
    /// For `$export`, see [`export_requirements`].
    OperationPolicy,
}

impl FhirRequest {
    /// Classifies a request with a default [`Classifier`] for `base_path`.
    ///
    /// ```
    /// use smart_auth::scopes::{Classified, Classifier, FhirRequest};
    ///
    /// let classified = FhirRequest::classify("PUT", "/api/fhir/Patient/9", "/api/fhir");
    /// assert_eq!(classified, Classifier::new("/api/fhir").classify("PUT", "/api/fhir/Patient/9"));
    /// assert!(matches!(classified, Classified::Fhir(FhirRequest::Update { .. })));
    /// ```
    #[must_use]
    pub fn classify(method: &str, path: &str, base_path: &str) -> Classified {
        Classifier::new(base_path).classify(method, path)
    }

    /// This request as sent with an `If-None-Exist` header: a [`Create`](Self::Create)
    /// becomes a [`ConditionalCreate`](Self::ConditionalCreate); any other request is
    /// returned as it is (the header means nothing to it).
    ///
    /// ```
    /// use smart_auth::scopes::{Classified, FhirRequest};
    ///
    /// let Classified::Fhir(create) = FhirRequest::classify("POST", "/fhir/Patient", "/fhir") else {
    ///     unreachable!()
    /// };
    /// assert!(matches!(create.with_if_none_exist(), FhirRequest::ConditionalCreate { .. }));
    /// ```
    #[must_use]
    pub fn with_if_none_exist(self) -> Self {
        match self {
            Self::Create { resource_type } => Self::ConditionalCreate { resource_type },
            other => other,
        }
    }

    /// The resource type in the path, if any.
    ///
    /// ```
    /// use smart_auth::scopes::{Classified, FhirRequest};
    ///
    /// let resource_type = |path| match FhirRequest::classify("GET", path, "/fhir") {
    ///     Classified::Fhir(request) => request.resource_type().map(str::to_owned),
    ///     _ => panic!("a FHIR request"),
    /// };
    /// assert_eq!(resource_type("/fhir/Observation/1/_history").as_deref(), Some("Observation"));
    /// assert_eq!(resource_type("/fhir/_history"), None); // system level
    /// ```
    #[must_use]
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Self::Read { resource_type, .. }
            | Self::Vread { resource_type, .. }
            | Self::Update { resource_type, .. }
            | Self::ConditionalUpdate { resource_type }
            | Self::Patch { resource_type, .. }
            | Self::ConditionalPatch { resource_type }
            | Self::Delete { resource_type, .. }
            | Self::ConditionalDelete { resource_type }
            | Self::HistoryInstance { resource_type, .. }
            | Self::HistoryType { resource_type }
            | Self::Create { resource_type }
            | Self::ConditionalCreate { resource_type }
            | Self::SearchType { resource_type, .. } => Some(resource_type),
            Self::SearchCompartment { resource_type, .. } => resource_type.as_deref(),
            Self::Operation(operation) => operation.resource_type.as_deref(),
            Self::HistorySystem
            | Self::SearchSystem { .. }
            | Self::Capabilities
            | Self::BatchOrTransaction => None,
        }
    }

    /// The id of the Patient whose data the path names: the Patient itself (`Patient/[id]`
    /// read, vread, history, update, patch, delete or an instance operation), or the Patient
    /// compartment a search is limited to (`Patient/[id]/[type]`). `None` for every other
    /// request, whose patient only its resources or query can tell.
    ///
    /// ```
    /// use smart_auth::scopes::{Classified, FhirRequest};
    ///
    /// let named = |method, path| match FhirRequest::classify(method, path, "/fhir") {
    ///     Classified::Fhir(request) => request.named_patient().map(str::to_owned),
    ///     _ => None,
    /// };
    /// assert_eq!(named("GET", "/fhir/Patient/123").as_deref(), Some("123"));
    /// assert_eq!(named("GET", "/fhir/Patient/123/Observation").as_deref(), Some("123"));
    /// assert_eq!(named("GET", "/fhir/Observation/123"), None);
    /// ```
    #[must_use]
    pub fn named_patient(&self) -> Option<&str> {
        const PATIENT: &str = "Patient";
        match self {
            Self::Read { resource_type, id }
            | Self::Vread {
                resource_type, id, ..
            }
            | Self::Update { resource_type, id }
            | Self::Patch { resource_type, id }
            | Self::Delete { resource_type, id }
            | Self::HistoryInstance { resource_type, id } => {
                (resource_type == PATIENT).then_some(id.as_str())
            }
            Self::SearchCompartment {
                compartment, id, ..
            } => (compartment == PATIENT).then_some(id.as_str()),
            Self::Operation(operation) => match (&operation.resource_type, &operation.id) {
                (Some(resource_type), Some(id)) if resource_type == PATIENT => Some(id),
                _ => None,
            },
            Self::ConditionalUpdate { .. }
            | Self::ConditionalPatch { .. }
            | Self::ConditionalDelete { .. }
            | Self::HistoryType { .. }
            | Self::HistorySystem
            | Self::Create { .. }
            | Self::ConditionalCreate { .. }
            | Self::SearchType { .. }
            | Self::SearchSystem { .. }
            | Self::Capabilities
            | Self::BatchOrTransaction => None,
        }
    }

    /// The main [`Interaction`] and its resource type (`*` at system level), or `None` for
    /// capabilities, batch/transaction and operations.
    ///
    /// ```
    /// use smart_auth::scopes::{Classified, FhirRequest, Interaction, ResourceType};
    ///
    /// let Classified::Fhir(request) = FhirRequest::classify("GET", "/fhir/Patient/1/_history/2", "/fhir")
    /// else {
    ///     panic!("a FHIR request");
    /// };
    /// assert_eq!(
    ///     request.interaction(),
    ///     Some((Interaction::Vread, ResourceType::Named("Patient".into()))),
    /// );
    /// ```
    #[must_use]
    pub fn interaction(&self) -> Option<(Interaction, ResourceType)> {
        let named = |name: &String| ResourceType::Named(name.clone());
        let pair = match self {
            Self::Read { resource_type, .. } => (Interaction::Read, named(resource_type)),
            Self::Vread { resource_type, .. } => (Interaction::Vread, named(resource_type)),
            Self::Update { resource_type, .. } | Self::ConditionalUpdate { resource_type } => {
                (Interaction::Update, named(resource_type))
            }
            Self::Patch { resource_type, .. } | Self::ConditionalPatch { resource_type } => {
                (Interaction::Patch, named(resource_type))
            }
            Self::Delete { resource_type, .. } | Self::ConditionalDelete { resource_type } => {
                (Interaction::Delete, named(resource_type))
            }
            Self::HistoryInstance { resource_type, .. } => {
                (Interaction::HistoryInstance, named(resource_type))
            }
            Self::HistoryType { resource_type } => (Interaction::HistoryType, named(resource_type)),
            Self::Create { resource_type } | Self::ConditionalCreate { resource_type } => {
                (Interaction::Create, named(resource_type))
            }
            Self::SearchCompartment {
                resource_type: Some(resource_type),
                ..
            } => (Interaction::SearchType, named(resource_type)),
            Self::SearchCompartment {
                resource_type: None,
                ..
            } => (Interaction::SearchSystem, ResourceType::Any),
            Self::SearchType { resource_type, .. } => {
                (Interaction::SearchType, named(resource_type))
            }
            Self::HistorySystem => (Interaction::HistorySystem, ResourceType::Any),
            Self::SearchSystem { .. } => (Interaction::SearchSystem, ResourceType::Any),
            Self::Capabilities | Self::BatchOrTransaction | Self::Operation(_) => return None,
        };
        Some(pair)
    }

    /// What the request needs from the token's scopes.
    ///
    /// Conditional create, update, patch and delete run a search on the server, so they need
    /// `s` on the type besides `c`, `u` or `d`. System search and history need `s` on `*`; a caller that
    /// evaluates `_type` may check each listed type instead.
    ///
    /// ```
    /// use smart_auth::scopes::{AccessRule, Classified, FhirRequest, Interaction, Requirement, ResourceType};
    ///
    /// // A conditional delete searches first: it needs `d` and `s` on the type.
    /// let Classified::Fhir(request) = FhirRequest::classify("DELETE", "/fhir/Patient?name=x", "/fhir")
    /// else {
    ///     panic!("a FHIR request");
    /// };
    /// let patient = || ResourceType::Named("Patient".into());
    /// assert_eq!(
    ///     request.access(),
    ///     AccessRule::Requires(vec![
    ///         Requirement::new(Interaction::Delete, patient()),
    ///         Requirement::new(Interaction::SearchType, patient()),
    ///     ]),
    /// );
    /// ```
    #[must_use]
    pub fn access(&self) -> AccessRule {
        match self {
            Self::Capabilities => AccessRule::Public,
            Self::BatchOrTransaction => AccessRule::PerEntry,
            Self::Operation(_) => AccessRule::OperationPolicy,
            _ => {
                let mut requirements: Vec<Requirement> = self
                    .interaction()
                    .map(|(interaction, resource_type)| {
                        Requirement::new(interaction, resource_type)
                    })
                    .into_iter()
                    .collect();
                if let Self::ConditionalCreate { resource_type }
                | Self::ConditionalUpdate { resource_type }
                | Self::ConditionalPatch { resource_type }
                | Self::ConditionalDelete { resource_type } = self
                {
                    requirements.push(Requirement::new(
                        Interaction::SearchType,
                        ResourceType::Named(resource_type.clone()),
                    ));
                }
                // A patch answers with the whole patched resource when asked (`Prefer:
                // return=representation`, the default of many servers), and a JSON Patch
                // `test` (or a FHIRPath Patch) tells whether any element holds a value:
                // it reads as much as it writes, and write does not imply read.
                if let Self::Patch { resource_type, .. }
                | Self::ConditionalPatch { resource_type } = self
                {
                    requirements.push(Requirement::new(
                        Interaction::Read,
                        ResourceType::Named(resource_type.clone()),
                    ));
                }
                AccessRule::Requires(requirements)
            }
        }
    }
}

/// The requirements of a Bulk Data `$export` kick-off.
///
/// `type_param` is the decoded `_type` parameter, a comma-separated list of types; when it is
/// absent, every type (`*`) is exported. Each exported type needs `s` (v1 `read` also grants
/// it, since it means `rs`). An empty entry (`_type=`, `Patient,`, `Patient,,Group`) needs
/// `s` on every type too: a server may read an empty `_type` as "no restriction". At
/// [`OperationLevel::Instance`] (`Group/[id]/$export`) the caller also needs `r` on `Group`.
/// Repeated types are listed once. An entry that is not a valid type name is kept as given:
/// only a `*` scope can satisfy it, and the server should reject the export anyway.
///
/// ```
/// use smart_auth::scopes::{OperationLevel, export_requirements};
///
/// let named = |types| -> Vec<String> {
///     export_requirements(OperationLevel::System, types)
///         .iter()
///         .map(|r| r.resource_type.as_str().to_owned())
///         .collect()
/// };
/// assert_eq!(named(Some("Patient,Observation,Patient")), ["Patient", "Observation"]);
/// assert_eq!(named(Some("Patient,")), ["Patient", "*"]);
/// assert_eq!(named(None), ["*"]);
/// ```
#[must_use]
pub fn export_requirements(level: OperationLevel, type_param: Option<&str>) -> Vec<Requirement> {
    let mut requirements: Vec<Requirement> = Vec::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for name in type_param.unwrap_or_default().split(',').map(str::trim) {
        let name = if name.is_empty() { "*" } else { name };
        if !seen.insert(name) {
            continue;
        }
        let resource_type =
            ResourceType::parse(name).unwrap_or_else(|| ResourceType::Named(name.to_owned()));
        requirements.push(Requirement::new(Interaction::SearchType, resource_type));
    }
    if level == OperationLevel::Instance {
        requirements.push(Requirement::new(
            Interaction::Read,
            ResourceType::Named("Group".to_owned()),
        ));
    }
    requirements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scopes::{Context, ScopeSet};
    use proptest::prelude::*;

    /// The paths a valid token is enough for: the base's and the configured segments match
    /// as sent, exactly; every segment must read as FHIR path segments do (dot segments,
    /// encoded slashes and other ambiguous segments make a path unreadable, under nothing).
    #[test]
    fn paths_at_or_under_a_configured_path() {
        let classifier = Classifier::new("/fhir");
        for path in [
            "/fhir/bulkstatus",
            "/fhir/bulkstatus/",
            "/fhir/bulkstatus/1",
            "/fhir/bulkstatus/1/files/a.ndjson",
            "/fhir/bulkstatus/1?_format=json",
            "/fhir/bulkstatus/%7E1",
        ] {
            assert!(classifier.is_at_or_under(path, "bulkstatus"), "{path}");
        }
        for path in [
            "/fhir",
            "/fhir/",
            // Not what a router matches: another case, an escape for a plain character.
            "/FHIR/bulkstatus/1",
            "/fhir/%62ulkstatus/1",
            "/fhir/bulkstatus2",
            "/fhir/Bulkstatus/1",
            "/fhir/bulk/status",
            "/other/bulkstatus/1",
            "/bulkstatus/1",
            "/fhir/bulkstatus/../Patient/1",
            "/fhir/bulkstatus/%2e%2e/Patient/1",
            "/fhir/bulkstatus%2F1",
            "/fhir/bulkstatus/1%2F..%2F..%2FPatient",
            "/fhir/bulkstatus/./1",
            "/fhir/bulkstatus//1",
            "/fhir//bulkstatus/1",
            "/fhir/bulkstatus/1;x=y",
            "/fhir/bulkstatus/%zz",
            "/fhir/bulkstatus/%00",
            "/fhir/bulkstatus/a\\b",
            "fhir/bulkstatus/1",
            "*",
            "",
        ] {
            assert!(!classifier.is_at_or_under(path, "bulkstatus"), "{path}");
        }
        // Several segments, and a root base.
        assert!(classifier.is_at_or_under("/fhir/jobs/status/7", "jobs/status"));
        assert!(!classifier.is_at_or_under("/fhir/jobs/7", "jobs/status"));
        let root = Classifier::new("/");
        assert!(root.is_at_or_under("/$export-poll-status?_jobId=1", "$export-poll-status"));
        assert!(!root.is_at_or_under("/$export", "$export-poll-status"));
    }

    fn t(name: &str) -> String {
        name.to_owned()
    }

    fn fhir(request: FhirRequest) -> Classified {
        Classified::Fhir(request)
    }

    fn op(
        level: OperationLevel,
        name: &str,
        resource_type: Option<&str>,
        id: Option<&str>,
    ) -> Classified {
        fhir(FhirRequest::Operation(Operation {
            level,
            name: name.to_owned(),
            resource_type: resource_type.map(str::to_owned),
            id: id.map(str::to_owned),
        }))
    }

    #[test]
    fn classification_table() {
        use FhirRequest::*;
        use OperationLevel::{Instance, System, Type};
        let cases: Vec<(&str, &str, Classified)> = vec![
            // Instance level.
            (
                "GET",
                "/Patient/123",
                fhir(Read {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            (
                "HEAD",
                "/Patient/123",
                fhir(Read {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            (
                "GET",
                "/Patient/123/",
                fhir(Read {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            (
                "GET",
                "/Patient/123?_format=json",
                fhir(Read {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            (
                "GET",
                "/Patient/a-b.C9",
                fhir(Read {
                    resource_type: t("Patient"),
                    id: t("a-b.C9"),
                }),
            ),
            (
                "GET",
                "/Patient/123/_history/2",
                fhir(Vread {
                    resource_type: t("Patient"),
                    id: t("123"),
                    version_id: t("2"),
                }),
            ),
            (
                "GET",
                "/Patient/123/_history/2/",
                fhir(Vread {
                    resource_type: t("Patient"),
                    id: t("123"),
                    version_id: t("2"),
                }),
            ),
            (
                "GET",
                "/Patient/123/_history",
                fhir(HistoryInstance {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            (
                "PUT",
                "/Patient/123",
                fhir(Update {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            (
                "PATCH",
                "/Patient/123",
                fhir(Patch {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            (
                "DELETE",
                "/Patient/123",
                fhir(Delete {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            // Type level.
            (
                "GET",
                "/Patient",
                fhir(SearchType {
                    resource_type: t("Patient"),
                    via_post: false,
                }),
            ),
            (
                "GET",
                "/Patient/",
                fhir(SearchType {
                    resource_type: t("Patient"),
                    via_post: false,
                }),
            ),
            (
                "GET",
                "/Patient?name=smith&_count=10",
                fhir(SearchType {
                    resource_type: t("Patient"),
                    via_post: false,
                }),
            ),
            (
                "POST",
                "/Patient/_search",
                fhir(SearchType {
                    resource_type: t("Patient"),
                    via_post: true,
                }),
            ),
            (
                "POST",
                "/Patient/_search?name=smith",
                fhir(SearchType {
                    resource_type: t("Patient"),
                    via_post: true,
                }),
            ),
            (
                "GET",
                "/Patient/_search",
                fhir(SearchType {
                    resource_type: t("Patient"),
                    via_post: false,
                }),
            ),
            (
                "GET",
                "/Patient/_history",
                fhir(HistoryType {
                    resource_type: t("Patient"),
                }),
            ),
            (
                "POST",
                "/Patient",
                fhir(Create {
                    resource_type: t("Patient"),
                }),
            ),
            (
                "POST",
                "/Patient/",
                fhir(Create {
                    resource_type: t("Patient"),
                }),
            ),
            (
                "POST",
                "/Patient?ignored=1",
                fhir(Create {
                    resource_type: t("Patient"),
                }),
            ),
            (
                "PUT",
                "/Patient?identifier=x|1",
                fhir(ConditionalUpdate {
                    resource_type: t("Patient"),
                }),
            ),
            (
                "PATCH",
                "/Patient?identifier=x|1",
                fhir(ConditionalPatch {
                    resource_type: t("Patient"),
                }),
            ),
            (
                "DELETE",
                "/Patient?identifier=x|1",
                fhir(ConditionalDelete {
                    resource_type: t("Patient"),
                }),
            ),
            (
                "DELETE",
                "/Patient?_format=json;x=1&_count=1&identifier=x%7C1&name=",
                fhir(ConditionalDelete {
                    resource_type: t("Patient"),
                }),
            ),
            // System level.
            ("GET", "/metadata", fhir(Capabilities)),
            ("GET", "/metadata?mode=terminology", fhir(Capabilities)),
            ("HEAD", "/metadata/", fhir(Capabilities)),
            ("GET", "/_history", fhir(HistorySystem)),
            (
                "GET",
                "/?_type=Patient",
                fhir(SearchSystem { via_post: false }),
            ),
            (
                "GET",
                "?_type=Patient",
                fhir(SearchSystem { via_post: false }),
            ),
            ("POST", "/_search", fhir(SearchSystem { via_post: true })),
            (
                "GET",
                "/_search?_type=Patient",
                fhir(SearchSystem { via_post: false }),
            ),
            ("POST", "/", fhir(BatchOrTransaction)),
            ("POST", "", fhir(BatchOrTransaction)),
            // Operations.
            ("GET", "/$export", op(System, "export", None, None)),
            (
                "GET",
                "/$export?_type=Patient,Observation",
                op(System, "export", None, None),
            ),
            (
                "POST",
                "/$validate-code",
                op(System, "validate-code", None, None),
            ),
            (
                "POST",
                "/Patient/$match",
                op(Type, "match", Some("Patient"), None),
            ),
            (
                "GET",
                "/Patient/$export/",
                op(Type, "export", Some("Patient"), None),
            ),
            (
                "GET",
                "/Patient/123/$everything",
                op(Instance, "everything", Some("Patient"), Some("123")),
            ),
            (
                "GET",
                "/Group/g1/$export",
                op(Instance, "export", Some("Group"), Some("g1")),
            ),
            // Not FHIR REST.
            ("GET", "/", Classified::NotFhir),
            // A conditional write without criteria.
            ("DELETE", "/Observation?", Classified::NotFhir),
            (
                "DELETE",
                "/Observation?_format=json&_pretty=true",
                Classified::NotFhir,
            ),
            ("PATCH", "/Observation?_FORMAT=json", Classified::NotFhir),
            ("PUT", "/Observation?&&;", Classified::NotFhir),
            ("PUT", "/Observation?%ZZ=1", Classified::NotFhir),
            ("DELETE", "/Observation?=1", Classified::NotFhir),
            // Empty criteria are ignored by servers; a piece with `;` reads two ways.
            ("DELETE", "/Observation?code=", Classified::NotFhir),
            ("DELETE", "/Observation?code", Classified::NotFhir),
            ("DELETE", "/Observation?code=%20+", Classified::NotFhir),
            (
                "DELETE",
                "/Observation?_format=json;code=x",
                Classified::NotFhir,
            ),
            (
                "PUT",
                "/Observation?code=x;_format=json",
                Classified::NotFhir,
            ),
            ("DELETE", "/Observation?code=%ZZ", Classified::NotFhir),
            ("DELETE", "/Observation?code=%1F%00", Classified::NotFhir),
            ("DELETE", "/Observation?code=,%20,", Classified::NotFhir),
            // A method override is consumed by the framework: no criterion.
            ("DELETE", "/Observation?_method=DELETE", Classified::NotFhir),
            (
                "DELETE",
                "/Observation?_METHOD=x&_count=1",
                Classified::NotFhir,
            ),
            (
                "PUT",
                "/Observation?_graph=g&_maxresults=1&_score=true",
                Classified::NotFhir,
            ),
            ("DELETE", "/Observation?_type=Patient", Classified::NotFhir),
            ("DELETE", "/Observation?_bundletype=x", Classified::NotFhir),
            (
                "DELETE",
                "/Observation?_getpagesoffset=1&_pageId=2",
                Classified::NotFhir,
            ),
            (
                "PATCH",
                "/Observation?_since=2020&_at=2021",
                Classified::NotFhir,
            ),
            // Parameters that add to the answer are no criteria.
            (
                "DELETE",
                "/Observation?_include=Observation:subject&_revinclude=Provenance:target",
                Classified::NotFhir,
            ),
            (
                "DELETE",
                "/Observation?_contained=true&_containedType=contained&_offset=10",
                Classified::NotFhir,
            ),
            // A compartment type or Group in another case is no type.
            ("GET", "/PATIENT/456", Classified::NotFhir),
            ("GET", "/PAtient/456/_history", Classified::NotFhir),
            (
                "GET",
                "/Patient/456/OBSERVATION",
                fhir(SearchCompartment {
                    compartment: "Patient".into(),
                    id: "456".into(),
                    resource_type: Some("OBSERVATION".into()),
                    via_post: false,
                }),
            ),
            ("GET", "/EnCounter/1/Observation", Classified::NotFhir),
            ("GET", "/GROUP/g1/$export", Classified::NotFhir),
            ("GET", "", Classified::NotFhir),
            ("DELETE", "/", Classified::NotFhir),
            ("PUT", "/Patient", Classified::NotFhir),
            ("PATCH", "/Patient", Classified::NotFhir),
            ("DELETE", "/Patient", Classified::NotFhir),
            ("POST", "/Patient/123", Classified::NotFhir),
            ("POST", "/metadata", Classified::NotFhir),
            ("POST", "/_history", Classified::NotFhir),
            ("DELETE", "/_search", Classified::NotFhir),
            ("PUT", "/Patient/_search", Classified::NotFhir),
            ("POST", "/Patient/_history", Classified::NotFhir),
            ("DELETE", "/Patient/123/_history", Classified::NotFhir),
            ("POST", "/Patient/123/_history/2", Classified::NotFhir),
            ("DELETE", "/Patient/$everything", Classified::NotFhir),
            ("PUT", "/$export", Classified::NotFhir),
            ("get", "/Patient/123", Classified::NotFhir),
            ("OPTIONS", "/Patient", Classified::NotFhir),
            ("GET", "/patient/123", Classified::NotFhir),
            ("GET", "/P/123", Classified::NotFhir),
            ("GET", "/Pat1ent", Classified::NotFhir),
            ("GET", "/Patient/12_3", Classified::NotFhir),
            ("GET", "/Patient/12%203", Classified::NotFhir),
            // Segments are percent-decoded once, as a router's path parameters are.
            (
                "GET",
                "/Patient/%24everything",
                op(OperationLevel::Type, "everything", Some("Patient"), None),
            ),
            (
                "GET",
                "/%50atient/%31",
                fhir(Read {
                    resource_type: t("Patient"),
                    id: t("1"),
                }),
            ),
            ("GET", "/%70atient/1", Classified::NotFhir),
            ("GET", "/Patient/..", Classified::Malformed),
            ("GET", "/Patient/.", Classified::Malformed),
            ("GET", "/Patient/../metadata", Classified::Malformed),
            ("GET", "/Patient/%2E%2E/metadata", Classified::Malformed),
            ("GET", "/Patient%2F1", Classified::Malformed),
            ("GET", "/Patient/1%00", Classified::Malformed),
            ("GET", "/Patient/%2531", Classified::Malformed),
            ("GET", "/Patient/1%2", Classified::Malformed),
            ("GET", "/Patient;a/1", Classified::Malformed),
            ("GET", "/Patient//123", Classified::Malformed),
            ("GET", "//Patient", Classified::Malformed),
            ("GET", "/Patient/123//", Classified::Malformed),
            ("GET", "/Patient/123/_history/2/x", Classified::NotFhir),
            (
                "GET",
                "/Patient/123/_history/",
                fhir(HistoryInstance {
                    resource_type: t("Patient"),
                    id: t("123"),
                }),
            ),
            ("GET", "/Patient/_history/2", Classified::NotFhir),
            ("GET", "/Patient/$", Classified::NotFhir),
            ("GET", "/$", Classified::NotFhir),
            ("GET", "/Patient/$ev/il", Classified::NotFhir),
            (
                "GET",
                "/Patient/$e%76",
                op(OperationLevel::Type, "ev", Some("Patient"), None),
            ),
            (
                "GET",
                "/.well-known/smart-configuration",
                Classified::NotFhir,
            ),
            ("GET", "/Patient/123/_history/..", Classified::Malformed),
            // Compartment searches.
            (
                "GET",
                "/Patient/123/Observation?code=x",
                fhir(SearchCompartment {
                    compartment: t("Patient"),
                    id: t("123"),
                    resource_type: Some(t("Observation")),
                    via_post: false,
                }),
            ),
            (
                "HEAD",
                "/Encounter/e.1/*",
                fhir(SearchCompartment {
                    compartment: t("Encounter"),
                    id: t("e.1"),
                    resource_type: None,
                    via_post: false,
                }),
            ),
            (
                "POST",
                "/Device/d/Observation/_search",
                fhir(SearchCompartment {
                    compartment: t("Device"),
                    id: t("d"),
                    resource_type: Some(t("Observation")),
                    via_post: true,
                }),
            ),
            (
                "GET",
                "/RelatedPerson/r/*/_search",
                fhir(SearchCompartment {
                    compartment: t("RelatedPerson"),
                    id: t("r"),
                    resource_type: None,
                    via_post: false,
                }),
            ),
            ("POST", "/Patient/123/Observation", Classified::NotFhir),
            ("PUT", "/Patient/123/Observation", Classified::NotFhir),
            ("DELETE", "/Patient/123/*/_search", Classified::NotFhir),
            ("GET", "/Observation/1/Patient", Classified::NotFhir),
            ("GET", "/Patient/1/observation", Classified::NotFhir),
            ("GET", "/Patient/1/**", Classified::NotFhir),
            ("GET", "/Patient/1_/Observation", Classified::NotFhir),
            ("GET", "/Patient/1/Observation/1", Classified::NotFhir),
            (
                "GET",
                "/Patient/1/Observation/_history",
                Classified::NotFhir,
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                FhirRequest::classify(method, path, ""),
                expected,
                "{method} {path}"
            );
            // The same request under a base path.
            let based = format!("/fhir/r4{path}");
            assert_eq!(
                FhirRequest::classify(method, &based, "/fhir/r4"),
                expected,
                "{method} {based}"
            );
        }
    }

    #[test]
    fn id_length_limit() {
        let longest = format!("/Patient/{}", "a".repeat(MAX_ID_LEN));
        let too_long = format!("/Patient/{}", "a".repeat(MAX_ID_LEN + 1));
        assert!(matches!(
            FhirRequest::classify("GET", &longest, ""),
            Classified::Fhir(FhirRequest::Read { .. })
        ));
        assert_eq!(
            FhirRequest::classify("GET", &too_long, ""),
            Classified::NotFhir
        );
        let vread_too_long = format!("/Patient/1/_history/{}", "9".repeat(MAX_ID_LEN + 1));
        assert_eq!(
            FhirRequest::classify("GET", &vread_too_long, ""),
            Classified::NotFhir
        );
    }

    #[test]
    fn paths_outside_the_base() {
        let cases = [
            ("/fhir/r4/Patient/1", "/fhir/r4", false),
            ("/fhir/r4", "/fhir/r4", false),
            ("/fhir/r4/", "/fhir/r4/", false),
            ("/fhir/r4/metadata", "fhir/r4", false),
            ("/fhir/r4x/Patient", "/fhir/r4", true),
            ("/fhir/Patient/1", "/fhir/r4", true),
            // The base is compared ignoring ASCII case.
            ("/FHIR/r4/Patient/1", "/fhir/r4", false),
            ("/%66hir/r4/Patient/1", "/fhir/r4", false),
            ("/fhir", "/fhir/r4", true),
            ("/", "/fhir/r4", true),
            ("", "/fhir/r4", true),
            ("Patient/1", "", false),
            ("Patient/1", "/", false),
            ("http://host/fhir/r4/Patient/1", "/fhir/r4", false),
            ("*", "/fhir/r4", false),
            ("/other?x=/fhir/r4/Patient", "/fhir/r4", true),
        ];
        for (path, base, outside) in cases {
            let result = FhirRequest::classify("GET", path, base);
            assert_eq!(
                result == Classified::OutsideBase,
                outside,
                "{path} under {base}: {result:?}"
            );
        }
        // A path that does not start with `/` is unreadable, but `OPTIONS *`.
        for (method, path) in [
            ("GET", "Patient/1"),
            ("DELETE", "fhir/r4/Patient/1"),
            ("GET", "http://host/fhir/r4/Patient/1"),
            ("GET", "*"),
            ("OPTIONS", "*x"),
        ] {
            let result = FhirRequest::classify(method, path, "/fhir/r4");
            assert_eq!(result, Classified::Malformed, "{method} {path}");
        }
        assert_eq!(
            FhirRequest::classify("OPTIONS", "*", "/fhir/r4"),
            Classified::OutsideBase
        );
        assert_eq!(Classifier::new("fhir/r4/").base_path(), "/fhir/r4");
        assert_eq!(Classifier::new("/").base_path(), "");
        assert_eq!(Classifier::new("").base_path(), "");
    }

    /// An unreadable segment anywhere makes the whole path [`Classified::Malformed`]: before
    /// the base, in it, after it, and past the longest FHIR pattern.
    #[test]
    fn unreadable_paths_anywhere() {
        let classifier = Classifier::new("/fhir/r4");
        let cases = [
            ("/", Classified::OutsideBase),
            ("", Classified::OutsideBase),
            ("//", Classified::Malformed),
            ("/other/x", Classified::OutsideBase),
            ("/other//x", Classified::Malformed),
            ("/other/x/%2F", Classified::Malformed),
            ("/other/..", Classified::Malformed),
            ("/fhir", Classified::OutsideBase),
            ("/fhir/", Classified::OutsideBase),
            ("/fhir//", Classified::Malformed),
            ("/fhir/.", Classified::Malformed),
            ("/fhir/r4", Classified::NotFhir),
            ("/fhir/r4/", Classified::NotFhir),
            ("/fhir/r4//", Classified::Malformed),
            ("/fhir/%72%34/metadata", fhir(FhirRequest::Capabilities)),
            ("/fhir/r4/Patient/1/_history/2/x", Classified::NotFhir),
            ("/fhir/r4/Patient/1/_history/2/x/y/z", Classified::NotFhir),
            ("/fhir/r4/Patient/1/_history/2/x/%00", Classified::Malformed),
            ("/fhir/r4/Patient/1/_history/2/x//", Classified::Malformed),
            // Spellings of the base a server may read as the base: whitespace around a
            // segment (trimmed), dots after it (IIS), in any case.
            ("/fhir%20/r4/Patient/1", Classified::Malformed),
            ("/%20fhir/r4/Patient/1", Classified::Malformed),
            ("/fhir./r4/Patient/1", Classified::Malformed),
            ("/FHIR../r4/Patient/1", Classified::Malformed),
            ("/fhir/r4%09/Patient/1", Classified::Malformed),
            ("/fhir/r4%C2%A0/Patient/1", Classified::Malformed),
            ("/fhir/r4.%20/Patient/1", Classified::Malformed),
            ("/fhir/r4x/Patient/1", Classified::OutsideBase),
            ("/fhirx/r4/Patient/1", Classified::OutsideBase),
            ("/.fhir/r4/Patient/1", Classified::OutsideBase),
        ];
        for (path, expected) in cases {
            assert_eq!(classifier.classify("GET", path), expected, "{path}");
        }
        let root = Classifier::new("/");
        assert_eq!(root.classify("GET", "//"), Classified::Malformed);
        assert_eq!(root.classify("GET", "/"), Classified::NotFhir);
        assert_eq!(
            root.classify("POST", "/"),
            fhir(FhirRequest::BatchOrTransaction)
        );
    }

    #[test]
    fn allowed_types_limit_classification() {
        let classifier = Classifier::new("/fhir").with_allowed_types(["Patient", "Observation"]);
        assert_eq!(
            classifier.classify("GET", "/fhir/Observation/1"),
            fhir(FhirRequest::Read {
                resource_type: t("Observation"),
                id: t("1")
            })
        );
        assert_eq!(
            classifier.classify("GET", "/fhir/Condition/1"),
            Classified::NotFhir
        );
        assert_eq!(
            classifier.classify("GET", "/fhir/Condition/$x"),
            Classified::NotFhir
        );
        assert_eq!(
            classifier.classify("GET", "/fhir/metadata"),
            fhir(FhirRequest::Capabilities)
        );
        assert_eq!(
            classifier.classify("GET", "/fhir/$export"),
            op(OperationLevel::System, "export", None, None)
        );
    }

    fn requires(items: &[(Interaction, &str)]) -> AccessRule {
        AccessRule::Requires(
            items
                .iter()
                .map(|(interaction, resource_type)| {
                    let resource_type =
                        ResourceType::parse(resource_type).expect("valid type in test");
                    Requirement::new(*interaction, resource_type)
                })
                .collect(),
        )
    }

    #[test]
    fn access_rules() {
        use Interaction::*;
        let cases = [
            ("GET", "/Patient/1", requires(&[(Read, "Patient")])),
            (
                "GET",
                "/Patient/1/_history/2",
                requires(&[(Vread, "Patient")]),
            ),
            (
                "GET",
                "/Patient/1/_history",
                requires(&[(HistoryInstance, "Patient")]),
            ),
            (
                "GET",
                "/Patient/_history",
                requires(&[(HistoryType, "Patient")]),
            ),
            ("GET", "/_history", requires(&[(HistorySystem, "*")])),
            ("POST", "/Patient", requires(&[(Create, "Patient")])),
            ("PUT", "/Patient/1", requires(&[(Update, "Patient")])),
            // A patch reads as much as it writes.
            (
                "PATCH",
                "/Patient/1",
                requires(&[(Patch, "Patient"), (Read, "Patient")]),
            ),
            ("DELETE", "/Patient/1", requires(&[(Delete, "Patient")])),
            (
                "PUT",
                "/Patient?x=1",
                requires(&[(Update, "Patient"), (SearchType, "Patient")]),
            ),
            (
                "PATCH",
                "/Patient?x=1",
                requires(&[
                    (Patch, "Patient"),
                    (SearchType, "Patient"),
                    (Read, "Patient"),
                ]),
            ),
            (
                "DELETE",
                "/Patient?x=1",
                requires(&[(Delete, "Patient"), (SearchType, "Patient")]),
            ),
            ("GET", "/Patient", requires(&[(SearchType, "Patient")])),
            (
                "POST",
                "/Patient/_search",
                requires(&[(SearchType, "Patient")]),
            ),
            ("GET", "/?x=1", requires(&[(SearchSystem, "*")])),
            ("POST", "/_search", requires(&[(SearchSystem, "*")])),
            ("GET", "/metadata", AccessRule::Public),
            ("POST", "/", AccessRule::PerEntry),
            ("GET", "/$export", AccessRule::OperationPolicy),
            ("GET", "/Patient/1/$everything", AccessRule::OperationPolicy),
        ];
        for (method, path, expected) in cases {
            let Classified::Fhir(request) = FhirRequest::classify(method, path, "/") else {
                panic!("{method} {path} should be FHIR");
            };
            assert_eq!(request.access(), expected, "{method} {path}");
        }
    }

    #[test]
    fn resource_type_and_interaction_accessors() {
        let Classified::Fhir(read) = FhirRequest::classify("GET", "/Patient/1", "") else {
            panic!("read");
        };
        assert_eq!(read.resource_type(), Some("Patient"));
        assert_eq!(
            read.interaction(),
            Some((Interaction::Read, ResourceType::Named(t("Patient"))))
        );
        let Classified::Fhir(everything) =
            FhirRequest::classify("GET", "/Patient/1/$everything", "")
        else {
            panic!("operation");
        };
        assert_eq!(everything.resource_type(), Some("Patient"));
        assert_eq!(everything.interaction(), None);
        assert_eq!(FhirRequest::Capabilities.resource_type(), None);
        assert_eq!(
            FhirRequest::SearchSystem { via_post: true }.interaction(),
            Some((Interaction::SearchSystem, ResourceType::Any))
        );
    }

    #[test]
    fn end_to_end_decisions() {
        let backend = ScopeSet::parse("system/Observation.rs system/Patient.read");
        let patient_app =
            ScopeSet::parse("patient/*.rs launch/patient openid").with_patient_context(true);
        let cases = [
            (&backend, "GET", "/fhir/r4/Observation/1", true),
            (&backend, "GET", "/fhir/r4/Observation?code=x", true),
            (&backend, "GET", "/fhir/r4/Patient/1/_history/3", true),
            (&backend, "GET", "/fhir/r4/Condition/1", false),
            (&backend, "POST", "/fhir/r4/Observation", false),
            (&backend, "GET", "/fhir/r4?_type=Observation", false),
            (&backend, "PUT", "/fhir/r4/Observation?code=x", false),
            (&patient_app, "GET", "/fhir/r4/Condition/1", true),
            (&patient_app, "GET", "/fhir/r4/_history", true),
            (&patient_app, "DELETE", "/fhir/r4/Condition/1", false),
        ];
        for (set, method, path, expected) in cases {
            let Classified::Fhir(request) = FhirRequest::classify(method, path, "/fhir/r4") else {
                panic!("{method} {path}");
            };
            let AccessRule::Requires(requirements) = request.access() else {
                panic!("{method} {path} needs scopes");
            };
            let allowed = requirements
                .iter()
                .all(|requirement| set.permits_requirement(requirement));
            assert_eq!(allowed, expected, "{method} {path}");
        }
        let hint =
            ScopeSet::insufficient_scope_hint(Interaction::Read, "Condition", Context::System);
        assert_eq!(hint, "system/Condition.r");
    }

    #[test]
    fn export_requirement_lists() {
        use Interaction::{Read, SearchType};
        use OperationLevel::{Instance, System, Type};
        let named = |name: &str| ResourceType::Named(name.to_owned());
        let cases = [
            (System, None, vec![(SearchType, ResourceType::Any)]),
            (System, Some(""), vec![(SearchType, ResourceType::Any)]),
            (System, Some(" , "), vec![(SearchType, ResourceType::Any)]),
            (System, Some("*"), vec![(SearchType, ResourceType::Any)]),
            (
                Type,
                Some("Observation"),
                vec![(SearchType, named("Observation"))],
            ),
            (
                System,
                Some("Patient, Observation,Patient"),
                vec![
                    (SearchType, named("Patient")),
                    (SearchType, named("Observation")),
                ],
            ),
            // An empty entry may read as "no restriction": every type.
            (
                System,
                Some("Patient, Observation,Patient,,"),
                vec![
                    (SearchType, named("Patient")),
                    (SearchType, named("Observation")),
                    (SearchType, ResourceType::Any),
                ],
            ),
            (
                System,
                Some("Patient,*,"),
                vec![
                    (SearchType, named("Patient")),
                    (SearchType, ResourceType::Any),
                ],
            ),
            (
                System,
                Some("observation"),
                vec![(SearchType, named("observation"))],
            ),
            (
                Instance,
                None,
                vec![(SearchType, ResourceType::Any), (Read, named("Group"))],
            ),
            (
                Instance,
                Some("Patient"),
                vec![(SearchType, named("Patient")), (Read, named("Group"))],
            ),
        ];
        for (level, type_param, expected) in cases {
            let expected: Vec<Requirement> = expected
                .into_iter()
                .map(|(interaction, resource_type)| Requirement::new(interaction, resource_type))
                .collect();
            assert_eq!(
                export_requirements(level, type_param),
                expected,
                "{level:?} {type_param:?}"
            );
        }
    }

    #[test]
    fn export_decisions() {
        let allowed = |claim: &str, level, type_param| {
            let set = ScopeSet::parse(claim);
            export_requirements(level, type_param)
                .iter()
                .all(|requirement| set.permits_requirement(requirement))
        };
        use OperationLevel::{Instance, System};
        assert!(allowed("system/*.read", System, None));
        assert!(allowed("system/*.rs", System, None));
        assert!(allowed("system/*.s", System, None));
        assert!(!allowed("system/*.r", System, None));
        assert!(!allowed("system/Patient.read", System, None));
        assert!(allowed("system/Patient.read", System, Some("Patient")));
        assert!(!allowed("system/Patient.read", System, Some("Observation")));
        assert!(!allowed(
            "system/Patient.read",
            System,
            Some("Patient,Observation")
        ));
        assert!(!allowed("system/*.s", Instance, None));
        assert!(allowed("system/*.s system/Group.r", Instance, None));
        assert!(allowed("system/*.read", Instance, None));
        // A malformed `_type` entry is only covered by a `*` scope.
        assert!(allowed("system/*.s", System, Some("observation")));
        assert!(!allowed(
            "system/Observation.s",
            System,
            Some("observation")
        ));
    }

    proptest! {
        // 256 cases, proptest's default, from a seed that a failure prints.
        #![proptest_config(crate::proptest_support::config(256))]

        #[test]
        fn classifying_arbitrary_input_never_panics(
            method in "(GET|HEAD|POST|PUT|PATCH|DELETE|.{0,6})",
            path in "(/fhir(/[A-Za-z0-9$_.%-]{0,8}){0,5}/?(\\?.{0,10})?|.{0,30})",
            base in "(/fhir|/|.{0,6})",
        ) {
            let classified = FhirRequest::classify(&method, &path, &base);
            if let Classified::Fhir(request) = classified {
                let _ = request.access();
                let _ = request.resource_type();
            }
        }

        /// Percent-encoding any characters of a path, in either hex case, never changes how
        /// it is classified: the classifier reads what a decoding router hands handlers.
        #[test]
        fn percent_encoding_never_changes_the_reading(
            method in "(GET|POST|PUT|PATCH|DELETE)",
            segments in proptest::collection::vec("[A-Za-z0-9$_.-]{1,8}", 0..5),
            encode in proptest::collection::vec(0u8..4, 64),
            base in "(/fhir|/|/Fhir/r4)",
        ) {
            let plain = format!("/fhir/{}", segments.join("/"));
            let mut encoded = String::new();
            for (index, byte) in plain.bytes().enumerate() {
                match encode[index % encode.len()] {
                    _ if byte == b'/' => encoded.push('/'),
                    0 => encoded.push_str(&format!("%{byte:02X}")),
                    1 => encoded.push_str(&format!("%{byte:02x}")),
                    _ => encoded.push(char::from(byte)),
                }
            }
            let classifier = Classifier::new(&base);
            prop_assert_eq!(
                classifier.classify(&method, &encoded),
                classifier.classify(&method, &plain),
                "{} vs {}", encoded, plain
            );
        }

        #[test]
        fn export_requirements_never_panic(type_param in ".{0,40}") {
            prop_assert!(!export_requirements(OperationLevel::System, Some(&type_param)).is_empty());
        }
    }
}
