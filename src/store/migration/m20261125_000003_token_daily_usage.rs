//! How many calls each token had allowed and denied, per UTC day.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("token_daily_usage")
                    .col(string("token_id"))
                    // An ISO date, `YYYY-MM-DD` (UTC).
                    .col(string("day"))
                    .col(big_integer("allowed"))
                    .col(big_integer("denied"))
                    .primary_key(Index::create().col("token_id").col("day"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("token_daily_usage").to_owned())
            .await
    }
}
