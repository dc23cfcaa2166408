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
use crate::index::{Lookup, Principal, TokenIndex};
use crate::metrics::Metrics;

/// The answer to Authorize: the decision, who an allowed call acts as, and how stale the index
/// behind it may be.
#[derive(Debug)]
pub struct Answer<'a> {
    pub decision: Decision,
    pub principal: Option<Principal>,
    pub index_staleness: chrono::Duration,
    /// What the scope bits of the decision and the principal refer to.
    pub catalog: &'a Catalog,
}

/// Answers Authorize from the token index.
pub struct Authorizer {
    index: Arc<TokenIndex>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Authorizer {
    /// Returns an authorizer over `index`.
    pub fn new(index: Arc<TokenIndex>, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        Self {
            index,
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
        self.index.staleness(self.clock.now_millis())
    }

    /// Decides whether the call's token (bare or `Bearer ...`) may act on its account with every
    /// scope it requires. Nothing of the request is copied, and the clock is read once.
    ///
    /// # Errors
    /// Returns `InvalidArgument` for a malformed request: no account, a bad account id, an
    /// unknown required scope, or a client IP that is not an address. A bad token is a `Deny`,
    /// not an error.
    pub fn authorize<'a>(&'a self, call: Call<'a>) -> Result<Answer<'a>, Error> {
        // One call in `LATENCY_SAMPLE` is timed: the histogram keeps its shape without two more
        // clock reads on every call.
        let started = sampled().then(Instant::now);
        let client_ip = match call.client_ip {
            "" => None,
            ip => Some(ip.parse().map_err(|_| {
                Violation::new("client_ip", "must be an IPv4 or IPv6 address, or empty")
            })?),
        };
        let target = Target {
            agency_id: account("agency_id", call.agency_id)?,
            location_id: account("location_id", call.location_id)?,
            client_ip,
            user_agent: (!call.user_agent.is_empty()).then_some(call.user_agent),
        };
        if target.agency_id.is_none() && target.location_id.is_none() {
            return Err(Violation::new(
                "location_id",
                "the request must name a location_id or an agency_id",
            )
            .into());
        }
        let catalog = self.index.catalog();
        let required = catalog.required("required_scopes", call.required)?;
        let now = self.clock.now_millis();
        // Digested in place: no copy of the token is made.
        let lookup = match TokenHash::parse(call.token) {
            Ok(token_hash) => self.index.authorize(&token_hash, required, &target, now),
            Err(_) => Lookup {
                decision: Decision::Deny(DenyReason::MalformedToken),
                principal: None,
            },
        };
        self.metrics
            .record_authorize(&lookup.decision, started.map(|it| it.elapsed()));
        Ok(Answer {
            decision: lookup.decision,
            principal: lookup.principal,
            index_staleness: self.index.staleness(now),
            catalog,
        })
    }
}

/// One Authorize call as asked: what the token must be allowed to do, and who asked. No
/// `Debug`: it holds the token.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The token, or `Bearer <token>`.
    pub token: &'a str,
    pub required: &'a [String],
    pub agency_id: &'a str,
    pub location_id: &'a str,
    /// The API caller's address (empty if unknown), for IP allowlists and the last caller.
    pub client_ip: &'a str,
    /// The API caller's user agent (empty if unknown), shown as the token's last caller.
    pub user_agent: &'a str,
}

/// How many calls of a thread make one latency sample.
const LATENCY_SAMPLE: u32 = 64;

/// Returns true for every `LATENCY_SAMPLE`th call on this thread.
fn sampled() -> bool {
    thread_local! {
        static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    CALLS.with(|calls| {
        let n = calls.get().wrapping_add(1);
        calls.set(n);
        n % LATENCY_SAMPLE == 0
    })
}

/// Returns the account id in `id` (empty for none), checked but not copied.
fn account<'a>(field: &'static str, id: &'a str) -> Result<Option<&'a str>, Error> {
    if id.is_empty() {
        return Ok(None);
    }
    AccountId::check(field, id)?;
    Ok(Some(id))
}
