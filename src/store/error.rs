//! Database errors as a caller can act on them: connection trouble is `Unavailable`, anything
//! else `Internal` (with its cause kept for the log, never sent).

use sea_orm::{DbErr, RuntimeErr, SqlErr};

use crate::domain::error::Error;

/// Maps a database error to what a caller can act on: connection trouble is `Unavailable`.
pub(super) fn db_error(err: DbErr) -> Error {
    let connection_trouble = match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(sqlx_err))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx_err)) => matches!(
            **sqlx_err,
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
        _ => false,
    };
    if connection_trouble {
        return Error::Unavailable(err.into());
    }
    if sqlite_busy(&err) {
        return Error::Unavailable(
            anyhow::Error::from(err)
                .context("the SQLite database stayed locked by another process"),
        );
    }
    if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
        return Error::Internal(anyhow::Error::from(err).context("unique constraint violated"));
    }
    Error::Internal(err.into())
}

/// Whether `err` is SQLite's SQLITE_BUSY or SQLITE_LOCKED (any extended code): another
/// connection held the lock past the busy time-out.
fn sqlite_busy(err: &DbErr) -> bool {
    let (DbErr::Conn(RuntimeErr::SqlxError(sqlx_err))
    | DbErr::Exec(RuntimeErr::SqlxError(sqlx_err))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_err))) = err
    else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(database) = &**sqlx_err else {
        return false;
    };
    let is_sqlite = database
        .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
        .is_some();
    let primary = database
        .code()
        .and_then(|code| code.parse::<u32>().ok())
        .map(|code| code & 0xff);
    is_sqlite && matches!(primary, Some(5 | 6))
}

/// Maps a failure of the PostgreSQL listening connection.
pub(super) fn listen_error(err: sea_orm::sqlx::Error) -> Error {
    Error::Unavailable(anyhow::Error::from(err).context("cannot listen for events"))
}

/// Returns the error for a row that does not map to a valid domain value.
pub(super) fn corrupt(what: &str) -> Error {
    Error::Internal(anyhow::anyhow!("corrupt row in the database: {what}"))
}
