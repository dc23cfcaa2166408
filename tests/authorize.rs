//! Authorize end to end: every deny reason, account rules, and malformed requests.

mod common;

use common::{AGENCY, Backend, LOCATION, TestApp, authorize, authorize_on, create, deny_reason};
use pb::DenyReason::{
    ExpiredToken, MalformedToken, MissingScopes, RevokedToken, UnknownToken, WrongAccount,
};
use privint::grpc::pb;
use tonic::Code;

both_backends!(
    every_deny_reason,
    account_rules,
    bearer_header_and_principal,
    malformed_requests_are_errors,
    a_retired_token_is_forgotten_after_the_retention
);

async fn every_deny_reason(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;

    for garbage in [
        "",
        "hello",
        "pit-",
        "Bearer",
        "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB",
    ] {
        assert_eq!(
            deny_reason(&authorize(&app, garbage, &[]).await),
            Some(MalformedToken),
            "{garbage:?}"
        );
    }
    // One character changed: the checksum no longer matches, so no lookup is even needed.
    let mut typo = token.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    assert_eq!(
        deny_reason(&authorize(&app, &typo, &[]).await),
        Some(MalformedToken)
    );

    // Well formed, but never issued by this server.
    let stranger = privint::domain::token::PlainToken::generate(&ring::rand::SystemRandom::new())
        .expect("random");
    assert_eq!(
        deny_reason(&authorize(&app, stranger.expose(), &[]).await),
        Some(UnknownToken)
    );

    let denied = authorize(
        &app,
        &token,
        &["contacts.readonly", "calendars.write", "users.readonly"],
    )
    .await;
    assert_eq!(deny_reason(&denied), Some(MissingScopes));
    assert_eq!(denied.missing_scopes, ["calendars.write", "users.readonly"]);
    assert!(denied.principal.is_none());

    let denied = authorize_on(&app, &token, &[], AGENCY, "loc2").await;
    assert_eq!(deny_reason(&denied), Some(WrongAccount));

    let in_a_minute = integration.create_time.map(|it| prost_types::Timestamp {
        seconds: it.seconds + 60,
        nanos: it.nanos,
    });
    let schedule = pb::ScheduleTokenExpiryRequest {
        id: integration.id.clone(),
        expire_time: in_a_minute,
        etag: String::new(),
    };
    api.schedule_token_expiry(schedule).await.expect("schedule");
    app.advance(chrono::Duration::minutes(1));
    assert_eq!(
        deny_reason(&authorize(&app, &token, &[]).await),
        Some(ExpiredToken)
    );

    let (other, other_token) = create(&mut api).await;
    let expire = pb::ExpireTokenRequest {
        id: other.id,
        target: pb::ExpireTarget::All.into(),
        etag: String::new(),
    };
    api.expire_token(expire).await.expect("expire");
    assert_eq!(
        deny_reason(&authorize(&app, &other_token, &[]).await),
        Some(RevokedToken)
    );
}

async fn account_rules(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (_, location_token) = create(&mut api).await;
    let agency_level = pb::CreateIntegrationRequest {
        agency_id: AGENCY.to_owned(),
        name: "Agency reporting".to_owned(),
        scopes: vec!["locations.readonly".to_owned(), "users.readonly".to_owned()],
        ..Default::default()
    };
    let agency_token = api
        .create_integration(agency_level)
        .await
        .expect("create")
        .into_inner()
        .token;

    #[rustfmt::skip]
    let cases: [(&str, &str, &str, Option<pb::DenyReason>); 10] = [
        // A location token acts only on its own location (whose agency, if named, must match).
        (&location_token, "", LOCATION, None),
        (&location_token, AGENCY, LOCATION, None),
        (&location_token, AGENCY, "loc2", Some(WrongAccount)),
        (&location_token, "agency2", LOCATION, Some(WrongAccount)),
        (&location_token, AGENCY, "", Some(WrongAccount)),
        // An agency token acts on its agency and on any location the request says is of its agency.
        (&agency_token, AGENCY, "", None),
        (&agency_token, AGENCY, "loc2", None),
        (&agency_token, "agency2", "", Some(WrongAccount)),
        (&agency_token, "agency2", LOCATION, Some(WrongAccount)),
        (&agency_token, "", LOCATION, Some(WrongAccount)),
    ];
    for (token, agency, location, expected) in cases {
        let response = authorize_on(&app, token, &[], agency, location).await;
        assert_eq!(
            deny_reason(&response),
            expected,
            "agency {agency:?} location {location:?}"
        );
    }
}

async fn bearer_header_and_principal(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    let response = authorize(&app, &format!("Bearer {token}"), &["contacts.write"]).await;
    assert_eq!(response.decision(), pb::Decision::Allow);
    assert_eq!(response.reason(), pb::DenyReason::Unspecified);
    let principal = response.principal.expect("principal on allow");
    assert_eq!(principal.integration_id, integration.id);
    assert_eq!(
        (principal.agency_id.as_str(), principal.location_id.as_str()),
        (AGENCY, LOCATION)
    );
    assert_eq!(principal.scopes, ["contacts.readonly", "contacts.write"]);
    assert_eq!(
        principal.token_id,
        integration.current_token.expect("current").id
    );
    assert!(response.expire_time.is_none());
    assert!(!response.previous_token);
}

async fn malformed_requests_are_errors(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (_, token) = create(&mut api).await;
    let mut authorizer = app.authorizer().await;
    let request = |scopes: &[&str], agency: &str, location: &str| pb::AuthorizeRequest {
        token: token.clone(),
        required_scopes: scopes.iter().map(|it| (*it).to_owned()).collect(),
        agency_id: agency.to_owned(),
        location_id: location.to_owned(),
        ..Default::default()
    };
    let status = authorizer
        .authorize(request(&[], "", ""))
        .await
        .expect_err("no account");
    common::assert_violation(&status, "location_id");
    let status = authorizer
        .authorize(request(&[], "bad agency!", ""))
        .await
        .expect_err("bad id");
    common::assert_violation(&status, "agency_id");
    let status = authorizer
        .authorize(request(&["contacts.reaodnly"], "", LOCATION))
        .await
        .expect_err("unknown scope");
    common::assert_violation(&status, "required_scopes");
    assert!(!status.message().contains(&token));
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn a_retired_token_is_forgotten_after_the_retention(backend: Backend) {
    let Some(db) = common::TestDb::new(backend).await else {
        return;
    };
    let mut settings = common::settings(&db);
    // The resync is what drops tokens past the retention: run it often.
    settings.change_feed.resync_interval = std::time::Duration::from_secs(1);
    let app = TestApp::spawn_with(db, settings, Default::default()).await;
    let mut api = app.api().await;
    let (integration, old) = create(&mut api).await;
    let rotate = pb::RotateTokenRequest {
        id: integration.id.clone(),
        expire_old_now: true,
        ..Default::default()
    };
    let new = api
        .rotate_token(rotate)
        .await
        .expect("rotate")
        .into_inner()
        .token;
    assert_eq!(
        deny_reason(&authorize(&app, &old, &[]).await),
        Some(RevokedToken)
    );

    // Past the retention (30 days by default), the revoked token costs nothing and is answered
    // as a token that never existed; the current token, however old, still works.
    app.advance(chrono::Duration::days(31));
    let started = std::time::Instant::now();
    while deny_reason(&authorize(&app, &old, &[]).await) != Some(UnknownToken) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "the retired token was never dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(deny_reason(&authorize(&app, &new, &[]).await), None);
}
