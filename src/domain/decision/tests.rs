//! The decision's rules, one test per rule.

use super::*;
use crate::domain::scope::Catalog;

fn catalog() -> Catalog {
    Catalog::from_toml(include_str!("../../../scopes.toml")).expect("the shipped catalog")
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
        client_ip: None,
        user_agent: None,
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
        allowlist: None,
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
fn an_allowlist_needs_a_client_ip_inside_it() {
    let (state, grant) = token(Some("loc1"), None, None);
    let ranges = ["203.0.113.0/24".to_owned(), "2001:db8::/32".to_owned()];
    let allowlist = IpAllowlist::parse("ip_allowlist", &ranges)
        .expect("valid")
        .expect("not empty");
    let decide = |client_ip: Option<&str>, required: &[&str]| {
        let found = Found {
            token: &state,
            grant: &grant,
            disabled: false,
            allowlist: Some(&allowlist),
        };
        let target = Target {
            client_ip: client_ip.map(|ip| ip.parse().expect("an address")),
            ..target(None, Some("loc1"))
        };
        authorize(
            Some(found),
            bits(required),
            &target,
            now().timestamp_millis(),
        )
    };
    assert!(matches!(
        decide(Some("203.0.113.9"), &[]),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        decide(Some("2001:db8::1"), &[]),
        Decision::Allow { .. }
    ));
    for outside in [Some("198.51.100.1"), Some("2001:db9::1"), None] {
        assert_eq!(
            decide(outside, &[]),
            Decision::Deny(DenyReason::IpNotAllowed),
            "{outside:?}"
        );
    }
    // Before the scopes: a caller outside learns nothing of the grant.
    assert_eq!(
        decide(None, &["calendars.write"]),
        Decision::Deny(DenyReason::IpNotAllowed)
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
