//! Two replicas on one database: what one changes, the other applies through the
//! change feed (or, failing that, the periodic full reload), and Authorize reports how stale
//! its index may be.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestApp, authorize, create, deny_reason};
use pb::DenyReason::{MissingScopes, RevokedToken};
use privint::grpc::pb;

// Replicas share PostgreSQL; SQLite serves one process per file (tests/faults.rs).
postgres_only!(
    changes_reach_the_other_replica,
    the_full_reload_is_a_safety_net,
    the_resync_catches_a_change_without_an_event,
    a_load_in_chunks_misses_no_change_made_meanwhile
);

/// Waits until `app` answers `expected` for `token` with `scopes`; returns how long it took.
async fn until(
    app: &TestApp,
    token: &str,
    scopes: &[&str],
    expected: Option<pb::DenyReason>,
) -> Duration {
    let started = Instant::now();
    loop {
        let answer = authorize(app, token, scopes).await;
        if deny_reason(&answer) == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the other replica never answered {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn second_replica(
    first: &TestApp,
    change: impl FnOnce(&mut privint::config::Settings),
) -> TestApp {
    let db = first.db.share();
    let mut settings = common::settings(&db);
    change(&mut settings);
    TestApp::spawn_with(db, settings, Arc::new(Default::default())).await
}

async fn changes_reach_the_other_replica(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let second = second_replica(&first, |_| {}).await;
    let mut api = first.api().await;

    let (integration, token) = create(&mut api).await;
    let created = until(&second, &token, &["contacts.write"], None).await;

    let update = pb::UpdateIntegrationRequest {
        integration: Some(pb::Integration {
            id: integration.id.clone(),
            scopes: vec!["contacts.readonly".to_owned()],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["scopes".to_owned()],
        }),
    };
    api.update_integration(update).await.expect("update");
    let updated = until(&second, &token, &["contacts.write"], Some(MissingScopes)).await;

    let rotate = pb::RotateTokenRequest {
        id: integration.id.clone(),
        expire_old_now: true,
        ..Default::default()
    };
    let rotated = api.rotate_token(rotate).await.expect("rotate").into_inner();
    let revoked = until(&second, &token, &[], Some(RevokedToken)).await;
    until(&second, &rotated.token, &["contacts.readonly"], None).await;

    api.delete_integration(pb::DeleteIntegrationRequest {
        id: integration.id,
        etag: String::new(),
    })
    .await
    .expect("delete");
    let deleted = until(&second, &rotated.token, &[], Some(RevokedToken)).await;
    eprintln!(
        "propagation: created {created:?}, scopes {updated:?}, revoked {revoked:?}, deleted {deleted:?}"
    );

    let staleness = authorize(&second, &rotated.token, &[])
        .await
        .index_staleness
        .expect("reported");
    assert!(
        staleness.seconds < 10,
        "a following replica is not far behind: {staleness:?}"
    );
}

async fn the_full_reload_is_a_safety_net(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    // A replica whose feed polling is, in effect, off: only the full reload brings changes.
    let second = second_replica(&first, |settings| {
        settings.change_feed.poll_interval = Duration::from_secs(3600);
        settings.change_feed.resync_interval = Duration::from_secs(1);
    })
    .await;
    let mut api = first.api().await;
    let (integration, token) = create(&mut api).await;
    until(&second, &token, &[], None).await;
    let expire = pb::ExpireTokenRequest {
        id: integration.id,
        target: pb::ExpireTarget::All.into(),
        etag: String::new(),
    };
    api.expire_token(expire).await.expect("expire");
    until(&second, &token, &[], Some(RevokedToken)).await;
}

/// Revokes the current token of `integration` and bumps its version, as an expiry does, but by
/// hand in the database: no event is written, so no change feed can see it.
async fn revoke_by_hand(app: &TestApp, integration: &pb::Integration) {
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect");
    let backend = sea_orm::ConnectionTrait::get_database_backend(&db);
    let now = chrono::Utc::now();
    let token_id = integration
        .current_token
        .as_ref()
        .expect("current")
        .id
        .clone();
    for (sql, values) in [
        (
            "UPDATE tokens SET revoke_time = $1 WHERE id = $2",
            vec![now.into(), token_id.into()],
        ),
        (
            "UPDATE integrations SET current_token_id = NULL, version = version + 1, \
             update_time = $1 WHERE id = $2",
            vec![now.into(), integration.id.clone().into()],
        ),
    ] {
        let sql = match backend {
            sea_orm::DbBackend::Sqlite => sql.replace("$1", "?").replace("$2", "?"),
            _ => sql.to_owned(),
        };
        sea_orm::ConnectionTrait::execute_raw(
            &db,
            sea_orm::Statement::from_sql_and_values(backend, sql, values),
        )
        .await
        .expect("change by hand");
    }
}

async fn the_resync_catches_a_change_without_an_event(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let second = second_replica(&first, |settings| {
        settings.change_feed.resync_interval = Duration::from_secs(1);
    })
    .await;
    let mut api = first.api().await;
    let mut made = Vec::new();
    for _ in 0..20 {
        made.push(create(&mut api).await);
    }
    for (_, token) in &made {
        until(&second, token, &[], None).await;
    }
    let (victim, token) = &made[7];
    revoke_by_hand(&first, victim).await;
    // The feed has nothing to read; the resync finds the range that differs and reloads it.
    let caught = until(&second, token, &[], Some(RevokedToken)).await;
    eprintln!("a change without an event reached the other replica in {caught:?}");
    for (_, other) in made.iter().filter(|(it, _)| it.id != victim.id) {
        assert_eq!(deny_reason(&authorize(&second, other, &[]).await), None);
    }
}

/// Writes `n` integrations with one live token each (of random digests) straight into the tables.
async fn seed(app: &TestApp, n: u64) {
    let db = sea_orm::Database::connect(&app.db.url)
        .await
        .expect("connect");
    let (series, id, hash) = match sea_orm::ConnectionTrait::get_database_backend(&db) {
        sea_orm::DbBackend::Sqlite => (
            format!(
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n})"
            ),
            "printf('00000000-0000-7000-%s-%012x', {}, g)",
            "randomblob(32)",
        ),
        _ => (
            format!("WITH s(g) AS (SELECT generate_series(1, {n}))"),
            "'00000000-0000-7000-' || {} || '-' || lpad(to_hex(g), 12, '0')",
            "sha256(int8send(g))",
        ),
    };
    let integration_id = id.replace("{}", "'8000'");
    let token_id = id.replace("{}", "'9000'");
    let now = "'2026-11-25 00:00:00+00:00'";
    for sql in [
        format!(
            "{series} INSERT INTO integrations (id, agency_id, location_id, name, description, \
             scopes, create_time, update_time, created_by, version, current_token_id, \
             previous_token_id, delete_time) SELECT {integration_id}, 'agency9', 'loc' || g, \
             'seeded', '', 'contacts.readonly', {now}, {now}, 'seed', 1, {token_id}, NULL, NULL \
             FROM s"
        ),
        format!(
            "{series} INSERT INTO tokens (id, integration_id, hash, hint, create_time, \
             expire_time, revoke_time, last_used_time) SELECT {token_id}, {integration_id}, \
             {hash}, 'pit-...seed', {now}, NULL, NULL, NULL FROM s"
        ),
    ] {
        sea_orm::ConnectionTrait::execute_unprepared(&db, &sql)
            .await
            .expect("seed");
    }
}

async fn a_load_in_chunks_misses_no_change_made_meanwhile(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    // More integrations than one chunk of the load holds, so the load takes several reads.
    seed(&first, 12_000).await;
    let mut api = first.api().await;
    let mut made = Vec::new();
    for _ in 0..10 {
        made.push(create(&mut api).await);
    }
    // Revocations commit while the second replica loads; the resync is far off, so only the
    // load and the change feed can bring them.
    let writer = tokio::spawn({
        let made: Vec<_> = made.iter().map(|(it, _)| it.id.clone()).collect();
        async move {
            for id in made {
                let rotate = pb::RotateTokenRequest {
                    id,
                    expire_old_now: true,
                    ..Default::default()
                };
                api.rotate_token(rotate).await.expect("rotate");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let second = second_replica(&first, |_| {}).await;
    writer.await.expect("writer");
    for (_, token) in &made {
        until(&second, token, &[], Some(RevokedToken)).await;
    }
    // The range digests the database keeps (by triggers, through bulk inserts and single
    // changes alike) are what counting the table finds.
    let db = sea_orm::Database::connect(&first.db.url)
        .await
        .expect("connect");
    let kept = range_rows(
        &db,
        "SELECT range_key AS r, integrations AS n, versions AS v FROM integration_ranges \
         WHERE integrations <> 0",
    )
    .await;
    let counted = range_rows(
        &db,
        "SELECT substr(id, 35, 2) AS r, COUNT(*) AS n, CAST(SUM(version) AS BIGINT) AS v \
         FROM integrations WHERE current_token_id IS NOT NULL GROUP BY substr(id, 35, 2)",
    )
    .await;
    assert_eq!(kept.len(), 256, "12,000 integrations fill every range");
    assert_eq!(kept, counted);
}

/// Returns the rows (range, count, versions) that `sql` selects as `r`, `n` and `v`, sorted.
async fn range_rows(db: &sea_orm::DatabaseConnection, sql: &str) -> Vec<(String, i64, i64)> {
    let backend = sea_orm::ConnectionTrait::get_database_backend(db);
    let statement = sea_orm::Statement::from_string(backend, sql.to_owned());
    let rows = sea_orm::ConnectionTrait::query_all_raw(db, statement)
        .await
        .expect("query");
    let mut digests: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|row| {
            (
                row.try_get("", "r").expect("range"),
                row.try_get("", "n").expect("count"),
                row.try_get("", "v").expect("versions"),
            )
        })
        .collect();
    digests.sort();
    digests
}
