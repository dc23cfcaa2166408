//! The lifecycle as pure functions: every transition and every refusal, with `now` injected.

use chrono::{DateTime, Duration, Utc};
use ring::rand::SystemRandom;

use crate::domain::account::{AccountId, Owner};
use crate::domain::error::Error;
use crate::domain::integration::{
    Change, Description, Draft, EventKind, ExpireTarget, Integration, IntegrationId,
    IntegrationName, OldTokens, Patch, TokenId, TokenRecord,
};
use crate::domain::scope::{Scope, ScopeSet};
use crate::domain::token::PlainToken;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid time")
}

/// Returns the record of a new token with id `n`.
fn token(n: u128, now: DateTime<Utc>) -> TokenRecord {
    let plain = PlainToken::generate(&SystemRandom::new()).expect("random");
    TokenRecord::issue(TokenId::from_uuid(uuid::Uuid::from_u128(n)), &plain, now)
}

fn scopes(names: &[&str]) -> ScopeSet {
    ScopeSet::new(names.iter().map(|it| Scope::parse(it).expect("scope")))
}

/// Returns an integration created at `at(0)` with current token 1.
fn created() -> (Integration, Change) {
    let owner = Owner {
        agency_id: AccountId::parse("test", "agency1").expect("valid"),
        location_id: None,
    };
    let draft = Draft {
        owner,
        name: IntegrationName::parse("name", "Zapier").expect("valid"),
        description: Description::default(),
        scopes: scopes(&["contacts.readonly"]),
        ip_allowlist: None,
    };
    Integration::create(
        IntegrationId::from_uuid(uuid::Uuid::from_u128(100)),
        draft,
        "user1".to_owned(),
        token(1, at(0)),
        at(0),
    )
}

fn id(n: u128) -> TokenId {
    TokenId::from_uuid(uuid::Uuid::from_u128(n))
}

/// Returns the ids of the current and previous slots.
fn slots(integration: &Integration) -> (Option<TokenId>, Option<TokenId>) {
    (
        integration.current.as_ref().map(|it| it.id.clone()),
        integration.previous.as_ref().map(|it| it.id.clone()),
    )
}

/// Rotates to token `n` at `at(seconds)`, the old token working for `grace`.
#[track_caller]
fn rotate_later(integration: &mut Integration, n: u128, seconds: i64, grace: Duration) -> Change {
    let now = at(seconds);
    integration
        .rotate(token(n, now), OldTokens::ExpireAfter(grace), now)
        .expect("rotate, expiring the old token later")
}

#[track_caller]
fn check_refused(result: Result<Change, Error>, expect: &str) {
    match result {
        Err(Error::FailedPrecondition(message)) => {
            assert!(message.contains(expect), "{message:?} lacks {expect:?}")
        }
        other => panic!("expected FAILED_PRECONDITION ({expect}), got {other:?}"),
    }
}

#[test]
fn create_issues_the_current_token_at_version_one() {
    let (integration, change) = created();
    assert_eq!(change.kind, EventKind::IntegrationCreated);
    assert_eq!(change.issued, Some(id(1)));
    assert!(change.retired.is_empty());
    assert_eq!(slots(&integration), (Some(id(1)), None));
    assert_eq!(
        (integration.version, integration.etag()),
        (1, "v1".to_owned())
    );
    assert_eq!(integration.update_time, at(0));
}

#[test]
fn update_changes_fields_but_never_tokens() {
    let (mut integration, _) = created();
    let patch = Patch {
        scopes: Some(scopes(&["contacts.write"])),
        ..Patch::default()
    };
    let change = integration.update(patch, at(5)).expect("update");
    assert_eq!(change.kind, EventKind::IntegrationUpdated);
    assert!(change.retired.is_empty() && change.issued.is_none());
    assert_eq!(integration.scopes, scopes(&["contacts.write"]));
    assert_eq!(slots(&integration), (Some(id(1)), None));
    assert_eq!((integration.version, integration.update_time), (2, at(5)));
    // An empty patch is the caller's mistake.
    let unchanged = integration.clone();
    assert!(matches!(
        integration.update(Patch::default(), at(6)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(integration, unchanged, "a refusal changes nothing");
}

#[test]
fn rotate_now_revokes_every_older_token() {
    let (mut integration, _) = created();
    let change = integration
        .rotate(token(2, at(10)), OldTokens::ExpireNow, at(10))
        .expect("rotate");
    assert_eq!(change.kind, EventKind::TokenRotated);
    assert_eq!(change.issued, Some(id(2)));
    assert_eq!(slots(&integration), (Some(id(2)), None));
    let [old] = &change.retired[..] else {
        panic!("one retired token: {:?}", change.retired)
    };
    assert_eq!((old.id.clone(), old.revoke_time), (id(1), Some(at(10))));
}

#[test]
fn rotate_later_keeps_the_old_token_as_previous_until_the_grace_ends() {
    let (mut integration, _) = created();
    rotate_later(&mut integration, 2, 10, Duration::hours(1));
    assert_eq!(slots(&integration), (Some(id(2)), Some(id(1))));
    let previous = integration.previous.as_ref().expect("previous");
    assert_eq!(previous.expire_time, Some(at(3610)));
    assert!(integration.live_previous(at(3609)).is_some());
    assert!(integration.live_previous(at(3610)).is_none());
    // A second rotation inside the window is refused and changes nothing.
    let before = integration.clone();
    check_refused(
        integration.rotate(token(3, at(20)), OldTokens::ExpireNow, at(20)),
        "cancel the rotation or expire the previous token first",
    );
    assert_eq!(integration, before);
    // Once the window is over, a rotation retires the expired previous token.
    let change = integration
        .rotate(token(3, at(4000)), OldTokens::ExpireNow, at(4000))
        .expect("rotate after the window");
    assert_eq!(slots(&integration), (Some(id(3)), None));
    let retired: Vec<_> = change.retired.iter().map(|it| it.id.clone()).collect();
    assert_eq!(retired, vec![id(1), id(2)]);
}

#[test]
fn a_grace_period_never_extends_an_expiry_already_scheduled() {
    let (mut integration, _) = created();
    integration
        .schedule_expiry(Some(at(100)), at(1))
        .expect("schedule");
    rotate_later(&mut integration, 2, 10, Duration::days(7));
    let previous = integration.previous.as_ref().expect("previous");
    assert_eq!(previous.expire_time, Some(at(100)));
}

#[test]
fn rotate_later_with_an_expired_current_token_retires_it() {
    let (mut integration, _) = created();
    integration
        .schedule_expiry(Some(at(5)), at(1))
        .expect("schedule");
    let change = rotate_later(&mut integration, 2, 10, Duration::hours(1));
    assert_eq!(slots(&integration), (Some(id(2)), None));
    assert_eq!(change.retired.len(), 1);
    assert!(
        change
            .details
            .contains(&("old_tokens", "already_expired".to_owned()))
    );
}

#[test]
fn cancel_rotation_restores_the_previous_token_without_expiry() {
    let (mut integration, _) = created();
    check_refused(
        integration.cancel_rotation(at(5)),
        "no rotation is in progress",
    );
    rotate_later(&mut integration, 2, 10, Duration::hours(1));
    let change = integration.cancel_rotation(at(20)).expect("cancel");
    assert_eq!(change.kind, EventKind::TokenRotationCancelled);
    assert_eq!(slots(&integration), (Some(id(1)), None));
    assert_eq!(
        integration.current.as_ref().expect("current").expire_time,
        None
    );
    let [cancelled] = &change.retired[..] else {
        panic!("one retired token")
    };
    assert_eq!(
        (cancelled.id.clone(), cancelled.revoke_time),
        (id(2), Some(at(20)))
    );
    // After the window has closed by time, there is nothing to cancel.
    rotate_later(&mut integration, 3, 30, Duration::minutes(1));
    check_refused(
        integration.cancel_rotation(at(90)),
        "no rotation is in progress",
    );
}

#[test]
fn expire_previous_leaves_the_current_token_alone() {
    let (mut integration, _) = created();
    check_refused(
        integration.expire(ExpireTarget::Previous, at(5)),
        "no rotation is in progress",
    );
    rotate_later(&mut integration, 2, 10, Duration::hours(1));
    let change = integration
        .expire(ExpireTarget::Previous, at(20))
        .expect("expire previous");
    assert_eq!(change.kind, EventKind::TokenExpired);
    assert_eq!(slots(&integration), (Some(id(2)), None));
    assert_eq!(change.retired[0].revoke_time, Some(at(20)));
}

#[test]
fn expire_all_empties_the_slots_until_the_next_rotation() {
    let (mut integration, _) = created();
    rotate_later(&mut integration, 2, 10, Duration::hours(1));
    let change = integration
        .expire(ExpireTarget::All, at(20))
        .expect("expire");
    assert_eq!(slots(&integration), (None, None));
    assert!(
        change
            .retired
            .iter()
            .all(|it| it.revoke_time == Some(at(20)))
    );
    assert_eq!(change.retired.len(), 2);
    check_refused(
        integration.expire(ExpireTarget::All, at(30)),
        "no live token to expire",
    );
    check_refused(
        integration.schedule_expiry(Some(at(100)), at(30)),
        "no live current token",
    );
    // A rotation issues a token again.
    let change = integration
        .rotate(token(3, at(40)), OldTokens::ExpireNow, at(40))
        .expect("rotate");
    assert_eq!(slots(&integration), (Some(id(3)), None));
    assert!(change.details.contains(&("old_tokens", "none".to_owned())));
}

#[test]
fn an_expiry_already_passed_is_not_rewritten_as_a_revocation() {
    let (mut integration, _) = created();
    rotate_later(&mut integration, 2, 10, Duration::minutes(1));
    let change = integration
        .expire(ExpireTarget::All, at(200))
        .expect("expire");
    let previous = change
        .retired
        .iter()
        .find(|it| it.id == id(1))
        .expect("old");
    assert_eq!(
        previous.revoke_time, None,
        "it expired by time at {:?}",
        previous.expire_time
    );
}

#[test]
fn schedule_expiry_sets_and_clears_the_current_tokens_expiry() {
    let (mut integration, _) = created();
    let change = integration
        .schedule_expiry(Some(at(100)), at(1))
        .expect("schedule");
    assert_eq!(change.kind, EventKind::TokenExpiryScheduled);
    assert_eq!(
        integration.current.as_ref().expect("current").expire_time,
        Some(at(100))
    );
    integration.schedule_expiry(None, at(2)).expect("clear");
    assert_eq!(
        integration.current.as_ref().expect("current").expire_time,
        None
    );
    assert_eq!(integration.version, 3);
}

#[test]
fn disable_and_enable_change_nothing_but_the_flag() {
    let (mut integration, _) = created();
    rotate_later(&mut integration, 2, 10, Duration::hours(1));
    let before = (slots(&integration), integration.previous.clone());
    let change = integration.disable(at(20)).expect("disable");
    assert_eq!(change.kind, EventKind::IntegrationDisabled);
    assert!(change.retired.is_empty() && change.issued.is_none());
    assert_eq!(integration.disable_time, Some(at(20)));
    check_refused(integration.disable(at(21)), "disabled already");
    let change = integration.enable(at(30)).expect("enable");
    assert_eq!(change.kind, EventKind::IntegrationEnabled);
    assert_eq!(integration.disable_time, None);
    assert_eq!((slots(&integration), integration.previous.clone()), before);
    assert_eq!(integration.version, 4);
    check_refused(integration.enable(at(31)), "not disabled");
}

#[test]
fn delete_revokes_every_token() {
    let (mut integration, _) = created();
    rotate_later(&mut integration, 2, 10, Duration::hours(1));
    let change = integration.delete(at(20));
    assert_eq!(change.kind, EventKind::IntegrationDeleted);
    assert_eq!(slots(&integration), (None, None));
    assert_eq!(change.retired.len(), 2);
    assert!(
        change
            .retired
            .iter()
            .all(|it| it.revoke_time == Some(at(20)))
    );
}

#[test]
fn rotation_is_due_at_the_rotation_age() {
    let (integration, _) = created();
    let age = Duration::days(90);
    assert!(!integration.rotation_due(age, at(0) + age - Duration::seconds(1)));
    assert!(integration.rotation_due(age, at(0) + age));
}

#[test]
fn event_details_never_carry_a_token_or_digest() {
    let (mut integration, created) = created();
    let plain = PlainToken::generate(&SystemRandom::new()).expect("random");
    let record = TokenRecord::issue(id(2), &plain, at(10));
    let hash = format!("{:?}", record.hash.as_bytes());
    let rotated = integration
        .rotate(record, OldTokens::ExpireNow, at(10))
        .expect("rotate");
    for (_, value) in created.details.iter().chain(&rotated.details) {
        assert!(!value.contains(plain.expose()) && !value.contains(&hash));
        assert!(!value.contains("pit-"), "{value}");
    }
}
