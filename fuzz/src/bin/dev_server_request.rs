//! Fuzz target `dev_server_request`: see `smart_auth::__fuzz::dev_server_request` and FUZZING.md.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        smart_auth::__fuzz::dev_server_request(data);
    });
}
