//! Token validation: every accepted algorithm, and every way a token can be wrong.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::testing::{TestIssuer, sign_hs256};
use smart_auth::{SigningAlgorithm, TokenTypePolicy};

use crate::support::{App, app};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn decode(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

#[tokio::test]
async fn every_default_algorithm_is_accepted() {
    let app = app(|b| b).await;
    for alg in SigningAlgorithm::DEFAULT {
        let token = app.issuer.token().alg(*alg).sign();
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg}: {answer:?}");
        assert_eq!(answer.body["client_id"], "test-client");
    }
    assert_eq!(app.issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn algorithm_allow_list_is_enforced() {
    let app = app(|b| b.algorithms([SigningAlgorithm::ES384])).await;
    assert_eq!(
        app.get_with_token(&app.issuer.token().alg(SigningAlgorithm::ES384).sign())
            .await
            .status,
        StatusCode::OK
    );
    let token = app.issuer.token().alg(SigningAlgorithm::RS256).sign();
    app.assert_invalid_token(&token, "the token's signing algorithm is not accepted")
        .await;
}

#[tokio::test]
async fn claim_checks() {
    let app = app(|b| b).await;
    let issuer = &app.issuer;
    let rows: Vec<(String, &str)> = vec![
        (
            issuer.token().claim("iss", "https://evil.example").sign(),
            "the token is from another issuer",
        ),
        (
            issuer
                .token()
                .claim("iss", format!("{}/", issuer.url()))
                .sign(),
            "the token is from another issuer",
        ),
        (
            issuer.token().without("iss").sign(),
            "the token is from another issuer",
        ),
        (
            issuer.token().audience("https://other.example/fhir").sign(),
            "the token is for another audience",
        ),
        (
            issuer
                .token()
                .claim("aud", json!(["https://a.example", "https://b.example"]))
                .sign(),
            "the token is for another audience",
        ),
        (
            issuer.token().without("aud").sign(),
            "the token is for another audience",
        ),
        (
            issuer.token().expires_in_secs(-61).sign(),
            "the access token has expired",
        ),
        (
            issuer.token().claim("nbf", now(&app) + 120).sign(),
            "the access token is not yet valid",
        ),
        (
            issuer.token().claim("iat", now(&app) + 120).sign(),
            "the access token is not yet valid",
        ),
        (
            issuer.token().without("exp").sign(),
            "the token has a missing or invalid claim",
        ),
        (
            issuer
                .token()
                .claim("exp", (now(&app) + 300).to_string())
                .sign(),
            "the token has a missing or invalid claim",
        ),
        (
            issuer.token().claim("nbf", "0").sign(),
            "the token has a missing or invalid claim",
        ),
        (
            issuer.token().claim("iss", 42).sign(),
            "the token has a missing or invalid claim",
        ),
        (
            issuer.token().claim("aud", 42).sign(),
            "the token has a missing or invalid claim",
        ),
        (
            issuer
                .token()
                .claim("aud", json!([issuer.audience(), 1]))
                .sign(),
            "the token has a missing or invalid claim",
        ),
        (
            issuer.token().claim("scope", json!({"a": 1})).sign(),
            "the token has a missing or invalid claim",
        ),
        (
            issuer.token().claim("patient", 12).sign(),
            "the token has a missing or invalid claim",
        ),
    ];
    for (token, description) in rows {
        app.assert_invalid_token(&token, description).await;
    }
    let expired = app
        .get_with_token(&issuer.token().expires_in_secs(-61).sign())
        .await;
    assert_eq!(expired.issue_code(), "expired");
}

fn now(app: &App) -> i64 {
    use smart_auth::Clock as _;
    app.clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn leeway_applies_to_exp_and_nbf() {
    let app = app(|b| b.leeway(std::time::Duration::from_secs(60))).await;
    let issuer = &app.issuer;
    assert_eq!(
        app.get_with_token(&issuer.token().expires_in_secs(-59).sign())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get_with_token(&issuer.token().claim("nbf", now(&app) + 59).sign())
            .await
            .status,
        StatusCode::OK
    );
    // `nbf` may be up to the leeway ahead, and not a second more.
    assert_eq!(
        app.get_with_token(&issuer.token().claim("nbf", now(&app) + 60).sign())
            .await
            .status,
        StatusCode::OK
    );
    app.assert_invalid_token(
        &issuer.token().claim("nbf", now(&app) + 61).sign(),
        "the access token is not yet valid",
    )
    .await;
    // `exp` a whole leeway ago: expired.
    app.assert_invalid_token(
        &issuer.token().expires_in_secs(-60).sign(),
        "the access token has expired",
    )
    .await;
}

/// A fractional NumericDate (RFC 7519 section 2) never widens the token's window: with no
/// leeway, a `nbf` half a second ahead is not yet valid, an `exp` half a second ago expired.
#[tokio::test]
async fn fractional_times_without_leeway() {
    let app = app(|b| b.leeway(std::time::Duration::ZERO)).await;
    let issuer = &app.issuer;
    let now = now(&app) as f64;
    for (claim, at, expected) in [
        ("nbf", now + 0.5, StatusCode::UNAUTHORIZED),
        ("nbf", now + 0.001, StatusCode::UNAUTHORIZED),
        ("nbf", now - 0.5, StatusCode::OK),
        ("iat", now + 0.5, StatusCode::UNAUTHORIZED),
        ("iat", now - 0.5, StatusCode::OK),
        ("exp", now - 0.5, StatusCode::UNAUTHORIZED),
        ("exp", now + 1.5, StatusCode::OK),
    ] {
        let token = issuer.token().claim(claim, at).sign();
        assert_eq!(
            app.get_with_token(&token).await.status,
            expected,
            "{claim} {at}"
        );
    }
}

#[tokio::test]
async fn multiple_audiences_any_match() {
    let app = app(|b| b.audience("https://second.example/fhir")).await;
    let token = app
        .issuer
        .token()
        .claim(
            "aud",
            json!(["https://x.example", "https://second.example/fhir"]),
        )
        .sign();
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn signature_attacks_are_refused() {
    let app = app(|b| b).await;
    let issuer = &app.issuer;
    let good = issuer.token().sign();
    let [header, payload, signature]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();

    // Payload changed after signing.
    let mut claims = decode(payload);
    claims["scope"] = json!("system/*.cruds");
    let tampered = format!("{header}.{}.{signature}", b64(&claims));
    app.assert_invalid_token(&tampered, "the token's signature is not valid")
        .await;

    // The same signature with non-zero trailing bits in its last character (another
    // string for the same bytes): not canonical base64url, so no second spelling of a token.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for alg in [SigningAlgorithm::RS256, SigningAlgorithm::ES256] {
        let token = issuer.token().alg(alg).sign();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let last = signature.as_bytes()[signature.len() - 1];
        let value = ALPHABET.iter().position(|c| *c == last).unwrap();
        // 256 and 64 octets leave 4 unused bits in the last character.
        assert_eq!(value & 0b1111, 0, "{alg}: canonical to start with");
        let respelled = format!(
            "{signed}.{}{}",
            &signature[..signature.len() - 1],
            ALPHABET[value | 1] as char
        );
        app.assert_invalid_token(&respelled, "the access token is malformed")
            .await;
    }

    // Signature of another token.
    let other = issuer.token().scope("x").sign();
    let swapped = format!("{header}.{payload}.{}", other.rsplit('.').next().unwrap());
    app.assert_invalid_token(&swapped, "the token's signature is not valid")
        .await;

    // alg none, with and without a signature segment.
    let none_header = json!({"alg": "none", "typ": "JWT"});
    app.assert_invalid_token(
        &format!("{}.{payload}.", b64(&none_header)),
        "the access token is malformed",
    )
    .await;
    app.assert_invalid_token(
        &format!("{}.{payload}.AAAA", b64(&none_header)),
        "the token's signing algorithm is not accepted",
    )
    .await;

    // HS256 "signed" with the RSA public key as the HMAC secret (algorithm confusion).
    let jwks = issuer.jwks();
    let rsa_jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    for secret in [
        rsa_jwk.to_string().into_bytes(),
        URL_SAFE_NO_PAD
            .decode(rsa_jwk["n"].as_str().unwrap())
            .unwrap(),
    ] {
        let forged = sign_hs256(
            &secret,
            &json!({"alg": "HS256", "kid": rsa_jwk["kid"]}),
            &decode(payload),
        );
        app.assert_invalid_token(&forged, "the token's signing algorithm is not accepted")
            .await;
    }
}

#[tokio::test]
async fn keys_embedded_in_the_header_are_never_used() {
    let app = app(|b| b).await;
    // The attacker runs their own issuer and signs with its key.
    let attacker = TestIssuer::start().await;
    let attacker_jwk = attacker.jwks()["keys"][0].clone();
    fn claims_from_victim<'a>(
        builder: smart_auth::testing::TokenBuilder<'a>,
        victim: &TestIssuer,
    ) -> smart_auth::testing::TokenBuilder<'a> {
        builder
            .claim("iss", victim.url())
            .claim("aud", victim.audience())
    }
    let with_jwk = claims_from_victim(attacker.token(), &app.issuer)
        .header("jwk", attacker_jwk.clone())
        .sign();
    app.assert_invalid_token(&with_jwk, "the token's signing key is not known")
        .await;
    let with_jku = claims_from_victim(attacker.token(), &app.issuer)
        .header("jku", attacker.jwks_uri())
        .sign();
    app.assert_invalid_token(&with_jku, "the token's signing key is not known")
        .await;
    let with_x5u = claims_from_victim(attacker.token(), &app.issuer)
        .header("x5u", attacker.jwks_uri())
        .no_kid()
        .sign();
    app.assert_invalid_token(&with_x5u, "the token's signature is not valid")
        .await;
    // Same kid as the victim's key, attacker's signature and embedded key.
    let victim_kid = app.issuer.jwks()["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let spoofed = claims_from_victim(attacker.token(), &app.issuer)
        .kid(victim_kid)
        .header("jwk", attacker_jwk)
        .sign();
    app.assert_invalid_token(&spoofed, "the token's signature is not valid")
        .await;
    assert_eq!(
        attacker.jwks_fetches(),
        0,
        "the attacker's key set was never fetched"
    );
}

#[tokio::test]
async fn header_rules() {
    let app = app(|b| b).await;
    let issuer = &app.issuer;
    app.assert_invalid_token(
        &issuer.token().header("crit", json!(["exp"])).sign(),
        "the token has critical header parameters",
    )
    .await;
    // ForgeRock AM's signed tokens say `"zip": "NONE"`: no compression, nothing changes.
    // A real compression, or JWE's `enc`, is no signed access token.
    let forgerock = issuer.token().header("zip", "NONE").sign();
    assert_eq!(app.get_with_token(&forgerock).await.status, StatusCode::OK);
    for (name, value) in [
        ("zip", json!("DEF")),
        ("zip", json!("none")),
        ("zip", json!(false)),
        ("enc", json!("A128GCM")),
    ] {
        app.assert_invalid_token(
            &issuer.token().header(name, value).sign(),
            "the access token is malformed",
        )
        .await;
    }
    for typ in [
        "JOSE+JSON",
        "application/",
        "application/jwt;charset=utf-8",
        "application/application/jwt",
        "text/jwt",
        " JWT",
    ] {
        app.assert_invalid_token(
            &issuer.token().header("typ", typ).sign(),
            "the token type is not accepted",
        )
        .await;
    }
    // RFC 7515 section 4.1.9: `JWT` and `application/jwt` name the same media type.
    for typ in [
        "JWT",
        "application/jwt",
        "Application/JWT",
        "at+jwt",
        "application/at+jwt",
    ] {
        assert_eq!(
            app.get_with_token(&issuer.token().header("typ", typ).sign())
                .await
                .status,
            StatusCode::OK,
            "{typ}"
        );
    }
    assert_eq!(
        app.get_with_token(&issuer.token().header("typ", Value::Null).sign())
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn strict_rfc9068_typ() {
    let app = app(|b| b.token_type(TokenTypePolicy::Rfc9068)).await;
    let issuer = &app.issuer;
    assert_eq!(
        app.get_with_token(&issuer.token().header("typ", "at+jwt").sign())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get_with_token(&issuer.token().header("typ", "application/at+jwt").sign())
            .await
            .status,
        StatusCode::OK
    );
    app.assert_invalid_token(
        &issuer.token().header("typ", "JWT").sign(),
        "the token type is not accepted",
    )
    .await;
    app.assert_invalid_token(
        &issuer.token().header("typ", Value::Null).sign(),
        "the token type is not accepted",
    )
    .await;
    // RFC 9068 section 2.2: a client id, `sub`, `iat` and `jti` are required too; blank
    // strings are no values. The lenient policy accepts the same tokens.
    let lenient = crate::support::app(|b| b).await;
    for (name, value) in [
        ("client_id", None),
        ("client_id", Some(json!(" "))),
        ("sub", None),
        ("sub", Some(json!(""))),
        ("iat", None),
        ("jti", None),
        ("jti", Some(json!(""))),
    ] {
        fn shape<'a>(
            token: smart_auth::testing::TokenBuilder<'a>,
            name: &str,
            value: &Option<Value>,
        ) -> smart_auth::testing::TokenBuilder<'a> {
            let token = token.header("typ", "at+jwt");
            match value {
                Some(value) => token.claim(name, value.clone()),
                None => token.without(name),
            }
        }
        app.assert_invalid_token(
            &shape(issuer.token(), name, &value).sign(),
            "the token has a missing or invalid claim",
        )
        .await;
        let answer = lenient
            .get_with_token(&shape(lenient.issuer.token(), name, &value).sign())
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{name} {value:?}");
    }
    // The client id may come from the other configured claims.
    let azp = issuer
        .token()
        .header("typ", "at+jwt")
        .without("client_id")
        .claim("azp", "app")
        .sign();
    assert_eq!(app.get_with_token(&azp).await.status, StatusCode::OK);
}

/// RFC 9068 section 2.2 requires `aud`, also where the audience check would let a token
/// without one pass (a client listed for it): absent or an empty list, it is refused.
#[tokio::test]
async fn strict_rfc9068_requires_an_audience_even_for_listed_clients() {
    let configure = |policy| {
        move |b: smart_auth::SmartAuthBuilder| {
            b.token_type(policy)
                .accept_missing_audience_for_clients(["test-client"])
        }
    };
    let strict = app(configure(TokenTypePolicy::Rfc9068)).await;
    let typed = app(configure(TokenTypePolicy::AtJwt)).await;
    for audience in [None, Some(json!([]))] {
        let shape = |app: &crate::support::App| {
            let token = app.issuer.token().header("typ", "at+jwt");
            match &audience {
                Some(value) => token.claim("aud", value.clone()),
                None => token.without("aud"),
            }
            .sign()
        };
        strict
            .assert_invalid_token(&shape(&strict), "the token has a missing or invalid claim")
            .await;
        assert_eq!(
            typed.get_with_token(&shape(&typed)).await.status,
            StatusCode::OK,
            "{audience:?}: the listed client passes without RFC 9068's claims"
        );
    }
    let named = strict.issuer.token().header("typ", "at+jwt").sign();
    assert_eq!(strict.get_with_token(&named).await.status, StatusCode::OK);
}

/// `at+jwt` alone: the type RFC 9068 gives access tokens, without its further claims
/// (Duende IdentityServer's client-credentials tokens have no `sub`).
#[tokio::test]
async fn at_jwt_typ_without_rfc9068_claims() {
    let app = app(|b| b.token_type(TokenTypePolicy::AtJwt)).await;
    let issuer = &app.issuer;
    let duende = issuer
        .token()
        .header("typ", "at+jwt")
        .without("sub")
        .claim("scope", json!(["system/Patient.rs"]))
        .sign();
    assert_eq!(app.get_with_token(&duende).await.status, StatusCode::OK);
    for typ in [json!("JWT"), json!("application/jwt"), Value::Null] {
        app.assert_invalid_token(
            &issuer.token().header("typ", typ).sign(),
            "the token type is not accepted",
        )
        .await;
    }
}

/// RFC 8725 section 3.12: JWTs of other kinds from the same issuer, signed with the same
/// keys and naming the resource server's audience, are not access tokens: an ID token
/// (its hashes of the code, token or state), a logout token or any Security Event Token
/// (`events`), Keycloak's ID, refresh, offline and logout tokens (payload `typ`),
/// Cognito's ID token and Hydra's refresh token (`token_use` other than `access` or
/// `access_token`) and ForgeRock's (`tokenName` other than `access_token`). Under every
/// `typ` policy.
#[tokio::test]
async fn other_kinds_of_jwt_are_not_access_tokens() {
    for policy in [
        TokenTypePolicy::Lenient,
        TokenTypePolicy::AtJwt,
        TokenTypePolicy::Rfc9068,
    ] {
        let app = app(|b| b.token_type(policy)).await;
        let issuer = &app.issuer;
        let typed = || issuer.token().header("typ", "at+jwt");
        for (name, value) in [
            ("at_hash", json!("77QmUPtjPfzWtF2AnpK9RQ")),
            ("c_hash", json!("LDktKdoQak3Pk0cnXxCltA")),
            ("s_hash", json!("x")),
            ("at_hash", json!(["any", "type"])),
            (
                "events",
                json!({"http://schemas.openid.net/event/backchannel-logout": {}}),
            ),
            ("events", json!({})),
            ("typ", json!("ID")),
            ("typ", json!("id")),
            ("typ", json!("Refresh")),
            ("typ", json!("Offline")),
            ("typ", json!("Logout")),
            ("token_use", json!("id")),
            ("token_use", json!("ID")),
            // Ory Hydra's refresh tokens, and any use that is not access.
            ("token_use", json!("refresh_token")),
            ("token_use", json!("id_token")),
            ("token_use", json!("")),
            ("token_use", json!("access ")),
            ("token_use", json!(["access"])),
            // ForgeRock AM / PingOne Advanced Identity Cloud.
            ("tokenName", json!("id_token")),
            ("tokenName", json!("refresh_token")),
            ("tokenName", json!("")),
            ("tokenName", json!(["access_token"])),
            // Medplum's refresh tokens.
            ("refresh_secret", json!("d2f1c3")),
        ] {
            app.assert_invalid_token(
                &typed().claim(name, value.clone()).sign(),
                "the token type is not accepted",
            )
            .await;
        }
        // Access tokens as those issuers write them pass: Keycloak's `typ: Bearer` (with the
        // `nonce` Keycloak before 25 copied in), Cognito's `token_use: access`, and the same
        // names holding other values.
        for (name, value) in [
            ("typ", json!("Bearer")),
            ("nonce", json!("n-0S6_WzA2Mj")),
            ("token_use", json!("access")),
            ("token_use", json!("access_token")),
            ("tokenName", json!("access_token")),
            ("typ", json!("at+jwt")),
        ] {
            let answer = app
                .get_with_token(&typed().claim(name, value.clone()).sign())
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{policy:?} {name} {value}");
        }
    }
}

#[tokio::test]
async fn structure_and_size() {
    let app = app(|b| b).await;
    let good = app.issuer.token().sign();
    for bad in [
        "abc".to_owned(),
        "a.b".to_owned(),
        format!("{good}.extra"),
        format!("{good}.x.y"),
        "eyJ.eyJ.AAAA".to_owned(),
    ] {
        app.assert_invalid_token(&bad, "the access token is malformed")
            .await;
    }
    // Over the 16 KiB cap: refused before parsing, whatever the content.
    let padding = "A".repeat(17 * 1024);
    let oversize = app.issuer.token().claim("pad", padding).sign();
    app.assert_invalid_token(&oversize, "the access token is too large")
        .await;
}

/// A token of exactly `length` bytes made by `make`, its length set with a `pad` claim and
/// a `pad` header member (base64url gives no segment a length of 4k + 1, so the payload
/// alone cannot reach every total).
fn token_of_length<'a>(
    make: impl Fn() -> smart_auth::testing::TokenBuilder<'a>,
    length: usize,
) -> String {
    for header_pad in 0..4 {
        let sign = |claim_pad: usize| {
            make()
                .header("pad", "h".repeat(header_pad))
                .claim("pad", "p".repeat(claim_pad))
                .sign()
        };
        let shortest = sign(0).len();
        let Some(missing) = length.checked_sub(shortest) else {
            continue;
        };
        let guess = missing * 3 / 4;
        for claim_pad in guess.saturating_sub(3)..=guess + 3 {
            let token = sign(claim_pad);
            if token.len() == length {
                return token;
            }
        }
    }
    panic!("no token of exactly {length} bytes");
}

/// The size cap at its boundary: a token of exactly the cap is verified (and accepted), one
/// byte more is refused as too large, for the default 16 KiB and a 512-byte cap alike.
#[tokio::test]
async fn the_size_cap_holds_at_its_boundary() {
    let app = app(|b| b).await;
    let cap = 16 * 1024;
    let at_cap = token_of_length(|| app.issuer.token(), cap);
    let answer = app.get_with_token(&at_cap).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let over = token_of_length(|| app.issuer.token(), cap + 1);
    app.assert_invalid_token(&over, "the access token is too large")
        .await;
    // 512 bytes: room for an ES256 token with its claims cut to those required.
    let small = crate::support::app(|b| b.max_token_length(512)).await;
    let make = || {
        small
            .issuer
            .token()
            .alg(SigningAlgorithm::ES256)
            .without("jti")
            .without("client_id")
    };
    let answer = small.get_with_token(&token_of_length(make, 512)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    small
        .assert_invalid_token(&token_of_length(make, 513), "the access token is too large")
        .await;
}

/// A realistic large token (a long scope list and launch context, 12 to 15 KiB, as some
/// issuers send) is accepted under the default cap, its claims read whole.
#[tokio::test]
async fn a_realistic_large_token_is_accepted() {
    let app = app(|b| b).await;
    let resources = [
        "Patient",
        "Observation",
        "Condition",
        "Encounter",
        "MedicationRequest",
        "Procedure",
        "Immunization",
        "AllergyIntolerance",
        "DiagnosticReport",
        "DocumentReference",
        "CarePlan",
        "Goal",
    ];
    let mut scopes: Vec<String> = Vec::new();
    for resource in resources {
        for category in 0..12 {
            scopes.push(format!(
                "system/{resource}.rs?category=http://terminology.example.org/c|{category}"
            ));
        }
    }
    let context: Vec<Value> = (0..20)
        .map(|i| json!({"reference": format!("Encounter/enc-{i}"), "role": "launch"}))
        .collect();
    let token = app
        .issuer
        .token()
        .scope(&scopes.join(" "))
        .claim("fhirContext", context)
        .sign();
    assert!(
        (12 * 1024..=15 * 1024).contains(&token.len()),
        "{} bytes",
        token.len()
    );
    let answer = app.get_with_token(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.body["scopes"].as_array().unwrap().len(),
        scopes.len()
    );
    assert_eq!(answer.body["fhirContext"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn kid_selection() {
    let app = app(|b| b).await;
    let issuer = &app.issuer;
    // Without kid, accepted when exactly one key fits the algorithm.
    assert_eq!(
        app.get_with_token(&issuer.token().alg(SigningAlgorithm::ES256).no_kid().sign())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get_with_token(&issuer.token().no_kid().sign())
            .await
            .status,
        StatusCode::OK
    );
    // A key that states its alg is used only with that alg.
    let rs384_kid = issuer.add_key(SigningAlgorithm::RS384);
    // The new key arrives through an unknown-kid refetch.
    let token = issuer
        .token()
        .kid(&rs384_kid)
        .alg(SigningAlgorithm::RS384)
        .sign();
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    let wrong_alg = issuer
        .token()
        .kid(&rs384_kid)
        .alg(SigningAlgorithm::RS256)
        .sign();
    app.assert_invalid_token(&wrong_alg, "the token's signing algorithm is not accepted")
        .await;
    // Now two RSA keys fit RS384: a token without kid (AD FS names its key by `x5t`
    // alone) is verified with each in turn, and the signature decides.
    let unnamed = issuer.token().alg(SigningAlgorithm::RS384).no_kid();
    assert_eq!(
        app.get_with_token(&unnamed.sign()).await.status,
        StatusCode::OK
    );
    let by_thumbprint = issuer
        .token()
        .alg(SigningAlgorithm::RS384)
        .no_kid()
        .header(
            "x5t",
            "NjVBRjY5MDlCMUIwNzU4RTA2QzZFMDQ4QzQ2MDAyQjVDNjk1RTM2Qg",
        )
        .sign();
    assert_eq!(
        app.get_with_token(&by_thumbprint).await.status,
        StatusCode::OK
    );
    let original = issuer.token().no_kid().sign();
    assert_eq!(app.get_with_token(&original).await.status, StatusCode::OK);
    // A signature no candidate verifies: invalid, after at most one try each.
    let token = issuer.token().alg(SigningAlgorithm::RS384).no_kid().sign();
    let at = token.rfind('.').unwrap() + 5;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    app.assert_invalid_token(&forged, "the token's signature is not valid")
        .await;
    // A kid whose key has another family.
    let ec_kid = issuer.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["crv"] == "P-256")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let family = issuer
        .token()
        .kid(ec_kid)
        .alg(SigningAlgorithm::RS256)
        .sign();
    app.assert_invalid_token(&family, "the token's signing algorithm is not accepted")
        .await;
}

/// RFC 9864's fully-specified `Ed25519` is the signature `EdDSA` names on an Ed25519 key:
/// tokens under either name verify with a key pinned to either name, and with none. ES512
/// verifies with P-521 keys. Neither fits another key family, and an allow-list that names
/// one spelling admits that one only.
#[tokio::test]
async fn ed25519_by_both_names_and_es512() {
    use SigningAlgorithm::{ES384, ES512, Ed25519, EdDSA, RS256};
    let app = app(|b| b).await;
    let issuer = &app.issuer;
    let pinned_new = issuer.add_key(Ed25519);
    for token in [
        issuer.token().alg(Ed25519).sign(),
        issuer.token().alg(EdDSA).kid(&pinned_new).sign(),
        issuer.token().alg(Ed25519).kid(&pinned_new).sign(),
        issuer.token().alg(ES512).sign(),
    ] {
        assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
    }
    // The header names the algorithm exactly: the Ed25519 key never takes an ES512 or RS256
    // claim, nor the P-521 key an ES384 one.
    let ed_kid = issuer.current_kid(EdDSA);
    let p521_kid = issuer.current_kid(ES512);
    for (alg, kid) in [
        (ES512, &ed_kid),
        (RS256, &ed_kid),
        (ES384, &p521_kid),
        (Ed25519, &p521_kid),
    ] {
        app.assert_invalid_token(
            &issuer.token().alg(alg).kid(kid).sign(),
            "the token's signing algorithm is not accepted",
        )
        .await;
    }
    let eddsa_only = crate::support::app(|b| b.algorithms([EdDSA])).await;
    assert_eq!(
        eddsa_only
            .get_with_token(&eddsa_only.issuer.token().alg(EdDSA).sign())
            .await
            .status,
        StatusCode::OK
    );
    eddsa_only
        .assert_invalid_token(
            &eddsa_only.issuer.token().alg(Ed25519).sign(),
            "the token's signing algorithm is not accepted",
        )
        .await;
}
