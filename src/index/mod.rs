//! The in-memory token index: every token's digest with its integration's grant.
//!
//! Authorize reads it without locks held across awaits and without touching the database.
//! Writers (the start-up load, this replica's own changes, the change-feed `follower`) apply
//! whole integrations; an integration's version guards its slots against an older state, and
//! retired tokens, being final, always apply. Each entry also keeps when its token was last
//! used, which the `recorder` writes out in batches.
//! The index itself does not read the database and decides nothing: see `domain::decision`.

pub mod feed;
pub mod follower;
pub mod recorder;
pub mod usage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::domain::decision::{Decision, Grant, Target, TokenGrant, authorize};
use crate::domain::integration::{Integration, IntegrationId, TokenRecord};
use crate::domain::scope::{RequiredScopes, Scope};
use crate::domain::token::TokenHash;
use crate::index::usage::{ScopeUses, UnrecordedScopeUse, UnrecordedUse, Usage};

/// A token's grant and when it was last used.
struct Entry {
    grant: TokenGrant,
    /// Kept across re-applies of the token, so no use is forgotten.
    usage: Arc<Usage>,
    /// Shared by the integration's live tokens.
    scopes: Arc<ScopeUses>,
}

/// Every known token by digest, live or not, so a revoked token is told apart from an unknown one.
#[derive(Default)]
pub struct TokenIndex {
    tokens: DashMap<TokenHash, Entry>,
    /// The version of each integration as last applied. Writers hold this lock while applying,
    /// so two writers never interleave; readers never take it.
    versions: Mutex<HashMap<IntegrationId, i64>>,
    /// Every change committed before this time (Unix milliseconds) is applied; 0 until loaded.
    synced_at_millis: AtomicI64,
    /// The scope uses of each integration, as its live tokens share them.
    scope_uses: Mutex<HashMap<IntegrationId, Arc<ScopeUses>>>,
}

impl TokenIndex {
    /// Returns an empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides whether the token with digest `token_hash` may act on `target` with `required`.
    pub fn authorize(
        &self,
        token_hash: &TokenHash,
        required: &RequiredScopes<'_>,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Decision {
        let entry = self.tokens.get(token_hash);
        let decision = authorize(entry.as_ref().map(|it| &it.grant), required, target, now);
        if let Some(entry) = &entry {
            if let Decision::Allow { .. } = &decision {
                let now = now.timestamp_millis();
                entry.usage.allowed.fetch_add(1, Ordering::Relaxed);
                entry.usage.last_used.fetch_max(now, Ordering::Relaxed);
                for name in required.names() {
                    if let Some(position) = entry.scopes.position(name) {
                        entry.scopes.last[position].fetch_max(now, Ordering::Relaxed);
                    }
                }
            } else {
                entry.usage.denied.fetch_add(1, Ordering::Relaxed);
            }
        }
        decision
    }

    /// Returns the scopes of an integration that an allowed call on this replica required at or
    /// after `since`.
    pub fn scopes_required_since(
        &self,
        integration_id: &IntegrationId,
        since: DateTime<Utc>,
    ) -> Vec<Scope> {
        let scope_uses = self
            .scope_uses
            .lock()
            .expect("no panics while holding the lock");
        let Some(uses) = scope_uses.get(integration_id) else {
            return Vec::new();
        };
        let since = since.timestamp_millis();
        let used = uses
            .names
            .iter()
            .zip(&uses.last)
            .filter(|(_, last)| last.load(Ordering::Relaxed) >= since);
        used.map(|(name, _)| name.clone()).collect()
    }

    /// Returns the scope uses not yet written to the database.
    pub fn unrecorded_scope_uses(&self) -> Vec<UnrecordedScopeUse> {
        let scope_uses = self
            .scope_uses
            .lock()
            .expect("no panics while holding the lock");
        let mut unrecorded = Vec::new();
        for (integration_id, uses) in scope_uses.iter() {
            for position in 0..uses.names.len() {
                let last = uses.last[position].load(Ordering::Relaxed);
                if last > uses.recorded[position].load(Ordering::Relaxed)
                    && let Some(time) = DateTime::from_timestamp_millis(last)
                {
                    unrecorded.push(UnrecordedScopeUse {
                        integration_id: integration_id.clone(),
                        scope: uses.names[position].clone(),
                        time,
                        uses: Arc::clone(uses),
                        position,
                    });
                }
            }
        }
        unrecorded
    }

    /// Returns when the token with this digest last authorized a call, as this replica knows it.
    pub fn last_used(&self, token_hash: &TokenHash) -> Option<DateTime<Utc>> {
        let millis = self
            .tokens
            .get(token_hash)?
            .usage
            .last_used
            .load(Ordering::Relaxed);
        (millis > 0)
            .then(|| DateTime::from_timestamp_millis(millis))
            .flatten()
    }

    /// Returns the calls counted on this replica but not yet written, for the token with this digest.
    pub fn unrecorded_calls(&self, token_hash: &TokenHash) -> (u64, u64) {
        self.tokens.get(token_hash).map_or((0, 0), |entry| {
            (
                entry.usage.allowed.load(Ordering::Relaxed),
                entry.usage.denied.load(Ordering::Relaxed),
            )
        })
    }

    /// Takes the usage not yet written to the database: last uses newer than recorded, and the
    /// call counts (which restart from zero). Scans the index.
    pub fn unrecorded_uses(&self) -> Vec<UnrecordedUse> {
        self.tokens
            .iter()
            .filter_map(|entry| {
                let usage = &entry.usage;
                let last_used = usage.last_used.load(Ordering::Relaxed);
                let time = (last_used > usage.recorded.load(Ordering::Relaxed))
                    .then(|| DateTime::from_timestamp_millis(last_used))
                    .flatten();
                let allowed = usage.allowed.swap(0, Ordering::Relaxed);
                let denied = usage.denied.swap(0, Ordering::Relaxed);
                (time.is_some() || allowed > 0 || denied > 0).then(|| UnrecordedUse {
                    token_id: entry.grant.token_id.clone(),
                    time,
                    allowed,
                    denied,
                    usage: Arc::clone(usage),
                })
            })
            .collect()
    }

    /// Records that every change committed before `time` is applied (never moving backwards).
    pub fn mark_synced(&self, time: DateTime<Utc>) {
        self.synced_at_millis
            .fetch_max(time.timestamp_millis(), Ordering::Relaxed);
    }

    /// Returns how far behind the database the index may be at `now`: changes made on other
    /// replicas within this time may not be applied yet.
    pub fn staleness(&self, now: DateTime<Utc>) -> chrono::Duration {
        let synced = self.synced_at_millis.load(Ordering::Relaxed);
        chrono::Duration::milliseconds((now.timestamp_millis() - synced).max(0))
    }

    /// Returns how many tokens the index holds, live or not.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Returns how many tokens authorize at `now`: not revoked and not expired. Scans the index.
    pub fn live_count(&self, now: DateTime<Utc>) -> usize {
        self.tokens
            .iter()
            .filter(|it| {
                it.grant.revoke_time.is_none()
                    && it.grant.expire_time.is_none_or(|expire| now < expire)
            })
            .count()
    }

    /// Returns true if the index holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Applies the state of `integration` and of the tokens that left its slots.
    /// The slots of a state older than the one already applied (a lower version) are ignored;
    /// its retired tokens are not, since retirement is final.
    pub fn apply(&self, integration: &Integration, retired: &[TokenRecord]) {
        let mut versions = self
            .versions
            .lock()
            .expect("index writers do not panic while holding the lock");
        let grant = Arc::new(Grant {
            integration_id: integration.id.clone(),
            owner: integration.owner.clone(),
            scopes: integration.scopes.clone(),
        });
        // A token out of its slots never returns to them, so its end applies whatever the
        // version: a state applied late must still revoke what it revoked. One that had already
        // expired by time keeps saying so.
        // Retired tokens never authorize again, so they need no scope uses.
        let no_scope_uses = Arc::new(ScopeUses::default());
        for token in retired {
            let revoke_time = Some(token.revoke_time.unwrap_or(integration.update_time));
            self.insert(token, &grant, false, revoke_time, &no_scope_uses);
        }
        let applied = versions.entry(integration.id.clone()).or_insert(0);
        if *applied > integration.version {
            return;
        }
        *applied = integration.version;
        let scope_uses = {
            let mut all = self
                .scope_uses
                .lock()
                .expect("no panics while holding the lock");
            let current = all.get(&integration.id);
            match current.filter(|it| it.names == integration.scopes.as_slice()) {
                Some(same) => Arc::clone(same),
                None => {
                    let rebuilt = Arc::new(ScopeUses::new(
                        &integration.scopes,
                        current.map(Arc::as_ref),
                    ));
                    all.insert(integration.id.clone(), Arc::clone(&rebuilt));
                    rebuilt
                }
            }
        };
        let slotted = integration
            .current
            .iter()
            .map(|token| (token, false))
            .chain(integration.previous.iter().map(|token| (token, true)));
        for (token, is_previous) in slotted {
            self.insert(token, &grant, is_previous, token.revoke_time, &scope_uses);
        }
    }

    fn insert(
        &self,
        token: &TokenRecord,
        grant: &Arc<Grant>,
        is_previous: bool,
        revoke_time: Option<DateTime<Utc>>,
        scopes: &Arc<ScopeUses>,
    ) {
        let grant = TokenGrant {
            token_id: token.id.clone(),
            grant: Arc::clone(grant),
            expire_time: token.expire_time,
            revoke_time,
            is_previous,
        };
        let usage = match self.tokens.get(&token.hash) {
            Some(existing) => Arc::clone(&existing.usage),
            None => Arc::default(),
        };
        let scopes = Arc::clone(scopes);
        self.tokens.insert(
            token.hash,
            Entry {
                grant,
                usage,
                scopes,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use ring::rand::SystemRandom;

    use super::*;
    use crate::domain::account::{AccountId, Owner};
    use crate::domain::decision::Target;
    use crate::domain::integration::{Description, Draft, IntegrationName, OldTokens, TokenId};
    use crate::domain::scope::{Catalog, RequiredScopes, Scope};
    use crate::domain::token::PlainToken;

    fn allows(index: &TokenIndex, token: &PlainToken, now: DateTime<Utc>) -> bool {
        let target = Target {
            agency_id: None,
            location_id: Some(AccountId::parse("test", "loc1").expect("valid")),
        };
        let required = RequiredScopes::parse("test", &[]).expect("valid");
        matches!(
            index.authorize(&token.hash(), &required, &target, now),
            Decision::Allow { .. }
        )
    }

    // Regression: two rotations on one replica can finish in either order; the state applied
    // last may be the older one, and what it revoked must stay revoked.
    #[test]
    fn a_late_older_state_still_revokes() {
        let rng = SystemRandom::new();
        let catalog = Catalog::from_toml(include_str!("../../scopes.toml")).expect("catalog");
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let owner = Owner {
            agency_id: AccountId::parse("test", "agency1").expect("valid"),
            location_id: Some(AccountId::parse("test", "loc1").expect("valid")),
        };
        let scopes = catalog
            .grant(
                "scopes",
                &[Scope::parse("contacts.readonly").expect("valid")],
                owner.level(),
            )
            .expect("scopes");
        let tokens: Vec<PlainToken> = (0..3)
            .map(|_| PlainToken::generate(&rng).expect("random"))
            .collect();
        let name = IntegrationName::parse("name", "x").expect("valid");
        let id = |n: u128| uuid::Uuid::from_u128(n);
        let (mut integration, _) = Integration::create(
            IntegrationId::from_uuid(id(1)),
            Draft {
                owner,
                name,
                description: Description::default(),
                scopes,
            },
            "user".into(),
            TokenRecord::issue(TokenId::from_uuid(id(10)), &tokens[0], now),
            now,
        );
        let index = TokenIndex::new();
        index.apply(&integration, &[]);
        let at = now + Duration::seconds(1);
        let first = integration
            .rotate(
                TokenRecord::issue(TokenId::from_uuid(id(11)), &tokens[1], at),
                OldTokens::ExpireNow,
                at,
            )
            .expect("rotate");
        let after_first = integration.clone();
        let second = integration
            .rotate(
                TokenRecord::issue(TokenId::from_uuid(id(12)), &tokens[2], at),
                OldTokens::ExpireNow,
                at,
            )
            .expect("rotate");
        // The newer state is applied first, the older one last.
        index.apply(&integration, &second.retired);
        index.apply(&after_first, &first.retired);
        let later = at + Duration::seconds(1);
        assert!(
            !allows(&index, &tokens[0], later),
            "revoked by the first rotation"
        );
        assert!(
            !allows(&index, &tokens[1], later),
            "revoked by the second rotation"
        );
        assert!(
            allows(&index, &tokens[2], later),
            "the newest token is current"
        );
    }
}
