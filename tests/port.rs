//! The listening port: how accepted connections are set up, and how it holds against idle,
//! slow and greedy clients and oversized requests.

mod common;

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::raw::{h2_connect, raw_health_check};
use common::{AGENCY, Backend, TestApp, TestDb, get};
use privint::config::{PortSettings, Settings};
use privint::grpc::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Returns whether each TCP socket of this process accepted on `server` has TCP_NODELAY.
fn accepted_sockets_nodelay(server: std::net::SocketAddr) -> Vec<bool> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("the process's descriptors") {
        let Ok(fd) = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .parse::<i32>()
        else {
            continue;
        };
        // SAFETY: the descriptor is only borrowed for the calls below, while this process holds
        // it open (a descriptor closed meanwhile makes the calls fail, which is skipped).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let (Ok(local), Ok(_peer)) = (socket.local_addr(), socket.peer_addr()) else {
            continue;
        };
        if local.as_socket() == Some(server)
            && let Ok(nodelay) = socket.tcp_nodelay()
        {
            found.push(nodelay);
        }
    }
    found
}

// Regression: accepted sockets kept Nagle's algorithm, so a small response could wait for the
// client's delayed ACK (a 43 ms slowest call at one call in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_connections_send_without_delay() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let mut health = HealthClient::new(app.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers");
    let accepted = accepted_sockets_nodelay(app.addr);
    assert!(
        !accepted.is_empty(),
        "no accepted connection found on {}",
        app.addr
    );
    assert!(
        accepted.iter().all(|nodelay| *nodelay),
        "accepted sockets without TCP_NODELAY: {accepted:?}"
    );
}

/// Settings for port tests: SQLite, with `change` applied.
fn settings_with(db: &TestDb, change: impl FnOnce(&mut PortSettings)) -> Settings {
    let mut settings = common::settings(db);
    change(&mut settings.port);
    settings
}

async fn spawn(change: impl FnOnce(&mut PortSettings)) -> TestApp {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let settings = settings_with(&db, change);
    TestApp::spawn_with(db, settings, Arc::new(Default::default())).await
}

/// Reads from `stream` until the server closes it; returns how long that took, or `None` if it
/// stayed open for `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0_u8; 1024];
    loop {
        match tokio::time::timeout_at(started + limit, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // The server's SETTINGS, or an HTTP/1.1 error response.
        }
    }
}

/// Writes `bytes` one per `pause` until the server closes the connection; returns how long
/// the server let it go on, or `None` if every byte was taken.
async fn trickle(
    addr: std::net::SocketAddr,
    bytes: &'static [u8],
    pause: Duration,
) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    for byte in bytes {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(pause).await;
    }
    closed_within(&mut stream, Duration::from_secs(5))
        .await
        .map(|_| started.elapsed())
}

async fn health_check(app: &TestApp) {
    HealthClient::new(app.channel().await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers");
}

// Regression: 500 idle connections and clients sending the preface or headers a byte a second
// were all still open after 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_are_closed() {
    let app = spawn(|port| {
        port.handshake_timeout = Duration::from_millis(500);
        port.idle_timeout = Duration::from_millis(800);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const HTTP1: &[u8] = b"POST /privint.v1.TokenAuthorizer/Authorize HTTP/1.1\r\nHost: x\r\n\r\n";
    let pause = Duration::from_millis(100);
    let slow: Vec<_> = (0..5)
        .flat_map(|_| {
            [
                tokio::spawn(trickle(app.addr, PREFACE, pause)),
                tokio::spawn(trickle(app.addr, HTTP1, pause)),
            ]
        })
        .collect();
    // The port keeps serving everyone else meanwhile.
    health_check(&app).await;
    for stream in &mut idle {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "an idle connection was held past 5 s");
    }
    for client in slow {
        let cut = client.await.expect("trickle");
        assert!(
            cut.is_some_and(|it| it < Duration::from_secs(3)),
            "a slow client was let go on for {cut:?}"
        );
    }
    health_check(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_when_idle_but_not_while_streaming() {
    let app = spawn(|port| port.idle_timeout = Duration::from_millis(500)).await;
    let (mut send, closed) = h2_connect(app.addr).await;
    let code = raw_health_check(&mut send).await.expect("call");
    assert_eq!(code, 0);
    let answered = Instant::now();

    // An event stream open longer than the idle time-out is a call in flight: kept.
    let mut api = app.api().await;
    let watch = pb::WatchEventsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    let mut events = api.watch_events(watch).await.expect("watch").into_inner();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    common::create(&mut app.api().await).await;
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("the stream is still open");
    assert!(event.is_some_and(|it| it.is_ok()));

    let closed_at = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the idle connection was closed")
        .expect("connection task");
    let idle_for = closed_at - answered;
    assert!(
        idle_for >= Duration::from_millis(400) && idle_for < Duration::from_secs(3),
        "closed after {idle_for:?} without a call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let app = spawn(|port| port.max_connections = 4).await;
    // The test's own health checks during start-up have come and gone.
    let started = Instant::now();
    while open_connections(&app).await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "start-up connections linger"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(app.addr).await.expect("connect"));
    }
    while open_connections(&app).await != 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut beyond = TcpStream::connect(app.addr)
        .await
        .expect("the kernel accepts");
    let closed = closed_within(&mut beyond, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "a connection beyond the cap was held");
    let (_, page) = get(&app, "/metrics").await;
    assert!(
        page.contains("privint_connections_refused_total 1\n"),
        "{page}"
    );

    drop(held);
    let started = Instant::now();
    loop {
        let mut health = HealthClient::new(app.channel().await);
        let request = HealthCheckRequest {
            service: String::new(),
        };
        if health.check(request).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cap was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open_connections(app: &TestApp) -> i64 {
    let (_, page) = get(app, "/metrics").await;
    page.lines()
        .find_map(|line| line.strip_prefix("privint_connections_open "))
        .expect("the open connections are counted")
        .parse()
        .expect("a count")
}

// Regression: a 64 KiB header closed the whole connection and 20 of 20 unrelated calls
// sharing it failed; JWTs over 16 KiB were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_fails_alone() {
    let app = spawn(|_| {}).await;
    let mut api = app.api().await;
    let (_, token) = common::create(&mut api).await;

    // A 100 KiB JWT (an agency admin with thousands of locations) is accepted.
    let mut claims = common::user("agency_admin", AGENCY, &[], None);
    claims.location_ids = (0..4_400).map(|i| format!("location-{i:06}")).collect();
    let big_jwt = common::jwt(claims);
    assert!(
        (100 * 1024..120 * 1024).contains(&big_jwt.len()),
        "{}",
        big_jwt.len()
    );
    let list = pb::ListIntegrationsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    app.api_with(&big_jwt)
        .await
        .list_integrations(list)
        .await
        .expect("a 100 KiB JWT is accepted");

    // A 300 KiB header, beyond the 128 KiB limit, fails; 20 calls on the same connection don't.
    let channel = app.channel().await;
    let authorizer = pb::token_authorizer_client::TokenAuthorizerClient::new(channel.clone());
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut authorizer = authorizer.clone();
            let request = common::authorize_request(&token, &["contacts.readonly"]);
            tokio::spawn(async move { authorizer.authorize(request).await })
        })
        .collect();
    let mut oversized = tonic::Request::new(common::authorize_request(&token, &[]));
    oversized
        .metadata_mut()
        .insert("x-padding", "x".repeat(300 * 1024).parse().expect("ascii"));
    let refused = authorizer
        .clone()
        .authorize(oversized)
        .await
        .expect_err("beyond the header limit");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    for call in calls {
        let answer = call
            .await
            .expect("task")
            .expect("an unrelated call succeeds");
        assert_eq!(common::deny_reason(&answer.into_inner()), None);
    }
    let after = authorizer
        .clone()
        .authorize(common::authorize_request(&token, &[]))
        .await
        .expect("the connection carries on");
    assert_eq!(common::deny_reason(&after.into_inner()), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_times_out_alone() {
    let app = spawn(|port| port.request_timeout = Duration::from_millis(500)).await;
    let (mut send, _closed) = h2_connect(app.addr).await;
    let request = http::Request::post(format!("http://privint{}", "/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut ready = send.clone().ready().await.expect("ready");
    let (response, mut stream) = ready.send_request(request, false).expect("send");
    // Half a message, and the rest never comes.
    stream
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 9, 1]), false)
        .expect("data");
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered within the request time-out")
        .expect("a response");
    let code = response
        .headers()
        .get("grpc-status")
        .expect("trailers-only");
    assert!(code == "1" || code == "4", "{code:?}");
    let code = raw_health_check(&mut send)
        .await
        .expect("the connection carries on");
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_replica_and_per_connection() {
    let app = spawn(|port| {
        port.max_watch_subscribers = 3;
        port.max_streams_per_connection = 2;
    })
    .await;
    let watch = || pb::WatchEventsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    // Two streams fill one connection: a third call on it waits for a free stream.
    let api = app.api().await;
    let first = api.clone().watch_events(watch()).await.expect("watch");
    let second = api.clone().watch_events(watch()).await.expect("watch");
    let mut third_api = api.clone();
    let mut third = Box::pin(third_api.watch_events(watch()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut third)
            .await
            .is_err(),
        "a third stream started on a connection capped at two"
    );
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("started once a stream was free")
        .expect("watch");

    // Three streams fill the replica: a fourth, on another connection, is refused.
    let fourth = app.api().await.watch_events(watch()).await.expect("watch");
    let refused = app
        .api()
        .await
        .watch_events(watch())
        .await
        .expect_err("beyond the replica's cap");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    drop((second, third, fourth));
    let started = Instant::now();
    while app.api().await.watch_events(watch()).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed streams kept their place"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
