//! Property: no mutation of a valid token verifies. Real tokens signed by a real
//! `TestIssuer` (RSA PKCS#1 and PSS, P-256, P-384, Ed25519) are changed one way or another
//! (flipped, inserted or deleted bytes; the header re-encoded with the same meaning through
//! whitespace, escapes, member order or a duplicate; another algorithm or key named; the
//! signature truncated, extended, padded, re-encoded or taken from another token), and the
//! full `TokenVerifier` must refuse every result that differs from the signed token.
//!
//! Cases: `PROPTEST_CASES`, else 8192. Long run:
//! `PROPTEST_CASES=100000 cargo test --release --all-features --test it props`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use smart_auth::testing::TestIssuer;
use smart_auth::{ErrorKind, SigningAlgorithm, TokenVerifier};

const ALGORITHMS: [SigningAlgorithm; 5] = [
    SigningAlgorithm::RS256,
    SigningAlgorithm::PS256,
    SigningAlgorithm::ES256,
    SigningAlgorithm::ES384,
    SigningAlgorithm::EdDSA,
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(8192)
}

/// `PROPTEST_RNG_SEED` when set, else a random seed, printed (libtest shows a test's output
/// when it fails) so that a failure is replayed with
/// `PROPTEST_RNG_SEED=<seed> cargo test --all-features --test it props_mutation`.
fn seed() -> u64 {
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 8];
            aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
            u64::from_le_bytes(bytes)
        });
    eprintln!("proptest: replay these cases with PROPTEST_RNG_SEED={seed}");
    seed
}

/// One way of changing a token.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBits(Index, u8),
    Insert(Index, char),
    Delete(Index),
    /// The header re-encoded by one of the [`header_variant`] rewrites.
    Header(u8),
    /// The payload re-encoded with whitespace (same claims, other bytes).
    PayloadWhitespace,
    TruncateSignature(Index),
    ExtendSignature(char),
    PadSegment(Index),
    StandardBase64Signature,
    /// The signature of another token of the same key.
    OtherSignature,
    /// The signature of a token of another algorithm.
    OtherAlgorithmSignature(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token_char = prop::sample::select("AZaz09-_.=+/ ~\"".chars().collect::<Vec<_>>());
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(at, bits)| Mutation::FlipBits(at, bits)),
        2 => (any::<Index>(), token_char.clone()).prop_map(|(at, c)| Mutation::Insert(at, c)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        4 => (0u8..HEADER_VARIANTS).prop_map(Mutation::Header),
        1 => Just(Mutation::PayloadWhitespace),
        1 => any::<Index>().prop_map(Mutation::TruncateSignature),
        1 => token_char.prop_map(Mutation::ExtendSignature),
        1 => any::<Index>().prop_map(Mutation::PadSegment),
        1 => Just(Mutation::StandardBase64Signature),
        1 => Just(Mutation::OtherSignature),
        1 => any::<Index>().prop_map(Mutation::OtherAlgorithmSignature),
    ]
}

const HEADER_VARIANTS: u8 = 12;

/// The header JSON rewritten: same meaning with other bytes (0..=5), or another meaning
/// (6..).
fn header_variant(header: &Map<String, Value>, variant: u8) -> String {
    let compact = serde_json::to_string(header).unwrap();
    let with = |name: &str, value: Value| {
        let mut changed = header.clone();
        changed.insert(name.to_owned(), value);
        serde_json::to_string(&changed).unwrap()
    };
    match variant {
        0 => serde_json::to_string_pretty(header).unwrap(),
        1 => {
            let mut members: Vec<_> = header.iter().collect();
            members.reverse();
            let body: Vec<String> = members
                .iter()
                .map(|(name, value)| format!("{}:{value}", serde_json::to_string(name).unwrap()))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        2 => compact.replacen("\"alg\"", "\"\\u0061lg\"", 1),
        3 => format!("{{\"alg\":\"none\",{}", &compact[1..]),
        4 => format!(" {compact}\n"),
        5 => compact.replacen("\":\"", "\" :\t\"", 1),
        6 => with("alg", Value::String("RS384".into())),
        7 => with("alg", Value::String("ES256".into())),
        8 => with("kid", Value::String("another-key".into())),
        9 => {
            let mut changed = header.clone();
            changed.remove("kid");
            serde_json::to_string(&changed).unwrap()
        }
        10 => with("typ", Value::String("JWT".into())),
        _ => with("jwk", serde_json::json!({"kty": "oct", "k": "AAAA"})),
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    _issuer: TestIssuer,
    verifier: TokenVerifier,
    /// Per algorithm: two tokens (different `jti`) of the same key.
    tokens: Vec<(String, String)>,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (issuer, verifier) = runtime.block_on(async {
        let issuer = TestIssuer::start().await;
        let verifier = TokenVerifier::builder(issuer.url())
            .audience(issuer.audience())
            .algorithms(ALGORITHMS)
            .no_token_cache()
            .build()
            .unwrap();
        verifier.warm_up().await.unwrap();
        (issuer, verifier)
    });
    let tokens = ALGORITHMS
        .iter()
        .map(|&alg| {
            let mint = |jti: &str| {
                issuer
                    .token()
                    .alg(alg)
                    .scope("system/Patient.rs")
                    .claim("jti", jti)
                    .sign()
            };
            (mint("first"), mint("second"))
        })
        .collect();
    Fixture {
        runtime,
        _issuer: issuer,
        verifier,
        tokens,
    }
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

fn apply(mutation: &Mutation, token: &str, other: &str, other_alg: &str) -> Option<String> {
    let mut parts = segments(token);
    let mut bytes = token.as_bytes().to_vec();
    Some(match mutation {
        Mutation::FlipBits(at, bits) => {
            let at = at.index(bytes.len());
            bytes[at] ^= bits;
            String::from_utf8(bytes).ok()?
        }
        Mutation::Insert(at, c) => {
            let mut text = token.to_owned();
            text.insert(at.index(token.len() + 1), *c);
            text
        }
        Mutation::Delete(at) => {
            let mut text = token.to_owned();
            text.remove(at.index(token.len()));
            text
        }
        Mutation::Header(variant) => {
            let header: Map<String, Value> =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
            parts[0] = URL_SAFE_NO_PAD.encode(header_variant(&header, *variant));
            parts.join(".")
        }
        Mutation::PayloadWhitespace => {
            let payload: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
            parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_string_pretty(&payload).unwrap());
            parts.join(".")
        }
        Mutation::TruncateSignature(at) => {
            let keep = at.index(parts[2].len());
            parts[2].truncate(keep);
            parts.join(".")
        }
        Mutation::ExtendSignature(c) => {
            parts[2].push(*c);
            parts.join(".")
        }
        Mutation::PadSegment(at) => {
            parts[at.index(3)].push('=');
            parts.join(".")
        }
        Mutation::StandardBase64Signature => {
            parts[2] = STANDARD.encode(URL_SAFE_NO_PAD.decode(&parts[2]).unwrap());
            parts.join(".")
        }
        Mutation::OtherSignature => {
            parts[2] = segments(other)[2].clone();
            parts.join(".")
        }
        Mutation::OtherAlgorithmSignature(_) => {
            parts[2] = segments(other_alg)[2].clone();
            parts.join(".")
        }
    })
}

#[test]
fn props_no_mutation_of_a_signed_token_verifies() {
    let fixture = fixture();
    // Each original verifies, so a refusal below is the mutation's doing.
    for (token, other) in &fixture.tokens {
        for original in [token, other] {
            fixture
                .runtime
                .block_on(fixture.verifier.verify(original))
                .expect("the signed token verifies");
        }
    }
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed()),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (0..ALGORITHMS.len(), mutation());
    let refused = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(which, mutation)| {
            let (token, other) = &fixture.tokens[which];
            let other_alg = match &mutation {
                Mutation::OtherAlgorithmSignature(at) => {
                    let others: Vec<usize> =
                        (0..ALGORITHMS.len()).filter(|&i| i != which).collect();
                    &fixture.tokens[others[at.index(others.len())]].0
                }
                _ => other,
            };
            let Some(mutated) = apply(&mutation, token, other, other_alg) else {
                return Ok(());
            };
            if mutated == *token {
                return Ok(());
            }
            let answer = fixture.runtime.block_on(fixture.verifier.verify(&mutated));
            let Err(error) = answer else {
                return Err(TestCaseError::fail(format!(
                    "{mutation:?} of a {:?} token verified: {mutated}",
                    ALGORITHMS[which]
                )));
            };
            // Refused as a bad token, never as an outage of the key server.
            prop_assert!(
                matches!(
                    error.kind(),
                    ErrorKind::MalformedToken
                        | ErrorKind::UnsupportedAlgorithm
                        | ErrorKind::UnsupportedTokenType
                        | ErrorKind::CriticalHeader
                        | ErrorKind::UnknownKey
                        | ErrorKind::InvalidSignature
                ),
                "{:?} answered {:?}",
                mutation,
                error.kind()
            );
            refused.set(refused.get() + 1);
            Ok(())
        })
        .unwrap();
    // Most mutations reached the verifier (a flip to bytes that are not UTF-8 cannot).
    assert!(
        refused.get() >= cases() / 2,
        "only {} mutated tokens were verified",
        refused.get()
    );
}
