//! Fuzz target `fhir_request`: see `smart_auth::__fuzz::fhir_request` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::fhir_request(data);
    });
}
