//! When the database is unreachable, Authorize keeps answering from memory and management
//! calls fail with UNAVAILABLE; once it is back, management works again.
//! PostgreSQL only: its per-test database can be closed to connections and its sessions ended.

mod common;

use common::{Backend, TestApp, authorize, create, deny_reason};
use privint::grpc::pb;
use sea_orm::{ConnectionTrait, Database};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_survives_a_database_outage() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    let (revoked, revoked_token) = create(&mut api).await;
    let expire = pb::ExpireTokenRequest {
        id: revoked.id.clone(),
        target: pb::ExpireTarget::All.into(),
        etag: String::new(),
    };
    api.expire_token(expire).await.expect("expire");

    let name = app
        .db
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_owned();
    let admin =
        Database::connect(std::env::var("TEST_DATABASE_URL").expect("set for PostgreSQL tests"))
            .await
            .expect("admin connection");
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .expect("close database");
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .expect("end sessions");

    assert_eq!(
        deny_reason(&authorize(&app, &token, &["contacts.readonly"]).await),
        None,
        "answered from memory"
    );
    assert_eq!(
        deny_reason(&authorize(&app, &revoked_token, &[]).await),
        Some(pb::DenyReason::RevokedToken)
    );
    let get = pb::GetIntegrationRequest {
        id: integration.id.clone(),
    };
    let status = api
        .get_integration(get.clone())
        .await
        .expect_err("database down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let rotate = pb::RotateTokenRequest {
        id: integration.id.clone(),
        expire_old_now: true,
        ..Default::default()
    };
    let status = api
        .rotate_token(rotate.clone())
        .await
        .expect_err("database down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        deny_reason(&authorize(&app, &token, &[]).await),
        None,
        "a failed rotation changed nothing"
    );

    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .expect("reopen database");
    let mut recovered = None;
    for _ in 0..100 {
        if let Ok(response) = api.rotate_token(rotate.clone()).await {
            recovered = Some(response.into_inner());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rotated = recovered.expect("management works again once the database is back");
    assert_eq!(
        deny_reason(&authorize(&app, &token, &[]).await),
        Some(pb::DenyReason::RevokedToken)
    );
    assert_eq!(
        deny_reason(&authorize(&app, &rotated.token, &[]).await),
        None
    );
}
