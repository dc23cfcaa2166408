//! Get and List show when a token was last used: Authorize bumps it in memory, it is
//! written in batches (and at shutdown), and other replicas see it once written.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{AGENCY, Backend, TestApp, authorize, create, deny_reason};
use privint::grpc::pb;

both_backends!(last_use_is_shown_kept_and_shared);

async fn last_use_is_shown_kept_and_shared(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = first.api().await;
    let (integration, token) = create(&mut api).await;
    assert!(integration.last_used_time.is_none());
    assert!(
        integration
            .current_token
            .as_ref()
            .expect("current")
            .last_used_time
            .is_none()
    );
    let get = pb::GetIntegrationRequest {
        id: integration.id.clone(),
    };

    // A denied call is not a use.
    assert!(deny_reason(&authorize(&first, &token, &["calendars.write"]).await).is_some());
    assert!(
        api.get_integration(get.clone())
            .await
            .expect("get")
            .into_inner()
            .last_used_time
            .is_none()
    );

    first.advance(chrono::Duration::minutes(5));
    assert_eq!(
        deny_reason(&authorize(&first, &token, &["contacts.readonly"]).await),
        None
    );
    let used = api
        .get_integration(get.clone())
        .await
        .expect("get")
        .into_inner();
    let last_used = used
        .last_used_time
        .expect("the use shows at once on the replica that saw it");
    assert_eq!(
        used.current_token.expect("current").last_used_time,
        Some(last_used)
    );
    assert!(last_used.seconds >= integration.create_time.expect("create time").seconds + 300);
    let list = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    let listed = api
        .list_integrations(list)
        .await
        .expect("list")
        .into_inner()
        .integrations;
    assert_eq!(listed[0].last_used_time, Some(last_used));

    // It is written at shutdown and kept across a restart...
    let first = first.restart().await;
    let after_restart = first
        .api()
        .await
        .get_integration(get.clone())
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        after_restart.last_used_time,
        Some(last_used),
        "written at shutdown, kept across the restart"
    );
    if backend == Backend::Sqlite {
        return; // Replicas need PostgreSQL: SQLite serves one process per file.
    }

    // ...and a later use on another replica (written every 10 s by default; 50 ms here)
    // reaches the first.
    let db = first.db.share();
    let mut settings = common::settings(&db);
    settings.usage_flush_interval = Duration::from_millis(50);
    let second = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
    let mut second_api = second.api().await;
    second.advance(chrono::Duration::minutes(10));
    assert_eq!(deny_reason(&authorize(&second, &token, &[]).await), None);
    let seen_there = second_api
        .get_integration(get.clone())
        .await
        .expect("get")
        .into_inner()
        .last_used_time
        .expect("used");
    assert!(seen_there.seconds > last_used.seconds);
    let started = Instant::now();
    let mut first_api = first.api().await;
    loop {
        let seen_here = first_api
            .get_integration(get.clone())
            .await
            .expect("get")
            .into_inner()
            .last_used_time;
        if seen_here == Some(seen_there) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the use never reached the first replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
