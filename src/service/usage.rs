//! The read model of an integration: the integration as stored, plus what its owner sees beside
//! it (whether rotation is due, when each token was last used, calls per day, unused scopes).
//!
//! Usage is worked out on reads from what the database recorded plus what this replica counted
//! and has not written yet; it is never part of a lifecycle transaction.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tracing::warn;

use crate::clock::Clock;
use crate::domain::error::Error;
use crate::domain::integration::{Integration, TokenId};
use crate::domain::scope::ScopeSet;
use crate::domain::usage::{TokenUsage, UNUSED_SCOPE_WINDOW, daily_usage, unused_scopes};
use crate::index::TokenIndex;
use crate::store::Store;

/// An integration as shown to its owner.
#[derive(Debug, Clone)]
pub struct IntegrationView {
    pub integration: Integration,
    /// When the view was built: what decides whether the previous token is still live.
    pub read_time: DateTime<Utc>,
    /// True if the current token is older than the configured rotation age.
    pub rotation_due: bool,
    /// The use of each token in a slot, by token id; a token never used has none.
    pub token_usage: HashMap<TokenId, TokenUsage>,
    /// Granted scopes that no allowed call required within `UNUSED_SCOPE_WINDOW`; `None` when
    /// the database could not say.
    pub unused_scopes: Option<ScopeSet>,
}

impl IntegrationView {
    /// Returns the use of the token with id `token_id`.
    pub fn usage_of(&self, token_id: &TokenId) -> Option<&TokenUsage> {
        self.token_usage.get(token_id)
    }
}

/// Builds views of integrations.
pub struct Usage {
    store: Store,
    index: Arc<TokenIndex>,
    clock: Arc<dyn Clock>,
    /// Current tokens older than this are flagged `rotation_due`.
    rotation_age: Duration,
}

impl Usage {
    /// Returns a view builder reading usage from `store` and this replica's `index`.
    pub fn new(
        store: Store,
        index: Arc<TokenIndex>,
        clock: Arc<dyn Clock>,
        rotation_age: Duration,
    ) -> Self {
        Self {
            store,
            index,
            clock,
            rotation_age,
        }
    }

    /// Returns the view of one integration.
    pub async fn view(&self, integration: Integration) -> IntegrationView {
        let mut views = self.views(vec![integration]).await;
        views.pop().expect("one integration in, one view out")
    }

    /// Returns the views of a page of integrations, with one read of the recorded usage. If the
    /// database cannot say, usage is what this replica knows and `unused_scopes` stays unknown.
    pub async fn views(&self, integrations: Vec<Integration>) -> Vec<IntegrationView> {
        let now = self.clock.now();
        let since = now - UNUSED_SCOPE_WINDOW;
        let ids: Vec<_> = integrations.iter().map(|it| &it.id).collect();
        let token_ids: Vec<_> = integrations
            .iter()
            .flat_map(|it| it.current.iter().chain(&it.previous))
            .map(|token| &token.id)
            .collect();
        let recorded = async {
            let scopes = self.store.scopes_required_since(&ids, since).await?;
            let tokens = self
                .store
                .token_usage(&token_ids, since.date_naive())
                .await?;
            Ok::<_, Error>((scopes, tokens))
        };
        let (scopes_required, mut recorded_tokens) = match recorded.await {
            Ok((scopes, tokens)) => (Some(scopes), tokens),
            Err(err) => {
                warn!(error = ?err, "cannot read usage; unused scopes and daily counts left unknown");
                (None, HashMap::new())
            }
        };
        let mut views = Vec::with_capacity(integrations.len());
        for integration in integrations {
            let mut token_usage = HashMap::new();
            for token in integration.current.iter().chain(&integration.previous) {
                let recorded = recorded_tokens.remove(&token.id).unwrap_or_default();
                let usage = TokenUsage {
                    last_used_time: recorded
                        .last_used_time
                        .max(self.index.last_used(&token.hash)),
                    // As written: at most one usage flush interval behind.
                    last_caller: recorded.last_caller,
                    daily: daily_usage(
                        recorded.daily,
                        self.index.unrecorded_calls(&token.hash),
                        now,
                    ),
                };
                if usage != TokenUsage::default() {
                    token_usage.insert(token.id.clone(), usage);
                }
            }
            let unused_scopes = scopes_required.as_ref().map(|scopes_required| {
                // What this replica saw and has not written yet: the integration's tokens share it.
                let local = integration
                    .current
                    .iter()
                    .chain(&integration.previous)
                    .map(|token| self.index.unrecorded_scopes(&token.hash))
                    .next()
                    .unwrap_or_default();
                unused_scopes(&integration.scopes, |scope| {
                    local.contains(scope)
                        || scopes_required
                            .iter()
                            .any(|(id, name)| *id == integration.id && name == scope.as_str())
                })
            });
            views.push(IntegrationView {
                read_time: now,
                rotation_due: integration.rotation_due(self.rotation_age, now),
                integration,
                token_usage,
                unused_scopes,
            });
        }
        views
    }
}
