//! The `integrations` table: one row per integration, deleted ones included (with `delete_time`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub agency_id: String,
    pub location_id: Option<String>,
    pub name: String,
    pub description: String,
    /// Scope names joined by single spaces, sorted.
    pub scopes: String,
    pub create_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
    pub created_by: String,
    pub version: i64,
    pub current_token_id: Option<String>,
    pub previous_token_id: Option<String>,
    pub delete_time: Option<DateTimeUtc>,
    pub disable_time: Option<DateTimeUtc>,
    /// CIDR ranges joined by single spaces; NULL for anywhere.
    pub ip_allowlist: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
