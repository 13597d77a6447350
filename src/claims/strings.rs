//! The string claims of one token, kept in a single allocation.
//!
//! The token cache holds thousands of claim sets, and most of their strings are short
//! (a client id, a `jti`, a patient id): one heap block per string would cost more in
//! allocator overhead and pointers than the text itself. [`ClaimStrings`] keeps every
//! string claim in one `Box<str>`, each field ending at a recorded offset.

use crate::error::ErrorKind;

/// The string claims [`ClaimStrings`] keeps, in the order they are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Issuer,
    Subject,
    ClientId,
    JwtId,
    /// The well-formed scope tokens, joined by single spaces.
    Scope,
    Patient,
    Encounter,
    FhirUser,
    Tenant,
    /// `aud` when it is a single string (a list of several is kept elsewhere).
    Audience,
}

const FIELDS: usize = Field::Audience as usize + 1;

/// Each field's text, one after the other in `text`. A field spans from the end of the
/// one before it to its own end; `present` has one bit per field that the token has.
pub(super) struct ClaimStrings {
    text: Box<str>,
    ends: [u32; FIELDS],
    present: u16,
}

impl ClaimStrings {
    /// The field's text, `None` when the token does not have it.
    #[inline]
    pub(super) fn get(&self, field: Field) -> Option<&str> {
        let index = field as usize;
        if self.present & (1 << index) == 0 {
            return None;
        }
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        // Lossless: offsets were made from `usize` lengths (see `Builder::set`).
        self.text.get(start as usize..self.ends[index] as usize)
    }
}

/// Builds a [`ClaimStrings`], the fields set in their layout order.
pub(super) struct Builder {
    text: String,
    ends: [u32; FIELDS],
    present: u16,
    next: usize,
}

impl Builder {
    /// A builder for fields of `capacity` bytes in all (one allocation when that is
    /// exact).
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            text: String::with_capacity(capacity),
            ends: [0; FIELDS],
            present: 0,
            next: 0,
        }
    }

    /// Sets `field` (absent when `value` is `None`). Fields come in their layout order,
    /// each at most once; the fields skipped are absent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidClaim`] when the strings together pass 4 GiB (token and
    /// introspection sizes are bounded far below that).
    pub(super) fn set(&mut self, field: Field, value: Option<&str>) -> Result<(), ErrorKind> {
        let index = field as usize;
        assert!(index >= self.next, "claim string fields set out of order");
        let end = u32::try_from(self.text.len()).map_err(|_| ErrorKind::InvalidClaim)?;
        // The fields skipped, and this one, start where the text ends now.
        self.ends[self.next..=index].fill(end);
        if let Some(value) = value {
            self.text.push_str(value);
            self.ends[index] =
                u32::try_from(self.text.len()).map_err(|_| ErrorKind::InvalidClaim)?;
            self.present |= 1 << index;
        }
        self.next = index + 1;
        Ok(())
    }

    pub(super) fn build(mut self) -> ClaimStrings {
        let end = self.ends[self.next.saturating_sub(1)];
        self.ends[self.next..].fill(end);
        ClaimStrings {
            text: self.text.into_boxed_str(),
            ends: self.ends,
            present: self.present,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Field; FIELDS] = [
        Field::Issuer,
        Field::Subject,
        Field::ClientId,
        Field::JwtId,
        Field::Scope,
        Field::Patient,
        Field::Encounter,
        Field::FhirUser,
        Field::Tenant,
        Field::Audience,
    ];

    #[test]
    fn each_field_reads_back_exactly() {
        // Every subset of present fields, with empty, ASCII and non-ASCII values.
        let values = ["", "a", "é€𝄞", "client id with spaces", "\u{0}"];
        for mask in 0..(1u32 << FIELDS) {
            let mut builder = Builder::with_capacity(0);
            let mut expected = Vec::new();
            for (n, field) in ALL.into_iter().enumerate() {
                let value = (mask & (1 << n) != 0).then(|| values[(n + mask as usize) % 5]);
                builder.set(field, value).unwrap();
                expected.push(value);
            }
            let strings = builder.build();
            for (field, value) in ALL.into_iter().zip(expected) {
                assert_eq!(strings.get(field), value, "{field:?} of mask {mask:b}");
            }
        }
    }

    #[test]
    fn skipped_fields_are_absent() {
        let mut builder = Builder::with_capacity(0);
        builder.set(Field::Subject, Some("sub")).unwrap();
        builder.set(Field::Patient, Some("123")).unwrap();
        let strings = builder.build();
        for field in ALL {
            let expected = match field {
                Field::Subject => Some("sub"),
                Field::Patient => Some("123"),
                _ => None,
            };
            assert_eq!(strings.get(field), expected, "{field:?}");
        }
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn fields_come_in_order() {
        let mut builder = Builder::with_capacity(0);
        builder.set(Field::Scope, Some("a")).unwrap();
        let _ = builder.set(Field::Subject, Some("b"));
    }
}
