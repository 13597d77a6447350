//! [`SmartAuth`], the service the layer produces, and its [`ResponseFuture`].

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use http::header::{CACHE_CONTROL, VARY};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{AuthMode, Shared};
use crate::bearer::{bearer_credential, token_text};
use crate::claims::SmartClaims;
use crate::enforce::PagingLink;
use crate::error::{AuthError, ErrorKind};
use crate::metrics::{self, Source, Unverified};
use crate::original_uri::original_uri;
use crate::response::{Challenge, Unauthenticated};
use crate::verifier::Lookup;

/// The service made by [`SmartAuthLayer`](crate::SmartAuthLayer): verifies the request's
/// Bearer token before calling `S`.
///
/// ```
/// use std::convert::Infallible;
/// use axum::body::Body;
/// use http::{Request, Response, StatusCode};
/// use smart_auth::SmartAuthLayer;
/// use smart_auth::layer::SmartAuth;
/// use tower::{Layer as _, ServiceExt as _, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .fhir_base("https://api.example.org/fhir")
///     .build()?;
/// // Any tower service of HTTP requests, not only an axum router.
/// let inner = service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
/// let service: SmartAuth<_> = layer.layer(inner);
///
/// let response = service.oneshot(Request::get("/fhir/Patient/1").body(Body::empty())?).await?;
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED); // no token
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SmartAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SmartAuth<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// use tower::Layer as _;
    ///
    /// #[derive(Clone)]
    /// struct Inner {
    ///     name: &'static str,
    /// }
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org").audience("api://fhir").build()?;
    /// let service = layer.layer(Inner { name: "patients" });
    /// assert_eq!(service.get_ref().name, "patients");
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// use tower::Layer as _;
    ///
    /// #[derive(Clone)]
    /// struct Inner {
    ///     calls: u32,
    /// }
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org").audience("api://fhir").build()?;
    /// let mut service = layer.layer(Inner { calls: 0 });
    /// service.get_mut().calls = 5;
    /// assert_eq!(service.get_ref().calls, 5);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    ///
    /// ```
    /// use smart_auth::SmartAuthLayer;
    /// use tower::Layer as _;
    ///
    /// let layer = SmartAuthLayer::builder("https://auth.example.org").audience("api://fhir").build()?;
    /// let service = layer.layer(vec!["inner service state"]);
    /// assert_eq!(service.into_inner(), ["inner service state"]);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SmartAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: http_body::Body,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let head = request.method() == Method::HEAD;
        // A path rewritten otherwise than by nesting is never public.
        if original_uri(&request).is_some_and(|uri| shared.public.is_public(&request, uri.path())) {
            // Not verified, even with a token: handlers see an anonymous request, whatever
            // claims an earlier layer put there.
            metrics::unauthenticated(Unverified::PublicPath);
            anonymous(&mut request);
            return ResponseFuture::calling(self.inner.call(request), shared, Vary::Never, head);
        }
        let credential = match bearer_credential(request.headers(), request.uri().query()) {
            Ok(Some(credential)) => credential,
            Ok(None) if shared.mode == AuthMode::Optional => {
                metrics::unauthenticated(Unverified::NoCredentials);
                anonymous(&mut request);
                return ResponseFuture::calling(
                    self.inner.call(request),
                    shared,
                    Vary::Always,
                    head,
                );
            }
            Ok(None) => {
                tracing::debug!(target: "smart_auth::rejection", "request without credentials");
                metrics::refused(ErrorKind::MissingToken);
                return ResponseFuture::rejected(
                    shared
                        .challenge
                        .response(&AuthError::new(ErrorKind::MissingToken)),
                    head,
                );
            }
            Err(kind) => return ResponseFuture::rejected(malformed(shared, kind), head),
        };
        // A cached credential is a token verified before (so also well-formed): its answer
        // is ready now, without a future to wait on.
        let (verifier, stale) = match shared.issuers.lookup(credential) {
            (Lookup::Hit(claims), index) => {
                let verifier = shared.issuers.at(index);
                let admitted = verifier
                    .check_policy(&claims)
                    .and_then(|()| admit(shared, &request, claims));
                return match admitted {
                    Ok((claims, paging_link)) => {
                        metrics::accepted(Source::Cache);
                        hand_over(&mut request, claims, paging_link);
                        let vary = Vary::for_verified(shared.mode);
                        ResponseFuture::calling(self.inner.call(request), shared, vary, head)
                    }
                    Err(error) => ResponseFuture::rejected(refuse(shared, &error), head),
                };
            }
            (Lookup::Stale, index) => (shared.issuers.at(index), true),
            (Lookup::Miss, _) => {
                let chosen = token_text(credential)
                    .map_err(|kind| malformed(shared, kind))
                    .and_then(|token| {
                        shared
                            .issuers
                            .choose(token)
                            .map_err(|error| refuse(shared, &error))
                    });
                match chosen {
                    Ok(verifier) => (verifier, false),
                    Err(response) => return ResponseFuture::rejected(response, head),
                }
            }
        };
        let token = match token_text(credential) {
            Ok(token) => token.to_owned(),
            Err(kind) => return ResponseFuture::rejected(malformed(shared, kind), head),
        };
        let verifier = verifier.clone();
        let verify = async move { verifier.verify_uncached(&token, stale).await }.boxed();
        // The service that was driven to readiness is the one to call (tower's clone rule):
        // it goes into the future, and a fresh clone stays here.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Verifying {
                verify,
                waiting: Some(Box::new(Waiting {
                    inner,
                    request,
                    shared: Arc::clone(&self.shared),
                })),
            },
        }
    }
}

/// The verified claims, with the layer's scope enforcement applied: the claims to hand to
/// the inner service, or why the request is refused.
fn admit<B: http_body::Body>(
    shared: &Shared,
    request: &Request<B>,
    claims: SmartClaims,
) -> Result<(SmartClaims, Option<PagingLink>), AuthError> {
    let Some(enforcement) = &shared.enforcement else {
        return Ok((claims, None));
    };
    let body_follows = !request.body().is_end_stream();
    let paging_link = enforcement.check_request(request, body_follows, &claims)?;
    Ok((claims, paging_link))
}

/// Puts the verified claims into the request, and the [`PagingLink`] mark when the
/// request was let through as one.
fn hand_over<B>(request: &mut Request<B>, claims: SmartClaims, paging_link: Option<PagingLink>) {
    let extensions = request.extensions_mut();
    extensions.insert(claims);
    if let Some(link) = paging_link {
        extensions.insert(link);
    }
}

/// Marks a request let through without a verified token: no claims reach the handler, not
/// even ones an outer layer (a second `SmartAuthLayer`, a test's `ClaimsLayer`) put there.
fn anonymous<B>(request: &mut Request<B>) {
    let extensions = request.extensions_mut();
    extensions.remove::<SmartClaims>();
    extensions.insert(Unauthenticated);
}

/// When a response that went through the inner service says it varies by the request's
/// `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vary {
    /// Public routes: the answer is the same with and without a token.
    Never,
    /// A verified request in required mode: when the response may be stored by a shared
    /// cache although the request had `Authorization` (RFC 9111 section 3.5:
    /// `Cache-Control` `public`, `s-maxage` or `must-revalidate`). Without `Vary`, the
    /// cache would hand it to the next request for the same URL, anonymous ones included,
    /// which never reach the layer.
    IfSharedCacheable,
    /// Optional mode: the answer depends on whether the request had a token.
    Always,
}

impl Vary {
    fn for_verified(mode: AuthMode) -> Self {
        match mode {
            AuthMode::Optional => Self::Always,
            AuthMode::Required => Self::IfSharedCacheable,
        }
    }

    fn apply(self, headers: &mut HeaderMap) {
        let wanted = match self {
            Self::Never => false,
            Self::IfSharedCacheable => shared_cache_may_store(headers),
            Self::Always => true,
        };
        if wanted {
            vary_by_authorization(headers);
        }
    }
}

/// Whether the response lets a shared cache store it although the request had
/// `Authorization` (RFC 9111 section 3.5): `public`, `s-maxage` or `must-revalidate` in
/// `Cache-Control` or in a field a CDN reads instead of it (any name ending in
/// `-cache-control`: RFC 9213's `CDN-Cache-Control`, `Cloudflare-CDN-Cache-Control`,
/// `Akamai-Cache-Control`), or any `max-age` or `cache-maxage` in `Surrogate-Control` or
/// Akamai's `Edge-Control` (read by surrogates, which section 3.5 does not bind). Values
/// are read as bytes: one byte beyond ASCII elsewhere in the value does not hide a
/// directive. A field counted here that no cache reads costs a `Vary` that changes
/// nothing.
fn shared_cache_may_store(headers: &HeaderMap) -> bool {
    // Most answers have a few headers, none of these: comparing their names (standard
    // names compare as numbers) costs less than hashing one to look it up.
    headers.keys().any(|name| {
        let text = name.as_str();
        // Every name sought ends in `control`: most names stop at their last byte.
        let (surrogate, targeted) = if name == CACHE_CONTROL {
            (false, true)
        } else if !text.ends_with('l') {
            (false, false)
        } else {
            (
                text == "surrogate-control" || text == "edge-control",
                text.ends_with("-cache-control"),
            )
        };
        (surrogate || targeted)
            && headers.get_all(name).iter().any(|value| {
                directive_names(value.as_bytes()).any(|directive| {
                    let is = |wanted: &str| directive.eq_ignore_ascii_case(wanted.as_bytes());
                    if surrogate {
                        is("max-age") || is("cache-maxage")
                    } else {
                        is("public") || is("s-maxage") || is("must-revalidate")
                    }
                })
            })
    })
}

/// The directive names in a cache-control value (`name` or `name=value`, comma-separated,
/// whitespace around them trimmed).
fn directive_names(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&byte| byte == b',').map(|directive| {
        let name = directive
            .iter()
            .position(|&byte| byte == b'=')
            .map_or(directive, |end| &directive[..end]);
        name.trim_ascii()
    })
}

/// Adds `Authorization` to `Vary` (RFC 9110 section 12.5.5) unless the response already
/// varies by it or by everything (`*`): a shared cache that stored the answer to an
/// anonymous request must not hand it to a request with a token, or the other way round.
fn vary_by_authorization(headers: &mut HeaderMap) {
    let covered = headers
        .get_all(VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|name| name == "*" || name.eq_ignore_ascii_case("authorization"));
    if !covered {
        headers.append(VARY, HeaderValue::from_static("authorization"));
    }
}

/// The answer to credentials that break RFC 6750's syntax rules.
fn malformed<B: From<Bytes>>(shared: &Shared, kind: ErrorKind) -> Response<B> {
    tracing::debug!(target: "smart_auth::rejection", ?kind, "malformed credentials");
    metrics::refused(kind);
    shared.challenge.response(&AuthError::new(kind))
}

/// The answer to a refused token.
fn refuse<B: From<Bytes>>(shared: &Shared, error: &AuthError) -> Response<B> {
    tracing::debug!(target: "smart_auth::rejection", kind = ?error.kind(), "token refused");
    metrics::refused(error.kind());
    shared.challenge.response(error)
}

pin_project! {
    /// The response future of [`SmartAuth`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use axum::body::Body;
    /// use http::{Request, Response};
    /// use smart_auth::SmartAuthLayer;
    /// use smart_auth::layer::ResponseFuture;
    /// use tower::{Layer as _, Service as _, ServiceExt as _, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = SmartAuthLayer::builder("https://auth.example.org").audience("api://fhir").build()?;
    /// let inner = service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    /// let mut service = layer.layer(inner);
    ///
    /// let future: ResponseFuture<_, Body> = service.ready().await?.call(Request::new(Body::empty()));
    /// assert_eq!(future.await?.status(), 401);
    /// # Ok(()) }
    /// ```
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

/// What a request whose token is being verified holds until the verification ends. Boxed,
/// so that the future stays small for the common cases (a cached token, a refusal).
struct Waiting<S, ReqBody> {
    inner: S,
    request: Request<ReqBody>,
    shared: Arc<Shared>,
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Verifying {
            verify: BoxFuture<'static, Result<SmartClaims, AuthError>>,
            waiting: Option<Box<Waiting<S, ReqBody>>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            // Puts the layer's realm into refusals raised behind it.
            challenge: Challenge,
            vary: Vary,
            // A refusal raised behind the layer and rebuilt by it has no body for HEAD.
            head: bool,
        },
        Rejected {
            response: Option<S::Response>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// Calls the inner service; `vary` says when its answer varies by `Authorization`.
    fn calling(future: S::Future, shared: &Shared, vary: Vary, head: bool) -> Self {
        Self {
            state: State::Calling {
                future,
                challenge: shared.challenge.clone(),
                vary,
                head,
            },
        }
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    /// Answers with the layer's own refusal, without a body for a `HEAD` request.
    fn rejected(mut response: Response<ResBody>, head: bool) -> Self {
        if head {
            drop_body(&mut response);
        }
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

/// Empties a refusal to `HEAD`: the answer to `HEAD` has no content (RFC 9110 section
/// 9.3.2). axum drops it for routes, hyper's HTTP/1 server too, but an HTTP/2 server sends
/// it, and an HTTP/2 client then fails the stream instead of reading the refusal (the layer
/// around a whole app, tonic, `service_fn`). The headers stay: `Content-Type` and
/// `Content-Length` describe what `GET` would get (RFC 9110 section 8.6); without the
/// length, axum would say `0` for the emptied body.
#[cold]
fn drop_body<B: From<Bytes>>(response: &mut Response<B>) {
    *response.body_mut() = B::from(Bytes::new());
}

impl<S, ReqBody> std::fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: http_body::Body,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    // Inlined into the caller's poll, the response is not copied out and back in again.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Verifying { verify, waiting } => {
                    let result = ready!(verify.as_mut().poll(cx));
                    let Some(waiting) = waiting.take() else {
                        panic!("ResponseFuture polled after completion");
                    };
                    let Waiting {
                        mut inner,
                        mut request,
                        shared,
                    } = *waiting;
                    let head = request.method() == Method::HEAD;
                    match result.and_then(|claims| admit(&shared, &request, claims)) {
                        Ok((claims, paging_link)) => {
                            metrics::accepted(Source::Verified);
                            hand_over(&mut request, claims, paging_link);
                            let future = inner.call(request);
                            let challenge = shared.challenge.clone();
                            this.state.set(State::Calling {
                                future,
                                challenge,
                                vary: Vary::for_verified(shared.mode),
                                head,
                            });
                        }
                        Err(error) => {
                            let mut response = refuse(&shared, &error);
                            if head {
                                drop_body(&mut response);
                            }
                            this.state.set(State::Rejected { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Calling {
                    future,
                    challenge,
                    vary,
                    head,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    if challenge.settle_realm(&mut response) && *head {
                        drop_body(&mut response);
                    }
                    vary.apply(response.headers_mut());
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}
