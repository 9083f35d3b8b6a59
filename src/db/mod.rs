//! All SQL lives here. Functions take an executor ([`Db`], or a [`Tx`] of it),
//! so callers decide what runs in one transaction.
//!
//! - [`orders`]: orders, their lines and status history; a consumer's inbox of applied events.
//! - [`order_listing`]: orders listed and counted by filter, a page at a time.
//! - [`inventory`]: stock levels and the stock ledger.
//! - [`outbox`]: events waiting for Kafka.
//! - [`customers`]: customers and their profiles.
//! - [`audit`]: read-only checks of the invariants.

pub mod audit;
pub mod customers;
mod handle;
pub mod inbox;
pub mod inventory;
pub mod order_listing;
pub mod orders;
pub mod outbox;

use crate::domain::role::Role;
use crate::domain::status::OrderStatus;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgPool, PgPoolOptions, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};
use std::time::Duration;

pub use handle::{Db, Pooler, Tx};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Refreshes the planner's statistics of every table (`ANALYZE`), which also makes sessions plan
/// their kept statements again. Autovacuum does this as tables grow; the load generator calls it
/// after its warm-up, on a database server that runs without autovacuum.
pub async fn refresh_planner_statistics(db: &Db) -> sqlx::Result<()> {
    sqlx::query!("analyze").execute(db).await?;
    Ok(())
}

/// Opens a pool. Connections are made lazily, so the service starts (and reports not ready)
/// while the database is still coming up.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
}

/// Whether an error means the database cannot be reached right now (down, restarting, out of
/// connections), as opposed to a failed statement: worth retrying later.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        // 08: connection exception; 53: insufficient resources; 57: operator intervention
        // (e.g. 57P01, the server is shutting down).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["08", "53", "57"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}

/// Whether an error is a unique violation of the named constraint or index.
pub fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.is_unique_violation() && db.constraint() == Some(constraint))
}

/// Whether an error is a check violation of the named constraint.
pub fn is_check_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.is_check_violation() && db.constraint() == Some(constraint))
}

pub fn is_foreign_key_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.is_foreign_key_violation() && db.constraint() == Some(constraint))
}

/// Stores a domain enum as its name (`as_str`) in a text column, read back with `FromStr`.
macro_rules! stored_as_text {
    ($($name:ty),*) => {$(
        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <&str as Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <&str as Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(<&str as Decode<Postgres>>::decode(value)?.parse()?)
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <&str as Encode<Postgres>>::encode(self.as_str(), buf)
            }
        }
    )*};
}

stored_as_text!(OrderStatus, Role);

/// How many of this build's migrations the database has not applied.
pub async fn pending_migrations(pool: &Db) -> sqlx::Result<usize> {
    // Checked at run time: `_sqlx_migrations` is sqlx's own table, missing until the first
    // migration ran (42P01 below), so no schema the macros check against has it.
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await
            .or_else(|error| match &error {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(vec![]),
                _ => Err(error),
            })?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .count())
}

/// The connections `args` describes.
pub struct Connections {
    /// Every statement goes here (through the pooler, if any).
    pub db: Db,
    /// A pool that reaches PostgreSQL itself, for what needs a session (`LISTEN`, migrations):
    /// the main pool when nothing pools, `DATABASE_DIRECT_URL` when given, else none.
    pub direct: Option<PgPool>,
}

/// Connections to make lazily, so the service starts (and reports not ready) while the database
/// is still coming up.
pub fn connect(args: &crate::config::DatabaseArgs) -> Result<Connections, sqlx::Error> {
    let pool = connect_lazy(&args.database_url, args.database_max_connections)?;
    let direct = match (&args.database_direct_url, args.database_pooler) {
        (Some(url), _) => Some(connect_lazy(url, 2)?),
        (None, Pooler::None) => Some(pool.clone()),
        (None, Pooler::Transaction) => None,
    };
    Ok(Connections {
        db: Db::behind(pool, args.database_pooler),
        direct,
    })
}

/// Creates the database when missing and applies pending migrations, over the direct URL when
/// there is one. sqlx's migrator prepares named statements and holds a session lock, which a
/// transaction-mode pooler cannot carry: behind one, migrations need `DATABASE_DIRECT_URL`.
pub async fn migrate(
    args: &crate::config::DatabaseArgs,
    connections: &Connections,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let (Some(direct), url) = (
        &connections.direct,
        args.database_direct_url
            .as_deref()
            .unwrap_or(&args.database_url),
    ) else {
        anyhow::bail!(
            "behind a transaction-mode pooler migrations need DATABASE_DIRECT_URL (a URL that \
             reaches PostgreSQL itself); or run `oms migrate` with DATABASE_URL pointing at \
             PostgreSQL itself and start with OMS_MIGRATE=false"
        );
    };
    create_database_if_missing(url)
        .await
        .context("creating the database")?;
    MIGRATOR
        .run(direct)
        .await
        .context("applying database migrations")
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> sqlx::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    if !Postgres::database_exists(url).await? {
        match Postgres::create_database(url).await {
            Ok(()) => {}
            // Created meanwhile by another instance.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// `text` matched literally by LIKE (its `%`, `_` and `\` escaped).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
