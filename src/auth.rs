//! Who is asking: bearer JWTs (HS256) turned into a [`Viewer`], and what each role may see.
//!
//! Claims: `sub` (the user id), `role` (`customer` or `staff`), `exp` (and optionally `nbf`, `iat`).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The secret used only in local-development mode; never accepted otherwise.
pub const DEV_SECRET: &str = "oms-local-development-secret-never-use-in-production";
/// A shorter secret is refused: HS256 wants at least 256 bits of key.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(
    Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize, clap::ValueEnum, async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Places orders; reads, subscribes to and cancels their own orders only.
    Customer,
    /// Reads and subscribes to everything, sets any allowed status, manages inventory.
    Staff,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Staff => "staff",
        }
    }
}

/// The authenticated caller of a request or WebSocket connection.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Viewer {
    pub user_id: String,
    pub role: Role,
    /// When this server stops accepting the token (seconds since the Unix epoch): its `exp` plus
    /// the allowed clock skew. Nothing runs for the viewer from then on, and a WebSocket is
    /// closed then.
    pub expires_at: u64,
}

impl Viewer {
    pub fn is_staff(&self) -> bool {
        self.role == Role::Staff
    }

    /// Whether the token behind this viewer is no longer accepted.
    pub fn has_expired(&self) -> bool {
        unix_now() >= self.expires_at
    }

    /// Whether this viewer may see an order owned by `owner`.
    pub fn may_see_order_of(&self, owner: &str) -> bool {
        self.is_staff() || self.user_id == owner
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

#[derive(Debug, thiserror::Error, Eq, PartialEq)]
pub enum AuthError {
    #[error("the Authorization value must be `Bearer <token>`")]
    MalformedHeader,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

/// Clock skew allowed between the token's issuer and this server unless configured.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 5;
/// The most clock skew that may be configured.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Signs and checks tokens with one HS256 secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenKeys {
    /// Keys for `secret`, which must not be empty (configured secrets are at least
    /// [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &[u8]) -> Self {
        const NON_EMPTY: &str = "HMAC secrets are never empty";
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_nbf = true;
        validation.leeway = DEFAULT_CLOCK_SKEW_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret).expect(NON_EMPTY),
            decoding: DecodingKey::from_secret(secret).expect(NON_EMPTY),
            validation,
        }
    }

    /// Accepts `exp` and `nbf` up to `seconds` off this server's clock (at most
    /// [`MAX_CLOCK_SKEW_SECS`]).
    pub fn with_clock_skew(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds.min(MAX_CLOCK_SKEW_SECS);
        self
    }

    /// A token for `sub` with `role`, valid for `ttl` from now.
    pub fn issue(&self, sub: &str, role: Role, ttl: Duration) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            exp: now + ttl.as_secs(),
            nbf: None,
            iat: Some(now),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// Checks a bare token (no `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Result<Viewer, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => {
                    AuthError::Invalid("only HS256 tokens are accepted".into())
                }
                ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => {
                    AuthError::Invalid("claims must be sub, role (customer|staff) and exp".into())
                }
                _ => AuthError::Invalid("not a well-formed JWT".into()),
            })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() || claims.sub.len() > 200 {
            return Err(AuthError::Invalid("sub must be 1 to 200 characters".into()));
        }
        Ok(Viewer {
            user_id: claims.sub,
            role: claims.role,
            expires_at: claims.exp.saturating_add(self.validation.leeway),
        })
    }

    /// Checks an `Authorization` value: `Bearer <token>` (the scheme is case-insensitive).
    pub fn verify_authorization(&self, value: &str) -> Result<Viewer, AuthError> {
        let (scheme, token) = value
            .trim()
            .split_once(' ')
            .ok_or(AuthError::MalformedHeader)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        self.verify(token.trim())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-test-secret-that-is-long-enough-0123";

    #[test]
    fn an_issued_token_verifies_to_its_viewer() {
        let keys = TokenKeys::new(SECRET);
        let token = keys.issue("alice", Role::Customer, Duration::from_secs(60));
        let viewer = keys
            .verify_authorization(&format!("Bearer {token}"))
            .unwrap();
        assert_eq!(viewer.user_id, "alice");
        assert_eq!(viewer.role, Role::Customer);
        // Accepted until its expiry plus the allowed clock skew.
        let skew = DEFAULT_CLOCK_SKEW_SECS;
        assert!(viewer.expires_at > unix_now() + 50 + skew);
        assert!(viewer.expires_at <= unix_now() + 60 + skew);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = TokenKeys::new(b"another-secret-that-is-long-enough-xyz").issue(
            "mallory",
            Role::Staff,
            Duration::from_secs(60),
        );
        assert!(matches!(
            TokenKeys::new(SECRET).verify(&token),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"sub":"mallory","role":"staff","exp":9999999999} . (empty)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5Iiwicm9sZSI6InN0YWZmIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(TokenKeys::new(SECRET).verify(token).is_err());
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let keys = TokenKeys::new(SECRET);
        let claims = Claims {
            sub: "alice".into(),
            role: Role::Customer,
            exp: unix_now() - 3600,
            nbf: None,
            iat: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&token), Err(AuthError::Expired));
    }

    fn token_with(claims: serde_json::Value) -> String {
        let key = EncodingKey::from_secret(SECRET).unwrap();
        jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
    }

    #[test]
    fn tokens_not_yet_valid_without_a_subject_or_with_an_unknown_role_are_refused() {
        let keys = TokenKeys::new(SECRET);
        let exp = unix_now() + 600;
        let not_yet = token_with(
            serde_json::json!({"sub": "alice", "role": "customer", "exp": exp, "nbf": exp - 60}),
        );
        assert_eq!(keys.verify(&not_yet), Err(AuthError::NotYetValid));
        let no_sub = token_with(serde_json::json!({"role": "customer", "exp": exp}));
        assert!(matches!(keys.verify(&no_sub), Err(AuthError::Invalid(_))));
        let empty_sub = token_with(serde_json::json!({"sub": " ", "role": "customer", "exp": exp}));
        assert!(matches!(
            keys.verify(&empty_sub),
            Err(AuthError::Invalid(_))
        ));
        let admin = token_with(serde_json::json!({"sub": "alice", "role": "admin", "exp": exp}));
        assert!(matches!(keys.verify(&admin), Err(AuthError::Invalid(_))));
        let no_exp = token_with(serde_json::json!({"sub": "alice", "role": "staff"}));
        assert!(matches!(keys.verify(&no_exp), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn a_token_expired_within_the_clock_skew_is_accepted_until_the_skew_runs_out() {
        let keys = TokenKeys::new(SECRET).with_clock_skew(30);
        let exp = unix_now() - 10;
        let token = token_with(serde_json::json!({"sub": "alice", "role": "customer", "exp": exp}));
        let viewer = keys.verify(&token).unwrap();
        assert_eq!(viewer.expires_at, exp + 30);
        assert!(!viewer.has_expired());
        assert_eq!(
            TokenKeys::new(SECRET).with_clock_skew(0).verify(&token),
            Err(AuthError::Expired)
        );
        let past_skew = Viewer {
            expires_at: unix_now(),
            ..viewer
        };
        assert!(past_skew.has_expired());
    }

    #[test]
    fn a_token_signed_with_another_algorithm_is_refused() {
        let keys = TokenKeys::new(SECRET);
        let claims = serde_json::json!({"sub": "alice", "role": "staff", "exp": unix_now() + 600});
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert!(matches!(keys.verify(&hs512), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn a_header_without_the_bearer_scheme_is_malformed() {
        let keys = TokenKeys::new(SECRET);
        assert_eq!(
            keys.verify_authorization("Token abc"),
            Err(AuthError::MalformedHeader)
        );
        assert_eq!(
            keys.verify_authorization("Bearer"),
            Err(AuthError::MalformedHeader)
        );
    }
}
