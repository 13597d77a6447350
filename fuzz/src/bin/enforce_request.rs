//! Fuzz target `enforce_request`: see `smart_auth::__fuzz::enforce_request` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::enforce_request(data);
    });
}
