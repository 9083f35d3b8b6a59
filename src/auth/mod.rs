//! Who is asking: a bearer JWT turned into a [`Viewer`], and what each role may see.
//!
//! Tokens are checked one of two ways: HS256 with a shared secret ([`TokenKeys`], for development
//! and simple setups), or RS256/ES256 and the other public-key algorithms against an identity
//! provider's published keys ([`IdentityProvider`]: a JWKS, found directly or by OIDC
//! discovery). Either way, [`ClaimMapping`] says which claims name the user and their role.

mod claims;
mod provider;
mod secret;

pub use crate::domain::role::Role;
pub use claims::ClaimMapping;
pub use provider::{IdentityProvider, ProviderConfig};
pub use secret::{TokenKeys, DEV_SECRET, MIN_SECRET_LEN};

use crate::domain::customer::Profile;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The authenticated caller of a request or WebSocket connection.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Viewer {
    pub user_id: String,
    pub role: Role,
    /// When this server stops accepting the token (seconds since the Unix epoch): its `exp` plus
    /// the allowed clock skew. Nothing runs for the viewer from then on, and a WebSocket is
    /// closed then.
    pub expires_at: u64,
    /// The profile the token's standard claims give (`name`, `email`, `phone_number`), each
    /// where it is valid; empty when it has none. Taken into the customer's profile when they
    /// act (`service::customers::take_claims`).
    pub profile: Profile,
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

/// Why a token was refused; the text is safe to show the client.
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
    #[error("the token's key id (kid) is not among the identity provider's signing keys")]
    UnknownKey,
    #[error("the identity provider's signing keys cannot be fetched right now; try again shortly")]
    KeysUnavailable,
}

/// Clock skew allowed between the token's issuer and this server unless configured.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 5;
/// The most clock skew that may be configured.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Checks bearer tokens and says who they belong to.
#[derive(Clone)]
pub struct Authenticator {
    verifier: Verifier,
    claims: Arc<ClaimMapping>,
    /// Shared-secret tokens already verified, with their viewer: a client sends the same token
    /// with every request, and checking its signature again would give the same answer until
    /// it expires (the secret never changes while the process runs). Tokens of an identity
    /// provider are verified every time, so that a key it withdraws stops working.
    verified: Arc<Mutex<LruCache<String, Viewer>>>,
}

/// How many verified tokens each instance keeps.
const VERIFIED_TOKENS: usize = 10_000;

fn verified_tokens() -> Arc<Mutex<LruCache<String, Viewer>>> {
    Arc::new(Mutex::new(LruCache::new(
        NonZeroUsize::new(VERIFIED_TOKENS).expect("not zero"),
    )))
}

#[derive(Clone)]
enum Verifier {
    Secret(Arc<TokenKeys>),
    Provider(IdentityProvider),
}

impl Authenticator {
    /// HS256 tokens signed with a shared secret, read with the default claims.
    pub fn with_secret(keys: TokenKeys) -> Self {
        Authenticator {
            verifier: Verifier::Secret(Arc::new(keys)),
            claims: Arc::new(ClaimMapping::default()),
            verified: verified_tokens(),
        }
    }

    /// Tokens signed by an identity provider, read with the default claims.
    pub fn with_provider(provider: IdentityProvider) -> Self {
        Authenticator {
            verifier: Verifier::Provider(provider),
            claims: Arc::new(ClaimMapping::default()),
            verified: verified_tokens(),
        }
    }

    /// Reads the user and role from the claims `mapping` names.
    pub fn with_claims(mut self, mapping: ClaimMapping) -> Self {
        self.claims = Arc::new(mapping);
        self.verified = verified_tokens();
        self
    }

    /// The keys that can sign tokens here: only with a shared secret (an identity provider
    /// keeps its private keys to itself).
    pub fn signing_keys(&self) -> Option<&TokenKeys> {
        match &self.verifier {
            Verifier::Secret(keys) => Some(keys),
            Verifier::Provider(_) => None,
        }
    }

    /// The identity provider tokens come from, if any.
    pub fn provider(&self) -> Option<&IdentityProvider> {
        match &self.verifier {
            Verifier::Secret(_) => None,
            Verifier::Provider(provider) => Some(provider),
        }
    }

    /// Checks a bare token (no `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<Viewer, AuthError> {
        let viewer = self.verify_signed(token).await?;
        // jsonwebtoken still accepts a token in the second of its expiry, which the viewer
        // already counts as expired: refuse it here too, as expired.
        if viewer.has_expired() {
            return Err(AuthError::Expired);
        }
        Ok(viewer)
    }

    async fn verify_signed(&self, token: &str) -> Result<Viewer, AuthError> {
        match &self.verifier {
            Verifier::Secret(keys) => {
                if let Some(viewer) = self.already_verified(token) {
                    return Ok(viewer);
                }
                let viewer = self
                    .claims
                    .viewer(&keys.verify_claims(token)?, keys.leeway())?;
                self.verified
                    .lock()
                    .expect("the verified tokens are never poisoned")
                    .put(token.to_owned(), viewer.clone());
                Ok(viewer)
            }
            Verifier::Provider(provider) => self
                .claims
                .viewer(&provider.verify_claims(token).await?, provider.leeway()),
        }
    }

    /// The viewer of `token` if it was verified before and has not expired since.
    fn already_verified(&self, token: &str) -> Option<Viewer> {
        let mut verified = self
            .verified
            .lock()
            .expect("the verified tokens are never poisoned");
        match verified.get(token) {
            Some(viewer) if !viewer.has_expired() => Some(viewer.clone()),
            Some(_) => {
                verified.pop(token);
                None
            }
            None => None,
        }
    }

    /// Checks an `Authorization` value: `Bearer <token>` (the scheme is case-insensitive).
    pub async fn verify_authorization(&self, value: &str) -> Result<Viewer, AuthError> {
        self.verify(bearer_token(value)?).await
    }
}

/// The token of an `Authorization` value `Bearer <token>`.
fn bearer_token(value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::MalformedHeader);
    }
    Ok(token.trim())
}

/// The header of a token; an unknown algorithm (`none` among them) makes it malformed.
fn header_of(token: &str) -> Result<jsonwebtoken::Header, AuthError> {
    jsonwebtoken::decode_header(token)
        .map_err(|_| AuthError::Invalid("not a well-formed JWT".into()))
}

/// What a refusal by `jsonwebtoken` means to the client.
fn refusal(error: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
        ErrorKind::InvalidAudience => {
            AuthError::Invalid("its audience (aud) is not this service".into())
        }
        ErrorKind::InvalidIssuer => AuthError::Invalid("its issuer (iss) is not accepted".into()),
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("it has no `{claim}` claim"))
        }
        ErrorKind::Json(_) => AuthError::Invalid("its claims are not a JSON object".into()),
        _ => AuthError::Invalid("not a well-formed JWT".into()),
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

    #[test]
    fn a_header_without_the_bearer_scheme_is_malformed() {
        assert_eq!(bearer_token("Token abc"), Err(AuthError::MalformedHeader));
        assert_eq!(bearer_token("Bearer"), Err(AuthError::MalformedHeader));
        assert_eq!(bearer_token("Bearer   "), Err(AuthError::MalformedHeader));
        assert_eq!(bearer_token(" bearer abc "), Ok("abc"));
    }

    #[test]
    fn a_shared_secret_token_verified_once_is_answered_from_the_cache_until_it_expires() {
        let keys = TokenKeys::new(b"a-test-secret-that-is-long-enough-0123");
        let authenticator = Authenticator::with_secret(keys.clone());
        let token = keys.issue("alice", Role::Customer, std::time::Duration::from_secs(60));
        let verify = |token: &str| {
            futures_util::FutureExt::now_or_never(authenticator.verify(token))
                .expect("a secret verifies without waiting")
        };
        assert_eq!(verify(&token).unwrap().user_id, "alice");
        // What the cache holds for the token is the answer, not a new check of its signature.
        let cached = Viewer {
            user_id: "kept".into(),
            role: Role::Staff,
            expires_at: unix_now() + 60,
            profile: Profile::default(),
        };
        let put = |viewer: Viewer| {
            authenticator
                .verified
                .lock()
                .unwrap()
                .put(token.clone(), viewer)
        };
        put(cached.clone());
        assert_eq!(verify(&token), Ok(cached.clone()));
        // An expired entry is dropped and the token checked again.
        put(Viewer {
            expires_at: unix_now(),
            ..cached
        });
        assert_eq!(verify(&token).unwrap().user_id, "alice");
    }

    #[test]
    fn a_viewer_past_its_expiry_has_expired() {
        let viewer = Viewer {
            user_id: "alice".into(),
            role: Role::Customer,
            expires_at: unix_now() + 60,
            profile: Profile::default(),
        };
        assert!(!viewer.has_expired());
        let past = Viewer {
            expires_at: unix_now(),
            ..viewer
        };
        assert!(past.has_expired());
    }
}
