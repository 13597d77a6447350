//! Smoke test of the demo's API (examples/backend_services): discovery, 401 without a
//! token, 200 with a token from the client, 403 outside the granted scopes.

#[path = "../../examples/backend_services/api.rs"]
mod api;

use reqwest::StatusCode;
use serde_json::Value;
use smart_auth::SigningAlgorithm;
use smart_auth::client::{BackendServiceClient, ClientKey};
use smart_auth::dev_server::{ClientRegistration, DevAuthServer};
use smart_auth::discovery::SmartConfiguration;

#[tokio::test]
async fn the_demo_flow_works() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fhir_base = format!("http://{}/fhir", listener.local_addr().unwrap());
    let server = DevAuthServer::builder(&fhir_base).start().await.unwrap();
    let key = ClientKey::generate(SigningAlgorithm::RS384, "k1").unwrap();
    server.register(
        ClientRegistration::private_key_jwt(
            "demo",
            key.public_jwks(),
            [
                "system/Patient.rs",
                "system/Observation.rs?category=laboratory",
            ],
        )
        .unwrap(),
    );
    // The demo's own layer and serving.
    let auth = api::auth_layer(server.url(), &fhir_base).unwrap();
    let configuration = SmartConfiguration::from_issuer(server.url()).await.unwrap();
    let app = api::router(auth, configuration, api::Store::seeded());
    let _server = tokio::spawn(smart_auth::dev_server::serve_with_limits(listener, app));
    let http = crate::support::loopback_client();

    let discovery = http
        .get(format!("{fhir_base}/.well-known/smart-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), StatusCode::OK);
    let document: Value = serde_json::from_slice(&discovery.bytes().await.unwrap()).unwrap();
    assert_eq!(document["token_endpoint"], server.token_endpoint());

    assert_eq!(
        http.get(format!("{fhir_base}/Patient/1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let metadata = http
        .get(format!("{fhir_base}/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        metadata.status(),
        StatusCode::OK,
        "the capability statement is public"
    );

    // The client discovers the token endpoint from the API's own discovery document.
    let client = BackendServiceClient::builder(&fhir_base)
        .client_id("demo")
        .private_key_jwt(key)
        .scopes([
            "system/Patient.rs",
            "system/Observation.rs?category=laboratory",
        ])
        .build()
        .unwrap();
    let read = client
        .authorize(http.get(format!("{fhir_base}/Patient/1")))
        .await
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    // Granular scope: only laboratory Observations are found and readable.
    let search = client
        .authorize(http.get(format!("{fhir_base}/Observation")))
        .await
        .unwrap()
        .send()
        .await
        .unwrap();
    let bundle: Value = serde_json::from_slice(&search.bytes().await.unwrap()).unwrap();
    assert_eq!(bundle["total"], 2);
    let vital = client
        .authorize(http.get(format!("{fhir_base}/Observation/1")))
        .await
        .unwrap()
        .send()
        .await
        .unwrap();
    // Outside the filter: not found, as if it did not exist.
    assert_eq!(vital.status(), StatusCode::NOT_FOUND);
    // Creating needs `c`, which was not granted.
    let create = client
        .authorize(
            http.post(format!("{fhir_base}/Patient"))
                .json(&serde_json::json!({"resourceType": "Patient"})),
        )
        .await
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        create.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .rsplit("scope=")
            .next(),
        Some("\"system/Patient.c\"")
    );
    // A reader of every type: `_search` (a system search to the layer) and other segments
    // that are no type reach no handler as a type, so nothing is created or read there.
    let reader_key = ClientKey::generate(SigningAlgorithm::ES384, "k2").unwrap();
    server.register(
        ClientRegistration::private_key_jwt("reader", reader_key.public_jwks(), ["system/*.rs"])
            .unwrap(),
    );
    let reader = BackendServiceClient::builder(&fhir_base)
        .client_id("reader")
        .private_key_jwt(reader_key)
        .scopes(["system/*.rs"])
        .build()
        .unwrap();
    let posted = reader
        .authorize(
            http.post(format!("{fhir_base}/_search"))
                .json(&serde_json::json!({"resourceType": "_search"})),
        )
        .await
        .unwrap()
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::NOT_FOUND);
    for path in ["_search", "_history"] {
        let answer = reader
            .authorize(http.get(format!("{fhir_base}/{path}")))
            .await
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
