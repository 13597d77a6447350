//! `SmartClaims` and `Option<SmartClaims>` in handlers.

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::json;
use smart_auth::{ManualClock, SmartAuthLayer, SmartClaims};

use crate::support::{app, issuer, serve};

#[tokio::test]
async fn handlers_receive_every_claim() {
    let app = app(|b| b).await;
    let token = app
        .issuer
        .token()
        .claim("sub", "service-account")
        .claim("client_id", "backend-1")
        .scope("system/Patient.rs  system/Observation.rs")
        .claim("patient", "p-7")
        .claim("encounter", "e-9")
        .claim("fhirUser", "Practitioner/3")
        .claim("tenant", "t-1")
        .claim("fhirContext", json!(["Observation/5", {"canonical": "http://q.example/Questionnaire|2", "type": "Questionnaire", "role": "https://role.example"}]))
        .claim("custom", json!({"nested": [1, 2]}))
        .sign();
    let answer = app.get_with_token(&token).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.body;
    assert_eq!(body["iss"], app.issuer.url());
    assert_eq!(body["sub"], "service-account");
    assert_eq!(body["client_id"], "backend-1");
    assert_eq!(body["aud"], json!([app.issuer.audience()]));
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
    assert!(body["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        body["scopes"],
        json!(["system/Patient.rs", "system/Observation.rs"])
    );
    assert_eq!(
        (body["patient"].clone(), body["encounter"].clone()),
        (json!("p-7"), json!("e-9"))
    );
    assert_eq!(
        (body["fhirUser"].clone(), body["tenant"].clone()),
        (json!("Practitioner/3"), json!("t-1"))
    );
    assert_eq!(body["fhirContext"][0]["reference"], "Observation/5");
    assert_eq!(
        body["fhirContext"][1]["canonical"],
        "http://q.example/Questionnaire|2"
    );
    assert_eq!(body["fhirContext"][1]["type"], "Questionnaire");
    assert_eq!(body["fhirContext"][1]["role"], "https://role.example");
    assert_eq!(body["custom"], json!({"nested": [1, 2]}));
    // The same answer when the token is stored (second use) and served from the token
    // cache (third use): claims beyond the interpreted ones are read again from the token.
    for _ in 0..2 {
        let again = app.get_with_token(&token).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body, body);
    }
}

#[tokio::test]
async fn configurable_claim_names() {
    let app = app(|b| b.scope_claims(["scp"]).client_id_claims(["appid", "azp"])).await;
    let token = app
        .issuer
        .token()
        .without("scope")
        .without("client_id")
        .claim("scp", json!(["a", "b"]))
        .claim("azp", "from-azp")
        .sign();
    let body = app.get_with_token(&token).await.body;
    assert_eq!(body["scopes"], json!(["a", "b"]));
    assert_eq!(body["client_id"], "from-azp");
}

#[tokio::test]
async fn optional_mode() {
    let app = app(|b| b.optional()).await;
    let optional = format!("{}/fhir/optional", app.url);
    // No credentials: the handler runs with None.
    let anonymous = app.send(app.http.get(&optional)).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(
        anonymous.body,
        json!({"client_id": null, "anonymous": true})
    );
    // A valid token: Some(claims).
    let token = app.issuer.token().sign();
    let known = app.send(app.http.get(&optional).bearer_auth(&token)).await;
    assert_eq!(
        known.body,
        json!({"client_id": "test-client", "anonymous": false})
    );
    // An invalid token is still refused.
    let expired = app.issuer.token().expires_in_secs(-3600).sign();
    let refused = app
        .send(app.http.get(&optional).bearer_auth(&expired))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // A required extractor on an anonymous request answers like the layer would.
    let required = app.send(app.http.get(app.patient_url())).await;
    assert_eq!(required.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        required.challenge.as_deref(),
        Some("Bearer realm=\"https://fhir.example.test/r4\"")
    );
}

/// In optional mode a handler's answer depends on whether the request carried a token,
/// so every answer it gives says `Vary: authorization` (merged with the handler's own
/// `Vary`, never twice, not beside `*`); required mode (for answers no shared cache may
/// store) and public paths add nothing.
#[tokio::test]
async fn optional_mode_answers_vary_by_authorization() {
    async fn who(claims: Option<SmartClaims>) -> &'static str {
        if claims.is_some() {
            "known"
        } else {
            "anonymous"
        }
    }
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let routes = |layer: SmartAuthLayer| {
        Router::new()
            .route("/fhir/plain", get(who))
            .route(
                "/fhir/accept",
                get(|c| async { ([("vary", "Accept")], who(c).await) }),
            )
            .route(
                "/fhir/already",
                get(|c| async { ([("vary", "Accept, AUTHORIZATION")], who(c).await) }),
            )
            .route(
                "/fhir/star",
                get(|c| async { ([("vary", "*")], who(c).await) }),
            )
            .route("/fhir/metadata", get(|| async { "capabilities" }))
            .layer(layer)
    };
    let layer = |optional: bool| {
        let builder = SmartAuthLayer::builder(issuer.url())
            .fhir_base("https://fhir.example.test/fhir")
            .audience(issuer.audience())
            .clock(clock.clone());
        let builder = if optional {
            builder.optional()
        } else {
            builder
        };
        builder.build().unwrap()
    };
    let (optional_url, _optional) = serve(routes(layer(true))).await;
    let (required_url, _required) = serve(routes(layer(false))).await;
    let http = crate::support::loopback_client();
    let token = issuer.token().sign();
    let vary = |response: &reqwest::Response| -> Vec<String> {
        response
            .headers()
            .get_all("vary")
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    };
    let cases: [(&str, &[&str]); 4] = [
        ("/fhir/plain", &["authorization"]),
        ("/fhir/accept", &["Accept", "authorization"]),
        ("/fhir/already", &["Accept, AUTHORIZATION"]),
        ("/fhir/star", &["*"]),
    ];
    for (path, expected) in cases {
        let url = format!("{optional_url}{path}");
        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::OK, "{path}");
        assert_eq!(vary(&anonymous), expected, "{path} anonymous");
        assert_eq!(anonymous.text().await.unwrap(), "anonymous");
        for _ in 0..2 {
            // Verified, then from the token cache.
            let known = http.get(&url).bearer_auth(&token).send().await.unwrap();
            assert_eq!(known.status(), StatusCode::OK, "{path}");
            assert_eq!(vary(&known), expected, "{path} with a token");
            assert_eq!(known.text().await.unwrap(), "known");
        }
        let required = http
            .get(format!("{required_url}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(required.status(), StatusCode::OK, "{path}");
        let own: Vec<String> = expected
            .iter()
            .filter(|value| **value != "authorization")
            .map(|value| (*value).to_owned())
            .collect();
        assert_eq!(vary(&required), own, "{path} required mode");
    }
    // The public capability statement is the same for everyone.
    for url in [&optional_url, &required_url] {
        let public = http
            .get(format!("{url}/fhir/metadata"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(public.status(), StatusCode::OK);
        assert!(vary(&public).is_empty(), "{url}");
    }
}

/// A required-mode layer for `issuer`'s tokens, with the FHIR base
/// `https://fhir.example.test/fhir` (its `/fhir/metadata` public).
fn required_layer(issuer: &smart_auth::testing::TestIssuer, clock: &ManualClock) -> SmartAuthLayer {
    SmartAuthLayer::builder(issuer.url())
        .fhir_base("https://fhir.example.test/fhir")
        .audience(issuer.audience())
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Required mode: a verified answer that a shared cache may store although the request had
/// `Authorization` (RFC 9111 section 3.5: `public`, `s-maxage`, `must-revalidate`) says
/// `Vary: authorization`, or the cache would hand it to anonymous requests for the same URL,
/// which never reach the layer. Other answers, and the public capability statement, get
/// nothing added.
#[tokio::test]
async fn shared_cacheable_answers_vary_by_authorization_in_required_mode() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = required_layer(&issuer, &clock);
    let router = Router::new()
        .route(
            "/fhir/Patient/{directives}",
            get(
                |axum::extract::Path(directives): axum::extract::Path<String>| async move {
                    let mut headers = http::HeaderMap::new();
                    for (i, value) in directives.split('|').enumerate() {
                        let name = if i == 0 { "cache-control" } else { "vary" };
                        if value != "-" {
                            headers.append(name, value.parse().unwrap());
                        }
                    }
                    (headers, "data")
                },
            ),
        )
        .route(
            "/fhir/metadata",
            get(|| async { ([("cache-control", "public, max-age=60")], "capabilities") }),
        )
        .layer(layer);
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let token = issuer.token().sign();
    let cases: [(&str, &[&str]); 10] = [
        ("public, max-age=300", &["authorization"]),
        ("max-age=300, PUBLIC", &["authorization"]),
        ("s-maxage=60", &["authorization"]),
        ("S-MaxAge = 60", &["authorization"]),
        ("no-cache, must-revalidate", &["authorization"]),
        ("public|Accept", &["Accept", "authorization"]),
        ("public|Authorization", &["Authorization"]),
        ("private, max-age=300", &[]),
        ("max-age=300", &[]),
        ("-", &[]),
    ];
    for (directives, expected) in cases {
        for _ in 0..2 {
            // Verified, then from the token cache.
            let response = http
                .get(format!("{url}/fhir/Patient/{directives}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{directives}");
            let vary: Vec<&str> = response
                .headers()
                .get_all("vary")
                .iter()
                .map(|value| value.to_str().unwrap())
                .collect();
            assert_eq!(vary, expected, "{directives}");
        }
    }
    let public = http
        .get(format!("{url}/fhir/metadata"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::OK);
    assert!(public.headers().get("vary").is_none());
}

/// The fields CDNs read instead of `Cache-Control` (RFC 9213 `CDN-Cache-Control` and its
/// vendor forms, `Surrogate-Control`) count as it does, and a byte beyond ASCII elsewhere
/// in a value hides no directive.
#[tokio::test]
async fn cdn_cache_fields_and_odd_bytes_vary_by_authorization_too() {
    /// Response fields (name, value bytes), and whether the answer varies by them.
    type Case = (&'static [(&'static str, &'static [u8])], bool);
    const CASES: [Case; 15] = [
        (&[("cdn-cache-control", b"public, max-age=600")], true),
        (&[("CDN-Cache-Control", b"s-maxage=600")], true),
        (
            &[("cloudflare-cdn-cache-control", b"max-age=60, public")],
            true,
        ),
        (&[("surrogate-control", b"max-age=3600")], true),
        (&[("surrogate-control", b"no-store")], false),
        (&[("cdn-cache-control", b"private")], false),
        (
            &[("cache-control", b"public, max-age=60, x=\"\xe9\"")],
            true,
        ),
        (&[("cache-control", b"\xe9, s-maxage=1")], true),
        (
            &[
                ("cache-control", b"private"),
                ("cdn-cache-control", b"public"),
            ],
            true,
        ),
        (&[("akamai-cache-control", b"public, max-age=600")], true),
        (&[("edge-control", b"!no-store, max-age=1h")], true),
        (&[("Edge-Control", b"cache-maxage=60")], true),
        (&[("edge-control", b"no-store")], false),
        (&[("x-cache", b"public")], false),
        (&[("cache-control", b"max-age=60, \xe9public")], false),
    ];
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = required_layer(&issuer, &clock);
    let router = Router::new()
        .route(
            "/case/{index}",
            get(
                |axum::extract::Path(index): axum::extract::Path<usize>| async move {
                    let mut headers = http::HeaderMap::new();
                    for (name, value) in CASES[index].0 {
                        headers.append(
                            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                            http::HeaderValue::from_bytes(value).unwrap(),
                        );
                    }
                    (headers, "data")
                },
            ),
        )
        .layer(layer);
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let token = issuer.token().sign();
    for (index, (fields, varies)) in CASES.iter().enumerate() {
        let response = http
            .get(format!("{url}/case/{index}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{fields:?}");
        let vary: Vec<&[u8]> = response
            .headers()
            .get_all("vary")
            .iter()
            .map(http::HeaderValue::as_bytes)
            .collect();
        let expected: &[&[u8]] = if *varies { &[b"authorization"] } else { &[] };
        assert_eq!(vary, expected, "{fields:?}");
    }
}

#[tokio::test]
async fn extractor_without_layer_is_a_500_naming_the_layer() {
    let app = app(|b| b).await;
    let token = app.issuer.token().sign();
    let answer = app
        .send(
            app.http
                .get(format!("{}/unprotected", app.url))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.challenge, None);
    // The setup is the operator's business (the error log names it), not the client's.
    assert_eq!(
        answer.body["issue"][0]["details"]["text"],
        "internal server error"
    );
}

#[tokio::test]
async fn configurable_patient_and_fhir_user_claim_names() {
    let app = app(|b| {
        b.patient_claims(["launch_response_patient", "patient"])
            .fhir_user_claims(["extension_fhirUser"])
    })
    .await;
    let token = app
        .issuer
        .token()
        .scope("patient/Observation.rs")
        .claim("launch_response_patient", "p-3")
        .claim("patient", "p-4")
        .claim("extension_fhirUser", "Practitioner/8")
        .claim("fhirUser", "Practitioner/9")
        .sign();
    let answer = app.get_with_token(&token).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["patient"], "p-3");
    assert_eq!(answer.body["fhirUser"], "Practitioner/8");

    // The standard `fhirUser` is no longer read; `patient` still is, second in the list.
    let fallback = app
        .issuer
        .token()
        .claim("patient", "p-4")
        .claim("fhirUser", "Practitioner/9")
        .sign();
    let answer = app.get_with_token(&fallback).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        (
            answer.body["patient"].clone(),
            answer.body["fhirUser"].clone()
        ),
        (json!("p-4"), json!(null))
    );

    // The configured claims are type-checked like the standard ones.
    for (name, value) in [
        ("extension_fhirUser", json!(["Practitioner/8"])),
        ("launch_response_patient", json!(3)),
    ] {
        let token = app.issuer.token().claim(name, value).sign();
        app.assert_invalid_token(&token, "the token has a missing or invalid claim")
            .await;
    }
}
