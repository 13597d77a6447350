//! Scope enforcement of one request, as the layer runs it after a token verified: a read, a
//! plain search, a search whose query reaches other types, a patient-context search, and
//! the worst case of a granular filter: a compartment search of 500 types in `_type` with
//! a 60 KiB query, which the filter of a scope on every type must be found in for each.
//! The check is the one `ScopeEnforcement::check_bundle_entry` runs for a bundle entry,
//! which is the layer's own check on the entry's method and URL.
//!
//! Run with `cargo bench --features testing --bench enforce`.

use criterion::{Criterion, criterion_group, criterion_main};
use smart_auth::ScopeEnforcement;
use smart_auth::testing::ClaimsBuilder;

fn enforce(c: &mut Criterion) {
    let enforcement = ScopeEnforcement::new();
    let system = ClaimsBuilder::new()
        .scope("system/Patient.rs system/Observation.rs system/Practitioner.r")
        .build();
    let patient = ClaimsBuilder::new()
        .scope("patient/Patient.rs patient/Observation.rs")
        .patient("123")
        .build();
    let tagged = ClaimsBuilder::new().scope("system/*.rs?_tag=x").build();
    // Type names as FHIR writes them (letters only): `Taa`, `Tab`, ...
    let types: Vec<String> = (0..500u16)
        .map(|n| {
            let letter = |shift: u16| char::from(b'a' + u8::try_from(n / shift % 26).unwrap());
            format!("T{}{}", letter(26), letter(1))
        })
        .collect();
    let mut long_query = format!("Patient/1/*?_type={}&_tag=x", types.join(","));
    while long_query.len() < 60 * 1024 {
        long_query.push_str("&a");
    }
    let cases = [
        ("enforce/read", &system, "GET", "Patient/1"),
        (
            "enforce/search",
            &system,
            "GET",
            "Observation?code=http://loinc.org|1-8&date=ge2024-01-01&_count=50",
        ),
        (
            "enforce/search_reaching_other_types",
            &system,
            "GET",
            "Observation?subject:Patient.name=Smith&_include=Observation:performer:Practitioner&_sort=-date",
        ),
        (
            "enforce/patient_search",
            &patient,
            "GET",
            "Observation?patient=123&code=x&_sort=-date",
        ),
        (
            "enforce/filter_for_500_types_in_60_kib",
            &tagged,
            "GET",
            long_query.as_str(),
        ),
    ];
    for (name, claims, method, url) in cases {
        assert!(
            enforcement.check_bundle_entry(claims, method, url).is_ok(),
            "{name}"
        );
        c.bench_function(name, |b| {
            b.iter(|| {
                enforcement.check_bundle_entry(
                    std::hint::black_box(claims),
                    method,
                    std::hint::black_box(url),
                )
            })
        });
    }
}

criterion_group!(benches, enforce);
criterion_main!(benches);
