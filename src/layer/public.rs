//! Which requests pass through the layer without a token.
//!
//! Publicness is decided on the exact spelling of the path the router routes: a public
//! path matches byte for byte or not at all. A percent-escape, a doubled or trailing slash,
//! a `.`/`..` segment or a change of case makes a request protected (it then needs a
//! token), because the router would route such a spelling to a different route than the
//! public one (axum matches static routes on the raw path but decodes path parameters, so
//! `/%50atient/metadata` reaches a `/{type}/{id}` route as `Patient`, `metadata`).

use http::header::{ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, ORIGIN};
use http::{HeaderMap, Method, Request};

const METADATA: &str = "/metadata";

/// The routes that need no token.
#[derive(Debug, Clone)]
pub(crate) struct PublicRoutes {
    /// `GET`/`HEAD` of the capability statement and the SMART configuration.
    pub(crate) discovery_and_metadata: bool,
    /// The FHIR base path (`/fhir/r4`, `""` for the root) once set, without a trailing
    /// slash: `{base}/metadata`, `{base}/.well-known/smart-configuration` and
    /// `/.well-known/smart-configuration` are public. Unset means the root.
    pub(crate) base_path: Option<String>,
    /// CORS preflight requests (see [`is_cors_preflight`]) to every path; without it, only
    /// preflights for the discovery and metadata paths pass.
    pub(crate) cors_preflight: bool,
    /// Further exact paths, any method.
    pub(crate) extra: Vec<String>,
}

impl Default for PublicRoutes {
    fn default() -> Self {
        Self {
            discovery_and_metadata: true,
            base_path: None,
            cors_preflight: false,
            extra: Vec::new(),
        }
    }
}

impl PublicRoutes {
    /// Whether `request`, whose routed path is `path` (without the query), needs no token.
    pub(crate) fn is_public<B: http_body::Body>(&self, request: &Request<B>, path: &str) -> bool {
        let method = request.method();
        // GET first: it is almost every request, and it is never a preflight.
        let get_or_head = *method == Method::GET || *method == Method::HEAD;
        if self.extra.iter().any(|public| public == path) {
            return !names_another_path(request, path);
        }
        if get_or_head {
            return self.discovery_and_metadata
                && self.is_discovery_or_metadata(path)
                && !names_another_method(request)
                && !names_another_path(request, path)
                && !crate::enforce::bodiless_method_with_form(
                    method,
                    request.headers(),
                    !request.body().is_end_stream(),
                );
        }
        *method == Method::OPTIONS
            && (self.cors_preflight
                || (self.discovery_and_metadata && self.is_discovery_or_metadata(path)))
            && is_cors_preflight(request.headers())
            && !names_another_method(request)
            && !names_another_path(request, path)
            // Over HTTP/2 and later a body needs neither `Content-Length` nor
            // `Transfer-Encoding`: the body itself must say it has ended.
            && request.body().is_end_stream()
    }

    /// Whether `path` is the capability statement or a SMART configuration path.
    fn is_discovery_or_metadata(&self, path: &str) -> bool {
        let base = self.base_path.as_deref().unwrap_or("");
        crate::scopes::is_smart_configuration_path(path, base)
            || path.strip_prefix(base).is_some_and(|rest| rest == METADATA)
    }
}

/// Whether `request` names another method than its own for a service behind that honours
/// an override: a method-override header, or a `_method` parameter in the query or in the
/// query of a path-override header. Such a `GET` of a discovery path is no plain read of
/// it, and needs a token.
fn names_another_method<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers
        .keys()
        .any(|name| crate::enforce::is_named(name, &crate::enforce::METHOD_OVERRIDE_HEADERS))
        || request
            .uri()
            .query()
            .is_some_and(crate::enforce::has_method_parameter)
        || crate::enforce::values_named(headers, &crate::enforce::PATH_OVERRIDE_HEADERS)
            .any(|value| crate::enforce::target_names_method(value.as_bytes()))
}

/// Whether `request` names another path than `path` in a path-override header
/// ([`PATH_OVERRIDE_HEADERS`](crate::enforce::PATH_OVERRIDE_HEADERS); one a proxy in front
/// that did not rewrite sets to the same path, as sent or decoded, is fine): a service behind that honours it
/// would serve that path to the anonymous caller.
fn names_another_path<B>(request: &Request<B>, path: &str) -> bool {
    crate::enforce::values_named(request.headers(), &crate::enforce::PATH_OVERRIDE_HEADERS).any(
        |value| {
            let named = value.as_bytes();
            let named_path = named
                .iter()
                .position(|&byte| byte == b'?')
                .map_or(named, |end| &named[..end]);
            !crate::enforce::names_same_target(named_path, path)
        },
    )
}

/// A browser's CORS preflight, by its headers (Fetch standard, "CORS-preflight request"):
/// one non-empty `Origin`, one `Access-Control-Request-Method` naming a method (an HTTP
/// token), no credentials and no header announcing a body. [`PublicRoutes::is_public`] also
/// wants no method override ([`names_another_method`]), which a service behind could
/// honour, turning the anonymous `OPTIONS` into another method. Anything else sent with
/// `OPTIONS` is an ordinary request.
fn is_cors_preflight(headers: &HeaderMap) -> bool {
    let single = |name| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value.as_bytes()),
            _ => None,
        }
    };
    let origin_ok = single(ORIGIN).is_some_and(|origin| !origin.is_empty());
    let method_ok = single(ACCESS_CONTROL_REQUEST_METHOD).is_some_and(crate::bearer::is_token);
    let no_body = !crate::enforce::announces_body(headers);
    origin_ok && method_ok && no_body && !headers.contains_key(AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scopes::{Classified, Classifier, FhirRequest};

    fn request(method: &str, path: &str) -> Request<String> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(String::new())
            .unwrap()
    }

    fn is_public(routes: &PublicRoutes, method: &str, uri: &str) -> bool {
        let request = request(method, uri);
        routes.is_public(&request, request.uri().path())
    }

    fn based(base: &str) -> PublicRoutes {
        PublicRoutes {
            base_path: Some(base.into()),
            ..PublicRoutes::default()
        }
    }

    /// How a path is enforced under the base `/fhir`, in short: `capabilities`, `read T/id`,
    /// `search T`, `outside`, `not fhir`, `malformed`, or the debug form.
    fn enforced(path: &str) -> String {
        match Classifier::new("/fhir").classify("GET", path) {
            Classified::Fhir(FhirRequest::Capabilities) => "capabilities".into(),
            Classified::Fhir(FhirRequest::Read { resource_type, id }) => {
                format!("read {resource_type}/{id}")
            }
            Classified::Fhir(FhirRequest::SearchType { resource_type, .. }) => {
                format!("search {resource_type}")
            }
            Classified::OutsideBase => "outside".into(),
            Classified::NotFhir => "not fhir".into(),
            Classified::Malformed => "malformed".into(),
            Classified::Fhir(other) => format!("{other:?}"),
        }
    }

    /// A `GET` or `HEAD` of a discovery path that names another method (a method-override
    /// header, a `_method` parameter in any spelling a lenient server reads) is no plain
    /// read of it: it needs a token, as a preflight naming one does.
    #[test]
    fn discovery_reads_naming_another_method_need_a_token() {
        let routes = based("/fhir");
        for path in ["/fhir/metadata", "/fhir/.well-known/smart-configuration"] {
            for method in ["GET", "HEAD"] {
                assert!(is_public(&routes, method, path), "{method} {path}");
                for query in [
                    "_method=DELETE",
                    "_METHOD=POST",
                    "%5Fmethod=PUT",
                    "a=b;_method=PUT",
                ] {
                    let uri = format!("{path}?{query}");
                    assert!(!is_public(&routes, method, &uri), "{method} {uri}");
                }
                // A preflight naming one by `_method` is no exact preflight either.
                let preflight = |uri: &str| {
                    let mut request = request("OPTIONS", uri);
                    let headers = request.headers_mut();
                    headers.insert(
                        ORIGIN,
                        http::HeaderValue::from_static("https://app.example"),
                    );
                    headers.insert(
                        ACCESS_CONTROL_REQUEST_METHOD,
                        http::HeaderValue::from_static("GET"),
                    );
                    routes.is_public(&request, path)
                };
                assert!(preflight(path), "{path}");
                assert!(!preflight(&format!("{path}?_method=DELETE")), "{path}");
                // Each header, and its spelling with `_` (CGI and PHP read both alike).
                let underscored: Vec<String> = crate::enforce::METHOD_OVERRIDE_HEADERS
                    .iter()
                    .map(|header| header.replace('-', "_"))
                    .collect();
                let headers = crate::enforce::METHOD_OVERRIDE_HEADERS
                    .iter()
                    .copied()
                    .chain(underscored.iter().map(String::as_str));
                for header in headers {
                    let mut request = request(method, path);
                    request.headers_mut().insert(
                        http::HeaderName::from_bytes(header.as_bytes()).unwrap(),
                        http::HeaderValue::from_static("DELETE"),
                    );
                    assert!(
                        !routes.is_public(&request, path),
                        "{method} {path} {header}"
                    );
                }
            }
        }
    }

    /// Hostile spellings of public and protected paths, with the FHIR base `/fhir`: whether
    /// the layer lets them through without a token, and how scope enforcement reads them.
    /// Only the exact spellings are public; every other one needs a token and is then
    /// enforced on its decoded reading (or refused as malformed).
    #[test]
    fn hostile_path_variants() {
        let routes = based("/fhir");
        let cases: &[(&str, bool, &str)] = &[
            ("/fhir/metadata", true, "capabilities"),
            ("/fhir/metadata?_format=json", true, "capabilities"),
            ("/fhir/.well-known/smart-configuration", true, "not fhir"),
            ("/.well-known/smart-configuration", true, "outside"),
            // Percent-encoding, any letter, either hex case.
            ("/fhir/%6Detadata", false, "capabilities"),
            ("/fhir/%6detadata", false, "capabilities"),
            ("/fhir/metadat%61", false, "capabilities"),
            ("/fhir/%6D%65%74%61%64%61%74%61", false, "capabilities"),
            ("/%66hir/metadata", false, "capabilities"),
            ("/%46HIR/metadata", false, "capabilities"),
            ("/fhir/%2Ewell-known/smart-configuration", false, "not fhir"),
            ("/%2Ewell-known/smart-configuration", false, "outside"),
            ("/fhir/%50atient/metadata", false, "read Patient/metadata"),
            ("/fhir/%50atient/1", false, "read Patient/1"),
            ("/fhir/%70atient/1", false, "not fhir"),
            ("/fhir/Patient/%31", false, "read Patient/1"),
            ("/%50atient/metadata", false, "outside"),
            // Escapes that decode to separators, controls, double escapes, bad escapes.
            ("/fhir%2Fmetadata", false, "malformed"),
            ("/fhir%2fmetadata", false, "malformed"),
            ("/fhir/Patient%2F1", false, "malformed"),
            ("/fhir/Patient%5C1", false, "malformed"),
            ("/fhir/metadata%00", false, "malformed"),
            ("/fhir/Patient/1%0A", false, "malformed"),
            ("/fhir/Patient/1%7F", false, "malformed"),
            ("/fhir/Patient/1%C2%85", false, "malformed"),
            ("/fhir/%2550atient/1", false, "malformed"),
            ("/fhir/Patient/1%", false, "malformed"),
            ("/fhir/Patient/1%4", false, "malformed"),
            ("/fhir/Patient/1%G0", false, "malformed"),
            ("/fhir/Patient/%FF", false, "malformed"),
            ("/fhir/Patient/%C3%A9", false, "not fhir"),
            ("/fhir;x/Patient/1", false, "malformed"),
            ("/fhir/Patient;x/1", false, "malformed"),
            ("/fhir/metadata;x", false, "malformed"),
            // Empty, dot and trailing segments.
            ("/fhir//metadata", false, "malformed"),
            ("//fhir/metadata", false, "malformed"),
            ("/fhir/metadata//", false, "malformed"),
            ("/fhir/./metadata", false, "malformed"),
            ("/fhir/x/../metadata", false, "malformed"),
            ("/fhir/%2E/metadata", false, "malformed"),
            ("/fhir/%2e%2e/fhir/metadata", false, "malformed"),
            ("/fhir/metadata/.", false, "malformed"),
            ("/fhir/metadata/", false, "capabilities"),
            ("/fhir/.well-known/smart-configuration/", false, "not fhir"),
            ("/fhir/.well-known//smart-configuration", false, "malformed"),
            ("/fhir/Patient/1/", false, "read Patient/1"),
            // Case.
            ("/FHIR/metadata", false, "capabilities"),
            ("/Fhir/Patient/1", false, "read Patient/1"),
            ("/fhir/Metadata", false, "search Metadata"),
            ("/fhir/METADATA", false, "search METADATA"),
            ("/fhir/.WELL-KNOWN/smart-configuration", false, "not fhir"),
            // Suffixes of other paths.
            ("/metadata", false, "outside"),
            ("/x/fhir/metadata", false, "outside"),
            ("/fhir/Patient/metadata", false, "read Patient/metadata"),
            (
                "/fhir/Patient/.well-known/smart-configuration",
                false,
                "not fhir",
            ),
            ("/fhir/r4/metadata", false, "not fhir"),
            ("/fhirx/metadata", false, "outside"),
        ];
        for &(path, public, reading) in cases {
            assert_eq!(is_public(&routes, "GET", path), public, "GET {path}");
            assert_eq!(enforced(path), reading, "{path}");
        }
    }

    #[test]
    fn default_routes_are_the_root_ones() {
        let routes = PublicRoutes::default();
        let public = [
            ("GET", "/metadata"),
            ("HEAD", "/metadata"),
            ("GET", "/metadata?_format=json"),
            ("GET", "/.well-known/smart-configuration"),
            ("HEAD", "/.well-known/smart-configuration"),
        ];
        let protected = [
            ("POST", "/metadata"),
            ("PUT", "/metadata"),
            ("DELETE", "/.well-known/smart-configuration"),
            ("OPTIONS", "/metadata"),
            ("GET", "/fhir/metadata"),
            ("GET", "/fhir/r4/metadata"),
            ("GET", "/api/fhir/.well-known/smart-configuration"),
            ("GET", "/Patient/metadata"),
            ("GET", "/%50atient/metadata"),
            ("GET", "/%70atient/metadata"),
            ("GET", "/x/metadata"),
            ("GET", "/%6Detadata"),
            ("GET", "/metadata/"),
            ("GET", "//metadata"),
            ("GET", "/./metadata"),
            ("GET", "/Metadata"),
            ("GET", "/fhir/Patient"),
            ("OPTIONS", "/fhir/Patient"),
        ];
        for (method, path) in public {
            assert!(is_public(&routes, method, path), "{method} {path}");
        }
        for (method, path) in protected {
            assert!(!is_public(&routes, method, path), "{method} {path}");
        }
    }

    #[test]
    fn base_path_is_exact() {
        let routes = based("/FHIR");
        assert!(is_public(&routes, "GET", "/FHIR/metadata"));
        assert!(is_public(
            &routes,
            "GET",
            "/FHIR/.well-known/smart-configuration"
        ));
        assert!(is_public(
            &routes,
            "GET",
            "/.well-known/smart-configuration"
        ));
        assert!(!is_public(&routes, "GET", "/fhir/metadata"));
        assert!(!is_public(&routes, "GET", "/other/metadata"));
        assert!(!is_public(&routes, "GET", "/metadata"));
        assert!(!is_public(&routes, "GET", "/FHIRmetadata"));
        let root = based("");
        assert!(is_public(&root, "GET", "/metadata"));
        assert!(!is_public(&root, "GET", "/fhir/metadata"));
    }

    fn preflight(headers: &[(&str, &str)]) -> Request<String> {
        let mut builder = Request::builder().method("OPTIONS").uri("/fhir/Patient/1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(String::new()).unwrap()
    }

    #[test]
    fn cors_preflight_is_exact() {
        let routes = PublicRoutes {
            cors_preflight: true,
            ..PublicRoutes::default()
        };
        let origin = ("origin", "https://app.example");
        let get = ("access-control-request-method", "GET");
        let public = [
            vec![origin, get],
            vec![origin, ("access-control-request-method", "PATCH")],
            vec![("origin", "null"), get],
            vec![
                origin,
                get,
                ("access-control-request-headers", "authorization"),
            ],
            vec![origin, get, ("content-length", "0")],
        ];
        let not_preflights = [
            vec![],
            vec![get],
            vec![origin],
            vec![("origin", ""), get],
            vec![origin, ("access-control-request-method", "")],
            vec![origin, ("access-control-request-method", "GET POST")],
            vec![origin, ("access-control-request-method", "G(T")],
            vec![origin, get, ("access-control-request-method", "GET")],
            vec![origin, ("origin", "https://other.example"), get],
            vec![origin, get, ("authorization", "Bearer abc")],
            vec![origin, get, ("content-length", "5")],
            vec![origin, get, ("transfer-encoding", "chunked")],
            vec![origin, get, ("x-http-method-override", "DELETE")],
            vec![origin, get, ("X-HTTP-Method", "PUT")],
            vec![origin, get, ("x-method-override", "")],
        ];
        for headers in public {
            let request = preflight(&headers);
            assert!(routes.is_public(&request, "/fhir/Patient/1"), "{headers:?}");
        }
        for headers in not_preflights {
            let request = preflight(&headers);
            assert!(
                !routes.is_public(&request, "/fhir/Patient/1"),
                "{headers:?}"
            );
        }
        // A body announced by no header (HTTP/2 and later send it so) is a body.
        let mut with_body = preflight(&[origin, get]);
        *with_body.body_mut() = "x".to_owned();
        assert!(!routes.is_public(&with_body, "/fhir/Patient/1"));
        // The method must be OPTIONS.
        let mut post = preflight(&[origin, get]);
        *post.method_mut() = Method::POST;
        assert!(!routes.is_public(&post, "/fhir/Patient/1"));
    }

    /// By default a preflight passes only for the discovery and metadata paths.
    #[test]
    fn preflights_pass_by_default_only_for_discovery_and_metadata() {
        let routes = based("/fhir");
        let request = preflight(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ]);
        for path in [
            "/fhir/metadata",
            "/fhir/.well-known/smart-configuration",
            "/.well-known/smart-configuration",
        ] {
            assert!(routes.is_public(&request, path), "{path}");
        }
        for path in [
            "/fhir/Patient/1",
            "/grpc.health.v1.Health/Check",
            "/metadata",
            "/fhir/metadata/",
        ] {
            assert!(!routes.is_public(&request, path), "{path}");
        }
        // Not even there once discovery and metadata are protected.
        let closed = PublicRoutes {
            discovery_and_metadata: false,
            ..based("/fhir")
        };
        assert!(!closed.is_public(&request, "/fhir/metadata"));
    }

    #[test]
    fn extra_paths_and_switches() {
        let routes = PublicRoutes {
            extra: vec!["/health".into()],
            ..PublicRoutes::default()
        };
        assert!(is_public(&routes, "POST", "/health"));
        for path in ["/health/", "/%68ealth", "/Health", "//health", "/x/health"] {
            assert!(!is_public(&routes, "GET", path), "{path}");
        }
        let preflight = preflight(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ]);
        let closed = PublicRoutes {
            discovery_and_metadata: false,
            cors_preflight: false,
            ..PublicRoutes::default()
        };
        assert!(!closed.is_public(&preflight, "/fhir/Patient/1"));
        assert!(!is_public(&closed, "GET", "/metadata"));
        assert!(!is_public(
            &closed,
            "GET",
            "/.well-known/smart-configuration"
        ));
    }

    /// The layer decides on the path it is given (the original URI inside `nest`), not on
    /// the request's own URI.
    #[test]
    fn decides_on_the_given_path() {
        let routes = based("/fhir");
        let inner = request("GET", "/metadata");
        assert!(routes.is_public(&inner, "/fhir/metadata"));
        let inner = request("GET", "/fhir/metadata");
        assert!(!routes.is_public(&inner, "/api/fhir/metadata"));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::config;
    use proptest::prelude::*;

    const SMART_CONFIGURATION: &str = "/.well-known/smart-configuration";

    /// A path near the public ones: their pieces, escapes, case changes, dot segments,
    /// doubled slashes.
    fn near_public_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec![
                "/fhir",
                "/r4",
                "/metadata",
                "/Metadata",
                "/.well-known",
                "/smart-configuration",
                "/.well-known/smart-configuration",
                "/",
                "/.",
                "/..",
                "/%2e",
                "/%6Detadata",
                ";x",
                "?a=1",
                "#f",
                "/Patient",
            ]),
            0..5,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(config(1024))]

        /// Without CORS preflight headers, a request is public only when its path is one
        /// of the public paths byte for byte (and the method reads, unless the path was
        /// configured as public itself).
        #[test]
        fn only_exact_public_paths_pass(
            method in prop::sample::select(vec!["GET", "HEAD", "POST", "OPTIONS", "get"]),
            path in near_public_path(),
            base in prop::sample::select(vec![None, Some(""), Some("/fhir"), Some("/fhir/r4")]),
            extra in prop::sample::select(vec![vec![], vec!["/health".to_owned()], vec!["/fhir/Patient".to_owned()]]),
        ) {
            let routes = PublicRoutes { base_path: base.map(str::to_owned), extra: extra.clone(), ..PublicRoutes::default() };
            let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Ok(()); };
            let request = Request::builder().method(method.clone()).uri("/").body(String::new()).unwrap();
            let base = base.unwrap_or("");
            let reads = method == Method::GET || method == Method::HEAD;
            let expected = extra.contains(&path)
                || (reads
                    && (path == SMART_CONFIGURATION
                        || path == format!("{base}{METADATA}")
                        || path == format!("{base}{SMART_CONFIGURATION}")));
            prop_assert_eq!(routes.is_public(&request, &path), expected, "{} {}", method, path);
        }
    }
}
