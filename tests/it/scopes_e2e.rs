//! SMART scope enforcement through the layer, with real tokens.

use axum::Json;
use axum::Router;
use axum::routing::{any, get};
use reqwest::StatusCode;
use serde_json::{Value, json};
use smart_auth::scopes::{Interaction, SearchConstraints};
use smart_auth::{
    AuthError, ErrorKind, ManualClock, ScopeEnforcement, SmartAuthLayer, SmartClaims, TokenVerifier,
};

use crate::support::{Answer, issuer, serve};

struct ScopedApp {
    url: String,
    issuer: smart_auth::testing::TestIssuer,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<()>,
}

/// Any FHIR request: reports the search constraints the handler would apply.
async fn fhir(claims: SmartClaims, uri: http::Uri) -> Json<Value> {
    let resource_type = uri
        .path()
        .trim_start_matches("/fhir/")
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let constraints = match claims.scope_set().search_constraints(None, &resource_type) {
        SearchConstraints::Denied => json!("denied"),
        SearchConstraints::Unconstrained => json!("unconstrained"),
        SearchConstraints::AnyOf(sets) => json!(sets),
    };
    Json(json!({ "constraints": constraints }))
}

/// A handler that checks the scope itself.
async fn observation_count(claims: SmartClaims) -> Result<Json<Value>, AuthError> {
    claims.require(Interaction::SearchType, "Observation")?;
    Ok(Json(json!({ "count": 0 })))
}

async fn scoped_app() -> ScopedApp {
    scoped_app_with(ScopeEnforcement::new().allow_any_token_outside_base()).await
}

/// The app of [`scoped_app`], with this enforcement.
async fn scoped_app_with(enforcement: ScopeEnforcement) -> ScopedApp {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        // The handler-side checks live on a route outside the FHIR base.
        .served_at_path("/fhir")
        .enforce_scopes(enforcement)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/fhir", any(fhir))
        .route("/fhir/{*rest}", any(fhir))
        .route("/reports/observations", get(observation_count))
        .layer(layer);
    let (url, server) = serve(router).await;
    ScopedApp {
        url,
        issuer,
        http: crate::support::loopback_client(),
        _server: server,
    }
}

impl ScopedApp {
    async fn call(&self, method: &str, path: &str, scope: &str, extra: &[(&str, Value)]) -> Answer {
        let mut token = self.issuer.token().scope(scope);
        for (name, value) in extra {
            token = token.claim(name, value.clone());
        }
        let token = token.sign();
        let request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(token);
        let response = request.send().await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        Answer {
            status,
            challenge,
            content_type,
            retry_after,
            body,
        }
    }

    fn denied(&self, scope: &str) -> String {
        format!(
            "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\", scope=\"{scope}\"",
            self.issuer.audience()
        )
    }

    /// The challenge of a 403 that names no scope (no scope would allow the request).
    fn denied_without_hint(&self) -> String {
        format!(
            "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"the token's scopes do not allow this request\"",
            self.issuer.audience()
        )
    }

    /// The challenge of a 400 for a request that cannot be read one way only.
    fn malformed(&self) -> String {
        crate::support::malformed_request_challenge(self.issuer.audience())
    }
}

#[tokio::test]
async fn v2_system_scopes() {
    let app = scoped_app().await;
    let scope = "system/Patient.rs system/Observation.c";
    let allowed = [
        ("GET", "/fhir/Patient/1"),
        ("GET", "/fhir/Patient?name=x"),
        ("POST", "/fhir/Patient/_search"),
        ("GET", "/fhir/Patient/1/_history/2"),
        ("GET", "/fhir/Patient/_history"),
        ("POST", "/fhir/Observation"),
        // A system search limited to Patient.
        ("GET", "/fhir?_type=Patient"),
    ];
    for (method, path) in allowed {
        assert_eq!(
            app.call(method, path, scope, &[]).await.status,
            StatusCode::OK,
            "{method} {path}"
        );
    }
    let denied = [
        ("GET", "/fhir/Observation/1", "system/Observation.r"),
        ("GET", "/fhir/Observation", "system/Observation.s"),
        ("PUT", "/fhir/Patient/1", "system/Patient.u"),
        ("PATCH", "/fhir/Patient/1", "system/Patient.u"),
        ("DELETE", "/fhir/Patient/1", "system/Patient.d"),
        ("POST", "/fhir/Patient", "system/Patient.c"),
        ("GET", "/fhir/_history", "system/*.s"),
        (
            "GET",
            "/fhir?_type=Patient,Observation",
            "system/Observation.s",
        ),
        ("GET", "/fhir?name=x", "system/*.s"),
    ];
    for (method, path, hint) in denied {
        let answer = app.call(method, path, scope, &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(app.denied(hint).as_str()),
            "{method} {path}"
        );
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/fhir+json; charset=utf-8")
        );
        assert_eq!(answer.body["issue"][0]["code"], "forbidden");
    }
}

/// A patch answers with the patched resource (`Prefer: return=representation`, the default
/// of many servers) and a JSON Patch `test` reads any element: write does not imply read,
/// so a patch needs `r` as well as `u`, from one scope or two, v1 or v2, and the hint
/// names what is missing.
#[tokio::test]
async fn a_patch_needs_read_as_well_as_update() {
    let app = scoped_app().await;
    let prefer = [("Prefer", "return=representation")];
    for (scope, expected) in [
        ("system/Patient.u", Some("system/Patient.r")),
        ("system/Patient.cud", Some("system/Patient.r")),
        // Hints speak the token's scope version.
        ("system/Patient.write", Some("system/Patient.read")),
        ("system/Patient.r", Some("system/Patient.u")),
        (
            "system/Observation.ru",
            Some("system/Patient.u system/Patient.r"),
        ),
        ("system/Patient.ru", None),
        ("system/Patient.read system/Patient.write", None),
        ("system/Patient.r system/*.u", None),
        ("system/*.*", None),
    ] {
        for headers in [&[][..], &prefer[..]] {
            let (status, challenge) = app
                .call_with_headers("PATCH", "/fhir/Patient/1", scope, headers)
                .await;
            match expected {
                Some(hint) => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{scope}");
                    assert_eq!(challenge, Some(app.denied(hint)), "{scope}");
                }
                None => assert_eq!((status, challenge), (StatusCode::OK, None), "{scope}"),
            }
        }
        // An update sends the whole resource and reads nothing it did not send.
        let update = app.call("PUT", "/fhir/Patient/1", scope, &[]).await.status;
        let updates = scope.contains('u') || scope.contains("write") || scope.contains("*.*");
        assert_eq!(
            update == StatusCode::OK,
            updates && !scope.contains("Observation"),
            "{scope}"
        );
    }
}

/// A path-override header (`X-Original-URL`, `X-Rewrite-URL`, in either spelling: CGI and
/// PHP read `_` as `-`) names a second request, which a service behind that honours would
/// serve: it needs its scopes too, the request's own path passes unchanged, and anything
/// but a path is refused. Method-override headers spelt with `_` count as well.
#[tokio::test]
async fn path_override_headers_need_the_scopes_of_the_path_they_name() {
    let app = scoped_app().await;
    let scope = "system/Patient.rs";
    for name in [
        "X-Original-URL",
        "x-rewrite-url",
        "x_original_url",
        "X_Rewrite_URL",
    ] {
        for (path, named, expected) in [
            (
                "/fhir/Patient/1",
                "/fhir/Observation/1",
                Some("system/Observation.r"),
            ),
            (
                "/fhir/Patient/1",
                "/fhir/Observation?code=x",
                Some("system/Observation.s"),
            ),
            (
                "/fhir/Patient",
                "/fhir/Patient?_include=Patient:organization:Organization",
                Some("system/Organization.r"),
            ),
            // Outside the base, where any token passes here: the named path does not.
            (
                "/other",
                "/fhir/Observation/1",
                Some("system/Observation.r"),
            ),
            // The SMART configuration, which any token reads, is no FHIR interaction once
            // it names another path: refused, with no scope to hint.
            (
                "/fhir/.well-known/smart-configuration",
                "/fhir/Observation/1",
                Some(""),
            ),
            ("/fhir/Patient/1", "/fhir/Patient/1", None),
            // Azure App Service sets the decoded target on every request: the same one.
            (
                "/fhir/Patient?name=J%20X%7C1",
                "/fhir/Patient?name=J X|1",
                None,
            ),
            ("/fhir/%50atient/1", "/fhir/Patient/1", None),
            // Escaped delimiters hide parameters from the request line's query: a service
            // that reads the header's query reads them, so it is another target.
            (
                "/fhir/Patient?name=x%26_include%3DPatient:organization:Organization",
                "/fhir/Patient?name=x&_include=Patient:organization:Organization",
                Some("system/Organization.r"),
            ),
            (
                "/fhir/Patient?name=x%3B_revinclude%3DObservation:subject",
                "/fhir/Patient?name=x;_revinclude=Observation:subject",
                Some("system/Observation.s"),
            ),
            // A form decoder reads `+` as a space (a name trimmed to `_include`) and `%2B`
            // as a plus.
            (
                "/fhir/Patient?_include%2B=Patient:organization:Organization",
                "/fhir/Patient?_include+=Patient:organization:Organization",
                Some("system/Organization.r"),
            ),
            ("/fhir/Patient?name=J+X", "/fhir/Patient?name=J%20X", None),
            ("/fhir/Patient/1", "/fhir/Patient/2", None),
            ("/fhir/Patient/1", "/fhir/Patient?name=x", None),
        ] {
            let (status, challenge) = app
                .call_with_headers("GET", path, scope, &[(name, named)])
                .await;
            match expected {
                Some(hint) => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{name} {path} {named}");
                    let refusal = if hint.is_empty() {
                        app.denied_without_hint()
                    } else {
                        app.denied(hint)
                    };
                    assert_eq!(challenge, Some(refusal), "{name} {path} {named}");
                }
                None => assert_eq!(
                    (status, challenge),
                    (StatusCode::OK, None),
                    "{name} {path} {named}"
                ),
            }
        }
        // The named target's query is read as the request line's: a `_method` in it names
        // a second method, an `access_token` a second token (RFC 6750 section 2): both are
        // refused whatever the scopes, in every spelling a lenient server reads.
        for named in [
            "/fhir/Patient/1?_method=DELETE",
            "/fhir/Patient/1?%5Fmethod=DELETE",
            "/fhir/Patient/1?a=1;_METHOD=DELETE",
            "/fhir/Patient/2?access_token=abc",
            "/fhir/Patient/2?ACCESS_TOKEN=abc",
            "/fhir/Patient/2?x=1&access%5Ftoken=abc",
            // A `#` ends the query for a URI parser and not for others.
            "/fhir/Patient/1#x",
            "/fhir/Patient?name=x#&_include=Patient:organization",
        ] {
            let (status, challenge) = app
                .call_with_headers("GET", "/fhir/Patient/1", "system/*.cruds", &[(name, named)])
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {named:?}");
            assert_eq!(challenge, Some(app.malformed()), "{name} {named:?}");
        }
        // No path: refused whatever the scopes.
        for named in ["http://h/fhir/Patient/1", "fhir/Patient/1", ""] {
            let (status, challenge) = app
                .call_with_headers("GET", "/fhir/Patient/1", "system/*.cruds", &[(name, named)])
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {named:?}");
            assert_eq!(challenge, Some(app.malformed()), "{name} {named:?}");
        }
        // A path and a method named both: refused.
        let (status, _) = app
            .call_with_headers(
                "GET",
                "/fhir/Patient/1",
                "system/*.cruds",
                &[(name, "/fhir/Patient/2"), ("X-HTTP-Method-Override", "GET")],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        // Another target is read up to 8 KiB (its query several times); the request's own,
        // however long, is not read again.
        for (length, status) in [
            (8 * 1024, StatusCode::OK),
            (8 * 1024 + 1, StatusCode::BAD_REQUEST),
        ] {
            let named = format!("/fhir/Patient?name={}", "x".repeat(length - 19));
            assert_eq!(named.len(), length);
            let (got, _) = app
                .call_with_headers(
                    "GET",
                    "/fhir/Patient/1",
                    "system/*.cruds",
                    &[(name, &named)],
                )
                .await;
            assert_eq!(got, status, "{name} {length}");
            let (got, _) = app
                .call_with_headers("GET", &named, "system/*.cruds", &[(name, &named)])
                .await;
            assert_eq!(got, StatusCode::OK, "{name} {length}, the same target");
        }
    }
    for name in [
        "x_http_method_override",
        "X_HTTP_Method",
        "x_method_override",
    ] {
        let (status, challenge) = app
            .call_with_headers("GET", "/fhir/Patient/1", scope, &[(name, "DELETE")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}");
        assert_eq!(challenge, Some(app.denied("system/Patient.d")), "{name}");
    }
}

/// The 403's `scope` names a scope for each unmet requirement (RFC 6750 section 3: the
/// scope the request needs), in the order the request needs them, each once, at most
/// eight.
#[tokio::test]
async fn the_hint_names_every_missing_scope_up_to_eight() {
    let app = scoped_app().await;
    let types = [
        "Provenance",
        "AuditEvent",
        "Flag",
        "Condition",
        "Encounter",
        "Group",
        "List",
        "Basic",
        "Device",
        "Media",
    ];
    let revinclude: Vec<String> = types.iter().map(|t| format!("{t}:subject")).collect();
    let path = format!("/fhir/Observation?_revinclude={}", revinclude.join(","));
    let (status, challenge) = app
        .call_with_headers("GET", &path, "system/Patient.rs", &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let named: Vec<String> = std::iter::once("system/Observation.s".to_owned())
        .chain(types.iter().take(7).map(|t| format!("system/{t}.s")))
        .collect();
    assert_eq!(challenge, Some(app.denied(&named.join(" "))));
    // Repeats are named once.
    let (_, challenge) = app
        .call_with_headers(
            "GET",
            "/fhir/Observation?_revinclude=Flag:subject,Flag:patient",
            "system/Observation.rs",
            &[],
        )
        .await;
    assert_eq!(challenge, Some(app.denied("system/Flag.s")));
}

#[tokio::test]
async fn v1_scopes_mean_the_same_as_v2() {
    let app = scoped_app().await;
    for scope in ["system/Patient.read", "system/Patient.rs"] {
        assert_eq!(
            app.call("GET", "/fhir/Patient/1", scope, &[]).await.status,
            StatusCode::OK,
            "{scope}"
        );
        assert_eq!(
            app.call("GET", "/fhir/Patient", scope, &[]).await.status,
            StatusCode::OK,
            "{scope}"
        );
        assert_eq!(
            app.call("POST", "/fhir/Patient", scope, &[]).await.status,
            StatusCode::FORBIDDEN,
            "{scope}"
        );
    }
    for scope in ["system/Patient.write", "system/Patient.cud"] {
        assert_eq!(
            app.call("POST", "/fhir/Patient", scope, &[]).await.status,
            StatusCode::OK,
            "{scope}"
        );
        assert_eq!(
            app.call("DELETE", "/fhir/Patient/1", scope, &[])
                .await
                .status,
            StatusCode::OK,
            "{scope}"
        );
        // Write never implies read.
        assert_eq!(
            app.call("GET", "/fhir/Patient/1", scope, &[]).await.status,
            StatusCode::FORBIDDEN,
            "{scope}"
        );
    }
    for scope in ["system/*.*", "system/*.cruds"] {
        assert_eq!(
            app.call("DELETE", "/fhir/Encounter/1", scope, &[])
                .await
                .status,
            StatusCode::OK,
            "{scope}"
        );
    }
}

#[tokio::test]
async fn patient_scopes_need_a_patient_in_context() {
    let app = scoped_app().await;
    let without = app
        .call("GET", "/fhir/Observation/1", "patient/Observation.rs", &[])
        .await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    assert_eq!(
        without.challenge.as_deref(),
        Some(app.denied("user/Observation.r").as_str())
    );
    let with = app
        .call(
            "GET",
            "/fhir/Observation/1",
            "patient/Observation.rs",
            &[("patient", json!("123"))],
        )
        .await;
    assert_eq!(with.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_scopes_grant_nothing_but_do_not_spoil_the_token() {
    let app = scoped_app().await;
    let scope = "system/Patient.dus system/Observation.rs launch __custom.scope";
    assert_eq!(
        app.call("GET", "/fhir/Patient/1", scope, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("GET", "/fhir/Observation/1", scope, &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn granular_scopes_pass_searches_that_carry_their_constraints() {
    let app = scoped_app().await;
    let lab = "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory";
    // The search applies the filter itself: it passes, and the handler sees the filter.
    let answer = app
        .call(
            "GET",
            "/fhir/Observation?code=x&category=http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory",
            lab,
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body["constraints"],
        json!([[[
            "category",
            "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
        ]]])
    );
    // A search that does not apply it is refused: a granular scope never grants the whole
    // type (see scopes_hardening for the full table).
    let answer = app.call("GET", "/fhir/Observation?code=x", lab, &[]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(app.denied("system/Observation.s").as_str())
    );
    let both = format!("{lab} system/Observation.s");
    let answer = app.call("GET", "/fhir/Observation", &both, &[]).await;
    assert_eq!(answer.body["constraints"], "unconstrained");
}

/// A filter on every type (`*`) counts for a search only with parameters every type has
/// (`_tag`, `_security`, ...): `Patient` has no `category`, and a lenient server ignores it
/// and answers every Patient. The layer knows no type's own parameters, so such a filter
/// counts on no type (Observation included); the same filter on a named type does.
#[tokio::test]
async fn a_filter_on_every_type_counts_only_with_parameters_every_type_has() {
    let app = scoped_app().await;
    let lab = "http://terminology.hl7.org/CodeSystem/observation-category%7Claboratory";
    let scope = format!("system/*.rs?category={lab}");
    for (path, expected) in [
        (
            format!("/fhir/Patient?category={lab}"),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/fhir/Observation?category={lab}"),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/fhir/Patient?category={lab}&name=x"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, challenge) = app.call_with_headers("GET", &path, &scope, &[]).await;
        assert_eq!(status, expected, "{path}");
        let searched = path.trim_start_matches("/fhir/").split('?').next().unwrap();
        assert_eq!(
            challenge,
            Some(app.denied(&format!("system/{searched}.s"))),
            "{path}"
        );
    }
    // The same filter named for the type counts there.
    let named = format!("system/Observation.rs?category={lab}");
    let path = format!("/fhir/Observation?category={lab}");
    let (status, _) = app.call_with_headers("GET", &path, &named, &[]).await;
    assert_eq!(status, StatusCode::OK);
    // Parameters of every resource, with or without a modifier.
    for (scope, query) in [
        ("system/*.rs?_tag=urn:x%7Cy", "_tag=urn:x%7Cy&name=x"),
        ("system/*.rs?_security:not=R", "_security:not=R"),
        ("system/*.rs?_tag=t&_profile=p", "_profile=p&_tag=t"),
    ] {
        for searched in ["Patient", "Observation"] {
            let path = format!("/fhir/{searched}?{query}");
            let (status, challenge) = app.call_with_headers("GET", &path, scope, &[]).await;
            assert_eq!(
                (status, challenge),
                (StatusCode::OK, None),
                "{scope} {path}"
            );
        }
    }
    // One parameter some types lack is enough to count for none.
    let mixed = "system/*.rs?_tag=t&status=final";
    let (status, _) = app
        .call_with_headers("GET", "/fhir/Patient?_tag=t&status=final", mixed, &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn operations_follow_the_policy() {
    let app = scoped_app().await;
    assert_eq!(
        app.call("GET", "/fhir/$export", "system/*.rs", &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(
            "GET",
            "/fhir/$export?_type=Patient",
            "system/Patient.read",
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    let narrow = app
        .call(
            "GET",
            "/fhir/$export?_type=Patient,Observation",
            "system/Patient.read",
            &[],
        )
        .await;
    assert_eq!(narrow.status, StatusCode::FORBIDDEN);
    // A v1 token is told the v1 scope it lacks.
    assert_eq!(
        narrow.challenge.as_deref(),
        Some(app.denied("system/Observation.read").as_str())
    );
    let group = app
        .call(
            "GET",
            "/fhir/Group/7/$export?_type=Patient",
            "system/Patient.rs",
            &[],
        )
        .await;
    assert_eq!(
        group.challenge.as_deref(),
        Some(app.denied("system/Group.r").as_str())
    );
    assert_eq!(
        app.call(
            "GET",
            "/fhir/Group/7/$export?_type=Patient",
            "system/Patient.rs system/Group.r",
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    // includeAssociatedData adds Provenance (or, for a custom value, every type).
    for (query, hint) in [
        (
            "_type=Patient&includeAssociatedData=LatestProvenanceResources",
            "system/Provenance.s",
        ),
        (
            "_type=Patient&includeAssociatedData=RelevantProvenanceResources",
            "system/Provenance.s",
        ),
        ("_type=Patient&includeAssociatedData=_myData", "system/*.s"),
        (
            "_type=Patient&includeAssociatedData=_x,LatestProvenanceResources",
            "system/*.s system/Provenance.s",
        ),
    ] {
        app.assert_export_refused(query, hint).await;
    }
    assert_eq!(
        app.call(
            "GET",
            "/fhir/$export?_type=Patient&includeAssociatedData=LatestProvenanceResources",
            "system/Patient.rs system/Provenance.rs",
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    // An empty `_type` entry may mean "no restriction" to a server, and a `;` separates
    // parameters for some servers only: the query is read both ways and every requirement
    // either reading gives is checked.
    for (query, hint) in [
        ("_type=Patient&_type=", "system/*.s"),
        ("_type=Patient,", "system/*.s"),
        ("_type=Patient,,Group", "system/*.s system/Group.s"),
        (
            "_type=Patient&x=1;_type=Observation",
            "system/Observation.s",
        ),
        // Split at `&` only, the `_type` value is no type name: only `*` scopes allow it.
        (
            "_type=Patient;includeAssociatedData=LatestProvenanceResources",
            "system/*.s system/Provenance.s",
        ),
        (
            "_type=Patient&x=1;includeAssociatedData=LatestProvenanceResources",
            "system/Provenance.s",
        ),
        // A server splitting at `&` only sees no `_type` here: every type.
        ("_since=2024-01-01T00:00:00Z;_type=Patient", "system/*.s"),
        (";_type=Patient", "system/*.s"),
        (
            "_type=Patient&_typeFilter=Patient?name=x;_has:Observation:patient:code=1",
            "system/Observation.s",
        ),
        (
            "_type=Patient&x=1;_typeFilter=Patient%3F_has%3AFlag%3Apatient%3Acode%3D1",
            "system/Flag.s",
        ),
    ] {
        app.assert_export_refused(query, hint).await;
    }
    // A `_typeFilter` only narrows its type, but what it searches in other types needs `s`
    // there (as a search's `_has` and chains do), in every spelling of the parameter.
    for (query, hint) in [
        (
            "_type=Patient&_typeFilter=Patient%3F_has%3AObservation%3Apatient%3Acode%3DHIV",
            "system/Observation.s",
        ),
        (
            "_type=Patient&%5FtypeFilter=Patient?_has:Condition:subject:code=1",
            "system/Condition.s",
        ),
        (
            "_type=Patient&_typeFilter=Patient%3Fgeneral-practitioner%3APractitioner.name%3Dx",
            "system/Practitioner.s",
        ),
        (
            "_type=Patient&_typeFilter=Patient%3Flink.name%3Dx",
            "system/*.s",
        ),
        (
            "_type=Patient&_typeFilter=Patient%3F_include%3DPatient%3Alink%3AOrganization",
            "system/Organization.r",
        ),
        // The comma-separated form: the second query is read too.
        (
            "_type=Patient&_typeFilter=Patient%3Fname%3Dx,Patient%3F%255Fhas%3AEncounter%3Apatient%3Aclass%3DIMP",
            "system/Encounter.s",
        ),
        (
            "_type=Patient&_typeFilter=Patient%3Factive%3Dtrue&_typeFilter=Patient%3F_has%3AFlag%3Apatient%3Acode%3D1",
            "system/Flag.s",
        ),
        // `_has` after a chain's `.`, and names in another case.
        (
            "_type=Patient&_typeFilter=Patient%3Flink:Patient._has:Group:member:_id%3D1",
            "system/Group.s",
        ),
        (
            "_type=Patient&_TYPEFILTER=Patient%3F_has%3AFlag%3Apatient%3Acode%3D1",
            "system/Flag.s",
        ),
        (
            "_type=Patient&_typeFilter=Patient%3Fname%3Dx,%20Patient%3F_has%3AFlag%3Apatient%3Acode%3D1",
            "system/Flag.s",
        ),
        (
            "_type=Patient&_typeFilter=Patient%3F_query%3Deverything",
            "system/*.s",
        ),
        (
            "_type=Patient&IncludeAssociatedData=LatestProvenanceResources",
            "system/Provenance.s",
        ),
        // A `_type` in another case: a server matching names exactly exports every type.
        ("_TYPE=Patient", "system/*.s"),
        ("_type=Patient&_Type=Group", "system/Group.s"),
    ] {
        app.assert_export_refused(query, hint).await;
    }
    // Filters on the exported types alone need nothing more, commas in values included.
    for query in [
        "_type=Observation&_typeFilter=Observation%3Fcode%3Dhttp://loinc.org%7C1-8,http://loinc.org%7C2-9",
        "_type=Patient&_typeFilter=Patient%3Factive%3Dtrue",
        "_type=Patient&_typeFilter=Patient%3Fbirthdate%3Dge2000%26gender%3Dfemale,Patient%3Fname%3Dx",
        "_type=Patient,Observation&_typeFilter=Observation%3Fcategory%3Dlaboratory%26patient%3D1",
    ] {
        let answer = app
            .call(
                "GET",
                &format!("/fhir/$export?{query}"),
                "system/Patient.rs system/Observation.rs",
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {answer:?}");
    }
    // Unknown operations are refused, without a scope hint.
    let unknown = app
        .call("POST", "/fhir/Patient/1/$everything", "system/*.cruds", &[])
        .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    assert!(!unknown.challenge.unwrap().contains("scope="));
}

#[tokio::test]
async fn batches_reach_the_handler_only_when_it_checks_entries() {
    // By default the layer cannot tell what a bundle's entries do: refused, no hint.
    let app = scoped_app().await;
    let answer = app.call("POST", "/fhir", "system/*.cruds", &[]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(!answer.challenge.unwrap().contains("scope="));
    let app = scoped_app_with(
        ScopeEnforcement::new()
            .allow_any_token_outside_base()
            .handler_checks_bundle_entries(),
    )
    .await;
    assert_eq!(
        app.call("POST", "/fhir", "system/Patient.r", &[])
            .await
            .status,
        StatusCode::OK
    );
    // Under the base but no FHIR interaction: refused.
    assert_eq!(
        app.call("GET", "/fhir/patient/1", "system/*.cruds", &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

/// With any token allowed outside the base, a path outside it that starts as a FHIR
/// interaction would is still refused: the base is wrong, or the path was stripped where
/// the layer cannot see (an axum `nest` without the crate's `axum` feature turns
/// `/fhir/Observation/1` into `/Observation/1`). Other paths outside the base pass.
#[tokio::test]
async fn fhir_shaped_paths_outside_the_base_are_refused() {
    let app = scoped_app().await;
    for (method, path) in [
        ("GET", "/Observation/1"),
        ("GET", "/Patient?name=x"),
        ("GET", "/metadata"),
        ("GET", "/_history"),
        ("GET", "/_search?_type=Patient"),
        ("GET", "/$export"),
        ("GET", "/Observation/$validate"),
        // Read as the router reads them: decoded segments, the root's own interactions.
        ("GET", "/%4Fbservation/1"),
        ("GET", "/%24export"),
        ("GET", "/metad%61ta"),
        ("GET", "/?_type=Observation"),
        ("POST", "/"),
        ("DELETE", "/Observation?code=x"),
    ] {
        let answer = app.call(method, path, "system/Patient.rs", &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        let challenge = answer.challenge.unwrap();
        assert!(
            challenge.contains("error=\"insufficient_scope\"") && !challenge.contains("scope=\""),
            "{path}: no scope would allow it: {challenge}"
        );
    }
    // Unreadable there too.
    let answer = app
        .call("GET", "//Observation/1", "system/Patient.rs", &[])
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.challenge, Some(app.malformed()));
    // Let through by the layer, to the router's fallback: no route there.
    for path in ["/other", "/observation/1", "/$export-poll-status?job=1"] {
        let answer = app.call("GET", path, "system/Patient.rs", &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        app.call("GET", "/reports/observations", "system/Observation.s", &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn handler_side_require_answers_like_the_layer() {
    let app = scoped_app().await;
    let answer = app
        .call("GET", "/reports/observations", "system/Patient.rs", &[])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.challenge.as_deref(),
        Some(app.denied("system/Observation.s").as_str())
    );
    assert_eq!(
        app.call("GET", "/reports/observations", "system/Observation.s", &[])
            .await
            .status,
        StatusCode::OK
    );
}

/// The realm comes with the claims, so it is the layer's own whether the token was just
/// verified or answered from the token cache (the third request on).
#[tokio::test]
async fn handler_side_require_uses_the_layer_realm_for_cached_tokens_too() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let layer = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .realm("My FHIR API")
        .build()
        .unwrap();
    let router = Router::new()
        .route("/reports/observations", get(observation_count))
        .layer(layer);
    let (url, _server) = serve(router).await;
    let http = crate::support::loopback_client();
    let token = issuer.token().scope("system/Patient.rs").sign();
    for request in 1..=4 {
        let response = http
            .get(format!("{url}/reports/observations"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "request {request}"
        );
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"My FHIR API\", error=\"insufficient_scope\", \
             error_description=\"the token's scopes do not allow this request\", \
             scope=\"system/Observation.s\"",
            "request {request}"
        );
    }
}

#[tokio::test]
async fn bundle_entries_are_checked_one_by_one() {
    let clock = ManualClock::new();
    let issuer = issuer(&clock).await;
    let verifier = TokenVerifier::builder(issuer.url())
        .audience(issuer.audience())
        .clock(clock)
        .build()
        .unwrap();
    let claims = verifier
        .verify(
            &issuer
                .token()
                .scope("system/Patient.rs system/Observation.c")
                .sign(),
        )
        .await
        .unwrap();
    let enforcement = ScopeEnforcement::new();
    assert!(
        enforcement
            .check_bundle_entry(&claims, "GET", "Patient/1")
            .is_ok()
    );
    assert!(
        enforcement
            .check_bundle_entry(&claims, "GET", "Patient?name=x")
            .is_ok()
    );
    assert!(
        enforcement
            .check_bundle_entry(&claims, "POST", "Observation")
            .is_ok()
    );
    let denied = enforcement
        .check_bundle_entry(&claims, "DELETE", "Patient/1")
        .unwrap_err();
    assert_eq!(denied.required_scope(), Some("system/Patient.d"));
    // A nested batch: no scope would allow it, so no hint.
    let denied = enforcement
        .check_bundle_entry(&claims, "POST", "")
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::InsufficientScope, "nested batch");
    assert_eq!(denied.required_scope(), None, "nested batch");
    let denied = enforcement
        .check_bundle_entry(&claims, "GET", "Observation/1")
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::InsufficientScope);
    assert_eq!(denied.required_scope(), Some("system/Observation.r"));
    // A conditional create entry (`ifNoneExist`) searches first: `c` alone is not enough.
    let denied = enforcement
        .check_conditional_create_entry(&claims, "POST", "Observation", "code=1")
        .unwrap_err();
    assert_eq!(denied.required_scope(), Some("system/Observation.s"));
    let both = verifier
        .verify(&issuer.token().scope("system/Observation.cs").sign())
        .await
        .unwrap();
    assert!(
        enforcement
            .check_conditional_create_entry(&both, "POST", "Observation", "code=1")
            .is_ok()
    );
    let denied = enforcement
        .check_conditional_create_entry(&both, "POST", "Patient", "name=x")
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::InsufficientScope);
    assert_eq!(
        denied.required_scope(),
        Some("system/Patient.c system/Patient.s")
    );
    // Its criteria search other types as a query does.
    let denied = enforcement
        .check_conditional_create_entry(&both, "POST", "Observation", "subject:Patient.name=x")
        .unwrap_err();
    assert_eq!(denied.required_scope(), Some("system/Patient.s"));
    // `ifNoneExist` belongs to a `POST`: with another method the server runs that method
    // (a conditional delete here), so it is refused, never checked as a create. A nested
    // batch is refused as `check_bundle_entry` refuses it.
    for method in ["DELETE", "PUT", "post", "GET"] {
        let refused = enforcement
            .check_conditional_create_entry(&both, method, "Observation?code=x", "code=1")
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::MalformedRequest, "{method}");
    }
    for url in ["", "/", "?x=1", "/?x=1"] {
        let refused = enforcement
            .check_conditional_create_entry(&both, "POST", url, "code=1")
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InsufficientScope, "{url:?}");
        assert_eq!(refused.required_scope(), None, "{url:?}");
    }
    // A `#` ends a query for a URI parser and not for others: refused in an entry's URL
    // and in its criteria.
    for (url, criteria) in [
        ("Observation?code=x#&category=y", None),
        ("Observation/1#x", None),
        ("Observation", Some("code=x#&patient=1")),
    ] {
        let refused = match criteria {
            None => enforcement.check_bundle_entry(&both, "GET", url),
            Some(criteria) => {
                enforcement.check_conditional_create_entry(&both, "POST", url, criteria)
            }
        }
        .unwrap_err();
        assert_eq!(
            refused.kind(),
            ErrorKind::MalformedRequest,
            "{url} {criteria:?}"
        );
    }
    // The criteria are read as written and after a `[type]?` prefix (servers drop what
    // precedes the `?`), as the `If-None-Exist` header's are.
    let in_context = verifier
        .verify(
            &issuer
                .token()
                .scope("patient/Observation.cs system/Patient.cs")
                .claim("patient", "123")
                .sign(),
        )
        .await
        .unwrap();
    for (url, criteria, allowed) in [
        ("Observation", "patient=123&code=x", true),
        // FHIR allows no `[type]?` prefix, and servers read one three ways: refused.
        ("Observation", "Observation?patient=123&code=x", false),
        ("Observation", "patient=456&code=x", false),
        ("Observation", "?patient=456&code=x", false),
        ("Observation", "Observation?patient=456&code=x", false),
        ("Observation", "x-y?subject=Patient/456", false),
    ] {
        let checked =
            enforcement.check_conditional_create_entry(&in_context, "POST", url, criteria);
        match checked {
            Ok(()) => assert!(allowed, "{url} {criteria}"),
            // Outside the patient's compartment the `patient/` scopes do not count: the
            // create needs `system/` ones (and the search it makes first).
            Err(denied) => {
                assert!(!allowed, "{url} {criteria}: {denied:?}");
                assert_eq!(denied.kind(), ErrorKind::InsufficientScope, "{criteria}");
                assert_eq!(
                    denied.required_scope(),
                    Some("system/Observation.c system/Observation.s"),
                    "{url} {criteria}"
                );
            }
        }
    }
    let patient_reader = verifier
        .verify(&issuer.token().scope("system/Patient.cs").sign())
        .await
        .unwrap();
    let denied = enforcement
        .check_conditional_create_entry(
            &patient_reader,
            "POST",
            "Patient",
            "Patient?_has:Observation:patient:code=x",
        )
        .unwrap_err();
    assert_eq!(denied.required_scope(), Some("system/Observation.s"));
    // So does a conditional update or delete entry's query.
    let writer = verifier
        .verify(&issuer.token().scope("system/Observation.uds").sign())
        .await
        .unwrap();
    assert!(
        enforcement
            .check_bundle_entry(&writer, "DELETE", "Observation?code=1")
            .is_ok()
    );
    for method in ["PUT", "DELETE"] {
        let denied = enforcement
            .check_bundle_entry(&writer, method, "Observation?_has:Group:member:_id=1")
            .unwrap_err();
        assert_eq!(denied.required_scope(), Some("system/Group.s"), "{method}");
    }
}

impl ScopedApp {
    /// Asserts that an export kick-off with this query, by a client holding only
    /// `system/Patient.rs`, is refused with 403 naming `hint`.
    async fn assert_export_refused(&self, query: &str, hint: &str) {
        let answer = self
            .call(
                "GET",
                &format!("/fhir/$export?{query}"),
                "system/Patient.rs",
                &[],
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{query}");
        assert_eq!(
            answer.challenge.as_deref(),
            Some(self.denied(hint).as_str()),
            "{query}"
        );
    }

    /// `call` with extra request headers.
    async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Option<String>) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(self.issuer.token().scope(scope).sign());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), challenge)
    }
}

/// A create with `If-None-Exist` answers whether a search matches (200 for a match, 201
/// for a new resource): it needs `s` on the type besides `c`, whatever the header's value
/// or the spelling of its name.
#[tokio::test]
async fn conditional_create_needs_search_too() {
    let app = scoped_app().await;
    let plain = app
        .call_with_headers("POST", "/fhir/Patient", "system/Patient.c", &[])
        .await;
    assert_eq!(plain, (StatusCode::OK, None));
    for (name, value) in [
        ("If-None-Exist", "identifier=http://h|1"),
        ("if-none-exist", ""),
        ("IF-NONE-EXIST", "name=x"),
    ] {
        let (status, challenge) = app
            .call_with_headers(
                "POST",
                "/fhir/Patient",
                "system/Patient.c",
                &[(name, value)],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert_eq!(
            challenge.as_deref(),
            Some(app.denied("system/Patient.s").as_str())
        );
        let (status, _) = app
            .call_with_headers(
                "POST",
                "/fhir/Patient",
                "system/Patient.cs",
                &[(name, value)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {value}");
    }
    // v1 `write` is `cud`: no search either.
    let (status, _) = app
        .call_with_headers(
            "POST",
            "/fhir/Patient",
            "system/Patient.write",
            &[("If-None-Exist", "name=x")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The header means nothing to other interactions.
    let (status, _) = app
        .call_with_headers(
            "PUT",
            "/fhir/Patient/1",
            "system/Patient.u",
            &[("If-None-Exist", "name=x")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// A conditional update, patch or delete searches with its query and a conditional create
/// with its `If-None-Exist` criteria: the other types they look into (chains, `_has`,
/// parameters of unknown reach) need `s` as a search's query does, whichever copy of the
/// header carries them.
#[tokio::test]
async fn conditional_writes_need_the_types_their_criteria_search() {
    let app = scoped_app().await;
    let chained = "subject:Patient.name=Smith";
    // (A patch reads as much as it writes: it needs `r` too.)
    for (method, letter) in [("DELETE", "d"), ("PUT", "u"), ("PATCH", "ru")] {
        let path = format!("/fhir/Observation?{chained}");
        let own = format!("system/Observation.{letter}s");
        let (status, challenge) = app.call_with_headers(method, &path, &own, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
        assert_eq!(
            challenge.as_deref(),
            Some(app.denied("system/Patient.s").as_str()),
            "{method}"
        );
        let both = format!("{own} system/Patient.s");
        let answer = app.call_with_headers(method, &path, &both, &[]).await;
        assert_eq!(answer, (StatusCode::OK, None), "{method}");
        // `_has` after a chain's `.`, and a named query.
        for (query, hint) in [
            ("subject:Patient._has:Group:member:_id=1", "system/Group.s"),
            ("_query=everything", "system/*.s"),
        ] {
            let path = format!("/fhir/Observation?{query}");
            let (status, challenge) = app.call_with_headers(method, &path, &both, &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {query}");
            assert_eq!(
                challenge.as_deref(),
                Some(app.denied(hint).as_str()),
                "{method} {query}"
            );
        }
    }
    let create = |criteria: &'static [&'static str], scope: &'static str| {
        let headers: Vec<(&str, &str)> = criteria
            .iter()
            .map(|value| ("If-None-Exist", *value))
            .collect();
        let app = &app;
        async move {
            app.call_with_headers("POST", "/fhir/Observation", scope, &headers)
                .await
        }
    };
    for criteria in [
        &["subject:Patient.name=Smith"][..],
        &["Observation?subject:Patient.name=Smith"],
        &["SUBJECT:Patient.name=Smith"],
    ] {
        let (status, challenge) = create(criteria, "system/Observation.cs").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{criteria:?}");
        assert_eq!(
            challenge.as_deref(),
            Some(app.denied("system/Patient.s").as_str()),
            "{criteria:?}"
        );
        let answer = create(criteria, "system/Observation.cs system/Patient.s").await;
        assert_eq!(answer, (StatusCode::OK, None), "{criteria:?}");
    }
    // Two `If-None-Exist` headers: servers take the first or join them, FHIR defines one
    // value; refused whatever the scopes.
    for scope in [
        "system/Observation.cs",
        "system/Observation.cs system/Patient.s",
    ] {
        let (status, challenge) = create(&["code=1", "subject:Patient.name=Smith"], scope).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{scope}");
        assert_eq!(challenge.as_deref(), Some(app.malformed().as_str()));
    }
    let (status, _) = create(
        &["code=1&_has:Group:member:_id=1"],
        "system/Observation.cs system/Patient.s",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Criteria that stay in the type need nothing more, a `?` in a value included.
    for criteria in [
        &["identifier=http://h|1"][..],
        &["Observation?identifier=http://h.org/ids?v.2|1"],
    ] {
        let answer = create(criteria, "system/Observation.cs").await;
        assert_eq!(answer, (StatusCode::OK, None), "{criteria:?}");
    }
    // Criteria of up to 8 KiB are read (each reading several times); longer ones are
    // refused whatever the scopes, as the bundle entry check refuses them.
    let enforcement = smart_auth::ScopeEnforcement::new();
    let claims = smart_auth::testing::ClaimsBuilder::new()
        .scope("system/Observation.cs")
        .build();
    for (length, status) in [
        (8 * 1024, StatusCode::OK),
        (8 * 1024 + 1, StatusCode::BAD_REQUEST),
    ] {
        let criteria: &'static str = format!("identifier={}", "1".repeat(length - 11)).leak();
        assert_eq!(criteria.len(), length);
        let (got, challenge) = create(
            std::slice::from_ref(&criteria).to_vec().leak(),
            "system/Observation.cs",
        )
        .await;
        assert_eq!(got, status, "{length}");
        let entry =
            enforcement.check_conditional_create_entry(&claims, "POST", "Observation", criteria);
        if status == StatusCode::OK {
            assert_eq!(challenge, None);
            assert!(entry.is_ok(), "{length}");
        } else {
            assert_eq!(challenge, Some(app.malformed()), "{length}");
            assert_eq!(
                entry.unwrap_err().kind(),
                smart_auth::ErrorKind::MalformedRequest
            );
        }
    }
    // A parameter name that is not UTF-8 reaches every type.
    let response = app
        .http
        .post(format!("{}/fhir/Observation", app.url))
        .bearer_auth(
            app.issuer
                .token()
                .scope("system/Observation.cs system/Patient.s")
                .sign(),
        )
        .header(
            "If-None-Exist",
            http::HeaderValue::from_bytes(b"_h\xe4s:Group:member:_id=1").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        app.denied("system/*.s")
    );
}

/// A `$export` kick-off by POST carries its parameters in the body, which the layer does
/// not read: a `_type` in its query does not narrow what it needs.
#[tokio::test]
async fn post_export_needs_the_scopes_of_a_whole_export() {
    let app = scoped_app().await;
    let narrow = app
        .call(
            "POST",
            "/fhir/$export?_type=Patient",
            "system/Patient.rs",
            &[],
        )
        .await;
    assert_eq!(narrow.status, StatusCode::FORBIDDEN);
    assert_eq!(
        narrow.challenge.as_deref(),
        Some(app.denied("system/*.s").as_str())
    );
    for path in [
        "/fhir/$export?_type=Patient",
        "/fhir/$export",
        "/fhir/Patient/$export",
    ] {
        assert_eq!(
            app.call("POST", path, "system/*.rs", &[]).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    // By GET the query is the parameter list, and narrows as before.
    assert_eq!(
        app.call(
            "GET",
            "/fhir/$export?_type=Patient",
            "system/Patient.rs",
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
}

/// Compartment searches (`Patient/123/Observation`, `Patient/123/*`) are searches of the
/// named type, or of every type.
#[tokio::test]
async fn compartment_searches_need_search_on_their_type() {
    let app = scoped_app().await;
    for (method, path, scope) in [
        (
            "GET",
            "/fhir/Patient/123/Observation",
            "system/Observation.rs",
        ),
        (
            "GET",
            "/fhir/Patient/123/Observation?code=x",
            "system/Observation.s",
        ),
        (
            "HEAD",
            "/fhir/Encounter/e-1/Observation",
            "system/Observation.s",
        ),
        // Every type of the compartment, which `_type` limits.
        (
            "GET",
            "/fhir/Patient/123/*?_type=Observation",
            "system/Observation.s",
        ),
        (
            "GET",
            "/fhir/Patient/123/*?_type=Observation,Condition&code=x",
            "system/Observation.s system/Condition.s",
        ),
        (
            "GET",
            "/fhir/Patient/123/Observation/_search",
            "system/Observation.s",
        ),
        (
            "POST",
            "/fhir/Patient/123/Observation/_search",
            "system/Observation.s",
        ),
        ("GET", "/fhir/Patient/123/*", "system/*.s"),
        (
            "GET",
            "/fhir/Practitioner/9/*?_lastUpdated=gt2020",
            "system/*.rs",
        ),
        (
            "GET",
            "/fhir/Patient/123/Observation",
            "system/Observation.read",
        ),
        (
            "GET",
            "/fhir/Patient/123/Observation?category=laboratory",
            "system/Observation.rs?category=laboratory",
        ),
    ] {
        let answer = app.call(method, path, scope, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path} {scope}");
    }
    for (method, path, scope, hint) in [
        (
            "GET",
            "/fhir/Patient/123/Observation",
            "system/Patient.rs",
            Some("system/Observation.s"),
        ),
        (
            "GET",
            "/fhir/Patient/123/Observation",
            "system/Observation.r",
            Some("system/Observation.s"),
        ),
        (
            "GET",
            "/fhir/Patient/123/*",
            "system/Observation.rs",
            Some("system/*.s"),
        ),
        (
            "GET",
            "/fhir/Patient/123/*?_type=Observation,Condition",
            "system/Observation.rs",
            Some("system/Condition.s"),
        ),
        (
            "GET",
            "/fhir/Patient/123/*?_type=Observation,*",
            "system/Observation.rs",
            Some("system/*.s"),
        ),
        (
            "POST",
            "/fhir/Patient/123/*/_search?_type=Observation",
            "system/Observation.rs",
            Some("system/*.s"),
        ),
        (
            "POST",
            "/fhir/Patient/123/Observation/_search",
            "system/Observation.rs?category=laboratory",
            Some("system/Observation.s"),
        ),
        (
            "GET",
            "/fhir/Patient/123/Observation",
            "system/Observation.rs?category=laboratory",
            Some("system/Observation.s"),
        ),
        // Not compartment searches: no interaction, no hint.
        ("GET", "/fhir/Observation/1/Patient", "system/*.cruds", None),
        ("GET", "/fhir/Patient/1/observation", "system/*.cruds", None),
        ("PUT", "/fhir/Patient/1/Observation", "system/*.cruds", None),
        ("DELETE", "/fhir/Patient/1/*", "system/*.cruds", None),
        (
            "GET",
            "/fhir/Patient/1/Observation/x",
            "system/*.cruds",
            None,
        ),
    ] {
        let answer = app.call(method, path, scope, &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {path} {scope}"
        );
        let challenge = answer.challenge.unwrap();
        match hint {
            Some(hint) => assert_eq!(challenge, app.denied(hint), "{method} {path}"),
            None => assert!(
                !challenge.contains("scope="),
                "{method} {path}: {challenge}"
            ),
        }
    }
    // An encoded `/` in the patient's id: unreadable.
    let answer = app
        .call(
            "GET",
            "/fhir/Patient/1%2F2/Observation",
            "system/*.cruds",
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.challenge, Some(app.malformed()));
}

/// A bulk export's status and output URLs under the base need a valid token and no scope
/// once configured (the Bulk Data IG protects them like the kick-off; the handler checks
/// the job's client): any method, any scopes. Nothing else changes: other paths and FHIR
/// interactions are enforced, and a request without a token is still 401.
#[tokio::test]
async fn bulk_status_and_output_paths_need_only_a_token() {
    let app = scoped_app_with(ScopeEnforcement::new().allow_any_token_under([
        "bulkstatus",
        "$export-poll-status",
        "bulkfiles",
    ]))
    .await;
    let unrelated = "system/Observation.rs";
    for (method, path) in [
        ("GET", "/fhir/bulkstatus/1"),
        ("DELETE", "/fhir/bulkstatus/1"),
        ("GET", "/fhir/$export-poll-status?_jobId=1"),
        ("DELETE", "/fhir/$export-poll-status?_jobId=1"),
        ("GET", "/fhir/bulkfiles/1/Patient.ndjson"),
        ("HEAD", "/fhir/bulkfiles/1/Patient.ndjson"),
    ] {
        let answer = app.call(method, path, unrelated, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/fhir/bulkstatus2"),
        ("GET", "/fhir/Patient/1"),
        ("GET", "/fhir/$export"),
        ("DELETE", "/fhir/$export"),
        ("GET", "/fhir/$export-poll-status2"),
    ] {
        let answer = app.call(method, path, unrelated, &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let anonymous = app
        .http
        .get(format!("{}/fhir/bulkstatus/1", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The paths must be canonical and may not start where FHIR interactions are: enforcement
/// would be undone for them.
#[test]
fn token_only_paths_are_checked_at_build() {
    let build = |path: &str| {
        SmartAuthLayer::builder("https://as.example")
            .fhir_base("https://fhir.example/r4")
            .enforce_scopes(ScopeEnforcement::new().allow_any_token_under([path]))
            .build()
            .map(|_| ())
    };
    for good in [
        "bulkstatus",
        "$export-poll-status",
        "$import-poll-status",
        "jobs/status",
        "bulk-files",
    ] {
        assert_eq!(build(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "/bulkstatus",
        "bulkstatus/",
        "bulk//status",
        "bulk/../Patient",
        "./bulkstatus",
        "%62ulkstatus",
        "bulk status",
        "bulk;status",
        "Patient",
        "Patient/1",
        "metadata",
        "$export",
        "$graphql",
        "$meta",
        "$export-poll-status2",
        "_x-poll-status",
        "_history",
        "_search",
        "{job}",
        "*rest",
    ] {
        assert!(
            matches!(
                build(bad),
                Err(smart_auth::ConfigError::InvalidRoutePath { setting: "allow_any_token_under", ref path, .. }) if path == bad
            ),
            "{bad:?}"
        );
    }
}

/// A token-only path is an HTTP route: a bundle entry under it is checked as any entry
/// is (the layer cannot read it as FHIR: refused).
#[test]
fn token_only_paths_are_no_bundle_entries() {
    use smart_auth::testing::ClaimsBuilder;
    let enforcement = ScopeEnforcement::new().allow_any_token_under(["bulkstatus"]);
    let claims = ClaimsBuilder::new().scope("system/*.cruds").build();
    // No FHIR interaction: no scope would allow it, so no hint.
    for (method, url) in [("GET", "bulkstatus/5"), ("DELETE", "bulkstatus/5")] {
        let denied = enforcement
            .check_bundle_entry(&claims, method, url)
            .unwrap_err();
        assert_eq!(
            denied.kind(),
            ErrorKind::InsufficientScope,
            "{method} {url}"
        );
        assert_eq!(denied.required_scope(), None, "{method} {url}");
    }
    let denied = enforcement
        .check_conditional_create_entry(&claims, "POST", "bulkstatus", "x=1")
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::InsufficientScope);
    assert_eq!(denied.required_scope(), None);
}

/// A system search that `_type` limits needs `s` on each listed type, not on every type;
/// `_type` is read as for an export: every reading of the query, lenient names too, an
/// empty entry or `*` meaning every type, a name no scope spells refused.
#[tokio::test]
async fn system_search_limited_by_type() {
    let app = scoped_app().await;
    let two_types = "system/Observation.rs system/Patient.rs";
    for path in [
        "/fhir?_type=Observation,Patient",
        "/fhir?_type=Observation&_lastUpdated=gt2026-01-01",
        "/fhir?_type=Observation&_type=Patient",
    ] {
        let answer = app.call("GET", path, two_types, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {answer:?}");
    }
    for path in [
        "/fhir?_type=Observation,Encounter",
        "/fhir?_type=Observation;_type=Encounter",
        "/fhir?_type=Observation&_TYPE=Encounter",
        "/fhir?_type=Observation,",
        "/fhir?_type=*",
        "/fhir?_type=observation",
        "/fhir?_lastUpdated=gt2026-01-01",
        "/fhir?_lastUpdated=gt2026-01-01;_type=Observation",
        "/fhir?_type=Observation&_has:Encounter:subject:status=x",
    ] {
        let answer = app.call("GET", path, two_types, &[]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}: {answer:?}");
    }
    // `POST _search` keeps its parameters in the body: every type.
    let answer = app
        .call("POST", "/fhir/_search?_type=Observation", two_types, &[])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = app
        .call("GET", "/fhir?_type=Encounter", "system/*.rs", &[])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}
