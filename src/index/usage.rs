//! What Authorize counts in the index's slots, and how the recorder takes it: only the tokens
//! and grants touched since the last round (the dirty lists), never a scan of the index.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use crate::domain::integration::{IntegrationId, TokenId};
use crate::domain::scope::{Scope, ScopeBits};
use crate::domain::token::TokenHash;
use crate::domain::usage::LastCaller;
use crate::index::{DENIED, IndexedGrant, TokenIndex, lock};

/// A token's use to write to the database; see [`TokenIndex::take_unrecorded`].
#[derive(Debug)]
pub struct UnrecordedUse {
    pub token_hash: TokenHash,
    pub token_id: TokenId,
    /// The last allowed call, if there was one since the last write.
    pub time: Option<DateTime<Utc>>,
    pub allowed: u64,
    pub denied: u64,
    /// Who made the allowed call that put the token on the list, if the request said.
    pub caller: Option<LastCaller>,
}

/// An integration's required scopes to write to the database.
#[derive(Debug)]
pub struct UnrecordedScopes {
    pub integration_id: IntegrationId,
    pub scopes: Vec<Scope>,
    grant: Arc<IndexedGrant>,
    bits: ScopeBits,
}

impl TokenIndex {
    /// Counts scopes an allowed call required, for the grant's integration.
    pub(super) fn required_scopes(&self, grant: &Arc<IndexedGrant>, required: ScopeBits) {
        for (word, bits) in grant.required.iter().zip(required.words()) {
            if bits != 0 && word.load(Ordering::Relaxed) & bits != bits {
                word.fetch_or(bits, Ordering::Relaxed);
            }
        }
        if !required.is_empty()
            && !grant.dirty.load(Ordering::Relaxed)
            && !grant.dirty.swap(true, Ordering::AcqRel)
        {
            lock(&self.dirty_grants).push(Arc::clone(grant));
        }
    }

    /// Returns the scopes of the integration of the token with this digest that allowed calls
    /// on this replica required and the recorder has not written yet.
    pub fn unrecorded_scopes(&self, token_hash: &TokenHash) -> Vec<Scope> {
        let bits = self.tokens.read(token_hash, |slot| {
            slot.map(|slot| {
                let words = slot
                    .grant
                    .required
                    .each_ref()
                    .map(|word| word.load(Ordering::Relaxed));
                ScopeBits::from_words(words)
            })
        });
        let bits = bits.unwrap_or_default();
        self.catalog.scopes(bits).cloned().collect()
    }

    /// Returns when the token with this digest last authorized a call, as this replica knows it.
    pub fn last_used(&self, token_hash: &TokenHash) -> Option<DateTime<Utc>> {
        let seconds = self.tokens.read(token_hash, |slot| {
            slot.map_or(0, |slot| slot.last_used.load(Ordering::Relaxed))
        });
        (seconds > 0)
            .then(|| DateTime::from_timestamp(i64::from(seconds), 0))
            .flatten()
    }

    /// Returns the calls (allowed, denied) counted on this replica but not yet written, for the
    /// token with this digest.
    pub fn unrecorded_calls(&self, token_hash: &TokenHash) -> (u64, u64) {
        let calls = self.tokens.read(token_hash, |slot| {
            slot.map_or(0, |slot| slot.calls.load(Ordering::Relaxed))
        });
        (calls & (DENIED - 1), calls >> 32)
    }

    /// Takes the use recorded since the last call: the tokens used and the scopes required.
    /// The work is proportional to what was used, not to the size of the index. What a failed
    /// write could not record goes back with [`TokenIndex::restore`].
    pub fn take_unrecorded(&self) -> (Vec<UnrecordedUse>, Vec<UnrecordedScopes>) {
        let hashes = std::mem::take(&mut *lock(&self.dirty_tokens));
        let mut uses = Vec::with_capacity(hashes.len());
        for (hash, caller) in hashes {
            let taken = self.tokens.read(&hash, |slot| {
                let slot = slot?;
                slot.dirty.store(false, Ordering::Release);
                let calls = slot.calls.swap(0, Ordering::AcqRel);
                let last_used = slot.last_used.load(Ordering::Relaxed);
                Some((slot.token_id, calls, last_used))
            });
            let Some((token_id, calls, last_used)) = taken else {
                continue;
            };
            let allowed = calls & (DENIED - 1);
            uses.push(UnrecordedUse {
                token_hash: hash,
                token_id: TokenId::from_uuid(token_id),
                time: (allowed > 0)
                    .then(|| DateTime::from_timestamp(i64::from(last_used), 0))
                    .flatten(),
                allowed,
                denied: calls >> 32,
                caller,
            });
        }
        let grants = std::mem::take(&mut *lock(&self.dirty_grants));
        let mut scopes = Vec::with_capacity(grants.len());
        for grant in grants {
            grant.dirty.store(false, Ordering::Release);
            let words = grant
                .required
                .each_ref()
                .map(|word| word.swap(0, Ordering::AcqRel));
            let bits = ScopeBits::from_words(words);
            if bits.is_empty() {
                continue;
            }
            scopes.push(UnrecordedScopes {
                integration_id: IntegrationId::from_uuid(grant.grant.integration_id),
                scopes: self.catalog.scopes(bits).cloned().collect(),
                grant,
                bits,
            });
        }
        (uses, scopes)
    }

    /// Puts back use that could not be written, for the next round.
    pub fn restore(&self, uses: &[UnrecordedUse], scopes: &[UnrecordedScopes]) {
        for unrecorded in uses {
            self.tokens.read(&unrecorded.token_hash, |slot| {
                if let Some(slot) = slot {
                    let calls = unrecorded.allowed + unrecorded.denied * DENIED;
                    slot.calls.fetch_add(calls, Ordering::Relaxed);
                    if !slot.dirty.swap(true, Ordering::AcqRel) {
                        lock(&self.dirty_tokens).push((slot.hash, unrecorded.caller.clone()));
                    }
                }
            });
        }
        for unrecorded in scopes {
            self.required_scopes(&unrecorded.grant, unrecorded.bits);
        }
    }

    /// Adds the scopes `from` counted and the recorder has not taken to `to`.
    pub(super) fn carry_required(&self, from: &IndexedGrant, to: &Arc<IndexedGrant>) {
        let words = from
            .required
            .each_ref()
            .map(|word| word.load(Ordering::Relaxed));
        self.required_scopes(to, ScopeBits::from_words(words));
    }
}
