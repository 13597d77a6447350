//! [`ClientKey`]: the private key a backend service signs its assertions with.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::{EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::algorithm::SigningAlgorithm;
use crate::signing::{KeyType, Signer, SigningKey};

/// Why a key could not be made or loaded. It never contains key material.
///
/// ```
/// use smart_auth::SigningAlgorithm;
/// use smart_auth::client::{ClientKey, KeyError};
///
/// let error = ClientKey::from_pkcs8_pem("not a key", SigningAlgorithm::ES384, "k1").unwrap_err();
/// assert_eq!(error, KeyError::Pem("no PEM private key block found"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM text is malformed or holds no private key.
    Pem(&'static str),
    /// The PEM block is a password-protected key; decrypt it first
    /// (`openssl pkey -in key.pem -out plain.pem`).
    Encrypted,
    /// The JWK lacks a member, or a member has the wrong type or size.
    Jwk {
        /// The member, such as `"d"`.
        member: &'static str,
    },
    /// The JWK's `kty`/`crv` is not one this crate signs with (RSA, EC P-256/P-384/P-521,
    /// OKP Ed25519).
    UnsupportedKeyType,
    /// The algorithm does not fit the key, for example `ES384` with a P-256 or an RSA key.
    AlgorithmMismatch {
        /// The algorithm asked for.
        algorithm: SigningAlgorithm,
    },
    /// The cryptographic library refused the key (inconsistent components, an RSA key
    /// under 2048 bits, a wrong curve, corrupt DER).
    Rejected(&'static str),
    /// The key id is empty.
    EmptyKid,
    /// Generating a key, drawing randomness or signing failed inside the cryptographic
    /// library.
    Crypto,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem(reason) => write!(f, "invalid PEM private key: {reason}"),
            Self::Encrypted => f.write_str("encrypted private keys are not supported"),
            Self::Jwk { member } => {
                write!(f, "private JWK member `{member}` is missing or invalid")
            }
            Self::UnsupportedKeyType => {
                f.write_str("unsupported key type (RSA, EC P-256/P-384/P-521 and OKP Ed25519 are)")
            }
            Self::AlgorithmMismatch { algorithm } => {
                write!(f, "algorithm {algorithm} does not fit this key")
            }
            Self::Rejected(reason) => write!(f, "the private key was rejected: {reason}"),
            Self::EmptyKid => f.write_str("the key id (kid) is empty"),
            Self::Crypto => f.write_str("the cryptographic library failed"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A private signing key with its key id (`kid`) and algorithm: what a backend service
/// signs its authentication assertions with. Cheap to clone.
///
/// Register [`public_jwks`](Self::public_jwks) (or a URL serving it) with the
/// authorization server. SMART Backend Services asks clients to support `RS384` and
/// `ES384`; every [`SigningAlgorithm`] works here. `Debug` shows the key id and algorithm,
/// never key material.
///
/// ```
/// use smart_auth::SigningAlgorithm;
/// use smart_auth::client::ClientKey;
///
/// let key = ClientKey::generate(SigningAlgorithm::ES384, "backend-2024")?;
/// assert_eq!(key.kid(), "backend-2024");
/// assert_eq!(key.public_jwk()["crv"], "P-384");
/// assert!(key.public_jwk().get("d").is_none());
/// # Ok::<(), smart_auth::client::KeyError>(())
/// ```
#[derive(Clone)]
pub struct ClientKey {
    inner: Arc<SigningKey>,
    algorithm: SigningAlgorithm,
    /// `x5t#S256` for the assertion header: base64url(SHA-256(certificate DER)).
    certificate_thumbprint: Option<String>,
    /// `x5t` for the assertion header: base64url(SHA-1(certificate DER)), for servers that
    /// know no other.
    legacy_certificate_thumbprint: Option<String>,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.inner.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    fn wrap(signer: Signer, algorithm: SigningAlgorithm, kid: String) -> Result<Self, KeyError> {
        if kid.is_empty() {
            return Err(KeyError::EmptyKid);
        }
        if KeyType::for_algorithm(algorithm) != signer.key_type() {
            return Err(KeyError::AlgorithmMismatch { algorithm });
        }
        Ok(Self {
            inner: Arc::new(SigningKey::new(signer, kid, Some(algorithm))),
            algorithm,
            certificate_thumbprint: None,
            legacy_certificate_thumbprint: None,
        })
    }

    /// A fresh key for `algorithm` (RSA keys are 2048 bits).
    ///
    /// ```
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::client::ClientKey;
    /// let key = ClientKey::generate(SigningAlgorithm::RS384, "rsa-1")?;
    /// assert_eq!(key.public_jwk()["kty"], "RSA");
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::EmptyKid`], or [`KeyError::Crypto`] when the system cannot make a key.
    pub fn generate(algorithm: SigningAlgorithm, kid: impl Into<String>) -> Result<Self, KeyError> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(KeyError::EmptyKid);
        }
        let key = SigningKey::try_generate(KeyType::for_algorithm(algorithm), kid, Some(algorithm))
            .map_err(|_| KeyError::Crypto)?;
        Ok(Self {
            inner: Arc::new(key),
            algorithm,
            certificate_thumbprint: None,
            legacy_certificate_thumbprint: None,
        })
    }

    /// Loads an unencrypted PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`). Other PEM blocks before
    /// the key (such as `EC PARAMETERS`) are skipped.
    ///
    /// ```no_run
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::client::ClientKey;
    ///
    /// // openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out client-key.pem
    /// let pem = std::fs::read_to_string("client-key.pem")?;
    /// let key = ClientKey::from_pkcs8_pem(&pem, SigningAlgorithm::ES384, "backend-2024")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Pem`] or [`KeyError::Encrypted`] for the text,
    /// [`KeyError::AlgorithmMismatch`] or [`KeyError::Rejected`] for the key.
    pub fn from_pkcs8_pem(
        pem: &str,
        algorithm: SigningAlgorithm,
        kid: impl Into<String>,
    ) -> Result<Self, KeyError> {
        let (label, der) = decode_pem(pem)?;
        let key_type = KeyType::for_algorithm(algorithm);
        let mismatch = KeyError::AlgorithmMismatch { algorithm };
        let signer = match (label.as_str(), key_type) {
            ("PRIVATE KEY", _) => return Self::from_pkcs8_der(&der, algorithm, kid),
            ("RSA PRIVATE KEY", KeyType::Rsa) => {
                Signer::Rsa(RsaKeyPair::from_der(&der).map_err(rejected)?)
            }
            ("EC PRIVATE KEY", KeyType::P256 | KeyType::P384 | KeyType::P521) => Signer::Ec(
                EcdsaKeyPair::from_private_key_der(ecdsa(key_type)?, &der).map_err(rejected)?,
            ),
            ("RSA PRIVATE KEY" | "EC PRIVATE KEY", _) => return Err(mismatch),
            _ => return Err(KeyError::Pem("unsupported PEM label")),
        };
        Self::wrap(signer, algorithm, kid.into())
    }

    /// Loads an unencrypted PKCS#8 DER private key.
    ///
    /// ```
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::client::{ClientKey, KeyError};
    /// let error = ClientKey::from_pkcs8_der(&[0x30, 0x00], SigningAlgorithm::ES256, "k").unwrap_err();
    /// assert!(matches!(error, KeyError::Rejected(_)));
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Rejected`] when the bytes are not a PKCS#8 key of the family `algorithm`
    /// needs (or, for EC keys, of its curve).
    pub fn from_pkcs8_der(
        der: &[u8],
        algorithm: SigningAlgorithm,
        kid: impl Into<String>,
    ) -> Result<Self, KeyError> {
        let key_type = KeyType::for_algorithm(algorithm);
        let signer = match key_type {
            KeyType::Rsa => Signer::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
            KeyType::P256 | KeyType::P384 | KeyType::P521 => {
                Signer::Ec(EcdsaKeyPair::from_pkcs8(ecdsa(key_type)?, der).map_err(rejected)?)
            }
            KeyType::Ed25519 => Signer::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?),
        };
        Self::wrap(signer, algorithm, kid.into())
    }

    /// Loads a private JWK: `EC` on `P-256`/`P-384`/`P-521` (`d`, `x`, `y`), `RSA` (`n`, `e`,
    /// `d`, `p`, `q`, `dp`, `dq`, `qi`) or `OKP` `Ed25519` (`d`, `x`). `kid` is
    /// required. The algorithm is the JWK's `alg`, else `ES256`/`ES384`/`ES512` by curve, `RS384`
    /// for RSA and `EdDSA` for Ed25519. A `use` other than `sig` is refused.
    ///
    /// ```
    /// use serde_json::json;
    /// use smart_auth::client::{ClientKey, KeyError};
    ///
    /// let public_only = json!({"kty": "EC", "crv": "P-384", "kid": "k", "x": "AA", "y": "AA"});
    /// assert_eq!(ClientKey::from_jwk(&public_only).unwrap_err(), KeyError::Jwk { member: "d" });
    /// ```
    ///
    /// # Errors
    ///
    /// [`KeyError::Jwk`] naming the first missing or malformed member,
    /// [`KeyError::UnsupportedKeyType`], [`KeyError::AlgorithmMismatch`], or
    /// [`KeyError::Rejected`] when the members do not form a valid key.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let jwk = jwk.as_object().ok_or(KeyError::Jwk { member: "kty" })?;
        let kid = text(jwk, "kid")?.to_owned();
        if jwk.get("use").is_some_and(|usage| usage != "sig") {
            return Err(KeyError::Jwk { member: "use" });
        }
        let (signer, default_alg) = match (text(jwk, "kty")?, jwk.get("crv")) {
            ("EC", Some(crv)) if crv == "P-256" => (ec_from_jwk(jwk, KeyType::P256)?, "ES256"),
            ("EC", Some(crv)) if crv == "P-384" => (ec_from_jwk(jwk, KeyType::P384)?, "ES384"),
            ("EC", Some(crv)) if crv == "P-521" => (ec_from_jwk(jwk, KeyType::P521)?, "ES512"),
            ("OKP", Some(crv)) if crv == "Ed25519" => (ed25519_from_jwk(jwk)?, "EdDSA"),
            ("RSA", _) => (rsa_from_jwk(jwk)?, "RS384"),
            _ => return Err(KeyError::UnsupportedKeyType),
        };
        let alg_name = match jwk.get("alg") {
            None => default_alg,
            Some(Value::String(name)) => name.as_str(),
            Some(_) => return Err(KeyError::Jwk { member: "alg" }),
        };
        let algorithm =
            SigningAlgorithm::from_name(alg_name).ok_or(KeyError::Jwk { member: "alg" })?;
        Self::wrap(signer, algorithm, kid)
    }

    /// The key id, sent as the assertion header's `kid`.
    ///
    /// ```
    /// # use smart_auth::{SigningAlgorithm, client::ClientKey};
    /// let key = ClientKey::generate(SigningAlgorithm::ES256, "k1")?;
    /// assert_eq!(key.kid(), "k1");
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The algorithm assertions are signed with.
    ///
    /// ```
    /// # use smart_auth::{SigningAlgorithm, client::ClientKey};
    /// let key = ClientKey::generate(SigningAlgorithm::ES384, "k1")?;
    /// assert_eq!(key.algorithm(), SigningAlgorithm::ES384);
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// Names the X.509 certificate of this key in every assertion's header: `x5t#S256`,
    /// the base64url SHA-256 of `certificate_der` (RFC 7515 section 4.1.8). Microsoft
    /// Entra ID finds a certificate credential by this thumbprint. `certificate_der` is
    /// the certificate's DER bytes (the base64 body of a PEM `CERTIFICATE` block,
    /// decoded), whose public key is this key's; that is not checked here.
    ///
    /// ```
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::client::ClientKey;
    ///
    /// // let certificate_der = std::fs::read("client-cert.der")?;
    /// # let certificate_der = b"abc";
    /// let key = ClientKey::generate(SigningAlgorithm::RS256, "k1")?
    ///     .with_certificate_thumbprint(certificate_der);
    /// assert_eq!(
    ///     key.certificate_thumbprint(),
    ///     Some("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
    /// );
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn with_certificate_thumbprint(mut self, certificate_der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate_der);
        self.certificate_thumbprint = Some(URL_SAFE_NO_PAD.encode(digest.as_ref()));
        self
    }

    /// Also names the certificate by its SHA-1 thumbprint, `x5t` (RFC 7515 section 4.1.7),
    /// for servers that find a certificate credential by no other: AD FS, older Microsoft
    /// Entra ID setups, Oracle identity domains. SHA-1 is weak for new designs; give
    /// [`with_certificate_thumbprint`](Self::with_certificate_thumbprint) too, and this
    /// only where the server asks for it.
    ///
    /// ```
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::client::ClientKey;
    ///
    /// # let certificate_der = b"abc";
    /// let key = ClientKey::generate(SigningAlgorithm::RS256, "k1")?
    ///     .with_legacy_sha1_certificate_thumbprint(certificate_der);
    /// assert_eq!(
    ///     key.legacy_certificate_thumbprint(),
    ///     Some("qZk-NkcGgWq6PiVxeFDCbJzQ2J0")
    /// );
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn with_legacy_sha1_certificate_thumbprint(mut self, certificate_der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            certificate_der,
        );
        self.legacy_certificate_thumbprint = Some(URL_SAFE_NO_PAD.encode(digest.as_ref()));
        self
    }

    /// The `x5t` the assertions carry, if
    /// [`with_legacy_sha1_certificate_thumbprint`](Self::with_legacy_sha1_certificate_thumbprint)
    /// gave one.
    ///
    /// ```
    /// use smart_auth::SigningAlgorithm;
    /// use smart_auth::client::ClientKey;
    ///
    /// let key = ClientKey::generate(SigningAlgorithm::RS256, "k1")?;
    /// assert_eq!(key.legacy_certificate_thumbprint(), None); // none unless given
    /// # let certificate_der = b"abc";
    /// let key = key.with_legacy_sha1_certificate_thumbprint(certificate_der);
    /// assert_eq!(key.legacy_certificate_thumbprint(), Some("qZk-NkcGgWq6PiVxeFDCbJzQ2J0"));
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn legacy_certificate_thumbprint(&self) -> Option<&str> {
        self.legacy_certificate_thumbprint.as_deref()
    }

    /// The `x5t#S256` the assertions carry, if
    /// [`with_certificate_thumbprint`](Self::with_certificate_thumbprint) gave one.
    ///
    /// ```
    /// # use smart_auth::{SigningAlgorithm, client::ClientKey};
    /// let key = ClientKey::generate(SigningAlgorithm::ES384, "k1")?;
    /// assert_eq!(key.certificate_thumbprint(), None);
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        self.certificate_thumbprint.as_deref()
    }

    /// The public key as a JWK with `kid`, `use: "sig"` and `alg`.
    ///
    /// ```
    /// # use smart_auth::{SigningAlgorithm, client::ClientKey};
    /// let jwk = ClientKey::generate(SigningAlgorithm::ES384, "k1")?.public_jwk();
    /// assert_eq!((&jwk["kid"], &jwk["use"], &jwk["alg"]), (&"k1".into(), &"sig".into(), &"ES384".into()));
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn public_jwk(&self) -> Value {
        self.inner.jwk.clone()
    }

    /// `{"keys": [public_jwk]}`: the JWK Set to register or publish at a `jwks_uri`.
    ///
    /// ```
    /// # use smart_auth::{SigningAlgorithm, client::ClientKey};
    /// let key = ClientKey::generate(SigningAlgorithm::RS384, "k1")?;
    /// assert_eq!(key.public_jwks()["keys"][0], key.public_jwk());
    /// # Ok::<(), smart_auth::client::KeyError>(())
    /// ```
    pub fn public_jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk()] })
    }

    /// Signs `claims` as a compact JWS whose header is `header` plus `alg`.
    pub(crate) fn sign(
        &self,
        header: Map<String, Value>,
        claims: &Value,
    ) -> Result<String, KeyError> {
        self.inner
            .try_compact_jws(self.algorithm, header, claims)
            .map_err(|_| KeyError::Crypto)
    }
}

fn rejected(error: aws_lc_rs::error::KeyRejected) -> KeyError {
    KeyError::Rejected(error.description_())
}

/// aws-lc's signing algorithm for an EC key type (the callers pass EC types only).
fn ecdsa(key_type: KeyType) -> Result<&'static EcdsaSigningAlgorithm, KeyError> {
    key_type.ecdsa().ok_or(KeyError::UnsupportedKeyType)
}

/// The first PEM block whose label ends in `PRIVATE KEY`: its label and DER bytes. The
/// `pem` crate reads the armour, the RFC 1421 headers and the body; an encrypted key
/// (`ENCRYPTED PRIVATE KEY`, or `Proc-Type: 4,ENCRYPTED`) is told apart from a missing one,
/// which is the answer [`KeyError::Encrypted`] exists to give.
fn decode_pem(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let blocks = pem::parse_many(text).map_err(|error| {
        KeyError::Pem(match error {
            pem::PemError::MismatchedTags(..) => "END line does not match BEGIN line",
            pem::PemError::InvalidData(_) => "invalid base64",
            pem::PemError::InvalidHeader(_) => "invalid header",
            _ => "malformed PEM framing",
        })
    })?;
    // The parser stops at a BEGIN line without its END line, and keeps what came before.
    if text.matches("-----BEGIN ").count() > blocks.len() {
        return Err(KeyError::Pem("missing END line"));
    }
    let block = blocks
        .into_iter()
        .find(|block| block.tag().ends_with("PRIVATE KEY"))
        .ok_or(KeyError::Pem("no PEM private key block found"))?;
    let encrypted = block.tag() == "ENCRYPTED PRIVATE KEY"
        || block
            .headers()
            .get("Proc-Type")
            .is_some_and(|value| value.contains("ENCRYPTED"));
    if encrypted {
        return Err(KeyError::Encrypted);
    }
    Ok((block.tag().to_owned(), block.into_contents()))
}

fn text<'a>(jwk: &'a Map<String, Value>, member: &'static str) -> Result<&'a str, KeyError> {
    match jwk.get(member) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        _ => Err(KeyError::Jwk { member }),
    }
}

/// A base64url JWK member as bytes.
fn bytes(jwk: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, KeyError> {
    let value = text(jwk, member)?;
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| KeyError::Jwk { member })
}

fn ec_from_jwk(jwk: &Map<String, Value>, key_type: KeyType) -> Result<Signer, KeyError> {
    let size = key_type.field_size().ok_or(KeyError::UnsupportedKeyType)?;
    // Each number at most the field size; encoders that drop leading zero octets (most
    // P-521 keys, whose top octet is 0 or 1) are padded back, as the verifier does.
    let full = |member: &'static str| -> Result<Vec<u8>, KeyError> {
        let value = bytes(jwk, member)?;
        if value.len() > size {
            return Err(KeyError::Jwk { member });
        }
        let mut padded = vec![0u8; size - value.len()];
        padded.extend_from_slice(&value);
        Ok(padded)
    };
    let (x, y, scalar) = (full("x")?, full("y")?, full("d")?);
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    EcdsaKeyPair::from_private_key_and_public_key(ecdsa(key_type)?, &scalar, &point)
        .map(Signer::Ec)
        .map_err(rejected)
}

fn ed25519_from_jwk(jwk: &Map<String, Value>) -> Result<Signer, KeyError> {
    let x = bytes(jwk, "x")?;
    let d = bytes(jwk, "d")?;
    if x.len() != 32 {
        return Err(KeyError::Jwk { member: "x" });
    }
    if d.len() != 32 {
        return Err(KeyError::Jwk { member: "d" });
    }
    Ed25519KeyPair::from_seed_and_public_key(&d, &x)
        .map(Signer::Ed)
        .map_err(rejected)
}

fn rsa_from_jwk(jwk: &Map<String, Value>) -> Result<Signer, KeyError> {
    if jwk.contains_key("oth") {
        // Multi-prime keys are rare and not supported by the library.
        return Err(KeyError::UnsupportedKeyType);
    }
    // The public parts must not carry leading zero bytes.
    let unsigned = |member| -> Result<Vec<u8>, KeyError> {
        let mut value = bytes(jwk, member)?;
        let zeros = value.iter().take_while(|byte| **byte == 0).count();
        value.drain(..zeros);
        Ok(value)
    };
    let components = KeyPairComponents {
        public_key: PublicKeyComponents {
            n: unsigned("n")?,
            e: unsigned("e")?,
        },
        d: bytes(jwk, "d")?,
        p: bytes(jwk, "p")?,
        q: bytes(jwk, "q")?,
        dP: bytes(jwk, "dp")?,
        dQ: bytes(jwk, "dq")?,
        qInv: bytes(jwk, "qi")?,
    };
    RsaKeyPair::from_components(&components)
        .map(Signer::Rsa)
        .map_err(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn pem_blocks() {
        let der = STANDARD.encode([1u8, 2, 3]);
        let pem = format!(
            "junk\n-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n\
             -----BEGIN EC PRIVATE KEY-----\n{der}\n-----END EC PRIVATE KEY-----\n"
        );
        assert_eq!(
            decode_pem(&pem).unwrap(),
            ("EC PRIVATE KEY".to_owned(), vec![1, 2, 3])
        );
        let crlf = pem.replace('\n', "\r\n");
        assert_eq!(decode_pem(&crlf).unwrap().1, vec![1, 2, 3]);
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----";
        assert_eq!(decode_pem(encrypted).unwrap_err(), KeyError::Encrypted);
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----";
        assert_eq!(decode_pem(legacy).unwrap_err(), KeyError::Encrypted);
        let open = "-----BEGIN PRIVATE KEY-----\nAAAA\n";
        assert_eq!(
            decode_pem(open).unwrap_err(),
            KeyError::Pem("missing END line")
        );
        let bad = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----";
        assert_eq!(
            decode_pem(bad).unwrap_err(),
            KeyError::Pem("invalid base64")
        );
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
        assert_eq!(
            decode_pem(public).unwrap_err(),
            KeyError::Pem("no PEM private key block found")
        );
    }

    #[test]
    fn generated_keys_fit_their_algorithm() {
        for alg in SigningAlgorithm::DEFAULT.iter().copied() {
            let key = ClientKey::generate(alg, "k").unwrap();
            assert_eq!(key.public_jwk()["alg"], alg.name());
            assert!(key.sign(Map::new(), &json!({})).is_ok());
        }
        assert_eq!(
            ClientKey::generate(SigningAlgorithm::ES384, "").unwrap_err(),
            KeyError::EmptyKid
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = ClientKey::generate(SigningAlgorithm::ES256, "k1").unwrap();
        let debug = format!("{key:?}");
        assert_eq!(debug, "ClientKey { kid: \"k1\", algorithm: ES256, .. }");
    }

    /// A private EC JWK whose numbers lost their leading zero octets (most P-521 keys, from
    /// encoders built on big-integer conversions) loads as the full one does.
    #[test]
    fn ec_jwk_numbers_without_leading_zeros_load() {
        use aws_lc_rs::encoding::AsBigEndian as _;
        use aws_lc_rs::signature::{ECDSA_P521_SHA512_FIXED_SIGNING, KeyPair as _};
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        // About half of the P-521 keys have an `x` whose first octet is zero.
        let (x, y, d) = loop {
            let pair = EcdsaKeyPair::generate(&ECDSA_P521_SHA512_FIXED_SIGNING).unwrap();
            let point = pair.public_key().as_ref().to_vec();
            if point[1] == 0 {
                let d = pair.private_key().as_be_bytes().unwrap().as_ref().to_vec();
                break (point[1..67].to_vec(), point[67..].to_vec(), d);
            }
        };
        let stripped = |bytes: &[u8]| {
            let start = bytes
                .iter()
                .position(|octet| *octet != 0)
                .unwrap_or(bytes.len());
            bytes[start..].to_vec()
        };
        let jwk = json!({"kty": "EC", "crv": "P-521", "kid": "k",
            "x": b64(&stripped(&x)), "y": b64(&stripped(&y)), "d": b64(&stripped(&d))});
        let key = ClientKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.algorithm(), SigningAlgorithm::ES512);
        assert_eq!(key.public_jwk()["x"], b64(&x));
        let mut long = jwk.clone();
        long["x"] = json!(b64(&[&[0u8][..], &x].concat()));
        assert_eq!(
            ClientKey::from_jwk(&long).unwrap_err(),
            KeyError::Jwk { member: "x" }
        );
    }

    #[test]
    fn jwk_member_checks() {
        let base = json!({"kty": "EC", "crv": "P-256", "kid": "k",
            "x": URL_SAFE_NO_PAD.encode([1; 33]), "y": "AA", "d": "AA"});
        assert_eq!(
            ClientKey::from_jwk(&base).unwrap_err(),
            KeyError::Jwk { member: "x" }
        );
        let mut no_kid = base.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_eq!(
            ClientKey::from_jwk(&no_kid).unwrap_err(),
            KeyError::Jwk { member: "kid" }
        );
        let secp256k1 = json!({"kty": "EC", "crv": "secp256k1", "kid": "k"});
        assert_eq!(
            ClientKey::from_jwk(&secp256k1).unwrap_err(),
            KeyError::UnsupportedKeyType
        );
        let oct = json!({"kty": "oct", "kid": "k", "k": "AAAA"});
        assert_eq!(
            ClientKey::from_jwk(&oct).unwrap_err(),
            KeyError::UnsupportedKeyType
        );
        let encryption = json!({"kty": "RSA", "kid": "k", "use": "enc"});
        assert_eq!(
            ClientKey::from_jwk(&encryption).unwrap_err(),
            KeyError::Jwk { member: "use" }
        );
        assert_eq!(
            ClientKey::from_jwk(&json!("text")).unwrap_err(),
            KeyError::Jwk { member: "kty" }
        );
    }
}
