//! The demo's small FHIR API: in-memory Patient and Observation resources with read,
//! search and create, behind `SmartAuthLayer` (with scope enforcement) and the
//! discovery layer. Shared by the demo (`main.rs`) and its smoke test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use smart_auth::discovery::SmartConfiguration;
use smart_auth::scopes::{Interaction, SearchConstraints};
use smart_auth::{ConfigError, ScopeEnforcement, SmartAuthLayer, SmartClaims, TokenTypePolicy};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The resource types this API serves. Its routes take the type from the path
/// (`/fhir/{resource_type}`), which also matches what is no type (`_search`, `_history`,
/// `$export`): the layer checks those as the interactions they are, so the handlers must
/// serve types only.
const SERVED: [&str; 2] = ["Patient", "Observation"];

/// The most resources the store keeps: a demo open to its callers grows no further.
const CAPACITY: usize = 10_000;

/// The resources, by type and id.
#[derive(Clone, Default)]
pub struct Store {
    resources: Arc<Mutex<BTreeMap<(String, String), Value>>>,
}

impl Store {
    /// A store with two patients and three observations.
    pub fn seeded() -> Self {
        let store = Self::default();
        for patient in [
            json!({"resourceType": "Patient", "id": "1", "name": [{"family": "Chalmers", "given": ["Peter"]}]}),
            json!({"resourceType": "Patient", "id": "2", "name": [{"family": "Windsor", "given": ["Ann"]}]}),
        ] {
            store.put(patient);
        }
        for (id, category, code) in [
            ("1", "vital-signs", "8867-4"),
            ("2", "laboratory", "2339-0"),
            ("3", "laboratory", "718-7"),
        ] {
            store.put(json!({
                "resourceType": "Observation", "id": id, "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": "Patient/1"},
            }));
        }
        store
    }

    fn put(&self, resource: Value) {
        let key = (
            resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            resource["id"].as_str().unwrap_or_default().to_owned(),
        );
        self.resources
            .lock()
            .expect("store lock")
            .insert(key, resource);
    }

    /// Stores a new resource under the next id of its type (chosen under the lock, so
    /// concurrent creates never share one); `None` when the store is full.
    fn create(&self, mut resource: Value, resource_type: &str) -> Option<Value> {
        let mut resources = self.resources.lock().expect("store lock");
        if resources.len() >= CAPACITY {
            return None;
        }
        let count = resources
            .keys()
            .filter(|(kind, _)| kind == resource_type)
            .count();
        let id = (count + 1000).to_string();
        resource["id"] = json!(id);
        resources.insert((resource_type.to_owned(), id), resource.clone());
        Some(resource)
    }

    fn all(&self, resource_type: &str) -> Vec<Value> {
        let resources = self.resources.lock().expect("store lock");
        resources
            .iter()
            .filter(|((kind, _), _)| kind == resource_type)
            .map(|(_, resource)| resource.clone())
            .collect()
    }
}

/// The values of a search parameter this API indexes, as `system|code` strings.
fn index(resource: &Value, parameter: &str) -> Vec<String> {
    match parameter {
        "category" | "code" => resource[parameter]
            .as_array()
            .map_or_else(
                || vec![&resource[parameter]],
                |items| items.iter().collect(),
            )
            .iter()
            .flat_map(|concept| concept["coding"].as_array().cloned().unwrap_or_default())
            .flat_map(|coding| {
                let code = coding["code"].as_str().unwrap_or_default().to_owned();
                let system = coding["system"].as_str().unwrap_or_default();
                [format!("{system}|{code}"), code]
            })
            .collect(),
        "name" => resource["name"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n["family"].as_str().map(str::to_lowercase))
            .collect(),
        "_id" => vec![resource["id"].as_str().unwrap_or_default().to_owned()],
        _ => Vec::new(),
    }
}

fn fhir(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}

fn outcome(status: StatusCode, code: &str, text: &str) -> Response {
    fhir(
        status,
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "details": {"text": text}}]}),
    )
}

/// The answer for a path segment that is no type this API serves.
fn not_served() -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        "not-supported",
        "no such resource type here",
    )
}

/// Whether a resource is in the compartment of `Patient/{patient}`: the patient itself, or
/// a resource whose subject it is.
fn in_compartment(resource: &Value, patient: &str) -> bool {
    match resource["resourceType"].as_str() {
        Some("Patient") => resource["id"] == patient,
        _ => resource["subject"]["reference"] == format!("Patient/{patient}").as_str(),
    }
}

async fn read(
    State(store): State<Store>,
    claims: SmartClaims,
    Path((resource_type, id)): Path<(String, String)>,
) -> Response {
    if !SERVED.contains(&resource_type.as_str()) {
        return not_served();
    }
    let access = match claims.require_access(Interaction::Read, &resource_type) {
        Ok(access) => access,
        Err(refusal) => return refusal.into_response(),
    };
    let found = store
        .resources
        .lock()
        .expect("store lock")
        .get(&(resource_type.clone(), id))
        .cloned();
    match found {
        // Inside the patient's compartment (for `patient/` scopes) and the granted filters
        // (granular scopes), or not there at all: the answer never tells which resources
        // exist outside the grant.
        Some(resource)
            if access
                .patient_compartment()
                .is_none_or(|patient| in_compartment(&resource, patient))
                && access.constraints().matches(|p| index(&resource, p)) =>
        {
            fhir(StatusCode::OK, resource)
        }
        _ => outcome(StatusCode::NOT_FOUND, "not-found", "no such resource"),
    }
}

async fn search(
    State(store): State<Store>,
    claims: SmartClaims,
    Path(resource_type): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if !SERVED.contains(&resource_type.as_str()) {
        return not_served();
    }
    let access = match claims.require_access(Interaction::SearchType, &resource_type) {
        Ok(access) => access,
        Err(refusal) => return refusal.into_response(),
    };
    let constraints = access.constraints();
    let matches: Vec<Value> = store
        .all(&resource_type)
        .into_iter()
        // The request's own parameters (AND) ...
        .filter(|resource| {
            query.iter().all(|(parameter, value)| {
                index(resource, parameter)
                    .iter()
                    .any(|v| v == &value.to_lowercase() || v == value)
            })
        })
        // ... the patient's compartment, for `patient/` scopes ...
        .filter(|resource| {
            access
                .patient_compartment()
                .is_none_or(|patient| in_compartment(resource, patient))
        })
        // ... and the granted scopes' filters (OR of AND-sets).
        .filter(|resource| {
            !matches!(constraints, SearchConstraints::Denied)
                && constraints.matches(|p| index(resource, p))
        })
        .collect();
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "Bundle", "type": "searchset", "total": matches.len(),
            "entry": matches.into_iter().map(|resource| json!({"resource": resource})).collect::<Vec<_>>(),
        }),
    )
}

async fn create(
    State(store): State<Store>,
    claims: SmartClaims,
    Path(resource_type): Path<String>,
    Json(resource): Json<Value>,
) -> Response {
    if !SERVED.contains(&resource_type.as_str()) {
        return not_served();
    }
    let access = match claims.require_access(Interaction::Create, &resource_type) {
        Ok(access) => access,
        Err(refusal) => return refusal.into_response(),
    };
    if resource["resourceType"] != resource_type {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "resourceType does not match the URL",
        );
    }
    // A `patient/` grant creates inside the patient's compartment only (another Patient
    // never is).
    if let Some(patient) = access.patient_compartment()
        && (resource_type == "Patient" || !in_compartment(&resource, patient))
    {
        return outcome(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the resource is outside the patient in context",
        );
    }
    let Some(resource) = store.create(resource, &resource_type) else {
        return outcome(
            StatusCode::INSUFFICIENT_STORAGE,
            "too-costly",
            "the store is full",
        );
    };
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    let mut response = fhir(StatusCode::CREATED, resource);
    if let Ok(location) = format!("{resource_type}/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The layer the API runs behind: tokens of `issuer` for the API at `fhir_base`, typed
/// `at+jwt` with RFC 9068's claims (the development server issues such tokens), scopes
/// enforced, granular filters applied by the handlers here.
pub fn auth_layer(issuer: &str, fhir_base: &str) -> Result<SmartAuthLayer, ConfigError> {
    SmartAuthLayer::builder(issuer)
        .fhir_base(fhir_base)
        .token_type(TokenTypePolicy::Rfc9068)
        .enforce_scopes(ScopeEnforcement::new().handler_applies_granular_filters())
        .build()
}

/// How long one request may take, its body read included (the connection's own bounds
/// are `dev_server::serve_with_limits`'s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn limit_request_time(request: Request, next: Next) -> Response {
    tokio::time::timeout(REQUEST_TIMEOUT, next.run(request))
        .await
        .unwrap_or_else(|_| {
            outcome(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request took too long",
            )
        })
}

/// The API under `/fhir`: the resource routes behind `auth`, discovery and `/metadata`
/// public.
pub fn router(auth: SmartAuthLayer, configuration: SmartConfiguration, store: Store) -> Router {
    let security = configuration.capability_statement_security();
    let metadata = move || {
        let security = security.clone();
        async move {
            fhir(
                StatusCode::OK,
                json!({
                    "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
                    "format": ["json"], "rest": [{"mode": "server", "security": security}],
                }),
            )
        }
    };
    // Served at the auth layer's FHIR base: said once, on the layer.
    let discovery = auth.discovery(configuration).cors_on_metadata();
    Router::new()
        .route("/fhir/{resource_type}", get(search).post(create))
        .route("/fhir/{resource_type}/{id}", get(read))
        .route("/fhir/metadata", get(metadata))
        .with_state(store)
        .layer(auth)
        .layer(discovery)
        .layer(axum::middleware::from_fn(limit_request_time))
}
