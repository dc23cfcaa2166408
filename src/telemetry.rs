//! Logs and traces: a `tracing` subscriber writing to stderr, and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry spans exported over OTLP (gRPC).
//!
//! Every RPC gets a server span joined to the caller's trace through W3C `traceparent`
//! metadata (`rpc_span`), with the handler's span inside it.
//! Spans and events never carry a token or a digest: handlers use `skip_all` and record ids only.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What traces are exported at: privint's own spans down to debug (Authorize's included).
const TRACE_FILTER: &str = "info,privint=debug,sqlx=warn,h2=warn,hyper=warn,tower=warn";

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
#[must_use = "call shutdown() to flush traces before exiting"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter, if any.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("cannot flush traces: {err}");
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter` for the log.
/// sqlx statement logging stays off whatever the filter says.
///
/// # Errors
/// Returns a message if `OTEL_EXPORTER_OTLP_ENDPOINT` is set but the exporter cannot be built.
pub fn init(default_filter: &str) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let filter = filter.add_directive("sqlx=warn".parse().expect("a valid directive"));
    let log = tracing_subscriber::fmt::layer()
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter);
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(otlp_provider()?),
        _ => None,
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("privint"))
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init();
    Ok(Telemetry { provider })
}

/// Builds the OTLP exporter from the standard `OTEL_EXPORTER_OTLP_*` variables.
fn otlp_provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|err| format!("cannot build the OTLP exporter: {err}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("privint")
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Returns the server span of one RPC, a child of the caller's trace when the request carries
/// W3C `traceparent` metadata. Only the method path is recorded, never a header value.
/// Which answers the RPC trace layer logs as failures (at ERROR): server faults only (INTERNAL,
/// UNKNOWN, UNAVAILABLE, DATA_LOSS). An answer that is the caller's doing (a bad argument, a
/// missing JWT, a stale etag, a refused stream) is an answer, not a failure.
pub fn server_faults() -> GrpcErrorsAsFailures {
    [
        GrpcCode::Cancelled,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Unauthenticated,
    ]
    .into_iter()
    .fold(
        GrpcErrorsAsFailures::new(),
        GrpcErrorsAsFailures::with_success,
    )
}

pub fn rpc_span<B>(request: &http::Request<B>) -> Span {
    let span = tracing::debug_span!(
        "grpc.server",
        otel.name = %request.uri().path(),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}
