//! The fault suite: crashes, bad bytes, a locked database and racing replicas, each through the
//! real server (the binary where a process is killed or its log is read). Every test says what
//! it checked, and that nothing was lost or half-applied. Also part of it: `tests/outage.rs`
//! (PostgreSQL stopped and restarted under Authorize load), `tests/feed.rs` (a writer stalled
//! between its event insert and its commit) and `tests/port.rs` (slow, idle and greedy clients,
//! oversized headers).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::{h2_connect, raw_call, raw_health_check};
use common::{AGENCY, Backend, Binary, TestApp, TestDb, deny_reason};
use privint::grpc::pb;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tonic::Code;

both_backends!(sigkill_during_lifecycle_actions_loses_nothing);
postgres_only!(racing_clients_on_two_replicas_agree);

/// Every unary method of the port, by path.
const METHODS: [&str; 15] = [
    "/privint.v1.TokenAuthorizer/Authorize",
    "/privint.v1.IntegrationService/CreateIntegration",
    "/privint.v1.IntegrationService/GetIntegration",
    "/privint.v1.IntegrationService/ListIntegrations",
    "/privint.v1.IntegrationService/UpdateIntegration",
    "/privint.v1.IntegrationService/DeleteIntegration",
    "/privint.v1.IntegrationService/RotateToken",
    "/privint.v1.IntegrationService/CancelRotation",
    "/privint.v1.IntegrationService/ExpireToken",
    "/privint.v1.IntegrationService/ScheduleTokenExpiry",
    "/privint.v1.IntegrationService/ListScopes",
    "/privint.v1.IntegrationService/ListEvents",
    "/privint.v1.IntegrationService/WatchEvents",
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// A request body of random bytes: unframed, framed with a random payload, with a compression
/// flag, or shorter than its frame says.
fn random_body(rng: &mut impl Rng) -> Bytes {
    let payload: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
    let mut body = BytesMut::new();
    match rng.random_range(0..4) {
        0 => body.put_slice(&payload),
        kind => {
            body.put_u8(u8::from(kind == 2));
            let extra = if kind == 3 { 10 } else { 0 };
            body.put_u32(u32::try_from(payload.len()).expect("small") + extra);
            body.put_slice(&payload);
        }
    }
    body.freeze()
}

// Regression: random bytes to Authorize and CreateIntegration answered INTERNAL in 85 % of
// 20,000 tries, with an ERROR log line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_invalid_argument_and_log_no_error() {
    let server = Binary::start(&[]);
    let jwt = common::jwt(common::user("agency_admin", AGENCY, &[], None));
    let auth = [("authorization", format!("Bearer {jwt}"))];
    let (mut send, _closed) = h2_connect(server.addr.as_str()).await;
    let mut rng = rand::rng();
    let mut codes: HashMap<&str, HashMap<u32, usize>> = HashMap::new();
    for method in METHODS {
        for _ in 0..200 {
            let body = random_body(&mut rng);
            let call = raw_call(&mut send, method, &auth, body);
            // A body that happens to decode as a WatchEvents or reflection request opens a stream.
            let Ok(code) = tokio::time::timeout(Duration::from_secs(1), call).await else {
                assert!(method.contains("Watch") || method.contains("Reflection"));
                continue;
            };
            let code = code.expect("each call answers; the connection carries on");
            *codes.entry(method).or_default().entry(code).or_default() += 1;
        }
    }
    for (method, codes) in &codes {
        assert!(
            !codes.contains_key(&2) && !codes.contains_key(&13),
            "{method} answered UNKNOWN or INTERNAL: {codes:?}"
        );
        // Reflection is a client stream: its server reads what decodes and ends OK.
        if !method.contains("Reflection") {
            assert!(codes.contains_key(&3), "{method}: {codes:?}");
        }
    }

    // Bytes that are not HTTP/2 at all just close their connection.
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(server.addr.as_str())
            .await
            .expect("connect");
        let junk: Vec<u8> = (0..1024).map(|_| rng.random()).collect();
        let _ = stream.write_all(&junk).await;
    }
    let (mut send, _closed) = h2_connect(server.addr.as_str()).await;
    let code = raw_health_check(&mut send).await.expect("still serving");
    assert_eq!(code, 0);

    let log = server.stop();
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "ERROR lines for bad input:\n{}",
        errors.join("\n")
    );
}

fn privint_command(db_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_privint"))
        .args(args)
        .env("APP__LISTEN_ADDR", "127.0.0.1:0")
        .env("APP__METRICS_ADDR", "")
        .env("APP__DATABASE_URL", db_url)
        .env("APP__AUTH__HS256_SECRET", common::SECRET)
        .output()
        .expect("run privint")
}

// Regression: a second `privint serve` on the same SQLite file started without a word, and
// 7-22 % of concurrent writes then failed "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_sqlite_file_refuses_to_start() {
    let server = Binary::start(&[("APP__METRICS_ADDR", "")]);
    for args in [&["serve"][..], &["migrate"]] {
        let output = privint_command(&server.db_url, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started: {stderr}");
        assert!(
            stderr.contains("in use by another privint process") && stderr.contains("PostgreSQL"),
            "{args:?} says why and what to use instead: {stderr}"
        );
    }
    // The first one never noticed.
    let mut api = common::api_on(
        server.channel().await,
        &common::jwt(common::user("agency_admin", AGENCY, &[], None)),
    );
    common::create(&mut api).await;
    let log = server.stop();
    assert!(!log.contains("ERROR"), "{log}");
}

// Regression: while another process held SQLite's write lock, management calls failed INTERNAL
// ("database is locked").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sqlite_database_is_unavailable_then_works() {
    use sea_orm::sqlx::{Connection, Executor, SqliteConnection};
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let mut settings = common::settings(&db);
    settings.database_busy_timeout = Duration::from_millis(300);
    let app = TestApp::spawn_with(db, settings, Arc::new(Default::default())).await;
    let mut api = app.api().await;
    let (integration, token) = common::create(&mut api).await;

    // A backup, or `sqlite3` by hand, holds the write lock.
    let mut other = SqliteConnection::connect(&app.db.url)
        .await
        .expect("another connection");
    other.execute("BEGIN IMMEDIATE").await.expect("write lock");
    let rotate = pb::RotateTokenRequest {
        id: integration.id.clone(),
        expire_old_now: true,
        ..Default::default()
    };
    let status = api
        .rotate_token(rotate.clone())
        .await
        .expect_err("the database is locked");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let get = pb::GetIntegrationRequest {
        id: integration.id.clone(),
    };
    api.get_integration(get).await.expect("reads go on");
    assert_eq!(
        deny_reason(&common::authorize(&app, &token, &[]).await),
        None,
        "Authorize goes on, and the failed rotation changed nothing"
    );

    other.execute("ROLLBACK").await.expect("unlock");
    let rotated = api.rotate_token(rotate).await.expect("works once unlocked");
    assert_eq!(
        deny_reason(&common::authorize(&app, &rotated.into_inner().token, &[]).await),
        None
    );
}

/// What a client was told: each integration it created and, per integration, the tokens it
/// was given in order (the last one acknowledged is current).
type Acknowledged = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Creates and rotates integrations until the server stops answering.
async fn lifecycle_load(api: common::Api, acknowledged: Acknowledged) {
    let mut api = api;
    loop {
        let Ok(created) = api
            .create_integration(common::location_integration(
                "Crash",
                &["contacts.readonly"],
            ))
            .await
        else {
            return;
        };
        let created = created.into_inner();
        let id = created.integration.expect("integration").id;
        acknowledged
            .lock()
            .expect("not poisoned")
            .insert(id.clone(), vec![created.token]);
        for _ in 0..3 {
            let rotate = pb::RotateTokenRequest {
                id: id.clone(),
                expire_old_now: true,
                ..Default::default()
            };
            let Ok(rotated) = api.rotate_token(rotate).await else {
                return;
            };
            acknowledged
                .lock()
                .expect("not poisoned")
                .get_mut(&id)
                .expect("created")
                .push(rotated.into_inner().token);
        }
    }
}

async fn sigkill_during_lifecycle_actions_loses_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let envs: &[(&str, &str)] = match backend {
        Backend::Sqlite => &[],
        Backend::Postgres => &[("APP__DATABASE_URL", db.url.as_str())],
    };
    let server = Binary::start(envs);
    let jwt = common::jwt(common::user("agency_admin", AGENCY, &[], None));
    let acknowledged = Acknowledged::default();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let api = common::api_on(server.channel().await, &jwt);
        clients.push(tokio::spawn(lifecycle_load(api, Arc::clone(&acknowledged))));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = server.kill();
    for client in clients {
        client.await.expect("client");
    }

    let server = Binary::start_in(dir, envs);
    let channel = server.channel().await;
    let mut api = common::api_on(channel.clone(), &jwt);
    let authorizer = pb::token_authorizer_client::TokenAuthorizerClient::new(channel);
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();
    assert!(acknowledged.len() >= 4, "the load made too few changes");
    let mut unacknowledged_rotations = 0;
    for (id, tokens) in &acknowledged {
        let get = pb::GetIntegrationRequest { id: id.clone() };
        let integration = api
            .get_integration(get)
            .await
            .expect("every acknowledged integration survived")
            .into_inner();
        let (last, older) = tokens.split_last().expect("one token at least");
        let answer = |token: &str| {
            let request = common::authorize_request(token, &["contacts.readonly"]);
            let mut authorizer = authorizer.clone();
            async move {
                deny_reason(
                    &authorizer
                        .authorize(request)
                        .await
                        .expect("authorize")
                        .into_inner(),
                )
            }
        };
        for token in older {
            assert_eq!(
                answer(token).await,
                Some(pb::DenyReason::RevokedToken),
                "an acknowledged rotation of {id} was lost"
            );
        }
        // The last acknowledged token is current, unless a rotation was in flight at the kill:
        // then it committed whole (this token revoked, a new one current) or not at all.
        match answer(last).await {
            None => {}
            Some(pb::DenyReason::RevokedToken) => unacknowledged_rotations += 1,
            other => panic!("{id}: the last token answers {other:?}"),
        }
        assert!(
            integration.current_token.is_some(),
            "{id} has no current token"
        );
        let events = pb::ListEventsRequest {
            integration_id: id.clone(),
            page_size: 100,
            ..Default::default()
        };
        let events = api
            .list_events(events)
            .await
            .expect("events")
            .into_inner()
            .events;
        let rotations = events
            .iter()
            .filter(|it| it.r#type == "token.rotated")
            .count();
        assert!(
            rotations >= tokens.len() - 1,
            "{id}: {rotations} rotation events for {} acknowledged rotations",
            tokens.len() - 1
        );
    }
    assert!(
        unacknowledged_rotations <= 4,
        "one in-flight action per client at most"
    );
    let log = server.stop();
    assert!(!log.contains("ERROR"), "{log}");
}

async fn racing_clients_on_two_replicas_agree(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let db = first.db.share();
    let second = TestApp::spawn_with(
        db,
        common::settings(&first.db),
        Arc::new(Default::default()),
    )
    .await;
    let mut api = first.api().await;
    let mut issued: HashMap<String, Arc<Mutex<Vec<String>>>> = HashMap::new();
    for _ in 0..3 {
        let (integration, token) = common::create(&mut api).await;
        issued.insert(integration.id, Arc::new(Mutex::new(vec![token])));
    }
    let ids: Vec<String> = issued.keys().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut clients = Vec::new();
    for client in 0..6 {
        let app = if client % 2 == 0 { &first } else { &second };
        let mut api = app.api().await;
        let ids = ids.clone();
        let issued = issued.clone();
        clients.push(tokio::spawn(async move {
            let mut refused = 0;
            let mut rng = rand::rngs::StdRng::from_os_rng();
            while Instant::now() < deadline {
                let id = ids[rng.random_range(0..ids.len())].clone();
                let result = match rng.random_range(0..4) {
                    0 | 1 => api
                        .rotate_token(pb::RotateTokenRequest {
                            id: id.clone(),
                            expire_old_now: rng.random(),
                            ..Default::default()
                        })
                        .await
                        .map(|it| {
                            issued[&id]
                                .lock()
                                .expect("not poisoned")
                                .push(it.into_inner().token);
                        }),
                    2 => api
                        .cancel_rotation(pb::CancelRotationRequest {
                            id: id.clone(),
                            etag: String::new(),
                        })
                        .await
                        .map(drop),
                    _ => {
                        let get = pb::GetIntegrationRequest { id: id.clone() };
                        let etag = api
                            .get_integration(get)
                            .await
                            .expect("get")
                            .into_inner()
                            .etag;
                        let update = pb::UpdateIntegrationRequest {
                            integration: Some(pb::Integration {
                                id: id.clone(),
                                etag,
                                name: format!("Race {}", rng.random::<u16>()),
                                ..Default::default()
                            }),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["name".to_owned()],
                            }),
                        };
                        api.update_integration(update).await.map(drop)
                    }
                };
                if let Err(status) = result {
                    assert!(
                        matches!(status.code(), Code::Aborted | Code::FailedPrecondition),
                        "a race answered {status:?}"
                    );
                    refused += 1;
                }
            }
            refused
        }));
    }
    for client in clients {
        client.await.expect("client");
    }

    // Both replicas converge on the database's state: the same etag, and the same tokens
    // allowed: the current one, and the previous one while its window is open.
    for (id, tokens) in &issued {
        let tokens = tokens.lock().expect("not poisoned").clone();
        let get = pb::GetIntegrationRequest { id: id.clone() };
        let truth = api
            .get_integration(get.clone())
            .await
            .expect("get")
            .into_inner();
        let expected_live = 1 + usize::from(truth.previous_token.is_some());
        let started = Instant::now();
        loop {
            let mut views = Vec::new();
            for app in [&first, &second] {
                let mut allowed = HashSet::new();
                for token in &tokens {
                    if deny_reason(&common::authorize(app, token, &[]).await).is_none() {
                        allowed.insert(token.clone());
                    }
                }
                let etag = app
                    .api()
                    .await
                    .get_integration(get.clone())
                    .await
                    .expect("get")
                    .into_inner()
                    .etag;
                views.push((etag, allowed));
            }
            if views[0] == views[1] && views[0].0 == truth.etag && views[0].1.len() == expected_live
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{id}: replicas disagree: {views:?}, expected {expected_live} live tokens"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
