//! The member's fields as domain values: each has a parsing constructor that applies the
//! contract's normalisation and rules, so an invalid value cannot exist past the edge.
//! Uniqueness is not a property of a value; the store checks it.

use std::sync::LazyLock;

use regex::Regex;

use crate::ruby;
use crate::validation::Rule;

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    // URI::MailTo::EMAIL_REGEXP, ASCII only as in Ruby.
    Regex::new(
        r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$",
    )
    .expect("email pattern compiles")
});

static PHONE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{7,14}$").expect("phone pattern compiles"));

/// Lengths count characters, as Ruby's `String#length` does.
fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A member's email: stripped, lowercased, `URI::MailTo::EMAIL_REGEXP`, at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The normalised form that the legacy stores and looks up: `strip.downcase`.
    pub fn normalize(raw: &str) -> String {
        ruby::strip(raw).to_lowercase()
    }

    /// Normalises and checks; the broken rules in the contract's order.
    pub fn parse(raw: Option<&str>) -> Result<Self, Vec<Rule>> {
        let value = Self::normalize(raw.unwrap_or(""));
        if ruby::is_blank(&value) {
            return Err(vec![Rule::Blank]);
        }
        let mut broken = Vec::new();
        if !EMAIL_RE.is_match(&value) {
            broken.push(Rule::Invalid);
        }
        if chars(&value) > 255 {
            broken.push(Rule::TooLong(255));
        }
        if broken.is_empty() {
            Ok(Self(value))
        } else {
            Err(broken)
        }
    }

    /// An email already stored (trusted, not re-validated).
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A nickname: present (not only whitespace), 2 to 20 characters, kept as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    pub fn parse(raw: Option<&str>) -> Result<Self, Vec<Rule>> {
        let Some(value) = raw.filter(|v| !ruby::is_blank(v)) else {
            return Err(vec![Rule::Blank]);
        };
        match chars(value) {
            n if n < 2 => Err(vec![Rule::TooShort(2)]),
            n if n > 20 => Err(vec![Rule::TooLong(20)]),
            _ => Ok(Self(value.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A new password: not empty, 8 to 72 characters (characters, not bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn parse(raw: Option<&str>) -> Result<Self, Vec<Rule>> {
        let Some(value) = raw.filter(|v| !v.is_empty()) else {
            return Err(vec![Rule::Blank]);
        };
        match chars(value) {
            n if n < 8 => Err(vec![Rule::TooShort(8)]),
            n if n > 72 => Err(vec![Rule::TooLong(72)]),
            _ => Ok(Self(value.to_owned())),
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An E.164 phone number (`+` and 8 to 15 digits), nothing stripped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, Vec<Rule>> {
        if PHONE_RE.is_match(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(vec![Rule::Invalid])
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A profile image URL: starts with `https://`, at most 2048 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileImageUrl(String);

impl ProfileImageUrl {
    pub fn parse(raw: &str) -> Result<Self, Vec<Rule>> {
        let mut broken = Vec::new();
        if !raw.starts_with("https://") {
            broken.push(Rule::NotHttps);
        }
        if chars(raw) > 2048 {
            broken.push(Rule::TooLong(2048));
        }
        if broken.is_empty() {
            Ok(Self(raw.to_owned()))
        } else {
            Err(broken)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_rules() {
        assert_eq!(
            Email::parse(Some("  Bob@Example.COM ")).unwrap().as_str(),
            "bob@example.com"
        );
        assert_eq!(Email::parse(Some("a@b")).unwrap().as_str(), "a@b");
        assert_eq!(Email::parse(Some("   ")), Err(vec![Rule::Blank]));
        assert_eq!(Email::parse(None), Err(vec![Rule::Blank]));
        assert_eq!(Email::parse(Some("명@b.c")), Err(vec![Rule::Invalid]));
        let long = format!("{}@b.c", "a".repeat(260));
        assert_eq!(Email::parse(Some(&long)), Err(vec![Rule::TooLong(255)]));
        let long_bad = format!("{}@@b.c", "a".repeat(260));
        assert_eq!(
            Email::parse(Some(&long_bad)),
            Err(vec![Rule::Invalid, Rule::TooLong(255)])
        );
    }

    #[test]
    fn nickname_rules() {
        assert_eq!(Nickname::parse(Some(" a ")).unwrap().as_str(), " a ");
        assert_eq!(Nickname::parse(Some("당근")).unwrap().as_str(), "당근");
        assert_eq!(Nickname::parse(Some("   ")), Err(vec![Rule::Blank]));
        assert_eq!(Nickname::parse(Some("a")), Err(vec![Rule::TooShort(2)]));
        assert_eq!(
            Nickname::parse(Some(&"a".repeat(21))),
            Err(vec![Rule::TooLong(20)])
        );
    }

    #[test]
    fn password_rules() {
        assert!(Password::parse(Some("        ")).is_ok());
        assert!(Password::parse(Some(&"가".repeat(30))).is_ok());
        assert_eq!(Password::parse(Some("")), Err(vec![Rule::Blank]));
        assert_eq!(Password::parse(Some("short")), Err(vec![Rule::TooShort(8)]));
        assert!(Password::parse(Some(&"a".repeat(72))).is_ok());
        assert_eq!(
            Password::parse(Some(&"a".repeat(73))),
            Err(vec![Rule::TooLong(72)])
        );
    }

    #[test]
    fn phone_and_url_rules() {
        assert!(PhoneNumber::parse("+821012345678").is_ok());
        assert!(PhoneNumber::parse(" +821012345678").is_err());
        assert!(PhoneNumber::parse("").is_err());
        assert!(PhoneNumber::parse("+0123456789").is_err());
        assert!(PhoneNumber::parse("+१२३४५६७८९").is_err());
        assert!(ProfileImageUrl::parse("https://x").is_ok());
        assert_eq!(ProfileImageUrl::parse(""), Err(vec![Rule::NotHttps]));
        let long = format!("http://{}", "a".repeat(2050));
        assert_eq!(
            ProfileImageUrl::parse(&long),
            Err(vec![Rule::NotHttps, Rule::TooLong(2048)])
        );
    }
}
