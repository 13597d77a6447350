//! A protected FHIR API with Prometheus metrics on `/metrics`.
//!
//! Installs the Prometheus recorder (without its own HTTP listener: the API's router
//! serves `render()`), starts a [`TestIssuer`] and an API behind `SmartAuthLayer`, sends
//! itself a few requests and prints what `/metrics` then says. It keeps serving until
//! stopped, so you can try more requests with the printed token.
//!
//! Run with `cargo run --example metrics --features metrics,testing`.
//!
//! The metric names, types and labels are listed in the docs of `smart_auth::metrics`.

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use smart_auth::testing::TestIssuer;
use smart_auth::{SmartAuthLayer, SmartClaims};

async fn read_patient(claims: SmartClaims) -> String {
    format!(
        "hello, {}\n",
        claims.client_id().unwrap_or("unknown client")
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First: events recorded before a recorder is installed are dropped.
    let prometheus = PrometheusBuilder::new().install_recorder()?;

    let issuer = TestIssuer::start().await;
    // `/metrics` needs no token (scrapers carry no SMART token): restrict it at the
    // network level. The layer goes last, so that it covers every route and the 404s.
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .public_path("/fhir/metadata")
        .public_path("/metrics")
        .build()?;
    let app = Router::new()
        .route("/fhir/Patient/{id}", get(read_patient))
        .route(
            "/fhir/metadata",
            get(|| async { "a CapabilityStatement\n" }),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .layer(auth);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let token = issuer.token().scope("system/Patient.rs").sign();
    let http = reqwest::Client::new();
    let patient = format!("{base}/fhir/Patient/1");
    for _ in 0..3 {
        http.get(&patient).bearer_auth(&token).send().await?;
    }
    http.get(&patient).send().await?; // no token: 401
    http.get(format!("{base}/fhir/metadata")).send().await?; // public
    let scraped = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    println!("{scraped}");

    println!("Serving on {base}; try:");
    println!("  curl -H 'Authorization: Bearer {token}' {patient}");
    println!("  curl {base}/metrics");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
