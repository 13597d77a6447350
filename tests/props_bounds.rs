//! Bounded work at the size caps: every parser that reads untrusted bytes, fed hostile
//! inputs of a quarter of its cap and of the full cap, allocates at most a constant
//! multiple of its input, and four times the input costs at most about four times the
//! allocation (a quadratic reading would cost sixteen). Allocation is counted, per thread,
//! by a counting allocator (the `allocation-counter` crate, so no unsafe code here): a
//! structural measure of work, not a clock.
//!
//! The caps: 16 KiB for a token (`max_token_length`) and so for its header, payload and
//! scope claim; 64 KiB for a development-server form body; 256 KiB for an introspection
//! answer; 1 MiB for a key set or discovery document (`max_response_size`); 16 KiB for a
//! request target.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use smart_auth::__fuzz;

/// Bytes allocated on this thread while `parse` reads `input`, counted by
/// `allocation-counter`'s allocator (this test binary's global allocator; the test has a
/// binary of its own so that no other test runs under it).
fn allocated_by(parse: fn(&[u8]), input: &[u8]) -> usize {
    let info = allocation_counter::measure(|| parse(input));
    usize::try_from(info.bytes_total).unwrap_or(usize::MAX)
}

/// A hostile input family: the input of about `size` bytes.
type Family = (&'static str, fn(usize) -> Vec<u8>);

fn repeat_to(prefix: &str, unit: &str, suffix: &str, size: usize) -> Vec<u8> {
    let count = size.saturating_sub(prefix.len() + suffix.len()) / unit.len().max(1);
    format!("{prefix}{}{suffix}", unit.repeat(count)).into_bytes()
}

/// `prefix`, then `unit` followed by a number counting up (distinct pieces), then
/// `suffix`, about `size` bytes in all.
fn numbered(prefix: &str, unit: &str, suffix: &str, size: usize) -> Vec<u8> {
    let mut text = String::from(prefix);
    let mut index = 0;
    while text.len() + unit.len() + 8 + suffix.len() < size {
        text.push_str(&format!("{unit}{index}"));
        index += 1;
    }
    text.push_str(suffix);
    text.into_bytes()
}

fn numbered_members(size: usize) -> Vec<u8> {
    let mut text = String::from("{");
    let mut index = 0;
    while text.len() + 16 < size {
        text.push_str(&format!("\"m{index}\":{index},"));
        index += 1;
    }
    text.push_str("\"end\":0}");
    text.into_bytes()
}

fn token_with_payload(payload: &[u8]) -> Vec<u8> {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"fuzz-ed25519"}"#),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    )
    .into_bytes()
}

/// Checks one parser over its families at `cap / 4` and `cap`.
fn assert_linear(parser: &str, parse: fn(&[u8]), cap: usize, families: &[Family]) {
    parse(b"warm up");
    for (name, family) in families {
        let small = family(cap / 4);
        let large = family(cap);
        assert!(
            large.len() <= cap + 64,
            "{parser}/{name}: input over the cap"
        );
        let small_cost = allocated_by(parse, &small);
        let large_cost = allocated_by(parse, &large);
        eprintln!(
            "{parser}/{name}: {} B in, {small_cost} B allocated; {} B in, {large_cost} B allocated",
            small.len(),
            large.len()
        );
        assert!(
            large_cost <= 96 * large.len() + 64 * 1024,
            "{parser}/{name}: {large_cost} bytes allocated for {} bytes of input",
            large.len()
        );
        assert!(
            large_cost <= 6 * small_cost + 64 * 1024,
            "{parser}/{name}: 4x the input cost {large_cost} bytes against {small_cost}"
        );
    }
}

const TOKEN_CAP: usize = 16 * 1024;
/// hyper's longest HTTP/1 request target (65,534 bytes) and request head (408 KiB).
const REQUEST_TARGET_CAP: usize = 65_534;
const REQUEST_HEAD_CAP: usize = 408 * 1024;

#[test]
fn props_bounded_work_at_the_caps() {
    // The counter counts: a parse of a large document allocates (else every bound below
    // would hold vacuously).
    assert!(
        allocated_by(__fuzz::jwks, &numbered_members(64 * 1024)) > 64 * 1024,
        "allocation-counter is not this binary's global allocator"
    );
    assert_linear(
        "authorization",
        __fuzz::authorization,
        TOKEN_CAP,
        &[
            ("spaces", |n| repeat_to("Bearer", " ", "a", n)),
            ("padding", |n| repeat_to("Bearer a", "=", "", n)),
            ("query", |n| repeat_to("Bearer a\0", "access_toke&", "", n)),
        ],
    );
    assert_linear(
        "token",
        __fuzz::token,
        TOKEN_CAP,
        &[
            ("dots", |n| repeat_to("", ".", "", n)),
            ("segments", |n| repeat_to("a", ".a", "", n)),
            ("members", |n| {
                token_with_payload(&numbered_members(n * 3 / 4 - 128))
            }),
            ("escapes", |n| {
                token_with_payload(&repeat_to(
                    "{\"iss\":\"",
                    "\\u0061",
                    "\",\"exp\":1}",
                    n * 3 / 4 - 128,
                ))
            }),
            ("scopes", |n| {
                token_with_payload(&repeat_to(
                    "{\"iss\":\"i\",\"exp\":1,\"scope\":\"",
                    "patient/Observation.rs?a=1&b=2 ",
                    "\"}",
                    n * 3 / 4 - 128,
                ))
            }),
            ("nesting", |n| {
                token_with_payload(&repeat_to(
                    "{\"iss\":\"i\",\"exp\":1,\"x\":",
                    "[",
                    "",
                    n * 3 / 4 - 128,
                ))
            }),
        ],
    );
    assert_linear(
        "scopes",
        __fuzz::scopes,
        TOKEN_CAP,
        &[
            ("distinct", |n| {
                let mut text = String::new();
                let mut index = 0;
                while text.len() + 32 < n {
                    text.push_str(&format!("patient/Observation.rs?code={index} "));
                    index += 1;
                }
                text.into_bytes()
            }),
            ("duplicates", |n| repeat_to("", "system/Patient.rs ", "", n)),
            ("query", |n| {
                repeat_to("user/Observation.rs?", "a=%41&", "", n)
            }),
            ("rejected", |n| repeat_to("", "x/ ", "", n)),
            ("array", |n| repeat_to("", "system/*.cruds\0", "", n)),
        ],
    );
    assert_linear(
        "fhir_request",
        __fuzz::fhir_request,
        TOKEN_CAP,
        &[
            ("segments", |n| {
                repeat_to("GET /fhir", "/Patient", "\0/fhir", n)
            }),
            ("escapes", |n| repeat_to("GET /fhir/", "%2F", "\0/fhir", n)),
            ("dots", |n| repeat_to("GET /fhir", "/..", "\0/fhir", n)),
            ("query", |n| {
                repeat_to("GET /fhir/Observation?", "category=a&", "\0/fhir", n)
            }),
        ],
    );
    // The layer's scope check, at hyper's longest request target: a method named again and
    // again is checked once (each check reads the whole query), a requirement named again
    // and again is kept once, a granular filter keeps only the pairs it names.
    assert_linear(
        "enforce_request",
        __fuzz::enforce_request,
        REQUEST_TARGET_CAP,
        &[
            ("overrides", |n| {
                repeat_to("GET /fhir/Condition?", "_method=HEAD&", "", n)
            }),
            ("spelled overrides", |n| {
                repeat_to(
                    "GET /fhir/Condition?",
                    "_method=head&%5Fmethod=HEAD&",
                    "",
                    n,
                )
            }),
            ("includes", |n| {
                repeat_to("GET /fhir/Condition?", "_include=Condition:subject&", "", n)
            }),
            ("in lists", |n| {
                repeat_to("GET /fhir/Condition?_in=", ",", "", n)
            }),
            ("revincludes", |n| {
                repeat_to(
                    "GET /fhir/Condition?_revinclude=",
                    "Condition:subject,",
                    "",
                    n,
                )
            }),
            ("pins", |n| {
                repeat_to(
                    "GET /fhir/Condition?",
                    "patient=123&subject=Patient/123&",
                    "",
                    n,
                )
            }),
            ("chains", |n| {
                repeat_to("GET /fhir/Condition?", "subject:Patient.name=x&", "", n)
            }),
            ("system search", |n| repeat_to("GET /fhir?", "a&", "", n)),
            ("system types", |n| {
                repeat_to("GET /fhir?_type=", "Condition,", "", n)
            }),
            ("associated data", |n| {
                repeat_to("GET /fhir/$export?includeAssociatedData=", ",", "", n)
            }),
            ("type filters", |n| {
                repeat_to("GET /fhir/$export?_typeFilter=", "?_list,", "", n)
            }),
            ("granular pairs", |n| {
                numbered("GET /fhir/Observation?category=laboratory", "&a", "", n)
            }),
        ],
    );
    // A conditional create's `If-None-Exist`: a header, which may be as long as hyper reads
    // a request head.
    assert_linear(
        "enforce_request",
        __fuzz::enforce_request,
        REQUEST_HEAD_CAP,
        &[
            ("if-none-exist in lists", |n| {
                repeat_to("POST /fhir/Condition\0if-none-exist: _in=", ",", "", n)
            }),
            ("if-none-exist readings", |n| {
                repeat_to(
                    "POST /fhir/Condition\0if-none-exist: a?",
                    "_include=Group:member&",
                    "",
                    n,
                )
            }),
        ],
    );
    assert_linear(
        "dev_server_request",
        __fuzz::dev_server_request,
        64 * 1024,
        &[
            ("pairs", |n| {
                let mut text = String::from("\0application/x-www-form-urlencoded\0");
                let mut index = 0;
                while text.len() + 16 < n {
                    text.push_str(&format!("p{index}=v%41&"));
                    index += 1;
                }
                text.into_bytes()
            }),
            ("escapes", |n| {
                repeat_to("\0application/x-www-form-urlencoded\0a=", "%41", "", n)
            }),
            ("basic", |n| {
                repeat_to("Basic ", "QUFB", "\0application/x-www-form-urlencoded\0", n)
            }),
        ],
    );
    assert_linear(
        "introspection_answer",
        __fuzz::introspection_answer,
        256 * 1024,
        &[
            ("members", numbered_members),
            ("scope", |n| {
                repeat_to(
                    "{\"active\":true,\"exp\":4102444800,\"scope\":\"",
                    "system/Patient.rs ",
                    "\"}",
                    n,
                )
            }),
        ],
    );
    assert_linear(
        "jwks",
        __fuzz::jwks,
        1024 * 1024,
        &[
            ("keys", |n| {
                let key = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},"#;
                let mut text = repeat_to("{\"keys\":[", key, "", n - 2);
                text.pop();
                text.extend(b"]}");
                text
            }),
            ("members", numbered_members),
        ],
    );
    // Keys after the first 100 are checked for syntax, never built: a long list of small
    // items (each would take some twenty times its text once built) costs what 100 do.
    let zeros = |size: usize| {
        let mut text = repeat_to("{\"keys\":[", "0,", "", size - 2);
        text.pop();
        text.extend(b"]}");
        text
    };
    let (small, large) = (zeros(64 * 1024), zeros(1024 * 1024));
    let (small_cost, large_cost) = (
        allocated_by(__fuzz::jwks, &small),
        allocated_by(__fuzz::jwks, &large),
    );
    assert!(
        large_cost <= small_cost + 1024 && large_cost < 16 * 1024,
        "jwks/zeros: {small_cost} B for {} B, {large_cost} B for {} B",
        small.len(),
        large.len()
    );
    assert_linear(
        "discovery",
        __fuzz::discovery,
        1024 * 1024,
        &[
            ("members", numbered_members),
            ("list", |n| {
                repeat_to(
                    "{\"token_endpoint\":\"https://t\",\"scopes_supported\":[",
                    "\"openid\",",
                    "\"x\"]}",
                    n,
                )
            }),
        ],
    );
}

/// A fuzz target's entry point: it panics on an input that breaks an invariant.
type EntryPoint = fn(&[u8]);

/// The fuzz targets and their entry points: one row per `fuzz/src/bin/<target>.rs` (but the
/// seed writer) and per `fuzz/seeds/<target>/`.
const FUZZ_TARGETS: [(&str, EntryPoint); 10] = [
    ("authorization", __fuzz::authorization),
    ("token", __fuzz::token),
    ("claims", __fuzz::claims),
    ("jwks", __fuzz::jwks),
    ("scopes", __fuzz::scopes),
    ("fhir_request", __fuzz::fhir_request),
    ("enforce_request", __fuzz::enforce_request),
    ("introspection_answer", __fuzz::introspection_answer),
    ("discovery", __fuzz::discovery),
    ("dev_server_request", __fuzz::dev_server_request),
];

/// The names of the entries of `directory`, sorted.
fn names_in(directory: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every committed seed still passes its fuzz target's entry point (a panic is what the
/// fuzzer reports as a crash), and the harness has not drifted: each fuzz target calls the
/// entry point of its name and has seeds, and each seed directory is a target's.
#[test]
fn fuzz_seeds_replay_through_their_entry_points() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut expected: Vec<String> = FUZZ_TARGETS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    expected.sort();
    assert_eq!(names_in(&fuzz.join("seeds")), expected, "fuzz/seeds");
    let mut binaries: Vec<String> = names_in(&fuzz.join("src/bin"))
        .into_iter()
        .filter(|name| name != "write_seeds.rs")
        .map(|name| name.strip_suffix(".rs").expect("a Rust file").to_owned())
        .collect();
    binaries.sort();
    assert_eq!(binaries, expected, "fuzz/src/bin");
    for (target, entry_point) in FUZZ_TARGETS {
        let source = std::fs::read_to_string(fuzz.join(format!("src/bin/{target}.rs"))).unwrap();
        assert!(
            source.contains(&format!("smart_auth::__fuzz::{target}(data)")),
            "fuzz/src/bin/{target}.rs does not call __fuzz::{target}"
        );
        let seeds = fuzz.join("seeds").join(target);
        let names = names_in(&seeds);
        assert!(!names.is_empty(), "no seeds for {target}");
        for name in names {
            let seed = std::fs::read(seeds.join(&name)).unwrap();
            let replayed = std::panic::catch_unwind(|| entry_point(&seed));
            assert!(
                replayed.is_ok(),
                "fuzz/seeds/{target}/{name} crashes {target}"
            );
        }
    }
}
