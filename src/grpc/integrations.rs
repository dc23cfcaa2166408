//! `privint.v1.IntegrationService`: thin handlers over `service::lifecycle` and
//! `service::events`. Each decodes its request with `convert`, makes one service call, and
//! encodes the result.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::domain::caller::Caller;
use crate::domain::error::{Error, Violation};
use crate::domain::integration::IntegrationId;
use crate::grpc::convert::{self, etag};
use crate::grpc::{Ready, pb, ready};
use crate::service::lifecycle::Integrations;

/// The gRPC face of [`Integrations`].
#[derive(Clone)]
pub struct IntegrationsApi {
    service: Ready<Integrations>,
}

impl IntegrationsApi {
    /// Returns the API over a service that becomes ready at start-up.
    pub fn new(service: Ready<Integrations>) -> Self {
        Self { service }
    }

    /// Returns the service and the caller the authentication interceptor verified.
    fn context<T>(&self, request: &Request<T>) -> Result<(&Integrations, Caller), Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("authentication required"))?;
        Ok((ready(&self.service)?, caller))
    }
}

/// Parses the id of the integration a call acts on, and records it on the call's span.
fn integration_id(field: &'static str, id: &str) -> Result<IntegrationId, Status> {
    let id = IntegrationId::parse(field, id)?;
    tracing::Span::current().record("integration.id", id.as_str());
    Ok(id)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::integration_service_server::IntegrationService for IntegrationsApi {
    #[instrument(skip_all, fields(rpc = "CreateIntegration", integration.id))]
    async fn create_integration(
        &self,
        request: Request<pb::CreateIntegrationRequest>,
    ) -> Result<Response<pb::CreateIntegrationResponse>, Status> {
        let (service, caller) = self.context(&request)?;
        let new = convert::new_integration(request.into_inner())?;
        let created = convert::created(&service.create(&caller, new).await?);
        if let Some(integration) = &created.integration {
            tracing::Span::current().record("integration.id", integration.id.as_str());
        }
        Ok(Response::new(created))
    }

    #[instrument(skip_all, fields(rpc = "GetIntegration", integration.id))]
    async fn get_integration(
        &self,
        request: Request<pb::GetIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = self.context(&request)?;
        let id = integration_id("id", &request.into_inner().id)?;
        let view = service.get(&caller, &id).await?;
        Ok(Response::new(convert::integration(&view)))
    }

    #[instrument(skip_all, fields(rpc = "ListIntegrations"))]
    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Result<Response<pb::ListIntegrationsResponse>, Status> {
        let (service, caller) = self.context(&request)?;
        let query = convert::list_query(request.get_ref())?;
        let page = service
            .list(
                &caller,
                &query.account,
                &query.filter,
                query.after,
                query.page_size,
            )
            .await?;
        Ok(Response::new(convert::integrations(page)))
    }

    #[instrument(skip_all, fields(rpc = "UpdateIntegration", integration.id))]
    async fn update_integration(
        &self,
        request: Request<pb::UpdateIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let integration = request
            .integration
            .ok_or_else(|| Error::from(Violation::new("integration", "is required")))?;
        let id = integration_id("integration.id", &integration.id)?;
        let update = convert::update(&integration, request.update_mask.as_ref())?;
        let view = service
            .update(&caller, &id, etag(&integration.etag), update)
            .await?;
        Ok(Response::new(convert::integration(&view)))
    }

    #[instrument(skip_all, fields(rpc = "DeleteIntegration", integration.id))]
    async fn delete_integration(
        &self,
        request: Request<pb::DeleteIntegrationRequest>,
    ) -> Result<Response<pb::DeleteIntegrationResponse>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        service.delete(&caller, &id, etag(&request.etag)).await?;
        Ok(Response::new(pb::DeleteIntegrationResponse {}))
    }

    #[instrument(skip_all, fields(rpc = "RotateToken", integration.id))]
    async fn rotate_token(
        &self,
        request: Request<pb::RotateTokenRequest>,
    ) -> Result<Response<pb::RotateTokenResponse>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let mode = convert::rotate_mode(&request)?;
        let (view, token) = service
            .rotate_token(&caller, &id, etag(&request.etag), mode)
            .await?;
        Ok(Response::new(pb::RotateTokenResponse {
            integration: Some(convert::integration(&view)),
            token: token.expose().to_owned(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "CancelRotation", integration.id))]
    async fn cancel_rotation(
        &self,
        request: Request<pb::CancelRotationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let view = service
            .cancel_rotation(&caller, &id, etag(&request.etag))
            .await?;
        Ok(Response::new(convert::integration(&view)))
    }

    #[instrument(skip_all, fields(rpc = "DisableIntegration", integration.id))]
    async fn disable_integration(
        &self,
        request: Request<pb::DisableIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let view = service.disable(&caller, &id, etag(&request.etag)).await?;
        Ok(Response::new(convert::integration(&view)))
    }

    #[instrument(skip_all, fields(rpc = "EnableIntegration", integration.id))]
    async fn enable_integration(
        &self,
        request: Request<pb::EnableIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let view = service.enable(&caller, &id, etag(&request.etag)).await?;
        Ok(Response::new(convert::integration(&view)))
    }

    #[instrument(skip_all, fields(rpc = "ExpireToken", integration.id))]
    async fn expire_token(
        &self,
        request: Request<pb::ExpireTokenRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let target = convert::expire_target(request.target)?;
        let view = service
            .expire_token(&caller, &id, etag(&request.etag), target)
            .await?;
        Ok(Response::new(convert::integration(&view)))
    }

    #[instrument(skip_all, fields(rpc = "ScheduleTokenExpiry", integration.id))]
    async fn schedule_token_expiry(
        &self,
        request: Request<pb::ScheduleTokenExpiryRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = self.context(&request)?;
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let expire_time = request
            .expire_time
            .as_ref()
            .map(|it| convert::parse_timestamp("expire_time", it))
            .transpose()?;
        let view = service
            .schedule_token_expiry(&caller, &id, etag(&request.etag), expire_time)
            .await?;
        Ok(Response::new(convert::integration(&view)))
    }

    #[instrument(skip_all, fields(rpc = "ListScopes"))]
    async fn list_scopes(
        &self,
        request: Request<pb::ListScopesRequest>,
    ) -> Result<Response<pb::ListScopesResponse>, Status> {
        let (service, _) = self.context(&request)?;
        let level = convert::level(request.into_inner().level)?;
        let entries = service.list_scopes(level).into_iter();
        Ok(Response::new(pb::ListScopesResponse {
            scopes: entries.map(convert::scope).collect(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListEvents"))]
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (service, caller) = self.context(&request)?;
        let query = convert::events_query(request.get_ref())?;
        let page = service
            .events()
            .list(&caller, &query.filter, query.before, query.page_size)
            .await?;
        Ok(Response::new(convert::events(page)))
    }

    type WatchEventsStream = EventStream;

    #[instrument(skip_all, fields(rpc = "WatchEvents"))]
    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let (service, caller) = self.context(&request)?;
        let (filter, after) = convert::watch_query(request.get_ref())?;
        let events = service.events().watch(&caller, filter, after).await?;
        let stream = ReceiverStream::new(events)
            .map(|event| event.map(convert::event).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}
