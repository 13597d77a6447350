//! Fuzz target `authorization`: see `smart_auth::__fuzz::authorization` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::authorization(data);
    });
}
