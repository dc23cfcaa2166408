//! `privint.v1.TokenAuthorizer`: the hot path. A deny is a response, never an error.

use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::grpc::{Ready, convert, pb, ready};
use crate::service::authorizer::Authorizer;

/// The gRPC face of [`Authorizer`].
#[derive(Clone)]
pub struct AuthorizerApi {
    service: Ready<Authorizer>,
}

impl AuthorizerApi {
    /// Returns the API over an authorizer that becomes ready at start-up.
    pub fn new(service: Ready<Authorizer>) -> Self {
        Self { service }
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
        let request = request.into_inner();
        let decision = service.authorize(
            &request.token,
            &request.required_scopes,
            &request.agency_id,
            &request.location_id,
        )?;
        Ok(Response::new(convert::decision(decision)))
    }
}
