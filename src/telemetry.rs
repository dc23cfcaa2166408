//! Logging and tracing: a `tracing` subscriber writing to stderr, one span per RPC.
//!
//! Spans and events never carry a token or a digest: handlers use `skip_all` and record ids only.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter`.
/// sqlx statement logging stays off whatever the filter says.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let filter = filter.add_directive("sqlx=warn".parse().expect("a valid directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
