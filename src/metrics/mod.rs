//! Prometheus metrics: calls by RPC and status code, Authorize results and latency, tokens in
//! the index. Served as Prometheus text on a separate HTTP port (`metrics_addr`).
//!
//! It records and encodes; it decides nothing and never sees a token. The tower layer that
//! counts calls lives in `layer`.

mod layer;

pub use layer::RpcMetricsLayer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::domain::decision::{Decision, DenyReason};
use crate::port::PortMetrics;

/// gRPC status code names, indexed by code.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    /// The method path, e.g. `/privint.v1.TokenAuthorizer/Authorize`.
    rpc: String,
    code: &'static str,
}

/// An Authorize result as labelled: `allow`, or the deny reason.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The variant names are the label values.
enum AuthorizeResult {
    allow,
    malformed_token,
    unknown_token,
    expired_token,
    revoked_token,
    missing_scopes,
    wrong_account,
    disabled,
    ip_not_allowed,
}

impl AuthorizeResult {
    const ALL: [Self; 9] = [
        Self::allow,
        Self::malformed_token,
        Self::unknown_token,
        Self::expired_token,
        Self::revoked_token,
        Self::missing_scopes,
        Self::wrong_account,
        Self::disabled,
        Self::ip_not_allowed,
    ];

    fn of(decision: &Decision) -> Self {
        match decision {
            Decision::Allow { .. } => Self::allow,
            Decision::Deny(DenyReason::MalformedToken) => Self::malformed_token,
            Decision::Deny(DenyReason::UnknownToken) => Self::unknown_token,
            Decision::Deny(DenyReason::ExpiredToken) => Self::expired_token,
            Decision::Deny(DenyReason::RevokedToken) => Self::revoked_token,
            Decision::Deny(DenyReason::MissingScopes(_)) => Self::missing_scopes,
            Decision::Deny(DenyReason::WrongAccount) => Self::wrong_account,
            Decision::Deny(DenyReason::Disabled) => Self::disabled,
            Decision::Deny(DenyReason::IpNotAllowed) => Self::ip_not_allowed,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: AuthorizeResult,
}

/// Every metric privint exports.
pub struct Metrics {
    registry: Registry,
    rpc_calls: Family<RpcLabels, Counter>,
    /// One counter per result, in `AuthorizeResult::ALL` order, looked up once so a call only
    /// increments.
    authorize_results: [Counter; AuthorizeResult::ALL.len()],
    authorize_latency: LatencyHistogram,
    live_tokens: Gauge,
    indexed_tokens: Gauge,
    change_feed_lag: Gauge<f64, AtomicU64>,
    change_feed_reads: Counter,
    port: PortMetrics,
}

impl Metrics {
    /// Returns the metrics, registered and at zero.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("privint");
        let rpc_calls = Family::<RpcLabels, Counter>::default();
        registry.register(
            "rpc_calls",
            "gRPC calls finished, by method and status code",
            rpc_calls.clone(),
        );
        let results = Family::<ResultLabels, Counter>::default();
        registry.register(
            "authorize_results",
            "Authorize answers, by result",
            results.clone(),
        );
        let authorize_results = AuthorizeResult::ALL
            .map(|result| results.get_or_create(&ResultLabels { result }).clone());
        // 1 µs to about 0.5 s.
        let authorize_latency = LatencyHistogram::new(exponential_buckets(1e-6, 2.0, 20));
        registry.register(
            "authorize_latency_seconds",
            "Time to decide an Authorize call, from request fields to decision",
            authorize_latency.clone(),
        );
        let live_tokens = Gauge::default();
        registry.register(
            "live_tokens",
            "Tokens that authorize now (not expired, not revoked)",
            live_tokens.clone(),
        );
        let indexed_tokens = Gauge::default();
        registry.register(
            "indexed_tokens",
            "Tokens in the in-memory index, live or not",
            indexed_tokens.clone(),
        );
        let change_feed_lag = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "change_feed_lag_seconds",
            "How far behind the database the token index may be (changes of other replicas)",
            change_feed_lag.clone(),
        );
        let change_feed_reads = Counter::default();
        registry.register(
            "change_feed_reads",
            "Reads of the events table: one per poll of the follower, whatever the number of event streams",
            change_feed_reads.clone(),
        );
        let port = PortMetrics::default();
        registry.register(
            "connections_open",
            "Connections open on the gRPC port",
            port.open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once because port.max_connections were open",
            port.refused.clone(),
        );
        Arc::new(Self {
            port,
            registry,
            rpc_calls,
            authorize_results,
            authorize_latency,
            live_tokens,
            indexed_tokens,
            change_feed_lag,
            change_feed_reads,
        })
    }

    /// Returns the counter of change-feed reads, for whatever reads the events table.
    pub fn change_feed_reads(&self) -> Counter {
        self.change_feed_reads.clone()
    }

    /// Returns what the port counts.
    pub fn port(&self) -> PortMetrics {
        self.port.clone()
    }

    /// Counts one Authorize answer and, for a sampled call, its latency.
    pub fn record_authorize(&self, decision: &Decision, latency: Option<Duration>) {
        self.authorize_results[AuthorizeResult::of(decision) as usize].inc();
        if let Some(latency) = latency {
            self.authorize_latency.observe(latency);
        }
    }

    pub(crate) fn record_rpc(&self, rpc: String, status: Option<&http::HeaderValue>) {
        let code = status
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok())
            .and_then(|code| CODE_NAMES.get(code).copied())
            .unwrap_or("UNKNOWN");
        // Any path can be sent; one that names no method is answered UNIMPLEMENTED and counted
        // under one label, so clients cannot grow the label set.
        let rpc = if code == "UNIMPLEMENTED" {
            "unknown".to_owned()
        } else {
            rpc
        };
        self.rpc_calls.get_or_create(&RpcLabels { rpc, code }).inc();
    }

    /// Returns the Prometheus text exposition, with the token gauges set to `live` and
    /// `indexed` and the change-feed lag to `lag`.
    pub fn encode(&self, live: usize, indexed: usize, lag: chrono::Duration) -> String {
        self.change_feed_lag.set(lag.as_seconds_f64());
        self.live_tokens
            .set(i64::try_from(live).unwrap_or(i64::MAX));
        self.indexed_tokens
            .set(i64::try_from(indexed).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// A histogram of durations made of atomics, so observing takes no lock (the Authorize path
/// observes once per call on every core).
#[derive(Clone, Debug)]
struct LatencyHistogram(Arc<LatencyBuckets>);

#[derive(Debug)]
struct LatencyBuckets {
    /// Upper bounds in seconds, ascending; a last, implicit bucket is +Inf.
    bounds: Vec<f64>,
    // Invariant: one more count than bounds.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    fn new(bounds: impl Iterator<Item = f64>) -> Self {
        let bounds: Vec<f64> = bounds.collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(LatencyBuckets {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self.0.bounds.partition_point(|bound| *bound < seconds);
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = self.0.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.0.counts.iter().map(|it| it.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = Duration::from_nanos(self.0.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Serves `GET /metrics` on `listener` until `stop` completes; `encode` renders the page.
///
/// # Errors
/// Returns the server's error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    encode: Arc<dyn Fn() -> String + Send + Sync>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let page = move || {
        let encode = Arc::clone(&encode);
        async move {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                encode(),
            )
        }
    };
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(page))
        .fallback(|| async { (http::StatusCode::NOT_FOUND, "not found: try /metrics\n") });
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_in_the_exposition() {
        let metrics = Metrics::new();
        let unknown = Decision::Deny(DenyReason::UnknownToken);
        for micros in [1, 3, 3, 1_000_000] {
            metrics.record_authorize(&unknown, Some(Duration::from_micros(micros)));
        }
        let page = metrics.encode(0, 0, chrono::Duration::zero());
        for line in [
            r#"privint_authorize_latency_seconds_bucket{le="0.000001"} 1"#,
            r#"privint_authorize_latency_seconds_bucket{le="0.000004"} 3"#,
            r#"privint_authorize_latency_seconds_bucket{le="+Inf"} 4"#,
            "privint_authorize_latency_seconds_count 4",
            r#"privint_authorize_results_total{result="unknown_token"} 4"#,
        ] {
            assert!(
                page.lines().any(|it| it == line),
                "missing {line:?} in\n{page}"
            );
        }
    }
}
