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
        Arc::new(privint::clock::SystemClock),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_readiness_off_then_drains() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let mut settings = common::settings(&db);
    settings.shutdown_delay = std::time::Duration::from_millis(800);
    let mut app = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
    let mut api = app.api().await;
    let (_, token) = common::create(&mut api).await;
    let watch = pb::WatchEventsRequest {
        agency_id: common::AGENCY.to_owned(),
        ..Default::default()
    };
    let mut stream = api.watch_events(watch).await.expect("watch").into_inner();
    let mut health = HealthClient::new(app.channel().await);

    app.begin_stop();
    let mut not_serving = false;
    for _ in 0..100 {
        if status(&mut health, "").await == ServingStatus::NotServing {
            not_serving = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        not_serving,
        "readiness turns NOT_SERVING as shutdown begins"
    );
    assert_eq!(
        status(&mut health, "liveness").await,
        ServingStatus::Serving
    );
    // During the delay, calls are still answered.
    let answer = common::authorize(&app, &token, &[]).await;
    assert_eq!(common::deny_reason(&answer), None);
    // An open event stream ends cleanly, so it does not hold the drain up.
    let end = tokio::time::timeout(std::time::Duration::from_secs(20), stream.message())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None)), "{end:?}");
    app.stop().await;
}
