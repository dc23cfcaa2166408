//! The Store: integrations, tokens and events in SQLite or PostgreSQL, through SeaORM.
//!
//! One implementation serves both databases, so it is a struct rather than a trait.
//! SeaORM models never leave this module: rows become domain types here, and database
//! errors become `domain::Error` here (`Unavailable` for connection trouble).
//! It does not cache and knows nothing of the token index.

mod entity;
mod migration;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    AccessMode, ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, ConnectionTrait,
    Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    IsolationLevel, QueryFilter, QueryOrder, QuerySelect, RuntimeErr, SqlErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::domain::error::Error;
use crate::domain::event::{Event, EventFilter};
use crate::domain::integration::{
    AccountId, Change, DailyUsage, Description, EventKind, Integration, IntegrationId,
    IntegrationName, Owner, TokenId, TokenRecord,
};
use crate::domain::scope::{Scope, ScopeSet};
use crate::domain::token::TokenHash;

/// An integration with every token it ever had that is not in one of its slots.
#[derive(Debug)]
pub struct IntegrationTokens {
    pub integration: Integration,
    /// Tokens that left the slots: revoked or expired.
    pub retired: Vec<TokenRecord>,
}

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
        let tx = self.db.begin().await.map_err(db_error)?;
        let notify = self.db.get_database_backend() == DbBackend::Postgres;
        Ok(StoreTx {
            tx,
            notify,
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

    /// Returns the live (not deleted) integration with this id, if any.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn find_integration(&self, id: &IntegrationId) -> Result<Option<Integration>, Error> {
        let row = entity::integration::Entity::find_by_id(id.as_str())
            .filter(entity::integration::Column::DeleteTime.is_null())
            .one(&self.db)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => Ok(Some(load_slots(&self.db, row).await?)),
            None => Ok(None),
        }
    }

    /// Returns the owner of the integration with this id, deleted or not, if it ever existed.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn find_owner(&self, id: &IntegrationId) -> Result<Option<Owner>, Error> {
        let row = entity::integration::Entity::find_by_id(id.as_str())
            .one(&self.db)
            .await
            .map_err(db_error)?;
        row.map(|row| owner(&row.agency_id, row.location_id.as_deref()))
            .transpose()
    }

    /// Returns up to `limit` live integrations of an agency (all levels), or of one location,
    /// ordered by id (creation order), starting after `after`.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn list_integrations(
        &self,
        agency_id: &AccountId,
        location_id: Option<&AccountId>,
        after: Option<&IntegrationId>,
        limit: u64,
    ) -> Result<Vec<Integration>, Error> {
        use entity::integration::Column;
        let mut query = entity::integration::Entity::find()
            .filter(Column::AgencyId.eq(agency_id.as_str()))
            .filter(Column::DeleteTime.is_null());
        if let Some(location_id) = location_id {
            query = query.filter(Column::LocationId.eq(location_id.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(Column::Id.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let token_ids = rows
            .iter()
            .flat_map(|row| [&row.current_token_id, &row.previous_token_id])
            .flatten();
        let tokens = find_tokens(&self.db, token_ids.cloned().collect()).await?;
        rows.into_iter()
            .map(|row| integration(row, &tokens))
            .collect()
    }

    /// Returns every integration ever made, deleted ones included, with all their tokens:
    /// what the token index loads at start-up.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn load_all(&self) -> Result<Vec<IntegrationTokens>, Error> {
        let snapshot = self.snapshot().await?;
        let rows = entity::integration::Entity::find()
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        let tokens = entity::token::Entity::find()
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        snapshot.commit().await.map_err(db_error)?;
        let mut tokens_by_integration: std::collections::HashMap<String, Vec<TokenRecord>> =
            Default::default();
        for token in tokens {
            let integration_id = token.integration_id.clone();
            tokens_by_integration
                .entry(integration_id)
                .or_default()
                .push(token_record(token)?);
        }
        rows.into_iter()
            .map(|row| {
                let tokens = tokens_by_integration.remove(&row.id).unwrap_or_default();
                integration_tokens(row, tokens)
            })
            .collect()
    }

    /// Returns the integration with this id, deleted or not, with all its tokens: what the
    /// token index needs to bring one integration up to date.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn load_integration(
        &self,
        id: &IntegrationId,
    ) -> Result<Option<IntegrationTokens>, Error> {
        let snapshot = self.snapshot().await?;
        let row = entity::integration::Entity::find_by_id(id.as_str())
            .one(&snapshot)
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let tokens = entity::token::Entity::find()
            .filter(entity::token::Column::IntegrationId.eq(id.as_str()))
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        snapshot.commit().await.map_err(db_error)?;
        let tokens = tokens
            .into_iter()
            .map(token_record)
            .collect::<Result<_, _>>()?;
        integration_tokens(row, tokens).map(Some)
    }

    /// Returns up to `limit` events matching `filter`, newest first, older than `before`.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Event>, Error> {
        use entity::event::Column;
        let mut query = filtered_events(filter);
        if let Some(before) = before {
            query = query.filter(Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(event).collect()
    }

    /// Returns up to `limit` events with ids above `after`, in id order: the change feed.
    /// Ids are allocated at insert and become visible at commit, so a lower id may still appear
    /// later; see `domain::event::deliverable`.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn events_after(&self, after: i64, limit: u64) -> Result<Vec<Event>, Error> {
        use entity::event::Column;
        let query = entity::event::Entity::find().filter(Column::Id.gt(after));
        let rows = query
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(event).collect()
    }

    /// Returns the highest id of the events stamped before `time`, or 0 if there is none:
    /// where a change-feed follower can start without missing a transaction still in flight.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn last_event_id_before(&self, time: DateTime<Utc>) -> Result<i64, Error> {
        use entity::event::Column;
        let last = entity::event::Entity::find()
            .select_only()
            .column_as(Column::Id.max(), "max_id")
            .filter(Column::Time.lt(time))
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(last.flatten().unwrap_or(0))
    }

    /// Returns a subscription to new events on PostgreSQL (LISTEN/NOTIFY), or `None` on SQLite,
    /// where only polling sees other writers.
    ///
    /// # Errors
    /// Returns `Unavailable` if the listening connection cannot be opened.
    pub async fn event_wakeups(&self) -> Result<Option<EventWakeups>, Error> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let pool = self.db.get_postgres_connection_pool();
        let mut listener = PgListener::connect_with(pool).await.map_err(listen_error)?;
        listener
            .listen(EVENTS_CHANNEL)
            .await
            .map_err(listen_error)?;
        Ok(Some(EventWakeups(listener)))
    }

    /// Records when tokens were last used and when scopes were last required, in one
    /// transaction; a recorded time never moves back.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure; then nothing was recorded.
    pub async fn record_usage(
        &self,
        token_uses: &[(TokenId, DateTime<Utc>)],
        scope_uses: &[(IntegrationId, Scope, DateTime<Utc>)],
        calls: &[(TokenId, DailyUsage)],
    ) -> Result<(), Error> {
        let tx = self.db.begin().await.map_err(db_error)?;
        for (token_id, usage) in calls {
            use entity::token_daily_usage::Column;
            let row = entity::token_daily_usage::ActiveModel {
                token_id: Set(token_id.as_str().to_owned()),
                day: Set(usage.date.to_string()),
                allowed: Set(i64::try_from(usage.allowed).unwrap_or(i64::MAX)),
                denied: Set(i64::try_from(usage.denied).unwrap_or(i64::MAX)),
            };
            // Replicas add their counts: `excluded` is the row that could not be inserted.
            let add = OnConflict::columns([Column::TokenId, Column::Day])
                .value(
                    Column::Allowed,
                    Expr::col((entity::token_daily_usage::Entity, Column::Allowed))
                        .add(Expr::cust("excluded.allowed")),
                )
                .value(
                    Column::Denied,
                    Expr::col((entity::token_daily_usage::Entity, Column::Denied))
                        .add(Expr::cust("excluded.denied")),
                )
                .to_owned();
            entity::token_daily_usage::Entity::insert(row)
                .on_conflict(add)
                .exec_without_returning(&tx)
                .await
                .map_err(db_error)?;
        }
        for (token_id, time) in token_uses {
            use entity::token::Column;
            entity::token::Entity::update_many()
                .col_expr(Column::LastUsedTime, Expr::value(*time))
                .filter(Column::Id.eq(token_id.as_str()))
                .filter(
                    Condition::any()
                        .add(Column::LastUsedTime.is_null())
                        .add(Column::LastUsedTime.lt(*time)),
                )
                .exec(&tx)
                .await
                .map_err(db_error)?;
        }
        for (integration_id, scope, time) in scope_uses {
            use entity::scope_usage::Column;
            let row = entity::scope_usage::ActiveModel {
                integration_id: Set(integration_id.as_str().to_owned()),
                scope: Set(scope.as_str().to_owned()),
                last_required_time: Set(*time),
            };
            entity::scope_usage::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([Column::IntegrationId, Column::Scope])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&tx)
                .await
                .map_err(db_error)?;
            entity::scope_usage::Entity::update_many()
                .col_expr(Column::LastRequiredTime, Expr::value(*time))
                .filter(Column::IntegrationId.eq(integration_id.as_str()))
                .filter(Column::Scope.eq(scope.as_str()))
                .filter(Column::LastRequiredTime.lt(*time))
                .exec(&tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    /// Returns the daily call counts of these tokens from `since` on, oldest first.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn daily_usage_since(
        &self,
        ids: &[&TokenId],
        since: chrono::NaiveDate,
    ) -> Result<Vec<(TokenId, DailyUsage)>, Error> {
        use entity::token_daily_usage::Column;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = entity::token_daily_usage::Entity::find()
            .filter(Column::TokenId.is_in(ids.iter().map(|id| id.as_str())))
            .filter(Column::Day.gte(since.to_string()))
            .order_by_asc(Column::Day)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let token_id = TokenId::parse("token_id", &row.token_id)
                    .map_err(|_| corrupt("daily usage"))?;
                let date = row.day.parse().map_err(|_| corrupt("daily usage day"))?;
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                Ok((
                    token_id,
                    DailyUsage {
                        date,
                        allowed: count(row.allowed),
                        denied: count(row.denied),
                    },
                ))
            })
            .collect()
    }

    /// Returns the scopes of these integrations that an allowed call required at or after `since`.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn scopes_required_since(
        &self,
        ids: &[&IntegrationId],
        since: DateTime<Utc>,
    ) -> Result<Vec<(IntegrationId, String)>, Error> {
        use entity::scope_usage::Column;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = entity::scope_usage::Entity::find()
            .filter(Column::IntegrationId.is_in(ids.iter().map(|id| id.as_str())))
            .filter(Column::LastRequiredTime.gte(since))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let id = IntegrationId::parse("integration_id", &row.integration_id)
                    .map_err(|_| corrupt("scope usage"))?;
                Ok((id, row.scope))
            })
            .collect()
    }

    /// Returns the highest event id, or 0 if there is none.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn last_event_id(&self) -> Result<i64, Error> {
        use entity::event::Column;
        let last = entity::event::Entity::find()
            .select_only()
            .column_as(Column::Id.max(), "max_id")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await
            .map_err(db_error)?;
        Ok(last.flatten().unwrap_or(0))
    }
}

/// The PostgreSQL channel notified at every committed event.
const EVENTS_CHANNEL: &str = "privint_events";

/// Wakes a change-feed follower when another writer commits an event (PostgreSQL only).
pub struct EventWakeups(PgListener);

impl EventWakeups {
    /// Completes at the next notification (or at once if some are queued).
    ///
    /// # Errors
    /// Returns `Unavailable` if the listening connection fails; it reconnects on the next call.
    pub async fn next(&mut self) -> Result<(), Error> {
        self.0.recv().await.map(|_| ()).map_err(listen_error)
    }
}

fn listen_error(err: sea_orm::sqlx::Error) -> Error {
    Error::Unavailable(anyhow::Error::from(err).context("cannot listen for events"))
}

/// One write transaction. Every lifecycle action is one of these: read, change, one event, commit.
pub struct StoreTx {
    tx: DatabaseTransaction,
    /// On PostgreSQL, each event also sends `NOTIFY privint_events` (delivered at commit).
    notify: bool,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl StoreTx {
    /// Returns the live integration with this id, locked against concurrent changes until commit.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn lock_integration(
        &mut self,
        id: &IntegrationId,
    ) -> Result<Option<Integration>, Error> {
        let row = entity::integration::Entity::find_by_id(id.as_str())
            .filter(entity::integration::Column::DeleteTime.is_null())
            .lock_exclusive()
            .one(&self.tx)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => Ok(Some(load_slots(&self.tx, row).await?)),
            None => Ok(None),
        }
    }

    /// Inserts a new integration, its first token and its `integration.created` event.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn insert_integration(
        &mut self,
        integration: &Integration,
        change: &Change,
        actor: &str,
    ) -> Result<Event, Error> {
        entity::integration::Entity::insert(integration_row(integration, None))
            .exec_without_returning(&self.tx)
            .await
            .map_err(db_error)?;
        self.save_tokens(integration, change).await?;
        self.insert_event(integration, change, actor).await
    }

    /// Saves `integration` as changed by `change`, its tokens, and one event.
    /// With `deleted`, the integration is hidden from reads (its rows and events stay).
    ///
    /// # Errors
    /// Returns `Aborted` if the row changed since it was read (its version moved on),
    /// `Unavailable` or `Internal` on database failure.
    pub async fn save(
        &mut self,
        integration: &Integration,
        change: &Change,
        actor: &str,
        deleted: bool,
    ) -> Result<Event, Error> {
        use entity::integration::Column;
        let delete_time = deleted.then_some(integration.update_time);
        let result = entity::integration::Entity::update_many()
            .set(integration_row(integration, delete_time))
            .filter(Column::Id.eq(integration.id.as_str()))
            .filter(Column::Version.eq(integration.version - 1))
            .exec(&self.tx)
            .await
            .map_err(db_error)?;
        if result.rows_affected != 1 {
            return Err(Error::Aborted);
        }
        self.save_tokens(integration, change).await?;
        self.insert_event(integration, change, actor).await
    }

    /// Commits the transaction.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` if the commit fails; then nothing was written.
    pub async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await.map_err(db_error)
    }

    async fn save_tokens(
        &mut self,
        integration: &Integration,
        change: &Change,
    ) -> Result<(), Error> {
        use entity::token::Column;
        let tokens = integration
            .current
            .iter()
            .chain(&integration.previous)
            .chain(&change.retired);
        for token in tokens {
            let row = entity::token::ActiveModel {
                id: Set(token.id.as_str().to_owned()),
                integration_id: Set(integration.id.as_str().to_owned()),
                hash: Set(token.hash.as_bytes().to_vec()),
                hint: Set(token.hint.clone()),
                create_time: Set(token.create_time),
                expire_time: Set(token.expire_time),
                revoke_time: Set(token.revoke_time),
                // Only `record_last_use` writes it; the upsert below leaves it alone.
                last_used_time: Set(None),
            };
            entity::token::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(Column::Id)
                        .update_columns([Column::ExpireTime, Column::RevokeTime])
                        .to_owned(),
                )
                .exec_without_returning(&self.tx)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn insert_event(
        &mut self,
        integration: &Integration,
        change: &Change,
        actor: &str,
    ) -> Result<Event, Error> {
        let details: serde_json::Map<String, serde_json::Value> = change
            .details
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone().into()))
            .collect();
        let row = entity::event::ActiveModel {
            kind: Set(change.kind.as_str().to_owned()),
            time: Set(integration.update_time),
            actor: Set(actor.to_owned()),
            integration_id: Set(integration.id.as_str().to_owned()),
            agency_id: Set(integration.owner.agency_id.as_str().to_owned()),
            location_id: Set(integration
                .owner
                .location_id
                .as_ref()
                .map(|it| it.as_str().to_owned())),
            details: Set(serde_json::Value::Object(details).to_string()),
            ..Default::default()
        };
        let inserted = entity::event::Entity::insert(row)
            .exec(&self.tx)
            .await
            .map_err(db_error)?;
        if self.notify {
            self.tx
                .execute_unprepared(&format!("NOTIFY {EVENTS_CHANNEL}"))
                .await
                .map_err(db_error)?;
        }
        Ok(Event {
            id: inserted.last_insert_id,
            kind: change.kind,
            time: integration.update_time,
            actor: actor.to_owned(),
            integration_id: integration.id.clone(),
            owner: integration.owner.clone(),
            details: change
                .details
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect(),
        })
    }
}

/// Maps a database error to what a caller can act on: connection trouble is `Unavailable`.
fn db_error(err: DbErr) -> Error {
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
    if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
        return Error::Internal(anyhow::Error::from(err).context("unique constraint violated"));
    }
    Error::Internal(err.into())
}

fn corrupt(what: &str) -> Error {
    Error::Internal(anyhow::anyhow!("corrupt row in the database: {what}"))
}

/// Splits an integration's tokens into its slots and the retired rest.
fn integration_tokens(
    row: entity::integration::Model,
    tokens: Vec<TokenRecord>,
) -> Result<IntegrationTokens, Error> {
    let (slotted, retired): (Vec<_>, Vec<_>) = tokens.into_iter().partition(|token| {
        Some(token.id.as_str()) == row.current_token_id.as_deref()
            || Some(token.id.as_str()) == row.previous_token_id.as_deref()
    });
    let slotted = slotted
        .into_iter()
        .map(|token| (token.id.as_str().to_owned(), token))
        .collect();
    Ok(IntegrationTokens {
        integration: integration(row, &slotted)?,
        retired,
    })
}

fn owner(agency_id: &str, location_id: Option<&str>) -> Result<Owner, Error> {
    let agency_id = AccountId::parse("agency_id", agency_id).map_err(|_| corrupt("agency_id"))?;
    let location_id = location_id
        .map(|it| AccountId::parse("location_id", it))
        .transpose()
        .map_err(|_| corrupt("location_id"))?;
    Ok(Owner {
        agency_id,
        location_id,
    })
}

fn token_record(row: entity::token::Model) -> Result<TokenRecord, Error> {
    Ok(TokenRecord {
        id: TokenId::parse("id", &row.id).map_err(|_| corrupt("token id"))?,
        hash: TokenHash::from_bytes(&row.hash).map_err(|_| corrupt("token hash"))?,
        hint: row.hint,
        create_time: row.create_time,
        expire_time: row.expire_time,
        revoke_time: row.revoke_time,
        last_used_time: row.last_used_time,
        daily_usage: Vec::new(),
    })
}

/// Reads the tokens with these ids, by id.
async fn find_tokens(
    db: &impl ConnectionTrait,
    ids: Vec<String>,
) -> Result<std::collections::HashMap<String, TokenRecord>, Error> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows = entity::token::Entity::find()
        .filter(entity::token::Column::Id.is_in(ids))
        .all(db)
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|row| Ok((row.id.clone(), token_record(row)?)))
        .collect()
}

async fn load_slots(
    db: &impl ConnectionTrait,
    row: entity::integration::Model,
) -> Result<Integration, Error> {
    let ids = [&row.current_token_id, &row.previous_token_id]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let tokens = find_tokens(db, ids).await?;
    integration(row, &tokens)
}

fn integration(
    row: entity::integration::Model,
    tokens: &std::collections::HashMap<String, TokenRecord>,
) -> Result<Integration, Error> {
    let slot = |id: &Option<String>| -> Result<Option<TokenRecord>, Error> {
        id.as_ref()
            .map(|id| tokens.get(id).cloned().ok_or_else(|| corrupt("token slot")))
            .transpose()
    };
    let scopes = row
        .scopes
        .split(' ')
        .map(|name| Scope::parse(name).ok_or_else(|| corrupt("scopes")));
    Ok(Integration {
        id: IntegrationId::parse("id", &row.id).map_err(|_| corrupt("integration id"))?,
        owner: owner(&row.agency_id, row.location_id.as_deref())?,
        name: IntegrationName::parse("name", &row.name).map_err(|_| corrupt("name"))?,
        description: Description::parse("description", &row.description)
            .map_err(|_| corrupt("description"))?,
        scopes: ScopeSet::new(scopes.collect::<Result<Vec<_>, _>>()?),
        create_time: row.create_time,
        update_time: row.update_time,
        created_by: row.created_by,
        version: row.version,
        current: slot(&row.current_token_id)?,
        previous: slot(&row.previous_token_id)?,
        unused_scopes: None,
    })
}

fn integration_row(
    integration: &Integration,
    delete_time: Option<DateTime<Utc>>,
) -> entity::integration::ActiveModel {
    entity::integration::ActiveModel {
        id: Set(integration.id.as_str().to_owned()),
        agency_id: Set(integration.owner.agency_id.as_str().to_owned()),
        location_id: Set(integration
            .owner
            .location_id
            .as_ref()
            .map(|it| it.as_str().to_owned())),
        name: Set(integration.name.as_str().to_owned()),
        description: Set(integration.description.as_str().to_owned()),
        scopes: Set(integration.scopes.joined()),
        create_time: Set(integration.create_time),
        update_time: Set(integration.update_time),
        created_by: Set(integration.created_by.clone()),
        version: Set(integration.version),
        current_token_id: Set(integration
            .current
            .as_ref()
            .map(|it| it.id.as_str().to_owned())),
        previous_token_id: Set(integration
            .previous
            .as_ref()
            .map(|it| it.id.as_str().to_owned())),
        delete_time: Set(delete_time),
    }
}

fn filtered_events(filter: &EventFilter) -> sea_orm::Select<entity::event::Entity> {
    use entity::event::Column;
    let query = entity::event::Entity::find();
    match filter {
        EventFilter::Integration(id) => query.filter(Column::IntegrationId.eq(id.as_str())),
        EventFilter::Account {
            agency_id,
            location_id,
        } => {
            let query = query.filter(Column::AgencyId.eq(agency_id.as_str()));
            match location_id {
                Some(location_id) => query.filter(Column::LocationId.eq(location_id.as_str())),
                None => query,
            }
        }
    }
}

fn event(row: entity::event::Model) -> Result<Event, Error> {
    let details: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.details).map_err(|_| corrupt("event details"))?;
    Ok(Event {
        id: row.id,
        kind: EventKind::parse(&row.kind).ok_or_else(|| corrupt("event kind"))?,
        time: row.time,
        actor: row.actor,
        integration_id: IntegrationId::parse("integration_id", &row.integration_id)
            .map_err(|_| corrupt("event"))?,
        owner: owner(&row.agency_id, row.location_id.as_deref())?,
        details: details
            .into_iter()
            .map(|(key, value)| {
                (
                    key,
                    value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| value.to_string()),
                )
            })
            .collect(),
    })
}
