//! When each granted scope was last required by an allowed call, per integration: the basis
//! of least-privilege advice (`unused_scopes`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("scope_usage")
                    .col(string("integration_id"))
                    .col(string("scope"))
                    .col(timestamp_with_time_zone("last_required_time"))
                    .primary_key(Index::create().col("integration_id").col("scope"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("scope_usage").to_owned())
            .await
    }
}
