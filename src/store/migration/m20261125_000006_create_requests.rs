//! Which integration each client request id created, so a retried create returns it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("create_requests")
                    // The caller's user id (the JWT subject) and its request id.
                    .col(string("caller"))
                    .col(string("request_id"))
                    .col(string("integration_id"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("caller").col("request_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("create_requests_created_at")
                    .table("create_requests")
                    .col("created_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("create_requests").to_owned())
            .await
    }
}
