//! The scope claim the benchmarks use for a realistic SMART token.

/// 20 scopes, granular ones among them, as a backend or user-facing app might hold.
pub const TWENTY_SCOPES: &str = "launch/patient openid fhirUser offline_access \
    patient/Patient.rs patient/Encounter.rs patient/Condition.rs?category=http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern \
    patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis \
    patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory \
    patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs \
    patient/Observation.rs?category=http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh \
    patient/MedicationRequest.rs patient/AllergyIntolerance.rs patient/Immunization.rs \
    patient/DiagnosticReport.rs patient/DocumentReference.rs patient/Procedure.rs \
    user/Practitioner.read system/Organization.rs __app.custom";
