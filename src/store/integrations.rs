//! Integrations and their tokens: reads for Get and List, whole loads for the token index, and
//! the writes of a lifecycle action inside a [`StoreTx`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};

use crate::domain::account::Owner;
use crate::domain::error::Error;
use crate::domain::event::Event;
use crate::domain::integration::{Change, Integration, IntegrationId, TokenRecord};
use crate::store::error::db_error;
use crate::store::{Store, StoreTx, entity, rows};

/// An integration with every token it ever had that is not in one of its slots.
#[derive(Debug)]
pub struct IntegrationTokens {
    pub integration: Integration,
    /// Tokens that left the slots: revoked or expired.
    pub retired: Vec<TokenRecord>,
}

/// Which integrations a listing keeps, beyond the account.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// `(now, before)`: only those with a live token that expires after now and before `before`.
    pub expiring: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Only those whose current token was created at or before this (rotation due).
    pub rotation_due_since: Option<DateTime<Utc>>,
}

impl Store {
    /// Returns the live (not deleted) integration with this id, if any.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn find_integration(&self, id: &IntegrationId) -> Result<Option<Integration>, Error> {
        find_live(&self.db, id, false).await
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
        row.map(|row| rows::owner(&row.agency_id, row.location_id.as_deref()))
            .transpose()
    }

    /// Returns up to `limit` live integrations of an agency (all levels), or of one location,
    /// ordered by id (creation order), starting after `after`.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn list_integrations(
        &self,
        account: &Owner,
        filter: &ListFilter,
        after: Option<&IntegrationId>,
        limit: u64,
    ) -> Result<Vec<Integration>, Error> {
        use entity::integration::Column;
        use entity::token::Column as Token;
        let mut query = entity::integration::Entity::find()
            .filter(Column::AgencyId.eq(account.agency_id.as_str()))
            .filter(Column::DeleteTime.is_null());
        if let Some(location_id) = &account.location_id {
            query = query.filter(Column::LocationId.eq(location_id.as_str()));
        }
        let live_tokens = || {
            entity::token::Entity::find()
                .select_only()
                .column(Token::Id)
                .filter(Token::RevokeTime.is_null())
        };
        if let Some((now, before)) = filter.expiring {
            // A current or previous token whose expiry is still ahead, and before `before`.
            let expiring = live_tokens()
                .filter(Token::ExpireTime.gt(now))
                .filter(Token::ExpireTime.lt(before))
                .into_query();
            query = query.filter(
                Condition::any()
                    .add(Column::CurrentTokenId.in_subquery(expiring.clone()))
                    .add(Column::PreviousTokenId.in_subquery(expiring)),
            );
        }
        if let Some(created_by) = filter.rotation_due_since {
            // As `Integration::rotation_due`: the current token is older than the rotation age.
            let old = live_tokens()
                .filter(Token::CreateTime.lte(created_by))
                .into_query();
            query = query.filter(Column::CurrentTokenId.in_subquery(old));
        }
        if let Some(after) = after {
            query = query.filter(Column::Id.gt(after.as_str()));
        }
        let found = query
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let token_ids = found
            .iter()
            .flat_map(|row| [&row.current_token_id, &row.previous_token_id])
            .flatten();
        let tokens = find_tokens(&self.db, token_ids.cloned().collect()).await?;
        found
            .into_iter()
            .map(|row| rows::integration(row, &tokens))
            .collect()
    }

    /// Returns how many integrations the store holds, deleted ones included: what a load
    /// reserves room for.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn count_integrations(&self) -> Result<u64, Error> {
        entity::integration::Entity::find()
            .count(&self.db)
            .await
            .map_err(db_error)
    }

    /// Returns up to `limit` integrations with ids after `after` (all from the first for
    /// `None`), in id order, deleted ones included, each with all its tokens, read in one
    /// snapshot: one chunk of what the token index loads at start-up and on a resync.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn load_chunk(
        &self,
        after: Option<&IntegrationId>,
        limit: u64,
    ) -> Result<Vec<IntegrationTokens>, Error> {
        use entity::integration::Column;
        let snapshot = self.snapshot().await?;
        let mut query = entity::integration::Entity::find();
        if let Some(after) = after {
            query = query.filter(Column::Id.gt(after.as_str()));
        }
        let integrations = query
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        let (Some(first), Some(last)) = (integrations.first(), integrations.last()) else {
            snapshot.commit().await.map_err(db_error)?;
            return Ok(Vec::new());
        };
        // The tokens of exactly these integrations: a range of the token index by integration.
        let tokens = entity::token::Entity::find()
            .filter(entity::token::Column::IntegrationId.gte(first.id.as_str()))
            .filter(entity::token::Column::IntegrationId.lte(last.id.as_str()))
            .all(&snapshot)
            .await
            .map_err(db_error)?;
        snapshot.commit().await.map_err(db_error)?;
        with_tokens(integrations, tokens)
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
            .map(rows::token_record)
            .collect::<Result<_, _>>()?;
        integration_tokens(row, tokens).map(Some)
    }
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
        find_live(&self.tx, id, true).await
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
        entity::integration::Entity::insert(rows::integration_row(integration, None))
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
            .set(rows::integration_row(integration, delete_time))
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
            entity::token::Entity::insert(rows::token_row(&integration.id, token))
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
}

/// Returns the live integration with this id with its slots; `lock` locks its row until the
/// transaction ends (`SELECT ... FOR UPDATE`).
async fn find_live(
    db: &impl ConnectionTrait,
    id: &IntegrationId,
    lock: bool,
) -> Result<Option<Integration>, Error> {
    let mut query = entity::integration::Entity::find_by_id(id.as_str())
        .filter(entity::integration::Column::DeleteTime.is_null());
    if lock {
        query = query.lock_exclusive();
    }
    let Some(row) = query.one(db).await.map_err(db_error)? else {
        return Ok(None);
    };
    let ids = [&row.current_token_id, &row.previous_token_id]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let tokens = find_tokens(db, ids).await?;
    rows::integration(row, &tokens).map(Some)
}

/// Reads the tokens with these ids, by id.
async fn find_tokens(
    db: &impl ConnectionTrait,
    ids: Vec<String>,
) -> Result<HashMap<String, TokenRecord>, Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let found = entity::token::Entity::find()
        .filter(entity::token::Column::Id.is_in(ids))
        .all(db)
        .await
        .map_err(db_error)?;
    found
        .into_iter()
        .map(|row| Ok((row.id.clone(), rows::token_record(row)?)))
        .collect()
}

/// Returns `integrations` each with its tokens (from `tokens`), split into slots and retired.
pub(super) fn with_tokens(
    integrations: Vec<entity::integration::Model>,
    tokens: Vec<entity::token::Model>,
) -> Result<Vec<IntegrationTokens>, Error> {
    let mut tokens_by_integration: HashMap<String, Vec<TokenRecord>> = HashMap::new();
    for token in tokens {
        let integration_id = token.integration_id.clone();
        tokens_by_integration
            .entry(integration_id)
            .or_default()
            .push(rows::token_record(token)?);
    }
    integrations
        .into_iter()
        .map(|row| {
            let tokens = tokens_by_integration.remove(&row.id).unwrap_or_default();
            integration_tokens(row, tokens)
        })
        .collect()
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
        integration: rows::integration(row, &slotted)?,
        retired,
    })
}
