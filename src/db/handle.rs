//! How oms reaches PostgreSQL: directly, or through a connection pooler in transaction mode
//! (PgBouncer before 1.21, Supabase's and Neon's pooled endpoints). Behind such a pooler a
//! client's consecutive statements may run on different server connections, so:
//! - a statement must not outlive its transaction: statements are prepared unnamed
//!   ([`query`], [`query_as`], [`query_scalar`], which every query in `db/` uses), since sqlx's
//!   named ones (`sqlx_s_1`, ...) would meet another client's on a shared server connection;
//! - sqlx sends an unnamed statement's Parse and its Bind in two round trips, between which the
//!   pooler may switch server connections unless a transaction holds it: so every statement
//!   that [`Db`] runs outside a transaction runs in one of its own;
//! - nothing may need a session: the outbox relay's `LISTEN` uses `DATABASE_DIRECT_URL` or is
//!   left out (the relay polls), and migrations take no session lock without that URL.

use futures_util::stream::BoxStream;
use futures_util::{future::BoxFuture, TryStreamExt};

use sqlx::postgres::{PgArguments, PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Describe, Either, Execute, Executor, FromRow, Postgres, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};

/// What stands between oms and PostgreSQL.
#[derive(clap::ValueEnum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Pooler {
    /// Nothing, or a pooler that keeps each client's prepared statements (session mode, or
    /// PgBouncer 1.21+ with `max_prepared_statements`): statements are prepared once per
    /// connection and cached.
    #[default]
    None,
    /// A pooler in transaction mode that does not track prepared statements: every statement
    /// is prepared unnamed and runs in a transaction, and nothing needs a session.
    Transaction,
}

/// Whether statements are prepared unnamed (behind a transaction-mode pooler). One process
/// talks to one database one way, so this is set once at start-up, by [`Db::connect`].
static UNNAMED_STATEMENTS: AtomicBool = AtomicBool::new(false);

/// Whether statements may be prepared named and cached (no transaction-mode pooler): for the
/// statements `db/` assembles with sqlx's `QueryBuilder`.
pub(crate) fn statements_named() -> bool {
    named_statements()
}

fn named_statements() -> bool {
    !UNNAMED_STATEMENTS.load(Ordering::Relaxed)
}

// oms's SQL is checked at run time, as it always has been (no offline query data in the
// repository; `tests/` exercises every statement against PostgreSQL). These wrap sqlx's
// run-time query functions so that every statement is prepared as the pooler setting allows.

/// `sqlx::query`, prepared the way this process's database connection allows.
pub(crate) fn query(sql: &str) -> Query<'_, Postgres, PgArguments> {
    sqlx::query(sql).persistent(named_statements())
}

/// `sqlx::query_as`, prepared the way this process's database connection allows.
pub(crate) fn query_as<'q, O>(sql: &'q str) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(named_statements())
}

/// `sqlx::query_scalar`, prepared the way this process's database connection allows.
pub(crate) fn query_scalar<'q, O>(sql: &'q str) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_scalar(sql).persistent(named_statements())
}

/// The database as oms uses it: a pool, and whether each statement outside a transaction must
/// run in one of its own. Every `db` function takes it (or a transaction) as its executor.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    pooler: Pooler,
}

impl Db {
    /// A pool reached directly.
    pub fn direct(pool: PgPool) -> Db {
        Db {
            pool,
            pooler: Pooler::None,
        }
    }

    /// A pool behind `pooler`. Behind a transaction-mode pooler every statement of this process
    /// is prepared unnamed from now on.
    pub fn behind(pool: PgPool, pooler: Pooler) -> Db {
        if pooler == Pooler::Transaction {
            UNNAMED_STATEMENTS.store(true, Ordering::Relaxed);
        }
        Db { pool, pooler }
    }

    pub async fn begin(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.pool.begin().await
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    fn own_transactions(&self) -> bool {
        self.pooler == Pooler::Transaction
    }
}

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.own_transactions() {
            return self.pool.fetch_many(query);
        }
        Box::pin(async_stream::try_stream! {
            let mut transaction = self.pool.begin().await?;
            {
                let mut results = (&mut *transaction).fetch_many(query);
                while let Some(result) = results.try_next().await? {
                    yield result;
                }
            }
            transaction.commit().await?;
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.own_transactions() {
            return self.pool.fetch_optional(query);
        }
        Box::pin(async move {
            let mut transaction = self.pool.begin().await?;
            let row = (&mut *transaction).fetch_optional(query).await?;
            transaction.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}
