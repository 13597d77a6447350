//! Fuzz target `token`: see `smart_auth::__fuzz::token` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::token(data);
    });
}
