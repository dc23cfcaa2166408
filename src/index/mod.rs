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

mod apply;
pub mod feed;
pub mod follower;
pub mod recorder;
mod scan;
mod table;
mod usage;

pub use crate::index::usage::{UnrecordedScopes, UnrecordedUse};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::domain::account::AccountId;
use crate::domain::allowlist::IpAllowlist;
use crate::domain::decision::{
    Decision, DenyReason, Found, Grant, Revocation, Target, TokenState, authorize,
};
use crate::domain::scope::{Catalog, ScopeBits};
use crate::domain::token::TokenHash;
use crate::domain::usage::LastCaller;
use crate::index::table::{Keyed, Table};
use crate::store::range_of;

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
    /// Whether the integration is disabled (in what would otherwise be padding).
    disabled: bool,
    /// The networks its tokens may be used from, if it restricts them (a thin pointer: most
    /// integrations have none).
    allowlist: Option<Arc<IpAllowlist>>,
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
    /// Unix seconds of the last allowed call; 0 for never (on this replica). Seconds are what
    /// owners need to know, and four bytes fewer per token.
    last_used: AtomicU32,
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
    writer: Mutex<Writer>,
    /// Every change committed before this time (Unix milliseconds) is applied; 0 until loaded.
    synced_at_millis: AtomicI64,
    /// Tokens used since the recorder last took their use.
    dirty_tokens: Mutex<Vec<(TokenHash, Option<LastCaller>)>>,
    /// Grants whose required scopes the recorder has not taken yet.
    dirty_grants: Mutex<Vec<Arc<IndexedGrant>>>,
    /// How long an ended token stays known (answering EXPIRED or REVOKED) before it is dropped.
    retention: Duration,
}

/// What writers keep beside the slots.
struct Writer {
    /// Agency ids, shared by many grants, kept once.
    agencies: HashSet<AccountId>,
    /// For each range of integrations (see `store::range_of`): how many have a current token
    /// here, and the sum of their versions. Kept up to date by every slot change, so the resync
    /// compares it with the database's without a scan.
    ranges: Vec<RangeDigest>,
    /// The earliest end (Unix milliseconds) of a token out of its current slot: before the
    /// retention passes it, there is nothing to drop and no scan to make.
    next_end_millis: i64,
}

impl Default for Writer {
    fn default() -> Self {
        Self {
            agencies: HashSet::new(),
            ranges: vec![RangeDigest::default(); 256],
            next_end_millis: i64::MAX,
        }
    }
}

/// How many integrations of a range have a current token, and the sum of their versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeDigest {
    pub integrations: i64,
    pub versions: i64,
}

impl RangeDigest {
    fn add(&mut self, version: u32, sign: i64) {
        self.integrations += sign;
        self.versions += sign * i64::from(version);
    }
}

/// Returns the range and version a slot counts for in the range digests: only an integration's
/// current token counts, once for its integration.
fn counted(slot: &TokenSlot) -> Option<(usize, u32)> {
    is_current(&slot.state()).then(|| {
        let range = usize::from(range_of(&slot.grant.grant.integration_id));
        (range, slot.grant.version)
    })
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
            let found = Found {
                token: &state,
                grant: &slot.grant.grant,
                disabled: slot.grant.disabled,
                allowlist: slot.grant.allowlist.as_deref(),
            };
            let decision = authorize(Some(found), required, target, now_millis);
            let allowed = matches!(decision, Decision::Allow { .. });
            if allowed {
                // A plain load and store: the time only moves forward in practice, and a race
                // between two calls of one second loses nothing worth a read-modify-write.
                let now_seconds = u32::try_from(now_millis / 1000).unwrap_or(u32::MAX);
                if slot.last_used.load(Ordering::Relaxed) < now_seconds {
                    slot.last_used.store(now_seconds, Ordering::Relaxed);
                }
                slot.calls.fetch_add(1, Ordering::Relaxed);
                self.required_scopes(&slot.grant, required);
            } else {
                slot.calls.fetch_add(DENIED, Ordering::Relaxed);
            }
            // The count is raised before the flag is read: the recorder clears the flag before
            // it takes the count, so no call is left out of both.
            // The caller is kept once per token and round: the one whose call put it on the list.
            if !slot.dirty.load(Ordering::Relaxed) && !slot.dirty.swap(true, Ordering::AcqRel) {
                let caller = allowed
                    .then(|| LastCaller::of(target.client_ip, target.user_agent))
                    .flatten();
                lock(&self.dirty_tokens).push((slot.hash, caller));
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
}

/// Returns true for the current token of its integration: neither retired nor previous.
pub(crate) fn is_current(state: &TokenState) -> bool {
    state.revocation == Revocation::None && !state.is_previous
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .expect("no panics while holding the index's locks")
}

#[cfg(test)]
mod tests;
