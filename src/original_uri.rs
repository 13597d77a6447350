//! The URI a request arrived with, before any router rewrote it.

use http::{Request, Uri};

/// The URI the client sent, on which public routes, scope enforcement and discovery paths
/// are decided; `None` when the request's path cannot be told apart from another.
///
/// Inside an axum `Router::nest` the request's own URI lacks the nest prefix; axum keeps
/// the original in the `OriginalUri` extension (set by the outermost router) and the
/// prefix in `NestedPath`. The original is used where nesting explains the difference: it
/// is the nest prefix (its `{captures}` standing for one segment each) followed by the
/// request's own path, with the same query. A request whose URI differs from the original
/// any other way was rewritten by a service between the router and this layer
/// (`/v1/fhir/Patient/1` to `/fhir/Patient/1`, a query parameter added): neither URI is
/// surely the one clients sent and the service reads, so `None`, which callers refuse
/// (never public, never let through by enforcement).
/// Without `OriginalUri` the request's own URI is the original.
pub(crate) fn original_uri<B>(request: &Request<B>) -> Option<&Uri> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(original)) = request.extensions().get() {
        let path = request.uri().path();
        // The query is not nested: a different one was rewritten (a parameter added or
        // moved), and the layer would judge another query than the service reads.
        if !same_text(request.uri().query(), original.query()) {
            return None;
        }
        // Not nested: axum's copy shares the request's bytes (the same text at the same
        // address), so most requests need no comparison of the characters.
        if std::ptr::eq(path, original.path()) || path == original.path() {
            return Some(original);
        }
        let nested = request
            .extensions()
            .get::<axum::extract::NestedPath>()
            .map(axum::extract::NestedPath::as_str);
        return nested
            .is_some_and(|prefix| nesting_explains(path, original.path(), prefix))
            .then_some(original);
    }
    Some(request.uri())
}

/// Whether two optional texts are equal, by address first (axum's copy of the URI shares
/// the request's bytes).
#[cfg(feature = "axum")]
fn same_text(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// Whether nesting at `prefix` (a route pattern: `/fhir`, `/{tenant}/fhir`) turns the path
/// `original` into `path`: `original` is the prefix, segment by segment (a `{capture}`
/// matches any one non-empty segment), then `path`; or, for `path` `/`, the prefix itself
/// with or without a final slash.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
fn nesting_explains(path: &str, original: &str, prefix: &str) -> bool {
    let mut rest = original;
    for pattern in prefix.trim_end_matches('/').split('/').skip(1) {
        let Some(after_slash) = rest.strip_prefix('/') else {
            return false;
        };
        let end = after_slash.find('/').unwrap_or(after_slash.len());
        let segment = &after_slash[..end];
        let matches = if pattern.starts_with('{') && pattern.ends_with('}') {
            !segment.is_empty()
        } else {
            segment == pattern
        };
        if !matches {
            return false;
        }
        rest = &after_slash[end..];
    }
    rest == path || (path == "/" && rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nesting_explains_a_different_path() {
        for (path, original, prefix) in [
            ("/Patient/1", "/fhir/Patient/1", "/fhir"),
            ("/Patient/1", "/api/fhir/Patient/1", "/api/fhir"),
            ("/Patient/1", "/t1/fhir/Patient/1", "/{tenant}/fhir"),
            ("/", "/fhir", "/fhir"),
            ("/", "/fhir/", "/fhir"),
            ("/", "/fhir/", "/fhir/"),
            ("/%41", "/fhir/%41", "/fhir"),
        ] {
            assert!(
                nesting_explains(path, original, prefix),
                "{path} {original} {prefix}"
            );
        }
        for (path, original, prefix) in [
            // A rewrite that strips or replaces a prefix the router did not nest at.
            ("/fhir/Patient/1", "/v1/fhir/Patient/1", "/fhir"),
            ("/fhir/Patient/1", "/v1/Patient/1", "/v1"),
            ("/Patient/1", "/v1/fhir/Patient/1", "/fhir"),
            ("/", "/fhir/Patient/1", "/fhir"),
            ("/Patient/1", "/fhir/Patient/12", "/fhir"),
            ("/Patient/1", "/fhirx/Patient/1", "/fhir"),
            ("/patient/1", "/fhir/Patient/1", "/fhir"),
            ("/Patient/1", "/fhir/Patient%2F1", "/fhir"),
            ("/Patient/1", "//Patient/1", "/{tenant}"),
            ("/Patient/1", "/FHIR/Patient/1", "/fhir"),
        ] {
            assert!(
                !nesting_explains(path, original, prefix),
                "{path} {original} {prefix}"
            );
        }
    }
}
