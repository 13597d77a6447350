//! The URI a request arrived with, before any router rewrote it.

use http::{Request, Uri};

/// The URI the client sent, on which public routes, scope enforcement and discovery paths
/// are decided. Inside an axum `Router::nest` the request's own URI lacks the nest prefix;
/// axum keeps the original in the `OriginalUri` extension (set by the outermost router).
/// Elsewhere the request's own URI is the original.
pub(crate) fn original_uri<B>(request: &Request<B>) -> &Uri {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(original)) = request.extensions().get() {
        return original;
    }
    request.uri()
}
