//! Wiring: the store, the token index, the services, health, reflection, gRPC-web with CORS,
//! and graceful shutdown. No business logic lives here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::{info, warn};

use crate::config::{Config, TlsConfig};
use crate::domain::event::GAP_WAIT;
use crate::grpc::Ready;
use crate::grpc::auth::Authenticator;
use crate::index::TokenIndex;
use crate::index::follower::Follower;
use crate::metrics::{Metrics, RpcMetricsLayer};
use crate::service::authorizer::Authorizer;
use crate::service::clock::Clock;
use crate::service::integrations::Integrations;
use crate::store::Store;

/// The health service name that reports liveness: SERVING while the process can answer.
pub const LIVENESS_SERVICE: &str = "liveness";

/// A bound, not yet running, privint server.
pub struct App {
    config: Config,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    authenticator: Authenticator,
}

impl App {
    /// Validates the auth keys and binds the listening socket.
    ///
    /// # Errors
    /// Returns an error if the keys are unusable or the address cannot be bound.
    pub async fn bind(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let authenticator = Authenticator::new(
            config.jwks_file.as_deref(),
            config.hs256_secret.as_ref(),
            &config.issuer,
            &config.audience,
        )
        .map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen_addr))?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {addr}"))?,
            ),
            None => None,
        };
        Ok(Self {
            config,
            clock,
            listener,
            metrics_listener,
            authenticator,
        })
    }

    /// Returns the address metrics are served on, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|it| it.local_addr().expect("a bound listener has an address"))
    }

    /// Returns the address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes: health answers at once; the APIs become ready once the
    /// database is migrated and the token index is loaded. On shutdown, readiness turns
    /// NOT_SERVING, new calls are refused and in-flight calls finish.
    ///
    /// # Errors
    /// Returns an error if start-up (database, migrations, index) or the server fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let local_addr = self.local_addr();
        let Self {
            config,
            clock,
            listener,
            metrics_listener,
            authenticator,
        } = self;
        let metrics = Metrics::new();
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let integrations: Ready<Integrations> = Arc::new(OnceLock::new());
        let authorizer: Ready<Authorizer> = Arc::new(OnceLock::new());
        let max = config.max_message_bytes;
        let integration_service =
            crate::grpc::integration_service(Arc::clone(&integrations), authenticator, max);
        let require_client_cert = config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca_pem.is_some());
        let authorizer_service =
            crate::grpc::authorizer_service(Arc::clone(&authorizer), max, require_client_cert);
        let reflection =
            crate::grpc::reflection_service().context("cannot build the reflection service")?;

        let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel::<()>();
        let mut builder = Server::builder();
        if let Some(tls) = &config.tls {
            builder = builder
                .tls_config(server_tls(tls))
                .context("invalid TLS configuration")?;
        }
        let server = builder
            .accept_http1(true)
            .layer(RpcMetricsLayer(Arc::clone(&metrics)))
            .layer(
                tower_http::trace::TraceLayer::new_for_grpc()
                    .make_span_with(crate::telemetry::rpc_span),
            )
            .layer(cors(&config.cors_allowed_origins))
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(health_service)
            .add_service(reflection)
            .add_service(integration_service)
            .add_service(authorizer_service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop_receiver.await;
            });
        let server = tokio::spawn(server);
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = metrics_listener {
            let (metrics, authorizer) = (Arc::clone(&metrics), Arc::clone(&authorizer));
            let encode = Arc::new(move || match authorizer.get() {
                Some(it) => {
                    let (live, indexed) = it.token_counts();
                    metrics.encode(live, indexed, it.index_staleness())
                }
                None => metrics.encode(0, 0, chrono::Duration::zero()),
            });
            tokio::spawn(crate::metrics::serve(listener, encode, async {
                let _ = metrics_stopped.await;
            }));
        }

        let (stop_follower, follower_stopped) = tokio::sync::watch::channel(false);
        let (stop_recorder, recorder_stopped) = tokio::sync::watch::channel(false);
        let mut recorder = None;
        let startup = async {
            let started = start_services(&config, clock, Arc::clone(&metrics)).await?;
            let _ = integrations.set(started.integrations);
            let _ = authorizer.set(started.authorizer);
            tokio::spawn(started.follower.run(follower_stopped));
            let (store, index, clock) = started.recorder;
            let interval = config.usage_flush_interval;
            recorder = Some(tokio::spawn(crate::index::recorder::run(
                store,
                index,
                clock,
                interval,
                recorder_stopped,
            )));
            anyhow::Ok(())
        };
        tokio::pin!(shutdown);
        tokio::select! {
            started = startup => if let Err(err) = started {
                let _ = stop_sender.send(());
                let _ = server.await;
                return Err(err);
            },
            () = &mut shutdown => {
                let _ = stop_sender.send(());
                return server.await.context("server task failed")?.context("server failed");
            }
        }
        health.set_service_status("", ServingStatus::Serving).await;
        info!(addr = %local_addr, "privint is ready");

        shutdown.await;
        info!("shutting down: finishing in-flight calls");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tokio::time::sleep(config.shutdown_delay).await;
        if let Some(integrations) = integrations.get() {
            integrations.stop_watchers();
        }
        let _ = stop_follower.send(true);
        let _ = stop_sender.send(());
        match tokio::time::timeout(Duration::from_secs(30), server).await {
            Ok(result) => result
                .context("server task failed")?
                .context("server failed")?,
            Err(_) => warn!("in-flight calls did not finish within 30 s"),
        }
        // The last uses are written once no call can make more.
        let _ = stop_recorder.send(true);
        if let Some(recorder) = recorder {
            let _ = recorder.await;
        }
        let _ = stop_metrics.send(());
        info!("stopped");
        Ok(())
    }
}

/// Connects to the database, migrates it, loads the token index, and returns the services.
/// The services, and the follower that keeps their index in line with other replicas.
struct Started {
    integrations: Arc<Integrations>,
    authorizer: Arc<Authorizer>,
    follower: Follower,
    /// What the use recorder writes from and to.
    recorder: (Store, Arc<TokenIndex>, Arc<dyn Clock>),
}

async fn start_services(
    config: &Config,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Started> {
    let store = Store::connect(config.database_url.expose_secret())
        .await
        .context("cannot connect to the database")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    // The feed starts before the load, a little in the past, so a change committed meanwhile
    // (or still in flight) is applied by the follower rather than missed.
    let load_started = clock.now();
    let feed_start = store
        .last_event_id_before(load_started - GAP_WAIT)
        .await
        .context("cannot read the event log")?;
    let index = Arc::new(TokenIndex::new());
    crate::index::follower::reload(&store, &index, load_started)
        .await
        .context("cannot load the token index")?;
    info!(tokens = index.len(), "token index loaded");
    let last_event_id = store
        .last_event_id()
        .await
        .context("cannot read the event log")?;
    let catalog = Arc::new(config.catalog.clone());
    let recorder = (store.clone(), Arc::clone(&index), Arc::clone(&clock));
    let follower = Follower::new(
        store.clone(),
        Arc::clone(&index),
        Arc::clone(&clock),
        config.change_feed.clone(),
        feed_start,
    );
    let integrations = Integrations::new(
        store,
        Arc::clone(&index),
        Arc::clone(&catalog),
        config.rotation.clone(),
        Arc::clone(&clock),
        last_event_id,
    );
    let authorizer = Authorizer::new(index, catalog, clock, metrics);
    Ok(Started {
        integrations: Arc::new(integrations),
        authorizer: Arc::new(authorizer),
        follower,
        recorder,
    })
}

/// Returns the server's TLS settings: client certificates are optional at the handshake (browsers
/// and management tools have none) and required by Authorize when a client CA is configured.
fn server_tls(tls: &TlsConfig) -> ServerTlsConfig {
    let identity = Identity::from_pem(&tls.cert_pem, tls.key_pem.expose_secret());
    let config = ServerTlsConfig::new().identity(identity);
    match &tls.client_ca_pem {
        Some(ca) => config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(true),
        None => config,
    }
}

/// Returns a CORS layer allowing gRPC-web calls from `origins` (none if empty).
fn cors(origins: &[http::HeaderValue]) -> CorsLayer {
    use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([http::Method::POST, http::Method::OPTIONS])
        .allow_headers([
            CONTENT_TYPE,
            AUTHORIZATION,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
            HeaderName::from_static("traceparent"),
        ])
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(24 * 60 * 60))
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
        () = terminate => info!("received SIGTERM"),
    }
}
