//! Parsing a JWK Set into verification keys, and choosing the key for a token.
//!
//! Each JWK is read on its own. A key this crate cannot or must not use (unknown `kty`,
//! `crv` or `alg`, `use` other than `sig`, `key_ops` without `verify`, with a value twice
//! or with a non-signing value beside `use` (RFC 7517 section 4.3), symmetric `oct` keys,
//! keys that carry private parts) is skipped with a debug log; it never makes the whole set
//! fail.
//!
//! Public key values are checked when the set is parsed, not when a token first uses the
//! key, so a malformed key is never in the cache at all:
//!
//! - **RSA**: the modulus `n` must be odd and 2048 to 8192 bits long (shorter is too weak,
//!   RFC 7518 section 3.3; longer, the verifier refuses); the exponent `e` must be odd, at
//!   least 3 and at most 33 bits wide (65537 is 17 bits; a wider exponent only makes
//!   verification slow). Leading zero octets of `n` and `e` are ignored.
//! - **EC** (`P-256`, `P-384`, `P-521`): `x` and `y` must each be at most the curve's
//!   field size (32, 48 or 66 octets, RFC 7518 section 6.2.1.2; a shorter one lost its
//!   leading zero octets and is padded back), both below the field prime, and the point
//!   must be on the named curve. Other curves are not supported.
//! - **OKP** (`Ed25519` only): `x` must be exactly 32 octets, neither a point of small
//!   order (against which a signature made without any key can verify) nor an encoding of
//!   `y` at or above the field prime. Whether other octets decode to a curve point is
//!   checked by each signature verification, which fails if not.
//!
//! Each accepted key is parsed into aws-lc's own form once, here, for every algorithm it
//! may verify (all six RSA algorithms for an RSA key, or only the JWK's own `alg` when it
//! states one); a token's signature is then checked against that parsed key, without
//! reading the key again.
//!
//! The known-answer tests in `keyset/wycheproof.rs` run Project Wycheproof's vectors through
//! this parser and the crate's signature check.

use std::ops::RangeInclusive;

use crate::algorithm::SigningAlgorithm;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::PublicKey as RsaPublicKey;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ECDSA_P521_SHA512_FIXED, ED25519,
    EcdsaVerificationAlgorithm, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512, RsaParameters, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::json::{StrictJsonError, object_with_items_read_alone};

/// The curve or key family of a verification key; it decides which `alg` values fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFamily {
    Rsa,
    P256,
    P384,
    P521,
    Ed25519,
}

impl KeyFamily {
    pub(crate) fn fits(self, alg: SigningAlgorithm) -> bool {
        match self {
            Self::Rsa => matches!(
                alg,
                SigningAlgorithm::RS256
                    | SigningAlgorithm::RS384
                    | SigningAlgorithm::RS512
                    | SigningAlgorithm::PS256
                    | SigningAlgorithm::PS384
                    | SigningAlgorithm::PS512
            ),
            Self::P256 => alg == SigningAlgorithm::ES256,
            Self::P384 => alg == SigningAlgorithm::ES384,
            Self::P521 => alg == SigningAlgorithm::ES512,
            Self::Ed25519 => matches!(alg, SigningAlgorithm::EdDSA | SigningAlgorithm::Ed25519),
        }
    }
}

/// One public key fit for verifying signatures.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) family: KeyFamily,
    /// The JWK's own `alg`, when it states one: then only that algorithm may use the key
    /// (`EdDSA` and `Ed25519` are one, RFC 9864).
    pub(crate) alg: Option<SigningAlgorithm>,
    /// The key parsed once for each algorithm it [accepts](Self::accepts), and for no other.
    parsed: Box<[(SigningAlgorithm, ParsedPublicKey)]>,
}

impl VerificationKey {
    fn accepts(&self, alg: SigningAlgorithm) -> bool {
        self.family.fits(alg) && self.alg.is_none_or(|own| own.same_signature_as(alg))
    }

    /// The parsed key that verifies `alg` signatures, or `None` when this key may not
    /// verify `alg` (another family, or not the JWK's own `alg`).
    pub(crate) fn parsed_for(&self, alg: SigningAlgorithm) -> Option<&ParsedPublicKey> {
        self.parsed
            .iter()
            .find(|(own, _)| own.same_signature_as(alg))
            .map(|(_, key)| key)
    }

    /// The public key's DER `SubjectPublicKeyInfo`, as aws-lc encodes it: equal for equal
    /// keys however the JWK wrote them.
    fn public_key_der(&self) -> Option<Vec<u8>> {
        let (_, key) = self.parsed.first()?;
        key.as_der().ok().map(|der| der.as_ref().to_vec())
    }

    /// Whether `other` is this very key (the same public key; `kid` and `alg` aside).
    pub(crate) fn is_same_key_as(&self, other: &Self) -> bool {
        self.family == other.family
            && self
                .public_key_der()
                .is_some_and(|der| Some(der) == other.public_key_der())
    }
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The usable keys of one JWK Set.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeySet {
    keys: Vec<VerificationKey>,
}

/// The outcome of looking a token's key up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Exactly one key fits.
    Found(usize),
    /// Two to [`MAX_CANDIDATES`] different keys fit (a token without `kid`, or a `kid` the
    /// set gives to several keys): the signature decides, each tried in the set's order.
    Several(Candidates),
    /// No key has this `kid` (or, without `kid`, no key fits `alg`): a refetch may help.
    NotFound,
    /// The keys named by `kid` do not fit `alg`: the token is invalid with this set (the
    /// issuer may reuse the `kid` for a key of another type, so a refetch may help, within
    /// the unknown-`kid` cooldown).
    Unusable,
    /// More than [`MAX_CANDIDATES`] different keys fit: the set cannot tell which key
    /// signed, and trying them all would let one token cost many verifications.
    Ambiguous,
}

/// The most keys one token's signature is tried with, when its header does not tell
/// them apart (no `kid`: AD FS and some libraries; a `kid` shared during a rotation).
/// go-oidc, jose and Spring try every fitting key; a bound keeps a forged token's cost
/// at a few verifications.
pub(crate) const MAX_CANDIDATES: usize = 4;

/// The keys of a set that may have signed a token: indexes into the set, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidates {
    indexes: [usize; MAX_CANDIDATES],
    len: usize,
}

impl Candidates {
    /// One key.
    pub(crate) fn one(index: usize) -> Self {
        Self {
            indexes: [index; MAX_CANDIDATES],
            len: 1,
        }
    }

    /// The indexes, in the set's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.indexes[..self.len].iter().copied()
    }
}

/// How many entries of a JWK Set's `keys` are read: issuers publish a few (two to ten,
/// during a rotation); each RSA key without `alg` is parsed for six algorithms, so a set
/// of thousands would cost seconds per fetch.
pub(crate) const MAX_JWKS_ENTRIES: usize = 100;
const _: () = assert!(
    MAX_JWKS_ENTRIES == 100,
    "KeySetError::TooManyKeys names the bound"
);

/// Why a document is not a JWK Set at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySetError {
    NotJson,
    /// The set object names a member twice (or, in a configured set, any object of the
    /// document does): which value a reader takes is not defined, so the document is
    /// refused (RFC 8725 section 3.1). A fetched set's key that repeats a member is skipped
    /// alone.
    DuplicateMember,
    NoKeysArray,
    NoUsableKey,
    /// More than [`MAX_JWKS_ENTRIES`] entries, where all must be read (a configured set).
    TooManyKeys,
}

impl KeySetError {
    /// What is wrong, in words (no part of the document).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::NotJson => "the JWK Set is not a JSON object",
            Self::DuplicateMember => "the JWK Set names a member twice",
            Self::NoKeysArray => "the JWK Set has no \"keys\" array",
            Self::NoUsableKey => "the JWK Set holds no usable signing key",
            Self::TooManyKeys => "the JWK Set lists more than 100 keys",
        }
    }
}

impl std::fmt::Display for KeySetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl KeySet {
    /// Parses a JWK Set document, keeping the keys that can verify signatures. A key that
    /// names a member twice (at any depth) is skipped like any other key that cannot be
    /// used (RFC 7517 sections 4 and 5); a set object that names a member twice (two
    /// `keys`) is refused whole. Only the first [`MAX_JWKS_ENTRIES`] entries are read.
    pub(crate) fn parse(document: &[u8]) -> Result<Self, KeySetError> {
        Self::parse_entries(document, false)
    }

    /// [`KeySet::parse`] for a set the operator configured, which is refused rather than
    /// cut when it lists more than [`MAX_JWKS_ENTRIES`] entries, and refused whole when a
    /// key names a member twice.
    pub(crate) fn parse_whole(document: &[u8]) -> Result<Self, KeySetError> {
        Self::parse_entries(document, true)
    }

    fn parse_entries(document: &[u8], whole: bool) -> Result<Self, KeySetError> {
        let document =
            object_with_items_read_alone(document, "keys", MAX_JWKS_ENTRIES).map_err(|error| {
                match error {
                    StrictJsonError::DuplicateMember => KeySetError::DuplicateMember,
                    StrictJsonError::NotAnObject => KeySetError::NotJson,
                }
            })?;
        let Some(entries) = document.items else {
            return Err(KeySetError::NoKeysArray);
        };
        if document.items_skipped > 0 {
            if whole {
                return Err(KeySetError::TooManyKeys);
            }
            tracing::warn!(
                entries = entries.len() + document.items_skipped,
                read = MAX_JWKS_ENTRIES,
                "the JWK Set lists more keys than are read: the rest are skipped"
            );
        }
        let mut keys = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let parsed = match entry {
                // A set the operator configured is refused rather than cut.
                entry if entry.repeats_a_member && whole => {
                    return Err(KeySetError::DuplicateMember);
                }
                entry if entry.repeats_a_member => Err("names a member twice"),
                entry => parse_jwk(&entry.value),
            };
            match parsed {
                Ok(key) => keys.push(key),
                Err(reason) => tracing::debug!(index, reason, "skipping a JWK"),
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether some key of the set may verify some of `algorithms`.
    pub(crate) fn verifies_any_of(&self, algorithms: &[SigningAlgorithm]) -> bool {
        self.keys
            .iter()
            .any(|key| algorithms.iter().any(|alg| key.accepts(*alg)))
    }

    /// The set with `key` added, unless a key of the set already carries `key`'s `kid`.
    pub(crate) fn push(&mut self, key: VerificationKey) -> Result<(), &'static str> {
        if key.kid.is_some() && self.keys.iter().any(|other| other.kid == key.kid) {
            return Err("two keys have the same kid");
        }
        self.keys.push(key);
        Ok(())
    }

    pub(crate) fn get(&self, index: usize) -> &VerificationKey {
        &self.keys[index]
    }

    /// Whether two different keys carry the same `kid` and would both verify some
    /// algorithm (the same key listed twice, with and without its `alg`, is one key; an
    /// RSA and an EC key under one `kid` are told apart by the token's `alg`): a token of
    /// that algorithm naming that `kid` could use neither.
    pub(crate) fn has_a_kid_of_two_keys(&self) -> bool {
        self.keys.iter().enumerate().any(|(at, key)| {
            key.kid.is_some()
                && self.keys[..at].iter().any(|earlier| {
                    earlier.kid == key.kid
                        && !earlier.is_same_key_as(key)
                        && SigningAlgorithm::DEFAULT
                            .iter()
                            .any(|alg| earlier.accepts(*alg) && key.accepts(*alg))
                })
        })
    }

    /// The keys' `kid`s, in order (keys without one are left out).
    #[cfg(feature = "dev-server")]
    pub(crate) fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|key| key.kid.as_deref())
    }

    /// Chooses the key for a token with this `kid` and `alg`.
    ///
    /// With a `kid`, the key must carry that `kid`; without one, any key of the set that
    /// fits `alg` may have signed (RFC 7515 makes `kid` optional). The same public key
    /// listed twice (RFC 7517 makes distinct `kid`s only a SHOULD; some issuers repeat a
    /// key, with and without its `alg`) is one key; different keys that fit are
    /// [`Selection::Several`] candidates, up to [`MAX_CANDIDATES`].
    pub(crate) fn select(&self, kid: Option<&str>, alg: SigningAlgorithm) -> Selection {
        self.select_among(alg, kid.is_some(), |key| match kid {
            Some(kid) => key.kid.as_deref() == Some(kid),
            None => true,
        })
    }

    /// [`KeySet::select`] for keys the operator configured: a key given without a `kid`
    /// (a PEM key) also serves tokens whose `kid` no key of the set carries, as a verifier
    /// with one configured key ignores `kid`. Its family and `alg` must still fit.
    pub(crate) fn select_configured(&self, kid: Option<&str>, alg: SigningAlgorithm) -> Selection {
        match self.select(kid, alg) {
            Selection::NotFound if kid.is_some() => {
                self.select_among(alg, false, |key| key.kid.is_none())
            }
            selection => selection,
        }
    }

    /// The different keys among those `candidate` picks that fit `alg`. `by_kid`: the
    /// candidates are the keys a token's `kid` names, so that none of them fitting is
    /// `Unusable` (the key is known, the algorithm is not its own) rather than `NotFound`.
    fn select_among(
        &self,
        alg: SigningAlgorithm,
        by_kid: bool,
        candidate: impl Fn(&VerificationKey) -> bool,
    ) -> Selection {
        let mut found = Candidates {
            indexes: [0; MAX_CANDIDATES],
            len: 0,
        };
        let mut named = false;
        for (index, key) in self.keys.iter().enumerate() {
            if !candidate(key) {
                continue;
            }
            named = by_kid;
            if !key.accepts(alg) || found.iter().any(|seen| self.keys[seen].is_same_key_as(key)) {
                continue;
            }
            if found.len == MAX_CANDIDATES {
                return Selection::Ambiguous;
            }
            found.indexes[found.len] = index;
            found.len += 1;
        }
        match found.len {
            0 if named => Selection::Unusable,
            0 => Selection::NotFound,
            1 => Selection::Found(found.indexes[0]),
            _ => Selection::Several(found),
        }
    }

    /// A digest of the usable keys, whatever their order in the document and however the
    /// document is spaced: each key's `kid`, `alg` and public key, sorted. An issuer whose
    /// servers list the same keys in another order gives the same fingerprint.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut entries: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|key| {
                let mut entry = Vec::new();
                for part in [
                    key.kid.as_deref().unwrap_or("\0none").as_bytes(),
                    key.alg
                        .map_or_else(|| "any".to_owned(), |alg| format!("{alg:?}"))
                        .as_bytes(),
                ] {
                    entry.extend_from_slice(&(part.len() as u64).to_be_bytes());
                    entry.extend_from_slice(part);
                }
                entry.extend_from_slice(&key.public_key_der().unwrap_or_default());
                entry
            })
            .collect();
        entries.sort();
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for entry in &entries {
            context.update(&(entry.len() as u64).to_be_bytes());
            context.update(entry);
        }
        let mut digest = [0; 32];
        digest.copy_from_slice(context.finish().as_ref());
        digest
    }
}

/// JWK members that hold private or symmetric key material (RFC 7517, RFC 7518 section
/// 6): the private members of an asymmetric key, then a symmetric key's `k`.
pub(crate) const SECRET_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The private members of an asymmetric key ([`SECRET_MEMBERS`] but `k`: a symmetric key
/// is skipped by its `kty` anyway).
const PRIVATE_MEMBERS: &[&str] = match SECRET_MEMBERS.split_last() {
    Some((_symmetric, private)) => private,
    None => &[],
};

/// Whether a JWK Set document names private or symmetric key material in any key (a key
/// set given by hand that holds it was pasted from the wrong place; such keys are skipped
/// when fetched, refused when configured). `false` for what is no JWK Set.
pub(crate) fn holds_secret_material(document: &[u8]) -> bool {
    let Ok(set) = object_with_items_read_alone(document, "keys", MAX_JWKS_ENTRIES) else {
        return false;
    };
    let Some(keys) = set.items else {
        return false;
    };
    // Keys that repeat a member count too: such a set is refused either way, and this is
    // the message the operator needs.
    keys.iter().any(|key| {
        key.value.as_object().is_some_and(|key| {
            SECRET_MEMBERS
                .iter()
                .any(|member| key.contains_key(*member))
        })
    })
}

fn parse_jwk(entry: &Value) -> Result<VerificationKey, &'static str> {
    let Value::Object(jwk) = entry else {
        return Err("not a JSON object");
    };
    if PRIVATE_MEMBERS
        .iter()
        .any(|member| jwk.contains_key(*member))
    {
        return Err("holds private key material");
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("kid is not a string"),
    };
    match jwk.get("use") {
        None => {}
        Some(Value::String(usage)) if usage == "sig" => {}
        Some(_) => return Err("not a signing key (use)"),
    }
    match jwk.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|op| op == "verify") => {
            // RFC 7517 §4.3: no value twice, and with `use` beside it, nothing `sig` does
            // not mean (signing operations only).
            let mut seen = std::collections::HashSet::new();
            for op in ops {
                let Value::String(op) = op else {
                    return Err("key_ops holds a value that is not a string");
                };
                if !seen.insert(op.as_str()) {
                    return Err("key_ops repeats a value");
                }
                if jwk.contains_key("use") && !matches!(op.as_str(), "sign" | "verify") {
                    return Err("key_ops disagrees with use");
                }
            }
        }
        Some(_) => return Err("key_ops does not allow verify"),
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(alg)) => {
            Some(SigningAlgorithm::from_name(alg).ok_or("unsupported alg")?)
        }
        Some(_) => return Err("alg is not a string"),
    };
    let parsed = match string_member(jwk, "kty")? {
        "RSA" => rsa_key(&decode_member(jwk, "n")?, &decode_member(jwk, "e")?, alg)?,
        "EC" => ec_key(
            string_member(jwk, "crv")?,
            &decode_member(jwk, "x")?,
            &decode_member(jwk, "y")?,
            alg,
        )?,
        "OKP" => {
            if string_member(jwk, "crv")? != "Ed25519" {
                return Err("unsupported OKP curve");
            }
            ed25519_key(&decode_member(jwk, "x")?, alg)?
        }
        "oct" => return Err("symmetric key"),
        _ => return Err("unsupported kty"),
    };
    Ok(VerificationKey {
        kid,
        family: parsed.family,
        alg,
        parsed: parsed.keys,
    })
}

/// How a DER public key given outside a JWK Set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublicKeyDer {
    /// An X.509 `SubjectPublicKeyInfo` (RFC 5280 section 4.1): RSA, P-256, P-384, P-521 or
    /// Ed25519.
    Spki,
    /// A PKCS#1 `RSAPublicKey` (RFC 8017 appendix A.1.1).
    RsaPkcs1,
}

impl VerificationKey {
    /// A public key given as DER for exactly one algorithm, `alg`: the same key, checked
    /// under the same import policy, as a JWK with this `alg` and `kid` would give. aws-lc
    /// decodes the DER, and the DER must be exactly what aws-lc encodes for that key
    /// (canonical, and of the stated form: an SPKI is not taken for PKCS#1 or for a bare
    /// curve point, nor the other way round). RSA keys go through the JWK path from their
    /// `n` and `e`, so their size and exponent rules are the very same.
    pub(crate) fn from_der(
        der: &[u8],
        format: PublicKeyDer,
        alg: SigningAlgorithm,
        kid: Option<String>,
    ) -> Result<Self, &'static str> {
        let parsed = match format {
            PublicKeyDer::RsaPkcs1 => {
                let key = RsaPublicKey::from_der(der)
                    .ok()
                    .filter(|key| key.as_ref() == der)
                    .ok_or("not a DER PKCS#1 RSA public key")?;
                rsa_der_key(&key, alg)?
            }
            PublicKeyDer::Spki => spki_key(der, alg)?,
        };
        Ok(Self {
            kid,
            family: parsed.family,
            alg: Some(alg),
            parsed: parsed.keys,
        })
    }
}

/// An RSA key decoded by aws-lc, checked and parsed like a JWK's `n` and `e`.
fn rsa_der_key(key: &RsaPublicKey, alg: SigningAlgorithm) -> Result<ParsedKey, &'static str> {
    if !KeyFamily::Rsa.fits(alg) {
        return Err("alg does not fit the key type");
    }
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(key);
    rsa_key(&components.n, &components.e, Some(alg))
}

/// A `SubjectPublicKeyInfo` of one of the supported key types, for `alg`.
fn spki_key(der: &[u8], alg: SigningAlgorithm) -> Result<ParsedKey, &'static str> {
    /// Whether aws-lc encodes the key as exactly these bytes.
    fn canonical(key: &impl AsDer<PublicKeyX509Der<'static>>, der: &[u8]) -> bool {
        key.as_der().is_ok_and(|encoded| encoded.as_ref() == der)
    }
    if let Ok(key) = RsaPublicKey::from_der(der) {
        if !canonical(&key, der) {
            return Err("not a DER SubjectPublicKeyInfo");
        }
        return rsa_der_key(&key, alg);
    }
    let curves: [(
        KeyFamily,
        SigningAlgorithm,
        &'static EcdsaVerificationAlgorithm,
    ); 3] = [
        (
            KeyFamily::P256,
            SigningAlgorithm::ES256,
            &ECDSA_P256_SHA256_FIXED,
        ),
        (
            KeyFamily::P384,
            SigningAlgorithm::ES384,
            &ECDSA_P384_SHA384_FIXED,
        ),
        (
            KeyFamily::P521,
            SigningAlgorithm::ES512,
            &ECDSA_P521_SHA512_FIXED,
        ),
    ];
    for (family, jose, algorithm) in curves {
        // aws-lc checks the named curve and that the point is on it (as for a JWK).
        if let Ok(key) = ParsedPublicKey::new(algorithm, der) {
            if !canonical(&key, der) {
                return Err("not a DER SubjectPublicKeyInfo");
            }
            check_alg_fits(family, Some(alg))?;
            return Ok(ParsedKey {
                family,
                keys: Box::new([(jose, key)]),
            });
        }
    }
    // Ed25519 last: aws-lc also reads 32 bare octets as a key, which `canonical` refuses.
    if let Ok(key) = ParsedPublicKey::new(&ED25519, der) {
        if !canonical(&key, der) {
            return Err("not a DER SubjectPublicKeyInfo");
        }
        // A canonical Ed25519 SubjectPublicKeyInfo ends with the 32 octets of the key.
        let encoded = der
            .len()
            .checked_sub(32)
            .and_then(|start| <&[u8; 32]>::try_from(&der[start..]).ok());
        if encoded.is_none_or(is_degenerate_ed25519) {
            return Err("Ed25519 key of small order or not canonical");
        }
        check_alg_fits(KeyFamily::Ed25519, Some(alg))?;
        return Ok(ParsedKey {
            family: KeyFamily::Ed25519,
            keys: Box::new([(SigningAlgorithm::EdDSA, key)]),
        });
    }
    Err("not a SubjectPublicKeyInfo of an RSA, P-256, P-384, P-521 or Ed25519 key")
}

/// A public key checked and parsed for the algorithms its family and the JWK's `alg` allow.
struct ParsedKey {
    family: KeyFamily,
    keys: Box<[(SigningAlgorithm, ParsedPublicKey)]>,
}

/// Refuses a JWK whose own `alg` names an algorithm of another key family.
fn check_alg_fits(family: KeyFamily, alg: Option<SigningAlgorithm>) -> Result<(), &'static str> {
    if alg.is_some_and(|alg| !family.fits(alg)) {
        return Err("alg does not fit the key type");
    }
    Ok(())
}

/// The algorithms, of those `family` fits, that a key with the JWK's `alg` may verify.
fn usable_algorithms(
    family: KeyFamily,
    alg: Option<SigningAlgorithm>,
) -> impl Iterator<Item = SigningAlgorithm> {
    ALGORITHMS.into_iter().filter(move |candidate| {
        family.fits(*candidate) && alg.is_none_or(|own| own.same_signature_as(*candidate))
    })
}

/// Every asymmetric algorithm this crate verifies, in the order keys are parsed for them
/// (`Ed25519` is verified with the key parsed for `EdDSA`, the same signature).
const ALGORITHMS: [SigningAlgorithm; 10] = [
    SigningAlgorithm::RS256,
    SigningAlgorithm::RS384,
    SigningAlgorithm::RS512,
    SigningAlgorithm::PS256,
    SigningAlgorithm::PS384,
    SigningAlgorithm::PS512,
    SigningAlgorithm::ES256,
    SigningAlgorithm::ES384,
    SigningAlgorithm::ES512,
    SigningAlgorithm::EdDSA,
];

/// aws-lc's parameters for an RSA algorithm: PKCS#1 v1.5 or PSS (salt as long as the
/// hash, RFC 7518 section 3.5) with the algorithm's hash, for moduli of 2048 to 8192 bits.
fn rsa_parameters(alg: SigningAlgorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        SigningAlgorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        SigningAlgorithm::RS384 => &RSA_PKCS1_2048_8192_SHA384,
        SigningAlgorithm::RS512 => &RSA_PKCS1_2048_8192_SHA512,
        SigningAlgorithm::PS256 => &RSA_PSS_2048_8192_SHA256,
        SigningAlgorithm::PS384 => &RSA_PSS_2048_8192_SHA384,
        SigningAlgorithm::PS512 => &RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// RSA modulus sizes this crate verifies with, in bits.
pub(crate) const RSA_MODULUS_BITS: RangeInclusive<usize> = 2048..=8192;
/// The widest RSA public exponent accepted, in bits.
const RSA_EXPONENT_MAX_BITS: usize = 33;

/// An RSA public key from its big-endian modulus and exponent, checked as the module docs
/// say, parsed for each RSA algorithm the JWK's `alg` allows.
fn rsa_key(n: &[u8], e: &[u8], alg: Option<SigningAlgorithm>) -> Result<ParsedKey, &'static str> {
    let n = without_leading_zeros(n);
    let e = without_leading_zeros(e);
    let modulus_bits = bit_length(n);
    if modulus_bits < *RSA_MODULUS_BITS.start() {
        return Err("RSA modulus shorter than 2048 bits");
    }
    if modulus_bits > *RSA_MODULUS_BITS.end() {
        return Err("RSA modulus longer than 8192 bits");
    }
    if !is_odd(n) {
        return Err("even RSA modulus");
    }
    if !is_odd(e) {
        return Err("RSA exponent zero or even");
    }
    if bit_length(e) < 2 {
        return Err("RSA exponent of 1");
    }
    if bit_length(e) > RSA_EXPONENT_MAX_BITS {
        return Err("RSA exponent wider than 33 bits");
    }
    check_alg_fits(KeyFamily::Rsa, alg)?;
    let components = RsaPublicKeyComponents { n, e };
    let keys = usable_algorithms(KeyFamily::Rsa, alg)
        .map(|alg| {
            let parameters = rsa_parameters(alg).ok_or("alg does not fit the key type")?;
            let key = components
                .to_parsed_public_key(parameters)
                .map_err(|_| "RSA key refused by the crypto library")?;
            Ok((alg, key))
        })
        .collect::<Result<_, &'static str>>()?;
    Ok(ParsedKey {
        family: KeyFamily::Rsa,
        keys,
    })
}

/// An EC public key on a named curve: coordinates of at most the field size (shorter ones
/// padded with leading zeros), forming a point on that curve. It verifies the fixed-length `r || s` signatures of RFC 7518 section
/// 3.4, never DER.
fn ec_key(
    crv: &str,
    x: &[u8],
    y: &[u8],
    alg: Option<SigningAlgorithm>,
) -> Result<ParsedKey, &'static str> {
    let (family, size, jose, algorithm) = match crv {
        "P-256" => (
            KeyFamily::P256,
            32,
            SigningAlgorithm::ES256,
            &ECDSA_P256_SHA256_FIXED,
        ),
        "P-384" => (
            KeyFamily::P384,
            48,
            SigningAlgorithm::ES384,
            &ECDSA_P384_SHA384_FIXED,
        ),
        "P-521" => (
            KeyFamily::P521,
            66,
            SigningAlgorithm::ES512,
            &ECDSA_P521_SHA512_FIXED,
        ),
        _ => return Err("unsupported EC curve"),
    };
    // RFC 7518 section 6.2.1.2 wants each coordinate at the full field size, but encoders
    // built on big-integer conversions drop leading zero octets (Keycloak before 20, jjwt
    // 0.12; about one key in 128 on P-256 and P-384, most P-521 keys): such a coordinate
    // is padded back with zeros. A longer or empty one is refused. aws-lc checks the point
    // either way.
    let fits = |coordinate: &[u8]| (1..=size).contains(&coordinate.len());
    if !fits(x) || !fits(y) {
        return Err("EC coordinates of the wrong length");
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    for coordinate in [x, y] {
        point.resize(point.len() + size - coordinate.len(), 0);
        point.extend_from_slice(coordinate);
    }
    // aws-lc refuses coordinates at or above the field prime and points off the curve.
    let key =
        ParsedPublicKey::new(algorithm, &point).map_err(|_| "EC point not on the named curve")?;
    // The curve decides the one algorithm; the JWK's `alg`, if any, must be that one.
    check_alg_fits(family, alg)?;
    Ok(ParsedKey {
        family,
        keys: Box::new([(jose, key)]),
    })
}

/// An Ed25519 public key: exactly 32 octets, kept as aws-lc reads them (whether they encode
/// a curve point is up to each verification), except the encodings that no signature should
/// be checked against: a point of small order, or a `y` coordinate at or above the field
/// prime (see [`is_degenerate_ed25519`]).
fn ed25519_key(x: &[u8], alg: Option<SigningAlgorithm>) -> Result<ParsedKey, &'static str> {
    let Ok(encoded) = <&[u8; 32]>::try_from(x) else {
        return Err("Ed25519 key of the wrong length");
    };
    if is_degenerate_ed25519(encoded) {
        return Err("Ed25519 key of small order or not canonical");
    }
    check_alg_fits(KeyFamily::Ed25519, alg)?;
    let key = ParsedPublicKey::new(&ED25519, x).map_err(|_| "Ed25519 key refused")?;
    Ok(ParsedKey {
        family: KeyFamily::Ed25519,
        keys: Box::new([(SigningAlgorithm::EdDSA, key)]),
    })
}

/// Whether an encoded Ed25519 public key is one against which signatures can be forged
/// without the private key: a point of small order (the identity, the point of order 2, the
/// points of order 4 and 8; `[k]A` is then one of eight points whatever the message, so a
/// signature made without any key verifies for every message or for one in eight), or a
/// non-canonical encoding (`y` at or above `p = 2^255 - 19`, which names a point that has a
/// canonical encoding too). RFC 8032 leaves such keys to the verifier; aws-lc verifies
/// against them. They are the Ed25519 counterpart of an RSA exponent of 1.
fn is_degenerate_ed25519(encoded: &[u8; 32]) -> bool {
    /// The `y` coordinates (little-endian, sign bit clear) of the points of order 1, 2, 4
    /// and 8: 1, p - 1, 0, and the two of order 8.
    const SMALL_ORDER_Y: [[u8; 32]; 5] = [
        [
            0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0,
        ],
        [
            0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0x7f,
        ],
        [0; 32],
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
    ];
    let mut y = *encoded;
    y[31] &= 0x7f;
    // p - 1 = 0x7fff...ffec: y >= p when every byte above the lowest is all ones (the top
    // one 0x7f) and the lowest is at least 0xed.
    let at_or_above_p = y[0] >= 0xed && y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f;
    at_or_above_p || SMALL_ORDER_Y.contains(&y)
}

fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// The number of significant bits of a big-endian integer without leading zero octets.
fn bit_length(bytes: &[u8]) -> usize {
    bytes
        .first()
        .map_or(0, |first| bytes.len() * 8 - first.leading_zeros() as usize)
}

fn is_odd(bytes: &[u8]) -> bool {
    bytes.last().is_some_and(|last| last & 1 == 1)
}

fn string_member<'a>(
    jwk: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, &'static str> {
    jwk.get(name).and_then(Value::as_str).ok_or(name)
}

/// A key member's bytes: base64url without padding (RFC 7515 section 2), or with exactly
/// the `=` padding a padded encoder writes (Cloud Foundry UAA and some Keycloak test kits
/// do; no signature covers a key member's spelling). Any other padding is no base64url.
fn decode_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, &'static str> {
    let text = string_member(jwk, name)?;
    let unpadded = text.trim_end_matches('=');
    let padding = text.len() - unpadded.len();
    if padding != 0 && padding != (4 - unpadded.len() % 4) % 4 {
        return Err("a key member is not base64url");
    }
    URL_SAFE_NO_PAD
        .decode(unpadded)
        .map_err(|_| "a key member is not base64url")
}

#[cfg(test)]
mod wycheproof;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        KeyPair as _,
    };
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": b64(&[0xc5; 256]), "e": "AQAB"})
    }

    /// A JWK for another RSA key than [`rsa`]'s.
    fn other_rsa(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": b64(&[0xc7; 256]), "e": "AQAB"})
    }

    /// A JWK for a freshly generated key on `crv` (`P-256` or `P-384`).
    fn ec(kid: &str, crv: &str) -> Value {
        let signing = match crv {
            "P-256" => &ECDSA_P256_SHA256_FIXED_SIGNING,
            _ => &ECDSA_P384_SHA384_FIXED_SIGNING,
        };
        let pair = EcdsaKeyPair::generate(signing).unwrap();
        // An uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let size = (point.len() - 1) / 2;
        json!({"kty": "EC", "kid": kid, "crv": crv,
            "x": b64(&point[1..=size]), "y": b64(&point[1 + size..])})
    }

    fn set(keys: Vec<Value>) -> Result<KeySet, KeySetError> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    /// Only the first [`MAX_JWKS_ENTRIES`] entries are read, usable or not: a huge set
    /// costs no more parsing than that.
    #[test]
    fn reads_at_most_the_first_entries() {
        let filler = |count: usize| {
            (0..count)
                .map(|i| json!({"kty": "oct", "kid": format!("f{i}"), "k": "c2VjcmV0"}))
                .collect::<Vec<_>>()
        };
        let mut last_read = filler(MAX_JWKS_ENTRIES - 1);
        last_read.push(rsa("read"));
        last_read.extend(filler(5_000));
        let keys = set(last_read).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys.select(Some("read"), SigningAlgorithm::RS256),
            Selection::Found(0)
        );
        let mut first_skipped = filler(MAX_JWKS_ENTRIES);
        first_skipped.push(rsa("skipped"));
        assert_eq!(set(first_skipped).unwrap_err(), KeySetError::NoUsableKey);
        let usable: Vec<Value> = (0..MAX_JWKS_ENTRIES + 20)
            .map(|i| rsa(&format!("k{i}")))
            .collect();
        assert_eq!(set(usable).unwrap().len(), MAX_JWKS_ENTRIES);
    }

    #[test]
    fn skips_unusable_keys_and_keeps_the_rest() {
        let keys = set(vec![
            json!({"kty": "AKP", "kid": "pq", "alg": "ML-DSA-65", "pub": "AAAA"}),
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            json!({"kty": "RSA", "kid": "priv", "n": b64(&[0xc5; 256]), "e": "AQAB", "d": "AQAB"}),
            json!({"kty": "RSA", "kid": "short", "n": b64(&[0xc5; 128]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "ops2", "key_ops": ["verify", "verify"], "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "ops3", "key_ops": ["verify", 1], "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "ops4", "use": "sig", "key_ops": ["verify", "encrypt"], "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "ops5", "key_ops": "verify", "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "hs", "alg": "HS256", "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "mismatch", "alg": "ES256", "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": b64(&[1; 66]), "y": b64(&[2; 66])}),
            json!({"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": b64(&[1; 32]), "y": b64(&[2; 32])}),
            json!({"kty": "EC", "kid": "badlen", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[2; 32])}),
            json!({"kty": "OKP", "kid": "ed448", "crv": "Ed448", "x": b64(&[1; 57])}),
            json!({"kty": "RSA", "kid": 7, "n": b64(&[0xc5; 256]), "e": "AQAB"}),
            json!("not an object"),
            rsa("good"),
            ec("p256", "P-256"),
            json!({"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(&[3; 32])}),
        ])
        .unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            keys.select(Some("good"), SigningAlgorithm::RS256),
            Selection::Found(0)
        );
        // `use` and signing `key_ops` together agree.
        let mut agreeing = rsa("agreeing");
        agreeing["use"] = json!("sig");
        agreeing["key_ops"] = json!(["sign", "verify"]);
        assert!(parse_jwk(&agreeing).is_ok());
        assert_eq!(
            keys.select(Some("p256"), SigningAlgorithm::ES256),
            Selection::Found(1)
        );
        assert_eq!(
            keys.select(Some("ed"), SigningAlgorithm::EdDSA),
            Selection::Found(2)
        );
        assert_eq!(
            keys.select(Some("enc"), SigningAlgorithm::RS256),
            Selection::NotFound
        );
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        assert_eq!(KeySet::parse(b"[]").unwrap_err(), KeySetError::NotJson);
        assert_eq!(KeySet::parse(b"{}").unwrap_err(), KeySetError::NoKeysArray);
        assert_eq!(set(vec![]).unwrap_err(), KeySetError::NoUsableKey);
    }

    #[test]
    fn duplicate_members_refuse_the_set_or_skip_the_key() {
        let good = rsa("k").to_string();
        let other = other_rsa("k2").to_string();
        // The set itself naming `keys` twice (also escaped, also with another type) is
        // refused whole.
        let sets = [
            format!(r#"{{"keys":[{good}],"keys":[]}}"#),
            format!(r#"{{"keys":[],"keys":[{good}]}}"#),
            format!(r#"{{"keys":[{good}],"\u006beys":[{good}]}}"#),
            format!(r#"{{"keys":{{}},"keys":[{good}]}}"#),
            format!(r#"{{"keys":[{good}],"keys":7}}"#),
            format!(r#"{{"other":1,"keys":[{good}],"other":2}}"#),
        ];
        for document in sets {
            assert_eq!(
                KeySet::parse(document.as_bytes()).unwrap_err(),
                KeySetError::DuplicateMember,
                "{document}"
            );
        }
        // A key naming a member twice (two `kid`s, two moduli, two `use`s, an escaped
        // twin, a twin in a nested object) is skipped: alone it leaves no usable key, beside
        // another key only that one is kept.
        let twins = [
            good.replacen('{', r#"{"kid":"other","#, 1),
            good.replacen('{', r#"{"n":"AQAB","#, 1),
            good.replacen('{', r#"{"use":"enc","use":"sig","#, 1),
            good.replacen('{', r#"{"\u006bid":"k2","#, 1),
            good.replacen('{', r#"{"x-meta":{"a":1,"a":2},"#, 1),
        ];
        for twin in twins {
            let alone = format!(r#"{{"keys":[{twin}]}}"#);
            assert_eq!(
                KeySet::parse(alone.as_bytes()).unwrap_err(),
                KeySetError::NoUsableKey,
                "{alone}"
            );
            let beside = format!(r#"{{"keys":[{twin},{other}]}}"#);
            let keys = KeySet::parse(beside.as_bytes()).unwrap();
            assert_eq!(keys.len(), 1, "{beside}");
            assert_eq!(keys.get(0).kid.as_deref(), Some("k2"), "{beside}");
        }
        // Syntax errors inside a key still refuse the document.
        assert_eq!(
            KeySet::parse(format!(r#"{{"keys":[{good},{{"kid":}}]}}"#).as_bytes()).unwrap_err(),
            KeySetError::NotJson
        );
        // A non-array `keys` is no key list, whatever it holds.
        for keys in ["{}", "7", "null", r#""x""#, r#"{"a":1}"#] {
            assert_eq!(
                KeySet::parse(format!(r#"{{"keys":{keys}}}"#).as_bytes()).unwrap_err(),
                KeySetError::NoKeysArray,
                "{keys}"
            );
        }
        // The same document without the twin parses.
        assert_eq!(
            KeySet::parse(format!(r#"{{"keys":[{good}]}}"#).as_bytes())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn selection_binds_kid_family_and_alg() {
        let mut stated = other_rsa("rs384-only");
        stated["alg"] = json!("RS384");
        let keys = set(vec![rsa("r1"), stated, ec("e384", "P-384")]).unwrap();
        assert_eq!(
            keys.select(Some("r1"), SigningAlgorithm::PS256),
            Selection::Found(0)
        );
        assert_eq!(
            keys.select(Some("r1"), SigningAlgorithm::ES256),
            Selection::Unusable
        );
        assert_eq!(
            keys.select(Some("rs384-only"), SigningAlgorithm::RS384),
            Selection::Found(1)
        );
        assert_eq!(
            keys.select(Some("rs384-only"), SigningAlgorithm::RS256),
            Selection::Unusable
        );
        assert_eq!(
            keys.select(Some("e384"), SigningAlgorithm::ES256),
            Selection::Unusable
        );
        assert_eq!(
            keys.select(Some("nope"), SigningAlgorithm::RS256),
            Selection::NotFound
        );
        // Without kid: every key that fits is a candidate.
        assert_eq!(
            keys.select(None, SigningAlgorithm::ES384),
            Selection::Found(2)
        );
        let Selection::Several(candidates) = keys.select(None, SigningAlgorithm::RS384) else {
            panic!("two RSA keys fit RS384");
        };
        assert_eq!(candidates.iter().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(
            keys.select(None, SigningAlgorithm::RS256),
            Selection::Found(0)
        );
        assert_eq!(
            keys.select(None, SigningAlgorithm::EdDSA),
            Selection::NotFound
        );
    }

    /// The algorithms a key was parsed for, in [`ALGORITHMS`] order.
    fn parsed_algorithms(jwk: Value) -> Vec<SigningAlgorithm> {
        let keys = set(vec![jwk]).unwrap();
        let key = keys.get(0);
        ALGORITHMS
            .into_iter()
            .filter(|alg| key.parsed_for(*alg).is_some())
            .collect()
    }

    #[test]
    fn keys_are_parsed_once_for_each_algorithm_they_may_verify() {
        use SigningAlgorithm::*;
        let pinned = |mut jwk: Value, alg: &str| {
            jwk["alg"] = json!(alg);
            jwk
        };
        let ed25519 = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[3; 32])});
        let rows: Vec<(Value, Vec<SigningAlgorithm>)> = vec![
            (rsa("k"), vec![RS256, RS384, RS512, PS256, PS384, PS512]),
            (pinned(rsa("k"), "RS384"), vec![RS384]),
            (pinned(rsa("k"), "PS512"), vec![PS512]),
            (ec("k", "P-256"), vec![ES256]),
            (pinned(ec("k", "P-256"), "ES256"), vec![ES256]),
            (ec("k", "P-384"), vec![ES384]),
            (pinned(ec("k", "P-384"), "ES384"), vec![ES384]),
            (ed25519.clone(), vec![EdDSA]),
            (pinned(ed25519, "EdDSA"), vec![EdDSA]),
        ];
        for (jwk, expected) in rows {
            assert_eq!(parsed_algorithms(jwk.clone()), expected, "{jwk}");
        }
    }

    /// Different keys that fit are candidates, in the set's order, up to
    /// [`MAX_CANDIDATES`]; more are ambiguous.
    #[test]
    fn different_keys_that_fit_are_candidates_up_to_a_bound() {
        let keys = set(vec![rsa("same"), other_rsa("same")]).unwrap();
        let Selection::Several(candidates) = keys.select(Some("same"), SigningAlgorithm::RS256)
        else {
            panic!("two keys under one kid");
        };
        assert_eq!(candidates.iter().collect::<Vec<_>>(), [0, 1]);
        let unnamed = |jwk: Value| {
            let mut jwk = jwk;
            jwk.as_object_mut().unwrap().remove("kid");
            jwk
        };
        let keys = set(vec![unnamed(rsa("")), unnamed(other_rsa(""))]).unwrap();
        let Selection::Several(candidates) = keys.select(None, SigningAlgorithm::RS256) else {
            panic!("two kid-less keys");
        };
        assert_eq!(candidates.iter().collect::<Vec<_>>(), [0, 1]);
        let rsa_n = |byte: u8| json!({"kty": "RSA", "n": b64(&[byte; 256]), "e": "AQAB"});
        let bound: Vec<Value> = (0..MAX_CANDIDATES)
            .map(|i| rsa_n(0xc1 + 2 * i as u8))
            .collect();
        let keys = set(bound.clone()).unwrap();
        let Selection::Several(candidates) = keys.select(None, SigningAlgorithm::PS256) else {
            panic!("{MAX_CANDIDATES} keys");
        };
        assert_eq!(candidates.iter().count(), MAX_CANDIDATES);
        let mut over = bound;
        over.push(rsa_n(0xf1));
        let keys = set(over).unwrap();
        assert_eq!(
            keys.select(None, SigningAlgorithm::PS256),
            Selection::Ambiguous
        );
        // The same key again is no further candidate.
        let mut twin = vec![rsa_n(0xc1); 8];
        twin.push(rsa_n(0xc3));
        let keys = set(twin).unwrap();
        let Selection::Several(candidates) = keys.select(None, SigningAlgorithm::RS256) else {
            panic!("two different keys");
        };
        assert_eq!(candidates.iter().collect::<Vec<_>>(), [0, 8]);
    }

    /// The same public key listed twice (GitHub Enterprise Server's set; with and without
    /// its `alg`; with its `n` written with a leading zero) is one key: a token naming it
    /// is verified with it, as without the twin.
    #[test]
    fn the_same_key_listed_twice_is_one_key() {
        let mut pinned = rsa("same");
        pinned["alg"] = json!("RS256");
        let mut padded = rsa("same");
        let mut n = vec![0];
        n.extend_from_slice(&[0xc5; 256]);
        padded["n"] = json!(b64(&n));
        for twin in [rsa("same"), pinned, padded] {
            let keys = set(vec![rsa("same"), twin.clone()]).unwrap();
            assert_eq!(
                keys.select(Some("same"), SigningAlgorithm::RS256),
                Selection::Found(0),
                "{twin}"
            );
            // A kid-less token with one key of that family: still one key.
            assert_eq!(
                keys.select(None, SigningAlgorithm::RS256),
                Selection::Found(0)
            );
        }
        let p256 = ec("e", "P-256");
        let keys = set(vec![p256.clone(), p256]).unwrap();
        assert_eq!(
            keys.select(Some("e"), SigningAlgorithm::ES256),
            Selection::Found(0)
        );
        // Another key in the set does not matter; another key under the name does.
        let keys = set(vec![rsa("same"), rsa("same"), other_rsa("other")]).unwrap();
        assert_eq!(
            keys.select(Some("same"), SigningAlgorithm::RS256),
            Selection::Found(0)
        );
        assert!(matches!(
            keys.select(None, SigningAlgorithm::RS256),
            Selection::Several(_)
        ));
    }

    /// The key-set fingerprint depends on the keys, not on their order or the document's
    /// spacing; another key, `kid` or `alg` changes it.
    #[test]
    fn fingerprints_follow_the_keys_not_the_document() {
        let p256 = ec("e", "P-256");
        let fingerprint = |keys: Vec<Value>| set(keys).unwrap().fingerprint();
        let base = fingerprint(vec![rsa("a"), p256.clone()]);
        assert_eq!(base, fingerprint(vec![p256.clone(), rsa("a")]));
        let spaced = format!("{{ \"keys\" : [ {} , {} ] }}", rsa("a"), p256);
        assert_eq!(
            base,
            KeySet::parse(spaced.as_bytes()).unwrap().fingerprint()
        );
        let mut pinned = rsa("a");
        pinned["alg"] = json!("RS256");
        for changed in [
            vec![rsa("b"), p256.clone()],
            vec![other_rsa("a"), p256.clone()],
            vec![pinned, p256.clone()],
            vec![rsa("a")],
            vec![rsa("a"), p256.clone(), ec("f", "P-384")],
        ] {
            assert_ne!(base, fingerprint(changed));
        }
    }

    /// One JWK parsed as a one-key set, as a fetched set is: `None` when the key is kept,
    /// else the reason it was refused.
    fn refusal(jwk: &Value) -> Option<&'static str> {
        match set(vec![jwk.clone()]) {
            Ok(keys) => {
                assert_eq!(keys.len(), 1);
                None
            }
            Err(KeySetError::NoUsableKey) => Some(parse_jwk(jwk).unwrap_err()),
            Err(other) => panic!("{jwk}: {other}"),
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    fn rsa_with(n: &[u8], e: &[u8]) -> Value {
        json!({"kty": "RSA", "n": b64(n), "e": b64(e)})
    }

    #[test]
    fn rsa_keys_outside_the_policy_are_refused_at_import() {
        let n = [0xc5; 256]; // odd, 2048 bits
        let mut even = n;
        even[255] = 0xc4;
        let mut short = n; // 256 octets but only 2041 bits
        short[0] = 0x01;
        let mut leading_zero = vec![0];
        leading_zero.extend_from_slice(&n);
        let longest = vec![0xc5; 1024]; // 8192 bits
        let mut too_long = vec![0x01];
        too_long.extend_from_slice(&longest);
        let rows: Vec<(Value, Option<&str>)> = vec![
            (rsa_with(&n, &[1, 0, 1]), None),
            (rsa_with(&n, &[3]), None),
            (rsa_with(&n, &[0, 1, 0, 1]), None),
            (rsa_with(&leading_zero, &[1, 0, 1]), None),
            (rsa_with(&longest, &[1, 0, 1]), None),
            (rsa_with(&n, &[1, 0, 0, 0, 1]), None), // 33 bits
            (rsa_with(&n, &[1]), Some("RSA exponent of 1")),
            (rsa_with(&n, &[0, 0, 1]), Some("RSA exponent of 1")),
            (rsa_with(&n, &[2]), Some("RSA exponent zero or even")),
            (rsa_with(&n, &[1, 0, 0]), Some("RSA exponent zero or even")),
            (rsa_with(&n, &[0]), Some("RSA exponent zero or even")),
            (rsa_with(&n, &[]), Some("RSA exponent zero or even")),
            (
                rsa_with(&n, &[2, 0, 0, 0, 1]),
                Some("RSA exponent wider than 33 bits"),
            ),
            (rsa_with(&even, &[1, 0, 1]), Some("even RSA modulus")),
            (
                rsa_with(&short, &[1, 0, 1]),
                Some("RSA modulus shorter than 2048 bits"),
            ),
            (
                rsa_with(&[0; 256], &[1, 0, 1]),
                Some("RSA modulus shorter than 2048 bits"),
            ),
            (
                rsa_with(&[], &[1, 0, 1]),
                Some("RSA modulus shorter than 2048 bits"),
            ),
            (
                rsa_with(&too_long, &[1, 0, 1]),
                Some("RSA modulus longer than 8192 bits"),
            ),
            (json!({"kty": "RSA", "e": "AQAB"}), Some("n")),
            (json!({"kty": "RSA", "n": b64(&n), "e": 65537}), Some("e")),
            (
                json!({"kty": "RSA", "n": b64(&n), "e": "AQAB=="}),
                Some("a key member is not base64url"),
            ),
        ];
        for (jwk, expected) in rows {
            assert_eq!(refusal(&jwk), expected, "{jwk}");
        }
    }

    /// `(x, y)` of a point on the curve whose `x` is 0, the field prime `p`, and the
    /// coordinate size, for P-256 and P-384 (worked out offline: `y` is a square root of
    /// `b` modulo `p`; the first two table rows prove the points are on the curves).
    const ZERO_X_POINTS: [(&str, &str, &str, usize); 2] = [
        (
            "P-256",
            "66485c780e2f83d72433bd5d84a06bb6541c2af31dae871728bf856a174f93f4",
            "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
            32,
        ),
        (
            "P-384",
            "c306610fb0ae5a159cf45c06069f22a6c5eb3641c602d42dea2c4b4f75550793406d80d2b91ad54f9048bd487af1ade1",
            "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
            48,
        ),
    ];

    fn ec_with(crv: &str, x: &[u8], y: &[u8]) -> Value {
        json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
    }

    /// `a + b` for big-endian numbers of the same length, dropping any carry out.
    fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut sum = vec![0; a.len()];
        let mut carry = 0u16;
        for at in (0..a.len()).rev() {
            let total = u16::from(a[at]) + u16::from(b[at]) + carry;
            sum[at] = total as u8;
            carry = total >> 8;
        }
        sum
    }

    /// `a - b` for big-endian numbers of the same length, `a >= b`.
    fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut difference = vec![0; a.len()];
        let mut borrow = 0i16;
        for at in (0..a.len()).rev() {
            let mut total = i16::from(a[at]) - i16::from(b[at]) - borrow;
            borrow = i16::from(total < 0);
            if total < 0 {
                total += 256;
            }
            difference[at] = total as u8;
        }
        difference
    }

    /// Key members with their base64 padding (UAA) are read as without; wrong padding,
    /// or the standard alphabet, is not base64url.
    #[test]
    fn key_members_may_carry_exact_padding() {
        let jwk = ec("k", "P-256");
        let unpadded = set(vec![jwk.clone()]).unwrap();
        let pad =
            |member: &Value, padding: &str| json!(format!("{}{padding}", member.as_str().unwrap()));
        // 32 octets: 43 characters, one `=` of padding.
        let mut padded = jwk.clone();
        padded["x"] = pad(&jwk["x"], "=");
        padded["y"] = pad(&jwk["y"], "=");
        assert_eq!(
            set(vec![padded]).unwrap().fingerprint(),
            unpadded.fingerprint()
        );
        let mut rsa_padded = rsa("r");
        rsa_padded["e"] = json!("AQAB");
        // 256 octets: 342 characters, two `=`.
        rsa_padded["n"] = pad(&rsa("r")["n"], "==");
        assert!(set(vec![rsa_padded]).is_ok());
        // One `=` where two are due, or two where one is.
        let mut partial = rsa("r");
        partial["n"] = pad(&rsa("r")["n"], "=");
        assert_eq!(refusal(&partial), Some("a key member is not base64url"));
        for padding in ["==", "=A", " =", "==="] {
            let mut wrong = jwk.clone();
            wrong["x"] = pad(&jwk["x"], padding);
            assert_eq!(
                refusal(&wrong),
                Some("a key member is not base64url"),
                "{padding:?}"
            );
        }
        let mut standard = jwk.clone();
        standard["x"] = json!(format!("+{}", &jwk["x"].as_str().unwrap()[1..]));
        assert_eq!(refusal(&standard), Some("a key member is not base64url"));
    }

    /// A coordinate written without its leading zero octets (Keycloak before 20, jjwt 0.12,
    /// any encoder built on big-integer conversions) is the same key as the full one; with
    /// an extra leading zero it is refused.
    #[test]
    fn ec_coordinates_without_leading_zeros_are_the_same_key() {
        for crv in ["P-256", "P-384"] {
            let decoded = |jwk: &Value, name: &str| {
                URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap()
            };
            // One key in 256 has an `x` starting with a zero octet.
            let (x, y) = loop {
                let jwk = ec("k", crv);
                let x = decoded(&jwk, "x");
                if x[0] == 0 {
                    break (x, decoded(&jwk, "y"));
                }
            };
            let full = set(vec![ec_with(crv, &x, &y)]).unwrap();
            let start = x.iter().position(|octet| *octet != 0).unwrap();
            let short = set(vec![ec_with(crv, &x[start..], &y)]).unwrap();
            assert_eq!(full.fingerprint(), short.fingerprint(), "{crv}");
            assert!(full.keys[0].is_same_key_as(&short.keys[0]), "{crv}");
            let mut long = vec![0];
            long.extend_from_slice(&x);
            assert_eq!(
                refusal(&ec_with(crv, &long, &y)),
                Some("EC coordinates of the wrong length")
            );
        }
    }

    #[test]
    fn ec_points_off_the_curve_or_of_the_wrong_size_are_refused_at_import() {
        const OFF_CURVE: Option<&str> = Some("EC point not on the named curve");
        const WRONG_LENGTH: Option<&str> = Some("EC coordinates of the wrong length");
        for (crv, y, p, size) in ZERO_X_POINTS {
            let (y, p) = (hex(y), hex(p));
            let zero = vec![0; size];
            let one = {
                let mut one = zero.clone();
                one[size - 1] = 1;
                one
            };
            let other_crv = if crv == "P-256" { "P-384" } else { "P-256" };
            let generated = ec("k", crv);
            let (gx, gy) = (
                URL_SAFE_NO_PAD
                    .decode(generated["x"].as_str().unwrap())
                    .unwrap(),
                URL_SAFE_NO_PAD
                    .decode(generated["y"].as_str().unwrap())
                    .unwrap(),
            );
            let mut padded = vec![0];
            padded.extend_from_slice(&y);
            let rows: Vec<(Value, Option<&str>)> = vec![
                (ec_with(crv, &zero, &y), None),
                // The other point with x = 0: (0, p - y).
                (ec_with(crv, &zero, &sub(&p, &y)), None),
                (generated.clone(), None),
                // x = p is 0 modulo p, but a coordinate must be below p.
                (ec_with(crv, &p, &y), OFF_CURVE),
                (ec_with(crv, &zero, &add(&y, &one)), OFF_CURVE),
                (ec_with(crv, &zero, &zero), OFF_CURVE),
                (ec_with(crv, &zero, &p), OFF_CURVE),
                (
                    ec_with(crv, &vec![0xff; size], &vec![0xff; size]),
                    OFF_CURVE,
                ),
                (ec_with(crv, &gy, &gx), OFF_CURVE),
                (ec_with(crv, &gx, &add(&gy, &one)), OFF_CURVE),
                (ec_with(crv, &zero, &padded), WRONG_LENGTH),
                // A short coordinate is padded with zeros: here another point.
                (ec_with(crv, &zero, &y[1..]), OFF_CURVE),
                (ec_with(crv, &[], &y), WRONG_LENGTH),
                (ec_with(crv, &[], &[]), WRONG_LENGTH),
                // P-256 coordinates on P-384 are short (another point), P-384's on
                // P-256 too long.
                (
                    ec_with(other_crv, &zero, &y),
                    if size == 32 { OFF_CURVE } else { WRONG_LENGTH },
                ),
                (
                    ec_with(other_crv, &gx, &gy),
                    if size == 32 { OFF_CURVE } else { WRONG_LENGTH },
                ),
                (json!({"kty": "EC", "crv": crv, "x": b64(&zero)}), Some("y")),
                (
                    json!({"kty": "EC", "crv": crv, "x": b64(&zero), "y": null}),
                    Some("y"),
                ),
                (
                    json!({"kty": "EC", "x": b64(&zero), "y": b64(&y)}),
                    Some("crv"),
                ),
            ];
            for (jwk, expected) in rows {
                assert_eq!(refusal(&jwk), expected, "{jwk}");
            }
        }
        for crv in ["secp256k1", "p-256", "P256", "P-512", ""] {
            assert_eq!(
                refusal(&ec_with(crv, &[1; 32], &[2; 32])),
                Some("unsupported EC curve"),
                "{crv}"
            );
        }
    }

    const DEGENERATE: &str = "Ed25519 key of small order or not canonical";

    /// `p - k` for the Ed25519 field prime `p = 2^255 - 19`, little-endian (`k` in -18..=19).
    fn p_minus(k: i16) -> [u8; 32] {
        let mut bytes = [0xff; 32];
        bytes[31] = 0x7f;
        bytes[0] = u8::try_from(0xed - k).expect("k in range");
        bytes
    }

    /// Every encoding of a point of small order (order 1, 2, 4 or 8, either sign bit), and
    /// every `y` from `p` up to `2^255 - 1`, is refused: with such a key, a signature made
    /// without any private key verifies (the identity key with `R` = identity and `S` = 0
    /// for every message). Static PEM keys follow the same rule.
    #[test]
    fn degenerate_ed25519_keys_are_refused_at_import() {
        let hex = |text: &str| -> [u8; 32] {
            let bytes: Vec<u8> = (0..64)
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
                .collect();
            bytes.try_into().expect("32 octets")
        };
        let small_order = [
            hex("0000000000000000000000000000000000000000000000000000000000000000"),
            hex("0100000000000000000000000000000000000000000000000000000000000000"),
            hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
            hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
        ];
        let mut refused: Vec<[u8; 32]> = Vec::new();
        for encoded in small_order {
            let mut negative = encoded;
            negative[31] |= 0x80;
            refused.extend([encoded, negative]);
        }
        // y = p .. 2^255 - 1 (p, p + 1 name 0 and 1 again), with either sign bit.
        for k in -18..=0 {
            let mut negative = p_minus(k);
            negative[31] |= 0x80;
            refused.extend([p_minus(k), negative]);
        }
        for encoded in refused {
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&encoded)});
            assert_eq!(refusal(&jwk), Some(DEGENERATE), "{jwk}");
            // The same key as a SubjectPublicKeyInfo.
            let mut der = vec![
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ];
            der.extend_from_slice(&encoded);
            assert_eq!(
                spki_key(&der, SigningAlgorithm::EdDSA).err(),
                Some(DEGENERATE),
                "{jwk}"
            );
        }
        // An ordinary key (the RFC 8032 test 1 key) is kept, both ways.
        let ordinary = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&ordinary)});
        assert_eq!(refusal(&jwk), None);
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        der.extend_from_slice(&ordinary);
        assert!(spki_key(&der, SigningAlgorithm::EdDSA).is_ok());
    }

    #[test]
    fn okp_keys_of_the_wrong_curve_or_length_are_refused_at_import() {
        let okp = |crv: &str, x: &[u8]| json!({"kty": "OKP", "crv": crv, "x": b64(x)});
        let rows: Vec<(Value, Option<&str>)> = vec![
            (okp("Ed25519", &[3; 32]), None),
            (
                okp("Ed25519", &[3; 31]),
                Some("Ed25519 key of the wrong length"),
            ),
            (
                okp("Ed25519", &[3; 33]),
                Some("Ed25519 key of the wrong length"),
            ),
            (
                okp("Ed25519", &[3; 64]),
                Some("Ed25519 key of the wrong length"),
            ),
            (okp("Ed25519", &[]), Some("Ed25519 key of the wrong length")),
            // The smallest y at or above p is refused, one below it is a usable encoding.
            (okp("Ed25519", &p_minus(-0)), Some(DEGENERATE)),
            (okp("Ed25519", &p_minus(2)), None),
            (okp("Ed448", &[3; 57]), Some("unsupported OKP curve")),
            (okp("X25519", &[3; 32]), Some("unsupported OKP curve")),
            (okp("ed25519", &[3; 32]), Some("unsupported OKP curve")),
            (json!({"kty": "OKP", "crv": "Ed25519"}), Some("x")),
            (json!({"kty": "OKP", "x": b64(&[3; 32])}), Some("crv")),
        ];
        for (jwk, expected) in rows {
            assert_eq!(refusal(&jwk), expected, "{jwk}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::{config, json_value};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use serde_json::json;

    /// A member value: base64url of bytes of a telling length, or any JSON value.
    fn member() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => prop::sample::select(vec![0usize, 1, 31, 32, 33, 48, 57, 255, 256, 257])
                .prop_flat_map(|len| proptest::collection::vec(any::<u8>(), len))
                .prop_map(|bytes| Value::String(URL_SAFE_NO_PAD.encode(bytes))),
            1 => prop::sample::select(vec!["AQAB", "AQ", "AA", "", "AQAB=", "A+/B", "!!"])
                .prop_map(|text| Value::String(text.to_owned())),
            1 => json_value(&[]).prop_filter_map("valid JSON", |text| serde_json::from_str(&text).ok()),
        ]
    }

    fn string_or_any(choices: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
        proptest::option::of(prop_oneof![
            4 => prop::sample::select(choices).prop_map(|text| Value::String(text.to_owned())),
            1 => prop_oneof![Just(Value::Null), Just(json!(1)), Just(json!(["verify"])), Just(json!({}))],
        ])
    }

    /// A JWK: every member the parser reads, each present or not, of the right type or not.
    fn jwk() -> impl Strategy<Value = Value> {
        (
            string_or_any(&["RSA", "EC", "OKP", "oct", "rsa", "EC "]),
            string_or_any(&["P-256", "P-384", "P-521", "Ed25519", "Ed448", "X25519"]),
            string_or_any(&[
                "RS256", "PS384", "ES256", "ES384", "EdDSA", "HS256", "none", "ES512", "Ed25519",
            ]),
            string_or_any(&["sig", "enc", "SIG"]),
            string_or_any(&["a", "b", ""]),
            proptest::option::of(prop_oneof![
                Just(json!(["verify"])),
                Just(json!(["sign"])),
                Just(json!("verify")),
                Just(json!([]))
            ]),
            proptest::collection::vec(
                (
                    prop::sample::select(vec!["n", "e", "x", "y", "d", "p", "oth", "k"]),
                    member(),
                ),
                0..5,
            ),
        )
            .prop_map(|(kty, crv, alg, usage, kid, key_ops, members)| {
                let mut jwk = Map::new();
                for (name, value) in [
                    ("kty", kty),
                    ("crv", crv),
                    ("alg", alg),
                    ("use", usage),
                    ("kid", kid),
                    ("key_ops", key_ops),
                ] {
                    if let Some(value) = value {
                        jwk.insert(name.to_owned(), value);
                    }
                }
                for (name, value) in members {
                    jwk.insert(name.to_owned(), value);
                }
                Value::Object(jwk)
            })
    }

    proptest! {
        #![proptest_config(config(512))]

        /// A key set of hostile JWKs: one of the documented errors, or keys that each
        /// came from a public, signing JWK of their family; selection only ever finds a
        /// key that fits the algorithm and carries the `kid` asked for.
        #[test]
        fn key_set_answers_are_documented(entries in proptest::collection::vec(jwk(), 0..5)) {
            let document = serde_json::to_vec(&json!({ "keys": entries })).unwrap();
            match KeySet::parse(&document) {
                Ok(keys) => {
                    prop_assert!(keys.len() >= 1 && keys.len() <= entries.len());
                    // Each key is parsed for exactly the algorithms it accepts.
                    for index in 0..keys.len() {
                        let key = keys.get(index);
                        for &alg in SigningAlgorithm::DEFAULT {
                            prop_assert_eq!(key.parsed_for(alg).is_some(), key.accepts(alg));
                        }
                    }
                    for kid in [None, Some("a"), Some("b"), Some("")] {
                        for &alg in SigningAlgorithm::DEFAULT {
                            match keys.select(kid, alg) {
                                Selection::Found(index) => {
                                    let key = keys.get(index);
                                    prop_assert!(key.accepts(alg));
                                    if kid.is_some() {
                                        prop_assert_eq!(key.kid.as_deref(), kid);
                                    }
                                }
                                Selection::Several(candidates) => {
                                    prop_assert!(candidates.iter().count() >= 2);
                                    for index in candidates.iter() {
                                        let key = keys.get(index);
                                        prop_assert!(key.accepts(alg));
                                        if kid.is_some() {
                                            prop_assert_eq!(key.kid.as_deref(), kid);
                                        }
                                    }
                                }
                                Selection::NotFound
                                | Selection::Unusable
                                | Selection::Ambiguous => {}
                            }
                        }
                    }
                }
                // serde_json with `arbitrary_precision` writes numbers beyond `f64`, which
                // the strict reader refuses.
                Err(KeySetError::NotJson)
                    if crate::json::holds_number_beyond_f64(&json!({ "keys": entries })) => {}
                Err(error) => prop_assert_eq!(error, KeySetError::NoUsableKey, "{:?}", error),
            }
            for entry in &entries {
                let private = PRIVATE_MEMBERS.iter().any(|name| entry.get(*name).is_some());
                if private || entry.get("use").is_some_and(|usage| usage != "sig") {
                    prop_assert!(parse_jwk(entry).is_err());
                }
            }
        }

        /// Any document text: the documented errors, never a panic.
        #[test]
        fn key_set_documents_never_panic(text in json_value(&["keys", "kty", "n", "e", "x", "crv"])) {
            if let Ok(keys) = KeySet::parse(text.as_bytes()) {
                prop_assert!(keys.len() >= 1);
            }
        }
    }
}
