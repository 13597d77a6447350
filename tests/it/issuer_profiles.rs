//! Issuers whose access tokens do not look like RFC 9068's: Amazon Cognito (no `aud`, no
//! `typ`, the client in `client_id`, `token_use` beside it) and Microsoft Entra ID (SMART
//! scopes written with `.` or `-` instead of `/`). Real tokens from the in-process issuer,
//! every variant of the rule tried against the app over HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};

use smart_auth::{ManualClock, ScopeEnforcement, SmartAuthLayer};

use crate::support::{App, app, app_with_layer, issuer};

const WRONG_AUDIENCE: &str = "the token is for another audience";
const REFUSED_BY_POLICY: &str = "the access token is refused by the server's policy";

/// A Cognito-shaped access token of the test issuer: no `aud`, no `typ`, `client_id`
/// `app-1` and `token_use: "access"`, with `changes` applied (a null removes a claim).
fn cognito_token(app: &App, changes: Value) -> String {
    let mut token = app
        .issuer
        .token()
        .header("typ", Value::Null)
        .without("aud")
        .without("sub")
        .claim("client_id", "app-1")
        .claim("token_use", "access")
        .claim("username", "app-1");
    for (name, value) in changes.as_object().unwrap() {
        token = token.claim(name, value.clone());
    }
    token.sign()
}

#[tokio::test]
async fn cognito_access_tokens_by_client_and_token_use() {
    let app = app(|b| {
        b.accept_missing_audience_for_clients(["app-1", "app-3"])
            .required_claim("token_use", "access")
    })
    .await;
    let accepted = [
        json!({}),
        json!({"client_id": "app-3"}),
        // An empty list names no audience either.
        json!({"aud": []}),
        // A token with an audience is judged by it, whatever its client.
        json!({"aud": app.issuer.audience(), "client_id": "app-9"}),
        json!({"aud": ["elsewhere", app.issuer.audience()], "client_id": "app-9"}),
        // The client id from the next configured claim when `client_id` is absent.
        json!({"client_id": null, "azp": "app-1"}),
        json!({"typ": "at+jwt"}),
    ];
    for changes in accepted {
        let answer = app
            .get_with_token(&cognito_token(&app, changes.clone()))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{changes}: {answer:?}");
    }
    let wrong_audience = [
        json!({"client_id": "app-2"}),
        json!({"client_id": null}),
        json!({"client_id": "APP-1"}),
        json!({"client_id": " app-1"}),
        json!({"client_id": "app-1\u{0}"}),
        json!({"client_id": "app-1", "aud": "elsewhere"}),
        json!({"client_id": "app-1", "aud": ["elsewhere"]}),
        // Cognito's ID token: the client is its audience.
        json!({"client_id": null, "aud": "app-1", "token_use": "access"}),
    ];
    for changes in wrong_audience {
        app.assert_invalid_token(&cognito_token(&app, changes.clone()), WRONG_AUDIENCE)
            .await;
    }
    let refused = [
        json!({"token_use": "id"}),
        json!({"token_use": null}),
        json!({"token_use": "Access"}),
        json!({"token_use": "access "}),
        json!({"token_use": ["access"]}),
        json!({"token_use": {"value": "access"}}),
        json!({"token_use": true}),
        json!({"token_use": ""}),
        json!({"client_id": null, "aud": "app-1", "token_use": "id"}),
    ];
    for changes in refused {
        app.assert_invalid_token(&cognito_token(&app, changes.clone()), REFUSED_BY_POLICY)
            .await;
    }
}

/// Without any audience configured, only the listed clients' tokens without `aud` pass:
/// a token that names an audience names one this server did not accept.
#[tokio::test]
async fn clients_without_any_audience() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .accept_missing_audience_for_clients(["app-1"])
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = app_with_layer(issuer, clock, layer).await;
    let answer = app.get_with_token(&cognito_token(&app, json!({}))).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    for changes in [
        json!({"aud": app.issuer.audience()}),
        json!({"client_id": "app-2"}),
    ] {
        let answer = app
            .get_with_token(&cognito_token(&app, changes.clone()))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{changes}");
        assert_eq!(answer.issue_code(), "unknown", "{changes}");
    }
}

/// Entra ID types its access tokens and its ID tokens `JWT` alike, and an ID token of an
/// app registration that also exposes the API names the API as its audience. Access tokens
/// always name their client (`azp` in v2, `appid` in v1); ID tokens carry neither, so
/// `require_client_id` refuses them. `appid` is a default client-id claim.
#[tokio::test]
async fn entra_id_tokens_are_refused_when_a_client_is_required() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let audience = issuer.audience().to_owned();
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(audience)
        .require_client_id()
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = app_with_layer(issuer, clock, layer).await;
    let entra = |changes: Value| {
        let mut token = app
            .issuer
            .token()
            .header("typ", "JWT")
            .without("client_id")
            .claim("ver", "2.0")
            .claim("tid", "00000000-0000-0000-0000-000000000000")
            .claim("roles", json!(["system.Patient.rs"]));
        for (name, value) in changes.as_object().unwrap() {
            token = token.claim(name, value.clone());
        }
        token.sign()
    };
    for (changes, client) in [
        (json!({"azp": "app-v2"}), "app-v2"),
        (json!({"ver": "1.0", "appid": "app-v1"}), "app-v1"),
    ] {
        let answer = app.get_with_token(&entra(changes.clone())).await;
        assert_eq!(answer.status, StatusCode::OK, "{changes}");
        assert_eq!(answer.body["client_id"], client, "{changes}");
    }
    for changes in [
        json!({}),
        json!({"azp": ""}),
        json!({"appid": "   "}),
        json!({"azp": 5}),
        json!({"appid": ["app-v1"]}),
    ] {
        let answer = app.get_with_token(&entra(changes.clone())).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{changes}");
    }
    app.assert_invalid_token(
        &entra(json!({})),
        "the token has a missing or invalid claim",
    )
    .await;
}

/// Entra ID cannot hold `/` in a scope name: with the separator configured, each scope
/// that starts with a SMART context and the separator reads as SMART writes it, in a
/// string claim and in an array claim alike; nothing else changes.
#[tokio::test]
async fn entra_scopes_written_with_another_separator() {
    let cases: [(char, Value, &[&str]); 11] = [
        (
            '.',
            json!("patient.Observation.read user.Patient.rs system.*.cruds"),
            &[
                "patient/Observation.read",
                "user/Patient.rs",
                "system/*.cruds",
            ],
        ),
        (
            '.',
            json!("openid fhirUser launch.patient offline_access"),
            &["openid", "fhirUser", "launch.patient", "offline_access"],
        ),
        // Already SMART, another context, a capital, the context alone: kept.
        (
            '.',
            json!(
                "patient/Observation.rs patients.Observation.rs Patient.Observation.rs patient. system"
            ),
            &[
                "patient/Observation.rs",
                "patients.Observation.rs",
                "Patient.Observation.rs",
                "patient/",
                "system",
            ],
        ),
        (
            '-',
            json!("system-Patient.rs patient-Observation.rs?category=vital-signs"),
            &[
                "system/Patient.rs",
                "patient/Observation.rs?category=vital-signs",
            ],
        ),
        // Only the first separator after the context.
        (
            '-',
            json!("user-Observation-x.rs"),
            &["user/Observation-x.rs"],
        ),
        ('-', json!("system.Patient.rs"), &["system.Patient.rs"]),
        (
            '.',
            json!(["system.Patient.rs", "system.Observation.rs"]),
            &["system/Patient.rs", "system/Observation.rs"],
        ),
        // Sloppy spacing is normalised first, as without the separator; a token with a
        // tab in it is no scope token and is dropped.
        (
            '.',
            json!("  system.Patient.rs   system.Group.rs  system.A.r\tsystem.B.r"),
            &["system/Patient.rs", "system/Group.rs"],
        ),
        ('.', json!(""), &[]),
        // Microsoft's `all` is every type, right after the context only, and every
        // interaction as the whole permissions (`patient.all.all`, Azure Health Data
        // Services' spelling of `patient/*.*`); `all` as the whole rest, another resource
        // or permission that starts with it, or a query after it, stays.
        (
            '.',
            json!(
                "patient.all.read system.all.cruds user.all user.allergy.rs user.All.rs \
                 patient.all.all user.Observation.all system.all.allx user.Observation.all?x=y"
            ),
            &[
                "patient/*.read",
                "system/*.cruds",
                "user/all",
                "user/allergy.rs",
                "user/All.rs",
                "patient/*.*",
                "user/Observation.*",
                "system/*.allx",
                "user/Observation.all?x=y",
            ],
        ),
        // A `/` inside the granular query does not make the scope SMART-spelt already.
        (
            '-',
            json!("patient-Observation.rs?category=http://h.org/c|laboratory patient/x-y.rs"),
            &[
                "patient/Observation.rs?category=http://h.org/c|laboratory",
                "patient/x-y.rs",
            ],
        ),
    ];
    for (separator, scope, expected) in cases {
        let app = app(|b| b.scope_context_separator(separator)).await;
        let token = app.issuer.token().claim("scope", scope.clone()).sign();
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::OK, "{scope}");
        assert_eq!(
            answer.body["scopes"],
            json!(expected),
            "{separator} {scope}"
        );
    }
}

/// The rewritten scopes are the ones scope enforcement applies, and app permissions in
/// Entra's `roles` array work the same way.
#[tokio::test]
async fn rewritten_scopes_are_enforced() {
    let app = app(|b| {
        b.fhir_base("https://fhir.example.test/fhir")
            .scope_claims(["scp", "roles"])
            .scope_context_separator('.')
            .enforce_scopes(ScopeEnforcement::new())
    })
    .await;
    let token = app
        .issuer
        .token()
        .without("scope")
        .claim("roles", json!(["system.Patient.rs"]))
        .sign();
    let allowed = app.get_with_token(&token).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.body["scopes"], json!(["system/Patient.rs"]));
    let observation_only = app
        .issuer
        .token()
        .without("scope")
        .claim("scp", "system.Observation.rs")
        .sign();
    let refused = app.get_with_token(&observation_only).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Microsoft's `all` grants every type.
    let every_type = app
        .issuer
        .token()
        .without("scope")
        .claim("scp", "system.all.read")
        .sign();
    let all = app.get_with_token(&every_type).await;
    assert_eq!(all.status, StatusCode::OK, "{all:?}");
    assert_eq!(all.body["scopes"], json!(["system/*.read"]));
    // The hint names a scope the issuer can grant: written its way.
    let challenge = refused.challenge.unwrap();
    assert!(
        challenge.ends_with(r#"error="insufficient_scope", error_description="the token's scopes do not allow this request", scope="system.Patient.r""#),
        "{challenge}"
    );
    // Every type is `all` there: an `_include` of every type asks for `system.all.r`.
    let include_all = app
        .http
        .get(format!("{}/fhir/Patient/_history?_include=*", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(include_all.status(), StatusCode::FORBIDDEN);
    let challenge = include_all.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.ends_with(r#"scope="system.all.r""#),
        "{challenge}"
    );
}

/// A handler's own `require` names the scope the issuer's way too.
#[tokio::test]
async fn handler_refusals_name_the_scope_the_issuer_way() {
    use smart_auth::scopes::Interaction;
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .scope_context_separator('-')
        .clock(clock)
        .build()
        .unwrap();
    let router = axum::Router::new()
        .route(
            "/fhir/Observation",
            axum::routing::get(|claims: smart_auth::SmartClaims| async move {
                claims.require_constraints(Interaction::SearchType, "Observation")?;
                Ok::<_, smart_auth::AuthError>("found")
            }),
        )
        .layer(layer);
    let (url, _server) = crate::support::serve(router).await;
    let http = crate::support::loopback_client();
    for (scope, expected) in [
        ("patient-Patient.rs", r#"scope="patient-Observation.s""#),
        ("system-Patient.rs", r#"scope="system-Observation.s""#),
    ] {
        let token = issuer.token().scope(scope).claim("patient", "p1").sign();
        let response = http
            .get(format!("{url}/fhir/Observation"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.ends_with(expected), "{scope}: {challenge}");
    }
}

/// The same rules from a configuration document.
#[tokio::test]
async fn the_rules_from_a_configuration_document() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let document = json!({
        "issuers": [{
            "issuer": issuer.url(),
            "audiences": [issuer.audience()],
            "accept_missing_audience_for_clients": ["app-1"],
            "required_claims": {"token_use": "access"},
            "require_client_id": true,
            "scope_context_separator": "."
        }]
    });
    let config: smart_auth::SmartAuthConfig = serde_json::from_value(document.clone()).unwrap();
    let layer = config
        .builder()
        .unwrap()
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = app_with_layer(issuer, clock, layer).await;
    let answer = app
        .get_with_token(&cognito_token(&app, json!({"scope": "system.Patient.rs"})))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["scopes"], json!(["system/Patient.rs"]));
    app.assert_invalid_token(
        &cognito_token(&app, json!({"token_use": null})),
        REFUSED_BY_POLICY,
    )
    .await;
    app.assert_invalid_token(
        &cognito_token(&app, json!({"client_id": "app-2"})),
        WRONG_AUDIENCE,
    )
    .await;
    let audience = app.issuer.audience().to_owned();
    app.assert_invalid_token(
        &cognito_token(&app, json!({"client_id": null, "aud": audience})),
        "the token has a missing or invalid claim",
    )
    .await;
    // A separator is one character; a rule set is an object of strings.
    for (field, value) in [
        ("scope_context_separator", json!("..")),
        ("scope_context_separator", json!("")),
        ("required_claims", json!({"token_use": 1})),
        ("required_claims", json!(["token_use"])),
        ("accept_missing_audience_for_clients", json!("app-1")),
        ("require_client_id", json!("true")),
        ("require_client_id", json!(null)),
    ] {
        let mut bad = document.clone();
        bad["issuers"][0][field] = value.clone();
        assert!(
            serde_json::from_value::<smart_auth::SmartAuthConfig>(bad).is_err(),
            "{field}: {value}"
        );
    }
    // A claim required twice (a merged or templated file) is an error, not last-wins.
    let twice = document.to_string().replace(
        r#""token_use":"access""#,
        r#""token_use":"access","token_use":"id""#,
    );
    assert!(twice.contains(r#""token_use":"id""#), "{twice}");
    let error = serde_json::from_str::<smart_auth::SmartAuthConfig>(&twice).unwrap_err();
    assert!(error.to_string().contains("required twice"), "{error}");
}
