//! Reading OAuth requests strictly: form bodies (RFC 6749 appendix B), scope strings
//! (RFC 6749 section 3.3), and which client authentication a request presents (RFC 6749
//! section 2.3, RFC 7617 with the form-encoding of RFC 6749 section 2.3.1, RFC 7521
//! section 4.2).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, header};

use super::oauth::OAuthError;
use crate::form::form_decode_strict;

/// The only `client_assertion_type` this server knows (RFC 7523 section 2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Whether `headers` say the body is `application/x-www-form-urlencoded` (parameters
/// such as `charset` allowed).
fn is_media_type(headers: &HeaderMap, expected: &str) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

/// Whether the body is declared as JSON (`application/json`, parameters allowed).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    is_media_type(headers, "application/json")
}

/// The request parameters the token, introspection and revocation endpoints read: each may
/// be sent once only (RFC 6749 section 3.2), an empty copy included.
const READ_PARAMETERS: [&str; 8] = [
    "grant_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
];

/// Parses a form body. Parameters without a value count as absent (RFC 6749 section 3.1);
/// a parameter the endpoints read sent twice, even once empty (section 3.2), or a
/// malformed escape is `invalid_request`. Other parameters are not read (section 3.2: an
/// unrecognised one is ignored), so their repeats, such as RFC 8707's several `resource`
/// parameters, are let through; the first non-empty value of each is kept.
pub(crate) fn parse_form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, OAuthError> {
    if !is_media_type(headers, "application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    let malformed = || OAuthError::invalid_request("the body is not well-formed form data");
    let mut parameters = HashMap::new();
    let mut read_seen = std::collections::HashSet::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = form_decode_strict(name).ok_or_else(malformed)?;
        let value = form_decode_strict(value).ok_or_else(malformed)?;
        if READ_PARAMETERS.contains(&name.as_str()) && !read_seen.insert(name.clone()) {
            return Err(OAuthError::invalid_request("a parameter is repeated"));
        }
        if !value.is_empty() {
            parameters.entry(name).or_insert(value);
        }
    }
    Ok(parameters)
}

/// The longest scope string a token request or registration may carry (RFC 6749 sets no
/// limit; each issued token keeps its scope, so the token store's size depends on it).
pub(crate) const MAX_SCOPE_BYTES: usize = 8 * 1024;
/// The most scope tokens a scope string may hold.
pub(crate) const MAX_SCOPE_TOKENS: usize = 256;

/// Whether `scope` is scope tokens (`%x21 / %x23-5B / %x5D-7E`) separated by single
/// spaces (RFC 6749 section 3.3), at most [`MAX_SCOPE_TOKENS`] of them in at most
/// [`MAX_SCOPE_BYTES`]. Tabs, line breaks, other controls, quotes, backslashes, non-ASCII,
/// and leading, trailing or doubled spaces make a scope string malformed.
pub(crate) fn is_scope_string(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_BYTES
        && scope.split(' ').count() <= MAX_SCOPE_TOKENS
        && scope.split(' ').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        })
}

/// The client authentication a request presents. Its `Debug` shows the kind and the
/// client id only: never a secret, token or assertion.
#[derive(PartialEq, Eq)]
pub(crate) enum Presented {
    /// HTTP Basic credentials: the client id and the secret, each in both spellings.
    Basic { id: Spellings, secret: Spellings },
    /// An `Authorization: Bearer` token (accepted by introspection only).
    Bearer(String),
    /// A JWT client assertion.
    Assertion(String),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { id, .. } => f
                .debug_struct("Basic")
                .field("id", &id.as_sent)
                .field("secret", &"<redacted>")
                .finish(),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Assertion(_) => f.write_str("Assertion(<redacted>)"),
        }
    }
}

/// A Basic client id or secret in both spellings a client may send: form-decoded, as RFC
/// 6749 section 2.3.1 asks clients to encode them, and as sent, as RFC 7617 clients do
/// (`curl -u`, the Inferno test kits): `a+b` is then `a+b`, not `a b`, and `50%off` is no
/// form encoding at all. Knowing either spelling of the registered secret is knowing the
/// secret; either spelling of a registered client id names that client.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Spellings {
    /// The form-decoded text; `None` when it is no valid form encoding.
    pub(crate) decoded: Option<String>,
    /// The text as it stands before or after the colon.
    pub(crate) as_sent: String,
}

/// Redacted: a `Spellings` may hold a secret.
impl std::fmt::Debug for Spellings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spellings(<redacted>)")
    }
}

impl Spellings {
    fn of(text: &str) -> Self {
        Self {
            decoded: form_decode_strict(text),
            as_sent: text.to_owned(),
        }
    }

    /// The distinct spellings, the decoded one first.
    pub(crate) fn each(&self) -> impl Iterator<Item = &str> {
        let decoded = self.decoded.as_deref();
        decoded
            .into_iter()
            .chain(Some(self.as_sent.as_str()).filter(|sent| decoded != Some(*sent)))
    }
}

/// Finds the one client authentication method of a request.
///
/// Two methods at once (for example Basic and an assertion, or Basic and a
/// `client_secret` parameter) are `invalid_request` (RFC 6749 section 2.3). No method at
/// all, another HTTP scheme and malformed Basic credentials are `invalid_client` with 401
/// and a Basic challenge. A method this server does not support sent in the form
/// (`client_secret_post`, another assertion type) is `invalid_client` with 400 (RFC 6749
/// section 5.2: 401 is for credentials in the `Authorization` header; the Inferno test
/// kits require 400 for another `client_assertion_type`).
pub(crate) fn presented_authentication(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    bearer_allowed: bool,
) -> Result<Presented, OAuthError> {
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = authorizations.next();
    if authorizations.next().is_some() {
        return Err(OAuthError::invalid_request(
            "the Authorization header is repeated",
        ));
    }
    let assertion_type = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    let uses_assertion = assertion_type.is_some() || assertion.is_some();
    let uses_post = form.contains_key("client_secret");
    let methods =
        usize::from(authorization.is_some()) + usize::from(uses_assertion) + usize::from(uses_post);
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "use exactly one client authentication method",
        ));
    }
    if let Some(value) = authorization {
        let value = value.to_str().map_err(|_| OAuthError::unauthenticated())?;
        return http_credentials(value, bearer_allowed);
    }
    match (assertion_type, assertion) {
        (Some(kind), Some(assertion)) if kind == ASSERTION_TYPE => {
            Ok(Presented::Assertion(assertion.clone()))
        }
        (Some(_), Some(_)) => Err(OAuthError::invalid_client(
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )),
        (Some(_), None) | (None, Some(_)) => Err(OAuthError::invalid_request(
            "client_assertion_type and client_assertion go together",
        )),
        (None, None) if uses_post => Err(OAuthError::invalid_client(
            "client_secret_post is not supported: use HTTP Basic or a JWT client assertion",
        )),
        (None, None) => Err(OAuthError::unauthenticated()),
    }
}

/// Reads an `Authorization` header value: `Basic` (strictly), or `Bearer` where allowed.
fn http_credentials(value: &str, bearer_allowed: bool) -> Result<Presented, OAuthError> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let credentials = rest.trim_start_matches(' ');
    if scheme.eq_ignore_ascii_case("basic") {
        return basic_credentials(credentials)
            .map(|(id, secret)| Presented::Basic { id, secret })
            .ok_or_else(OAuthError::unauthenticated);
    }
    if bearer_allowed && scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty() {
        // RFC 6750 section 2.1: one `b64token`; anything else is malformed, not a token.
        return crate::bearer::token_text(credentials.as_bytes())
            .map(|token| Presented::Bearer(token.to_owned()))
            .map_err(|_| OAuthError::malformed_bearer_caller());
    }
    Err(OAuthError::unauthenticated())
}

/// `base64(form(id) ":" form(secret))`: padded base64 (RFC 7617), one colon after the id
/// (a colon in the id itself is encoded, RFC 6749 section 2.3.1), the id and the secret in
/// both spellings (see [`Spellings`]). A non-empty client id is required.
fn basic_credentials(token: &str) -> Option<(Spellings, Spellings)> {
    let decoded = STANDARD.decode(token).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    (!id.is_empty()).then(|| (Spellings::of(id), Spellings::of(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Debug` of presented credentials names the kind and the client id, never the
    /// secret, token or assertion, in any spelling.
    #[test]
    fn presented_credentials_debug_without_secrets() {
        let rows = [
            (
                Presented::Basic {
                    id: Spellings::of("client-7"),
                    secret: Spellings::of("s3cr%65t-marker"),
                },
                r#"Basic { id: "client-7", secret: "<redacted>" }"#,
            ),
            (
                Presented::Bearer("bearer-marker".to_owned()),
                "Bearer(<redacted>)",
            ),
            (
                Presented::Assertion("assertion-marker".to_owned()),
                "Assertion(<redacted>)",
            ),
        ];
        for (presented, debug) in rows {
            assert_eq!(format!("{presented:?}"), debug);
        }
        assert_eq!(
            format!("{:?}", Spellings::of("s3cret")),
            "Spellings(<redacted>)"
        );
    }

    #[test]
    fn form_decoding_is_strict() {
        assert_eq!(form_decode_strict("a%2Cb+c%2b").as_deref(), Some("a,b c+"));
        assert_eq!(form_decode_strict("%E2%9C%93").as_deref(), Some("\u{2713}"));
        for bad in ["%", "%4", "%zz", "%4g", "a%+1", "%FF", "%C3"] {
            assert_eq!(form_decode_strict(bad), None, "{bad}");
        }
    }

    /// Hostile form bodies: the exact parameters, or the exact refusal.
    #[test]
    fn hostile_form_bodies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let malformed = "the body is not well-formed form data";
        /// A body and its parameters, or the refusal's description.
        type Row = (
            &'static [u8],
            Result<&'static [(&'static str, &'static str)], &'static str>,
        );
        let rows: &[Row] = &[
            (b"a=1&b=2", Ok(&[("a", "1"), ("b", "2")])),
            (b"scope=1&scope=2", Err("a parameter is repeated")),
            (b"scope=1&scope=", Err("a parameter is repeated")),
            (
                b"grant_type=&grant_type=client_credentials",
                Err("a parameter is repeated"),
            ),
            (
                b"token=a&token_type_hint=b&token_type_hint=b",
                Err("a parameter is repeated"),
            ),
            // Parameters no endpoint reads may repeat (RFC 8707 `resource`).
            (b"resource=a&resource=b", Ok(&[("resource", "a")])),
            (b"a=1&a=", Ok(&[("a", "1")])),
            (b"a=&a=1", Ok(&[("a", "1")])),
            (
                b"a=x+y&b=x%20y&c=x%2By",
                Ok(&[("a", "x y"), ("b", "x y"), ("c", "x+y")]),
            ),
            (b"a=%zz", Err(malformed)),
            (b"a=%4", Err(malformed)),
            (b"a%4=1", Err(malformed)),
            (b"a=%", Err(malformed)),
            (b"a=%FF", Err(malformed)),
            (b"a=\xff", Err("the body is not UTF-8")),
            (b"a=%00", Ok(&[("a", "\0")])),
            (b"=v&&b", Ok(&[("", "v")])),
            (b"a=b=c", Ok(&[("a", "b=c")])),
        ];
        for (body, expected) in rows {
            let got = parse_form(&headers, body).map_err(|error| error.description);
            let expected = expected.map(|pairs| {
                pairs
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                    .collect::<HashMap<_, _>>()
            });
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn scope_strings() {
        for good in ["system/*.rs", "a b", "launch system/Patient.rs?x=1|2"] {
            assert!(is_scope_string(good), "{good}");
        }
        for bad in [
            "", " a", "a ", "a  b", "a\tb", "a\nb", "a\rb", "a\u{c}b", "a\"b", "a\\b", "é",
            "a\u{0}",
        ] {
            assert!(!is_scope_string(bad), "{bad:?}");
        }
        // Bounded: by bytes and by tokens.
        let long = "a".repeat(MAX_SCOPE_BYTES);
        assert!(is_scope_string(&long));
        assert!(!is_scope_string(&format!("{long}b")));
        let many = vec!["s"; MAX_SCOPE_TOKENS].join(" ");
        assert!(is_scope_string(&many));
        assert!(!is_scope_string(&format!("{many} s")));
    }

    #[test]
    fn basic_credentials_rules() {
        let encode = |text: &str| STANDARD.encode(text);
        let secret = |decoded: Option<&str>, as_sent: &str| Spellings {
            decoded: decoded.map(str::to_owned),
            as_sent: as_sent.to_owned(),
        };
        let id = |text: &str| secret(Some(text), text);
        assert_eq!(
            basic_credentials(&encode("my%3Aid:p%40ss+word%3A1")),
            Some((
                secret(Some("my:id"), "my%3Aid"),
                secret(Some("p@ss word:1"), "p%40ss+word%3A1")
            ))
        );
        assert_eq!(
            basic_credentials(&encode("id:a:b")),
            Some((id("id"), secret(Some("a:b"), "a:b")))
        );
        assert_eq!(
            basic_credentials(&encode("id:")),
            Some((id("id"), secret(Some(""), "")))
        );
        // A secret or an id that is no form encoding is still read as sent.
        assert_eq!(
            basic_credentials(&encode("id:50%off")),
            Some((id("id"), secret(None, "50%off")))
        );
        assert_eq!(
            basic_credentials(&encode("id:%FF")),
            Some((id("id"), secret(None, "%FF")))
        );
        assert_eq!(
            basic_credentials(&encode("50%off:s")),
            Some((secret(None, "50%off"), id("s")))
        );
        assert_eq!(
            basic_credentials(&encode("svc+reports:s")).map(|(id, _)| id),
            Some(secret(Some("svc reports"), "svc+reports"))
        );
        assert_eq!(
            secret(Some("svc reports"), "svc+reports")
                .each()
                .collect::<Vec<_>>(),
            ["svc reports", "svc+reports"]
        );
        assert_eq!(id("id").each().collect::<Vec<_>>(), ["id"]);
        for bad in [
            encode("no-colon"),
            encode(":secret"),
            STANDARD.encode(b"id:\xff"),
            encode("id:secret").trim_end_matches('=').to_owned() + "!",
            "a".to_owned(),
            String::new(),
        ] {
            assert_eq!(basic_credentials(&bad), None, "{bad:?}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::config;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// Form-encodes `text` the way a client would, choosing per byte between the plain
    /// character, `%XX` in either case, and `+` for a space.
    fn form_encode(text: &str, choices: &[u8]) -> String {
        let mut out = String::new();
        for (index, byte) in text.bytes().enumerate() {
            let choice = choices
                .get(index % choices.len().max(1))
                .copied()
                .unwrap_or(0);
            match byte {
                b' ' if choice % 2 == 0 => out.push('+'),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~'
                    if choice % 3 != 0 =>
                {
                    out.push(char::from(byte));
                }
                _ if choice % 2 == 0 => out.push_str(&format!("%{byte:02X}")),
                _ => out.push_str(&format!("%{byte:02x}")),
            }
        }
        out
    }

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers
    }

    proptest! {
        #![proptest_config(config(512))]

        /// Any text, form-encoded any valid way, decodes back to itself.
        #[test]
        fn form_encoding_round_trips(text in "\\PC{0,24}", choices in proptest::collection::vec(any::<u8>(), 1..8)) {
            prop_assert_eq!(form_decode_strict(&form_encode(&text, &choices)), Some(text));
        }

        /// A body reads back exactly (empty values absent, the first value of a name no
        /// endpoint reads kept); a repeated name the endpoints read is `invalid_request`;
        /// hostile bytes are `invalid_request`; the parameters never hold more text than
        /// the body.
        #[test]
        fn form_bodies_read_exactly(
            pairs in proptest::collection::vec(
                (prop_oneof!["[a-z_]{1,6}", Just("scope".to_owned()), Just("token".to_owned())], "\\PC{0,12}"),
                0..6,
            ),
            choices in proptest::collection::vec(any::<u8>(), 1..8),
            noise in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let body = pairs
                .iter()
                .map(|(name, value)| format!("{}={}", form_encode(name, &choices), form_encode(value, &choices)))
                .collect::<Vec<_>>()
                .join("&");
            let mut expected = HashMap::new();
            let mut seen = std::collections::HashSet::new();
            let mut repeated = false;
            for (name, value) in &pairs {
                if READ_PARAMETERS.contains(&name.as_str()) && !seen.insert(name.clone()) {
                    repeated = true;
                }
                if !value.is_empty() {
                    expected.entry(name.clone()).or_insert_with(|| value.clone());
                }
            }
            match parse_form(&form_headers(), body.as_bytes()) {
                Ok(parameters) => {
                    prop_assert!(!repeated);
                    prop_assert_eq!(parameters, expected);
                }
                Err(error) => {
                    prop_assert!(repeated);
                    prop_assert_eq!(error.code, "invalid_request");
                }
            }
            match parse_form(&form_headers(), &noise) {
                Ok(parameters) => {
                    let held: usize = parameters.iter().map(|(n, v)| n.len() + v.len()).sum();
                    prop_assert!(held <= noise.len());
                }
                Err(error) => prop_assert_eq!(error.code, "invalid_request"),
            }
        }

        /// Basic credentials: a client id and secret form-encoded and base64-encoded are
        /// read back exactly; any change of scheme or bytes is a clean refusal
        /// (`invalid_client` or `invalid_request`), never a panic or another client.
        #[test]
        fn basic_credentials_read_exactly(
            id in "\\PC{1,12}",
            secret in "\\PC{0,12}",
            choices in proptest::collection::vec(any::<u8>(), 1..8),
            scheme in prop::sample::select(vec!["Basic", "basic", "BASIC", "Basic  "]),
            flip in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        ) {
            let plain = format!("{}:{}", form_encode(&id, &choices), form_encode(&secret, &choices));
            let mut encoded = STANDARD.encode(plain).into_bytes();
            if let Some((at, bits)) = flip {
                let at = at.index(encoded.len());
                encoded[at] ^= bits;
            }
            let mut value = format!("{scheme} ").into_bytes();
            value.extend(&encoded);
            let Ok(value) = HeaderValue::from_bytes(&value) else {
                return Ok(());
            };
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value);
            let answer = presented_authentication(&headers, &HashMap::new(), false);
            match (flip, answer) {
                (None, answer) => prop_assert_eq!(
                    answer,
                    Ok(Presented::Basic {
                        id: Spellings {
                            decoded: Some(id.clone()),
                            as_sent: form_encode(&id, &choices),
                        },
                        secret: Spellings {
                            decoded: Some(secret.clone()),
                            as_sent: form_encode(&secret, &choices),
                        },
                    })
                ),
                (Some(_), Ok(Presented::Basic { id: read_id, .. })) => prop_assert!(!read_id.as_sent.is_empty()),
                (Some(_), Ok(other)) => prop_assert!(false, "{:?}", other),
                (Some(_), Err(error)) => prop_assert!(matches!(error.code, "invalid_client" | "invalid_request")),
            }
        }

        /// Any `Authorization` value and form: one method, or a clean refusal.
        #[test]
        fn client_authentication_never_panics(
            value in proptest::collection::vec(any::<u8>(), 0..64),
            assertion_type in proptest::option::of(prop::sample::select(vec![ASSERTION_TYPE, "x", ""])),
            assertion in proptest::option::of("[a-z.]{0,8}"),
            secret in any::<bool>(),
            bearer_allowed in any::<bool>(),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.insert(header::AUTHORIZATION, value);
            }
            let mut form = HashMap::new();
            if let Some(kind) = assertion_type {
                form.insert("client_assertion_type".to_owned(), kind.to_owned());
            }
            if let Some(assertion) = assertion {
                form.insert("client_assertion".to_owned(), assertion);
            }
            if secret {
                form.insert("client_secret".to_owned(), "s".to_owned());
            }
            match presented_authentication(&headers, &form, bearer_allowed) {
                Ok(Presented::Bearer(token)) => prop_assert!(bearer_allowed && !token.is_empty()),
                Ok(Presented::Basic { id, .. }) => prop_assert!(!id.as_sent.is_empty()),
                Ok(Presented::Assertion(_)) => prop_assert!(!headers.contains_key(header::AUTHORIZATION)),
                Err(error) => prop_assert!(matches!(error.code, "invalid_client" | "invalid_request")),
            }
        }
    }
}
