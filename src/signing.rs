//! Private keys for everything in this crate that signs: the test issuer (`testing`), the
//! development authorization server (`dev-server`) and the backend-service client
//! (`client`). Generation, the public JWK, signing, and compact JWS assembly.

// Each feature that signs (the test issuer, the development server) uses a different part.
#![allow(dead_code)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::algorithm::SigningAlgorithm;

/// The key type an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    pub(crate) fn for_algorithm(alg: SigningAlgorithm) -> Self {
        match alg {
            SigningAlgorithm::ES256 => Self::P256,
            SigningAlgorithm::ES384 => Self::P384,
            SigningAlgorithm::EdDSA => Self::Ed25519,
            _ => Self::Rsa,
        }
    }
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key with its kid and public JWK.
pub(crate) struct TestKey {
    pub(crate) kid: String,
    pub(crate) key_type: KeyType,
    pub(crate) jwk: Value,
    signer: Signer,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl TestKey {
    /// A fresh key pair. `alg` is written into the JWK when given.
    pub(crate) fn generate(key_type: KeyType, kid: String, alg: Option<SigningAlgorithm>) -> Self {
        let (signer, mut jwk) = match key_type {
            KeyType::Rsa => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)});
                (Signer::Rsa(pair), jwk)
            }
            KeyType::P256 | KeyType::P384 => {
                let (algorithm, crv, size) = if key_type == KeyType::P256 {
                    (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                } else {
                    (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
                };
                let pair = EcdsaKeyPair::generate(algorithm).expect("EC key generation");
                let point = pair.public_key().as_ref();
                let jwk = json!({
                    "kty": "EC", "crv": crv,
                    "x": b64(&point[1..=size]), "y": b64(&point[size + 1..]),
                });
                (Signer::Ec(pair), jwk)
            }
            KeyType::Ed25519 => {
                let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
                let jwk =
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
                (Signer::Ed(pair), jwk)
            }
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg.name());
        }
        Self {
            kid,
            key_type,
            jwk,
            signer,
        }
    }

    /// Signs `header.claims` as a compact JWS with `alg` (written into the header).
    pub(crate) fn compact_jws(
        &self,
        alg: SigningAlgorithm,
        mut header: serde_json::Map<String, Value>,
        claims: &Value,
    ) -> String {
        header.insert("alg".into(), json!(alg.name()));
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(alg, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Signs `message` with `alg`, which must fit the key type.
    pub(crate) fn sign(&self, alg: SigningAlgorithm, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    SigningAlgorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                    SigningAlgorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                    SigningAlgorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                    SigningAlgorithm::PS256 => &signature::RSA_PSS_SHA256,
                    SigningAlgorithm::PS384 => &signature::RSA_PSS_SHA384,
                    SigningAlgorithm::PS512 => &signature::RSA_PSS_SHA512,
                    other => panic!("{other} does not fit an RSA key"),
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut signature)
                    .expect("RSA signing");
                signature
            }
            Signer::Ec(pair) => pair
                .sign(&rng, message)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }
}
