//! The gRPC edge: the only module that sees `pb::` or `tonic::Status`.
//!
//! Handlers convert requests into domain types (`convert`), call one service method, and
//! encode the result; `status` maps every `domain::Error` to a `Status` in one table.

pub mod auth;
mod authorize;
pub(crate) mod convert;
mod integrations;
pub mod oversized;
mod status;
pub mod undecodable;
pub mod web;

use tonic::service::interceptor::InterceptedService;

pub use authorize::AuthorizerApi;
pub use integrations::IntegrationsApi;

use crate::grpc::auth::Authenticator;
use crate::service::authorizer::Authorizer;
use crate::service::lifecycle::Integrations;

/// `IntegrationService` behind JWT authentication, as served.
pub type IntegrationServer = InterceptedService<
    pb::integration_service_server::IntegrationServiceServer<IntegrationsApi>,
    Authenticator,
>;

/// `TokenAuthorizer`, as served.
pub type AuthorizerServer = pb::token_authorizer_server::TokenAuthorizerServer<AuthorizerApi>;

/// Returns `IntegrationService`, behind JWT authentication, refusing messages over `max_message_bytes`.
pub fn integration_service(
    service: Ready<Integrations>,
    authenticator: Authenticator,
    max_message_bytes: usize,
) -> IntegrationServer {
    let server = pb::integration_service_server::IntegrationServiceServer::new(
        IntegrationsApi::new(service),
    )
    .max_decoding_message_size(max_message_bytes);
    InterceptedService::new(server, authenticator)
}

/// Returns `TokenAuthorizer`, refusing messages over `max_message_bytes`, and callers without a
/// verified client certificate when `require_client_cert`.
pub fn authorizer_service(
    service: Ready<Authorizer>,
    max_message_bytes: usize,
    require_client_cert: bool,
) -> AuthorizerServer {
    pb::token_authorizer_server::TokenAuthorizerServer::new(AuthorizerApi::new(
        service,
        require_client_cert,
    ))
    .max_decoding_message_size(max_message_bytes)
}

/// Returns server reflection over privint's and the health service's descriptors.
///
/// # Errors
/// Returns an error if a descriptor set does not decode.
pub fn reflection_service() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// The generated protobuf types and gRPC stubs of `privint.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("privint.v1");

    // The messages that carry a token print it redacted, so no debug print can leak it.
    macro_rules! redacted_debug {
        ($($message:ident { $($field:ident),* }),* $(,)?) => {$(
            impl std::fmt::Debug for $message {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(stringify!($message))
                        .field("token", &"[redacted]")
                        $(.field(stringify!($field), &self.$field))*
                        .finish()
                }
            }
        )*};
    }
    redacted_debug!(
        AuthorizeRequest {
            required_scopes,
            location_id,
            agency_id,
            client_ip,
            user_agent
        },
        CreateIntegrationResponse { integration },
        RotateTokenResponse { integration },
    );
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
