//! Public routes and path readings over real HTTP: hostile spellings of public and protected
//! paths, sent byte for byte (a raw HTTP/1.1 client, since URL libraries normalise `.`
//! segments and some escapes), against an app with catch-all routes.

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::{any, get};
use serde_json::{Value, json};
use smart_auth::testing::TestIssuer;
use smart_auth::{ManualClock, ScopeEnforcement, SmartAuthBuilder, SmartAuthLayer, SmartClaims};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{issuer, malformed_request_challenge, serve};

/// An answer read off the wire.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub challenge: Option<String>,
    pub body: Value,
}

/// Sends `method target` over a fresh connection exactly as written, with `headers`.
pub async fn raw_request(
    url: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> RawAnswer {
    raw_request_with_body(url, method, target, headers, "").await
}

/// Parses an HTTP/1.1 response (fixed length or chunked body).
fn parse_answer(bytes: &[u8]) -> RawAnswer {
    let split = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete head");
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut body = bytes[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut challenge = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim();
        if name.eq_ignore_ascii_case("www-authenticate") {
            challenge = Some(value.to_owned());
        }
        if name.eq_ignore_ascii_case("transfer-encoding") && value == "chunked" {
            chunked = true;
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    RawAnswer {
        status,
        challenge,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = input.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&input[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        input = &input[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&input[..size]);
        input = &input[size + 2..];
    }
}

/// What a handler saw: which route, its decoded parameters, and whether a verified token
/// came with the request.
fn saw(route: &str, params: Vec<String>, claims: Option<&SmartClaims>) -> Json<Value> {
    Json(json!({
        "route": route,
        "params": params,
        "verified": claims.is_some(),
        "scopes": claims.map(|c| c.scopes().to_vec()),
    }))
}

/// An app with the FHIR base `/fhir`: the capability statement as a static route, and
/// catch-all routes (`/{type}/{id}` at the root and under the base, and a fallback for
/// every other path) that would serve any resource to whoever reaches them.
pub fn catch_all_router() -> Router {
    Router::new()
        .route(
            "/fhir/metadata",
            get(|claims: Option<SmartClaims>| async move {
                saw("metadata", vec![], claims.as_ref())
            }),
        )
        .route(
            "/.well-known/smart-configuration",
            get(|claims: Option<SmartClaims>| async move {
                saw("root discovery", vec![], claims.as_ref())
            }),
        )
        .route(
            "/fhir/.well-known/smart-configuration",
            get(|claims: Option<SmartClaims>| async move {
                saw("discovery", vec![], claims.as_ref())
            }),
        )
        .route(
            "/{type}/{id}",
            any(
                |Path((resource_type, id)): Path<(String, String)>,
                 claims: Option<SmartClaims>| async move {
                    saw("/{type}/{id}", vec![resource_type, id], claims.as_ref())
                },
            ),
        )
        .route(
            "/fhir/{type}/{id}",
            any(
                |Path((resource_type, id)): Path<(String, String)>,
                 claims: Option<SmartClaims>| async move {
                    saw("/fhir/{type}/{id}", vec![resource_type, id], claims.as_ref())
                },
            ),
        )
        .fallback(|uri: axum::http::Uri, claims: Option<SmartClaims>| async move {
            saw("fallback", vec![uri.path().to_owned()], claims.as_ref())
        })
}

struct Served {
    url: String,
    issuer: TestIssuer,
    _server: tokio::task::JoinHandle<()>,
}

async fn served(configure: impl FnOnce(SmartAuthBuilder) -> SmartAuthBuilder) -> Served {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let builder = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock);
    let layer = configure(builder).build().unwrap();
    let (url, server) = serve(catch_all_router().layer(layer)).await;
    Served {
        url,
        issuer,
        _server: server,
    }
}

/// Hostile spellings of the public paths and of resource paths behind them.
const HOSTILE_TARGETS: &[&str] = &[
    "/fhir/%6Detadata",
    "/fhir/%6detadata",
    "/fhir/metadat%61",
    "/%66hir/metadata",
    "/fhir%2Fmetadata",
    "/fhir%2fmetadata",
    "/fhir/metadata%00",
    "/fhir/metadata%2F",
    "/fhir/metadata;x",
    "/fhir//metadata",
    "//fhir/metadata",
    "/fhir/./metadata",
    "/fhir/x/../metadata",
    "/fhir/%2E/metadata",
    "/fhir/metadata/",
    "/fhir/metadata/.",
    "/fhir/metadata//",
    "/FHIR/metadata",
    "/fhir/Metadata",
    "/fhir/METADATA",
    "/metadata",
    "/Patient/metadata",
    "/%50atient/metadata",
    "/%70atient/metadata",
    "/P%61tient/metadata",
    "/fhir/Patient/metadata",
    "/fhir/%50atient/metadata",
    "/fhir/Patient/.well-known/smart-configuration",
    "/fhir/%2Ewell-known/smart-configuration",
    "/fhir/.well-known/smart-configuration/",
    "/fhir/.well-known//smart-configuration",
    "/fhir/.WELL-KNOWN/smart-configuration",
    "/%2Ewell-known/smart-configuration",
    "/.well-known/smart-configuration/",
    "/x/.well-known/smart-configuration",
    "/api/fhir/metadata",
    "/fhir/Patient/1",
    "/fhir/%50atient/1",
];

/// The exact public spellings with the base `/fhir`, and the route each reaches.
const PUBLIC_TARGETS: &[(&str, &str)] = &[
    ("/fhir/metadata", "metadata"),
    ("/fhir/metadata?_format=json", "metadata"),
    ("/fhir/.well-known/smart-configuration", "discovery"),
    ("/.well-known/smart-configuration", "root discovery"),
];

/// The exact public spellings without a base (the root ones), and the route each reaches.
const ROOT_PUBLIC_TARGETS: &[(&str, &str)] = &[
    ("/metadata", "fallback"),
    ("/.well-known/smart-configuration", "root discovery"),
];

/// The two configurations: the base `/fhir`, and none (the one-line start).
async fn configurations() -> Vec<(Served, &'static [(&'static str, &'static str)])> {
    vec![
        (served(|b| b.served_at_path("/fhir")).await, PUBLIC_TARGETS),
        (served(|b| b).await, ROOT_PUBLIC_TARGETS),
    ]
}

/// Without a token every hostile spelling gets the exact bare challenge; only the exact
/// public spellings reach a handler, and only the public one.
#[tokio::test]
async fn hostile_spellings_need_a_token() {
    for (app, public) in configurations().await {
        let bare = format!("Bearer realm=\"{}\"", app.issuer.audience());
        let hostile = HOSTILE_TARGETS
            .iter()
            .chain(PUBLIC_TARGETS.iter().map(|(target, _)| target))
            .filter(|target| !public.iter().any(|(exact, _)| exact == *target));
        for target in hostile {
            for method in ["GET", "HEAD"] {
                let answer = raw_request(&app.url, method, target, &[]).await;
                assert_eq!(answer.status, 401, "{method} {target}: {answer:?}");
                assert_eq!(answer.challenge.as_deref(), Some(bare.as_str()), "{target}");
            }
        }
        for (target, route) in public {
            let answer = raw_request(&app.url, "GET", target, &[]).await;
            assert_eq!(answer.status, 200, "{target}: {answer:?}");
            assert_eq!(answer.body["route"], *route, "{target}");
            assert_eq!(answer.body["verified"], false, "{target}");
            assert_eq!(answer.challenge, None);
            // HEAD is public where GET is, and has no body.
            let head = raw_request(&app.url, "HEAD", target, &[]).await;
            assert_eq!(head.status, 200, "HEAD {target}: {head:?}");
            assert_eq!(head.challenge, None, "HEAD {target}");
            assert_eq!(head.body, Value::Null, "HEAD {target}");
            // Other methods on public paths are protected.
            for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
                let answer = raw_request(&app.url, method, target, &[]).await;
                assert_eq!(answer.status, 401, "{method} {target}");
                assert_eq!(answer.challenge.as_deref(), Some(bare.as_str()));
            }
        }
    }
}

/// A path-override header (`X-Original-URL`, `X-Rewrite-URL`: IIS URL Rewrite, Zend
/// Framework 1, old Symfony take the path from it) naming another path makes a public
/// path protected, for any public path and any spelling of the header; naming the same
/// path (a proxy in front that did not rewrite) keeps it public.
#[tokio::test]
async fn path_override_headers_naming_another_path_need_a_token() {
    let app = served(|b| b.served_at_path("/fhir").public_path("/health")).await;
    let bare = format!("Bearer realm=\"{}\"", app.issuer.audience());
    for target in [
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/.well-known/smart-configuration",
        "/health",
    ] {
        for name in [
            "X-Original-URL",
            "x-rewrite-url",
            "X-ORIGINAL-URL",
            "x_original_url",
        ] {
            for other in [
                "/fhir/Patient/1",
                "/fhir/metadata/",
                "",
                "http://h/fhir/Patient/1",
            ] {
                let answer = raw_request(&app.url, "GET", target, &[(name, other)]).await;
                assert_eq!(answer.status, 401, "{target} {name}: {other}");
                assert_eq!(answer.challenge.as_deref(), Some(bare.as_str()));
            }
            // The same discovery path whose query names another method is no plain read
            // of it (a path made public with `public_path` is public for every method).
            let other_methods = if target == "/health" {
                Vec::new()
            } else {
                vec![
                    format!("{target}?_method=DELETE"),
                    format!("{target}?x=1&%5FMETHOD=POST"),
                ]
            };
            for other_method in other_methods {
                let answer = raw_request(&app.url, "GET", target, &[(name, &other_method)]).await;
                assert_eq!(answer.status, 401, "{target} {name}: {other_method}");
                assert_eq!(answer.challenge.as_deref(), Some(bare.as_str()));
            }
            // The same path as sent, with a query, or spelt otherwise but the same once
            // decoded (Azure App Service sets the decoded target on every request).
            let encoded = target.replacen('a', "%61", 1);
            // (A byte beyond ASCII in its query is no `_method`.)
            for same in [
                target.to_owned(),
                format!("{target}?x=1"),
                format!("{target}?x=\u{e9}"),
                encoded,
            ] {
                let answer = raw_request(&app.url, "GET", target, &[(name, &same)]).await;
                assert_eq!(answer.status, 200, "{target} {name}: {same}");
                assert_eq!(answer.body["verified"], false, "{target}");
            }
        }
        // One value of two naming another path is enough.
        let answer = raw_request(
            &app.url,
            "GET",
            target,
            &[
                ("x-original-url", target),
                ("x-original-url", "/fhir/Patient/1"),
            ],
        )
        .await;
        assert_eq!(answer.status, 401, "{target}: two values");
    }
}

/// A `GET` or `HEAD` of a public path that carries a form (`_method=DELETE` in it, which
/// Rack merges over the query) is no plain read: without a token it gets the bare
/// challenge, with one the 400 scope enforcement gives it, for every form type and every
/// way to announce the body. A body of another type, or an empty one, keeps it public.
#[tokio::test]
async fn public_reads_carrying_a_form_need_a_token() {
    let app = served(|b| {
        b.served_at_path("/fhir")
            .enforce_scopes(ScopeEnforcement::new())
    })
    .await;
    let bare = format!("Bearer realm=\"{}\"", app.issuer.audience());
    let token = app.issuer.token().scope("system/Patient.rs").sign();
    let authorization = format!("Bearer {token}");
    let form = "_method=DELETE";
    let length = form.len().to_string();
    let chunked = format!("{:x}\r\n{form}\r\n0\r\n\r\n", form.len());
    for target in [
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/.well-known/smart-configuration",
    ] {
        for content_type in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-Urlencoded; charset=utf-8",
            "multipart/form-data; boundary=x",
            "",
        ] {
            for (framing, body) in [
                (("content-length", length.as_str()), form),
                (("transfer-encoding", "chunked"), chunked.as_str()),
            ] {
                for method in ["GET", "HEAD"] {
                    let what = format!("{method} {target} {content_type:?} {framing:?}");
                    let headers = [("content-type", content_type), framing];
                    let answer =
                        raw_request_with_body(&app.url, method, target, &headers, body).await;
                    assert_eq!(answer.status, 401, "{what}: {answer:?}");
                    assert_eq!(answer.challenge.as_deref(), Some(bare.as_str()), "{what}");
                    let with_token = [
                        ("content-type", content_type),
                        framing,
                        ("authorization", authorization.as_str()),
                    ];
                    let answer =
                        raw_request_with_body(&app.url, method, target, &with_token, body).await;
                    assert_eq!(answer.status, 400, "{what}, token: {answer:?}");
                    assert_eq!(
                        answer.challenge.as_deref(),
                        Some(malformed_request_challenge(app.issuer.audience()).as_str()),
                        "{what}"
                    );
                }
            }
        }
        // A JSON body, or a form type with an empty body, asks for nothing more.
        for headers in [
            [
                ("content-type", "application/json"),
                ("content-length", "2"),
            ],
            [
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", "0"),
            ],
        ] {
            let body = if headers[1].1 == "2" { "{}" } else { "" };
            let answer = raw_request_with_body(&app.url, "GET", target, &headers, body).await;
            assert_eq!(answer.status, 200, "{target} {headers:?}: {answer:?}");
            assert_eq!(answer.body["verified"], false, "{target}");
        }
    }
}

/// With a valid token each hostile spelling reaches a handler verified (with the decoded
/// parameters the router made of it); never anonymous.
#[tokio::test]
async fn hostile_spellings_reach_handlers_only_verified() {
    for (app, public) in configurations().await {
        let token = app.issuer.token().sign();
        let authorization = format!("Bearer {token}");
        let auth = [("authorization", authorization.as_str())];
        let hostile = HOSTILE_TARGETS
            .iter()
            .filter(|target| !public.iter().any(|(exact, _)| exact == *target));
        for target in hostile {
            let answer = raw_request(&app.url, "GET", target, &auth).await;
            assert_eq!(answer.status, 200, "{target}: {answer:?}");
            assert_eq!(answer.body["verified"], true, "{target}: {answer:?}");
            assert_eq!(answer.body["scopes"], json!(["system/*.rs"]), "{target}");
        }
        // What the router made of two of them: the reason they may not be public.
        let answer = raw_request(&app.url, "GET", "/%50atient/metadata", &auth).await;
        assert_eq!(answer.body["route"], "/{type}/{id}");
        assert_eq!(answer.body["params"], json!(["Patient", "metadata"]));
        let answer = raw_request(&app.url, "GET", "/fhir/%6Detadata", &auth).await;
        assert_eq!(answer.body["route"], "/{type}/{id}");
        assert_eq!(answer.body["params"], json!(["fhir", "metadata"]));
    }
}

/// Without a configured base only the root paths are public: no suffix of an arbitrary
/// path is.
#[tokio::test]
async fn without_a_base_only_the_root_paths_are_public() {
    let app = served(|b| b).await;
    let bare = format!("Bearer realm=\"{}\"", app.issuer.audience());
    for target in [
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/Patient/metadata",
        "/%50atient/metadata",
        "/anything/metadata",
    ] {
        let answer = raw_request(&app.url, "GET", target, &[]).await;
        assert_eq!(answer.status, 401, "{target}: {answer:?}");
        assert_eq!(answer.challenge.as_deref(), Some(bare.as_str()));
    }
    let answer = raw_request(&app.url, "GET", "/.well-known/smart-configuration", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["verified"], false);
    // `/metadata` is public; this app has no route for it but the catch-all.
    let answer = raw_request(&app.url, "GET", "/metadata", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["route"], "fallback");
    assert_eq!(answer.body["params"], json!(["/metadata"]));
}

/// With scope enforcement the base defaults to the enforcement's, and every spelling is
/// enforced on its decoded reading; unreadable paths get the exact 403 without a hint.
#[tokio::test]
async fn enforcement_reads_decoded_paths() {
    let app = served(|b| {
        b.served_at_path("/fhir")
            .enforce_scopes(ScopeEnforcement::new())
    })
    .await;
    let realm = app.issuer.audience().to_owned();
    let denied = |scope: &str| {
        format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\", scope=\"{scope}\""
        )
    };
    let unreadable = format!(
        "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\""
    );
    // The enforcement base makes `/fhir/metadata` public.
    let answer = raw_request(&app.url, "GET", "/fhir/metadata", &[]).await;
    assert_eq!(
        (answer.status, answer.body["verified"].clone()),
        (200, json!(false))
    );

    let token = app.issuer.token().scope("system/Observation.rs").sign();
    let authorization = format!("Bearer {token}");
    let auth = [("authorization", authorization.as_str())];
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/fhir/Observation/1", 200, None),
        ("/fhir/%4Fbservation/1", 200, None),
        ("/fhir/%4fbservation/%31", 200, None),
        ("/%66hir/Observation/1", 200, None),
        ("/fhir/Patient/1", 403, Some("system/Patient.r")),
        ("/fhir/%50atient/1", 403, Some("system/Patient.r")),
        ("/fhir/P%61tient/1", 403, Some("system/Patient.r")),
        ("/%66hir/Patient/1", 403, Some("system/Patient.r")),
        ("/FHIR/Patient/1", 403, Some("system/Patient.r")),
        ("/fhir/Patient/1/", 403, Some("system/Patient.r")),
        ("/fhir/%50atient/metadata", 403, Some("system/Patient.r")),
        // Paths that cannot be read one way only: 400.
        ("/fhir/Patient%2F1", 400, None),
        ("/fhir/Observation/1%2F..%2F..%2FPatient%2F1", 400, None),
        ("/fhir//Patient/1", 400, None),
        ("//fhir/Patient/1", 400, None),
        ("/fhir/./Patient/1", 400, None),
        ("/fhir/Observation/../Patient/1", 400, None),
        ("/x/../fhir/Patient/1", 400, None),
        ("/fhir/Observation/%2E%2E", 400, None),
        ("/fhir/Observation/1%00", 400, None),
        ("/fhir/%2550atient/1", 400, None),
        ("/fhir;a=b/Patient/1", 400, None),
        ("/fhir/Patient;a=b/1", 400, None),
        ("/fhir/Observation/1%", 400, None),
        ("/fhir/Observation/%FF", 400, None),
        // Under the base but no FHIR interaction.
        ("/fhir/%70atient/1", 403, None),
    ];
    for &(target, status, hint) in cases {
        let answer = raw_request(&app.url, "GET", target, &auth).await;
        assert_eq!(answer.status, status, "{target}: {answer:?}");
        match (status, hint) {
            (200, _) => {
                assert_eq!(answer.body["verified"], true, "{target}");
                assert_eq!(answer.challenge, None);
            }
            (_, Some(hint)) => {
                assert_eq!(
                    answer.challenge.as_deref(),
                    Some(denied(hint).as_str()),
                    "{target}"
                );
            }
            (400, None) => {
                assert_eq!(
                    answer.challenge.as_deref(),
                    Some(malformed_request_challenge(&realm).as_str()),
                    "{target}"
                );
                assert_eq!(answer.body["issue"][0]["code"], "invalid");
            }
            (_, None) => {
                assert_eq!(
                    answer.challenge.as_deref(),
                    Some(unreadable.as_str()),
                    "{target}"
                );
                assert_eq!(answer.body["issue"][0]["code"], "forbidden");
            }
        }
    }
    // Outside the base nothing can be classified: refused by default (an unreadable path
    // as unreadable).
    for target in ["/reports/1", "/", "/Patient/1"] {
        let answer = raw_request(&app.url, "GET", target, &auth).await;
        assert_eq!(answer.status, 403, "{target}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(unreadable.as_str()),
            "{target}"
        );
    }
    let answer = raw_request(&app.url, "GET", "/reports//1", &auth).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(malformed_request_challenge(&realm).as_str())
    );
    // With the opt-in a valid token suffices there, but still not for an unreadable path.
    let app = served(|b| {
        b.served_at_path("/fhir")
            .enforce_scopes(ScopeEnforcement::new().allow_any_token_outside_base())
    })
    .await;
    let authorization = format!("Bearer {}", app.issuer.token().sign());
    let auth = [("authorization", authorization.as_str())];
    let answer = raw_request(&app.url, "GET", "/reports/1", &auth).await;
    assert_eq!(answer.status, 200);
    let answer = raw_request(&app.url, "GET", "/reports//1", &auth).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(malformed_request_challenge(app.issuer.audience()).as_str())
    );
}

/// By default a CORS preflight to a protected path needs a token like any request (a
/// service that ignores the method would run for it), and passes only to the public
/// discovery and metadata paths.
#[tokio::test]
async fn preflights_to_protected_paths_need_a_token_by_default() {
    let app = served(|b| b.served_at_path("/fhir")).await;
    let bare = format!("Bearer realm=\"{}\"", app.issuer.audience());
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
    ];
    for target in [
        "/fhir/Patient/1",
        "/grpc.health.v1.Health/Check",
        "/fhir/x/y/z",
    ] {
        let answer = raw_request(&app.url, "OPTIONS", target, &preflight).await;
        assert_eq!(answer.status, 401, "{target}");
        assert_eq!(answer.challenge.as_deref(), Some(bare.as_str()), "{target}");
    }
    for (target, route) in [
        ("/fhir/metadata", "metadata"),
        ("/fhir/.well-known/smart-configuration", "discovery"),
    ] {
        let answer = raw_request(&app.url, "OPTIONS", target, &preflight).await;
        // The routes serve GET only: the router's own 405, not the layer's 401.
        assert_eq!(answer.status, 405, "{target} ({route})");
        assert_eq!(answer.challenge, None, "{target}");
    }
}

/// With `allow_cors_preflight_without_token`, a CORS preflight passes without a token only
/// when it is exactly one; any other OPTIONS request is an ordinary protected request.
#[tokio::test]
async fn only_exact_preflights_pass() {
    let app = served(|b| {
        b.served_at_path("/fhir")
            .allow_cors_preflight_without_token()
    })
    .await;
    let bare = format!("Bearer realm=\"{}\"", app.issuer.audience());
    let origin = ("origin", "https://app.example");
    let get = ("access-control-request-method", "GET");
    let answer = raw_request(&app.url, "OPTIONS", "/fhir/Patient/1", &[origin, get]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["route"], "/fhir/{type}/{id}");
    assert_eq!(answer.body["verified"], false);
    let not_preflights: &[&[(&str, &str)]] = &[
        &[],
        &[origin],
        &[get],
        &[("origin", ""), get],
        &[origin, ("access-control-request-method", "")],
        &[origin, ("access-control-request-method", "GET, POST")],
        &[origin, get, ("access-control-request-method", "PUT")],
        &[origin, ("origin", "https://b.example"), get],
        &[origin, get, ("authorization", "Bearer not-a-token")],
        &[origin, get, ("content-length", "2")],
        &[origin, get, ("transfer-encoding", "chunked")],
        &[origin, get, ("x-http-method-override", "DELETE")],
    ];
    for headers in not_preflights {
        if headers.iter().any(|(name, _)| *name == "authorization") {
            // Treated as an ordinary request: the credential is checked.
            let answer = raw_request(&app.url, "OPTIONS", "/fhir/Patient/1", headers).await;
            assert_eq!(answer.status, 401, "{headers:?}");
            assert!(
                answer
                    .challenge
                    .unwrap()
                    .contains("error=\"invalid_token\"")
            );
            continue;
        }
        let answer = if headers.iter().any(|(name, _)| *name == "content-length") {
            raw_request_with_body(&app.url, "OPTIONS", "/fhir/Patient/1", headers, "{}").await
        } else if headers.iter().any(|(name, _)| *name == "transfer-encoding") {
            raw_request_with_body(
                &app.url,
                "OPTIONS",
                "/fhir/Patient/1",
                headers,
                "2\r\n{}\r\n0\r\n\r\n",
            )
            .await
        } else {
            raw_request(&app.url, "OPTIONS", "/fhir/Patient/1", headers).await
        };
        assert_eq!(answer.status, 401, "{headers:?}: {answer:?}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(bare.as_str()),
            "{headers:?}"
        );
    }
}

/// Like [`raw_request`], with a body written after the head as given.
async fn raw_request_with_body(
    url: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawAnswer {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    parse_answer(&bytes)
}

/// Claims an outer layer put on the request (a `ClaimsLayer` left in, a second auth layer)
/// never reach a handler of a request the layer lets through unverified: a public path, or
/// an anonymous request in optional mode. A verified token's claims replace them.
#[tokio::test]
async fn requests_let_through_unverified_carry_no_claims() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .served_at_path("/fhir")
        .optional()
        .build()
        .unwrap();
    let planted = smart_auth::testing::ClaimsBuilder::new()
        .scope("system/*.cruds")
        .client_id("planted")
        .build();
    let app = catch_all_router()
        .layer(layer)
        .layer(smart_auth::testing::ClaimsLayer::new(planted));
    let (url, _server) = serve(app).await;
    for (target, route) in [
        ("/fhir/metadata", "metadata"),
        ("/fhir/.well-known/smart-configuration", "discovery"),
        ("/fhir/Patient/1", "/fhir/{type}/{id}"),
    ] {
        let answer = raw_request(&url, "GET", target, &[]).await;
        assert_eq!(answer.status, 200, "{target}");
        assert_eq!(
            answer.body,
            json!({
                "route": route,
                "params": if route == "/fhir/{type}/{id}" { json!(["Patient", "1"]) } else { json!([]) },
                "verified": false,
                "scopes": null,
            }),
            "{target}"
        );
    }
    let token = format!("Bearer {}", issuer.token().scope("system/Patient.r").sign());
    let answer = raw_request(&url, "GET", "/fhir/Patient/1", &[("authorization", &token)]).await;
    assert_eq!(answer.body["scopes"], json!(["system/Patient.r"]));
}

/// A public path needs no token for any method: one that is the FHIR base (a batch, a
/// system search) or starts a FHIR interaction under it would open FHIR to anonymous
/// callers, so `build` refuses it and names the rule. Other paths, beside or under the
/// base, stay allowed.
#[test]
fn public_paths_never_open_fhir() {
    let build = |base: Option<&str>, path: &str| {
        let mut builder = smart_auth::SmartAuthLayer::builder("https://as.example");
        if let Some(base) = base {
            builder = builder.fhir_base(base);
        }
        builder.public_path(path).build().map(|_| ())
    };
    let refused = [
        (None, "/"),
        (None, "/Patient"),
        (None, "/Patient/1"),
        (None, "/_history"),
        (None, "/$export"),
        (None, "/metadata"),
        (Some("https://api.example/fhir"), "/fhir"),
        (Some("https://api.example/fhir"), "/fhir/"),
        (Some("https://api.example/fhir"), "/FHIR"),
        (Some("https://api.example/fhir"), "/fhir/Patient"),
        (
            Some("https://api.example/fhir"),
            "/fhir/Observation/1/_history",
        ),
        (Some("https://api.example/fhir"), "/fhir/_search"),
        (
            Some("https://api.example/fhir"),
            "/fhir/$export-poll-status",
        ),
        (Some("https://api.example/fhir"), "/Fhir/Patient"),
    ];
    for (base, path) in refused {
        assert!(
            matches!(
                build(base, path),
                Err(smart_auth::ConfigError::InvalidRoutePath { setting: "public_path", path: ref given, .. })
                    if given == path
            ),
            "{base:?} {path}"
        );
    }
    for (base, path) in [
        (None, "/health"),
        (None, "/admin/ping"),
        (Some("https://api.example/fhir"), "/"),
        (Some("https://api.example/fhir"), "/health"),
        (Some("https://api.example/fhir"), "/fhir-ui"),
        (Some("https://api.example/fhir"), "/fhir/ui"),
        (Some("https://api.example/fhir"), "/Patient"),
    ] {
        assert_eq!(build(base, path), Ok(()), "{base:?} {path}");
    }
}

/// A target in authority form (`host:port`, RFC 9112 section 3.2.3: for `CONNECT` only)
/// has no path: axum's router matches no route with it and hands it to the fallback (a
/// proxy there forwards it as `/`). Enforcement cannot read it as the root, where a `POST`
/// is a batch the handler was to check entry by entry, or as a path outside the base: 400,
/// whatever the scopes. The same requests with the path `/` are read as the root.
#[tokio::test]
async fn authority_form_targets_are_unreadable() {
    let settings = [
        (
            "/",
            ScopeEnforcement::new().handler_checks_bundle_entries(),
            "POST",
        ),
        (
            "/fhir",
            ScopeEnforcement::new().allow_any_token_outside_base(),
            "GET",
        ),
    ];
    for (base, enforcement, passes_at_root) in settings {
        let app = served(|b| b.served_at_path(base).enforce_scopes(enforcement)).await;
        let token = app.issuer.token().scope("system/*.cruds").sign();
        let authorization = format!("Bearer {token}");
        let auth = [("authorization", authorization.as_str())];
        let authority = app.url.trim_start_matches("http://").to_owned();
        for method in ["POST", "GET", "DELETE"] {
            let answer = raw_request(&app.url, method, &authority, &auth).await;
            assert_eq!(answer.status, 400, "{base} {method}: {answer:?}");
            assert_eq!(
                answer.challenge,
                Some(malformed_request_challenge(app.issuer.audience())),
                "{base} {method}"
            );
        }
        let answer = raw_request(&app.url, passes_at_root, "/", &auth).await;
        assert_eq!(answer.status, 200, "{base} {passes_at_root} /: {answer:?}");
    }
}
