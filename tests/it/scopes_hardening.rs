//! Scope hardening through the layer, over real HTTP with real signed tokens: only the space
//! separates scopes, granular scopes only restrict, a blank patient is no launch context.

use axum::Json;
use axum::Router;
use axum::routing::{any, get};
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::scopes::{Interaction, Requirement, ResourceType, SearchConstraints};
use smart_auth::{
    AuthError, ManualClock, ScopeEnforcement, SmartAuthBuilder, SmartAuthLayer, SmartClaims,
};

use crate::support::{Answer, issuer, serve};

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
const LAB_ENCODED: &str = "http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory";

struct ScopedApp {
    url: String,
    issuer: smart_auth::testing::TestIssuer,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ScopedApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The constraints as JSON, for exact body assertions.
fn constraints_json(constraints: &SearchConstraints) -> Value {
    match constraints {
        SearchConstraints::Denied => json!("denied"),
        SearchConstraints::Unconstrained => json!("unconstrained"),
        SearchConstraints::AnyOf(sets) => json!(sets),
    }
}

/// Any FHIR request: what the handler saw.
async fn fhir(
    claims: SmartClaims,
    paging_link: Option<axum::Extension<smart_auth::PagingLink>>,
    uri: http::Uri,
) -> Json<Value> {
    let resource_type = uri
        .path()
        .trim_start_matches("/fhir/")
        .split(['/', '?'])
        .next()
        .unwrap_or("")
        .to_owned();
    let constraints = claims.scope_set().search_constraints(None, &resource_type);
    let mut body = json!({
        "scopes": claims.scopes(),
        "patient": claims.patient(),
        "encounter": claims.encounter(),
        "constraints": constraints_json(&constraints),
    });
    // Only where the layer let a paging link through.
    if let Some(axum::Extension(link)) = paging_link {
        body["paging_link"] = json!(link.page());
    }
    Json(body)
}

/// A handler that needs a search on all Observations.
async fn all_observations(claims: SmartClaims) -> Result<Json<Value>, AuthError> {
    claims.require(Interaction::SearchType, "Observation")?;
    Ok(Json(json!({ "count": 0 })))
}

/// A handler that applies granular filters itself.
async fn filtered_observations(claims: SmartClaims) -> Result<Json<Value>, AuthError> {
    let constraints = claims.require_constraints(Interaction::SearchType, "Observation")?;
    Ok(Json(
        json!({ "constraints": constraints_json(&constraints) }),
    ))
}

async fn scoped_app(enforcement: ScopeEnforcement) -> ScopedApp {
    scoped_app_with(enforcement, |b| b.served_at_path("/fhir")).await
}

/// [`scoped_app`], with the base (`/fhir`) said by `at_base`.
async fn scoped_app_with(
    enforcement: ScopeEnforcement,
    at_base: impl FnOnce(SmartAuthBuilder) -> SmartAuthBuilder,
) -> ScopedApp {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let builder = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock);
    let layer = at_base(builder)
        // The handler-side checks live on routes outside the FHIR base.
        .enforce_scopes(enforcement.allow_any_token_outside_base())
        .build()
        .unwrap();
    let router = Router::new()
        .route("/fhir", any(fhir))
        .route("/fhir/{*rest}", any(fhir))
        .route("/reports/all", get(all_observations))
        .route("/reports/filtered", get(filtered_observations))
        .layer(layer);
    let (url, server) = serve(router).await;
    ScopedApp {
        url,
        issuer,
        http: crate::support::loopback_client(),
        server,
    }
}

impl ScopedApp {
    /// Sends one request with a token holding `claims` (`scope`, `patient`, ...).
    async fn call(&self, method: &str, path: &str, claims: &[(&str, Value)]) -> Answer {
        self.call_with_headers(method, path, claims, &[]).await
    }

    /// [`call`](Self::call) with extra request headers.
    async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        claims: &[(&str, Value)],
        headers: &[(&str, &str)],
    ) -> Answer {
        self.call_with_body(method, path, claims, headers, None)
            .await
    }

    /// [`call_with_headers`](Self::call_with_headers) with a request body.
    async fn call_with_body(
        &self,
        method: &str,
        path: &str,
        claims: &[(&str, Value)],
        headers: &[(&str, &str)],
        body: Option<&'static str>,
    ) -> Answer {
        // No default scope: each test states the whole claim.
        let mut token = self.issuer.token().without("scope");
        for (name, value) in claims {
            token = token.claim(name, value.clone());
        }
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(token.sign());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let challenge = header("www-authenticate");
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        Answer {
            status,
            challenge,
            content_type,
            retry_after,
            body,
        }
    }

    /// Asserts the exact 403 `insufficient_scope` answer with this scope hint.
    fn assert_denied(&self, answer: &Answer, hint: &str, what: &str) {
        self.assert_refused(answer, Some(hint), what);
    }

    /// Asserts the exact 403 `insufficient_scope` answer with this scope hint, or none.
    fn assert_refused(&self, answer: &Answer, hint: Option<&str>, what: &str) {
        let refusal = Refusal {
            status: StatusCode::FORBIDDEN,
            error: "insufficient_scope",
            description: "the token's scopes do not allow this request",
            issue_code: "forbidden",
        };
        self.assert_refusal(answer, &refusal, hint, what);
    }

    /// Asserts the exact 400 `invalid_request` answer for a request scope enforcement cannot
    /// read one way only.
    fn assert_malformed(&self, answer: &Answer, what: &str) {
        let refusal = Refusal {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: "the request cannot be read as one FHIR interaction",
            issue_code: "invalid",
        };
        self.assert_refusal(answer, &refusal, None, what);
    }

    /// Asserts the exact `expected` refusal: its status, challenge (with the scope hint if
    /// any), content type and OperationOutcome.
    fn assert_refusal(&self, answer: &Answer, expected: &Refusal, hint: Option<&str>, what: &str) {
        assert_eq!(answer.status, expected.status, "{what}: {answer:?}");
        let hint = hint
            .map(|hint| format!(", scope=\"{hint}\""))
            .unwrap_or_default();
        let challenge = format!(
            "Bearer realm=\"{}\", error=\"{}\", error_description=\"{}\"{hint}",
            self.issuer.audience(),
            expected.error,
            expected.description,
        );
        assert_eq!(
            answer.challenge.as_deref(),
            Some(challenge.as_str()),
            "{what}"
        );
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/fhir+json; charset=utf-8"),
            "{what}"
        );
        assert_eq!(
            answer.body,
            json!({
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "error",
                    "code": expected.issue_code,
                    "details": {"text": expected.description},
                }],
            }),
            "{what}"
        );
    }

    /// Asserts a 200 from the FHIR handler with exactly this body.
    fn assert_passed(answer: &Answer, body: &Value, what: &str) {
        assert_eq!(answer.status, StatusCode::OK, "{what}: {answer:?}");
        assert_eq!(answer.challenge, None, "{what}");
        assert_eq!(&answer.body, body, "{what}");
    }
}

/// A refusal's exact answer, as the tests expect it.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: &'static str,
    issue_code: &'static str,
}

/// Characters other than the space that must not separate scopes.
const NOT_SEPARATORS: &[&str] = &[
    "\t", "\n", "\r", "\r\n", "\u{b}", "\u{c}", "\0", "\u{1}", "\u{7f}", "\u{85}", "\u{a0}",
    "\u{2028}", "\u{3000}", "\"", "\\",
];

#[tokio::test]
async fn only_the_space_separates_scopes() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    for bad in NOT_SEPARATORS {
        let string_claim = format!("system/Patient.r{bad}system/*.cruds system/Group.r");
        let array_claim = json!(["system/Group.r", "system/Patient.r system/*.cruds"]);
        let hostile_item = json!([
            "system/Group.r",
            format!("system/Patient.r{bad}system/*.cruds")
        ]);
        for (name, claim) in [
            ("scope", json!(string_claim)),
            ("scp", array_claim),
            ("scp", hostile_item),
        ] {
            let claims = [(name, claim.clone())];
            let what = format!("{name} = {claim}");
            let passed = app.call("GET", "/fhir/Group/1", &claims).await;
            ScopedApp::assert_passed(
                &passed,
                &json!({
                    "scopes": ["system/Group.r"],
                    "patient": null,
                    "encounter": null,
                    "constraints": "denied",
                }),
                &what,
            );
            for (method, path, hint) in [
                ("GET", "/fhir/Patient/1", "system/Patient.r"),
                ("DELETE", "/fhir/Observation/1", "system/Observation.d"),
                ("POST", "/fhir/Encounter", "system/Encounter.c"),
            ] {
                let answer = app.call(method, path, &claims).await;
                app.assert_denied(&answer, hint, &format!("{what} {method} {path}"));
            }
        }
    }
}

#[tokio::test]
async fn hostile_scope_spellings_grant_nothing() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let hostile = [
        "system/Patient.READ",
        "system/Patient.Read",
        "system/Patient.sr",
        "system/Patient.rr",
        "system%2FPatient.rs",
        "system/%50atient.rs",
        "system/Patient.%72s",
        "system/Patient.rs\u{b}",
        "system/Patient.rs\u{e9}",
        "*/Patient.rs",
        "System/Patient.rs",
        "system/patient.rs",
    ];
    for scope in hostile {
        let claims = [("scope", json!(format!("{scope} {scope} system/Group.s")))];
        let answer = app.call("GET", "/fhir/Patient/1", &claims).await;
        app.assert_denied(&answer, "system/Patient.r", scope);
    }
    // Duplicates, runs of spaces and an empty claim change nothing.
    let answer = app
        .call(
            "GET",
            "/fhir/Patient/1",
            &[("scope", json!("  system/Patient.r   system/Patient.r "))],
        )
        .await;
    ScopedApp::assert_passed(
        &answer,
        &json!({
            "scopes": ["system/Patient.r", "system/Patient.r"],
            "patient": null,
            "encounter": null,
            "constraints": "denied",
        }),
        "duplicates",
    );
    let empty = app
        .call("GET", "/fhir/Patient/1", &[("scope", json!(""))])
        .await;
    app.assert_denied(&empty, "user/Patient.r", "empty scope");
}

#[tokio::test]
async fn granular_scopes_never_grant_the_whole_type() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let granular = format!("system/Observation.cruds?category={LAB_ENCODED}");
    let claims = [("scope", json!(granular))];
    let denied = [
        (
            "POST",
            "/fhir/Observation".to_owned(),
            "system/Observation.c",
        ),
        (
            "PUT",
            "/fhir/Observation/1".to_owned(),
            "system/Observation.u",
        ),
        // A patch reads too: both scopes are named.
        (
            "PATCH",
            "/fhir/Observation/1".to_owned(),
            "system/Observation.u system/Observation.r",
        ),
        (
            "DELETE",
            "/fhir/Observation/1".to_owned(),
            "system/Observation.d",
        ),
        (
            "DELETE",
            format!("/fhir/Observation?category={LAB_ENCODED}"),
            "system/Observation.d",
        ),
        (
            "PUT",
            format!("/fhir/Observation?category={LAB_ENCODED}"),
            "system/Observation.u",
        ),
        (
            "GET",
            "/fhir/Observation/1".to_owned(),
            "system/Observation.r",
        ),
        (
            "GET",
            "/fhir/Observation/1/_history".to_owned(),
            "system/Observation.r",
        ),
        (
            "GET",
            "/fhir/Observation/1/_history/2".to_owned(),
            "system/Observation.r",
        ),
        (
            "GET",
            "/fhir/Observation/_history".to_owned(),
            "system/Observation.s",
        ),
        (
            "GET",
            "/fhir/Observation".to_owned(),
            "system/Observation.s",
        ),
        (
            "GET",
            "/fhir/Observation?code=x".to_owned(),
            "system/Observation.s",
        ),
        (
            "GET",
            "/fhir/Observation?category=laboratory".to_owned(),
            "system/Observation.s",
        ),
        (
            "GET",
            format!("/fhir/Observation?category={LAB_ENCODED}&_include=Observation:has-member"),
            "system/Observation.s system/*.r",
        ),
        // Provenances added by `_revinclude` need their own grant; the filter still holds
        // for the Observations (US Core asks servers to support this on every search).
        (
            "GET",
            format!("/fhir/Observation?category={LAB_ENCODED}&_revinclude=Provenance:target"),
            "system/Provenance.s",
        ),
        (
            "POST",
            format!("/fhir/Observation/_search?category={LAB_ENCODED}"),
            "system/Observation.s",
        ),
        // A `;` is a separator to some servers and part of a value to others: a query with
        // one carries no filter.
        (
            "GET",
            format!("/fhir/Observation?category={LAB_ENCODED}&x=1;_query=all"),
            "system/Observation.s system/*.s",
        ),
        (
            "GET",
            format!("/fhir/Observation?category={LAB_ENCODED};x=1"),
            "system/Observation.s",
        ),
        // The filtered parameter with a second value: a server keeping the last one would
        // search outside the filter.
        (
            "GET",
            format!("/fhir/Observation?category={LAB_ENCODED}&category=vital-signs"),
            "system/Observation.s",
        ),
        // The same in PHP's and Rack's spelling, which replaces the filtered value.
        (
            "GET",
            format!("/fhir/Observation?category={LAB_ENCODED}&category[]=vital-signs"),
            "system/Observation.s system/*.s",
        ),
        (
            "GET",
            "/fhir/$export?_type=Observation".to_owned(),
            "system/Observation.s",
        ),
    ];
    for (method, path, hint) in &denied {
        let answer = app.call(method, path, &claims).await;
        app.assert_denied(&answer, hint, &format!("{method} {path}"));
    }
    // A search whose own query applies the filter passes, with the filter for the handler;
    // with a grant for what `_revinclude` adds, that search too (US Core's Provenance).
    let with_provenance = [("scope", json!(format!("{granular} system/Provenance.rs")))];
    let query = format!("category={LAB_ENCODED}&_revinclude=Provenance:target");
    let answer = app
        .call(
            "GET",
            &format!("/fhir/Observation?{query}"),
            &with_provenance,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // An `_include` of another type keeps the filter; one with a fourth part, or a comma
    // list a server reads as one value (IBM's then includes every target), does not.
    let with_patients = [("scope", json!(format!("{granular} system/Patient.rs")))];
    for (include, status) in [
        ("Observation:subject:Patient", StatusCode::OK),
        // HAPI's wildcard parameter includes every reference, whatever the target says.
        ("Observation:*:Patient", StatusCode::FORBIDDEN),
        (
            "Observation:has-member:Patient:Patient",
            StatusCode::FORBIDDEN,
        ),
        (
            "Observation:subject:Patient,Observation:has-member:Patient",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let path = format!("/fhir/Observation?category={LAB_ENCODED}&_include={include}");
        let answer = app.call("GET", &path, &with_patients).await;
        assert_eq!(answer.status, status, "{include}: {answer:?}");
    }
    for query in [
        format!("category={LAB_ENCODED}"),
        format!("code=x&category={LAB_ENCODED}"),
        format!("category={LAB}&_count=10"),
    ] {
        let answer = app
            .call("GET", &format!("/fhir/Observation?{query}"), &claims)
            .await;
        ScopedApp::assert_passed(
            &answer,
            &json!({
                "scopes": [granular],
                "patient": null,
                "encounter": null,
                "constraints": [[["category", LAB]]],
            }),
            &query,
        );
    }
    // The handler-side checks agree with the layer.
    let all = app.call("GET", "/reports/all", &claims).await;
    app.assert_denied(&all, "system/Observation.s", "require");
    let filtered = app.call("GET", "/reports/filtered", &claims).await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert_eq!(
        filtered.body,
        json!({ "constraints": [[["category", LAB]]] })
    );
    let none = app
        .call(
            "GET",
            "/reports/filtered",
            &[("scope", json!("system/Patient.rs"))],
        )
        .await;
    app.assert_denied(&none, "system/Observation.s", "require_constraints");
    // A plain scope next to the granular one grants the whole type again.
    let both = [("scope", json!(format!("{granular} system/Observation.s")))];
    let answer = app.call("GET", "/fhir/Observation?code=x", &both).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["constraints"], "unconstrained");
}

#[tokio::test]
async fn handlers_that_apply_filters_get_granular_reads_but_never_writes() {
    let app = scoped_app(ScopeEnforcement::new().handler_applies_granular_filters()).await;
    let granular = format!("system/Observation.cruds?category={LAB_ENCODED}");
    let claims = [("scope", json!(granular))];
    for path in [
        "/fhir/Observation/1",
        "/fhir/Observation?code=x",
        "/fhir/Observation/_history",
    ] {
        let answer = app.call("GET", path, &claims).await;
        ScopedApp::assert_passed(
            &answer,
            &json!({
                "scopes": [granular],
                "patient": null,
                "encounter": null,
                "constraints": [[["category", LAB]]],
            }),
            path,
        );
    }
    for (method, path, hint) in [
        ("POST", "/fhir/Observation", "system/Observation.c"),
        ("PUT", "/fhir/Observation/1", "system/Observation.u"),
        (
            "PATCH",
            "/fhir/Observation/1",
            "system/Observation.u system/Observation.r",
        ),
        ("DELETE", "/fhir/Observation/1", "system/Observation.d"),
        (
            "GET",
            "/fhir/$export?_type=Observation",
            "system/Observation.s",
        ),
        ("GET", "/fhir/Patient/1", "system/Patient.r"),
    ] {
        let answer = app.call(method, path, &claims).await;
        app.assert_denied(&answer, hint, &format!("{method} {path}"));
    }
    // A conditional write's search runs on the server unfiltered: a granular `s` counts only
    // where its criteria carry the filter, whatever the handler filters.
    let writer = format!("system/Observation.cud system/Observation.rs?category={LAB_ENCODED}");
    let claims = [("scope", json!(writer))];
    for method in ["PUT", "PATCH", "DELETE"] {
        let answer = app.call(method, "/fhir/Observation?code=x", &claims).await;
        // (A patch also reads what it patches, which no handler filter covers.)
        let hint = if method == "PATCH" {
            "system/Observation.s system/Observation.r"
        } else {
            "system/Observation.s"
        };
        app.assert_denied(&answer, hint, method);
        let path = format!("/fhir/Observation?category={LAB_ENCODED}&code=x");
        let answer = app.call(method, &path, &claims).await;
        if method == "PATCH" {
            // A patch reads the resource it patches, which no handler filter covers: the
            // granular `r` grants it no reading.
            app.assert_denied(&answer, "system/Observation.r", method);
        } else {
            assert_eq!(answer.status, StatusCode::OK, "{method}: {answer:?}");
        }
    }
    // The same for a patch by id: its read needs a whole-type `r`.
    let answer = app.call("PATCH", "/fhir/Observation/1", &claims).await;
    app.assert_denied(&answer, "system/Observation.r", "PATCH by id");
    let whole = [("scope", json!(format!("{writer} system/Observation.r")))];
    let answer = app.call("PATCH", "/fhir/Observation/1", &whole).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    for (criteria, allowed) in [
        ("_id=1".to_owned(), false),
        (format!("category={LAB_ENCODED}&code=x"), true),
        // A `[type]?` prefix (which FHIR does not allow) reads three ways: refused.
        (format!("Observation?category={LAB_ENCODED}&code=x"), false),
    ] {
        let headers = [("If-None-Exist", criteria.as_str())];
        let answer = app
            .call_with_headers("POST", "/fhir/Observation", &claims, &headers)
            .await;
        if allowed {
            assert_eq!(answer.status, StatusCode::OK, "{criteria}: {answer:?}");
        } else {
            app.assert_denied(&answer, "system/Observation.s", &criteria);
        }
    }
}

#[tokio::test]
async fn a_blank_patient_is_no_launch_context() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let scope = ("scope", json!("patient/Observation.rs"));
    for blank in [
        "",
        " ",
        "\t",
        " 123",
        "Observation/123",
        "https://x/Patient/123",
        "1,2",
    ] {
        let claims = [
            scope.clone(),
            ("patient", json!(blank)),
            ("encounter", json!(blank)),
        ];
        let answer = app.call("GET", "/fhir/Observation/1", &claims).await;
        // Without a patient in context the hint is a `user/` scope.
        app.assert_denied(&answer, "user/Observation.r", &format!("patient {blank:?}"));
    }
    let claims = [
        scope.clone(),
        ("patient", json!("123")),
        ("encounter", json!("e-1")),
    ];
    let answer = app.call("GET", "/fhir/Observation/1", &claims).await;
    ScopedApp::assert_passed(
        &answer,
        &json!({
            "scopes": ["patient/Observation.rs"],
            "patient": "123",
            "encounter": "e-1",
            "constraints": "unconstrained",
        }),
        "patient 123",
    );
    // A blank patient next to `user/` scopes: the token works, the accessors say None.
    let claims = [
        ("scope", json!("user/Observation.rs")),
        ("patient", json!("")),
        ("encounter", json!(" ")),
    ];
    let answer = app.call("GET", "/fhir/Observation/1", &claims).await;
    ScopedApp::assert_passed(
        &answer,
        &json!({
            "scopes": ["user/Observation.rs"],
            "patient": null,
            "encounter": null,
            "constraints": "unconstrained",
        }),
        "user scopes",
    );
    // A patient claim of another JSON type makes the token invalid. (`null` too: the test
    // token builder cannot write a null claim, so the unit tests of `claims` cover it.)
    for value in [json!(123), json!(["123"]), json!({}), json!(false)] {
        let answer = app
            .call(
                "GET",
                "/fhir/Observation/1",
                &[scope.clone(), ("patient", value.clone())],
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{value}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(
                format!(
                    "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"the \
                     token has a missing or invalid claim\"",
                    app.issuer.audience()
                )
                .as_str()
            ),
            "{value}"
        );
        assert_eq!(answer.body["issue"][0]["code"], "unknown", "{value}");
    }
    // A blank fhirContext entry refuses the token too, and so does one whose reference is
    // no relative `Type/id` (handlers may build paths from it, or authorize by it) or
    // whose `type` disagrees with it.
    for (context, expected) in [
        json!([{"reference": ""}]),
        json!(["Patient/456/../../Patient/789"]),
        json!([{"reference": "Patient/456/../../Patient/789", "role": "https://x/guardian"}]),
        json!(["Patient/1\r\nX: y"]),
        json!([" Observation/1 "]),
        json!(["https://other.example/Patient/1"]),
        json!(["Observation"]),
        json!(["observation/1"]),
        json!(["Observation/1/_history"]),
        json!(["Observation/1/_history/2/x"]),
        json!(["Observation/a%2Fb"]),
        json!([{"reference": "Patient/1", "type": "Encounter"}]),
        json!([{"identifier": {"value": "x"}, "type": "not a type"}]),
    ]
    .into_iter()
    .map(|context| (context, StatusCode::UNAUTHORIZED))
    .chain(
        [
            json!(["Observation/1", "Observation/1/_history/2"]),
            json!([{"reference": "Patient/1", "type": "Patient", "role": "https://x/guardian"}]),
            json!([{"canonical": "http://q.example/Questionnaire|2", "type": "Questionnaire"}]),
        ]
        .into_iter()
        .map(|context| (context, StatusCode::OK)),
    ) {
        let answer = app
            .call(
                "GET",
                "/fhir/Observation/1",
                &[
                    scope.clone(),
                    ("patient", json!("123")),
                    ("fhirContext", context.clone()),
                ],
            )
            .await;
        assert_eq!(answer.status, expected, "{context}");
    }
}

/// A form body is in FHIR only a search's or an operation's parameters: on any other
/// interaction it is refused under enforcement, whatever the scopes, since services that
/// read forms (Spring's `HiddenHttpMethodFilter`, gorilla, Symfony, Rack) take a `_method`
/// override from it, which the layer does not read. The type is read as Rack and PHP read
/// it (cut at `;`, `,` or a space; empty counts), and Rack reads a POST body without a type
/// as a form too. GET and HEAD carry no body.
#[tokio::test]
async fn form_bodies_are_for_searches_and_operations_only() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let everything = [("scope", json!("system/*.cruds"))];
    for content_type in [
        "application/x-www-form-urlencoded",
        "Application/X-WWW-Form-Urlencoded; charset=utf-8",
        "multipart/form-data; boundary=x",
        // Rack parses these too (`PARSEABLE_DATA_MEDIA_TYPES`) and reads `_method` from them.
        "multipart/mixed; boundary=x",
        "Multipart/Related; boundary=x",
        " application/x-www-form-urlencoded ",
        "application/x-www-form-urlencoded, x",
        "application/x-www-form-urlencoded x",
        "",
    ] {
        let form = [("content-type", content_type)];
        for (method, path) in [
            ("POST", "/fhir/Observation"),
            ("POST", "/fhir"),
            ("PUT", "/fhir/Observation/1"),
            ("DELETE", "/fhir/Observation?code=x"),
        ] {
            let answer = app
                .call_with_headers(method, path, &everything, &form)
                .await;
            app.assert_refused(&answer, None, &format!("{method} {path} {content_type}"));
        }
        for path in [
            "/fhir/Observation/_search",
            "/fhir/_search",
            "/fhir/Patient/1/Observation/_search",
            "/fhir/$export",
        ] {
            let answer = app
                .call_with_headers("POST", path, &everything, &form)
                .await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{path} {content_type}: {answer:?}"
            );
        }
    }
    for content_type in ["application/fhir+json", "application/json-patch+json"] {
        let answer = app
            .call_with_headers(
                "POST",
                "/fhir/Observation",
                &everything,
                &[("content-type", content_type)],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{content_type}: {answer:?}");
    }
    // A POST body without a type: read as a form by Rack.
    let answer = app
        .call_with_body(
            "POST",
            "/fhir/Observation",
            &everything,
            &[],
            Some("_method=DELETE"),
        )
        .await;
    app.assert_refused(&answer, None, "untyped body");
    // GET with a stray form type: no body, nothing to override.
    let answer = app
        .call_with_headers(
            "GET",
            "/fhir/Observation/1",
            &everything,
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // GET or HEAD with a form body: Rack reads it for any method and merges it over the
    // query the layer checked (`patient=456` over `patient=123`).
    let in_context = [
        ("scope", json!("patient/Observation.rs")),
        ("patient", json!("123")),
    ];
    for method in ["GET", "HEAD"] {
        for content_type in [
            "application/x-www-form-urlencoded",
            "multipart/mixed; boundary=b",
        ] {
            let answer = app
                .call_with_body(
                    method,
                    "/fhir/Observation?patient=123",
                    &in_context,
                    &[("content-type", content_type)],
                    Some("patient=456"),
                )
                .await;
            let what = format!("{method} {content_type} body");
            if method == "HEAD" {
                assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{what}: {answer:?}");
            } else {
                app.assert_malformed(&answer, &what);
            }
        }
        // Another body type is no form.
        let answer = app
            .call_with_body(
                method,
                "/fhir/Observation?patient=123",
                &in_context,
                &[("content-type", "application/fhir+json")],
                Some("{}"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{method}: {answer:?}");
    }
}

/// A token whose resource scopes are all SMART v1 comes from a v1 authorization server,
/// which refuses v2 letters: its refusals name v1 scopes (`read` for reads and searches,
/// `write` for writes). A token with any v2 scope gets v2 letters.
#[tokio::test]
async fn scope_hints_follow_a_v1_only_token() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let v1 = [("scope", json!("system/Patient.read launch/patient"))];
    let mixed = [("scope", json!("system/Patient.read system/Encounter.rs"))];
    for (method, path, v1_hint, v2_hint) in [
        (
            "POST",
            "/fhir/Observation",
            "system/Observation.write",
            "system/Observation.c",
        ),
        (
            "GET",
            "/fhir/Observation?code=x",
            "system/Observation.read",
            "system/Observation.s",
        ),
        (
            "GET",
            "/fhir/Observation/1",
            "system/Observation.read",
            "system/Observation.r",
        ),
        (
            "DELETE",
            "/fhir/Patient/1",
            "system/Patient.write",
            "system/Patient.d",
        ),
        (
            "PATCH",
            "/fhir/Patient/1",
            "system/Patient.write",
            "system/Patient.u",
        ),
    ] {
        let answer = app.call(method, path, &v1).await;
        app.assert_denied(&answer, v1_hint, &format!("v1: {method} {path}"));
        let answer = app.call(method, path, &mixed).await;
        app.assert_denied(&answer, v2_hint, &format!("mixed: {method} {path}"));
    }
}

/// US Core's include searches name no target type for parameters that have only one
/// (`MedicationRequest:medication`, `PractitionerRole:practitioner`): they need `r` on that
/// type alone, so the per-type scopes the Inferno kits ask for pass, and fail without it;
/// chains through such parameters `s` on that type alone, in the compartment too.
#[tokio::test]
async fn includes_of_single_target_parameters_need_that_type_only() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let patient = ("patient", json!("123"));
    for (path, scopes, missing) in [
        (
            "/fhir/MedicationRequest?patient=123&intent=order&_include=MedicationRequest:medication",
            "patient/MedicationRequest.rs patient/Medication.rs",
            "patient/Medication.r",
        ),
        (
            "/fhir/PractitionerRole?specialty=x&_include=PractitionerRole:practitioner",
            "patient/PractitionerRole.rs patient/Practitioner.rs",
            "patient/Practitioner.r",
        ),
        (
            "/fhir/PractitionerRole?specialty=x&_include=PractitionerRole:endpoint",
            "patient/PractitionerRole.rs patient/Endpoint.rs",
            "patient/Endpoint.r",
        ),
        (
            "/fhir/MedicationRequest?patient=123&medication.code=x",
            "patient/MedicationRequest.rs patient/Medication.rs",
            "patient/Medication.s",
        ),
        (
            "/fhir/Patient/123/MedicationDispense?medication.code=x",
            "patient/MedicationDispense.rs patient/Medication.s",
            "patient/Medication.s",
        ),
        (
            "/fhir/PractitionerRole?organization.name=x",
            "patient/PractitionerRole.rs patient/Organization.s",
            "patient/Organization.s",
        ),
    ] {
        let granted = [("scope", json!(scopes)), patient.clone()];
        let answer = app.call("GET", path, &granted).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
        let without = scopes.split(' ').next().unwrap();
        let short = [("scope", json!(without)), patient.clone()];
        let answer = app.call("GET", path, &short).await;
        app.assert_denied(&answer, missing, path);
    }
}

/// A search that brings back or looks into other types needs scopes on those types too:
/// `_include` (`r` on its target type), `_revinclude`, `_has` and chained parameters (`s`
/// on each type); a type the query leaves open is every type. Modifiers, percent-encoded
/// names, a `;` separator and compartment searches change nothing.
#[tokio::test]
async fn searches_reaching_other_types_need_their_scopes() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let patient_only = [("scope", json!("system/Patient.rs"))];
    let refused: [(&str, &str); 26] = [
        (
            "/fhir/Patient?_revinclude=Observation:subject",
            "system/Observation.s",
        ),
        (
            "/fhir/Patient?_revinclude:iterate=Observation:subject",
            "system/Observation.s",
        ),
        (
            "/fhir/Patient?%5Frevinclude=Observation:subject",
            "system/Observation.s",
        ),
        (
            "/fhir/Patient?_revinclude=Observation%3Asubject",
            "system/Observation.s",
        ),
        ("/fhir/Patient?_revinclude=*", "system/*.s"),
        (
            "/fhir/Patient?name=x;_revinclude=Observation:subject",
            "system/Observation.s",
        ),
        (
            "/fhir/Patient?_include=Patient:general-practitioner:Practitioner",
            "system/Practitioner.r",
        ),
        (
            "/fhir/Patient?_include=Patient:general-practitioner",
            "system/*.r",
        ),
        ("/fhir/Patient?_include:iterate=*", "system/*.r"),
        (
            "/fhir/Patient?_has:Observation:patient:code=1234",
            "system/Observation.s",
        ),
        (
            "/fhir/Patient?_has:Patient:link:_has:Observation:patient:code=1",
            "system/Observation.s",
        ),
        (
            "/fhir/Patient?general-practitioner:Practitioner.name=x",
            "system/Practitioner.s",
        ),
        ("/fhir/Patient?general-practitioner.name=x", "system/*.s"),
        (
            "/fhir/Patient?link:Patient.general-practitioner:Organization.name=x",
            "system/Organization.s",
        ),
        ("/fhir/Patient?_revinclude=%ZZ", "system/*.s"),
        // `_has` after a chain's `.`.
        (
            "/fhir/Patient?link:Patient._has:Group:member:_id=102",
            "system/Group.s",
        ),
        // Names in another case or with spaces, as a lenient server reads them.
        (
            "/fhir/Patient?_HAS:Observation:patient:code=1",
            "system/Observation.s",
        ),
        (
            "/fhir/Patient?_Include=Patient:general-practitioner:Practitioner",
            "system/Practitioner.r",
        ),
        (
            "/fhir/Patient?%20_revinclude=Observation:subject",
            "system/Observation.s",
        ),
        // Parameters whose reach the layer cannot tell, and `_list`, which reads a List.
        ("/fhir/Patient?_query=everything", "system/*.s"),
        ("/fhir/Patient?_filter=name%20eq%20x", "system/*.s"),
        ("/fhir/Patient?_contained=true", "system/*.s"),
        (
            "/fhir/Patient?_contained=both&_containedType=contained",
            "system/*.s",
        ),
        ("/fhir/Patient?_list=42", "system/List.r"),
        ("/fhir/Patient?_query=x;name=y", "system/*.s"),
        // A system search `_type` limits to Patient still reaches Observation.
        (
            "/fhir?_type=Patient&_revinclude=Observation:subject",
            "system/Observation.s",
        ),
    ];
    for (path, hint) in refused {
        let answer = app.call("GET", path, &patient_only).await;
        app.assert_denied(&answer, hint, path);
    }
    // The same searches pass with the other types granted, and searches that stay in the
    // type pass as before.
    let wide = [(
        "scope",
        json!(
            "system/Patient.rs system/Observation.rs system/Practitioner.rs system/Organization.rs"
        ),
    )];
    for path in [
        "/fhir/Patient?_revinclude=Observation:subject",
        "/fhir/Patient?_include=Patient:general-practitioner:Practitioner",
        "/fhir/Patient?_has:Observation:patient:code=1234",
        "/fhir/Patient?general-practitioner:Practitioner.name=x",
        "/fhir/Patient?link:Patient.general-practitioner:Organization.name=x",
    ] {
        let answer = app.call("GET", path, &wide).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    for path in [
        "/fhir/Patient?name=x",
        "/fhir/Patient?_include=Patient:link:Patient",
        "/fhir/Patient?_revinclude=Patient:link",
        "/fhir/Patient?link:Patient.name=x",
        "/fhir/Patient?_has:Patient:link:name=x",
    ] {
        let answer = app.call("GET", path, &patient_only).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    // A chain through a granted type still needs `s` on what its `_has` searches.
    let answer = app
        .call(
            "GET",
            "/fhir/Encounter?patient:Patient._has:Group:member:_id=102",
            &[("scope", json!("system/Encounter.s system/Patient.s"))],
        )
        .await;
    app.assert_denied(&answer, "system/Group.s", "_has after a chain");
    let answer = app
        .call("GET", "/fhir/Patient?_contained=false", &patient_only)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // A compartment search and a read-only include on a readable type.
    let with_patient = [
        ("scope", json!("patient/Observation.rs")),
        ("patient", json!("p1")),
    ];
    let answer = app
        .call(
            "GET",
            "/fhir/Patient/p1/Observation?_include=Observation:subject:Patient",
            &with_patient,
        )
        .await;
    app.assert_denied(&answer, "patient/Patient.r", "compartment include");
    let answer = app
        .call(
            "GET",
            "/fhir/Observation?_include=Observation:subject:Patient",
            &[
                ("scope", json!("patient/Observation.rs patient/Patient.r")),
                ("patient", json!("p1")),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

/// A search naming the patient in context by an absolute URL under the layer's FHIR base
/// URL (HAPI FHIR's client sends the absolute ids its parser gives resources) names that
/// patient; under another base, or a base spelt with its path in another case, or with
/// more before `Patient/123`, it may name another server's patient.
#[tokio::test]
async fn absolute_urls_under_the_fhir_base_name_the_patient_in_context() {
    let app = scoped_app_with(ScopeEnforcement::new(), |b| {
        b.fhir_base("https://api.example.org/fhir")
    })
    .await;
    let claims = [
        ("scope", json!("patient/Observation.rs")),
        ("patient", json!("123")),
    ];
    for query in [
        "subject=https://api.example.org/fhir/Patient/123",
        "subject=HTTPS://API.Example.ORG/fhir/Patient/123/_history/1",
        "patient=https%3A%2F%2Fapi.example.org%2Ffhir%2FPatient%2F123",
        "subject:Patient=https://api.example.org/fhir/Patient/123",
        "performer=https://api.example.org/fhir/Patient/123",
    ] {
        let path = format!("/fhir/Observation?{query}");
        let answer = app.call("GET", &path, &claims).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {answer:?}");
    }
    for query in [
        "subject=https://api.example.org/FHIR/Patient/123",
        "subject=https://api.example.org/fhir/x/Patient/123",
        "subject=https://api.example.org.evil/fhir/Patient/123",
        "subject=https://api.example.org/fhirx/Patient/123",
        "subject=https://api.example.org:8443/fhir/Patient/123",
        "subject=http://api.example.org/fhir/Patient/123",
        "subject=https://api.example.org/fhir/Patient/456",
        "subject=https://other.example/fhir/Patient/123",
    ] {
        let path = format!("/fhir/Observation?{query}");
        let answer = app.call("GET", &path, &claims).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{query}: {answer:?}");
        // The realm is the FHIR base URL, which `fhir_base` also says.
        assert_eq!(
            answer.challenge.as_deref(),
            Some(
                "Bearer realm=\"https://api.example.org/fhir\", error=\"insufficient_scope\", \
                 error_description=\"the token's scopes do not allow this request\""
            ),
            "{query}"
        );
    }
}

/// `patient/` scopes reach the patient in context only: every way a path can name another
/// Patient (the resource itself, its history and versions, writes, its compartment) is
/// refused unless `user/` or `system/` scopes allow it.
#[tokio::test]
async fn patient_scopes_stop_at_the_patient_in_context() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let patient_123 = |scope: &str| [("scope", json!(scope)), ("patient", json!("123"))];
    let full = "patient/Patient.cruds patient/Observation.rs";
    // The patient in context, spelt as the router reads it.
    for (method, path) in [
        ("GET", "/fhir/Patient/123"),
        ("GET", "/fhir/Patient/%31%323"),
        ("GET", "/fhir/Patient/123/_history"),
        ("GET", "/fhir/Patient/123/_history/2"),
        ("PUT", "/fhir/Patient/123"),
        ("PATCH", "/fhir/Patient/123"),
        ("DELETE", "/fhir/Patient/123"),
        ("GET", "/fhir/Patient/123/Observation?code=x"),
        ("GET", "/fhir/Patient/123/Observation/_search"),
        ("POST", "/fhir/Patient/123/Observation/_search"),
        // Searches naming the patient in context.
        ("GET", "/fhir/Patient?_id=123"),
        ("GET", "/fhir/Observation?patient=123"),
        ("GET", "/fhir/Observation?patient=Patient/123"),
        ("GET", "/fhir/Observation?subject=Patient%2F123&code=x"),
        ("GET", "/fhir/Observation?subject:Patient=123"),
        ("GET", "/fhir/Observation?patient:missing=false"),
        ("GET", "/fhir/Observation?patient=Patient/123/_history/2"),
        ("GET", "/fhir/Observation?patient=Patient/123/"),
        ("GET", "/fhir/Patient?_id:missing=false"),
        ("GET", "/fhir/Observation?subject=Group/9"),
        (
            "GET",
            "/fhir/Observation?subject=https://other.example/Group/9",
        ),
        ("GET", "/fhir/Observation?patient=/123"),
        // Conditional writes whose criteria name the patient in context.
        ("PUT", "/fhir/Patient?_id=123"),
        ("DELETE", "/fhir/Patient?_id=123&active=true"),
        ("PATCH", "/fhir/Patient?identifier=sys%7CMRN123&_id=123"),
        // Not named by the path or the query: limiting these is the handler's job.
        ("GET", "/fhir/Observation/456"),
        ("GET", "/fhir/Observation?code=x"),
        ("POST", "/fhir/Patient"),
    ] {
        let answer = app.call(method, path, &patient_123(full)).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}: {answer:?}");
    }
    // References to the patient in context (by a later chain link, by `:Patient`, by
    // value) and references to other types pass (the scopes grant every type: the
    // chains search Encounters too).
    for path in [
        "/fhir/Observation?encounter.patient=123",
        "/fhir/Observation?encounter.patient:missing=false",
        "/fhir/Appointment?actor=Patient/123",
        "/fhir/Coverage?beneficiary=123",
        "/fhir/Coverage?payor=456",
        "/fhir/Observation?performer:Patient=123",
        "/fhir/Observation?performer=Practitioner/9",
    ] {
        let answer = app.call("GET", path, &patient_123("patient/*.rs")).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    // A later link that names another patient, with scopes for every type: refused, as
    // the first link's would be (a last link's modifiers other than `:missing` and
    // `:Patient` too).
    for path in [
        "/fhir/Observation?encounter.patient=456",
        "/fhir/Observation?encounter.patient=Patient/456",
        "/fhir/Observation?encounter.PATIENT:Patient=456",
        "/fhir/Observation?subject:Device.patient=456",
        "/fhir/Observation?encounter.subject=Patient/456",
        "/fhir/Observation?encounter.patient:not=123",
        "/fhir/Observation?encounter.patient.name=Smith",
        "/fhir/Observation?encounter.subject:Patient.identifier=x",
        "/fhir/Observation?encounter.subject:Group=456",
        // Other parameters that reference a patient: by the `:Patient` modifier, or by
        // a value written as a Patient's reference.
        "/fhir/Observation?performer:Patient=456",
        "/fhir/Observation?encounter.participant:Patient=456",
        "/fhir/Appointment?actor=Patient/456",
        "/fhir/Appointment?actor=patient/456/_history/2",
        "/fhir/Coverage?beneficiary=Patient/456",
        // A bare id in a parameter that can point at a Patient only.
        "/fhir/Coverage?beneficiary=456",
        "/fhir/ResearchSubject?individual=456",
        "/fhir/Patient/123/Coverage?beneficiary=456",
        "/fhir/Person?link=Patient/123,Patient/456",
        "/fhir/Observation?performer=https://other.example/fhir/Patient/123",
        "/fhir/Appointment?actor=Group/9/_history/1/Patient/456",
        // Expressions and named queries the layer cannot read.
        "/fhir/Observation?_filter=subject%20eq%20Patient/456",
        "/fhir/Observation?_FILTER=code%20eq%20x",
        "/fhir/Observation?_query=everything",
    ] {
        let answer = app.call("GET", path, &patient_123("patient/*.rs")).await;
        app.assert_refused(&answer, None, path);
    }
    // Any other patient, whatever the spelling.
    for (method, path) in [
        ("GET", "/fhir/Patient/456"),
        ("GET", "/fhir/Patient/%34%35%36"),
        ("GET", "/fhir/Patient/0123"),
        ("GET", "/fhir/Patient/1234"),
        ("GET", "/fhir/Patient/12"),
        ("GET", "/fhir/Patient/123.1"),
        ("GET", "/fhir/%50atient/456"),
        ("GET", "/fhir/Patient/45%36/_history/1"),
        ("GET", "/fhir/Patient/456?_id=123"),
        ("GET", "/fhir/Patient/456/_history"),
        ("GET", "/fhir/Patient/456/_history/1"),
        ("PUT", "/fhir/Patient/456"),
        ("PATCH", "/fhir/Patient/456"),
        ("DELETE", "/fhir/Patient/456"),
        ("GET", "/fhir/Patient/456/Observation"),
        ("GET", "/fhir/Patient/456/Observation?patient=123"),
        // Conditional writes and histories whose criteria name another patient.
        ("PUT", "/fhir/Patient?_id=456"),
        ("PATCH", "/fhir/Patient?_id:not=123"),
        ("DELETE", "/fhir/Patient?_id=456"),
        ("DELETE", "/fhir/Patient?_ID=456"),
        // A conditional write of a Patient that does not pin the patient in context by
        // `_id`, written exactly so in every reading of the query.
        ("PUT", "/fhir/Patient?identifier=sys%7CMRN456"),
        ("PATCH", "/fhir/Patient?name=Smith"),
        ("DELETE", "/fhir/Patient?active=true"),
        ("PUT", "/fhir/Patient?_ID=123&identifier=sys%7CMRN456"),
        ("PUT", "/fhir/Patient?%20_id=123&identifier=sys%7CMRN456"),
        ("PUT", "/fhir/Patient?_id=123;identifier=sys%7CMRN456"),
        ("DELETE", "/fhir/Patient?identifier=x;_id=123"),
        // A second `_id` that a server keeping the last value reads (empty: ignored).
        ("PUT", "/fhir/Patient?_id=123&identifier=sys%7CMRN456&_id="),
        (
            "PUT",
            "/fhir/Patient?_id=123&identifier=sys%7CMRN456&_id=%20",
        ),
        ("PUT", "/fhir/Patient?_id=123&identifier=sys%7CMRN456&_id"),
        ("PUT", "/fhir/Patient?_id=123&identifier=sys%7CMRN456&_ID="),
        ("PUT", "/fhir/Patient?_id=123&identifier=sys%7CMRN456&.id="),
        // Names that PHP, Rack or `qs` read as `patient` or `_id`.
        ("GET", "/fhir/Observation?patient[]=456"),
        ("GET", "/fhir/Observation?patient%5B%5D=456"),
        ("GET", "/fhir/Observation?subject[0]=Patient/456"),
        ("GET", "/fhir/Patient?.id=456"),
        ("GET", "/fhir/Patient/_history?_id=456"),
        // A reference or a type in another case, as a case-insensitive server reads it.
        ("GET", "/fhir/Observation?subject=PATIENT/456"),
        ("GET", "/fhir/Observation?subject:PATIENT._id=456"),
        ("GET", "/fhir/Observation?subject:patient.identifier=x"),
        ("GET", "/fhir/Observation?%00patient=456"),
        ("GET", "/fhir?_type=PATIENT&_id=456"),
        ("GET", "/fhir/PATIENT/456"),
        ("GET", "/fhir/paTient/456/_history"),
        ("GET", "/fhir/Patient/456/Observation/_search"),
        ("POST", "/fhir/Patient/456/Observation/_search"),
        ("GET", "/fhir/Patient/456/*"),
        // Searches whose query names another patient.
        ("GET", "/fhir/Patient?_id=456"),
        ("GET", "/fhir/Patient?_id=123,456"),
        ("GET", "/fhir/Observation?patient=456"),
        ("GET", "/fhir/Observation?patient=Patient/456"),
        (
            "GET",
            "/fhir/Observation?patient=https://fhir.example/r4/Patient/456",
        ),
        ("GET", "/fhir/Observation?patient=%34%35%36"),
        ("GET", "/fhir/Observation?subject=Patient/456"),
        ("GET", "/fhir/Observation?subject:Patient=456"),
        ("GET", "/fhir/Observation?patient=123,456"),
        ("GET", "/fhir/Observation?patient=123&patient=456"),
        ("GET", "/fhir/Observation?code=x;patient=456"),
        ("GET", "/fhir/Patient/123/Observation?patient=456"),
        ("POST", "/fhir/Observation/_search?patient=456"),
        ("GET", "/fhir/Observation?patient=Patient/456/_history/1"),
        ("GET", "/fhir/Observation?patient=Patient/456/"),
        ("GET", "/fhir/Observation?patient=Patient/456/_history/"),
        ("GET", "/fhir/Observation?patient=Patient/456/_history"),
        (
            "GET",
            "/fhir/Observation?patient=Patient/456/_history/1/123",
        ),
        // Names in another case or with spaces, as a lenient server reads them.
        ("GET", "/fhir/Observation?PATIENT=456"),
        ("GET", "/fhir/Observation?%20Subject=Patient/456"),
        ("GET", "/fhir/Patient?_ID=456"),
        // Forms the layer cannot compare with the patient in context.
        ("GET", "/fhir/Observation?patient._id=456"),
        ("GET", "/fhir/Observation?subject:Patient._id=456"),
        ("GET", "/fhir/Observation?patient.identifier=sys%7CMRN456"),
        ("GET", "/fhir/Observation?patient:identifier=sys%7CMRN456"),
        ("GET", "/fhir/Patient?_id:not=123"),
        // The id in context, but perhaps at another server: an absolute URL or a longer
        // path, by any parameter, with a version, or one of a list.
        (
            "GET",
            "/fhir/Observation?subject=https://other.example/fhir/Patient/123",
        ),
        (
            "GET",
            "/fhir/Observation?patient=https%3A%2F%2Fother.example%2FPatient%2F123",
        ),
        ("GET", "/fhir/Observation?subject:Patient=other/Patient/123"),
        (
            "GET",
            "/fhir/Observation?patient=//other.example/Patient/123",
        ),
        (
            "GET",
            "/fhir/Observation?patient=https://other.example/Patient/123/_history/2",
        ),
        (
            "GET",
            "/fhir/Observation?patient=123,https://other.example/Patient/123",
        ),
        ("GET", "/fhir/Patient?_id=https://other.example/Patient/123"),
        // A value HAPI reads as another id or a typeless reference.
        ("GET", "/fhir/Patient?_id=Observation/456"),
        ("GET", "/fhir/Patient?_id=/456"),
        ("GET", "/fhir/Patient?_id=Patient/123"),
        ("GET", "/fhir?_type=Patient&_id=x/456"),
        ("GET", "/fhir/Observation?patient=/456"),
        ("GET", "/fhir/Observation?subject=//456"),
        ("GET", "/fhir/Observation?patient=//123"),
        ("PUT", "/fhir/Patient?_id=https://other.example/Patient/123"),
    ] {
        let answer = app.call(method, path, &patient_123(full)).await;
        app.assert_refused(&answer, None, &format!("{method} {path}"));
    }
    // `user/` and `system/` scopes are not bound to the patient in context; granted beside
    // `patient/` scopes they allow another patient, each for what it grants.
    for scope in [
        "patient/Patient.r user/Patient.r",
        "system/Patient.rs patient/Patient.r",
        "user/*.r",
    ] {
        let answer = app
            .call("GET", "/fhir/Patient/456", &patient_123(scope))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{scope}: {answer:?}");
    }
    let answer = app
        .call(
            "GET",
            "/fhir/Observation?patient=456",
            &patient_123("patient/Observation.rs user/Observation.rs"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // A system search is a search of Patients too, unless its `_type` leaves them out; so
    // is a compartment search of every type.
    for path in [
        "/fhir?_id=456",
        "/fhir?_type=Patient,Observation&_id=456",
        "/fhir/Patient/123/*?_id=456",
        "/fhir/Patient/123/*?_type=Patient&_id=456",
        "/fhir/Patient/123/*/_search?_type=Observation,patient&_id=456",
    ] {
        let answer = app.call("GET", path, &patient_123("patient/*.rs")).await;
        app.assert_refused(&answer, None, path);
    }
    for path in [
        "/fhir?_type=Observation&_id=456",
        "/fhir/Patient/123/*?_type=Observation&_id=456",
        "/fhir/Patient/123/*?_id=123",
    ] {
        let answer = app.call("GET", path, &patient_123("patient/*.rs")).await;
        // Let through by the layer.
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    let answer = app
        .call(
            "DELETE",
            "/fhir/Patient/456",
            &patient_123("patient/Patient.d user/Patient.r"),
        )
        .await;
    app.assert_refused(
        &answer,
        None,
        "user/ read does not allow deleting another patient",
    );
    // A conditional create whose `If-None-Exist` names another patient tells whether that
    // patient has such a resource.
    for (criteria, allowed) in [
        ("_id=456", false),
        ("Patient?_id=456", false),
        ("?_id=456", false),
        ("x-y?_id=456", false),
        ("identifier=a?_id=456", false),
        // The server answers a conditional create with the patient it found: it must be
        // the one in context.
        ("Patient?identifier=a", false),
        ("identifier=a", false),
        ("_id=123&_id=", false),
        ("_id=123", true),
        // A `[type]?` prefix, which FHIR does not allow, reads three ways: no pin in one.
        ("Patient?_id=123&identifier=a", false),
    ] {
        let headers = [("If-None-Exist", criteria)];
        let answer = app
            .call_with_headers("POST", "/fhir/Patient", &patient_123(full), &headers)
            .await;
        if allowed {
            assert_eq!(answer.status, StatusCode::OK, "{criteria}: {answer:?}");
        } else {
            app.assert_refused(&answer, None, criteria);
        }
    }
    // The refusal for a missing type still names the scope that is missing.
    let answer = app
        .call("GET", "/fhir/Patient/123/Condition", &patient_123(full))
        .await;
    app.assert_denied(
        &answer,
        "patient/Condition.s",
        "missing type in the compartment",
    );
}

/// An operation on a population (the Patient type, the whole system) reaches every patient:
/// `patient/` scopes never allow it, whatever a custom policy asks; on the patient in
/// context they do. The query of a `GET` operation is checked as a search's.
#[tokio::test]
async fn patient_scopes_never_allow_an_operation_on_a_population() {
    let enforcement = ScopeEnforcement::new().operation_policy(|operation, query| match operation
        .name
        .as_str()
    {
        "everything" | "lastn" => {
            Some(vec![Requirement::new(Interaction::Read, ResourceType::Any)])
        }
        _ => smart_auth::default_operation_policy(operation, query),
    });
    let app = scoped_app(enforcement).await;
    let with = |scope: &str| [("scope", json!(scope)), ("patient", json!("123"))];
    for path in [
        "/fhir/Patient/$everything",
        "/fhir/$everything",
        "/fhir/Patient/456/$everything",
        // A Group is a population, at any level.
        "/fhir/Group/1/$everything",
        "/fhir/Group/$everything",
        "/fhir/Observation/$lastn?patient=456",
        "/fhir/Observation/$lastn?subject=Patient/456",
        "/fhir/Observation/$lastn?pat%C4%B1ent=456",
    ] {
        let answer = app.call("GET", path, &with("patient/*.rs")).await;
        app.assert_refused(&answer, None, path);
        let answer = app.call("GET", path, &with("patient/*.rs user/*.rs")).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    for path in [
        "/fhir/Patient/123/$everything",
        // Another type's instance: the handler keeps it inside the compartment, as it
        // does for a read.
        "/fhir/Encounter/9/$everything",
        "/fhir/Observation/$lastn?patient=123",
    ] {
        let answer = app.call("GET", path, &with("patient/*.rs")).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    // A query beside a `POST` operation's body is read too: a server may merge it.
    let answer = app
        .call(
            "POST",
            "/fhir/Observation/$lastn?patient=456",
            &with("patient/*.rs"),
        )
        .await;
    app.assert_refused(&answer, None, "POST operation query");
    // What a `GET` operation's query reaches needs its scopes, as in a search.
    let answer = app
        .call(
            "GET",
            "/fhir/Observation/$lastn?_revinclude=Provenance:target",
            &[("scope", json!("system/*.r"))],
        )
        .await;
    app.assert_denied(&answer, "system/Provenance.s", "operation query");
    let answer = app
        .call(
            "GET",
            "/fhir/Observation/$lastn?code=x",
            &[("scope", json!("system/*.r"))],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

/// A bulk export reaches a population: `patient/` scopes never allow one, whatever their
/// types, at system, type or group level; `user/` and `system/` scopes do.
#[tokio::test]
async fn patient_scopes_never_allow_a_bulk_export() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let with = |scope: &str| [("scope", json!(scope)), ("patient", json!("123"))];
    for path in [
        "/fhir/$export",
        "/fhir/$export?_type=Patient",
        "/fhir/Patient/$export",
        "/fhir/Group/7/$export",
        "/fhir/Group/7/$export?_type=Observation",
    ] {
        for method in ["GET", "POST"] {
            let answer = app
                .call(method, path, &with("patient/*.cruds patient/Group.r"))
                .await;
            app.assert_refused(&answer, None, &format!("{method} {path}"));
        }
        for scope in ["system/*.rs", "user/*.rs", "patient/*.rs system/*.rs"] {
            let answer = app.call("GET", path, &with(scope)).await;
            assert_eq!(answer.status, StatusCode::OK, "{path} {scope}: {answer:?}");
        }
    }
    // A client with system scopes is told the system scope it misses.
    let answer = app
        .call(
            "GET",
            "/fhir/$export?_type=Observation",
            &with("patient/*.rs system/Patient.rs"),
        )
        .await;
    app.assert_denied(&answer, "system/Observation.s", "mixed scopes");
}

/// With handlers applying granular filters, another patient still needs a whole-type grant
/// outside `patient/` scopes: the handler's filters (`require_constraints`) come from the
/// whole scope set, where the `patient/` scope leaves the type unfiltered.
#[tokio::test]
async fn handler_filters_never_open_another_patient() {
    let app = scoped_app(ScopeEnforcement::new().handler_applies_granular_filters()).await;
    let claims = [
        (
            "scope",
            json!("patient/Patient.r user/Patient.r?gender=female"),
        ),
        ("patient", json!("123")),
    ];
    let answer = app.call("GET", "/fhir/Patient/456", &claims).await;
    app.assert_refused(&answer, None, "another patient on a granular user/ scope");
    let answer = app.call("GET", "/fhir/Patient/123", &claims).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // The same granular scope opens another patient's resources where the layer sees the
    // filter applied: a search in that compartment whose query carries it.
    let claims = [
        (
            "scope",
            json!("patient/Observation.rs user/Observation.rs?category=laboratory"),
        ),
        ("patient", json!("123")),
    ];
    let answer = app
        .call(
            "GET",
            "/fhir/Patient/456/Observation?category=laboratory",
            &claims,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

/// `resource_types` holds in a layer: a type outside the list is refused whatever the
/// scopes.
#[tokio::test]
async fn resource_types_limit_the_layer() {
    let app = scoped_app(ScopeEnforcement::new().resource_types(["Patient"])).await;
    let claims = [("scope", json!("system/*.rs"))];
    let answer = app.call("GET", "/fhir/Patient/1", &claims).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    for path in ["/fhir/Observation/1", "/fhir/Observation?code=x"] {
        let answer = app.call("GET", path, &claims).await;
        app.assert_refused(&answer, None, path);
    }
}

/// A method-override header names a second method: a service behind the layer that honours
/// it runs that interaction, so the request needs the scopes of both (any of the three
/// header names, any letter case, around spaces). A value that is no method is refused;
/// one naming the request's own method changes nothing.
#[tokio::test]
async fn method_override_headers_need_the_scopes_of_that_method_too() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let reader = [("scope", json!("system/Observation.rs"))];
    let deleter = [("scope", json!("system/Observation.rds"))];
    for name in [
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
    ] {
        for value in ["DELETE", "delete", " Delete "] {
            let headers = [(name, value)];
            let answer = app
                .call_with_headers("GET", "/fhir/Observation/1", &reader, &headers)
                .await;
            app.assert_denied(&answer, "system/Observation.d", &format!("{name}: {value}"));
            let answer = app
                .call_with_headers("GET", "/fhir/Observation/1", &deleter, &headers)
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{name}: {value}: {answer:?}");
        }
        // POST for a long search, overridden to GET: a search is checked as one.
        let answer = app
            .call_with_headers(
                "POST",
                "/fhir/Observation/_search",
                &reader,
                &[(name, "GET")],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {answer:?}");
        // The request's own method, and values that are no method.
        let answer = app
            .call_with_headers("GET", "/fhir/Observation/1", &reader, &[(name, "get")])
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {answer:?}");
        for bad in ["", "DE LETE", "DELETE,GET", "\"DELETE\""] {
            let answer = app
                .call_with_headers("GET", "/fhir/Observation/1", &reader, &[(name, bad)])
                .await;
            app.assert_malformed(&answer, &format!("{name}: {bad:?}"));
        }
    }
    // Two override headers: each is checked.
    let headers = [
        ("X-HTTP-Method-Override", "GET"),
        ("X-HTTP-Method", "DELETE"),
    ];
    let answer = app
        .call_with_headers("GET", "/fhir/Observation/1", &reader, &headers)
        .await;
    app.assert_denied(&answer, "system/Observation.d", "two headers");
}

/// A `_method` query parameter is the method override of Spring's `HiddenHttpMethodFilter`,
/// gorilla, Symfony and Express's `method-override`: a service behind that honours it runs
/// that interaction, so the request needs its scopes too, however the name is spelled
/// (escaped, another case, whitespace, after a `;`). A value that is no method is refused.
#[tokio::test]
async fn a_method_query_parameter_needs_the_scopes_of_that_method_too() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let creator = [("scope", json!("system/Observation.c"))];
    let everything = [("scope", json!("system/Observation.cruds"))];
    for query in [
        "_method=DELETE",
        "_method=delete",
        "_method=%20Delete%20",
        "_METHOD=DELETE",
        "%5Fmethod=DELETE",
        "_method=DEL%45TE",
        "+_method=DELETE",
        "_method=POST&_method=DELETE",
        "[method=DELETE",
        ".method=DELETE",
        "%2Emethod=DELETE",
        // PHP, Rack and `qs` read a bracketed suffix as the name before it; Express's
        // `method-override` takes the first value of the list.
        "_method[]=DELETE",
        "_method%5B0%5D=DELETE",
    ] {
        let path = format!("/fhir/Observation?{query}&code=x");
        let answer = app.call("POST", &path, &creator).await;
        // The delete, the search a conditional delete makes first, and (for a name no FHIR
        // parameter has, read leniently) every type the criteria may reach.
        let reaches_every_type = [".", "[", "%2E", "_method[", "_method%5B"]
            .iter()
            .any(|start| query.starts_with(start));
        let hint = if reaches_every_type {
            "system/Observation.d system/Observation.s system/*.s"
        } else {
            "system/Observation.d system/Observation.s"
        };
        app.assert_refused(&answer, Some(hint), &path);
        // (Names no FHIR parameter has reach every type, so every type's scopes here.)
        let answer = app
            .call("POST", &path, &[("scope", json!("system/*.cruds"))])
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    // A conditional delete named by an override without a criterion some server reads one
    // way (the override itself is none: the framework consumes it; after a `;` the pair
    // reads two ways): refused whatever the scopes.
    let all_types = [("scope", json!("system/*.cruds"))];
    for query in [
        "_method=DELETE",
        "_method[]=DELETE",
        "code=x;_method=DELETE",
        "[method=DELETE",
        ".method=DELETE",
    ] {
        let path = format!("/fhir/Observation?{query}");
        for scopes in [&creator, &all_types] {
            let answer = app.call("POST", &path, scopes).await;
            app.assert_refused(&answer, None, &path);
        }
    }
    // The request's own method changes nothing; values that are no method are refused.
    let answer = app
        .call("POST", "/fhir/Observation?_method=post", &creator)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    for bad in ["", "DE%20LETE", "DELETE,GET", "%22DELETE%22", "%ZZ"] {
        let path = format!("/fhir/Observation?_method={bad}");
        let answer = app.call("POST", &path, &everything).await;
        app.assert_malformed(&answer, &path);
    }
    // Names that only look alike are other parameters.
    for query in ["_methods=DELETE", "method=DELETE", "x=_method"] {
        let path = format!("/fhir/Observation?{query}");
        let answer = app.call("POST", &path, &creator).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
}

/// Each method an override names is checked once however often it is named, and a
/// request naming more than five methods besides its own is refused: no client names more
/// than one, and outside the base, where a valid token is enough, every made-up method
/// would pass and be checked again.
#[tokio::test]
async fn method_overrides_are_checked_once_each_and_bounded() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let reader = [("scope", json!("system/Observation.rs"))];
    let path = format!("/fhir/Observation?{}code=x", "_method=HEAD&".repeat(2000));
    let answer = app.call("GET", &path, &reader).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let path = format!(
        "/fhir/Observation?{}_method=DELETE&code=x",
        "_method=HEAD&".repeat(2000)
    );
    let answer = app.call("GET", &path, &reader).await;
    app.assert_refused(&answer, Some("system/Observation.d"), "DELETE after HEADs");
    // `HEAD` beside `GET` is one interaction: a creator's `POST` naming both is refused
    // for the search, once.
    let creator = [("scope", json!("system/Observation.c"))];
    let answer = app
        .call(
            "POST",
            "/fhir/Observation?_method=GET&_method=HEAD&code=x",
            &creator,
        )
        .await;
    app.assert_refused(&answer, Some("system/Observation.s"), "GET and HEAD");
    // Outside the base (any valid token): five made-up methods pass, a sixth is refused,
    // in the query or in headers.
    let methods =
        |count: usize| -> String { (1..=count).map(|n| format!("_method=M{n}&")).collect() };
    let answer = app
        .call("GET", &format!("/reports/all?{}", methods(5)), &reader)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let answer = app
        .call("GET", &format!("/reports/all?{}", methods(6)), &reader)
        .await;
    app.assert_malformed(&answer, "six methods");
    let headers = [("X-HTTP-Method-Override", "M6")];
    let answer = app
        .call_with_headers(
            "GET",
            &format!("/reports/all?{}", methods(5)),
            &reader,
            &headers,
        )
        .await;
    app.assert_malformed(&answer, "five and a header");
}

/// A request that needs more than 512 distinct requirements (made-up types in `_type`,
/// `_include`, `_revinclude`) is refused whatever the scopes: each requirement is checked
/// against every scope of the token, and FHIR has under 200 types.
#[tokio::test]
async fn requests_naming_too_many_types_are_refused() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let everything = [("scope", json!("system/*.rs"))];
    // Names as FHIR writes types (letters only): `Taaa`, `Taab`, ...
    let names = |count: usize| -> Vec<String> {
        (0..count)
            .map(|n| {
                let letter =
                    |shift: usize| char::from(b'a' + u8::try_from(n / shift % 26).unwrap());
                format!("T{}{}{}", letter(676), letter(26), letter(1))
            })
            .collect()
    };
    for (count, status) in [(500, StatusCode::OK), (600, StatusCode::FORBIDDEN)] {
        let list = names(count).join(",");
        for path in [
            format!("/fhir?_type={list}"),
            format!("/fhir/Observation?_revinclude={list}"),
            format!(
                "/fhir/Observation?{}",
                names(count)
                    .iter()
                    .map(|name| format!("_include=Observation:subject:{name}"))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
        ] {
            let answer = app.call("GET", &path, &everything).await;
            assert_eq!(answer.status, status, "{count} {}: {answer:?}", &path[..40]);
            if status == StatusCode::FORBIDDEN {
                app.assert_refused(&answer, None, "too many types");
            }
        }
    }
}

/// The filter of a scope on every type is looked for in a long query for each type `_type`
/// names: a compartment search of 500 types whose 60 KiB query carries `_tag=x` passes,
/// one that carries another value beside it (in any spelling) or none is refused. (The query is read once
/// for all 500 checks: `enforce/filter_for_500_types_in_60_kib` in `--bench enforce`.)
#[tokio::test]
async fn a_filter_on_every_type_is_found_in_a_long_query_for_each_type() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let tagged = [("scope", json!("system/*.rs?_tag=x"))];
    let types: Vec<String> = (0..500u16)
        .map(|n| {
            let letter = |shift: u16| char::from(b'a' + u8::try_from(n / shift % 26).unwrap());
            format!("T{}{}", letter(26), letter(1))
        })
        .collect();
    let list = types.join(",");
    for (filter, status) in [
        ("&_tag=x", StatusCode::OK),
        // The filter's own spelling carries it; another only adds a value a lenient
        // server reads as `_tag`.
        ("&_TAG=x", StatusCode::FORBIDDEN),
        ("&_tag=x&_TAG=y", StatusCode::FORBIDDEN),
        ("&_tag=x&_tag=y", StatusCode::FORBIDDEN),
        ("&_tag=y", StatusCode::FORBIDDEN),
        ("", StatusCode::FORBIDDEN),
        ("&_tag=x&_include=*", StatusCode::FORBIDDEN),
    ] {
        let mut path = format!("/fhir/Patient/1/*?_type={list}{filter}");
        while path.len() < 60 * 1024 {
            path.push_str("&a");
        }
        let answer = app.call("GET", &path, &tagged).await;
        assert_eq!(answer.status, status, "{filter}: {answer:?}");
    }
}

/// A bundle entry's URL is read up to the length a request's target may have (64 KiB,
/// hyper's bound): one byte more is a malformed request, whatever it names.
#[tokio::test]
async fn bundle_entry_urls_are_bounded_as_request_targets_are() {
    let claims = smart_auth::testing::ClaimsBuilder::new()
        .scope("system/*.rs")
        .build();
    let enforcement = ScopeEnforcement::new();
    let url = |length: usize| {
        let mut url = String::from("Observation?code=");
        url.push_str(&"a".repeat(length - url.len()));
        url
    };
    for slashes in ["", "/"] {
        let longest = format!("{slashes}{}", url(64 * 1024 - slashes.len()));
        assert!(
            enforcement
                .check_bundle_entry(&claims, "GET", &longest)
                .is_ok()
        );
        let longer = format!("{slashes}{}", url(64 * 1024 + 1 - slashes.len()));
        let refused = enforcement
            .check_bundle_entry(&claims, "GET", &longer)
            .unwrap_err();
        assert_eq!(refused.kind(), smart_auth::ErrorKind::MalformedRequest);
        let refused = enforcement
            .check_conditional_create_entry(&claims, "POST", &longer, "code=1")
            .unwrap_err();
        assert_eq!(refused.kind(), smart_auth::ErrorKind::MalformedRequest);
    }
}

/// A custom operation policy's requirements count once each towards the bound: 600 copies
/// of one pass with a scope that grants it, 600 distinct ones are refused (a bare 403).
#[tokio::test]
async fn an_operation_policys_requirements_count_once_each() {
    let enforcement = ScopeEnforcement::new().operation_policy(|operation, _| {
        let count = 600;
        match operation.name.as_str() {
            "repeated" => Some(vec![
                Requirement::new(Interaction::Read, ResourceType::Any);
                count
            ]),
            "distinct" => Some(
                (0..count)
                    .map(|n| {
                        let name = format!("T{}", "a".repeat(n % 40 + 1) + &n.to_string());
                        Requirement::new(Interaction::Read, ResourceType::Named(name))
                    })
                    .collect(),
            ),
            _ => None,
        }
    });
    let app = scoped_app(enforcement).await;
    let everything = [("scope", json!("system/*.rs"))];
    let answer = app.call("GET", "/fhir/$repeated", &everything).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let answer = app.call("GET", "/fhir/$distinct", &everything).await;
    app.assert_refused(&answer, None, "600 distinct requirements");
}

/// A patient claim written as a relative reference (`Patient/123`) is the patient in
/// context, with every rule of the id form: its own compartment passes, another patient's
/// is refused.
#[tokio::test]
async fn a_patient_reference_is_the_patient_in_context() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let claims = [
        ("scope", json!("patient/*.rs")),
        ("patient", json!("Patient/123")),
    ];
    for path in ["/fhir/Patient/123", "/fhir/Observation?patient=123"] {
        let answer = app.call("GET", path, &claims).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
        assert_eq!(answer.body["patient"], "123", "{path}");
    }
    for path in [
        "/fhir/Patient/456",
        "/fhir/Observation?patient=456",
        "/fhir/Observation?patient=Patient/456",
    ] {
        let answer = app.call("GET", path, &claims).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}: {answer:?}");
    }
}

/// A server that serves its paging links from the base (HAPI FHIR's `_getpages`) makes
/// them system searches, which need `s` on every type; with
/// `handler_checks_paging_links`, a link (that parameter once and only paging and
/// shaping parameters beside it, written exactly so) passes with any valid token, and
/// anything more is checked as before.
#[tokio::test]
async fn paging_links_pass_only_when_the_handler_checks_them() {
    let per_type = [
        ("scope", json!("patient/Observation.rs patient/Patient.r")),
        ("patient", json!("123")),
    ];
    let link = "/fhir?_getpages=8f1c-4e&_getpagesoffset=20&_count=20&_bundletype=searchset";
    let strict = scoped_app(ScopeEnforcement::new()).await;
    let answer = strict.call("GET", link, &per_type).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    let app = scoped_app(ScopeEnforcement::new().handler_checks_paging_links("_getpages")).await;
    // The handler sees which requests the layer let through as links, and the page's id.
    let answer = app.call("GET", link, &per_type).await;
    assert_eq!(answer.body["paging_link"], "8f1c-4e", "{answer:?}");
    let answer = app
        .call("GET", "/fhir/Observation?patient=123", &per_type)
        .await;
    assert_eq!(answer.body["paging_link"], Value::Null, "{answer:?}");
    // A method override that makes the request a link marks it too.
    let all_types = [("scope", json!("user/*.rs"))];
    let answer = app
        .call_with_headers(
            "POST",
            "/fhir/_search?_getpages=8f1c-4e",
            &all_types,
            &[("x-http-method-override", "GET")],
        )
        .await;
    assert_eq!(answer.body["paging_link"], "8f1c-4e", "{answer:?}");
    let answer = app.call("POST", link, &per_type).await;
    assert_eq!(answer.body["paging_link"], "8f1c-4e", "{answer:?}");
    for (method, path) in [
        ("GET", link),
        ("HEAD", link),
        // HAPI serves pages to POST too (without a body).
        ("POST", link),
        ("GET", "/fhir?_getpages=8f1c-4e"),
        ("GET", "/fhir?_getpages=8f1c-4e&_format=json&_pretty=true"),
        // As HAPI writes them: the page id and the search's own shaping and includes.
        (
            "GET",
            "/fhir?_getpages=8f1c-4e&_pageId=2&_elements:exclude=text&_bundletype=searchset",
        ),
        (
            "GET",
            "/fhir?_getpages=8f1c-4e&_getpagesoffset=20&_include=Observation:subject:Patient",
        ),
    ] {
        let answer = app.call(method, path, &per_type).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}: {answer:?}");
    }
    for (method, path) in [
        ("GET", "/fhir?_getpages=8f1c-4e&patient=456"),
        ("GET", "/fhir?_getpages=8f1c-4e&_type=Patient"),
        ("GET", "/fhir?_getpages=8f1c-4e&_include=*"),
        (
            "GET",
            "/fhir?_getpages=8f1c-4e&_revinclude=Provenance:target",
        ),
        ("GET", "/fhir?_getpages=8f1c-4e;_type=Patient"),
        ("GET", "/fhir?_getpages=8f1c-4e&_getpages=9"),
        ("GET", "/fhir?_getpages="),
        ("GET", "/fhir?_GETPAGES=8f1c-4e"),
        ("GET", "/fhir?%5Fgetpages=8f1c-4e"),
        ("GET", "/fhir?_getpages=8f1c-4e&%5Fcount=1"),
        ("GET", "/fhir?_count=20"),
        ("POST", "/fhir/_search?_getpages=8f1c-4e"),
        ("GET", "/fhir/Patient?_getpages=8f1c-4e"),
        (
            "GET",
            "/fhir?_getpages=8f1c-4e&_include:iterate=Observation:subject",
        ),
    ] {
        let answer = app.call(method, path, &per_type).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {answer:?}"
        );
    }
    // A link named by a path-override header would be served by a service that honours
    // it while the mark names the request line's page or none: refused, whatever the
    // request line is (the same link as a proxy in front sets it passes as a link).
    for (path, named) in [
        ("/fhir/Observation?patient=123", "/fhir?_getpages=8f1c-4e"),
        ("/fhir?_getpages=mine", "/fhir?_getpages=theirs"),
    ] {
        for name in ["X-Original-URL", "x_rewrite_url"] {
            let answer = app
                .call_with_headers("GET", path, &per_type, &[(name, named)])
                .await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{path} {named}: {answer:?}"
            );
        }
    }
    let answer = app
        .call_with_headers("GET", link, &per_type, &[("X-Original-URL", link)])
        .await;
    assert_eq!(answer.body["paging_link"], "8f1c-4e", "{answer:?}");
    // What a link's includes reach needs its scopes, as in a search.
    for (path, hint) in [
        (
            "/fhir?_getpages=8f1c-4e&_include=Observation:performer:Practitioner",
            "patient/Practitioner.r",
        ),
        (
            "/fhir?_getpages=8f1c-4e&_revinclude=Provenance:target",
            "patient/Provenance.s",
        ),
    ] {
        let answer = app.call("GET", path, &per_type).await;
        app.assert_denied(&answer, hint, path);
    }
    // With a body, a POST of the base is a batch or transaction to the server, whatever
    // its query says; so is a GET with a body that a method override makes a POST.
    for (method, headers) in [
        ("POST", vec![("content-type", "application/fhir+json")]),
        (
            "GET",
            vec![
                ("content-type", "application/fhir+json"),
                ("x-http-method-override", "POST"),
            ],
        ),
    ] {
        let answer = app
            .call_with_body(
                method,
                link,
                &per_type,
                &headers,
                Some(r#"{"resourceType": "Bundle", "type": "transaction"}"#),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {headers:?}: {answer:?}"
        );
    }
    // A bundle entry never takes this way: the handler checks entries one by one.
    let enforcement = ScopeEnforcement::new().handler_checks_paging_links("_getpages");
    let claims = smart_auth::testing::ClaimsBuilder::new()
        .scope("patient/Observation.rs")
        .patient("123")
        .build();
    // Checked as the system search it is, never as a paging link: `s` on every type.
    let denied = enforcement
        .check_bundle_entry(&claims, "GET", "?_getpages=8f1c-4e")
        .unwrap_err();
    assert_eq!(denied.kind(), smart_auth::ErrorKind::InsufficientScope);
    assert_eq!(denied.required_scope(), Some("patient/*.s"));
    // A parameter FHIR gives a meaning, or one that reads as another name, is refused.
    for parameter in [
        "_id",
        "_type",
        "_has",
        "patient",
        "",
        "_",
        "_COUNT",
        "_get pages",
        "_include",
    ] {
        let built = SmartAuthLayer::builder("https://auth.example.org")
            .audience("https://fhir.example.org")
            .served_at_path("/")
            .enforce_scopes(ScopeEnforcement::new().handler_checks_paging_links(parameter))
            .build();
        assert!(
            matches!(
                built,
                Err(smart_auth::ConfigError::InvalidPagingParameter { .. })
            ),
            "{parameter:?}"
        );
    }
}

/// Under `patient/` scopes a conditional write of any type must pin the patient in
/// context in its criteria (`patient` naming it on the types whose `patient` names a
/// Patient, `_id` for Patient): the server acts on whatever its search finds, in every
/// patient's data.
#[tokio::test]
async fn patient_scoped_conditional_writes_pin_the_patient() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let claims = [
        (
            "scope",
            json!(
                "patient/Observation.cruds patient/Medication.cruds patient/AdverseEvent.cruds \
                 patient/Task.cruds patient/DeviceUseStatement.cruds patient/ResearchSubject.cruds \
                 patient/Device.cruds"
            ),
        ),
        ("patient", json!("123")),
    ];
    for (method, path, if_none_exist) in [
        ("DELETE", "/fhir/Observation?patient=123&code=x", None),
        ("PUT", "/fhir/Observation?patient=Patient/123&code=x", None),
        (
            "PATCH",
            "/fhir/Observation?code=x&patient=Patient%2F123",
            None,
        ),
        ("POST", "/fhir/Observation", Some("patient=123&code=x")),
        (
            "DELETE",
            "/fhir/Observation?patient:Patient=123&code=x",
            None,
        ),
        ("DELETE", "/fhir/Task?patient=123&code=x", None),
        (
            "DELETE",
            "/fhir/DeviceUseStatement?patient=Patient/123",
            None,
        ),
        (
            "DELETE",
            "/fhir/DeviceUseStatement?patient:Patient=123",
            None,
        ),
        ("DELETE", "/fhir/ResearchSubject?patient=123&status=x", None),
    ] {
        let headers: Vec<(&str, &str)> = if_none_exist
            .map(|criteria| ("If-None-Exist", criteria))
            .into_iter()
            .collect();
        let answer = app.call_with_headers(method, path, &claims, &headers).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}: {answer:?}");
    }
    for (method, path, if_none_exist) in [
        ("DELETE", "/fhir/Observation?code=x", None),
        ("PUT", "/fhir/Observation?identifier=sys%7C1", None),
        (
            "DELETE",
            "/fhir/Observation?patient=123&code=x&patient=",
            None,
        ),
        ("DELETE", "/fhir/Observation?PATIENT=123&code=x", None),
        (
            "DELETE",
            "/fhir/Observation?patient=123&patient:missing=true",
            None,
        ),
        (
            "DELETE",
            "/fhir/Observation?patient=123;code=x&patient=",
            None,
        ),
        // `subject` may name a Group, Device or Location with the same id.
        ("PUT", "/fhir/Observation?subject=Patient/123&code=x", None),
        ("DELETE", "/fhir/Observation?subject=123&code=x", None),
        // A type without a `patient` parameter: a lenient server ignores it.
        ("DELETE", "/fhir/Medication?patient=123&code=x", None),
        (
            "DELETE",
            "/fhir/AdverseEvent?patient=123&seriousness=x",
            None,
        ),
        ("DELETE", "/fhir/ResearchSubject?patient=456&status=x", None),
        // R5 removed Device's `patient` (an R5 server that ignores unknown parameters
        // would act on every device), and this crate does not know the server's version.
        ("DELETE", "/fhir/Device?patient=123", None),
        ("PUT", "/fhir/Device?patient=Patient/123&type=x", None),
        // DeviceUseStatement's `patient` may name a Group: only `Patient/123` pins.
        (
            "DELETE",
            "/fhir/DeviceUseStatement?patient=123&device=x",
            None,
        ),
        // A `?` in the criteria: servers read them as written (Microsoft), after the `?`
        // (HAPI) or before it (IBM); the pin must hold in each (FHIR allows no `[type]?`).
        (
            "POST",
            "/fhir/Observation",
            Some("identifier=a?patient=123"),
        ),
        (
            "POST",
            "/fhir/Observation",
            Some("Observation?patient=Patient/123"),
        ),
        ("POST", "/fhir/Observation", Some("?patient=123&code=x")),
        (
            "POST",
            "/fhir/Observation",
            Some("code=x&code:not=z?&patient=123"),
        ),
        ("POST", "/fhir/Observation", Some("code=x")),
        (
            "POST",
            "/fhir/Observation",
            Some("Observation?identifier=sys|1"),
        ),
    ] {
        let headers: Vec<(&str, &str)> = if_none_exist
            .map(|criteria| ("If-None-Exist", criteria))
            .into_iter()
            .collect();
        let answer = app.call_with_headers(method, path, &claims, &headers).await;
        app.assert_refused(&answer, None, &format!("{method} {path} {if_none_exist:?}"));
    }
    // The header spelt with `_` (a server that folds it into `-` reads it as the same):
    // its criteria must pin the patient too, and two spellings are two headers.
    for name in ["If_None_Exist", "if_none-exist"] {
        let headers = [(name, "patient=456&code=x")];
        let answer = app
            .call_with_headers("POST", "/fhir/Observation", &claims, &headers)
            .await;
        app.assert_refused(&answer, None, name);
        let headers = [(name, "patient=123&code=x")];
        let answer = app
            .call_with_headers("POST", "/fhir/Observation", &claims, &headers)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {answer:?}");
        let headers = [
            (name, "patient=123&code=x"),
            ("If-None-Exist", "patient=123"),
        ];
        let answer = app
            .call_with_headers("POST", "/fhir/Observation", &claims, &headers)
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}: {answer:?}");
    }
    // A `#` ends the criteria for a URI parser, not for others: refused.
    let headers = [("If-None-Exist", "code=x#&patient=123")];
    let answer = app
        .call_with_headers("POST", "/fhir/Observation", &claims, &headers)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{answer:?}");
    // `user/` and `system/` scopes are not bound to a patient.
    let answer = app
        .call(
            "DELETE",
            "/fhir/Observation?code=x",
            &[("scope", json!("user/Observation.ds"))],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

/// A conditional create's criteria keep a granular filter only if every way a server reads
/// them keeps it: as written, after a `?` and before it.
#[tokio::test]
async fn conditional_create_criteria_keep_a_filter_in_every_reading() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let claims = [(
        "scope",
        json!(format!(
            "user/Observation.c user/Observation.s?category={LAB_ENCODED}"
        )),
    )];
    let create = |criteria: String| {
        let app = &app;
        let claims = &claims;
        async move {
            app.call_with_headers(
                "POST",
                "/fhir/Observation",
                claims,
                &[("If-None-Exist", criteria.as_str())],
            )
            .await
        }
    };
    let answer = create(format!("category={LAB_ENCODED}&code=x")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    for criteria in [
        format!("x-y?category={LAB_ENCODED}&code=x"),
        format!("Observation?category={LAB_ENCODED}&code=x"),
        format!("code=x?&category={LAB_ENCODED}"),
    ] {
        let answer = create(criteria.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{criteria}: {answer:?}"
        );
    }
}

/// HAPI FHIR's cascading delete (`_cascade=delete`, or the header `X-Cascade: delete`)
/// deletes every resource that refers to the one deleted, of any type and any patient: it
/// needs a whole-type `d` on every type from `user/` or `system/` scopes, however the
/// parameter is spelled, with any value or none, on an instance or a conditional delete,
/// through a method override and in a bundle entry. A plain delete needs `d` on its type.
#[tokio::test]
async fn a_cascading_delete_needs_delete_on_every_type() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let one_type = [("scope", json!("system/Patient.rds"))];
    let every_type = [("scope", json!("system/*.rds"))];
    let in_context = |scope: &str| [("scope", json!(scope)), ("patient", json!("123"))];
    for path in [
        "/fhir/Patient/123?_cascade=delete",
        "/fhir/Patient/123?_CASCADE=delete",
        "/fhir/Patient/123?%5Fcascade=delete",
        "/fhir/Patient/123?_cascade",
        "/fhir/Patient/123?_cascade=",
        "/fhir/Patient/123?_cascade=none",
        "/fhir/Patient/123?a=b;_cascade=delete",
        "/fhir/Patient/123?+_cascade+=delete",
        "/fhir/Patient/123?_cascade[]=delete",
        "/fhir/Patient/123?_cascade%00=delete",
        // (A name that does not decode may be anything, `_expunge` too, which no scope
        // allows: `an_expunging_delete_is_never_allowed`.)
        "/fhir/Patient?_id=123&_cascade=delete",
    ] {
        let answer = app.call("DELETE", path, &one_type).await;
        app.assert_denied(&answer, "system/*.d", path);
        let answer = app.call("DELETE", path, &every_type).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
        // `patient/` scopes never allow it: it reaches other patients' data.
        let answer = app.call("DELETE", path, &in_context("patient/*.rds")).await;
        app.assert_refused(&answer, None, path);
        let answer = app
            .call("DELETE", path, &in_context("patient/*.rds user/*.rds"))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    // The header, whatever its value, spelt with `-` or `_`; on a delete only.
    for (name, value) in [
        ("X-Cascade", "delete"),
        ("X-Cascade", "DELETE"),
        ("X-Cascade", ""),
        ("X-Cascade", "none"),
        ("X_Cascade", "delete"),
        ("x_cascade", ""),
    ] {
        let headers = [(name, value)];
        let answer = app
            .call_with_headers("DELETE", "/fhir/Patient/123", &one_type, &headers)
            .await;
        app.assert_denied(&answer, "system/*.d", value);
        let answer = app
            .call_with_headers("DELETE", "/fhir/Patient/123", &every_type, &headers)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{value}: {answer:?}");
        let answer = app
            .call_with_headers("GET", "/fhir/Patient/123", &one_type, &headers)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{value}: {answer:?}");
    }
    // A delete named by a method override cascades as one.
    let answer = app
        .call_with_headers(
            "GET",
            "/fhir/Patient/123?_cascade=delete",
            &one_type,
            &[("X-HTTP-Method-Override", "DELETE")],
        )
        .await;
    app.assert_denied(&answer, "system/*.d", "override");
    let answer = app
        .call_with_headers(
            "GET",
            "/fhir/Patient/123",
            &one_type,
            &[
                ("X-HTTP-Method-Override", "DELETE"),
                ("X-Cascade", "delete"),
            ],
        )
        .await;
    app.assert_denied(&answer, "system/*.d", "override and header");
    let answer = app
        .call_with_headers(
            "GET",
            "/fhir/Patient/123?_method=DELETE",
            &one_type,
            &[("X-Cascade", "delete")],
        )
        .await;
    app.assert_denied(&answer, "system/*.d", "_method and header");
    // Other parameters are no cascade; other methods ignore the parameter.
    for (method, path) in [
        ("DELETE", "/fhir/Patient/123"),
        ("DELETE", "/fhir/Patient/123?_cascades=x"),
        ("DELETE", "/fhir/Patient?_id=123"),
        ("GET", "/fhir/Patient/123?_cascade=delete"),
    ] {
        let answer = app.call(method, path, &one_type).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}: {answer:?}");
    }
    // A bundle entry's URL.
    let claims = smart_auth::testing::ClaimsBuilder::new()
        .scope("system/Patient.rds")
        .build();
    let enforcement = ScopeEnforcement::new();
    let denied = enforcement
        .check_bundle_entry(&claims, "DELETE", "Patient/123?_cascade=delete")
        .unwrap_err();
    assert_eq!(denied.required_scope(), Some("system/*.d"));
    assert!(
        enforcement
            .check_bundle_entry(&claims, "DELETE", "Patient/123")
            .is_ok()
    );
}

/// HAPI FHIR's `_expunge` turns a delete into a delete-expunge, which purges every
/// version of what it deletes: no scope allows it, however the parameter is spelled, with
/// any value or none, on an instance or a conditional delete, through a method override
/// and in a bundle entry. Other methods ignore it, and a plain delete still passes.
#[tokio::test]
async fn an_expunging_delete_is_never_allowed() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let every_type = [("scope", json!("system/*.cruds"))];
    for path in [
        "/fhir/Observation?_expunge=true",
        "/fhir/Observation?code=x&_expunge=true",
        "/fhir/Observation/1?_expunge=true",
        "/fhir/Observation/1?_EXPUNGE=true",
        "/fhir/Observation/1?%5Fexpunge=true",
        "/fhir/Observation/1?_expunge",
        "/fhir/Observation/1?_expunge=false",
        "/fhir/Observation/1?a=b;_expunge=true",
        "/fhir/Observation/1?+_expunge+=true",
        // A name that does not decode may be anything.
        "/fhir/Observation/1?_exp%ZZunge=true",
        "/fhir/Observation/1?_cas%ZZcade=delete",
    ] {
        let answer = app.call("DELETE", path, &every_type).await;
        app.assert_refused(&answer, None, path);
    }
    // A delete named by `_method`, and an expunge named by a path-override header.
    let answer = app
        .call(
            "GET",
            "/fhir/Observation/1?_method=DELETE&_expunge=true",
            &every_type,
        )
        .await;
    app.assert_refused(&answer, None, "_method");
    let answer = app
        .call_with_headers(
            "DELETE",
            "/fhir/Observation/1",
            &every_type,
            &[("X-Original-URL", "/fhir/Observation/1?_expunge=true")],
        )
        .await;
    app.assert_refused(&answer, None, "path override");
    let answer = app
        .call_with_headers(
            "POST",
            "/fhir/Observation?_expunge=true",
            &every_type,
            &[("X-HTTP-Method-Override", "DELETE")],
        )
        .await;
    app.assert_refused(&answer, None, "override");
    for (method, path) in [
        ("DELETE", "/fhir/Observation/1"),
        ("DELETE", "/fhir/Observation/1?_expunged=true"),
        ("GET", "/fhir/Observation/1?_expunge=true"),
        ("GET", "/fhir/Observation?_expunge=true"),
    ] {
        let answer = app.call(method, path, &every_type).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}: {answer:?}");
    }
    let claims = smart_auth::testing::ClaimsBuilder::new()
        .scope("system/*.cruds")
        .build();
    let enforcement = ScopeEnforcement::new();
    let denied = enforcement
        .check_bundle_entry(&claims, "DELETE", "Observation?_expunge=true")
        .unwrap_err();
    assert_eq!(denied.required_scope(), None);
    assert!(
        enforcement
            .check_bundle_entry(&claims, "DELETE", "Observation/1")
            .is_ok()
    );
}

/// A token usable at several FHIR servers (SMART 2.2, `authorization_details`, RFC 9396)
/// grants this server what its entry says: the entry naming this server's base replaces
/// the token's scope and patient, through the layer and its enforcement. Before, the
/// token's wider scope and another server's patient applied here.
#[tokio::test]
async fn a_grant_for_this_server_narrows_the_token() {
    let app = scoped_app(ScopeEnforcement::new()).await;
    let here = app.issuer.audience().to_owned();
    let claims = |entries: Value| {
        [
            ("scope", json!("patient/*.rs")),
            ("patient", json!("r4-123")),
            ("authorization_details", entries),
        ]
    };
    let narrowed = claims(json!([
        {"type": "smart_on_fhir", "locations": ["https://other.example/fhir"], "scope": "patient/*.cruds"},
        {"type": "smart_on_fhir", "locations": [here], "scope": "patient/Patient.rs", "patient": "r2-456"},
    ]));
    let answer = app.call("GET", "/fhir/Patient/r2-456", &narrowed).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    for path in ["/fhir/Observation?patient=r2-456", "/fhir/Patient/r4-123"] {
        let answer = app.call("GET", path, &narrowed).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}: {answer:?}");
    }
    // An entry for another server only: the token's own grant.
    let elsewhere = claims(json!([
        {"type": "smart_on_fhir", "locations": ["https://other.example/fhir"], "scope": "patient/Patient.rs"},
    ]));
    let answer = app
        .call("GET", "/fhir/Observation?patient=r4-123", &elsewhere)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // Two grants for this server: which would hold? The token is refused.
    let twice = claims(json!([
        {"type": "smart_on_fhir", "locations": [here], "scope": "patient/Patient.rs"},
        {"type": "smart_on_fhir", "locations": [here], "scope": "patient/*.rs"},
    ]));
    let answer = app.call("GET", "/fhir/Patient/r4-123", &twice).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
}

/// HAPI FHIR applies a batch or transaction's `_cascade` and `X-Cascade` to each of its
/// delete entries, which a handler checking the entries one by one does not see: such a
/// bundle needs `d` on every type from `user/` or `system/` scopes before it reaches the
/// handler; a bundle without them is the handler's to check, as before.
#[tokio::test]
async fn a_bundle_asking_to_cascade_needs_delete_on_every_type() {
    let app = scoped_app(ScopeEnforcement::new().handler_checks_bundle_entries()).await;
    const BUNDLE: &str = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/123"}}]}"#;
    let json = ("Content-Type", "application/fhir+json");
    let one_type = [("scope", json!("system/Patient.d"))];
    let every_type = [("scope", json!("system/*.d"))];
    let in_context = [
        ("scope", json!("patient/*.cruds")),
        ("patient", json!("123")),
    ];
    for (path, cascade_header) in [
        ("/fhir", Some(("X-Cascade", "delete"))),
        ("/fhir", Some(("X-Cascade", ""))),
        ("/fhir", Some(("X_Cascade", "delete"))),
        ("/fhir?_cascade=delete", None),
        ("/fhir?_CASCADE=delete", None),
    ] {
        let mut headers = vec![json];
        headers.extend(cascade_header);
        let what = format!("{path} {cascade_header:?}");
        let answer = app
            .call_with_body("POST", path, &one_type, &headers, Some(BUNDLE))
            .await;
        app.assert_denied(&answer, "system/*.d", &what);
        let answer = app
            .call_with_body("POST", path, &in_context, &headers, Some(BUNDLE))
            .await;
        app.assert_refused(&answer, None, &what);
        let answer = app
            .call_with_body("POST", path, &every_type, &headers, Some(BUNDLE))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{what}: {answer:?}");
    }
    // Without them, the bundle is the handler's.
    let answer = app
        .call_with_body("POST", "/fhir", &one_type, &[json], Some(BUNDLE))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}
