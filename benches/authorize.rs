//! Authorize benchmarks; see BENCHMARKS.md for the numbers and how to read them.
//!
//! - `index/*`: the in-process path over an index of 100 000 integrations, against the
//!   unavoidable baseline of parsing and digesting the token.
//! - `grpc/*`: one Authorize call over loopback to a real server, against an empty RPC on the
//!   same channel (`grpc.health.v1.Health/Check`).

use std::hint::black_box;
use std::sync::Arc;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use privint::app::App;
use privint::clock::SystemClock;
use privint::config::{Config, Settings};
use privint::domain::account::{AccountId, Owner};
use privint::domain::integration::{
    Description, Draft, Integration, IntegrationId, IntegrationName, TokenId, TokenRecord,
};
use privint::domain::scope::{Catalog, Scope};
use privint::domain::token::{PlainToken, TokenHash};
use privint::grpc::pb;
use privint::index::TokenIndex;
use privint::service::authorizer::{Authorizer, Call};
use ring::rand::SystemRandom;

#[path = "support/mod.rs"]
mod support;

const INTEGRATIONS: usize = 100_000;

fn index_benches(c: &mut Criterion) {
    let catalog = Catalog::from_toml(privint::config::DEFAULT_SCOPES).expect("catalog");
    let rng = SystemRandom::new();
    let catalog = Arc::new(catalog);
    let index = Arc::new(TokenIndex::new(
        Arc::clone(&catalog),
        chrono::Duration::days(30),
    ));
    let now = Utc::now();
    let mut token = None;
    for n in 0..INTEGRATIONS {
        let plain = PlainToken::generate(&rng).expect("random");
        let owner = Owner {
            agency_id: AccountId::parse("agency_id", &format!("agency{}", n % 1000)).expect("id"),
            location_id: Some(AccountId::parse("location_id", &format!("loc{n}")).expect("id")),
        };
        let scopes = catalog
            .grant(
                "scopes",
                &Scope::parse_list(
                    "scopes",
                    &["contacts.readonly".into(), "contacts.write".into()],
                )
                .expect("scope names"),
                owner.level(),
            )
            .expect("scopes");
        let name = IntegrationName::parse("name", "bench").expect("name");
        let (integration, _) = Integration::create(
            IntegrationId::from_uuid(uuid::Uuid::now_v7()),
            Draft {
                owner,
                name,
                description: Description::default(),
                scopes,
                ip_allowlist: None,
            },
            "bench".into(),
            TokenRecord::issue(TokenId::from_uuid(uuid::Uuid::now_v7()), &plain, now),
            now,
        );
        index.apply(&integration, &[], now);
        if n == INTEGRATIONS / 2 {
            token = Some((plain, integration.owner));
        }
    }
    let (token, owner) = token.expect("a token in the middle");
    let bearer = format!("Bearer {}", token.expose());
    let authorizer = Authorizer::new(
        index,
        Arc::new(SystemClock),
        privint::metrics::Metrics::new(),
    );
    let required = vec!["contacts.readonly".to_owned()];
    let (agency, location) = (
        owner.agency_id.as_str().to_owned(),
        owner.location_id.expect("location").as_str().to_owned(),
    );

    let mut group = c.benchmark_group("index");
    group.bench_function("baseline_parse_and_digest", |b| {
        b.iter(|| TokenHash::parse(black_box(&bearer)))
    });
    group.bench_function("authorize_allow", |b| {
        b.iter(|| {
            authorizer
                .authorize(call(black_box(&bearer), &required, &agency, &location))
                .expect("valid request")
        })
    });
    let missing = vec!["contacts.readonly".to_owned(), "calendars.write".to_owned()];
    group.bench_function("authorize_deny_missing_scopes", |b| {
        b.iter(|| {
            authorizer
                .authorize(call(black_box(&bearer), &missing, &agency, &location))
                .expect("valid request")
        })
    });
    let malformed = format!("{}x", &bearer[..bearer.len() - 1]);
    group.bench_function("authorize_deny_malformed", |b| {
        b.iter(|| {
            authorizer
                .authorize(call(black_box(&malformed), &required, &agency, &location))
                .expect("valid request")
        })
    });
    group.finish();
}

fn grpc_benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (channel, token) = runtime.block_on(async {
        let settings = Settings {
            listen_addr: "127.0.0.1:0".to_owned(),
            metrics_addr: String::new(),
            database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
            auth: privint::config::AuthSettings {
                hs256_secret: Some(privint::config::DEV_SECRET.into()),
                ..Default::default()
            },
            ..Settings::default()
        };
        let app = App::bind(
            Config::try_from(settings).expect("config"),
            Arc::new(SystemClock),
        )
        .await
        .expect("bind");
        let addr = app.local_addr();
        tokio::spawn(app.run(std::future::pending()));
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri");
        let channel = loop {
            if let Ok(channel) = channel.connect().await {
                let mut health =
                    tonic_health::pb::health_client::HealthClient::new(channel.clone());
                let ready = health
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await;
                if ready.is_ok_and(|it| it.into_inner().status == 1) {
                    break channel;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let mut api = support::admin_api(channel.clone(), privint::config::DEV_SECRET);
        let request = pb::CreateIntegrationRequest {
            agency_id: "agency1".into(),
            location_id: "loc1".into(),
            name: "bench".into(),
            scopes: vec!["contacts.readonly".into()],
            ..Default::default()
        };
        (
            channel,
            api.create_integration(request)
                .await
                .expect("create")
                .into_inner()
                .token,
        )
    });
    let authorize = pb::AuthorizeRequest {
        token,
        required_scopes: vec!["contacts.readonly".into()],
        location_id: "loc1".into(),
        ..Default::default()
    };
    let mut group = c.benchmark_group("grpc");
    group.bench_function("baseline_health_check", |b| {
        let client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        b.to_async(&runtime).iter(|| {
            let mut client = client.clone();
            async move {
                client
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .expect("health")
            }
        })
    });
    group.bench_function("authorize_allow", |b| {
        let client = pb::token_authorizer_client::TokenAuthorizerClient::new(channel.clone());
        b.to_async(&runtime).iter(|| {
            let (mut client, request) = (client.clone(), authorize.clone());
            async move { client.authorize(request).await.expect("authorize") }
        })
    });
    group.finish();
}

criterion_group!(benches, index_benches, grpc_benches);
criterion_main!(benches);

/// An Authorize call on `agency` and `location` with `required`, from an unnamed caller.
fn call<'a>(
    token: &'a str,
    required: &'a [String],
    agency: &'a str,
    location: &'a str,
) -> Call<'a> {
    Call {
        token,
        required,
        agency_id: agency,
        location_id: location,
        client_ip: "",
        user_agent: "",
    }
}
