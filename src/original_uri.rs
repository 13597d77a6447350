//! The URI a request arrived with, before any router rewrote it.

use http::{Request, Uri};

/// The URI the client sent, on which public routes, scope enforcement and discovery paths
/// are decided. Inside an axum `Router::nest` the request's own URI lacks the nest prefix;
/// axum keeps the original in the `OriginalUri` extension (set by the outermost router).
/// Elsewhere the request's own URI is the original.
///
/// The extension is trusted only where nesting explains the difference: the request's
/// path is the original's end (or `/`, what a nest leaves of its own prefix). A service
/// that rewrote the path otherwise (`/v1/Patient/1` to `/fhir/Patient/1`) routes the
/// rewritten path, so that is the one decided on: the original would be judged as another
/// request than the one the handlers serve.
pub(crate) fn original_uri<B>(request: &Request<B>) -> &Uri {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(original)) = request.extensions().get()
        && nesting_explains(request.uri().path(), original.path())
    {
        return original;
    }
    request.uri()
}

/// Whether axum's nesting could have turned the path `original` into `path`: `path` is a
/// whole-segment end of `original` (it starts with `/`, so a match starts at one), or `/`
/// (a nest's own prefix, with or without a final slash).
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
fn nesting_explains(path: &str, original: &str) -> bool {
    path == "/" || original.ends_with(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nesting_explains_a_different_path() {
        for (path, original) in [
            ("/fhir/Patient/1", "/fhir/Patient/1"),
            ("/Patient/1", "/fhir/Patient/1"),
            ("/Patient/1", "/api/fhir/Patient/1"),
            ("/", "/fhir"),
            ("/", "/fhir/"),
            ("/%41", "/fhir/%41"),
        ] {
            assert!(nesting_explains(path, original), "{path} {original}");
        }
        for (path, original) in [
            ("/fhir/Patient/1", "/v1/Patient/1"),
            ("/Patient/1", "/fhir/Patient/12"),
            ("/Patient/1", "/fhir/xPatient/1"),
            ("/patient/1", "/fhir/Patient/1"),
            ("/Patient/1", "/fhir/Patient%2F1"),
        ] {
            assert!(!nesting_explains(path, original), "{path} {original}");
        }
    }
}
