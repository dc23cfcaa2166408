//! Usage counters kept beside the index's entries: atomics that Authorize raises, and the
//! handles the recorder uses to mark what it wrote (or put counts back when a write failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use crate::domain::integration::{IntegrationId, TokenId};
use crate::domain::scope::{Scope, ScopeSet};

/// When each scope of an integration's grant was last required by an allowed call.
#[derive(Default)]
pub(super) struct ScopeUses {
    /// The grant's scopes, sorted.
    pub(super) names: Vec<Scope>,
    // Invariant: `last` and `recorded` have one entry per name; Unix milliseconds, 0 for never.
    pub(super) last: Vec<AtomicI64>,
    pub(super) recorded: Vec<AtomicI64>,
}

impl ScopeUses {
    /// Returns the uses of `scopes`, keeping what `old` knew of the scopes both have.
    pub(super) fn new(scopes: &ScopeSet, old: Option<&ScopeUses>) -> Self {
        let carried = |name: &Scope, of: fn(&ScopeUses) -> &Vec<AtomicI64>| {
            let known = old.and_then(|old| {
                old.position(name.as_str())
                    .map(|i| of(old)[i].load(Ordering::Relaxed))
            });
            AtomicI64::new(known.unwrap_or(0))
        };
        let names = scopes.as_slice().to_vec();
        let last = names
            .iter()
            .map(|name| carried(name, |it| &it.last))
            .collect();
        let recorded = names
            .iter()
            .map(|name| carried(name, |it| &it.recorded))
            .collect();
        Self {
            names,
            last,
            recorded,
        }
    }

    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.names
            .binary_search_by(|scope| scope.as_str().cmp(name))
            .ok()
    }
}

/// A scope use to write to the database; see [`TokenIndex::unrecorded_scope_uses`].
pub struct UnrecordedScopeUse {
    pub integration_id: IntegrationId,
    pub scope: Scope,
    pub time: DateTime<Utc>,
    pub(super) uses: Arc<ScopeUses>,
    pub(super) position: usize,
}

impl UnrecordedScopeUse {
    /// Marks this use as written.
    pub fn recorded(&self) {
        self.uses.recorded[self.position]
            .fetch_max(self.time.timestamp_millis(), Ordering::Relaxed);
    }
}

/// When a token last authorized a call, and how much of that is written to the database.
#[derive(Default)]
pub(super) struct Usage {
    /// Unix milliseconds of the last allowed call; 0 for never.
    pub(super) last_used: AtomicI64,
    /// The `last_used` value the database has.
    pub(super) recorded: AtomicI64,
    /// Calls allowed and denied since the counts were last written.
    pub(super) allowed: AtomicU64,
    pub(super) denied: AtomicU64,
}

/// A token's usage to write to the database; see [`TokenIndex::unrecorded_uses`].
pub struct UnrecordedUse {
    pub token_id: TokenId,
    /// The last use, if newer than what the database has.
    pub time: Option<DateTime<Utc>>,
    /// Calls since the counts were last taken; taken out of the index by `unrecorded_uses`.
    pub allowed: u64,
    pub denied: u64,
    pub(super) usage: Arc<Usage>,
}

impl UnrecordedUse {
    /// Marks the last use as written.
    pub fn recorded(&self) {
        if let Some(time) = self.time {
            self.usage
                .recorded
                .fetch_max(time.timestamp_millis(), Ordering::Relaxed);
        }
    }

    /// Puts the counts back, for the next write, when this one failed.
    pub fn restore(&self) {
        self.usage
            .allowed
            .fetch_add(self.allowed, Ordering::Relaxed);
        self.usage.denied.fetch_add(self.denied, Ordering::Relaxed);
    }
}
