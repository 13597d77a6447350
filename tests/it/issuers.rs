//! Several issuers behind one layer: each token is checked with the keys and settings of
//! the issuer it names, and only those.

use reqwest::StatusCode;
use smart_auth::testing::TestIssuer;
use smart_auth::{ManualClock, SigningAlgorithm, SmartAuthLayer, TokenVerifier};

use crate::support::{App, app_with_layer};

const BASE: &str = "https://fhir.example.test/r4";

/// Two issuers that publish the same `kid`s for different keys.
async fn two_issuers(clock: &ManualClock) -> (TestIssuer, TestIssuer) {
    let a = TestIssuer::builder()
        .clock(clock.clone())
        .key_tag("same")
        .start()
        .await;
    let b = TestIssuer::builder()
        .clock(clock.clone())
        .key_tag("same")
        .path("/tenant-b")
        .start()
        .await;
    for alg in [SigningAlgorithm::RS256, SigningAlgorithm::ES256] {
        assert_eq!(a.current_kid(alg), b.current_kid(alg), "the same kid");
    }
    (a, b)
}

/// A layer for `a` (its own builder) and `b` (a further issuer), the FHIR base said once.
async fn app_for_both(a: TestIssuer, b: &TestIssuer, clock: ManualClock) -> App {
    let layer = SmartAuthLayer::builder(a.url())
        .fhir_base(BASE)
        .clock(clock.clone())
        .issuer(TokenVerifier::builder(b.url()).clock(clock.clone()))
        .build()
        .expect("valid configuration");
    app_with_layer(a, clock, layer).await
}

#[tokio::test]
async fn each_token_is_verified_by_the_issuer_it_names() {
    let clock = ManualClock::new();
    let (a, b) = two_issuers(&clock).await;
    let b_url = b.url().to_owned();
    let app = app_for_both(a, &b, clock).await;

    for alg in [SigningAlgorithm::RS256, SigningAlgorithm::ES256] {
        let answer = app
            .get_with_token(&app.issuer.token().alg(alg).sign())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{alg:?}: {answer:?}");
        assert_eq!(answer.body["iss"], app.issuer.url(), "tenanted claims");
        let answer = app.get_with_token(&b.token().alg(alg).sign()).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg:?}: {answer:?}");
        assert_eq!(answer.body["iss"], b_url.as_str());
    }
    // Signed with A's key, naming B: the same kid selects B's key, which refuses it.
    for alg in [SigningAlgorithm::RS256, SigningAlgorithm::ES256] {
        let forged = app
            .issuer
            .token()
            .alg(alg)
            .claim("iss", b_url.as_str())
            .sign();
        app.assert_invalid_token(&forged, "the token's signature is not valid")
            .await;
        let forged = b.token().alg(alg).claim("iss", app.issuer.url()).sign();
        app.assert_invalid_token(&forged, "the token's signature is not valid")
            .await;
    }
}

#[tokio::test]
async fn an_unknown_issuer_is_refused_without_any_fetch() {
    let clock = ManualClock::new();
    let (a, b) = two_issuers(&clock).await;
    let app = app_for_both(a, &b, clock).await;

    let unknown = [
        "https://unknown.example",
        // Near misses of a configured issuer are other issuers.
        &format!("{}/", app.issuer.url()),
        &app.issuer.url().to_uppercase(),
        &format!("{} ", app.issuer.url()),
        "",
    ];
    for (n, iss) in unknown.iter().enumerate() {
        // A flood of distinct tokens naming unknown issuers.
        for i in 0..50 {
            let token = app
                .issuer
                .token()
                .claim("iss", *iss)
                .claim("jti", format!("{n}-{i}"))
                .sign();
            app.assert_invalid_token(&token, "the token's signing key is not known")
                .await;
        }
    }
    let no_iss = app.issuer.token().without("iss").sign();
    app.assert_invalid_token(&no_iss, "the token's signing key is not known")
        .await;
    for wrong_type in [
        serde_json::json!(7),
        serde_json::json!({ "iss": app.issuer.url() }),
        serde_json::json!([app.issuer.url()]),
    ] {
        let token = app.issuer.token().claim("iss", wrong_type).sign();
        app.assert_invalid_token(&token, "the token has a missing or invalid claim")
            .await;
    }
    let kid = app.issuer.current_kid(SigningAlgorithm::RS256);
    let null_iss = app.issuer.sign_texts(
        SigningAlgorithm::RS256,
        &format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#),
        &format!(r#"{{"iss":null,"aud":"{BASE}","exp":4102444800}}"#),
    );
    app.assert_invalid_token(&null_iss, "the token has a missing or invalid claim")
        .await;
    // Duplicate `iss` members: strict JSON refuses the payload before any choice.
    let twice = app.issuer.sign_texts(
        SigningAlgorithm::RS256,
        &format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#),
        &format!(
            r#"{{"iss":"https://unknown.example","iss":"{}","aud":"{BASE}","exp":4102444800}}"#,
            app.issuer.url()
        ),
    );
    app.assert_invalid_token(&twice, "the access token is malformed")
        .await;
    app.assert_invalid_token("e30.e3.c2ln", "the access token is malformed")
        .await;
    app.assert_invalid_token("not-a-jwt", "the access token is malformed")
        .await;

    for issuer in [&app.issuer, &b] {
        assert_eq!(issuer.smart_configuration_fetches(), 0);
        assert_eq!(issuer.openid_configuration_fetches(), 0);
        assert_eq!(issuer.jwks_fetches(), 0);
    }
    let cached: u64 = app
        .layer
        .issuers()
        .iter()
        .map(TokenVerifier::cached_tokens)
        .sum();
    assert_eq!(cached, 0, "refused tokens are never cached");
}

#[tokio::test]
async fn a_cold_start_of_both_fetches_each_issuer_once() {
    let clock = ManualClock::new();
    let (a, b) = two_issuers(&clock).await;
    let app = app_for_both(a, &b, clock).await;

    let tokens: Vec<String> = (0..40)
        .map(|i| {
            let issuer = if i % 2 == 0 { &app.issuer } else { &b };
            issuer.token().claim("jti", format!("t{i}")).sign()
        })
        .collect();
    let answers =
        futures_util::future::join_all(tokens.iter().map(|token| app.get_with_token(token))).await;
    for answer in answers {
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    for issuer in [&app.issuer, &b] {
        assert_eq!(issuer.smart_configuration_fetches(), 1);
        assert_eq!(issuer.jwks_fetches(), 1);
    }
}

#[tokio::test]
async fn each_issuer_keeps_its_own_settings() {
    let clock = ManualClock::new();
    let (a, b) = two_issuers(&clock).await;
    let b_url = b.url().to_owned();
    // B: ES256 only and its own audience; A: the defaults, the FHIR base as audience.
    let layer = SmartAuthLayer::builder(a.url())
        .fhir_base(BASE)
        .clock(clock.clone())
        .issuer(
            TokenVerifier::builder(b.url())
                .clock(clock.clone())
                .audience("https://partner.example/fhir")
                .algorithms([SigningAlgorithm::ES256]),
        )
        .build()
        .unwrap();
    let app = app_with_layer(a, clock, layer).await;

    let rs256 = app.issuer.token().alg(SigningAlgorithm::RS256).sign();
    assert_eq!(app.get_with_token(&rs256).await.status, StatusCode::OK);
    let rs256 = b
        .token()
        .alg(SigningAlgorithm::RS256)
        .audience("https://partner.example/fhir")
        .sign();
    app.assert_invalid_token(&rs256, "the token's signing algorithm is not accepted")
        .await;
    let es256 = b
        .token()
        .alg(SigningAlgorithm::ES256)
        .audience("https://partner.example/fhir")
        .sign();
    let answer = app.get_with_token(&es256).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["iss"], b_url.as_str());
    // B's token for the FHIR base: not B's audience.
    let es256 = b.token().alg(SigningAlgorithm::ES256).sign();
    app.assert_invalid_token(&es256, "the token is for another audience")
        .await;
    // A's token for B's audience: not A's.
    let other = app
        .issuer
        .token()
        .audience("https://partner.example/fhir")
        .sign();
    app.assert_invalid_token(&other, "the token is for another audience")
        .await;
}

#[tokio::test]
async fn a_verifier_built_before_shares_its_caches_with_the_layer() {
    let clock = ManualClock::new();
    let (a, b) = two_issuers(&clock).await;
    let shared = TokenVerifier::builder(b.url())
        .audience(BASE)
        .clock(clock.clone())
        .build()
        .unwrap();
    let layer = SmartAuthLayer::builder(a.url())
        .fhir_base(BASE)
        .clock(clock.clone())
        .verifier(shared.clone())
        .build()
        .unwrap();
    let app = app_with_layer(a, clock, layer).await;

    let token = b.token().sign();
    // Verified once outside tower, once through the layer: stored the second time.
    shared.verify(&token).await.unwrap();
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    assert_eq!(shared.cached_tokens(), 1);
    assert_eq!(b.jwks_fetches(), 1, "one key cache for both");
    // The registry verifies outside tower the same way the layer does.
    let claims = app.layer.issuers().verify(&token).await.unwrap();
    assert_eq!(claims.issuer(), b.url());
    let error = app
        .layer
        .issuers()
        .verify(&b.token().claim("iss", "https://unknown.example").sign())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), smart_auth::ErrorKind::UnknownKey);
}

/// A verifier built without an audience keeps its settings inside a layer, so it cannot
/// take the layer's FHIR base as its audience: with a base, such a verifier is a
/// configuration error (it would accept `at+jwt` tokens for any other API of its issuer),
/// as the first issuer or a further one. Without a base, or with an audience or the
/// explicit `insecure_accept_any_audience`, it is accepted.
#[tokio::test]
async fn a_built_verifier_without_an_audience_needs_one_beside_a_fhir_base() {
    let clock = ManualClock::new();
    let (a, b) = two_issuers(&clock).await;
    let bare = || TokenVerifier::builder(b.url()).build().unwrap();
    assert_eq!(
        SmartAuthLayer::from_verifier(bare())
            .fhir_base(BASE)
            .build()
            .unwrap_err(),
        smart_auth::ConfigError::VerifierWithoutAudience
    );
    assert_eq!(
        SmartAuthLayer::builder(a.url())
            .fhir_base(BASE)
            .verifier(bare())
            .build()
            .unwrap_err(),
        smart_auth::ConfigError::VerifierWithoutAudience
    );
    assert!(SmartAuthLayer::from_verifier(bare()).build().is_ok());
    let explicit = TokenVerifier::builder(b.url())
        .insecure_accept_any_audience()
        .build()
        .unwrap();
    assert!(
        SmartAuthLayer::from_verifier(explicit)
            .fhir_base(BASE)
            .build()
            .is_ok()
    );
    let with_audience = TokenVerifier::builder(b.url())
        .audience(BASE)
        .build()
        .unwrap();
    assert!(
        SmartAuthLayer::from_verifier(with_audience)
            .fhir_base(BASE)
            .build()
            .is_ok()
    );
}
