//! Integrations by range (the last two hex digits of their id, 256 ranges): what the resync
//! compares with the token index and reloads, range by range.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // An expression index, which both databases support but the schema builder does not.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX integrations_by_range ON integrations (substr(id, 35, 2), id)",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX integrations_by_range")
            .await
            .map(|_| ())
    }
}
