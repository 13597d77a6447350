//! Parsing a realistic 20-scope claim and checking permissions against it.
//!
//! Run with `cargo bench --bench scopes`.

#[path = "support/twenty_scopes.rs"]
mod twenty_scopes;

use criterion::{Criterion, criterion_group, criterion_main};
use smart_auth::scopes::{Interaction, ScopeSet};
use twenty_scopes::TWENTY_SCOPES as CLAIM;

fn scopes(c: &mut Criterion) {
    assert_eq!(CLAIM.split_whitespace().count(), 20);
    c.bench_function("scopes/parse_20", |b| {
        b.iter(|| ScopeSet::parse(std::hint::black_box(CLAIM)))
    });
    let set = ScopeSet::parse(CLAIM).with_patient_context(true);
    c.bench_function("scopes/permits_hit", |b| {
        b.iter(|| {
            set.permits(
                Interaction::SearchType,
                std::hint::black_box("DocumentReference"),
            )
        })
    });
    c.bench_function("scopes/permits_miss", |b| {
        b.iter(|| set.permits(Interaction::Delete, std::hint::black_box("Observation")))
    });
    c.bench_function("scopes/search_constraints", |b| {
        b.iter(|| set.search_constraints(None, std::hint::black_box("Observation")))
    });
    c.bench_function("scopes/parse_20_and_permits", |b| {
        b.iter(|| {
            ScopeSet::parse(std::hint::black_box(CLAIM))
                .with_patient_context(true)
                .permits(Interaction::Read, "Observation")
        })
    });
}

criterion_group!(benches, scopes);
criterion_main!(benches);
