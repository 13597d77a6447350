//! The signature algorithms a token may use.

/// An asymmetric JWS signature algorithm.
///
/// There is no `none` and no HMAC variant: keys from a remote key set are public, so a
/// symmetric algorithm would let anyone who fetched them mint tokens.
///
/// It parses from, and serializes to, its JWS `alg` name exactly as RFC 7518 spells it.
/// `alg` values are case-sensitive (RFC 7515 section 4.1.1), so `rs256` or `" RS256"` are
/// refused, as are `none` and the HMAC names.
///
/// ```
/// use smart_auth::SigningAlgorithm;
/// assert_eq!(SigningAlgorithm::ES384.name(), "ES384");
/// assert_eq!(SigningAlgorithm::DEFAULT.len(), 11);
/// assert_eq!("PS256".parse(), Ok(SigningAlgorithm::PS256));
/// assert!("HS256".parse::<SigningAlgorithm>().is_err());
///
/// // In a serde configuration, by the same name.
/// let algs: Vec<SigningAlgorithm> = serde_json::from_str(r#"["RS384", "ES384"]"#)?;
/// assert_eq!(algs, [SigningAlgorithm::RS384, SigningAlgorithm::ES384]);
/// assert_eq!(serde_json::to_string(&SigningAlgorithm::EdDSA)?, r#""EdDSA""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (one of the two SMART Backend Services algorithms).
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384 (one of the two SMART Backend Services algorithms).
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// EdDSA, with an Ed25519 key (the only curve this crate verifies).
    EdDSA,
    /// Ed25519 by its fully-specified name (RFC 9864, which deprecates `EdDSA`): the same
    /// signature as [`EdDSA`](Self::EdDSA) on an Ed25519 key. A JWK pinned to either name
    /// verifies both.
    Ed25519,
}

impl SigningAlgorithm {
    /// The default allow-list: every variant.
    ///
    /// ```
    /// use smart_auth::SigningAlgorithm;
    ///
    /// assert_eq!(SigningAlgorithm::DEFAULT.len(), 11);
    /// assert!(SigningAlgorithm::DEFAULT.contains(&SigningAlgorithm::ES384));
    /// // Asymmetric algorithms only: `none` and the HMAC names are no algorithms at all here.
    /// assert!("HS256".parse::<SigningAlgorithm>().is_err());
    /// ```
    pub const DEFAULT: &'static [SigningAlgorithm] = &[
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::ES512,
        Self::EdDSA,
        Self::Ed25519,
    ];

    /// The JWS `alg` name.
    ///
    /// ```
    /// assert_eq!(smart_auth::SigningAlgorithm::EdDSA.name(), "EdDSA");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::ES512 => "ES512",
            Self::EdDSA => "EdDSA",
            Self::Ed25519 => "Ed25519",
        }
    }

    /// The algorithm with exactly this JWS `alg` name, if it is one of these.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "ES512" => Self::ES512,
            "EdDSA" => Self::EdDSA,
            "Ed25519" => Self::Ed25519,
            _ => return None,
        })
    }

    /// Whether `self` and `other` make and check the very same signatures: equal, or the
    /// two names of Ed25519 (RFC 9864 section 2.2).
    pub(crate) fn same_signature_as(self, other: Self) -> bool {
        self == other
            || matches!(
                (self, other),
                (Self::EdDSA, Self::Ed25519) | (Self::Ed25519, Self::EdDSA)
            )
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SigningAlgorithm {
    type Err = UnknownAlgorithm;

    /// Parses the exact JWS `alg` name; see the [type docs](SigningAlgorithm).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name).ok_or_else(|| UnknownAlgorithm::new(name))
    }
}

impl serde::Serialize for SigningAlgorithm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for SigningAlgorithm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = SigningAlgorithm;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JWS algorithm name such as \"RS384\" or \"ES384\"")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<SigningAlgorithm, E> {
                name.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// The error of parsing a [`SigningAlgorithm`]: the name is not one of the supported
/// asymmetric JWS algorithms (`none` and the HMAC names included).
///
/// Its message quotes at most the first [`UnknownAlgorithm::MAX_QUOTED`] characters of
/// the input, escaped, so a long or binary value cannot flood a log.
///
/// ```
/// use smart_auth::{SigningAlgorithm, UnknownAlgorithm};
/// let error: UnknownAlgorithm = "rs256".parse::<SigningAlgorithm>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "unsupported signing algorithm \"rs256\" (expected one of RS256, RS384, RS512, \
///      PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgorithm {
    /// The first characters of the input.
    quoted: String,
    /// Whether the input was longer than `quoted`.
    truncated: bool,
}

impl UnknownAlgorithm {
    /// How many characters of the refused input the message quotes.
    ///
    /// ```
    /// use smart_auth::{SigningAlgorithm, UnknownAlgorithm};
    ///
    /// let long = "x".repeat(1000);
    /// let error = long.parse::<SigningAlgorithm>().unwrap_err();
    /// let quoted = "x".repeat(UnknownAlgorithm::MAX_QUOTED);
    /// assert!(error.to_string().contains(&quoted));
    /// assert!(!error.to_string().contains(&"x".repeat(UnknownAlgorithm::MAX_QUOTED + 1)));
    /// ```
    pub const MAX_QUOTED: usize = 16;

    fn new(input: &str) -> Self {
        let mut chars = input.chars();
        let quoted = chars.by_ref().take(Self::MAX_QUOTED).collect();
        Self {
            quoted,
            truncated: chars.next().is_some(),
        }
    }
}

impl std::fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unsupported signing algorithm \"")?;
        for c in self.quoted.chars() {
            write!(f, "{}", c.escape_default())?;
        }
        if self.truncated {
            f.write_str("...")?;
        }
        f.write_str("\" (expected one of ")?;
        for (i, alg) in SigningAlgorithm::DEFAULT.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(alg.name())?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownAlgorithm {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_names_only() {
        for alg in SigningAlgorithm::DEFAULT {
            assert_eq!(alg.name().parse::<SigningAlgorithm>(), Ok(*alg));
            assert_eq!(alg.to_string().parse::<SigningAlgorithm>(), Ok(*alg));
        }
        let long = "RS256".repeat(1000);
        let refused = [
            "",
            " ",
            "rs256",
            "Rs256",
            "rS256",
            "es384",
            "EDDSA",
            "eddsa",
            "Eddsa",
            "ED25519",
            "ed25519",
            "Ed448",
            " RS256",
            "RS256 ",
            "RS256\n",
            "\tES384",
            "RS 256",
            "RS-256",
            "RS256,ES384",
            "none",
            "None",
            "NONE",
            "HS256",
            "HS384",
            "HS512",
            "es512",
            "ES256K",
            "RSA-OAEP",
            "RS256\0",
            "\0RS256",
            "\0",
            "\u{0130}S256",
            "\u{FF32}S256",
            long.as_str(),
        ];
        for input in refused {
            assert!(input.parse::<SigningAlgorithm>().is_err(), "{input:?}");
        }
    }

    #[test]
    fn error_message_is_short_and_escaped() {
        let quoted = |input: &str| {
            let message = input
                .parse::<SigningAlgorithm>()
                .expect_err("refused")
                .to_string();
            let start = message.find('"').expect("opening quote") + 1;
            let end = message.rfind("\" (expected").expect("closing quote");
            message[start..end].to_owned()
        };
        assert_eq!(quoted("HS256"), "HS256");
        assert_eq!(quoted(""), "");
        assert_eq!(quoted("RS256\0"), "RS256\\u{0}");
        assert_eq!(quoted("a\"b\nc"), "a\\\"b\\nc");
        assert_eq!(quoted(&"x".repeat(17)), format!("{}...", "x".repeat(16)));
        assert_eq!(quoted(&"x".repeat(16)), "x".repeat(16));
        let huge = "A".repeat(1 << 20);
        let message = huge
            .parse::<SigningAlgorithm>()
            .expect_err("refused")
            .to_string();
        assert!(message.len() < 200, "{}", message.len());
        let error: Box<dyn std::error::Error + Send + Sync> =
            Box::new("none".parse::<SigningAlgorithm>().expect_err("refused"));
        assert!(error.to_string().contains("\"none\""));
    }

    #[test]
    fn serde_uses_the_jws_name() {
        for alg in SigningAlgorithm::DEFAULT {
            let json = serde_json::to_string(alg).expect("serializes");
            assert_eq!(json, format!("\"{}\"", alg.name()));
            assert_eq!(
                serde_json::from_str::<SigningAlgorithm>(&json).expect("round trip"),
                *alg
            );
        }
        for json in [
            r#""rs256""#,
            r#""none""#,
            r#""HS256""#,
            r#"" ES384""#,
            r#""""#,
            r#""RS256\u0000""#,
            "null",
            "256",
            r#"["RS256"]"#,
            r#"{"alg":"RS256"}"#,
        ] {
            let error = serde_json::from_str::<SigningAlgorithm>(json).expect_err(json);
            assert!(error.to_string().len() < 200, "{json}");
        }
        let error = serde_json::from_str::<SigningAlgorithm>(r#""HS256""#).expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("unsupported signing algorithm \"HS256\""),
            "{error}"
        );
    }
}
