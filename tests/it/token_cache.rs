//! The verified-token cache: a cached answer is always the answer a fresh verification
//! would give. Time moves only through the shared `ManualClock`.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use smart_auth::{
    ErrorKind, ManualClock, RefreshPolicy, SigningAlgorithm, SmartAuthLayer, TokenCachePolicy,
    TokenVerifier,
};

use crate::support::{App, app, echo_claims, issuer, serve};

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
}

fn verifier(app: &App) -> &TokenVerifier {
    app.layer.issuers().iter().next().expect("one issuer")
}

/// The same token with the first character of one segment replaced by another base64url
/// character.
fn tamper(token: &str, segment: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let first = if parts[segment].starts_with('A') {
        "B"
    } else {
        "A"
    };
    parts[segment].replace_range(..1, first);
    parts.join(".")
}

#[tokio::test]
async fn cached_token_past_its_exp_is_refused_with_the_same_leeway() {
    let app = app(|b| b).await;
    let uncached = TokenVerifier::builder(app.issuer.url())
        .audience(app.issuer.audience())
        .clock(app.clock.clone())
        .no_token_cache()
        .build()
        .unwrap();
    let token = app.issuer.token().expires_in_secs(120).sign();
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    assert_eq!(verifier(&app).cached_tokens(), 0, "noted the first time");
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    assert_eq!(verifier(&app).cached_tokens(), 1, "stored the second time");
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);

    // 179 s later: past `exp` but inside the 60 s leeway, with or without the cache.
    app.clock.advance(Duration::from_secs(179));
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    assert!(uncached.verify(&token).await.is_ok());
    assert_eq!(verifier(&app).cached_tokens(), 1);

    // One second more: refused, exactly as a fresh verification refuses it.
    app.clock.advance(Duration::from_secs(1));
    app.assert_invalid_token(&token, "the access token has expired")
        .await;
    assert_eq!(
        uncached.verify(&token).await.unwrap_err().kind(),
        ErrorKind::Expired
    );
    assert_eq!(
        verifier(&app).cached_tokens(),
        0,
        "the expired entry is gone"
    );
    let again = app.get_with_token(&token).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert_eq!(again.issue_code(), "expired");
}

#[tokio::test]
async fn tampered_variants_of_a_cached_token_are_never_served_from_it() {
    let app = app(|b| b).await;
    let token = app.issuer.token().sign();
    for _ in 0..2 {
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    assert_eq!(verifier(&app).cached_tokens(), 1);

    let mut truncated = token.clone();
    truncated.pop();
    let other_payload = app
        .issuer
        .token()
        .audience("https://other.example/fhir")
        .sign();
    let spliced = {
        let ours: Vec<&str> = token.split('.').collect();
        let theirs: Vec<&str> = other_payload.split('.').collect();
        format!("{}.{}.{}", ours[0], theirs[1], ours[2])
    };
    let variants = [
        tamper(&token, 2),
        truncated,
        format!("{token}A"),
        spliced,
        tamper(&token, 0),
        tamper(&token, 1),
    ];
    for variant in &variants {
        assert_ne!(variant, &token);
        // Twice: a refusal is never remembered as an acceptance.
        for _ in 0..2 {
            let answer = app.get_with_token(variant).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
            assert!(
                answer
                    .challenge
                    .as_deref()
                    .is_some_and(|c| c.contains("error=\"invalid_token\"")),
                "{answer:?}"
            );
        }
    }
    assert_eq!(verifier(&app).cached_tokens(), 1, "only the valid token");
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn invalid_tokens_are_not_cached() {
    let app = app(|b| b).await;
    let wrong_audience = app
        .issuer
        .token()
        .audience("https://other.example/fhir")
        .sign();
    let not_yet_valid = {
        let now = app.issuer.token().sign();
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(now.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        let iat = payload["iat"].as_i64().unwrap();
        app.issuer.token().claim("nbf", iat + 120).sign()
    };
    for _ in 0..3 {
        app.assert_invalid_token(&wrong_audience, "the token is for another audience")
            .await;
        app.assert_invalid_token(&not_yet_valid, "the access token is not yet valid")
            .await;
    }
    assert_eq!(verifier(&app).cached_tokens(), 0);
    // Once its `nbf` is reached the token is valid on its own merits, and only then is it
    // noted (first valid use) and stored (second).
    app.clock.advance(Duration::from_secs(61));
    for _ in 0..2 {
        assert_eq!(
            app.get_with_token(&not_yet_valid).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(verifier(&app).cached_tokens(), 1);
}

#[tokio::test]
async fn cached_tokens_are_verified_again_after_the_key_set_changes() {
    let app = app(|b| b).await;
    let old = app
        .issuer
        .token()
        .lifetime(Duration::from_secs(3600))
        .sign();
    assert_eq!(app.get_with_token(&old).await.status, StatusCode::OK);
    assert_eq!(app.get_with_token(&old).await.status, StatusCode::OK);
    // The issuer drops every key; a token with a new kid makes the layer refetch the set.
    app.issuer.rotate_keys();
    let new = app.issuer.token().sign();
    for _ in 0..2 {
        assert_eq!(app.get_with_token(&new).await.status, StatusCode::OK);
    }
    assert_eq!(app.issuer.jwks_fetches(), 2);
    // The old token's entry belongs to the replaced set: it is verified afresh and its key
    // is gone (inside the unknown-kid cooldown, so refused without another fetch).
    app.assert_invalid_token(&old, "the token's signing key is not known")
        .await;
    app.assert_invalid_token(&old, "the token's signing key is not known")
        .await;
    assert_eq!(app.issuer.jwks_fetches(), 2);
    assert_eq!(verifier(&app).cached_tokens(), 1, "only the new token");
}

// The keys live six hours here, so the real time a loaded runner takes between steps
// cannot make them due early: only `pass_time` does.
#[tokio::test]
async fn no_cached_answer_while_the_key_set_is_due_for_a_refresh() {
    const KEY_TTL: Duration = Duration::from_secs(6 * 3600);
    // Entries may live a day here, longer than the keys' 6 h TTL.
    let app = app(|b| {
        b.token_cache(TokenCachePolicy::default().max_age(Duration::from_secs(24 * 3600)))
            .refresh_policy(
                RefreshPolicy::default()
                    .default_ttl(KEY_TTL)
                    .ttl_bounds(Duration::from_secs(60), KEY_TTL),
            )
    })
    .await;
    let token = app
        .issuer
        .token()
        .lifetime(Duration::from_secs(24 * 3600))
        .sign();
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    app.issuer
        .set_jwks_behaviour(smart_auth::testing::JwksBehaviour::Status(500));
    crate::wall_clock::pass_time(&app.clock, Duration::from_secs(5 * 3600)).await;
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 1, "no refresh due yet");
    // Past the key TTL, with the issuer down: the entry is not used, the request verifies
    // afresh on the stale keys and so starts the refresh, exactly as without the cache.
    crate::wall_clock::pass_time(&app.clock, Duration::from_secs(3600 + 10)).await;
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.issuer.jwks_fetches() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the refresh did not start");
    assert_eq!(app.issuer.jwks_fetches(), 2, "the refresh started");
}

/// Two layers in one app, on one issuer: `/a` accepts audience A with every algorithm,
/// `/b` accepts audience B and only ES384.
#[tokio::test]
async fn each_layer_has_its_own_cache() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = |audience: &str, algorithms: &[SigningAlgorithm]| {
        SmartAuthLayer::builder(issuer.url())
            .audience(audience)
            .algorithms(algorithms.iter().copied())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let a = layer("https://a.example/fhir", SigningAlgorithm::DEFAULT);
    let b = layer("https://b.example/fhir", &[SigningAlgorithm::ES384]);
    let router = Router::new()
        .nest(
            "/a",
            Router::new()
                .route("/fhir/Patient/{id}", get(echo_claims))
                .layer(a.clone()),
        )
        .nest(
            "/b",
            Router::new()
                .route("/fhir/Patient/{id}", get(echo_claims))
                .layer(b.clone()),
        );
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let get = |path: &'static str, token: String| {
        let request = http
            .get(format!("{url}{path}/fhir/Patient/1"))
            .header("authorization", format!("Bearer {token}"));
        async move {
            let response = request.send().await.unwrap();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            Reply {
                status: response.status(),
                challenge,
            }
        }
    };
    let for_a = issuer
        .token()
        .audience("https://a.example/fhir")
        .alg(SigningAlgorithm::ES384)
        .sign();
    let for_a_rs256 = issuer.token().audience("https://a.example/fhir").sign();
    for _ in 0..2 {
        assert_eq!(get("/a", for_a.clone()).await.status, StatusCode::OK);
        assert_eq!(get("/a", for_a_rs256.clone()).await.status, StatusCode::OK);
    }
    for _ in 0..2 {
        let answer = get("/b", for_a.clone()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            answer
                .challenge
                .unwrap()
                .ends_with("error_description=\"the token is for another audience\"")
        );
        let answer = get("/b", for_a_rs256.clone()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            answer
                .challenge
                .unwrap()
                .ends_with("error_description=\"the token's signing algorithm is not accepted\"")
        );
    }
    let verifier = |layer: &SmartAuthLayer| layer.issuers().iter().next().unwrap().cached_tokens();
    assert_eq!((verifier(&a), verifier(&b)), (2, 0));
    let for_b = issuer
        .token()
        .audience("https://b.example/fhir")
        .alg(SigningAlgorithm::ES384)
        .sign();
    for _ in 0..2 {
        assert_eq!(get("/b", for_b.clone()).await.status, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(
            get("/a", for_b.clone()).await.status,
            StatusCode::UNAUTHORIZED,
            "B's cached token is not served by A"
        );
    }
    assert_eq!((verifier(&a), verifier(&b)), (2, 1));
}

#[tokio::test]
async fn capacity_bounds_the_cache_over_http() {
    let app = app(|b| b.token_cache(TokenCachePolicy::default().max_entries(16))).await;
    for _ in 0..200 {
        let token = app.issuer.token().alg(SigningAlgorithm::EdDSA).sign();
        for _ in 0..2 {
            assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
        }
    }
    let held = verifier(&app).cached_tokens();
    assert!((1..=16).contains(&held), "{held} entries");
}

#[tokio::test]
async fn tokens_used_once_are_not_stored() {
    let app = app(|b| b).await;
    for _ in 0..300 {
        let token = app.issuer.token().alg(SigningAlgorithm::EdDSA).sign();
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    assert_eq!(verifier(&app).cached_tokens(), 0);
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let app = app(|b| b.no_token_cache()).await;
    let token = app.issuer.token().sign();
    for _ in 0..3 {
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    assert_eq!(verifier(&app).cached_tokens(), 0);
    app.clock.advance(Duration::from_secs(361));
    app.assert_invalid_token(&token, "the access token has expired")
        .await;
}
