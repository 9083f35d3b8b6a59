//! Customers and their profiles. Uniqueness of emails (whatever their case) and phones is the
//! database's: a write that would break it fails with a unique violation of
//! [`EMAIL_UNIQUE`] or [`PHONE_UNIQUE`].

use crate::domain::customer::{Profile, ProfileChange};
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// The unique index on customers' emails.
pub const EMAIL_UNIQUE: &str = "customers_email_key";
/// The unique index on customers' phones.
pub const PHONE_UNIQUE: &str = "customers_phone_key";

/// The columns of [`CustomerRow`], for the one statement assembled at run time ([`list`]).
const CUSTOMER_COLUMNS: &str = "id, name, email, phone, created_at, updated_at";

#[derive(sqlx::FromRow, Clone, PartialEq, Eq)]
pub struct CustomerRow {
    /// The user id of the customer's tokens.
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for CustomerRow {
    /// Personal data is never shown: the id and the profile's shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerRow")
            .field("id", &self.id)
            .field("profile", &self.profile())
            .finish_non_exhaustive()
    }
}

impl CustomerRow {
    pub fn profile(&self) -> Profile {
        Profile {
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
        }
    }
}

/// Takes the profile a token's claims give for customer `id`, recorded by `digest`: creates the
/// customer, or, when `digest` differs from the last claims taken, sets each field the claims
/// have (the others stay). Claims already taken change nothing, so a customer's own edits stay.
pub async fn take_claims(
    db: impl PgExecutor<'_>,
    id: &str,
    claimed: &Profile,
    digest: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into customers as c (id, name, email, phone, claims_digest)
         values ($1, $2, $3, $4, $5)
         on conflict (id) do update
            set name = coalesce(excluded.name, c.name),
                email = coalesce(excluded.email, c.email),
                phone = coalesce(excluded.phone, c.phone),
                claims_digest = excluded.claims_digest,
                updated_at = case when (c.name, c.email, c.phone) is not distinct from
                                       (coalesce(excluded.name, c.name),
                                        coalesce(excluded.email, c.email),
                                        coalesce(excluded.phone, c.phone))
                                  then c.updated_at else now() end
          where c.claims_digest is distinct from excluded.claims_digest",
        id,
        claimed.name.as_deref(),
        claimed.email.as_deref(),
        claimed.phone.as_deref(),
        digest,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// For name, email and phone: whether `change` sets it, and to what.
fn settings(change: &ProfileChange) -> [(bool, Option<&str>); 3] {
    [&change.name, &change.email, &change.phone].map(|field| {
        (
            field.is_some(),
            field.as_ref().and_then(|value| value.as_deref()),
        )
    })
}

/// Applies `change` to customer `id`, creating the customer if it is new (a customer acting on
/// their own profile). The fields the change keeps stay as they are.
pub async fn upsert_profile(
    db: impl PgExecutor<'_>,
    id: &str,
    change: &ProfileChange,
) -> sqlx::Result<CustomerRow> {
    let [(set_name, name), (set_email, email), (set_phone, phone)] = settings(change);
    sqlx::query_as!(
        CustomerRow,
        "insert into customers as c (id, name, email, phone) values ($1, $3, $5, $7)
         on conflict (id) do update
            set name = case when $2 then excluded.name else c.name end,
                email = case when $4 then excluded.email else c.email end,
                phone = case when $6 then excluded.phone else c.phone end,
                updated_at = now()
         returning id, name, email, phone, created_at, updated_at",
        id,
        set_name,
        name,
        set_email,
        email,
        set_phone,
        phone,
    )
    .fetch_one(db)
    .await
}

/// Applies `change` to an existing customer `id`; None when there is no such customer.
pub async fn update_profile(
    db: impl PgExecutor<'_>,
    id: &str,
    change: &ProfileChange,
) -> sqlx::Result<Option<CustomerRow>> {
    let [(set_name, name), (set_email, email), (set_phone, phone)] = settings(change);
    sqlx::query_as!(
        CustomerRow,
        "update customers
            set name = case when $2 then $3 else name end,
                email = case when $4 then $5 else email end,
                phone = case when $6 then $7 else phone end,
                updated_at = now()
          where id = $1
         returning id, name, email, phone, created_at, updated_at",
        id,
        set_name,
        name,
        set_email,
        email,
        set_phone,
        phone,
    )
    .fetch_optional(db)
    .await
}

pub async fn find_many(db: impl PgExecutor<'_>, ids: &[String]) -> sqlx::Result<Vec<CustomerRow>> {
    sqlx::query_as!(
        CustomerRow,
        "select id, name, email, phone, created_at, updated_at from customers where id = any($1)",
        ids
    )
    .fetch_all(db)
    .await
}

/// Up to `limit` customers by id after `after_id`: all, or those whose name or email starts
/// with `search` (whatever its case) or whose phone starts with `phone_prefix`.
pub async fn list(
    db: impl PgExecutor<'_>,
    search: Option<&str>,
    phone_prefix: Option<&str>,
    after_id: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<CustomerRow>> {
    // Assembled so that each search runs with only the conditions it has, which lets the
    // planner use the prefix indexes; so checked at run time, not by a macro
    // (`tests/api/customers.rs` runs each shape).
    let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "select {CUSTOMER_COLUMNS} from customers where true"
    ));
    if let Some(search) = search {
        let prefix = format!("{}%", super::escape_like(&search.to_lowercase()));
        sql.push(" and (lower(name) like ")
            .push_bind(prefix.clone())
            .push(" or lower(email) like ")
            .push_bind(prefix);
        if let Some(digits) = phone_prefix {
            sql.push(" or phone like ").push_bind(format!("{digits}%"));
        }
        sql.push(")");
    }
    if let Some(after) = after_id {
        sql.push(" and id > ").push_bind(after.to_owned());
    }
    sql.push(" order by id limit ").push_bind(limit);
    sql.build_query_as().fetch_all(db).await
}
