//! Health: readiness is NOT_SERVING until the database is migrated and the token index loaded,
//! while liveness answers SERVING from the start; reflection lists privint's services.

mod common;

use std::sync::Arc;

use common::{Backend, TestApp, TestDb};

use privint::app::App;
use privint::config::Config;
use privint::grpc::pb;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn status(
    health: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    health
        .check(request)
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_database_answers() {
    // A "database" that accepts connections and never answers keeps start-up waiting.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let mut settings = common::settings(&db);
    settings.database_url = format!(
        "postgres://postgres@{}/privint",
        black_hole.local_addr().expect("addr")
    );
    let app = App::bind(
        Config::try_from(settings).expect("config"),
        Arc::new(privint::service::clock::SystemClock),
    )
    .await
    .expect("bind");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    assert_eq!(status(&mut health, "").await, ServingStatus::NotServing);
    assert_eq!(
        status(&mut health, "liveness").await,
        ServingStatus::Serving
    );
    let mut authorizer = pb::token_authorizer_client::TokenAuthorizerClient::new(channel);
    let request = pb::AuthorizeRequest {
        token: "pit-x".to_owned(),
        location_id: "loc1".to_owned(),
        ..Default::default()
    };
    assert_eq!(
        authorizer
            .authorize(request)
            .await
            .expect_err("not ready")
            .code(),
        tonic::Code::Unavailable
    );
    stop.send(()).expect("server running");
    server
        .await
        .expect("task")
        .expect("a shutdown during start-up is clean");
    drop(black_hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_start_up_and_reflection_lists_services() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let channel = app.channel().await;
    let mut health = HealthClient::new(channel.clone());
    assert_eq!(status(&mut health, "").await, ServingStatus::Serving);
    assert_eq!(
        status(&mut health, "liveness").await,
        ServingStatus::Serving
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.message().await.expect("ok").expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|it| it.name).collect();
    for expected in [
        "privint.v1.IntegrationService",
        "privint.v1.TokenAuthorizer",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
}
