//! Test support: `TestApp::spawn` serves privint on `127.0.0.1:0` over a fresh database
//! (SQLite in a temporary directory, or a fresh PostgreSQL database from `TEST_DATABASE_URL`)
//! and hands out real tonic clients.
#![allow(dead_code)]

pub mod raw;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use privint::app::App;
use privint::clock::AdjustableClock;
use privint::config::{Config, Settings};
use privint::grpc::auth::Claims;
use privint::grpc::pb;
use sea_orm::{ConnectionTrait, Database};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";
pub const AGENCY: &str = "agency1";
pub const LOCATION: &str = "loc1";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares `sqlite::NAME` and `postgres::NAME` tests for each `async fn NAME(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}

/// Declares `postgres::NAME` tests for each `async fn NAME(Backend)` that runs several replicas:
/// SQLite serves one process per file.
#[macro_export]
macro_rules! postgres_only {
    ($($name:ident),* $(,)?) => {
        mod postgres_only {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}

/// A database for one test; the SQLite directory lives as long as this.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Returns a fresh database, or `None` for PostgreSQL when `TEST_DATABASE_URL` is unset
    /// outside CI. Under `CI=true` a missing PostgreSQL fails the test: it never skips silently.
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("privint.db").display());
                Some(Self {
                    url,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
                    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                        panic!(
                            "TEST_DATABASE_URL is not set: CI must run the PostgreSQL tests (see .ci/run)"
                        );
                    }
                    eprintln!(
                        "SKIPPED: PostgreSQL test, TEST_DATABASE_URL is not set (bash .ci/run starts a throwaway PostgreSQL)"
                    );
                    return None;
                };
                let name = format!("privint_test_{}", uuid::Uuid::now_v7().simple());
                let admin = Database::connect(&base)
                    .await
                    .expect("TEST_DATABASE_URL must reach PostgreSQL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let (prefix, _) = base
                    .rsplit_once('/')
                    .expect("TEST_DATABASE_URL ends with /database");
                Some(Self {
                    url: format!("{prefix}/{name}"),
                    _dir: None,
                })
            }
        }
    }
}

impl TestDb {
    /// Returns the same database, for a second server (the first keeps any temporary directory).
    pub fn share(&self) -> Self {
        Self {
            url: self.url.clone(),
            _dir: None,
        }
    }
}

/// A running privint server and what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub clock: Arc<AdjustableClock>,
    pub db: TestDb,
    /// How clients reach a server that serves TLS.
    pub client_tls: Option<ClientTlsConfig>,
    settings: Settings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Returns the settings tests use: a fresh database and the test HS256 secret.
pub fn settings(db: &TestDb) -> Settings {
    let mut settings = Settings {
        listen_addr: "127.0.0.1:0".to_owned(),
        metrics_addr: "127.0.0.1:0".to_owned(),
        database_url: db.url.clone(),
        cors_allowed_origins: vec!["https://admin.example.com".to_owned()],
        ..Settings::default()
    };
    settings.auth.hs256_secret = Some(SECRET.into());
    settings
}

impl TestApp {
    /// Spawns a server on a fresh database of `backend`; `None` when that backend is not available.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let settings = settings(&db);
        Some(Self::spawn_with(db, settings, Arc::new(AdjustableClock::default())).await)
    }

    /// Spawns a server with these settings and clock, and waits until it reports SERVING.
    pub async fn spawn_with(db: TestDb, settings: Settings, clock: Arc<AdjustableClock>) -> Self {
        Self::spawn_with_tls(db, settings, clock, None).await
    }

    /// Spawns a server whose clients connect with `client_tls` (when the settings enable TLS).
    pub async fn spawn_with_tls(
        db: TestDb,
        settings: Settings,
        clock: Arc<AdjustableClock>,
        client_tls: Option<ClientTlsConfig>,
    ) -> Self {
        let config = Config::try_from(settings.clone()).expect("valid test config");
        let app = App::bind(config, clock.clone()).await.expect("bind");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        let test_app = Self {
            addr,
            metrics_addr,
            clock,
            db,
            client_tls,
            settings,
            shutdown: Some(shutdown),
            server: Some(server),
        };
        test_app.wait_until_serving().await;
        test_app
    }

    /// Stops this server and starts a new one on the same database (and clock).
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let db = TestDb {
            url: self.db.url.clone(),
            _dir: self.db._dir.take(),
        };
        Self::spawn_with_tls(
            db,
            self.settings.clone(),
            self.clock.clone(),
            self.client_tls.clone(),
        )
        .await
    }

    /// Starts a graceful shutdown, as SIGTERM does, without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        self.begin_stop();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    async fn wait_until_serving(&self) {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel().await);
        for _ in 0..200 {
            let request = tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
            if let Ok(response) = health.check(request).await
                && response.into_inner().status == serving
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become ready");
    }

    /// Returns a channel to the server.
    pub async fn channel(&self) -> Channel {
        let endpoint = match &self.client_tls {
            Some(tls) => Endpoint::from_shared(format!("https://{}", self.addr))
                .expect("valid uri")
                .tls_config(tls.clone())
                .expect("valid client TLS"),
            None => Endpoint::from_shared(format!("http://{}", self.addr)).expect("valid uri"),
        };
        endpoint.connect().await.expect("connect")
    }

    /// Returns a management client sending `jwt`.
    pub async fn api_with(&self, jwt: &str) -> Api {
        api_on(self.channel().await, jwt)
    }

    /// Returns a management client acting as an agency admin of `AGENCY` with no permission claim.
    pub async fn api(&self) -> Api {
        self.api_with(&jwt(user("agency_admin", AGENCY, &[], None)))
            .await
    }

    /// Returns a management client sending no JWT.
    pub async fn anonymous_api(&self) -> Api {
        pb::integration_service_client::IntegrationServiceClient::with_interceptor(
            self.channel().await,
            Bearer(None),
        )
    }

    /// Returns an Authorize client.
    pub async fn authorizer(&self) -> pb::token_authorizer_client::TokenAuthorizerClient<Channel> {
        pb::token_authorizer_client::TokenAuthorizerClient::new(self.channel().await)
    }

    /// Returns the server's current time.
    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use privint::clock::Clock;
        self.clock.now()
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Adds `authorization: Bearer <jwt>` to every call (or nothing).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(bearer) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        Ok(request)
    }
}

/// Returns a management client over `channel` sending `jwt`.
pub fn api_on(channel: Channel, jwt: &str) -> Api {
    let bearer: MetadataValue<_> = format!("Bearer {jwt}").parse().expect("valid metadata");
    pb::integration_service_client::IntegrationServiceClient::with_interceptor(
        channel,
        Bearer(Some(bearer)),
    )
}

pub type Api =
    pb::integration_service_client::IntegrationServiceClient<InterceptedService<Channel, Bearer>>;

/// Returns the claims of a user valid for an hour.
pub fn user(role: &str, agency: &str, locations: &[&str], permissions: Option<&[&str]>) -> Claims {
    Claims {
        sub: format!("user-{role}"),
        iss: "privint".to_owned(),
        aud: "privint".into(),
        exp: (Utc::now().timestamp() + 3600) as u64,
        nbf: None,
        agency_id: Some(agency.to_owned()),
        role: Some(role.to_owned()),
        location_ids: locations.iter().map(|it| (*it).to_owned()).collect(),
        permissions: permissions.map(|it| it.iter().map(|p| (*p).to_owned()).collect()),
    }
}

/// Signs `claims` with the test secret.
pub fn jwt(claims: Claims) -> String {
    signed(&claims, SECRET)
}

/// Signs `claims` with `secret` (HS256).
pub fn signed(claims: &Claims, secret: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("sign")
}

/// Returns a create request for a location-level integration of `LOCATION`.
pub fn location_integration(name: &str, scopes: &[&str]) -> pb::CreateIntegrationRequest {
    pb::CreateIntegrationRequest {
        agency_id: AGENCY.to_owned(),
        location_id: LOCATION.to_owned(),
        name: name.to_owned(),
        description: "test integration".to_owned(),
        scopes: scopes.iter().map(|it| (*it).to_owned()).collect(),
        ip_allowlist: Vec::new(),
        request_id: String::new(),
    }
}

/// Creates a location-level integration with `contacts.readonly contacts.write`; returns it and its token.
pub async fn create(api: &mut Api) -> (pb::Integration, String) {
    let response = api
        .create_integration(location_integration(
            "Zapier",
            &["contacts.readonly", "contacts.write"],
        ))
        .await
        .expect("create")
        .into_inner();
    (response.integration.expect("integration"), response.token)
}

/// Asks Authorize whether `token` may act on `LOCATION` of `AGENCY` with `scopes`.
pub async fn authorize(app: &TestApp, token: &str, scopes: &[&str]) -> pb::AuthorizeResponse {
    authorize_on(app, token, scopes, AGENCY, LOCATION).await
}

/// Asks Authorize whether `token` may act on `agency`/`location` with `scopes`.
/// An Authorize request for `token` on `LOCATION` of `AGENCY` with `scopes`.
#[allow(dead_code)] // Not every test target builds its own requests.
pub fn authorize_request(token: &str, scopes: &[&str]) -> pb::AuthorizeRequest {
    pb::AuthorizeRequest {
        token: token.to_owned(),
        required_scopes: scopes.iter().map(|it| (*it).to_owned()).collect(),
        agency_id: AGENCY.to_owned(),
        location_id: LOCATION.to_owned(),
        client_ip: String::new(),
        user_agent: String::new(),
    }
}

pub async fn authorize_on(
    app: &TestApp,
    token: &str,
    scopes: &[&str],
    agency: &str,
    location: &str,
) -> pb::AuthorizeResponse {
    let request = pb::AuthorizeRequest {
        token: token.to_owned(),
        required_scopes: scopes.iter().map(|it| (*it).to_owned()).collect(),
        agency_id: agency.to_owned(),
        location_id: location.to_owned(),
        client_ip: String::new(),
        user_agent: String::new(),
    };
    app.authorizer()
        .await
        .authorize(request)
        .await
        .expect("authorize answers")
        .into_inner()
}

/// Returns the deny reason, or `None` for an allow.
pub fn deny_reason(response: &pb::AuthorizeResponse) -> Option<pb::DenyReason> {
    match response.decision() {
        pb::Decision::Allow => None,
        pb::Decision::Deny => Some(response.reason()),
        pb::Decision::Unspecified => panic!("unspecified decision"),
    }
}

/// Asserts `status` is INVALID_ARGUMENT with a BadRequest violation of `field`.
#[track_caller]
pub fn assert_violation(status: &tonic::Status, field: &str) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .expect("a google.rpc.BadRequest detail");
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|it| it.field.as_str())
        .collect();
    assert_eq!(fields, [field], "{status:?}");
}

/// The real `privint serve` binary, started on `127.0.0.1:0` over a fresh SQLite file.
pub struct Binary {
    pub child: std::process::Child,
    pub addr: String,
    /// The SQLite database it serves.
    pub db_url: String,
    log_so_far: String,
    log_rest: Option<std::thread::JoinHandle<String>>,
    dir: Option<tempfile::TempDir>,
}

impl Binary {
    /// Starts the binary with extra environment variables and waits until it is ready.
    pub fn start(envs: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().expect("temporary directory"), envs)
    }

    /// Starts the binary on the SQLite file in `dir` (made if missing).
    #[allow(dead_code)] // Not every test target restarts a binary.
    pub fn start_in(dir: tempfile::TempDir, envs: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader, Read};
        let db_url = format!("sqlite://{}", dir.path().join("privint.db").display());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_privint"))
            .arg("serve")
            .env("APP__LISTEN_ADDR", "127.0.0.1:0")
            .env("APP__METRICS_ADDR", "127.0.0.1:0")
            .env("APP__DATABASE_URL", &db_url)
            .env("APP__AUTH__HS256_SECRET", SECRET)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start privint");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut log_so_far = String::new();
        let addr = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).expect("read log") > 0,
                "server exited early:\n{log_so_far}"
            );
            log_so_far.push_str(&line);
            if let Some(rest) = line.split("privint is ready").nth(1) {
                break rest.trim().trim_start_matches("addr=").to_owned();
            }
        };
        let log_rest = std::thread::spawn(move || {
            let mut rest = String::new();
            stderr.read_to_string(&mut rest).expect("read log");
            rest
        });
        Self {
            child,
            addr,
            db_url,
            log_so_far,
            log_rest: Some(log_rest),
            dir: Some(dir),
        }
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would, and returns its
    /// database directory for a restart.
    #[allow(dead_code)] // Not every test target kills a binary.
    pub fn kill(mut self) -> tempfile::TempDir {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
        self.dir.take().expect("the directory")
    }

    /// Returns a channel to the server.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Sends SIGTERM, waits for a clean exit, and returns everything the process printed.
    pub fn stop(mut self) -> String {
        use std::io::Read;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(
            exit.success(),
            "graceful shutdown on SIGTERM exits 0: {exit:?}"
        );
        let mut output = std::mem::take(&mut self.log_so_far);
        output.push_str(
            &self
                .log_rest
                .take()
                .expect("reader")
                .join()
                .expect("reader thread"),
        );
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut output)
            .expect("stdout");
        output
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failed test must not leave a server running (after `stop` this finds it gone).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Gets `path` from the metrics port of `app`: the status and the body.
#[allow(dead_code)] // Not every test target reads metrics.
pub async fn get(app: &TestApp, path: &str) -> (http::StatusCode, String) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri = format!(
        "http://{}{path}",
        app.metrics_addr.expect("metrics enabled")
    );
    let response = client
        .get(uri.parse().expect("uri"))
        .await
        .expect("metrics answer");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8(body.to_vec()).expect("text"))
}
