//! The index's rules, each pinned by the test that first needed it.

use chrono::Duration;
use ring::rand::SystemRandom;

use super::*;
use crate::domain::account::Owner;
use crate::domain::decision::Target;
use crate::domain::integration::{
    Description, Draft, ExpireTarget, Integration, IntegrationId, IntegrationName, OldTokens,
    TokenId, TokenRecord,
};
use crate::domain::scope::Scope;
use crate::domain::token::PlainToken;

const RETENTION: Duration = Duration::days(30);

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::from_toml(include_str!("../../scopes.toml")).expect("catalog"))
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

fn decide(index: &TokenIndex, token: &PlainToken, now: DateTime<Utc>) -> Decision {
    let target = Target {
        agency_id: None,
        location_id: Some("loc1"),
        client_ip: None,
        user_agent: None,
    };
    let required = index
        .catalog()
        .required("test", &["contacts.readonly".to_owned()])
        .expect("known scope");
    index
        .authorize(&token.hash(), required, &target, now.timestamp_millis())
        .decision
}

fn allows(index: &TokenIndex, token: &PlainToken, now: DateTime<Utc>) -> bool {
    matches!(decide(index, token, now), Decision::Allow { .. })
}

/// Makes integrations and tokens with ids counted up from 1.
struct Maker {
    rng: SystemRandom,
    next_id: u128,
}

impl Maker {
    fn new() -> Self {
        Self {
            rng: SystemRandom::new(),
            next_id: 1,
        }
    }

    fn uuid(&mut self) -> uuid::Uuid {
        self.next_id += 1;
        uuid::Uuid::from_u128(self.next_id)
    }

    fn token(&mut self, now: DateTime<Utc>) -> (PlainToken, TokenRecord) {
        let plain = PlainToken::generate(&self.rng).expect("random");
        let record = TokenRecord::issue(TokenId::from_uuid(self.uuid()), &plain, now);
        (plain, record)
    }

    fn integration(&mut self, now: DateTime<Utc>) -> (Integration, PlainToken) {
        let owner = Owner {
            agency_id: AccountId::parse("test", "agency1").expect("valid"),
            location_id: Some(AccountId::parse("test", "loc1").expect("valid")),
        };
        let scopes = catalog()
            .grant(
                "scopes",
                &[Scope::parse("contacts.readonly").expect("valid")],
                owner.level(),
            )
            .expect("scopes");
        let draft = Draft {
            owner,
            name: IntegrationName::parse("name", "x").expect("valid"),
            description: Description::default(),
            scopes,
            ip_allowlist: None,
        };
        let (plain, record) = self.token(now);
        let id = IntegrationId::from_uuid(self.uuid());
        let (integration, _) = Integration::create(id, draft, "user".into(), record, now);
        (integration, plain)
    }
}

// Regression: two rotations on one replica can finish in either order; the state applied
// last may be the older one, and what it revoked must stay revoked.
#[test]
fn a_late_older_state_still_revokes() {
    let mut maker = Maker::new();
    let now = start();
    let (mut integration, t0) = maker.integration(now);
    let index = TokenIndex::new(catalog(), RETENTION);
    index.apply(&integration, &[], now);
    let at = now + Duration::seconds(1);
    let (t1, record) = maker.token(at);
    let first = integration
        .rotate(record, OldTokens::ExpireNow, at)
        .expect("rotate");
    let after_first = integration.clone();
    let (t2, record) = maker.token(at);
    let second = integration
        .rotate(record, OldTokens::ExpireNow, at)
        .expect("rotate");
    // The newer state is applied first, the older one last, and the older one again.
    index.apply(&integration, &second.retired, at);
    index.apply(&after_first, &first.retired, at);
    index.apply(&after_first, &first.retired, at);
    let later = at + Duration::seconds(1);
    assert_eq!(index.range_digests(), index.range_digests_by_scan());
    assert!(!allows(&index, &t0, later), "revoked by the first rotation");
    assert!(
        !allows(&index, &t1, later),
        "revoked by the second rotation"
    );
    assert!(allows(&index, &t2, later), "the newest token is current");
}

// Regression: a token's slot last written by an older state must not come back to life when
// that older state is applied again after the token was retired.
#[test]
fn a_revocation_is_final() {
    let mut maker = Maker::new();
    let now = start();
    let (mut integration, t0) = maker.integration(now);
    let index = TokenIndex::new(catalog(), RETENTION);
    let created = integration.clone();
    index.apply(&created, &[], now);
    let change = integration.expire(ExpireTarget::All, now).expect("expire");
    index.apply(&integration, &change.retired, now);
    index.apply(&created, &[], now);
    assert_eq!(
        decide(&index, &t0, now),
        Decision::Deny(DenyReason::RevokedToken)
    );
}

#[test]
fn ended_tokens_are_dropped_after_the_retention() {
    let mut maker = Maker::new();
    let now = start();
    let (mut integration, t0) = maker.integration(now);
    let index = TokenIndex::new(catalog(), RETENTION);
    index.apply(&integration, &[], now);
    let (t1, record) = maker.token(now);
    let change = integration
        .rotate(record, OldTokens::ExpireNow, now)
        .expect("rotate");
    index.apply(&integration, &change.retired, now);
    let within = now + RETENTION;
    assert_eq!(index.drop_ended(within), 0);
    assert_eq!(
        decide(&index, &t0, within),
        Decision::Deny(DenyReason::RevokedToken)
    );
    // Drops come in batches: a token is dropped within an hour after the retention passed.
    assert_eq!(index.drop_ended(within + Duration::minutes(30)), 0);
    let after = within + Duration::hours(1) + Duration::milliseconds(1);
    assert_eq!(index.drop_ended(after), 1);
    assert_eq!(
        decide(&index, &t0, after),
        Decision::Deny(DenyReason::UnknownToken)
    );
    assert!(allows(&index, &t1, after), "the live token stays");
    // A resync after the retention does not bring the dropped token back.
    index.apply(&integration, &change.retired, after);
    assert_eq!(index.len(), 1);
}

#[test]
fn memory_stays_flat_over_a_year_of_rotations() {
    let mut maker = Maker::new();
    let mut now = start();
    let index = TokenIndex::new(catalog(), RETENTION);
    let mut integrations: Vec<_> = (0..100).map(|_| maker.integration(now).0).collect();
    for integration in &integrations {
        index.apply(integration, &[], now);
    }
    let mut most = 0;
    // Every 90 days each integration rotates with a 7-day grace; the index resyncs daily.
    for day in 1..=365 {
        now += Duration::days(1);
        if day % 90 == 0 {
            for integration in &mut integrations {
                let (_, record) = maker.token(now);
                let grace = OldTokens::ExpireAfter(Duration::days(7));
                let change = integration.rotate(record, grace, now).expect("rotate");
                index.apply(integration, &change.retired, now);
            }
        }
        index.drop_ended(now);
        most = most.max(index.len());
    }
    // At most a current and a previous token each, plus those ended within the retention.
    assert!(most <= 300, "the index grew to {most} tokens");
    // The range digests kept by the writers are what a count from scratch finds.
    assert_eq!(index.range_digests(), index.range_digests_by_scan());
    let counted: i64 = index.range_digests().iter().map(|it| it.integrations).sum();
    assert_eq!(counted, 100, "one current token per integration");
    // Day 365 is within the grace window of the rotation on day 360.
    assert_eq!(index.live_count(now), 200);
}

#[test]
fn the_recorder_takes_only_what_was_used() {
    let mut maker = Maker::new();
    let now = start();
    let index = TokenIndex::new(catalog(), RETENTION);
    let made: Vec<_> = (0..50).map(|_| maker.integration(now)).collect();
    for (integration, _) in &made {
        index.apply(integration, &[], now);
    }
    let (used, unused) = (&made[3].1, &made[4].1);
    assert!(allows(&index, used, now));
    assert!(allows(&index, used, now + Duration::seconds(1)));
    let (uses, scopes) = index.take_unrecorded();
    assert_eq!(uses.len(), 1, "only the token used");
    assert_eq!((uses[0].allowed, uses[0].denied), (2, 0));
    assert_eq!(uses[0].time, Some(now + Duration::seconds(1)));
    assert_eq!(scopes.len(), 1);
    assert_eq!(scopes[0].scopes[0].as_str(), "contacts.readonly");
    assert_eq!(index.unrecorded_calls(&unused.hash()), (0, 0));
    // Taken means gone, unless a failed write puts it back.
    let (again, no_scopes) = index.take_unrecorded();
    assert!(again.is_empty() && no_scopes.is_empty());
    index.restore(&uses, &scopes);
    assert_eq!(index.unrecorded_calls(&used.hash()), (2, 0));
    let (restored, restored_scopes) = index.take_unrecorded();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored_scopes.len(), 1);
}

// What a token costs is pinned here: a slot per token, a grant per integration (plus the
// reference counts of its `Arc`), with account ids of up to 23 bytes inline.
#[test]
fn slots_and_grants_stay_small() {
    assert_eq!(std::mem::size_of::<TokenSlot>(), 80);
    assert_eq!(std::mem::size_of::<IndexedGrant>(), 112);
}
