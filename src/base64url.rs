//! base64url without padding (RFC 4648 section 5, the encoding of RFC 7515 section 2),
//! decoding only, strict: exactly the texts the `base64` crate's `URL_SAFE_NO_PAD` engine
//! accepts, with the same bytes out (a property test holds the two together).
//!
//! Every fresh token's three segments pass through here, so it reads eight characters per
//! step with one table lookup per character: for a token payload of a kilobyte, about 60 %
//! of the instructions and three quarters of the time of the `base64` crate's
//! general-purpose engine (BENCHMARKS.md). Encoding stays with the `base64` crate.

/// Table entries of characters outside the alphabet (padding included) have this bit set;
/// the others hold their six bits already in place for their position in a group of four.
const OUTSIDE: u32 = 1 << 31;

/// The sextet of every byte, shifted left by `shift`, or [`OUTSIDE`].
const fn sextets(shift: u32) -> [u32; 256] {
    let mut table = [OUTSIDE; 256];
    let mut byte = 0;
    while byte < 256 {
        let sextet = match byte as u8 {
            letter @ b'A'..=b'Z' => Some(letter - b'A'),
            letter @ b'a'..=b'z' => Some(letter - b'a' + 26),
            digit @ b'0'..=b'9' => Some(digit - b'0' + 52),
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        };
        if let Some(sextet) = sextet {
            table[byte] = (sextet as u32) << shift;
        }
        byte += 1;
    }
    table
}

static FIRST: [u32; 256] = sextets(18);
static SECOND: [u32; 256] = sextets(12);
static THIRD: [u32; 256] = sextets(6);
static FOURTH: [u32; 256] = sextets(0);

/// Decodes `text`, or `None` when it has a character outside the base64url alphabet (`=`
/// included), a length of the form 4n + 1, or bits set after its last whole byte (so that
/// each byte string has one encoding only).
pub(crate) fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let tail_length = text.len() % 4;
    if tail_length == 1 {
        return None;
    }
    let (whole, tail) = text.split_at(text.len() - tail_length);
    let whole_bytes = whole.len() / 4 * 3;
    let mut decoded = vec![0; whole_bytes + tail_length.saturating_sub(1)];
    let (whole_out, tail_out) = decoded.split_at_mut(whole_bytes);

    // Any character outside the alphabet leaves OUTSIDE set here; the bytes written from
    // it are thrown away with the rest.
    let mut seen = 0;
    let (eights, four) = whole.as_chunks::<8>();
    let (sixes, three) = whole_out.as_chunks_mut::<6>();
    for (eight, six) in eights.iter().zip(sixes) {
        let high = group(eight[0], eight[1], eight[2], eight[3]);
        let low = group(eight[4], eight[5], eight[6], eight[7]);
        seen |= high | low;
        let bits = (u64::from(high) << 24) | u64::from(low & 0xFF_FFFF);
        six.copy_from_slice(&bits.to_be_bytes()[2..]);
    }
    if let [a, b, c, d] = *four {
        let bits = group(a, b, c, d);
        seen |= bits;
        three.copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    // Two or three characters left hold one or two bytes; the bits after those must be
    // zero.
    let bits = tail
        .iter()
        .zip([&FIRST, &SECOND, &THIRD])
        .fold(0, |bits, (&character, table)| {
            bits | table[usize::from(character)]
        });
    let unused = match tail_length {
        2 => 0xFFFF,
        3 => 0xFF,
        _ => 0,
    };
    if bits & unused != 0 {
        return None;
    }
    seen |= bits;
    for (byte, out) in bits.to_be_bytes()[1..].iter().zip(tail_out) {
        *out = *byte;
    }
    (seen & OUTSIDE == 0).then_some(decoded)
}

/// The 24 bits of four characters, with [`OUTSIDE`] set if one is outside the alphabet.
fn group(a: u8, b: u8, c: u8, d: u8) -> u32 {
    FIRST[usize::from(a)] | SECOND[usize::from(b)] | THIRD[usize::from(c)] | FOURTH[usize::from(d)]
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::decode;

    /// What the `base64` crate's strict engine makes of `text`.
    fn reference(text: &[u8]) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(text).ok()
    }

    #[test]
    fn known_answers() {
        // RFC 4648 section 10's vectors, without their padding.
        let vectors: &[(&str, &[u8])] = &[
            ("", b""),
            ("Zg", b"f"),
            ("Zm8", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg", b"foob"),
            ("Zm9vYmE", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
            // The two characters that differ from standard base64.
            ("-_-_", &[0xFB, 0xFF, 0xBF]),
            ("_w", &[0xFF]),
            ("__8", &[0xFF, 0xFF]),
        ];
        for (text, bytes) in vectors {
            assert_eq!(decode(text.as_bytes()).as_deref(), Some(*bytes), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_canonical_unpadded_base64url() {
        let refused = [
            // Lengths of the form 4n + 1.
            "A",
            "AAAAA",
            "Zm9vYmFyA",
            // Padding, in every position.
            "Zg==",
            "Zm8=",
            "Zg=",
            "=",
            "====",
            "Zm9v====",
            // The standard alphabet's two characters.
            "+/+/",
            "Zm9+",
            "ab/c",
            // Bits after the last whole byte.
            "Zh",
            "Zm9",
            "Zm-",
            "__",
            "___",
            // Separators, spaces, controls, non-ASCII: in a group of eight, of four, or in
            // the tail (lengths other than 4n + 1, so that the character is what is
            // refused).
            "AAA.AAAA",
            "Zm9v.mFy",
            "Zm9vYmF.",
            "AA.A",
            "A.A",
            "Zm9 ",
            " Zm9vYm9",
            "Zm9v\nYmF",
            "Zm9vYmF\0AAA",
            "\u{e9}AA",
            "AAAAAAAAAAA\u{ff}A",
            "AAAAAAAA%41",
        ];
        for text in refused {
            assert_eq!(decode(text.as_bytes()), None, "{text:?}");
            assert_eq!(reference(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn every_byte_in_every_position_agrees_with_the_reference() {
        // Lengths 2..=14 cover the groups of eight and four and both tails; each byte
        // value is tried at each position of a valid text.
        for length in [2, 3, 4, 6, 7, 8, 10, 11, 12, 14] {
            for position in 0..length {
                for byte in 0..=u8::MAX {
                    let mut text = vec![b'A'; length];
                    text[position] = byte;
                    assert_eq!(decode(&text), reference(&text), "{text:?}");
                }
            }
        }
    }
}

#[cfg(test)]
mod props {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::decode;
    use crate::proptest_support::config;

    proptest! {
        #![proptest_config(config(1024))]

        /// What the `base64` crate encodes decodes to the bytes encoded.
        #[test]
        fn decodes_what_the_reference_encodes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert_eq!(decode(text.as_bytes()), Some(bytes));
        }

        /// Any text, valid or not: the same answer as the `base64` crate's strict engine.
        #[test]
        fn agrees_with_the_reference_on_any_text(
            text in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::sample::select(
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec(),
                    ),
                    1 => any::<u8>(),
                    1 => proptest::sample::select(b"=+/. \n\0".to_vec()),
                ],
                0..40,
            )
        ) {
            prop_assert_eq!(decode(&text), URL_SAFE_NO_PAD.decode(&text).ok());
        }
    }
}
