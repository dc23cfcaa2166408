//! Each range's digest, kept up to date by the database itself: how many integrations of the
//! range have a current token, and the sum of their versions. Triggers on `integrations` keep it,
//! so a change made by hand counts too, and the resync reads 256 rows instead of the table.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE: &str = "CREATE TABLE integration_ranges (
    range_key TEXT PRIMARY KEY,
    integrations BIGINT NOT NULL,
    versions BIGINT NOT NULL
)";

const FILL: &str = "INSERT INTO integration_ranges (range_key, integrations, versions)
    SELECT substr(id, 35, 2), COUNT(*), SUM(version) FROM integrations
    WHERE current_token_id IS NOT NULL GROUP BY substr(id, 35, 2)";

/// On PostgreSQL, statement-level triggers with transition tables: one aggregate per statement,
/// so a bulk load costs one upsert per range rather than one per row. Ranges are upserted in
/// key order, so two statements never wait on each other's rows in a cycle.
const POSTGRES: &str = "CREATE FUNCTION privint_integration_ranges() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO integration_ranges (range_key, integrations, versions)
        SELECT substr(id, 35, 2), COUNT(*), SUM(version) FROM new_rows
        WHERE current_token_id IS NOT NULL GROUP BY 1 ORDER BY 1
        ON CONFLICT (range_key) DO UPDATE
        SET integrations = integration_ranges.integrations + EXCLUDED.integrations,
            versions = integration_ranges.versions + EXCLUDED.versions;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO integration_ranges (range_key, integrations, versions)
        SELECT range_key, SUM(n), SUM(v) FROM (
            SELECT substr(id, 35, 2) AS range_key, 1 AS n, version AS v FROM new_rows
            WHERE current_token_id IS NOT NULL
            UNION ALL
            SELECT substr(id, 35, 2), -1, -version FROM old_rows
            WHERE current_token_id IS NOT NULL
        ) AS changes GROUP BY range_key ORDER BY range_key
        ON CONFLICT (range_key) DO UPDATE
        SET integrations = integration_ranges.integrations + EXCLUDED.integrations,
            versions = integration_ranges.versions + EXCLUDED.versions;
    ELSE
        INSERT INTO integration_ranges (range_key, integrations, versions)
        SELECT substr(id, 35, 2), -COUNT(*), -SUM(version) FROM old_rows
        WHERE current_token_id IS NOT NULL GROUP BY 1 ORDER BY 1
        ON CONFLICT (range_key) DO UPDATE
        SET integrations = integration_ranges.integrations + EXCLUDED.integrations,
            versions = integration_ranges.versions + EXCLUDED.versions;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER integration_ranges_insert AFTER INSERT ON integrations
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION privint_integration_ranges();
CREATE TRIGGER integration_ranges_update AFTER UPDATE ON integrations
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION privint_integration_ranges();
CREATE TRIGGER integration_ranges_delete AFTER DELETE ON integrations
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION privint_integration_ranges();";

/// On SQLite (no statement-level triggers), one trigger per row change: `(name, event, row,
/// sign)` adds (`+`) the new row's count or takes away (`-`) the old row's.
const SQLITE_TRIGGERS: [(&str, &str, &str, &str); 4] = [
    ("insert", "INSERT", "NEW", "+"),
    ("update_old", "UPDATE", "OLD", "-"),
    ("update_new", "UPDATE", "NEW", "+"),
    ("delete", "DELETE", "OLD", "-"),
];

fn sqlite_trigger((name, event, row, sign): (&str, &str, &str, &str)) -> String {
    format!(
        "CREATE TRIGGER integration_ranges_{name} AFTER {event} ON integrations
         WHEN {row}.current_token_id IS NOT NULL BEGIN
            INSERT INTO integration_ranges (range_key, integrations, versions)
            VALUES (substr({row}.id, 35, 2), {sign}1, {sign}{row}.version)
            ON CONFLICT (range_key) DO UPDATE
            SET integrations = integrations + excluded.integrations,
                versions = versions + excluded.versions;
         END"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(CREATE).await?;
        db.execute_unprepared(FILL).await?;
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                for trigger in SQLITE_TRIGGERS {
                    db.execute_unprepared(&sqlite_trigger(trigger)).await?;
                }
            }
            _ => {
                db.execute_unprepared(POSTGRES).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                for (name, ..) in SQLITE_TRIGGERS {
                    db.execute_unprepared(&format!("DROP TRIGGER integration_ranges_{name}"))
                        .await?;
                }
            }
            _ => {
                for name in ["insert", "update", "delete"] {
                    db.execute_unprepared(&format!(
                        "DROP TRIGGER integration_ranges_{name} ON integrations"
                    ))
                    .await?;
                }
                db.execute_unprepared("DROP FUNCTION privint_integration_ranges()")
                    .await?;
            }
        }
        db.execute_unprepared("DROP TABLE integration_ranges")
            .await?;
        Ok(())
    }
}
