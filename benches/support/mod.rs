//! What the benchmarks share: the real binary as a child process, and a management client
//! with an agency admin's JWT.
#![allow(dead_code)] // Each benchmark uses part of it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use privint::cli::BearerJwt;
use privint::grpc::pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// The HS256 secret the benchmarks' servers trust.
pub const SECRET: &str = "benchmark-secret-of-at-least-32-bytes-long";

/// A management client.
pub type Api = pb::integration_service_client::IntegrationServiceClient<
    InterceptedService<Channel, BearerJwt>,
>;

/// Returns a management client over `channel` acting as an admin of `agency1`, with a JWT signed
/// by the HS256 `secret` (as `privint dev-jwt` signs it).
pub fn admin_api(channel: Channel, secret: &str) -> Api {
    let mut settings = privint::config::Settings::default();
    settings.auth.hs256_secret = Some(secret.into());
    let args = privint::cli::DevJwtArgs {
        agency: "agency1".into(),
        role: "agency_admin".into(),
        locations: Vec::new(),
        permissions: Vec::new(),
        user: "bench".into(),
        ttl: std::time::Duration::from_secs(3600),
    };
    let jwt = privint::cli::dev_jwt(&args, &settings).expect("a JWT");
    let bearer = BearerJwt::new(&jwt).expect("a JWT is valid metadata");
    pb::integration_service_client::IntegrationServiceClient::with_interceptor(channel, bearer)
}

/// A running `privint serve` child process.
pub struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// Starts the release binary on `url`; returns once it is ready, with the time it took.
    pub async fn start(url: &str, envs: &[(&str, &str)]) -> (Self, Duration) {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            listener.local_addr().expect("address").port()
        };
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_privint"))
            .arg("serve")
            .env("APP__DATABASE_URL", url)
            .env("APP__LISTEN_ADDR", &addr)
            .env("APP__METRICS_ADDR", "")
            .env("APP__LOG_FILTER", "warn")
            .env("APP__AUTH__HS256_SECRET", SECRET)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start privint");
        let server = Self { child, addr };
        loop {
            if let Ok(channel) = server.endpoint().connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let ready = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await;
                if ready.is_ok_and(|it| it.into_inner().status == 1) {
                    return (server, started.elapsed());
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "privint never became ready"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .tcp_nodelay(true)
    }

    /// Returns a field of /proc/PID/status, in bytes (VmRSS, VmHWM).
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("process status");
        let line = status
            .lines()
            .find(|line| line.starts_with(field))
            .expect("field");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .expect("value")
            .parse()
            .expect("number");
        kib * 1024
    }

    /// Resets the peak RSS (VmHWM) to the current RSS.
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("reset the peak RSS");
    }

    /// Returns the CPU time the process has used.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("process stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        Duration::from_millis(ticks * 10)
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
