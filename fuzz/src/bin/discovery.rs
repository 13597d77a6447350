//! Fuzz target `discovery`: see `smart_auth::__fuzz::discovery` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::discovery(data);
    });
}
