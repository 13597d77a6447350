//! Scope enforcement of one request, as the layer runs it after a token verified: a read, a
//! plain search, a search whose query reaches other types, and a patient-context search.
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
