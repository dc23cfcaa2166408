//! The Authorize decision: a pure function of a token's grant, the request and `now`.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::account::{AccountId, Owner};
use crate::domain::integration::{IntegrationId, TokenId};
use crate::domain::scope::{RequiredScopes, ScopeSet};

/// What an integration may do: shared by all its tokens, replaced whole on a scope change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub integration_id: IntegrationId,
    pub owner: Owner,
    pub scopes: ScopeSet,
}

/// The in-memory state of one token, as the token index holds it.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub token_id: TokenId,
    pub grant: Arc<Grant>,
    pub expire_time: Option<DateTime<Utc>>,
    pub revoke_time: Option<DateTime<Utc>>,
    /// True for the previous token of an open rotation window.
    pub is_previous: bool,
}

/// The account an API request acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The agency; with a location, the agency that location belongs to.
    pub agency_id: Option<AccountId>,
    pub location_id: Option<AccountId>,
}

/// Why a token may not make a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    MalformedToken,
    UnknownToken,
    ExpiredToken,
    RevokedToken,
    /// The required scopes the grant lacks, in order.
    MissingScopes(ScopeSet),
    WrongAccount,
}

/// The answer to Authorize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        token_id: TokenId,
        grant: Arc<Grant>,
        expire_time: Option<DateTime<Utc>>,
        is_previous: bool,
    },
    Deny(DenyReason),
}

/// Decides whether `token` (as found in the index, if at all) may act on `target` with `required`.
///
/// Checks run in the order a caller maps to HTTP: token validity (401) before account and scopes (403).
pub fn authorize(
    token: Option<&TokenGrant>,
    required: &RequiredScopes<'_>,
    target: &Target,
    now: DateTime<Utc>,
) -> Decision {
    let Some(token) = token else {
        return Decision::Deny(DenyReason::UnknownToken);
    };
    // Whichever ended the token first names the reason.
    match (token.revoke_time, token.expire_time) {
        (Some(revoked), Some(expired)) if expired <= now && expired <= revoked => {
            return Decision::Deny(DenyReason::ExpiredToken);
        }
        (Some(_), _) => return Decision::Deny(DenyReason::RevokedToken),
        (None, Some(expired)) if expired <= now => return Decision::Deny(DenyReason::ExpiredToken),
        (None, _) => {}
    }
    let grant = &token.grant;
    if !may_act_on(&grant.owner, target) {
        return Decision::Deny(DenyReason::WrongAccount);
    }
    if !grant.scopes.permits(required.names()) {
        return Decision::Deny(DenyReason::MissingScopes(
            required.missing_from(&grant.scopes),
        ));
    }
    Decision::Allow {
        token_id: token.token_id.clone(),
        grant: Arc::clone(grant),
        expire_time: token.expire_time,
        is_previous: token.is_previous,
    }
}

/// Returns true if an integration of `owner` may act on `target`.
///
/// An agency-level integration acts on its agency and on any location whose agency the request
/// names as its own; a location-level integration acts only on its location.
fn may_act_on(owner: &Owner, target: &Target) -> bool {
    let agency_matches = target
        .agency_id
        .as_ref()
        .is_none_or(|agency_id| *agency_id == owner.agency_id);
    match &owner.location_id {
        None => target.agency_id.as_ref() == Some(&owner.agency_id),
        Some(location_id) => agency_matches && target.location_id.as_ref() == Some(location_id),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::scope::Scope;

    fn account(id: &str) -> AccountId {
        AccountId::parse("test", id).expect("valid account id")
    }

    fn scopes(names: &[&str]) -> ScopeSet {
        ScopeSet::new(
            names
                .iter()
                .map(|name| Scope::parse(name).expect("valid scope")),
        )
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("valid time")
    }

    fn token(
        location: Option<&str>,
        expire_in: Option<i64>,
        revoked_ago: Option<i64>,
    ) -> TokenGrant {
        TokenGrant {
            token_id: TokenId::from_uuid(uuid::Uuid::from_u128(1)),
            grant: Arc::new(Grant {
                integration_id: IntegrationId::from_uuid(uuid::Uuid::from_u128(1)),
                owner: Owner {
                    agency_id: account("agency1"),
                    location_id: location.map(account),
                },
                scopes: scopes(&["contacts.readonly", "contacts.write"]),
            }),
            expire_time: expire_in.map(|seconds| now() + Duration::seconds(seconds)),
            revoke_time: revoked_ago.map(|seconds| now() - Duration::seconds(seconds)),
            is_previous: false,
        }
    }

    fn target(agency: Option<&str>, location: Option<&str>) -> Target {
        Target {
            agency_id: agency.map(account),
            location_id: location.map(account),
        }
    }

    #[track_caller]
    fn check(
        token: Option<&TokenGrant>,
        required: &[&str],
        target: Target,
        expect: Result<(), DenyReason>,
    ) {
        let names: Vec<String> = required.iter().map(|name| (*name).to_owned()).collect();
        let required = RequiredScopes::parse("required_scopes", &names).expect("valid names");
        let decision = authorize(token, &required, &target, now());
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
        check(Some(&token(Some("loc1"), None, None)), &[], here(), Ok(()));
        check(
            Some(&token(Some("loc1"), Some(1), None)),
            &[],
            here(),
            Ok(()),
        );
        check(
            Some(&token(Some("loc1"), Some(0), None)),
            &[],
            here(),
            Err(DenyReason::ExpiredToken),
        );
        check(
            Some(&token(Some("loc1"), Some(-5), None)),
            &[],
            here(),
            Err(DenyReason::ExpiredToken),
        );
        check(
            Some(&token(Some("loc1"), None, Some(0))),
            &[],
            here(),
            Err(DenyReason::RevokedToken),
        );
        check(
            Some(&token(Some("loc1"), Some(100), Some(5))),
            &[],
            here(),
            Err(DenyReason::RevokedToken),
        );
        // Expired by time first, revoked (e.g. deleted) later: it expired.
        check(
            Some(&token(Some("loc1"), Some(-10), Some(5))),
            &[],
            here(),
            Err(DenyReason::ExpiredToken),
        );
    }

    #[test]
    fn accounts() {
        let location_token = token(Some("loc1"), None, None);
        check(
            Some(&location_token),
            &[],
            target(None, Some("loc1")),
            Ok(()),
        );
        check(
            Some(&location_token),
            &[],
            target(Some("agency1"), Some("loc1")),
            Ok(()),
        );
        check(
            Some(&location_token),
            &[],
            target(Some("agency2"), Some("loc1")),
            Err(DenyReason::WrongAccount),
        );
        check(
            Some(&location_token),
            &[],
            target(None, Some("loc2")),
            Err(DenyReason::WrongAccount),
        );
        check(
            Some(&location_token),
            &[],
            target(Some("agency1"), None),
            Err(DenyReason::WrongAccount),
        );
        let agency_token = token(None, None, None);
        check(
            Some(&agency_token),
            &[],
            target(Some("agency1"), None),
            Ok(()),
        );
        check(
            Some(&agency_token),
            &[],
            target(Some("agency1"), Some("any-location")),
            Ok(()),
        );
        check(
            Some(&agency_token),
            &[],
            target(Some("agency2"), None),
            Err(DenyReason::WrongAccount),
        );
        check(
            Some(&agency_token),
            &[],
            target(Some("agency2"), Some("loc1")),
            Err(DenyReason::WrongAccount),
        );
        check(
            Some(&agency_token),
            &[],
            target(None, Some("loc1")),
            Err(DenyReason::WrongAccount),
        );
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
            Err(DenyReason::MissingScopes(scopes(&[
                "users.readonly",
                "calendars.write",
            ]))),
        );
    }
}
