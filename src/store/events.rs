//! The events table: the audit log (`ListEvents`), the change feed replicas follow, and the
//! PostgreSQL wake-up that tells followers a new event committed.
//!
//! Event ids are handed out in commit order: the insert of an event is the last write of its
//! transaction and, on PostgreSQL, takes a transaction-level advisory lock first, so the next
//! writer gets its id only once this one has committed or rolled back (SQLite has one writer at
//! a time anyway). A reader that sees an event therefore sees every event with a lower id that
//! will ever commit, and a gap in the ids is a rollback, never a commit still to come. The cost
//! is that change transactions of all replicas queue for the time between their event insert
//! and their commit (see BENCHMARKS.md).

use sea_orm::ActiveValue::Set;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::domain::error::Error;
use crate::domain::event::{Event, EventFilter};
use crate::domain::integration::{Change, Integration};
use crate::store::error::{db_error, listen_error};
use crate::store::{Store, StoreTx, entity, rows};

/// The PostgreSQL channel notified at every committed event.
const EVENTS_CHANNEL: &str = "privint_events";

/// The PostgreSQL advisory lock that orders event ids by commit ("privint" and 1 in ASCII).
const FEED_ORDER_LOCK: i64 = 0x7072_6976_696e_7401;

impl Store {
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
        let found = query
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        found.into_iter().map(rows::event).collect()
    }

    /// Returns up to `limit` events with ids above `after`, in id order: the change feed. Ids
    /// are handed out in commit order, so no event with a lower id than the last returned can
    /// commit later.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn events_after(&self, after: i64, limit: u64) -> Result<Vec<Event>, Error> {
        use entity::event::Column;
        let found = entity::event::Entity::find()
            .filter(Column::Id.gt(after))
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        found.into_iter().map(rows::event).collect()
    }

    /// Returns the highest event id, or 0 if there is none: every event up to it has
    /// committed, and every later one will have a higher id.
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
}

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

impl StoreTx {
    /// Inserts the one event of a lifecycle action, as the last write before the commit; on
    /// PostgreSQL it first takes the lock that orders ids by commit, and it sends
    /// `NOTIFY privint_events`, which is delivered at commit.
    pub(super) async fn insert_event(
        &mut self,
        integration: &Integration,
        change: &Change,
        actor: &str,
    ) -> Result<Event, Error> {
        if self.backend == DbBackend::Postgres {
            self.tx
                .execute_unprepared(&format!("SELECT pg_advisory_xact_lock({FEED_ORDER_LOCK})"))
                .await
                .map_err(db_error)?;
        }
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
            location_id: Set(rows::location_id(&integration.owner)),
            details: Set(serde_json::Value::Object(details).to_string()),
            ..Default::default()
        };
        let inserted = entity::event::Entity::insert(row)
            .exec(&self.tx)
            .await
            .map_err(db_error)?;
        if self.backend == DbBackend::Postgres {
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
