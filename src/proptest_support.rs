//! Shared pieces of the property tests (test builds only): the case count, and structured
//! generators of hostile JSON.
//!
//! Every property test of the crate whose name contains `props` runs
//! `PROPTEST_CASES` cases when that variable is set, else its own default, chosen so that
//! all of them together stay well under a minute in a debug `cargo test`. The long run:
//! `PROPTEST_CASES=100000 cargo test --release --all-features props`.
//!
//! Each run draws its cases from one seed, `PROPTEST_RNG_SEED` when set, else a fresh
//! random one, which the test prints (libtest shows a test's output when it fails): a
//! failure is replayed with `PROPTEST_RNG_SEED=<seed> cargo test --all-features <name>`.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use proptest::test_runner::RngSeed;

/// `PROPTEST_CASES` when set, else `default_cases`; the seed of [`seed`]; no regression
/// files are written.
pub(crate) fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed()),
        ..ProptestConfig::default()
    }
}

/// `PROPTEST_RNG_SEED` when set, else a random seed; printed with how to replay it.
pub(crate) fn seed() -> u64 {
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

/// A JSON string literal: plain text, escapes (`\u0061` for `a`, surrogates, lone
/// surrogates), control characters and non-ASCII.
pub(crate) fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_:/.+ -]{0,12}".prop_map(|text| format!("\"{text}\"")),
        prop::sample::select(vec![
            r#""""#,
            r#""\u0061lg""#,
            r#""\ud83d\ude00""#,
            r#""\ud800""#,
            r#""\u0000""#,
            "\"\u{7}\"",
            "\"caf\u{e9}\"",
            r#""a\"b\\c\/d\n""#,
            r#""\x""#,
            "\"unterminated",
            // Launch context as a reference, `fhirContext` as JSON text.
            r#""Patient/1""#,
            r#""Patient\/1""#,
            r#""Encounter/1""#,
            r#""Patient/..""#,
            r#""[]""#,
            r#""[{\"reference\":\"a\"}]""#,
            r#""[\"Observation/1\"]""#,
            r#""[{\"reference\":\"a\",\"reference\":\"b\"}]""#,
        ])
        .prop_map(str::to_owned),
    ]
}

/// A JSON number, often outside `i64`/`f64` (`1e400`, 30 digits, `-0`, fractions).
pub(crate) fn json_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,30}(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?",
        prop::sample::select(vec![
            "-0", "1e400", "-1e400", "0.5", "01", "1.", ".5", "NaN"
        ])
        .prop_map(str::to_owned),
    ]
}

/// Member names drawn from a small pool (so that duplicates are frequent) plus `names`.
fn member_name(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select([names, &["a"]].concat()).prop_map(|name| format!("\"{name}\"")),
        prop::sample::select(vec!["a", "b", "\\u0061"]).prop_map(|name| format!("\"{name}\"")),
        json_string(),
    ]
}

/// Whitespace JSON allows between tokens (and some it does not).
fn space() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\n\t ", "\r", "\u{a0}"])
}

/// Any JSON value as text, nested a few levels, with duplicate member names, nulls, wrong
/// types, huge numbers, odd escapes and now and then a syntax error; objects name members
/// from `names` first.
pub(crate) fn json_value(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        json_number(),
        json_string(),
        prop::sample::select(vec!["", "nul", "[", "{", "}", ",", "[1,]", "{\"a\":1,}"])
            .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..6), space())
                .prop_map(|(items, sp)| { format!("[{sp}{}{sp}]", items.join(",")) }),
            (
                prop::collection::vec((member_name(names), space(), inner), 0..6),
                space()
            )
                .prop_map(|(members, sp)| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(name, sp2, value)| format!("{name}{sp2}:{sp}{value}"))
                        .collect();
                    format!("{{{sp}{}}}", members.join(","))
                }),
        ]
    })
}

/// A JSON object as text whose members are drawn from `names` (each given a value of any
/// type, names repeated now and then), wrapped in hostile whitespace.
pub(crate) fn json_object(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        prop::collection::vec((member_name(names), json_value(names)), 0..10),
        space(),
    )
        .prop_map(|(members, sp)| {
            let members: Vec<String> = members
                .into_iter()
                .map(|(name, value)| format!("{sp}{name}{sp}:{sp}{value}"))
                .collect();
            format!("{sp}{{{}}}{sp}", members.join(","))
        })
}

/// Nesting `depth` deep of arrays or objects (past serde_json's limit of 128 when
/// `depth` is large).
pub(crate) fn deep_nesting() -> impl Strategy<Value = String> {
    (1usize..400, any::<bool>()).prop_map(|(depth, arrays)| {
        if arrays {
            format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth))
        } else {
            format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }
    })
}
