//! IP allowlists: an integration may restrict its tokens to CIDR ranges; Authorize refuses
//! IP_NOT_ALLOWED a request from outside them, or without a client IP.

mod common;

use common::{AGENCY, Backend, TestApp, deny_reason};
use privint::grpc::pb;
use tonic::Code;

both_backends!(tokens_work_only_from_the_allowed_networks);

fn ranges(items: &[&str]) -> Vec<String> {
    items.iter().map(|it| (*it).to_owned()).collect()
}

async fn from(
    app: &TestApp,
    token: &str,
    client_ip: &str,
) -> Result<pb::AuthorizeResponse, tonic::Status> {
    let request = pb::AuthorizeRequest {
        client_ip: client_ip.to_owned(),
        ..common::authorize_request(token, &["contacts.readonly"])
    };
    app.authorizer()
        .await
        .authorize(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn reason(app: &TestApp, token: &str, client_ip: &str) -> Option<pb::DenyReason> {
    deny_reason(&from(app, token, client_ip).await.expect("authorize"))
}

async fn tokens_work_only_from_the_allowed_networks(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let create = pb::CreateIntegrationRequest {
        ip_allowlist: ranges(&["203.0.113.7/24", "2001:db8::/32"]),
        ..common::location_integration("Office only", &["contacts.readonly"])
    };
    let created = api
        .create_integration(create)
        .await
        .expect("create")
        .into_inner();
    let integration = created.integration.expect("integration");
    assert_eq!(
        integration.ip_allowlist,
        ["203.0.113.0/24", "2001:db8::/32"]
    );
    let token = created.token;

    for inside in ["203.0.113.200", "2001:db8:5::1", "::ffff:203.0.113.1"] {
        assert_eq!(reason(&app, &token, inside).await, None, "{inside}");
    }
    for outside in ["203.0.114.1", "198.51.100.7", "2001:db9::1", ""] {
        assert_eq!(
            reason(&app, &token, outside).await,
            Some(pb::DenyReason::IpNotAllowed),
            "{outside:?}: outside, or missing"
        );
    }
    let status = from(&app, &token, "not-an-ip").await.expect_err("invalid");
    common::assert_violation(&status, "client_ip");

    // Changed with the update mask; an empty list lifts the restriction.
    let update = |allowlist: &[&str]| pb::UpdateIntegrationRequest {
        integration: Some(pb::Integration {
            id: integration.id.clone(),
            ip_allowlist: ranges(allowlist),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["ip_allowlist".to_owned()],
        }),
    };
    let updated = api
        .update_integration(update(&["198.51.100.0/24"]))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.ip_allowlist, ["198.51.100.0/24"]);
    assert_eq!(
        reason(&app, &token, "203.0.113.200").await,
        Some(pb::DenyReason::IpNotAllowed)
    );
    assert_eq!(reason(&app, &token, "198.51.100.7").await, None);
    let lifted = api
        .update_integration(update(&[]))
        .await
        .expect("update")
        .into_inner();
    assert!(lifted.ip_allowlist.is_empty());
    assert_eq!(reason(&app, &token, "").await, None);

    // Bad ranges are refused whole.
    for bad in [
        ranges(&["10.0.0.0/33"]),
        ranges(&["bogus"]),
        (0..101).map(|i| format!("10.0.{i}.0/24")).collect(),
    ] {
        let create = pb::CreateIntegrationRequest {
            ip_allowlist: bad,
            ..common::location_integration("Bad", &["contacts.readonly"])
        };
        let status = api.create_integration(create).await.expect_err("invalid");
        common::assert_violation(&status, "ip_allowlist");
    }
    let list = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    let listed = api
        .list_integrations(list)
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.integrations.len(), 1, "nothing half-made");
    let status = api
        .update_integration(update(&["::/129"]))
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
}
