//! Publishing `/.well-known/smart-configuration`: document rules, serving, Inferno's checks.

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::discovery::{
    Capability, DiscoveryError, SmartConfiguration, SmartConfigurationBuilder, SmartDiscoveryLayer,
};
use smart_auth::testing::TestIssuer;
use smart_auth::{ManualClock, SmartAuthLayer};

use crate::support::serve;

/// The full example of SMART App Launch 2.2 (conformance.md, "Sample Response").
fn ig_full_example() -> Value {
    json!({
      "issuer": "https://ehr.example.com",
      "jwks_uri": "https://ehr.example.com/.well-known/jwks.json",
      "authorization_endpoint": "https://ehr.example.com/auth/authorize",
      "token_endpoint": "https://ehr.example.com/auth/token",
      "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
      "grant_types_supported": ["authorization_code", "client_credentials"],
      "registration_endpoint": "https://ehr.example.com/auth/register",
      "scopes_supported": ["openid", "profile", "launch", "launch/patient", "patient/*.rs", "user/*.rs", "offline_access"],
      "response_types_supported": ["code"],
      "management_endpoint": "https://ehr.example.com/user/manage",
      "introspection_endpoint": "https://ehr.example.com/user/introspect",
      "revocation_endpoint": "https://ehr.example.com/user/revoke",
      "code_challenge_methods_supported": ["S256"],
      "capabilities": ["launch-ehr", "permission-patient", "permission-v2", "client-public",
                       "client-confidential-symmetric", "context-ehr-patient", "sso-openid-connect"],
      "associated_endpoints": [{"url": "https://state.example.com", "capabilities": ["smart-app-state"]}]
    })
}

/// The Backend Services example (client-confidential-asymmetric.md).
fn ig_backend_example() -> Value {
    json!({
      "token_endpoint": "https://ehr.example.com/auth/token",
      "token_endpoint_auth_methods_supported": ["private_key_jwt"],
      "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
      "grant_types_supported": ["client_credentials"],
      "scopes_supported": ["system/*.rs"],
      "capabilities": ["client-confidential-asymmetric", "permission-v2"]
    })
}

#[test]
fn ig_examples_round_trip() {
    let full: SmartConfiguration = serde_json::from_value(ig_full_example()).unwrap();
    assert_eq!(serde_json::to_value(&full).unwrap(), ig_full_example());
    assert_eq!(full.capabilities()[6], Capability::SsoOpenidConnect);
    assert_eq!(
        full.associated_endpoints()[0].capabilities,
        [Capability::SmartAppState]
    );

    let backend: SmartConfiguration = serde_json::from_value(ig_backend_example()).unwrap();
    let mut expected = ig_backend_example();
    expected["code_challenge_methods_supported"] = json!(["S256"]);
    assert_eq!(
        serde_json::to_value(&backend).unwrap(),
        expected,
        "S256 is added when absent"
    );
    let again: SmartConfiguration =
        serde_json::from_value(serde_json::to_value(&backend).unwrap()).unwrap();
    assert_eq!(again, backend);
    // A document read from JSON holds its associated endpoints' capabilities to the same
    // rule as the builder.
    for capability in ["", " smart-app-state", "smart-app-state\u{1}", "a b"] {
        let mut document = ig_backend_example();
        document["associated_endpoints"] =
            json!([{"url": "https://state.example.com", "capabilities": [capability]}]);
        assert!(
            serde_json::from_value::<SmartConfiguration>(document).is_err(),
            "{capability:?}"
        );
    }
}

#[test]
fn unknown_capabilities_and_fields_round_trip_unchanged() {
    let mut document = ig_backend_example();
    document["capabilities"] = json!([
        "client-confidential-asymmetric",
        "context-passthrough-banner",
        "https://example.org/caps/x"
    ]);
    document["code_challenge_methods_supported"] = json!(["S256"]);
    document["x_vendor_field"] = json!({"a": [1, 2]});
    let parsed: SmartConfiguration = serde_json::from_value(document.clone()).unwrap();
    assert_eq!(
        parsed.capabilities()[1],
        Capability::Other("context-passthrough-banner".into())
    );
    assert_eq!(parsed.extra()["x_vendor_field"], json!({"a": [1, 2]}));
    assert_eq!(serde_json::to_value(&parsed).unwrap(), document);
}

/// `client-confidential-symmetric` builds with `client_secret_basic` among the methods,
/// or with the list omitted (RFC 8414: `client_secret_basic` alone).
#[test]
fn symmetric_capability_with_basic_builds() {
    let with_basic = SmartConfiguration::backend_services("https://as.example/token")
        .capability(Capability::ClientConfidentialSymmetric)
        .token_endpoint_auth_methods_supported(["private_key_jwt", "client_secret_basic"])
        .build();
    assert!(with_basic.is_ok(), "{with_basic:?}");
    let omitted = SmartConfiguration::builder()
        .token_endpoint("https://as.example/token")
        .grant_types_supported(["client_credentials"])
        .capability(Capability::ClientConfidentialSymmetric)
        .build();
    assert!(omitted.is_ok(), "{omitted:?}");
}

#[test]
fn every_validation_rule() {
    let backend = || SmartConfiguration::backend_services("https://as.example/token");
    let rows: Vec<(SmartConfigurationBuilder, DiscoveryError)> = vec![
        (
            SmartConfiguration::builder(),
            DiscoveryError::Missing {
                field: "token_endpoint",
            },
        ),
        (
            backend().grant_types_supported(Vec::<String>::new()),
            DiscoveryError::Missing {
                field: "grant_types_supported",
            },
        ),
        (
            SmartConfiguration::builder()
                .token_endpoint("https://as.example/token")
                .grant_types_supported(["client_credentials"]),
            DiscoveryError::Missing {
                field: "capabilities",
            },
        ),
        (
            backend().code_challenge_methods_supported(["plain"]),
            DiscoveryError::InvalidCodeChallengeMethods,
        ),
        (
            backend().code_challenge_methods_supported(["S256", "plain"]),
            DiscoveryError::InvalidCodeChallengeMethods,
        ),
        // RFC 8414 section 2: `none` is no signing algorithm for client authentication.
        (
            backend().token_endpoint_auth_signing_alg_values_supported(["RS384", "none"]),
            DiscoveryError::InvalidEntry {
                field: "token_endpoint_auth_signing_alg_values_supported",
            },
        ),
        (
            backend().code_challenge_methods_supported(Vec::<String>::new()),
            DiscoveryError::InvalidCodeChallengeMethods,
        ),
        (
            backend().token_endpoint_auth_signing_alg_values_supported(["RS256"]),
            DiscoveryError::MissingAsymmetricAlgorithm,
        ),
        (
            backend().capability(Capability::SsoOpenidConnect),
            DiscoveryError::Missing { field: "issuer" },
        ),
        (
            backend()
                .capability(Capability::SsoOpenidConnect)
                .issuer("https://as.example"),
            DiscoveryError::Missing { field: "jwks_uri" },
        ),
        (
            backend().token_endpoint("/token"),
            DiscoveryError::InvalidUrl {
                field: "token_endpoint",
            },
        ),
        (
            backend().token_endpoint("http://as.example/token"),
            DiscoveryError::InvalidUrl {
                field: "token_endpoint",
            },
        ),
        (
            backend().introspection_endpoint("ftp://as.example/i"),
            DiscoveryError::InvalidUrl {
                field: "introspection_endpoint",
            },
        ),
        (
            backend().jwks_uri("jwks.json"),
            DiscoveryError::InvalidUrl { field: "jwks_uri" },
        ),
        (
            backend().authorization_endpoint("http://10.0.0.1/authorize"),
            DiscoveryError::InvalidUrl {
                field: "authorization_endpoint",
            },
        ),
        (
            backend().associated_endpoint("http://state.example", [Capability::SmartAppState]),
            DiscoveryError::InvalidUrl {
                field: "associated_endpoints",
            },
        ),
        // An associated endpoint's capabilities are tokens as the top-level ones are.
        (
            backend()
                .associated_endpoint("https://state.example", [Capability::Other(String::new())]),
            DiscoveryError::InvalidEntry {
                field: "associated_endpoints",
            },
        ),
        (
            backend().associated_endpoint(
                "https://state.example",
                [Capability::Other(" smart-app-state\u{1}".into())],
            ),
            DiscoveryError::InvalidEntry {
                field: "associated_endpoints",
            },
        ),
        (
            backend().extra("token_endpoint", json!("https://other.example")),
            DiscoveryError::InvalidValue { field: "extra" },
        ),
        // RFC 8414 section 2: a grant type that uses the authorization endpoint needs it.
        (
            backend().grant_types_supported(["client_credentials", "authorization_code"]),
            DiscoveryError::Missing {
                field: "authorization_endpoint",
            },
        ),
        (
            backend().token_endpoint_auth_methods_supported(["client_secret_basic"]),
            DiscoveryError::MissingPrivateKeyJwt,
        ),
        // The symmetric capability is a secret sent by HTTP Basic (SMART App Launch 2.2);
        // `symmetric_capability_with_basic_builds` has the documents that list it.
        (
            backend().capability(Capability::ClientConfidentialSymmetric),
            DiscoveryError::MissingClientSecretBasic,
        ),
        (
            backend()
                .capability(Capability::ClientConfidentialSymmetric)
                .token_endpoint_auth_methods_supported(["private_key_jwt", "client_secret_post"]),
            DiscoveryError::MissingClientSecretBasic,
        ),
        // List entries are values: no empty strings, no spaces, no controls.
        (
            backend().grant_types_supported(["client_credentials", ""]),
            DiscoveryError::InvalidEntry {
                field: "grant_types_supported",
            },
        ),
        (
            backend().token_endpoint_auth_methods_supported(["private_key_jwt", " "]),
            DiscoveryError::InvalidEntry {
                field: "token_endpoint_auth_methods_supported",
            },
        ),
        (
            backend().token_endpoint_auth_signing_alg_values_supported(["RS384", "ES384\n"]),
            DiscoveryError::InvalidEntry {
                field: "token_endpoint_auth_signing_alg_values_supported",
            },
        ),
        (
            backend().capabilities([Capability::PermissionV2, Capability::parse("")]),
            DiscoveryError::InvalidEntry {
                field: "capabilities",
            },
        ),
        (
            backend().response_types_supported(["code", "code  id_token"]),
            DiscoveryError::InvalidEntry {
                field: "response_types_supported",
            },
        ),
        (
            backend().response_types_supported(["code "]),
            DiscoveryError::InvalidEntry {
                field: "response_types_supported",
            },
        ),
        (
            backend().scopes_supported(["system/*.rs system/*.cruds"]),
            DiscoveryError::InvalidEntry {
                field: "scopes_supported",
            },
        ),
        (
            backend().scopes_supported(["system/*.rs", ""]),
            DiscoveryError::InvalidEntry {
                field: "scopes_supported",
            },
        ),
        (
            backend().scopes_supported(["patient/Observation.rs?code=\"x\""]),
            DiscoveryError::InvalidEntry {
                field: "scopes_supported",
            },
        ),
    ];
    for (builder, expected) in rows {
        assert_eq!(builder.build().unwrap_err(), expected);
    }
    assert!(
        backend()
            .token_endpoint("http://127.0.0.1:9/token")
            .build()
            .is_ok(),
        "loopback http is allowed"
    );
    // The controls of the new rules.
    for builder in [
        backend()
            .grant_types_supported(["client_credentials", "authorization_code"])
            .authorization_endpoint("https://as.example/authorize"),
        backend().token_endpoint_auth_methods_supported(["private_key_jwt", "client_secret_basic"]),
        backend().scopes_supported(["system/*.rs", "patient/Observation.rs?category=laboratory"]),
        backend().response_types_supported(["code", "code id_token", "id_token token"]),
    ] {
        assert!(builder.build().is_ok());
    }
    // Deserializing applies the same rules.
    let mut bad = ig_backend_example();
    bad["code_challenge_methods_supported"] = json!(["plain", "S256"]);
    assert_eq!(
        refusal(bad),
        "code_challenge_methods_supported must list S256 and must not list plain"
    );
}

/// Why deserializing `document` as a SMART configuration fails.
fn refusal(document: Value) -> String {
    serde_json::from_value::<SmartConfiguration>(document)
        .expect_err("refused")
        .to_string()
}

struct Served {
    url: String,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<()>,
}

async fn served(layer: SmartDiscoveryLayer, wrap_with_auth: Option<&TestIssuer>) -> Served {
    let mut router = Router::new()
        .route(
            "/fhir/r4/Patient/{id}",
            get(|| async { ([("x-inner", "yes")], "inner body") }),
        )
        .route(
            "/fhir/r4/metadata",
            get(|| async { "{\"resourceType\":\"CapabilityStatement\"}" }),
        );
    if let Some(issuer) = wrap_with_auth {
        let auth = SmartAuthLayer::builder(issuer.url())
            .audience(issuer.audience())
            .clock(ManualClock::new())
            .build()
            .unwrap();
        router = router.layer(auth);
    }
    let router = router.layer(layer);
    let (url, server) = serve(router).await;
    Served {
        url,
        http: crate::support::loopback_client(),
        _server: server,
    }
}

fn full() -> SmartConfiguration {
    serde_json::from_value(ig_full_example()).unwrap()
}

/// What Inferno's STU2 discovery tests check (well_known_endpoint_test.rb,
/// well_known_capabilities_stu2_test.rb, cors_well_known_endpoint_test.rb).
#[tokio::test]
async fn inferno_discovery_checks() {
    let app = served(
        SmartDiscoveryLayer::new(full())
            .base_path("/fhir/r4")
            .unwrap()
            .cors_on_metadata(),
        None,
    )
    .await;
    let url = format!("{}/fhir/r4/.well-known/smart-configuration", app.url);
    for accept in [Some("application/json"), None, Some("text/html")] {
        let mut request = app.http.get(&url);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{accept:?}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
        let body: Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).expect("valid JSON");
        for field in [
            "authorization_endpoint",
            "token_endpoint",
            "issuer",
            "jwks_uri",
        ] {
            assert!(body[field].is_string(), "{field}");
        }
        for field in [
            "capabilities",
            "grant_types_supported",
            "code_challenge_methods_supported",
        ] {
            assert!(body[field].is_array(), "{field}");
        }
        assert!(
            body["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("authorization_code"))
        );
        let pkce = body["code_challenge_methods_supported"].as_array().unwrap();
        assert!(pkce.contains(&json!("S256")) && !pkce.contains(&json!("plain")));
        assert!(
            body["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string)
        );
    }
    for path in [
        "/fhir/r4/.well-known/smart-configuration",
        "/fhir/r4/metadata",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .header("origin", "https://inferno.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
    }
}

#[tokio::test]
async fn head_options_and_other_methods() {
    let app = served(
        SmartDiscoveryLayer::new(full())
            .base_path("/fhir/r4/")
            .unwrap(),
        None,
    )
    .await;
    let url = format!("{}/fhir/r4/.well-known/smart-configuration", app.url);
    let get_length = app
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    let head = app.http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        get_length.to_string().as_str()
    );
    assert_eq!(head.headers()["content-type"], "application/json");
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    // RFC 9110 section 9.3.7: an `OPTIONS` answer without content says
    // `Content-Length: 0`, which a 204 may not carry.
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(preflight.headers()["content-length"], "0");
    assert_preflight_allows_reads(preflight.headers());
    let post = app.http.post(&url).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD, OPTIONS");
}

#[tokio::test]
async fn base_path_root_and_pass_through() {
    let layer = SmartDiscoveryLayer::new(full())
        .base_path("/fhir/r4")
        .unwrap()
        .also_at_root()
        .cache_control("no-cache")
        .unwrap();
    let app = served(layer, None).await;
    for path in [
        "/fhir/r4/.well-known/smart-configuration",
        "/.well-known/smart-configuration",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-cache");
    }
    assert_eq!(
        app.http
            .get(format!("{}/fhir/.well-known/smart-configuration", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let inner = app
        .http
        .get(format!("{}/fhir/r4/Patient/1", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(inner.status(), StatusCode::OK);
    assert_eq!(inner.headers()["x-inner"], "yes");
    assert!(inner.headers().get("access-control-allow-origin").is_none());
    assert_eq!(inner.text().await.unwrap(), "inner body");
}

#[tokio::test]
async fn unauthenticated_even_behind_the_auth_layer() {
    let issuer = TestIssuer::start().await;
    // Discovery outside the auth layer.
    let app = served(
        SmartDiscoveryLayer::new(full())
            .base_path("/fhir/r4")
            .unwrap(),
        Some(&issuer),
    )
    .await;
    let url = format!("{}/fhir/r4/.well-known/smart-configuration", app.url);
    assert_eq!(
        app.http.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.http
            .get(format!("{}/fhir/r4/Patient/1", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Discovery routes merged beside a router the auth layer wraps (public under the
    // configured base).
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .served_at_path("/fhir/r4")
        .build()
        .unwrap();
    let router = Router::new()
        .route("/fhir/r4/Patient/{id}", get(|| async { "patient" }))
        .merge(
            SmartDiscoveryLayer::new(full())
                .base_path("/fhir/r4")
                .unwrap()
                .router(),
        )
        .layer(auth);
    let (url, _server) = serve(router).await;
    let response = reqwest::get(format!("{url}/fhir/r4/.well-known/smart-configuration"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap()["token_endpoint"],
        "https://ehr.example.com/auth/token"
    );
    assert_eq!(
        reqwest::get(format!("{url}/fhir/r4/Patient/1"))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn from_issuer_builds_the_resource_server_document() {
    let issuer = TestIssuer::start().await;
    let configuration = SmartConfiguration::from_issuer(issuer.url()).await.unwrap();
    assert_eq!(
        configuration.token_endpoint(),
        format!("{}/token", issuer.url())
    );
    assert_eq!(
        configuration.grant_types_supported(),
        ["client_credentials"]
    );
    assert_eq!(
        configuration.token_endpoint_auth_signing_alg_values_supported(),
        ["RS384", "ES384"]
    );
    assert_eq!(
        configuration.capabilities(),
        [
            Capability::ClientConfidentialAsymmetric,
            Capability::PermissionV2
        ]
    );
    assert_eq!(configuration.code_challenge_methods_supported(), ["S256"]);
    assert_eq!(issuer.smart_configuration_fetches(), 1);
}

/// A metadata document that names its token endpoint relative, `null` or as a number says
/// nowhere: `from_issuer` reads the next document (SMART App Launch 2.x: endpoint URLs are
/// absolute) instead of failing on it.
#[tokio::test]
async fn from_issuer_skips_a_document_naming_no_absolute_token_endpoint() {
    for named in [json!("/token"), Value::Null, json!(5)] {
        let smart = json!({"token_endpoint": named.clone(), "grant_types_supported": ["client_credentials"]});
        let router = Router::new()
            .route(
                "/.well-known/smart-configuration",
                get(move || async move { axum::Json(smart) }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(|headers: http::HeaderMap| async move {
                    let url = format!("http://{}", headers["host"].to_str().unwrap());
                    axum::Json(json!({
                        "issuer": url,
                        "token_endpoint": format!("{url}/oauth/token"),
                        "grant_types_supported": ["client_credentials"],
                        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                        "token_endpoint_auth_signing_alg_values_supported": ["ES384"],
                    }))
                }),
            );
        let (url, server) = serve(router).await;
        let configuration = SmartConfiguration::from_issuer(&url).await.unwrap();
        assert_eq!(
            configuration.token_endpoint(),
            format!("{url}/oauth/token"),
            "{named}"
        );
        server.abort();
    }
}

#[tokio::test]
async fn from_issuer_falls_back_to_openid_configuration_and_refuses_another_issuer() {
    let issuer = TestIssuer::start().await;
    issuer.disable_smart_configuration();
    // OpenID metadata names no grant types: nothing may be claimed, so the build fails.
    let error = SmartConfiguration::from_issuer(issuer.url())
        .await
        .unwrap_err();
    assert_eq!(
        error,
        DiscoveryError::Missing {
            field: "grant_types_supported"
        }
    );
    assert_eq!(issuer.openid_configuration_fetches(), 1);
    // The builder form lets the caller state what the metadata does not.
    let configuration = SmartConfigurationBuilder::from_issuer(issuer.url(), None)
        .await
        .unwrap()
        .grant_types_supported(["client_credentials"])
        .capabilities([Capability::ClientConfidentialSymmetric])
        .build()
        .unwrap();
    // SMART states `issuer` only with `sso-openid-connect`, which this metadata does not
    // list: the published document leaves it out.
    assert_eq!(configuration.issuer(), None);

    let other = TestIssuer::start().await;
    other.set_discovery_issuer("https://evil.example");
    assert_eq!(
        SmartConfiguration::from_issuer(other.url())
            .await
            .unwrap_err(),
        DiscoveryError::IssuerMismatch
    );
    assert!(matches!(
        SmartConfiguration::from_issuer("http://example.invalid")
            .await
            .unwrap_err(),
        DiscoveryError::InvalidUrl { field: "issuer" }
    ));
    // An issuer with a query, a fragment or credentials is no RFC 8414 issuer; nothing is
    // fetched for it (the fragment would have fetched the server's root).
    let base = other.url();
    let authority = base.trim_start_matches("http://");
    for issuer in [
        format!("{base}#x"),
        format!("{base}?t=1"),
        format!("{base}?"),
        format!("http://user:pass@{authority}"),
        format!("http://user@{authority}"),
    ] {
        assert_eq!(
            SmartConfiguration::from_issuer(&issuer).await.unwrap_err(),
            DiscoveryError::InvalidUrl { field: "issuer" },
            "{issuer}"
        );
    }
}

/// SMART App Launch 2.x: `authorization_endpoint` is required when `launch-ehr` or
/// `launch-standalone` is a capability.
#[test]
fn launch_capabilities_need_an_authorization_endpoint() {
    let launch_sets = [
        vec![Capability::LaunchEhr],
        vec![Capability::LaunchStandalone],
        vec![Capability::LaunchEhr, Capability::LaunchStandalone],
        vec![Capability::PermissionV2, Capability::LaunchStandalone],
    ];
    for capabilities in launch_sets {
        let builder = || {
            SmartConfiguration::builder()
                .token_endpoint("https://as.example/token")
                .grant_types_supported(["authorization_code"])
                .capabilities(capabilities.clone())
        };
        assert_eq!(
            builder().build().unwrap_err(),
            DiscoveryError::Missing {
                field: "authorization_endpoint"
            },
            "{capabilities:?}"
        );
        assert!(
            builder()
                .authorization_endpoint("https://as.example/authorize")
                .build()
                .is_ok(),
            "{capabilities:?}"
        );
    }
    // Deserializing applies the rule; the backend-only document needs no endpoint.
    let mut document = ig_full_example();
    document
        .as_object_mut()
        .unwrap()
        .remove("authorization_endpoint");
    assert_eq!(refusal(document), "authorization_endpoint is required");
    let mut document = ig_backend_example();
    document["capabilities"] = json!(["launch-standalone", "client-confidential-asymmetric"]);
    assert_eq!(refusal(document), "authorization_endpoint is required");
    assert!(serde_json::from_value::<SmartConfiguration>(ig_backend_example()).is_ok());
}

/// RFC 6749 sections 3.1 and 3.2: endpoint URLs have no fragment. Every URL field of the
/// document is held to it, an empty fragment (`#`) included.
#[test]
fn urls_with_a_fragment_or_a_disguise_are_refused() {
    type Set = fn(SmartConfigurationBuilder, String) -> SmartConfigurationBuilder;
    let fields: [(&str, Set); 10] = [
        ("token_endpoint", |b, url| b.token_endpoint(url)),
        ("authorization_endpoint", |b, url| {
            b.authorization_endpoint(url)
        }),
        ("jwks_uri", |b, url| b.jwks_uri(url)),
        ("registration_endpoint", |b, url| {
            b.registration_endpoint(url)
        }),
        ("management_endpoint", |b, url| b.management_endpoint(url)),
        ("introspection_endpoint", |b, url| {
            b.introspection_endpoint(url)
        }),
        ("revocation_endpoint", |b, url| b.revocation_endpoint(url)),
        ("user_access_brand_bundle", |b, url| {
            b.user_access_brand_bundle(url)
        }),
        ("associated_endpoints", |b, url| {
            b.associated_endpoint(url, [Capability::SmartAppState])
        }),
        ("issuer", |b, url| b.issuer(url)),
    ];
    let fragments = [
        "https://as.example/x#frag",
        "https://as.example/x#",
        "https://as.example/x?a=1#frag",
        "https://as.example#x",
        "http://127.0.0.1:9/x#frag",
        "https://as.example/x%23y#",
        // Texts other parsers read another way than the check does: published as
        // written, they must be plain RFC 3986 URIs.
        "http://localhost\\@evil.example/token",
        "https://as.example\\@evil.example/token",
        " https://as.example/token",
        "https://as.example/to\nken",
        "https://as.example/to\tken",
        "https://as.example/token ",
        "https:as.example/token",
        "https:/as.example/token",
        "https://as.example/t\u{e9}",
        "https://as.example/{x}",
        // User information is not for a public document.
        "https://user:pass@as.example/token",
        "https://user@as.example/token",
        "https://:x@as.example/token",
    ];
    for (field, set) in fields {
        let backend = || SmartConfiguration::backend_services("https://as.example/token");
        for url in fragments {
            assert_eq!(
                set(backend(), url.to_owned()).build().unwrap_err(),
                DiscoveryError::InvalidUrl { field },
                "{field} {url}"
            );
        }
        // The control: the same URL without its fragment (an escaped `#` is a path byte).
        assert!(
            set(backend(), "https://as.example/x%23y".to_owned())
                .build()
                .is_ok(),
            "{field}"
        );
    }
    let mut document = ig_backend_example();
    document["token_endpoint"] = json!("https://ehr.example.com/auth/token#x");
    assert_eq!(
        refusal(document),
        "token_endpoint must be an absolute https URL (http only for loopback) without a fragment"
    );
}

/// RFC 8414 section 2: the issuer has no query and no fragment (empty ones included).
#[test]
fn an_issuer_with_a_query_or_fragment_is_refused() {
    let backend = || {
        SmartConfiguration::backend_services("https://as.example/token")
            .capability(Capability::SsoOpenidConnect)
            .jwks_uri("https://as.example/jwks?kind=current")
    };
    for issuer in [
        "https://as.example?x=1",
        "https://as.example/?",
        "https://as.example/tenant?tenant=1",
        "https://as.example#",
        "https://as.example/tenant#main",
        "http://127.0.0.1:9/?a",
    ] {
        assert_eq!(
            backend().issuer(issuer).build().unwrap_err(),
            DiscoveryError::InvalidUrl { field: "issuer" },
            "{issuer}"
        );
    }
    for issuer in [
        "https://as.example",
        "https://as.example/tenant/1",
        "http://127.0.0.1:9",
    ] {
        let built = backend().issuer(issuer).build().unwrap();
        assert_eq!(built.issuer(), Some(issuer));
    }
    assert_eq!(
        DiscoveryError::InvalidUrl { field: "issuer" }.to_string(),
        "issuer must be an absolute https URL (http only for loopback) without a query or fragment"
    );
    let mut document = ig_full_example();
    document["issuer"] = json!("https://ehr.example.com?tenant=a");
    assert_eq!(
        refusal(document),
        "issuer must be an absolute https URL (http only for loopback) without a query or fragment"
    );
}

/// SMART says `issuer` is omitted unless `sso-openid-connect` is a capability. A document
/// that states it anyway is accepted as given (Inferno only warns), but `from_issuer`
/// copies the authorization server's issuer into the published document only when that
/// capability is listed.
#[tokio::test]
async fn issuer_is_published_only_with_sso_openid_connect() {
    let configuration = SmartConfiguration::backend_services("https://as.example/token")
        .issuer("https://as.example")
        .build()
        .unwrap();
    assert_eq!(configuration.issuer(), Some("https://as.example"));

    for (capabilities, published) in [
        (json!(["client-confidential-asymmetric"]), false),
        (
            json!(["client-confidential-asymmetric", "sso-openid-connect"]),
            true,
        ),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let document = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks.json"),
            "token_endpoint": format!("{url}/token"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES384"],
            "capabilities": capabilities,
        });
        let router = Router::new().route(
            "/.well-known/smart-configuration",
            get(move || {
                let body = document.to_string();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let configuration = SmartConfiguration::from_issuer(&url).await.unwrap();
        let expected = published.then_some(url.as_str());
        assert_eq!(configuration.issuer(), expected, "{capabilities}");
        let served = serde_json::to_value(&configuration).unwrap();
        assert_eq!(served.get("issuer").is_some(), published, "{capabilities}");
        server.abort();
    }
}

/// What the authorization server states is validated before it is published: a token
/// endpoint with a fragment, or a launch capability without an authorization endpoint,
/// makes `from_issuer` fail with the field named.
#[tokio::test]
async fn from_issuer_refuses_what_would_be_an_invalid_document() {
    let rows = [
        (
            json!({"token_endpoint": "{url}/token#x", "capabilities": ["client-confidential-symmetric"]}),
            DiscoveryError::InvalidUrl {
                field: "token_endpoint",
            },
        ),
        (
            json!({"token_endpoint": "{url}/token", "capabilities": ["launch-ehr"]}),
            DiscoveryError::Missing {
                field: "authorization_endpoint",
            },
        ),
        (
            json!({"token_endpoint": "{url}/token", "authorization_endpoint": "{url}/authorize#", "capabilities": ["launch-standalone"], "grant_types_supported": ["authorization_code"]}),
            DiscoveryError::InvalidUrl {
                field: "authorization_endpoint",
            },
        ),
    ];
    for (template, expected) in rows {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut document = template.clone();
        for value in document.as_object_mut().unwrap().values_mut() {
            if let Some(text) = value.as_str() {
                *value = json!(text.replace("{url}", &url));
            }
        }
        if document.get("grant_types_supported").is_none() {
            document["grant_types_supported"] = json!(["client_credentials"]);
        }
        let router = Router::new().route(
            "/.well-known/smart-configuration",
            get(move || {
                let body = document.to_string();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        assert_eq!(
            SmartConfiguration::from_issuer(&url).await.unwrap_err(),
            expected,
            "{template}"
        );
        server.abort();
    }
}

#[test]
fn capability_statement_security_names_every_endpoint() {
    let security = full().capability_statement_security();
    let uris = security["extension"][0]["extension"].as_array().unwrap();
    let names: Vec<&str> = uris.iter().map(|u| u["url"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "token",
            "authorize",
            "register",
            "manage",
            "introspect",
            "revoke"
        ]
    );
    assert_eq!(
        security["extension"][0]["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(
        security["service"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/restful-security-service"
    );
}

/// Inside `Router::nest` the inner layers see the path without the prefix; the discovery
/// layer matches the full path the client sent (axum's `OriginalUri`), so its base path is
/// the same wherever it sits. (axum applies a nested router's layers to unmatched paths
/// only when that router has a fallback of its own.)
#[tokio::test]
async fn discovery_inside_nest_serves_the_full_path() {
    let layer = SmartDiscoveryLayer::new(full()).base_path("/fhir").unwrap();
    let inner = Router::new()
        .route("/Patient/{id}", get(|| async { "patient" }))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(layer);
    let (url, server) = serve(Router::new().nest("/fhir", inner)).await;
    let http = crate::support::loopback_client();
    let response = http
        .get(format!("{url}/fhir/.well-known/smart-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_endpoint"], full().token_endpoint());
    // The stripped spelling is not the configured path: the router's answer, not ours.
    let response = http
        .get(format!("{url}/fhir/Patient/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "patient");
    server.abort();
}

/// A discovery base path is written one way only, or it is refused: a path no router would
/// hand over as written would never match.
#[test]
fn discovery_base_paths_must_be_canonical() {
    for bad in [
        "",
        "fhir",
        "//fhir",
        "/fhir//r4",
        "/fhir/./r4",
        "/fhir/../r4",
        "/%66hir",
        "/fhir?x",
        "/fhir#x",
        "/fhir;v",
        "/fh ir",
    ] {
        assert!(
            matches!(
                SmartDiscoveryLayer::new(full()).base_path(bad),
                Err(DiscoveryError::InvalidValue { field: "base_path" })
            ),
            "{bad:?}"
        );
    }
    for bad in ["/:v1", "/fhir/{", "/fhir/{t}", "/fhir/*rest"] {
        assert!(
            SmartDiscoveryLayer::new(full()).base_path(bad).is_err(),
            "{bad:?} would panic or capture in axum's router"
        );
    }
    for good in ["/", "/fhir", "/fhir/r4", "/fhir/r4/", "/fhir/v1:2"] {
        let layer = SmartDiscoveryLayer::new(full()).base_path(good).unwrap();
        // The route is one axum accepts.
        let _router: axum::Router = layer.router();
    }
}

/// With discovery protected and scopes enforced, any valid token reads the SMART
/// configuration (at the base and at the root) and the capability statement, whatever its
/// scopes: they need no scope. Other methods there are enforced as usual.
#[tokio::test]
async fn protected_discovery_needs_a_token_but_no_scope() {
    let clock = ManualClock::new();
    let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .served_at_path("/fhir/r4")
        .protect_discovery_and_metadata()
        .enforce_scopes(smart_auth::ScopeEnforcement::new())
        .build()
        .unwrap();
    let document = || async { axum::Json(json!({"token_endpoint": "https://as.example/token"})) };
    let router = Router::new()
        .route(
            "/fhir/r4/.well-known/smart-configuration",
            get(document).post(document),
        )
        .route("/.well-known/smart-configuration", get(document))
        .route("/fhir/r4/metadata", get(document))
        .layer(auth);
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let token = issuer.token().scope("system/Patient.rs").sign();
    for path in [
        "/fhir/r4/.well-known/smart-configuration",
        "/.well-known/smart-configuration",
        "/fhir/r4/metadata",
    ] {
        let anonymous = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let answer = http
                .request(method.clone(), format!("{url}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{method} {path}");
        }
    }
    let post = http
        .post(format!("{url}/fhir/r4/.well-known/smart-configuration"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::FORBIDDEN);
    let overridden = http
        .get(format!("{url}/fhir/r4/.well-known/smart-configuration"))
        .bearer_auth(&token)
        .header("x-http-method-override", "DELETE")
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.status(), StatusCode::FORBIDDEN);
    let overridden = http
        .get(format!(
            "{url}/fhir/r4/.well-known/smart-configuration?_method=DELETE"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.status(), StatusCode::FORBIDDEN, "_method");
}

/// The document's rules hold however a capability is given (`Other("sso-openid-connect")`
/// is the capability it names); the asymmetric capability needs `private_key_jwt` listed
/// (an omitted list means `client_secret_basic` alone, RFC 8414 section 2); the launch
/// capabilities need the `authorization_code` grant (SMART App Launch 2.x conformance).
#[test]
fn capability_rules_hold_whatever_the_spelling() {
    use smart_auth::discovery::{Capability, DiscoveryError};
    let token = "https://auth.example.org/token";
    let backend = || SmartConfiguration::backend_services(token);
    assert_eq!(
        backend()
            .capability(Capability::Other("sso-openid-connect".into()))
            .build()
            .unwrap_err(),
        DiscoveryError::Missing { field: "issuer" }
    );
    let built = backend()
        .capability(Capability::Other("permission-v2".into()))
        .build()
        .unwrap();
    assert_eq!(
        built
            .capabilities()
            .iter()
            .filter(|c| c.as_str() == "permission-v2")
            .count(),
        1,
        "one capability, however it was given"
    );
    assert_eq!(
        backend()
            .token_endpoint_auth_methods_supported(Vec::<String>::new())
            .build()
            .unwrap_err(),
        DiscoveryError::MissingPrivateKeyJwt
    );
    let launch = |grants: &[&str]| {
        backend()
            .authorization_endpoint("https://auth.example.org/authorize")
            .grant_types_supported(grants.iter().copied())
            .capability(Capability::LaunchStandalone)
            .build()
    };
    assert_eq!(
        launch(&["client_credentials"]).unwrap_err(),
        DiscoveryError::InvalidEntry {
            field: "grant_types_supported"
        }
    );
    assert!(launch(&["authorization_code", "client_credentials"]).is_ok());
}

/// `cors_on_metadata` opens the FHIR base's `{base}/metadata`, whichever order the settings
/// come in (it took the paths at the moment it was called, so a base path set after it
/// opened the root `/metadata` instead), and never the root's for a base elsewhere, even
/// with discovery also at the root; an answer that names its own allowed origin keeps it
/// (`*` beside credentials would be refused by browsers).
#[tokio::test]
async fn cors_on_metadata_follows_the_served_paths() {
    use tower::ServiceExt as _;
    let app = |discovery: SmartDiscoveryLayer| {
        Router::new()
            .route("/fhir/metadata", get(|| async { "fhir" }))
            .route("/metadata", get(|| async { "root" }))
            .layer(discovery)
    };
    async fn allowed_origin(app: Router, path: &str) -> Option<String> {
        let request = http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|value| value.to_str().unwrap().to_owned())
    }
    for discovery in [
        SmartDiscoveryLayer::new(full())
            .cors_on_metadata()
            .base_path("/fhir")
            .unwrap(),
        SmartDiscoveryLayer::new(full())
            .base_path("/fhir")
            .unwrap()
            .cors_on_metadata(),
    ] {
        assert_eq!(
            allowed_origin(app(discovery.clone()), "/fhir/metadata")
                .await
                .as_deref(),
            Some("*")
        );
        assert_eq!(
            allowed_origin(app(discovery.clone()), "/metadata").await,
            None
        );
        let both = discovery.also_at_root();
        assert_eq!(
            allowed_origin(app(both.clone()), "/fhir/metadata")
                .await
                .as_deref(),
            Some("*")
        );
        assert_eq!(allowed_origin(app(both), "/metadata").await, None);
    }
    // A browser reading the capability statement with a header of its own asks first:
    // the preflight is answered here (2xx, the methods, any header), since the route
    // behind answers only `GET`; a plain `OPTIONS` still goes to it.
    let discovery = SmartDiscoveryLayer::new(full())
        .base_path("/fhir")
        .unwrap()
        .cors_on_metadata();
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri("/fhir/metadata")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = app(discovery.clone()).oneshot(preflight).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_preflight_allows_reads(answer.headers());
    let plain = http::Request::builder()
        .method("OPTIONS")
        .uri("/fhir/metadata")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = app(discovery).oneshot(plain).await.unwrap();
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Without `cors_on_metadata` the preflight is the route's own (405 here).
    let closed = SmartDiscoveryLayer::new(full()).base_path("/fhir").unwrap();
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri("/fhir/metadata")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = app(closed).oneshot(preflight).await.unwrap();
    assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
    let credentialed = Router::new()
        .route(
            "/fhir/metadata",
            get(|| async {
                (
                    [
                        ("access-control-allow-origin", "https://app.example"),
                        ("access-control-allow-credentials", "true"),
                    ],
                    "fhir",
                )
            }),
        )
        .layer(
            SmartDiscoveryLayer::new(full())
                .base_path("/fhir")
                .unwrap()
                .cors_on_metadata(),
        );
    assert_eq!(
        allowed_origin(credentialed, "/fhir/metadata")
            .await
            .as_deref(),
        Some("https://app.example")
    );
}

/// The CORS headers of an answered preflight: any origin, the read methods, and any
/// header with `Authorization` named beside `*`, which does not cover it (Fetch standard).
fn assert_preflight_allows_reads(headers: &http::HeaderMap) {
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(
        headers["access-control-allow-methods"],
        "GET, HEAD, OPTIONS"
    );
    assert_eq!(headers["access-control-allow-headers"], "*, authorization");
}
