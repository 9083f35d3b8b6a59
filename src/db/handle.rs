//! How oms reaches PostgreSQL: directly, or through a connection pooler in transaction mode
//! (PgBouncer before 1.21, Supabase's and Neon's pooled endpoints). Behind such a pooler a
//! client's consecutive statements may run on different server connections, so:
//! - a statement must not outlive its transaction: [`Db`] and [`Tx`], the only executors `db/`
//!   runs statements on, prepare every statement unnamed, since sqlx's named ones (`sqlx_s_1`,
//!   ...) would meet another client's on a shared server connection;
//! - sqlx sends an unnamed statement's Parse and its Bind in two round trips, between which the
//!   pooler may switch server connections unless a transaction holds it: so every statement
//!   that [`Db`] runs outside a transaction runs in one of its own;
//! - nothing may need a session: the outbox relay's `LISTEN` uses `DATABASE_DIRECT_URL` or is
//!   left out (the relay polls), and migrations take no session lock without that URL.

use futures_util::stream::BoxStream;
use futures_util::{future::BoxFuture, TryStreamExt};

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, Postgres, Transaction};

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

impl Pooler {
    /// Whether statements may be prepared named and cached on a connection.
    fn keeps_statements(self) -> bool {
        self == Pooler::None
    }
}

/// A statement as [`Db`] and [`Tx`] run it: prepared unnamed when the pooler cannot keep named
/// statements, whatever the statement asked for. Every statement of `db/` runs through one of
/// them, so no query (checked macro, run-time query or `QueryBuilder`) has to say it.
struct AsPooled<E> {
    statement: E,
    named: bool,
}

impl<E> AsPooled<E> {
    fn new(statement: E, pooler: Pooler) -> Self {
        AsPooled {
            statement,
            named: pooler.keeps_statements(),
        }
    }
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for AsPooled<E> {
    fn sql(&self) -> &'q str {
        self.statement.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.statement.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, BoxDynError> {
        self.statement.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.named && self.statement.persistent()
    }
}

/// The database as oms uses it: a pool, and whether each statement outside a transaction must
/// run in one of its own. Every `db` function takes it (or a [`Tx`]) as its executor.
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

    /// A pool behind `pooler`.
    pub fn behind(pool: PgPool, pooler: Pooler) -> Db {
        Db { pool, pooler }
    }

    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(Tx {
            transaction: self.pool.begin().await?,
            pooler: self.pooler,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    fn own_transactions(&self) -> bool {
        self.pooler == Pooler::Transaction
    }
}

/// A transaction of [`Db`]: its statements are prepared as the pooler allows. It gives no access
/// to the connection beneath, so no statement can bypass that.
#[derive(Debug)]
pub struct Tx {
    transaction: Transaction<'static, Postgres>,
    pooler: Pooler,
}

impl Tx {
    pub async fn commit(self) -> sqlx::Result<()> {
        self.transaction.commit().await
    }

    pub async fn rollback(self) -> sqlx::Result<()> {
        self.transaction.rollback().await
    }
}

impl<'c> Executor<'c> for &'c mut Tx {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        (&mut *self.transaction).fetch_many(AsPooled::new(query, self.pooler))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        (&mut *self.transaction).fetch_optional(AsPooled::new(query, self.pooler))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.transaction).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.transaction).describe(sql)
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
        let query = AsPooled::new(query, self.pooler);
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
        let query = AsPooled::new(query, self.pooler);
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
