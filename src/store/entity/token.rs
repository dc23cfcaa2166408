//! The `tokens` table: every token ever issued, by digest. The plain token is never stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub integration_id: String,
    /// SHA-256 of the token.
    pub hash: Vec<u8>,
    pub hint: String,
    pub create_time: DateTimeUtc,
    pub expire_time: Option<DateTimeUtc>,
    pub revoke_time: Option<DateTimeUtc>,
    /// Written in batches by `Store::record_usage`, as are the last caller's address and user
    /// agent.
    pub last_used_time: Option<DateTimeUtc>,
    pub last_client_ip: Option<String>,
    pub last_user_agent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
