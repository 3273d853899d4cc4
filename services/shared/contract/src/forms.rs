//! The request forms of the contract's endpoints, read from Rails-style parameters the
//! way the legacy controllers read them: `params.require(:user).permit(...)` for member
//! writes, plain `params[:x].to_s` for credentials.

use serde_json::Value;

use crate::errors::ContractError;
use crate::fields::{Email, Nickname, Password, PhoneNumber, ProfileImageUrl};
use crate::params::Params;
use crate::ruby;
use crate::validation::{Errors, Field, Rule};

/// The columns of the legacy `users` table: what `wrap_parameters` copies under `user`.
pub const USER_COLUMNS: &[&str] = &[
    "id",
    "email",
    "password_digest",
    "nickname",
    "phone_number",
    "profile_image_url",
    "deleted_at",
    "created_at",
    "updated_at",
];

/// The most ids a batch lookup reads; the rest are ignored.
pub const BATCH_LOOKUP_LIMIT: usize = 100;

/// A permitted optional attribute: not given, given as null, or given as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Absent,
    Null,
    Text(String),
}

impl Input {
    fn from_param(value: Option<&Value>) -> Self {
        match value {
            None | Some(Value::Array(_) | Value::Object(_)) => Input::Absent,
            Some(Value::Null) => Input::Null,
            Some(v) => ruby::attribute_string(v).map_or(Input::Null, Input::Text),
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Input::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// `params.require(:user)`: the wrapper object, or why there is none.
fn require_user(params: &mut Params) -> Result<&serde_json::Map<String, Value>, ContractError> {
    params.wrap("user", USER_COLUMNS);
    match params.get("user") {
        None | Some(Value::Null) => Err(ContractError::ParamMissing("user")),
        Some(Value::String(s)) if ruby::is_blank(s) => Err(ContractError::ParamMissing("user")),
        Some(Value::Array(a)) if a.is_empty() => Err(ContractError::ParamMissing("user")),
        Some(Value::Object(m)) if m.is_empty() => Err(ContractError::ParamMissing("user")),
        Some(Value::Object(m)) => Ok(m),
        // The legacy calls `permit` on it and crashes.
        Some(_) => Err(ContractError::LegacyCrash("param is not an object: user")),
    }
}

/// A new password parameter: text, absent, or a value the legacy crashes on.
fn password_param(value: Option<&Value>) -> Result<Option<String>, ContractError> {
    match value {
        None | Some(Value::Null | Value::Array(_) | Value::Object(_)) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // `has_secure_password` calls `empty?` on it and crashes.
        Some(_) => Err(ContractError::LegacyCrash("password must be a string")),
    }
}

/// `POST /users`.
#[derive(Debug, Clone)]
pub struct SignUpForm {
    pub email: Option<String>,
    pub password: Option<String>,
    pub nickname: Option<String>,
    pub phone_number: Option<String>,
    pub profile_image_url: Option<String>,
}

/// A sign-up whose every field is valid (uniqueness still to be checked by the store).
#[derive(Debug, Clone)]
pub struct ValidSignUp {
    pub email: Email,
    pub password: Password,
    pub nickname: Nickname,
    pub phone_number: Option<PhoneNumber>,
    pub profile_image_url: Option<ProfileImageUrl>,
}

impl SignUpForm {
    pub fn from_params(params: &mut Params) -> Result<Self, ContractError> {
        let user = require_user(params)?;
        let text = |k: &str| {
            user.get(k)
                .and_then(|v| Input::from_param(Some(v)).text().map(str::to_owned))
        };
        Ok(Self {
            email: text("email"),
            password: password_param(user.get("password"))?,
            nickname: text("nickname"),
            phone_number: text("phone_number"),
            profile_image_url: text("profile_image_url"),
        })
    }

    /// Checks every rule but uniqueness. The errors are returned alongside so that the
    /// caller can add uniqueness errors in their place.
    pub fn validate(&self) -> (Errors, Option<ValidSignUp>) {
        let mut errors = Errors::new();
        let email = errors.check(Field::Email, Email::parse(self.email.as_deref()));
        let password = errors.check(Field::Password, Password::parse(self.password.as_deref()));
        let nickname = errors.check(Field::Nickname, Nickname::parse(self.nickname.as_deref()));
        let phone = self
            .phone_number
            .as_deref()
            .map(|p| errors.check(Field::PhoneNumber, PhoneNumber::parse(p)));
        let url = self
            .profile_image_url
            .as_deref()
            .map(|u| errors.check(Field::ProfileImageUrl, ProfileImageUrl::parse(u)));
        let valid = match (email, password, nickname, phone, url) {
            (Some(email), Some(password), Some(nickname), phone, url)
                if phone.as_ref().is_none_or(Option::is_some)
                    && url.as_ref().is_none_or(Option::is_some) =>
            {
                Some(ValidSignUp {
                    email,
                    password,
                    nickname,
                    phone_number: phone.flatten(),
                    profile_image_url: url.flatten(),
                })
            }
            _ => None,
        };
        (errors, valid)
    }

    /// The normalised email and the phone number, for uniqueness checks even when other
    /// rules fail (the legacy reports every broken rule at once).
    pub fn uniqueness_keys(&self) -> (Option<String>, Option<String>) {
        let email = self
            .email
            .as_deref()
            .map(Email::normalize)
            .filter(|e| !ruby::is_blank(e));
        (email, self.phone_number.clone())
    }
}

/// `PATCH /users/me`: email and password are not changeable here.
#[derive(Debug, Clone)]
pub struct ProfileForm {
    pub nickname: Input,
    pub phone_number: Input,
    pub profile_image_url: Input,
}

/// A validated profile change: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    pub nickname: Option<Nickname>,
    pub phone_number: Option<Option<PhoneNumber>>,
    pub profile_image_url: Option<Option<ProfileImageUrl>>,
}

impl ProfileForm {
    pub fn from_params(params: &mut Params) -> Result<Self, ContractError> {
        let user = require_user(params)?;
        Ok(Self {
            nickname: Input::from_param(user.get("nickname")),
            phone_number: Input::from_param(user.get("phone_number")),
            profile_image_url: Input::from_param(user.get("profile_image_url")),
        })
    }

    /// Checks the given fields (uniqueness of the phone number left to the store).
    pub fn validate(&self) -> Result<ProfileChanges, Errors> {
        let mut errors = Errors::new();
        let mut changes = ProfileChanges::default();
        match &self.nickname {
            Input::Absent => {}
            Input::Null => errors.add(Field::Nickname, Rule::Blank),
            Input::Text(t) => {
                changes.nickname = errors.check(Field::Nickname, Nickname::parse(Some(t)))
            }
        }
        match &self.phone_number {
            Input::Absent => {}
            Input::Null => changes.phone_number = Some(None),
            Input::Text(t) => {
                changes.phone_number = errors
                    .check(Field::PhoneNumber, PhoneNumber::parse(t))
                    .map(Some)
            }
        }
        match &self.profile_image_url {
            Input::Absent => {}
            Input::Null => changes.profile_image_url = Some(None),
            Input::Text(t) => {
                changes.profile_image_url = errors
                    .check(Field::ProfileImageUrl, ProfileImageUrl::parse(t))
                    .map(Some)
            }
        }
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(errors)
        }
    }
}

/// `POST /sessions`: `params[:email].to_s.strip.downcase`, `params[:password].to_s`.
#[derive(Clone)]
pub struct CredentialsForm {
    /// The normalised email, or `None` when it can match no member.
    pub email: Option<String>,
    pub password: Option<String>,
}

impl CredentialsForm {
    pub fn from_params(params: &Params) -> Self {
        Self {
            email: params
                .get("email")
                .map_or(Some(String::new()), ruby::to_s)
                .map(|e| Email::normalize(&e)),
            password: params
                .get("password")
                .map_or(Some(String::new()), ruby::to_s),
        }
    }
}

/// `POST /sessions/refresh`.
pub fn refresh_token_param(params: &Params) -> Option<String> {
    params
        .get("refresh_token")
        .map_or(Some(String::new()), ruby::to_s)
}

/// `PUT /users/me/password`: the current password (`to_s`) and the new one.
#[derive(Clone)]
pub struct PasswordChangeForm {
    pub current_password: Option<String>,
    pub password: Option<String>,
}

impl PasswordChangeForm {
    pub fn from_params(params: &Params) -> Result<Self, ContractError> {
        Ok(Self {
            current_password: params
                .get("current_password")
                .map_or(Some(String::new()), ruby::to_s),
            password: password_param(params.get("password"))?,
        })
    }

    /// The new password's rules.
    pub fn validate_new(&self) -> Result<Password, Errors> {
        let mut errors = Errors::new();
        match errors.check(Field::Password, Password::parse(self.password.as_deref())) {
            Some(p) => Ok(p),
            None => Err(errors),
        }
    }
}

/// `GET /users?ids=1,2,3`: `params.require(:ids).split(",").first(100)`, each id read
/// like ActiveRecord casts it (`String#to_i`). An array (`ids[]=1&ids[]=2`) is taken
/// whole, as ActiveSupport's `Array#split` leaves it; any other kind crashes the legacy.
pub fn batch_ids(params: &Params) -> Result<Vec<i64>, ContractError> {
    let crash = ContractError::LegacyCrash("ids must be a comma-separated string");
    let pieces: Vec<String> = match params.get("ids") {
        None | Some(Value::Null) => return Err(ContractError::ParamMissing("ids")),
        Some(Value::String(s)) if ruby::is_blank(s) => {
            return Err(ContractError::ParamMissing("ids"));
        }
        Some(Value::Array(a)) if a.is_empty() => return Err(ContractError::ParamMissing("ids")),
        Some(Value::String(s)) => {
            let mut parts: Vec<String> = s.split(',').map(str::to_owned).collect();
            // Ruby's `split` drops trailing empty fields.
            while parts.last().is_some_and(String::is_empty) {
                parts.pop();
            }
            parts.truncate(BATCH_LOOKUP_LIMIT);
            parts
        }
        Some(Value::Array(items)) => items.iter().filter_map(ruby::to_s).collect(),
        Some(_) => return Err(crash),
    };
    Ok(pieces
        .iter()
        .map(|p| ruby::to_i(p))
        .filter(|id| *id > 0 && *id <= i64::MAX as i128)
        .map(|id| id as i64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::parse_body;

    fn json(body: &str) -> Params {
        parse_body("POST", Some("application/json"), body.as_bytes()).unwrap()
    }

    #[test]
    fn sign_up_reads_wrapped_and_coerced_params() {
        let f = SignUpForm::from_params(&mut json(
            r#"{"email":"X@Y.Z","nickname":5,"password":"secret123"}"#,
        ))
        .unwrap();
        assert_eq!(f.email.as_deref(), Some("X@Y.Z"));
        assert_eq!(f.nickname.as_deref(), Some("5"));
        assert_eq!(
            f.password, None,
            "password is not a column, so it is not wrapped"
        );
        let (errors, valid) = f.validate();
        assert!(valid.is_none());
        assert_eq!(
            errors.to_json().to_string(),
            r#"{"errors":{"password":["can't be blank"],"nickname":["is too short (minimum is 2 characters)"]}}"#
        );
    }

    #[test]
    fn missing_and_crashing_wrappers() {
        assert!(matches!(
            SignUpForm::from_params(&mut json("{}")),
            Err(ContractError::ParamMissing("user"))
        ));
        assert!(matches!(
            SignUpForm::from_params(&mut json(r#"{"user":{}}"#)),
            Err(ContractError::ParamMissing("user"))
        ));
        assert!(matches!(
            SignUpForm::from_params(&mut json(r#"{"user":"x"}"#)),
            Err(ContractError::LegacyCrash(_))
        ));
        assert!(matches!(
            SignUpForm::from_params(&mut json(r#"{"user":{"password":12345678}}"#)),
            Err(ContractError::LegacyCrash(_))
        ));
    }

    #[test]
    fn profile_inputs() {
        let f = ProfileForm::from_params(&mut json(
            r#"{"user":{"nickname":"ab","phone_number":null,"email":"x"}}"#,
        ))
        .unwrap();
        let c = f.validate().unwrap();
        assert_eq!(c.nickname.unwrap().as_str(), "ab");
        assert_eq!(c.phone_number, Some(None));
        assert_eq!(c.profile_image_url, None);
    }

    #[test]
    fn batch_ids_take_the_first_hundred() {
        let ids: Vec<String> = (1..=150).map(|i| i.to_string()).collect();
        let p = crate::params::parse_query(&format!("ids={}", ids.join(","))).unwrap();
        assert_eq!(batch_ids(&p).unwrap().len(), 100);
        let p = crate::params::parse_query("ids=3,abc,1,2x").unwrap();
        assert_eq!(batch_ids(&p).unwrap(), vec![3, 1, 2]);
        let trailing = format!("ids={}{}", ids.join(","), ",".repeat(50));
        assert_eq!(
            batch_ids(&crate::params::parse_query(&trailing).unwrap())
                .unwrap()
                .len(),
            100
        );
        let p = crate::params::parse_query("ids[a]=1").unwrap();
        assert!(matches!(batch_ids(&p), Err(ContractError::LegacyCrash(_))));
        assert!(batch_ids(&crate::params::parse_query("").unwrap()).is_err());
    }
}
