//! ListIntegrations filters: integrations with a token expiring before a time, and those due
//! for rotation.

mod common;

use common::{AGENCY, Backend, TestApp, create};
use privint::grpc::pb;

both_backends!(list_what_needs_attention);

fn later(app: &TestApp, by: chrono::Duration) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (app.clock_now() + by).timestamp(),
        nanos: 0,
    }
}

async fn ids(api: &mut common::Api, request: pb::ListIntegrationsRequest) -> Vec<String> {
    let mut ids: Vec<String> = api
        .list_integrations(request)
        .await
        .expect("list")
        .into_inner()
        .integrations
        .into_iter()
        .map(|it| it.id)
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<&str>) -> Vec<String> {
    ids.sort_unstable();
    ids.into_iter().map(str::to_owned).collect()
}

async fn list_what_needs_attention(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (scheduled, _) = create(&mut api).await;
    let (rotated, _) = create(&mut api).await;
    let (plain, _) = create(&mut api).await;
    let schedule = pb::ScheduleTokenExpiryRequest {
        id: scheduled.id.clone(),
        expire_time: Some(later(&app, chrono::Duration::days(3))),
        etag: String::new(),
    };
    api.schedule_token_expiry(schedule).await.expect("schedule");
    let rotate = |id: &str| pb::RotateTokenRequest {
        id: id.to_owned(),
        grace_period: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        ..Default::default()
    };
    api.rotate_token(rotate(&rotated.id)).await.expect("rotate");

    let expiring = |app: &TestApp, within: chrono::Duration| pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        expiring_before: Some(later(app, within)),
        ..Default::default()
    };
    // The rotated one's previous token ends in an hour; the scheduled one in three days.
    assert_eq!(
        ids(&mut api, expiring(&app, chrono::Duration::days(2))).await,
        sorted(vec![&rotated.id])
    );
    assert_eq!(
        ids(&mut api, expiring(&app, chrono::Duration::days(4))).await,
        sorted(vec![&rotated.id, &scheduled.id])
    );
    // What has already ended is not "expiring".
    app.advance(chrono::Duration::hours(2));
    assert_eq!(
        ids(&mut api, expiring(&app, chrono::Duration::days(2))).await,
        Vec::<String>::new()
    );

    // Rotation is due at 90 days (the default rotation age) of the current token.
    app.advance(chrono::Duration::days(45));
    api.rotate_token(rotate(&plain.id)).await.expect("rotate");
    app.advance(chrono::Duration::days(46));
    let due = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        rotation_due: true,
        ..Default::default()
    };
    // The scheduled one's token expired (day 3): it is still its current token, and old.
    assert_eq!(
        ids(&mut api, due).await,
        sorted(vec![&scheduled.id, &rotated.id]),
        "{plain:?} was rotated 46 days ago"
    );
    let all = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    let flagged: Vec<String> = api
        .list_integrations(all)
        .await
        .expect("list")
        .into_inner()
        .integrations
        .into_iter()
        .filter(|it| it.rotation_due)
        .map(|it| it.id)
        .collect();
    assert_eq!(flagged.len(), 2, "the filter agrees with the flag");
}
