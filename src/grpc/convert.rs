//! Conversions between `pb::` messages and domain types. Parsing validates; every error names
//! the request field.

use chrono::{DateTime, Utc};

use crate::domain::decision::{Decision, DenyReason};
use crate::domain::error::{Error, Violation};
use crate::domain::event::{Event, EventFilter};
use crate::domain::integration::{AccountId, Integration, IntegrationId, Level, TokenRecord};
use crate::domain::scope::ScopeEntry;
use crate::grpc::pb;
use crate::service::authorizer::Answer;

/// The page size used when a request asks for none.
const DEFAULT_PAGE_SIZE: u64 = 50;
/// The largest page size a request may ask for.
const MAX_PAGE_SIZE: i32 = 100;

/// Encodes a time.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// Parses a time from `field`.
///
/// # Errors
/// `InvalidArgument` if it is not a valid time.
pub fn parse_timestamp(
    field: &'static str,
    time: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, Error> {
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
    let invalid = || {
        Error::from(Violation::new(
            field,
            "must be a valid, non-negative duration",
        ))
    };
    if duration.seconds < 0 || duration.nanos < 0 {
        return Err(invalid());
    }
    let seconds = chrono::Duration::try_seconds(duration.seconds).ok_or_else(invalid)?;
    Ok(seconds + chrono::Duration::nanoseconds(i64::from(duration.nanos)))
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

/// Parses an integration listing's page token: the id of the last integration of the previous page.
///
/// # Errors
/// `InvalidArgument` on `page_token` for anything not returned by privint.
pub fn integration_page_token(token: &str) -> Result<Option<IntegrationId>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    IntegrationId::parse("page_token", token).map(Some)
}

/// Parses an event id (`page_token` or `after_id`).
///
/// # Errors
/// `InvalidArgument` on `field` unless empty or a positive integer.
pub fn event_id(field: &'static str, id: &str) -> Result<Option<i64>, Error> {
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
pub fn event_filter(
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

fn encode_level(level: Level) -> pb::Level {
    match level {
        Level::Agency => pb::Level::Agency,
        Level::Location => pb::Level::Location,
    }
}

fn token_info(token: &TokenRecord) -> pb::TokenInfo {
    pb::TokenInfo {
        id: token.id.as_str().to_owned(),
        hint: token.hint.clone(),
        create_time: Some(timestamp(token.create_time)),
        expire_time: token.expire_time.map(timestamp),
        last_used_time: token.last_used_time.map(timestamp),
        daily_usage: token
            .daily_usage
            .iter()
            .map(|day| pb::DailyUsage {
                date: day.date.to_string(),
                allowed_calls: i64::try_from(day.allowed).unwrap_or(i64::MAX),
                denied_calls: i64::try_from(day.denied).unwrap_or(i64::MAX),
            })
            .collect(),
    }
}

/// Encodes an integration; `now` decides which token slots are still live.
pub fn integration(
    integration: &Integration,
    rotation_due: bool,
    now: DateTime<Utc>,
) -> pb::Integration {
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
        scopes: integration
            .scopes
            .as_slice()
            .iter()
            .map(|scope| scope.as_str().to_owned())
            .collect(),
        create_time: Some(timestamp(integration.create_time)),
        update_time: Some(timestamp(integration.update_time)),
        created_by: integration.created_by.clone(),
        etag: integration.etag(),
        current_token: integration.current.as_ref().map(token_info),
        previous_token: integration.live_previous(now).map(token_info),
        rotation_due,
        level: encode_level(integration.owner.level()).into(),
        unused_scopes: integration
            .unused_scopes
            .iter()
            .flat_map(|scopes| scopes.as_slice())
            .map(|scope| scope.as_str().to_owned())
            .collect(),
        last_used_time: [&integration.current, &integration.previous]
            .into_iter()
            .flatten()
            .filter_map(|token| token.last_used_time)
            .max()
            .map(timestamp),
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

/// Encodes an Authorize answer.
pub fn answer(answer: Answer) -> pb::AuthorizeResponse {
    let staleness = answer.index_staleness;
    let index_staleness = Some(prost_types::Duration {
        seconds: staleness.num_seconds(),
        nanos: staleness.subsec_nanos(),
    });
    pb::AuthorizeResponse {
        index_staleness,
        ..decision(answer.decision)
    }
}

fn decision(decision: Decision) -> pb::AuthorizeResponse {
    match decision {
        Decision::Allow {
            token_id,
            grant,
            expire_time,
            is_previous,
        } => pb::AuthorizeResponse {
            decision: pb::Decision::Allow.into(),
            principal: Some(pb::Principal {
                integration_id: grant.integration_id.as_str().to_owned(),
                agency_id: grant.owner.agency_id.as_str().to_owned(),
                location_id: grant
                    .owner
                    .location_id
                    .as_ref()
                    .map(|it| it.as_str().to_owned())
                    .unwrap_or_default(),
                scopes: grant
                    .scopes
                    .as_slice()
                    .iter()
                    .map(|scope| scope.as_str().to_owned())
                    .collect(),
                token_id: token_id.as_str().to_owned(),
            }),
            expire_time: expire_time.map(timestamp),
            previous_token: is_previous,
            ..Default::default()
        },
        Decision::Deny(reason) => {
            let (reason, missing_scopes) = match reason {
                DenyReason::MalformedToken => (pb::DenyReason::MalformedToken, Vec::new()),
                DenyReason::UnknownToken => (pb::DenyReason::UnknownToken, Vec::new()),
                DenyReason::ExpiredToken => (pb::DenyReason::ExpiredToken, Vec::new()),
                DenyReason::RevokedToken => (pb::DenyReason::RevokedToken, Vec::new()),
                DenyReason::WrongAccount => (pb::DenyReason::WrongAccount, Vec::new()),
                DenyReason::MissingScopes(missing) => (
                    pb::DenyReason::MissingScopes,
                    missing
                        .as_slice()
                        .iter()
                        .map(|scope| scope.as_str().to_owned())
                        .collect(),
                ),
            };
            pb::AuthorizeResponse {
                decision: pb::Decision::Deny.into(),
                reason: reason.into(),
                missing_scopes,
                ..Default::default()
            }
        }
    }
}
