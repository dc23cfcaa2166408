//! Where a token was last used from: Authorize takes the API caller's `client_ip` and
//! `user_agent`, and each token shows its last caller, written with the usage batches.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestApp, TestDb, create, deny_reason};
use privint::grpc::pb;

both_backends!(each_token_shows_its_last_caller);

async fn call(
    app: &TestApp,
    token: &str,
    scopes: &[&str],
    ip: &str,
    agent: &str,
) -> Option<pb::DenyReason> {
    let request = pb::AuthorizeRequest {
        client_ip: ip.to_owned(),
        user_agent: agent.to_owned(),
        ..common::authorize_request(token, scopes)
    };
    let answer = app
        .authorizer()
        .await
        .authorize(request)
        .await
        .expect("authorize");
    deny_reason(&answer.into_inner())
}

/// Waits until `app` shows `(ip, agent)` as the current token's last caller.
async fn until_shown(app: &TestApp, id: &str, ip: &str, agent: &str) {
    let mut api = app.api().await;
    let started = Instant::now();
    loop {
        let get = pb::GetIntegrationRequest { id: id.to_owned() };
        let token = api
            .get_integration(get)
            .await
            .expect("get")
            .into_inner()
            .current_token
            .expect("current");
        if (
            token.last_client_ip.as_str(),
            token.last_user_agent.as_str(),
        ) == (ip, agent)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "shows {:?}, not {:?}",
            (token.last_client_ip, token.last_user_agent),
            (ip, agent)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn each_token_shows_its_last_caller(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut settings = common::settings(&db);
    settings.usage_flush_interval = Duration::from_millis(50);
    let app = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
    let (integration, token) = create(&mut app.api().await).await;
    let id = integration.id.as_str();

    assert_eq!(
        call(&app, &token, &[], "203.0.113.9", "zapier/1.0").await,
        None
    );
    until_shown(&app, id, "203.0.113.9", "zapier/1.0").await;
    // The next round's caller replaces it: IPv6 too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(call(&app, &token, &[], "2001:db8::7", "make/2").await, None);
    until_shown(&app, id, "2001:db8::7", "make/2").await;

    // A denied call is not a use: it leaves the last caller as it was.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        call(&app, &token, &["calendars.write"], "198.51.100.1", "x").await,
        Some(pb::DenyReason::MissingScopes)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    until_shown(&app, id, "2001:db8::7", "make/2").await;

    // A long user agent is cut to 256 characters.
    let long = "a".repeat(1000);
    assert_eq!(call(&app, &token, &[], "203.0.113.10", &long).await, None);
    until_shown(&app, id, "203.0.113.10", &long[..256]).await;

    // Another replica shows what was written.
    if backend == Backend::Postgres {
        let db = app.db.share();
        let settings = common::settings(&db);
        let second = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
        until_shown(&second, id, "203.0.113.10", &long[..256]).await;
    }
}
