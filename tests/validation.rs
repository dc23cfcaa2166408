//! Bad input: every invalid field is INVALID_ARGUMENT naming the field, and nothing
//! is half-written.

mod common;

use common::{AGENCY, Backend, LOCATION, TestApp, assert_violation, create, location_integration};
use privint::grpc::pb;
use tonic::Code;

both_backends!(
    create_fields,
    other_fields,
    oversized_messages_are_refused,
    refused_changes_write_nothing
);

async fn create_fields(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let long_name = "x".repeat(101);
    let long_description = "d".repeat(1001);
    let cases: Vec<(pb::CreateIntegrationRequest, &str)> = vec![
        (location_integration("   ", &["contacts.readonly"]), "name"),
        (
            location_integration(&long_name, &["contacts.readonly"]),
            "name",
        ),
        (location_integration("ok", &[]), "scopes"),
        (
            location_integration("ok", &["contacts.readonly", "no.such.scope"]),
            "scopes",
        ),
        (
            location_integration("ok", &["companies.readonly"]),
            "scopes",
        ),
        (
            pb::CreateIntegrationRequest {
                description: long_description,
                ..location_integration("ok", &["contacts.readonly"])
            },
            "description",
        ),
        (
            pb::CreateIntegrationRequest {
                agency_id: String::new(),
                ..location_integration("ok", &["contacts.readonly"])
            },
            "agency_id",
        ),
        (
            pb::CreateIntegrationRequest {
                location_id: "has space".to_owned(),
                ..location_integration("ok", &["contacts.readonly"])
            },
            "location_id",
        ),
        (
            pb::CreateIntegrationRequest {
                agency_id: "a".repeat(65),
                ..location_integration("ok", &["contacts.readonly"])
            },
            "agency_id",
        ),
    ];
    for (request, field) in cases {
        let status = api.create_integration(request).await.expect_err("invalid");
        assert_violation(&status, field);
    }
    // A name of exactly 100 characters (not bytes) is fine.
    let hundred = "é".repeat(100);
    api.create_integration(location_integration(&hundred, &["contacts.readonly"]))
        .await
        .expect("100 characters");
    // Nothing invalid was stored.
    let list = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    assert_eq!(
        api.list_integrations(list)
            .await
            .expect("list")
            .into_inner()
            .integrations
            .len(),
        1
    );
}

async fn other_fields(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, _) = create(&mut api).await;
    let status = api
        .get_integration(pb::GetIntegrationRequest {
            id: "not-an-id".to_owned(),
        })
        .await
        .expect_err("bad id");
    assert_violation(&status, "id");
    let unknown = pb::GetIntegrationRequest {
        id: "01234567-89ab-7def-8123-456789abcdef".to_owned(),
    };
    assert_eq!(
        api.get_integration(unknown)
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );

    for page_size in [-1, 101] {
        let request = pb::ListIntegrationsRequest {
            agency_id: AGENCY.to_owned(),
            page_size,
            ..Default::default()
        };
        assert_violation(
            &api.list_integrations(request).await.expect_err("page size"),
            "page_size",
        );
        let request = pb::ListEventsRequest {
            agency_id: AGENCY.to_owned(),
            page_size,
            ..Default::default()
        };
        assert_violation(
            &api.list_events(request).await.expect_err("page size"),
            "page_size",
        );
    }
    let request = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        page_token: "garbage".to_owned(),
        ..Default::default()
    };
    assert_violation(
        &api.list_integrations(request)
            .await
            .expect_err("page token"),
        "page_token",
    );
    let request = pb::ListEventsRequest {
        ..Default::default()
    };
    assert_violation(
        &api.list_events(request).await.expect_err("no filter"),
        "integration_id",
    );

    let update = |paths: &[&str], scopes: &[&str], name: &str| pb::UpdateIntegrationRequest {
        integration: Some(pb::Integration {
            id: integration.id.clone(),
            name: name.to_owned(),
            scopes: scopes.iter().map(|it| (*it).to_owned()).collect(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|it| (*it).to_owned()).collect(),
        }),
    };
    assert_violation(
        &api.update_integration(update(&[], &[], "x"))
            .await
            .expect_err("empty mask"),
        "update_mask",
    );
    assert_violation(
        &api.update_integration(update(&["etag"], &[], "x"))
            .await
            .expect_err("bad path"),
        "update_mask",
    );
    assert_violation(
        &api.update_integration(update(&["scopes"], &[], "x"))
            .await
            .expect_err("empty"),
        "integration.scopes",
    );
    assert_violation(
        &api.update_integration(update(&["scopes"], &["companies.readonly"], "x"))
            .await
            .expect_err("level"),
        "integration.scopes",
    );
    assert_violation(
        &api.update_integration(update(&["name"], &[], " "))
            .await
            .expect_err("blank"),
        "integration.name",
    );

    let negative = pb::RotateTokenRequest {
        id: integration.id.clone(),
        grace_period: Some(prost_types::Duration {
            seconds: -60,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_violation(
        &api.rotate_token(negative).await.expect_err("negative"),
        "grace_period",
    );
    let scopes = pb::ListScopesRequest { level: 99 };
    assert_violation(&api.list_scopes(scopes).await.expect_err("level"), "level");
}

async fn oversized_messages_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let huge = pb::CreateIntegrationRequest {
        description: "x".repeat(300 * 1024),
        ..location_integration("big", &["contacts.readonly"])
    };
    let status = api
        .create_integration(huge)
        .await
        .expect_err("over the 256 KiB limit");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let mut authorizer = app.authorizer().await;
    let huge = pb::AuthorizeRequest {
        token: "x".repeat(300 * 1024),
        location_id: LOCATION.to_owned(),
        ..Default::default()
    };
    assert_eq!(
        authorizer
            .authorize(huge)
            .await
            .expect_err("too big")
            .code(),
        Code::OutOfRange
    );
    // The server is still fine.
    create(&mut api).await;
}

async fn refused_changes_write_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, _) = create(&mut api).await;
    let bad_scopes = pb::UpdateIntegrationRequest {
        integration: Some(pb::Integration {
            id: integration.id.clone(),
            name: "renamed".to_owned(),
            scopes: vec!["contacts.readonly".to_owned(), "bogus.scope".to_owned()],
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["name".to_owned(), "scopes".to_owned()],
        }),
    };
    api.update_integration(bad_scopes)
        .await
        .expect_err("invalid scopes");
    let after = api
        .get_integration(pb::GetIntegrationRequest {
            id: integration.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        after, integration,
        "neither the name nor the scopes changed"
    );
    let events = pb::ListEventsRequest {
        integration_id: integration.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        api.list_events(events)
            .await
            .expect("events")
            .into_inner()
            .events
            .len(),
        1
    );
}
