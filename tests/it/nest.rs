//! The layer with scope enforcement inside and outside axum's `Router::nest`, which strips
//! the nest prefix before inner layers see the path: the layer decides on the original URI
//! (axum's `OriginalUri`), so each placement gives the same exact answers.

use axum::Router;
use axum::extract::Path;
use axum::routing::{any, get};
use serde_json::json;
use smart_auth::testing::TestIssuer;
use smart_auth::{ManualClock, ScopeEnforcement, SmartAuthLayer, SmartClaims};
use tower_layer::Layer as _;

use crate::public_routes::{RawAnswer, raw_request};
use crate::support::{issuer, malformed_request_challenge, serve};

/// The FHIR routes as the nested router declares them (without the `/fhir` prefix).
fn fhir_routes() -> Router {
    Router::new()
        .route(
            "/metadata",
            get(|claims: Option<SmartClaims>| async move {
                axum::Json(json!({"route": "metadata", "verified": claims.is_some()}))
            }),
        )
        .route(
            "/{type}/{id}",
            any(
                |Path((resource_type, id)): Path<(String, String)>,
                 claims: Option<SmartClaims>| async move {
                    axum::Json(json!({
                        "route": "/{type}/{id}",
                        "params": [resource_type, id],
                        "verified": claims.is_some(),
                    }))
                },
            ),
        )
        .fallback(|claims: Option<SmartClaims>| async move {
            axum::Json(json!({"route": "fallback", "verified": claims.is_some()}))
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// `Router::nest("/fhir", fhir_routes().layer(auth))`.
    InsideNest,
    /// `Router::new().nest("/fhir", fhir_routes()).layer(auth)`.
    OnOuterRouter,
    /// `auth.layer(Router::new().nest("/fhir", fhir_routes()))`, as a plain tower service.
    AroundTheApp,
}

struct Nested {
    url: String,
    issuer: TestIssuer,
    _server: tokio::task::JoinHandle<()>,
}

async fn nested(placement: Placement, base: &str) -> Nested {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .served_at_path(base)
        .enforce_scopes(ScopeEnforcement::new())
        .build()
        .unwrap();
    let (url, server) = match placement {
        Placement::InsideNest => {
            serve(Router::new().nest("/fhir", fhir_routes().layer(auth))).await
        }
        Placement::OnOuterRouter => {
            serve(Router::new().nest("/fhir", fhir_routes()).layer(auth)).await
        }
        Placement::AroundTheApp => {
            let service = auth.layer(Router::new().nest("/fhir", fhir_routes()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let server = tokio::spawn(async move {
                let _ = axum::serve(
                    listener,
                    axum::ServiceExt::<axum::extract::Request>::into_make_service(service),
                )
                .await;
            });
            (url, server)
        }
    };
    Nested {
        url,
        issuer,
        _server: server,
    }
}

impl Nested {
    async fn get(&self, target: &str, scope: Option<&str>) -> RawAnswer {
        match scope {
            Some(scope) => {
                let token = self.issuer.token().scope(scope).sign();
                let authorization = format!("Bearer {token}");
                raw_request(
                    &self.url,
                    "GET",
                    target,
                    &[("authorization", &authorization)],
                )
                .await
            }
            None => raw_request(&self.url, "GET", target, &[]).await,
        }
    }

    fn challenge(&self, rest: &str) -> String {
        format!("Bearer realm=\"{}\"{rest}", self.issuer.audience())
    }

    fn denied(&self, hint: Option<&str>) -> String {
        let hint = hint
            .map(|scope| format!(", scope=\"{scope}\""))
            .unwrap_or_default();
        self.challenge(&format!(
            ", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\"{hint}"
        ))
    }
}

#[tokio::test]
async fn every_placement_enforces_on_the_full_path() {
    for placement in [
        Placement::InsideNest,
        Placement::OnOuterRouter,
        Placement::AroundTheApp,
    ] {
        let app = nested(placement, "/fhir").await;
        let scope = Some("system/Patient.rs");

        // Public: the capability statement, at its full path.
        let answer = app.get("/fhir/metadata", None).await;
        assert_eq!(answer.status, 200, "{placement:?}: {answer:?}");
        assert_eq!(answer.body, json!({"route": "metadata", "verified": false}));

        // No token: the exact bare challenge.
        for target in ["/fhir/Patient/1", "/fhir/%6Detadata", "/fhir/metadata/"] {
            let answer = app.get(target, None).await;
            assert_eq!(answer.status, 401, "{placement:?} {target}: {answer:?}");
            assert_eq!(answer.challenge, Some(app.challenge("")), "{placement:?}");
        }

        // Allowed.
        let answer = app.get("/fhir/Patient/1", scope).await;
        assert_eq!(answer.status, 200, "{placement:?}: {answer:?}");
        assert_eq!(answer.body["params"], json!(["Patient", "1"]));
        assert_eq!(answer.body["verified"], true);
        let answer = app.get("/fhir/%50atient/1", scope).await;
        assert_eq!(answer.status, 200, "{placement:?}: {answer:?}");
        assert_eq!(answer.body["params"], json!(["Patient", "1"]));

        // Refused with the hint: the inner router sees `/Observation/1`, the layer checks
        // `/fhir/Observation/1`.
        for target in ["/fhir/Observation/1", "/fhir/%4Fbservation/1"] {
            let answer = app.get(target, scope).await;
            assert_eq!(answer.status, 403, "{placement:?} {target}: {answer:?}");
            assert_eq!(
                answer.challenge,
                Some(app.denied(Some("system/Observation.r"))),
                "{placement:?} {target}"
            );
        }
        // Refused without a hint: not FHIR under the base (403), or unreadable (400).
        let answer = app.get("/fhir/Patient/1/x/y", scope).await;
        assert_eq!(answer.status, 403, "{placement:?}: {answer:?}");
        assert_eq!(answer.challenge, Some(app.denied(None)), "{placement:?}");
        for target in ["/fhir/Patient%2F1", "/fhir//Patient/1", "/fhir/Patient/.."] {
            let answer = app.get(target, scope).await;
            // Inside the nest, axum strips `/fhir` from `/fhir//Patient/1` otherwise than
            // nesting explains: the layer cannot tell the client's path, and refuses as
            // for any path rewritten between router and layer.
            if placement == Placement::InsideNest && target == "/fhir//Patient/1" {
                assert_eq!(answer.status, 403, "{placement:?} {target}: {answer:?}");
                assert_eq!(answer.challenge, Some(app.denied(None)), "{target}");
                continue;
            }
            assert_eq!(answer.status, 400, "{placement:?} {target}: {answer:?}");
            assert_eq!(
                answer.challenge,
                Some(malformed_request_challenge(app.issuer.audience())),
                "{placement:?} {target}"
            );
        }
    }
}

/// A base written relative to the nest (`/` for a layer inside `nest("/fhir")`) is not
/// supported: the layer reads full paths, so `/fhir/Patient/1` is under `/` but no FHIR
/// interaction there, and is refused rather than waved through.
#[tokio::test]
async fn a_base_relative_to_the_nest_fails_closed() {
    let app = nested(Placement::InsideNest, "/").await;
    for target in ["/fhir/Patient/1", "/fhir/Observation/1"] {
        let answer = app.get(target, Some("system/Patient.rs")).await;
        assert_eq!(answer.status, 403, "{target}: {answer:?}");
        assert_eq!(answer.challenge, Some(app.denied(None)), "{target}");
    }
}

/// A router the layer covers (served at `/fhir`, with `enforcement`; no path extractor
/// behind, so an outer route's capture stays in the request), behind a service routed at
/// `outer_route` that changes each request with `rewrite` before handing it on: the URL
/// to call, the issuer and the server.
async fn behind_a_rewrite(
    enforcement: ScopeEnforcement,
    outer_route: &str,
    rewrite: fn(&mut axum::extract::Request),
) -> (String, TestIssuer, tokio::task::JoinHandle<()>) {
    use tower::ServiceExt as _;
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .served_at_path("/fhir")
        .enforce_scopes(enforcement)
        .build()
        .unwrap();
    let inner = Router::new()
        .route("/fhir/{*rest}", any(|| async { "served" }))
        .layer(auth);
    let rewriting = tower::service_fn(move |mut request: axum::extract::Request| {
        let inner = inner.clone();
        rewrite(&mut request);
        inner.oneshot(request)
    });
    let (url, server) = serve(Router::new().route_service(outer_route, rewriting)).await;
    (url, issuer, server)
}

/// A service that rewrites the path otherwise than nesting does (`/v1/…` to `/fhir/…`, or
/// stripping a `/v1` prefix the router did not nest at) in front of a router the layer
/// covers: axum's `OriginalUri` then names another path than the one the router routes, and
/// neither is surely the request's, so the layer refuses (403 with scope enforcement,
/// whatever the scopes; never let through as outside the base).
#[tokio::test]
async fn a_path_rewritten_otherwise_than_by_nesting_is_refused() {
    let (url, issuer, _server) = behind_a_rewrite(
        ScopeEnforcement::new().allow_any_token_outside_base(),
        "/v1/{*rest}",
        |request| {
            let path = request.uri().path().to_owned();
            let rewritten = match path.strip_prefix("/v1/fhir") {
                Some(rest) => format!("/fhir{rest}"),
                None => format!("/fhir{}", path.strip_prefix("/v1").unwrap_or("/")),
            };
            *request.uri_mut() = rewritten.parse().unwrap();
        },
    )
    .await;
    let http = crate::support::loopback_client();
    for path in ["/v1/Patient/1", "/v1/fhir/Patient/1"] {
        for scope in ["system/Observation.rs", "system/Patient.rs"] {
            let token = issuer.token().scope(scope).sign();
            let status = http
                .get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{path} {scope}");
        }
    }
}

/// A service between the router and the layer that changes the query (adds a parameter,
/// or one where there was none) leaves the path as it was, but the layer would judge the
/// client's query while the service behind reads another: refused, whatever the scopes.
/// The same request without the rewrite passes.
#[tokio::test]
async fn a_query_rewritten_between_router_and_layer_is_refused() {
    let (url, issuer, _server) =
        behind_a_rewrite(ScopeEnforcement::new(), "/fhir/{*rest}", |request| {
            if request.headers().contains_key("x-rewrite-query") {
                let rewritten = match request.uri().query() {
                    Some(query) => format!(
                        "{}?{query}&_revinclude=Observation:subject",
                        request.uri().path()
                    ),
                    None => format!("{}?_revinclude=Observation:subject", request.uri().path()),
                };
                *request.uri_mut() = rewritten.parse().unwrap();
            }
        })
        .await;
    let http = crate::support::loopback_client();
    let token = issuer.token().scope("system/Patient.rs").sign();
    for target in ["/fhir/Patient?name=x", "/fhir/Patient"] {
        let send = |rewrite: bool| {
            let mut request = http.get(format!("{url}{target}")).bearer_auth(&token);
            if rewrite {
                request = request.header("x-rewrite-query", "1");
            }
            request.send()
        };
        assert_eq!(send(false).await.unwrap().status(), 200, "{target}");
        let status = send(true).await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{target} rewritten");
    }
}
