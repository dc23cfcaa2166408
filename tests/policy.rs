//! Who may manage integrations: JWT verification and the role policy, end to end.

mod common;

use common::{AGENCY, Backend, LOCATION, TestApp, create, jwt, location_integration, signed, user};
use privint::grpc::auth::Audience;
use privint::grpc::pb;
use tonic::Code;

both_backends!(
    bad_jwts_are_unauthenticated,
    agency_admin_permissions,
    location_admin_reach,
    users_without_admin_roles
);

const AGENCY_PERMISSION: &str = "private_integrations.agency";
const LOCATIONS_PERMISSION: &str = "private_integrations.locations";

fn agency_integration() -> pb::CreateIntegrationRequest {
    pb::CreateIntegrationRequest {
        agency_id: AGENCY.to_owned(),
        name: "Agency reporting".to_owned(),
        scopes: vec!["companies.readonly".to_owned()],
        ..Default::default()
    }
}

async fn bad_jwts_are_unauthenticated(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let valid = user("agency_admin", AGENCY, &[], None);
    let mut expired = valid.clone();
    expired.exp = (chrono::Utc::now().timestamp() - 3600) as u64;
    let mut not_yet = valid.clone();
    not_yet.nbf = Some((chrono::Utc::now().timestamp() + 3600) as u64);
    let mut wrong_issuer = valid.clone();
    wrong_issuer.iss = "someone-else".to_owned();
    let mut wrong_audience = valid.clone();
    wrong_audience.aud = "another-service".into();
    let mut audiences_without_ours = valid.clone();
    audiences_without_ours.aud = Audience::Many(vec!["a".into(), "b".into()]);
    let bad = [
        signed(&valid, "a-different-secret-that-is-32-bytes-or-more"),
        jwt(expired),
        jwt(not_yet),
        jwt(wrong_issuer),
        jwt(wrong_audience),
        jwt(audiences_without_ours),
        "not.a.jwt".to_owned(),
        // alg "none" is never accepted.
        format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            jwt(valid.clone()).split('.').nth(1).expect("payload")
        ),
    ];
    for token in bad {
        let mut api = app.api_with(&token).await;
        let status = api
            .list_scopes(pb::ListScopesRequest::default())
            .await
            .expect_err("rejected");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "authentication failed");
    }
    let mut anonymous = app.anonymous_api().await;
    let status = anonymous
        .create_integration(location_integration("x", &["contacts.readonly"]))
        .await
        .expect_err("no JWT");
    assert_eq!(status.code(), Code::Unauthenticated);
    // Regression: an `aud` array holding the configured audience (RFC 7519; common identity
    // providers send one) was refused.
    let mut audiences = valid.clone();
    audiences.aud = Audience::Many(vec!["https://api.example.com".into(), "privint".into()]);
    for valid in [valid, audiences] {
        let mut api = app.api_with(&jwt(valid)).await;
        assert!(
            !api.list_scopes(pb::ListScopesRequest::default())
                .await
                .expect("valid JWT")
                .into_inner()
                .scopes
                .is_empty()
        );
    }
}

// Every failure answers the same vague UNAUTHENTICATED, but the log says which check failed,
// at info, without the JWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_jwt_failure_is_logged_with_its_reason() {
    let server = common::Binary::start(&[]);
    let valid = user("agency_admin", AGENCY, &[], None);
    let now = chrono::Utc::now().timestamp();
    let with = |change: &dyn Fn(&mut privint::grpc::auth::Claims)| {
        let mut claims = valid.clone();
        change(&mut claims);
        jwt(claims)
    };
    let cases = [
        ("expired", with(&|it| it.exp = (now - 3600) as u64)),
        (
            "not yet valid",
            with(&|it| it.nbf = Some((now + 3600) as u64)),
        ),
        ("issuer", with(&|it| it.iss = "someone-else".to_owned())),
        ("audience", with(&|it| it.aud = "another-service".into())),
        (
            "signature",
            signed(&valid, "a-different-secret-that-is-32-bytes-or-more"),
        ),
        ("malformed", "not.a.jwt".to_owned()),
        (
            "algorithm",
            format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                jwt(valid.clone()).split('.').nth(1).expect("payload")
            ),
        ),
    ];
    let channel = server.channel().await;
    for (_, token) in &cases {
        let status = common::api_on(channel.clone(), token)
            .list_scopes(pb::ListScopesRequest::default())
            .await
            .expect_err("refused");
        assert_eq!(status.message(), "authentication failed");
    }
    let log = server.stop();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("management caller authentication failed"))
        .collect();
    assert_eq!(lines.len(), cases.len(), "{log}");
    for ((reason, token), line) in cases.iter().zip(&lines) {
        assert!(line.contains(" INFO "), "{line}");
        assert!(
            line.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {line}"
        );
        let signature = token.rsplit('.').next().expect("a part");
        assert!(signature.is_empty() || !line.contains(signature), "{line}");
    }
}

async fn agency_admin_permissions(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut full = app.api().await;
    let (location_level, _) = create(&mut full).await;
    full.create_integration(agency_integration())
        .await
        .expect("no permissions claim: everything");

    let mut agency_only = app
        .api_with(&jwt(user(
            "agency_admin",
            AGENCY,
            &[],
            Some(&[AGENCY_PERMISSION]),
        )))
        .await;
    agency_only
        .create_integration(agency_integration())
        .await
        .expect("agency permission");
    let status = agency_only
        .create_integration(location_integration("x", &["contacts.readonly"]))
        .await
        .expect_err("no locations permission");
    assert_eq!(status.code(), Code::PermissionDenied);
    // It may still see the location's integration, but not change it.
    agency_only
        .get_integration(pb::GetIntegrationRequest {
            id: location_level.id.clone(),
        })
        .await
        .expect("visible");
    let delete = pb::DeleteIntegrationRequest {
        id: location_level.id.clone(),
        etag: String::new(),
    };
    assert_eq!(
        agency_only
            .delete_integration(delete.clone())
            .await
            .expect_err("forbidden")
            .code(),
        Code::PermissionDenied
    );

    let mut locations_only = app
        .api_with(&jwt(user(
            "agency_admin",
            AGENCY,
            &[],
            Some(&[LOCATIONS_PERMISSION]),
        )))
        .await;
    locations_only
        .create_integration(location_integration("x", &["contacts.readonly"]))
        .await
        .expect("locations permission");
    let status = locations_only
        .create_integration(agency_integration())
        .await
        .expect_err("no agency permission");
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut neither = app
        .api_with(&jwt(user(
            "agency_admin",
            AGENCY,
            &[],
            Some(&["something.else"]),
        )))
        .await;
    assert_eq!(
        neither
            .create_integration(agency_integration())
            .await
            .expect_err("no permission")
            .code(),
        Code::PermissionDenied
    );

    // Another agency's admin does not even learn that the integration exists.
    let mut other_agency = app
        .api_with(&jwt(user("agency_admin", "agency2", &[], None)))
        .await;
    let get = pb::GetIntegrationRequest {
        id: location_level.id.clone(),
    };
    assert_eq!(
        other_agency
            .get_integration(get)
            .await
            .expect_err("hidden")
            .code(),
        Code::NotFound
    );
    assert_eq!(
        other_agency
            .delete_integration(delete)
            .await
            .expect_err("hidden")
            .code(),
        Code::NotFound
    );
    let list = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    assert_eq!(
        other_agency
            .list_integrations(list)
            .await
            .expect_err("not theirs")
            .code(),
        Code::PermissionDenied
    );
    let events = pb::ListEventsRequest {
        integration_id: location_level.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        other_agency
            .list_events(events)
            .await
            .expect_err("hidden")
            .code(),
        Code::NotFound
    );
    locations_only
        .delete_integration(pb::DeleteIntegrationRequest {
            id: location_level.id,
            etag: String::new(),
        })
        .await
        .expect("allowed");
}

async fn location_admin_reach(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut admin = app.api().await;
    let (other_location, _) = admin
        .create_integration(pb::CreateIntegrationRequest {
            location_id: "loc2".to_owned(),
            ..location_integration("x", &["contacts.readonly"])
        })
        .await
        .expect("create")
        .into_inner()
        .integration
        .map(|it| (it, ()))
        .expect("integration");
    let agency_level = admin
        .create_integration(agency_integration())
        .await
        .expect("create")
        .into_inner()
        .integration
        .expect("integration");

    let mut location_admin = app
        .api_with(&jwt(user("location_admin", AGENCY, &[LOCATION], None)))
        .await;
    let (own, _) = create(&mut location_admin).await;
    let rotate = |id: &str| pb::RotateTokenRequest {
        id: id.to_owned(),
        expire_old_now: true,
        ..Default::default()
    };
    location_admin
        .rotate_token(rotate(&own.id))
        .await
        .expect("inside their location");
    for outside in [&other_location.id, &agency_level.id] {
        assert_eq!(
            location_admin
                .rotate_token(rotate(outside))
                .await
                .expect_err("outside")
                .code(),
            Code::NotFound
        );
        let get = pb::GetIntegrationRequest {
            id: outside.clone(),
        };
        assert_eq!(
            location_admin
                .get_integration(get)
                .await
                .expect_err("outside")
                .code(),
            Code::NotFound
        );
    }
    let elsewhere = pb::CreateIntegrationRequest {
        location_id: "loc2".to_owned(),
        ..location_integration("x", &["contacts.readonly"])
    };
    assert_eq!(
        location_admin
            .create_integration(elsewhere)
            .await
            .expect_err("outside")
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        location_admin
            .create_integration(agency_integration())
            .await
            .expect_err("agency level")
            .code(),
        Code::PermissionDenied
    );
    let whole_agency = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    assert_eq!(
        location_admin
            .list_integrations(whole_agency)
            .await
            .expect_err("agency-wide")
            .code(),
        Code::PermissionDenied
    );
    let own_location = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        location_id: LOCATION.to_owned(),
        ..Default::default()
    };
    let listed = location_admin
        .list_integrations(own_location)
        .await
        .expect("own location")
        .into_inner()
        .integrations;
    assert_eq!(
        listed.iter().map(|it| it.id.as_str()).collect::<Vec<_>>(),
        [own.id.as_str()]
    );

    // The same location id in another agency is another location.
    let mut elsewhere_admin = app
        .api_with(&jwt(user("location_admin", "agency2", &[LOCATION], None)))
        .await;
    let get = pb::GetIntegrationRequest { id: own.id.clone() };
    assert_eq!(
        elsewhere_admin
            .get_integration(get)
            .await
            .expect_err("other agency")
            .code(),
        Code::NotFound
    );
}

async fn users_without_admin_roles(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut admin = app.api().await;
    let (integration, _) = create(&mut admin).await;
    let delete = pb::DeleteIntegrationRequest {
        id: integration.id.clone(),
        etag: String::new(),
    };
    let get = pb::GetIntegrationRequest {
        id: integration.id.clone(),
    };

    for claims in [
        user("agency_user", AGENCY, &[], None),
        user("location_user", AGENCY, &[LOCATION], None),
    ] {
        let mut api = app.api_with(&jwt(claims)).await;
        api.get_integration(get.clone())
            .await
            .expect("members see their account's integrations");
        assert_eq!(
            api.delete_integration(delete.clone())
                .await
                .expect_err("not an admin")
                .code(),
            Code::PermissionDenied
        );
        let status = api
            .create_integration(location_integration("x", &["contacts.readonly"]))
            .await
            .expect_err("not an admin");
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let mut no_role = user("agency_admin", AGENCY, &[LOCATION], None);
    no_role.role = None;
    let mut unknown_role = no_role.clone();
    unknown_role.role = Some("superuser".to_owned());
    for claims in [no_role, unknown_role] {
        let mut api = app.api_with(&jwt(claims)).await;
        assert_eq!(
            api.get_integration(get.clone())
                .await
                .expect_err("no reach")
                .code(),
            Code::NotFound
        );
        assert_eq!(
            api.delete_integration(delete.clone())
                .await
                .expect_err("no reach")
                .code(),
            Code::NotFound
        );
        let status = api
            .create_integration(location_integration("x", &["contacts.readonly"]))
            .await
            .expect_err("no role");
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    admin
        .delete_integration(delete)
        .await
        .expect("the admin still can");
}
