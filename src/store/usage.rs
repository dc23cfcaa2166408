//! Usage as recorded: when tokens were last used, their calls per day, and when each granted
//! scope was last required. Written in batches by the index's recorder, read for Get and List.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, TransactionTrait};

use crate::domain::error::Error;
use crate::domain::integration::{IntegrationId, TokenId};
use crate::domain::scope::Scope;
use crate::domain::usage::{DailyUsage, LastCaller, TokenUsage};
use crate::store::error::{corrupt, db_error};
use crate::store::{Store, entity, rows};

impl Store {
    /// Records when tokens were last used and when scopes were last required, and adds call
    /// counts, in one transaction; a recorded time never moves back.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure; then nothing was recorded.
    pub async fn record_usage(
        &self,
        token_uses: &[(TokenId, DateTime<Utc>, Option<LastCaller>)],
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
        for (token_id, time, caller) in token_uses {
            use entity::token::Column;
            let mut update = entity::token::Entity::update_many()
                .col_expr(Column::LastUsedTime, Expr::value(*time));
            if let Some(caller) = caller {
                let ip = caller.client_ip.map(|it| it.to_string());
                update = update
                    .col_expr(Column::LastClientIp, Expr::value(ip))
                    .col_expr(
                        Column::LastUserAgent,
                        Expr::value(caller.user_agent.clone()),
                    );
            }
            update
                .filter(Column::Id.eq(token_id.as_str()))
                // Last uses are whole seconds: a later round of the same second still brings
                // the later caller.
                .filter(
                    Condition::any()
                        .add(Column::LastUsedTime.is_null())
                        .add(Column::LastUsedTime.lte(*time)),
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

    /// Returns what is recorded of these tokens' use: the last use, and the daily call counts
    /// from `since` on, oldest first. Tokens never used have no entry.
    ///
    /// # Errors
    /// Returns `Unavailable` or `Internal` on database failure.
    pub async fn token_usage(
        &self,
        ids: &[&TokenId],
        since: NaiveDate,
    ) -> Result<HashMap<TokenId, TokenUsage>, Error> {
        let mut usage: HashMap<TokenId, TokenUsage> = HashMap::new();
        if ids.is_empty() {
            return Ok(usage);
        }
        let id_strings = || ids.iter().map(|id| id.as_str());
        let last_uses = entity::token::Entity::find()
            .filter(entity::token::Column::Id.is_in(id_strings()))
            .filter(entity::token::Column::LastUsedTime.is_not_null())
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for row in last_uses {
            let usage = usage.entry(rows::token_id(&row.id)?).or_default();
            usage.last_used_time = row.last_used_time;
            usage.last_caller = LastCaller::of(
                row.last_client_ip.as_deref().and_then(|it| it.parse().ok()),
                row.last_user_agent.as_deref(),
            );
        }
        use entity::token_daily_usage::Column;
        let days = entity::token_daily_usage::Entity::find()
            .filter(Column::TokenId.is_in(id_strings()))
            .filter(Column::Day.gte(since.to_string()))
            .order_by_asc(Column::Day)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        for row in days {
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            let day = DailyUsage {
                date: row.day.parse().map_err(|_| corrupt("daily usage day"))?,
                allowed: count(row.allowed),
                denied: count(row.denied),
            };
            usage
                .entry(rows::token_id(&row.token_id)?)
                .or_default()
                .daily
                .push(day);
        }
        Ok(usage)
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
        let found = entity::scope_usage::Entity::find()
            .filter(Column::IntegrationId.is_in(ids.iter().map(|id| id.as_str())))
            .filter(Column::LastRequiredTime.gte(since))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        found
            .into_iter()
            .map(|row| Ok((rows::integration_id(&row.integration_id)?, row.scope)))
            .collect()
    }
}
