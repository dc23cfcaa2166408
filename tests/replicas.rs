//! Two replicas on one database: what one changes, the other applies through the
//! change feed (or, failing that, the periodic full reload), and Authorize reports how stale
//! its index may be.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestApp, authorize, create, deny_reason};
use pb::DenyReason::{MissingScopes, RevokedToken};
use privint::grpc::pb;

both_backends!(
    changes_reach_the_other_replica,
    the_full_reload_is_a_safety_net
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
