//! Writes the seed corpus of every target into `fuzz/seeds/TARGET/` (run from `fuzz/`).
//! The seeds are committed; run this again only to regenerate them.

use std::fs;
use std::path::Path;

fn write(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = Path::new("seeds").join(target);
    fs::create_dir_all(&dir).expect("create the seed directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("write a seed");
    }
}

fn joined(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&0u8)
}

fn main() {
    let token = smart_auth::__fuzz::valid_token();
    let (signing_input, _) = token.rsplit_once('.').expect("three segments");
    write(
        "authorization",
        &[
            (
                "bearer",
                joined(&[format!("Bearer {token}").as_bytes(), b""]),
            ),
            ("bearer_case", b"bEaReR   abc.def.ghi==".to_vec()),
            ("basic", b"Basic dXNlcjpwYXNz".to_vec()),
            ("query", joined(&[b"Bearer a.b.c", b"x=1&access_token=abc"])),
            ("bare", b"Bearer".to_vec()),
        ],
    );
    write(
        "token",
        &[
            ("valid", token.clone().into_bytes()),
            ("unsigned", format!("{signing_input}.AAAA").into_bytes()),
            ("two_segments", signing_input.as_bytes().to_vec()),
            (
                "crit",
                b"eyJhbGciOiJFZERTQSIsImNyaXQiOlsiYjY0Il19.e30.AAAA".to_vec(),
            ),
        ],
    );
    write(
        "claims",
        &[
            (
                "full",
                br#"{"iss":"https://i","exp":4102444800,"aud":["a","b"],"sub":"s","scope":"patient/*.rs launch","client_id":"c","patient":"123","encounter":"e-1","fhirUser":"Practitioner/1","fhirContext":[{"reference":"Patient/1"},{"canonical":"http://x|1","type":"Questionnaire"},{"identifier":{"value":"1"},"role":"http://r"}],"iat":1.5,"nbf":-1e300}"#.to_vec(),
            ),
            ("scp_array", br#"{"iss":"i","exp":1,"scp":["system/Patient.rs",""],"azp":"c"}"#.to_vec()),
            ("duplicate", br#"{"iss":"i","exp":1,"iss":"j"}"#.to_vec()),
            ("nested", format!("{{\"iss\":\"i\",\"exp\":1,\"x\":{}1{}}}", "[".repeat(60), "]".repeat(60)).into_bytes()),
            ("huge_number", br#"{"iss":"i","exp":1e400,"iat":123456789012345678901234567890}"#.to_vec()),
        ],
    );
    write(
        "jwks",
        &[
            (
                "mixed",
                br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"EC","crv":"P-256","kid":"b","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},{"kty":"RSA","kid":"c","alg":"RS256","use":"sig","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}]}"#.to_vec(),
            ),
            ("private", br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}"#.to_vec()),
            ("empty", br#"{"keys":[]}"#.to_vec()),
        ],
    );
    write(
        "scopes",
        &[
            ("v2", b"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory user/*.cruds system/Patient.r".to_vec()),
            ("v1", b"patient/*.read user/Patient.write launch launch/patient openid fhirUser offline_access".to_vec()),
            ("array", joined(&[b"system/Group.rs", b"", b"a b"])),
            ("odd", b"patient/Observation.rs?code=%7C&&=x\tuser/.r  */*.*".to_vec()),
        ],
    );
    write(
        "fhir_request",
        &[
            ("read", joined(&[b"GET /fhir/Patient/123", b"/fhir"])),
            (
                "search",
                joined(&[
                    b"GET /fhir/Observation?category=laboratory&code=x%7Cy",
                    b"/fhir",
                ]),
            ),
            (
                "post_search",
                joined(&[b"POST /fhir/Observation/_search?_count=1", b"/fhir/"]),
            ),
            (
                "history",
                joined(&[b"GET /fhir/Patient/1/_history/2", b"/fhir"]),
            ),
            (
                "operation",
                joined(&[b"POST /fhir/Patient/$export?_type=Observation", b"/fhir"]),
            ),
            ("encoded", joined(&[b"GET /fhir/%50atient/./1/..", b"fhir"])),
            ("metadata", joined(&[b"GET /fhir/metadata", b"/fhir"])),
            ("options", b"OPTIONS *".to_vec()),
        ],
    );
    write(
        "enforce_request",
        &[
            (
                "search",
                b"GET /fhir/Observation?category=laboratory&patient=123".to_vec(),
            ),
            (
                "override",
                b"POST /fhir/Observation/_search?_method=GET".to_vec(),
            ),
            (
                "includes",
                b"GET /fhir/Observation?_include=Observation:subject&_revinclude=Provenance:target"
                    .to_vec(),
            ),
            ("conditional", b"PUT /fhir/Patient?_id=123".to_vec()),
            ("compartment", b"GET /fhir/Patient/456/Observation".to_vec()),
            ("system", b"POST /fhir?_method=GET&_type=Condition".to_vec()),
        ],
    );
    write(
        "introspection_answer",
        &[
            ("active", br#"{"active":true,"exp":4102444800,"scope":"system/Patient.rs","client_id":"c","token_type":"Bearer","iss":"https://issuer.example","aud":["a"]}"#.to_vec()),
            ("inactive", br#"{"active":false}"#.to_vec()),
            ("wrong_types", br#"{"active":"true","exp":"1","scope":["a"]}"#.to_vec()),
            ("float_exp", br#"{"active":true,"exp":4.1e9,"iat":1e999}"#.to_vec()),
        ],
    );
    write(
        "discovery",
        &[
            ("smart", joined(&[br#"{"issuer":"https://issuer.example","token_endpoint":"https://issuer.example/token","authorization_endpoint":"https://issuer.example/authorize","jwks_uri":"https://issuer.example/jwks","capabilities":["launch-ehr","permission-v2"],"code_challenge_methods_supported":["S256"],"token_endpoint_auth_methods_supported":["private_key_jwt"],"scopes_supported":["openid"]}"#, b"max-age=300, public"])),
            ("minimal", joined(&[br#"{"token_endpoint":"https://t"}"#, b"no-store"])),
            ("bad_types", joined(&[br#"{"token_endpoint":1,"capabilities":"x","issuer":null}"#, b"max-age=\"18446744073709551616\""])),
        ],
    );
    write(
        "dev_server_request",
        &[
            ("basic", joined(&[b"Basic Y2xpZW50OnMlM0FlY3JldA==", b"application/x-www-form-urlencoded", b"grant_type=client_credentials&scope=system%2FPatient.rs+system/Observation.rs"])),
            ("assertion", joined(&[b"", b"application/x-www-form-urlencoded; charset=utf-8", b"grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c&scope=system/*.rs"])),
            ("bearer", joined(&[b"Bearer abc", b"application/x-www-form-urlencoded", b"token=abc&token_type_hint=access_token"])),
            ("repeated", joined(&[b"", b"application/x-www-form-urlencoded", b"a=1&a=2&b=%zz&c"])),
        ],
    );
}
