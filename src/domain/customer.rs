//! A customer's profile (name, email, phone) and the rules it keeps, as the old system kept
//! them: an email of the usual form, a phone of 10 digits; each unique among customers (the
//! database holds uniqueness).
//!
//! A profile is personal data: its `Debug` shows which fields are set, never their values, so
//! that no log line can carry it.

use super::order::is_clean_text;
use super::user_error::{UserError, UserErrorCode};
use std::fmt;

/// The longest name kept.
pub const MAX_NAME_LEN: usize = 100;
/// The longest email address (RFC 5321's limit on a path).
pub const MAX_EMAIL_LEN: usize = 254;
/// Digits in a phone number.
pub const PHONE_DIGITS: usize = 10;

/// A customer's profile; each field may be unknown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |field: &Option<String>| if field.is_some() { "set" } else { "unset" };
        f.debug_struct("Profile")
            .field("name", &shown(&self.name))
            .field("email", &shown(&self.email))
            .field("phone", &shown(&self.phone))
            .finish()
    }
}

impl Profile {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none() && self.phone.is_none()
    }

    /// The profile an identity provider's claims give (`name`, `email`, `phone_number`), each
    /// claim kept only where it passes the rules below (a phone in international form with the
    /// country code 1 is taken as its 10 digits); a claim that does not is left out.
    pub fn from_claims(name: Option<&str>, email: Option<&str>, phone: Option<&str>) -> Profile {
        Profile {
            name: name.and_then(|name| normalize_name(name).ok()),
            email: email.and_then(|email| normalize_email(email).ok()),
            phone: phone.and_then(phone_from_claim),
        }
    }
}

/// A change to a profile as a client asks for it: `None` keeps a field, `Some(None)` clears it.
#[derive(Clone, Default)]
pub struct ProfileChange {
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
}

impl fmt::Debug for ProfileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |field: &Option<Option<String>>| match field {
            None => "kept",
            Some(None) => "cleared",
            Some(Some(_)) => "set",
        };
        f.debug_struct("ProfileChange")
            .field("name", &shown(&self.name))
            .field("email", &shown(&self.email))
            .field("phone", &shown(&self.phone))
            .finish()
    }
}

impl ProfileChange {
    /// The change with each value in its stored form, or every problem with it.
    pub fn validated(self) -> Result<ProfileChange, Vec<UserError>> {
        let mut errors = Vec::new();
        let mut checked =
            |value: Option<Option<String>>, normalize: fn(&str) -> Result<String, UserError>| {
                match value {
                    Some(Some(text)) => match normalize(&text) {
                        Ok(text) => Some(Some(text)),
                        Err(error) => {
                            errors.push(error);
                            None
                        }
                    },
                    other => other,
                }
            };
        let change = ProfileChange {
            name: checked(self.name, normalize_name),
            email: checked(self.email, normalize_email),
            phone: checked(self.phone, normalize_phone),
        };
        if errors.is_empty() {
            Ok(change)
        } else {
            Err(errors)
        }
    }
}

/// A name as stored: trimmed, 1 to [`MAX_NAME_LEN`] characters on one line of clean text.
pub fn normalize_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    let len = name.chars().count();
    if len == 0 || len > MAX_NAME_LEN || name.contains('\n') || !is_clean_text(name) {
        return Err(UserError::new(
            ["name"],
            UserErrorCode::InvalidName,
            format!(
                "name must be 1 to {MAX_NAME_LEN} characters on one line, without control, \
                 zero-width or text-direction characters"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// An email as stored: trimmed, `local@domain` with a dot in the domain, no spaces, at most
/// [`MAX_EMAIL_LEN`] characters. Its case is kept; uniqueness ignores case.
pub fn normalize_email(email: &str) -> Result<String, UserError> {
    let email = email.trim();
    let well_formed = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        })
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'));
    if !well_formed {
        return Err(UserError::new(
            ["email"],
            UserErrorCode::InvalidEmail,
            format!(
                "email must be an address like name@example.com, at most {MAX_EMAIL_LEN} characters"
            ),
        ));
    }
    Ok(email.to_owned())
}

/// A phone as stored: its 10 digits. Spaces, dots, dashes and parentheses between them are
/// allowed and dropped; nothing else is.
pub fn normalize_phone(phone: &str) -> Result<String, UserError> {
    let mut digits = String::with_capacity(PHONE_DIGITS);
    for c in phone.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            _ => return Err(invalid_phone()),
        }
    }
    if digits.len() != PHONE_DIGITS {
        return Err(invalid_phone());
    }
    Ok(digits)
}

fn invalid_phone() -> UserError {
    UserError::new(
        ["phone"],
        UserErrorCode::InvalidPhone,
        format!(
            "phone must be {PHONE_DIGITS} digits (spaces, dots, dashes and parentheses between them are allowed)"
        ),
    )
}

/// The 10 digits of an OIDC `phone_number` claim (E.164, e.g. `+1 555 010 0199`), if it has them.
fn phone_from_claim(phone: &str) -> Option<String> {
    let phone = phone.trim();
    let national = phone
        .strip_prefix("+1")
        .or_else(|| (!phone.starts_with('+')).then_some(phone))?;
    normalize_phone(national).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_of_the_usual_form_are_accepted_and_others_refused() {
        assert_eq!(
            normalize_email("  Ada.Lovelace+oms@example.co.uk ").unwrap(),
            "Ada.Lovelace+oms@example.co.uk"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada@example..com",
            "ada lovelace@example.com",
            "ada@.example.com",
            "<ada@example.com>",
        ] {
            let error = normalize_email(bad).unwrap_err();
            assert_eq!(error.code, UserErrorCode::InvalidEmail, "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(normalize_email(&long).is_err());
    }

    #[test]
    fn a_phone_is_ten_digits_with_only_separators_between() {
        assert_eq!(normalize_phone("(555) 010-0199").unwrap(), "5550100199");
        assert_eq!(normalize_phone("555.010.0199").unwrap(), "5550100199");
        for bad in [
            "555010019",
            "55501001990",
            "+15550100199",
            "555-010-019x",
            "",
        ] {
            let error = normalize_phone(bad).unwrap_err();
            assert_eq!(error.code, UserErrorCode::InvalidPhone, "{bad:?}");
        }
    }

    #[test]
    fn claims_that_break_the_rules_are_left_out_of_the_profile() {
        let profile = Profile::from_claims(
            Some(" Ada Lovelace "),
            Some("not an email"),
            Some("+1 555 010 0199"),
        );
        assert_eq!(profile.name.as_deref(), Some("Ada Lovelace"));
        assert_eq!(profile.email, None);
        assert_eq!(profile.phone.as_deref(), Some("5550100199"));
        // A number of another country has no 10-digit national form here.
        assert_eq!(
            Profile::from_claims(None, None, Some("+44 20 7946 0958")).phone,
            None
        );
    }

    #[test]
    fn a_profile_never_shows_its_values_when_debugged() {
        let profile = Profile {
            name: Some("Ada Lovelace".into()),
            email: Some("ada@example.com".into()),
            phone: None,
        };
        let shown = format!("{profile:?}");
        assert!(
            !shown.contains("Ada") && !shown.contains("example"),
            "{shown}"
        );
        assert!(shown.contains("unset"), "{shown}");
    }

    #[test]
    fn a_change_names_every_field_at_fault() {
        let errors = ProfileChange {
            name: Some(Some(" ".into())),
            email: Some(Some("ada".into())),
            phone: Some(None),
        }
        .validated()
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.clone().unwrap()).collect();
        assert_eq!(fields, [["name"], ["email"]]);
    }
}
