//! The development server's state is bounded: tokens, HTTP-registered clients and seen
//! assertion ids expire and are capped; clients' `jwks_uri` key sets are cached.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::ManualClock;
use smart_auth::SigningAlgorithm;
use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
use smart_auth::testing::{JwksBehaviour, TestIssuer};

use crate::dev_server::{ASSERTION_TYPE, FHIR};

const NOW: u64 = 1_800_000_000;

async fn post(
    http: &reqwest::Client,
    request: reqwest::RequestBuilder,
) -> (StatusCode, Option<String>, Value) {
    let _ = http;
    let response = request.send().await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, retry_after, body)
}

fn token_request(http: &reqwest::Client, server: &DevAuthServer) -> reqwest::RequestBuilder {
    token_request_as(http, server, "c", "s")
}

/// A token request for `system/Patient.rs`, authenticated with Basic credentials.
fn token_request_as(
    http: &reqwest::Client,
    server: &DevAuthServer,
    client_id: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    http.post(server.token_endpoint())
        .basic_auth(client_id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=system%2FPatient.rs")
}

/// A server on `clock` holding `max_tokens` tokens, at most `per_client` for one client,
/// with the client `c` (secret `s`) registered in code.
async fn server_with_quota(
    clock: &ManualClock,
    max_tokens: usize,
    per_client: usize,
) -> DevAuthServer {
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .max_tokens(max_tokens)
        .max_tokens_per_client(per_client)
        .start()
        .await
        .unwrap();
    server.register(ClientRegistration::client_secret_basic(
        "c",
        "s",
        ["system/*.rs"],
    ));
    server
}

/// Over the token cap the token endpoint answers 503 with `Retry-After` (the earliest
/// expiry); once tokens expire there is room again, and the store never grows past it.
#[tokio::test]
async fn issued_tokens_are_capped_and_expire() {
    let clock = ManualClock::at_unix(NOW);
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .max_tokens(2)
        .start()
        .await
        .unwrap();
    server.register(ClientRegistration::client_secret_basic(
        "c",
        "s",
        ["system/*.rs"],
    ));
    let http = crate::support::loopback_client();
    let (status, _, first) = post(&http, token_request(&http, &server)).await;
    assert_eq!(status, StatusCode::OK);
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        post(&http, token_request(&http, &server)).await.0,
        StatusCode::OK
    );
    let (status, retry_after, body) = post(&http, token_request(&http, &server)).await;
    assert_eq!(
        (status, retry_after.as_deref(), body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("200"),
            Some("temporarily_unavailable")
        )
    );
    assert_eq!(server.stored_tokens(), 2);
    // The first token expires: room for one more.
    clock.advance(Duration::from_secs(200));
    assert_eq!(
        post(&http, token_request(&http, &server)).await.0,
        StatusCode::OK
    );
    assert_eq!(server.stored_tokens(), 2);
    assert!(!server.revoke(first["access_token"].as_str().unwrap()));
    assert_eq!(
        post(&http, token_request(&http, &server)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// One client holds at most its share of the token store: past it, that client's token
/// requests get 503 with `Retry-After` (when its own earliest token expires), while another
/// client is still served; a revoked or expired token gives the client its room back.
#[tokio::test]
async fn one_client_cannot_fill_the_token_store() {
    let clock = ManualClock::at_unix(NOW);
    let server = server_with_quota(&clock, 10, 2).await;
    server.register(ClientRegistration::client_secret_basic(
        "d",
        "s",
        ["system/*.rs"],
    ));
    let http = crate::support::loopback_client();
    let request = |client: &str| token_request_as(&http, &server, client, "s");
    let (status, _, first) = post(&http, request("c")).await;
    assert_eq!(status, StatusCode::OK);
    clock.advance(Duration::from_secs(100));
    assert_eq!(post(&http, request("c")).await.0, StatusCode::OK);
    let (status, retry_after, body) = post(&http, request("c")).await;
    assert_eq!(
        (status, retry_after.as_deref(), body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("200"),
            Some("temporarily_unavailable")
        ),
        "c at its quota"
    );
    assert_eq!(
        post(&http, request("d")).await.0,
        StatusCode::OK,
        "d is served"
    );
    assert_eq!(server.stored_tokens(), 3);
    // A revoked token gives c its room back.
    assert!(server.revoke(first["access_token"].as_str().unwrap()));
    assert_eq!(post(&http, request("c")).await.0, StatusCode::OK);
}

/// Anyone may register clients over HTTP, so they hold one share of the token store
/// between them, not one each: registering many cannot fill the store for the clients
/// registered in code.
#[tokio::test]
async fn clients_registered_over_http_share_one_quota() {
    let clock = ManualClock::at_unix(NOW);
    let server = server_with_quota(&clock, 6, 3).await;
    let http = crate::support::loopback_client();
    let request =
        |client_id: &str, secret: &str| token_request_as(&http, &server, client_id, secret);
    let mut registered = Vec::new();
    for _ in 0..3 {
        let (status, _, client) = register(&http, &server).await;
        assert_eq!(status, StatusCode::CREATED);
        registered.push((
            client["client_id"].as_str().unwrap().to_owned(),
            client["client_secret"].as_str().unwrap().to_owned(),
        ));
    }
    let (first_id, first_secret) = &registered[0];
    for _ in 0..2 {
        assert_eq!(
            post(&http, request(first_id, first_secret)).await.0,
            StatusCode::OK
        );
    }
    let (second_id, second_secret) = &registered[1];
    assert_eq!(
        post(&http, request(second_id, second_secret)).await.0,
        StatusCode::OK
    );
    // The share of all HTTP-registered clients (3) is used up, whichever asks.
    for (client_id, secret) in &registered {
        let (status, _, body) = post(&http, request(client_id, secret)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable")
            )
        );
    }
    // The client registered in code keeps its own share.
    for _ in 0..3 {
        assert_eq!(post(&http, request("c", "s")).await.0, StatusCode::OK);
    }
    assert_eq!(server.stored_tokens(), 6);
}

async fn register(
    http: &reqwest::Client,
    server: &DevAuthServer,
) -> (StatusCode, Option<String>, Value) {
    post(
        http,
        http.post(format!("{}/register", server.url())).json(
            &json!({"scope": "system/*.rs", "token_endpoint_auth_method": "client_secret_basic"}),
        ),
    )
    .await
}

/// Clients registered over HTTP expire (their secret says when) and are capped; code
/// registrations are not counted.
#[tokio::test]
async fn registered_clients_are_capped_and_expire() {
    let clock = ManualClock::at_unix(NOW);
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .max_clients(2)
        .client_lifetime(Duration::from_secs(1000))
        .start()
        .await
        .unwrap();
    server.register(ClientRegistration::client_secret_basic(
        "c",
        "s",
        ["system/*.rs"],
    ));
    let http = crate::support::loopback_client();
    let (status, _, first) = register(&http, &server).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(first["client_secret_expires_at"], json!(NOW + 1000));
    assert_eq!(first["client_id_issued_at"], json!(NOW));
    clock.advance(Duration::from_secs(10));
    assert_eq!(register(&http, &server).await.0, StatusCode::CREATED);
    let (status, retry_after, body) = register(&http, &server).await;
    assert_eq!(
        (status, retry_after.as_deref(), body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("990"),
            Some("temporarily_unavailable")
        )
    );
    // The first client works until its registration expires, then not at all.
    let first_token = |http: &reqwest::Client| {
        http.post(server.token_endpoint())
            .basic_auth(
                first["client_id"].as_str().unwrap(),
                first["client_secret"].as_str(),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=system%2FPatient.rs")
    };
    assert_eq!(post(&http, first_token(&http)).await.0, StatusCode::OK);
    clock.advance(Duration::from_secs(990));
    let (status, _, body) = post(&http, first_token(&http)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert_eq!(register(&http, &server).await.0, StatusCode::CREATED);
    // The code-registered client is unaffected by expiry and by the cap.
    assert_eq!(
        post(&http, token_request(&http, &server)).await.0,
        StatusCode::OK
    );
}

/// A `private_key_jwt` client assertion of `client` for `token_endpoint`, signed ES256 by
/// `signer`'s key, valid for 120 s.
fn client_assertion<'a>(
    signer: &'a TestIssuer,
    client: &str,
    token_endpoint: &str,
) -> smart_auth::testing::TokenBuilder<'a> {
    signer
        .token()
        .alg(SigningAlgorithm::ES256)
        .header("typ", "JWT")
        .claim("iss", client)
        .claim("sub", client)
        .claim("aud", token_endpoint)
        .without("client_id")
        .without("scope")
        .expires_in_secs(120)
}

fn assertion_form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&scope=system%2FPatient.rs&client_assertion_type={}&client_assertion={assertion}",
        ASSERTION_TYPE.replace(':', "%3A")
    )
}

/// Seen assertion ids are kept until their assertion expires, and capped: beyond the cap
/// new assertions are refused (503), never accepted without a replay check.
#[tokio::test]
async fn seen_assertion_ids_are_capped_and_expire() {
    let clock = ManualClock::at_unix(NOW);
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .max_seen_assertions(2)
        .start()
        .await
        .unwrap();
    let keys = TestIssuer::builder().clock(clock.clone()).start().await;
    server.register(
        ClientRegistration::private_key_jwt("backend", keys.jwks(), ["system/*.rs"]).unwrap(),
    );
    let http = crate::support::loopback_client();
    let assertion = |lifetime: i64| {
        client_assertion(&keys, "backend", server.token_endpoint())
            .expires_in_secs(lifetime)
            .sign()
    };
    let send = |assertion: String| {
        post(
            &http,
            http.post(server.token_endpoint())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(assertion_form(&assertion)),
        )
    };
    let replayed = assertion(60);
    assert_eq!(send(replayed.clone()).await.0, StatusCode::OK);
    assert_eq!(send(assertion(120)).await.0, StatusCode::OK);
    let (status, retry_after, body) = send(assertion(120)).await;
    assert_eq!(
        (status, retry_after.as_deref(), body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("60"),
            Some("temporarily_unavailable")
        )
    );
    // The replay is still refused as a replay while the cache is full.
    let (status, _, body) = send(replayed.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_client"))
    );
    // Once the first assertion expires, its id makes room; the replay is refused as
    // expired.
    clock.advance(Duration::from_secs(60));
    assert_eq!(send(assertion(120)).await.0, StatusCode::OK);
    assert_eq!(send(replayed).await.0, StatusCode::BAD_REQUEST);
}

/// One client's assertions fill at most its share of the replay store: beyond it that
/// client is answered 503, and another client's assertions are still accepted.
#[tokio::test]
async fn one_client_cannot_fill_the_replay_store() {
    let clock = ManualClock::at_unix(NOW);
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .max_seen_assertions(10)
        .max_seen_assertions_per_client(2)
        .start()
        .await
        .unwrap();
    let keys = TestIssuer::builder().clock(clock.clone()).start().await;
    for client in ["noisy", "quiet"] {
        server.register(
            ClientRegistration::private_key_jwt(client, keys.jwks(), ["system/*.rs"]).unwrap(),
        );
    }
    let http = crate::support::loopback_client();
    let send = |client: &str| {
        let assertion = client_assertion(&keys, client, server.token_endpoint()).sign();
        post(
            &http,
            http.post(server.token_endpoint())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(assertion_form(&assertion)),
        )
    };
    assert_eq!(send("noisy").await.0, StatusCode::OK);
    assert_eq!(send("noisy").await.0, StatusCode::OK);
    let (status, retry_after, body) = send("noisy").await;
    assert_eq!(
        (status, retry_after.as_deref(), body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("120"),
            Some("temporarily_unavailable")
        ),
        "noisy at its share"
    );
    assert_eq!(send("quiet").await.0, StatusCode::OK, "quiet is served");
    clock.advance(Duration::from_secs(120));
    assert_eq!(send("noisy").await.0, StatusCode::OK, "room again");
}

/// With a ceiling, a client registered over HTTP holds only the requested scopes the
/// ceiling covers; a registration left with none is refused.
#[tokio::test]
async fn registration_holds_at_most_the_ceiling() {
    let server = DevAuthServer::builder(FHIR)
        .registration_scope_ceiling(["system/Patient.rs", "system/Observation.r"])
        .start()
        .await
        .unwrap();
    let http = crate::support::loopback_client();
    let register = |scope: &str| {
        post(
            &http,
            http.post(format!("{}/register", server.url()))
                .json(&json!({
                    "scope": scope, "token_endpoint_auth_method": "client_secret_basic",
                })),
        )
    };
    let (status, _, body) =
        register("system/*.cruds system/Patient.r system/Observation.rs system/Observation.r")
            .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scope"], "system/Patient.r system/Observation.r");
    // The registered scopes are what its tokens may hold.
    let (status, _, token) = post(
        &http,
        http.post(server.token_endpoint())
            .basic_auth(
                body["client_id"].as_str().unwrap(),
                body["client_secret"].as_str(),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=system%2F*.cruds%20system%2FPatient.r"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["scope"], "system/Patient.r");
    for scope in ["system/*.cruds", "system/Observation.s", "launch"] {
        let (status, _, body) = register(scope).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_client_metadata")),
            "{scope}"
        );
    }
}

/// Nothing in the answer tells an unauthenticated caller which client ids exist: an
/// assertion naming a client whose `jwks_uri` cannot be fetched (down, a key set without
/// a usable key) gets the answer of one naming no client at all.
#[tokio::test]
async fn an_unfetchable_client_key_set_tells_nothing_about_the_client() {
    let clock = ManualClock::at_unix(NOW);
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks", listener.local_addr().unwrap())
    };
    let empty = TestIssuer::builder().clock(clock.clone()).start().await;
    empty.set_jwks_behaviour(JwksBehaviour::Body(json!({"keys": []}).to_string()));
    server.register(ClientRegistration::private_key_jwt_uri(
        "down",
        closed,
        ["system/*.rs"],
    ));
    server.register(ClientRegistration::private_key_jwt_uri(
        "keyless",
        empty.jwks_uri(),
        ["system/*.rs"],
    ));
    let signer = TestIssuer::builder().clock(clock.clone()).start().await;
    let http = crate::support::loopback_client();
    let mut answers = Vec::new();
    for client in ["down", "keyless", "no-such-client"] {
        let assertion = client_assertion(&signer, client, server.token_endpoint()).sign();
        // Twice: the failure remembered for a while answers the same.
        for _ in 0..2 {
            let request = http
                .post(server.token_endpoint())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(assertion_form(&assertion));
            let (status, _, body) = post(&http, request).await;
            answers.push((client, status, body));
        }
    }
    let (_, status, body) = &answers[answers.len() - 1];
    assert_eq!(*status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_client");
    for (client, other_status, other_body) in &answers {
        assert_eq!((other_status, other_body), (status, body), "{client}");
    }
}

/// A client's `jwks_uri` is fetched once per cache lifetime, plus at most one refetch per
/// 10 s for unknown kids, whatever unauthenticated callers send (bad signatures, unknown
/// kids, concurrent bursts); a failed fetch is remembered briefly.
#[tokio::test]
async fn jwks_uri_is_fetched_once_per_cache_lifetime() {
    let clock = ManualClock::at_unix(NOW);
    let server = DevAuthServer::builder(FHIR)
        .clock(clock.clone())
        .jwks_cache_ttl(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let keys = TestIssuer::builder().clock(clock.clone()).start().await;
    let attacker = TestIssuer::builder().clock(clock.clone()).start().await;
    server.register(ClientRegistration::private_key_jwt_uri(
        "by-url",
        keys.jwks_uri(),
        ["system/*.rs"],
    ));
    let http = crate::support::loopback_client();
    let assertion = |issuer: &TestIssuer, kid: Option<&str>| {
        let mut builder = client_assertion(issuer, "by-url", server.token_endpoint());
        if let Some(kid) = kid {
            builder = builder.kid(kid);
        }
        builder.sign()
    };
    let send = |assertion: String| {
        let request = http
            .post(server.token_endpoint())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(assertion_form(&assertion));
        let http = http.clone();
        async move { post(&http, request).await.0 }
    };
    // A forged assertion fetches the set; it was fetched for this very lookup, so its
    // unknown kid does not fetch it again.
    assert_eq!(
        send(assertion(&attacker, None)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(keys.jwks_fetches(), 1);
    // A concurrent burst of forged assertions (another key, unknown kids): the set
    // fetched earlier lacks their kids, so exactly one refetch, shared by the burst.
    let forged: Vec<String> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                assertion(&attacker, None)
            } else {
                assertion(&attacker, Some(&format!("kid-{i}")))
            }
        })
        .collect();
    let answers = join_all(forged.into_iter().map(send)).await;
    assert!(
        answers.iter().all(|s| *s == StatusCode::BAD_REQUEST),
        "{answers:?}"
    );
    assert_eq!(keys.jwks_fetches(), 2);
    // Within the 10 s after that refetch, unknown kids fetch nothing.
    clock.advance(Duration::from_secs(9));
    for i in 0..5 {
        let forged = assertion(&attacker, Some(&format!("late-{i}")));
        assert_eq!(send(forged).await, StatusCode::BAD_REQUEST);
    }
    assert_eq!(keys.jwks_fetches(), 2);
    // The genuine client is served from the same copy.
    assert_eq!(send(assertion(&keys, None)).await, StatusCode::OK);
    assert_eq!(keys.jwks_fetches(), 2);
    // After the cache lifetime, one new fetch.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        send(assertion(&attacker, None)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(send(assertion(&keys, None)).await, StatusCode::OK);
    assert_eq!(keys.jwks_fetches(), 3);
    // A failing key server is asked again only after 10 s, not on every attempt.
    keys.set_jwks_behaviour(JwksBehaviour::Status(500));
    clock.advance(Duration::from_secs(60));
    for _ in 0..5 {
        assert_eq!(send(assertion(&keys, None)).await, StatusCode::BAD_REQUEST);
    }
    assert_eq!(keys.jwks_fetches(), 4);
    keys.set_jwks_behaviour(JwksBehaviour::Normal);
    clock.advance(Duration::from_secs(9));
    assert_eq!(send(assertion(&keys, None)).await, StatusCode::BAD_REQUEST);
    assert_eq!(keys.jwks_fetches(), 4);
    clock.advance(Duration::from_secs(1));
    assert_eq!(send(assertion(&keys, None)).await, StatusCode::OK);
    assert_eq!(keys.jwks_fetches(), 5);
}

/// A server with the default key-set time-to-live (300 s), a client `by-url` whose
/// `jwks_uri` answers with `cache_control`, and a way to send that client's assertions
/// (ES256, the issuer's current key) to the token endpoint.
struct RotatingClient {
    clock: ManualClock,
    server: DevAuthServer,
    keys: TestIssuer,
    http: reqwest::Client,
}

impl RotatingClient {
    async fn start(cache_control: Option<&str>) -> Self {
        let clock = ManualClock::at_unix(NOW);
        let server = DevAuthServer::builder(FHIR)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let keys = TestIssuer::builder().clock(clock.clone()).start().await;
        keys.set_jwks_cache_control(cache_control);
        server.register(ClientRegistration::private_key_jwt_uri(
            "by-url",
            keys.jwks_uri(),
            ["system/*.rs"],
        ));
        Self {
            clock,
            server,
            keys,
            http: crate::support::loopback_client(),
        }
    }

    /// Sends an assertion signed with the current key; the status, `error` and
    /// `error_description`.
    async fn send(&self) -> Answer {
        self.send_naming(None).await
    }

    /// As [`send`](Self::send), with this `kid` in the header instead of the key's own.
    async fn send_naming(&self, kid: Option<&str>) -> Answer {
        let mut assertion = client_assertion(&self.keys, "by-url", self.server.token_endpoint());
        if let Some(kid) = kid {
            assertion = assertion.kid(kid);
        }
        let assertion = assertion.sign();
        let request = self
            .http
            .post(self.server.token_endpoint())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(assertion_form(&assertion));
        let (status, _, body) = post(&self.http, request).await;
        if status == StatusCode::OK {
            assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
        }
        let text = |name: &str| body[name].as_str().map(str::to_owned);
        (status, text("error"), text("error_description"))
    }

    /// Rotates the client's key: the next assertion names a kid the server has not seen.
    fn rotate(&self) {
        let old = self.keys.current_kid(SigningAlgorithm::ES256);
        self.keys.rotate_keys();
        assert_ne!(old, self.keys.current_kid(SigningAlgorithm::ES256));
    }
}

type Answer = (StatusCode, Option<String>, Option<String>);

const OK: Answer = (StatusCode::OK, None, None);

/// The answer to an assertion whose kid is not in the cached key set.
fn refused() -> Answer {
    (
        StatusCode::BAD_REQUEST,
        Some("invalid_client".to_owned()),
        Some(
            "the assertion's client, kid, alg or jku names no key registered for private_key_jwt"
                .to_owned(),
        ),
    )
}

/// SMART Backend Services: a client's key set is not cached longer than its
/// `Cache-Control` allows. With `max-age=0`, `no-cache` or `no-store` every token request
/// fetches the set again, so a key rotated between two requests is used at once, even
/// within the same second.
#[tokio::test]
async fn jwks_uri_that_forbids_caching_is_fetched_for_every_assertion() {
    for cache_control in [
        "max-age=0",
        "no-store",
        "no-cache",
        "public, max-age=0",
        "max-age=600, no-store",
    ] {
        let c = RotatingClient::start(Some(cache_control)).await;
        assert_eq!(c.send().await, OK, "{cache_control}");
        assert_eq!(c.keys.jwks_fetches(), 1, "{cache_control}");
        c.rotate();
        assert_eq!(c.send().await, OK, "{cache_control}: the new kid");
        assert_eq!(c.keys.jwks_fetches(), 2, "{cache_control}");
        // Nothing is kept between requests: a third request fetches once more.
        assert_eq!(c.send().await, OK, "{cache_control}");
        assert_eq!(c.keys.jwks_fetches(), 3, "{cache_control}");
    }
}

/// A `max-age` shorter than the server's time-to-live bounds the entry: the set is fetched
/// again exactly `max-age` seconds after each fetch.
#[tokio::test]
async fn a_short_max_age_bounds_the_key_set_cache() {
    let c = RotatingClient::start(Some("max-age=30")).await;
    assert_eq!(c.send().await, OK);
    c.clock.advance(Duration::from_secs(29));
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 1);
    c.clock.advance(Duration::from_secs(1));
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 2);
    // The new entry again lives 30 s from its own fetch.
    c.clock.advance(Duration::from_secs(29));
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 2);
    c.clock.advance(Duration::from_secs(1));
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 3);
}

/// A refetch that fails (anyone can start one with a made-up kid) puts the keys in use
/// back, but they are fetched again when the client's `Cache-Control` says, not kept
/// for the failure's time.
#[tokio::test]
async fn a_failed_refetch_keeps_the_keys_no_longer_than_their_max_age() {
    let c = RotatingClient::start(Some("max-age=30")).await;
    assert_eq!(c.send().await, OK);
    c.clock.advance(Duration::from_secs(29));
    c.keys.set_jwks_behaviour(JwksBehaviour::Status(500));
    assert_eq!(c.send_naming(Some("made-up")).await, refused());
    assert_eq!(c.keys.jwks_fetches(), 2, "the refetch");
    c.keys.set_jwks_behaviour(JwksBehaviour::Normal);
    assert_eq!(c.send().await, OK, "the keys in use are kept");
    assert_eq!(c.keys.jwks_fetches(), 2);
    // 30 s after their fetch: fetched again, not kept for the failure's 10 s.
    c.clock.advance(Duration::from_secs(1));
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 3, "fetched again at max-age");
}

/// A `max-age` longer than the server's time-to-live (default 300 s), or none at all,
/// leaves the time-to-live in charge: the set is fetched again after 300 s, not before.
#[tokio::test]
async fn a_long_max_age_keeps_the_default_time_to_live() {
    for cache_control in [Some("max-age=86400"), Some("max-age=300"), None] {
        let c = RotatingClient::start(cache_control).await;
        assert_eq!(c.send().await, OK, "{cache_control:?}");
        c.clock.advance(Duration::from_secs(299));
        assert_eq!(c.send().await, OK, "{cache_control:?}");
        assert_eq!(c.keys.jwks_fetches(), 1, "{cache_control:?}");
        c.clock.advance(Duration::from_secs(1));
        assert_eq!(c.send().await, OK, "{cache_control:?}");
        assert_eq!(c.keys.jwks_fetches(), 2, "{cache_control:?}");
    }
}

/// Key rotation at a `jwks_uri`: an assertion naming a kid the cached set lacks fetches
/// the set again once, so the new key works at once; more unknown kids within the next
/// 10 s fetch nothing, and a rotation in that time is seen once it has passed.
#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_unknown_kids_are_rate_limited() {
    let c = RotatingClient::start(None).await;
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 1);
    // Set B, with a new kid: the next assertion succeeds with exactly one more fetch.
    c.rotate();
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 2);
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 2);
    // A flood of unknown kids within the cooldown: refused, no fetch.
    let client = &c;
    let flood = (0..20).map(|i| async move {
        let kid = format!("unknown-{i}");
        client.send_naming(Some(&kid)).await
    });
    for answer in join_all(flood).await {
        assert_eq!(answer, refused());
    }
    assert_eq!(c.keys.jwks_fetches(), 2);
    // Another rotation 9 s after the refetch waits for the cooldown's end.
    c.clock.advance(Duration::from_secs(9));
    c.rotate();
    assert_eq!(c.send().await, refused());
    assert_eq!(c.keys.jwks_fetches(), 2);
    c.clock.advance(Duration::from_secs(1));
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 3);
}

/// A refetch for an unknown `kid` that fails (the client's key server is down) keeps the
/// set it was to replace: anyone can ask for one with a made-up `kid`, and the client
/// must keep authenticating with its current key meanwhile.
#[tokio::test]
async fn a_failed_refetch_keeps_the_keys_in_use() {
    let c = RotatingClient::start(None).await;
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 1);
    c.keys.set_jwks_behaviour(JwksBehaviour::Status(500));
    assert_eq!(c.send_naming(Some("made-up")).await, refused());
    assert_eq!(c.keys.jwks_fetches(), 2, "the refetch was tried");
    // The client's own key still works, without another fetch.
    for _ in 0..3 {
        assert_eq!(c.send().await, OK);
    }
    assert_eq!(c.keys.jwks_fetches(), 2);
}

/// While a refetch for a made-up `kid` is in flight (the client's key server hangs), the
/// client's own assertions are checked against the keys in use at once, instead of waiting
/// for the refetch and failing with it.
#[tokio::test]
async fn a_refetch_in_flight_does_not_hold_up_the_client() {
    let c = RotatingClient::start(None).await;
    assert_eq!(c.send().await, OK);
    c.keys
        .set_jwks_behaviour(JwksBehaviour::Delay(Duration::from_secs(3600)));
    let mut hanging = std::pin::pin!(c.send_naming(Some("made-up")));
    // Drive the made-up request until its refetch has reached the key server (bounded:
    // a regression that never fetches fails instead of hanging the suite).
    let reached = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                biased;
                _ = &mut hanging => panic!("the hanging refetch answered"),
                () = tokio::task::yield_now() => {}
            }
            if c.keys.jwks_fetches() == 2 {
                break;
            }
        }
    });
    reached.await.expect("the refetch reached the key server");
    assert_eq!(c.send().await, OK);
    assert_eq!(c.keys.jwks_fetches(), 2);
}
