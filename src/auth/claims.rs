//! Which claims of a verified token name the user and say whether they are staff.
//!
//! Identity providers put roles in different places: `role` (oms's own tokens),
//! `realm_access.roles` (Keycloak), a namespaced `https://example.com/roles` (Auth0),
//! `cognito:groups` (Cognito), `roles` (Entra ID). A claim path is first looked up as one
//! top-level name (so names with dots work), then as dot-separated steps into nested objects.

use super::{AuthError, Role, Viewer};
use crate::domain::customer::Profile;
use serde_json::Value;

/// The longest user id accepted.
const MAX_USER_ID_LEN: usize = 200;

#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClaimMapping {
    user_claim: String,
    role_claim: String,
    staff_roles: Vec<String>,
}

impl Default for ClaimMapping {
    /// `sub` names the user; `role` is `staff` for staff.
    fn default() -> Self {
        ClaimMapping {
            user_claim: "sub".into(),
            role_claim: "role".into(),
            staff_roles: vec!["staff".into()],
        }
    }
}

impl ClaimMapping {
    /// The user id is at `user_claim`; a viewer is staff when the value at `role_claim` (a string
    /// or a list of strings) holds any of `staff_roles`, and a customer otherwise.
    pub fn new(
        user_claim: &str,
        role_claim: &str,
        staff_roles: Vec<String>,
    ) -> Result<Self, String> {
        let staff_roles: Vec<String> = staff_roles
            .into_iter()
            .map(|role| role.trim().to_owned())
            .filter(|role| !role.is_empty())
            .collect();
        if user_claim.trim().is_empty() || role_claim.trim().is_empty() {
            return Err("JWT_USER_CLAIM and JWT_ROLE_CLAIM must not be empty".into());
        }
        if staff_roles.is_empty() {
            return Err("JWT_STAFF_ROLES must name at least one role".into());
        }
        Ok(ClaimMapping {
            user_claim: user_claim.trim().to_owned(),
            role_claim: role_claim.trim().to_owned(),
            staff_roles,
        })
    }

    /// The viewer of verified `claims`; `leeway` is the clock skew allowed after `exp`.
    pub fn viewer(&self, claims: &Value, leeway: u64) -> Result<Viewer, AuthError> {
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| AuthError::Invalid("it has no numeric `exp` claim".into()))?;
        let user_id = match claim_at(claims, &self.user_claim) {
            Some(Value::String(id)) => id.trim().to_owned(),
            Some(Value::Number(id)) => id.to_string(),
            _ => String::new(),
        };
        if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
            return Err(AuthError::Invalid(format!(
                "its `{}` claim must name the user in 1 to {MAX_USER_ID_LEN} characters",
                self.user_claim
            )));
        }
        let roles: Vec<&str> = match claim_at(claims, &self.role_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(role)) => vec![role.as_str()],
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(AuthError::Invalid(format!(
                    "its `{}` claim must be a role or a list of roles",
                    self.role_claim
                )))
            }
        };
        let is_staff = roles
            .iter()
            .any(|role| self.staff_roles.iter().any(|staff| staff == role));
        Ok(Viewer {
            user_id,
            role: if is_staff {
                Role::Staff
            } else {
                Role::Customer
            },
            expires_at: exp.saturating_add(leeway),
            profile: Profile::from_claims(
                claims.get("name").and_then(Value::as_str),
                claims.get("email").and_then(Value::as_str),
                claims.get("phone_number").and_then(Value::as_str),
            ),
        })
    }
}

/// The value at `path`: a top-level name first, then dot-separated steps.
fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    claims.get(path).or_else(|| {
        path.split('.')
            .try_fold(claims, |value, step| value.get(step))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(role_claim: &str, staff: &[&str]) -> ClaimMapping {
        ClaimMapping::new(
            "sub",
            role_claim,
            staff.iter().map(|role| role.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn oms_tokens_name_the_role_in_role() {
        let claims = json!({"sub": "alice", "role": "staff", "exp": 100});
        let viewer = ClaimMapping::default().viewer(&claims, 5).unwrap();
        assert_eq!(viewer.user_id, "alice");
        assert_eq!(viewer.role, Role::Staff);
        assert_eq!(viewer.expires_at, 105);
        let customer = json!({"sub": "bob", "role": "customer", "exp": 100});
        let viewer = ClaimMapping::default().viewer(&customer, 0).unwrap();
        assert_eq!(viewer.role, Role::Customer);
    }

    #[test]
    fn keycloak_realm_roles_are_read_through_a_nested_path() {
        let claims = json!({"sub": "u1", "exp": 1,
            "realm_access": {"roles": ["offline_access", "oms-staff"]}});
        let viewer = mapping("realm_access.roles", &["oms-staff"])
            .viewer(&claims, 0)
            .unwrap();
        assert_eq!(viewer.role, Role::Staff);
    }

    #[test]
    fn an_auth0_namespaced_claim_with_dots_is_read_as_one_name() {
        let claims = json!({"sub": "auth0|42", "exp": 1,
            "https://example.com/roles": ["admin"]});
        let viewer = mapping("https://example.com/roles", &["admin"])
            .viewer(&claims, 0)
            .unwrap();
        assert_eq!(viewer.user_id, "auth0|42");
        assert_eq!(viewer.role, Role::Staff);
    }

    #[test]
    fn cognito_groups_without_a_staff_group_make_a_customer() {
        let claims = json!({"sub": "c1", "exp": 1, "cognito:groups": ["buyers"]});
        let viewer = mapping("cognito:groups", &["staff", "ops"])
            .viewer(&claims, 0)
            .unwrap();
        assert_eq!(viewer.role, Role::Customer);
    }

    #[test]
    fn a_token_without_a_role_claim_or_with_an_unknown_role_is_a_customer() {
        let none = json!({"sub": "alice", "exp": 1});
        assert_eq!(
            ClaimMapping::default().viewer(&none, 0).unwrap().role,
            Role::Customer
        );
        let admin = json!({"sub": "alice", "exp": 1, "role": "admin"});
        assert_eq!(
            ClaimMapping::default().viewer(&admin, 0).unwrap().role,
            Role::Customer
        );
    }

    #[test]
    fn a_role_claim_of_another_shape_is_refused() {
        let claims = json!({"sub": "alice", "exp": 1, "role": {"staff": true}});
        assert!(matches!(
            ClaimMapping::default().viewer(&claims, 0),
            Err(AuthError::Invalid(message)) if message.contains("`role` claim")
        ));
    }

    #[test]
    fn the_user_id_comes_from_the_configured_claim_and_must_be_usable() {
        let mapping = ClaimMapping::new("email", "role", vec!["staff".into()]).unwrap();
        let claims = json!({"sub": "x", "email": "a@example.com", "exp": 1});
        assert_eq!(mapping.viewer(&claims, 0).unwrap().user_id, "a@example.com");
        for bad in [
            json!({"exp": 1}),
            json!({"email": " ", "exp": 1}),
            json!({"email": "a".repeat(201), "exp": 1}),
            json!({"email": ["a"], "exp": 1}),
        ] {
            assert!(
                matches!(
                    mapping.viewer(&bad, 0),
                    Err(AuthError::Invalid(message)) if message.contains("`email` claim")
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_mapping_needs_claims_and_at_least_one_staff_role() {
        assert!(ClaimMapping::new("sub", "role", vec![" ".into()]).is_err());
        assert!(ClaimMapping::new("", "role", vec!["staff".into()]).is_err());
        assert!(ClaimMapping::new("sub", " ", vec!["staff".into()]).is_err());
    }
}
