//! What the benchmarks share: a management client with an agency admin's JWT.

use privint::cli::BearerJwt;
use privint::grpc::pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

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
