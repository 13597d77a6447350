//! A small FHIR-style API protected by `SmartAuthLayer`, with an embedded test issuer.
//!
//! Run it with:
//!
//! ```text
//! cargo run --features testing --example protected_fhir_api
//! ```
//!
//! It starts an in-process issuer (discovery + JWK Set) and the API on 127.0.0.1, prints
//! ready-to-paste curl commands (with a freshly minted token, and without one) and serves
//! until Ctrl-C.

use std::time::Duration;

use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use smart_auth::testing::TestIssuer;
use smart_auth::{ScopeEnforcement, SmartAuthLayer, SmartClaims};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

async fn read_patient(claims: SmartClaims, Path(id): Path<String>) -> impl IntoResponse {
    let patient = json!({
        "resourceType": "Patient",
        "id": id,
        "name": [{ "family": "Example", "given": ["Pat"] }],
        "meta": { "tag": [{ "code": "read-by", "display": claims.client_id().unwrap_or("unknown client") }] },
    });
    (
        [(http::header::CONTENT_TYPE, FHIR_JSON)],
        patient.to_string(),
    )
}

async fn capability_statement() -> Json<serde_json::Value> {
    Json(
        json!({ "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1" }),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "smart_auth=debug,info".into()),
        )
        .init();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}/fhir", listener.local_addr()?);

    let issuer = TestIssuer::builder().audience(&api_url).start().await;
    // Scope enforcement: a read of a Patient needs a scope that allows it (`system/Patient.r`
    // or wider), checked before the handler runs.
    let auth = SmartAuthLayer::builder(issuer.url())
        .fhir_base(&api_url)
        .enforce_scopes(ScopeEnforcement::new())
        .build()?;
    auth.warm_up().await?;

    let app = Router::new()
        .route("/fhir/Patient/{id}", get(read_patient))
        .route("/fhir/metadata", get(capability_statement))
        .layer(auth);

    let token = issuer
        .token()
        .claim("client_id", "demo-backend-service")
        .claim("sub", "demo-backend-service")
        .scope("system/Patient.rs")
        .lifetime(Duration::from_secs(3600))
        .sign();
    let other_scope = issuer
        .token()
        .claim("client_id", "demo-backend-service")
        .scope("system/Observation.rs")
        .lifetime(Duration::from_secs(3600))
        .sign();

    println!();
    println!("SMART-protected FHIR API at {api_url}");
    println!("Token issuer (discovery + JWKS) at {}", issuer.url());
    println!();
    println!("With a valid token (200, valid for one hour):");
    println!("  curl -i -H 'Authorization: Bearer {token}' {api_url}/Patient/123");
    println!();
    println!("Without a token (401 with a WWW-Authenticate challenge):");
    println!("  curl -i {api_url}/Patient/123");
    println!();
    println!("With a token whose scopes do not allow reading Patients (403 insufficient_scope):");
    println!("  curl -i -H 'Authorization: Bearer {other_scope}' {api_url}/Patient/123");
    println!();
    println!("With a broken token (401 invalid_token):");
    println!("  curl -i -H 'Authorization: Bearer {token}x' {api_url}/Patient/123");
    println!();
    println!("The capability statement is public:");
    println!("  curl -i {api_url}/metadata");
    println!();
    println!("Serving until Ctrl-C.");

    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    drop(issuer);
    Ok(())
}
