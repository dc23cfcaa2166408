//! The in-memory token index: every token's digest with its integration's grant.
//!
//! Authorize reads it without locks held across awaits and without touching the database.
//! Writers (start-up load, this replica's own changes) apply whole integrations, and an
//! integration's version guards against an older state overwriting a newer one.
//! It does not read the database itself and does not decide anything: see `domain::decision`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::domain::decision::{Decision, Grant, Target, TokenGrant, authorize};
use crate::domain::integration::{Integration, IntegrationId, TokenRecord};
use crate::domain::scope::RequiredScopes;
use crate::domain::token::TokenHash;

/// Every known token by digest, live or not, so a revoked token is told apart from an unknown one.
#[derive(Default)]
pub struct TokenIndex {
    tokens: DashMap<TokenHash, TokenGrant>,
    /// The version of each integration as last applied. Writers hold this lock while applying,
    /// so two writers never interleave; readers never take it.
    versions: Mutex<HashMap<IntegrationId, i64>>,
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
        authorize(entry.as_deref(), required, target, now)
    }

    /// Returns how many tokens the index holds, live or not.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Returns true if the index holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Applies the state of `integration` and of the tokens that left its slots.
    /// A state older than the one already applied (a lower version) is ignored.
    pub fn apply(&self, integration: &Integration, retired: &[TokenRecord]) {
        let mut versions = self
            .versions
            .lock()
            .expect("index writers do not panic while holding the lock");
        let applied = versions.entry(integration.id.clone()).or_insert(0);
        if *applied > integration.version {
            return;
        }
        *applied = integration.version;
        let grant = Arc::new(Grant {
            integration_id: integration.id.clone(),
            owner: integration.owner.clone(),
            scopes: integration.scopes.clone(),
        });
        let slotted = integration
            .current
            .iter()
            .map(|token| (token, false))
            .chain(integration.previous.iter().map(|token| (token, true)));
        for (token, is_previous) in slotted {
            self.insert(token, &grant, is_previous, token.revoke_time);
        }
        for token in retired {
            // A token out of its slots never works again, whatever its own fields say;
            // one that had already expired by time keeps saying so.
            self.insert(
                token,
                &grant,
                false,
                Some(token.revoke_time.unwrap_or(integration.update_time)),
            );
        }
    }

    fn insert(
        &self,
        token: &TokenRecord,
        grant: &Arc<Grant>,
        is_previous: bool,
        revoke_time: Option<DateTime<Utc>>,
    ) {
        let entry = TokenGrant {
            token_id: token.id.clone(),
            grant: Arc::clone(grant),
            expire_time: token.expire_time,
            revoke_time,
            is_previous,
        };
        self.tokens.insert(token.hash, entry);
    }
}
