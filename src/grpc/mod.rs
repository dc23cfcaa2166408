//! The gRPC edge: the only module that sees `pb::` or `tonic::Status`.
//!
//! Handlers convert requests into domain types (`convert`), call one service method, and
//! encode the result; `status` maps every `domain::Error` to a `Status` in one table.

pub mod auth;
mod authorize;
pub mod cli;
mod convert;
mod integrations;
mod status;

pub use authorize::AuthorizerApi;
pub use integrations::IntegrationsApi;

/// The generated protobuf types and gRPC stubs of `privint.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("privint.v1");
}

/// The encoded descriptor set of `privint.v1`, served by server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/privint_descriptor.bin"));

/// A service that becomes available once start-up has loaded what it needs.
///
/// The server answers health checks from the first moment; calls that arrive before this is
/// set fail with `UNAVAILABLE`, and readiness says NOT_SERVING until then.
pub type Ready<T> = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<T>>>;

/// Returns the service behind `ready`, or `UNAVAILABLE` while the server is starting.
fn ready<T>(ready: &Ready<T>) -> Result<&std::sync::Arc<T>, tonic::Status> {
    ready
        .get()
        .ok_or_else(|| tonic::Status::unavailable("the server is starting up"))
}
