//! Usage as shown to owners: when a token was last used, its calls per day, and which granted
//! scopes went unused (least-privilege advice).
//!
//! These are read-model facts worked out from what the database recorded plus what this replica
//! counted and has not written yet; they are not part of an integration's state, and no
//! lifecycle transition reads or changes them.

use std::net::IpAddr;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::domain::scope::{Scope, ScopeSet};

/// Granted scopes that no allowed call required within this long are reported unused.
pub const UNUSED_SCOPE_WINDOW: Duration = Duration::days(30);

/// How many calls a token had allowed and denied on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    pub date: NaiveDate,
    pub allowed: u64,
    pub denied: u64,
}

/// The API caller of a request, as the API service passed it to Authorize.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastCaller {
    pub client_ip: Option<IpAddr>,
    /// At most [`MAX_USER_AGENT_CHARS`] characters.
    pub user_agent: Option<String>,
}

/// How much of a user agent is kept.
pub const MAX_USER_AGENT_CHARS: usize = 256;

impl LastCaller {
    /// Returns the caller of a request, or `None` when the request named neither.
    pub fn of(client_ip: Option<IpAddr>, user_agent: Option<&str>) -> Option<Self> {
        let user_agent = user_agent
            .filter(|it| !it.is_empty())
            .map(|it| it.chars().take(MAX_USER_AGENT_CHARS).collect());
        (client_ip.is_some() || user_agent.is_some()).then_some(Self {
            client_ip,
            user_agent,
        })
    }
}

/// What is known of one token's use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// When it last authorized a call.
    pub last_used_time: Option<DateTime<Utc>>,
    /// Who made an allowed call of it last (within a usage flush interval).
    pub last_caller: Option<LastCaller>,
    /// Calls per UTC day, oldest first; empty when unknown.
    pub daily: Vec<DailyUsage>,
}

/// Returns a token's daily counts: `recorded` (from the database, oldest first) plus the calls
/// counted on this replica and not written yet, which count as today's.
pub fn daily_usage(
    mut recorded: Vec<DailyUsage>,
    (allowed, denied): (u64, u64),
    now: DateTime<Utc>,
) -> Vec<DailyUsage> {
    if allowed == 0 && denied == 0 {
        return recorded;
    }
    let today = now.date_naive();
    match recorded.iter_mut().find(|day| day.date == today) {
        Some(day) => {
            day.allowed += allowed;
            day.denied += denied;
        }
        None => recorded.push(DailyUsage {
            date: today,
            allowed,
            denied,
        }),
    }
    recorded
}

/// Returns the scopes of `granted` that are not in `required`, the scopes allowed calls required
/// within the window.
pub fn unused_scopes(granted: &ScopeSet, mut required: impl FnMut(&Scope) -> bool) -> ScopeSet {
    ScopeSet::new(
        granted
            .as_slice()
            .iter()
            .filter(|scope| !required(scope))
            .cloned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, allowed: u64, denied: u64) -> DailyUsage {
        DailyUsage {
            date: date.parse().expect("date"),
            allowed,
            denied,
        }
    }

    #[track_caller]
    fn check(recorded: Vec<DailyUsage>, unwritten: (u64, u64), expect: Vec<DailyUsage>) {
        let now = "2026-11-25T12:00:00Z".parse().expect("time");
        assert_eq!(daily_usage(recorded, unwritten, now), expect);
    }

    #[test]
    fn unwritten_calls_count_for_today() {
        check(vec![], (0, 0), vec![]);
        check(vec![], (2, 1), vec![day("2026-11-25", 2, 1)]);
        check(
            vec![day("2026-11-24", 5, 0)],
            (1, 0),
            vec![day("2026-11-24", 5, 0), day("2026-11-25", 1, 0)],
        );
        check(
            vec![day("2026-11-24", 5, 0), day("2026-11-25", 3, 3)],
            (1, 2),
            vec![day("2026-11-24", 5, 0), day("2026-11-25", 4, 5)],
        );
    }

    #[test]
    fn unused_scopes_are_the_granted_ones_not_required() {
        let scopes =
            |names: &[&str]| ScopeSet::new(names.iter().map(|it| Scope::parse(it).expect("scope")));
        let granted = scopes(&["a.readonly", "b.write", "c.write"]);
        let required = scopes(&["b.write"]);
        assert_eq!(
            unused_scopes(&granted, |scope| required.contains(scope.as_str())),
            scopes(&["a.readonly", "c.write"])
        );
        assert_eq!(unused_scopes(&granted, |_| true), ScopeSet::default());
    }
}
