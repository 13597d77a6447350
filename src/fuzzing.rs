//! Entry points for the coverage-guided fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! **Not part of the API.** Nothing here is covered by semver; the module exists only so
//! that the fuzz package, a separate crate, can reach the parsers that read untrusted bytes
//! and are private to this crate. Each function takes the fuzzer's bytes, runs one parser
//! (or one chain of parsers, as the request path runs them) and panics when an invariant
//! breaks: an answer outside the documented set for that parser, or a signature accepted
//! over bytes that were not signed. A panic is what the fuzzer reports as a crash.

use std::sync::OnceLock;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request};

use crate::SigningAlgorithm;
use crate::claims::{ClaimNames, SmartClaims, assert_one_pass_reading_agrees};
use crate::error::ErrorKind;
use crate::json;
use crate::jwks::{KeySet, MAX_CANDIDATES, Selection};
use crate::jwt;
use crate::layer::PublicRoutes;
use crate::scopes::{
    Classified, Classifier, FhirRequest, ResourceScope, Scope, ScopeSet, ScopeSyntax,
};

/// The `kid` of the fixed fuzzing key.
const KID: &str = "fuzz-ed25519";

/// A fixed Ed25519 key (from a constant seed: the same on every run), its key set, and the
/// one token it signed.
struct Fixture {
    keys: KeySet,
    token: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[0x5a; 32]).expect("a 32-byte seed");
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{KID}","alg":"EdDSA","x":"{x}"}}]}}"#
        );
        let keys = KeySet::parse(jwks.as_bytes()).expect("the fixed key set parses");
        let header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{KID}"}}"#
        ));
        let payload = URL_SAFE_NO_PAD.encode(
            r#"{"iss":"https://issuer.example","aud":"https://fhir.example","exp":4102444800,"sub":"s","client_id":"c","scope":"system/Patient.rs patient/*.read launch/patient","patient":"123","fhirContext":[{"reference":"Encounter/1"}]}"#,
        );
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(pair.sign(signing_input.as_bytes()).as_ref());
        Fixture {
            keys,
            token: format!("{signing_input}.{signature}"),
        }
    })
}

/// The one token whose signature [`token`] accepts (a seed for the corpus).
pub fn valid_token() -> String {
    fixture().token.clone()
}

fn claim_names() -> ClaimNames {
    ClaimNames {
        scope: vec!["scope".to_owned(), "scp".to_owned()],
        client_id: vec!["client_id".to_owned(), "azp".to_owned()],
        // This server's base, so that `authorization_details` grants for it are read.
        locations: vec!["https://fhir.example/r4".to_owned()],
        ..ClaimNames::default()
    }
}

fn assert_kind(parser: &str, kind: ErrorKind, documented: &[ErrorKind]) {
    assert!(
        documented.contains(&kind),
        "{parser} answered {kind:?}, outside its documented set {documented:?}"
    );
}

/// Splits `data` at the first `0x00` byte (the whole input and an empty rest when there is
/// none): one fuzz input carries two parts.
fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// `Authorization` header value, then (after a `0x00`) the query string: finding the
/// Bearer credential and checking its `b64token` syntax. The only refusal is
/// `InvalidRequest`.
pub fn authorization(data: &[u8]) {
    let (value, query) = two_parts(data);
    let mut headers = HeaderMap::new();
    if !value.is_empty() {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        headers.insert(AUTHORIZATION, value);
    }
    let query = std::str::from_utf8(query).ok().filter(|q| !q.is_empty());
    match crate::bearer::bearer_credential(&headers, query) {
        Ok(Some(credential)) => {
            if let Err(kind) = crate::bearer::token_text(credential) {
                assert_kind("token_text", kind, &[ErrorKind::InvalidRequest]);
            }
        }
        Ok(None) => {}
        Err(kind) => assert_kind("bearer_credential", kind, &[ErrorKind::InvalidRequest]),
    }
}

/// A compact JWS: split, protected header, key selection and signature against the fixed
/// key set, then the payload and the claims (these two run whatever the signature's
/// outcome, so that the fuzzer reaches them). A signature is accepted only over the one
/// token the fixed key signed. Each segment's decoding is held to the `base64` crate's
/// strict engine (the same texts accepted, the same bytes).
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let segments = match jwt::split(text) {
        Ok(segments) => segments,
        Err(kind) => return assert_kind("split", kind, &[ErrorKind::MalformedToken]),
    };
    for segment in [segments.header, segments.payload, segments.signature] {
        assert_eq!(
            jwt::decode_segment(segment).ok(),
            URL_SAFE_NO_PAD.decode(segment).ok(),
            "base64url decoding differs from the base64 crate's"
        );
    }
    let header_bytes = jwt::decode_segment(segments.header).unwrap_or_default();
    // Bytes that are not base64url are refused as an empty header would be.
    match jwt::read_header(&header_bytes, SigningAlgorithm::DEFAULT) {
        Ok(header) => {
            let keys = &fixture().keys;
            let candidates: Vec<usize> = match keys.select(header.kid.as_deref(), header.alg) {
                Selection::Found(index) => vec![index],
                Selection::Several(candidates) => candidates.iter().collect(),
                Selection::NotFound | Selection::Unusable | Selection::Ambiguous => Vec::new(),
            };
            for index in candidates {
                match jwt::verify_signature(&segments, keys.get(index), header.alg) {
                    Ok(()) => assert_eq!(
                        text,
                        fixture().token,
                        "a signature verified over bytes the key never signed"
                    ),
                    Err(kind) => assert_kind(
                        "verify_signature",
                        kind,
                        &[
                            ErrorKind::MalformedToken,
                            ErrorKind::UnsupportedAlgorithm,
                            ErrorKind::InvalidSignature,
                        ],
                    ),
                }
            }
        }
        Err(kind) => assert_kind(
            "read_header",
            kind,
            &[
                ErrorKind::MalformedToken,
                ErrorKind::CriticalHeader,
                ErrorKind::UnsupportedAlgorithm,
            ],
        ),
    }
    match jwt::decode_payload(segments.payload) {
        Ok(payload) => claims_from(payload),
        Err(kind) => assert_kind("decode_payload", kind, &[ErrorKind::MalformedToken]),
    }
}

fn claims_from(payload: serde_json::Map<String, serde_json::Value>) {
    match SmartClaims::from_payload(payload, &claim_names()) {
        Ok(claims) => {
            // The derived views must not panic either.
            let _ = claims.scope_set();
            let _ = claims.fhir_context();
        }
        Err(kind) => assert_kind(
            "from_payload",
            kind,
            &[ErrorKind::WrongIssuer, ErrorKind::InvalidClaim],
        ),
    }
}

/// A JSON document read strictly (unique member names at every depth), then, when it is
/// an object, read as a token payload into claims.
pub fn claims(data: &[u8]) {
    // The verifier's one-pass reading of a JWT payload answers as the whole object does.
    if let Some(payload) = assert_one_pass_reading_agrees(data, &claim_names()) {
        claims_from(payload);
    }
}

/// A JWK Set document, then key selection with a few `kid`s and every algorithm.
pub fn jwks(data: &[u8]) {
    let Ok(keys) = KeySet::parse(data) else {
        return;
    };
    assert!(keys.len() > 0, "a parsed key set holds at least one key");
    for kid in [None, Some(""), Some("a"), Some(KID)] {
        for &alg in SigningAlgorithm::DEFAULT {
            match keys.select(kid, alg) {
                Selection::Found(index) => {
                    assert!(index < keys.len());
                    assert!(keys.get(index).parsed_for(alg).is_some());
                }
                Selection::Several(candidates) => {
                    let indexes: Vec<usize> = candidates.iter().collect();
                    assert!((2..=MAX_CANDIDATES).contains(&indexes.len()));
                    assert!(indexes.windows(2).all(|pair| pair[0] < pair[1]));
                    for index in indexes {
                        let key = keys.get(index);
                        assert!(key.parsed_for(alg).is_some());
                        if kid.is_some() {
                            assert_eq!(key.kid.as_deref(), kid);
                        }
                    }
                }
                Selection::NotFound | Selection::Unusable | Selection::Ambiguous => {}
            }
        }
    }
}

/// A scope claim: parsed as a string claim and, split on `0x00`, as an array claim;
/// every scope the set grants must be printable back and parse to itself.
pub fn scopes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = ScopeSet::parse(text);
    for scope in set.scopes() {
        // A SMART v1 scope displays in v2 letters (`.write` as `.cud`): the same grant.
        let shown = scope.to_string();
        let again: Vec<Scope> = ScopeSet::parse(&shown).scopes().iter().map(as_v2).collect();
        assert_eq!(
            again,
            [as_v2(scope)],
            "a granted scope does not read back as itself"
        );
    }
    let _ = text.split('\0').collect::<ScopeSet>();
}

/// The scope with its syntax version set to v2, the form it displays in.
fn as_v2(scope: &Scope) -> Scope {
    match scope {
        Scope::Resource(resource) => Scope::Resource(ResourceScope {
            version: ScopeSyntax::V2,
            ..resource.clone()
        }),
        other => other.clone(),
    }
}

/// `METHOD PATH?QUERY`, then (after a `0x00`) the base path: the FHIR interaction
/// classifier, the search-query check of a granular scope set, and the public-route
/// decision.
pub fn fhir_request(data: &[u8]) {
    let (line, base) = two_parts(data);
    let (Ok(line), Ok(base)) = (std::str::from_utf8(line), std::str::from_utf8(base)) else {
        return;
    };
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let classified = Classifier::new(base).classify(method, target);
    if let Classified::Fhir(request) = &classified {
        let _ = request.resource_type();
        let _ = request.interaction();
        let _ = request.access();
    }
    assert_eq!(
        FhirRequest::classify(method, target, base),
        classified,
        "the default classifier reads a request one way only"
    );
    let granted = ScopeSet::parse(
        "patient/Observation.rs?category=laboratory patient/Patient.r system/Condition.s?code=x%7Cy",
    );
    let query = target.split_once('?').map(|(_, query)| query);
    for resource_type in ["Observation", "Condition", "Patient"] {
        let _ = granted.permits_search_query(resource_type, query);
    }
    let (Ok(method), Ok(request)) = (
        Method::from_bytes(method.as_bytes()),
        Request::builder().uri(target).body(String::new()),
    ) else {
        return;
    };
    let mut request = request;
    *request.method_mut() = method;
    let routes = PublicRoutes {
        base_path: Some(base.to_owned()),
        ..PublicRoutes::default()
    };
    let path = request.uri().path().to_owned();
    let _ = routes.is_public(&request, &path);
}

/// `METHOD PATH?QUERY`, then any number of `\0name: value` headers, checked by the layer's
/// scope enforcement (base `/fhir`) for a token with a patient in context and v1, v2 and
/// granular scopes: method overrides, searches that reach other types, granular filters,
/// the patient pin, conditional creates' `If-None-Exist`, bulk exports. The input's length
/// picks, so that one input costs one check, whether a body follows and one of four
/// settings: the defaults; paging links and bundle entries left to the handler; granular
/// filters applied by the handler and any token outside the base; a custom operation
/// policy.
pub fn enforce_request(data: &[u8]) {
    use crate::scopes::{Interaction, Requirement, ResourceType};
    struct Checker {
        enforcements: [crate::ScopeEnforcement; 4],
        claims: SmartClaims,
    }
    static CHECKER: OnceLock<Checker> = OnceLock::new();
    let checker = CHECKER.get_or_init(|| {
        let payload = serde_json::json!({
            "iss": "https://issuer.example", "exp": 4_102_444_800_i64, "client_id": "c",
            "patient": "123",
            "scope": "patient/Observation.rs?category=laboratory patient/Patient.r \
                      patient/Encounter.read system/Condition.cruds launch/patient",
        });
        let serde_json::Value::Object(payload) = payload else {
            unreachable!("an object")
        };
        let at_base = || crate::ScopeEnforcement::new().at_base("/fhir");
        Checker {
            enforcements: [
                at_base(),
                at_base()
                    .handler_checks_paging_links("_getpages")
                    .handler_checks_bundle_entries(),
                at_base()
                    .handler_applies_granular_filters()
                    .allow_any_token_outside_base(),
                // A policy whose answer depends on the query: one requirement per `&`
                // piece (repeats included), on a type named after the piece.
                at_base().operation_policy(|operation, query| match operation.name.as_str() {
                    "everything" => {
                        Some(vec![Requirement::new(Interaction::Read, ResourceType::Any)])
                    }
                    "pieces" => Some(
                        query
                            .unwrap_or_default()
                            .split('&')
                            .map(|piece| {
                                let name = format!("T{}", piece.len());
                                Requirement::new(Interaction::SearchType, ResourceType::Named(name))
                            })
                            .collect(),
                    ),
                    _ => crate::default_operation_policy(operation, query),
                }),
            ],
            claims: SmartClaims::from_payload(payload, &claim_names())
                .expect("the fixed claims are valid"),
        }
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\0');
    let line = lines.next().unwrap_or_default();
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let mut builder = Request::builder().uri(target);
    for header in lines {
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        builder = builder.header(name.trim(), value.trim());
    }
    let (Ok(method), Ok(request)) = (Method::from_bytes(method.as_bytes()), builder.body(()))
    else {
        return;
    };
    let mut request = request;
    *request.method_mut() = method;
    let enforcement = &checker.enforcements[data.len() / 2 % checker.enforcements.len()];
    let body_follows = data.len() % 2 == 1;
    let _ = enforcement.check_request(&request, body_follows, &checker.claims);
}

/// The JSON answer of an introspection endpoint, read as the introspector reads a 200
/// answer. Refusals are `InactiveToken`, `InvalidClaim`, `UnsupportedTokenType` and
/// `WrongIssuer`; an accepted answer has an `exp` in the future and an `iss`.
pub fn introspection_answer(data: &[u8]) {
    let Ok(answer) = json::object_with_unique_members(data) else {
        return;
    };
    let now = 1_700_000_000;
    match crate::introspection::read_answer(answer, now, "https://issuer.example") {
        Ok((claims, exp)) => {
            assert!(exp > now, "an accepted answer ends in the future");
            assert!(claims.get("iss").is_some_and(serde_json::Value::is_string));
            claims_from(claims);
        }
        Err(kind) => assert_kind(
            "read_answer",
            kind,
            &[
                ErrorKind::InactiveToken,
                ErrorKind::InvalidClaim,
                ErrorKind::UnsupportedTokenType,
                ErrorKind::WrongIssuer,
            ],
        ),
    }
}

/// A discovery document (strict JSON object), mapped onto a SMART configuration as
/// `SmartConfiguration::from_issuer` maps it; then, after a `0x00`, a `Cache-Control` value
/// as the key and discovery fetches read it.
pub fn discovery(data: &[u8]) {
    let (document, cache_control) = two_parts(data);
    if let Ok(document) = crate::fetch::strict_object(document) {
        let _ = crate::discovery::SmartConfigurationBuilder::from_metadata(document);
    }
    if let Ok(value) = std::str::from_utf8(cache_control) {
        let _ = crate::fetch::parse_max_age(value);
    }
}

/// A development-server request: the `Authorization` header value, `0x00`, the
/// `Content-Type` value, `0x00`, the form body. Form parsing, then which client
/// authentication the request presents (Basic credentials decoded strictly).
pub fn dev_server_request(data: &[u8]) {
    let (authorization, rest) = two_parts(data);
    let (content_type, body) = two_parts(rest);
    let mut headers = HeaderMap::new();
    for (name, value) in [(AUTHORIZATION, authorization), (CONTENT_TYPE, content_type)] {
        if value.is_empty() {
            continue;
        }
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        headers.insert(name, value);
    }
    let form = crate::dev_server::parse_form(&headers, body).unwrap_or_default();
    if let Some(scope) = form.get("scope") {
        let _ = crate::dev_server::is_scope_string(scope);
    }
    for bearer_allowed in [false, true] {
        let _ = crate::dev_server::presented_authentication(&headers, &form, bearer_allowed);
    }
}
