//! Finding the one Bearer token of a request (RFC 6750 section 2).
//!
//! Only the `Authorization` header carries tokens. A token in the query string is refused
//! with `invalid_request` (RFC 6750 section 2.3 says it SHOULD NOT be used, and URLs end up
//! in logs), and so is any second credential. A token in a form body (RFC 6750 section 2.2,
//! optional for servers) is neither read nor refused: the layer does not read bodies, so
//! such a request counts as one without credentials (401, or anonymous in optional mode),
//! and a handler must not take a token from the body either.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::error::ErrorKind;

/// Returns the request's Bearer token, `Ok(None)` when the request carries no credentials
/// (no `Authorization` header, or one with another scheme such as `Basic`).
#[cfg(test)]
pub(crate) fn bearer_token<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
) -> Result<Option<&'a str>, ErrorKind> {
    bearer_credential(headers, query)?
        .map(token_text)
        .transpose()
}

/// The first half of [`bearer_token`]: the credential after `Bearer `, as bytes, with
/// every rule checked except the token's own syntax, which [`token_text`] checks.
///
/// The layer looks the credential up in its token cache between the two: a cached token
/// was a valid signed JWT, and every JWT is a valid `b64token`, so for a cached credential
/// the syntax check cannot fail and is skipped. For any other credential it runs before
/// the token is used, so the answers are exactly those of [`bearer_token`].
pub(crate) fn bearer_credential<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
) -> Result<Option<&'a [u8]>, ErrorKind> {
    let query_token = query.is_some_and(has_access_token_parameter);
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return if query_token {
            Err(ErrorKind::InvalidRequest)
        } else {
            Ok(None)
        };
    };
    if values.next().is_some() || query_token {
        return Err(ErrorKind::InvalidRequest);
    }
    // RFC 9110 section 5.5: whitespace around a field value is not part of it (HTTP/1
    // parsers drop it; an HTTP/3 stack or a test may not).
    let mut bytes = value.as_bytes();
    if matches!(bytes.first(), Some(b' ' | b'\t')) || matches!(bytes.last(), Some(b' ' | b'\t')) {
        bytes = bytes.trim_ascii();
    }
    if let Some(rest) = after_bearer_and_space(bytes) {
        return Ok(Some(skip_spaces(rest)));
    }
    // `credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]` (RFC 9110 section
    // 11.4): the scheme is a run of `tchar`, ended by a space or by the end of the value.
    // Anything else there (a tab, a comma, a colon, no scheme at all) makes the header
    // malformed, whatever the scheme: `Bearer\t<token>` is neither a Bearer credential nor
    // the absence of one (RFC 6750 section 3.1, `invalid_request`).
    let scheme_end = bytes
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(bytes.len());
    let scheme = &bytes[..scheme_end];
    let rest = match bytes.get(scheme_end) {
        None if !scheme.is_empty() => &[][..],
        Some(b' ') if !scheme.is_empty() => &bytes[scheme_end + 1..],
        _ => return Err(ErrorKind::InvalidRequest),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Not a Bearer credential; one that hides a Bearer credential after a comma, or
        // cannot be read well enough to tell, is still malformed.
        if hides_a_bearer_credential(rest) {
            return Err(ErrorKind::InvalidRequest);
        }
        return Ok(None);
    }
    Ok(Some(skip_spaces(rest)))
}

/// Whether the credentials after another scheme hold a Bearer credential after a comma
/// (`Basic eA==, Bearer <token>`), or cannot be read well enough to tell: a field holds one
/// credential (RFC 9110 section 11.4), and a reader that splits the value at commas, as it
/// splits a challenge list, would find a token the layer never checked. An auth-param
/// named `bearer` (`, bearer="x"`) is another thing and stays the other scheme's, and so is
/// a comma inside a quoted string (`realm="a, Bearer b"`). A quoted string starts only
/// where an auth-param's value does (after `=`, RFC 9110 section 11.2); a `"` anywhere
/// else, or one left open, makes the credentials unreadable, which counts as hiding one.
/// So does a byte beyond ASCII outside a quoted string: `obs-text` may stand in a
/// quoted string (`username="é"`, RFC 9110 section 5.6.4), in no token or token68.
fn hides_a_bearer_credential(credentials: &[u8]) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    let mut after_equals = false;
    for (at, &byte) in credentials.iter().enumerate() {
        if quoted {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' if after_equals => quoted = true,
            b'"' => return true,
            byte if !byte.is_ascii() => return true,
            b',' => {
                let part = credentials[at + 1..].trim_ascii_start();
                if part
                    .get(..6)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer"))
                    && matches!(part.get(6), None | Some(b' ' | b'\t' | b','))
                {
                    return true;
                }
            }
            _ => {}
        }
        if !matches!(byte, b' ' | b'\t') {
            after_equals = byte == b'=';
        }
    }
    quoted
}

/// Whether `value` is an RFC 9110 `token` (section 5.6.2: one or more `tchar`), such as an
/// auth-scheme or a method.
pub(crate) fn is_token(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|&b| is_tchar(b))
}

/// `tchar` of RFC 9110 section 5.6.2: the characters of a token such as an auth-scheme.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// What follows `Bearer ` (the scheme in any letter case, then one space) at the start of
/// `value`: the common case, decided with one 8-byte comparison instead of a scan for the
/// space and a byte-by-byte comparison of the scheme. The answer is exactly that of the
/// general path in [`bearer_credential`].
fn after_bearer_and_space(value: &[u8]) -> Option<&[u8]> {
    let (head, rest) = value.split_first_chunk::<7>()?;
    let mut word = [0u8; 8];
    word[..7].copy_from_slice(head);
    // An ASCII letter and its upper case differ only in bit 0x20, and no other byte
    // becomes `b`, `e`, `a` or `r` when that bit is set; the space's lane is compared as
    // it is.
    const LETTER_CASE: u64 = 0x0000_2020_2020_2020;
    let folded = u64::from_le_bytes(word) | LETTER_CASE;
    (folded == u64::from_le_bytes(*b"bearer \0")).then_some(rest)
}

fn skip_spaces(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
    &value[start..]
}

/// The second half of [`bearer_token`]: the credential as text, if it is a `b64token`.
///
/// A valid `b64token` is visible ASCII, so the whole header value is too: checking the
/// token alone decides exactly as checking the whole value first would.
pub(crate) fn token_text(credential: &[u8]) -> Result<&str, ErrorKind> {
    if !is_b64token(credential) {
        return Err(ErrorKind::InvalidRequest);
    }
    std::str::from_utf8(credential).map_err(|_| ErrorKind::InvalidRequest)
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
///
/// Runs on every request over the whole token, so the scan has no early exit and no
/// branch per byte: the compiler turns it into vector instructions.
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    !body.is_empty()
        && body
            .iter()
            .fold(true, |valid, &b| valid & is_b64token_char(b))
}

/// One character of `b64token` before the padding, computed without branches.
#[inline(always)]
fn is_b64token_char(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    let other = (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/');
    letter | digit | other
}

/// Whether the query has an `access_token` parameter (RFC 6750 section 2.3), its name read
/// as a lenient server reads it ([`crate::form::lenient_raw_parameter_name`]): escaped
/// (`access%5Ftoken`, `%61ccess_token`), in another letter case (`ACCESS_TOKEN`, which
/// servers that match query keys ignoring case take for the token), with a `+` or
/// whitespace around it. The query is split at `;` as well as `&`, as some servers split it.
pub(crate) fn has_access_token_parameter(query: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        match crate::form::lenient_raw_parameter_name(name) {
            Some(name) => crate::form::reads_as(&name, "access_token"),
            None => folds_to_access_token(name),
        }
    })
}

/// Whether a raw parameter name with characters beyond ASCII reads as `access_token` to a
/// server that ignores case beyond ASCII: Java's `equalsIgnoreCase` and .NET's ordinal
/// comparison ignoring case match `ſ` with `s`, `ı` and `İ` with `i`, and the Kelvin sign
/// with `k`.
#[cold]
fn folds_to_access_token(raw: &str) -> bool {
    let Some(decoded) = crate::form::decoded_raw_parameter_name(raw) else {
        return false;
    };
    let folded: String = decoded
        .chars()
        .map(|c| match c {
            'ſ' => 's',
            'ı' | 'İ' => 'i',
            '\u{212A}' => 'k',
            other => other,
        })
        .collect();
    crate::form::reads_as(&folded, "access_token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn table() {
        type Row = (
            &'static [&'static str],
            Option<&'static str>,
            Result<Option<&'static str>, ErrorKind>,
        );
        let rows: &[Row] = &[
            (&[], None, Ok(None)),
            (&["Bearer abc.def.ghi"], None, Ok(Some("abc.def.ghi"))),
            (&["bearer abc"], None, Ok(Some("abc"))),
            (&["BEARER abc"], None, Ok(Some("abc"))),
            (&["Bearer   abc=="], None, Ok(Some("abc=="))),
            (&["Basic dXNlcjpwYXNz"], None, Ok(None)),
            (&["Negotiate"], None, Ok(None)),
            // A Bearer credential hidden after another scheme's.
            (
                &["Basic eA==, Bearer abc"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Basic eA==,bearer abc"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Basic eA==, BEARER\tabc"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Basic eA==, Bearer"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Digest a=1, b=2, Bearer abc"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (&["Digest username=\"u\", bearer=\"x\""], None, Ok(None)),
            (
                &["Digest username=\"u\", realm=\"a, Bearer b\""],
                None,
                Ok(None),
            ),
            (&["Digest realm=\"a\\\", Bearer b\""], None, Ok(None)),
            // A quote where no auth-param value starts, or one left open: unreadable.
            (
                &["Basic eA\"==, Bearer x"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Basic a\", Bearer evil"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Digest realm=\"a, Bearer b"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (&["Digest realm = \"a, b\", nonce=\"x\""], None, Ok(None)),
            (
                &["AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=c"],
                None,
                Ok(None),
            ),
            (
                &["Digest realm=\"a\", Bearer b"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Digest username=\"u\", realm=\"Bearer x\""],
                None,
                Ok(None),
            ),
            (&["Basic eA==, Bearerx abc"], None, Ok(None)),
            (&["Bearer"], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer "], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer ==="], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer a b"], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer a\"b"], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer a=b"], None, Err(ErrorKind::InvalidRequest)),
            (
                &["Bearer abc", "Bearer abc"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Bearer abc", "Basic x"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("access_token=abc"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Bearer abc"],
                Some("a=1&access_token=abc"),
                Err(ErrorKind::InvalidRequest),
            ),
            (&["Bearer abc"], Some("token=abc&x"), Ok(Some("abc"))),
            // Some servers split a query at `;` too.
            (
                &["Bearer abc"],
                Some("a=1;access_token=abc"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Bearer abc"],
                Some("a=1;access%5Ftoken"),
                Err(ErrorKind::InvalidRequest),
            ),
            // The parameter's name is read percent-decoded, as a form decoder reads it.
            (
                &["Bearer abc"],
                Some("access%5Ftoken=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Bearer abc"],
                Some("access%5ftoken=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Bearer abc"],
                Some("a=1&%61ccess_token"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("%61%63%63%65%73%73%5F%74%6F%6B%65%6E=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            // The name read as a lenient server reads it: any letter case, `+` and
            // control characters around it dropped.
            (
                &["Bearer abc"],
                Some("access%5Ftoken%00=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (&[], Some("ACCESS_TOKEN=x"), Err(ErrorKind::InvalidRequest)),
            (
                &["Bearer abc"],
                Some("a=1&Access_Token=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("%41ccess_token=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("+access_token+=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("%20access_token=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (&["Bearer abc"], Some("access_tokens=x"), Ok(Some("abc"))),
            (&["Bearer abc"], Some("x=access_token"), Ok(Some("abc"))),
            (
                &["Bearer abc"],
                Some("access%C5%BFtoken=x"),
                Ok(Some("abc")),
            ),
            // Letters beyond ASCII that case-folding readers match with ASCII ones.
            (
                &[],
                Some("acce%C5%BFs_token=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("ACCE%C5%BF%C5%BF_TOKEN=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("access_to%E2%84%AAen=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (&["Bearer abc"], Some("acce%C3%9F_token=x"), Ok(Some("abc"))),
            (&["Bearer abc"], Some("access%5Gtoken=x"), Ok(Some("abc"))),
            (&["Bearer abc"], Some("access%5"), Ok(Some("abc"))),
            // PHP reads an inner space (`+`), a `.` or a bracketed suffix as `_`.
            (
                &["Bearer abc"],
                Some("access+token=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Bearer abc"],
                Some("access.token=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &["Bearer abc"],
                Some("access_token%5B%5D=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (
                &[],
                Some("access_token[0]=x"),
                Err(ErrorKind::InvalidRequest),
            ),
            (&["Bearer abc"], Some("access_tokens=x"), Ok(Some("abc"))),
            // Malformed credentials: the scheme must be a token ended by a space or the end.
            (&[""], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer,abc"], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer\tabc"], None, Err(ErrorKind::InvalidRequest)),
            (&["bearer:abc"], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer=abc"], None, Err(ErrorKind::InvalidRequest)),
            (
                &["Basic,dXNlcjpwYXNz"],
                None,
                Err(ErrorKind::InvalidRequest),
            ),
            (&["Bearerabc"], None, Ok(None)),
            // Whitespace around the field value is not part of it (RFC 9110 section 5.5).
            (&["Bearer abc "], None, Ok(Some("abc"))),
            (&["Bearer abc \t "], None, Ok(Some("abc"))),
            (&[" Bearer abc"], None, Ok(Some("abc"))),
            (&["Bearer abc d "], None, Err(ErrorKind::InvalidRequest)),
            (&["Bearer \t"], None, Err(ErrorKind::InvalidRequest)),
            (&["Basic x "], None, Ok(None)),
            (&["Digest username=\"a\", realm=\"b\""], None, Ok(None)),
            (&["AWS4-HMAC-SHA256 Credential=x"], None, Ok(None)),
        ];
        for (values, query, expected) in rows {
            let map = headers(values);
            assert_eq!(
                bearer_token(&map, *query),
                *expected,
                "{values:?} {query:?}"
            );
        }
    }

    /// Every single-byte change of `Bearer x`, at each position of the scheme and its
    /// space: the 8-byte comparison accepts exactly what the general rule accepts.
    #[test]
    fn bearer_prefix_comparison_is_exactly_the_general_rule() {
        let general = |value: &[u8]| {
            value.len() > 7 && value[..6].eq_ignore_ascii_case(b"bearer") && value[6] == b' '
        };
        let mut accepted = 0;
        for position in 0..7 {
            for byte in 0..=u8::MAX {
                let mut value = *b"Bearer x";
                value[position] = byte;
                let fast = after_bearer_and_space(&value);
                assert_eq!(fast.is_some(), general(&value), "{value:?}");
                if let Some(rest) = fast {
                    assert_eq!(rest, b"x");
                    accepted += 1;
                }
            }
        }
        // Each letter in either case, the space only as itself.
        assert_eq!(accepted, 6 * 2 + 1);
        assert_eq!(after_bearer_and_space(b"bEaReR abc"), Some(&b"abc"[..]));
        assert_eq!(after_bearer_and_space(b"Bearer"), None);
    }

    #[test]
    fn b64token_characters_are_exactly_the_rfc6750_set() {
        for b in 0..=u8::MAX {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64token_char(b), expected, "byte {b}");
        }
    }

    #[test]
    fn non_ascii_header_is_invalid_request() {
        let mut map = HeaderMap::new();
        map.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xffabc").unwrap(),
        );
        assert_eq!(bearer_token(&map, None), Err(ErrorKind::InvalidRequest));
        for (value, expected) in [
            (&b"Basic \xffabc"[..], Err(ErrorKind::InvalidRequest)),
            (b"Digest username=\xc3\xa9", Err(ErrorKind::InvalidRequest)),
            (b"Digest \xc3\xa9=\"x\"", Err(ErrorKind::InvalidRequest)),
            (b"Digest realm=\"a\", \xff", Err(ErrorKind::InvalidRequest)),
            // `obs-text` in a quoted string is another scheme's well-formed credential.
            (b"Digest username=\"\xc3\xa9\", realm=\"x\"", Ok(None)),
            (b"Digest realm=\"\xff\\\xfe, Bearer x\"", Ok(None)),
            (b"Bearer abc\x80", Err(ErrorKind::InvalidRequest)),
            (b"Bearer\tabc", Err(ErrorKind::InvalidRequest)),
            (b"Basic\tabc", Err(ErrorKind::InvalidRequest)),
        ] {
            let mut map = HeaderMap::new();
            map.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
            assert_eq!(bearer_token(&map, None), expected, "{value:?}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::config;
    use http::HeaderValue;
    use proptest::prelude::*;

    /// A scheme: `Bearer` in any letter case, near misses, other schemes, nothing.
    fn scheme() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(any::<bool>(), 6).prop_map(|upper| {
                "bearer"
                    .chars()
                    .zip(upper)
                    .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                    .collect()
            }),
            prop::sample::select(vec![
                "",
                "Basic",
                "Bearer\t",
                "Bearerx",
                "Bear",
                "bearer:",
                "B\u{e9}arer",
                "DPoP",
            ])
            .prop_map(str::to_owned),
        ]
    }

    /// A credential: a `b64token`, or one with hostile bytes mixed in.
    fn credential() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[A-Za-z0-9._~+/-]{1,40}={0,3}".prop_map(String::into_bytes),
            proptest::collection::vec(
                prop_oneof![
                    4 => prop::sample::select(b"Aa0-._~+/=".to_vec()),
                    1 => prop::sample::select(b" \t\",;\\\x7f\x00\x80\xff".to_vec()),
                ],
                0..40
            ),
        ]
    }

    proptest! {
        #![proptest_config(config(512))]

        /// The answer is the credential after the scheme and its spaces when that is a
        /// `b64token`, `InvalidRequest` for a malformed Bearer credential or a second
        /// credential, and `None` for other schemes; never a panic.
        #[test]
        fn authorization_header_answers_are_exact(
            scheme in scheme(),
            spaces in 0usize..4,
            credential in credential(),
            second in proptest::option::of(credential()),
            query in prop::sample::select(vec![None, Some(""), Some("a=1"), Some("access_token=x"), Some("a=1&access_token"), Some("access_tokenx=1")]),
        ) {
            let mut value = scheme.clone().into_bytes();
            value.extend(std::iter::repeat_n(b' ', spaces));
            value.extend(&credential);
            let Ok(header) = HeaderValue::from_bytes(&value) else {
                // Not a header value at all: hyper never hands it over.
                return Ok(());
            };
            let mut headers = HeaderMap::new();
            headers.append(AUTHORIZATION, header);
            if let Some(second) = &second
                && let Ok(second) = HeaderValue::from_bytes(second)
            {
                headers.append(AUTHORIZATION, second);
            }
            let answer = bearer_token(&headers, query);
            let repeated = headers.get_all(AUTHORIZATION).iter().count() > 1;
            let query_token = query.is_some_and(has_access_token_parameter);
            // Whitespace around the value is not part of it. The scheme is the run of
            // token characters at the start; it must be ended by a space or the end.
            let value = value.trim_ascii();
            let scheme_end = value.iter().position(|&b| !is_tchar(b)).unwrap_or(value.len());
            let first_space = (scheme_end < value.len()).then_some(scheme_end);
            let well_formed = scheme_end > 0 && value.get(scheme_end).is_none_or(|&b| b == b' ');
            let is_bearer = value[..scheme_end].eq_ignore_ascii_case(b"bearer");
            if repeated || query_token || !well_formed {
                prop_assert_eq!(answer, Err(ErrorKind::InvalidRequest));
            } else if is_bearer {
                let rest: &[u8] = first_space.map_or(&[][..], |space| &value[space + 1..]);
                let token = &rest[rest.iter().position(|&b| b != b' ').unwrap_or(rest.len())..];
                if is_b64token(token) {
                    prop_assert_eq!(answer, Ok(Some(std::str::from_utf8(token).unwrap())));
                } else {
                    prop_assert_eq!(answer, Err(ErrorKind::InvalidRequest));
                }
            } else if let Ok(Some(token)) = answer {
                // Another scheme never yields a token, except `Bearer` glued to its
                // credential with no space, which is not a Bearer credential either.
                prop_assert!(false, "token {:?} from scheme {:?}", token, scheme);
            } else {
                prop_assert!(matches!(answer, Ok(None) | Err(ErrorKind::InvalidRequest)));
            }
        }

        /// Another scheme's credentials made of well-formed auth-params (token or quoted
        /// values; commas, quotes, escapes and `Bearer` inside quoted values included) never
        /// read as hiding a Bearer credential; followed by `, Bearer <token>`, always.
        #[test]
        fn hidden_bearer_credentials_are_found_exactly(
            params in proptest::collection::vec(
                (
                    "[a-z]{1,8}",
                    prop_oneof![
                        "[A-Za-z0-9._~+/-]{1,10}",
                        "\"([ !#-\\[\\]-~]|\\\\[ -~]|, Bearer x){0,6}\"",
                    ],
                    prop::sample::select(vec!["=", " = ", "= "]),
                ),
                1..4,
            ),
            token in "[A-Za-z0-9._~+/-]{1,20}",
            glue in prop::sample::select(vec![", ", ",", " , "]),
        ) {
            let credentials = params
                .iter()
                .map(|(name, value, equals)| format!("{name}{equals}{value}"))
                .collect::<Vec<_>>()
                .join(", ");
            prop_assert!(!hides_a_bearer_credential(credentials.as_bytes()), "{}", credentials);
            let hiding = format!("{credentials}{glue}Bearer {token}");
            prop_assert!(hides_a_bearer_credential(hiding.as_bytes()), "{}", hiding);
        }

        /// The 8-byte fast path decides exactly as the general scan.
        #[test]
        fn fast_path_matches_the_general_reading(value in proptest::collection::vec(any::<u8>(), 0..12)) {
            let general = value
                .iter()
                .position(|&b| b == b' ')
                .filter(|&space| value[..space].eq_ignore_ascii_case(b"bearer"))
                .map(|space| &value[space + 1..]);
            prop_assert_eq!(after_bearer_and_space(&value), general);
        }

        /// Any bytes up to the token cap: one answer of the documented set, and a token
        /// that is a slice of the header (no copy, no growth).
        #[test]
        fn arbitrary_header_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..16 * 1024)) {
            let mut headers = HeaderMap::new();
            if let Ok(header) = HeaderValue::from_bytes(&value) {
                headers.insert(AUTHORIZATION, header);
            }
            match bearer_token(&headers, None) {
                Ok(Some(token)) => prop_assert!(token.len() < value.len()),
                Ok(None) => {}
                Err(kind) => prop_assert_eq!(kind, ErrorKind::InvalidRequest),
            }
        }
    }
}
