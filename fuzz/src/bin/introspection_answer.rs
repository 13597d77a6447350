//! Fuzz target `introspection_answer`: see `smart_auth::__fuzz::introspection_answer` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::introspection_answer(data);
    });
}
