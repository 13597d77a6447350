//! The key cache: discovery, single flight, rotation, cooldowns, stale keys, fetch limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::discovery::DiscoveryError;
use smart_auth::testing::{JwksBehaviour, TestIssuer};
use smart_auth::{ManualClock, RefreshPolicy, SigningAlgorithm, SmartAuthLayer};

use crate::support::{App, app, app_with, assert_retry_after, issuer};
use crate::wall_clock::{pass_time, settle};

async fn status(app: &App, token: &str) -> StatusCode {
    app.get_with_token(token).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_share_one_discovery_and_one_fetch() {
    const REQUESTS: usize = 100;
    let app = app(|b| b).await;
    // The key set is held until every request waits inside the layer.
    app.issuer.set_jwks_behaviour(JwksBehaviour::Gated);
    let token = app.issuer.token().sign();
    let requests = join_all((0..REQUESTS).map(|_| app.get_with_token(&token)));
    let release = async {
        app.wait_entered(REQUESTS).await;
        wait_for_jwks_fetches(&app, 1).await;
        assert_eq!(app.issuer.smart_configuration_fetches(), 1);
        app.issuer.open_jwks_gate();
    };
    let (answers, ()) = tokio::join!(requests, release);
    assert!(
        answers.iter().all(|a| a.status == StatusCode::OK),
        "{:?}",
        answers.iter().find(|a| a.status != StatusCode::OK)
    );
    assert_eq!(app.issuer.smart_configuration_fetches(), 1);
    assert_eq!(app.issuer.openid_configuration_fetches(), 0);
    assert_eq!(app.issuer.jwks_fetches(), 1);
}

/// Waits (30 s at most) until the issuer has seen `fetches` key-set requests.
async fn wait_for_jwks_fetches(app: &App, fetches: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.issuer.jwks_fetches() < fetches {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{fetches} key-set fetches did not arrive"));
}

#[tokio::test]
async fn warm_up_prefetches() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(issuer.jwks_fetches(), 0, "building does no I/O");
    layer.warm_up().await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);
    layer.warm_up().await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1, "warm keys are not fetched again");
    let app = crate::support::app_with_layer(issuer, clock, layer).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    assert_eq!(app.issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn discovery_falls_back_to_openid_configuration() {
    let clock = ManualClock::new();
    let issuer = TestIssuer::builder()
        .clock(clock.clone())
        .path("/realms/test")
        .start()
        .await;
    issuer.disable_smart_configuration();
    let app = app_with(issuer, clock, |b| b).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    assert_eq!(app.issuer.smart_configuration_fetches(), 1);
    assert_eq!(app.issuer.openid_configuration_fetches(), 1);
}

#[tokio::test]
async fn configured_jwks_uri_skips_discovery() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let jwks_uri = issuer.jwks_uri();
    let app = app_with(issuer, clock, |b| b.jwks_uri(jwks_uri)).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    assert_eq!(
        app.issuer.smart_configuration_fetches() + app.issuer.openid_configuration_fetches(),
        0
    );
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let app = app(|b| b).await;
    app.issuer.set_discovery_issuer("https://evil.example");
    let answer = app.get_with_token(&app.issuer.token().sign()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.challenge, None);
    assert_eq!(answer.issue_code(), "transient");
    assert_eq!(
        app.issuer.jwks_fetches(),
        0,
        "the keys of a mismatched document are never fetched"
    );
    assert_eq!(
        app.issuer.openid_configuration_fetches(),
        0,
        "a wrong document stops discovery"
    );
}

/// Metadata documents served raw for the issuer at `url`: each well-known path given has
/// its body (any other path answers 404) and counts its requests.
struct RawMetadata {
    url: String,
    fetches: Vec<(&'static str, Arc<AtomicUsize>)>,
    _server: tokio::task::JoinHandle<()>,
}

impl RawMetadata {
    async fn start(documents: impl Fn(&str) -> Vec<(&'static str, String)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut router = axum::Router::new();
        let mut fetches = Vec::new();
        for (path, body) in documents(&url) {
            let count = Arc::new(AtomicUsize::new(0));
            fetches.push((path, Arc::clone(&count)));
            router = router.route(
                path,
                axum::routing::get(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = body.clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            );
        }
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            fetches,
            _server: server,
        }
    }

    fn fetches(&self, path: &str) -> usize {
        self.fetches
            .iter()
            .find(|(served, _)| *served == path)
            .map_or(0, |(_, count)| count.load(Ordering::SeqCst))
    }

    /// What a protected route answers a token of `keys` naming this issuer: the status
    /// and the OperationOutcome issue code.
    async fn protected_answer(
        &self,
        keys: &TestIssuer,
        clock: &ManualClock,
    ) -> (StatusCode, String) {
        let layer = SmartAuthLayer::builder(&self.url)
            .audience(keys.audience())
            .clock(clock.clone())
            .build()
            .unwrap();
        let router = axum::Router::new()
            .route(
                "/fhir/Patient/{id}",
                axum::routing::get(|| async { "patient" }),
            )
            .layer(layer);
        let (app, server) = crate::support::serve(router).await;
        let token = keys.token().claim("iss", self.url.clone()).sign();
        let response = crate::support::loopback_client()
            .get(format!("{app}/fhir/Patient/1"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
        server.abort();
        (
            status,
            body["issue"][0]["code"].as_str().unwrap_or("").to_owned(),
        )
    }
}

const SMART: &str = "/.well-known/smart-configuration";
const OPENID: &str = "/.well-known/openid-configuration";
const OAUTH: &str = "/.well-known/oauth-authorization-server";

/// OpenID Connect Discovery (sections 3, 4.3) and RFC 8414 (sections 2, 3.3): `issuer`
/// is required in their metadata and must be the configured issuer, else the document
/// is not used. A document without it, or with `null`, a non-string, an empty string or
/// another issuer, is refused by the layer's key discovery (503, the keys never fetched,
/// discovery stops there) and by `SmartConfiguration::from_issuer` (`Missing { issuer }`
/// when absent, `IssuerMismatch` otherwise).
/// A location that answers with something that is no JSON object (a login page, an
/// array) has no document: discovery moves on to the next one. A document with a
/// repeated member still stops it.
#[tokio::test]
async fn a_location_without_a_json_document_moves_discovery_on() {
    let clock = ManualClock::new();
    let keys = issuer(&clock).await;
    let jwks_uri = keys.jwks_uri();
    // No JSON object, or (a legacy SMART configuration) a `jwks_uri` that is no absolute
    // URL: the document does not say where the keys are, and the next location is asked.
    for smart_body in [
        "<html>sign in</html>",
        "[]",
        "",
        "null",
        r#"{"jwks_uri":"/jwks.json"}"#,
        r#"{"jwks_uri":"jwks.json"}"#,
        r#"{"jwks_uri":""}"#,
    ] {
        let metadata = RawMetadata::start(|url| {
            vec![
                ("/.well-known/smart-configuration", smart_body.to_owned()),
                (
                    OPENID,
                    format!(r#"{{"issuer":"{url}","jwks_uri":"{jwks_uri}"}}"#),
                ),
            ]
        })
        .await;
        let (status, _) = metadata.protected_answer(&keys, &clock).await;
        assert_eq!(status, StatusCode::OK, "{smart_body:?}");
        assert_eq!(metadata.fetches(OPENID), 1, "{smart_body:?}");
    }
    let metadata = RawMetadata::start(|url| {
        vec![
            (
                "/.well-known/smart-configuration",
                format!(r#"{{"jwks_uri":"{jwks_uri}","jwks_uri":"{jwks_uri}"}}"#),
            ),
            (
                OPENID,
                format!(r#"{{"issuer":"{url}","jwks_uri":"{jwks_uri}"}}"#),
            ),
        ]
    })
    .await;
    let (status, _) = metadata.protected_answer(&keys, &clock).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(metadata.fetches(OPENID), 0);
}

#[tokio::test]
async fn openid_and_oauth_metadata_without_the_issuer_are_refused() {
    let clock = ManualClock::new();
    let keys = issuer(&clock).await;
    let jwks_uri = keys.jwks_uri();
    // `None`: no issuer member; otherwise the member's JSON text (`{url}` is the issuer).
    let issuer_members: [(Option<&str>, DiscoveryError); 7] = [
        (None, DiscoveryError::Missing { field: "issuer" }),
        (Some("null"), DiscoveryError::IssuerMismatch),
        (Some("7"), DiscoveryError::IssuerMismatch),
        (Some(r#"["{url}"]"#), DiscoveryError::IssuerMismatch),
        (Some(r#""""#), DiscoveryError::IssuerMismatch),
        (Some(r#""{url}/""#), DiscoveryError::IssuerMismatch),
        (
            Some(r#""https://evil.example""#),
            DiscoveryError::IssuerMismatch,
        ),
    ];
    for kind in [OPENID, OAUTH] {
        for (member, expected) in &issuer_members {
            let document = |url: &str| {
                let issuer = member
                    .map(|text| format!(r#""issuer":{},"#, text.replace("{url}", url)))
                    .unwrap_or_default();
                format!(
                    r#"{{{issuer}"jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token","grant_types_supported":["client_credentials"]}}"#
                )
            };
            let metadata = RawMetadata::start(|url| vec![(kind, document(url))]).await;
            let row = format!("{kind} issuer {member:?}");
            let (status, code) = metadata.protected_answer(&keys, &clock).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{row}");
            assert_eq!(code, "transient", "{row}");
            assert_eq!(
                smart_auth::discovery::SmartConfiguration::from_issuer(&metadata.url)
                    .await
                    .unwrap_err(),
                *expected,
                "{row}"
            );
            assert_eq!(
                metadata.fetches(kind),
                2,
                "{row}: read by both, used by neither"
            );
        }
    }
    assert_eq!(
        keys.jwks_fetches(),
        0,
        "no key set of a refused document is fetched"
    );

    // A refused OpenID document stops discovery: valid RFC 8414 metadata behind it is
    // never read.
    let metadata = RawMetadata::start(|url| {
        vec![
            (
                OPENID,
                format!(r#"{{"jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token"}}"#),
            ),
            (
                OAUTH,
                format!(
                    r#"{{"issuer":"{url}","jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token"}}"#
                ),
            ),
        ]
    })
    .await;
    assert_eq!(
        metadata.protected_answer(&keys, &clock).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(metadata.fetches(OPENID), 1);
    assert_eq!(metadata.fetches(OAUTH), 0);
    assert_eq!(keys.jwks_fetches(), 0);

    // The controls: each kind naming the issuer is used.
    for kind in [OPENID, OAUTH] {
        let metadata = RawMetadata::start(|url| {
            vec![(
                kind,
                format!(
                    r#"{{"issuer":"{url}","jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token"}}"#
                ),
            )]
        })
        .await;
        assert_eq!(
            metadata.protected_answer(&keys, &clock).await,
            (StatusCode::OK, String::new()),
            "{kind}"
        );
    }
}

/// SMART App Launch 2.x states `issuer` in the SMART configuration only with the
/// `sso-openid-connect` capability: there it may be absent. When present it must still be
/// the configured issuer as a string.
#[tokio::test]
async fn smart_configuration_may_omit_the_issuer_but_never_name_another() {
    let clock = ManualClock::new();
    let keys = issuer(&clock).await;
    let jwks_uri = keys.jwks_uri();
    let metadata = RawMetadata::start(|url| {
        vec![(
            SMART,
            format!(
                r#"{{"jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token","grant_types_supported":["client_credentials"],"capabilities":["client-confidential-asymmetric"],"token_endpoint_auth_methods_supported":["private_key_jwt"],"token_endpoint_auth_signing_alg_values_supported":["RS384"]}}"#
            ),
        )]
    })
    .await;
    assert_eq!(
        metadata.protected_answer(&keys, &clock).await,
        (StatusCode::OK, String::new())
    );
    let configuration = smart_auth::discovery::SmartConfiguration::from_issuer(&metadata.url)
        .await
        .unwrap();
    assert_eq!(configuration.issuer(), None);
    assert_eq!(metadata.fetches(OPENID), 0);
    let fetched = keys.jwks_fetches();
    assert_eq!(fetched, 1);

    for member in ["null", "7", "\"\"", "\"https://evil.example\"", "[]"] {
        let metadata = RawMetadata::start(|url| {
            vec![(
                SMART,
                format!(r#"{{"issuer":{member},"jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token"}}"#),
            )]
        })
        .await;
        assert_eq!(
            metadata.protected_answer(&keys, &clock).await,
            (StatusCode::SERVICE_UNAVAILABLE, "transient".to_owned()),
            "{member}"
        );
        assert_eq!(
            smart_auth::discovery::SmartConfiguration::from_issuer(&metadata.url)
                .await
                .unwrap_err(),
            DiscoveryError::IssuerMismatch,
            "{member}"
        );
        assert_eq!(metadata.fetches(OPENID), 0, "{member}: discovery stopped");
    }
    assert_eq!(keys.jwks_fetches(), fetched);
}

#[tokio::test]
async fn rotated_key_is_accepted_after_exactly_one_refetch() {
    let app = app(|b| b).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    assert_eq!(app.issuer.jwks_fetches(), 1);
    app.issuer.rotate_keys();
    let rotated = app.issuer.token().sign();
    assert_eq!(status(&app, &rotated).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 2);
    assert_eq!(status(&app, &rotated).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 2);
    let headers = app.issuer.last_jwks_request_headers();
    assert_eq!(
        headers.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-cache"),
        "a refetch bypasses caches"
    );
}

// On one thread: the cooldown's end is driven with tokio's paused time. The cooldown is an
// hour here (the longest allowed), so however slowly a loaded runner answers the 1,000
// requests, real time cannot end it and let a request wait for the hanging fetch.
#[tokio::test]
async fn unknown_kids_inside_the_cooldown_never_refetch_or_wait() {
    // Keys fresh for six hours: no refresh for their age when the cooldown ends.
    let policy = RefreshPolicy::default()
        .unknown_kid_cooldown(Duration::from_secs(3600))
        .default_ttl(Duration::from_secs(6 * 3600))
        .ttl_bounds(Duration::from_secs(60), Duration::from_secs(6 * 3600));
    let app = app(|b| b.refresh_policy(policy)).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    // The first unknown kid refetches once.
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-0").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 2);
    // From now on a fetch would hang: any request that waited for one would not come back.
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Delay(Duration::from_secs(3600)));
    let started = Instant::now();
    for batch in 0..20 {
        let tokens: Vec<String> = (0..50)
            .map(|i| app.issuer.token().kid(format!("random-{batch}-{i}")).sign())
            .collect();
        let answers = join_all(tokens.iter().map(|t| app.get_with_token(t))).await;
        for answer in answers {
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
            assert_eq!(
                answer.challenge.as_deref(),
                Some(
                    app.invalid_token_challenge("the token's signing key is not known")
                        .as_str()
                )
            );
        }
    }
    assert_eq!(
        app.issuer.jwks_fetches(),
        2,
        "no refetch inside the cooldown"
    );
    eprintln!(
        "1000 unknown-kid requests answered in {:?}",
        started.elapsed()
    );
    // Known keys keep working meanwhile.
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    // After the cooldown, one more refetch is allowed.
    app.issuer.set_jwks_behaviour(JwksBehaviour::Normal);
    pass_time(&app.clock, Duration::from_secs(3601)).await;
    assert_eq!(
        status(&app, &app.issuer.token().kid("unknown-1").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 3);
}

#[tokio::test]
async fn stale_keys_serve_while_the_issuer_is_down_until_max_stale() {
    let app = app(|b| b).await;
    let token = app
        .issuer
        .token()
        .lifetime(Duration::from_secs(3 * 86400))
        .sign();
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    app.issuer.set_jwks_behaviour(JwksBehaviour::Status(500));
    // Past the 10 min TTL: a background refresh fails, the cached keys keep working.
    pass_time(&app.clock, Duration::from_secs(11 * 60)).await;
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    // Past the 24 h max stale: no usable keys, 503.
    pass_time(&app.clock, Duration::from_secs(24 * 3600)).await;
    let answer = app.get_with_token(&token).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.issue_code(), "transient");
    // Inside the failure cooldown no new fetch starts: answered at once.
    let fetches = app.issuer.jwks_fetches();
    assert_eq!(status(&app, &token).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.issuer.jwks_fetches(), fetches);
    // The issuer recovers; after the cooldown the next request fetches again.
    app.issuer.set_jwks_behaviour(JwksBehaviour::Normal);
    pass_time(&app.clock, Duration::from_secs(11)).await;
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), fetches + 1);
}

#[tokio::test]
async fn cache_control_max_age_sets_the_ttl_within_bounds() {
    let app = app(|b| b).await;
    app.issuer
        .set_jwks_cache_control(Some("public, max-age=120"));
    let token = app
        .issuer
        .token()
        .lifetime(Duration::from_secs(86400))
        .sign();
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    pass_time(&app.clock, Duration::from_secs(100)).await;
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 1, "fresh for 120 s");
    pass_time(&app.clock, Duration::from_secs(21)).await;
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    wait_for_refresh(&app, 2).await;
    // max-age=0 is clamped to the 60 s minimum.
    app.issuer.set_jwks_cache_control(Some("max-age=0"));
    pass_time(&app.clock, Duration::from_secs(121)).await;
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    wait_for_refresh(&app, 3).await;
    pass_time(&app.clock, Duration::from_secs(50)).await;
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 3, "fresh for the 60 s minimum");
}

/// A background refresh runs on its own task; yield until it has been installed (30 s at
/// most).
async fn wait_for_refresh(app: &App, expected_fetches: usize) {
    let verifier = app.layer.issuers().iter().next().unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.issuer.jwks_fetches() < expected_fetches || verifier.key_cache_status().fetching {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the refresh did not end");
    assert_eq!(app.issuer.jwks_fetches(), expected_fetches);
    assert!(!verifier.key_cache_status().fetching);
}

#[tokio::test]
async fn slow_endpoint_is_cut_off_by_the_timeout() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    // The key set's URL configured: no discovery, so the one fetch the timeout can cut off
    // is the key set's. Two seconds leave a loaded runner time to deliver the request.
    let jwks_uri = issuer.jwks_uri();
    let app = app_with(issuer, clock, |b| {
        b.jwks_uri(jwks_uri).fetch_timeout(Duration::from_secs(2))
    })
    .await;
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Delay(Duration::from_secs(3600)));
    // Answered at all: the issuer would hold the fetch for an hour, past the test
    // client's own 30 s limit.
    let sent = Instant::now();
    let answer = app.get_with_token(&app.issuer.token().sign()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.challenge, None);
    assert_eq!(answer.issue_code(), "transient");
    // The default failure cooldown (10 s) starts with the cut-off fetch.
    assert_retry_after(answer.retry_after.as_deref(), 10, sent, "timeout");
    assert_eq!(
        app.issuer.jwks_fetches(),
        1,
        "the key-set fetch was cut off"
    );
    assert_eq!(app.issuer.smart_configuration_fetches(), 0);
    assert_eq!(app.issuer.openid_configuration_fetches(), 0);
}

#[tokio::test]
async fn oversized_key_set_is_refused_without_reading_it_all() {
    let app = app(|b| b).await;
    let total = 10 * 1024 * 1024;
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Oversized(total));
    let sent = Instant::now();
    let answer = app.get_with_token(&app.issuer.token().sign()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.challenge, None);
    assert_eq!(answer.issue_code(), "transient");
    assert_retry_after(answer.retry_after.as_deref(), 10, sent, "oversized");
    assert_eq!(app.issuer.jwks_fetches(), 1);
    let sent = app.issuer.jwks_bytes_sent();
    assert!(sent < total, "the issuer produced {sent} of {total} bytes");
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let app = app(|b| b).await;
    app.issuer.set_jwks_behaviour(JwksBehaviour::Redirect);
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.issuer.jwks_redirect_target_fetches(), 0);
}

#[tokio::test]
async fn injected_client_following_redirects_is_still_refused() {
    let client = crate::support::loopback_client_builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .unwrap();
    let app = app(|b| b.http_client(client)).await;
    app.issuer.set_jwks_behaviour(JwksBehaviour::Redirect);
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.issuer.jwks_redirect_target_fetches(),
        1,
        "the client followed, the layer refused the result"
    );
}

#[tokio::test]
async fn injected_client_is_used_for_every_fetch() {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-fetched-by", "injected-client".parse().unwrap());
    let client = crate::support::loopback_client_builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let app = app(|b| b.http_client(client)).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    let seen = app.issuer.last_jwks_request_headers();
    assert_eq!(
        seen.get("x-fetched-by").map(|v| v.to_str().unwrap()),
        Some("injected-client")
    );
}

#[tokio::test]
async fn one_unusable_key_does_not_spoil_the_set() {
    let app = app(|b| b).await;
    let mut keys = app.issuer.jwks();
    let list = keys["keys"].as_array_mut().unwrap();
    list.insert(
        0,
        json!({"kty": "AKP", "kid": "post-quantum", "alg": "ML-DSA-44", "pub": "AAAA"}),
    );
    list.insert(1, json!({"kty": "RSA", "kid": "encryption", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"}));
    list.insert(2, json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Body(keys.to_string()));
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
}

/// A key set and a discovery document that start with a UTF-8 byte order mark (static
/// files from some hosts do; RFC 8259 section 8.1 lets a parser ignore it) are read; a
/// second mark, or one inside, is still no JSON.
#[tokio::test]
async fn fetched_documents_may_start_with_a_byte_order_mark() {
    let app = app(|b| b).await;
    let keys = app.issuer.jwks().to_string();
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Body(format!("\u{feff}{keys}")));
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    for body in [
        format!("\u{feff}\u{feff}{keys}"),
        format!("{{\u{feff}{}", &keys[1..]),
    ] {
        let fresh = crate::support::app(|b| b).await;
        fresh.issuer.set_jwks_behaviour(JwksBehaviour::Body(body));
        assert_eq!(
            status(&fresh, &fresh.issuer.token().sign()).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

/// The same key listed twice in the issuer's set (GitHub Enterprise Server does; RFC 7517
/// makes distinct `kid`s only a SHOULD), once with and once without its `alg`, is one key:
/// its tokens verify. Two different keys under one `kid` are both tried: the signature
/// decides.
#[tokio::test]
async fn a_key_listed_twice_is_one_key() {
    let app = app(|b| b).await;
    let mut keys = app.issuer.jwks();
    let list = keys["keys"].as_array_mut().unwrap();
    let twins: Vec<Value> = list
        .iter()
        .map(|key| {
            let mut twin = key.clone();
            twin.as_object_mut().unwrap().remove("alg");
            twin
        })
        .collect();
    list.extend(twins);
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Body(keys.to_string()));
    for alg in SigningAlgorithm::DEFAULT {
        let token = app.issuer.token().alg(*alg).sign();
        assert_eq!(status(&app, &token).await, StatusCode::OK, "{alg}");
    }
    // A second key of the issuer's under the same kid (a rotation that reuses the name):
    // tokens signed by either verify, a forged one by neither.
    let fresh = crate::support::app(|b| b).await;
    // On the app's clock: a token it signs is never from the app's future.
    let other = TestIssuer::builder()
        .clock(fresh.clock.clone())
        .start()
        .await;
    let kid = fresh.issuer.current_kid(SigningAlgorithm::ES256);
    let mut second = crate::support::p256_jwk(&other);
    second["kid"] = json!(kid);
    let mut keys = fresh.issuer.jwks();
    keys["keys"].as_array_mut().unwrap().push(second);
    fresh
        .issuer
        .set_jwks_behaviour(JwksBehaviour::Body(keys.to_string()));
    let token = fresh.issuer.token().alg(SigningAlgorithm::ES256).sign();
    assert_eq!(status(&fresh, &token).await, StatusCode::OK);
    let by_second = signed_with_key_of(&other, &fresh, SigningAlgorithm::ES256, Some(&kid));
    assert_eq!(status(&fresh, &by_second).await, StatusCode::OK);
    let at = token.rfind('.').unwrap() + 5;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    fresh
        .assert_invalid_token(&forged, "the token's signature is not valid")
        .await;
    // Both tokens verified with the set fetched first; the forged one refetched once.
    assert_eq!(fresh.issuer.jwks_fetches(), 2);
}

/// A token naming a `kid` the cached set lacks, while the issuer's key set cannot be
/// fetched: the issuer may have rotated to it, so 503 with `Retry-After` (ask again later),
/// not 401 (which tells the client its token is bad). Inside the failure cooldown without a
/// fetch; once the issuer answers again, the new key is found.
// The cooldowns are 20 min and an hour here, so the real time a loaded runner takes
// between steps cannot end either early; `Retry-After` is checked allowing for that real
// time (`assert_retry_after`).
#[tokio::test]
async fn an_unknown_kid_while_keys_cannot_be_fetched_is_503() {
    let policy = RefreshPolicy::default()
        .failure_cooldown(Duration::from_secs(20 * 60))
        .unknown_kid_cooldown(Duration::from_secs(3600))
        // Keys fresh for six hours: no refresh for their age inside the cooldowns.
        .default_ttl(Duration::from_secs(6 * 3600))
        .ttl_bounds(Duration::from_secs(60), Duration::from_secs(6 * 3600));
    let app = app(|b| b.refresh_policy(policy)).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    app.issuer.set_jwks_behaviour(JwksBehaviour::Status(500));
    app.issuer.rotate_keys();
    let rotated = app
        .issuer
        .token()
        .lifetime(Duration::from_secs(3 * 3600))
        .sign();
    // No refetch for this kid starts before the unknown-kid cooldown ends (nor before the
    // failure cooldown): Retry-After says so, from the failed refetch on.
    let refetched = Instant::now();
    for request in 0..2 {
        let answer = app.get_with_token(&rotated).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert_eq!(answer.issue_code(), "transient");
        assert_eq!(answer.challenge, None);
        let context = format!("request {request}");
        assert_retry_after(answer.retry_after.as_deref(), 3600, refetched, &context);
    }
    assert_eq!(
        app.issuer.jwks_fetches(),
        2,
        "one refetch, then the cooldown"
    );
    // Past the failure cooldown, inside the unknown-kid one: no fetch, and since the last
    // fetch failed, still 503, until the unknown-kid cooldown ends.
    pass_time(&app.clock, Duration::from_secs(30 * 60)).await;
    let answer = app.get_with_token(&rotated).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.issue_code(), "transient");
    assert_retry_after(answer.retry_after.as_deref(), 1800, refetched, "30 min");
    assert_eq!(app.issuer.jwks_fetches(), 2);
    app.issuer.set_jwks_behaviour(JwksBehaviour::Normal);
    pass_time(&app.clock, Duration::from_secs(30 * 60)).await;
    assert_eq!(status(&app, &rotated).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 3);
}

#[tokio::test]
async fn garbage_key_sets_give_503_never_acceptance() {
    for body in [
        "<html>oops</html>",
        "{}",
        "{\"keys\": []}",
        "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}",
    ] {
        let app = app(|b| b).await;
        app.issuer
            .set_jwks_behaviour(JwksBehaviour::Body(body.to_owned()));
        assert_eq!(
            status(&app, &app.issuer.token().sign()).await,
            StatusCode::SERVICE_UNAVAILABLE,
            "{body}"
        );
    }
}

/// A well-formed key set without a usable key, published while keys are in use, withdraws
/// them: tokens signed with the old keys are refused as soon as it is fetched, not trusted
/// until the stale limit. Keys published again are used again.
#[tokio::test]
async fn an_issuer_withdraws_its_keys_with_a_set_without_usable_keys() {
    for withdrawn in [
        "{\"keys\": []}",
        "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}",
    ] {
        let app = app(|b| b).await;
        let token = app
            .issuer
            .token()
            .lifetime(Duration::from_secs(3600))
            .sign();
        assert_eq!(status(&app, &token).await, StatusCode::OK);
        assert_eq!(status(&app, &token).await, StatusCode::OK);
        app.issuer
            .set_jwks_behaviour(JwksBehaviour::Body(withdrawn.to_owned()));
        // Past the key set's TTL the next request starts the refresh (and is answered on
        // the keys in use); once it has ended, the withdrawn keys verify nothing.
        pass_time(&app.clock, Duration::from_secs(601)).await;
        assert_eq!(status(&app, &token).await, StatusCode::OK);
        settle(&app).await;
        assert_eq!(app.issuer.jwks_fetches(), 2, "{withdrawn}");
        app.assert_invalid_token(&token, "the token's signing key is not known")
            .await;
        // That refusal refetched the set for the unknown kid: the same bytes again, whose
        // parsed (empty) set is reused, and which still verifies nothing.
        assert_eq!(app.issuer.jwks_fetches(), 3, "{withdrawn}");
        app.assert_invalid_token(&token, "the token's signing key is not known")
            .await;
        // Published again: after the unknown-kid cooldown the keys are fetched and used.
        app.issuer.set_jwks_behaviour(JwksBehaviour::Normal);
        pass_time(&app.clock, Duration::from_secs(31)).await;
        assert_eq!(status(&app, &token).await, StatusCode::OK, "{withdrawn}");
    }
}

#[tokio::test]
async fn refresh_policy_is_configurable() {
    let policy = RefreshPolicy::default().unknown_kid_cooldown(Duration::from_secs(5));
    let app = app(|b| b.refresh_policy(policy)).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, &app.issuer.token().kid("a").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 2);
    pass_time(&app.clock, Duration::from_secs(6)).await;
    assert_eq!(
        status(&app, &app.issuer.token().kid("b").sign()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.issuer.jwks_fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_kid_misses_share_one_refetch() {
    const REQUESTS: usize = 50;
    let app = app(|b| b).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    app.issuer.rotate_keys();
    // The refetch is held until every request waits inside the layer.
    app.issuer.set_jwks_behaviour(JwksBehaviour::Gated);
    let rotated = app.issuer.token().sign();
    let requests = join_all((0..REQUESTS).map(|_| app.get_with_token(&rotated)));
    let release = async {
        app.wait_entered(1 + REQUESTS).await;
        wait_for_jwks_fetches(&app, 2).await;
        app.issuer.open_jwks_gate();
    };
    let (answers, ()) = tokio::join!(requests, release);
    assert!(
        answers.iter().all(|a| a.status == StatusCode::OK),
        "{:?}",
        answers.iter().find(|a| a.status != StatusCode::OK)
    );
    assert_eq!(app.issuer.jwks_fetches(), 2, "one refetch for all of them");
}

#[tokio::test]
async fn discovered_jwks_uri_must_be_https_or_loopback() {
    let app = app(|b| b).await;
    app.issuer
        .set_discovery_jwks_uri("http://keys.example.invalid/jwks.json");
    let answer = app.get_with_token(&app.issuer.token().sign()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.issuer.jwks_fetches(), 0);
}

/// A discovered `jwks_uri` with user info or a fragment is refused as a configured one is:
/// the credentials would be sent along as Basic authentication.
#[tokio::test]
async fn discovered_jwks_uri_carries_no_credentials_or_fragment() {
    for rewrite in [
        |url: &str| url.replacen("http://", "http://user:secret@", 1),
        |url: &str| url.replacen("http://", "http://user@", 1),
        |url: &str| format!("{url}#keys"),
    ] {
        let app = app(|b| b).await;
        let real = format!("{}/jwks.json", app.issuer.url());
        app.issuer.set_discovery_jwks_uri(&rewrite(&real));
        let answer = app.get_with_token(&app.issuer.token().sign()).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{real}");
        assert_eq!(app.issuer.jwks_fetches(), 0);
    }
}

/// Makes a JWK Set document from the real `keys` array and a function that writes the
/// set with a member inserted before each key's own.
type KeySetDocument = fn(&str, &dyn Fn(&str) -> String) -> String;

/// A JWK Set that names `keys` twice is refused whole, and a key that names a member twice
/// is skipped: a reader that keeps the last value (as a plain JSON parser does) would have
/// accepted every one of these, with keys other than the ones the first value names. Here
/// every key has a twin, so no key is left: before any set is in use, 503.
#[tokio::test]
async fn key_sets_with_duplicate_members_are_refused() {
    // Each issuer has its own keys: the documents are made from the app's issuer's set.
    let rows: [KeySetDocument; 5] = [
        // Two "keys" members, the real keys last.
        |real, _| format!(r#"{{"keys":[],"keys":{real}}}"#),
        // The same, spelled with an escape.
        |real, _| format!(r#"{{"keys":[],"\u006beys":{real}}}"#),
        // Inside each key: a decoy key id, use or type first, the real one last.
        |_, with_twin| with_twin(r#""kid":"decoy""#),
        |_, with_twin| with_twin(r#""use":"enc""#),
        |_, with_twin| with_twin(r#""kty":"oct""#),
    ];
    for (row, document) in rows.iter().enumerate() {
        let app = app(|b| b).await;
        let keys = app.issuer.jwks();
        let real = keys["keys"].to_string();
        // Every key of the set with `twin` written before its own members.
        let with_twin = |twin: &str| {
            let keys: Vec<String> = keys["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|key| format!("{{{twin},{}", &key.to_string()[1..]))
                .collect();
            format!(r#"{{"keys":[{}]}}"#, keys.join(","))
        };
        let body = document(&real, &with_twin);
        app.issuer
            .set_jwks_behaviour(JwksBehaviour::Body(body.clone()));
        let answer = app.get_with_token(&app.issuer.token().sign()).await;
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "row {row}: {body}"
        );
        assert_eq!(answer.challenge, None, "row {row}");
        assert_eq!(answer.issue_code(), "transient", "row {row}");
        assert_eq!(app.issuer.jwks_fetches(), 1, "row {row}");
        // The control: the same set without the twins is accepted.
        app.issuer
            .set_jwks_behaviour(JwksBehaviour::Body(format!(r#"{{"keys":{real}}}"#)));
        pass_time(&app.clock, Duration::from_secs(10)).await;
        assert_eq!(
            status(&app, &app.issuer.token().sign()).await,
            StatusCode::OK,
            "row {row}"
        );
    }
}

/// A key that names a member twice is skipped like any key that cannot be used (RFC 7517
/// sections 4 and 5), not the whole set: beside it the other keys verify, and a set whose
/// only keys have twins withdraws the keys in use.
#[tokio::test]
async fn a_key_naming_a_member_twice_is_skipped() {
    let app = app(|b| b).await;
    let keys = app.issuer.jwks();
    let real: Vec<String> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    // The first key again, with a `kid` written before its own.
    let decoy = format!(r#"{{"kid":"decoy",{}"#, &real[0][1..]);
    app.issuer.set_jwks_behaviour(JwksBehaviour::Body(format!(
        r#"{{"keys":[{decoy},{}]}}"#,
        real.join(",")
    )));
    let token = app
        .issuer
        .token()
        .lifetime(Duration::from_secs(3600))
        .sign();
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 1);
    // Rotation to a set whose keys all have twins: once fetched, the old keys are gone.
    let twinned: Vec<String> = real
        .iter()
        .map(|key| format!(r#"{{"use":"enc","use":"sig",{}"#, &key[1..]))
        .collect();
    app.issuer.set_jwks_behaviour(JwksBehaviour::Body(format!(
        r#"{{"keys":[{}]}}"#,
        twinned.join(",")
    )));
    pass_time(&app.clock, Duration::from_secs(601)).await;
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    settle(&app).await;
    assert_eq!(app.issuer.jwks_fetches(), 2);
    app.assert_invalid_token(&token, "the token's signing key is not known")
        .await;
}

/// An app whose layer trusts the issuer at `url` (which serves its own discovery) with the
/// audience of `keys`, and a token of `keys` naming that issuer.
async fn app_for_issuer_at(url: &str, keys: &TestIssuer, clock: &ManualClock) -> (App, String) {
    let layer = SmartAuthLayer::builder(url)
        .audience(keys.audience())
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = crate::support::app_with_layer(issuer(clock).await, clock.clone(), layer).await;
    let token = keys.token().claim("iss", url.to_owned()).sign();
    (app, token)
}

/// A discovery document served raw, for the issuer at the returned URL.
async fn raw_discovery(document: impl Fn(&str) -> String) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let body = document(&url);
    let router = axum::Router::new().route(
        "/.well-known/smart-configuration",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, server)
}

/// A SMART location that answers with a page larger than any metadata, or whose
/// connection breaks mid-answer, holds no document: discovery moves on to OpenID
/// Connect's, which names the keys. Every discovery request says `Cache-Control: no-cache`.
#[tokio::test]
async fn discovery_moves_on_past_oversized_or_broken_answers() {
    let clock = ManualClock::new();
    let keys = issuer(&clock).await;
    let jwks_uri = keys.jwks_uri();
    for broken in ["oversized", "dropped"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let document = format!(r#"{{"issuer":"{url}","jwks_uri":"{jwks_uri}"}}"#);
        let no_cache = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&no_cache);
        let smart = move || async move {
            let body = match broken {
                "oversized" => axum::body::Body::from(vec![b' '; 2 * 1024 * 1024]),
                _ => axum::body::Body::from_stream(futures_util::stream::iter([
                    Ok(bytes::Bytes::from_static(b"{\"issuer\":")),
                    Err(std::io::Error::other("connection dropped")),
                ])),
            };
            ([("content-type", "application/json")], body)
        };
        let openid = move |headers: axum::http::HeaderMap| {
            let document = document.clone();
            if headers
                .get("cache-control")
                .is_some_and(|v| v == "no-cache")
            {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            async move { ([("content-type", "application/json")], document) }
        };
        let router = axum::Router::new()
            .route(
                "/.well-known/smart-configuration",
                axum::routing::get(smart),
            )
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(openid),
            );
        let _server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let (app, token) = app_for_issuer_at(&url, &keys, &clock).await;
        assert_eq!(status(&app, &token).await, StatusCode::OK, "{broken}");
        assert_eq!(no_cache.load(Ordering::SeqCst), 1, "{broken}");
    }
    assert_eq!(keys.jwks_fetches(), 2);
}

/// Discovery documents from the issuer are refused when they name a member twice: for
/// the layer's key discovery (503, the keys never fetched) and for
/// `SmartConfiguration::from_issuer`.
#[tokio::test]
async fn discovery_documents_with_duplicate_members_are_refused() {
    let clock = ManualClock::new();
    let keys = issuer(&clock).await;
    let jwks_uri = keys.jwks_uri();
    let rows: [fn(&str, &str) -> String; 3] = [
        |url, jwks_uri| {
            format!(
                r#"{{"issuer":"{url}","jwks_uri":"https://keys.example/none","jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token"}}"#
            )
        },
        |url, jwks_uri| {
            format!(
                r#"{{"issuer":"https://other.example","issuer":"{url}","jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token"}}"#
            )
        },
        |url, jwks_uri| {
            format!(
                r#"{{"issuer":"{url}","jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token","capabilities":[],"c\u0061pabilities":["launch-ehr"]}}"#
            )
        },
    ];
    for (row, document) in rows.iter().enumerate() {
        let (url, _server) = raw_discovery(|url| document(url, &jwks_uri)).await;
        let (app, token) = app_for_issuer_at(&url, &keys, &clock).await;
        let answer = app.get_with_token(&token).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "row {row}");
        assert_eq!(answer.issue_code(), "transient", "row {row}");
        let error = smart_auth::discovery::SmartConfiguration::from_issuer(&url)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "fetching the issuer's metadata failed: \
             response is a JSON object that names a member twice",
            "row {row}"
        );
    }
    assert_eq!(
        keys.jwks_fetches(),
        0,
        "no key set named by such a document is fetched"
    );
    // The control: the first row without its twin works.
    let (url, _server) = raw_discovery(|url| {
        format!(r#"{{"issuer":"{url}","jwks_uri":"{jwks_uri}","token_endpoint":"{url}/token"}}"#)
    })
    .await;
    let (app, token) = app_for_issuer_at(&url, &keys, &clock).await;
    assert_eq!(app.get_with_token(&token).await.status, StatusCode::OK);
}

/// The backend-service client reads its token endpoint from the FHIR server's SMART
/// configuration: a document that names a member twice is refused there too.
#[tokio::test]
async fn the_client_refuses_a_configuration_with_duplicate_members() {
    use smart_auth::client::BackendServiceClient;
    let (url, _server) = raw_discovery(|url| {
        format!(
            r#"{{"token_endpoint":"https://elsewhere.example/token","token_endpoint":"{url}/token"}}"#
        )
    })
    .await;
    let client = BackendServiceClient::builder(url.clone())
        .client_id("c")
        .client_secret_basic("s")
        .scope("system/Patient.rs")
        .build()
        .unwrap();
    assert_eq!(
        client.token_endpoint().await.unwrap_err().to_string(),
        "discovering the token endpoint failed: the SMART configuration: \
         response is a JSON object that names a member twice"
    );
    let (url, _server) =
        raw_discovery(|url| format!(r#"{{"token_endpoint":"{url}/token"}}"#)).await;
    let client = BackendServiceClient::builder(url.clone())
        .client_id("c")
        .client_secret_basic("s")
        .scope("system/Patient.rs")
        .build()
        .unwrap();
    assert_eq!(
        client.token_endpoint().await.unwrap(),
        format!("{url}/token")
    );
}

/// An issuer may put another key under a `kid` it used before (RFC 7517 section 4.5 does
/// not tie a `kid` to one key), after a compromise say. A token whose signature fails with
/// the cached key of its `kid` makes one refetch (inside the unknown-`kid` cooldown, so a
/// flood of bad signatures costs no more than a flood of unknown `kid`s): the new key
/// verifies tokens signed with it, and tokens of the old key, cached ones included, are
/// refused from then on.
#[tokio::test]
async fn a_key_replaced_under_its_kid_is_fetched_again() {
    let app = app(|b| b).await;
    let alg = SigningAlgorithm::ES256;
    let old = app.issuer.token().alg(alg).sign();
    for _ in 0..2 {
        assert_eq!(status(&app, &old).await, StatusCode::OK, "cached");
    }
    assert_eq!(app.issuer.jwks_fetches(), 1);
    // The issuer now publishes another P-256 key under the same kid.
    let kid = app.issuer.current_kid(alg);
    let other = TestIssuer::builder().clock(app.clock.clone()).start().await;
    let mut replacement = crate::support::p256_jwk(&other);
    replacement["kid"] = json!(kid);
    app.issuer.set_jwks_behaviour(JwksBehaviour::Body(
        json!({"keys": [replacement]}).to_string(),
    ));
    let new = signed_with_key_of(&other, &app, alg, Some(&kid));
    assert_eq!(status(&app, &new).await, StatusCode::OK, "the new key");
    assert_eq!(app.issuer.jwks_fetches(), 2, "one refetch");
    // The old key's token, cached before: refused, without another fetch.
    app.assert_invalid_token(&old, "the token's signature is not valid")
        .await;
    assert_eq!(app.issuer.jwks_fetches(), 2, "inside the cooldown");
    // A bad signature under the same kid, inside the cooldown: refused, no fetch.
    // One character inside the signature changed (the last one may carry padding bits,
    // which would make the token malformed rather than forged).
    let at = new.rfind('.').unwrap() + 5;
    let swapped = if &new[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{swapped}{}", &new[..at], &new[at + 1..]);
    app.assert_invalid_token(&forged, "the token's signature is not valid")
        .await;
    assert_eq!(app.issuer.jwks_fetches(), 2);
}

/// A signature that cannot be one of its algorithm's (not base64url, or of another length
/// than the algorithm's: ECDSA in DER, a truncated Ed25519 signature, an RSA signature too
/// short for any accepted modulus) makes a malformed token: refused before any key is looked
/// up, so neither an unknown `kid` nor a known one starts a refetch or a rediscovery.
#[tokio::test]
async fn malformed_signatures_never_start_a_fetch() {
    let app = warm_app().await;
    let b64 = |length: usize| URL_SAFE_NO_PAD.encode(vec![7u8; length]);
    let mut malformed = Vec::new();
    for (alg, signature) in [
        (SigningAlgorithm::ES256, b64(70)),
        (SigningAlgorithm::ES256, b64(63)),
        (SigningAlgorithm::ES256, b64(65)),
        (SigningAlgorithm::ES384, b64(64)),
        (SigningAlgorithm::EdDSA, b64(32)),
        (SigningAlgorithm::RS256, b64(128)),
        (SigningAlgorithm::RS256, b64(1025)),
        (SigningAlgorithm::RS256, "ab+/".to_owned()),
        (SigningAlgorithm::PS256, String::new()),
    ] {
        for token in known_and_unknown_kid(&app, alg) {
            let cut = token.rfind('.').unwrap();
            malformed.push(format!("{}.{signature}", &token[..cut]));
        }
    }
    assert_malformed_without_fetches(&app, &malformed).await;
}

/// A payload segment that is not base64url, yet allowed in a bearer token (RFC 6750's
/// `b64token`: a fourth segment's dot, the standard alphabet's `+` and `/`, `~`, a length no
/// encoding has, bits after the last byte) makes a malformed token: refused before the
/// header is read and before any key is looked up, so an unknown `kid` starts no refetch
/// and no rediscovery. (Padding inside the token and other characters are refused as
/// malformed credentials before the verifier, 400.) So do four and five segments whose
/// signature is valid over all but the last: the dots sit in the payload segment.
#[tokio::test]
async fn malformed_payloads_never_start_a_fetch() {
    let app = warm_app().await;
    let valid = URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#);
    let mut malformed = Vec::new();
    for payload in [
        format!("{valid}.{valid}"),
        format!("{valid}."),
        format!(".{valid}"),
        "ab+/".to_owned(),
        format!("{valid}AA"),
        "Zh".to_owned(),
        "Zm9".to_owned(),
        format!("{valid}~"),
        format!("~{valid}"),
    ] {
        for token in known_and_unknown_kid(&app, SigningAlgorithm::ES256) {
            let (header, rest) = token.split_once('.').unwrap();
            let signature = &rest[rest.rfind('.').unwrap() + 1..];
            malformed.push(format!("{header}.{payload}.{signature}"));
        }
    }
    for token in known_and_unknown_kid(&app, SigningAlgorithm::ES256) {
        let mut segments = token.split('.');
        let (header, payload) = (segments.next().unwrap(), segments.next().unwrap());
        for signing_input in [
            format!("{header}.{payload}.{payload}"),
            format!("{header}.{payload}.{header}.{payload}"),
        ] {
            malformed.push(
                app.issuer
                    .sign_signing_input(SigningAlgorithm::ES256, &signing_input),
            );
        }
    }
    assert_malformed_without_fetches(&app, &malformed).await;
}

/// An app whose keys are fetched: one token verified, one key-set fetch.
async fn warm_app() -> App {
    let app = app(|b| b).await;
    assert_eq!(
        status(&app, &app.issuer.token().sign()).await,
        StatusCode::OK
    );
    assert_eq!(app.issuer.jwks_fetches(), 1);
    app
}

/// The issuer's token signed with `alg`, once under its own `kid` and once under a `kid`
/// no key has.
fn known_and_unknown_kid(app: &App, alg: SigningAlgorithm) -> [String; 2] {
    [
        app.issuer.token().alg(alg).sign(),
        app.issuer.token().alg(alg).kid("a-kid-no-key-has").sign(),
    ]
}

/// Each token is refused as malformed, and none starts a key-set fetch or a discovery.
async fn assert_malformed_without_fetches(app: &App, tokens: &[String]) {
    let discoveries = app.issuer.smart_configuration_fetches();
    for token in tokens {
        app.assert_invalid_token(token, "the access token is malformed")
            .await;
    }
    assert_eq!(app.issuer.jwks_fetches(), 1, "no refetch");
    assert_eq!(
        app.issuer.smart_configuration_fetches(),
        discoveries,
        "no rediscovery"
    );
}

/// The key set's location is discovered again when the one in use fails in any way (an
/// error page is no key set either), and when a token names a `kid` the set lacks: the
/// issuer may now publish its keys elsewhere, the old location still serving the old set.
#[tokio::test]
async fn the_key_set_location_is_discovered_again() {
    /// A fresh token is answered 200, and any refresh it starts has ended: how many times
    /// the new location was asked by then.
    async fn fresh_token_passes(app: &App) -> usize {
        assert_eq!(
            status(app, &app.issuer.token().sign()).await,
            StatusCode::OK
        );
        settle(app).await;
        app.issuer.jwks_redirect_target_fetches()
    }
    let moved = |app: &App| format!("{}/jwks-copy.json", app.issuer.url());

    // An unknown kid while the metadata names a new location.
    let app = app(|b| b).await;
    fresh_token_passes(&app).await;
    let old_keys = app.issuer.jwks().to_string();
    app.issuer.set_jwks_behaviour(JwksBehaviour::Body(old_keys));
    app.issuer.rotate_keys();
    app.issuer.set_discovery_jwks_uri(&moved(&app));
    assert_eq!(
        fresh_token_passes(&app).await,
        1,
        "the new kid, from the new location"
    );

    // An error page where the keys were: once the failure cooldown ends, the next fetch
    // finds the new location; the stale keys serve meanwhile.
    let app = crate::support::app(|b| b).await;
    fresh_token_passes(&app).await;
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Body("<html>moved</html>".into()));
    app.issuer.set_discovery_jwks_uri(&moved(&app));
    pass_time(&app.clock, Duration::from_secs(11 * 60)).await;
    assert_eq!(fresh_token_passes(&app).await, 0, "the refresh failed");
    pass_time(&app.clock, Duration::from_secs(11)).await;
    assert_eq!(fresh_token_passes(&app).await, 1, "discovered again");
}

/// A background refresh that hangs never holds requests: with the key set past its TTL
/// and the issuer's key server not answering, every request with a known key is answered
/// at once on the keys in use, while the one refresh is still running.
#[tokio::test]
async fn a_hanging_refresh_never_holds_requests() {
    let app = app(|b| b.fetch_timeout(Duration::from_secs(60))).await;
    let token = app
        .issuer
        .token()
        .lifetime(Duration::from_secs(3600))
        .sign();
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    app.issuer
        .set_jwks_behaviour(JwksBehaviour::Delay(Duration::from_secs(3600)));
    pass_time(&app.clock, Duration::from_secs(601)).await;
    // This request starts the refresh; wait until the key server holds it.
    assert_eq!(status(&app, &token).await, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.issuer.jwks_fetches() < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the refresh reached the key server");
    // Distinct tokens, so that the token cache cannot answer for them.
    let tokens: Vec<String> = (0..100)
        .map(|n| {
            app.issuer
                .token()
                .claim("jti", format!("hang-{n}"))
                .lifetime(Duration::from_secs(3600))
                .sign()
        })
        .collect();
    // Within the fetch timeout (60 s), so the refresh is still running at the end.
    let answers = tokio::time::timeout(
        Duration::from_secs(50),
        join_all(tokens.iter().map(|token| status(&app, token))),
    )
    .await
    .expect("requests waited for the refresh");
    assert!(answers.iter().all(|status| *status == StatusCode::OK));
    let verifier = app.layer.issuers().iter().next().unwrap();
    assert!(
        verifier.key_cache_status().fetching,
        "the refresh still runs"
    );
    assert_eq!(app.issuer.jwks_fetches(), 2);
}

/// A token signed with `other`'s key for `alg` that names `app`'s issuer and audience, with
/// `kid` (none for `None`): what `app`'s issuer signs once it has taken `other`'s key.
fn signed_with_key_of(
    other: &TestIssuer,
    app: &App,
    alg: SigningAlgorithm,
    kid: Option<&str>,
) -> String {
    let token = other
        .token()
        .alg(alg)
        .claim("iss", app.issuer.url())
        .audience(app.issuer.audience());
    match kid {
        Some(kid) => token.kid(kid),
        None => token.no_kid(),
    }
    .sign()
}

/// An issuer that names no keys (AD FS) rotates its key: a token without `kid` whose
/// signature fails with the cached key makes one refetch, inside the unknown-`kid`
/// cooldown, as a token naming a replaced `kid` does. Before, its tokens were refused until
/// the key set's TTL ran out.
#[tokio::test]
async fn an_issuer_without_kids_rotates_its_key() {
    let app = app(|b| b).await;
    let alg = SigningAlgorithm::ES256;
    let without_kid = |issuer: &TestIssuer| {
        let mut key = crate::support::jwk_on_curve(issuer, "P-256");
        key.as_object_mut().unwrap().remove("kid");
        JwksBehaviour::Body(json!({ "keys": [key] }).to_string())
    };
    app.issuer.set_jwks_behaviour(without_kid(&app.issuer));
    let old = app.issuer.token().alg(alg).no_kid().sign();
    assert_eq!(status(&app, &old).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 1);
    let other = TestIssuer::builder().clock(app.clock.clone()).start().await;
    app.issuer.set_jwks_behaviour(without_kid(&other));
    let new = signed_with_key_of(&other, &app, alg, None);
    assert_eq!(status(&app, &new).await, StatusCode::OK, "the new key");
    assert_eq!(app.issuer.jwks_fetches(), 2, "one refetch");
    // The old key's token: refused, inside the cooldown without a fetch.
    app.assert_invalid_token(&old, "the token's signature is not valid")
        .await;
    assert_eq!(app.issuer.jwks_fetches(), 2);
}

/// An issuer puts a key of another type under a `kid` it used before: a token naming that
/// `kid` with an algorithm the cached key may not verify makes one refetch (inside the
/// unknown-`kid` cooldown) instead of being refused until the key set's TTL ran out. Inside
/// the cooldown, such a token is refused without a fetch.
#[tokio::test]
async fn a_kid_reused_for_another_key_type_is_fetched_again() {
    let app = app(|b| b).await;
    let old = app.issuer.token().alg(SigningAlgorithm::ES256).sign();
    assert_eq!(status(&app, &old).await, StatusCode::OK);
    assert_eq!(app.issuer.jwks_fetches(), 1);
    let kid = app.issuer.current_kid(SigningAlgorithm::ES256);
    let other = TestIssuer::builder().clock(app.clock.clone()).start().await;
    let mut replacement = crate::support::jwk_on_curve(&other, "Ed25519");
    replacement["kid"] = json!(kid);
    app.issuer.set_jwks_behaviour(JwksBehaviour::Body(
        json!({ "keys": [replacement] }).to_string(),
    ));
    let new = signed_with_key_of(&other, &app, SigningAlgorithm::EdDSA, Some(&kid));
    assert_eq!(status(&app, &new).await, StatusCode::OK, "the new key");
    assert_eq!(app.issuer.jwks_fetches(), 2, "one refetch");
    // The old token names the kid with ES256, which the new key may not verify.
    app.assert_invalid_token(&old, "the token's signing algorithm is not accepted")
        .await;
    assert_eq!(app.issuer.jwks_fetches(), 2, "inside the cooldown");
}

/// A tracing layer that panics on the event of an installed key set: a hook with a bug
/// that runs after the keys are in.
struct PanicsOnInstall;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for PanicsOnInstall {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut message = String::new();
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                if field.name() == "message" {
                    message = format!("{value:?}");
                }
            },
        );
        assert!(
            !message.contains("installed a fresh key set"),
            "a layer with a bug"
        );
    }
}

/// A key fetch whose task panics after its keys are installed hands its waiter the keys:
/// the token verifies, and no cooldown starts. (One thread: the subscriber set here sees
/// the fetch task's events.)
#[tokio::test]
async fn a_fetch_task_that_panics_after_installing_hands_over_the_keys() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let issuer = TestIssuer::start().await;
    let verifier = smart_auth::TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .build()
        .unwrap();
    let _panicking =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(PanicsOnInstall));
    let token = issuer.token().sign();
    let verified = verifier.verify(&token).await;
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(issuer.jwks_fetches(), 1);
}

/// A clock that panics when read inside a spawned task (the key fetch's), as a custom
/// clock or metrics recorder with a bug would: the request path, run by the test itself
/// outside any task, reads it freely.
#[derive(Debug)]
struct PanicsInTasks(ManualClock);

impl smart_auth::Clock for PanicsInTasks {
    fn now(&self) -> std::time::SystemTime {
        assert!(
            tokio::task::try_id().is_none(),
            "a clock that fails inside the key fetch task"
        );
        smart_auth::Clock::now(&self.0)
    }
}

/// A key fetch whose task ends in a panic counts as a failed fetch: its waiters get 503,
/// and the failure cooldown keeps the next request from starting another at once (the
/// task's panic left no cooldown, so every request fetched again).
#[tokio::test]
async fn a_fetch_task_that_panics_starts_the_cooldown() {
    let issuer = TestIssuer::start().await;
    let verifier = smart_auth::TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .clock(PanicsInTasks(ManualClock::new()))
        .build()
        .unwrap();
    let token = issuer.token().sign();
    let error = verifier.verify(&token).await.unwrap_err();
    assert_eq!(error.kind(), smart_auth::ErrorKind::KeysUnavailable);
    let fetches = (issuer.smart_configuration_fetches(), issuer.jwks_fetches());
    assert_ne!(fetches, (0, 0), "the task fetched before it failed");
    for _ in 0..3 {
        let error = verifier.verify(&token).await.unwrap_err();
        assert_eq!(error.kind(), smart_auth::ErrorKind::KeysUnavailable);
    }
    assert_eq!(
        (issuer.smart_configuration_fetches(), issuer.jwks_fetches()),
        fetches,
        "the cooldown answers, without a fetch"
    );
}

/// A key set a cache in between served stale (its `Age` past its lifetime) is usable only
/// for what is left of `max_stale` (RFC 9111 section 4.2.3: the time it was stale counts
/// too), and a token the token cache keeps stops being answered from it then too: the
/// token cache never relies on a key set longer than the key cache would.
#[tokio::test]
async fn a_cached_token_lasts_no_longer_than_a_stale_key_set() {
    use axum::response::IntoResponse as _;
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let jwks = issuer.jwks();
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    // The origin is gone after the first fetch; the first answer is a copy 86,930 s old
    // without a stated lifetime: 86,330 s past the default 600 s TTL, so 70 s are left of
    // the default 24 h `max_stale` (more than the minimum TTL, 60 s: taken).
    let router = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    ([("age", "86930")], axum::Json(jwks)).into_response()
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }),
    );
    let (url, _server) = crate::support::serve(router).await;
    let verifier = smart_auth::TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .jwks_uri(format!("{url}/keys"))
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = issuer.token().sign();
    for _ in 0..3 {
        assert!(verifier.verify(&token).await.is_ok());
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    pass_time(&clock, Duration::from_secs(65)).await;
    assert!(verifier.verify(&token).await.is_ok(), "5 s left");
    pass_time(&clock, Duration::from_secs(10)).await;
    let refused = |result: Result<smart_auth::SmartClaims, smart_auth::AuthError>| {
        result.err().map(|error| error.kind())
    };
    assert_eq!(
        refused(
            verifier
                .verify(&issuer.token().claim("jti", "new").sign())
                .await
        ),
        Some(smart_auth::ErrorKind::KeysUnavailable),
        "the key set is past max_stale"
    );
    assert_eq!(
        refused(verifier.verify(&token).await),
        Some(smart_auth::ErrorKind::KeysUnavailable),
        "the cached token too"
    );
}
