//! The token index at platform scale: seeds N integrations with one live token each straight into
//! SQLite or PostgreSQL, then runs the real `privint` binary on them and prints memory per token,
//! time to ready, peak RSS, the CPU cost of one resync, and Authorize latency under a paced load
//! with and without resyncs running. See BENCHMARKS.md for the command and the numbers.
//!
//! Usage: `cargo bench --bench scale -- [--tokens N] [--database URL] [--rate CALLS_PER_S]
//! [--seconds S]`; without `--database`, a SQLite file in a temporary directory. A PostgreSQL
//! URL names a server: the benchmark makes (and drops) its own database there.

use std::time::{Duration, Instant};

use chrono::Utc;
use privint::grpc::pb;
use sea_orm::{ConnectionTrait, Database, DbBackend};
use tonic::transport::Channel;

#[path = "support/mod.rs"]
mod support;

use support::{SECRET, Server};

/// Real tokens created through the API, the ones the load presents.
const KNOWN_TOKENS: usize = 64;

struct Args {
    tokens: u64,
    database: Option<String>,
    rate: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut args = Args {
        tokens: 100_000,
        database: None,
        rate: 4_000,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} takes a value"));
        match arg.as_str() {
            "--tokens" => args.tokens = value().parse().expect("--tokens N"),
            "--database" => args.database = Some(value()),
            "--rate" => args.rate = value().parse().expect("--rate N"),
            "--seconds" => args.seconds = value().parse().expect("--seconds N"),
            // Passed by `cargo bench`.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// A database for one run: a SQLite file, or a fresh PostgreSQL database (dropped at the end).
struct BenchDb {
    url: String,
    admin: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl BenchDb {
    async fn new(server: Option<&str>, dir: tempfile::TempDir) -> Self {
        match server {
            None => Self {
                url: format!("sqlite://{}", dir.path().join("scale.db").display()),
                admin: None,
                _dir: dir,
            },
            Some(server) => {
                let name = format!("privint_scale_{}", std::process::id());
                let admin = Database::connect(server).await.expect("PostgreSQL");
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                    .await
                    .expect("drop");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create database");
                let (prefix, _) = server.rsplit_once('/').expect("URL ends with /database");
                Self {
                    url: format!("{prefix}/{name}"),
                    admin: Some((server.to_owned(), name)),
                    _dir: dir,
                }
            }
        }
    }

    async fn drop_database(&self) {
        if let Some((server, name)) = &self.admin {
            let admin = Database::connect(server.as_str())
                .await
                .expect("PostgreSQL");
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                .await;
        }
    }
}

/// Writes `n` integrations, each with one live token of random digest, in SQL on the server.
async fn seed(url: &str, n: u64) -> Duration {
    let started = Instant::now();
    let db = Database::connect(url).await.expect("connect");
    let statements = match db.get_database_backend() {
        DbBackend::Postgres => vec![
            format!(
                "INSERT INTO integrations (id, agency_id, location_id, name, description, scopes, \
                 create_time, update_time, created_by, version, current_token_id, \
                 previous_token_id, delete_time) \
                 SELECT '00000000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'), \
                 'agency' || (g % 1000), 'loc' || g, 'seeded', '', \
                 'contacts.readonly contacts.write', now(), now(), 'seed', 1, \
                 '00000000-0000-7000-9000-' || lpad(to_hex(g), 12, '0'), NULL, NULL \
                 FROM generate_series(1, {n}) AS g"
            ),
            format!(
                "INSERT INTO tokens (id, integration_id, hash, hint, create_time, expire_time, \
                 revoke_time, last_used_time) \
                 SELECT '00000000-0000-7000-9000-' || lpad(to_hex(g), 12, '0'), \
                 '00000000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'), \
                 sha256(int8send(g)), 'pit-...seed', now(), NULL, NULL, NULL \
                 FROM generate_series(1, {n}) AS g"
            ),
            "ANALYZE".to_owned(),
        ],
        _ => {
            let series = format!(
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n})"
            );
            let now = Utc::now().format("%Y-%m-%d %H:%M:%S%.6f+00:00");
            vec![
                format!(
                    "{series} INSERT INTO integrations (id, agency_id, location_id, name, \
                     description, scopes, create_time, update_time, created_by, version, \
                     current_token_id, previous_token_id, delete_time) \
                     SELECT printf('00000000-0000-7000-8000-%012x', g), 'agency' || (g % 1000), \
                     'loc' || g, 'seeded', '', 'contacts.readonly contacts.write', '{now}', \
                     '{now}', 'seed', 1, printf('00000000-0000-7000-9000-%012x', g), NULL, NULL \
                     FROM s"
                ),
                format!(
                    "{series} INSERT INTO tokens (id, integration_id, hash, hint, create_time, \
                     expire_time, revoke_time, last_used_time) \
                     SELECT printf('00000000-0000-7000-9000-%012x', g), \
                     printf('00000000-0000-7000-8000-%012x', g), randomblob(32), 'pit-...seed', \
                     '{now}', NULL, NULL, NULL FROM s"
                ),
            ]
        }
    };
    for statement in statements {
        db.execute_unprepared(&statement).await.expect("seed");
    }
    started.elapsed()
}

/// Creates real integrations through the API and returns their tokens and locations.
async fn known_tokens(server: &Server) -> Vec<(String, String)> {
    let channel = server.endpoint().connect().await.expect("connect");
    let mut api = support::admin_api(channel, SECRET);
    let mut tokens = Vec::new();
    for n in 0..KNOWN_TOKENS {
        let location = format!("bench-loc{n}");
        let request = pb::CreateIntegrationRequest {
            agency_id: "agency1".into(),
            location_id: location.clone(),
            name: "bench".into(),
            scopes: vec!["contacts.readonly".into()],
            ..Default::default()
        };
        let token = api
            .create_integration(request)
            .await
            .expect("create")
            .into_inner()
            .token;
        tokens.push((token, location));
    }
    tokens
}

/// Sends Authorize at `rate` calls/s for `seconds` over 4 connections (one call in flight per
/// slot of the schedule, never more than 256 at once); returns each call's latency, sorted.
async fn paced_load(
    server: &Server,
    tokens: &[(String, String)],
    rate: u64,
    seconds: u64,
) -> Vec<Duration> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        let channel: Channel = server.endpoint().connect().await.expect("connect");
        clients.push(pb::token_authorizer_client::TokenAuthorizerClient::new(
            channel,
        ));
    }
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = rate * seconds;
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let started = tokio::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..total {
        tokio::time::sleep_until(started + interval * n as u32).await;
        let permit = std::sync::Arc::clone(&limit)
            .acquire_owned()
            .await
            .expect("open");
        let mut client = clients[n as usize % clients.len()].clone();
        let (token, location) = &tokens[n as usize % tokens.len()];
        let request = pb::AuthorizeRequest {
            token: token.clone(),
            required_scopes: vec!["contacts.readonly".into()],
            agency_id: "agency1".into(),
            location_id: location.clone(),
            ..Default::default()
        };
        calls.spawn(async move {
            let sent = Instant::now();
            let answer = client.authorize(request).await.expect("authorize");
            assert_eq!(answer.into_inner().decision(), pb::Decision::Allow);
            drop(permit);
            sent.elapsed()
        });
    }
    let mut latencies = Vec::with_capacity(total as usize);
    while let Some(latency) = calls.join_next().await {
        latencies.push(latency.expect("call"));
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: f64) -> String {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    format!("{:.2} ms", sorted[index].as_secs_f64() * 1000.0)
}

fn latency_line(label: &str, latencies: &[Duration]) {
    println!(
        "{label}: p50 {} p99 {} p99.9 {} max {} ({} calls)",
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        percentile(latencies, 0.999),
        percentile(latencies, 1.0),
        latencies.len()
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[tokio::main]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = BenchDb::new(args.database.as_deref(), dir).await;
    println!(
        "scale: {} tokens on {}",
        args.tokens,
        if db.admin.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );

    // An empty database: the memory every replica has before its first token.
    let (empty, _) = Server::start(&db.url, &[("APP__CHANGE_FEED__RESYNC_INTERVAL", "1h")]).await;
    let empty_rss = empty.memory("VmRSS:");
    empty.stop();

    let seeded = seed(&db.url, args.tokens).await;
    println!("seeded in {:.1} s", seeded.as_secs_f64());

    let (server, ready) =
        Server::start(&db.url, &[("APP__CHANGE_FEED__RESYNC_INTERVAL", "1h")]).await;
    let ready_rss = server.memory("VmRSS:");
    let load_peak = server.memory("VmHWM:");
    let per_token = ready_rss.saturating_sub(empty_rss) as f64 / args.tokens as f64;
    println!("time to ready: {:.2} s", ready.as_secs_f64());
    println!(
        "memory: empty {}, ready {} ({per_token:.0} B per token), peak while loading {}",
        mib(empty_rss),
        mib(ready_rss),
        mib(load_peak)
    );
    let tokens = known_tokens(&server).await;
    let without = paced_load(&server, &tokens, args.rate, args.seconds).await;
    latency_line(
        &format!("Authorize at {} calls/s, no resync", args.rate),
        &without,
    );
    server.stop();

    // Resyncs every 5 s: their CPU cost while idle, their peak memory, and the latency under them.
    let (server, _) = Server::start(&db.url, &[("APP__CHANGE_FEED__RESYNC_INTERVAL", "5s")]).await;
    let steady = server.memory("VmRSS:");
    server.reset_peak();
    let cpu_before = server.cpu();
    tokio::time::sleep(Duration::from_secs(21)).await;
    let per_resync = (server.cpu() - cpu_before) / 4;
    println!(
        "one resync: {:.0} ms of CPU (idle, 4 resyncs in 21 s); peak RSS {} vs steady {}",
        per_resync.as_secs_f64() * 1000.0,
        mib(server.memory("VmHWM:")),
        mib(steady)
    );
    let with = paced_load(&server, &tokens, args.rate, args.seconds).await;
    latency_line(
        &format!("Authorize at {} calls/s, resync every 5 s", args.rate),
        &with,
    );
    server.stop();
    db.drop_database().await;
}
