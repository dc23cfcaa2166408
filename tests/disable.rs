//! Disable and enable: every token of a disabled integration is refused DISABLED, enabling
//! restores them as they were (expiry times keep running), both are audited, and other
//! replicas follow.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestApp, authorize, create, deny_reason};
use privint::grpc::pb;
use tonic::Code;

both_backends!(disable_and_enable);
postgres_only!(other_replicas_follow_disable_and_enable);

async fn disable(api: &mut common::Api, id: &str) -> Result<pb::Integration, tonic::Status> {
    let request = pb::DisableIntegrationRequest {
        id: id.to_owned(),
        etag: String::new(),
    };
    api.disable_integration(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn enable(api: &mut common::Api, id: &str) -> Result<pb::Integration, tonic::Status> {
    let request = pb::EnableIntegrationRequest {
        id: id.to_owned(),
        etag: String::new(),
    };
    api.enable_integration(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn disable_and_enable(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old) = create(&mut api).await;
    let id = integration.id.clone();
    let rotate = pb::RotateTokenRequest {
        id: id.clone(),
        grace_period: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    };
    let new = api
        .rotate_token(rotate)
        .await
        .expect("rotate")
        .into_inner()
        .token;
    let schedule = pb::ScheduleTokenExpiryRequest {
        id: id.clone(),
        expire_time: Some(prost_types::Timestamp {
            seconds: (app.clock_now() + chrono::Duration::hours(2)).timestamp(),
            nanos: 0,
        }),
        etag: String::new(),
    };
    api.schedule_token_expiry(schedule).await.expect("schedule");

    let disabled = disable(&mut api, &id).await.expect("disable");
    assert!(disabled.disable_time.is_some());
    for token in [&old, &new] {
        let answer = authorize(&app, token, &["contacts.readonly"]).await;
        assert_eq!(deny_reason(&answer), Some(pb::DenyReason::Disabled));
    }
    let status = disable(&mut api, &id).await.expect_err("twice");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let listed = api
        .list_integrations(pb::ListIntegrationsRequest {
            agency_id: common::AGENCY.to_owned(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .integrations;
    assert!(listed[0].disable_time.is_some(), "shown on List");

    // Time runs on while disabled: the previous token's grace ends, nothing else changes.
    app.advance(chrono::Duration::minutes(90));
    let enabled = enable(&mut api, &id).await.expect("enable");
    assert!(enabled.disable_time.is_none());
    let slot = |it: &pb::Integration| {
        let token = it.current_token.clone().expect("current");
        (token.id, token.expire_time)
    };
    assert_eq!(
        slot(&enabled),
        slot(&disabled),
        "the tokens are as they were"
    );
    assert_eq!(
        deny_reason(&authorize(&app, &new, &["contacts.readonly"]).await),
        None
    );
    assert_eq!(
        deny_reason(&authorize(&app, &old, &[]).await),
        Some(pb::DenyReason::ExpiredToken)
    );
    let status = enable(&mut api, &id).await.expect_err("not disabled");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    app.advance(chrono::Duration::minutes(31));
    assert_eq!(
        deny_reason(&authorize(&app, &new, &[]).await),
        Some(pb::DenyReason::ExpiredToken),
        "the scheduled expiry kept running"
    );

    let events = api
        .list_events(pb::ListEventsRequest {
            integration_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("events")
        .into_inner()
        .events;
    let types: Vec<&str> = events.iter().map(|it| it.r#type.as_str()).collect();
    assert_eq!(
        types[..2],
        ["integration.enabled", "integration.disabled"],
        "{types:?}"
    );
}

/// Waits until `app` answers `expected` for `token`.
async fn until(app: &TestApp, token: &str, expected: Option<pb::DenyReason>) {
    let started = Instant::now();
    while deny_reason(&authorize(app, token, &[]).await) != expected {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never answered {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn other_replicas_follow_disable_and_enable(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let db = first.db.share();
    let settings = common::settings(&first.db);
    let second = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
    let mut api = first.api().await;
    let (integration, token) = create(&mut api).await;
    until(&second, &token, None).await;

    disable(&mut api, &integration.id).await.expect("disable");
    until(&second, &token, Some(pb::DenyReason::Disabled)).await;
    let mut second_api = second.api().await;
    enable(&mut second_api, &integration.id)
        .await
        .expect("enable on the other replica");
    until(&first, &token, None).await;
    until(&second, &token, None).await;
}
