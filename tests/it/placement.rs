//! Where the layer sits in an axum app: the placement the docs show covers every request
//! the app answers, routed or not, and refusals to `HEAD` through an axum route say the
//! length `GET` gets.

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use smart_auth::discovery::SmartConfiguration;
use smart_auth::testing::TestIssuer;
use smart_auth::{ManualClock, SmartAuthLayer};

use crate::support::{issuer, loopback_client, serve};

/// The app of the README: routes, the discovery router merged beside them, the layer last.
/// `fallback` adds the app's own fallback (a proxy, a custom 404) before the layer.
async fn documented_app(with_fallback: bool) -> Documented {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .fhir_base("https://api.example.org/fhir")
        .audience(issuer.audience())
        .clock(clock)
        .build()
        .unwrap();
    let discovery = auth.discovery(
        SmartConfiguration::backend_services(format!("{}/token", issuer.url()))
            .build()
            .unwrap(),
    );
    let mut app = Router::new()
        .route("/fhir/Patient/{id}", get(|| async { "patient" }))
        .merge(discovery.router());
    if with_fallback {
        app = app.fallback(|| async { (StatusCode::NOT_FOUND, "the app's own fallback") });
    }
    let (url, server) = serve(app.layer(auth)).await;
    Documented {
        url,
        token: issuer.token().sign(),
        _issuer: issuer,
        _server: server,
    }
}

/// A served [`documented_app`], its issuer kept running.
struct Documented {
    url: String,
    token: String,
    _issuer: TestIssuer,
    _server: tokio::task::JoinHandle<()>,
}

#[tokio::test]
async fn the_documented_placement_covers_unrouted_paths_and_methods() {
    for with_fallback in [false, true] {
        let app = documented_app(with_fallback).await;
        let (url, token) = (&app.url, &app.token);
        let http = loopback_client();
        // Without a token, every path and method the app does not route gets the same
        // answer as a routed one: nothing tells an anonymous caller which routes exist.
        for (method, path) in [
            (reqwest::Method::GET, "/fhir/Patient/1"),
            (reqwest::Method::GET, "/fhir/Observation/1"),
            (reqwest::Method::GET, "/fhir/Patient"),
            (reqwest::Method::GET, "/elsewhere"),
            (reqwest::Method::GET, "/"),
            (reqwest::Method::DELETE, "/fhir/Patient/1"),
            (
                reqwest::Method::POST,
                "/fhir/.well-known/smart-configuration",
            ),
            (reqwest::Method::HEAD, "/fhir/Observation/1"),
        ] {
            let response = http
                .request(method.clone(), format!("{url}{path}"))
                .send()
                .await
                .unwrap();
            let context = format!("{method} {path}, fallback {with_fallback}");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{context}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"https://api.example.org/fhir\"",
                "{context}"
            );
        }
        // The discovery document stays public.
        let discovery = http
            .get(format!("{url}/fhir/.well-known/smart-configuration"))
            .send()
            .await
            .unwrap();
        assert_eq!(discovery.status(), StatusCode::OK);
        // With a valid token, the app's own answers come through.
        let routed = http
            .get(format!("{url}/fhir/Patient/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(routed.status(), StatusCode::OK);
        assert_eq!(routed.text().await.unwrap(), "patient");
        let unrouted = http
            .get(format!("{url}/fhir/Observation/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(unrouted.status(), StatusCode::NOT_FOUND);
        let body = unrouted.text().await.unwrap();
        assert_eq!(
            body == "the app's own fallback",
            with_fallback,
            "fallback {with_fallback}: {body:?}"
        );
    }
}

#[tokio::test]
async fn refusals_to_head_through_a_route_say_the_length_get_gets() {
    let app = documented_app(false).await;
    let (url, token) = (&app.url, &app.token);
    let http = loopback_client();
    let rows: [(&str, Option<String>); 4] = [
        ("/fhir/Patient/1", None),
        ("/fhir/Patient/1", Some("Bearer a\"b".into())),
        ("/fhir/Patient/1", Some("Bearer not-a-jwt".into())),
        ("/fhir/Patient/1", Some(format!("Bearer {token}x"))),
    ];
    for (path, authorization) in rows {
        let send = |method: reqwest::Method| {
            let mut request = http.request(method, format!("{url}{path}"));
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            request.send()
        };
        let get = send(reqwest::Method::GET).await.unwrap();
        let get_status = get.status();
        let get_length = get.headers()["content-length"].clone();
        let get_body = get.bytes().await.unwrap();
        assert_eq!(get_length, get_body.len().to_string().as_str());
        assert!(!get_body.is_empty());
        let head = send(reqwest::Method::HEAD).await.unwrap();
        let context = format!("{path} {authorization:?}");
        assert_eq!(head.status(), get_status, "{context}");
        assert_eq!(head.headers()["content-length"], get_length, "{context}");
        assert!(head.bytes().await.unwrap().is_empty(), "{context}");
    }
}
