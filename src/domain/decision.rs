//! The Authorize decision: a pure function of a token's state, its integration's grant, the
//! request and `now`.
//!
//! Everything it compares is ready to compare: times are Unix milliseconds, scopes are bits over
//! the catalog, and the request's account ids are borrowed, never copied or allocated.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::account::AccountId;
use crate::domain::allowlist::IpAllowlist;
use crate::domain::scope::ScopeBits;

/// What an integration may do: shared by all its tokens, replaced whole on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub integration_id: Uuid,
    pub agency_id: AccountId,
    /// `None` for an agency-level integration.
    pub location_id: Option<AccountId>,
    pub scopes: ScopeBits,
}

/// Whether and how a token was revoked, relative to its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Not revoked.
    None,
    /// Revoked at or after its expiry time: it counts as expired once that time has passed.
    AfterExpiry,
    /// Revoked before its expiry time (or with none).
    BeforeExpiry,
}

/// The state of one token, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenState {
    /// When it ended or ends, in Unix milliseconds: its expiry time (`i64::MAX` for never), or
    /// with `Revocation::BeforeExpiry` its revocation time.
    pub end_millis: i64,
    pub revocation: Revocation,
    /// True for the previous token of an open rotation window.
    pub is_previous: bool,
}

impl TokenState {
    /// Returns the state of a token that expires at `expire_time` (if ever), revoked at
    /// `revoke_time` (if at all).
    pub fn new(
        expire_time: Option<DateTime<Utc>>,
        revoke_time: Option<DateTime<Utc>>,
        is_previous: bool,
    ) -> Self {
        let expire_millis = expire_time.map_or(i64::MAX, |it| it.timestamp_millis());
        let (end_millis, revocation) = match revoke_time.map(|it| it.timestamp_millis()) {
            None => (expire_millis, Revocation::None),
            Some(revoked) if expire_millis <= revoked => (expire_millis, Revocation::AfterExpiry),
            Some(revoked) => (revoked, Revocation::BeforeExpiry),
        };
        Self {
            end_millis,
            revocation,
            is_previous,
        }
    }

    /// Returns the expiry time of a token not revoked, if it has one.
    pub fn expire_time(&self) -> Option<DateTime<Utc>> {
        (self.revocation == Revocation::None && self.end_millis != i64::MAX)
            .then(|| DateTime::from_timestamp_millis(self.end_millis))
            .flatten()
    }

    /// Returns true if the token works at `now_millis`.
    pub fn is_live(&self, now_millis: i64) -> bool {
        self.revocation == Revocation::None && now_millis < self.end_millis
    }
}

/// The account an API request acts on, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The agency; with a location, the agency that location belongs to.
    pub agency_id: Option<&'a str>,
    pub location_id: Option<&'a str>,
    /// The address of the API caller the request came from, if the API service passed it.
    pub client_ip: Option<IpAddr>,
    /// The API caller's user agent, if passed: shown as the token's last caller, never decided on.
    pub user_agent: Option<&'a str>,
}

/// Why a token may not make a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    MalformedToken,
    UnknownToken,
    ExpiredToken,
    RevokedToken,
    /// The required scopes the grant lacks.
    MissingScopes(ScopeBits),
    WrongAccount,
    /// The token's integration is disabled.
    Disabled,
    /// The integration has an IP allowlist, and the request's client IP is missing or outside it.
    IpNotAllowed,
}

/// The answer to Authorize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow { is_previous: bool },
    Deny(DenyReason),
}

/// A token as the index found it: its state, its integration's grant, and whether that
/// integration is disabled.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub token: &'a TokenState,
    pub grant: &'a Grant,
    pub disabled: bool,
    /// The networks the integration's tokens may be used from, if it restricts them.
    pub allowlist: Option<&'a IpAllowlist>,
}

/// Decides whether `token` of `grant` (as found in the index, if at all) may act on `target`
/// with `required` at `now_millis`.
///
/// Checks run in the order a caller maps to HTTP: token validity (401) before account and scopes (403).
pub fn authorize(
    found: Option<Found<'_>>,
    required: ScopeBits,
    target: &Target<'_>,
    now_millis: i64,
) -> Decision {
    let Some(Found {
        token,
        grant,
        disabled,
        allowlist,
    }) = found
    else {
        return Decision::Deny(DenyReason::UnknownToken);
    };
    let expired = token.end_millis <= now_millis;
    // Whichever ended the token first names the reason; a revocation applies at once, even
    // one stamped a little ahead of this replica's clock.
    match token.revocation {
        Revocation::AfterExpiry if expired => return Decision::Deny(DenyReason::ExpiredToken),
        Revocation::AfterExpiry | Revocation::BeforeExpiry => {
            return Decision::Deny(DenyReason::RevokedToken);
        }
        Revocation::None if expired => return Decision::Deny(DenyReason::ExpiredToken),
        Revocation::None => {}
    }
    // A disabled integration's tokens are otherwise as they were: an ended token says so first.
    if disabled {
        return Decision::Deny(DenyReason::Disabled);
    }
    // Without a client IP, an allowlist cannot be met.
    if let Some(allowlist) = allowlist
        && !target.client_ip.is_some_and(|ip| allowlist.allows(ip))
    {
        return Decision::Deny(DenyReason::IpNotAllowed);
    }
    if !may_act_on(grant, target) {
        return Decision::Deny(DenyReason::WrongAccount);
    }
    let missing = grant.scopes.missing(required);
    if !missing.is_empty() {
        return Decision::Deny(DenyReason::MissingScopes(missing));
    }
    Decision::Allow {
        is_previous: token.is_previous,
    }
}

/// Returns true if an integration of `grant` may act on `target`.
///
/// An agency-level integration acts on its agency and on any location whose agency the request
/// names as its own; a location-level integration acts only on its location.
fn may_act_on(grant: &Grant, target: &Target<'_>) -> bool {
    let agency = grant.agency_id.as_str();
    let agency_matches = target.agency_id.is_none_or(|it| it == agency);
    match &grant.location_id {
        None => target.agency_id == Some(agency),
        Some(location) => agency_matches && target.location_id == Some(location.as_str()),
    }
}

#[cfg(test)]
mod tests;
