//! The configuration surface: the FHIR base said once, the validation hook, and the realm
//! of refusals raised behind the layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use smart_auth::discovery::SmartConfiguration;
use smart_auth::scopes::Interaction;
use smart_auth::testing::TestIssuer;
use smart_auth::{AuthError, ManualClock, Refusal, ScopeEnforcement, SmartAuthLayer, SmartClaims};

use crate::support::{app, serve};

const BASE: &str = "https://fhir.example.test/r4";

/// One setting, `fhir_base`, gives the audience, the enforcement base, the public paths
/// and the discovery document's location.
#[tokio::test]
async fn the_fhir_base_is_said_once() {
    let clock = ManualClock::new();
    let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .fhir_base(BASE)
        .clock(clock)
        .enforce_scopes(ScopeEnforcement::new())
        .build()
        .unwrap();
    let configuration = SmartConfiguration::backend_services(format!("{}/token", issuer.url()))
        .scopes_supported(["system/*.rs"])
        .build()
        .unwrap();
    let discovery = auth.discovery(configuration);
    assert_eq!(discovery.paths(), ["/r4/.well-known/smart-configuration"]);
    let router = Router::new()
        .route("/r4/Patient/{id}", get(|| async { "patient" }))
        .route("/r4/metadata", get(|| async { "metadata" }))
        .route("/other/Patient/{id}", get(|| async { "other" }))
        .layer(auth)
        .merge(discovery.router());
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let get = |path: &str, token: Option<String>| {
        let mut request = http.get(format!("{url}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status(), challenge)
        }
    };
    let realm = format!("Bearer realm=\"{BASE}\"");

    // Discovery and metadata under the base: public.
    let (status, _) = get("/r4/.well-known/smart-configuration", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get("/r4/metadata", None).await.0, StatusCode::OK);
    // Outside the base nothing is public.
    let (status, challenge) = get("/other/Patient/1", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some(realm.as_str()));

    // The base URL is the audience.
    let scoped = |aud: &str| {
        issuer
            .token()
            .audience(aud)
            .scope("system/Patient.rs")
            .sign()
    };
    assert_eq!(
        get("/r4/Patient/1", Some(scoped(BASE))).await.0,
        StatusCode::OK
    );
    // The same base with a final `/`, as some clients write it (HealthLake's endpoints end
    // in one); nothing else.
    assert_eq!(
        get("/r4/Patient/1", Some(scoped(&format!("{BASE}/"))))
            .await
            .0,
        StatusCode::OK
    );
    for other in [
        "https://other.example/r4".to_owned(),
        format!("{BASE}//"),
        format!("{BASE}/x"),
        format!("{BASE}/."),
        format!("{BASE} "),
        format!("{BASE}%2F"),
        "https://fhir.example.test/r".to_owned(),
        "https://fhir.example.test/r4".to_uppercase(),
    ] {
        let (status, challenge) = get("/r4/Patient/1", Some(scoped(&other))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{other}");
        assert_eq!(
            challenge.as_deref(),
            Some(
                format!(
                    "{realm}, error=\"invalid_token\", error_description=\"the token is for another audience\""
                )
                .as_str()
            ),
            "{other}"
        );
    }
    // The enforcement base is the base's path: under it scopes count, outside it the
    // request is refused.
    let observation_only = issuer
        .token()
        .audience(BASE)
        .scope("system/Observation.rs")
        .sign();
    let (status, challenge) = get("/r4/Patient/1", Some(observation_only.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with(&format!("{realm}, error=\"insufficient_scope\""))),
        "{challenge:?}"
    );
    assert_eq!(
        get("/other/Patient/1", Some(scoped(BASE))).await.0,
        StatusCode::FORBIDDEN
    );
}

/// Validation hooks add up: each one runs, in the order added, and the first refusal
/// answers; a second hook never drops the first (a tenant check followed by a client
/// block keeps the tenant check).
#[tokio::test]
async fn validation_hooks_add_up() {
    let app = app(|b| {
        b.validate(|claims| match claims.tenant() {
            Some("north") => Ok(()),
            _ => Err(Refusal::InvalidToken),
        })
        .validate(|claims| match claims.client_id() {
            Some("blocked") => Err(Refusal::InsufficientScope { scope: None }),
            _ => Ok(()),
        })
    })
    .await;
    let token = |tenant: &str, client: &str| {
        app.issuer
            .token()
            .claim("tenant", tenant)
            .claim("client_id", client)
            .sign()
    };
    for _ in 0..2 {
        for (tenant, client, status) in [
            ("north", "ok", StatusCode::OK),
            ("south", "ok", StatusCode::UNAUTHORIZED),
            ("north", "blocked", StatusCode::FORBIDDEN),
            // Both refuse: the first one added answers.
            ("south", "blocked", StatusCode::UNAUTHORIZED),
        ] {
            let answer = app.get_with_token(&token(tenant, client)).await;
            assert_eq!(answer.status, status, "{tenant} {client}");
        }
    }
}

/// The validation hook refuses with 401 or 403 in RFC 6750's exact form, on every
/// request, cached tokens included.
#[tokio::test]
async fn the_validation_hook_refuses_with_exact_answers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let app = app(move |b| {
        b.realm("api").validate(move |claims| {
            counted.fetch_add(1, Ordering::Relaxed);
            match claims.tenant() {
                Some("north") => Ok(()),
                Some("south") => Err(Refusal::insufficient_scope("system/Tenant.south")),
                Some("east") => Err(Refusal::InsufficientScope { scope: None }),
                // A sloppy hint: tabs, doubled spaces, a token with a quote in it.
                Some("sloppy") => Err(Refusal::insufficient_scope(
                    " system/A.r\t\tsystem/\"B\".r  system/C.r ",
                )),
                Some("blank") => Err(Refusal::insufficient_scope(" \t ")),
                _ => Err(Refusal::InvalidToken),
            }
        })
    })
    .await;
    let token = |tenant: &str| app.issuer.token().claim("tenant", tenant).sign();

    let north = token("north");
    for _ in 0..3 {
        assert_eq!(app.get_with_token(&north).await.status, StatusCode::OK);
    }
    let west = token("west");
    for _ in 0..3 {
        let answer = app.get_with_token(&west).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.challenge.as_deref(),
            Some(
                "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token is refused by the server's policy\""
            )
        );
        assert_eq!(answer.body["resourceType"], "OperationOutcome");
    }
    let answer = app.get_with_token(&token("south")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\", scope=\"system/Tenant.south\""
        )
    );
    let answer = app.get_with_token(&token("east")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\""
        )
    );
    // The hint goes out as valid scope tokens joined by single spaces, or not at all.
    let answer = app.get_with_token(&token("sloppy")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\", scope=\"system/A.r system/C.r\""
        )
    );
    let answer = app.get_with_token(&token("blank")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\""
        )
    );
    // Every request ran the hook, the cached ones too (a token is cached from its
    // second verification on).
    assert_eq!(calls.load(Ordering::Relaxed), 10);
    // A token the hook refused is never handed to a handler, even from the cache.
    assert!(app.layer.issuers().iter().next().unwrap().cached_tokens() >= 1);
}

async fn require_read_of_observation(claims: SmartClaims) -> Result<&'static str, AuthError> {
    claims.require(Interaction::Read, "Observation")?;
    Ok("observation")
}

async fn optional_then_required(claims: Option<SmartClaims>) -> Result<&'static str, AuthError> {
    match claims {
        Some(_) => Ok("claims"),
        None => Err(AuthError::new(smart_auth::ErrorKind::MissingToken)),
    }
}

/// Refusals raised behind the layer (a handler's `AuthError`, an extractor's rejection)
/// carry the layer's realm; with nested layers the one nearest the handler wins.
#[tokio::test]
async fn refusals_raised_behind_the_layer_carry_its_realm() {
    let clock = ManualClock::new();
    let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    let layer = |realm: &str| {
        SmartAuthLayer::builder(issuer.url())
            .audience(issuer.audience())
            .clock(clock.clone())
            .realm(realm)
            .public_path("/open")
            .optional()
            .build()
            .unwrap()
    };
    let inner = Router::new()
        .route("/inner/observation", get(require_read_of_observation))
        .layer(layer("inner"));
    let router =
        Router::new()
            .route("/observation", get(require_read_of_observation))
            .route(
                "/open",
                get(|claims: SmartClaims| async move {
                    claims.client_id().unwrap_or_default().to_owned()
                }),
            )
            .route("/anonymous", get(optional_then_required))
            .merge(inner)
            .layer(layer("outer"));
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let token = issuer.token().scope("system/Patient.rs").sign();
    let challenge = |path: &'static str, token: Option<String>| {
        let mut request = http.get(format!("{url}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, challenge)
        }
    };
    let insufficient = |realm: &str| {
        format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\", scope=\"system/Observation.r\""
        )
    };
    for _ in 0..3 {
        // Fresh, then cached: the same answer.
        let (status, value) = challenge("/observation", Some(token.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(value, Some(insufficient("outer")));
        let (status, value) = challenge("/inner/observation", Some(token.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            value,
            Some(insufficient("inner")),
            "the nearest layer's realm"
        );
    }
    // An extractor's rejection on a public route, and a handler's own 401.
    for path in ["/open", "/anonymous"] {
        let (status, value) = challenge(path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(value.as_deref(), Some("Bearer realm=\"outer\""), "{path}");
    }
    // Without any layer: the default realm.
    let bare = Router::new().route(
        "/anonymous",
        get(|| async { AuthError::new(smart_auth::ErrorKind::MissingToken) }),
    );
    let (bare_url, _bare_server) = serve(bare).await;
    let response = http
        .get(format!("{bare_url}/anonymous"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"fhir\""
    );
}

/// The shipped example configuration builds as it is.
#[test]
fn the_example_configuration_builds() {
    let text = include_str!("../../examples/config/smart-auth.json");
    let config: smart_auth::SmartAuthConfig = serde_json::from_str(text).unwrap();
    let layer = config.build().unwrap();
    assert_eq!(layer.fhir_base(), Some("https://api.example.org/fhir"));
    let issuers: Vec<&str> = layer
        .issuers()
        .iter()
        .map(smart_auth::TokenVerifier::issuer)
        .collect();
    assert_eq!(
        issuers,
        [
            "https://auth.example.org",
            "https://login.partner.example/tenant-7"
        ]
    );
}

/// A layer read from a configuration document protects an API end to end, with two
/// issuers, the base said once and its public paths.
#[tokio::test]
async fn a_configuration_document_protects_an_api() {
    let a = TestIssuer::start().await;
    let b = TestIssuer::builder().path("/tenant-b").start().await;
    let document = serde_json::json!({
        "fhir_base": BASE,
        "served_at_path": "/fhir",
        "issuers": [
            { "issuer": a.url(), "algorithms": ["ES256"] },
            { "issuer": b.url(), "fhir_user_claims": ["extension_fhirUser"] }
        ],
        "public_paths": ["/health"],
        "enforce_scopes": {}
    });
    let config: smart_auth::SmartAuthConfig = serde_json::from_value(document).unwrap();
    let auth = config.build().unwrap();
    let router = Router::new()
        .route(
            "/fhir/Patient/{id}",
            get(|claims: SmartClaims| async move {
                format!("{} {}", claims.issuer(), claims.fhir_user().unwrap_or("-"))
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(auth);
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let read = |token: String| {
        http.get(format!("{url}/fhir/Patient/1"))
            .bearer_auth(token)
            .send()
    };

    let es256 = a
        .token()
        .alg(smart_auth::SigningAlgorithm::ES256)
        .scope("system/Patient.rs")
        .sign();
    let response = read(es256).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), format!("{} -", a.url()));
    let rs256 = a.token().scope("system/Patient.rs").sign();
    assert_eq!(
        read(rs256).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let from_b = b
        .token()
        .scope("system/Patient.rs")
        .claim("extension_fhirUser", "Practitioner/9")
        .sign();
    let response = read(from_b).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.unwrap(),
        format!("{} Practitioner/9", b.url())
    );
    let unscoped = b.token().scope("system/Observation.rs").sign();
    assert_eq!(
        read(unscoped).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

/// A configured key-set URL or introspection endpoint may carry a query (Microsoft Entra
/// ID publishes an application's own keys at `keys?appid=…`); no URL may carry a fragment,
/// and the issuer may carry neither.
#[test]
fn configured_urls_query_and_fragment_rules() {
    use smart_auth::{ConfigError, TokenVerifier};
    let builder = || TokenVerifier::builder("https://as.example").audience("https://fhir.example");
    for uri in [
        "https://login.example/tenant/discovery/v2.0/keys?appid=1234",
        "https://login.example/keys?",
    ] {
        assert!(builder().jwks_uri(uri).build().is_ok(), "{uri}");
    }
    for uri in [
        "https://login.example/keys#x",
        "https://login.example/keys?a=1#",
    ] {
        assert!(
            matches!(
                builder().jwks_uri(uri).build(),
                Err(ConfigError::InvalidUrl {
                    field: "jwks_uri",
                    ..
                })
            ),
            "{uri}"
        );
    }
    for issuer in ["https://as.example?x=1", "https://as.example#x"] {
        assert!(
            matches!(
                TokenVerifier::builder(issuer).build(),
                Err(ConfigError::InvalidUrl {
                    field: "issuer",
                    ..
                })
            ),
            "{issuer}"
        );
    }
}

/// Scope enforcement needs to know where FHIR is: without a base, the prefix an API is
/// mounted under (`/Fhir`, `/Acme`) would read as a resource type, and a conditional update
/// of Observation under it as an update of the instance `Observation` of type `Fhir`. A
/// root API says so with `served_at_path("/")` or a base URL without a path.
#[test]
fn scope_enforcement_needs_a_fhir_base() {
    let builder = || {
        SmartAuthLayer::builder("https://auth.example.org")
            .audience("https://fhir.example.org")
            .enforce_scopes(ScopeEnforcement::new())
    };
    assert!(matches!(
        builder().build(),
        Err(smart_auth::ConfigError::EnforcementWithoutBase)
    ));
    assert_eq!(
        builder()
            .served_at_path("/")
            .build()
            .unwrap()
            .fhir_base_path(),
        ""
    );
    let layer = SmartAuthLayer::builder("https://auth.example.org")
        .fhir_base("https://fhir.example.org")
        .enforce_scopes(ScopeEnforcement::new())
        .build()
        .unwrap();
    assert_eq!(layer.fhir_base_path(), "");
    // Without enforcement, no base is needed.
    assert!(
        SmartAuthLayer::builder("https://auth.example.org")
            .audience("https://fhir.example.org")
            .build()
            .is_ok()
    );
}

/// A grant in `authorization_details` is for this server when its `locations` name the
/// layer's FHIR base, with or without one final `/`, also when the issuer's tokens name
/// another audience (an API identifier such as `api://fhir`, as Okta, Entra ID and Auth0
/// write them): the token's wider scope does not apply here.
#[tokio::test]
async fn a_grant_names_this_server_by_its_fhir_base() {
    let clock = ManualClock::new();
    let issuer = TestIssuer::builder().clock(clock.clone()).start().await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .fhir_base(BASE)
        .audience("api://fhir")
        .clock(clock)
        .enforce_scopes(ScopeEnforcement::new())
        .build()
        .unwrap();
    let router = Router::new()
        .route("/r4/{type}/{id}", get(|| async { "resource" }))
        .layer(auth);
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    for location in [BASE.to_owned(), format!("{BASE}/")] {
        let token = issuer
            .token()
            .audience("api://fhir")
            .scope("system/*.rs")
            .claim(
                "authorization_details",
                serde_json::json!([{
                    "type": "smart_on_fhir",
                    "locations": [location],
                    "scope": "system/Patient.rs",
                }]),
            )
            .sign();
        for (path, status) in [
            ("/r4/Patient/1", StatusCode::OK),
            ("/r4/Observation/1", StatusCode::FORBIDDEN),
        ] {
            let response = http
                .get(format!("{url}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{location} {path}");
        }
    }
}

/// An issuer only compared with `iss` may be an `http` URL to any host (AD FS writes
/// `http://host/adfs/services/trust` into its access tokens): with the key set configured
/// (by URL or as static keys) tokens of that issuer verify. One the verifier would fetch
/// from (its metadata, for keys or the introspection endpoint) must be `https`, as must
/// every URL fetched.
#[tokio::test]
async fn an_issuer_only_compared_may_be_plain_http() {
    use smart_auth::{ConfigError, TokenVerifier};
    const ADFS: &str = "http://adfs.example.test/adfs/services/trust";
    let issuer = TestIssuer::builder().audience(BASE).start().await;
    let token = issuer.token().claim("iss", ADFS).sign();
    let by_url = TokenVerifier::builder(ADFS)
        .audience(BASE)
        .jwks_uri(issuer.jwks_uri())
        .build()
        .unwrap();
    assert_eq!(by_url.verify(&token).await.unwrap().issuer(), ADFS);
    let keys = serde_json::to_string(&issuer.jwks()).unwrap();
    let by_keys = TokenVerifier::builder(ADFS)
        .audience(BASE)
        .static_keys(smart_auth::StaticKeys::from_jwks_json(&keys).unwrap())
        .build()
        .unwrap();
    assert!(by_keys.verify(&token).await.is_ok());
    // Another issuer's token still fails the exact comparison.
    let https_token = issuer
        .token()
        .claim("iss", "https://adfs.example.test/adfs/services/trust")
        .sign();
    assert!(by_url.verify(&https_token).await.is_err());
    let refused = |result: Result<TokenVerifier, ConfigError>| {
        matches!(
            result,
            Err(ConfigError::InvalidUrl {
                field: "issuer",
                ..
            })
        )
    };
    // Fetched from: discovery of the keys, or of the introspection endpoint.
    assert!(refused(TokenVerifier::builder(ADFS).audience(BASE).build()));
    assert!(refused(
        TokenVerifier::builder(ADFS)
            .audience(BASE)
            .jwks_uri(issuer.jwks_uri())
            .introspection(smart_auth::Introspection::new(
                smart_auth::IntrospectionAuth::bearer("rs-token")
            ))
            .build()
    ));
    // Never a key set fetched over plain http to another host, nor a non-HTTP issuer.
    assert!(matches!(
        TokenVerifier::builder(ADFS)
            .audience(BASE)
            .jwks_uri("http://adfs.example.test/adfs/discovery/keys")
            .build(),
        Err(ConfigError::InvalidUrl {
            field: "jwks_uri",
            ..
        })
    ));
    for issuer_text in [
        "urn:adfs:trust",
        "file:///adfs",
        "ftp://adfs.example.test/x",
    ] {
        assert!(
            refused(
                TokenVerifier::builder(issuer_text)
                    .audience(BASE)
                    .jwks_uri(issuer.jwks_uri())
                    .build()
            ),
            "{issuer_text}"
        );
    }
}
