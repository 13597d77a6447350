//! `application/x-www-form-urlencoded` and percent-decoding, for query strings, form bodies,
//! scope filters and path segments: the `form_urlencoded` and `percent-encoding` crates (the
//! codecs `url` uses, so already compiled), plus the one rule they do not enforce.
//!
//! Two readings exist on purpose:
//!
//! - lenient ([`pairs`]), as browsers and `url` read a query: `+` is a space, a bad escape
//!   stays as it is and bytes that are not UTF-8 become U+FFFD. Used where a value is only
//!   looked at, never trusted to mean one thing (the `_type` of a bulk export);
//! - strict ([`percent_decode_strict`], [`form_decode_strict`]): a `%` not followed by two
//!   hex digits, or bytes that are not UTF-8, make the text malformed. Used wherever two
//!   readers must not disagree (scopes, paths, the development server's forms).

use std::borrow::Cow;

/// Splits and decodes `name=value&...` leniently (see the module docs); empty pieces are
/// skipped and a piece without `=` has an empty value.
pub(crate) fn pairs(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(text.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
}

/// Like [`pairs`], but split at `;` as well as `&`, as some servers split a query: for checks
/// that must see every parameter some server could read.
pub(crate) fn pairs_split_at_semicolons_too(
    text: &str,
) -> impl Iterator<Item = (String, String)> + '_ {
    text.split(';').flat_map(pairs)
}

/// A decoded query parameter name as a lenient server may read it: without the characters a
/// trimming reader drops around it (every character up to the space, as Java's
/// `String.trim` drops them), or `None` when the layer cannot tell what the name means to
/// the server:
///
/// - what is left holds anything but printable ASCII (a space, a control character, a
///   character beyond ASCII): no FHIR parameter name holds one, and readers that fold case
///   beyond ASCII match some of them with ASCII letters (`ſ` with `s`, `ı` with `i`);
/// - it holds `[` or `]`, or starts with `.`: PHP, Rack and Express's `qs` read
///   `patient[]=1` as `patient` (and `patient[x]` as a part of it), and PHP reads a leading
///   `.` or `[` as `_` (`.id` is `_id`). No FHIR parameter name holds a bracket or starts
///   with a dot.
pub(crate) fn lenient_parameter_name(name: &str) -> Option<&str> {
    let name = name.trim_matches(|c: char| c <= ' ');
    let readable = name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'[' && b != b']')
        && !name.starts_with('.');
    readable.then_some(name)
}

/// Whether a decoded parameter name reads as `expected` (ASCII, compared ignoring case) to
/// some lenient server: trimmed as [`lenient_parameter_name`] trims it, then also as PHP,
/// Rack and Express's `qs` read names: a bracketed suffix names the parameter before it
/// (`access_token[]`, `_method[0]`), and PHP turns `.`, a space and an unclosed `[` into
/// `_` (`access.token`, `[method`). For the names the layer looks for by themselves
/// (`access_token`, `_method`), whose every spelling must be caught.
pub(crate) fn reads_as(name: &str, expected: &str) -> bool {
    let name = name.trim_matches(|c: char| c <= ' ');
    if name.eq_ignore_ascii_case(expected) {
        return true;
    }
    let base = match name.find('[') {
        Some(at) if at > 0 && name[at..].contains(']') => &name[..at],
        _ => name,
    };
    base.len() == expected.len()
        && base.bytes().zip(expected.bytes()).all(|(byte, wanted)| {
            let byte = match byte {
                b'.' | b' ' | b'[' => b'_',
                other => other,
            };
            byte.eq_ignore_ascii_case(&wanted)
        })
}

/// Whether a decoded query parameter name, read as [`lenient_parameter_name`] reads it, is
/// `expected` ignoring ASCII case (`_HAS`, ` _has` and `_has` are one name to a lenient
/// server). Rules that add requirements for a parameter match it so: a server that matches
/// names exactly ignores the variant.
pub(crate) fn is_parameter(name: &str, expected: &str) -> bool {
    lenient_parameter_name(name).is_some_and(|name| name.eq_ignore_ascii_case(expected))
}

/// Decodes every `%XX` escape (either case of hex digit) once; a `+` stays a `+`. `None` for
/// a bad escape or a result that is not UTF-8.
pub(crate) fn percent_decode_strict(text: &str) -> Option<String> {
    percent_decode_strict_cow(text).map(Cow::into_owned)
}

/// A raw (undecoded) query parameter name as a lenient server reads it: `+` as a space, the
/// escapes decoded strictly, then [`lenient_parameter_name`]; `None` where either refuses
/// it. Borrows `raw` when nothing in it needs changing.
pub(crate) fn lenient_raw_parameter_name(raw: &str) -> Option<Cow<'_, str>> {
    match decoded_raw_parameter_name(raw)? {
        Cow::Borrowed(decoded) => lenient_parameter_name(decoded).map(Cow::Borrowed),
        Cow::Owned(decoded) => {
            lenient_parameter_name(&decoded).map(|name| Cow::Owned(name.to_owned()))
        }
    }
}

/// A raw (undecoded) query parameter name decoded as a form decoder does: `+` as a space,
/// the escapes decoded strictly (`None` for a bad one or a result that is not UTF-8).
/// Borrows `raw` when nothing in it needs changing.
pub(crate) fn decoded_raw_parameter_name(raw: &str) -> Option<Cow<'_, str>> {
    if raw.contains('+') {
        return percent_decode_strict(&raw.replace('+', " ")).map(Cow::Owned);
    }
    percent_decode_strict_cow(raw)
}

/// [`percent_decode_strict`], borrowing `text` when it holds no escape.
fn percent_decode_strict_cow(text: &str) -> Option<Cow<'_, str>> {
    if !escapes_are_well_formed(text) {
        return None;
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
}

/// Decodes one form name or value: `+` is a space, then as [`percent_decode_strict`] (so
/// `%2B` is a `+`).
#[cfg(any(feature = "dev-server", test))]
pub(crate) fn form_decode_strict(text: &str) -> Option<String> {
    percent_decode_strict(&text.replace('+', " "))
}

/// Encodes one form name or value: letters, digits and `*-._` as they are, a space as `+`,
/// every other byte as `%XX`.
#[cfg(any(feature = "introspection", test))]
pub(crate) fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Form-encodes a client id or secret for Basic credentials (RFC 6749 section 2.3.1): a
/// space becomes `+` and every byte but ALPHA, DIGIT, `-`, `.`, `_`, `~` and `*` becomes
/// `%XX`. Those characters need no encoding in a form nor in RFC 3986, so servers that do
/// not form-decode Basic credentials (many do not) still read them as they are; WHATWG
/// form encoding ([`form_encode`]) would write `~`, common in Microsoft Entra ID secrets,
/// as `%7E`.
#[cfg(any(feature = "introspection", feature = "client"))]
pub(crate) fn form_encode_credential(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'*' => {
                encoded.push(char::from(byte));
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// Whether every `%` starts an escape of two hex digits. Kept by hand because neither crate
/// can refuse: `percent-encoding` (like the WHATWG URL standard) keeps a bad escape as it
/// is, which would let `%zz` or a lone `%` mean one thing here and another to the next
/// reader.
fn escapes_are_well_formed(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(at, &byte)| {
        byte != b'%'
            || bytes
                .get(at + 1..at + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// Hostile query strings, read leniently: every piece kept in order (duplicates
    /// included), `+` and `%20` both a space, bad escapes as they are, NUL decoded, bytes
    /// that are not UTF-8 replaced, empty names kept.
    #[test]
    fn lenient_pairs_of_hostile_queries() {
        let rows: &[(&str, &[(&str, &str)])] = &[
            ("a=1&&b=x%20y&c", &[("a", "1"), ("b", "x y"), ("c", "")]),
            ("_type=A&_type=B", &[("_type", "A"), ("_type", "B")]),
            (
                "a=x+y&b=x%20y&c=x%2By",
                &[("a", "x y"), ("b", "x y"), ("c", "x+y")],
            ),
            (
                "a=%zz&b=%4&c=%&d=%4g",
                &[("a", "%zz"), ("b", "%4"), ("c", "%"), ("d", "%4g")],
            ),
            // WHATWG order: `+` becomes a space before escapes are read, so `%+1` is no
            // escape (a sign is not a hex digit).
            ("a=%+1", &[("a", "% 1")]),
            ("a=%00", &[("a", "\0")]),
            ("a=%FF&b=%C3", &[("a", "\u{FFFD}"), ("b", "\u{FFFD}")]),
            ("=v&=&&", &[("", "v"), ("", "")]),
            ("a=b=c&%3D=%26", &[("a", "b=c"), ("=", "&")]),
            ("%E2%9C%93=%e2%9c%93", &[("\u{2713}", "\u{2713}")]),
        ];
        for (query, expected) in rows {
            assert_eq!(
                pairs(query).collect::<Vec<_>>(),
                owned(expected),
                "{query:?}"
            );
        }
    }

    /// Hostile escapes, read strictly: a bad escape, a truncated one or bytes that are not
    /// UTF-8 are refused; NUL decodes (callers refuse controls themselves).
    #[test]
    fn strict_decoding_of_hostile_escapes() {
        let rows: &[(&str, Option<&str>)] = &[
            ("a%2Cb", Some("a,b")),
            ("a%2cb", Some("a,b")),
            ("a+b", Some("a+b")),
            ("a%20b", Some("a b")),
            ("100%25", Some("100%")),
            ("%E2%9C%93", Some("\u{2713}")),
            ("%00", Some("\0")),
            ("", Some("")),
            ("%", None),
            ("%4", None),
            ("a%4", None),
            ("%zz", None),
            ("%4g", None),
            ("%g4", None),
            ("%+1", None),
            ("%-1", None),
            ("% 1", None),
            ("%%41", None),
            ("%FF", None),
            ("%C3", None),
            ("%C3%28", None),
            ("%ED%A0%80", None),
        ];
        for (text, expected) in rows {
            assert_eq!(
                percent_decode_strict(text).as_deref(),
                *expected,
                "{text:?}"
            );
        }
    }

    /// Parameter names a lenient server reads: trimmed, or unreadable (`None`) when they
    /// hold what no FHIR name holds and some server reads as another name.
    #[test]
    fn lenient_parameter_names() {
        let rows: &[(&str, Option<&str>)] = &[
            ("patient", Some("patient")),
            (
                " \t_has:Observation:patient:code\0",
                Some("_has:Observation:patient:code"),
            ),
            ("subject.name", Some("subject.name")),
            ("subject:Patient", Some("subject:Patient")),
            ("", Some("")),
            // Brackets: PHP, Rack and `qs` read `patient[]` as `patient`.
            ("patient[]", None),
            ("patient[0]", None),
            ("category[x]", None),
            ("_revinclude[]", None),
            ("[method", None),
            ("patient]", None),
            // A leading dot is PHP's `_`.
            (".id", None),
            (" .has:Observation:patient:code", None),
            ("pa tient", None),
            ("patient\u{17F}", None),
            ("\u{131}d", None),
            ("a\x7F", None),
        ];
        for (name, expected) in rows {
            assert_eq!(lenient_parameter_name(name), *expected, "{name:?}");
        }
    }

    /// The spellings lenient servers read as one name.
    #[test]
    fn names_as_lenient_servers_read_them() {
        for name in [
            "_method",
            "_METHOD",
            " _method\t",
            "_method[]",
            "_method[0]",
            "_method[x]",
            ".method",
            "[method",
            "_method[][]",
        ] {
            assert!(reads_as(name, "_method"), "{name:?}");
        }
        for name in [
            "access_token",
            "access.token",
            "access token",
            "access[token",
            "access_token[]",
            "ACCESS.TOKEN[0]",
        ] {
            assert!(reads_as(name, "access_token"), "{name:?}");
        }
        for name in [
            "_methods",
            "method",
            "_meth",
            "_method]",
            "[method]",
            "x_method",
            "_method.x",
            // PHP drops leading spaces before it renames.
            " method",
            "",
        ] {
            assert!(!reads_as(name, "_method"), "{name:?}");
        }
    }

    /// The strict form reading: `+` is a space, `%2B` a plus; the escape rules as above.
    #[test]
    fn strict_form_decoding() {
        let rows: &[(&str, Option<&str>)] = &[
            ("a%2Cb+c%2b", Some("a,b c+")),
            ("x+y", Some("x y")),
            ("x%20y", Some("x y")),
            ("x%2By", Some("x+y")),
            ("%E2%9C%93", Some("\u{2713}")),
            ("a%+1", None),
            ("%", None),
            ("%4", None),
            ("%zz", None),
            ("%FF", None),
        ];
        for (text, expected) in rows {
            assert_eq!(form_decode_strict(text).as_deref(), *expected, "{text:?}");
        }
    }

    #[test]
    fn form_encoding_round_trips() {
        assert_eq!(form_encode("a b+c/d=é*-._~"), "a+b%2Bc%2Fd%3D%C3%A9*-._%7E");
        for text in ["x:y&z %", "", "+", "%", "\0\u{2713}"] {
            assert_eq!(
                form_decode_strict(&form_encode(text)).as_deref(),
                Some(text)
            );
        }
    }
}
