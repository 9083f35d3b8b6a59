//! Errors that reach GraphQL clients.
//!
//! Which error type to use where:
//! - business failures of a mutation (bad input, an invalid transition) are not errors at all:
//!   they are [`UserError`](crate::domain::user_error::UserError)s in the mutation's payload;
//! - anything that stops a request (no token, a forbidden operation, a database outage) is an
//!   [`AppError`]: the client sees a stable `extensions.code` and a safe message, the log sees the
//!   full cause chain;
//! - background tasks and binaries use `anyhow` with context.

use async_graphql::ErrorExtensions;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No valid token came with the request.
    #[error("authentication required: send `Authorization: Bearer <token>` ({0})")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A malformed argument that is not part of a mutation's input (an id, a cursor, a page size).
    #[error("{0}")]
    BadUserInput(String),
    /// The caller made too many requests (or mutations: the first field says which) too quickly.
    #[error("too many {what}; retry in {} ms", .retry_after.as_millis())]
    RateLimited {
        what: &'static str,
        retry_after: std::time::Duration,
    },
    /// One connection asked for more subscriptions than it may hold.
    #[error("this connection already holds {0} subscriptions, the most it may; stop one first")]
    TooManySubscriptions(usize),
    /// A subscriber fell further behind the live feed than its buffer holds.
    #[error("this subscription fell {0} changes behind and was closed; resubscribe and re-read what you show (per order, afterVersion replays what was missed)")]
    Lagged(u64),
    /// The database could not be reached; the client may retry.
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug or an unexpected failure. Details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadUserInput(_) => "BAD_USER_INPUT",
            AppError::Lagged(_) => "SUBSCRIPTION_LAGGED",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::TooManySubscriptions(_) => "TOO_MANY_SUBSCRIPTIONS",
            AppError::Unavailable(_) => "UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL",
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            AppError::Unavailable(error)
        } else {
            AppError::Internal(error.into())
        }
    }
}

impl From<std::sync::Arc<sqlx::Error>> for AppError {
    fn from(error: std::sync::Arc<sqlx::Error>) -> Self {
        match std::sync::Arc::try_unwrap(error) {
            Ok(error) => error.into(),
            Err(shared) => AppError::Internal(anyhow::anyhow!("{shared}")),
        }
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        if let AppError::Unavailable(cause) = self {
            tracing::warn!(error = %cause, "request failed: database unavailable");
        }
        if let AppError::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed with an internal error");
        }
        async_graphql::Error::new(self.to_string()).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let AppError::RateLimited { retry_after, .. } = self {
                ext.set("retryAfterMs", retry_after.as_millis() as u64);
            }
        })
    }
}

/// `?`-friendly conversion of any error that becomes an [`AppError`] into a GraphQL error.
pub trait IntoGraphql<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T, E: Into<AppError>> IntoGraphql<T> for Result<T, E> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|e| e.into().extend())
    }
}
