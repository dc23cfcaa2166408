//! The Authorize use case: parse, look up by digest, decide. No database, no allocation beyond
//! the answer, no lock held across an await.

use std::sync::Arc;

use crate::domain::decision::{Decision, DenyReason, Target};
use crate::domain::error::{Error, Violation};
use crate::domain::integration::AccountId;
use crate::domain::scope::Catalog;
use crate::domain::token::TokenHash;
use crate::index::TokenIndex;
use crate::service::clock::Clock;

/// Answers Authorize from the token index.
pub struct Authorizer {
    index: Arc<TokenIndex>,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
}

impl Authorizer {
    /// Returns an authorizer over `index`.
    pub fn new(index: Arc<TokenIndex>, catalog: Arc<Catalog>, clock: Arc<dyn Clock>) -> Self {
        Self {
            index,
            catalog,
            clock,
        }
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
    ) -> Result<Decision, Error> {
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
        // Digested in place: no copy of the token is made.
        let Ok(token_hash) = TokenHash::parse(token) else {
            return Ok(Decision::Deny(DenyReason::MalformedToken));
        };
        Ok(self
            .index
            .authorize(&token_hash, &required, &target, self.clock.now()))
    }
}
