//! Which requests pass through the layer without a token.

use http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{Method, Request};

const METADATA: &str = "/metadata";
const SMART_CONFIGURATION: &str = "/.well-known/smart-configuration";

/// The routes that need no token.
#[derive(Debug, Clone)]
pub(crate) struct PublicRoutes {
    /// `GET`/`HEAD` of the capability statement and the SMART configuration.
    pub(crate) discovery_and_metadata: bool,
    /// The FHIR base path (`/fhir/r4`); when set, only `{base}/metadata` and
    /// `{base}/.well-known/smart-configuration` (and the latter at the root) are public.
    pub(crate) base_path: Option<String>,
    /// CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`).
    pub(crate) cors_preflight: bool,
    /// Further exact paths, any method.
    pub(crate) extra: Vec<String>,
}

impl Default for PublicRoutes {
    fn default() -> Self {
        Self {
            discovery_and_metadata: true,
            base_path: None,
            cors_preflight: true,
            extra: Vec::new(),
        }
    }
}

impl PublicRoutes {
    pub(crate) fn is_public<B>(&self, request: &Request<B>) -> bool {
        let path = request.uri().path();
        let method = request.method();
        if self.cors_preflight
            && method == Method::OPTIONS
            && request.headers().contains_key(ORIGIN)
            && request
                .headers()
                .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            return true;
        }
        if self.extra.iter().any(|public| public == path) {
            return true;
        }
        if !self.discovery_and_metadata || !(method == Method::GET || method == Method::HEAD) {
            return false;
        }
        match &self.base_path {
            Some(base) => {
                path == SMART_CONFIGURATION
                    || path
                        .strip_prefix(base.as_str())
                        .is_some_and(|rest| rest == METADATA || rest == SMART_CONFIGURATION)
            }
            None => [METADATA, SMART_CONFIGURATION].iter().any(|suffix| {
                path.strip_suffix(suffix)
                    .is_some_and(|prefix| !prefix.split('/').any(looks_like_resource_type))
            }),
        }
    }
}

/// `[A-Z][A-Za-z]+`: without a configured base path, a prefix with such a segment may be
/// a FHIR resource URL (`/Patient/metadata` reads the Patient whose id is `metadata`), so
/// it is never public.
fn looks_like_resource_type(segment: &str) -> bool {
    let mut bytes = segment.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && segment.len() > 1
        && bytes.all(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    #[test]
    fn default_routes() {
        let routes = PublicRoutes::default();
        let public = [
            ("GET", "/metadata"),
            ("HEAD", "/fhir/metadata"),
            ("GET", "/fhir/r4/metadata?_format=json"),
            ("GET", "/.well-known/smart-configuration"),
            ("GET", "/api/fhir/.well-known/smart-configuration"),
        ];
        let protected = [
            ("POST", "/metadata"),
            ("DELETE", "/fhir/.well-known/smart-configuration"),
            ("GET", "/Patient/metadata"),
            ("GET", "/fhir/Patient/123/_history/metadata"),
            ("GET", "/fhir/Patient/123/Observation/metadata"),
            ("GET", "/fhir/Patient/.well-known/smart-configuration"),
            ("GET", "/metadata/"),
            ("GET", "/fhir/metadata/x"),
            ("GET", "/fhir/Patient"),
            ("OPTIONS", "/fhir/Patient"),
        ];
        for (method, path) in public {
            assert!(routes.is_public(&request(method, path)), "{method} {path}");
        }
        for (method, path) in protected {
            assert!(!routes.is_public(&request(method, path)), "{method} {path}");
        }
    }

    #[test]
    fn base_path_is_exact() {
        let routes = PublicRoutes {
            base_path: Some("/FHIR".into()),
            ..PublicRoutes::default()
        };
        assert!(routes.is_public(&request("GET", "/FHIR/metadata")));
        assert!(routes.is_public(&request("GET", "/FHIR/.well-known/smart-configuration")));
        assert!(routes.is_public(&request("GET", "/.well-known/smart-configuration")));
        assert!(!routes.is_public(&request("GET", "/other/metadata")));
        assert!(!routes.is_public(&request("GET", "/metadata")));
    }

    #[test]
    fn preflight_and_extra_paths() {
        let routes = PublicRoutes {
            extra: vec!["/health".into()],
            ..PublicRoutes::default()
        };
        let preflight = Request::builder()
            .method("OPTIONS")
            .uri("/fhir/Patient")
            .header(ORIGIN, "https://app.example")
            .header(ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(())
            .unwrap();
        assert!(routes.is_public(&preflight));
        assert!(routes.is_public(&request("POST", "/health")));
        let closed = PublicRoutes {
            discovery_and_metadata: false,
            cors_preflight: false,
            ..PublicRoutes::default()
        };
        assert!(!closed.is_public(&preflight));
        assert!(!closed.is_public(&request("GET", "/metadata")));
    }
}
