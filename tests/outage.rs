//! When the database is unreachable, Authorize keeps answering from memory and management
//! calls fail fast with UNAVAILABLE; once it is back, management works again and no use was
//! lost. Part of the fault suite (tests/faults.rs).
//! PostgreSQL only, reached through a proxy that stops as a stopped server does: open
//! connections are cut and new ones refused.

mod common;

use std::sync::{Arc, Mutex};

use common::{Backend, TestApp, TestDb, authorize, create, deny_reason};
use privint::grpc::pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tonic::Code;

/// A TCP proxy to PostgreSQL that can be stopped and started again on the same port.
struct Proxy {
    addr: std::net::SocketAddr,
    upstream: String,
    /// The accept loop and every link: aborted when the proxy stops, which closes the port.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Self {
            addr: listener.local_addr().expect("address"),
            upstream,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream.clone(), Arc::clone(&self.tasks));
        self.tasks.lock().expect("not poisoned").spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tasks.lock().expect("not poisoned").spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Stops as a stopped server does: open connections are cut and new ones refused.
    async fn stop(&self) {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("not poisoned"));
        tasks.shutdown().await;
    }

    async fn restart(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("the same port again");
        self.serve(listener);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_survives_a_database_outage() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    // postgres://user@host:port/name -> the same database through the proxy.
    let (prefix, name) = db.url.rsplit_once('/').expect("a database name");
    let (credentials, upstream) = prefix.rsplit_once('@').expect("user@host:port");
    let proxy = Proxy::start(upstream.to_owned()).await;
    let mut settings = common::settings(&db);
    settings.database_url = format!("{credentials}@{}/{name}", proxy.addr);
    settings.usage_flush_interval = std::time::Duration::from_millis(100);
    let app = TestApp::spawn_with(db, settings, Default::default()).await;
    let mut api = app.api().await;
    let (integration, token) = create(&mut api).await;
    let (revoked, revoked_token) = create(&mut api).await;
    let expire = pb::ExpireTokenRequest {
        id: revoked.id.clone(),
        target: pb::ExpireTarget::All.into(),
        etag: String::new(),
    };
    api.expire_token(expire).await.expect("expire");

    proxy.stop().await;
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
    // Authorize load meanwhile: every call answered from memory, and counted once it is back.
    const CALLS: i64 = 100;
    for _ in 0..CALLS {
        assert_eq!(deny_reason(&authorize(&app, &token, &[]).await), None);
    }
    // Regression: every management call waited 5 s for a connection before UNAVAILABLE.
    let started = std::time::Instant::now();
    let status = api
        .get_integration(get.clone())
        .await
        .expect_err("database down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(3),
        "UNAVAILABLE after {waited:?} (database_acquire_timeout is 1 s)"
    );
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

    proxy.restart().await;
    // No use was lost: the calls made during the outage are written once it is back.
    let started = std::time::Instant::now();
    loop {
        let allowed = api
            .get_integration(get.clone())
            .await
            .ok()
            .and_then(|it| it.into_inner().current_token)
            .map(|token| {
                token
                    .daily_usage
                    .iter()
                    .map(|day| day.allowed_calls)
                    .sum::<i64>()
            });
        if allowed == Some(CALLS + 2) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "usage after the outage: {allowed:?}, expected {}",
            CALLS + 2
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
