//! The Authorize decision: a pure function of a token's state, its integration's grant, the
//! request and `now`.
//!
//! Everything it compares is ready to compare: times are Unix milliseconds, scopes are bits over
//! the catalog, and the request's account ids are borrowed, never copied or allocated.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::account::AccountId;
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
mod tests {
    use super::*;
    use crate::domain::scope::Catalog;

    fn catalog() -> Catalog {
        Catalog::from_toml(include_str!("../../scopes.toml")).expect("the shipped catalog")
    }

    fn bits(names: &[&str]) -> ScopeBits {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        catalog().required("scopes", &names).expect("known scopes")
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid time")
    }

    fn token(
        location: Option<&str>,
        expire_in: Option<i64>,
        revoked_ago: Option<i64>,
    ) -> (TokenState, Grant) {
        let account = |id| AccountId::parse("test", id).expect("valid account id");
        let state = TokenState::new(
            expire_in.map(|seconds| now() + chrono::Duration::seconds(seconds)),
            revoked_ago.map(|seconds| now() - chrono::Duration::seconds(seconds)),
            false,
        );
        let grant = Grant {
            integration_id: Uuid::from_u128(1),
            agency_id: account("agency1"),
            location_id: location.map(account),
            scopes: bits(&["contacts.readonly", "contacts.write"]),
        };
        (state, grant)
    }

    fn target<'a>(agency: Option<&'a str>, location: Option<&'a str>) -> Target<'a> {
        Target {
            agency_id: agency,
            location_id: location,
        }
    }

    #[track_caller]
    fn check(
        token: Option<&(TokenState, Grant)>,
        required: &[&str],
        target: Target<'_>,
        expect: Result<(), DenyReason>,
    ) {
        check_with(token, false, required, target, expect);
    }

    #[track_caller]
    fn check_with(
        token: Option<&(TokenState, Grant)>,
        disabled: bool,
        required: &[&str],
        target: Target<'_>,
        expect: Result<(), DenyReason>,
    ) {
        let found = token.map(|(token, grant)| Found {
            token,
            grant,
            disabled,
        });
        let decision = authorize(found, bits(required), &target, now().timestamp_millis());
        match (decision, expect) {
            (Decision::Allow { .. }, Ok(())) => {}
            (Decision::Deny(reason), Err(expected)) => assert_eq!(reason, expected),
            (decision, expect) => panic!("got {decision:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn token_state() {
        let here = || target(Some("agency1"), Some("loc1"));
        check(None, &[], here(), Err(DenyReason::UnknownToken));
        let cases = [
            (None, None, Ok(())),
            (Some(1), None, Ok(())),
            (Some(0), None, Err(DenyReason::ExpiredToken)),
            (Some(-5), None, Err(DenyReason::ExpiredToken)),
            (None, Some(0), Err(DenyReason::RevokedToken)),
            (Some(100), Some(5), Err(DenyReason::RevokedToken)),
            // Expired by time first, revoked (e.g. deleted) later: it expired.
            (Some(-10), Some(5), Err(DenyReason::ExpiredToken)),
            // Revoked first, its expiry time passed since: it was revoked.
            (Some(-5), Some(10), Err(DenyReason::RevokedToken)),
            // Revoked on a replica whose clock runs ahead: revoked at once all the same.
            (None, Some(-3), Err(DenyReason::RevokedToken)),
            (Some(5), Some(-10), Err(DenyReason::RevokedToken)),
        ];
        for (expire_in, revoked_ago, expect) in cases {
            check(
                Some(&token(Some("loc1"), expire_in, revoked_ago)),
                &[],
                here(),
                expect,
            );
        }
    }

    #[test]
    fn a_disabled_integration_denies_after_the_tokens_own_state() {
        let here = || target(Some("agency1"), Some("loc1"));
        let cases = [
            (None, None, Err(DenyReason::Disabled)),
            (Some(-5), None, Err(DenyReason::ExpiredToken)),
            (None, Some(5), Err(DenyReason::RevokedToken)),
        ];
        for (expire_in, revoked_ago, expect) in cases {
            let token = token(Some("loc1"), expire_in, revoked_ago);
            check_with(Some(&token), true, &[], here(), expect);
        }
        // Before the account and the scopes: nothing about the grant shows while disabled.
        let token = token(Some("loc1"), None, None);
        let elsewhere = target(Some("agency2"), Some("loc9"));
        check_with(
            Some(&token),
            true,
            &["calendars.write"],
            elsewhere,
            Err(DenyReason::Disabled),
        );
    }

    #[test]
    fn accounts() {
        let location_token = token(Some("loc1"), None, None);
        let agency_token = token(None, None, None);
        let cases = [
            (&location_token, None, Some("loc1"), true),
            (&location_token, Some("agency1"), Some("loc1"), true),
            (&location_token, Some("agency2"), Some("loc1"), false),
            (&location_token, None, Some("loc2"), false),
            (&location_token, Some("agency1"), None, false),
            (&agency_token, Some("agency1"), None, true),
            (&agency_token, Some("agency1"), Some("any-location"), true),
            (&agency_token, Some("agency2"), None, false),
            (&agency_token, Some("agency2"), Some("loc1"), false),
            (&agency_token, None, Some("loc1"), false),
        ];
        for (token, agency, location, allowed) in cases {
            let expect = if allowed {
                Ok(())
            } else {
                Err(DenyReason::WrongAccount)
            };
            check(Some(token), &[], target(agency, location), expect);
        }
    }

    #[test]
    fn scopes_are_all_required() {
        let location_token = token(Some("loc1"), None, None);
        let here = || target(None, Some("loc1"));
        check(
            Some(&location_token),
            &["contacts.readonly"],
            here(),
            Ok(()),
        );
        check(
            Some(&location_token),
            &["contacts.write", "contacts.readonly"],
            here(),
            Ok(()),
        );
        check(
            Some(&location_token),
            &[
                "users.readonly",
                "contacts.readonly",
                "calendars.write",
                "users.readonly",
            ],
            here(),
            Err(DenyReason::MissingScopes(bits(&[
                "users.readonly",
                "calendars.write",
            ]))),
        );
    }
}
