//! Serving the document: [`SmartDiscoveryLayer`] (tower) and
//! [`SmartDiscoveryLayer::router`] (axum).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::document::{DiscoveryError, SmartConfiguration};
use crate::config_path::is_canonical_config_path;
use crate::original_uri::original_uri;

const WELL_KNOWN: &str = "/.well-known/smart-configuration";
const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS";

/// A tower layer that answers `GET` and `HEAD` on `{base}/.well-known/smart-configuration`
/// with a [`SmartConfiguration`] and passes every other request to the inner service.
///
/// The answer is `200` with `Content-Type: application/json` whatever the `Accept` header,
/// `Access-Control-Allow-Origin: *` (the SMART IG wants discovery readable from any
/// origin) and `Cache-Control: public, max-age=3600` (configurable). `OPTIONS` preflights
/// are answered for any origin; other methods get `405` with `Allow`. The body is
/// serialised once, when the layer is built.
///
/// Discovery must be reachable without a token: put this layer outside
/// [`SmartAuthLayer`](crate::SmartAuthLayer), or rely on the auth layer's public paths,
/// which let `GET`/`HEAD` of `{base}/.well-known/smart-configuration` and preflights through
/// ([`SmartAuthLayer::discovery`](crate::SmartAuthLayer::discovery) makes this layer at the
/// auth layer's own base, so the base is said once).
///
/// ```
/// use axum::{Router, routing::get};
/// use smart_auth::discovery::{SmartConfiguration, SmartDiscoveryLayer};
///
/// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token")
///     .scopes_supported(["system/*.rs"])
///     .build()?;
/// let app: Router = Router::new()
///     .route("/fhir/r4/Patient/{id}", get(|| async { "patient" }))
///     .layer(SmartDiscoveryLayer::new(configuration).base_path("/fhir/r4")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SmartDiscoveryLayer {
    shared: Arc<Prepared>,
}

#[derive(Debug)]
struct Prepared {
    body: Bytes,
    content_length: HeaderValue,
    cache_control: HeaderValue,
    paths: Vec<String>,
    /// Whether `{base}/metadata` answers get `Access-Control-Allow-Origin: *`.
    cors_on_metadata: bool,
    /// The FHIR base's `{base}/metadata` when `cors_on_metadata` is set: kept in step with
    /// `paths` (whose first is the base's) by [`Prepared::set_paths`].
    metadata_paths: Vec<String>,
}

impl Prepared {
    /// Serves at `paths` (the FHIR base's first), and opens the base's metadata when asked
    /// to, whichever setting came first. The root's `/metadata`, which `also_at_root` does
    /// not make the FHIR server's, is opened only when the base is the root.
    fn set_paths(&mut self, paths: Vec<String>) {
        self.paths = paths;
        self.metadata_paths = match self.paths.first() {
            Some(path) if self.cors_on_metadata => {
                let base = path.strip_suffix(WELL_KNOWN).unwrap_or(path);
                vec![format!("{base}/metadata")]
            }
            _ => Vec::new(),
        };
    }
}

impl SmartDiscoveryLayer {
    /// Serves `configuration` at `/.well-known/smart-configuration`.
    ///
    /// ```
    /// use smart_auth::discovery::{SmartConfiguration, SmartDiscoveryLayer};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let discovery = SmartDiscoveryLayer::new(configuration);
    /// assert_eq!(discovery.paths(), ["/.well-known/smart-configuration"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(configuration: SmartConfiguration) -> Self {
        // Serialising a validated document of strings and arrays cannot fail.
        let body = Bytes::from(serde_json::to_vec(&configuration).unwrap_or_default());
        Self {
            shared: Arc::new(Prepared {
                content_length: HeaderValue::from(body.len()),
                body,
                cache_control: HeaderValue::from_static("public, max-age=3600"),
                paths: vec![WELL_KNOWN.to_owned()],
                cors_on_metadata: false,
                metadata_paths: Vec::new(),
            }),
        }
    }

    /// Serves under this FHIR base path (`/fhir/r4`) instead of the root; call
    /// [`also_at_root`](Self::also_at_root) to keep the root too.
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::InvalidValue`] for a path that is not written one way only: it
    /// must start with `/`, and have no empty, `.` or `..` segment (a final `/` aside), no
    /// `%`, `;`, `\`, `?`, `#`, `{`, `}`, whitespace or control character, and no segment
    /// starting with `:` or `*`. Such a path would never match the path a router sees, or
    /// a router would read it as a pattern.
    ///
    /// ```
    /// use smart_auth::discovery::{DiscoveryError, SmartConfiguration, SmartDiscoveryLayer};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let discovery = SmartDiscoveryLayer::new(configuration.clone()).base_path("/fhir/r4/")?;
    /// assert_eq!(discovery.paths(), ["/fhir/r4/.well-known/smart-configuration"]);
    ///
    /// let error = SmartDiscoveryLayer::new(configuration).base_path("/fhir/../admin").unwrap_err();
    /// assert!(matches!(error, DiscoveryError::InvalidValue { field: "base_path" }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn base_path(self, base_path: &str) -> Result<Self, DiscoveryError> {
        if !is_canonical_config_path(base_path) {
            return Err(DiscoveryError::InvalidValue { field: "base_path" });
        }
        let path = format!("{}{WELL_KNOWN}", base_path.trim_end_matches('/'));
        Ok(self.map(|prepared| prepared.set_paths(vec![path])))
    }

    /// Serves under a base path the layer's builder checked (`""` for the root).
    pub(crate) fn at_checked_base(self, base_path: &str) -> Self {
        let path = format!("{base_path}{WELL_KNOWN}");
        self.map(|prepared| prepared.set_paths(vec![path]))
    }

    /// Also serves at `/.well-known/smart-configuration`.
    ///
    /// ```
    /// use smart_auth::discovery::{SmartConfiguration, SmartDiscoveryLayer};
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let discovery = SmartDiscoveryLayer::new(configuration).base_path("/fhir")?.also_at_root();
    /// assert_eq!(
    ///     discovery.paths(),
    ///     ["/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"],
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn also_at_root(self) -> Self {
        self.map(|prepared| {
            if !prepared.paths.iter().any(|p| p == WELL_KNOWN) {
                let mut paths = prepared.paths.clone();
                paths.push(WELL_KNOWN.to_owned());
                prepared.set_paths(paths);
            }
        })
    }

    /// The `Cache-Control` of the answer (default `public, max-age=3600`).
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::InvalidValue`] for a value that cannot be a header.
    ///
    /// ```
    /// # #[cfg(feature = "axum")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::body::Body;
    /// use smart_auth::discovery::{SmartConfiguration, SmartDiscoveryLayer};
    /// use tower::ServiceExt as _;
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let discovery = SmartDiscoveryLayer::new(configuration).cache_control("public, max-age=300")?;
    /// let request = http::Request::get("/.well-known/smart-configuration").body(Body::empty())?;
    /// let response = discovery.router().oneshot(request).await?;
    /// assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "axum"))]
    /// # fn main() {}
    /// ```
    pub fn cache_control(self, value: &str) -> Result<Self, DiscoveryError> {
        let value = HeaderValue::from_str(value).map_err(|_| DiscoveryError::InvalidValue {
            field: "cache_control",
        })?;
        Ok(self.map(|prepared| prepared.cache_control = value))
    }

    /// Adds `Access-Control-Allow-Origin: *` to the inner service's answers on the FHIR
    /// base's `{base}/metadata`, which the SMART IG also wants readable from any origin,
    /// whether the base path is set before or after (the root's `/metadata` only when the
    /// base is the root: [`also_at_root`](Self::also_at_root) serves discovery there, but
    /// the root's `/metadata` may belong to another service). An answer that
    /// already names its allowed origin keeps it (`*` beside
    /// `Access-Control-Allow-Credentials` would be refused by browsers). A CORS preflight
    /// to that path (`OPTIONS` with `Origin` and `Access-Control-Request-Method`, sent
    /// before a read with a header of the browser app's own) is answered here, as the
    /// discovery paths' are: 200, any origin, `GET, HEAD, OPTIONS`. The capability
    /// statement itself stays the inner service's job.
    ///
    /// ```
    /// # #[cfg(feature = "axum")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, body::Body, routing::get};
    /// use smart_auth::discovery::{SmartConfiguration, SmartDiscoveryLayer};
    /// use tower::ServiceExt as _;
    ///
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let discovery = SmartDiscoveryLayer::new(configuration).base_path("/fhir")?.cors_on_metadata();
    /// let app = Router::new()
    ///     .route("/fhir/metadata", get(|| async { "{\"resourceType\":\"CapabilityStatement\"}" }))
    ///     .layer(discovery);
    /// let response = app.oneshot(http::Request::get("/fhir/metadata").body(Body::empty())?).await?;
    /// assert_eq!(response.headers()["access-control-allow-origin"], "*");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "axum"))]
    /// # fn main() {}
    /// ```
    pub fn cors_on_metadata(self) -> Self {
        self.map(|prepared| {
            prepared.cors_on_metadata = true;
            let paths = std::mem::take(&mut prepared.paths);
            prepared.set_paths(paths);
        })
    }

    /// The paths served.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// use smart_auth::discovery::SmartConfiguration;
    ///
    /// let auth = SmartAuthLayer::builder("https://auth.example.org")
    ///     .fhir_base("https://api.example.org/fhir")
    ///     .build()?;
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// // The auth layer's discovery lives at its FHIR base.
    /// assert_eq!(auth.discovery(configuration).paths(), ["/fhir/.well-known/smart-configuration"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn paths(&self) -> &[String] {
        &self.shared.paths
    }

    /// An axum router serving the document at the configured paths (every method other
    /// than `GET`, `HEAD` and `OPTIONS` gets 405), to merge into an app. Its routes are
    /// the full paths the requests carry: `merge` it, never `nest` it under a prefix (it
    /// would answer 404 there; give the prefix with [`base_path`](Self::base_path)).
    ///
    /// ```
    /// use axum::Router;
    /// use smart_auth::discovery::{SmartConfiguration, SmartDiscoveryLayer};
    /// # let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let discovery: Router = SmartDiscoveryLayer::new(configuration).base_path("/fhir")?.router();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "axum")]
    pub fn router(&self) -> axum::Router {
        let service = self.layer(tower_service_not_found());
        let mut router = axum::Router::new();
        for path in &self.shared.paths {
            router = router.route_service(path, service.clone());
        }
        router
    }

    fn map(self, change: impl FnOnce(&mut Prepared)) -> Self {
        let mut prepared = Prepared {
            body: self.shared.body.clone(),
            content_length: self.shared.content_length.clone(),
            cache_control: self.shared.cache_control.clone(),
            paths: self.shared.paths.clone(),
            cors_on_metadata: self.shared.cors_on_metadata,
            metadata_paths: self.shared.metadata_paths.clone(),
        };
        change(&mut prepared);
        Self {
            shared: Arc::new(prepared),
        }
    }

    fn answer<B: From<Bytes>>(&self, method: &Method) -> Response<B> {
        let prepared = &self.shared;
        if *method == Method::OPTIONS {
            return options_answer();
        }
        let (status, body) = match *method {
            Method::GET => (StatusCode::OK, prepared.body.clone()),
            Method::HEAD => (StatusCode::OK, Bytes::new()),
            _ => (StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
        };
        let mut response = Response::new(B::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        if status == StatusCode::OK {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, prepared.cache_control.clone());
            headers.insert(CONTENT_LENGTH, prepared.content_length.clone());
        } else {
            headers.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        response
    }
}

/// The answer to `OPTIONS` on a path served here, a CORS preflight or not: 200 with no
/// content and `Content-Length: 0` (RFC 9110 section 9.3.7), the methods allowed, and what
/// a preflight needs (Fetch standard): any origin, the methods, any request header
/// (`Authorization` named too, since `*` does not cover it), for a day.
fn options_answer<B: From<Bytes>>() -> Response<B> {
    let mut response = Response::new(B::from(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*, authorization"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    headers.insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// Whether `request` is a browser's CORS preflight: `OPTIONS` with an `Origin` and an
/// `Access-Control-Request-Method`.
fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(http::header::ORIGIN)
        && request
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The inner service of the axum router: never reached, since the router only routes the
/// discovery paths to the layer.
#[cfg(feature = "axum")]
fn tower_service_not_found() -> axum::routing::MethodRouter {
    axum::routing::any(|| async { StatusCode::NOT_FOUND })
}

impl<S> Layer<S> for SmartDiscoveryLayer {
    type Service = SmartDiscovery<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SmartDiscovery {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SmartDiscoveryLayer`].
///
/// ```
/// use std::convert::Infallible;
/// use axum::body::Body;
/// use http::{Request, Response, StatusCode};
/// use smart_auth::discovery::{SmartConfiguration, SmartDiscovery, SmartDiscoveryLayer};
/// use tower::{Layer as _, ServiceExt as _, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
/// let inner = service_fn(|_: Request<Body>| async {
///     Ok::<_, Infallible>(Response::builder().status(StatusCode::NOT_FOUND).body(Body::empty()).unwrap())
/// });
/// let service: SmartDiscovery<_> = SmartDiscoveryLayer::new(configuration).layer(inner);
///
/// // The document is answered here; every other request goes to the inner service.
/// let request = Request::get("/.well-known/smart-configuration").body(Body::empty())?;
/// let response = service.clone().oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
/// assert!(String::from_utf8(body.to_vec())?.contains("https://auth.example.org/token"));
/// let response = service.oneshot(Request::get("/other").body(Body::empty())?).await?;
/// assert_eq!(response.status(), StatusCode::NOT_FOUND);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SmartDiscovery<S> {
    inner: S,
    layer: SmartDiscoveryLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SmartDiscovery<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The full path, also inside an axum `Router::nest`; a path rewritten otherwise is
        // served by the inner service.
        let path = original_uri(&request).map(http::Uri::path);
        if self
            .layer
            .shared
            .paths
            .iter()
            .any(|served| Some(served.as_str()) == path)
        {
            let response = Some(self.layer.answer(request.method()));
            return ResponseFuture {
                state: State::Answered { response },
            };
        }
        let cors = self
            .layer
            .shared
            .metadata_paths
            .iter()
            .any(|metadata| Some(metadata.as_str()) == path);
        // A browser reading the capability statement with a header of its own (its
        // `Authorization`, `Prefer`) asks first; the FHIR server behind rarely answers
        // `OPTIONS`, and a preflight needs a 2xx.
        if cors && is_preflight(&request) {
            return ResponseFuture {
                state: State::Answered {
                    response: Some(options_answer()),
                },
            };
        }
        ResponseFuture {
            state: State::Inner {
                future: self.inner.call(request),
                cors,
            },
        }
    }
}

pin_project! {
    /// The response future of [`SmartDiscovery`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use axum::body::Body;
    /// use http::{Request, Response};
    /// use smart_auth::discovery::{ResponseFuture, SmartConfiguration, SmartDiscoveryLayer};
    /// use tower::{Layer as _, Service as _, ServiceExt as _, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let configuration = SmartConfiguration::backend_services("https://auth.example.org/token").build()?;
    /// let inner = service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    /// let mut service = SmartDiscoveryLayer::new(configuration).layer(inner);
    ///
    /// let request = Request::get("/.well-known/smart-configuration").body(Body::empty())?;
    /// let future: ResponseFuture<_, Body> = service.ready().await?.call(request);
    /// assert_eq!(future.await?.headers()["content-type"], "application/json");
    /// # Ok(()) }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F, B> {
        Answered { response: Option<Response<B>> },
        Inner { #[pin] future: F, cors: bool },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Answered { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            StateProj::Inner { future, cors } => {
                let mut result = std::task::ready!(future.poll(cx));
                if let (true, Ok(response)) = (*cors, &mut result) {
                    response
                        .headers_mut()
                        .entry(ACCESS_CONTROL_ALLOW_ORIGIN)
                        .or_insert(HeaderValue::from_static("*"));
                }
                Poll::Ready(result)
            }
        }
    }
}
