//! Rows to domain values and back. A row that does not map is corrupt: `Internal`, never a panic.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;

use crate::domain::account::{AccountId, Owner};
use crate::domain::allowlist::IpAllowlist;
use crate::domain::error::Error;
use crate::domain::event::Event;
use crate::domain::integration::{
    Description, EventKind, Integration, IntegrationId, IntegrationName, TokenId, TokenRecord,
};
use crate::domain::scope::{Scope, ScopeSet};
use crate::domain::token::TokenHash;
use crate::store::entity;
use crate::store::error::corrupt;

pub(super) fn owner(agency_id: &str, location_id: Option<&str>) -> Result<Owner, Error> {
    let agency_id = AccountId::parse("agency_id", agency_id).map_err(|_| corrupt("agency_id"))?;
    let location_id = location_id
        .map(|it| AccountId::parse("location_id", it))
        .transpose()
        .map_err(|_| corrupt("location_id"))?;
    Ok(Owner {
        agency_id,
        location_id,
    })
}

pub(super) fn token_id(id: &str) -> Result<TokenId, Error> {
    TokenId::parse("id", id).map_err(|_| corrupt("token id"))
}

pub(super) fn integration_id(id: &str) -> Result<IntegrationId, Error> {
    IntegrationId::parse("id", id).map_err(|_| corrupt("integration id"))
}

pub(super) fn token_record(row: entity::token::Model) -> Result<TokenRecord, Error> {
    Ok(TokenRecord {
        id: token_id(&row.id)?,
        hash: TokenHash::from_bytes(&row.hash).map_err(|_| corrupt("token hash"))?,
        hint: row.hint,
        create_time: row.create_time,
        expire_time: row.expire_time,
        revoke_time: row.revoke_time,
    })
}

pub(super) fn token_row(
    integration_id: &IntegrationId,
    token: &TokenRecord,
) -> entity::token::ActiveModel {
    entity::token::ActiveModel {
        id: Set(token.id.as_str().to_owned()),
        integration_id: Set(integration_id.as_str().to_owned()),
        hash: Set(token.hash.as_bytes().to_vec()),
        hint: Set(token.hint.clone()),
        create_time: Set(token.create_time),
        expire_time: Set(token.expire_time),
        revoke_time: Set(token.revoke_time),
        // Only `Store::record_usage` writes these; the token upsert leaves them alone.
        last_used_time: Set(None),
        last_client_ip: Set(None),
        last_user_agent: Set(None),
    }
}

/// Returns the integration of `row`, its slots filled from `tokens` (by token id).
pub(super) fn integration(
    row: entity::integration::Model,
    tokens: &HashMap<String, TokenRecord>,
) -> Result<Integration, Error> {
    let slot = |id: &Option<String>| -> Result<Option<TokenRecord>, Error> {
        id.as_ref()
            .map(|id| tokens.get(id).cloned().ok_or_else(|| corrupt("token slot")))
            .transpose()
    };
    let scopes = row
        .scopes
        .split(' ')
        .map(|name| Scope::parse(name).ok_or_else(|| corrupt("scopes")));
    Ok(Integration {
        id: integration_id(&row.id)?,
        owner: owner(&row.agency_id, row.location_id.as_deref())?,
        name: IntegrationName::parse("name", &row.name).map_err(|_| corrupt("name"))?,
        description: Description::parse("description", &row.description)
            .map_err(|_| corrupt("description"))?,
        scopes: ScopeSet::new(scopes.collect::<Result<Vec<_>, _>>()?),
        create_time: row.create_time,
        update_time: row.update_time,
        created_by: row.created_by,
        version: row.version,
        current: slot(&row.current_token_id)?,
        previous: slot(&row.previous_token_id)?,
        disable_time: row.disable_time,
        ip_allowlist: match &row.ip_allowlist {
            Some(joined) => {
                let ranges: Vec<String> = joined.split(' ').map(str::to_owned).collect();
                IpAllowlist::parse("ip_allowlist", &ranges).map_err(|_| corrupt("ip_allowlist"))?
            }
            None => None,
        },
    })
}

pub(super) fn integration_row(
    integration: &Integration,
    delete_time: Option<DateTime<Utc>>,
) -> entity::integration::ActiveModel {
    let token_id = |token: &Option<TokenRecord>| token.as_ref().map(|it| it.id.as_str().to_owned());
    entity::integration::ActiveModel {
        id: Set(integration.id.as_str().to_owned()),
        agency_id: Set(integration.owner.agency_id.as_str().to_owned()),
        location_id: Set(location_id(&integration.owner)),
        name: Set(integration.name.as_str().to_owned()),
        description: Set(integration.description.as_str().to_owned()),
        scopes: Set(integration.scopes.joined()),
        create_time: Set(integration.create_time),
        update_time: Set(integration.update_time),
        created_by: Set(integration.created_by.clone()),
        version: Set(integration.version),
        current_token_id: Set(token_id(&integration.current)),
        previous_token_id: Set(token_id(&integration.previous)),
        delete_time: Set(delete_time),
        disable_time: Set(integration.disable_time),
        ip_allowlist: Set(integration.ip_allowlist.as_ref().map(IpAllowlist::joined)),
    }
}

pub(super) fn location_id(owner: &Owner) -> Option<String> {
    owner.location_id.as_ref().map(|it| it.as_str().to_owned())
}

pub(super) fn event(row: entity::event::Model) -> Result<Event, Error> {
    let details: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.details).map_err(|_| corrupt("event details"))?;
    Ok(Event {
        id: row.id,
        kind: EventKind::parse(&row.kind).ok_or_else(|| corrupt("event kind"))?,
        time: row.time,
        actor: row.actor,
        integration_id: integration_id(&row.integration_id)?,
        owner: owner(&row.agency_id, row.location_id.as_deref())?,
        details: details
            .into_iter()
            .map(|(key, value)| {
                (
                    key,
                    value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| value.to_string()),
                )
            })
            .collect(),
    })
}
