//! Integration tests: a real protected app and a real issuer, both on 127.0.0.1 with
//! ephemeral ports, talking HTTP; real keys and real signatures.

mod support;

mod answers;
mod claims_kit;
mod client;
mod configuration;
mod demo;
mod dev_server;
mod dev_server_state;
mod dev_server_strict;
mod discovery;
mod extractor;
mod interop;
mod introspection;
mod issuer_profiles;
mod issuers;
mod jose_strict;
mod key_cache;
mod nest;
mod placement;
mod props_mutation;
mod public_routes;
mod refusal_body;
mod scopes_e2e;
mod scopes_hardening;
mod static_keys;
mod token_cache;
mod tokens;
mod tower_generic;
mod wall_clock;
