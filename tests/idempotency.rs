//! Idempotent create: a retry of CreateIntegration with the same client request id returns the
//! integration the first attempt made, without its token, instead of a duplicate.

mod common;

use std::collections::HashSet;

use common::{AGENCY, Backend, TestApp};
use privint::grpc::pb;
use tonic::Code;

both_backends!(a_retried_create_returns_the_first_integration);

fn request(name: &str, request_id: &str) -> pb::CreateIntegrationRequest {
    pb::CreateIntegrationRequest {
        request_id: request_id.to_owned(),
        ..common::location_integration(name, &["contacts.readonly"])
    }
}

async fn integration_count(api: &mut common::Api) -> usize {
    let list = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        page_size: 100,
        ..Default::default()
    };
    api.list_integrations(list)
        .await
        .expect("list")
        .into_inner()
        .integrations
        .len()
}

async fn a_retried_create_returns_the_first_integration(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let first = api
        .create_integration(request("Zapier", "job-42"))
        .await
        .expect("create")
        .into_inner();
    assert!(!first.replayed && !first.token.is_empty());
    let id = first.integration.expect("integration").id;

    // The retry (the first answer was lost on the way) finds it: no token, no second one.
    let retry = api
        .create_integration(request("Zapier", "job-42"))
        .await
        .expect("retry")
        .into_inner();
    assert!(retry.replayed);
    assert!(retry.token.is_empty(), "a token is shown once only");
    assert_eq!(retry.integration.expect("integration").id, id);
    assert_eq!(integration_count(&mut api).await, 1);
    let events = pb::ListEventsRequest {
        integration_id: id.clone(),
        ..Default::default()
    };
    let events = api.list_events(events).await.expect("events").into_inner();
    assert_eq!(events.events.len(), 1, "one integration.created");

    // Racing retries make one integration between them.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let mut api = api.clone();
            tokio::spawn(async move {
                api.create_integration(request("Make", "job-43"))
                    .await
                    .expect("create")
                    .into_inner()
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut new = 0;
    for racer in racers {
        let created = racer.await.expect("task");
        new += usize::from(!created.replayed);
        ids.insert(created.integration.expect("integration").id);
    }
    assert_eq!(
        (new, ids.len()),
        (1, 1),
        "one integration for one request id"
    );

    // The same id reused for another integration is refused; another caller has its own ids.
    let status = api
        .create_integration(request("Other", "job-42"))
        .await
        .expect_err("another integration");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let mut claims = common::user("agency_admin", AGENCY, &[], None);
    claims.sub = "another-admin".to_owned();
    let other = app
        .api_with(&common::jwt(claims))
        .await
        .create_integration(request("Zapier", "job-42"))
        .await
        .expect("create")
        .into_inner();
    assert!(!other.replayed);

    // After 24 hours the id is forgotten.
    app.advance(chrono::Duration::hours(25));
    let later = api
        .create_integration(request("Zapier", "job-42"))
        .await
        .expect("create")
        .into_inner();
    assert!(!later.replayed);
    assert_ne!(later.integration.expect("integration").id, id);

    let status = api
        .create_integration(request("Zapier", "has space"))
        .await
        .expect_err("invalid");
    common::assert_violation(&status, "request_id");
}
