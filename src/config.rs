//! Configuration: `Settings` as read (a TOML file plus `APP__SECTION__KEY` environment
//! variables, over documented defaults), validated once into `Config` at start-up.
//! Size: one struct per section of the configuration table, with its defaults and checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::scope::Catalog;
use crate::index::follower::FeedSettings;
use crate::service::lifecycle::{MIN_GRACE, RotationPolicy};
use crate::store::DatabaseTimeouts;

/// The scope catalog shipped with privint (`scopes.toml`).
pub const DEFAULT_SCOPES: &str = include_str!("../scopes.toml");

/// The HS256 secret `privint serve --dev` and `privint dev-jwt` use when none is configured.
///
/// DEVELOPMENT ONLY: it is public, so anyone can mint management JWTs for a server that uses it.
pub const DEV_SECRET: &str = "privint-development-secret-do-not-use-in-production";

/// The settings as written in the file and environment; see README "Configuration".
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where gRPC, gRPC-web, health and reflection are served.
    pub listen_addr: String,
    /// `sqlite://path` (created if missing) or `postgres://user:password@host/db`.
    pub database_url: String,
    /// Where Prometheus metrics are served (`GET /metrics`); empty disables them.
    pub metrics_addr: String,
    /// A scope catalog file replacing the shipped one.
    pub scopes_file: Option<PathBuf>,
    /// Browser origins allowed to call over gRPC-web, e.g. `https://admin.example.com`: a
    /// list in the file, a comma-separated one in the environment.
    #[serde(deserialize_with = "list")]
    pub cors_allowed_origins: Vec<String>,
    /// The largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// The default log filter (overridden by `RUST_LOG`).
    pub log_filter: String,
    /// How often the last use of tokens is written to the database (and at shutdown).
    #[serde(with = "humantime_serde")]
    pub usage_flush_interval: Duration,
    /// How long a token that expired or was revoked stays known to Authorize (answering
    /// EXPIRED_TOKEN or REVOKED_TOKEN); after it, Authorize answers UNKNOWN_TOKEN for it and it
    /// costs no memory.
    #[serde(with = "humantime_serde")]
    pub retired_token_retention: Duration,
    /// How long the server keeps answering after readiness turns NOT_SERVING on SIGTERM, so
    /// load balancers stop sending calls before the port closes.
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// How long a call waits for a database connection before answering UNAVAILABLE (a
    /// database outage fails management calls this fast; Authorize never waits for it).
    #[serde(with = "humantime_serde")]
    pub database_acquire_timeout: Duration,
    /// SQLite: how long a write waits for another process's lock (a backup, `sqlite3`) before
    /// answering UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub database_busy_timeout: Duration,
    pub rotation: RotationSettings,
    pub change_feed: ChangeFeedSettings,
    pub auth: AuthSettings,
    pub tls: TlsSettings,
    pub port: PortSettings,
}

/// Limits that keep the port answering under abuse: slow, idle or too many clients, and
/// oversized requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortSettings {
    /// Open connections at most; one beyond is closed at once.
    pub max_connections: usize,
    /// Concurrent calls (HTTP/2 streams) on one connection.
    pub max_streams_per_connection: u32,
    /// The largest request header block (a JWT with many location ids can pass 16 KiB); a
    /// request beyond it fails alone.
    pub max_header_bytes: u32,
    /// The time from accepting a connection to its first call's headers (TLS handshake and
    /// HTTP/2 preface included).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no call in flight for this long is closed (this also bounds reading
    /// the headers of a later call).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The longest a call may take (a shorter `grpc-timeout` from the client wins);
    /// `WatchEvents` streams are bounded by `max_watch_subscribers` instead.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// HTTP/2 PING (and TCP keep-alive) interval on quiet connections.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// A connection whose PING is not answered within this is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// `WatchEvents` streams open at once on this replica; beyond, RESOURCE_EXHAUSTED.
    pub max_watch_subscribers: usize,
}

impl Default for PortSettings {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_streams_per_connection: 200,
            max_header_bytes: 128 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_watch_subscribers: 10_000,
        }
    }
}

impl PortSettings {
    fn check(&self) -> Result<(), String> {
        if self.max_connections == 0
            || self.max_streams_per_connection == 0
            || self.max_watch_subscribers == 0
        {
            return Err("port: connection, stream and subscriber caps must be at least 1".into());
        }
        if self.max_header_bytes < 16 * 1024 {
            return Err("port.max_header_bytes must be at least 16384".to_owned());
        }
        let timeouts = [
            self.handshake_timeout,
            self.idle_timeout,
            self.request_timeout,
            self.keepalive_interval,
            self.keepalive_timeout,
        ];
        if timeouts.iter().any(|it| *it < Duration::from_millis(100)) {
            return Err("port: every time-out and interval must be at least 100ms".to_owned());
        }
        Ok(())
    }
}

/// How this replica follows changes made by other replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeFeedSettings {
    /// How often the events table is polled (on PostgreSQL, NOTIFY also wakes the follower).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often every integration is reloaded, as a safety net.
    #[serde(with = "humantime_serde")]
    pub resync_interval: Duration,
}

impl Default for ChangeFeedSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            resync_interval: Duration::from_secs(300),
        }
    }
}

/// TLS for the port, and client certificates for Authorize callers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The server certificate chain (PEM); with `key_file`, the port serves TLS only.
    pub cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// A CA (PEM) whose client certificates are verified; with it, Authorize requires one.
    pub client_ca_file: Option<PathBuf>,
}

/// Token lifetime bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationSettings {
    #[serde(with = "humantime_serde")]
    pub default_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub max_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub rotation_age: Duration,
    #[serde(with = "humantime_serde")]
    pub max_expiry: Duration,
}

/// How management callers' JWTs are verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The required `iss` claim.
    pub issuer: String,
    /// The required `aud` claim.
    pub audience: String,
    /// A JWKS file of EdDSA, ES256 or RS256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// An HS256 secret (at least 32 bytes), for single-team setups. Never serialized (the
    /// defaults have none), and printed redacted.
    #[serde(skip_serializing)]
    pub hs256_secret: Option<SecretString>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_addr: "127.0.0.1:50051".to_owned(),
            database_url: "sqlite://privint.db".to_owned(),
            metrics_addr: "127.0.0.1:9090".to_owned(),
            scopes_file: None,
            cors_allowed_origins: Vec::new(),
            max_message_bytes: 256 * 1024,
            log_filter: "info".to_owned(),
            shutdown_delay: Duration::ZERO,
            retired_token_retention: 30 * DAY,
            usage_flush_interval: Duration::from_secs(10),
            database_acquire_timeout: DatabaseTimeouts::default().acquire,
            database_busy_timeout: DatabaseTimeouts::default().busy,
            rotation: RotationSettings::default(),
            change_feed: ChangeFeedSettings::default(),
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            port: PortSettings::default(),
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for RotationSettings {
    fn default() -> Self {
        Self {
            default_grace: 7 * DAY,
            max_grace: 30 * DAY,
            rotation_age: 90 * DAY,
            max_expiry: 365 * DAY,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "privint".to_owned(),
            audience: "privint".to_owned(),
            jwks_file: None,
            hs256_secret: None,
        }
    }
}

/// Reads a list setting: a sequence (TOML), or a comma-separated string (an environment
/// variable, where figment has no sequences): `APP__CORS_ALLOWED_ORIGINS=https://a,https://b`.
fn list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Many(Vec<String>),
        Commas(String),
    }
    Ok(match List::deserialize(deserializer)? {
        List::Many(items) => items,
        List::Commas(text) => text
            .split(',')
            .map(str::trim)
            .filter(|it| !it.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl Settings {
    /// Reads the defaults, then `file` (if given), then `APP__...` environment variables.
    ///
    /// # Errors
    /// Returns a message naming the bad file or key.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(format!("config file {} does not exist", file.display()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment
            .merge(Env::prefixed("APP__").split("__"))
            .extract()
            .map_err(|err| format!("invalid configuration: {err}"))
    }
}

/// The validated configuration; its `Debug` shows secrets as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// `None` when metrics are disabled.
    pub metrics_addr: Option<SocketAddr>,
    pub database_url: SecretString,
    pub database: DatabaseTimeouts,
    pub catalog: Catalog,
    pub cors_allowed_origins: Vec<http::HeaderValue>,
    pub max_message_bytes: usize,
    pub log_filter: String,
    pub shutdown_delay: Duration,
    pub usage_flush_interval: Duration,
    pub retired_token_retention: chrono::Duration,
    pub rotation: RotationPolicy,
    pub change_feed: FeedSettings,
    pub jwks_file: Option<PathBuf>,
    pub hs256_secret: Option<SecretString>,
    pub issuer: String,
    pub audience: String,
    /// `None` serves plaintext (for a sidecar or mesh that terminates TLS).
    pub tls: Option<TlsConfig>,
    pub port: PortSettings,
}

/// The PEM material of the port's TLS, read at start-up.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: SecretSlice<u8>,
    /// When set, client certificates are verified against it and Authorize requires one.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl TlsConfig {
    fn load(settings: &TlsSettings) -> Result<Option<Self>, String> {
        let read = |name: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|err| format!("cannot read tls.{name} {}: {err}", path.display()))
        };
        let client_ca_pem = settings
            .client_ca_file
            .as_deref()
            .map(|path| read("client_ca_file", path))
            .transpose()?;
        match (&settings.cert_file, &settings.key_file) {
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert_pem: read("cert_file", cert)?,
                key_pem: SecretSlice::from(read("key_file", key)?),
                client_ca_pem,
            })),
            (None, None) if client_ca_pem.is_none() => Ok(None),
            (None, None) => {
                Err("tls.client_ca_file needs tls.cert_file and tls.key_file".to_owned())
            }
            _ => Err("set both tls.cert_file and tls.key_file, or neither".to_owned()),
        }
    }
}

impl TryFrom<Settings> for Config {
    type Error = String;

    fn try_from(settings: Settings) -> Result<Self, String> {
        let listen_addr = settings
            .listen_addr
            .parse()
            .map_err(|err| format!("invalid listen_addr {:?}: {err}", settings.listen_addr))?;
        let metrics_addr = match settings.metrics_addr.as_str() {
            "" => None,
            addr => Some(
                addr.parse()
                    .map_err(|err| format!("invalid metrics_addr {addr:?}: {err}"))?,
            ),
        };
        if !(settings.database_url.starts_with("sqlite:")
            || settings.database_url.starts_with("postgres://")
            || settings.database_url.starts_with("postgresql://"))
        {
            return Err("database_url must start with sqlite:// or postgres://".to_owned());
        }
        let tls = TlsConfig::load(&settings.tls)?;
        settings.port.check()?;
        let database = DatabaseTimeouts {
            acquire: settings.database_acquire_timeout,
            busy: settings.database_busy_timeout,
        };
        if database.acquire < Duration::from_millis(10) {
            return Err("database_acquire_timeout must be at least 10ms".to_owned());
        }
        let feed = &settings.change_feed;
        if feed.poll_interval < Duration::from_millis(10)
            || feed.resync_interval < Duration::from_secs(1)
        {
            return Err(
                "change_feed: poll_interval must be at least 10ms and resync_interval at least 1s"
                    .to_owned(),
            );
        }
        let change_feed = FeedSettings {
            poll_interval: feed.poll_interval,
            resync_interval: feed.resync_interval,
        };
        let catalog_text = match &settings.scopes_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|err| format!("cannot read scopes_file {}: {err}", path.display()))?,
            None => DEFAULT_SCOPES.to_owned(),
        };
        let catalog = Catalog::from_toml(&catalog_text)?;
        let cors_allowed_origins = settings
            .cors_allowed_origins
            .iter()
            .map(|origin| {
                http::HeaderValue::from_str(origin)
                    .map_err(|_| format!("invalid CORS origin {origin:?}"))
            })
            .collect::<Result<_, _>>()?;
        if settings.max_message_bytes < 1024 {
            return Err("max_message_bytes must be at least 1024".to_owned());
        }
        let duration = |name: &str, duration: Duration| {
            chrono::Duration::from_std(duration)
                .map_err(|_| format!("rotation.{name} is too large"))
        };
        let rotation = RotationPolicy {
            default_grace: duration("default_grace", settings.rotation.default_grace)?,
            max_grace: duration("max_grace", settings.rotation.max_grace)?,
            rotation_age: duration("rotation_age", settings.rotation.rotation_age)?,
            max_expiry: duration("max_expiry", settings.rotation.max_expiry)?,
        };
        if rotation.max_grace < MIN_GRACE
            || rotation.default_grace < MIN_GRACE
            || rotation.default_grace > rotation.max_grace
        {
            return Err("rotation: need 1 minute <= default_grace <= max_grace".to_owned());
        }
        Ok(Self {
            listen_addr,
            metrics_addr,
            database_url: SecretString::from(settings.database_url),
            database,
            catalog,
            cors_allowed_origins,
            max_message_bytes: settings.max_message_bytes,
            log_filter: settings.log_filter,
            shutdown_delay: settings.shutdown_delay,
            usage_flush_interval: settings.usage_flush_interval.max(Duration::from_millis(10)),
            retired_token_retention: chrono::Duration::from_std(settings.retired_token_retention)
                .map_err(|_| {
                "retired_token_retention is too large".to_owned()
            })?,
            rotation,
            change_feed,
            jwks_file: settings
                .auth
                .jwks_file
                .filter(|path| !path.as_os_str().is_empty()),
            hs256_secret: settings
                .auth
                .hs256_secret
                .filter(|secret| !secret.expose_secret().is_empty()),
            issuer: settings.auth.issuer,
            audience: settings.auth.audience,
            tls,
            port: settings.port,
        })
    }
}
