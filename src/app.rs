//! Wiring: the store, the token index, the services, health, reflection, gRPC-web with CORS,
//! and graceful shutdown. No business logic lives here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tower_http::classify::SharedClassifier;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{Config, TlsConfig};
use crate::grpc::Ready;
use crate::grpc::auth::Authenticator;
use crate::index::TokenIndex;
use crate::index::feed::EventFeed;
use crate::index::follower::Follower;
use crate::metrics::{Metrics, RpcMetricsLayer};
use crate::port::{ActivityLayer, PortLimits};
use crate::service::authorizer::Authorizer;
use crate::service::events::Events;
use crate::service::lifecycle::Integrations;
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
    /// NOT_SERVING, new calls are refused and in-flight calls finish; then the last usage is
    /// written.
    ///
    /// # Errors
    /// Returns an error if start-up (database, migrations, index) or the server fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let local_addr = self.local_addr();
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
        // Stops the server (after the drain) and every background task but the recorder, which
        // writes the last uses once no call can make more.
        let stop = CancellationToken::new();
        let stop_recorder = CancellationToken::new();
        let Self {
            config,
            clock,
            listener,
            metrics_listener,
            authenticator,
        } = self;
        let services = Services {
            health: health_service,
            integrations: crate::grpc::integration_service(
                Arc::clone(&integrations),
                authenticator,
                config.max_message_bytes,
            ),
            authorizer: crate::grpc::authorizer_service(
                Arc::clone(&authorizer),
                config.max_message_bytes,
                config
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.client_ca_pem.is_some()),
            ),
        };
        let server = serve(&config, listener, services, &metrics, &stop)?;
        let server = tokio::spawn(server);
        if let Some(listener) = metrics_listener {
            let encode = metrics_page(Arc::clone(&metrics), Arc::clone(&authorizer));
            let stopped = stop_recorder.clone().cancelled_owned();
            tokio::spawn(crate::metrics::serve(listener, encode, stopped));
        }
        let startup = async {
            let started = start_services(&config, clock, Arc::clone(&metrics)).await?;
            let _ = integrations.set(started.integrations);
            let _ = authorizer.set(started.authorizer);
            tokio::spawn(started.follower.run(stop.clone()));
            let (store, index, clock) = started.recorder;
            let interval = config.usage_flush_interval;
            let recorder =
                crate::index::recorder::run(store, index, clock, interval, stop_recorder.clone());
            anyhow::Ok(tokio::spawn(recorder))
        };
        tokio::pin!(shutdown);
        let recorder = tokio::select! {
            started = startup => match started {
                Ok(recorder) => recorder,
                Err(err) => {
                    stop.cancel();
                    stop_recorder.cancel();
                    let _ = server.await;
                    return Err(err);
                }
            },
            () = &mut shutdown => {
                stop.cancel();
                stop_recorder.cancel();
                return server.await.context("server task failed")?.context("server failed");
            }
        };
        health.set_service_status("", ServingStatus::Serving).await;
        info!(addr = %local_addr, "privint is ready");

        shutdown.await;
        info!("shutting down: finishing in-flight calls");
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tokio::time::sleep(config.shutdown_delay).await;
        if let Some(integrations) = integrations.get() {
            integrations.events().stop_watchers();
        }
        stop.cancel();
        match tokio::time::timeout(Duration::from_secs(30), server).await {
            Ok(result) => result
                .context("server task failed")?
                .context("server failed")?,
            Err(_) => warn!("in-flight calls did not finish within 30 s"),
        }
        // The last uses are written once no call can make more.
        stop_recorder.cancel();
        let _ = recorder.await;
        info!("stopped");
        Ok(())
    }
}

/// The gRPC services privint serves on its port (besides reflection).
struct Services<H> {
    health: H,
    integrations: crate::grpc::IntegrationServer,
    authorizer: crate::grpc::AuthorizerServer,
}

/// Returns the gRPC server future: every service on one port, until `stop` is cancelled.
fn serve<H>(
    config: &Config,
    listener: TcpListener,
    services: Services<H>,
    metrics: &Arc<Metrics>,
    stop: &CancellationToken,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>> + use<H>>
where
    H: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    H::Future: Send + 'static,
{
    let reflection =
        crate::grpc::reflection_service().context("cannot build the reflection service")?;
    let port = &config.port;
    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(server_tls(tls).timeout(port.handshake_timeout))
            .context("invalid TLS configuration")?;
    }
    let limits = PortLimits {
        max_connections: port.max_connections,
        handshake_timeout: port.handshake_timeout,
        idle_timeout: port.idle_timeout,
        tcp_keepalive: port.keepalive_interval,
    };
    let incoming = crate::port::incoming(listener, limits, metrics.port());
    Ok(builder
        .accept_http1(true)
        .timeout(port.request_timeout)
        .max_concurrent_streams(port.max_streams_per_connection)
        .http2_keepalive_interval(Some(port.keepalive_interval))
        .http2_keepalive_timeout(Some(port.keepalive_timeout))
        .http2_max_header_list_size(
            port.max_header_bytes
                .saturating_mul(crate::grpc::oversized::H2_HEADER_FACTOR),
        )
        .layer(ActivityLayer)
        .layer(RpcMetricsLayer(Arc::clone(metrics)))
        .layer(
            tower_http::trace::TraceLayer::new(SharedClassifier::new(
                crate::telemetry::server_faults(),
            ))
            .make_span_with(crate::telemetry::rpc_span),
        )
        .layer(crate::grpc::web::BrowserLayer::new(
            &config.cors_allowed_origins,
        ))
        .layer(crate::grpc::undecodable::UndecodableLayer)
        .layer(crate::grpc::oversized::OversizedLayer {
            max_header_bytes: port.max_header_bytes as usize,
        })
        .add_service(services.health)
        .add_service(reflection)
        .add_service(services.integrations)
        .add_service(services.authorizer)
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()))
}

/// Returns the function that renders the metrics page, with the token gauges of `authorizer`
/// once it is ready.
fn metrics_page(
    metrics: Arc<Metrics>,
    authorizer: Ready<Authorizer>,
) -> Arc<dyn Fn() -> String + Send + Sync> {
    Arc::new(move || match authorizer.get() {
        Some(it) => {
            let (live, indexed) = it.token_counts();
            metrics.encode(live, indexed, it.index_staleness())
        }
        None => metrics.encode(0, 0, chrono::Duration::zero()),
    })
}

/// The services, and the background tasks that keep their index in line with other replicas
/// and write usage.
struct Started {
    integrations: Arc<Integrations>,
    authorizer: Arc<Authorizer>,
    follower: Follower,
    /// What the use recorder writes from and to.
    recorder: (Store, Arc<TokenIndex>, Arc<dyn Clock>),
}

/// Connects to the database, migrates it, loads the token index, and returns the services.
async fn start_services(
    config: &Config,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Started> {
    let store = Store::connect(config.database_url.expose_secret(), &config.database)
        .await
        .context("cannot connect to the database")?;
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    // The feed starts at the last event committed before the load: ids follow commit order, so
    // a change committed during the load has a later id and reaches the follower (at worst
    // applied twice, which is harmless).
    let load_started = clock.now();
    let feed_start = store
        .last_event_id()
        .await
        .context("cannot read the event log")?;
    let catalog = Arc::new(config.catalog.clone());
    let index = Arc::new(TokenIndex::new(
        Arc::clone(&catalog),
        config.retired_token_retention,
    ));
    crate::index::follower::reload(&store, &index, load_started)
        .await
        .context("cannot load the token index")?;
    info!(tokens = index.len(), "token index loaded");
    let feed = Arc::new(EventFeed::new(feed_start, metrics.change_feed_reads()));
    let recorder = (store.clone(), Arc::clone(&index), Arc::clone(&clock));
    let follower = Follower::new(
        store.clone(),
        Arc::clone(&index),
        Arc::clone(&clock),
        config.change_feed.clone(),
        Arc::clone(&feed),
    );
    let events = Arc::new(Events::new(
        store.clone(),
        feed,
        config.port.max_watch_subscribers,
    ));
    let integrations = Integrations::new(
        store,
        Arc::clone(&index),
        Arc::clone(&catalog),
        config.rotation.clone(),
        Arc::clone(&clock),
        events,
    );
    let authorizer = Authorizer::new(index, clock, metrics);
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
