//! The `metrics` feature, end to end: a real server on 127.0.0.1 with a Prometheus
//! recorder, scraped over HTTP after a known sequence of requests.
//!
//! A test binary of its own with a single test function: the metrics recorder is global
//! to the process, so the counts asserted here must not share a process with other tests
//! (nor with a second test in this file).

use std::collections::BTreeSet;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use reqwest::StatusCode;
use smart_auth::testing::TestIssuer;
use smart_auth::{ErrorKind, SmartAuthLayer, SmartClaims, TokenVerifier};

async fn hello(claims: SmartClaims) -> String {
    format!("hello {}", claims.client_id().unwrap_or_default())
}

#[tokio::test]
async fn counters_follow_the_requests_and_labels_stay_bounded() {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this process");
    let issuer = TestIssuer::start().await;
    // A second issuer, whose token cache is asked too: each request still counts one
    // lookup.
    let partner = TestIssuer::start().await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .issuer(TokenVerifier::builder(partner.url()).audience(partner.audience()))
        .public_path("/fhir/metadata")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/fhir/Patient/{id}", get(hello))
        .route("/fhir/metadata", get(|| async { "capabilities" }))
        .layer(auth)
        .merge(Router::new().route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let patient = format!("{base}/fhir/Patient/1");
    let get = |token: Option<&str>| {
        let request = http.get(&patient);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.unwrap().status() }
    };

    let client_id = "metrics-test-client-7f3a";
    let token = issuer.token().claim("client_id", client_id).sign();
    // The token cache notes a token the first time it verifies and stores it the second
    // time (src/token_cache.rs): verified, verified, then answered from the cache.
    for _ in 0..3 {
        assert_eq!(get(Some(&token)).await, StatusCode::OK);
    }
    // A token naming an unknown key makes the layer fetch the key set again; the issuer
    // serves the same set, so the cached token is still answered from the cache.
    let unknown_key = issuer.token().kid("no-such-key").sign();
    assert_eq!(get(Some(&unknown_key)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some(&token)).await, StatusCode::OK);
    assert_eq!(get(None).await, StatusCode::UNAUTHORIZED);
    let expired = issuer
        .token()
        .claim("client_id", client_id)
        .expires_in_secs(-3600)
        .sign();
    assert_eq!(get(Some(&expired)).await, StatusCode::UNAUTHORIZED);
    // Another token's signature on this token's header and payload: same key, bad signature.
    let other = issuer.token().claim("client_id", client_id).sign();
    let (signed, _) = token.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{signature}");
    assert_eq!(get(Some(&forged)).await, StatusCode::UNAUTHORIZED);
    let public = http
        .get(format!("{base}/fhir/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::OK);

    let scraped = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    let refused = |kind: ErrorKind| {
        format!(
            "smart_auth_requests_refused_total{{kind=\"{}\"}}",
            kind.metric_label()
        )
    };
    let expected = [
        (
            "smart_auth_requests_accepted_total{source=\"verified\"}".to_owned(),
            2,
        ),
        (
            "smart_auth_requests_accepted_total{source=\"cache\"}".to_owned(),
            2,
        ),
        (refused(ErrorKind::UnknownKey), 1),
        (refused(ErrorKind::MissingToken), 1),
        (refused(ErrorKind::Expired), 1),
        (refused(ErrorKind::InvalidSignature), 1),
        (
            "smart_auth_requests_unauthenticated_total{reason=\"public_path\"}".to_owned(),
            1,
        ),
        (
            "smart_auth_jwks_fetches_total{outcome=\"ok\"}".to_owned(),
            2,
        ),
        (
            "smart_auth_jwks_refreshes_total{trigger=\"unknown_kid\"}".to_owned(),
            1,
        ),
        // Lookups: the valid token twice before it was stored, the unknown-key, expired
        // and forged tokens once each; the request without a token looks nothing up.
        ("smart_auth_token_cache_misses_total".to_owned(), 5),
        ("smart_auth_token_cache_hits_total".to_owned(), 2),
        ("smart_auth_token_cache_entries".to_owned(), 1),
    ];
    let samples: Vec<(&str, &str)> = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.rsplit_once(' ').expect("a sample line"))
        .collect();
    for (series, value) in &expected {
        let found = samples.iter().find(|(name, _)| name == series);
        assert_eq!(
            found.map(|(_, v)| *v),
            Some(value.to_string().as_str()),
            "{series} in\n{text}"
        );
    }
    // Nothing else was counted: no fetch error, refresh, stale key or other refusal.
    assert_eq!(samples.len(), expected.len(), "{text}");
    // Every series is described (`# HELP`).
    for (series, _) in &expected {
        let name = series.split('{').next().unwrap();
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
    }

    // Labels are bounded: every value is one of the fixed set, never request data.
    let mut allowed: BTreeSet<&str> = ["cache", "verified", "public_path", "ok"].into();
    allowed.extend([
        "missing_token",
        "expired",
        "invalid_signature",
        "unknown_key",
    ]);
    allowed.insert("unknown_kid");
    for (series, _) in &samples {
        let Some((_, labels)) = series.split_once('{') else {
            continue;
        };
        for pair in labels.trim_end_matches('}').split(',') {
            let (_, value) = pair.split_once('=').unwrap();
            assert!(
                allowed.contains(value.trim_matches('"')),
                "{pair} in {series}"
            );
        }
    }
    for secret in [token.as_str(), client_id, signature, signed] {
        assert!(!text.contains(secret), "request data in the metrics");
    }
    for segment in token.split('.') {
        assert!(!text.contains(segment));
    }
    server.abort();
}
