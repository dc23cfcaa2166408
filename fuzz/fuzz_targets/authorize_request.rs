//! The Authorize path from the wire: any bytes decode to a request or fail, and the request is
//! answered or refused as INVALID_ARGUMENT, never a panic; only the one real token is allowed.
#![no_main]

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use privint::clock::{AdjustableClock, Clock};
use privint::config::DEFAULT_SCOPES;
use privint::domain::account::{AccountId, Owner};
use privint::domain::decision::Decision;
use privint::domain::integration::{
    Description, Draft, Integration, IntegrationId, IntegrationName, TokenId, TokenRecord,
};
use privint::domain::scope::{Catalog, Scope};
use privint::domain::token::PlainToken;
use privint::grpc::pb;
use privint::index::TokenIndex;
use privint::metrics::Metrics;
use privint::service::authorizer::{Authorizer, Call};
use prost::Message;

/// An Authorizer over one location integration with `contacts.readonly`, and its token.
static SUBJECT: LazyLock<(Authorizer, String)> = LazyLock::new(|| {
    let catalog = Arc::new(Catalog::from_toml(DEFAULT_SCOPES).expect("the shipped catalog"));
    let clock = Arc::new(AdjustableClock::default());
    let now: DateTime<Utc> = clock.now();
    let owner = Owner {
        agency_id: AccountId::parse("agency_id", "agency1").expect("valid"),
        location_id: Some(AccountId::parse("location_id", "loc1").expect("valid")),
    };
    let scopes = catalog
        .grant(
            "scopes",
            &[Scope::parse("contacts.readonly").expect("valid")],
            owner.level(),
        )
        .expect("granted");
    let draft = Draft {
        owner,
        name: IntegrationName::parse("name", "fuzz").expect("valid"),
        description: Description::default(),
        scopes,
        ip_allowlist: None,
    };
    let token = PlainToken::generate(&ring::rand::SystemRandom::new()).expect("random");
    let record = TokenRecord::issue(TokenId::from_uuid(uuid::Uuid::from_u128(1)), &token, now);
    let id = IntegrationId::from_uuid(uuid::Uuid::from_u128(2));
    let (integration, _) = Integration::create(id, draft, "fuzz".into(), record, now);
    let index = Arc::new(TokenIndex::new(catalog, chrono::Duration::days(30)));
    index.apply(&integration, &[], now);
    let authorizer = Authorizer::new(index, clock, Metrics::new());
    (authorizer, token.expose().to_owned())
});

fuzz_target!(|data: &[u8]| {
    let (authorizer, token) = &*SUBJECT;
    let Ok(request) = pb::AuthorizeRequest::decode(data) else {
        return;
    };
    let answer = authorizer.authorize(Call {
        token: &request.token,
        required: &request.required_scopes,
        agency_id: &request.agency_id,
        location_id: &request.location_id,
        client_ip: &request.client_ip,
        user_agent: &request.user_agent,
    });
    if let Ok(answer) = answer
        && matches!(answer.decision, Decision::Allow { .. })
    {
        assert_eq!(&request.token, token, "only the real token is allowed");
        assert_eq!(request.location_id, "loc1");
    }
});
