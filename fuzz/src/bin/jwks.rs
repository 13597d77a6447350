//! Fuzz target `jwks`: see `smart_auth::__fuzz::jwks` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::jwks(data);
    });
}
