//! Customers' profiles: taken from their tokens' standard claims when they act, and changed by
//! themselves or by staff. Profiles are personal data: logs name a customer by id only, and no
//! event carries a profile.

use super::Outcome;
use crate::auth::Viewer;
use crate::db;
use crate::db::customers::{CustomerRow, EMAIL_UNIQUE, PHONE_UNIQUE};
use crate::db::{is_unique_violation, Db};
use crate::domain::customer::{Profile, ProfileChange};
use crate::domain::user_error::{UserError, UserErrorCode};
use crate::error::AppError;
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// Users whose profile claims this instance has taken, with the claims' digest: a user acting
/// again with the same claims costs no database write. Keeps the most recently active users;
/// one it has forgotten takes their claims again on their next act, which changes nothing.
pub struct ClaimsTaken {
    digests: Mutex<LruCache<String, String>>,
}

impl Default for ClaimsTaken {
    fn default() -> Self {
        ClaimsTaken::with_capacity(NonZeroUsize::new(100_000).expect("not zero"))
    }
}

impl ClaimsTaken {
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        ClaimsTaken {
            digests: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn has(&self, user_id: &str, digest: &str) -> bool {
        self.digests
            .lock()
            .expect("the claims cache is never poisoned")
            .get(user_id)
            .is_some_and(|taken| taken == digest)
    }

    fn record(&self, user_id: &str, digest: String) {
        self.digests
            .lock()
            .expect("the claims cache is never poisoned")
            .put(user_id.to_owned(), digest);
    }
}

/// A digest of profile claims: equal claims, equal digests.
fn digest(profile: &Profile) -> String {
    let mut hasher = Sha256::new();
    for field in [&profile.name, &profile.email, &profile.phone] {
        // A field's presence, then its text: (None, Some("")) never meets (Some(""), None).
        match field {
            Some(text) => {
                hasher.update([1]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
            None => hasher.update([0]),
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Takes the profile claims of `viewer`'s token (`name`, `email`, `phone_number`) into their
/// customer profile, when the token has any and they differ from the last ones taken. A
/// claimed email or phone that another customer has is left out (the profile keeps its own);
/// the customer can still act.
pub async fn take_claims(db: &Db, taken: &ClaimsTaken, viewer: &Viewer) -> Result<(), AppError> {
    let mut claimed = viewer.profile.clone();
    if claimed.is_empty() {
        return Ok(());
    }
    let digest = digest(&claimed);
    if taken.has(&viewer.user_id, &digest) {
        return Ok(());
    }
    loop {
        match db::customers::take_claims(db, &viewer.user_id, &claimed, &digest).await {
            Ok(()) => break,
            Err(error) if claimed.email.is_some() && is_unique_violation(&error, EMAIL_UNIQUE) => {
                tracing::warn!(
                    user_id = %viewer.user_id,
                    "the token's email claim is another customer's; the profile keeps its own"
                );
                claimed.email = None;
            }
            Err(error) if claimed.phone.is_some() && is_unique_violation(&error, PHONE_UNIQUE) => {
                tracing::warn!(
                    user_id = %viewer.user_id,
                    "the token's phone_number claim is another customer's; the profile keeps its own"
                );
                claimed.phone = None;
            }
            Err(error) => return Err(error.into()),
        }
    }
    taken.record(&viewer.user_id, digest);
    Ok(())
}

/// Changes the caller's own profile (creating it if they have none yet).
pub async fn update_own_profile(
    db: &Db,
    taken: &ClaimsTaken,
    viewer: &Viewer,
    change: ProfileChange,
) -> Result<Outcome<CustomerRow>, AppError> {
    // Claims first: claims taken after this change would overwrite it.
    take_claims(db, taken, viewer).await?;
    let change = match change.validated() {
        Ok(change) => change,
        Err(errors) => return Ok(Outcome::Refused(errors)),
    };
    let updated = db::customers::upsert_profile(db, &viewer.user_id, &change).await;
    refused_if_taken(updated.map(Some), &viewer.user_id)
}

/// Changes customer `id`'s profile (staff).
pub async fn update_customer(
    db: &Db,
    id: &str,
    change: ProfileChange,
) -> Result<Outcome<CustomerRow>, AppError> {
    let change = match change.validated() {
        Ok(change) => change,
        Err(errors) => return Ok(Outcome::Refused(errors)),
    };
    let updated = db::customers::update_profile(db, id, &change).await;
    refused_if_taken(updated, id)
}

/// The outcome of a profile write: the customer, or a user error when another customer has the
/// email or phone, or when there is no such customer.
fn refused_if_taken(
    updated: sqlx::Result<Option<CustomerRow>>,
    id: &str,
) -> Result<Outcome<CustomerRow>, AppError> {
    match updated {
        Ok(Some(customer)) => {
            tracing::info!(customer_id = %customer.id, "customer profile changed");
            Ok(Outcome::Done(customer))
        }
        Ok(None) => Ok(Outcome::Refused(vec![UserError::new(
            ["id"],
            UserErrorCode::CustomerNotFound,
            format!("no customer has the id {id:?}"),
        )])),
        Err(error) if is_unique_violation(&error, EMAIL_UNIQUE) => {
            Ok(Outcome::Refused(vec![UserError::new(
                ["email"],
                UserErrorCode::EmailTaken,
                "another customer has this email address",
            )]))
        }
        Err(error) if is_unique_violation(&error, PHONE_UNIQUE) => {
            Ok(Outcome::Refused(vec![UserError::new(
                ["phone"],
                UserErrorCode::PhoneTaken,
                "another customer has this phone number",
            )]))
        }
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: Option<&str>, email: Option<&str>) -> Profile {
        Profile {
            name: name.map(str::to_owned),
            email: email.map(str::to_owned),
            phone: None,
        }
    }

    #[test]
    fn equal_claims_have_equal_digests_and_different_claims_different_ones() {
        let ada = profile(Some("Ada"), Some("ada@example.com"));
        assert_eq!(digest(&ada), digest(&ada.clone()));
        assert_ne!(digest(&ada), digest(&profile(Some("Ada"), None)));
        assert_ne!(
            digest(&profile(Some(""), None)),
            digest(&profile(None, Some("")))
        );
    }

    #[test]
    fn the_cache_knows_a_user_by_their_last_digest_and_forgets_the_least_recent() {
        let taken = ClaimsTaken::with_capacity(NonZeroUsize::new(2).unwrap());
        taken.record("ada", "1".into());
        assert!(taken.has("ada", "1"));
        assert!(!taken.has("ada", "2"));
        taken.record("bob", "1".into());
        assert!(taken.has("ada", "1"));
        taken.record("cy", "1".into());
        assert!(!taken.has("bob", "1"));
        assert!(taken.has("ada", "1") && taken.has("cy", "1"));
    }
}
