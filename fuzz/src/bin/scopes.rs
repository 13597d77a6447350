//! Fuzz target `scopes`: see `smart_auth::__fuzz::scopes` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::scopes(data);
    });
}
