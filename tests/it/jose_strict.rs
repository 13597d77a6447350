//! JOSE and JSON strictness, end to end: tokens signed with the issuer's real key whose
//! header or payload breaks a rule a strict reader applies (member types, `null`, nested
//! JWTs, duplicate member names, confirmation claims) are refused with the exact answer.

use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::{Clock, SigningAlgorithm};

use crate::support::{App, app};

const MALFORMED: &str = "the access token is malformed";
const SENDER_CONSTRAINED: &str = "the token is bound to a key and cannot be used as a Bearer token";

/// The payload of a valid token for `app`, as JSON text members (without braces), so that
/// rows can add members, duplicates included.
fn payload_members(app: &App) -> String {
    let now = app
        .clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        r#""iss":{},"aud":{},"sub":"client-1","client_id":"client-1","iat":{now},"exp":{},"scope":"system/*.rs""#,
        json!(app.issuer.url()),
        json!(app.issuer.audience()),
        now + 300
    )
}

fn header_members(app: &App) -> String {
    format!(
        r#""alg":"RS256","kid":{},"typ":"at+jwt""#,
        json!(app.issuer.current_kid(SigningAlgorithm::RS256))
    )
}

fn sign(app: &App, header: &str, payload: &str) -> String {
    app.issuer
        .sign_texts(SigningAlgorithm::RS256, header, payload)
}

#[tokio::test]
async fn well_formed_texts_are_accepted() {
    // The baseline every refusal below differs from by one member: it passes.
    let app = app(|b| b).await;
    let token = sign(
        &app,
        &format!("{{{}}}", header_members(&app)),
        &format!("{{{}}}", payload_members(&app)),
    );
    let answer = app.get_with_token(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // Unknown header and payload members of any type, `null` included, are fine.
    let token = sign(
        &app,
        &format!(r#"{{{},"x-ext":null,"cty":"json"}}"#, header_members(&app)),
        &format!(
            r#"{{{},"extra":null,"nested":{{"a":[1,{{"a":2}}]}}}}"#,
            payload_members(&app)
        ),
    );
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn header_members_of_the_wrong_type_are_refused() {
    let app = app(|b| b).await;
    let kid = json!(app.issuer.current_kid(SigningAlgorithm::RS256));
    let payload = format!("{{{}}}", payload_members(&app));
    let rows = [
        r#"{"alg":"RS256","kid":null,"typ":"at+jwt"}"#.to_owned(),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":null}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","cty":null}}"#),
        format!(r#"{{"alg":"RS256","kid":[{kid}],"typ":"at+jwt"}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":["at+jwt"]}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","cty":7}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","jku":{{}}}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","x5c":[null]}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","jwk":null}}"#),
        // A nested JWT: the claims would be another token's.
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","cty":"JWT"}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","cty":"application/jwt"}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","b64":true}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","zip":"DEF"}}"#),
        // Duplicate member names, plain or spelled with an escape.
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","typ":"at+jwt"}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"kid":"other","typ":"at+jwt"}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","\u0061lg":"RS256"}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","jwk":{{"kty":"RSA","kty":"EC"}}}}"#),
        // Claims repeated in the header (RFC 7519 section 5.3) keep their types.
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","iss":null}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","sub":7}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","aud":[1]}}"#),
        format!(r#"{{"alg":"RS256","kid":{kid},"typ":"at+jwt","aud":{{}}}}"#),
    ];
    for header in &rows {
        let token = sign(&app, header, &payload);
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{header}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(app.invalid_token_challenge(MALFORMED).as_str()),
            "{header}"
        );
        assert_eq!(answer.body["resourceType"], "OperationOutcome", "{header}");
    }
    // `alg: null` cannot name an algorithm: the same answer.
    let token = sign(
        &app,
        &format!(r#"{{"alg":null,"kid":{kid},"typ":"at+jwt"}}"#),
        &payload,
    );
    app.assert_invalid_token(&token, MALFORMED).await;
}

/// RFC 7519 section 5.3: claims repeated in the header must say what the payload says, so
/// that a component reading the header (a router, a log) sees the claims that were
/// verified; `aud` compares as a set.
#[tokio::test]
async fn claims_repeated_in_the_header_must_match_the_payload() {
    let app = app(|b| b).await;
    let payload = format!("{{{}}}", payload_members(&app));
    let head = header_members(&app);
    let iss = json!(app.issuer.url());
    let aud = json!(app.issuer.audience());
    let agreeing = [
        format!(r#"{{{head},"iss":{iss}}}"#),
        format!(r#"{{{head},"sub":"client-1"}}"#),
        format!(r#"{{{head},"aud":{aud}}}"#),
        format!(r#"{{{head},"aud":[{aud}]}}"#),
        format!(r#"{{{head},"aud":[{aud},{aud}]}}"#),
        format!(r#"{{{head},"iss":{iss},"sub":"client-1","aud":{aud}}}"#),
    ];
    for header in &agreeing {
        let answer = app.get_with_token(&sign(&app, header, &payload)).await;
        assert_eq!(answer.status, StatusCode::OK, "{header}: {answer:?}");
    }
    let disagreeing = [
        format!(r#"{{{head},"iss":"https://other.example"}}"#),
        format!(
            r#"{{{head},"iss":{}}}"#,
            json!(format!("{}/", app.issuer.url()))
        ),
        format!(r#"{{{head},"sub":"admin"}}"#),
        format!(r#"{{{head},"sub":""}}"#),
        format!(r#"{{{head},"aud":"https://other.example"}}"#),
        format!(r#"{{{head},"aud":[{aud},"https://other.example"]}}"#),
        format!(r#"{{{head},"aud":[]}}"#),
    ];
    for header in &disagreeing {
        app.assert_invalid_token(
            &sign(&app, header, &payload),
            "the token has a missing or invalid claim",
        )
        .await;
    }
}

#[tokio::test]
async fn duplicate_payload_members_are_refused() {
    let app = app(|b| b).await;
    let header = format!("{{{}}}", header_members(&app));
    let members = payload_members(&app);
    let rows = [
        // Each duplicate repeats a claim the checks act on, with a value the other parser
        // would have accepted or refused.
        format!(r#"{{{members},"aud":"https://other.example"}}"#),
        format!(r#"{{{members},"iss":"https://other.example"}}"#),
        format!(r#"{{{members},"exp":1}}"#),
        format!(r#"{{{members},"scope":"system/*.cruds"}}"#),
        format!(r#"{{{members},"\u0073cope":"system/*.cruds"}}"#),
        format!(r#"{{{members},"patient":"1","patient":"2"}}"#),
        format!(r#"{{{members},"fhirContext":[{{"reference":"a","reference":"b"}}]}}"#),
    ];
    for payload in &rows {
        let token = sign(&app, &header, payload);
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{payload}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(app.invalid_token_challenge(MALFORMED).as_str()),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn sender_constrained_tokens_are_refused_as_bearer_tokens() {
    let app = app(|b| b).await;
    let confirmations: [Value; 6] = [
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
        json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}),
        json!({"jwk": {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}}),
        json!({"kid": "k"}),
        json!({}),
        json!("not an object"),
    ];
    for cnf in confirmations {
        let token = app.issuer.token().claim("cnf", cnf.clone()).sign();
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{cnf}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(app.invalid_token_challenge(SENDER_CONSTRAINED).as_str()),
            "{cnf}"
        );
    }
    // A `cnf: null` member is a confirmation claim too (it cannot be set through the token
    // builder, whose null removes a claim).
    let header = format!("{{{}}}", header_members(&app));
    let token = sign(
        &app,
        &header,
        &format!(r#"{{{},"cnf":null}}"#, payload_members(&app)),
    );
    app.assert_invalid_token(&token, SENDER_CONSTRAINED).await;
    // The same token without `cnf` passes: the claim alone made the difference.
    let token = app.issuer.token().sign();
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
}
