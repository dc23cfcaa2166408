//! The initial schema: integrations, tokens and events.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("integrations")
                    .col(string("id").primary_key())
                    .col(string("agency_id"))
                    .col(string_null("location_id"))
                    .col(string("name"))
                    .col(text("description"))
                    .col(text("scopes"))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone("update_time"))
                    .col(string("created_by"))
                    .col(big_integer("version"))
                    .col(string_null("current_token_id"))
                    .col(string_null("previous_token_id"))
                    .col(timestamp_with_time_zone_null("delete_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("integrations_by_account")
                    .table("integrations")
                    .col("agency_id")
                    .col("location_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("tokens")
                    .col(string("id").primary_key())
                    .col(string("integration_id"))
                    .col(binary("hash").unique_key())
                    .col(string("hint"))
                    .col(timestamp_with_time_zone("create_time"))
                    .col(timestamp_with_time_zone_null("expire_time"))
                    .col(timestamp_with_time_zone_null("revoke_time"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tokens_by_integration")
                    .table("tokens")
                    .col("integration_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("events")
                    .col(big_pk_auto("id"))
                    .col(string("kind"))
                    .col(timestamp_with_time_zone("time"))
                    .col(string("actor"))
                    .col(string("integration_id"))
                    .col(string("agency_id"))
                    .col(string_null("location_id"))
                    .col(text("details"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_by_integration")
                    .table("events")
                    .col("integration_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_by_account")
                    .table("events")
                    .col("agency_id")
                    .col("location_id")
                    .col("id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["events", "tokens", "integrations"] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
