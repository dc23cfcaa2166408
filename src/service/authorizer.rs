//! The Authorize use case: parse, look up by digest, decide. No database, no allocation beyond
//! the answer, no lock held across an await.

use std::sync::Arc;
use std::time::Instant;

use crate::clock::Clock;
use crate::domain::account::AccountId;
use crate::domain::decision::{Decision, DenyReason, Target};
use crate::domain::error::{Error, Violation};
use crate::domain::scope::Catalog;
use crate::domain::token::TokenHash;
use crate::index::TokenIndex;
use crate::metrics::Metrics;

/// The answer to Authorize: the decision, and how stale the index behind it may be.
#[derive(Debug)]
pub struct Answer {
    pub decision: Decision,
    pub index_staleness: chrono::Duration,
}

/// Answers Authorize from the token index.
pub struct Authorizer {
    index: Arc<TokenIndex>,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Authorizer {
    /// Returns an authorizer over `index`.
    pub fn new(
        index: Arc<TokenIndex>,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            index,
            catalog,
            clock,
            metrics,
        }
    }

    /// Returns how many tokens authorize now, and how many the index holds in all.
    pub fn token_counts(&self) -> (usize, usize) {
        (self.index.live_count(self.clock.now()), self.index.len())
    }

    /// Returns how far behind the database the index may be now.
    pub fn index_staleness(&self) -> chrono::Duration {
        self.index.staleness(self.clock.now())
    }

    /// Decides whether `token` (bare or `Bearer ...`) may act on the account with every scope of `required`.
    ///
    /// # Errors
    /// Returns `InvalidArgument` for a malformed request: no account, a bad account id, or an
    /// unknown required scope. A bad token is a `Deny`, not an error.
    pub fn authorize(
        &self,
        token: &str,
        required: &[String],
        agency_id: &str,
        location_id: &str,
    ) -> Result<Answer, Error> {
        let started = Instant::now();
        let target = Target {
            agency_id: AccountId::parse_optional("agency_id", agency_id)?,
            location_id: AccountId::parse_optional("location_id", location_id)?,
        };
        if target.agency_id.is_none() && target.location_id.is_none() {
            return Err(Violation::new(
                "location_id",
                "the request must name a location_id or an agency_id",
            )
            .into());
        }
        let required = self.catalog.required("required_scopes", required)?;
        let now = self.clock.now();
        // Digested in place: no copy of the token is made.
        let decision = match TokenHash::parse(token) {
            Ok(token_hash) => self.index.authorize(&token_hash, &required, &target, now),
            Err(_) => Decision::Deny(DenyReason::MalformedToken),
        };
        self.metrics.record_authorize(&decision, started.elapsed());
        Ok(Answer {
            decision,
            index_staleness: self.index.staleness(now),
        })
    }
}
