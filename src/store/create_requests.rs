//! Client request ids of creates: a retry within the window finds the integration the first
//! attempt made instead of making another.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::domain::error::Error;
use crate::domain::integration::IntegrationId;
use crate::domain::request_id::RequestId;
use crate::store::StoreTx;
use crate::store::entity::create_request::{ActiveModel, Column, Entity};
use crate::store::error::{corrupt, db_error};

impl StoreTx {
    /// Claims `request_id` of `caller` for the integration `id` about to be created, unless a
    /// claim made after `since` holds it: then returns the integration that claim created.
    /// On PostgreSQL a concurrent claim of the same id waits for the other transaction, so two
    /// racing retries create one integration.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn claim_request_id(
        &mut self,
        caller: &str,
        request_id: &RequestId,
        id: &IntegrationId,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<Option<IntegrationId>, Error> {
        let row = ActiveModel {
            caller: Set(caller.to_owned()),
            request_id: Set(request_id.as_str().to_owned()),
            integration_id: Set(id.as_str().to_owned()),
            created_at: Set(now),
        };
        // An expired claim is taken over; a live one is left as it is (no row changes).
        let take_expired = OnConflict::columns([Column::Caller, Column::RequestId])
            .update_columns([Column::IntegrationId, Column::CreatedAt])
            .action_and_where(Expr::col((Entity, Column::CreatedAt)).lt(since))
            .to_owned();
        let claimed = Entity::insert(row)
            .on_conflict(take_expired)
            .exec_without_returning(&self.tx)
            .await
            .map_err(db_error)?;
        if claimed == 1 {
            return Ok(None);
        }
        let held = Entity::find()
            .filter(Column::Caller.eq(caller))
            .filter(Column::RequestId.eq(request_id.as_str()))
            .one(&self.tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| corrupt("a create request claim vanished"))?;
        let id = IntegrationId::parse("integration_id", &held.integration_id)
            .map_err(|_| corrupt("create_requests.integration_id"))?;
        Ok(Some(id))
    }

    /// Forgets request ids claimed before `before` (through the `created_at` index, so the
    /// table holds one window of creates).
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn forget_request_ids(&mut self, before: DateTime<Utc>) -> Result<(), Error> {
        Entity::delete_many()
            .filter(Column::CreatedAt.lt(before))
            .exec(&self.tx)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
