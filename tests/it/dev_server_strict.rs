//! The development server refuses what a strict reading of RFC 6749, 7009, 7521, 7523,
//! 7591 and SMART Backend Services refuses: client assertions, client authentication,
//! registration, and who may revoke or introspect which token. All over HTTP on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use smart_auth::ManualClock;
use smart_auth::client::{BackendServiceClient, ClientKey};
use smart_auth::dev_server::{ClientRegistration, DevAuthServer};

use crate::dev_server::{ASSERTION_TYPE, FHIR, urlencode};

const NOW: u64 = 1_800_000_000;
const BASIC_CHALLENGE: &str = "Basic realm=\"smart-auth development server\"";

/// A `private_key_jwt` client that signs raw header and payload texts with Ed25519, so
/// tests can send `null`s, wrong types and duplicate members exactly as written.
struct RawClient {
    key: Ed25519KeyPair,
    kid: &'static str,
    client_id: &'static str,
    next_jti: AtomicUsize,
}

impl RawClient {
    fn new(client_id: &'static str) -> Self {
        Self {
            key: Ed25519KeyPair::generate().unwrap(),
            kid: "raw-1",
            client_id,
            next_jti: AtomicUsize::new(0),
        }
    }

    fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref()),
        }]})
    }

    fn sign_texts(&self, header: &str, payload: &str) -> String {
        self.sign_input(&format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        ))
    }

    /// A signature over exactly `input`, appended as the last segment.
    fn sign_input(&self, input: &str) -> String {
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn header(&self) -> Map<String, Value> {
        object(json!({"alg": "EdDSA", "kid": self.kid, "typ": "JWT"}))
    }

    /// Valid claims at `now` for `token_endpoint`, with a fresh `jti`.
    fn claims(&self, token_endpoint: &str, now: i64) -> Map<String, Value> {
        let jti = format!("jti-{}", self.next_jti.fetch_add(1, Ordering::Relaxed));
        object(json!({
            "iss": self.client_id, "sub": self.client_id, "aud": token_endpoint,
            "exp": now + 240, "iat": now, "jti": jti,
        }))
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// Sets members (`Some`, `null` included) or removes them (`None`).
fn edit(mut map: Map<String, Value>, changes: &[(&str, Option<Value>)]) -> String {
    for (name, value) in changes {
        match value {
            Some(value) => {
                map.insert((*name).to_owned(), value.clone());
            }
            None => {
                map.remove(*name);
            }
        }
    }
    Value::Object(map).to_string()
}

struct Strict {
    server: DevAuthServer,
    client: RawClient,
    http: reqwest::Client,
    now: i64,
}

async fn strict_server(leeway_secs: u64) -> Strict {
    let clock = ManualClock::at_unix(NOW);
    let server = DevAuthServer::builder(FHIR)
        .clock(clock)
        .clock_leeway(std::time::Duration::from_secs(leeway_secs))
        .start()
        .await
        .unwrap();
    let client = RawClient::new("raw");
    server.register(
        ClientRegistration::private_key_jwt("raw", client.jwks(), ["system/*.rs"]).unwrap(),
    );
    // The operator's resource server: it introspects any client's tokens.
    server.register(
        ClientRegistration::client_secret_basic("basic", "secret1", ["system/*.rs"])
            .allow_introspecting_any_token(),
    );
    Strict {
        server,
        client,
        http: crate::support::loopback_client(),
        now: i64::try_from(NOW).unwrap(),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn error(&self) -> (u16, Option<&str>) {
        (self.status.as_u16(), self.body["error"].as_str())
    }

    fn challenge(&self) -> Option<&str> {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap())
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn form_body(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Strict {
    fn token_endpoint(&self) -> &str {
        self.server.token_endpoint()
    }

    fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(form))
    }

    async fn token_with(&self, assertion: &str, extra: &[(&str, &str)]) -> Answer {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ];
        form.extend_from_slice(extra);
        send(self.post(self.token_endpoint(), &form)).await
    }

    /// An access token for `system/Patient.rs` of the client with these Basic credentials.
    async fn basic_token(&self, id: &str, secret: &str) -> String {
        let request = self
            .post(
                self.token_endpoint(),
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/Patient.rs"),
                ],
            )
            .basic_auth(id, Some(secret));
        send(request).await.body["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// Why the assertion table's row `case` is refused: a part of the answer's description,
/// so that each row proves its own rule and not an earlier one.
fn refusal_reason(case: &str) -> &'static str {
    const NOT_A_JWT: &str = "not a valid signed JWT";
    // One answer whatever is unknown: the client, its key or its key set's URL.
    const NO_KEY: &str = "names no key registered for private_key_jwt";
    const NUMBERS: &str = "must be NumericDate numbers";
    match case {
        "kid unknown" | "alg of another family" => NO_KEY,
        "alg none" | "alg HS256" => "alg is not supported",
        "alg null"
        | "alg absent"
        | "jku number"
        | "b64 false"
        | "enc"
        | "zip DEF"
        | "x5c string"
        | "jwk string"
        | "x5u number"
        | "duplicate typ"
        | "duplicate alg"
        | "header not an object"
        | "duplicate sub"
        | "duplicate aud"
        | "nested duplicate"
        | "claims not an object" => NOT_A_JWT,
        "crit" | "crit null" | "cty JWT" => "crit or cty",
        "header iss differs" | "header aud differs" => "repeats a claim with another value",
        "jku unregistered" | "iss another client" => NO_KEY,
        "iss absent" | "iss null" | "iss number" => "iss must be the client id",
        "sub absent" | "sub null" | "iss != sub" => "iss and sub must both be the client id",
        "exp absent" => "exp is required",
        "exp now" | "exp now + 0.9" => "has expired",
        "exp now + 302" => "five minutes",
        "exp null" | "exp string" | "exp 1e300" | "nbf null" | "nbf string" | "nbf -1e300"
        | "iat null" | "iat string" => NUMBERS,
        "nbf now + 2" | "nbf now + 1.1" => "not valid yet",
        "iat now + 2" | "iat now + 1.5" => "iat is in the future",
        _ if case.starts_with("typ") => "needs typ JWT",
        _ if case.starts_with("kid") => "needs a kid string",
        _ if case.starts_with("aud") => {
            "aud must be the token endpoint URL (or the issuer), and only this server"
        }
        _ if case.starts_with("jti") => "jti must be a string of 1 to 256 bytes",
        _ => unreachable!("no reason listed for {case}"),
    }
}

/// Every member of the class "a client assertion a strict reading refuses" is
/// `invalid_client` (400, RFC 7521 section 4.2.1), and the valid variants pass.
#[tokio::test]
async fn client_assertion_table() {
    let s = strict_server(0).await;
    let endpoint = s.token_endpoint().to_owned();
    let now = s.now;
    let header = || s.client.header();
    let claims = || s.client.claims(&endpoint, now);
    let valid_header = Value::Object(header()).to_string();
    let h = |changes: &[(&str, Option<Value>)]| edit(header(), changes);
    let c = |changes: &[(&str, Option<Value>)]| edit(claims(), changes);
    let long_jti = "j".repeat(257);
    let max_jti = "j".repeat(256);
    // (case, header text, claims text, accepted)
    let rows: Vec<(&str, String, String, bool)> = vec![
        ("valid", valid_header.clone(), c(&[]), true),
        // typ: required, the JWT media type.
        ("typ jwt", h(&[("typ", Some(json!("jwt")))]), c(&[]), true),
        (
            "typ application/jwt",
            h(&[("typ", Some(json!("application/jwt")))]),
            c(&[]),
            true,
        ),
        // RFC 7523bis's explicit type for client assertions.
        (
            "typ client-authentication+jwt",
            h(&[("typ", Some(json!("client-authentication+jwt")))]),
            c(&[]),
            true,
        ),
        ("typ absent", h(&[("typ", None)]), c(&[]), false),
        ("typ null", h(&[("typ", Some(Value::Null))]), c(&[]), false),
        (
            "typ at+jwt",
            h(&[("typ", Some(json!("at+jwt")))]),
            c(&[]),
            false,
        ),
        ("typ JWS", h(&[("typ", Some(json!("JWS")))]), c(&[]), false),
        ("typ empty", h(&[("typ", Some(json!("")))]), c(&[]), false),
        ("typ number", h(&[("typ", Some(json!(1)))]), c(&[]), false),
        (
            "typ array",
            h(&[("typ", Some(json!(["JWT"])))]),
            c(&[]),
            false,
        ),
        // kid: required string naming the registered key.
        ("kid absent", h(&[("kid", None)]), c(&[]), false),
        ("kid null", h(&[("kid", Some(Value::Null))]), c(&[]), false),
        ("kid empty", h(&[("kid", Some(json!("")))]), c(&[]), false),
        ("kid number", h(&[("kid", Some(json!(1)))]), c(&[]), false),
        (
            "kid unknown",
            h(&[("kid", Some(json!("other")))]),
            c(&[]),
            false,
        ),
        // alg
        (
            "alg none",
            h(&[("alg", Some(json!("none")))]),
            c(&[]),
            false,
        ),
        (
            "alg HS256",
            h(&[("alg", Some(json!("HS256")))]),
            c(&[]),
            false,
        ),
        ("alg null", h(&[("alg", Some(Value::Null))]), c(&[]), false),
        ("alg absent", h(&[("alg", None)]), c(&[]), false),
        (
            "alg of another family",
            h(&[("alg", Some(json!("ES256")))]),
            c(&[]),
            false,
        ),
        // crit, cty, jku
        ("crit", h(&[("crit", Some(json!(["exp"])))]), c(&[]), false),
        (
            "crit null",
            h(&[("crit", Some(Value::Null))]),
            c(&[]),
            false,
        ),
        ("cty JWT", h(&[("cty", Some(json!("JWT")))]), c(&[]), false),
        ("jku number", h(&[("jku", Some(json!(1)))]), c(&[]), false),
        // Header parameters that change how the payload is read, or of the wrong type.
        (
            "b64 false",
            h(&[("b64", Some(json!(false)))]),
            c(&[]),
            false,
        ),
        ("enc", h(&[("enc", Some(json!("A256GCM")))]), c(&[]), false),
        ("zip DEF", h(&[("zip", Some(json!("DEF")))]), c(&[]), false),
        (
            "x5c string",
            h(&[("x5c", Some(json!("MIIB")))]),
            c(&[]),
            false,
        ),
        (
            "jwk string",
            h(&[("jwk", Some(json!("key")))]),
            c(&[]),
            false,
        ),
        ("x5u number", h(&[("x5u", Some(json!(1)))]), c(&[]), false),
        ("zip NONE", h(&[("zip", Some(json!("NONE")))]), c(&[]), true),
        // Claims repeated in the header (RFC 7519 section 5.3): the same, or refused.
        (
            "header iss differs",
            h(&[("iss", Some(json!("other-client")))]),
            c(&[]),
            false,
        ),
        (
            "header aud differs",
            h(&[("aud", Some(json!("https://elsewhere.example/token")))]),
            c(&[]),
            false,
        ),
        (
            "header sub the same",
            h(&[("sub", Some(claims()["sub"].clone()))]),
            c(&[]),
            true,
        ),
        (
            "jku unregistered",
            h(&[("jku", Some(json!("https://evil.example/jwks")))]),
            c(&[]),
            false,
        ),
        // Duplicate header members, same or different values.
        (
            "duplicate typ",
            valid_header.replacen('{', r#"{"typ":"at+jwt","#, 1),
            c(&[]),
            false,
        ),
        (
            "duplicate alg",
            valid_header.replacen('{', r#"{"alg":"EdDSA","#, 1),
            c(&[]),
            false,
        ),
        ("header not an object", "[1]".to_owned(), c(&[]), false),
        // iss and sub: both the client id, strings.
        (
            "iss absent",
            valid_header.clone(),
            c(&[("iss", None)]),
            false,
        ),
        (
            "iss null",
            valid_header.clone(),
            c(&[("iss", Some(Value::Null))]),
            false,
        ),
        (
            "iss number",
            valid_header.clone(),
            c(&[("iss", Some(json!(1)))]),
            false,
        ),
        (
            "sub absent",
            valid_header.clone(),
            c(&[("sub", None)]),
            false,
        ),
        (
            "sub null",
            valid_header.clone(),
            c(&[("sub", Some(Value::Null))]),
            false,
        ),
        (
            "iss != sub",
            valid_header.clone(),
            c(&[("sub", Some(json!("basic")))]),
            false,
        ),
        (
            "iss another client",
            valid_header.clone(),
            c(&[("iss", Some(json!("basic"))), ("sub", Some(json!("basic")))]),
            false,
        ),
        // aud: the token endpoint and nothing else.
        (
            "aud one-element array",
            valid_header.clone(),
            c(&[("aud", Some(json!([endpoint])))]),
            true,
        ),
        (
            "aud with another member",
            valid_header.clone(),
            c(&[("aud", Some(json!([endpoint, "https://other.example"])))]),
            false,
        ),
        (
            "aud twice in the array",
            valid_header.clone(),
            c(&[("aud", Some(json!([endpoint, endpoint])))]),
            true,
        ),
        (
            "aud the issuer and the endpoint",
            valid_header.clone(),
            c(&[("aud", Some(json!([s.server.url(), endpoint])))]),
            true,
        ),
        (
            "aud the issuer and another",
            valid_header.clone(),
            c(&[(
                "aud",
                Some(json!([s.server.url(), "https://other.example"])),
            )]),
            false,
        ),
        (
            "aud the issuer with a trailing slash",
            valid_header.clone(),
            c(&[("aud", Some(json!(format!("{}/", s.server.url()))))]),
            false,
        ),
        (
            "aud empty array",
            valid_header.clone(),
            c(&[("aud", Some(json!([])))]),
            false,
        ),
        (
            "aud null",
            valid_header.clone(),
            c(&[("aud", Some(Value::Null))]),
            false,
        ),
        (
            "aud absent",
            valid_header.clone(),
            c(&[("aud", None)]),
            false,
        ),
        (
            "aud trailing slash",
            valid_header.clone(),
            c(&[("aud", Some(json!(format!("{endpoint}/"))))]),
            false,
        ),
        // RFC 7523bis and RFC 9126: the issuer names this server too.
        (
            "aud the issuer",
            valid_header.clone(),
            c(&[("aud", Some(json!(s.server.url())))]),
            true,
        ),
        (
            "aud object",
            valid_header.clone(),
            c(&[("aud", Some(json!({"aud": endpoint})))]),
            false,
        ),
        // exp: required integer, in the future, at most 300 s ahead.
        (
            "exp absent",
            valid_header.clone(),
            c(&[("exp", None)]),
            false,
        ),
        (
            "exp null",
            valid_header.clone(),
            c(&[("exp", Some(Value::Null))]),
            false,
        ),
        (
            "exp string",
            valid_header.clone(),
            c(&[("exp", Some(json!((now + 60).to_string())))]),
            false,
        ),
        // RFC 7519 section 2: a NumericDate may have a fraction; exp is rounded down.
        (
            "exp fraction",
            valid_header.clone(),
            c(&[("exp", Some(json!(now as f64 + 60.5)))]),
            true,
        ),
        (
            "exp now + 0.9",
            valid_header.clone(),
            c(&[("exp", Some(json!(now as f64 + 0.9)))]),
            false,
        ),
        (
            "exp 1e300",
            valid_header.clone(),
            c(&[("exp", Some(json!(1e300)))]),
            false,
        ),
        (
            "exp now",
            valid_header.clone(),
            c(&[("exp", Some(json!(now)))]),
            false,
        ),
        (
            "exp now + 1",
            valid_header.clone(),
            c(&[("exp", Some(json!(now + 1)))]),
            true,
        ),
        (
            "exp now + 300",
            valid_header.clone(),
            c(&[("exp", Some(json!(now + 300)))]),
            true,
        ),
        // A second more, for clients that round their clock up (`Math.round`).
        (
            "exp now + 301",
            valid_header.clone(),
            c(&[("exp", Some(json!(now + 301)))]),
            true,
        ),
        (
            "exp now + 302",
            valid_header.clone(),
            c(&[("exp", Some(json!(now + 302)))]),
            false,
        ),
        // nbf: optional integer, not in the future.
        (
            "nbf now",
            valid_header.clone(),
            c(&[("nbf", Some(json!(now)))]),
            true,
        ),
        (
            "nbf now + 1 (a client rounding up)",
            valid_header.clone(),
            c(&[("nbf", Some(json!(now + 1)))]),
            true,
        ),
        (
            "nbf now + 2",
            valid_header.clone(),
            c(&[("nbf", Some(json!(now + 2)))]),
            false,
        ),
        // nbf and iat fractions are rounded up.
        (
            "nbf now - 0.5",
            valid_header.clone(),
            c(&[("nbf", Some(json!(now as f64 - 0.5)))]),
            true,
        ),
        (
            "nbf now + 1.1",
            valid_header.clone(),
            c(&[("nbf", Some(json!(now as f64 + 1.1)))]),
            false,
        ),
        (
            "nbf -1e300",
            valid_header.clone(),
            c(&[("nbf", Some(json!(-1e300)))]),
            false,
        ),
        (
            "nbf null",
            valid_header.clone(),
            c(&[("nbf", Some(Value::Null))]),
            false,
        ),
        (
            "nbf string",
            valid_header.clone(),
            c(&[("nbf", Some(json!("0")))]),
            false,
        ),
        // iat: optional integer, not in the future.
        (
            "iat absent",
            valid_header.clone(),
            c(&[("iat", None)]),
            true,
        ),
        (
            "iat now + 1 (a client rounding up)",
            valid_header.clone(),
            c(&[("iat", Some(json!(now + 1)))]),
            true,
        ),
        (
            "iat now + 2",
            valid_header.clone(),
            c(&[("iat", Some(json!(now + 2)))]),
            false,
        ),
        (
            "iat now - 0.5",
            valid_header.clone(),
            c(&[("iat", Some(json!(now as f64 - 0.5)))]),
            true,
        ),
        (
            "iat now + 1.5",
            valid_header.clone(),
            c(&[("iat", Some(json!(now as f64 + 1.5)))]),
            false,
        ),
        (
            "iat null",
            valid_header.clone(),
            c(&[("iat", Some(Value::Null))]),
            false,
        ),
        (
            "iat string",
            valid_header.clone(),
            c(&[("iat", Some(json!("0")))]),
            false,
        ),
        // jti: required non-empty string, bounded.
        (
            "jti absent",
            valid_header.clone(),
            c(&[("jti", None)]),
            false,
        ),
        (
            "jti null",
            valid_header.clone(),
            c(&[("jti", Some(Value::Null))]),
            false,
        ),
        (
            "jti empty",
            valid_header.clone(),
            c(&[("jti", Some(json!("")))]),
            false,
        ),
        (
            "jti number",
            valid_header.clone(),
            c(&[("jti", Some(json!(7)))]),
            false,
        ),
        (
            "jti 257 bytes",
            valid_header.clone(),
            c(&[("jti", Some(json!(long_jti)))]),
            false,
        ),
        (
            "jti 256 bytes",
            valid_header.clone(),
            c(&[("jti", Some(json!(max_jti)))]),
            true,
        ),
        // Duplicate claims, at the top and nested.
        (
            "duplicate sub",
            valid_header.clone(),
            c(&[]).replacen('{', r#"{"sub":"basic","#, 1),
            false,
        ),
        (
            "duplicate aud",
            valid_header.clone(),
            c(&[]).replacen('{', r#"{"aud":"https://other.example","#, 1),
            false,
        ),
        (
            "nested duplicate",
            valid_header.clone(),
            c(&[]).replacen('{', r#"{"x":{"a":1,"a":2},"#, 1),
            false,
        ),
        (
            "claims not an object",
            valid_header.clone(),
            "[1]".to_owned(),
            false,
        ),
    ];
    for (case, header, claims, accepted) in rows {
        let assertion = s.client.sign_texts(&header, &claims);
        let answer = s.token_with(&assertion, &[]).await;
        if accepted {
            assert_eq!(answer.status, StatusCode::OK, "{case}: {}", answer.body);
        } else {
            assert_eq!(
                answer.error(),
                (400, Some("invalid_client")),
                "{case}: {}",
                answer.body
            );
            let description = answer.body["error_description"].as_str().unwrap();
            assert!(
                description.contains(refusal_reason(case)),
                "{case}: refused for another reason: {description}"
            );
            assert_eq!(answer.headers["content-type"], "application/json");
            assert_eq!(answer.headers["cache-control"], "no-store");
            assert_eq!(answer.challenge(), None, "{case}");
        }
    }
    // Four segments, the signature valid over the first three: no JWT, whatever the
    // segments hold.
    let header_segment = URL_SAFE_NO_PAD.encode(&valid_header);
    let claims_segment = URL_SAFE_NO_PAD.encode(Value::Object(claims()).to_string());
    let assertion = s.client.sign_input(&format!(
        "{header_segment}.{claims_segment}.{claims_segment}"
    ));
    let answer = s.token_with(&assertion, &[]).await;
    assert_eq!(answer.error(), (400, Some("invalid_client")));
    assert!(
        answer.body["error_description"]
            .as_str()
            .unwrap()
            .contains("not a valid signed JWT"),
        "{}",
        answer.body
    );
    // A valid assertion, replayed: refused.
    let assertion = s
        .client
        .sign_texts(&valid_header, &Value::Object(claims()).to_string());
    assert_eq!(s.token_with(&assertion, &[]).await.status, StatusCode::OK);
    assert_eq!(
        s.token_with(&assertion, &[]).await.error(),
        (400, Some("invalid_client"))
    );
}

/// The time rules at the edges of a 30 s leeway.
#[tokio::test]
async fn client_assertion_times_at_the_leeway_edges() {
    let s = strict_server(30).await;
    let endpoint = s.token_endpoint().to_owned();
    let now = s.now;
    let header = Value::Object(s.client.header()).to_string();
    let rows: &[(&str, Value, bool)] = &[
        ("nbf now + 30", json!(now + 30), true),
        ("nbf now + 31", json!(now + 31), true),
        ("nbf now + 32", json!(now + 32), false),
    ];
    for (case, nbf, accepted) in rows {
        let claims = edit(
            s.client.claims(&endpoint, now),
            &[("nbf", Some(nbf.clone()))],
        );
        let answer = s
            .token_with(&s.client.sign_texts(&header, &claims), &[])
            .await;
        assert_eq!(
            answer.status.is_success(),
            *accepted,
            "{case}: {}",
            answer.body
        );
    }
    let rows: &[(&str, &str, i64, bool)] = &[
        ("exp now - 29", "exp", now - 29, true),
        ("exp now - 30", "exp", now - 30, false),
        ("exp now + 330", "exp", now + 330, true),
        ("exp now + 331", "exp", now + 331, true),
        ("exp now + 332", "exp", now + 332, false),
        ("iat now + 31", "iat", now + 31, true),
        ("iat now + 32", "iat", now + 32, false),
    ];
    for (case, claim, value, accepted) in rows {
        let mut changes = vec![(*claim, Some(json!(value)))];
        if *claim == "exp" {
            changes.push(("iat", Some(json!(now - 200))));
        }
        let claims = edit(s.client.claims(&endpoint, now), &changes);
        let answer = s
            .token_with(&s.client.sign_texts(&header, &claims), &[])
            .await;
        if *accepted {
            assert_eq!(answer.status, StatusCode::OK, "{case}: {}", answer.body);
        } else {
            assert_eq!(answer.error(), (400, Some("invalid_client")), "{case}");
        }
    }
}

/// A form `client_id` must name the client the assertion is about.
#[tokio::test]
async fn form_client_id_must_match_the_assertion() {
    let s = strict_server(0).await;
    let endpoint = s.token_endpoint().to_owned();
    let header = Value::Object(s.client.header()).to_string();
    let sign = || {
        s.client.sign_texts(
            &header,
            &Value::Object(s.client.claims(&endpoint, s.now)).to_string(),
        )
    };
    for other in ["basic", "RAW", "raw ", "nobody"] {
        let answer = s.token_with(&sign(), &[("client_id", other)]).await;
        assert_eq!(answer.error(), (400, Some("invalid_client")), "{other:?}");
    }
    let answer = s.token_with(&sign(), &[("client_id", "raw")]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// No client authentication, an `Authorization` scheme the server does not support, or
/// malformed Basic credentials: 401 `invalid_client` with the Basic challenge. A method
/// it does not support sent in the form: 400 `invalid_client`.
#[tokio::test]
async fn missing_or_unsupported_client_authentication_is_401_invalid_client() {
    let s = strict_server(0).await;
    let base = [
        ("grant_type", "client_credentials"),
        ("scope", "system/Patient.rs"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut form = base.to_vec();
        form.extend_from_slice(extra);
        form
    };
    let basic = |raw: &str| format!("Basic {}", STANDARD.encode(raw));
    // (case, form, Authorization header)
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<String>);
    let rows: Vec<Row<'_>> = vec![
        ("nothing", with(&[]), None),
        (
            "client_id only (a Basic client)",
            with(&[("client_id", "basic")]),
            None,
        ),
        (
            "client_id only (an assertion client)",
            with(&[("client_id", "raw")]),
            None,
        ),
        ("Bearer scheme", with(&[]), Some("Bearer abc".to_owned())),
        (
            "Digest scheme",
            with(&[]),
            Some("Digest username=\"basic\"".to_owned()),
        ),
        (
            "Basic without credentials",
            with(&[]),
            Some("Basic".to_owned()),
        ),
        (
            "Basic, bad base64",
            with(&[]),
            Some("Basic !!!!".to_owned()),
        ),
        (
            "Basic, unpadded base64",
            with(&[]),
            Some(basic("basic:secret1").trim_end_matches('=').to_owned()),
        ),
        ("Basic, no colon", with(&[]), Some(basic("basicsecret"))),
        ("Basic, empty id", with(&[]), Some(basic(":secret"))),
        (
            "Basic, bad escape in the secret",
            with(&[]),
            Some(basic("basic:sec%zzret")),
        ),
        (
            "Basic, bad escape in the id",
            with(&[]),
            Some(basic("ba%sic:secret")),
        ),
        (
            "Basic, escape to invalid UTF-8",
            with(&[]),
            Some(basic("basic:%FF")),
        ),
        (
            "Basic, bytes not UTF-8",
            with(&[]),
            Some(format!("Basic {}", STANDARD.encode(b"basic:\xff"))),
        ),
        ("Basic, wrong secret", with(&[]), Some(basic("basic:wrong"))),
        (
            "Basic, an assertion client",
            with(&[]),
            Some(basic("raw:secret")),
        ),
        (
            "Basic, form client_id of another client",
            with(&[("client_id", "raw")]),
            Some(basic("basic:secret1")),
        ),
    ];
    for (case, form, authorization) in rows {
        let mut request = s.post(s.token_endpoint(), &form);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let answer = send(request).await;
        assert_eq!(
            answer.error(),
            (401, Some("invalid_client")),
            "{case}: {}",
            answer.body
        );
        assert_eq!(answer.challenge(), Some(BASIC_CHALLENGE), "{case}");
        assert_eq!(answer.headers["cache-control"], "no-store", "{case}");
        assert!(!answer.body.to_string().contains("secret\""), "{case}");
    }
    // A method this server does not support, sent in the form: 400 `invalid_client`
    // without a challenge (RFC 6749 section 5.2; the Inferno kits require 400 for
    // another assertion type).
    for (case, form) in [
        (
            "client_secret_post",
            with(&[("client_id", "basic"), ("client_secret", "secret1")]),
        ),
        (
            "another assertion type",
            with(&[
                ("client_assertion_type", "not_an_assertion_type"),
                ("client_assertion", "a.b.c"),
            ]),
        ),
        (
            "an assertion type of another case",
            with(&[
                (
                    "client_assertion_type",
                    "URN:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", "a.b.c"),
            ]),
        ),
    ] {
        let answer = send(s.post(s.token_endpoint(), &form)).await;
        assert_eq!(
            answer.error(),
            (400, Some("invalid_client")),
            "{case}: {}",
            answer.body
        );
        assert_eq!(answer.challenge(), None, "{case}");
        assert_eq!(answer.headers["cache-control"], "no-store", "{case}");
    }
    // The same request with valid Basic credentials succeeds (the rows fail for their
    // stated reason only), including a matching form client_id.
    for form in [with(&[]), with(&[("client_id", "basic")])] {
        let answer = send(
            s.post(s.token_endpoint(), &form)
                .header("authorization", basic("basic:secret1")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
}

/// RFC 6749 section 2.3.1: id and secret are form-encoded before Basic encoding; the
/// server decodes them exactly once, and also takes the secret as sent (RFC 7617).
#[tokio::test]
async fn basic_credentials_are_form_decoded() {
    let s = strict_server(0).await;
    let (id, secret) = ("my client:1", "p@ss+w%rd:/é ~");
    s.server.register(ClientRegistration::client_secret_basic(
        id,
        secret,
        ["system/*.rs"],
    ));
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "system/Patient.rs"),
    ];
    let with_basic = |raw: String| {
        s.post(s.token_endpoint(), &form)
            .header("authorization", format!("Basic {}", STANDARD.encode(raw)))
    };
    let encoded = format!("{}:{}", urlencode(id), urlencode(secret));
    assert_eq!(send(with_basic(encoded)).await.status, StatusCode::OK);
    // Lower-case escapes decode the same.
    let lower = "my+client%3a1:p%40ss%2bw%25rd%3a%2f%c3%a9+~".to_owned();
    assert_eq!(send(with_basic(lower)).await.status, StatusCode::OK);
    // The secret as sent, not encoded (RFC 7617 clients: `curl -u`, Inferno): `+` would
    // decode to a space and `%rd` is no escape, but the secret is known either way.
    let raw_secret = format!("my+client%3A1:{secret}");
    assert_eq!(send(with_basic(raw_secret)).await.status, StatusCode::OK);
    // An id that is not encoded: its colon ends it, another client.
    let raw = format!("{id}:{secret}");
    let answer = send(with_basic(raw.clone())).await;
    assert_eq!(answer.error(), (401, Some("invalid_client")), "{raw}");
    assert_eq!(answer.challenge(), Some(BASIC_CHALLENGE));
    // Neither spelling of the secret: a space where the secret has `+`, or a part of it.
    for wrong in [
        "my+client%3A1:p@ss w%rd:/é ~".to_owned(),
        "my+client%3A1:p@ss+w%25rd:/é".to_owned(),
        "my+client%3A1:p%40ss%2Bw%25rd%3A%2F%C3%A9+".to_owned(),
    ] {
        let answer = send(with_basic(wrong.clone())).await;
        assert_eq!(answer.error(), (401, Some("invalid_client")), "{wrong}");
    }
    // Encoded twice: fails.
    let twice = format!(
        "{}:{}",
        urlencode(&urlencode(id)),
        urlencode(&urlencode(secret))
    );
    assert_eq!(
        send(with_basic(twice)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A client id with `+` or `%` sent as it is (`curl -u 'svc+reports:...'`) names the
    // client registered so, as the secret's own spelling does; a client registered with
    // the decoded spelling is found first when both exist.
    for id in ["svc+reports", "50%off"] {
        s.server.register(ClientRegistration::client_secret_basic(
            id,
            "s3cret",
            ["system/*.rs"],
        ));
        let answer = send(with_basic(format!("{id}:s3cret"))).await;
        assert_eq!(answer.status, StatusCode::OK, "{id}: {}", answer.body);
        let answer = send(with_basic(format!("{}:s3cret", urlencode(id)))).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{id} encoded: {}",
            answer.body
        );
        let answer = send(with_basic(format!("{id}:wrong"))).await;
        assert_eq!(answer.error(), (401, Some("invalid_client")), "{id}");
    }
}

/// RFC 6749 section 2.3: more than one authentication method is `invalid_request`.
#[tokio::test]
async fn two_authentication_methods_are_invalid_request() {
    let s = strict_server(0).await;
    let endpoint = s.token_endpoint().to_owned();
    let header = Value::Object(s.client.header()).to_string();
    let assertion = s.client.sign_texts(
        &header,
        &Value::Object(s.client.claims(&endpoint, s.now)).to_string(),
    );
    let basic = format!("Basic {}", STANDARD.encode("basic:secret1"));
    let base = vec![
        ("grant_type", "client_credentials"),
        ("scope", "system/Patient.rs"),
    ];
    let with = |extra: &[(&'static str, &str)]| {
        let mut form = base.clone();
        form.extend(extra.iter().map(|(k, v)| (*k, &**v)));
        form.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    let assertion_params = [
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
    ];
    type Row<'a> = (&'a str, Vec<(String, String)>, Vec<String>);
    let rows: Vec<Row<'_>> = vec![
        (
            "Basic + assertion",
            with(&assertion_params),
            vec![basic.clone()],
        ),
        (
            "Basic + client_secret",
            with(&[("client_secret", "secret")]),
            vec![basic.clone()],
        ),
        (
            "assertion + client_secret",
            with(&[
                assertion_params[0],
                assertion_params[1],
                ("client_secret", "secret"),
            ]),
            vec![],
        ),
        (
            "Bearer + assertion",
            with(&assertion_params),
            vec!["Bearer x".to_owned()],
        ),
        (
            "two Authorization headers",
            with(&[]),
            vec![basic.clone(), basic.clone()],
        ),
        (
            "assertion without its type",
            with(&[assertion_params[1]]),
            vec![],
        ),
        (
            "assertion type without an assertion",
            with(&[assertion_params[0]]),
            vec![],
        ),
    ];
    for (case, form, authorizations) in rows {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut request = s.post(s.token_endpoint(), &pairs);
        for value in authorizations {
            request = request.header("authorization", value);
        }
        let answer = send(request).await;
        assert_eq!(
            answer.error(),
            (400, Some("invalid_request")),
            "{case}: {}",
            answer.body
        );
    }
    // The assertion was not consumed by the refused requests: it still works alone.
    let answer = s.token_with(&assertion, &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// Form bodies and scope strings are read strictly.
#[tokio::test]
async fn malformed_forms_and_scopes() {
    let s = strict_server(0).await;
    let basic = format!("Basic {}", STANDARD.encode("basic:secret1"));
    type Row<'a> = (&'a str, &'a str, &'a str, (u16, Option<&'a str>));
    let rows: &[Row<'_>] = &[
        (
            "bad escape",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=system%2FPatient.rs%zz",
            (400, Some("invalid_request")),
        ),
        (
            "escape to invalid UTF-8",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=%FF",
            (400, Some("invalid_request")),
        ),
        (
            "repeated",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=a&scope=b",
            (400, Some("invalid_request")),
        ),
        (
            "JSON body",
            "application/json",
            r#"{"grant_type":"client_credentials"}"#,
            (400, Some("invalid_request")),
        ),
        (
            "tab in scope",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=system%2FPatient.rs%09system%2FObservation.rs",
            (400, Some("invalid_scope")),
        ),
        (
            "LF in scope",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=system%2FPatient.rs%0A",
            (400, Some("invalid_scope")),
        ),
        (
            "double space in scope",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=a++b",
            (400, Some("invalid_scope")),
        ),
        (
            "empty scope is absent",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=",
            (400, Some("invalid_scope")),
        ),
        (
            "a read parameter twice, once empty",
            "application/x-www-form-urlencoded",
            "grant_type=&grant_type=client_credentials&scope=system%2FPatient.rs",
            (400, Some("invalid_request")),
        ),
        (
            "unread parameters may repeat (RFC 8707 resource)",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&scope=system%2FPatient.rs&resource=a&resource=b",
            (200, None),
        ),
        (
            "good",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "grant_type=client_credentials&scope=system%2FPatient.rs&unknown=1",
            (200, None),
        ),
    ];
    for (case, content_type, body, expected) in rows {
        let answer = send(
            s.http
                .post(s.token_endpoint())
                .header("content-type", *content_type)
                .header("authorization", &basic)
                .body(*body),
        )
        .await;
        assert_eq!(answer.error(), *expected, "{case}: {}", answer.body);
    }
    // The client is authenticated before its scope is judged (RFC 6749 section 4.4.2):
    // wrong credentials get 401 `invalid_client` whatever the scope says.
    let wrong = format!("Basic {}", STANDARD.encode("basic:wrong"));
    for body in [
        "grant_type=client_credentials&scope=a++b",
        "grant_type=client_credentials",
        "grant_type=client_credentials&scope=system%2FNotAType.rs",
        "grant_type=client_credentials&scope=system%2FPatient.rs",
    ] {
        let answer = send(
            s.http
                .post(s.token_endpoint())
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", &wrong)
                .body(body),
        )
        .await;
        assert_eq!(answer.error(), (401, Some("invalid_client")), "{body}");
        assert!(
            answer.challenge().is_some_and(|c| c.starts_with("Basic")),
            "{body}"
        );
    }
    // A body over 64 KiB is not read.
    let huge = format!(
        "grant_type=client_credentials&scope={}",
        "a".repeat(70 * 1024)
    );
    let response = s
        .http
        .post(s.token_endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", &basic)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// RFC 7591: JSON only (415 otherwise), public asymmetric keys only, nothing private
/// echoed, typed metadata.
#[tokio::test]
async fn registration_is_strict() {
    let s = strict_server(0).await;
    let url = format!("{}/register", s.server.url());
    let public = s.client.jwks();
    let register = |content_type: Option<&str>, body: String| {
        let mut request = s.http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        send(request)
    };
    let good = json!({"jwks": public, "scope": "system/*.rs"}).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("application/jwk-set+json"),
    ] {
        let answer = register(content_type, good.clone()).await;
        assert_eq!(
            answer.error(),
            (415, Some("invalid_client_metadata")),
            "{content_type:?}"
        );
    }
    let answer = register(Some("application/json; charset=utf-8"), good.clone()).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["jwks"], public);
    assert_eq!(answer.headers["cache-control"], "no-store");

    // Any private or symmetric member, on any key of the set, is refused and not echoed.
    const MARKER: &str = "UFJJVkFURS1NQVRFUklBTA";
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let mut jwks = public.clone();
        jwks["keys"][0][member] = json!(MARKER);
        let answer = register(
            Some("application/json"),
            json!({"jwks": jwks, "scope": "system/*.rs"}).to_string(),
        )
        .await;
        assert_eq!(
            answer.error(),
            (400, Some("invalid_client_metadata")),
            "{member}"
        );
        assert!(!answer.body.to_string().contains(MARKER), "{member}");
    }
    let oct = json!({"keys": [public["keys"][0], {"kty": "oct", "kid": "h"}]});
    let key = &public["keys"][0];
    let with_kid = |kid: Option<Value>| {
        let mut key = key.clone();
        match kid {
            Some(kid) => key["kid"] = kid,
            None => {
                key.as_object_mut().unwrap().remove("kid");
            }
        }
        json!({"jwks": {"keys": [key]}, "scope": "system/*.rs"}).to_string()
    };
    let rows = [
        // SMART: every key has a kid, unique within the set.
        ("kid absent", with_kid(None)),
        ("kid null", with_kid(Some(Value::Null))),
        ("kid empty", with_kid(Some(json!("")))),
        ("kid number", with_kid(Some(json!(1)))),
        ("kid array", with_kid(Some(json!(["raw-1"])))),
        ("kid repeated", json!({"jwks": {"keys": [key, key]}, "scope": "system/*.rs"}).to_string()),
        (
            "kid repeated, one key without",
            json!({"jwks": {"keys": [key, key, {"kty": "OKP", "crv": "Ed25519", "x": key["x"]}]}, "scope": "system/*.rs"}).to_string(),
        ),
        ("symmetric key", json!({"jwks": oct, "scope": "system/*.rs"}).to_string()),
        ("key set not an object", json!({"jwks": [public], "scope": "system/*.rs"}).to_string()),
        ("no keys", json!({"jwks": {"keys": []}, "scope": "system/*.rs"}).to_string()),
        ("key not an object", json!({"jwks": {"keys": ["x"]}, "scope": "system/*.rs"}).to_string()),
        ("kty absent", json!({"jwks": {"keys": [{"kid": "x"}]}, "scope": "system/*.rs"}).to_string()),
        ("jwks and jwks_uri", json!({"jwks": public, "jwks_uri": "https://a.example/jwks", "scope": "system/*.rs"}).to_string()),
        ("jwks_uri not https", json!({"jwks_uri": "http://evil.example/jwks", "scope": "system/*.rs"}).to_string()),
        ("jwks_uri number", json!({"jwks_uri": 5, "scope": "system/*.rs"}).to_string()),
        ("jwks_uri with user info", json!({"jwks_uri": "https://u:p@a.example/jwks", "scope": "system/*.rs"}).to_string()),
        ("jwks_uri with a fragment", json!({"jwks_uri": "https://a.example/jwks#k", "scope": "system/*.rs"}).to_string()),
        ("scope absent", json!({"jwks": public}).to_string()),
        ("scope null", json!({"jwks": public, "scope": null}).to_string()),
        ("scope with a tab", json!({"jwks": public, "scope": "system/*.rs\tsystem/*.cruds"}).to_string()),
        ("scope array", json!({"jwks": public, "scope": ["system/*.rs"]}).to_string()),
        ("auth method number", json!({"jwks": public, "scope": "system/*.rs", "token_endpoint_auth_method": 5}).to_string()),
        ("auth method null", json!({"jwks": public, "scope": "system/*.rs", "token_endpoint_auth_method": null}).to_string()),
        ("auth method none", json!({"scope": "system/*.rs", "token_endpoint_auth_method": "none"}).to_string()),
        ("auth method client_secret_post", json!({"scope": "system/*.rs", "token_endpoint_auth_method": "client_secret_post"}).to_string()),
        ("secret client with jwks", json!({"jwks": public, "scope": "system/*.rs", "token_endpoint_auth_method": "client_secret_basic"}).to_string()),
        ("other grant type", json!({"jwks": public, "scope": "system/*.rs", "grant_types": ["authorization_code"]}).to_string()),
        ("grant_types string", json!({"jwks": public, "scope": "system/*.rs", "grant_types": "client_credentials"}).to_string()),
        ("duplicate member", format!(r#"{{"scope":"system/*.rs","scope":"system/*.cruds","jwks":{public}}}"#)),
        ("nested duplicate", format!(r#"{{"scope":"system/*.rs","jwks":{{"keys":[],"keys":{}}}}}"#, public["keys"])),
        ("not an object", "[1]".to_owned()),
        ("not JSON", "scope=x".to_owned()),
    ];
    for (case, body) in rows {
        let answer = register(Some("application/json"), body).await;
        assert_eq!(
            answer.error(),
            (400, Some("invalid_client_metadata")),
            "{case}: {}",
            answer.body
        );
        let description = answer.body["error_description"].as_str().unwrap();
        if case.starts_with("kid repeated") {
            assert_eq!(description, "two keys in jwks have the same kid", "{case}");
        } else if case.starts_with("kid") {
            assert_eq!(
                description, "every key in jwks needs a kid, a non-empty string",
                "{case}"
            );
        }
    }
    // Two keys with distinct kids: registered.
    let mut second = key.clone();
    second["kid"] = json!("raw-2");
    let body = json!({"jwks": {"keys": [key, second]}, "scope": "system/*.rs"}).to_string();
    let answer = register(Some("application/json"), body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    // No method and no keys: `client_secret_basic`, RFC 7591's default.
    let answer = register(
        Some("application/json"),
        json!({"scope": "system/*.rs"}).to_string(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(
        answer.body["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    assert!(
        answer.body["client_secret"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

/// The same kid rules for a `private_key_jwt` client registered in code, checked on the
/// public part that is kept.
#[test]
fn code_registration_needs_a_unique_kid_per_key() {
    use smart_auth::dev_server::KeySetError;
    let client = RawClient::new("raw");
    let key = client.jwks()["keys"][0].clone();
    let register = |keys: Value| {
        ClientRegistration::private_key_jwt("raw", json!({ "keys": keys }), ["system/*.rs"])
            .map(|registration| registration.client_id().to_owned())
    };
    let mut no_kid = key.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut empty_kid = key.clone();
    empty_kid["kid"] = json!("");
    let mut other_kid = key.clone();
    other_kid["kid"] = json!("raw-2");
    let rows = [
        (json!([key]), Ok("raw".to_owned())),
        (json!([key, other_kid]), Ok("raw".to_owned())),
        // An oct key is left out before the check: its kid clashes with nothing.
        (
            json!([key, {"kty": "oct", "kid": "raw-1", "k": "c2VjcmV0"}]),
            Ok("raw".to_owned()),
        ),
        (json!([no_kid]), Err(KeySetError::MissingKid)),
        (json!([key, empty_kid]), Err(KeySetError::MissingKid)),
        (json!([key, key]), Err(KeySetError::DuplicateKid)),
        (
            json!([other_kid, key, other_kid]),
            Err(KeySetError::DuplicateKid),
        ),
        (json!([]), Err(KeySetError::NotAKeySet)),
        (
            json!([{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]),
            Err(KeySetError::NotAKeySet),
        ),
        (
            json!([{"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"}]),
            Err(KeySetError::NoUsableKey),
        ),
    ];
    for (keys, expected) in rows {
        assert_eq!(register(keys.clone()), expected, "{keys}");
    }
    assert_eq!(
        KeySetError::DuplicateKid.to_string(),
        "two keys in jwks have the same kid"
    );
}

/// A `private_key_jwt` registration made in code keeps only the public keys: `Debug`
/// shows no private member, and assertions still verify.
#[tokio::test]
async fn code_registration_keeps_public_keys_only() {
    let s = strict_server(0).await;
    let mut with_private = s.client.jwks();
    with_private["keys"][0]["d"] = json!("UFJJVkFURS1E");
    with_private["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "h", "k": "U1lNTUVUUklDLUs"}));
    let registration =
        ClientRegistration::private_key_jwt("raw", with_private, ["system/*.rs"]).unwrap();
    let debug = format!("{registration:?}");
    assert!(
        !debug.contains("UFJJVkFURS1E") && !debug.contains("U1lNTUVUUklDLUs"),
        "{debug}"
    );
    assert!(debug.contains("raw-1"), "{debug}");
    s.server.register(registration);
    let endpoint = s.token_endpoint().to_owned();
    let assertion = s.client.sign_texts(
        &Value::Object(s.client.header()).to_string(),
        &Value::Object(s.client.claims(&endpoint, s.now)).to_string(),
    );
    assert_eq!(s.token_with(&assertion, &[]).await.status, StatusCode::OK);
}

async fn register_secret_client(
    http: &reqwest::Client,
    server: &DevAuthServer,
) -> (String, String) {
    let answer = send(http.post(format!("{}/register", server.url())).json(
        &json!({"scope": "system/*.rs", "token_endpoint_auth_method": "client_secret_basic"}),
    ))
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    (
        answer.body["client_id"].as_str().unwrap().to_owned(),
        answer.body["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// RFC 7009 section 2.1 and RFC 7662: a client revokes only its own tokens; a client
/// introspects only its own (registered over HTTP, or in code by default); a client
/// registered in code as a resource server introspects any.
#[tokio::test]
async fn revocation_and_introspection_of_foreign_tokens() {
    let s = strict_server(0).await;
    let (a_id, a_secret) = register_secret_client(&s.http, &s.server).await;
    let (b_id, b_secret) = register_secret_client(&s.http, &s.server).await;
    s.server.register(ClientRegistration::client_secret_basic(
        "in-code",
        "in-code-secret",
        ["system/*.rs"],
    ));
    s.server.register(
        ClientRegistration::client_secret_basic("limited", "limited-secret", ["system/*.rs"])
            .allow_introspecting_any_token()
            .own_tokens_only(),
    );
    let a_token = s.basic_token(&a_id, &a_secret).await;
    let b_token = s.basic_token(&b_id, &b_secret).await;
    let revoke_url = format!("{}/revoke", s.server.url());
    let introspect_url = s.server.introspection_endpoint();
    let call = |url: &str, id: &str, secret: &str, token: &str| {
        send(
            s.post(url, &[("token", token)])
                .basic_auth(id, Some(secret)),
        )
    };

    // B tries to revoke A's token: refused, and the token stays valid.
    let answer = call(&revoke_url, &b_id, &b_secret, &a_token).await;
    assert_eq!(
        answer.error(),
        (400, Some("unauthorized_client")),
        "{}",
        answer.body
    );
    let answer = call(&introspect_url, &a_id, &a_secret, &a_token).await;
    assert_eq!(
        answer.body["active"], true,
        "still active after the foreign attempt"
    );
    assert_eq!(answer.body["client_id"], a_id.as_str());
    // A's token still authenticates its bearer at the introspection endpoint.
    let answer = send(
        s.post(&introspect_url, &[("token", a_token.as_str())])
            .bearer_auth(&a_token),
    )
    .await;
    assert_eq!(answer.body["active"], true);

    // B, a client registered in code without the resource-server role, and one limited
    // again to its own tokens may not introspect A's token.
    for (id, secret) in [
        (b_id.as_str(), b_secret.as_str()),
        ("in-code", "in-code-secret"),
        ("limited", "limited-secret"),
    ] {
        let answer = call(&introspect_url, id, secret, &a_token).await;
        assert_eq!(
            (answer.status, answer.body.clone()),
            (StatusCode::OK, json!({"active": false})),
            "{id}"
        );
    }
    // Nor by presenting its own token as a Bearer credential.
    let answer = send(
        s.post(&introspect_url, &[("token", a_token.as_str())])
            .bearer_auth(&b_token),
    )
    .await;
    assert_eq!(answer.body, json!({"active": false}));
    // A token of a client registered in code, by default: the same. Holding one of its
    // tokens tells nothing about other clients' tokens.
    let in_code_token = s.basic_token("in-code", "in-code-secret").await;
    let answer = send(
        s.post(&introspect_url, &[("token", a_token.as_str())])
            .bearer_auth(&in_code_token),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::OK, json!({"active": false}))
    );
    // The operator's client (a resource server) may, by its credentials or its token.
    let answer = call(&introspect_url, "basic", "secret1", &a_token).await;
    assert_eq!(answer.body["active"], true);
    assert_eq!(answer.body["client_id"], a_id.as_str());
    let rs_token = s.basic_token("basic", "secret1").await;
    let answer = send(
        s.post(&introspect_url, &[("token", a_token.as_str())])
            .bearer_auth(&rs_token),
    )
    .await;
    assert_eq!(answer.body["active"], true);

    // Revocation needs client authentication: a Bearer token is not enough.
    let answer = send(
        s.post(&revoke_url, &[("token", a_token.as_str())])
            .bearer_auth(&a_token),
    )
    .await;
    assert_eq!(answer.error(), (401, Some("invalid_client")));
    assert_eq!(answer.challenge(), Some(BASIC_CHALLENGE));
    let answer = send(s.post(&revoke_url, &[("token", a_token.as_str())])).await;
    assert_eq!(answer.error(), (401, Some("invalid_client")));

    // Unknown tokens: 200 (RFC 7009 section 2.2).
    assert_eq!(
        call(&revoke_url, &b_id, &b_secret, "unknown").await.status,
        StatusCode::OK
    );
    // A revokes its own token: done.
    assert_eq!(
        call(&revoke_url, &a_id, &a_secret, &a_token).await.status,
        StatusCode::OK
    );
    let answer = call(&introspect_url, "basic", "secret1", &a_token).await;
    assert_eq!(answer.body, json!({"active": false}));
    // B's token was never touched.
    assert_eq!(
        call(&introspect_url, &b_id, &b_secret, &b_token).await.body["active"],
        true
    );
}

/// `Debug` of registrations, the server, and the client's credentials and tokens never
/// shows a secret.
#[tokio::test]
async fn debug_never_shows_secrets() {
    let secret = "S3CRET-never-shown";
    let registration = ClientRegistration::client_secret_basic("c", secret, ["system/*.rs"]);
    let debug = format!("{registration:?}");
    assert!(!debug.contains(secret), "{debug}");
    assert!(
        debug.contains("\"c\"") && debug.contains("redacted"),
        "{debug}"
    );
    let alternate = format!("{registration:#?}");
    assert!(!alternate.contains(secret), "{alternate}");

    let server = DevAuthServer::builder(FHIR).start().await.unwrap();
    server.register(registration);
    let debug = format!("{server:?}");
    assert!(!debug.contains(secret), "{debug}");

    // A registration answer's secret is not kept in anything printable either.
    let http = crate::support::loopback_client();
    let (id, issued_secret) = register_secret_client(&http, &server).await;
    assert!(!format!("{server:?}").contains(&issued_secret));

    // The client side: a Basic client, a key, an access token.
    let client = BackendServiceClient::builder(FHIR)
        .token_endpoint(server.token_endpoint())
        .client_id(&id)
        .client_secret_basic(&issued_secret)
        .scope("system/Patient.rs")
        .build()
        .unwrap();
    assert!(!format!("{client:?}").contains(&issued_secret));
    let token = client.access_token().await.unwrap();
    let debug = format!("{token:?}");
    assert!(!debug.contains(token.access_token()), "{debug}");

    let key = ClientKey::generate(smart_auth::SigningAlgorithm::ES256, "k").unwrap();
    let pem_key = ClientKey::generate(smart_auth::SigningAlgorithm::EdDSA, "k2").unwrap();
    // The whole Debug output: the key id and the algorithm, nothing of the key in any
    // encoding (a derived Debug would print the key's bytes as a list of numbers).
    assert_eq!(
        format!("{key:?}"),
        r#"ClientKey { kid: "k", algorithm: ES256, .. }"#
    );
    assert_eq!(
        format!("{pem_key:?}"),
        r#"ClientKey { kid: "k2", algorithm: EdDSA, .. }"#
    );
    for key in [key, pem_key] {
        let debug = format!("{key:?}");
        let public = key.public_jwk();
        // Only the key id and algorithm: not even the public key, let alone the private one.
        for member in ["x", "y", "n"] {
            if let Some(value) = public[member].as_str() {
                assert!(!debug.contains(value), "{debug}");
            }
        }
        assert!(!debug.contains("\"d\""), "{debug}");
    }
}

/// Sends `request` (a raw HTTP/1.1 request) and returns the status code and the raw
/// answer.
async fn raw_http(address: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// Only requests addressed to the server itself are answered: a `Host` of another name
/// (a DNS-rebinding web page), none, or two are refused with 421 before any endpoint runs.
#[tokio::test]
async fn requests_for_another_host_are_misdirected() {
    let s = strict_server(0).await;
    let address = s.server.url().trim_start_matches("http://").to_owned();
    let port = address.rsplit(':').next().unwrap().to_owned();
    let body = "grant_type=client_credentials&scope=system%2FPatient.rs";
    let basic = STANDARD.encode("basic:secret1");
    let request = |hosts: &[String]| {
        let hosts: String = hosts.iter().map(|h| format!("Host: {h}\r\n")).collect();
        format!(
            "POST /token HTTP/1.1\r\n{hosts}Authorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let rows: Vec<(Vec<String>, u16)> = vec![
        (vec![address.clone()], 200),
        (vec![format!("localhost:{port}")], 200),
        (vec![format!("LOCALHOST:{port}")], 200),
        (vec!["evil.example".to_owned()], 421),
        (vec![format!("evil.example:{port}")], 421),
        (vec!["127.0.0.1".to_owned()], 421),
        (vec!["localhost".to_owned()], 421),
        (
            vec![format!("127.0.0.1:{}", port.parse::<u32>().unwrap() + 1)],
            421,
        ),
        (vec![], 421),
        (vec![address.clone(), "evil.example".to_owned()], 421),
    ];
    for (hosts, expected) in rows {
        let (status, answer) = raw_http(&address, &request(&hosts)).await;
        assert_eq!(status, expected, "{hosts:?}: {answer}");
        if expected == 421 {
            assert!(answer.contains(r#""error":"invalid_request""#), "{answer}");
        }
    }
    // Discovery and registration are covered as well.
    let get = format!(
        "GET /.well-known/smart-configuration HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_http(&address, &get).await.0, 421);
}

/// A `private_key_jwt` client authenticates at the revocation and introspection endpoints
/// with a fresh assertion (`aud` the token endpoint), and revokes its own token.
#[tokio::test]
async fn assertion_clients_introspect_and_revoke_their_own_tokens() {
    let s = strict_server(0).await;
    let endpoint = s.token_endpoint().to_owned();
    let header = Value::Object(s.client.header()).to_string();
    let sign = || {
        s.client.sign_texts(
            &header,
            &Value::Object(s.client.claims(&endpoint, s.now)).to_string(),
        )
    };
    let answer = s.token_with(&sign(), &[]).await;
    let token = answer.body["access_token"].as_str().unwrap().to_owned();
    let with_assertion = |url: String, assertion: String| {
        send(s.post(
            &url,
            &[
                ("token", token.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ],
        ))
    };
    let introspect = s.server.introspection_endpoint();
    let revoke = format!("{}/revoke", s.server.url());
    let answer = with_assertion(introspect.clone(), sign()).await;
    assert_eq!(answer.body["active"], true, "{}", answer.body);
    assert_eq!(answer.body["client_id"], "raw");
    // A replayed assertion authenticates nobody, here as at the token endpoint.
    let used = sign();
    assert_eq!(
        with_assertion(revoke.clone(), used.clone()).await.status,
        StatusCode::OK
    );
    // The introspection endpoint answers 401 to a caller whose credentials are invalid
    // (RFC 7662 section 2.3), the token endpoint 400 to a failed assertion.
    let answer = with_assertion(introspect.clone(), used.clone()).await;
    assert_eq!(answer.error(), (401, Some("invalid_client")));
    assert_eq!(
        answer.headers["www-authenticate"],
        "Basic realm=\"smart-auth development server\""
    );
    let answer = with_assertion(revoke.clone(), used).await;
    assert_eq!(answer.error(), (400, Some("invalid_client")));
    // The revocation took effect.
    let answer = send(
        s.post(&introspect, &[("token", token.as_str())])
            .basic_auth("basic", Some("secret1")),
    )
    .await;
    assert_eq!(answer.body, json!({"active": false}));
}

/// SMART: a client assertion's `aud` is the token endpoint URL it is posted to. The
/// server answers to `127.0.0.1:PORT` and `localhost:PORT`, so it accepts its token
/// endpoint URL under either name, and nothing merely close to one of them.
#[tokio::test]
async fn assertion_aud_may_name_the_token_endpoint_under_localhost() {
    let mut s = strict_server(0).await;
    let address = s.server.url().trim_start_matches("http://").to_owned();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    // The name is the point here, not the host's resolver: `localhost` is pinned to the
    // server's address (an IPv6-first or odd /etc/hosts cannot send it elsewhere).
    s.http = crate::support::loopback_client_builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let by_ip = s.token_endpoint().to_owned();
    assert_eq!(by_ip, format!("http://127.0.0.1:{port}/token"));
    let by_name = format!("http://localhost:{port}/token");
    let header = Value::Object(s.client.header()).to_string();
    let sign = |aud: Value| {
        let claims = edit(s.client.claims(&by_ip, s.now), &[("aud", Some(aud))]);
        s.client.sign_texts(&header, &claims)
    };
    let token_at = |url: &str, assertion: String| {
        send(s.post(
            url,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "system/Patient.rs"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ],
        ))
    };

    // Posted to the localhost URL, naming it: a token.
    for (posted_to, aud) in [
        (&by_name, json!(by_name)),
        (&by_name, json!([by_name])),
        (&by_ip, json!(by_ip)),
        // Both names are this one server's token endpoint.
        (&by_ip, json!(by_name)),
        (&by_name, json!(by_ip)),
    ] {
        let answer = token_at(posted_to, sign(aud.clone())).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{posted_to} {aud}: {}",
            answer.body
        );
        assert!(
            answer.body["access_token"]
                .as_str()
                .is_some_and(|token| token.split('.').count() == 3),
            "{}",
            answer.body
        );
    }

    // Anything else is another audience, wherever it is posted.
    let other_port = port.wrapping_add(1).max(1);
    let hostile = [
        format!("{by_name}/"),
        format!("{by_ip}/"),
        format!("{by_name}?"),
        format!("{by_name}?x=1"),
        format!("{by_ip}?x=1"),
        format!("{by_name}#"),
        format!("{by_name}#f"),
        format!("{by_ip}#f"),
        format!("http://localhost:{other_port}/token"),
        format!("http://127.0.0.1:{other_port}/token"),
        "http://localhost/token".to_owned(),
        "http://127.0.0.1/token".to_owned(),
        format!("http://localhost:{port}/revoke"),
        format!("http://localhost:{port}/introspect"),
        format!("http://localhost:{port}/tokens"),
        format!("http://localhost:{port}/TOKEN"),
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://LOCALHOST:{port}"),
        format!("http://LOCALHOST:{port}/token"),
        format!("http://LocalHost:{port}/token"),
        format!("HTTP://localhost:{port}/token"),
        format!("https://localhost:{port}/token"),
        format!("https://127.0.0.1:{port}/token"),
        format!("http://a@127.0.0.1:{port}/token"),
        format!("http://a@localhost:{port}/token"),
        format!("http://a:b@localhost:{port}/token"),
        format!("http://localhost:{port}@127.0.0.1:{port}/token"),
        format!("http://localhost.:{port}/token"),
        format!("http://[::1]:{port}/token"),
        format!("http://127.1:{port}/token"),
        format!("http://localhost:0{port}/token"),
        format!("http://localhost:{port}//token"),
        format!("http://localhost:{port}/./token"),
        format!("http://localhost.evil.example:{port}/token"),
        format!("http://evil.example/http://localhost:{port}/token"),
        format!(" {by_name}"),
        format!("{by_name} "),
        format!("localhost:{port}/token"),
        format!("localhost:{port}"),
    ];
    for aud in &hostile {
        for (posted_to, aud) in [(&by_name, json!(aud)), (&by_ip, json!([aud]))] {
            let answer = token_at(posted_to, sign(aud.clone())).await;
            assert_eq!(
                (answer.error(), answer.body["error_description"].as_str()),
                (
                    (400, Some("invalid_client")),
                    Some(
                        "aud must be the token endpoint URL (or the issuer), and only this server"
                    )
                ),
                "{posted_to} {aud}"
            );
        }
    }
    // This server's names only, the issuer under either host name included: accepted.
    for aud in [
        json!([by_name, by_ip]),
        json!(format!("http://localhost:{port}")),
        json!([format!("http://127.0.0.1:{port}"), by_name]),
    ] {
        let answer = token_at(&by_name, sign(aud.clone())).await;
        assert_eq!(answer.status, StatusCode::OK, "{aud}: {}", answer.body);
    }

    // Introspection over the localhost name, authenticated by an assertion naming it.
    let answer = token_at(&by_name, sign(json!(by_name))).await;
    let token = answer.body["access_token"].as_str().unwrap().to_owned();
    let introspect = format!("http://localhost:{port}/introspect");
    let assertion = sign(json!(by_name));
    let answer = send(s.post(
        &introspect,
        &[
            ("token", token.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ],
    ))
    .await;
    assert_eq!(
        (
            answer.status,
            &answer.body["active"],
            &answer.body["client_id"]
        ),
        (StatusCode::OK, &json!(true), &json!("raw")),
        "{}",
        answer.body
    );
}
