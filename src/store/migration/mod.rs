//! Schema migrations, one per file, run at start-up (or alone with `privint migrate`).
//!
//! A released migration never changes; a schema change is a new file.

use sea_orm_migration::prelude::*;

mod m20261124_000001_initial;
mod m20261125_000001_token_last_used;
mod m20261125_000002_scope_usage;
mod m20261125_000003_token_daily_usage;
mod m20261125_000004_integration_ranges;
mod m20261125_000005_range_digests;
mod m20261125_000006_create_requests;
mod m20261125_000007_disable_time;
mod m20261125_000008_ip_allowlist;
mod m20261125_000009_token_last_caller;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261125_000001_token_last_used::Migration),
            Box::new(m20261125_000002_scope_usage::Migration),
            Box::new(m20261125_000003_token_daily_usage::Migration),
            Box::new(m20261125_000004_integration_ranges::Migration),
            Box::new(m20261125_000005_range_digests::Migration),
            Box::new(m20261125_000006_create_requests::Migration),
            Box::new(m20261125_000007_disable_time::Migration),
            Box::new(m20261125_000008_ip_allowlist::Migration),
            Box::new(m20261125_000009_token_last_caller::Migration),
        ]
    }
}
