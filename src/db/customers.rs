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
    super::query(
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
    )
    .bind(id)
    .bind(&claimed.name)
    .bind(&claimed.email)
    .bind(&claimed.phone)
    .bind(digest)
    .execute(db)
    .await?;
    Ok(())
}

/// `sql` with `id` as `$1` and, for each of name, email and phone, whether `change` sets it and
/// to what (`$2`-`$7`).
fn with_change<'q>(
    sql: &'q str,
    id: &'q str,
    change: &'q ProfileChange,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, CustomerRow, sqlx::postgres::PgArguments> {
    let mut query = super::query_as(sql).bind(id);
    for field in [&change.name, &change.email, &change.phone] {
        query = query.bind(field.is_some()).bind(field.clone().flatten());
    }
    query
}

/// Applies `change` to customer `id`, creating the customer if it is new (a customer acting on
/// their own profile). The fields the change keeps stay as they are.
pub async fn upsert_profile(
    db: impl PgExecutor<'_>,
    id: &str,
    change: &ProfileChange,
) -> sqlx::Result<CustomerRow> {
    let sql = format!(
        "insert into customers as c (id, name, email, phone) values ($1, $3, $5, $7)
         on conflict (id) do update
            set name = case when $2 then excluded.name else c.name end,
                email = case when $4 then excluded.email else c.email end,
                phone = case when $6 then excluded.phone else c.phone end,
                updated_at = now()
         returning {CUSTOMER_COLUMNS}"
    );
    with_change(&sql, id, change).fetch_one(db).await
}

/// Applies `change` to an existing customer `id`; None when there is no such customer.
pub async fn update_profile(
    db: impl PgExecutor<'_>,
    id: &str,
    change: &ProfileChange,
) -> sqlx::Result<Option<CustomerRow>> {
    let sql = format!(
        "update customers
            set name = case when $2 then $3 else name end,
                email = case when $4 then $5 else email end,
                phone = case when $6 then $7 else phone end,
                updated_at = now()
          where id = $1
         returning {CUSTOMER_COLUMNS}"
    );
    with_change(&sql, id, change).fetch_optional(db).await
}

pub async fn find_many(db: impl PgExecutor<'_>, ids: &[String]) -> sqlx::Result<Vec<CustomerRow>> {
    super::query_as(&format!(
        "select {CUSTOMER_COLUMNS} from customers where id = any($1)"
    ))
    .bind(ids)
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
    // planner use the prefix indexes.
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
    sql.build_query_as()
        .persistent(super::handle::statements_named())
        .fetch_all(db)
        .await
}
