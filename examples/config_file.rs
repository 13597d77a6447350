//! The layer configured from data: a JSON file, or JSON in an environment variable.
//!
//! ```text
//! cargo run --example config_file -- examples/config/smart-auth.json
//! SMART_AUTH_CONFIG='{"fhir_base": "...", "issuers": [{"issuer": "..."}]}' cargo run --example config_file
//! ```
//!
//! The configuration is checked at startup (`build`): a misspelt setting, an `http`
//! issuer or an unknown algorithm stops the program with the reason, before it serves
//! anything. Any serde format works the same way (TOML, YAML, figment, config-rs).

use std::error::Error;

use axum::Router;
use axum::routing::get;
use smart_auth::{SmartAuthConfig, SmartClaims};

async fn read_patient(claims: SmartClaims) -> String {
    format!(
        "client {} from {}\n",
        claims.client_id().unwrap_or("?"),
        claims.issuer()
    )
}

/// The configuration from the file named by the first argument, else from the
/// `SMART_AUTH_CONFIG` environment variable.
fn load() -> Result<SmartAuthConfig, Box<dyn Error>> {
    let text = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {path}: {error}"))?,
        None => std::env::var("SMART_AUTH_CONFIG")
            .map_err(|_| "give a config file as the argument or set SMART_AUTH_CONFIG")?,
    };
    Ok(serde_json::from_str(&text)?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let auth = load()?.build()?;
    let base = auth.fhir_base_path().to_owned();
    let app = Router::new()
        .route(&format!("{base}/Patient/{{id}}"), get(read_patient))
        .route("/health", get(|| async { "ok\n" }))
        .layer(auth);
    let address = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("protected FHIR API on http://{address}{base}");
    axum::serve(listener, app).await?;
    Ok(())
}
