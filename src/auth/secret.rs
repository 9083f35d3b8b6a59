//! HS256 tokens with a shared secret: for development and simple setups, and the tokens
//! `oms token` prints.
//!
//! Claims written: `sub` (the user id), `role` (`customer` or `staff`), `exp` and `iat`.

use super::{
    header_of, refusal, unix_now, AuthError, Role, DEFAULT_CLOCK_SKEW_SECS, MAX_CLOCK_SKEW_SECS,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The secret used only in local-development mode; never accepted otherwise.
pub const DEV_SECRET: &str = "oms-local-development-secret-never-use-in-production";
/// A shorter secret is refused: HS256 wants at least 256 bits of key.
pub const MIN_SECRET_LEN: usize = 32;

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
        validation.set_required_spec_claims(&["exp"]);
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
        self.issue_with_claims(sub, role, ttl, &[])
    }

    /// A token for `sub` with `role`, valid for `ttl` from now, with more string claims (e.g.
    /// the profile claims `name`, `email`, `phone_number`).
    pub fn issue_with_claims(
        &self,
        sub: &str,
        role: Role,
        ttl: Duration,
        more: &[(&str, &str)],
    ) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: sub.to_owned(),
            role,
            exp: now + ttl.as_secs(),
            nbf: None,
            iat: Some(now),
        };
        let mut claims = serde_json::to_value(claims).expect("claims serialize");
        for (name, value) in more {
            claims[*name] = serde_json::Value::from(*value);
        }
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// Sets `audience` as the only accepted `aud`.
    pub fn with_audience(mut self, audience: &[String]) -> Self {
        if !audience.is_empty() {
            self.validation.set_audience(audience);
        }
        self
    }

    /// The clock skew allowed after `exp`, in seconds.
    pub fn leeway(&self) -> u64 {
        self.validation.leeway
    }

    /// The claims of a bare token (no `Bearer ` prefix) signed with this secret.
    pub fn verify_claims(&self, token: &str) -> Result<serde_json::Value, AuthError> {
        if header_of(token)?.alg != Algorithm::HS256 {
            return Err(AuthError::Invalid("only HS256 tokens are accepted".into()));
        }
        jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| refusal(&error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Authenticator, Viewer};

    const SECRET: &[u8] = b"a-test-secret-that-is-long-enough-0123";

    fn verify(keys: &TokenKeys, token: &str) -> Result<Viewer, AuthError> {
        let authenticator = Authenticator::with_secret(keys.clone());
        futures_util::FutureExt::now_or_never(authenticator.verify(token))
            .expect("a secret verifies without waiting")
    }

    #[test]
    fn an_issued_token_verifies_to_its_viewer() {
        let keys = TokenKeys::new(SECRET);
        let token = keys.issue("alice", Role::Customer, Duration::from_secs(60));
        let viewer = verify(&keys, &token).unwrap();
        assert_eq!(viewer.user_id, "alice");
        assert_eq!(viewer.role, Role::Customer);
        // Accepted until its expiry plus the allowed clock skew.
        let skew = DEFAULT_CLOCK_SKEW_SECS;
        assert!(viewer.expires_at > unix_now() + 50 + skew);
        assert!(viewer.expires_at <= unix_now() + 60 + skew);
        let staff = keys.issue("sam", Role::Staff, Duration::from_secs(60));
        assert_eq!(verify(&keys, &staff).unwrap().role, Role::Staff);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = TokenKeys::new(b"another-secret-that-is-long-enough-xyz").issue(
            "mallory",
            Role::Staff,
            Duration::from_secs(60),
        );
        assert!(matches!(
            verify(&TokenKeys::new(SECRET), &token),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"sub":"mallory","role":"staff","exp":9999999999} . (empty)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5Iiwicm9sZSI6InN0YWZmIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(
            verify(&TokenKeys::new(SECRET), token),
            Err(AuthError::Invalid("not a well-formed JWT".into()))
        );
    }

    fn token_with(claims: serde_json::Value) -> String {
        let key = EncodingKey::from_secret(SECRET).unwrap();
        jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let token = token_with(
            serde_json::json!({"sub": "alice", "role": "staff", "exp": unix_now() - 3600}),
        );
        assert_eq!(
            verify(&TokenKeys::new(SECRET), &token),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn tokens_not_yet_valid_or_without_a_subject_or_expiry_are_refused() {
        let keys = TokenKeys::new(SECRET);
        let exp = unix_now() + 600;
        let not_yet = token_with(
            serde_json::json!({"sub": "alice", "role": "customer", "exp": exp, "nbf": exp - 60}),
        );
        assert_eq!(verify(&keys, &not_yet), Err(AuthError::NotYetValid));
        let no_sub = token_with(serde_json::json!({"role": "customer", "exp": exp}));
        assert!(matches!(verify(&keys, &no_sub), Err(AuthError::Invalid(_))));
        let empty_sub = token_with(serde_json::json!({"sub": " ", "role": "customer", "exp": exp}));
        assert!(matches!(
            verify(&keys, &empty_sub),
            Err(AuthError::Invalid(_))
        ));
        let no_exp = token_with(serde_json::json!({"sub": "alice", "role": "staff"}));
        assert_eq!(
            verify(&keys, &no_exp),
            Err(AuthError::Invalid("it has no `exp` claim".into()))
        );
    }

    #[test]
    fn a_token_for_another_audience_is_refused_when_an_audience_is_set() {
        let keys = TokenKeys::new(SECRET).with_audience(&["oms".to_owned()]);
        let exp = unix_now() + 600;
        let other = token_with(serde_json::json!({"sub": "alice", "aud": "billing", "exp": exp}));
        assert!(matches!(
            verify(&keys, &other),
            Err(AuthError::Invalid(message)) if message.contains("audience")
        ));
        let ours = token_with(serde_json::json!({"sub": "alice", "aud": "oms", "exp": exp}));
        assert!(verify(&keys, &ours).is_ok());
    }

    #[test]
    fn a_token_expired_within_the_clock_skew_is_accepted_until_the_skew_runs_out() {
        let keys = TokenKeys::new(SECRET).with_clock_skew(30);
        let exp = unix_now() - 10;
        let token = token_with(serde_json::json!({"sub": "alice", "role": "customer", "exp": exp}));
        let viewer = verify(&keys, &token).unwrap();
        assert_eq!(viewer.expires_at, exp + 30);
        assert!(!viewer.has_expired());
        assert_eq!(
            verify(&TokenKeys::new(SECRET).with_clock_skew(0), &token),
            Err(AuthError::Expired)
        );
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
        assert_eq!(
            verify(&keys, &hs512),
            Err(AuthError::Invalid("only HS256 tokens are accepted".into()))
        );
    }
}
