//! The `events` table: the audit log and change feed, in id order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: String,
    pub time: DateTimeUtc,
    pub actor: String,
    pub integration_id: String,
    pub agency_id: String,
    pub location_id: Option<String>,
    /// A JSON object of strings; never a token or a digest.
    pub details: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
