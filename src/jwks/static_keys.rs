//! Keys given to the verifier directly, for deployments that cannot or need not fetch them
//! (air-gapped networks, an issuer without a published JWK Set, tests).
//!
//! A JWK Set is read by the very parser a fetched set goes through, and a PEM public key
//! becomes the same kind of key a JWK gives, under the same import policy (RSA 2048 to 8192
//! bits with an odd modulus and an odd exponent of 3 to 33 bits; EC points on P-256 or
//! P-384; Ed25519 keys of 32 octets). The `pem` crate reads the PEM text; aws-lc decodes
//! the DER inside it.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use super::keyset::{KeySet, PublicKeyDer, VerificationKey, holds_secret_material};
use crate::algorithm::SigningAlgorithm;
use crate::error::ConfigError;

/// The largest JWK Set read from text or a file: the same cap as a fetched key set's
/// (the default of [`max_response_size`](crate::SmartAuthBuilder::max_response_size)).
const MAX_KEY_SET_BYTES: usize = 1024 * 1024;

/// Signing keys given directly, so the verifier never fetches any: hand them to
/// [`SmartAuthBuilder::static_keys`](crate::SmartAuthBuilder::static_keys).
///
/// Build them from a JWK Set ([`from_jwks_json`](Self::from_jwks_json),
/// [`from_jwks_file`](Self::from_jwks_file)) or from PEM public keys
/// ([`from_pem`](Self::from_pem), then [`and_pem`](Self::and_pem) for more). Every key
/// is checked here, under the same rules as a fetched key, so a key set that cannot verify
/// anything is a [`ConfigError::InvalidStaticKeys`] at start-up, never a surprise at the
/// first request.
///
/// Static keys are never refreshed: a token whose `kid` is not among them is refused at
/// once (401 `invalid_token`), unless a key was given without a `kid`: that one serves
/// tokens whose `kid` no key carries (its family and algorithm still have to fit). To
/// rotate keys, build a new layer.
///
/// ```
/// use smart_auth::{SigningAlgorithm, SmartAuthLayer, StaticKeys};
///
/// let keys = StaticKeys::from_pem(
///     "-----BEGIN PUBLIC KEY-----\n\
///      MCowBQYDK2VwAyEA2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM=\n\
///      -----END PUBLIC KEY-----\n",
///     SigningAlgorithm::EdDSA,
///     Some("signer-2024"),
/// )?;
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .static_keys(keys)
///     .build()?;
/// # Ok::<(), smart_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StaticKeys {
    pub(super) keys: KeySet,
}

fn invalid(reason: &'static str) -> ConfigError {
    ConfigError::InvalidStaticKeys { reason }
}

impl StaticKeys {
    /// Reads a JWK Set document (`{"keys": [...]}`) as a fetched one is read: strict JSON
    /// (a member named twice anywhere is refused), and each key kept only if it is a
    /// signing key this crate can use (`use`, `key_ops` and `alg` are honoured;
    /// unsupported keys are skipped). Stricter than a fetched set, since a set given by
    /// hand that breaks these was pasted from the wrong place: private or symmetric key
    /// material anywhere in it is refused, and so are two different keys under one `kid`
    /// that could both verify some algorithm. At most 1 MiB.
    ///
    /// ```
    /// use smart_auth::StaticKeys;
    ///
    /// let keys = StaticKeys::from_jwks_json(r#"{"keys": [{
    ///     "kty": "OKP", "crv": "Ed25519", "kid": "signer-2024", "alg": "EdDSA",
    ///     "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"
    /// }]}"#)?;
    /// assert_eq!(keys.key_count(), 1);
    ///
    /// assert!(StaticKeys::from_jwks_json(r#"{"keys": []}"#).is_err());
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStaticKeys`] when the text is too long, not a JWK Set, lists
    /// more than 100 keys, holds private or symmetric key material, two keys of one `kid`
    /// that the algorithm cannot tell apart, or no usable key.
    pub fn from_jwks_json(json: &str) -> Result<Self, ConfigError> {
        Self::from_jwks_bytes(json.as_bytes())
    }

    /// Reads a JWK Set from a file, like [`from_jwks_json`](Self::from_jwks_json). At most
    /// 1 MiB is read: a longer file is refused.
    ///
    /// ```no_run
    /// use smart_auth::StaticKeys;
    ///
    /// let keys = StaticKeys::from_jwks_file("/etc/fhir-api/issuer-jwks.json")?;
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStaticKeys`] when the file cannot be opened or read, is
    /// longer than 1 MiB, or is not a JWK Set with a usable key.
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let file = File::open(path).map_err(|_| invalid("the JWK Set file cannot be opened"))?;
        let mut document = Vec::new();
        // One byte past the cap tells a file at the cap from a longer one.
        file.take(MAX_KEY_SET_BYTES as u64 + 1)
            .read_to_end(&mut document)
            .map_err(|_| invalid("the JWK Set file cannot be read"))?;
        Self::from_jwks_bytes(&document)
    }

    fn from_jwks_bytes(document: &[u8]) -> Result<Self, ConfigError> {
        if document.len() > MAX_KEY_SET_BYTES {
            return Err(invalid("the JWK Set is larger than 1 MiB"));
        }
        if holds_secret_material(document) {
            return Err(invalid(
                "the JWK Set holds private or symmetric key material: give its public keys only",
            ));
        }
        let keys = KeySet::parse_whole(document).map_err(|error| invalid(error.reason()))?;
        if keys.has_a_kid_of_two_keys() {
            return Err(invalid(
                "two different keys of the JWK Set have the same kid",
            ));
        }
        Ok(Self { keys })
    }

    /// One PEM public key, for exactly the algorithm `alg`, optionally under a `kid`.
    /// Under a `kid`, tokens naming another `kid` do not use it. Without one, it serves
    /// tokens without a `kid` and tokens whose `kid` no configured key carries (every real
    /// issuer sends a `kid`, and one key configured by hand is meant for all its tokens).
    ///
    /// The PEM text must hold exactly one block: `PUBLIC KEY` (an X.509
    /// SubjectPublicKeyInfo: RSA, EC P-256, P-384 or P-521, or Ed25519) or `RSA PUBLIC KEY`
    /// (PKCS#1). `alg` must fit the key: `RS*`/`PS*` an RSA key, `ES256` P-256, `ES384`
    /// P-384, `ES512` P-521, `EdDSA` or `Ed25519` an Ed25519 key. Private keys and certificates are refused: give the public
    /// key (`openssl pkey -in key.pem -pubout`, `openssl x509 -in cert.pem -pubkey -noout`).
    ///
    /// ```
    /// use smart_auth::{ConfigError, SigningAlgorithm, StaticKeys};
    ///
    /// let pem = "-----BEGIN PUBLIC KEY-----
    /// MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9lgljfY0UE8QlOgGu9AhZ7zCZ9vJ
    /// aAEgQuO39p41e4OMNwJXAOXuIZFiuE8x8QG0junnTRampvduehqWh4HSxA==
    /// -----END PUBLIC KEY-----";
    /// let keys = StaticKeys::from_pem(pem, SigningAlgorithm::ES256, Some("ec-1"))?;
    /// assert_eq!(keys.key_count(), 1);
    ///
    /// // A P-256 key cannot verify ES384 signatures.
    /// let error = StaticKeys::from_pem(pem, SigningAlgorithm::ES384, None).unwrap_err();
    /// assert!(matches!(error, ConfigError::InvalidStaticKeys { .. }));
    /// # Ok::<(), ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidStaticKeys`] when the text is not one PEM public key, the key
    /// breaks the import policy, or `alg` does not fit it.
    pub fn from_pem(
        pem: &str,
        alg: SigningAlgorithm,
        kid: Option<&str>,
    ) -> Result<Self, ConfigError> {
        Self {
            keys: KeySet::default(),
        }
        .and_pem(pem, alg, kid)
    }

    /// These keys and one more PEM public key (see [`from_pem`](Self::from_pem)). The
    /// key may also be added to keys read from a JWK Set.
    ///
    /// ```
    /// use smart_auth::{SigningAlgorithm, StaticKeys};
    ///
    /// let ed25519 = "-----BEGIN PUBLIC KEY-----
    /// MCowBQYDK2VwAyEA2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM=
    /// -----END PUBLIC KEY-----";
    /// let p256 = "-----BEGIN PUBLIC KEY-----
    /// MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9lgljfY0UE8QlOgGu9AhZ7zCZ9vJ
    /// aAEgQuO39p41e4OMNwJXAOXuIZFiuE8x8QG0junnTRampvduehqWh4HSxA==
    /// -----END PUBLIC KEY-----";
    /// let keys = StaticKeys::from_pem(ed25519, SigningAlgorithm::EdDSA, Some("ed-1"))?
    ///     .and_pem(p256, SigningAlgorithm::ES256, Some("ec-1"))?;
    /// assert_eq!(keys.key_count(), 2);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_pem`](Self::from_pem), and [`ConfigError::InvalidStaticKeys`] when a key
    /// already held carries the same `kid`.
    pub fn and_pem(
        mut self,
        pem: &str,
        alg: SigningAlgorithm,
        kid: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let (format, der) = public_key_block(pem).map_err(invalid)?;
        let key = VerificationKey::from_der(&der, format, alg, kid.map(str::to_owned))
            .map_err(invalid)?;
        self.keys.push(key).map_err(invalid)?;
        Ok(self)
    }

    /// How many usable keys these are.
    ///
    /// ```
    /// use smart_auth::StaticKeys;
    /// let keys = StaticKeys::from_jwks_json(
    ///     r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"}]}"#,
    /// )?;
    /// assert_eq!(keys.key_count(), 1);
    /// # Ok::<(), smart_auth::ConfigError>(())
    /// ```
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Whether some key may verify some of `algorithms`.
    pub(crate) fn verifies_any_of(&self, algorithms: &[SigningAlgorithm]) -> bool {
        self.keys.verifies_any_of(algorithms)
    }
}

/// The one public key block of a PEM text (RFC 7468): its form and DER bytes. Text outside
/// the block (explanatory text, RFC 7468 section 5.2) is ignored; any other block, a
/// private key or certificate included, makes the text refused. The `pem` crate reads
/// the armour and the body; the policy is here.
fn public_key_block(text: &str) -> Result<(PublicKeyDer, Vec<u8>), &'static str> {
    let blocks = pem::parse_many(text).map_err(|error| match error {
        pem::PemError::MismatchedTags(..) => "a PEM END line does not match its BEGIN line",
        pem::PemError::InvalidHeader(_) => "the PEM block has headers",
        pem::PemError::InvalidData(_) => "the PEM body is not base64",
        _ => "the PEM framing is malformed",
    })?;
    // The parser stops at a BEGIN line without its END line, and keeps what came before.
    if text.matches("-----BEGIN ").count() > blocks.len() {
        return Err("a PEM block has no END line");
    }
    // The most telling refusal first, whatever the order of the blocks.
    if blocks
        .iter()
        .any(|block| block.tag().contains("PRIVATE KEY"))
    {
        return Err("the PEM text holds a private key: give the public key only");
    }
    if blocks
        .iter()
        .any(|block| block.tag().contains("CERTIFICATE"))
    {
        return Err("the PEM text holds a certificate: give its public key");
    }
    let [block] = blocks.as_slice() else {
        return Err(if blocks.is_empty() {
            "no PEM block found"
        } else {
            "the PEM text holds more than one block: add each key on its own"
        });
    };
    let format = match block.tag() {
        "PUBLIC KEY" => PublicKeyDer::Spki,
        "RSA PUBLIC KEY" => PublicKeyDer::RsaPkcs1,
        _ => return Err("the PEM block is not a PUBLIC KEY or RSA PUBLIC KEY"),
    };
    if block.headers().iter().next().is_some() {
        // RFC 1421 headers (`Proc-Type`, `DEK-Info`): never part of a public key.
        return Err("the PEM block has headers");
    }
    Ok((format, block.contents().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use std::io::Write as _;

    use crate::algorithm::SigningAlgorithm;
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
        ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
        RSA_PSS_SHA384,
    };
    use serde_json::json;

    use super::super::keyset::Selection;

    /// PEM armour around DER, lines of 64 characters (what `openssl` writes).
    fn pem(label: &str, der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn refusal(result: Result<StaticKeys, ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::InvalidStaticKeys { reason }) => reason,
            Err(other) => panic!("another error: {other}"),
            Ok(keys) => panic!("accepted: {keys:?}"),
        }
    }

    /// The one key of `keys` verifies `signature` of `message` under `alg`, and is chosen
    /// for a token with `kid` and `alg`.
    fn verifies(
        keys: &StaticKeys,
        kid: Option<&str>,
        alg: SigningAlgorithm,
        message: &[u8],
        sig: &[u8],
    ) {
        assert_eq!(keys.key_count(), 1);
        assert_eq!(keys.keys.select(kid, alg), Selection::Found(0));
        let key = keys.keys.get(0);
        assert_eq!(key.kid.as_deref(), kid);
        assert!(key.alg.is_some_and(|own| own.same_signature_as(alg)));
        let parsed = key.parsed_for(alg).expect("parsed for its algorithm");
        parsed.verify_sig(message, sig).expect("valid signature");
        assert!(parsed.verify_sig(b"another message", sig).is_err());
    }

    /// A configured set is read whole: one longer than a fetched set's reading is refused,
    /// not cut.
    #[test]
    fn a_configured_set_of_too_many_keys_is_refused() {
        let key = r#"{"kty": "OKP", "crv": "Ed25519", "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"}"#;
        let set = |count: usize| format!(r#"{{"keys": [{}]}}"#, vec![key; count].join(","));
        assert_eq!(
            StaticKeys::from_jwks_json(&set(100)).unwrap().key_count(),
            100
        );
        assert_eq!(
            refusal(StaticKeys::from_jwks_json(&set(101))),
            "the JWK Set lists more than 100 keys"
        );
    }

    #[test]
    fn rsa_spki_and_pkcs1_keys_verify_their_algorithm_only() {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let rng = SystemRandom::new();
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PSS_SHA384, &rng, b"message", &mut signature)
            .unwrap();
        let public = pair.public_key();
        let spki = pem("PUBLIC KEY", public.as_der().unwrap().as_ref());
        let pkcs1 = pem("RSA PUBLIC KEY", public.as_ref());
        for text in [&spki, &pkcs1] {
            let keys = StaticKeys::from_pem(text, SigningAlgorithm::PS384, Some("rsa")).unwrap();
            verifies(
                &keys,
                Some("rsa"),
                SigningAlgorithm::PS384,
                b"message",
                &signature,
            );
            // Only the configured algorithm: not RS384, not PS256.
            let key = keys.keys.get(0);
            assert!(key.parsed_for(SigningAlgorithm::RS384).is_none());
            assert!(key.parsed_for(SigningAlgorithm::PS256).is_none());
            assert_eq!(
                keys.keys.select(Some("rsa"), SigningAlgorithm::RS384),
                Selection::Unusable
            );
        }
        // Each form under the other's label is refused.
        assert_eq!(
            refusal(StaticKeys::from_pem(
                &pem("PUBLIC KEY", public.as_ref()),
                SigningAlgorithm::RS256,
                None
            )),
            "not a DER SubjectPublicKeyInfo"
        );
        assert_eq!(
            refusal(StaticKeys::from_pem(
                &pem("RSA PUBLIC KEY", public.as_der().unwrap().as_ref()),
                SigningAlgorithm::RS256,
                None
            )),
            "not a DER PKCS#1 RSA public key"
        );
    }

    #[test]
    fn ec_and_ed25519_spki_keys_verify() {
        let rng = SystemRandom::new();
        for (signing, alg, jose) in [
            (
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                SigningAlgorithm::ES256,
                SigningAlgorithm::ES256,
            ),
            (
                &ECDSA_P384_SHA384_FIXED_SIGNING,
                SigningAlgorithm::ES384,
                SigningAlgorithm::ES384,
            ),
            (
                &ECDSA_P521_SHA512_FIXED_SIGNING,
                SigningAlgorithm::ES512,
                SigningAlgorithm::ES512,
            ),
        ] {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
            let signature = pair.sign(&rng, b"message").unwrap();
            let text = pem("PUBLIC KEY", pair.public_key().as_der().unwrap().as_ref());
            let keys = StaticKeys::from_pem(&text, alg, None).unwrap();
            verifies(&keys, None, jose, b"message", signature.as_ref());
        }
        let pair = Ed25519KeyPair::generate().unwrap();
        let signature = pair.sign(b"message");
        let text = pem("PUBLIC KEY", pair.public_key().as_der().unwrap().as_ref());
        let keys = StaticKeys::from_pem(&text, SigningAlgorithm::EdDSA, Some("ed")).unwrap();
        verifies(
            &keys,
            Some("ed"),
            SigningAlgorithm::EdDSA,
            b"message",
            signature.as_ref(),
        );
        // Given for RFC 9864's name, the same key verifies under both names.
        let keys = StaticKeys::from_pem(&text, SigningAlgorithm::Ed25519, None).unwrap();
        for jose in [SigningAlgorithm::Ed25519, SigningAlgorithm::EdDSA] {
            verifies(&keys, None, jose, b"message", signature.as_ref());
        }
        // Bare key octets (aws-lc reads them too) are no SubjectPublicKeyInfo.
        let point = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .and_then(|pkcs8| {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                    .map_err(|_| aws_lc_rs::error::Unspecified)
            })
            .unwrap();
        for (bare, alg) in [
            (pair.public_key().as_ref(), SigningAlgorithm::EdDSA),
            (point.public_key().as_ref(), SigningAlgorithm::ES256),
        ] {
            assert_eq!(
                refusal(StaticKeys::from_pem(&pem("PUBLIC KEY", bare), alg, None)),
                "not a DER SubjectPublicKeyInfo"
            );
        }
    }

    #[test]
    fn the_algorithm_must_fit_the_key_type() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let p256 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, p256.as_ref())
            .unwrap()
            .public_key()
            .as_der()
            .unwrap();
        let ed = Ed25519KeyPair::generate()
            .unwrap()
            .public_key()
            .as_der()
            .unwrap();
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048)
            .unwrap()
            .public_key()
            .as_der()
            .unwrap();
        let rows = [
            (p256.as_ref(), SigningAlgorithm::ES384),
            (p256.as_ref(), SigningAlgorithm::RS256),
            (p256.as_ref(), SigningAlgorithm::EdDSA),
            (p256.as_ref(), SigningAlgorithm::ES512),
            (ed.as_ref(), SigningAlgorithm::ES256),
            (ed.as_ref(), SigningAlgorithm::ES512),
            (ed.as_ref(), SigningAlgorithm::PS256),
            (rsa.as_ref(), SigningAlgorithm::ES256),
            (rsa.as_ref(), SigningAlgorithm::EdDSA),
        ];
        for (der, alg) in rows {
            assert_eq!(
                refusal(StaticKeys::from_pem(&pem("PUBLIC KEY", der), alg, None)),
                "alg does not fit the key type",
                "{alg:?}"
            );
        }
    }

    /// `openssl genrsa 1024 | openssl rsa -pubout`: too weak to import.
    const RSA_1024: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCoVi5GBzp4UrHb1PPXL8+wRuU4
sS20pv9jXFmJK0y8huO6jvJr99e1Zqimfb76sSomj3hVPpjKPAy9A8OCjPhu9rIh
CgOmTdnpfmDR6053HGWLpHqWS+Ij8C9yPpDeHB/zCyzWO52HRwloPoq9adyMXPA3
TWiG4kz3FZZ53l9AhwIDAQAB
-----END PUBLIC KEY-----
";

    /// A self-signed P-256 certificate (`openssl req -x509`).
    const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIBbTCCAROgAwIBAgIUdk1cNYpKKUXwQrW8+AZiXiIx8mMwCgYIKoZIzj0EAwIw
DDEKMAgGA1UEAwwBdDAeFw0yNjEyMDUwMTU0MjBaFw0zNjEyMDIwMTU0MjBaMAwx
CjAIBgNVBAMMAXQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT2WCWN9jRQTxCU
6Aa70CFnvMJn28loASBC47f2njV7g4w3AlcA5e4hkWK4TzHxAbSO6edNFqam9256
GpaHgdLEo1MwUTAdBgNVHQ4EFgQU4fnAgtHeHGKQrkUPw5pMaeSD1C0wHwYDVR0j
BBgwFoAU4fnAgtHeHGKQrkUPw5pMaeSD1C0wDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNIADBFAiBpVYdHsYuU5tUfjCaHRvQafwfea5AUS3rgxy1SUFcCEwIh
AP6os53IgFTdn9GFSIRcPlq4KrwFSBA5ErVqjNWxirfI
-----END CERTIFICATE-----
";

    /// The public key of [`CERTIFICATE`].
    const ED25519: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM=
-----END PUBLIC KEY-----
";

    const P256: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9lgljfY0UE8QlOgGu9AhZ7zCZ9vJ
aAEgQuO39p41e4OMNwJXAOXuIZFiuE8x8QG0junnTRampvduehqWh4HSxA==
-----END PUBLIC KEY-----
";

    #[test]
    fn weak_rsa_private_keys_certificates_and_garbage_are_refused() {
        assert_eq!(
            refusal(StaticKeys::from_pem(
                RSA_1024,
                SigningAlgorithm::RS256,
                None
            )),
            "RSA modulus shorter than 2048 bits"
        );
        let rng = SystemRandom::new();
        let private = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let private = pem("PRIVATE KEY", private.as_ref());
        let private_refused = "the PEM text holds a private key: give the public key only";
        let certificate_refused = "the PEM text holds a certificate: give its public key";
        let rows: Vec<(String, &str)> = vec![
            (private.clone(), private_refused),
            // Also next to the public key, in either order.
            (format!("{P256}{private}"), private_refused),
            (format!("{private}{P256}"), private_refused),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----".into(),
                private_refused,
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
                    .into(),
                private_refused,
            ),
            (CERTIFICATE.into(), certificate_refused),
            (format!("{CERTIFICATE}{P256}"), certificate_refused),
            (
                format!("{P256}{P256}"),
                "the PEM text holds more than one block: add each key on its own",
            ),
            (String::new(), "no PEM block found"),
            ("not a key at all".into(), "no PEM block found"),
            (
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA".into(),
                "a PEM block has no END line",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----".into(),
                "a PEM END line does not match its BEGIN line",
            ),
            (
                "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----"
                    .into(),
                "the PEM block is not a PUBLIC KEY or RSA PUBLIC KEY",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----".into(),
                "the PEM body is not base64",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END PUBLIC KEY-----"
                    .into(),
                "the PEM block has headers",
            ),
            (
                // Header-like text without the blank line after it is body text.
                "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END PUBLIC KEY-----"
                    .into(),
                "the PEM body is not base64",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nnot a header\n\nAAAA\n-----END PUBLIC KEY-----".into(),
                "the PEM block has headers",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into(),
                "not a SubjectPublicKeyInfo of an RSA, P-256, P-384, P-521 or Ed25519 key",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----".into(),
                "not a SubjectPublicKeyInfo of an RSA, P-256, P-384, P-521 or Ed25519 key",
            ),
        ];
        for (text, expected) in rows {
            assert_eq!(
                refusal(StaticKeys::from_pem(&text, SigningAlgorithm::ES256, None)),
                expected,
                "{text}"
            );
        }
        // Explanatory text around the block and CRLF line ends are fine.
        let annotated = format!("Issuer signing key\r\n{}", P256.replace('\n', "\r\n"));
        assert!(StaticKeys::from_pem(&annotated, SigningAlgorithm::ES256, None).is_ok());
    }

    #[test]
    fn combined_keys_need_distinct_kids() {
        let keys = StaticKeys::from_pem(P256, SigningAlgorithm::ES256, Some("a"))
            .unwrap()
            .and_pem(RSA_1024, SigningAlgorithm::RS256, Some("b"));
        assert_eq!(refusal(keys), "RSA modulus shorter than 2048 bits");
        let two = StaticKeys::from_pem(P256, SigningAlgorithm::ES256, Some("a"))
            .unwrap()
            .and_pem(P256, SigningAlgorithm::ES256, Some("b"))
            .unwrap();
        assert_eq!(two.key_count(), 2);
        assert_eq!(
            refusal(
                two.clone()
                    .and_pem(P256, SigningAlgorithm::ES256, Some("a"))
            ),
            "two keys have the same kid"
        );
        // Keys without kid may be several; a token without kid is then tried with each
        // fitting key, as with a fetched set.
        let unnamed = two
            .and_pem(P256, SigningAlgorithm::ES256, None)
            .unwrap()
            .and_pem(ED25519, SigningAlgorithm::EdDSA, None)
            .unwrap();
        assert_eq!(
            unnamed.keys.select(None, SigningAlgorithm::EdDSA),
            Selection::Found(3)
        );
        assert_eq!(
            unnamed.keys.select(Some("b"), SigningAlgorithm::ES256),
            Selection::Found(1)
        );
        // A `kid` no key carries: a fetched set's rule finds nothing; configured keys
        // given without a kid serve it, by family and algorithm.
        assert_eq!(
            unnamed.keys.select(Some("c"), SigningAlgorithm::ES256),
            Selection::NotFound
        );
        assert_eq!(
            unnamed
                .keys
                .select_configured(Some("c"), SigningAlgorithm::EdDSA),
            Selection::Found(3)
        );
        assert_eq!(
            unnamed
                .keys
                .select_configured(Some("c"), SigningAlgorithm::ES384),
            Selection::NotFound
        );
        // A named key keeps its own rule: its kid with another algorithm is refused.
        assert_eq!(
            unnamed
                .keys
                .select_configured(Some("a"), SigningAlgorithm::EdDSA),
            Selection::Unusable
        );
        // A PEM key joins a JWK Set's keys too.
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed",
            "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"}]});
        let mixed = StaticKeys::from_jwks_json(&jwks.to_string())
            .unwrap()
            .and_pem(P256, SigningAlgorithm::ES256, Some("ec"))
            .unwrap();
        assert_eq!(mixed.key_count(), 2);
    }

    #[test]
    fn jwks_text_is_read_by_the_fetched_set_rules() {
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed",
            "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"});
        let keys = StaticKeys::from_jwks_json(&json!({"keys": [ed]}).to_string()).unwrap();
        assert_eq!(keys.key_count(), 1);
        assert_eq!(
            keys.keys.select(Some("ed"), SigningAlgorithm::EdDSA),
            Selection::Found(0)
        );
        // Unusable keys are skipped, as in a fetched set.
        let mixed = json!({"keys": [
            ed.clone(),
            {"kty": "OKP", "crv": "Ed25519", "use": "enc",
             "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"},
        ]});
        assert_eq!(
            StaticKeys::from_jwks_json(&mixed.to_string())
                .unwrap()
                .key_count(),
            1
        );
        // Secret material, or one kid for two different keys: a set given by hand that holds
        // them is a mistake, refused rather than half used.
        let secret =
            "the JWK Set holds private or symmetric key material: give its public keys only";
        let other_ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let mut private_ed = ed.clone();
        private_ed["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
        let rows = [
            (r#"{"keys": []}"#.to_owned(), "the JWK Set holds no usable signing key"),
            (r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#.to_owned(), secret),
            (json!({"keys": [ed.clone(), {"kty": "oct", "k": "c2VjcmV0"}]}).to_string(), secret),
            (json!({"keys": [private_ed]}).to_string(), secret),
            // A secret key that also repeats a member: the secret is what the operator
            // must hear about.
            (
                r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a", "kid": "a"}]}"#.to_owned(),
                secret,
            ),
            (
                json!({"keys": [ed.clone(), other_ed]}).to_string(),
                "two different keys of the JWK Set have the same kid",
            ),
            (r#"{"keys": {}}"#.to_owned(), "the JWK Set has no \"keys\" array"),
            (r#"{}"#.to_owned(), "the JWK Set has no \"keys\" array"),
            (String::new(), "the JWK Set is not a JSON object"),
            ("[]".to_owned(), "the JWK Set is not a JSON object"),
            (
                r#"{"keys": [], "keys": [{"kty": "OKP", "crv": "Ed25519", "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"}]}"#.to_owned(),
                "the JWK Set names a member twice",
            ),
            (
                r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "crv": "Ed25519", "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"}]}"#.to_owned(),
                "the JWK Set names a member twice",
            ),
        ];
        for (text, expected) in rows {
            assert_eq!(
                refusal(StaticKeys::from_jwks_json(&text)),
                expected,
                "{text}"
            );
        }
        let padded = format!("{{\"keys\": []{}}}", " ".repeat(MAX_KEY_SET_BYTES));
        assert_eq!(
            refusal(StaticKeys::from_jwks_json(&padded)),
            "the JWK Set is larger than 1 MiB"
        );
    }

    /// A file in the system's temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "smart-auth-static-keys-{}-{name}",
                std::process::id()
            ));
            File::create(&path).unwrap().write_all(contents).unwrap();
            Self(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn jwks_files_are_read_up_to_the_cap() {
        let document = json!({"keys": [{"kty": "OKP", "crv": "Ed25519",
            "x": "2MhTB1eQp5BoeszzRO4Y4EopU2udlilWK4PTUKhYJvM"}]})
        .to_string();
        let file = TempFile::new("ok.json", document.as_bytes());
        assert_eq!(StaticKeys::from_jwks_file(&file.0).unwrap().key_count(), 1);

        // Exactly at the cap is read; one byte more is refused.
        let at_cap = document.clone() + &" ".repeat(MAX_KEY_SET_BYTES - document.len());
        assert_eq!(at_cap.len(), MAX_KEY_SET_BYTES);
        let file = TempFile::new("at-cap.json", at_cap.as_bytes());
        assert_eq!(StaticKeys::from_jwks_file(&file.0).unwrap().key_count(), 1);
        let file = TempFile::new("over-cap.json", format!("{at_cap} ").as_bytes());
        assert_eq!(
            refusal(StaticKeys::from_jwks_file(&file.0)),
            "the JWK Set is larger than 1 MiB"
        );

        // In a directory of this process's own that is never created.
        let missing = std::env::temp_dir()
            .join(format!(
                "smart-auth-static-keys-{}-absent",
                std::process::id()
            ))
            .join("keys.json");
        assert_eq!(
            refusal(StaticKeys::from_jwks_file(missing)),
            "the JWK Set file cannot be opened"
        );
        // A directory opens on Unix but cannot be read.
        assert!(matches!(
            StaticKeys::from_jwks_file(std::env::temp_dir()),
            Err(ConfigError::InvalidStaticKeys { .. })
        ));
    }

    #[test]
    fn messages_never_quote_key_material() {
        let error = StaticKeys::from_pem(RSA_1024, SigningAlgorithm::RS256, None).unwrap_err();
        let text = error.to_string();
        assert_eq!(
            text,
            "invalid static keys: RSA modulus shorter than 2048 bits"
        );
        assert!(!text.contains("MIGf"));
    }
}
