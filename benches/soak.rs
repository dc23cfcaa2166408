//! A soak run: the real binary under mixed management and Authorize load for a bounded time,
//! printing its memory and the errors seen per interval, to show both stay flat.
//!
//! Usage: `cargo bench --bench soak -- [--minutes M] [--rate CALLS_PER_S] [--database URL]`;
//! without `--database`, a SQLite file in a temporary directory (a PostgreSQL URL must name a
//! database of its own). Load: Authorize at `--rate` calls/s (default 2,000) over 4
//! connections, on tokens that are live, rotated, revoked or deleted as the management client
//! goes; one management client cycling create (with a request id, retried once), rotate,
//! update, cancel, expire and delete, holding about 200 integrations; one WatchEvents stream.
//! The server keeps retired tokens for one minute (`retired_token_retention`), so memory can
//! level off within the run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use privint::grpc::pb;
use tokio::time::Instant;
use tonic::Code;

#[path = "support/mod.rs"]
mod support;

use support::{SECRET, Server};

/// Integrations the management client keeps alive.
const LIVE: usize = 200;
/// How often a line is printed.
const INTERVAL: Duration = Duration::from_secs(30);

struct Args {
    minutes: u64,
    rate: u64,
    database: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        minutes: 10,
        rate: 2_000,
        database: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} takes a value"));
        match arg.as_str() {
            "--minutes" => args.minutes = value().parse().expect("--minutes M"),
            "--rate" => args.rate = value().parse().expect("--rate N"),
            "--database" => args.database = Some(value()),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Calls and unexpected errors, by kind, since the last line.
#[derive(Default)]
struct Counts {
    authorize: u64,
    management: u64,
    events: u64,
    /// Errors by "what: code"; a management call that loses a race (ABORTED,
    /// FAILED_PRECONDITION) is not one.
    errors: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Counts>>;

fn error(counts: &Shared, what: &str, code: Code) {
    *counts
        .lock()
        .expect("not poisoned")
        .errors
        .entry(format!("{what}: {code:?}"))
        .or_default() += 1;
}

/// Cycles every management action over about `LIVE` integrations until `until`; publishes
/// the tokens it was given for the Authorize load.
async fn management(
    server: &Server,
    tokens: Arc<RwLock<Vec<String>>>,
    counts: Shared,
    until: Instant,
) {
    let channel = server.endpoint().connect().await.expect("connect");
    let mut api = support::admin_api(channel, SECRET);
    let mut live: VecDeque<String> = VecDeque::new();
    let mut n = 0_u64;
    while Instant::now() < until {
        n += 1;
        let create = pb::CreateIntegrationRequest {
            agency_id: "agency1".into(),
            location_id: format!("soak-loc{}", n % 50),
            name: "soak".into(),
            scopes: vec!["contacts.readonly".into()],
            request_id: format!("soak-{n}"),
            ..Default::default()
        };
        // Sent twice, as a client retrying a lost answer would: one integration.
        let mut created = None;
        for _ in 0..2 {
            match api.create_integration(create.clone()).await {
                Ok(it) => created = created.or(Some(it.into_inner())),
                Err(status) => error(&counts, "create", status.code()),
            }
        }
        let Some(created) = created else { continue };
        let id = created.integration.expect("integration").id;
        let mut calls = 2;
        let mut results = Vec::new();
        let rotate = pb::RotateTokenRequest {
            id: id.clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        };
        match api.rotate_token(rotate).await {
            Ok(it) => {
                let mut tokens = tokens.write().expect("not poisoned");
                tokens.push(created.token);
                tokens.push(it.into_inner().token);
                if tokens.len() > 4 * LIVE {
                    tokens.drain(..2 * LIVE);
                }
            }
            Err(status) => results.push(("rotate", status)),
        }
        let update = pb::UpdateIntegrationRequest {
            integration: Some(pb::Integration {
                id: id.clone(),
                name: format!("soak {n}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        };
        results.extend(
            api.update_integration(update)
                .await
                .err()
                .map(|it| ("update", it)),
        );
        if n.is_multiple_of(3) {
            let cancel = pb::CancelRotationRequest {
                id: id.clone(),
                etag: String::new(),
            };
            results.extend(
                api.cancel_rotation(cancel)
                    .await
                    .err()
                    .map(|it| ("cancel", it)),
            );
            calls += 1;
        }
        if n.is_multiple_of(5) {
            let expire = pb::ExpireTokenRequest {
                id: id.clone(),
                target: pb::ExpireTarget::All.into(),
                etag: String::new(),
            };
            results.extend(
                api.expire_token(expire)
                    .await
                    .err()
                    .map(|it| ("expire", it)),
            );
            calls += 1;
        }
        live.push_back(id);
        if live.len() > LIVE {
            let oldest = live.pop_front().expect("not empty");
            let delete = pb::DeleteIntegrationRequest {
                id: oldest,
                etag: String::new(),
            };
            results.extend(
                api.delete_integration(delete)
                    .await
                    .err()
                    .map(|it| ("delete", it)),
            );
            calls += 1;
        }
        counts.lock().expect("not poisoned").management += calls + 2;
        for (what, status) in results {
            if !matches!(status.code(), Code::Aborted | Code::FailedPrecondition) {
                error(&counts, what, status.code());
            }
        }
    }
}

/// Sends Authorize at `rate` calls/s over 4 connections until `until`.
async fn authorize_load(
    server: &Server,
    tokens: Arc<RwLock<Vec<String>>>,
    rate: u64,
    counts: Shared,
    until: Instant,
) {
    let mut workers = Vec::new();
    for worker in 0..4_u64 {
        let channel = server.endpoint().connect().await.expect("connect");
        let mut client = pb::token_authorizer_client::TokenAuthorizerClient::new(channel);
        let (tokens, counts) = (Arc::clone(&tokens), Arc::clone(&counts));
        workers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(4.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = worker;
            while Instant::now() < until {
                tick.tick().await;
                n += 4;
                let token = {
                    let tokens = tokens.read().expect("not poisoned");
                    if tokens.is_empty() {
                        continue;
                    }
                    tokens[usize::try_from(n).unwrap_or(0) % tokens.len()].clone()
                };
                let request = pb::AuthorizeRequest {
                    token,
                    required_scopes: vec!["contacts.readonly".into()],
                    agency_id: "agency1".into(),
                    ..Default::default()
                };
                match client.authorize(request).await {
                    Ok(_) => counts.lock().expect("not poisoned").authorize += 1,
                    Err(status) => error(&counts, "authorize", status.code()),
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
}

async fn watch(server: &Server, counts: Shared) {
    let channel = server.endpoint().connect().await.expect("connect");
    let mut api = support::admin_api(channel, SECRET);
    let request = pb::WatchEventsRequest {
        agency_id: "agency1".into(),
        ..Default::default()
    };
    let mut stream = api.watch_events(request).await.expect("watch").into_inner();
    loop {
        match stream.message().await {
            Ok(Some(_)) => counts.lock().expect("not poisoned").events += 1,
            Ok(None) => return,
            Err(status) => return error(&counts, "watch", status.code()),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("soak.db").display()));
    // Retired tokens stay in memory for the retention (30 days by default): with it shortened
    // to a minute, the run reaches the steady state it is meant to watch.
    let envs = [
        ("APP__RETIRED_TOKEN_RETENTION", "1m"),
        ("APP__CHANGE_FEED__RESYNC_INTERVAL", "30s"),
    ];
    let (server, _) = Server::start(&url, &envs).await;
    let server = Arc::new(server);
    let until = Instant::now() + Duration::from_secs(args.minutes * 60);
    let counts = Shared::default();
    let tokens = Arc::new(RwLock::new(Vec::new()));
    println!(
        "soak: {} min, Authorize at {} calls/s, management cycling {LIVE} integrations, {}",
        args.minutes,
        args.rate,
        if args.database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    println!(
        "{:>6} {:>9} {:>12} {:>11} {:>7}  errors",
        "min", "RSS MiB", "authorize/s", "manage/s", "events"
    );
    let tasks = [
        tokio::spawn({
            let (server, tokens, counts) = (
                Arc::clone(&server),
                Arc::clone(&tokens),
                Arc::clone(&counts),
            );
            async move { management(&server, tokens, counts, until).await }
        }),
        tokio::spawn({
            let (server, tokens, counts) = (
                Arc::clone(&server),
                Arc::clone(&tokens),
                Arc::clone(&counts),
            );
            async move { authorize_load(&server, tokens, args.rate, counts, until).await }
        }),
    ];
    let watcher = tokio::spawn({
        let (server, counts) = (Arc::clone(&server), Arc::clone(&counts));
        async move { watch(&server, counts).await }
    });
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut all_errors = 0;
    while Instant::now() < until {
        tokio::time::sleep(INTERVAL).await;
        let counts = std::mem::take(&mut *counts.lock().expect("not poisoned"));
        let seconds = INTERVAL.as_secs_f64();
        let mib = server.memory("VmRSS") as f64 / (1024.0 * 1024.0);
        rss.push(mib);
        all_errors += counts.errors.values().sum::<u64>();
        println!(
            "{:>6.1} {:>9.1} {:>12.0} {:>11.1} {:>7}  {:?}",
            started.elapsed().as_secs_f64() / 60.0,
            mib,
            counts.authorize as f64 / seconds,
            counts.management as f64 / seconds,
            counts.events,
            counts.errors
        );
    }
    for task in tasks {
        task.await.expect("load");
    }
    watcher.abort();
    let _ = watcher.await;
    // Retired tokens leave memory a retention plus a resync after they ended: the second half
    // of the run is the steady state.
    let half = rss.get(rss.len() / 2).copied().unwrap_or_default();
    let last = rss.last().copied().unwrap_or_default();
    println!(
        "RSS at half time {half:.1} MiB, at the end {last:.1} MiB ({:+.1} %); unexpected errors: {all_errors}",
        (last / half - 1.0) * 100.0
    );
    Arc::into_inner(server).expect("the load is done").stop();
}
