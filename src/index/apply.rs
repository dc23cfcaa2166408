//! Writing to the index: applying an integration's state and the tokens that left its slots,
//! under the one writer lock, keeping the range digests in step with every slot change.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use chrono::{DateTime, Utc};

use crate::domain::account::AccountId;
use crate::domain::decision::{Grant, Revocation, TokenState};
use crate::domain::integration::{Integration, TokenRecord};
use crate::index::{
    IndexedGrant, RangeDigest, TokenIndex, TokenSlot, Writer, counted, is_current, lock,
};

impl TokenIndex {
    /// Applies the state of `integration` and of the tokens that left its slots, at `now`.
    /// A token already written by a newer state of the integration (a higher version) keeps
    /// its slot; retired tokens always apply, since retirement is final. Tokens out of the
    /// current slot that ended before the retention are not added.
    pub fn apply(&self, integration: &Integration, retired: &[TokenRecord], now: DateTime<Utc>) {
        let mut writer = lock(&self.writer);
        let Writer {
            agencies,
            ranges,
            next_end_millis,
        } = &mut *writer;
        let version = grant_version(integration.version);
        let mut made: Option<Arc<IndexedGrant>> = None;
        let grant = |existing: Option<&Arc<IndexedGrant>>| -> Arc<IndexedGrant> {
            // A state applied again (by the feed after this replica's own change, or by a
            // resync) shares the grant its tokens already have.
            if let Some(existing) = existing.filter(|it| it.version == version) {
                return Arc::clone(existing);
            }
            let made = made.get_or_insert_with(|| {
                Arc::new(IndexedGrant {
                    grant: Grant {
                        integration_id: integration.id.uuid(),
                        agency_id: intern(agencies, &integration.owner.agency_id),
                        location_id: integration.owner.location_id.clone(),
                        scopes: self.catalog.bits(&integration.scopes),
                    },
                    version,
                    disabled: integration.disable_time.is_some(),
                    allowlist: integration.ip_allowlist.clone().map(Arc::new),
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
        let mut applying = Applying {
            index: self,
            version,
            cutoff: (now - self.retention).timestamp_millis(),
            grant,
            ranges,
            next_end_millis,
        };
        // A token out of its slots never returns to them, so its end applies whatever the
        // version: a state applied late must still revoke what it revoked. One that had already
        // expired by time keeps saying so.
        for token in retired {
            let revoke_time = token.revoke_time.unwrap_or(integration.update_time);
            let state = TokenState::new(token.expire_time, Some(revoke_time), false);
            applying.upsert(token, state, true);
        }
        let slotted = integration
            .current
            .iter()
            .map(|token| (token, false))
            .chain(integration.previous.iter().map(|token| (token, true)));
        for (token, is_previous) in slotted {
            let state = TokenState::new(token.expire_time, token.revoke_time, is_previous);
            applying.upsert(token, state, false);
        }
    }
}

/// One integration's state being applied.
struct Applying<'a, G> {
    index: &'a TokenIndex,
    version: u32,
    /// Tokens out of the current slot that ended before this (Unix milliseconds) are not added.
    cutoff: i64,
    /// Returns the grant of the state, given the one a slot has (shared if of the same version).
    grant: G,
    ranges: &'a mut [RangeDigest],
    next_end_millis: &'a mut i64,
}

impl<G: FnMut(Option<&Arc<IndexedGrant>>) -> Arc<IndexedGrant>> Applying<'_, G> {
    fn upsert(&mut self, token: &TokenRecord, state: TokenState, retired: bool) {
        let Self {
            version,
            cutoff,
            grant,
            ranges,
            next_end_millis,
            ..
        } = self;
        let mut count = |slot: &TokenSlot, sign| {
            match counted(slot) {
                Some((range, version)) => ranges[range].add(version, sign),
                // A token out of its current slot will be dropped after its end.
                None if sign > 0 => **next_end_millis = (**next_end_millis).min(slot.end_millis),
                None => {}
            }
        };
        self.index.tokens.upsert(&token.hash, |slot| {
            let Some(slot) = slot else {
                // A token out of the current slot that ended before the retention is not worth
                // its slot.
                if !is_current(&state) && state.end_millis < *cutoff {
                    return None;
                }
                let slot = TokenSlot {
                    hash: token.hash,
                    token_id: token.id.uuid(),
                    grant: grant(None),
                    end_millis: state.end_millis,
                    revocation: state.revocation,
                    is_previous: state.is_previous,
                    last_used: AtomicU32::new(0),
                    calls: AtomicU64::new(0),
                    dirty: AtomicBool::new(false),
                };
                count(&slot, 1);
                return Some(slot);
            };
            count(slot, -1);
            if retired {
                // Retired once, retired for good; an earlier end stands.
                if slot.revocation == Revocation::None || state.end_millis < slot.end_millis {
                    slot.set_state(state);
                }
                if slot.grant.version < *version {
                    slot.grant = grant(Some(&slot.grant));
                }
            } else if slot.grant.version <= *version && slot.revocation == Revocation::None {
                // A revocation is final: no state puts a revoked token back to work.
                slot.set_state(state);
                slot.grant = grant(Some(&slot.grant));
            }
            count(slot, 1);
            None
        });
    }
}

/// Returns the version a grant keeps: a version past `u32::MAX` counts as that (four billion
/// changes of one integration).
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
