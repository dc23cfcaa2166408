//! Conversions between `pb::` messages and domain types. Parsing validates; every error names
//! the request field. Handlers call one function here per request and one per response.
//!
//! Size: one function per message and direction, the whole edge of the proto in one place.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::domain::account::{AccountId, Level, Owner};
use crate::domain::allowlist::IpAllowlist;
use crate::domain::decision::{Decision, DenyReason};
use crate::domain::error::{Error, Violation};
use crate::domain::event::{Event, EventFilter};
use crate::domain::integration::{
    Description, ExpireTarget, IntegrationId, IntegrationName, TokenRecord,
};
use crate::domain::request_id::RequestId;
use crate::domain::scope::{Scope, ScopeEntry, truncated};
use crate::domain::usage::TokenUsage;
use crate::grpc::pb;
use crate::service::authorizer::Answer;
use crate::service::lifecycle::{Created, ListFilter, NewIntegration, Page, RotateMode, Update};
use crate::service::usage::IntegrationView;

/// The page size used when a request asks for none.
const DEFAULT_PAGE_SIZE: u64 = 50;
/// The largest page size a request may ask for.
const MAX_PAGE_SIZE: i32 = 100;

/// Encodes a time.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    SystemTime::from(time).into()
}

/// Parses a time from `field`.
///
/// # Errors
/// `InvalidArgument` if it is not a valid time.
pub fn parse_timestamp(
    field: &'static str,
    time: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, Error> {
    let mut time = *time;
    time.normalize();
    u32::try_from(time.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(time.seconds, nanos))
        .ok_or_else(|| Violation::new(field, "must be a valid time").into())
}

/// Parses a non-negative duration from `field`.
///
/// # Errors
/// `InvalidArgument` if it is negative or out of range.
pub fn parse_duration(
    field: &'static str,
    duration: &prost_types::Duration,
) -> Result<chrono::Duration, Error> {
    std::time::Duration::try_from(*duration)
        .ok()
        .and_then(|duration| chrono::Duration::from_std(duration).ok())
        .ok_or_else(|| Violation::new(field, "must be a valid, non-negative duration").into())
}

/// Parses a page size: 0 means the default, otherwise 1..=100.
///
/// # Errors
/// `InvalidArgument` on `page_size` otherwise.
pub fn page_size(page_size: i32) -> Result<u64, Error> {
    match page_size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        1..=MAX_PAGE_SIZE => Ok(page_size as u64),
        _ => Err(Violation::new(
            "page_size",
            format!("must be from 1 to {MAX_PAGE_SIZE}, or 0 for the default"),
        )
        .into()),
    }
}

/// Parses an event id (`page_token` or `after_id`).
///
/// # Errors
/// `InvalidArgument` on `field` unless empty or a positive integer.
fn event_id(field: &'static str, id: &str) -> Result<Option<i64>, Error> {
    if id.is_empty() {
        return Ok(None);
    }
    match id.parse::<i64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(Violation::new(field, "must be an event id as returned by privint").into()),
    }
}

/// Parses which events a request reads.
///
/// # Errors
/// `InvalidArgument` unless exactly one of `integration_id` and `agency_id` is set.
fn event_filter(
    integration_id: &str,
    agency_id: &str,
    location_id: &str,
) -> Result<EventFilter, Error> {
    match (integration_id.is_empty(), agency_id.is_empty()) {
        (false, true) if location_id.is_empty() => Ok(EventFilter::Integration(
            IntegrationId::parse("integration_id", integration_id)?,
        )),
        (true, false) => Ok(EventFilter::Account {
            agency_id: AccountId::parse("agency_id", agency_id)?,
            location_id: AccountId::parse_optional("location_id", location_id)?,
        }),
        _ => Err(Violation::new(
            "integration_id",
            "set exactly one of integration_id and agency_id (with an optional location_id)",
        )
        .into()),
    }
}

/// What a `ListEvents` request asks for.
pub struct EventsQuery {
    pub filter: EventFilter,
    /// Events older than this id (the page token).
    pub before: Option<i64>,
    pub page_size: u64,
}

/// Parses a `ListEvents` request.
///
/// # Errors
/// `InvalidArgument` for a bad filter, page size or page token.
pub fn events_query(request: &pb::ListEventsRequest) -> Result<EventsQuery, Error> {
    Ok(EventsQuery {
        filter: event_filter(
            &request.integration_id,
            &request.agency_id,
            &request.location_id,
        )?,
        before: event_id("page_token", &request.page_token)?,
        page_size: page_size(request.page_size)?,
    })
}

/// Parses a `WatchEvents` request: the filter and the event id to start after.
///
/// # Errors
/// `InvalidArgument` for a bad filter or event id.
pub fn watch_query(request: &pb::WatchEventsRequest) -> Result<(EventFilter, Option<i64>), Error> {
    let filter = event_filter(
        &request.integration_id,
        &request.agency_id,
        &request.location_id,
    )?;
    let after = event_id("after_id", &request.after_id)?;
    match (request.from_start, after) {
        (false, after) => Ok((filter, after)),
        // Every event id is above 0.
        (true, None) => Ok((filter, Some(0))),
        (true, Some(_)) => Err(Violation::new("after_id", "must be empty with from_start").into()),
    }
}

/// Parses a level filter: unspecified means all levels.
///
/// # Errors
/// `InvalidArgument` on `level` for an unknown value.
pub fn level(level: i32) -> Result<Option<Level>, Error> {
    match pb::Level::try_from(level) {
        Ok(pb::Level::Unspecified) => Ok(None),
        Ok(pb::Level::Agency) => Ok(Some(Level::Agency)),
        Ok(pb::Level::Location) => Ok(Some(Level::Location)),
        Err(_) => Err(Violation::new("level", "unknown level").into()),
    }
}

/// Returns the etag a request sent, if any.
pub fn etag(etag: &str) -> Option<&str> {
    (!etag.is_empty()).then_some(etag)
}

/// Parses a create request.
///
/// # Errors
/// `InvalidArgument` for a bad account id, name, description or scope name.
pub fn new_integration(request: pb::CreateIntegrationRequest) -> Result<NewIntegration, Error> {
    Ok(NewIntegration {
        owner: Owner {
            agency_id: AccountId::parse("agency_id", &request.agency_id)?,
            location_id: AccountId::parse_optional("location_id", &request.location_id)?,
        },
        name: IntegrationName::parse("name", &request.name)?,
        description: Description::parse("description", &request.description)?,
        scopes: Scope::parse_list("scopes", &request.scopes)?,
        ip_allowlist: IpAllowlist::parse("ip_allowlist", &request.ip_allowlist)?,
        request_id: RequestId::parse_optional("request_id", &request.request_id)?,
    })
}

/// What a list request asks for.
pub struct ListQuery {
    pub account: Owner,
    pub filter: ListFilter,
    pub after: Option<IntegrationId>,
    pub page_size: u64,
}

/// Parses a list request.
///
/// # Errors
/// `InvalidArgument` for a bad account id, page size or page token.
pub fn list_query(request: &pb::ListIntegrationsRequest) -> Result<ListQuery, Error> {
    let after = match request.page_token.as_str() {
        "" => None,
        token => Some(IntegrationId::parse("page_token", token)?),
    };
    Ok(ListQuery {
        account: Owner {
            agency_id: AccountId::parse("agency_id", &request.agency_id)?,
            location_id: AccountId::parse_optional("location_id", &request.location_id)?,
        },
        filter: ListFilter {
            expiring_before: request
                .expiring_before
                .as_ref()
                .map(|it| parse_timestamp("expiring_before", it))
                .transpose()?,
            rotation_due: request.rotation_due,
        },
        after,
        page_size: page_size(request.page_size)?,
    })
}

/// Parses an update: the fields named in `update_mask`, read from `integration`.
///
/// # Errors
/// `InvalidArgument` for an empty or unknown mask path, or a bad value of a named field.
pub fn update(
    integration: &pb::Integration,
    mask: Option<&prost_types::FieldMask>,
) -> Result<Update, Error> {
    let mask = mask.filter(|mask| !mask.paths.is_empty()).ok_or_else(|| {
        Violation::new(
            "update_mask",
            "must name at least one of name, description, scopes, ip_allowlist",
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
            "scopes" => {
                update.scopes = Some(Scope::parse_list(
                    "integration.scopes",
                    &integration.scopes,
                )?)
            }
            "ip_allowlist" => {
                update.ip_allowlist = Some(IpAllowlist::parse(
                    "integration.ip_allowlist",
                    &integration.ip_allowlist,
                )?)
            }
            _ => {
                return Err(Violation::new(
                    "update_mask",
                    format!(
                        "cannot update {:?}: only name, description, scopes and ip_allowlist",
                        truncated(path)
                    ),
                )
                .into());
            }
        }
    }
    Ok(update)
}

/// Parses how a rotation treats the old token.
///
/// # Errors
/// `InvalidArgument` for a bad grace period, or one given with `expire_old_now`.
pub fn rotate_mode(request: &pb::RotateTokenRequest) -> Result<RotateMode, Error> {
    let grace = request
        .grace_period
        .as_ref()
        .map(|it| parse_duration("grace_period", it))
        .transpose()?;
    match (request.expire_old_now, grace) {
        (true, Some(_)) => {
            Err(Violation::new("grace_period", "must be unset when expire_old_now is true").into())
        }
        (true, None) => Ok(RotateMode::ExpireNow),
        (false, grace) => Ok(RotateMode::ExpireAfter(grace)),
    }
}

/// Parses which tokens "expire now" expires.
///
/// # Errors
/// `InvalidArgument` on `target` unless it is ALL or PREVIOUS.
pub fn expire_target(target: i32) -> Result<ExpireTarget, Error> {
    match pb::ExpireTarget::try_from(target) {
        Ok(pb::ExpireTarget::All) => Ok(ExpireTarget::All),
        Ok(pb::ExpireTarget::Previous) => Ok(ExpireTarget::Previous),
        _ => Err(Violation::new(
            "target",
            "must be EXPIRE_TARGET_ALL or EXPIRE_TARGET_PREVIOUS",
        )
        .into()),
    }
}

fn encode_level(level: Level) -> pb::Level {
    match level {
        Level::Agency => pb::Level::Agency,
        Level::Location => pb::Level::Location,
    }
}

fn token_info(token: &TokenRecord, usage: Option<&TokenUsage>) -> pb::TokenInfo {
    let caller = usage.and_then(|it| it.last_caller.as_ref());
    pb::TokenInfo {
        id: token.id.as_str().to_owned(),
        hint: token.hint.clone(),
        create_time: Some(timestamp(token.create_time)),
        expire_time: token.expire_time.map(timestamp),
        last_used_time: usage.and_then(|it| it.last_used_time).map(timestamp),
        last_client_ip: caller
            .and_then(|it| it.client_ip)
            .map(|it| it.to_string())
            .unwrap_or_default(),
        last_user_agent: caller
            .and_then(|it| it.user_agent.clone())
            .unwrap_or_default(),
        daily_usage: usage
            .iter()
            .flat_map(|it| &it.daily)
            .map(|day| pb::DailyUsage {
                date: day.date.to_string(),
                allowed_calls: i64::try_from(day.allowed).unwrap_or(i64::MAX),
                denied_calls: i64::try_from(day.denied).unwrap_or(i64::MAX),
            })
            .collect(),
    }
}

fn scope_names<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Vec<String> {
    scopes
        .into_iter()
        .map(|scope| scope.as_str().to_owned())
        .collect()
}

/// Encodes what a create did: a new integration with its token, or an earlier one without.
pub fn created(created: &Created) -> pb::CreateIntegrationResponse {
    match created {
        Created::New(view, token) => pb::CreateIntegrationResponse {
            integration: Some(integration(view)),
            token: token.expose().to_owned(),
            replayed: false,
        },
        Created::Replayed(view) => pb::CreateIntegrationResponse {
            integration: Some(integration(view)),
            token: String::new(),
            replayed: true,
        },
    }
}

/// Encodes an integration as its owner sees it.
pub fn integration(view: &IntegrationView) -> pb::Integration {
    let integration = &view.integration;
    let token = |token: &TokenRecord| token_info(token, view.usage_of(&token.id));
    pb::Integration {
        id: integration.id.as_str().to_owned(),
        agency_id: integration.owner.agency_id.as_str().to_owned(),
        location_id: integration
            .owner
            .location_id
            .as_ref()
            .map(|it| it.as_str().to_owned())
            .unwrap_or_default(),
        name: integration.name.as_str().to_owned(),
        description: integration.description.as_str().to_owned(),
        scopes: scope_names(integration.scopes.as_slice()),
        create_time: Some(timestamp(integration.create_time)),
        update_time: Some(timestamp(integration.update_time)),
        created_by: integration.created_by.clone(),
        etag: integration.etag(),
        current_token: integration.current.as_ref().map(token),
        previous_token: integration.live_previous(view.read_time).map(token),
        rotation_due: view.rotation_due,
        level: encode_level(integration.owner.level()).into(),
        unused_scopes: scope_names(view.unused_scopes.iter().flat_map(|it| it.as_slice())),
        last_used_time: view
            .token_usage
            .values()
            .filter_map(|usage| usage.last_used_time)
            .max()
            .map(timestamp),
        disable_time: integration.disable_time.map(timestamp),
        ip_allowlist: integration
            .ip_allowlist
            .as_ref()
            .map(IpAllowlist::ranges)
            .unwrap_or_default(),
    }
}

/// Encodes a page of integrations.
pub fn integrations(page: Page<IntegrationView, IntegrationId>) -> pb::ListIntegrationsResponse {
    pb::ListIntegrationsResponse {
        integrations: page.items.iter().map(integration).collect(),
        next_page_token: page
            .next
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default(),
    }
}

/// Encodes a catalog entry.
pub fn scope(entry: ScopeEntry) -> pb::Scope {
    pb::Scope {
        name: entry.name,
        description: entry.description,
        endpoints: entry.endpoints,
        levels: entry
            .levels
            .into_iter()
            .map(|level| encode_level(level).into())
            .collect(),
    }
}

/// Encodes an audit event.
pub fn event(event: Event) -> pb::Event {
    pb::Event {
        id: event.id.to_string(),
        r#type: event.kind.as_str().to_owned(),
        time: Some(timestamp(event.time)),
        actor: event.actor,
        integration_id: event.integration_id.as_str().to_owned(),
        agency_id: event.owner.agency_id.as_str().to_owned(),
        location_id: event
            .owner
            .location_id
            .map(|it| it.as_str().to_owned())
            .unwrap_or_default(),
        details: event.details.into_iter().collect(),
    }
}

/// Encodes a page of events.
pub fn events(page: Page<Event, i64>) -> pb::ListEventsResponse {
    pb::ListEventsResponse {
        events: page.items.into_iter().map(event).collect(),
        next_page_token: page.next.map(|id| id.to_string()).unwrap_or_default(),
    }
}

/// Encodes an Authorize answer.
pub fn answer(answer: Answer<'_>) -> pb::AuthorizeResponse {
    let index_staleness = answer
        .index_staleness
        .to_std()
        .ok()
        .and_then(|it| prost_types::Duration::try_from(it).ok());
    let names = |bits| scope_names(answer.catalog.scopes(bits));
    match (answer.decision, answer.principal) {
        (Decision::Allow { is_previous }, Some(principal)) => {
            let grant = principal.grant.grant();
            pb::AuthorizeResponse {
                decision: pb::Decision::Allow.into(),
                principal: Some(pb::Principal {
                    integration_id: grant.integration_id.hyphenated().to_string(),
                    agency_id: grant.agency_id.as_str().to_owned(),
                    location_id: grant
                        .location_id
                        .as_ref()
                        .map(|it| it.as_str().to_owned())
                        .unwrap_or_default(),
                    scopes: names(grant.scopes),
                    token_id: principal.token_id.hyphenated().to_string(),
                }),
                expire_time: principal.expire_time.map(timestamp),
                previous_token: is_previous,
                index_staleness,
                ..Default::default()
            }
        }
        (Decision::Deny(reason), _) => pb::AuthorizeResponse {
            decision: pb::Decision::Deny.into(),
            reason: deny_reason(&reason).into(),
            missing_scopes: match reason {
                DenyReason::MissingScopes(missing) => names(missing),
                _ => Vec::new(),
            },
            index_staleness,
            ..Default::default()
        },
        // The index answers an allow with its principal; without one, the call is denied.
        (Decision::Allow { .. }, None) => pb::AuthorizeResponse {
            decision: pb::Decision::Deny.into(),
            reason: pb::DenyReason::UnknownToken.into(),
            index_staleness,
            ..Default::default()
        },
    }
}

/// Returns the protobuf deny reason of `reason`.
pub fn deny_reason(reason: &DenyReason) -> pb::DenyReason {
    match reason {
        DenyReason::MalformedToken => pb::DenyReason::MalformedToken,
        DenyReason::UnknownToken => pb::DenyReason::UnknownToken,
        DenyReason::ExpiredToken => pb::DenyReason::ExpiredToken,
        DenyReason::RevokedToken => pb::DenyReason::RevokedToken,
        DenyReason::WrongAccount => pb::DenyReason::WrongAccount,
        DenyReason::MissingScopes(_) => pb::DenyReason::MissingScopes,
        DenyReason::Disabled => pb::DenyReason::Disabled,
        DenyReason::IpNotAllowed => pb::DenyReason::IpNotAllowed,
    }
}
