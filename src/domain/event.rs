//! Audit events as read back from the log: what changed, who changed it and when.

use chrono::{DateTime, Duration, Utc};

use crate::domain::account::{AccountId, Owner};
use crate::domain::integration::{EventKind, IntegrationId};

/// One entry of the audit log and change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing in commit order on one database.
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

/// How long a gap in event ids may be waited for before it is taken for a rolled-back
/// transaction: ids are allocated at insert but become visible at commit, so a lower id can
/// appear after a higher one.
pub const GAP_WAIT: Duration = Duration::seconds(2);

/// Returns how many of `events` (read in id order after `after`) can be delivered now without
/// skipping an event that may still commit: delivery stops before a gap in the ids unless the
/// event after the gap is older than `GAP_WAIT`.
pub fn deliverable(events: &[Event], after: i64, now: DateTime<Utc>) -> usize {
    let mut expected = after + 1;
    for (count, event) in events.iter().enumerate() {
        if event.id != expected && now - event.time < GAP_WAIT {
            return count;
        }
        expected = event.id + 1;
    }
    events.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, age_seconds: i64, now: DateTime<Utc>) -> Event {
        Event {
            id,
            kind: EventKind::IntegrationUpdated,
            time: now - Duration::seconds(age_seconds),
            actor: "user".to_owned(),
            integration_id: IntegrationId::from_uuid(uuid::Uuid::from_u128(1)),
            owner: Owner {
                agency_id: AccountId::parse("test", "agency1").expect("valid"),
                location_id: None,
            },
            details: Vec::new(),
        }
    }

    #[track_caller]
    fn check(ids_and_ages: &[(i64, i64)], after: i64, expect: usize) {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let events: Vec<Event> = ids_and_ages
            .iter()
            .map(|(id, age)| event(*id, *age, now))
            .collect();
        assert_eq!(
            deliverable(&events, after, now),
            expect,
            "{ids_and_ages:?} after {after}"
        );
    }

    #[test]
    fn gaps_hold_delivery_until_they_are_old() {
        check(&[], 0, 0);
        check(&[(1, 0), (2, 0), (3, 0)], 0, 3);
        check(&[(5, 0), (6, 0)], 4, 2);
        // A fresh gap: id 2 may still commit.
        check(&[(1, 0), (3, 0), (4, 0)], 0, 1);
        check(&[(3, 1)], 1, 0);
        // An old gap was a rolled-back transaction.
        check(&[(1, 0), (3, 2), (4, 0)], 0, 3);
        check(&[(1, 5), (3, 5), (9, 0)], 0, 2);
    }
}
