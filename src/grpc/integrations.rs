//! `privint.v1.IntegrationService`: thin handlers over `service::integrations`.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::domain::caller::Caller;
use crate::domain::error::{Error, Violation};
use crate::domain::integration::{
    AccountId, Description, ExpireTarget, Integration, IntegrationId, IntegrationName, Owner,
};
use crate::grpc::{Ready, convert, pb, ready};
use crate::service::integrations::{Integrations, NewIntegration, RotateMode, Update};

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
}

/// Returns the caller the authentication interceptor verified.
fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("authentication required"))
}

fn encode(service: &Integrations, integration: &Integration) -> pb::Integration {
    let now = service.now();
    convert::integration(integration, service.rotation_due(integration, now), now)
}

/// Parses the id of the integration a call acts on, and records it on the call's span.
fn integration_id(field: &'static str, id: &str) -> Result<IntegrationId, Status> {
    let id = IntegrationId::parse(field, id)?;
    tracing::Span::current().record("integration.id", id.as_str());
    Ok(id)
}

fn etag(etag: &str) -> Option<&str> {
    (!etag.is_empty()).then_some(etag)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::integration_service_server::IntegrationService for IntegrationsApi {
    #[instrument(skip_all, fields(rpc = "CreateIntegration", integration.id))]
    async fn create_integration(
        &self,
        request: Request<pb::CreateIntegrationRequest>,
    ) -> Result<Response<pb::CreateIntegrationResponse>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let new = NewIntegration {
            owner: Owner {
                agency_id: AccountId::parse("agency_id", &request.agency_id)?,
                location_id: AccountId::parse_optional("location_id", &request.location_id)?,
            },
            name: IntegrationName::parse("name", &request.name)?,
            description: Description::parse("description", &request.description)?,
            scopes: request.scopes,
        };
        let (integration, token) = service.create(&caller, new).await?;
        tracing::Span::current().record("integration.id", integration.id.as_str());
        let integration = Some(encode(service, &integration));
        Ok(Response::new(pb::CreateIntegrationResponse {
            integration,
            token: token.expose().to_owned(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetIntegration"))]
    async fn get_integration(
        &self,
        request: Request<pb::GetIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let id = IntegrationId::parse("id", &request.into_inner().id)?;
        let integration = service.get(&caller, &id).await?;
        Ok(Response::new(encode(service, &integration)))
    }

    #[instrument(skip_all, fields(rpc = "ListIntegrations"))]
    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Result<Response<pb::ListIntegrationsResponse>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let agency_id = AccountId::parse("agency_id", &request.agency_id)?;
        let location_id = AccountId::parse_optional("location_id", &request.location_id)?;
        let (page_size, after) = (
            convert::page_size(request.page_size)?,
            convert::integration_page_token(&request.page_token)?,
        );
        let page = service
            .list(&caller, agency_id, location_id, after, page_size)
            .await?;
        Ok(Response::new(pb::ListIntegrationsResponse {
            integrations: page.items.iter().map(|it| encode(service, it)).collect(),
            next_page_token: page
                .next
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateIntegration", integration.id))]
    async fn update_integration(
        &self,
        request: Request<pb::UpdateIntegrationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let integration = request
            .integration
            .ok_or_else(|| Error::from(Violation::new("integration", "is required")))?;
        let id = integration_id("integration.id", &integration.id)?;
        let update = update(integration.clone(), request.update_mask)?;
        let integration = service
            .update(&caller, &id, etag(&integration.etag), update)
            .await?;
        Ok(Response::new(encode(service, &integration)))
    }

    #[instrument(skip_all, fields(rpc = "DeleteIntegration", integration.id))]
    async fn delete_integration(
        &self,
        request: Request<pb::DeleteIntegrationRequest>,
    ) -> Result<Response<pb::DeleteIntegrationResponse>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
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
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let grace = request
            .grace_period
            .as_ref()
            .map(|it| convert::parse_duration("grace_period", it))
            .transpose()?;
        let mode = match (request.expire_old_now, grace) {
            (true, Some(_)) => {
                return Err(Violation::new(
                    "grace_period",
                    "must be unset when expire_old_now is true",
                )
                .into());
            }
            (true, None) => RotateMode::ExpireNow,
            (false, grace) => RotateMode::ExpireAfter(grace),
        };
        let (integration, token) = service
            .rotate_token(&caller, &id, etag(&request.etag), mode)
            .await?;
        let integration = Some(encode(service, &integration));
        Ok(Response::new(pb::RotateTokenResponse {
            integration,
            token: token.expose().to_owned(),
        }))
    }

    #[instrument(skip_all, fields(rpc = "CancelRotation", integration.id))]
    async fn cancel_rotation(
        &self,
        request: Request<pb::CancelRotationRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let integration = service
            .cancel_rotation(&caller, &id, etag(&request.etag))
            .await?;
        Ok(Response::new(encode(service, &integration)))
    }

    #[instrument(skip_all, fields(rpc = "ExpireToken", integration.id))]
    async fn expire_token(
        &self,
        request: Request<pb::ExpireTokenRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let target = match pb::ExpireTarget::try_from(request.target) {
            Ok(pb::ExpireTarget::All) => ExpireTarget::All,
            Ok(pb::ExpireTarget::Previous) => ExpireTarget::Previous,
            _ => {
                return Err(Violation::new(
                    "target",
                    "must be EXPIRE_TARGET_ALL or EXPIRE_TARGET_PREVIOUS",
                )
                .into());
            }
        };
        let integration = service
            .expire_token(&caller, &id, etag(&request.etag), target)
            .await?;
        Ok(Response::new(encode(service, &integration)))
    }

    #[instrument(skip_all, fields(rpc = "ScheduleTokenExpiry", integration.id))]
    async fn schedule_token_expiry(
        &self,
        request: Request<pb::ScheduleTokenExpiryRequest>,
    ) -> Result<Response<pb::Integration>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let id = integration_id("id", &request.id)?;
        let expire_time = request
            .expire_time
            .as_ref()
            .map(|it| convert::parse_timestamp("expire_time", it))
            .transpose()?;
        let integration = service
            .schedule_token_expiry(&caller, &id, etag(&request.etag), expire_time)
            .await?;
        Ok(Response::new(encode(service, &integration)))
    }

    #[instrument(skip_all, fields(rpc = "ListScopes"))]
    async fn list_scopes(
        &self,
        request: Request<pb::ListScopesRequest>,
    ) -> Result<Response<pb::ListScopesResponse>, Status> {
        let service = ready(&self.service)?;
        caller(&request)?;
        let level = convert::level(request.into_inner().level)?;
        let scopes = service
            .list_scopes(level)
            .into_iter()
            .map(convert::scope)
            .collect();
        Ok(Response::new(pb::ListScopesResponse { scopes }))
    }

    #[instrument(skip_all, fields(rpc = "ListEvents"))]
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let filter = convert::event_filter(
            &request.integration_id,
            &request.agency_id,
            &request.location_id,
        )?;
        let (page_size, before) = (
            convert::page_size(request.page_size)?,
            convert::event_id("page_token", &request.page_token)?,
        );
        let page = service
            .list_events(&caller, &filter, before, page_size)
            .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.items.into_iter().map(convert::event).collect(),
            next_page_token: page.next.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    type WatchEventsStream = EventStream;

    #[instrument(skip_all, fields(rpc = "WatchEvents"))]
    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let (service, caller) = (ready(&self.service)?, caller(&request)?);
        let request = request.into_inner();
        let filter = convert::event_filter(
            &request.integration_id,
            &request.agency_id,
            &request.location_id,
        )?;
        let after = convert::event_id("after_id", &request.after_id)?;
        let events = service.watch_events(&caller, filter, after).await?;
        let stream = ReceiverStream::new(events)
            .map(|event| event.map(convert::event).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Parses an update: the fields named in `update_mask`, read from `integration`.
fn update(
    integration: pb::Integration,
    mask: Option<prost_types::FieldMask>,
) -> Result<Update, Error> {
    let mask = mask.filter(|mask| !mask.paths.is_empty()).ok_or_else(|| {
        Violation::new(
            "update_mask",
            "must name at least one of name, description, scopes",
        )
    })?;
    let mut update = Update::default();
    for path in &mask.paths {
        match path.as_str() {
            "name" => {
                update.name = Some(IntegrationName::parse(
                    "integration.name",
                    &integration.name,
                )?)
            }
            "description" => {
                update.description = Some(Description::parse(
                    "integration.description",
                    &integration.description,
                )?)
            }
            "scopes" => update.scopes = Some(integration.scopes.clone()),
            _ => {
                return Err(Violation::new(
                    "update_mask",
                    format!(
                        "cannot update {:?}: only name, description and scopes",
                        crate::domain::scope::truncated(path)
                    ),
                )
                .into());
            }
        }
    }
    Ok(update)
}
