//! Strict JSON for security-relevant documents: an object whose member names are unique at
//! every depth.
//!
//! RFC 8259 leaves the meaning of duplicate member names to each parser; some keep the
//! first value, some the last. When the component that checks a document and the one that
//! acts on it pick different duplicates, an attacker gets to say two things at once
//! (RFC 8725 section 3.1 lists this among the JWT bypass classes). RFC 7515 section 5.2 and
//! RFC 7519 section 4 let a parser refuse such input, so this crate refuses it in JWT
//! headers and payloads, introspection answers and the key and discovery documents.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a document is not a strict JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// Not JSON, or JSON that is not an object at the top level.
    NotAnObject,
    /// Some object (at any depth) names a member twice.
    DuplicateMember,
}

/// Drops one UTF-8 byte order mark (U+FEFF) before a JSON document received over HTTP: RFC
/// 8259 section 8.1 lets a parser ignore it, and static files from some hosts (IIS, blob
/// stores) start with one. Never for token segments, where it stays an error.
pub(crate) fn strip_byte_order_mark(body: &mut Vec<u8>) {
    const UTF8_BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";
    if body.starts_with(UTF8_BYTE_ORDER_MARK) {
        body.drain(..UTF8_BYTE_ORDER_MARK.len());
    }
}

/// Parses `bytes` as a JSON object whose objects, at every depth, have unique member names.
///
/// serde_json's nesting limit (128) still applies, so hostile nesting costs bounded stack.
pub(crate) fn object_with_unique_members(
    bytes: &[u8],
) -> Result<Map<String, Value>, StrictJsonError> {
    match value_with_unique_members(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::NotAnObject),
    }
}

/// Parses `bytes` as one JSON value whose objects, at every depth, have unique member
/// names (any value at the top level; [`StrictJsonError::NotAnObject`] when it is no JSON).
pub(crate) fn value_with_unique_members(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = UniqueValue::STRICT
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    value.map_err(strict_error)
}

/// A JSON object whose member names are unique at every depth, except inside the items of
/// its array member `list`: each item is read on its own, and one that names a member twice
/// (at any depth) is marked ([`Item::repeats_a_member`]) instead of refusing the whole
/// document. For lists whose items a reader may refuse one by one (RFC 7517 section 4
/// lets a JWK Set reader refuse a key with a repeated name, section 5 skip keys it cannot
/// use). `list` itself, the other members and a `list` that is not an array stay strict.
/// Items after the first `max_items` are only checked for syntax and counted
/// ([`ObjectWithItems::items_skipped`]), never built: a list of small items (`[0,0,…]`)
/// takes some twenty times its text once built.
pub(crate) fn object_with_items_read_alone(
    bytes: &[u8],
    list: &str,
    max_items: usize,
) -> Result<ObjectWithItems, StrictJsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let read = deserializer
        .deserialize_map(WithItemsAlone { list, max_items })
        .and_then(|read| deserializer.end().map(|()| read));
    read.map_err(strict_error)
}

/// What [`object_with_items_read_alone`] reads.
#[derive(Debug, Default)]
pub(crate) struct ObjectWithItems {
    /// The members other than the list (and the list when it is not an array).
    pub(crate) members: Map<String, Value>,
    /// The list's items, each read on its own; `None` when it is absent or not an array.
    pub(crate) items: Option<Vec<Item>>,
    /// How many items the list has after those read.
    pub(crate) items_skipped: usize,
}

/// One item of the list [`object_with_items_read_alone`] reads.
#[derive(Debug, PartialEq)]
pub(crate) struct Item {
    /// The item as read; where a name repeats, its first value.
    pub(crate) value: Value,
    /// Whether some object of the item names a member twice: what its reader must refuse
    /// (its value is kept for checks that look for any member, such as secret key material).
    pub(crate) repeats_a_member: bool,
}

/// The top level of [`object_with_items_read_alone`].
struct WithItemsAlone<'a> {
    list: &'a str,
    max_items: usize,
}

impl<'de> Visitor<'de> for WithItemsAlone<'_> {
    type Value = ObjectWithItems;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<ObjectWithItems, A::Error> {
        let mut read = ObjectWithItems::default();
        while let Some(name) = access.next_key::<String>()? {
            if read.members.contains_key(&name) || (name == self.list && read.items.is_some()) {
                return Err(de::Error::custom(DUPLICATE));
            }
            if name == self.list {
                match access.next_value_seed(ItemsAlone {
                    max_items: self.max_items,
                })? {
                    Listed::Items(items, skipped) => {
                        read.items = Some(items);
                        read.items_skipped = skipped;
                    }
                    Listed::Other(value) => {
                        read.members.insert(name, value);
                    }
                }
            } else {
                let value = access.next_value_seed(UniqueValue::STRICT)?;
                read.members.insert(name, value);
            }
        }
        Ok(read)
    }
}

/// About how many bytes the members of `map` take on the heap once parsed: every value and
/// member counted at what serde_json's `Value` and map entries take, every object at least
/// a B-tree leaf node, plus the text of strings and names. Dense JSON (`[0,0,0,…]`,
/// `[{},{},…]`) takes many times its text's length once parsed: 2 bytes of text are a
/// 32-byte value, 3 an object's node of some 600 bytes.
pub(crate) fn parsed_size(map: &Map<String, Value>) -> usize {
    const VALUE: usize = std::mem::size_of::<Value>();
    // A map entry: its name's `String` and value, and the map's own bookkeeping.
    const MEMBER: usize = std::mem::size_of::<String>() + VALUE + 16;
    // A map's first node (a B-tree leaf of eleven entries), allocated with its first
    // member; counted for every object, empty ones too.
    const OBJECT: usize = 11 * (std::mem::size_of::<String>() + VALUE) + 16;
    fn add_members<'a>(
        map: &'a Map<String, Value>,
        bytes: &mut usize,
        pending: &mut Vec<&'a Value>,
    ) {
        *bytes += OBJECT;
        for (name, value) in map {
            *bytes += MEMBER + name.len();
            pending.push(value);
        }
    }
    let mut bytes = 0;
    let mut pending = Vec::new();
    add_members(map, &mut bytes, &mut pending);
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => bytes += text.len(),
            Value::Array(items) => {
                bytes += VALUE * items.len();
                pending.extend(items);
            }
            Value::Object(map) => add_members(map, &mut bytes, &mut pending),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    bytes
}

/// The value of the list member of [`object_with_items_read_alone`].
enum Listed {
    /// An array: its items, each read on its own, and the count of those after the
    /// items read.
    Items(Vec<Item>, usize),
    /// Any other value, read strictly.
    Other(Value),
}

/// Reads a [`Listed`], building at most `max_items` items.
struct ItemsAlone {
    max_items: usize,
}

impl<'de> DeserializeSeed<'de> for ItemsAlone {
    type Value = Listed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Listed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsAlone {
    type Value = Listed;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listed, A::Error> {
        let mut items = Vec::new();
        while items.len() < self.max_items {
            let repeated = Cell::new(false);
            let reading = UniqueValue {
                repeated: Some(&repeated),
            };
            let Some(item) = seq.next_element_seed(reading)? else {
                return Ok(Listed::Items(items, 0));
            };
            items.push(Item {
                value: item,
                repeats_a_member: repeated.get(),
            });
        }
        let mut skipped = 0;
        while seq.next_element::<de::IgnoredAny>()?.is_some() {
            skipped += 1;
        }
        Ok(Listed::Items(items, skipped))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Listed, E> {
        UniqueValue::STRICT.visit_bool(value).map(Listed::Other)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Listed, E> {
        UniqueValue::STRICT.visit_i64(value).map(Listed::Other)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Listed, E> {
        UniqueValue::STRICT.visit_u64(value).map(Listed::Other)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Listed, E> {
        UniqueValue::STRICT.visit_f64(value).map(Listed::Other)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Listed, E> {
        UniqueValue::STRICT.visit_str(value).map(Listed::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Listed, E> {
        UniqueValue::STRICT.visit_unit().map(Listed::Other)
    }

    fn visit_none<E: de::Error>(self) -> Result<Listed, E> {
        UniqueValue::STRICT.visit_none().map(Listed::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Listed, A::Error> {
        UniqueValue::STRICT.visit_map(access).map(Listed::Other)
    }
}

/// The members of a strict JSON object that a caller asked for, in document order.
#[derive(Debug, Default)]
pub(crate) struct SelectedMembers<'de> {
    members: Vec<(Cow<'de, str>, SelectedValue<'de>)>,
}

/// A selected member's value: a string stays borrowed from the document when it has no
/// escapes; any other value is built.
#[derive(Debug)]
enum SelectedValue<'de> {
    Text(Cow<'de, str>),
    Json(Value),
}

/// A member's value as read: a string, or any other JSON value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Member<'a> {
    /// A JSON string.
    Text(&'a str),
    /// Any other JSON value (never a string).
    Json(&'a Value),
}

impl<'a> Member<'a> {
    /// The value of a member of a built object.
    pub(crate) fn of(value: &'a Value) -> Self {
        match value {
            Value::String(text) => Self::Text(text),
            other => Self::Json(other),
        }
    }
}

impl<'de> SelectedMembers<'de> {
    /// The value of a selected member.
    pub(crate) fn get(&self, name: &str) -> Option<Member<'_>> {
        self.members
            .iter()
            .find(|(member, _)| member == name)
            .map(|(_, value)| match value {
                SelectedValue::Text(text) => Member::Text(text),
                SelectedValue::Json(value) => Member::Json(value),
            })
    }

    /// Takes a selected string member out, kept borrowed from the document when it has no
    /// escapes; `None` when it is absent or not a string.
    pub(crate) fn take_text(&mut self, name: &str) -> Option<Cow<'de, str>> {
        let index = self.members.iter().position(|(member, value)| {
            member == name && matches!(value, SelectedValue::Text(_))
        })?;
        match self.members.swap_remove(index).1 {
            SelectedValue::Text(text) => Some(text),
            SelectedValue::Json(_) => None,
        }
    }

    /// Whether a selected member is present.
    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.members.iter().any(|(member, _)| member == name)
    }

    /// Whether some selected member (its name and value) passes `test`.
    pub(crate) fn any_member(&self, test: impl Fn(&str, Member<'_>) -> bool) -> bool {
        self.members.iter().any(|(name, value)| {
            let value = match value {
                SelectedValue::Text(text) => Member::Text(text),
                SelectedValue::Json(value) => Member::Json(value),
            };
            test(name, value)
        })
    }
}

/// Parses `bytes` as [`object_with_unique_members`] does, refusing exactly the documents it
/// refuses, but builds only the members whose names `wanted` accepts. The others are read
/// and checked (unique member names at every depth) without being built, and nothing is
/// allocated for them beyond a list of the member names of any object nested in them.
/// Names are checked for uniqueness once their object is read, so a document with both a
/// repeated name and a later syntax error is refused as [`StrictJsonError::NotAnObject`]
/// here (the strict reading stops at the repeated name first).
pub(crate) fn selected_members(
    bytes: &[u8],
    wanted: impl Fn(&str) -> bool,
) -> Result<SelectedMembers<'_>, StrictJsonError> {
    // One UTF-8 check of the whole document (word at a time over ASCII) instead of one per
    // string, which is what reading from bytes does: JSON text is UTF-8 (RFC 8259 section
    // 8.1) either way.
    let text = std::str::from_utf8(bytes).map_err(|_| StrictJsonError::NotAnObject)?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let selected = deserializer
        .deserialize_map(Selecting { wanted })
        .and_then(|selected| deserializer.end().map(|()| selected));
    selected.map_err(strict_error)
}

/// A member name, borrowed from the document when it has no escapes.
struct Name<'de>(Cow<'de, str>);

/// Reads a [`Name`].
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Name<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Name<'de>, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Name<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Borrowed(name)))
    }

    fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Owned(name.to_owned())))
    }

    fn visit_string<E>(self, name: String) -> Result<Name<'de>, E> {
        Ok(Name(Cow::Owned(name)))
    }
}

/// Fails if a name occurs twice. Sorting keeps a hostile object with thousands of members
/// at `n log n` comparisons.
fn check_unique<E: de::Error>(names: &mut [Cow<'_, str>]) -> Result<(), E> {
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(E::custom(DUPLICATE));
    }
    Ok(())
}

/// The top-level object, keeping the wanted members.
struct Selecting<F> {
    wanted: F,
}

impl<'de, F: Fn(&str) -> bool> Visitor<'de> for Selecting<F> {
    type Value = SelectedMembers<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<SelectedMembers<'de>, A::Error> {
        // Room for the members of a typical access token without growing.
        let mut names = Vec::with_capacity(16);
        let mut members = Vec::with_capacity(8);
        while let Some(Name(name)) = access.next_key_seed(NameSeed)? {
            // The strict reading takes this map for a number, which is no object.
            if names.is_empty() && name == ARBITRARY_PRECISION_NUMBER && numbers_come_as_maps() {
                return Err(de::Error::custom("not an object"));
            }
            if (self.wanted)(&name) {
                let value = access.next_value_seed(SelectedValueSeed)?;
                members.push((name.clone(), value));
            } else {
                access.next_value_seed(UniqueIgnored)?;
            }
            names.push(name);
        }
        check_unique(&mut names)?;
        Ok(SelectedMembers { members })
    }
}

/// Reads a [`SelectedValue`]: strings borrowed where they can be, the rest as
/// [`UniqueValue`] builds it.
struct SelectedValueSeed;

impl<'de> DeserializeSeed<'de> for SelectedValueSeed {
    type Value = SelectedValue<'de>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<SelectedValue<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SelectedValueSeed {
    type Value = SelectedValue<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<SelectedValue<'de>, E> {
        Ok(SelectedValue::Text(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<SelectedValue<'de>, E> {
        Ok(SelectedValue::Text(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<SelectedValue<'de>, E> {
        Ok(SelectedValue::Text(Cow::Owned(value)))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<SelectedValue<'de>, E> {
        UniqueValue::STRICT
            .visit_bool(value)
            .map(SelectedValue::Json)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<SelectedValue<'de>, E> {
        UniqueValue::STRICT
            .visit_i64(value)
            .map(SelectedValue::Json)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<SelectedValue<'de>, E> {
        UniqueValue::STRICT
            .visit_u64(value)
            .map(SelectedValue::Json)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<SelectedValue<'de>, E> {
        UniqueValue::STRICT
            .visit_f64(value)
            .map(SelectedValue::Json)
    }

    fn visit_unit<E: de::Error>(self) -> Result<SelectedValue<'de>, E> {
        UniqueValue::STRICT.visit_unit().map(SelectedValue::Json)
    }

    fn visit_none<E: de::Error>(self) -> Result<SelectedValue<'de>, E> {
        UniqueValue::STRICT.visit_none().map(SelectedValue::Json)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<SelectedValue<'de>, A::Error> {
        UniqueValue::STRICT.visit_seq(seq).map(SelectedValue::Json)
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<SelectedValue<'de>, A::Error> {
        UniqueValue::STRICT
            .visit_map(access)
            .map(SelectedValue::Json)
    }
}

/// Any JSON value, checked for unique member names at every depth and then dropped.
struct UniqueIgnored;

impl<'de> DeserializeSeed<'de> for UniqueIgnored {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueIgnored {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        // As `UniqueValue`: a number that is not finite is refused.
        if value.is_finite() {
            Ok(())
        } else {
            Err(E::custom("not a finite number"))
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueIgnored)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let mut names = Vec::new();
        while let Some(Name(name)) = access.next_key_seed(NameSeed)? {
            // A number, as `UniqueValue` reads it: refused where that refuses it.
            if names.is_empty() && name == ARBITRARY_PRECISION_NUMBER && numbers_come_as_maps() {
                return arbitrary_precision_number(access.next_value::<String>()?).map(|_| ());
            }
            access.next_value_seed(UniqueIgnored)?;
            names.push(name);
        }
        check_unique(&mut names)
    }
}

/// The strict readers' error for a serde_json error: a repeated name, or anything else.
/// Inlined: out of line, it cost the one-pass reader, on every fresh token, about 300
/// instructions (bench/fresh_instructions.sh).
#[inline]
fn strict_error(error: serde_json::Error) -> StrictJsonError {
    if error.to_string().starts_with(DUPLICATE) {
        StrictJsonError::DuplicateMember
    } else {
        StrictJsonError::NotAnObject
    }
}

/// The message that marks a duplicate member (never shown to anyone; it only tells the
/// two error kinds apart, and holds no document contents).
const DUPLICATE: &str = "duplicate member name";

/// A JSON value whose objects have unique member names.
#[derive(Clone, Copy)]
struct UniqueValue<'a> {
    /// Where a repeated name is noted, the value read on (the caller drops it); `None`:
    /// a repeated name is an error.
    repeated: Option<&'a Cell<bool>>,
}

impl UniqueValue<'static> {
    const STRICT: Self = Self { repeated: None };
}

impl<'de> DeserializeSeed<'de> for UniqueValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueValue<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if map.is_empty() && name == ARBITRARY_PRECISION_NUMBER && numbers_come_as_maps() {
                return arbitrary_precision_number(access.next_value::<String>()?);
            }
            if map.contains_key(&name) {
                let Some(repeated) = self.repeated else {
                    return Err(de::Error::custom(DUPLICATE));
                };
                repeated.set(true);
                access.next_value_seed(self)?;
                continue;
            }
            let value = access.next_value_seed(self)?;
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

/// The one member name of the map that serde_json hands a number over as when its
/// `arbitrary_precision` feature is on (any crate of the application may turn it on, for
/// FHIR decimals say); the value is the number's text.
const ARBITRARY_PRECISION_NUMBER: &str = "$serde_json::private::Number";

/// Whether this build's serde_json hands numbers over as one-member maps (its
/// `arbitrary_precision` feature, which Cargo turns on for the whole build when any crate
/// asks for it; integers that fit 64 bits still come as integers, other numbers as maps).
/// Found out once, by reading `0.5`; without the feature a member of that name is an
/// ordinary one.
fn numbers_come_as_maps() -> bool {
    struct Probe;
    impl<'de> Visitor<'de> for Probe {
        type Value = bool;
        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a number")
        }
        fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
            Ok(true)
        }
    }
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        serde_json::Deserializer::from_str("0.5")
            .deserialize_any(Probe)
            .unwrap_or(false)
    })
}

/// Whether `value` holds a number beyond `f64` anywhere, which only serde_json with
/// `arbitrary_precision` keeps (and the strict reader refuses in every build).
#[cfg(test)]
pub(crate) fn holds_number_beyond_f64(value: &Value) -> bool {
    match value {
        Value::Number(number) => number.as_f64().is_none_or(|float| !float.is_finite()),
        Value::Array(items) => items.iter().any(holds_number_beyond_f64),
        Value::Object(members) => members.values().any(holds_number_beyond_f64),
        _ => false,
    }
}

/// A number serde_json handed over as its text, refused unless finite as a build without
/// the feature refuses it (`1e99999` is out of range there; kept, its `as_f64` would be
/// `None` and `-1e99999` could pass for a far-future date).
fn arbitrary_precision_number<E: de::Error>(text: String) -> Result<Value, E> {
    if !text.parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(E::custom("not a finite number"));
    }
    text.parse()
        .map(Value::Number)
        .map_err(|_| E::custom("not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers read the same whether or not serde_json's `arbitrary_precision` is on (CI
    /// runs the library's tests both ways), and only then does the member name serde_json
    /// uses for them mean a number.
    #[test]
    fn numbers_read_alike_with_or_without_arbitrary_precision() {
        let map = object_with_unique_members(br#"{"exp":1700000000,"f":1.5,"n":-3}"#)
            .expect("strict object");
        assert_eq!(map["exp"].as_i64(), Some(1_700_000_000));
        assert_eq!(map["f"].as_f64(), Some(1.5));
        assert_eq!(map["n"].as_i64(), Some(-3));
        // Beyond `f64`: refused in both builds.
        assert!(object_with_unique_members(br#"{"exp":1e99999}"#).is_err());
        assert!(object_with_unique_members(br#"{"exp":-1e99999}"#).is_err());
        let named = object_with_unique_members(br#"{"x":{"$serde_json::private::Number":"5"}}"#);
        if numbers_come_as_maps() {
            assert_eq!(named.expect("read as a number")["x"].as_u64(), Some(5));
        } else {
            assert!(named.expect("an ordinary member")["x"].is_object());
        }
    }

    #[test]
    fn accepts_objects_with_unique_members() {
        let map = object_with_unique_members(br#" {"a":1,"b":{"a":[{"a":null}]},"c":-1.5} "#)
            .expect("strict object");
        assert_eq!(map.len(), 3);
        assert_eq!(map["b"]["a"][0]["a"], Value::Null);
        // The same name in sibling objects or at other depths is not a duplicate.
        assert!(object_with_unique_members(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#).is_ok());
    }

    #[test]
    fn refuses_duplicates_at_every_depth() {
        let rows: &[&[u8]] = &[
            br#"{"a":1,"a":1}"#,
            br#"{"a":1,"a":2}"#,
            br#"{"a":null,"a":"x"}"#,
            br#"{"x":{"a":1,"a":2}}"#,
            br#"{"x":[{"b":1},{"a":1,"a":2}]}"#,
            // The same name spelled with an escape is the same name.
            br#"{"alg":"RS256","\u0061lg":"none"}"#,
            br#"{"a\/b":1,"a/b":2}"#,
        ];
        assert_both_readers_refuse(rows, StrictJsonError::DuplicateMember);
    }

    /// Each row is refused with `error` by the whole-object reader, by the selecting
    /// reader, whether it builds the members or only checks them, and by the item-wise
    /// reader for a list the row does not have.
    fn assert_both_readers_refuse(rows: &[&[u8]], error: StrictJsonError) {
        for row in rows {
            let row_text = String::from_utf8_lossy(row);
            assert_eq!(object_with_unique_members(row), Err(error), "{row_text}");
            assert_eq!(
                object_with_items_read_alone(row, "keys", usize::MAX).err(),
                Some(error),
                "{row_text}"
            );
            for keep in [true, false] {
                assert_eq!(
                    selected_members(row, |_| keep).err(),
                    Some(error),
                    "{row_text}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        let rows: &[&[u8]] = &[
            b"",
            b"[]",
            b"1",
            b"\"s\"",
            b"null",
            b"{",
            b"{}{}",
            b"{} x",
            br#"{"a":1,}"#,
            br#"{'a':1}"#,
            b"{\"a\":\"\xff\"}",
        ];
        assert_both_readers_refuse(rows, StrictJsonError::NotAnObject);
    }

    #[test]
    fn selected_members_keep_only_what_was_asked_for() {
        let text = br#"{"a":1,"b":{"c":[{"d":null}]},"\u0065":"x","f":[1,2]}"#;
        let selected = selected_members(text, |name| name == "b" || name == "e").unwrap();
        assert_eq!(
            selected.get("b"),
            Some(Member::Json(&serde_json::json!({"c": [{"d": null}]})))
        );
        assert_eq!(selected.get("e"), Some(Member::Text("x")));
        assert_eq!(selected.get("a"), None);
        assert_eq!(selected.get("f"), None);
        // Many members: still checked, by sorting the names.
        let many = format!(
            "{{{}}}",
            (0..5000)
                .map(|i| format!(r#""m{i}":{i}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(selected_members(many.as_bytes(), |_| false).is_ok());
        let repeated = many.replacen(r#""m4999""#, r#""m0""#, 1);
        assert_eq!(
            selected_members(repeated.as_bytes(), |_| false).err(),
            Some(StrictJsonError::DuplicateMember)
        );
    }

    /// Items past the limit are counted and checked for syntax, not built; a repeated name
    /// in one of them refuses nothing (it is never read).
    #[test]
    fn items_past_the_limit_are_only_counted() {
        let read = object_with_items_read_alone(
            br#"{"keys":[1,{"a":2},[3],{"b":1,"b":2},"x"]}"#,
            "keys",
            2,
        )
        .unwrap();
        let items: Vec<Value> = read
            .items
            .unwrap()
            .into_iter()
            .map(|item| item.value)
            .collect();
        assert_eq!(items, [serde_json::json!(1), serde_json::json!({"a": 2})]);
        assert_eq!(read.items_skipped, 3);
        let read = object_with_items_read_alone(br#"{"keys":[1,2]}"#, "keys", 2).unwrap();
        assert_eq!((read.items.unwrap().len(), read.items_skipped), (2, 0));
        for broken in [
            &br#"{"keys":[1,2,3,]}"#[..],
            br#"{"keys":[1,2,{]}"#,
            br#"{"keys":[1,2,3"#,
        ] {
            assert_eq!(
                object_with_items_read_alone(broken, "keys", 2).err(),
                Some(StrictJsonError::NotAnObject),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn items_read_alone_set_repeats_aside_one_by_one() {
        let read = object_with_items_read_alone(
            br#"{"a":1,"keys":[{"k":1},{"k":1,"k":2},{"n":{"x":[{"y":1,"y":1}]}},7,{"k":[1]}]}"#,
            "keys",
            usize::MAX,
        )
        .unwrap();
        assert_eq!(
            read.members,
            object_with_unique_members(br#"{"a":1}"#).unwrap()
        );
        let items = read.items.unwrap();
        let read_as = |value: Value, repeats_a_member: bool| Item {
            value,
            repeats_a_member,
        };
        assert_eq!(
            items,
            [
                read_as(serde_json::json!({"k": 1}), false),
                read_as(serde_json::json!({"k": 1}), true),
                read_as(serde_json::json!({"n": {"x": [{"y": 1}]}}), true),
                read_as(serde_json::json!(7), false),
                read_as(serde_json::json!({"k": [1]}), false),
            ]
        );
        // Outside the list, and for the list's own name, repeats refuse the document.
        for row in [
            &br#"{"keys":[],"keys":[]}"#[..],
            br#"{"keys":[],"keys":1}"#,
            br#"{"keys":1,"keys":[]}"#,
            br#"{"a":{"b":1,"b":2},"keys":[]}"#,
        ] {
            assert_eq!(
                object_with_items_read_alone(row, "keys", usize::MAX).err(),
                Some(StrictJsonError::DuplicateMember),
                "{}",
                String::from_utf8_lossy(row)
            );
        }
        // Without repeats it reads what the strict reader reads.
        let text = br#"{"keys":[{"a":{"b":[1,2.5,null,"s"]}}],"other":{"keys":[1]}}"#;
        let read = object_with_items_read_alone(text, "keys", usize::MAX).unwrap();
        let strict = object_with_unique_members(text).unwrap();
        assert_eq!(Some(&read.members["other"]), strict.get("other"));
        let items: Vec<Value> = read
            .items
            .unwrap()
            .into_iter()
            .map(|item| {
                assert!(!item.repeats_a_member);
                item.value
            })
            .collect();
        assert_eq!(Value::Array(items), strict["keys"]);
        // A list that is not an array is an ordinary member.
        let read =
            object_with_items_read_alone(br#"{"keys":{"a":1}}"#, "keys", usize::MAX).unwrap();
        assert!(read.items.is_none());
        assert_eq!(read.members["keys"], serde_json::json!({"a": 1}));
    }

    #[test]
    fn hostile_nesting_is_refused_without_overflow() {
        let deep = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert_eq!(
            object_with_unique_members(deep.as_bytes()),
            Err(StrictJsonError::NotAnObject)
        );
        let deep_array = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            object_with_unique_members(deep_array.as_bytes()),
            Err(StrictJsonError::NotAnObject)
        );
        let deep_items = format!(
            "{{\"keys\":[{}1{}]}}",
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        );
        for text in [&deep, &deep_array, &deep_items] {
            assert_eq!(
                object_with_items_read_alone(text.as_bytes(), "keys", usize::MAX).err(),
                Some(StrictJsonError::NotAnObject)
            );
        }
        for keep in [true, false] {
            assert_eq!(
                selected_members(deep.as_bytes(), |_| keep).err(),
                Some(StrictJsonError::NotAnObject)
            );
            assert_eq!(
                selected_members(deep_array.as_bytes(), |_| keep).err(),
                Some(StrictJsonError::NotAnObject)
            );
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::proptest_support::{config, deep_nesting, json_object, json_value};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(config(1024))]

        /// The strict reading agrees with serde_json's wherever it accepts, accepts only
        /// objects, and refuses whatever serde_json refuses; hostile nesting is an error,
        /// never a stack overflow.
        #[test]
        fn strict_reading_agrees_with_serde_json(
            text in prop_oneof![json_object(&["a", "b"]), json_value(&["a"]), deep_nesting()],
        ) {
            let loose = serde_json::from_str::<Value>(&text);
            match object_with_unique_members(text.as_bytes()) {
                Ok(map) => prop_assert_eq!(loose.ok(), Some(Value::Object(map))),
                Err(StrictJsonError::NotAnObject) => {
                    // serde_json with `arbitrary_precision` keeps numbers beyond `f64`
                    // (possibly in a member a later twin overwrote), which this refuses.
                    prop_assert!(
                        !matches!(loose, Ok(Value::Object(_))) || numbers_come_as_maps(),
                        "{}",
                        text
                    );
                }
                Err(StrictJsonError::DuplicateMember) => {
                    prop_assert!(text.matches(':').count() >= 2);
                }
            }
        }

        /// The selecting reading accepts exactly what the strict reading accepts, and the
        /// members it keeps are the strict reading's.
        #[test]
        fn selected_members_agree_with_the_strict_reading(
            text in prop_oneof![json_object(&["a", "b"]), json_value(&["a"]), deep_nesting()],
        ) {
            let strict = object_with_unique_members(text.as_bytes());
            let selected = selected_members(text.as_bytes(), |name| name == "a");
            prop_assert_eq!(strict.is_ok(), selected.is_ok(), "{}", text);
            if let (Ok(map), Ok(selected)) = (strict, selected) {
                prop_assert_eq!(map.get("a").map(Member::of), selected.get("a"));
                prop_assert_eq!(selected.get("b"), None);
            }
        }

        /// Adding a member that is already there, at the top level or nested, makes an
        /// accepted document a duplicate.
        #[test]
        fn a_repeated_member_is_always_found(
            text in json_object(&["a", "b"]),
            nested in any::<bool>(),
        ) {
            if let Ok(map) = object_with_unique_members(text.as_bytes())
                && let Some((name, value)) = map.iter().next()
            {
                let name = serde_json::to_string(name).unwrap();
                let inner = text.trim().trim_start_matches('{');
                let repeated = if nested {
                    format!(r#"{{"outer":[{{{name}:{value},{inner}]}}"#)
                } else {
                    format!("{{{name}:{value},{inner}")
                };
                prop_assert_eq!(
                    object_with_unique_members(repeated.as_bytes()).err(),
                    Some(StrictJsonError::DuplicateMember),
                    "{}", repeated
                );
            }
        }
    }
}
