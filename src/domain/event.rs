//! Audit events as read back from the log: what changed, who changed it and when.

use chrono::{DateTime, Utc};

use crate::domain::account::{AccountId, Owner};
use crate::domain::integration::{EventKind, IntegrationId};

/// One entry of the audit log and change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing in commit order on one database (see `store::events`).
    pub id: i64,
    pub kind: EventKind,
    pub time: DateTime<Utc>,
    /// The user id that made the change.
    pub actor: String,
    pub integration_id: IntegrationId,
    pub owner: Owner,
    /// Never a token or a digest.
    pub details: Vec<(String, String)>,
}

/// Whose events to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// The events of one integration.
    Integration(IntegrationId),
    /// The events of an agency's integrations (all levels), or of one location's.
    Account {
        agency_id: AccountId,
        location_id: Option<AccountId>,
    },
}

impl EventFilter {
    /// Returns true if `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Self::Integration(id) => event.integration_id == *id,
            Self::Account {
                agency_id,
                location_id,
            } => {
                event.owner.agency_id == *agency_id
                    && (location_id.is_none() || event.owner.location_id == *location_id)
            }
        }
    }
}
