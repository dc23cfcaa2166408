//! The in-memory token index: every token's digest with its state and its integration's grant.
//!
//! Authorize reads it under a shard's read lock, never across an await, and never touches the
//! database. Writers (the start-up load, this replica's own changes, the change-feed
//! `follower`) apply whole integrations, one at a time; each token's slot remembers the version
//! of the state that last wrote it, so an older state never overwrites a newer one, while
//! retired tokens, being final, always apply. Each slot also counts its token's use, which the
//! `recorder` writes out in batches, taking only what changed (the dirty lists).
//!
//! A live token costs one table slot (`table`) plus its share of its integration's grant: ids are
//! 16-byte UUIDs, times are milliseconds, scopes are bits over the catalog, and agency ids are
//! interned. Tokens that ended longer than the retention ago are dropped.
//! The index itself does not read the database and decides nothing: see `domain::decision`.

pub mod feed;
pub mod follower;
pub mod recorder;
mod scan;
mod table;
mod usage;

pub use crate::index::usage::{UnrecordedScopes, UnrecordedUse};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::domain::account::AccountId;
use crate::domain::decision::{
    Decision, DenyReason, Grant, Revocation, Target, TokenState, authorize,
};
use crate::domain::integration::{Integration, TokenRecord};
use crate::domain::scope::{Catalog, ScopeBits};
use crate::domain::token::TokenHash;
use crate::index::table::{Keyed, Table};

/// An integration's grant as the index holds it: shared by the integration's tokens.
#[derive(Debug)]
pub struct IndexedGrant {
    grant: Grant,
    /// The integration's version this grant is of (a version past `u32::MAX` counts as that:
    /// four billion changes of one integration).
    version: u32,
    /// The scopes allowed calls required since the recorder last took them.
    required: [AtomicU64; 2],
    /// True while the grant waits in the recorder's list.
    dirty: AtomicBool,
}

impl IndexedGrant {
    /// Returns the grant.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }
}

/// One token: its digest, its state, its grant, and its use since the last write.
struct TokenSlot {
    hash: TokenHash,
    token_id: Uuid,
    grant: Arc<IndexedGrant>,
    /// See `TokenState`; kept flat so the slot packs tightly.
    end_millis: i64,
    revocation: Revocation,
    is_previous: bool,
    /// Unix milliseconds of the last allowed call; 0 for never (on this replica).
    last_used: AtomicI64,
    /// Calls since the recorder last took them: allowed in the low half, denied in the high.
    calls: AtomicU64,
    /// True while the slot waits in the recorder's list.
    dirty: AtomicBool,
}

/// What one denied call adds to `calls`.
const DENIED: u64 = 1 << 32;

impl Keyed for TokenSlot {
    fn key(&self) -> &TokenHash {
        &self.hash
    }
}

impl TokenSlot {
    fn state(&self) -> TokenState {
        TokenState {
            end_millis: self.end_millis,
            revocation: self.revocation,
            is_previous: self.is_previous,
        }
    }

    fn set_state(&mut self, state: TokenState) {
        self.end_millis = state.end_millis;
        self.revocation = state.revocation;
        self.is_previous = state.is_previous;
    }
}

/// Who an allowed call acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: Uuid,
    pub grant: Arc<IndexedGrant>,
    /// When the token expires, if ever.
    pub expire_time: Option<DateTime<Utc>>,
}

/// What the index answers: the decision and, for an allowed call, who it acts as.
#[derive(Debug)]
pub struct Lookup {
    pub decision: Decision,
    pub principal: Option<Principal>,
}

/// Every known token by digest, live or ended (until the retention drops it), so a revoked
/// token is told apart from an unknown one.
pub struct TokenIndex {
    tokens: Table<TokenSlot>,
    catalog: Arc<Catalog>,
    /// Writers hold this while applying, so two writers never interleave; readers never take it.
    writer: Mutex<Interned>,
    /// Every change committed before this time (Unix milliseconds) is applied; 0 until loaded.
    synced_at_millis: AtomicI64,
    /// Tokens used since the recorder last took their use.
    dirty_tokens: Mutex<Vec<TokenHash>>,
    /// Grants whose required scopes the recorder has not taken yet.
    dirty_grants: Mutex<Vec<Arc<IndexedGrant>>>,
    /// How long an ended token stays known (answering EXPIRED or REVOKED) before it is dropped.
    retention: Duration,
}

/// Values shared by many grants, kept once.
#[derive(Default)]
struct Interned {
    agencies: HashSet<AccountId>,
}

impl TokenIndex {
    /// Returns an empty index over `catalog`, keeping ended tokens for `retention`.
    pub fn new(catalog: Arc<Catalog>, retention: Duration) -> Self {
        Self {
            tokens: Table::default(),
            catalog,
            writer: Mutex::default(),
            synced_at_millis: AtomicI64::new(0),
            dirty_tokens: Mutex::default(),
            dirty_grants: Mutex::default(),
            retention,
        }
    }

    /// Returns the catalog the index's scope bits refer to.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Decides whether the token with digest `token_hash` may act on `target` with `required`
    /// at `now_millis`, and counts the call.
    pub fn authorize(
        &self,
        token_hash: &TokenHash,
        required: ScopeBits,
        target: &Target<'_>,
        now_millis: i64,
    ) -> Lookup {
        self.tokens.read(token_hash, |slot| {
            let Some(slot) = slot else {
                return Lookup {
                    decision: Decision::Deny(DenyReason::UnknownToken),
                    principal: None,
                };
            };
            let state = slot.state();
            let decision = authorize(
                Some((&state, &slot.grant.grant)),
                required,
                target,
                now_millis,
            );
            let allowed = matches!(decision, Decision::Allow { .. });
            if allowed {
                // A plain load and store: the time only moves forward in practice, and a race
                // between two calls of one millisecond loses nothing worth a read-modify-write.
                if slot.last_used.load(Ordering::Relaxed) < now_millis {
                    slot.last_used.store(now_millis, Ordering::Relaxed);
                }
                slot.calls.fetch_add(1, Ordering::Relaxed);
                self.required_scopes(&slot.grant, required);
            } else {
                slot.calls.fetch_add(DENIED, Ordering::Relaxed);
            }
            // The count is raised before the flag is read: the recorder clears the flag before
            // it takes the count, so no call is left out of both.
            if !slot.dirty.load(Ordering::Relaxed) && !slot.dirty.swap(true, Ordering::AcqRel) {
                lock(&self.dirty_tokens).push(slot.hash);
            }
            Lookup {
                decision,
                principal: allowed.then(|| Principal {
                    token_id: slot.token_id,
                    grant: Arc::clone(&slot.grant),
                    expire_time: state.expire_time(),
                }),
            }
        })
    }

    /// Records that every change committed before `time` is applied (never moving backwards).
    pub fn mark_synced(&self, time: DateTime<Utc>) {
        self.synced_at_millis
            .fetch_max(time.timestamp_millis(), Ordering::Relaxed);
    }

    /// Returns how far behind the database the index may be at `now_millis`: changes made on
    /// other replicas within this time may not be applied yet.
    pub fn staleness(&self, now_millis: i64) -> Duration {
        let synced = self.synced_at_millis.load(Ordering::Relaxed);
        Duration::milliseconds((now_millis - synced).max(0))
    }

    /// Returns how many tokens the index holds, live or not.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Returns true if the index holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `additional` more tokens, before a load.
    pub fn reserve(&self, additional: usize) {
        self.tokens.reserve(additional);
    }

    /// Applies the state of `integration` and of the tokens that left its slots, at `now`.
    /// A token already written by a newer state of the integration (a higher version) keeps
    /// its slot; retired tokens always apply, since retirement is final. Tokens that ended
    /// before the retention are not added.
    pub fn apply(&self, integration: &Integration, retired: &[TokenRecord], now: DateTime<Utc>) {
        let mut interned = lock(&self.writer);
        let cutoff = (now - self.retention).timestamp_millis();
        let version = integration.version;
        let mut grant: Option<Arc<IndexedGrant>> = None;
        let mut grant = |existing: Option<&Arc<IndexedGrant>>| -> Arc<IndexedGrant> {
            // A state applied again (by the feed after this replica's own change, or by a
            // resync) shares the grant its tokens already have.
            if let Some(existing) = existing.filter(|it| it.version == grant_version(version)) {
                return Arc::clone(existing);
            }
            let made = grant.get_or_insert_with(|| {
                Arc::new(IndexedGrant {
                    grant: Grant {
                        integration_id: integration.id.uuid(),
                        agency_id: intern(&mut interned.agencies, &integration.owner.agency_id),
                        location_id: integration.owner.location_id.clone(),
                        scopes: self.catalog.bits(&integration.scopes),
                    },
                    version: grant_version(version),
                    required: Default::default(),
                    dirty: AtomicBool::new(false),
                })
            });
            // What the older grant counted and the recorder has not taken yet stays visible to
            // this replica's reads (the older grant still writes it, as it is in the list).
            if let Some(existing) = existing {
                self.carry_required(existing, made);
            }
            Arc::clone(made)
        };
        // A token out of its slots never returns to them, so its end applies whatever the
        // version: a state applied late must still revoke what it revoked. One that had already
        // expired by time keeps saying so.
        for token in retired {
            let revoke_time = token.revoke_time.unwrap_or(integration.update_time);
            let state = TokenState::new(token.expire_time, Some(revoke_time), false);
            self.upsert(token, state, version, cutoff, &mut grant, true);
        }
        let slotted = integration
            .current
            .iter()
            .map(|token| (token, false))
            .chain(integration.previous.iter().map(|token| (token, true)));
        for (token, is_previous) in slotted {
            let state = TokenState::new(token.expire_time, token.revoke_time, is_previous);
            self.upsert(token, state, version, cutoff, &mut grant, false);
        }
    }

    fn upsert(
        &self,
        token: &TokenRecord,
        state: TokenState,
        version: i64,
        cutoff: i64,
        grant: &mut impl FnMut(Option<&Arc<IndexedGrant>>) -> Arc<IndexedGrant>,
        retired: bool,
    ) {
        self.tokens.upsert(&token.hash, |slot| {
            let Some(slot) = slot else {
                // A token out of the current slot that ended before the retention is not worth
                // its slot.
                if !is_current(&state) && state.end_millis < cutoff {
                    return None;
                }
                return Some(TokenSlot {
                    hash: token.hash,
                    token_id: token.id.uuid(),
                    grant: grant(None),
                    end_millis: state.end_millis,
                    revocation: state.revocation,
                    is_previous: state.is_previous,
                    last_used: AtomicI64::new(0),
                    calls: AtomicU64::new(0),
                    dirty: AtomicBool::new(false),
                });
            };
            if retired {
                // Retired once, retired for good; an earlier end stands.
                if slot.revocation == Revocation::None || state.end_millis < slot.end_millis {
                    slot.set_state(state);
                }
                if slot.grant.version < grant_version(version) {
                    slot.grant = grant(Some(&slot.grant));
                }
            } else if slot.grant.version <= grant_version(version)
                && slot.revocation == Revocation::None
            {
                // A revocation is final: no state puts a revoked token back to work.
                slot.set_state(state);
                slot.grant = grant(Some(&slot.grant));
            }
            None
        });
    }
}

/// Returns true for the current token of its integration: neither retired nor previous.
pub(crate) fn is_current(state: &TokenState) -> bool {
    state.revocation == Revocation::None && !state.is_previous
}

fn grant_version(version: i64) -> u32 {
    u32::try_from(version.max(0)).unwrap_or(u32::MAX)
}

fn intern(agencies: &mut HashSet<AccountId>, id: &AccountId) -> AccountId {
    match agencies.get(id) {
        Some(known) => known.clone(),
        None => {
            agencies.insert(id.clone());
            id.clone()
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("no panics while holding the index's locks")
}

#[cfg(test)]
mod tests;
