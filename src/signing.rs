//! Private keys for everything in this crate that signs: the test issuer (`testing`), the
//! development authorization server (`dev-server`) and the backend-service client
//! (`client`). Generation, loading from key pairs, the public JWK, signing, and compact JWS
//! assembly.
//!
//! Nothing here panics except the `testing`-only convenience wrappers, which keep the test
//! kit's code short; the client uses the fallible `try_*` forms.

// Each feature that signs (the test issuer, the development server) uses a different part.
#![allow(dead_code)]

use aws_lc_rs::error::Unspecified;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair,
    KeyPair as _,
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
    P521,
    Ed25519,
}

impl KeyType {
    pub(crate) fn for_algorithm(alg: SigningAlgorithm) -> Self {
        match alg {
            SigningAlgorithm::ES256 => Self::P256,
            SigningAlgorithm::ES384 => Self::P384,
            SigningAlgorithm::ES512 => Self::P521,
            SigningAlgorithm::EdDSA | SigningAlgorithm::Ed25519 => Self::Ed25519,
            _ => Self::Rsa,
        }
    }

    /// aws-lc's ECDSA signing algorithm for an EC key type, `None` for the others.
    pub(crate) fn ecdsa(self) -> Option<&'static EcdsaSigningAlgorithm> {
        match self {
            Self::P256 => Some(&ECDSA_P256_SHA256_FIXED_SIGNING),
            Self::P384 => Some(&ECDSA_P384_SHA384_FIXED_SIGNING),
            Self::P521 => Some(&ECDSA_P521_SHA512_FIXED_SIGNING),
            Self::Rsa | Self::Ed25519 => None,
        }
    }

    /// The field size of an EC key type in octets: the length of each coordinate (and of
    /// the private scalar) written in full.
    pub(crate) fn field_size(self) -> Option<usize> {
        match self {
            Self::P256 => Some(32),
            Self::P384 => Some(48),
            Self::P521 => Some(66),
            Self::Rsa | Self::Ed25519 => None,
        }
    }

    /// The JWK `crv` of an EC key type.
    fn curve(self) -> Option<&'static str> {
        match self {
            Self::P256 => Some("P-256"),
            Self::P384 => Some("P-384"),
            Self::P521 => Some("P-521"),
            Self::Rsa | Self::Ed25519 => None,
        }
    }
}

/// The key pair itself.
pub(crate) enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    /// A fresh key pair of the given type (RSA keys are 2048 bits).
    pub(crate) fn generate(key_type: KeyType) -> Result<Self, Unspecified> {
        Ok(match key_type {
            KeyType::Rsa => Self::Rsa(RsaKeyPair::generate(KeySize::Rsa2048)?),
            KeyType::P256 | KeyType::P384 | KeyType::P521 => Self::Ec(EcdsaKeyPair::generate(
                key_type.ecdsa().ok_or(Unspecified)?,
            )?),
            KeyType::Ed25519 => Self::Ed(Ed25519KeyPair::generate()?),
        })
    }

    pub(crate) fn key_type(&self) -> KeyType {
        match self {
            Self::Rsa(_) => KeyType::Rsa,
            // An uncompressed point is 0x04 || x || y: 65 bytes on P-256, 97 on P-384,
            // 133 on P-521.
            Self::Ec(pair) => match pair.public_key().as_ref().len() {
                65 => KeyType::P256,
                97 => KeyType::P384,
                _ => KeyType::P521,
            },
            Self::Ed(_) => KeyType::Ed25519,
        }
    }

    /// The public half as a bare JWK (`kty` and the key parameters only).
    fn public_jwk(&self) -> Value {
        match self {
            Self::Rsa(pair) => {
                let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)})
            }
            Self::Ec(pair) => {
                let point = pair.public_key().as_ref();
                let size = (point.len() - 1) / 2;
                let crv = self.key_type().curve().unwrap_or_default();
                json!({
                    "kty": "EC", "crv": crv,
                    "x": b64(&point[1..=size]), "y": b64(&point[size + 1..]),
                })
            }
            Self::Ed(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
        }
    }
}

/// A private key with its kid and public JWK.
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) key_type: KeyType,
    pub(crate) jwk: Value,
    signer: Signer,
}

/// The test kit's name for [`SigningKey`].
#[cfg(feature = "testing")]
pub(crate) type TestKey = SigningKey;

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// Wraps a key pair. The public JWK gets `kid`, `use: sig` and, when given, `alg`.
    pub(crate) fn new(signer: Signer, kid: String, alg: Option<SigningAlgorithm>) -> Self {
        let mut jwk = signer.public_jwk();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg.name());
        }
        Self {
            kid,
            key_type: signer.key_type(),
            jwk,
            signer,
        }
    }

    /// A fresh key pair. `alg` is written into the JWK when given.
    pub(crate) fn try_generate(
        key_type: KeyType,
        kid: String,
        alg: Option<SigningAlgorithm>,
    ) -> Result<Self, Unspecified> {
        Ok(Self::new(Signer::generate(key_type)?, kid, alg))
    }

    /// [`try_generate`](Self::try_generate), panicking if the system cannot make a key.
    #[cfg(feature = "testing")]
    pub(crate) fn generate(key_type: KeyType, kid: String, alg: Option<SigningAlgorithm>) -> Self {
        Self::try_generate(key_type, kid, alg).expect("key generation")
    }

    /// Whether `alg` can be used with this key.
    pub(crate) fn fits(&self, alg: SigningAlgorithm) -> bool {
        KeyType::for_algorithm(alg) == self.key_type
    }

    /// Signs `header.claims` as a compact JWS with `alg` (written into the header); an
    /// error when `alg` does not fit the key.
    pub(crate) fn try_compact_jws(
        &self,
        alg: SigningAlgorithm,
        header: serde_json::Map<String, Value>,
        claims: &Value,
    ) -> Result<String, Unspecified> {
        if !self.fits(alg) {
            return Err(Unspecified);
        }
        self.jws(alg, header, claims)
    }

    /// Signs `header.claims` as a compact JWS with `alg` (written into the header).
    ///
    /// Test tokens may lie: an EC or Ed25519 key signs whatever `alg` says, so that tests
    /// can check that verifiers refuse the mismatch. Panics when `alg` is not an RSA
    /// algorithm but the key is RSA.
    #[cfg(feature = "testing")]
    pub(crate) fn compact_jws(
        &self,
        alg: SigningAlgorithm,
        header: serde_json::Map<String, Value>,
        claims: &Value,
    ) -> String {
        self.jws(alg, header, claims)
            .unwrap_or_else(|_| panic!("{alg} cannot be signed with a {:?} key", self.key_type))
    }

    /// Signs the base64url encodings of exactly these two texts with `alg`, which the
    /// header text must name itself. Panics when `alg` does not fit the key.
    #[cfg(feature = "testing")]
    pub(crate) fn compact_jws_of_texts(
        &self,
        alg: SigningAlgorithm,
        header: &str,
        payload: &str,
    ) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        self.compact_jws_of_signing_input(alg, &signing_input)
    }

    /// Appends a signature over exactly `signing_input` (whatever it holds) with `alg`.
    /// Panics when `alg` does not fit the key.
    #[cfg(feature = "testing")]
    pub(crate) fn compact_jws_of_signing_input(
        &self,
        alg: SigningAlgorithm,
        signing_input: &str,
    ) -> String {
        let signature = self
            .sign_as(alg, signing_input.as_bytes())
            .unwrap_or_else(|_| panic!("{alg} cannot be signed with a {:?} key", self.key_type));
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn jws(
        &self,
        alg: SigningAlgorithm,
        mut header: serde_json::Map<String, Value>,
        claims: &Value,
    ) -> Result<String, Unspecified> {
        header.insert("alg".into(), json!(alg.name()));
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign_as(alg, signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// Signs `message`. `alg` picks the RSA padding and hash; EC and Ed25519 keys sign
    /// with their own algorithm whatever `alg` says.
    fn sign_as(&self, alg: SigningAlgorithm, message: &[u8]) -> Result<Vec<u8>, Unspecified> {
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
                    _ => return Err(Unspecified),
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut signature)?;
                Ok(signature)
            }
            Signer::Ec(pair) => Ok(pair.sign(&rng, message)?.as_ref().to_vec()),
            Signer::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_signs_with_its_algorithms_only() {
        for alg in SigningAlgorithm::DEFAULT.iter().copied() {
            let key = SigningKey::try_generate(KeyType::for_algorithm(alg), "k".into(), Some(alg))
                .unwrap();
            assert_eq!(key.jwk["alg"], alg.name());
            let claims = json!({"sub": "x"});
            assert!(
                key.try_compact_jws(alg, Default::default(), &claims)
                    .is_ok(),
                "{alg}"
            );
            let foreign = if key.key_type == KeyType::Rsa {
                SigningAlgorithm::ES256
            } else {
                SigningAlgorithm::RS256
            };
            let signed = key.try_compact_jws(foreign, Default::default(), &claims);
            assert!(signed.is_err(), "{alg}");
        }
    }

    #[test]
    fn ec_curve_is_recognised() {
        let p256 = SigningKey::try_generate(KeyType::P256, "a".into(), None).unwrap();
        let p384 = SigningKey::try_generate(KeyType::P384, "b".into(), None).unwrap();
        assert_eq!(
            (p256.key_type, &p256.jwk["crv"]),
            (KeyType::P256, &json!("P-256"))
        );
        assert_eq!(
            (p384.key_type, &p384.jwk["crv"]),
            (KeyType::P384, &json!("P-384"))
        );
        assert!(p384.jwk.get("alg").is_none());
    }
}
