//! Domain types, parsed once at the HTTP boundary.
//!
//! Everything past a handler takes these types, never raw strings: a
//! `Username` is always valid, a `PageLimit` is always in range. Each parser
//! returns an [`Invalid`] that names the stable error `code` the client sees.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value the client sent that does not parse. `code` is the stable
/// snake_case code of the error body; `message` is for people; `kind`
/// says which status answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
    pub kind: InvalidKind,
}

/// How wrong a value is, which decides its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    /// Well-formed but against a rule (a short password, a long caption): 422.
    Unacceptable,
    /// Not even of the right shape (an id that is not a number): 400.
    Malformed,
    /// A sign-in that cannot succeed, answered as a wrong password: 401.
    WrongCredentials,
}

impl Invalid {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            kind: InvalidKind::Unacceptable,
        }
    }

    fn of_kind(kind: InvalidKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            ..Self::new(code, message)
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Invalid {}

/// Database id of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

/// Database id of a photo. Photo ids grow with time, so they double as the
/// feed's ordering key and pagination cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhotoId(pub i64);

/// Parses a path id: a positive decimal integer that fits in an i64.
/// Anything else (letters, signs, overflow, empty) is `invalid_id`.
pub fn parse_id(raw: &str) -> Result<i64, Invalid> {
    let invalid = || {
        Invalid::of_kind(
            InvalidKind::Malformed,
            "invalid_id",
            "ids are positive integers",
        )
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match raw.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(invalid()),
    }
}

/// A username: 3 to 30 characters from `a-z A-Z 0-9 _ .`, not starting or
/// ending with a dot. Uniqueness is case-insensitive (enforced by storage).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 30;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = |why: &str| Invalid::new("invalid_username", format!("username {why}"));
        let len = raw.chars().count();
        if len < Self::MIN_LEN {
            return Err(invalid("must have at least 3 characters"));
        }
        if len > Self::MAX_LEN {
            return Err(invalid("must have at most 30 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(invalid(
                "may only contain letters a-z, digits, underscores and dots",
            ));
        }
        if raw.starts_with('.') || raw.ends_with('.') {
            return Err(invalid("must not start or end with a dot"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// For values read back from storage, which were parsed on the way in.
    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as typed: 8 to 128 characters, no control characters. The
/// upper bound keeps a single request from buying an expensive hash input.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if len < Self::MIN_LEN {
            return Err(Invalid::new(
                "invalid_password",
                "password must have at least 8 characters",
            ));
        }
        if len > Self::MAX_LEN {
            return Err(Invalid::new(
                "invalid_password",
                "password must have at most 128 characters",
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(Invalid::new(
                "invalid_password",
                "password must not contain control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Login does not apply the registration rules (an old account may
    /// predate them), only a length bound so a huge body cannot buy a hash.
    pub fn for_login(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() || raw.len() > 4 * Self::MAX_LEN {
            return Err(Invalid::of_kind(
                InvalidKind::WrongCredentials,
                "invalid_credentials",
                "wrong username or password",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// An email address, optional at registration. Only a shape check: one `@`,
/// something on both sides, a dot in the domain, no spaces, ≤ 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid::new("invalid_email", "email must look like name@example.com");
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(invalid());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A photo caption: at most 2,200 characters (Instagram's limit), no control
/// characters other than newlines and tabs. Surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Caption(String);

impl Caption {
    pub const MAX_CHARS: usize = 2200;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(Invalid::new(
                "invalid_caption",
                "caption must have at most 2200 characters",
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(Invalid::new(
                "invalid_caption",
                "caption must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn from_trusted(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many items a page holds: 1 to 100, default 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: u32 = 20;
    pub const MAX: u32 = 100;

    pub fn parse(raw: Option<&str>) -> Result<Self, Invalid> {
        let Some(raw) = raw else {
            return Ok(Self(Self::DEFAULT));
        };
        match raw.parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) && !raw.starts_with('+') => Ok(Self(n)),
            _ => Err(Invalid::new(
                "invalid_limit",
                "limit must be an integer from 1 to 100",
            )),
        }
    }

    pub fn new(n: u32) -> Self {
        Self(n.clamp(1, Self::MAX))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A pagination cursor: the id of the last photo of the previous page; the
/// next page holds strictly older photos. Opaque to clients (a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub PhotoId);

impl Cursor {
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, Invalid> {
        match raw {
            None => Ok(None),
            Some(raw) => parse_id(raw)
                .map(|id| Some(Self(PhotoId(id))))
                .map_err(|_| Invalid::new("invalid_cursor", "before must be a cursor from `next`")),
        }
    }

    pub fn encode(self) -> String {
        self.0.0.to_string()
    }
}

/// One page request: strictly older than `before` (if any), at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    pub before: Option<Cursor>,
    pub limit: PageLimit,
}

impl PageQuery {
    pub fn parse(limit: Option<&str>, before: Option<&str>) -> Result<Self, Invalid> {
        Ok(Self {
            limit: PageLimit::parse(limit)?,
            before: Cursor::parse(before)?,
        })
    }

    pub fn first(limit: u32) -> Self {
        Self {
            before: None,
            limit: PageLimit::new(limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames_table() {
        for ok in ["bob", "alice_1", "a.b", "ABC", "x".repeat(30).as_str()] {
            assert!(Username::parse(ok).is_ok(), "{ok:?} should parse");
        }
        for bad in [
            "",
            "ab",
            "has space",
            "émile",
            ".dot",
            "dot.",
            "tab\tname",
            "nul\0name",
            "../etc",
            "x".repeat(31).as_str(),
        ] {
            let err = Username::parse(bad).unwrap_err();
            assert_eq!(err.code, "invalid_username", "{bad:?}");
        }
    }

    #[test]
    fn passwords_table() {
        assert!(Password::parse("correct horse").is_ok());
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"p".repeat(129)).is_err());
        assert!(Password::parse("has\u{7}bell char").is_err());
        assert!(Password::for_login("").is_err());
        assert!(Password::for_login("x").is_ok());
    }

    #[test]
    fn limits_and_cursors_table() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), 20);
        assert_eq!(PageLimit::parse(Some("100")).unwrap().get(), 100);
        for bad in ["0", "-1", "101", "99999999999", "ten", "", "+5", "1.5"] {
            assert_eq!(
                PageLimit::parse(Some(bad)).unwrap_err().code,
                "invalid_limit"
            );
        }
        assert_eq!(
            Cursor::parse(Some("42")).unwrap(),
            Some(Cursor(PhotoId(42)))
        );
        for bad in ["0", "-3", "abc", "9223372036854775808", ""] {
            assert_eq!(Cursor::parse(Some(bad)).unwrap_err().code, "invalid_cursor");
        }
    }

    #[test]
    fn ids_table() {
        assert_eq!(parse_id("1"), Ok(1));
        assert_eq!(parse_id("9223372036854775807"), Ok(i64::MAX));
        for bad in ["0", "-1", "+1", "1e3", "9223372036854775808", "", " 1", "١"] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_table() {
        assert!(Email::parse("a@b.co").is_ok());
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.b", "a@b.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn captions_table() {
        assert_eq!(Caption::parse("  hi \n").unwrap().as_str(), "hi");
        assert!(Caption::parse("line\nbreak").is_ok());
        assert!(Caption::parse("bell\u{7}").is_err());
        assert!(Caption::parse(&"é".repeat(2200)).is_ok());
        assert!(Caption::parse(&"é".repeat(2201)).is_err());
    }

    proptest! {
        #[test]
        fn username_accepts_exactly_the_allowed_alphabet(s in "\\PC{0,40}") {
            let expected = (3..=30).contains(&s.chars().count())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                && !s.starts_with('.') && !s.ends_with('.');
            prop_assert_eq!(Username::parse(&s).is_ok(), expected);
        }

        #[test]
        fn valid_usernames_round_trip(s in "[a-zA-Z0-9_][a-zA-Z0-9_.]{1,28}[a-zA-Z0-9_]") {
            let u = Username::parse(&s).unwrap();
            prop_assert_eq!(u.as_str(), s.as_str());
        }

        #[test]
        fn parse_id_agrees_with_i64(s in "-?[0-9]{0,21}") {
            let expected = s.parse::<i64>().ok().filter(|n| *n > 0 && !s.starts_with('-'));
            prop_assert_eq!(parse_id(&s).ok(), expected);
        }

        #[test]
        fn page_limit_is_always_in_range(s in "\\PC{0,12}") {
            if let Ok(limit) = PageLimit::parse(Some(&s)) {
                prop_assert!((1..=100).contains(&limit.get()));
            }
        }

        #[test]
        fn cursor_round_trips(id in 1i64..) {
            let c = Cursor(PhotoId(id));
            prop_assert_eq!(Cursor::parse(Some(&c.encode())).unwrap(), Some(c));
        }

        #[test]
        fn password_never_panics_and_respects_bounds(s in "\\PC{0,200}") {
            if let Ok(p) = Password::parse(&s) {
                let n = p.expose().chars().count();
                prop_assert!((8..=128).contains(&n));
            }
        }

        #[test]
        fn caption_never_exceeds_limit(s in "\\PC{0,2300}") {
            if let Ok(c) = Caption::parse(&s) {
                prop_assert!(c.as_str().chars().count() <= Caption::MAX_CHARS);
            }
        }
    }
}
