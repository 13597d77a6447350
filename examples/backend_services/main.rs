//! The whole SMART Backend Services flow on one machine.
//!
//! ```text
//! cargo run --features "dev-server client" --example backend_services
//! ```
//!
//! Starts, on 127.0.0.1 with ephemeral ports:
//!
//! - the development SMART authorization server, with one `private_key_jwt` client and one
//!   `client_secret_basic` client registered;
//! - a small FHIR API (Patient and Observation: read, search, create) behind
//!   `SmartAuthLayer` with scope enforcement, publishing `/.well-known/smart-configuration`.
//!
//! Then it runs the `private_key_jwt` client once, printing each step (discovery ->
//! assertion -> token response -> API call), prints curl commands to try the API by hand,
//! and serves until Ctrl-C.

mod api;

use serde_json::Value;
use smart_auth::SigningAlgorithm;
use smart_auth::client::{BackendServiceClient, ClientKey};
use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
use smart_auth::discovery::SmartConfiguration;

const JWT_CLIENT: &str = "demo-backend-service";
const BASIC_CLIENT: &str = "demo-reporting";

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value)
        .unwrap_or_default()
        .replace('\n', "\n    ")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // The API's address first: the authorization server issues tokens for it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let fhir_base = format!("http://{}/fhir", listener.local_addr()?);

    // 1. The authorization server and its two clients.
    // Clients that register themselves over HTTP may read Patients, nothing more.
    let server = DevAuthServer::builder(&fhir_base)
        .registration_scope_ceiling(["system/Patient.rs"])
        .start()
        .await?;
    let key = ClientKey::generate(SigningAlgorithm::ES384, "demo-key-1")?;
    server.register(ClientRegistration::private_key_jwt(
        JWT_CLIENT,
        key.public_jwks(),
        ["system/*.rs", "system/Patient.c"],
    )?);
    // A secret nobody can guess: 128 random bits, as a real client secret should be.
    let secret = random_secret()?;
    server.register(ClientRegistration::client_secret_basic(
        BASIC_CLIENT,
        secret.as_str(),
        [
            "system/Patient.rs",
            "system/Observation.rs?category=laboratory",
        ],
    ));

    // 2. The protected API: tokens from that server, for this API, scopes enforced.
    // The handlers in api.rs narrow searches and reads to the granular scopes' filters.
    let auth = api::auth_layer(server.url(), &fhir_base)?;
    auth.warm_up().await?;
    let discovery = SmartConfiguration::from_issuer(server.url()).await?;
    let app = api::router(auth, discovery, api::Store::seeded());
    // Bounded as the authorization server is: 256 connections, 10 s for the headers, and
    // (the router's part) 30 s per request.
    let serving = tokio::spawn(smart_auth::dev_server::serve_with_limits(listener, app));

    println!("\nSMART Backend Services, end to end, on this machine\n");
    println!("  authorization server  {}", server.url());
    println!("  FHIR API              {fhir_base}\n");

    // 3. The private_key_jwt client, step by step.
    let client = BackendServiceClient::builder(&fhir_base)
        // The credentials go only to this authorization server, whatever the FHIR server
        // names in its discovery document.
        .trust_token_endpoint_origin(server.url())
        .client_id(JWT_CLIENT)
        .private_key_jwt(key)
        .scopes(["system/Patient.rs", "system/Observation.rs"])
        .build()?;
    let (trace, token) = client.request_token_verbose().await?;
    if let Some(discovered) = &trace.discovered {
        println!("Step 1 - discovery: GET {}", discovered.url);
        println!(
            "    token_endpoint = {}\n",
            discovered.document["token_endpoint"]
        );
    }
    println!(
        "Step 2 - client assertion ({}), signed with the client's private key",
        trace.auth_method
    );
    if let (Some(header), Some(claims)) = (&trace.assertion_header, &trace.assertion_claims) {
        println!("    header {}", pretty(header));
        println!("    claims {}\n", pretty(claims));
    }
    println!(
        "Step 3 - POST {} -> {}",
        trace.token_endpoint, trace.response_status
    );
    println!("    {}\n", pretty(&trace.response_body));
    let request = client
        .authorize(reqwest::Client::new().get(format!("{fhir_base}/Patient/1")))
        .await?;
    let response = request.send().await?;
    let status = response.status();
    let body: Value = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
    println!("Step 4 - GET {fhir_base}/Patient/1 with the token -> {status}");
    println!("    {}\n", pretty(&body));
    println!(
        "    (granted scope: {}, expires at {})\n",
        token.scope(),
        token.expires_at()
    );

    // 4. By hand.
    let token_endpoint = server.token_endpoint();
    let extract = r#"sed -E 's/.*"access_token":"([^"]+)".*/\1/'"#;
    println!("Try it by hand:\n");
    println!("  # discovery (public)");
    println!("  curl -s {fhir_base}/.well-known/smart-configuration\n");
    println!("  # a token for the client_secret_basic client");
    println!(
        "  TOKEN=$(curl -s -u {BASIC_CLIENT}:{secret} -d grant_type=client_credentials -d 'scope=system/Patient.rs' {token_endpoint} | {extract})\n"
    );
    println!("  # 200: the token allows reading Patients");
    println!("  curl -i -H \"Authorization: Bearer $TOKEN\" {fhir_base}/Patient/1\n");
    println!("  # 401: no token");
    println!("  curl -i {fhir_base}/Patient/1\n");
    println!("  # 403: the token's scope is too narrow for Observations");
    println!("  curl -i -H \"Authorization: Bearer $TOKEN\" {fhir_base}/Observation/2\n");
    println!("Serving until Ctrl-C.");

    tokio::select! {
        result = serving => { result?; }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// 128 bits from the operating system's generator, hex-encoded.
fn random_secret() -> Result<String, Box<dyn std::error::Error>> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no random bytes")?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
