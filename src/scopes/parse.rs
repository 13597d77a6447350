//! Parsing SMART scope strings. The grammar is described in the [module docs](super).

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::ops::BitOr;
use std::str::FromStr;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::ScopeSet;
use crate::form::percent_decode_strict;

/// One parsed scope.
///
/// ```
/// use smart_auth::scopes::{Scope, RejectReason};
///
/// assert_eq!("openid".parse::<Scope>()?, Scope::OpenId);
/// assert_eq!("launch/patient".parse::<Scope>()?, Scope::LaunchContext("patient".into()));
/// assert!(matches!("system/Observation.rs".parse::<Scope>()?, Scope::Resource(_)));
/// assert_eq!("https://example.org/scope".parse::<Scope>()?, Scope::Other("https://example.org/scope".into()));
///
/// // A malformed SMART scope is an error, and grants nothing.
/// let err = "patient/Observation.dus".parse::<Scope>().unwrap_err();
/// assert_eq!(err.reason, RejectReason::InvalidPermissions);
/// # Ok::<(), smart_auth::scopes::RejectedScope>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A resource scope such as `patient/Observation.rs`.
    Resource(ResourceScope),
    /// `launch`: the app takes part in an EHR launch.
    Launch,
    /// `launch/<type>`: asks for a launch context of that type, e.g. `patient` or
    /// `encounter`. Holds the text after `launch/`, including an optional `?role=...` as given.
    LaunchContext(String),
    /// `openid`.
    OpenId,
    /// `fhirUser`.
    FhirUser,
    /// `profile` (the v1 form of `fhirUser`).
    Profile,
    /// `offline_access`.
    OfflineAccess,
    /// `online_access`.
    OnlineAccess,
    /// Any other scope, kept as given: URIs, `__` extensions, scopes of other APIs.
    Other(String),
}

/// A resource scope: `context/type.permissions[?query]`.
///
/// ```
/// use smart_auth::scopes::{Context, Permissions, ResourceType, Scope, ScopeSyntax};
///
/// let Ok(Scope::Resource(scope)) = "user/Observation.read".parse() else {
///     panic!("a resource scope");
/// };
/// assert_eq!(scope.context, Context::User);
/// assert_eq!(scope.resource, ResourceType::Named("Observation".into()));
/// assert_eq!(scope.permissions, Permissions::V1_READ);
/// assert_eq!(scope.version, ScopeSyntax::V1);
/// assert_eq!(scope.to_string(), "user/Observation.rs"); // always shown in v2 form
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    /// Whose data: `patient/`, `user/` or `system/`.
    pub context: Context,
    /// The resource type, or `*` for every type.
    pub resource: ResourceType,
    /// The granted permissions, with v1 words already rewritten to letters.
    pub permissions: Permissions,
    /// Granular filter: search parameters, percent-decoded, in the order given. All of them
    /// must hold for a resource to be covered. Empty for a plain scope.
    pub query: Vec<(String, String)>,
    /// Which syntax the permissions were written in.
    pub version: ScopeSyntax,
}

impl ResourceScope {
    /// Whether the scope carries a granular filter (`?param=value`), which restricts it to
    /// the resources that match. A granular scope grants only `r` and `s`, and only inside
    /// its filter; see [`ScopeSet::permits`](super::ScopeSet::permits).
    ///
    /// ```
    /// use smart_auth::scopes::Scope;
    ///
    /// let Ok(Scope::Resource(scope)) = "user/Observation.rs?category=laboratory".parse() else {
    ///     panic!("a resource scope");
    /// };
    /// assert!(scope.is_granular());
    /// ```
    #[must_use]
    pub fn is_granular(&self) -> bool {
        !self.query.is_empty()
    }
}

/// The context prefix of a resource scope.
///
/// ```
/// use smart_auth::scopes::{Context, Scope};
///
/// let Ok(Scope::Resource(scope)) = "system/Patient.rs".parse() else { panic!() };
/// assert_eq!(scope.context, Context::System);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// `patient/`: data about the patient in context.
    Patient,
    /// `user/`: data the user may see.
    User,
    /// `system/`: data the client itself may see (backend services).
    System,
}

impl Context {
    /// Every context, in grammar order.
    ///
    /// ```
    /// use smart_auth::scopes::Context;
    ///
    /// let prefixes: Vec<&str> = Context::ALL.iter().map(|context| context.as_str()).collect();
    /// assert_eq!(prefixes, ["patient", "user", "system"]);
    /// ```
    pub const ALL: [Self; 3] = [Self::Patient, Self::User, Self::System];

    /// The prefix as written in a scope, without the slash.
    ///
    /// ```
    /// use smart_auth::scopes::Context;
    ///
    /// assert_eq!(Context::Patient.as_str(), "patient");
    /// assert_eq!(Context::System.to_string(), "system");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::User => "user",
            Self::System => "system",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource type of a resource scope.
///
/// ```
/// use smart_auth::scopes::ResourceType;
///
/// assert_eq!(ResourceType::parse("Observation"), Some(ResourceType::Named("Observation".into())));
/// assert_eq!(ResourceType::parse("*"), Some(ResourceType::Any));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// One resource type, such as `Observation`. Compared case-sensitively.
    Named(String),
    /// `*`: every resource type, including ones added later.
    Any,
}

impl ResourceType {
    /// Parses `*` or a type name of the shape `[A-Z][A-Za-z]+`.
    ///
    /// ```
    /// use smart_auth::scopes::ResourceType;
    ///
    /// assert_eq!(ResourceType::parse("*"), Some(ResourceType::Any));
    /// assert!(ResourceType::parse("Patient").is_some());
    /// assert_eq!(ResourceType::parse("patient"), None); // lower case
    /// assert_eq!(ResourceType::parse("P"), None); // too short
    /// ```
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            Some(Self::Any)
        } else if is_resource_type_name(text) {
            Some(Self::Named(text.to_owned()))
        } else {
            None
        }
    }

    /// The type name, or `*`.
    ///
    /// ```
    /// use smart_auth::scopes::ResourceType;
    ///
    /// assert_eq!(ResourceType::Named("Observation".into()).as_str(), "Observation");
    /// assert_eq!(ResourceType::Any.as_str(), "*");
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Named(name) => name,
            Self::Any => "*",
        }
    }

    /// Whether a scope on this type covers the requested type.
    ///
    /// `*` covers everything. A named type covers only the same name. A request for `*` (all
    /// types, as in system-level search) is covered only by `*`.
    ///
    /// ```
    /// use smart_auth::scopes::ResourceType;
    ///
    /// let observation = ResourceType::Named("Observation".into());
    /// assert!(observation.covers("Observation"));
    /// assert!(!observation.covers("Patient"));
    /// assert!(!observation.covers("*")); // a system-level request needs a `*` scope
    /// assert!(ResourceType::Any.covers("*"));
    /// ```
    #[must_use]
    pub fn covers(&self, requested: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Named(name) => requested != "*" && name == requested,
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `text` has the shape of a FHIR resource type name: `[A-Z][A-Za-z]+`.
pub(crate) fn is_resource_type_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 2
        && bytes.first().is_some_and(u8::is_ascii_uppercase)
        && bytes.iter().all(u8::is_ascii_alphabetic)
}

/// Which syntax a resource scope's permissions were written in.
///
/// ```
/// use smart_auth::scopes::{Scope, ScopeSyntax};
///
/// let version = |text: &str| match text.parse::<Scope>() {
///     Ok(Scope::Resource(scope)) => scope.version,
///     _ => panic!("a resource scope"),
/// };
/// assert_eq!(version("system/*.read"), ScopeSyntax::V1);
/// assert_eq!(version("system/*.rs"), ScopeSyntax::V2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeSyntax {
    /// `read`, `write` or `*` (SMART v1, Bulk Data v1).
    V1,
    /// Letters from `cruds` (SMART v2).
    V2,
}

/// A set of the SMART v2 permission letters `c`, `r`, `u`, `d`, `s`.
///
/// ```
/// use smart_auth::scopes::Permissions;
///
/// let rs = Permissions::from_v2_letters("rs").unwrap();
/// assert_eq!(rs, Permissions::READ | Permissions::SEARCH);
/// assert!(rs.contains(Permissions::READ));
/// assert!(!rs.contains(Permissions::CREATE));
/// assert_eq!(rs.to_string(), "rs");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

/// The permission letters in grammar order, with their bits.
const LETTERS: [(char, Permissions); 5] = [
    ('c', Permissions::CREATE),
    ('r', Permissions::READ),
    ('u', Permissions::UPDATE),
    ('d', Permissions::DELETE),
    ('s', Permissions::SEARCH),
];

impl Permissions {
    /// No permission.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert!(Permissions::NONE.is_empty());
    /// assert_eq!(Permissions::NONE.to_string(), "");
    /// ```
    pub const NONE: Self = Self(0);
    /// `c`: create.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Permissions};
    ///
    /// assert_eq!(Interaction::Create.required_permission(), Permissions::CREATE);
    /// assert_eq!(Permissions::CREATE.to_string(), "c");
    /// ```
    pub const CREATE: Self = Self(1);
    /// `r`: read, vread, instance history.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Permissions};
    ///
    /// assert_eq!(Interaction::Vread.required_permission(), Permissions::READ);
    /// assert_eq!(Permissions::READ.to_string(), "r");
    /// ```
    pub const READ: Self = Self(1 << 1);
    /// `u`: update (including upsert) and patch.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Permissions};
    ///
    /// assert_eq!(Interaction::Patch.required_permission(), Permissions::UPDATE);
    /// assert_eq!(Permissions::UPDATE.to_string(), "u");
    /// ```
    pub const UPDATE: Self = Self(1 << 2);
    /// `d`: delete.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Permissions};
    ///
    /// assert_eq!(Interaction::Delete.required_permission(), Permissions::DELETE);
    /// assert_eq!(Permissions::DELETE.to_string(), "d");
    /// ```
    pub const DELETE: Self = Self(1 << 3);
    /// `s`: type and system search, type and system history.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, Permissions};
    ///
    /// assert_eq!(Interaction::HistoryType.required_permission(), Permissions::SEARCH);
    /// assert_eq!(Permissions::SEARCH.to_string(), "s");
    /// ```
    pub const SEARCH: Self = Self(1 << 4);
    /// `cruds`, the meaning of v1 `*`.
    ///
    /// ```
    /// use smart_auth::scopes::{Permissions, Scope};
    ///
    /// assert_eq!(Permissions::ALL.to_string(), "cruds");
    /// let Ok(Scope::Resource(scope)) = "system/*.*".parse() else { panic!() };
    /// assert_eq!(scope.permissions, Permissions::ALL);
    /// ```
    pub const ALL: Self = Self(0b1_1111);
    /// `rs`, the meaning of v1 `read`.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert_eq!(Permissions::V1_READ.to_string(), "rs");
    /// ```
    pub const V1_READ: Self = Self(Self::READ.0 | Self::SEARCH.0);
    /// `cud`, the meaning of v1 `write`.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert_eq!(Permissions::V1_WRITE.to_string(), "cud");
    /// assert!(!Permissions::V1_WRITE.contains(Permissions::READ)); // write never implies read
    /// ```
    pub const V1_WRITE: Self = Self(Self::CREATE.0 | Self::UPDATE.0 | Self::DELETE.0);

    /// Parses v2 letters: a non-empty subset of `cruds`, in that order, without repeats.
    ///
    /// Returns `None` for anything else, e.g. `""`, `"dus"`, `"rr"`, `"R"` or `"read"`.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert_eq!(Permissions::from_v2_letters("rd"), Some(Permissions::READ | Permissions::DELETE));
    /// assert_eq!(Permissions::from_v2_letters("dr"), None); // out of order
    /// assert_eq!(Permissions::from_v2_letters("read"), None); // v1 words are no letters
    /// ```
    #[must_use]
    pub fn from_v2_letters(text: &str) -> Option<Self> {
        if text.is_empty() {
            return None;
        }
        let mut result = Self::NONE;
        // Index into LETTERS from which the next letter may come.
        let mut next = 0;
        for ch in text.chars() {
            let offset = LETTERS
                .get(next..)?
                .iter()
                .position(|(letter, _)| *letter == ch)?;
            result = result | LETTERS.get(next + offset)?.1;
            next += offset + 1;
        }
        Some(result)
    }

    /// Whether every permission in `other` is also in `self`.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert!(Permissions::ALL.contains(Permissions::V1_READ));
    /// assert!(!Permissions::V1_READ.contains(Permissions::ALL));
    /// assert!(Permissions::READ.contains(Permissions::NONE));
    /// ```
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no permission is set.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert!(Permissions::from_bits(0b1110_0000).is_empty()); // unknown bits are dropped
    /// assert!(!Permissions::READ.is_empty());
    /// ```
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions of both sets.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// let both = Permissions::V1_READ.union(Permissions::V1_WRITE);
    /// assert_eq!(both, Permissions::ALL);
    /// assert_eq!(both, Permissions::V1_READ | Permissions::V1_WRITE);
    /// ```
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The raw bits: `c` = 1, `r` = 2, `u` = 4, `d` = 8, `s` = 16.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert_eq!(Permissions::V1_READ.bits(), 2 | 16);
    /// assert_eq!(Permissions::from_bits(Permissions::ALL.bits()), Permissions::ALL);
    /// ```
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Builds a set from raw bits (see [`Permissions::bits`]); unknown bits are dropped.
    ///
    /// ```
    /// use smart_auth::scopes::Permissions;
    ///
    /// assert_eq!(Permissions::from_bits(1 | 8), Permissions::CREATE | Permissions::DELETE);
    /// assert_eq!(Permissions::from_bits(0xFF), Permissions::ALL);
    /// ```
    #[must_use]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits & Self::ALL.0)
    }
}

impl BitOr for Permissions {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// Writes the v2 letters in `cruds` order, e.g. `rs`. Empty for [`Permissions::NONE`].
impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, bit) in LETTERS {
            if self.contains(bit) {
                f.write_char(letter)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({self})")
    }
}

/// A scope that looked like a SMART scope but did not follow the grammar. It grants nothing.
///
/// ```
/// use smart_auth::scopes::{RejectReason, Scope};
///
/// let rejected = "Patient/Observation.rs".parse::<Scope>().unwrap_err();
/// assert_eq!(rejected.raw, "Patient/Observation.rs");
/// assert_eq!(rejected.reason, RejectReason::InvalidContext);
/// // Its message leaves the scope text out.
/// assert_eq!(rejected.to_string(), "malformed SMART scope: invalid context prefix");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RejectedScope {
    /// The scope exactly as it appeared.
    pub raw: String,
    /// Why it was rejected.
    pub reason: RejectReason,
}

/// Why a scope was rejected. New reasons may be added.
///
/// ```
/// use smart_auth::scopes::{RejectReason, Scope};
///
/// let reason = |text: &str| text.parse::<Scope>().unwrap_err().reason;
/// assert_eq!(reason("patient/observation.rs"), RejectReason::InvalidResourceType);
/// assert_eq!(reason("patient/Observation"), RejectReason::MissingPermissions);
/// assert_eq!(reason("patient/Observation.read?code=x"), RejectReason::QueryWithV1Permissions);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The string was empty (only possible through [`FromStr`]).
    Empty,
    /// The string holds a character that RFC 6749 3.3 does not allow in a scope token: a
    /// space, a control character (TAB, CR, LF, NUL, DEL, ...), `"`, `\` or a non-ASCII
    /// character. Such a token is dropped whole, never split further.
    InvalidCharacter,
    /// The context is `*` or not in lowercase, e.g. `*/` or `Patient/`.
    InvalidContext,
    /// The resource type is neither `*` nor of the shape `[A-Z][A-Za-z]+`.
    InvalidResourceType,
    /// There is no `.` after the resource type.
    MissingPermissions,
    /// Nothing follows the `.`.
    EmptyPermissions,
    /// The permissions are neither `read`/`write`/`*` nor an ordered subset of `cruds`.
    InvalidPermissions,
    /// A query follows v1 permissions; granular filters exist only in the v2 syntax.
    QueryWithV1Permissions,
    /// The query is empty, lacks `=`, has an empty name or value, a bad percent escape, or does
    /// not decode to UTF-8.
    InvalidQuery,
    /// A `launch/` scope whose type is not lowercase letters, or whose suffix is not `?role=...`.
    InvalidLaunchContext,
}

impl RejectReason {
    /// A short description, safe to log.
    ///
    /// ```
    /// use smart_auth::scopes::RejectReason;
    ///
    /// assert_eq!(RejectReason::EmptyPermissions.as_str(), "empty permissions");
    /// assert_eq!(RejectReason::InvalidQuery.to_string(), "invalid query");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty scope",
            Self::InvalidCharacter => "scope contains a character outside the scope-token set",
            Self::InvalidContext => "invalid context prefix",
            Self::InvalidResourceType => "invalid resource type",
            Self::MissingPermissions => "missing permissions",
            Self::EmptyPermissions => "empty permissions",
            Self::InvalidPermissions => "invalid permissions",
            Self::QueryWithV1Permissions => "query with v1 permissions",
            Self::InvalidQuery => "invalid query",
            Self::InvalidLaunchContext => "invalid launch context",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RejectedScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The scope text stays out: error messages must not carry token contents.
        write!(f, "malformed SMART scope: {}", self.reason)
    }
}

impl std::error::Error for RejectedScope {}

impl FromStr for Scope {
    type Err = RejectedScope;

    /// Parses one scope. Unrecognised scopes are `Ok(Scope::Other(..))`; only empty strings,
    /// strings with a character outside the RFC 6749 scope-token set (space, control
    /// characters, `"`, `\`, non-ASCII) and malformed resource or launch scopes are errors.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let reason = if text.is_empty() {
            RejectReason::Empty
        } else {
            match parse_one(text) {
                Ok(scope) => return Ok(scope),
                Err(reason) => reason,
            }
        };
        Err(RejectedScope {
            raw: text.to_owned(),
            reason,
        })
    }
}

/// Whether `text` is one RFC 6749 3.3 scope token:
/// `1*( %x21 / %x23-5B / %x5D-7E )`, that is printable ASCII except space, `"` and `\`.
#[must_use]
pub(crate) fn is_scope_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_scope_token_byte)
}

/// Whether one byte may appear in a scope token.
fn is_scope_token_byte(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// The scope tokens of a space-separated scope string (RFC 6749 3.3). Only the space
/// character (0x20) separates: runs of spaces and leading or trailing spaces give no empty
/// tokens, and any other character, TAB and LF included, stays inside its token (which then
/// is not a valid scope token, see [`is_scope_token`]).
pub(crate) fn split_scope_string(text: &str) -> impl Iterator<Item = &str> {
    text.split(' ').filter(|token| !token.is_empty())
}

/// Parses one non-empty scope.
fn parse_one(raw: &str) -> Result<Scope, RejectReason> {
    if !is_scope_token(raw) {
        return Err(RejectReason::InvalidCharacter);
    }
    match raw {
        "launch" => return Ok(Scope::Launch),
        "openid" => return Ok(Scope::OpenId),
        "fhirUser" => return Ok(Scope::FhirUser),
        "profile" => return Ok(Scope::Profile),
        "offline_access" => return Ok(Scope::OfflineAccess),
        "online_access" => return Ok(Scope::OnlineAccess),
        _ => {}
    }
    if let Some(rest) = raw.strip_prefix("launch/") {
        return parse_launch_context(rest);
    }
    if let Some((prefix, rest)) = raw.split_once('/')
        && looks_like_context(prefix)
    {
        return parse_resource(prefix, rest).map(Scope::Resource);
    }
    Ok(Scope::Other(raw.to_owned()))
}

/// Whether a prefix shows that the scope is meant as a resource scope.
fn looks_like_context(prefix: &str) -> bool {
    prefix == "*"
        || Context::ALL
            .iter()
            .any(|context| prefix.eq_ignore_ascii_case(context.as_str()))
}

/// Parses what follows `launch/`.
fn parse_launch_context(rest: &str) -> Result<Scope, RejectReason> {
    let (name, role) = match rest.split_once('?') {
        Some((name, query)) => (name, Some(query)),
        None => (rest, None),
    };
    let name_ok = !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_lowercase());
    let role_ok = role.is_none_or(|query| {
        query
            .strip_prefix("role=")
            .is_some_and(|value| !value.is_empty())
    });
    if name_ok && role_ok {
        Ok(Scope::LaunchContext(rest.to_owned()))
    } else {
        Err(RejectReason::InvalidLaunchContext)
    }
}

/// Parses `type.permissions[?query]` after the context `prefix`.
fn parse_resource(prefix: &str, rest: &str) -> Result<ResourceScope, RejectReason> {
    let context = match prefix {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return Err(RejectReason::InvalidContext),
    };
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let Some((type_text, permission_text)) = body.split_once('.') else {
        return Err(if ResourceType::parse(body).is_some() {
            RejectReason::MissingPermissions
        } else {
            RejectReason::InvalidResourceType
        });
    };
    let resource = ResourceType::parse(type_text).ok_or(RejectReason::InvalidResourceType)?;
    let (permissions, version) = match permission_text {
        "" => return Err(RejectReason::EmptyPermissions),
        "read" => (Permissions::V1_READ, ScopeSyntax::V1),
        "write" => (Permissions::V1_WRITE, ScopeSyntax::V1),
        "*" => (Permissions::ALL, ScopeSyntax::V1),
        letters => (
            Permissions::from_v2_letters(letters).ok_or(RejectReason::InvalidPermissions)?,
            ScopeSyntax::V2,
        ),
    };
    let query = match query {
        None => Vec::new(),
        Some(_) if version == ScopeSyntax::V1 => {
            return Err(RejectReason::QueryWithV1Permissions);
        }
        Some(query) => parse_query(query)?,
    };
    Ok(ResourceScope {
        context,
        resource,
        permissions,
        query,
        version,
    })
}

/// Parses `param=value(&param=value)*`, percent-decoding names and values. A name or value
/// that decodes to a control character is refused: no search value needs one, and it could
/// only confuse whoever builds a search from the filter. A name must be written as FHIR
/// writes search parameters ([`is_search_parameter_name`]): one that no server knows
/// (`?category`, ` category`, `cat=egory`) would be ignored by a lenient server, so a
/// search repeating the filter would pass it and return the whole type.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, RejectReason> {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').ok_or(RejectReason::InvalidQuery)?;
            let name = percent_decode_strict(name).ok_or(RejectReason::InvalidQuery)?;
            let value = percent_decode_strict(value).ok_or(RejectReason::InvalidQuery)?;
            let has_control = |text: &str| text.chars().any(char::is_control);
            if !is_search_parameter_name(&name)
                || selects_nothing(&name)
                || value.is_empty()
                || has_control(&value)
            {
                return Err(RejectReason::InvalidQuery);
            }
            Ok((name, value))
        })
        .collect()
}

/// Whether a filter's parameter selects no resources: one that only shapes or pages the
/// results (`_count`, `_sort`, `_summary`, `_format`, ..., see
/// [`NO_CRITERION`](super::interaction::NO_CRITERION)) or overrides the method
/// (`_method`), in any letter case. A search repeating such a "filter" is the whole type.
fn selects_nothing(name: &str) -> bool {
    let base = name.split(':').next().unwrap_or_default();
    base.eq_ignore_ascii_case("_method")
        || super::interaction::NO_CRITERION
            .iter()
            .any(|shaping| base.eq_ignore_ascii_case(shaping))
}

/// Whether `name` is written as a FHIR search parameter (with its modifier or chain, if
/// any): a letter or `_`, then letters, digits, `-`, `_`, `.` and `:`.
fn is_search_parameter_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte))
}

/// What a query value escapes: what the parser would otherwise read differently (`%`, `&`)
/// and whatever is not allowed in an OAuth scope token (RFC 6749 `scope-token`: controls,
/// space, `"`, `\`; non-ASCII is always escaped).
const VALUE_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'\\').add(b'%').add(b'&');

/// What a query name escapes: as a value, and `=`.
const NAME_ESCAPES: &AsciiSet = &VALUE_ESCAPES.add(b'=');

/// Writes a query name or value, escaped (see [`VALUE_ESCAPES`]).
fn write_encoded(f: &mut fmt::Formatter<'_>, text: &str, is_name: bool) -> fmt::Result {
    let escapes = if is_name { NAME_ESCAPES } else { VALUE_ESCAPES };
    write!(f, "{}", utf8_percent_encode(text, escapes))
}

/// Writes the canonical v2 form, e.g. `patient/Observation.rs?category=laboratory`.
impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.context, self.resource, self.permissions)?;
        for (index, (name, value)) in self.query.iter().enumerate() {
            f.write_char(if index == 0 { '?' } else { '&' })?;
            write_encoded(f, name, true)?;
            f.write_char('=')?;
            write_encoded(f, value, false)?;
        }
        Ok(())
    }
}

/// Writes the scope as it would appear in a token; resource scopes use the v2 form.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resource(resource) => resource.fmt(f),
            Self::Launch => f.write_str("launch"),
            Self::LaunchContext(rest) => write!(f, "launch/{rest}"),
            Self::OpenId => f.write_str("openid"),
            Self::FhirUser => f.write_str("fhirUser"),
            Self::Profile => f.write_str("profile"),
            Self::OfflineAccess => f.write_str("offline_access"),
            Self::OnlineAccess => f.write_str("online_access"),
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl ScopeSet {
    /// Parses a space-separated scope string (RFC 6749 3.3).
    ///
    /// Only the space character separates scopes. A token that holds any other character
    /// outside the scope-token set (TAB, CR, LF, FF, VT, NUL, DEL or another control
    /// character, `"`, `\`, non-ASCII) is dropped whole: it is listed in
    /// [`ScopeSet::rejected`] with [`RejectReason::InvalidCharacter`] and grants nothing. So
    /// `"system/Patient.rs\tsystem/*.cruds"` grants nothing at all.
    ///
    /// Each distinct rejected scope is logged once at debug level with its reason, never its
    /// text.
    ///
    /// ```
    /// use smart_auth::scopes::{Interaction, ScopeSet};
    ///
    /// let set = ScopeSet::parse("system/Patient.rs\tsystem/*.cruds  system/Group.r");
    /// assert!(set.permits(Interaction::Read, "Group"));
    /// assert!(!set.permits(Interaction::Read, "Patient"));
    /// assert!(!set.permits(Interaction::Delete, "Observation"));
    /// assert_eq!(set.rejected().len(), 1);
    /// ```
    #[must_use]
    pub fn parse(claim: &str) -> Self {
        split_scope_string(claim).collect()
    }
}

/// Builds a set from an array claim (such as `scp`), where each item is one scope token.
///
/// Empty items are skipped. An item holding a space or any other character outside the
/// scope-token set is not split: it is rejected whole with [`RejectReason::InvalidCharacter`]
/// and grants nothing, as in [`ScopeSet::parse`].
impl<S: AsRef<str>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(items: I) -> Self {
        let mut set = Self::default();
        // Hash sets keep de-duplication linear even for very long claims.
        let mut seen_scopes: HashSet<Scope> = HashSet::new();
        let mut seen_rejected: HashSet<String> = HashSet::new();
        for item in items {
            let raw = item.as_ref();
            if raw.is_empty() {
                continue;
            }
            set.raw.push(raw.to_owned());
            match parse_one(raw) {
                Ok(scope) => {
                    if seen_scopes.insert(scope.clone()) {
                        set.scopes.push(scope);
                    }
                }
                Err(reason) => {
                    if seen_rejected.insert(raw.to_owned()) {
                        // The scope text is token content: log only why it was refused.
                        tracing::debug!(%reason, "ignoring a malformed SMART scope");
                        set.rejected.push(RejectedScope {
                            raw: raw.to_owned(),
                            reason,
                        });
                    }
                }
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds an expected resource scope.
    fn resource(
        context: Context,
        resource: &str,
        permissions: Permissions,
        query: &[(&str, &str)],
        version: ScopeSyntax,
    ) -> Scope {
        Scope::Resource(ResourceScope {
            context,
            resource: ResourceType::parse(resource).expect("valid type in test"),
            permissions,
            query: query
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            version,
        })
    }

    /// The letters as a permission set, for readable tables.
    fn p(letters: &str) -> Permissions {
        Permissions::from_v2_letters(letters).expect("valid letters in test")
    }

    use Context::{Patient, System, User};
    use ScopeSyntax::{V1, V2};

    #[test]
    fn spec_examples_parse() {
        let cases: Vec<(&str, Scope)> = vec![
            // 3.1: v1 syntax, including Bulk Data v1 system scopes.
            ("patient/*.read", resource(Patient, "*", p("rs"), &[], V1)),
            (
                "user/Observation.write",
                resource(User, "Observation", p("cud"), &[], V1),
            ),
            ("user/*.*", resource(User, "*", p("cruds"), &[], V1)),
            (
                "system/Patient.read",
                resource(System, "Patient", p("rs"), &[], V1),
            ),
            ("system/*.read", resource(System, "*", p("rs"), &[], V1)),
            ("system/*.write", resource(System, "*", p("cud"), &[], V1)),
            (
                "system/Observation.*",
                resource(System, "Observation", p("cruds"), &[], V1),
            ),
            // 3.2: v2 syntax.
            (
                "patient/Observation.cu",
                resource(Patient, "Observation", p("cu"), &[], V2),
            ),
            (
                "patient/Observation.rs",
                resource(Patient, "Observation", p("rs"), &[], V2),
            ),
            (
                "patient/Observation.c",
                resource(Patient, "Observation", p("c"), &[], V2),
            ),
            (
                "patient/Observation.r",
                resource(Patient, "Observation", p("r"), &[], V2),
            ),
            (
                "patient/Observation.s",
                resource(Patient, "Observation", p("s"), &[], V2),
            ),
            ("user/*.cruds", resource(User, "*", p("cruds"), &[], V2)),
            ("system/*.cruds", resource(System, "*", p("cruds"), &[], V2)),
            (
                "user/Appointment.rs",
                resource(User, "Appointment", p("rs"), &[], V2),
            ),
            (
                "system/Group.rs",
                resource(System, "Group", p("rs"), &[], V2),
            ),
            // `rd` is an ordered subset of `cruds`: read + delete.
            (
                "patient/Observation.rd",
                resource(Patient, "Observation", p("rd"), &[], V2),
            ),
            // 3.5: granular scope.
            (
                "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                resource(
                    Patient,
                    "Observation",
                    p("rs"),
                    &[(
                        "category",
                        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                    )],
                    V2,
                ),
            ),
            // 3.6: non-resource scopes.
            ("launch", Scope::Launch),
            ("launch/patient", Scope::LaunchContext("patient".into())),
            ("launch/encounter", Scope::LaunchContext("encounter".into())),
            (
                "launch/imagingstudy",
                Scope::LaunchContext("imagingstudy".into()),
            ),
            (
                "launch/patient?role=https://example.org/roles/subject",
                Scope::LaunchContext("patient?role=https://example.org/roles/subject".into()),
            ),
            ("openid", Scope::OpenId),
            ("fhirUser", Scope::FhirUser),
            ("profile", Scope::Profile),
            ("offline_access", Scope::OfflineAccess),
            ("online_access", Scope::OnlineAccess),
            (
                "__profilePhoto.manage",
                Scope::Other("__profilePhoto.manage".into()),
            ),
            (
                "http://smarthealthit.org/fhir/scopes/patient/*.read",
                Scope::Other("http://smarthealthit.org/fhir/scopes/patient/*.read".into()),
            ),
            // Not an attempted resource scope: no context before a `/`.
            ("Observation.read", Scope::Other("Observation.read".into())),
            ("patient", Scope::Other("patient".into())),
            ("OpenID", Scope::Other("OpenID".into())),
            ("fhiruser", Scope::Other("fhiruser".into())),
            // A typo found in a test kit's scope list: `.` instead of `/`. It grants nothing.
            (
                "patient.Observation.rs?category=survey",
                Scope::Other("patient.Observation.rs?category=survey".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Scope>(), Ok(expected), "input {input:?}");
        }
    }

    /// Granular scopes required by ONC g(10) / US Core test kits, including the same
    /// categories under `user/` and `system/`.
    const GRANULAR: &[(&str, &str)] = &[
        (
            "Condition",
            "http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis",
        ),
        (
            "Condition",
            "http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
        ),
        (
            "Condition",
            "http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
        ),
        (
            "Observation",
            "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        ),
        (
            "Observation",
            "http://terminology.hl7.org/CodeSystem/observation-category|social-history",
        ),
        (
            "Observation",
            "http://terminology.hl7.org/CodeSystem/observation-category|survey",
        ),
        (
            "Observation",
            "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        ),
        (
            "Observation",
            "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh",
        ),
        (
            "Observation",
            "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|clinical-test",
        ),
        (
            "Observation",
            "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|treatment-intervention-preference",
        ),
        (
            "Observation",
            "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|care-experience-preference",
        ),
        ("DiagnosticReport", "http://loinc.org|LP7839-6"),
        (
            "DiagnosticReport",
            "http://terminology.hl7.org/CodeSystem/v2-0074|LAB",
        ),
        (
            "ServiceRequest",
            "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|functional-status",
        ),
        ("ServiceRequest", "http://snomed.info/sct|387713003"),
    ];

    #[test]
    fn granular_g10_scopes_parse_and_display_unchanged() {
        for context in Context::ALL {
            for (resource_type, category) in GRANULAR {
                let input = format!("{context}/{resource_type}.rs?category={category}");
                let parsed: Scope = input.parse().expect("granular scope parses");
                assert_eq!(
                    parsed,
                    resource(
                        context,
                        resource_type,
                        p("rs"),
                        &[("category", category)],
                        V2
                    ),
                    "input {input:?}"
                );
                assert_eq!(parsed.to_string(), input);
            }
        }
    }

    #[test]
    fn malformed_scopes_are_rejected() {
        use RejectReason::*;
        let cases = [
            // Permission letters.
            ("patient/Observation.dus", InvalidPermissions),
            ("patient/Observation.sr", InvalidPermissions),
            ("patient/Observation.rr", InvalidPermissions),
            ("patient/Observation.rx", InvalidPermissions),
            ("patient/Observation.x", InvalidPermissions),
            ("patient/Observation.RS", InvalidPermissions),
            ("patient/Observation.Read", InvalidPermissions),
            ("patient/Observation.reads", InvalidPermissions),
            ("patient/Observation.**", InvalidPermissions),
            ("patient/Observation.rs.x", InvalidPermissions),
            ("patient/Observation.$export", InvalidPermissions),
            ("patient/Observation.", EmptyPermissions),
            ("patient/Observation.?category=x", EmptyPermissions),
            ("patient/Observation", MissingPermissions),
            ("patient/*", MissingPermissions),
            // Context.
            ("*/Observation.rs", InvalidContext),
            ("*/*.read", InvalidContext),
            ("Patient/Observation.rs", InvalidContext),
            ("USER/*.read", InvalidContext),
            ("System/*.rs", InvalidContext),
            // Resource type.
            ("patient/observation.rs", InvalidResourceType),
            ("patient/O.rs", InvalidResourceType),
            ("patient/Obs3rvation.rs", InvalidResourceType),
            ("patient/Obs_ervation.rs", InvalidResourceType),
            ("patient/.rs", InvalidResourceType),
            ("patient/", InvalidResourceType),
            ("patient/**.rs", InvalidResourceType),
            ("patient/Observation/123.rs", InvalidResourceType),
            ("patient/Observation/", InvalidResourceType),
            ("patient/Ob$ervation", InvalidResourceType),
            // Query.
            (
                "patient/Observation.read?category=laboratory",
                QueryWithV1Permissions,
            ),
            ("system/*.*?_type=Patient", QueryWithV1Permissions),
            ("patient/Observation.rs?", InvalidQuery),
            ("patient/Observation.rs?category", InvalidQuery),
            ("patient/Observation.rs?=laboratory", InvalidQuery),
            ("patient/Observation.rs?category=", InvalidQuery),
            ("patient/Observation.rs?a=b&", InvalidQuery),
            ("patient/Observation.rs?&a=b", InvalidQuery),
            ("patient/Observation.rs?a=b&&c=d", InvalidQuery),
            ("patient/Observation.rs?a=%7", InvalidQuery),
            ("patient/Observation.rs?a=%", InvalidQuery),
            ("patient/Observation.rs?a=%zz", InvalidQuery),
            ("patient/Observation.rs?a=%+7C", InvalidQuery),
            ("patient/Observation.rs?a%=b", InvalidQuery),
            ("patient/Observation.rs?a=%FF", InvalidQuery),
            ("patient/Observation.rs?a=%C3", InvalidQuery),
            // Launch context.
            ("launch/", InvalidLaunchContext),
            ("launch/Patient", InvalidLaunchContext),
            ("launch/patient/x", InvalidLaunchContext),
            ("launch/patient2", InvalidLaunchContext),
            ("launch/patient?", InvalidLaunchContext),
            ("launch/patient?role=", InvalidLaunchContext),
            ("launch/patient?foo=bar", InvalidLaunchContext),
            ("launch/?role=x", InvalidLaunchContext),
            // FromStr only.
            ("", Empty),
            ("openid profile", InvalidCharacter),
            ("patient/*.rs\n", InvalidCharacter),
            // Query values that decode to control characters.
            ("patient/Observation.rs?category=a%0Ab", InvalidQuery),
            ("patient/Observation.rs?category=%00", InvalidQuery),
            ("patient/Observation.rs?cat%09egory=a", InvalidQuery),
            ("patient/Observation.rs?category=%7F", InvalidQuery),
            ("patient/Observation.rs?category=%C2%85", InvalidQuery),
            // Parameters that select nothing: a search repeating them is the whole type.
            ("patient/Observation.rs?_count=50", InvalidQuery),
            ("patient/Observation.rs?_sort=date", InvalidQuery),
            ("patient/Observation.rs?_SUMMARY=false", InvalidQuery),
            ("patient/Observation.rs?_elements=id", InvalidQuery),
            ("patient/Observation.rs?_format=json", InvalidQuery),
            ("patient/Observation.rs?_total=none", InvalidQuery),
            ("patient/Observation.rs?_type=Observation", InvalidQuery),
            (
                "patient/Observation.rs?_include=Observation:subject",
                InvalidQuery,
            ),
            ("patient/Observation.rs?_method=GET", InvalidQuery),
            ("patient/Observation.rs?category=lab&_count=5", InvalidQuery),
            // Names no server knows, which a lenient server would ignore.
            ("patient/Observation.rs??category=laboratory", InvalidQuery),
            (
                "patient/Observation.rs?%20category=laboratory",
                InvalidQuery,
            ),
            (
                "patient/Observation.rs?category%20=laboratory",
                InvalidQuery,
            ),
            (
                "patient/Observation.rs?cat%3Degory=laboratory",
                InvalidQuery,
            ),
            (
                "patient/Observation.rs?cat%2Fegory=laboratory",
                InvalidQuery,
            ),
            ("patient/Observation.rs?-category=laboratory", InvalidQuery),
            ("patient/Observation.rs?1category=laboratory", InvalidQuery),
            (
                "patient/Observation.rs?cat%C3%A9gory=laboratory",
                InvalidQuery,
            ),
            ("patient/Observation.rs?category[]=laboratory", InvalidQuery),
            ("patient/Observation.rs?categ+ory=laboratory", InvalidQuery),
        ];
        for (input, reason) in cases {
            assert_eq!(
                input.parse::<Scope>(),
                Err(RejectedScope {
                    raw: input.to_owned(),
                    reason
                }),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn percent_decoding() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "category=http://loinc.org%7C1234-5",
                &[("category", "http://loinc.org|1234-5")],
            ),
            (
                "category=http://loinc.org%7c1234-5",
                &[("category", "http://loinc.org|1234-5")],
            ),
            (
                "category=http%3A%2F%2Floinc.org%7C1234-5",
                &[("category", "http://loinc.org|1234-5")],
            ),
            ("code=a%20b", &[("code", "a b")]),
            ("code=a+b", &[("code", "a+b")]),
            ("code=100%25", &[("code", "100%")]),
            ("code=a%26b", &[("code", "a&b")]),
            ("code=a=b", &[("code", "a=b")]),
            ("_tag=x", &[("_tag", "x")]),
            ("value-quantity=5", &[("value-quantity", "5")]),
            ("subject.name=x", &[("subject.name", "x")]),
            ("%63ode=x", &[("code", "x")]),
            ("code=%C3%A9", &[("code", "\u{e9}")]),
            ("code=x?y", &[("code", "x?y")]),
            (
                "code:in=http://vs.example/x",
                &[("code:in", "http://vs.example/x")],
            ),
            (
                "category=a&status=final&category=b",
                &[("category", "a"), ("status", "final"), ("category", "b")],
            ),
        ];
        for (query, expected) in cases {
            let input = format!("user/Observation.rs?{query}");
            assert_eq!(
                input.parse::<Scope>(),
                Ok(resource(User, "Observation", p("rs"), expected, V2)),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn display_is_canonical_v2() {
        let cases = [
            ("patient/*.read", "patient/*.rs"),
            ("user/Observation.write", "user/Observation.cud"),
            ("system/*.*", "system/*.cruds"),
            (
                "user/Observation.rs?code=a%20b",
                "user/Observation.rs?code=a%20b",
            ),
            (
                "user/Observation.rs?code=a%7Cb",
                "user/Observation.rs?code=a|b",
            ),
            (
                "user/Observation.rs?code=a=b",
                "user/Observation.rs?code=a=b",
            ),
            ("user/Observation.rs?%63ode=c", "user/Observation.rs?code=c"),
            (
                "user/Observation.rs?code=a%26b%25",
                "user/Observation.rs?code=a%26b%25",
            ),
            (
                "user/Observation.rs?code=%22%5C",
                "user/Observation.rs?code=%22%5C",
            ),
            (
                "user/Observation.rs?code=%C3%A9",
                "user/Observation.rs?code=%C3%A9",
            ),
            ("launch/patient?role=x", "launch/patient?role=x"),
            ("openid", "openid"),
            ("__x", "__x"),
        ];
        for (input, shown) in cases {
            let scope: Scope = input.parse().expect("valid");
            assert_eq!(scope.to_string(), shown, "input {input:?}");
        }
    }

    #[test]
    fn permissions_letters() {
        assert_eq!(Permissions::V1_READ.to_string(), "rs");
        assert_eq!(Permissions::V1_WRITE.to_string(), "cud");
        assert_eq!(Permissions::ALL.to_string(), "cruds");
        assert_eq!(Permissions::NONE.to_string(), "");
        assert_eq!(format!("{:?}", p("cd")), "Permissions(cd)");
        assert_eq!(Permissions::from_bits(0xFF), Permissions::ALL);
        assert_eq!(p("rs").bits(), 0b1_0010);
        assert!(p("cruds").contains(p("us")));
        assert!(!p("rs").contains(p("rd")));
        assert!(Permissions::NONE.is_empty());
        for invalid in ["", "rr", "sr", "dus", "read", "R", "crudsc", "e"] {
            assert_eq!(Permissions::from_v2_letters(invalid), None, "{invalid:?}");
        }
        // Every non-empty subset, written in order, parses back to itself.
        for bits in 1..=31 {
            let permissions = Permissions::from_bits(bits);
            assert_eq!(
                Permissions::from_v2_letters(&permissions.to_string()),
                Some(permissions)
            );
        }
    }

    #[test]
    fn resource_type_rules() {
        assert_eq!(ResourceType::parse("*"), Some(ResourceType::Any));
        assert_eq!(
            ResourceType::parse("Observation"),
            Some(ResourceType::Named("Observation".into()))
        );
        for invalid in [
            "",
            "O",
            "observation",
            "Obs1",
            "Obs-x",
            "**",
            "Ob servation",
            "\u{c9}t",
        ] {
            assert_eq!(ResourceType::parse(invalid), None, "{invalid:?}");
        }
        let observation = ResourceType::Named("Observation".into());
        assert!(observation.covers("Observation"));
        assert!(!observation.covers("observation"));
        assert!(!observation.covers("*"));
        assert!(ResourceType::Any.covers("*"));
        assert!(ResourceType::Any.covers("Anything"));
    }

    #[test]
    fn scope_set_from_string_and_array() {
        let claim = "  openid fhirUser  patient/*.read patient/Observation.dus patient/*.read \
                     patient/Observation.dus launch/patient ";
        let set = ScopeSet::parse(claim);
        assert_eq!(
            set.raw(),
            [
                "openid",
                "fhirUser",
                "patient/*.read",
                "patient/Observation.dus",
                "patient/*.read",
                "patient/Observation.dus",
                "launch/patient"
            ]
        );
        assert_eq!(
            set.scopes(),
            [
                Scope::OpenId,
                Scope::FhirUser,
                resource(Patient, "*", p("rs"), &[], V1),
                Scope::LaunchContext("patient".into()),
            ]
        );
        assert_eq!(
            set.rejected(),
            [RejectedScope {
                raw: "patient/Observation.dus".into(),
                reason: RejectReason::InvalidPermissions
            }]
        );
        assert_eq!(set.resource_scopes().count(), 1);
        assert!(set.contains(&Scope::OpenId));
        assert!(!set.contains(&Scope::Profile));
        assert!(!set.has_patient_context());
        assert!(set.clone().with_patient_context(true).has_patient_context());

        let from_array: ScopeSet = [
            "openid",
            "fhirUser",
            "patient/*.read",
            "",
            "patient/Observation.dus",
            "patient/*.read",
            "patient/Observation.dus",
            "launch/patient",
        ]
        .into_iter()
        .collect();
        assert_eq!(from_array, set);
        let from_strings = ScopeSet::from_iter(vec![String::from("openid")]);
        assert_eq!(from_strings.scopes(), [Scope::OpenId]);
    }

    #[test]
    fn equivalent_spellings_are_one_scope() {
        let set = ScopeSet::parse("user/Observation.rs?code=a%7Cb user/Observation.rs?code=a|b");
        assert_eq!(set.raw().len(), 2);
        assert_eq!(set.scopes().len(), 1);
        // v1 and v2 spellings stay distinct scopes, since their syntax differs.
        assert_eq!(ScopeSet::parse("user/*.read user/*.rs").scopes().len(), 2);
    }

    #[test]
    fn long_claims_parse() {
        let claim: Vec<String> = (0..20_000)
            .map(|index| format!("user/Observation.rs?code={index} x{index}"))
            .collect();
        let set = ScopeSet::parse(&claim.join(" "));
        assert_eq!(set.scopes().len(), 40_000);
        assert_eq!(set.raw().len(), 40_000);
        // As array items, each holds a space: 20 000 malformed tokens, no scope.
        let set: ScopeSet = claim.iter().collect();
        assert!(set.scopes().is_empty());
        assert_eq!(set.rejected().len(), 20_000);
        // One huge malformed token (1 MB, TAB-separated) is one rejected scope.
        let huge = vec!["system/*.cruds"; 70_000].join("\t");
        let set = ScopeSet::parse(&huge);
        assert!(set.scopes().is_empty());
        assert_eq!(set.rejected().len(), 1);
    }

    /// Characters that are not the space but that some splitters treat as a separator, or that
    /// RFC 6749 excludes from scope tokens.
    const NOT_SEPARATORS: &[&str] = &[
        "\t", "\n", "\r", "\r\n", "\u{b}", "\u{c}", "\0", "\u{1}", "\u{1f}", "\u{7f}", "\u{85}",
        "\u{a0}", "\u{2028}", "\u{3000}", "\u{feff}", "\"", "\\", "\u{e9}",
    ];

    #[test]
    fn only_the_space_separates_scopes() {
        for bad in NOT_SEPARATORS {
            let forms = [
                format!("system/Patient.read{bad}system/*.*"),
                format!("system/*.*{bad}"),
                format!("{bad}system/*.*"),
                format!("patient/*.rs{bad}"),
                format!("system/*.cruds?category=a{bad}b"),
            ];
            for text in &forms {
                let set = ScopeSet::parse(&format!(" {text}  openid "));
                assert_eq!(set.scopes(), [Scope::OpenId], "{text:?}");
                assert_eq!(
                    set.rejected(),
                    [RejectedScope {
                        raw: text.clone(),
                        reason: RejectReason::InvalidCharacter
                    }],
                    "{text:?}"
                );
                assert_eq!(set.resource_scopes().count(), 0, "{text:?}");
                // The same text as one array item, and through `FromStr`.
                let from_array: ScopeSet = [text.as_str(), "openid"].into_iter().collect();
                assert_eq!(from_array.scopes(), [Scope::OpenId], "{text:?}");
                assert_eq!(
                    text.parse::<Scope>().map_err(|rejected| rejected.reason),
                    Err(RejectReason::InvalidCharacter),
                    "{text:?}"
                );
            }
        }
        // Space-only separation, runs of spaces, leading and trailing spaces.
        let set = ScopeSet::parse("   system/Patient.rs    system/Group.r ");
        assert_eq!(set.raw(), ["system/Patient.rs", "system/Group.r"]);
        assert!(set.rejected().is_empty());
    }

    #[test]
    fn scope_token_characters() {
        for byte in 0u8..=0x7F {
            let text = format!("a{}b", char::from(byte));
            let allowed =
                byte == 0x21 || (0x23..=0x5B).contains(&byte) || (0x5D..=0x7E).contains(&byte);
            assert_eq!(is_scope_token(&text), allowed, "byte {byte:#04x}");
        }
        assert!(!is_scope_token(""));
        assert!(!is_scope_token("\u{e9}"));
        assert!(is_scope_token("system/*.cruds"));
    }

    #[test]
    fn hostile_spellings_grant_nothing() {
        let cases = [
            // Percent-encoding outside the query is not decoded.
            "system%2FPatient.rs",
            "system/%50atient.rs",
            "system/Patient.%72s",
            "system/Patient%2Ers",
            "system/%2A.rs",
            // Case of v1 words and v2 letters.
            "system/Patient.READ",
            "system/Patient.Write",
            "system/Patient.WRITE",
            "system/*.ALL",
            "system/Patient.RS",
            // Letters out of order or repeated.
            "system/Patient.sr",
            "system/Patient.rr",
            "system/Patient.cc",
            "system/Patient.srr",
            "system/Patient.crudss",
        ];
        for text in cases {
            let set = ScopeSet::parse(text);
            assert_eq!(set.resource_scopes().count(), 0, "{text}");
        }
    }

    #[test]
    fn empty_claims() {
        for claim in ["", " ", "   "] {
            let set = ScopeSet::parse(claim);
            assert!(set.is_empty());
            assert!(set.scopes().is_empty() && set.rejected().is_empty());
        }
        assert!(ScopeSet::new().is_empty());
        assert!(ScopeSet::from_iter(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn rejected_scope_display_names_no_scope_text() {
        let rejected = "*/Observation.rs".parse::<Scope>().expect_err("rejected");
        assert_eq!(
            rejected.to_string(),
            "malformed SMART scope: invalid context prefix"
        );
    }

    /// Well-formed scopes for the separator property test.
    const PIECES: &[&str] = &[
        "system/Patient.read",
        "system/*.*",
        "patient/*.rs",
        "user/Observation.rs?category=a",
        "openid",
        "launch/patient",
    ];

    /// Separators for the property test: the space, and characters that must not separate.
    const SEPARATORS: &[&str] = &[
        " ", " ", "  ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\0", "\u{7f}", "\u{85}", "\u{a0}",
        "\"", "\\", "\u{2028}",
    ];

    /// Generates valid resource scopes in the v2 syntax.
    fn any_resource_scope() -> impl Strategy<Value = ResourceScope> {
        let context = prop::sample::select(Context::ALL.to_vec());
        let resource = prop_oneof![
            Just(ResourceType::Any),
            "[A-Z][A-Za-z]{1,12}".prop_map(ResourceType::Named),
        ];
        let permissions = (1u8..=31).prop_map(Permissions::from_bits);
        let query = prop::collection::vec(("[A-Za-z_][A-Za-z0-9_.:-]{0,7}", "\\P{Cc}{1,12}"), 0..4);
        (context, resource, permissions, query).prop_map(
            |(context, resource, permissions, query)| ResourceScope {
                context,
                resource,
                permissions,
                query,
                version: ScopeSyntax::V2,
            },
        )
    }

    /// A scope with its version set to V2, which is what its display parses back to.
    fn as_v2(scope: Scope) -> Scope {
        match scope {
            Scope::Resource(mut resource) => {
                resource.version = ScopeSyntax::V2;
                Scope::Resource(resource)
            }
            other => other,
        }
    }

    proptest! {
        // 256 cases, proptest's default, from a seed that a failure prints.
        #![proptest_config(crate::proptest_support::config(256))]

        #[test]
        fn display_then_parse_round_trips(scope in any_resource_scope()) {
            let shown = scope.to_string();
            prop_assert!(!shown.bytes().any(|byte| byte.is_ascii_whitespace()));
            prop_assert_eq!(shown.parse::<Scope>(), Ok(Scope::Resource(scope)));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".*") {
            let set = ScopeSet::parse(&text);
            prop_assert_eq!(set.raw().len(), text.split(' ').filter(|t| !t.is_empty()).count());
            let _ = text.parse::<Scope>();
        }

        /// Whatever surrounds them, only the tokens bounded by spaces (or the ends) count: the
        /// scopes of the claim are exactly those of its well-formed pieces.
        #[test]
        fn hostile_separators_never_add_scopes(
            parts in prop::collection::vec(
                (prop::sample::select(PIECES.to_vec()), prop::sample::select(SEPARATORS.to_vec())),
                0..8,
            )
        ) {
            let text: String = parts.iter().map(|(piece, sep)| format!("{piece}{sep}")).collect();
            let expected: ScopeSet = text
                .split(' ')
                .filter(|token| PIECES.contains(token))
                .collect();
            let set = ScopeSet::parse(&text);
            prop_assert_eq!(set.scopes(), expected.scopes());
            for rejected in set.rejected() {
                prop_assert!(!PIECES.contains(&rejected.raw.as_str()));
            }
        }

        #[test]
        fn parsing_scope_like_text_is_stable(
            text in "(patient|user|system|\\*|Patient|launch)/[A-Za-z*]{0,6}\\.[a-z*]{0,6}(\\?[a-z%0-9A-F=&|:]{0,12})?"
        ) {
            // Whatever parses displays as something that parses back to the same scope.
            if let Ok(scope) = text.parse::<Scope>() {
                let shown = scope.to_string();
                prop_assert_eq!(shown.parse::<Scope>(), Ok(as_v2(scope)));
            }
        }
    }
}
