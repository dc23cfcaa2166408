//! The Store: integrations, tokens, events and usage in SQLite or PostgreSQL, through SeaORM.
//!
//! One implementation serves both databases, so it is a struct rather than a trait; its methods
//! are grouped by concern (`integrations`, `events`, `usage`), rows become domain types in
//! `rows`, and database errors become `domain::Error` in `error` (`Unavailable` for connection
//! trouble). SeaORM models never leave this module. It does not cache and knows nothing of the
//! token index.

mod entity;
mod error;
mod events;
mod integrations;
mod migration;
mod ranges;
mod rows;
mod usage;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    AccessMode, ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    IsolationLevel, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use events::EventWakeups;
pub use integrations::IntegrationTokens;
pub use ranges::{RangeDigest, range_of};

use crate::domain::error::Error;
use crate::store::error::db_error;

/// The database behind privint.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer at a time: write transactions queue here instead of failing busy.
    sqlite_writer: Option<Arc<Mutex<()>>>,
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a SQLite file if missing.
    ///
    /// # Errors
    /// Returns `Unavailable` if the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let mut options = ConnectOptions::new(url);
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            // WAL lets Get/List read while a change is being written; synchronous stays FULL so a
            // committed revocation survives a power loss.
            .map_sqlx_sqlite_opts(|it| {
                it.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5))
            });
        let db = Database::connect(options).await.map_err(db_error)?;
        let sqlite_writer =
            (db.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Self { db, sqlite_writer })
    }

    /// Runs every pending migration.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` if a migration fails; a failed migration is rolled back
    /// where the database supports transactional DDL.
    pub async fn migrate(&self) -> Result<(), Error> {
        migration::Migrator::up(&self.db, None)
            .await
            .map_err(db_error)
    }

    /// Starts a write transaction; dropping it without [`StoreTx::commit`] rolls it back.
    ///
    /// # Errors
    /// Returns `Unavailable` if the database cannot be reached.
    pub async fn begin(&self) -> Result<StoreTx, Error> {
        let writer = match &self.sqlite_writer {
            Some(lock) => Some(Arc::clone(lock).lock_owned().await),
            None => None,
        };
        // On SQLite a write transaction takes the write lock at BEGIN (IMMEDIATE): one that
        // began as a reader could not wait for a writer of another connection and would fail
        // busy at once; this way it waits for up to the busy time-out.
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let tx = self
            .db
            .begin_with_options(options)
            .await
            .map_err(db_error)?;
        let backend = self.db.get_database_backend();
        Ok(StoreTx {
            tx,
            backend,
            _writer: writer,
        })
    }

    /// Starts a read-only transaction whose reads all see one snapshot, so an integration row and
    /// its tokens are read as of the same commit. Without it, a token committed between the two
    /// reads would look retired (in no slot) and be taken for revoked.
    async fn snapshot(&self) -> Result<DatabaseTransaction, Error> {
        let snapshot = match self.db.get_database_backend() {
            // SQLite holds one snapshot for a whole read transaction anyway.
            DbBackend::Sqlite => self.db.begin().await,
            _ => {
                self.db
                    .begin_with_config(
                        Some(IsolationLevel::RepeatableRead),
                        Some(AccessMode::ReadOnly),
                    )
                    .await
            }
        };
        snapshot.map_err(db_error)
    }
}

/// One write transaction. Every lifecycle action is one of these: read, change, one event, commit.
pub struct StoreTx {
    tx: DatabaseTransaction,
    backend: DbBackend,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl StoreTx {
    /// Commits the transaction.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` if the commit fails; then nothing was written.
    pub async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await.map_err(db_error)
    }
}
