//! Parsing a realistic 20-scope claim and checking permissions against it.
//!
//! Run with `cargo bench --bench scopes`.

use criterion::{Criterion, criterion_group, criterion_main};
use smart_auth::scopes::{Interaction, ScopeSet};

const CLAIM: &str = "launch/patient openid fhirUser offline_access \
    patient/Patient.rs patient/Encounter.rs patient/Condition.rs?category=http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern \
    patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis \
    patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory \
    patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs \
    patient/Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh \
    patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs \
    patient/DiagnosticReport.rs patient/DocumentReference.rs patient/Procedure.rs \
    user/Practitioner.read system/Organization.rs __app.custom";

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
