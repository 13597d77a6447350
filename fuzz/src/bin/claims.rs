//! Fuzz target `claims`: see `smart_auth::__fuzz::claims` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::claims(data);
    });
}
