//! The demo's small FHIR API: in-memory Patient and Observation resources with read,
//! search and create, behind `SmartAuthLayer` (with scope enforcement) and the
//! discovery layer. Shared by the demo (`main.rs`) and its smoke test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use smart_auth::discovery::SmartConfiguration;
use smart_auth::scopes::SearchConstraints;
use smart_auth::{SmartAuthLayer, SmartClaims};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

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

async fn read(
    State(store): State<Store>,
    claims: SmartClaims,
    Path((resource_type, id)): Path<(String, String)>,
) -> Response {
    let found = store
        .resources
        .lock()
        .expect("store lock")
        .get(&(resource_type.clone(), id))
        .cloned();
    match found {
        // Granular scopes: a resource outside every granted filter is not returned.
        Some(resource)
            if claims
                .scope_set()
                .read_constraints(None, &resource_type)
                .matches(|p| index(&resource, p)) =>
        {
            fhir(StatusCode::OK, resource)
        }
        Some(_) => outcome(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the granted scopes do not cover this resource",
        ),
        None => outcome(StatusCode::NOT_FOUND, "not-found", "no such resource"),
    }
}

async fn search(
    State(store): State<Store>,
    claims: SmartClaims,
    Path(resource_type): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let constraints = claims.scope_set().search_constraints(None, &resource_type);
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
    Path(resource_type): Path<String>,
    Json(mut resource): Json<Value>,
) -> Response {
    if resource["resourceType"] != resource_type {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "resourceType does not match the URL",
        );
    }
    let id = (store.all(&resource_type).len() + 1000).to_string();
    resource["id"] = json!(id);
    store.put(resource.clone());
    let mut response = fhir(StatusCode::CREATED, resource);
    if let Ok(location) = format!("{resource_type}/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
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
}
