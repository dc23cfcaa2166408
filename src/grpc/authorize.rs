//! `privint.v1.TokenAuthorizer`: the hot path. A deny is a response, never an error.

use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::grpc::{Ready, convert, pb, ready};
use crate::service::authorizer::{Authorizer, Call};

/// The gRPC face of [`Authorizer`].
#[derive(Clone)]
pub struct AuthorizerApi {
    service: Ready<Authorizer>,
    /// Set when the port verifies client certificates: callers must present one.
    require_client_cert: bool,
}

impl AuthorizerApi {
    /// Returns the API over an authorizer that becomes ready at start-up.
    pub fn new(service: Ready<Authorizer>, require_client_cert: bool) -> Self {
        Self {
            service,
            require_client_cert,
        }
    }
}

#[tonic::async_trait]
impl pb::token_authorizer_server::TokenAuthorizer for AuthorizerApi {
    #[instrument(level = "debug", skip_all, fields(rpc = "Authorize"))]
    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let service = ready(&self.service)?;
        // The handshake verified any certificate against the client CA; here one must exist.
        if self.require_client_cert && !crate::port::has_client_certificate(request.extensions()) {
            return Err(Status::unauthenticated(
                "Authorize requires a client certificate",
            ));
        }
        let request = request.into_inner();
        let answer = service.authorize(Call {
            token: &request.token,
            required: &request.required_scopes,
            agency_id: &request.agency_id,
            location_id: &request.location_id,
            client_ip: &request.client_ip,
            user_agent: &request.user_agent,
        })?;
        Ok(Response::new(convert::answer(answer)))
    }
}
