//! Handler tests without tokens: [`ClaimsBuilder`] and [`ClaimsLayer`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use serde_json::{Map, Value, json};
use tower_layer::Layer;
use tower_service::Service;

use crate::claims::{FhirContext, SmartClaims};
use crate::clock::{Clock as _, SystemClock, unix_seconds};
use crate::enforce::ScopeEnforcement;
use crate::layer::PublicRoutes;
use crate::response::Challenge;

/// Builds [`SmartClaims`] for a handler test, with no issuer, no key and no signed token.
///
/// The claims are read exactly as the layer reads a verified token's payload, with the
/// default claim names: scopes go through the same well-formedness filter and
/// [`ScopeSet`](crate::scopes::ScopeSet) parsing, so
/// [`permits`](SmartClaims::permits), [`require`](SmartClaims::require),
/// [`claim`](SmartClaims::claim) and [`extra`](SmartClaims::extra) answer as they would
/// in production.
///
/// Defaults: `iss` `https://issuer.test`, `sub` and `client_id` `test-client`, `aud`
/// `https://fhir.test`, `iat` now and `exp` one hour from now, **no scopes**. Each setter
/// is named after the accessor it feeds.
///
/// ```
/// use smart_auth::{FhirContext, scopes::Interaction, testing::ClaimsBuilder};
///
/// let claims = ClaimsBuilder::new()
///     .client_id("app-1")
///     .scope("patient/Observation.rs")
///     .patient("123")
///     .fhir_user("Practitioner/7")
///     .fhir_context(FhirContext::from_reference("Encounter/9"))
///     .claim("org", "acme")
///     .build();
/// assert_eq!(claims.client_id(), Some("app-1"));
/// assert!(claims.permits(Interaction::Read, "Observation"));
/// assert!(!claims.permits(Interaction::Create, "Observation"));
/// assert_eq!(claims.claim("org"), Some(&serde_json::json!("acme")));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClaimsBuilder {
    claims: Map<String, Value>,
}

impl Default for ClaimsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaimsBuilder {
    /// Claims with the defaults listed in the [type docs](ClaimsBuilder).
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().build();
    /// assert_eq!(claims.iss(), "https://issuer.test");
    /// assert_eq!(claims.client_id(), Some("test-client"));
    /// assert_eq!(claims.aud(), ["https://fhir.test"]);
    /// assert!(claims.scopes().is_empty()); // no scopes unless you add them
    /// ```
    pub fn new() -> Self {
        let now = unix_seconds(SystemClock.now());
        let Value::Object(claims) = json!({
            "iss": "https://issuer.test",
            "sub": "test-client",
            "client_id": "test-client",
            "aud": "https://fhir.test",
            "iat": now,
            "exp": now.saturating_add(3600),
        }) else {
            unreachable!("a JSON object literal")
        };
        Self { claims }
    }

    /// Sets (or with `Value::Null`, removes) any claim, exactly as a token would carry it.
    /// A value of the wrong JSON type for a claim this crate reads makes
    /// [`build`](Self::build) panic, as it would make a token invalid.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new()
    ///     .claim("need_patient_banner", true)
    ///     .claim("sub", serde_json::Value::Null) // removes the default `sub`
    ///     .build();
    /// assert_eq!(claims.claim("need_patient_banner"), Some(&serde_json::json!(true)));
    /// assert_eq!(claims.sub(), None);
    /// ```
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        match value.into() {
            Value::Null => {
                self.claims.remove(name);
            }
            value => {
                self.claims.insert(name.to_owned(), value);
            }
        }
        self
    }

    /// `iss`.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().iss("https://auth.example.org").build();
    /// assert_eq!(claims.issuer(), "https://auth.example.org");
    /// ```
    pub fn iss(self, iss: impl Into<String>) -> Self {
        self.claim("iss", iss.into())
    }

    /// `sub`.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().sub("user-42").build();
    /// assert_eq!(claims.sub(), Some("user-42"));
    /// assert_eq!(claims.client_id(), Some("test-client")); // `client_id` is its own claim
    /// ```
    #[allow(
        clippy::should_implement_trait,
        reason = "named after the `sub` claim, like `SmartClaims::sub`"
    )]
    pub fn sub(self, sub: impl Into<String>) -> Self {
        self.claim("sub", sub.into())
    }

    /// `client_id`.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().client_id("billing-service").build();
    /// assert_eq!(claims.client_id(), Some("billing-service"));
    /// ```
    pub fn client_id(self, client_id: impl Into<String>) -> Self {
        self.claim("client_id", client_id.into())
    }

    /// `aud`: a single audience (for several, `.claim("aud", json!([..]))`).
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().aud("https://api.example.org/fhir").build();
    /// assert_eq!(claims.aud(), ["https://api.example.org/fhir"]);
    /// ```
    pub fn aud(self, aud: impl Into<String>) -> Self {
        self.claim("aud", aud.into())
    }

    /// `exp`, in seconds since the Unix epoch.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().exp(1_900_000_000).build();
    /// assert_eq!(claims.exp(), 1_900_000_000);
    /// ```
    pub fn exp(self, exp: i64) -> Self {
        self.claim("exp", exp)
    }

    /// `iat`, in seconds since the Unix epoch.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().iat(1_700_000_000).build();
    /// assert_eq!(claims.iat(), Some(1_700_000_000));
    /// ```
    pub fn iat(self, iat: i64) -> Self {
        self.claim("iat", iat)
    }

    /// `nbf`, in seconds since the Unix epoch.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().nbf(1_700_000_000).build();
    /// assert_eq!(claims.nbf(), Some(1_700_000_000));
    /// ```
    pub fn nbf(self, nbf: i64) -> Self {
        self.claim("nbf", nbf)
    }

    /// `jti`.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().jti("token-1").build();
    /// assert_eq!(claims.jti(), Some("token-1"));
    /// ```
    pub fn jti(self, jti: impl Into<String>) -> Self {
        self.claim("jti", jti.into())
    }

    /// Adds to the granted scopes. The text is appended to the space-separated `scope`
    /// claim, so `"a b"` grants both `a` and `b`, and a malformed scope grants nothing, as
    /// in a token.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new()
    ///     .scope("system/Patient.rs")
    ///     .scope("system/Observation.rs openid")
    ///     .build();
    /// assert_eq!(claims.scopes(), ["system/Patient.rs", "system/Observation.rs", "openid"]);
    /// ```
    pub fn scope(mut self, scope: &str) -> Self {
        let text = match self.claims.get("scope") {
            Some(Value::String(granted)) if !granted.is_empty() => format!("{granted} {scope}"),
            _ => scope.to_owned(),
        };
        self.claims.insert("scope".to_owned(), Value::String(text));
        self
    }

    /// Replaces the granted scopes with these, one scope per item.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new()
    ///     .scope("system/*.cruds")
    ///     .scopes(["system/Patient.r", "system/Observation.rs"]) // replaces the scope above
    ///     .build();
    /// assert_eq!(claims.scopes(), ["system/Patient.r", "system/Observation.rs"]);
    /// ```
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.claims.remove("scope");
        for scope in scopes {
            self = self.scope(scope.as_ref());
        }
        self
    }

    /// `patient`: the id of the Patient in context (it also makes `patient/` scopes count).
    ///
    /// ```
    /// use smart_auth::{scopes::Interaction, testing::ClaimsBuilder};
    ///
    /// let without = ClaimsBuilder::new().scope("patient/Observation.rs").build();
    /// assert!(!without.permits(Interaction::Read, "Observation"));
    ///
    /// let with = ClaimsBuilder::new().scope("patient/Observation.rs").patient("123").build();
    /// assert_eq!(with.patient(), Some("123"));
    /// assert!(with.permits(Interaction::Read, "Observation"));
    /// ```
    pub fn patient(self, id: impl Into<String>) -> Self {
        self.claim("patient", id.into())
    }

    /// `encounter`.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().encounter("e-9").build();
    /// assert_eq!(claims.encounter(), Some("e-9"));
    /// ```
    pub fn encounter(self, id: impl Into<String>) -> Self {
        self.claim("encounter", id.into())
    }

    /// `fhirUser`.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().fhir_user("Practitioner/7").build();
    /// assert_eq!(claims.fhir_user(), Some("Practitioner/7"));
    /// assert_eq!(claims.claim("fhirUser"), Some(&serde_json::json!("Practitioner/7")));
    /// ```
    pub fn fhir_user(self, reference: impl Into<String>) -> Self {
        self.claim("fhirUser", reference.into())
    }

    /// `tenant`.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().tenant("north-clinic").build();
    /// assert_eq!(claims.tenant(), Some("north-clinic"));
    /// ```
    pub fn tenant(self, tenant: impl Into<String>) -> Self {
        self.claim("tenant", tenant.into())
    }

    /// Adds an entry to `fhirContext`.
    ///
    /// ```
    /// use smart_auth::{FhirContext, testing::ClaimsBuilder};
    ///
    /// let claims = ClaimsBuilder::new()
    ///     .fhir_context(FhirContext::from_reference("Encounter/9"))
    ///     .fhir_context(FhirContext::from_canonical("http://example.org/Questionnaire/q|1"))
    ///     .build();
    /// assert_eq!(claims.fhir_context().len(), 2);
    /// assert_eq!(claims.fhir_context()[0].reference(), Some("Encounter/9"));
    /// ```
    pub fn fhir_context(mut self, context: FhirContext) -> Self {
        let entry = serde_json::to_value(&context).unwrap_or(Value::Null);
        match self.claims.get_mut("fhirContext") {
            Some(Value::Array(entries)) => entries.push(entry),
            _ => {
                self.claims
                    .insert("fhirContext".to_owned(), Value::Array(vec![entry]));
            }
        }
        self
    }

    /// The claims, read as the layer reads a verified payload.
    ///
    /// # Panics
    ///
    /// When a token carrying these claims would be invalid: a claim this crate reads with
    /// the wrong JSON type (`exp` as a string, `patient` as a number, ...), no `iss` or no
    /// `exp`, or a `fhirContext` entry that names nothing.
    ///
    /// ```
    /// use smart_auth::testing::ClaimsBuilder;
    ///
    /// let claims = ClaimsBuilder::new().scope("system/Patient.rs").build();
    /// assert!(claims.has_scope("system/Patient.rs"));
    ///
    /// // Claims a token could not carry panic, as they would make the token invalid.
    /// let invalid = std::panic::catch_unwind(|| ClaimsBuilder::new().claim("exp", "soon").build());
    /// assert!(invalid.is_err());
    /// ```
    pub fn build(self) -> SmartClaims {
        match SmartClaims::from_test_payload(self.claims) {
            Ok(claims) => claims,
            Err(kind) => panic!("these claims would make a token invalid ({kind:?})"),
        }
    }
}

/// A tower layer that inserts a clone of fixed [`SmartClaims`] into every request, in
/// place of [`SmartAuthLayer`](crate::SmartAuthLayer), so that handlers taking
/// `claims: SmartClaims` (or `Option<SmartClaims>`) can be tested without a token.
///
/// Errors a handler raises from the claims ([`SmartClaims::require`] and friends) answer
/// as they would behind the layer, with the default realm.
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::{Request, StatusCode};
/// use smart_auth::{AuthError, SmartClaims, scopes::Interaction};
/// use smart_auth::testing::{ClaimsBuilder, ClaimsLayer};
/// use tower::ServiceExt as _;
///
/// async fn read_observation(claims: SmartClaims) -> Result<String, AuthError> {
///     claims.require(Interaction::Read, "Observation")?;
///     Ok(format!("for {}", claims.client_id().unwrap_or("?")))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = |claims| {
///     Router::new()
///         .route("/fhir/Observation/{id}", get(read_observation))
///         .layer(ClaimsLayer::new(claims))
/// };
/// let request = || Request::get("/fhir/Observation/1").body(Body::empty());
///
/// let allowed = ClaimsBuilder::new().scope("system/Observation.rs").build();
/// let response = app(allowed).oneshot(request()?).await?;
/// assert_eq!(response.status(), StatusCode::OK);
///
/// let refused = ClaimsBuilder::new().scope("system/Patient.rs").build();
/// let response = app(refused).oneshot(request()?).await?;
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClaimsLayer {
    claims: SmartClaims,
    enforcement: Option<ScopeEnforcement>,
    /// The layer's default public routes (the capability statement and the SMART
    /// configuration, under the base of [`enforce_scopes`](Self::enforce_scopes), else at
    /// the root), where handlers get no claims, as behind the layer.
    public: PublicRoutes,
}

impl ClaimsLayer {
    /// A layer that gives every request these claims, but for the layer's public routes
    /// (`GET`/`HEAD` of the capability statement and the SMART configuration, under the
    /// base of [`enforce_scopes`](Self::enforce_scopes), else at the root), where handlers
    /// get none, as behind the layer. See the [type docs](ClaimsLayer).
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use smart_auth::SmartClaims;
    /// use smart_auth::testing::{ClaimsBuilder, ClaimsLayer};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = ClaimsLayer::new(ClaimsBuilder::new().tenant("north").build());
    /// let app = Router::new()
    ///     .route("/tenant", get(|c: SmartClaims| async move { c.tenant().unwrap_or("").to_owned() }))
    ///     .layer(layer);
    /// let response = app.oneshot(http::Request::get("/tenant").body(Body::empty())?).await?;
    /// let body = axum::body::to_bytes(response.into_body(), 1024).await?;
    /// assert_eq!(body, "north");
    /// # Ok(()) }
    /// ```
    pub fn new(claims: SmartClaims) -> Self {
        Self {
            claims,
            enforcement: None,
            public: PublicRoutes::default(),
        }
    }

    /// Checks each request against the claims' scopes first, exactly as
    /// [`SmartAuthBuilder::enforce_scopes`](crate::SmartAuthBuilder::enforce_scopes) does
    /// for a FHIR API under `base_path` (`/fhir`, or `/` for the root): a refused request
    /// gets the same answer (403 `insufficient_scope`, or 400 `invalid_request`) and never
    /// reaches the handler. Your
    /// enforcement settings (operation policy, granular filters) are tested as they will
    /// run, without a token.
    ///
    /// # Panics
    ///
    /// When `enforcement` holds a setting that
    /// [`SmartAuthBuilder::build`](crate::SmartAuthBuilder::build) refuses (an
    /// [`allow_any_token_under`](ScopeEnforcement::allow_any_token_under) path or a
    /// [paging parameter](ScopeEnforcement::handler_checks_paging_links) that cannot be
    /// one): a test must not pass with a configuration the layer would not build.
    ///
    /// ```
    /// use axum::{Router, body::Body, routing::get};
    /// use http::{Request, StatusCode};
    /// use smart_auth::ScopeEnforcement;
    /// use smart_auth::testing::{ClaimsBuilder, ClaimsLayer};
    /// use tower::ServiceExt as _;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let claims = ClaimsBuilder::new().scope("system/Patient.rs").build();
    /// let app = Router::new()
    ///     .route("/fhir/{type}/{id}", get(|| async { "resource" }))
    ///     .layer(ClaimsLayer::new(claims).enforce_scopes(ScopeEnforcement::new(), "/fhir"));
    ///
    /// let read = |path: &str| Request::get(path).body(Body::empty());
    /// let response = app.clone().oneshot(read("/fhir/Patient/1")?).await?;
    /// assert_eq!(response.status(), StatusCode::OK);
    /// let response = app.oneshot(read("/fhir/Observation/1")?).await?;
    /// assert_eq!(response.status(), StatusCode::FORBIDDEN);
    /// # Ok(()) }
    /// ```
    pub fn enforce_scopes(mut self, enforcement: ScopeEnforcement, base_path: &str) -> Self {
        let enforcement = match enforcement.checked() {
            Ok(enforcement) => enforcement,
            Err(error) => panic!("ClaimsLayer::enforce_scopes: {error}"),
        };
        let enforcement = enforcement.at_base(base_path);
        self.public.base_path = Some(enforcement.base_path().to_owned());
        self.enforcement = Some(enforcement);
        self
    }
}

impl<S> Layer<S> for ClaimsLayer {
    type Service = WithClaims<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithClaims {
            inner,
            claims: self.claims.clone(),
            enforcement: self.enforcement.clone(),
            public: self.public.clone(),
        }
    }
}

/// The service of [`ClaimsLayer`]: inserts the claims, then calls the inner service.
///
/// ```
/// use std::convert::Infallible;
/// use axum::body::Body;
/// use http::{Request, Response, StatusCode};
/// use smart_auth::SmartClaims;
/// use smart_auth::testing::{ClaimsBuilder, ClaimsLayer, WithClaims};
/// use tower::{Layer as _, ServiceExt as _, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Any tower service: it finds the claims in the request extensions.
/// let inner = service_fn(|request: Request<Body>| async move {
///     let found = request.extensions().get::<SmartClaims>().is_some();
///     let status = if found { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
///     Ok::<_, Infallible>(Response::builder().status(status).body(Body::empty()).unwrap())
/// });
/// let service: WithClaims<_> = ClaimsLayer::new(ClaimsBuilder::new().build()).layer(inner);
/// let response = service.oneshot(Request::new(Body::empty())).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WithClaims<S> {
    inner: S,
    claims: SmartClaims,
    enforcement: Option<ScopeEnforcement>,
    public: PublicRoutes,
}

impl<S, B, ResBody> Service<http::Request<B>> for WithClaims<S>
where
    S: Service<http::Request<B>, Response = Response<ResBody>>,
    B: http_body::Body,
    ResBody: From<Bytes>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithClaimsFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The layer's public routes: no claims, and no enforcement, as behind the layer.
        if crate::original_uri::original_uri(&request)
            .is_some_and(|uri| self.public.is_public(&request, uri.path()))
        {
            let extensions = request.extensions_mut();
            extensions.remove::<SmartClaims>();
            extensions.insert(crate::response::Unauthenticated);
            return WithClaimsFuture {
                state: State::Calling {
                    future: self.inner.call(request),
                },
            };
        }
        if let Some(enforcement) = &self.enforcement {
            let body_follows = !request.body().is_end_stream();
            match enforcement.check_request(&request, body_follows, &self.claims) {
                Ok(Some(paging_link)) => {
                    request.extensions_mut().insert(paging_link);
                }
                Ok(None) => {}
                Err(error) => {
                    return WithClaimsFuture {
                        state: State::Refused {
                            response: Some(Challenge::default_realm().response(&error)),
                        },
                    };
                }
            }
        }
        request.extensions_mut().insert(self.claims.clone());
        WithClaimsFuture {
            state: State::Calling {
                future: self.inner.call(request),
            },
        }
    }
}

pin_project! {
    /// The response future of [`WithClaims`].
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use axum::body::Body;
    /// use http::{Request, Response};
    /// use smart_auth::testing::{ClaimsBuilder, ClaimsLayer, WithClaimsFuture};
    /// use tower::{Layer as _, Service as _, ServiceExt as _, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inner = service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    /// let mut service = ClaimsLayer::new(ClaimsBuilder::new().build()).layer(inner);
    /// let future: WithClaimsFuture<_, Body> = service.ready().await?.call(Request::new(Body::empty()));
    /// assert_eq!(future.await?.status(), 200);
    /// # Ok(()) }
    /// ```
    pub struct WithClaimsFuture<F, ResBody> {
        #[pin]
        state: State<F, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, ResBody> {
        Calling {
            #[pin]
            future: F,
        },
        Refused {
            response: Option<Response<ResBody>>,
        },
    }
}

impl<F, ResBody> std::fmt::Debug for WithClaimsFuture<F, ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithClaimsFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for WithClaimsFuture<F, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling { future } => future.poll(cx),
            StateProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("WithClaimsFuture polled after completion"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scopes::Interaction;

    #[test]
    fn defaults() {
        let before = unix_seconds(SystemClock.now());
        let claims = ClaimsBuilder::new().build();
        let after = unix_seconds(SystemClock.now());
        assert_eq!(claims.iss(), "https://issuer.test");
        assert_eq!(claims.issuer(), "https://issuer.test");
        assert_eq!(
            (claims.sub(), claims.client_id()),
            (Some("test-client"), Some("test-client"))
        );
        assert_eq!(claims.aud(), ["https://fhir.test"]);
        assert!((before + 3600..=after + 3600).contains(&claims.exp()));
        assert!(
            claims
                .iat()
                .is_some_and(|iat| (before..=after).contains(&iat))
        );
        assert_eq!((claims.nbf(), claims.jti()), (None, None));
        assert!(claims.scopes().is_empty());
        assert!(!claims.permits(Interaction::Read, "Patient"));
        assert_eq!(
            (
                claims.patient(),
                claims.encounter(),
                claims.fhir_user(),
                claims.tenant()
            ),
            (None, None, None, None)
        );
        assert!(claims.fhir_context().is_empty());
    }

    #[test]
    fn setters_feed_their_accessors() {
        let claims = ClaimsBuilder::default()
            .iss("https://as.example")
            .sub("s")
            .client_id("c")
            .aud("https://api.example")
            .exp(200)
            .iat(100)
            .nbf(90)
            .jti("j")
            .patient("p1")
            .encounter("e1")
            .fhir_user("Practitioner/1")
            .tenant("t")
            .fhir_context(FhirContext::from_reference("Observation/1"))
            .fhir_context(FhirContext::from_canonical("http://q|1").with_type("Questionnaire"))
            .fhir_context(
                FhirContext::from_identifier(json!({"value": "7"})).with_role("https://r"),
            )
            .claim("org", "acme")
            .build();
        assert_eq!(
            (claims.iss(), claims.sub(), claims.client_id()),
            ("https://as.example", Some("s"), Some("c"))
        );
        assert_eq!(claims.aud(), ["https://api.example"]);
        assert_eq!(
            (claims.exp(), claims.iat(), claims.nbf(), claims.jti()),
            (200, Some(100), Some(90), Some("j"))
        );
        assert_eq!(
            (
                claims.patient(),
                claims.encounter(),
                claims.fhir_user(),
                claims.tenant()
            ),
            (Some("p1"), Some("e1"), Some("Practitioner/1"), Some("t"))
        );
        assert_eq!(
            claims.claim("fhirContext"),
            Some(&json!([
                {"reference": "Observation/1"},
                {"canonical": "http://q|1", "type": "Questionnaire"},
                {"identifier": {"value": "7"}, "role": "https://r"}
            ]))
        );
        assert_eq!(claims.fhir_context().len(), 3);
        assert_eq!(
            claims.fhir_context()[1].resource_type(),
            Some("Questionnaire")
        );
        assert_eq!(claims.claim("org"), Some(&json!("acme")));
        #[derive(serde::Deserialize)]
        struct Org {
            org: String,
            #[serde(default)]
            site: Option<String>,
        }
        let org: Org = claims.extra().expect("fits");
        assert_eq!((org.org.as_str(), org.site), ("acme", None));
        assert!(claims.extra::<Vec<u8>>().is_err());
        // `Null` removes a claim.
        let claims = ClaimsBuilder::new().claim("sub", Value::Null).build();
        assert_eq!(claims.sub(), None);
    }

    #[test]
    fn scopes_are_read_as_a_tokens_are() {
        let claims = ClaimsBuilder::new()
            .scope("system/Observation.rs")
            .scope("system/Patient.read\tsystem/*.* launch")
            .scope("patient/Observation.rs")
            .build();
        assert_eq!(
            claims.scopes(),
            ["system/Observation.rs", "launch", "patient/Observation.rs"]
        );
        assert_eq!(
            claims.claim("scope"),
            Some(&json!(
                "system/Observation.rs system/Patient.read\tsystem/*.* launch patient/Observation.rs"
            ))
        );
        assert!(claims.permits(Interaction::SearchType, "Observation"));
        assert!(!claims.permits(Interaction::Read, "Patient"));
        assert!(!claims.permits(Interaction::Delete, "Patient"));
        assert!(claims.require(Interaction::Read, "Observation").is_ok());
        let refused = claims
            .require(Interaction::Create, "Observation")
            .expect_err("no c");
        assert_eq!(refused.kind(), crate::ErrorKind::InsufficientScope);
        assert_eq!(refused.required_scope(), Some("system/Observation.c"));
        // `scopes` replaces; `patient/` scopes need a patient, as in a token.
        let claims = ClaimsBuilder::new()
            .scope("system/*.cruds")
            .scopes(["patient/Observation.rs", "openid"])
            .build();
        assert_eq!(claims.scopes(), ["patient/Observation.rs", "openid"]);
        assert!(!claims.permits(Interaction::Read, "Observation"));
        let with_patient = ClaimsBuilder::new()
            .scopes(["patient/Observation.rs"])
            .patient("123")
            .build();
        assert!(with_patient.permits(Interaction::Read, "Observation"));
        assert!(
            ClaimsBuilder::new()
                .scopes(Vec::<String>::new())
                .build()
                .scopes()
                .is_empty()
        );
    }

    #[test]
    #[should_panic(expected = "these claims would make a token invalid")]
    fn invalid_claims_panic() {
        let _ = ClaimsBuilder::new().claim("patient", 5).build();
    }

    #[test]
    #[should_panic(expected = "these claims would make a token invalid")]
    fn blank_context_panics() {
        let _ = ClaimsBuilder::new()
            .fhir_context(FhirContext::from_reference(" "))
            .build();
    }
}
