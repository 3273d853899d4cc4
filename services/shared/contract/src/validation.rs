//! Validation errors as ActiveModel reports them:
//! `{"errors":{"<field>":["<message>", ...]}}`, fields in the contract's order, every
//! broken rule of every field at once.

use serde_json::{Map, Value};

/// The fields that can carry errors, in the order the legacy reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Email,
    Password,
    Nickname,
    PhoneNumber,
    ProfileImageUrl,
    CurrentPassword,
}

impl Field {
    /// The parameter name, as in requests and in the errors object.
    pub fn name(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::Password => "password",
            Field::Nickname => "nickname",
            Field::PhoneNumber => "phone_number",
            Field::ProfileImageUrl => "profile_image_url",
            Field::CurrentPassword => "current_password",
        }
    }
}

/// A broken rule. The order of the variants is the order of the messages within a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Blank,
    Invalid,
    NotHttps,
    Taken,
    TooShort(usize),
    TooLong(usize),
}

impl Rule {
    /// ActiveModel's English message.
    pub fn message(self) -> String {
        match self {
            Rule::Blank => "can't be blank".into(),
            Rule::Invalid => "is invalid".into(),
            Rule::NotHttps => "must be an https URL".into(),
            Rule::Taken => "has already been taken".into(),
            Rule::TooShort(n) => format!("is too short (minimum is {n} characters)"),
            Rule::TooLong(n) => format!("is too long (maximum is {n} characters)"),
        }
    }
}

/// The broken rules of a request, kept in the legacy's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Errors {
    items: Vec<(Field, Rule)>,
}

impl Errors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: Field, rule: Rule) {
        if !self.items.contains(&(field, rule)) {
            self.items.push((field, rule));
            self.items.sort();
        }
    }

    /// Records every rule a parse broke, or hands back the parsed value.
    pub fn check<T>(&mut self, field: Field, result: Result<T, Vec<Rule>>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(rules) => {
                for r in rules {
                    self.add(field, r);
                }
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether every broken rule is a uniqueness one (gRPC answers ALREADY_EXISTS then).
    pub fn only_taken(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|(_, r)| *r == Rule::Taken)
    }

    /// (field, message) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, String)> + '_ {
        self.items.iter().map(|(f, r)| (*f, r.message()))
    }

    /// The `errors` object: field name to its messages.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (field, rule) in &self.items {
            let entry = map
                .entry(field.name().to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.push(Value::String(rule.message()));
            }
        }
        let mut root = Map::new();
        root.insert("errors".into(), Value::Object(map));
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_fields_and_rules() {
        let mut e = Errors::new();
        e.add(Field::Nickname, Rule::TooShort(2));
        e.add(Field::Email, Rule::TooLong(255));
        e.add(Field::Email, Rule::Taken);
        e.add(Field::Email, Rule::Invalid);
        assert_eq!(
            serde_json::to_string(&e.to_json()).unwrap(),
            r#"{"errors":{"email":["is invalid","has already been taken","is too long (maximum is 255 characters)"],"nickname":["is too short (minimum is 2 characters)"]}}"#
        );
        assert!(!e.only_taken());
    }
}
