//! A tonic gRPC service protected by `SmartAuthLayer`, with an embedded test issuer.
//!
//! Run it with:
//!
//! ```text
//! cargo run --features testing --example grpc
//! ```
//!
//! The auth layer is plain tower, so it goes on a tonic server with `Server::layer`, like any
//! tower layer. Two small pieces around it make the answers gRPC ones:
//!
//! - inside, tonic's response bodies are boxed into `axum::body::Body`, a body the auth
//!   layer can also build its refusals from;
//! - outside, `GrpcRefusalsLayer` (in `refusals.rs`) turns a refusal into the gRPC status a
//!   client expects, `UNAUTHENTICATED` for a missing or bad token, with the
//!   `www-authenticate` challenge in the response metadata.
//!
//! The protected service is tonic-health's `grpc.health.v1.Health` (generated code ships with
//! the crate, so no `protoc` is needed). The example serves it on 127.0.0.1, calls it with a
//! token, without one, and with a token lacking the scope the service requires, and prints
//! what a gRPC client sees.

mod refusals;

use std::net::SocketAddr;

use refusals::GrpcRefusalsLayer;
use smart_auth::testing::TestIssuer;
use smart_auth::{Refusal, SmartAuthLayer};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::util::MapResponseLayer;

/// The scope a token needs to call the service.
const HEALTH_SCOPE: &str = "system/health.read";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = TestIssuer::start().await;
    let auth = SmartAuthLayer::builder(issuer.url())
        .audience(issuer.audience())
        .validate(|claims| {
            if claims.scopes().iter().any(|scope| scope == HEALTH_SCOPE) {
                Ok(())
            } else {
                Err(Refusal::insufficient_scope(HEALTH_SCOPE))
            }
        })
        .build()?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        Server::builder()
            .layer(GrpcRefusalsLayer)
            .layer(auth)
            .layer(MapResponseLayer::new(
                |response: http::Response<tonic::body::Body>| response.map(axum::body::Body::new),
            ))
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    println!(
        "grpc.health.v1.Health on http://{address}, tokens from {}",
        issuer.url()
    );

    let client = client(address).await?;
    let token = issuer.token().scope(HEALTH_SCOPE).sign();
    let other = issuer.token().scope("system/Patient.rs").sign();
    for (what, token) in [
        ("with a token", Some(token.as_str())),
        ("without a token", None),
        ("with a token lacking the scope", Some(other.as_str())),
    ] {
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        match client.clone().check(request).await {
            Ok(response) => println!("{what}: {:?}", response.into_inner().status()),
            Err(status) => println!(
                "{what}: {:?} ({}), www-authenticate: {:?}",
                status.code(),
                status.message(),
                status.metadata().get("www-authenticate"),
            ),
        }
    }
    Ok(())
}

/// A health client on a plaintext HTTP/2 connection to `address`.
async fn client(address: SocketAddr) -> Result<HealthClient<Channel>, tonic::transport::Error> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect()
        .await?;
    Ok(HealthClient::new(channel))
}
