//! Every lifecycle action end to end, with its effect on Authorize, on both databases.

mod common;

use chrono::Duration;
use common::{AGENCY, Backend, LOCATION, TestApp, authorize, create, deny_reason};
use pb::DenyReason::{ExpiredToken, MissingScopes, RevokedToken};
use privint::grpc::pb;
use tonic::Code;

both_backends!(
    create_get_list,
    update_changes_scopes_for_authorize_at_once,
    rotate_expire_old_now,
    rotate_with_grace_window,
    cancel_rotation,
    expire_previous_now,
    expire_now_then_rotate,
    schedule_expiry,
    delete,
    rotation_due_after_rotation_age,
    every_change_is_one_event,
    watch_events_streams_and_resumes,
    restart_keeps_tokens,
    concurrent_rotations_serialize,
);

fn grace(duration: Duration) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: duration.num_seconds(),
        nanos: 0,
    })
}

async fn rotate(
    api: &mut common::Api,
    id: &str,
    expire_old_now: bool,
    grace_period: Option<prost_types::Duration>,
) -> Result<pb::RotateTokenResponse, tonic::Status> {
    let request = pb::RotateTokenRequest {
        id: id.to_owned(),
        expire_old_now,
        grace_period,
        etag: String::new(),
    };
    api.rotate_token(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn expire(
    api: &mut common::Api,
    id: &str,
    target: pb::ExpireTarget,
) -> Result<pb::Integration, tonic::Status> {
    let request = pb::ExpireTokenRequest {
        id: id.to_owned(),
        target: target.into(),
        etag: String::new(),
    };
    api.expire_token(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn get(api: &mut common::Api, id: &str) -> Result<pb::Integration, tonic::Status> {
    api.get_integration(pb::GetIntegrationRequest { id: id.to_owned() })
        .await
        .map(tonic::Response::into_inner)
}

async fn create_get_list(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (first, token) = create(&mut api).await;
    assert!(token.starts_with("pit-"));
    assert_eq!(first.name, "Zapier");
    assert_eq!(first.location_id, LOCATION);
    assert_eq!(first.level(), pb::Level::Location);
    assert_eq!(first.scopes, ["contacts.readonly", "contacts.write"]);
    assert_eq!(first.created_by, "user-agency_admin");
    let current = first.current_token.clone().expect("a current token");
    assert!(token.ends_with(&current.hint["pit-…".len()..]));
    assert!(first.previous_token.is_none());

    // Get returns the same integration and never the token.
    let fetched = get(&mut api, &first.id).await.expect("get");
    assert_eq!(fetched, first);

    let agency_level = pb::CreateIntegrationRequest {
        agency_id: AGENCY.to_owned(),
        name: "  Reporting  ".to_owned(),
        scopes: vec![
            "companies.readonly".to_owned(),
            "locations.readonly".to_owned(),
            "companies.readonly".to_owned(),
        ],
        ..Default::default()
    };
    let second = api
        .create_integration(agency_level)
        .await
        .expect("create agency level")
        .into_inner()
        .integration
        .expect("integration");
    assert_eq!(second.name, "Reporting", "names are trimmed");
    assert_eq!(
        second.scopes,
        ["companies.readonly", "locations.readonly"],
        "scopes are sorted and deduplicated"
    );
    assert_eq!(second.level(), pb::Level::Agency);
    let (third, _) = create(&mut api).await;

    // Paged, in creation order, stable across pages.
    let list = |page_token: String, location: &str| pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        location_id: location.to_owned(),
        page_size: 2,
        page_token,
        ..Default::default()
    };
    let page1 = api
        .list_integrations(list(String::new(), ""))
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = page1.integrations.iter().map(|it| it.id.as_str()).collect();
    assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
    assert!(!page1.next_page_token.is_empty());
    let page2 = api
        .list_integrations(list(page1.next_page_token, ""))
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = page2.integrations.iter().map(|it| it.id.as_str()).collect();
    assert_eq!(ids, [third.id.as_str()]);
    assert!(page2.next_page_token.is_empty());
    let by_location = api
        .list_integrations(list(String::new(), LOCATION))
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = by_location
        .integrations
        .iter()
        .map(|it| it.id.as_str())
        .collect();
    assert_eq!(ids, [first.id.as_str(), third.id.as_str()]);
}

async fn update_changes_scopes_for_authorize_at_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    let denied = authorize(&app, &token, &["calendars.readonly"]).await;
    assert_eq!(deny_reason(&denied), Some(MissingScopes));
    assert_eq!(denied.missing_scopes, ["calendars.readonly"]);

    let update = |etag: &str| pb::UpdateIntegrationRequest {
        integration: Some(pb::Integration {
            id: integration.id.clone(),
            etag: etag.to_owned(),
            name: "Zapier (prod)".to_owned(),
            description: "ignored: not in the mask".to_owned(),
            scopes: vec!["calendars.readonly".to_owned()],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["name".to_owned(), "scopes".to_owned()],
        }),
    };
    let updated = api
        .update_integration(update(&integration.etag))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.name, "Zapier (prod)");
    assert_eq!(updated.description, integration.description);
    assert_eq!(updated.scopes, ["calendars.readonly"]);
    assert_ne!(updated.etag, integration.etag);
    // The token stays the same (only its usage has grown).
    let token_identity = |it: &pb::Integration| {
        it.current_token
            .as_ref()
            .map(|token| (token.id.clone(), token.hint.clone(), token.expire_time))
    };
    assert_eq!(
        token_identity(&updated),
        token_identity(&integration),
        "tokens do not change"
    );

    assert_eq!(
        deny_reason(&authorize(&app, &token, &["calendars.readonly"]).await),
        None
    );
    let denied = authorize(&app, &token, &["contacts.readonly"]).await;
    assert_eq!(deny_reason(&denied), Some(MissingScopes));

    // The old etag is stale now.
    let stale = api
        .update_integration(update(&integration.etag))
        .await
        .expect_err("stale etag");
    assert_eq!(stale.code(), Code::Aborted);
}

async fn rotate_expire_old_now(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;
    let rotated = rotate(&mut api, &integration.id, true, None)
        .await
        .expect("rotate");
    let after = rotated.integration.expect("integration");
    assert!(after.previous_token.is_none());
    assert_ne!(after.current_token, integration.current_token);
    assert_eq!(
        deny_reason(&authorize(&app, &old_token, &[]).await),
        Some(RevokedToken)
    );
    let allowed = authorize(&app, &rotated.token, &["contacts.write"]).await;
    assert_eq!(deny_reason(&allowed), None);
    assert!(!allowed.previous_token);
    assert_eq!(
        allowed.principal.expect("principal").token_id,
        after.current_token.expect("current").id
    );
    // With grace_period set, expire_old_now is contradictory.
    let status = rotate(&mut api, &integration.id, true, grace(Duration::hours(1)))
        .await
        .expect_err("contradictory");
    common::assert_violation(&status, "grace_period");
}

async fn rotate_with_grace_window(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;

    let rotated = rotate(&mut api, &integration.id, false, None)
        .await
        .expect("rotate with the default grace");
    let after = rotated.integration.expect("integration");
    let previous = after
        .previous_token
        .clone()
        .expect("the old token is previous");
    assert_eq!(
        Some(previous.id.clone()),
        integration.current_token.map(|it| it.id)
    );
    let expire = previous.expire_time.expect("previous token expires");
    let update = after.update_time.expect("update time");
    assert_eq!(
        expire.seconds - update.seconds,
        7 * 24 * 3600,
        "the default grace window is 7 days"
    );

    let old = authorize(&app, &old_token, &["contacts.readonly"]).await;
    assert_eq!(
        deny_reason(&old),
        None,
        "the old token works during the window"
    );
    assert!(old.previous_token, "and is flagged as the previous token");
    assert_eq!(old.expire_time, Some(expire));
    let new = authorize(&app, &rotated.token, &["contacts.readonly"]).await;
    assert_eq!(deny_reason(&new), None);
    assert!(!new.previous_token);

    // A second rotation while the previous token is live is refused.
    let refused = rotate(&mut api, &integration.id, false, None)
        .await
        .expect_err("rotation in progress");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("cancel the rotation or expire the previous token"),
        "{}",
        refused.message()
    );
    let refused = rotate(&mut api, &integration.id, true, None)
        .await
        .expect_err("rotation in progress");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // At the end of the window the old token stops by itself, with no event.
    app.advance(Duration::days(7));
    assert_eq!(
        deny_reason(&authorize(&app, &old_token, &[]).await),
        Some(ExpiredToken)
    );
    assert_eq!(
        deny_reason(&authorize(&app, &rotated.token, &[]).await),
        None
    );
    assert!(
        get(&mut api, &integration.id)
            .await
            .expect("get")
            .previous_token
            .is_none()
    );

    // Now a rotation with a custom window works; the bounds are 1 minute to 30 days.
    let short = rotate(
        &mut api,
        &integration.id,
        false,
        grace(Duration::minutes(1)),
    )
    .await
    .expect("one minute");
    let previous = short
        .integration
        .expect("integration")
        .previous_token
        .expect("previous");
    app.advance(Duration::seconds(59));
    assert_eq!(
        deny_reason(&authorize(&app, &rotated.token, &[]).await),
        None
    );
    app.advance(Duration::seconds(1));
    assert_eq!(
        deny_reason(&authorize(&app, &rotated.token, &[]).await),
        Some(ExpiredToken)
    );
    assert!(previous.expire_time.is_some());
    for bad in [
        Duration::seconds(59),
        Duration::days(30) + Duration::seconds(1),
    ] {
        let status = rotate(&mut api, &integration.id, false, grace(bad))
            .await
            .expect_err("out of range");
        common::assert_violation(&status, "grace_period");
    }
}

async fn cancel_rotation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;
    let cancel = |id: &str| pb::CancelRotationRequest {
        id: id.to_owned(),
        etag: String::new(),
    };
    let status = api
        .cancel_rotation(cancel(&integration.id))
        .await
        .expect_err("nothing to cancel");
    assert_eq!(status.code(), Code::FailedPrecondition);

    let rotated = rotate(&mut api, &integration.id, false, grace(Duration::hours(1)))
        .await
        .expect("rotate");
    let after = api
        .cancel_rotation(cancel(&integration.id))
        .await
        .expect("cancel")
        .into_inner();
    let current = after.current_token.expect("current");
    assert_eq!(
        Some(current.clone()),
        integration.current_token,
        "the old token is current again"
    );
    assert!(current.expire_time.is_none(), "with no expiry");
    assert!(after.previous_token.is_none());
    assert_eq!(
        deny_reason(&authorize(&app, &rotated.token, &[]).await),
        Some(RevokedToken)
    );
    let old = authorize(&app, &old_token, &[]).await;
    assert_eq!(deny_reason(&old), None);
    assert!(!old.previous_token);
    assert!(old.expire_time.is_none());
    // Long after the window would have closed, the old token still works.
    app.advance(Duration::days(60));
    assert_eq!(deny_reason(&authorize(&app, &old_token, &[]).await), None);
}

async fn expire_previous_now(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;
    let status = expire(&mut api, &integration.id, pb::ExpireTarget::Previous)
        .await
        .expect_err("no previous");
    assert_eq!(status.code(), Code::FailedPrecondition);

    let rotated = rotate(&mut api, &integration.id, false, None)
        .await
        .expect("rotate");
    let after = expire(&mut api, &integration.id, pb::ExpireTarget::Previous)
        .await
        .expect("expire previous");
    assert!(after.previous_token.is_none());
    assert_eq!(
        after.current_token,
        rotated.integration.expect("integration").current_token,
        "current untouched"
    );
    assert_eq!(
        deny_reason(&authorize(&app, &old_token, &[]).await),
        Some(RevokedToken)
    );
    assert_eq!(
        deny_reason(&authorize(&app, &rotated.token, &[]).await),
        None
    );
    let status = expire(&mut api, &integration.id, pb::ExpireTarget::Unspecified)
        .await
        .expect_err("no target");
    common::assert_violation(&status, "target");
}

async fn expire_now_then_rotate(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;
    let rotated = rotate(&mut api, &integration.id, false, None)
        .await
        .expect("rotate");
    let after = expire(&mut api, &integration.id, pb::ExpireTarget::All)
        .await
        .expect("expire all");
    assert!(after.current_token.is_none() && after.previous_token.is_none());
    for token in [&old_token, &rotated.token] {
        assert_eq!(
            deny_reason(&authorize(&app, token, &[]).await),
            Some(RevokedToken)
        );
    }
    // The integration stays, without a token, until a rotation issues one.
    assert!(
        get(&mut api, &integration.id)
            .await
            .expect("still there")
            .current_token
            .is_none()
    );
    let status = expire(&mut api, &integration.id, pb::ExpireTarget::All)
        .await
        .expect_err("nothing live");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let reissued = rotate(&mut api, &integration.id, false, None)
        .await
        .expect("rotate issues a token");
    assert!(
        reissued
            .integration
            .expect("integration")
            .previous_token
            .is_none()
    );
    assert_eq!(
        deny_reason(&authorize(&app, &reissued.token, &["contacts.readonly"]).await),
        None
    );
    for token in [&old_token, &rotated.token] {
        assert_eq!(
            deny_reason(&authorize(&app, token, &[]).await),
            Some(RevokedToken),
            "revoked tokens never come back"
        );
    }
}

async fn schedule_expiry(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    let now = integration.create_time.expect("create time");
    let at = |seconds: i64| {
        Some(prost_types::Timestamp {
            seconds: now.seconds + seconds,
            nanos: 0,
        })
    };
    let schedule = |expire_time| pb::ScheduleTokenExpiryRequest {
        id: integration.id.clone(),
        expire_time,
        etag: String::new(),
    };

    let after = api
        .schedule_token_expiry(schedule(at(3600)))
        .await
        .expect("schedule")
        .into_inner();
    assert_eq!(after.current_token.expect("current").expire_time, at(3600));
    assert_eq!(authorize(&app, &token, &[]).await.expire_time, at(3600));

    let cleared = api
        .schedule_token_expiry(schedule(None))
        .await
        .expect("clear")
        .into_inner();
    assert!(
        cleared
            .current_token
            .expect("current")
            .expire_time
            .is_none()
    );
    app.advance(Duration::hours(2));
    assert_eq!(
        deny_reason(&authorize(&app, &token, &[]).await),
        None,
        "a cleared expiry does not apply"
    );

    api.schedule_token_expiry(schedule(at(3 * 3600)))
        .await
        .expect("schedule");
    app.advance(Duration::hours(1));
    assert_eq!(
        deny_reason(&authorize(&app, &token, &[]).await),
        Some(ExpiredToken)
    );
    let status = api
        .schedule_token_expiry(schedule(None))
        .await
        .expect_err("no live current token");
    assert_eq!(status.code(), Code::FailedPrecondition);

    let (other, _) = create(&mut api).await;
    let request = |expire_time| pb::ScheduleTokenExpiryRequest {
        id: other.id.clone(),
        expire_time,
        etag: String::new(),
    };
    for bad in [at(-60), at(366 * 24 * 3600 + 3 * 3600)] {
        let status = api
            .schedule_token_expiry(request(bad))
            .await
            .expect_err("out of range");
        common::assert_violation(&status, "expire_time");
    }
}

async fn delete(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;
    let rotated = rotate(&mut api, &integration.id, false, None)
        .await
        .expect("rotate");
    let stale = pb::DeleteIntegrationRequest {
        id: integration.id.clone(),
        etag: integration.etag.clone(),
    };
    assert_eq!(
        api.delete_integration(stale)
            .await
            .expect_err("stale etag")
            .code(),
        Code::Aborted
    );
    let request = pb::DeleteIntegrationRequest {
        id: integration.id.clone(),
        etag: String::new(),
    };
    api.delete_integration(request.clone())
        .await
        .expect("delete");
    for token in [&old_token, &rotated.token] {
        assert_eq!(
            deny_reason(&authorize(&app, token, &[]).await),
            Some(RevokedToken)
        );
    }
    assert_eq!(
        get(&mut api, &integration.id)
            .await
            .expect_err("gone")
            .code(),
        Code::NotFound
    );
    assert_eq!(
        api.delete_integration(request)
            .await
            .expect_err("gone")
            .code(),
        Code::NotFound
    );
    let list = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    assert!(
        api.list_integrations(list)
            .await
            .expect("list")
            .into_inner()
            .integrations
            .is_empty()
    );
    // Its audit events stay.
    let events = pb::ListEventsRequest {
        integration_id: integration.id.clone(),
        ..Default::default()
    };
    let events = api
        .list_events(events)
        .await
        .expect("events")
        .into_inner()
        .events;
    let types: Vec<&str> = events.iter().map(|it| it.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "integration.deleted",
            "token.rotated",
            "integration.created"
        ]
    );
}

async fn rotation_due_after_rotation_age(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, _) = create(&mut api).await;
    assert!(!integration.rotation_due);
    app.advance(Duration::days(89));
    assert!(
        !get(&mut api, &integration.id)
            .await
            .expect("get")
            .rotation_due
    );
    app.advance(Duration::days(1));
    assert!(
        get(&mut api, &integration.id)
            .await
            .expect("get")
            .rotation_due,
        "due at the 90-day rotation age"
    );
    let rotated = rotate(&mut api, &integration.id, true, None)
        .await
        .expect("rotate");
    assert!(!rotated.integration.expect("integration").rotation_due);
}

async fn every_change_is_one_event(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    let id = integration.id.clone();
    let update = pb::UpdateIntegrationRequest {
        integration: Some(pb::Integration {
            id: id.clone(),
            description: "new".to_owned(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["description".to_owned()],
        }),
    };
    api.update_integration(update).await.expect("update");
    rotate(&mut api, &id, false, None).await.expect("rotate");
    api.cancel_rotation(pb::CancelRotationRequest {
        id: id.clone(),
        etag: String::new(),
    })
    .await
    .expect("cancel");
    let in_an_hour = integration.create_time.map(|it| prost_types::Timestamp {
        seconds: it.seconds + 3600,
        nanos: 0,
    });
    let schedule = pb::ScheduleTokenExpiryRequest {
        id: id.clone(),
        expire_time: in_an_hour,
        etag: String::new(),
    };
    api.schedule_token_expiry(schedule).await.expect("schedule");
    expire(&mut api, &id, pb::ExpireTarget::All)
        .await
        .expect("expire");
    // A refused action leaves no event.
    expire(&mut api, &id, pb::ExpireTarget::All)
        .await
        .expect_err("nothing to expire");
    api.delete_integration(pb::DeleteIntegrationRequest {
        id: id.clone(),
        etag: String::new(),
    })
    .await
    .expect("delete");

    let request = pb::ListEventsRequest {
        agency_id: AGENCY.to_owned(),
        page_size: 3,
        ..Default::default()
    };
    let mut events = Vec::new();
    let mut page = api
        .list_events(request.clone())
        .await
        .expect("events")
        .into_inner();
    events.append(&mut page.events);
    while !page.next_page_token.is_empty() {
        let next = pb::ListEventsRequest {
            page_token: page.next_page_token.clone(),
            ..request.clone()
        };
        page = api.list_events(next).await.expect("events").into_inner();
        events.append(&mut page.events);
    }
    let types: Vec<&str> = events.iter().rev().map(|it| it.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "integration.created",
            "integration.updated",
            "token.rotated",
            "token.rotation_cancelled",
            "token.expiry_scheduled",
            "token.expired",
            "integration.deleted",
        ]
    );
    for event in &events {
        assert_eq!(event.actor, "user-agency_admin");
        assert_eq!(event.integration_id, id);
        assert_eq!(
            (event.agency_id.as_str(), event.location_id.as_str()),
            (AGENCY, LOCATION)
        );
        for value in event.details.values() {
            assert!(!value.contains(&token), "an event holds no token");
        }
    }
    let created = events.last().expect("created");
    assert_eq!(
        created.details.get("scopes").map(String::as_str),
        Some("contacts.readonly contacts.write")
    );
}

async fn watch_events_streams_and_resumes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, _) = create(&mut api).await;
    let watch = |after_id: &str| pb::WatchEventsRequest {
        integration_id: integration.id.clone(),
        after_id: after_id.to_owned(),
        ..Default::default()
    };
    let mut stream = api
        .watch_events(watch(""))
        .await
        .expect("watch")
        .into_inner();
    rotate(&mut api, &integration.id, true, None)
        .await
        .expect("rotate");
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("event");
    assert_eq!(event.r#type, "token.rotated");

    // Resuming from the first event replays what came after it.
    let first = api
        .list_events(pb::ListEventsRequest {
            integration_id: integration.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .events;
    let created = first.last().expect("created event");
    let mut resumed = api
        .watch_events(watch(&created.id))
        .await
        .expect("watch")
        .into_inner();
    let replayed = tokio::time::timeout(std::time::Duration::from_secs(10), resumed.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("event");
    assert_eq!(replayed, event);

    // Regression: a stream could not start from the very first event (after_id 0 meant "from
    // now"). With from_start it replays everything, then follows.
    let from_start = pb::WatchEventsRequest {
        integration_id: integration.id.clone(),
        from_start: true,
        ..Default::default()
    };
    let mut everything = api
        .watch_events(from_start.clone())
        .await
        .expect("watch")
        .into_inner();
    // `first` lists the creation and the rotation, newest first.
    for expected in first.iter().rev() {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), everything.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("event");
        assert_eq!(&next, expected);
    }
    let both = pb::WatchEventsRequest {
        after_id: created.id.clone(),
        ..from_start
    };
    let status = api.watch_events(both).await.expect_err("ambiguous");
    common::assert_violation(&status, "after_id");

    // An account watcher sees its agency's events only.
    let by_agency = pb::WatchEventsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    let mut agency_stream = api
        .watch_events(by_agency)
        .await
        .expect("watch")
        .into_inner();
    let mut other_agency = app
        .api_with(&common::jwt(common::user(
            "agency_admin",
            "agency2",
            &[],
            None,
        )))
        .await;
    let elsewhere = pb::CreateIntegrationRequest {
        agency_id: "agency2".to_owned(),
        ..common::location_integration("Other", &["contacts.readonly"])
    };
    other_agency
        .create_integration(elsewhere)
        .await
        .expect("create in agency2");
    let (mine, _) = create(&mut api).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), agency_stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("event");
    assert_eq!(
        (next.r#type.as_str(), next.integration_id.as_str()),
        ("integration.created", mine.id.as_str())
    );
}

async fn restart_keeps_tokens(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;
    let rotated = rotate(&mut api, &integration.id, false, grace(Duration::hours(1)))
        .await
        .expect("rotate");
    let (revoked, revoked_token) = create(&mut api).await;
    expire(&mut api, &revoked.id, pb::ExpireTarget::All)
        .await
        .expect("expire");
    let before = [
        authorize(&app, &old_token, &["contacts.readonly"]).await,
        authorize(&app, &rotated.token, &["contacts.write"]).await,
        authorize(&app, &revoked_token, &[]).await,
        authorize(&app, &rotated.token, &["users.write"]).await,
    ];
    let app = app.restart().await;
    let after = [
        authorize(&app, &old_token, &["contacts.readonly"]).await,
        authorize(&app, &rotated.token, &["contacts.write"]).await,
        authorize(&app, &revoked_token, &[]).await,
        authorize(&app, &rotated.token, &["users.write"]).await,
    ];
    // The same answers, but for how stale each index was at the time.
    let without_staleness = |answers: [pb::AuthorizeResponse; 4]| {
        answers.map(|answer| pb::AuthorizeResponse {
            index_staleness: None,
            ..answer
        })
    };
    assert_eq!(
        without_staleness(before.clone()),
        without_staleness(after.clone())
    );
    assert_eq!(deny_reason(&after[0]), None);
    assert!(after[0].previous_token);
    assert_eq!(deny_reason(&after[2]), Some(RevokedToken));
    let mut api = app.api().await;
    let mut fetched = get(&mut api, &integration.id)
        .await
        .expect("get after restart");
    // The same integration, now with the uses made before the restart.
    assert!(fetched.last_used_time.is_some());
    fetched.last_used_time = None;
    for token in [&mut fetched.current_token, &mut fetched.previous_token]
        .into_iter()
        .flatten()
    {
        assert!(
            token.last_used_time.take().is_some(),
            "both tokens were used"
        );
        assert!(
            !std::mem::take(&mut token.daily_usage).is_empty(),
            "and counted"
        );
    }
    assert!(
        fetched.unused_scopes.is_empty(),
        "both scopes were required before the restart"
    );
    let mut expected = rotated.integration.expect("integration");
    expected.unused_scopes.clear();
    assert_eq!(fetched, expected);
}

async fn concurrent_rotations_serialize(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, old_token) = create(&mut api).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut api = api.clone();
        let id = integration.id.clone();
        calls.spawn(async move { rotate(&mut api, &id, false, None).await });
    }
    let mut tokens = Vec::new();
    let mut refused = 0;
    while let Some(result) = calls.join_next().await {
        match result.expect("task") {
            Ok(rotated) => tokens.push(rotated.token),
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(
        (tokens.len(), refused),
        (1, 7),
        "one rotation wins; the others see the open window"
    );
    assert_eq!(deny_reason(&authorize(&app, &tokens[0], &[]).await), None);
    assert!(authorize(&app, &old_token, &[]).await.previous_token);
    let after = get(&mut api, &integration.id).await.expect("get");
    assert_eq!(after.etag, "v2", "exactly one change was written");

    // Rotations that expire the old token all succeed, one after another: only the last token works.
    expire(&mut api, &integration.id, pb::ExpireTarget::Previous)
        .await
        .expect("expire previous");
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut api = api.clone();
        let id = integration.id.clone();
        calls.spawn(async move { rotate(&mut api, &id, true, None).await });
    }
    let mut tokens = Vec::new();
    while let Some(result) = calls.join_next().await {
        tokens.push(result.expect("task").expect("rotate now").token);
    }
    let mut allowed = 0;
    for token in &tokens {
        match deny_reason(&authorize(&app, token, &[]).await) {
            None => allowed += 1,
            Some(reason) => assert_eq!(reason, RevokedToken),
        }
    }
    assert_eq!(allowed, 1, "exactly one live token");
    assert_eq!(
        get(&mut api, &integration.id).await.expect("get").etag,
        "v11"
    );
}
