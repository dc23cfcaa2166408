//! The Store: integrations, tokens, events and usage in SQLite or PostgreSQL, through SeaORM.
//!
//! One implementation serves both databases, so it is a struct rather than a trait; its methods
//! are grouped by concern (`integrations`, `events`, `usage`), rows become domain types in
//! `rows`, and database errors become `domain::Error` in `error` (`Unavailable` for connection
//! trouble). SeaORM models never leave this module. It does not cache and knows nothing of the
//! token index.

mod create_requests;
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
pub use integrations::{IntegrationTokens, ListFilter};
pub use ranges::{RangeDigest, range_of};

use crate::domain::error::Error;
use crate::store::error::db_error;

/// The database behind privint.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer at a time: write transactions queue here instead of failing busy.
    sqlite_writer: Option<Arc<Mutex<()>>>,
    /// SQLite: the lock that keeps other privint processes off the file while this one runs.
    _sqlite_owner: Option<Arc<std::fs::File>>,
}

/// How long database calls wait before they answer `Unavailable`.
#[derive(Debug, Clone)]
pub struct DatabaseTimeouts {
    /// For a connection from the pool (or a new one).
    pub acquire: Duration,
    /// SQLite: for another process's write lock.
    pub busy: Duration,
}

impl Default for DatabaseTimeouts {
    fn default() -> Self {
        Self {
            acquire: Duration::from_secs(1),
            busy: Duration::from_secs(2),
        }
    }
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a SQLite file if missing.
    /// A SQLite file is locked for this process: one process per file.
    ///
    /// # Errors
    /// Returns `Unavailable` if the database cannot be reached or another process uses the
    /// SQLite file.
    pub async fn connect(url: &str, timeouts: &DatabaseTimeouts) -> Result<Self, Error> {
        let sqlite_owner = match sqlite_path(url) {
            Some(path) => Some(Arc::new(lock_sqlite_file(&path)?)),
            None => None,
        };
        let busy_timeout = timeouts.busy;
        let mut options = ConnectOptions::new(url);
        options
            .sqlx_logging(false)
            .connect_timeout(timeouts.acquire)
            .acquire_timeout(timeouts.acquire)
            // WAL lets Get/List read while a change is being written; synchronous stays FULL so a
            // committed revocation survives a power loss.
            .map_sqlx_sqlite_opts(move |it| {
                it.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(busy_timeout)
            });
        let db = Database::connect(options).await.map_err(db_error)?;
        let sqlite_writer =
            (db.get_database_backend() == DbBackend::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Self {
            db,
            sqlite_writer,
            _sqlite_owner: sqlite_owner,
        })
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

/// Returns the file of a SQLite URL (`sqlite://path?options`), or `None` for PostgreSQL and
/// in-memory databases.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:" && !url.contains("mode=memory")).then(|| path.into())
}

/// Takes the lock that makes a SQLite file one process's: `<file>.lock`, held until exit (the
/// kernel drops it when the process dies, so a crash leaves nothing to clean up).
fn lock_sqlite_file(path: &std::path::Path) -> Result<std::fs::File, Error> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|err| {
            Error::Unavailable(anyhow::Error::from(err).context(format!(
                "cannot open the SQLite lock file {}",
                std::path::Path::new(&lock_path).display()
            )))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Unavailable(anyhow::anyhow!(
            "the SQLite database {} is in use by another privint process: SQLite serves one \
             process per file. Stop the other process, or use PostgreSQL \
             (database_url = \"postgres://...\") to run several replicas",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(err)) => Err(Error::Unavailable(
            anyhow::Error::from(err).context("cannot lock the SQLite database file"),
        )),
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
