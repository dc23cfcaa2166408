//! Least-privilege advice: an integration shows the granted scopes that no allowed
//! call required in the last 30 days, recorded in batches and shared between replicas.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestApp, authorize, create, deny_reason};
use privint::grpc::pb;

both_backends!(
    unused_scopes_follow_allowed_calls,
    calls_are_counted_per_day
);

async fn unused(api: &mut common::Api, id: &str) -> Vec<String> {
    let get = pb::GetIntegrationRequest { id: id.to_owned() };
    api.get_integration(get)
        .await
        .expect("get")
        .into_inner()
        .unused_scopes
}

async fn unused_scopes_follow_allowed_calls(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = first.api().await;
    let (integration, token) = create(&mut api).await;
    assert_eq!(
        integration.unused_scopes,
        ["contacts.readonly", "contacts.write"],
        "nothing used yet"
    );

    // A denied call requires nothing.
    assert!(
        deny_reason(&authorize(&first, &token, &["contacts.write", "calendars.write"]).await)
            .is_some()
    );
    assert_eq!(
        unused(&mut api, &integration.id).await,
        ["contacts.readonly", "contacts.write"]
    );
    assert_eq!(
        deny_reason(&authorize(&first, &token, &["contacts.readonly"]).await),
        None
    );
    assert_eq!(unused(&mut api, &integration.id).await, ["contacts.write"]);

    // A scope change keeps what is known of the scopes that stay.
    let update = pb::UpdateIntegrationRequest {
        integration: Some(pb::Integration {
            id: integration.id.clone(),
            scopes: vec![
                "contacts.readonly".to_owned(),
                "calendars.readonly".to_owned(),
            ],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["scopes".to_owned()],
        }),
    };
    let updated = api
        .update_integration(update)
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.unused_scopes, ["calendars.readonly"]);

    // Written at shutdown, so it survives a restart; another replica sees it once written.
    let first = first.restart().await;
    let mut api = first.api().await;
    assert_eq!(
        unused(&mut api, &integration.id).await,
        ["calendars.readonly"]
    );
    // A call on another replica reaches this one (replicas need PostgreSQL: SQLite serves one
    // process per file).
    if backend == Backend::Postgres {
        let db = first.db.share();
        let mut settings = common::settings(&db);
        settings.usage_flush_interval = Duration::from_millis(50);
        let second = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
        let mut second_api = second.api().await;
        assert_eq!(
            unused(&mut second_api, &integration.id).await,
            ["calendars.readonly"]
        );
        assert_eq!(
            deny_reason(&authorize(&second, &token, &["calendars.readonly"]).await),
            None
        );
        let started = Instant::now();
        while !unused(&mut api, &integration.id).await.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the use never reached the first replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Thirty days without a call and every scope is unused again.
    first.advance(chrono::Duration::days(31));
    assert_eq!(
        unused(&mut api, &integration.id).await,
        ["calendars.readonly", "contacts.readonly"]
    );
}

async fn daily(api: &mut common::Api, id: &str) -> Vec<(String, i64, i64)> {
    let get = pb::GetIntegrationRequest { id: id.to_owned() };
    let integration = api.get_integration(get).await.expect("get").into_inner();
    let days = integration.current_token.expect("current").daily_usage;
    days.into_iter()
        .map(|day| (day.date, day.allowed_calls, day.denied_calls))
        .collect()
}

async fn calls_are_counted_per_day(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = first.api().await;
    let (integration, token) = create(&mut api).await;
    let today = |app: &TestApp| app.clock_now().date_naive().to_string();
    let id = integration.id.clone();
    for _ in 0..3 {
        assert_eq!(
            deny_reason(&authorize(&first, &token, &["contacts.readonly"]).await),
            None
        );
    }
    assert!(deny_reason(&authorize(&first, &token, &["calendars.write"]).await).is_some());
    assert!(
        deny_reason(&common::authorize_on(&first, &token, &[], common::AGENCY, "loc2").await)
            .is_some()
    );
    // Calls that name no token of this integration count for nothing here.
    authorize(&first, "pit-garbage", &[]).await;
    assert_eq!(
        daily(&mut api, &id).await,
        [(today(&first), 3, 2)],
        "counted at once on this replica"
    );

    let first = first.restart().await;
    let mut api = first.api().await;
    assert_eq!(
        daily(&mut api, &id).await,
        [(today(&first), 3, 2)],
        "written at shutdown"
    );

    // Replicas add up (replicas need PostgreSQL: SQLite serves one process per file).
    let mut calls = 3;
    if backend == Backend::Postgres {
        let db = first.db.share();
        let mut settings = common::settings(&db);
        settings.usage_flush_interval = Duration::from_millis(50);
        let second = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
        assert_eq!(deny_reason(&authorize(&second, &token, &[]).await), None);
        calls = 4;
        let started = Instant::now();
        while daily(&mut api, &id).await != [(today(&first), calls, 2)] {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the second replica's call never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The next day has its own count.
    let yesterday = today(&first);
    first.advance(chrono::Duration::days(1));
    assert_eq!(deny_reason(&authorize(&first, &token, &[]).await), None);
    assert_eq!(
        daily(&mut api, &id).await,
        [(yesterday, calls, 2), (today(&first), 1, 0)]
    );
}
