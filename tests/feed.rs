//! The change feed never skips a committed change, however late its commit lands after its event
//! was written, and `index_staleness` never under-reports while a change may be missing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{AGENCY, Backend, TestApp, authorize, create, deny_reason, get};
use privint::clock::{Clock, SystemClock};
use privint::domain::integration::{ExpireTarget, IntegrationId};
use privint::grpc::pb;
use tokio_stream::StreamExt;

both_backends!(two_thousand_watchers_share_one_reader);
// On SQLite there is one writer, and one process per file.
postgres_only!(a_stalled_writer_is_never_skipped);

/// How long the writer stalls between its event insert and its commit: longer than any time-out
/// a follower could give up after (the feed once waited 2 s at a gap in the ids).
const STALL: Duration = Duration::from_secs(3);

/// Returns the ids of every event of `AGENCY`, oldest first.
async fn all_event_ids(app: &TestApp) -> Vec<String> {
    let mut api = app.api().await;
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListEventsRequest {
            agency_id: AGENCY.to_owned(),
            page_size: 100,
            page_token,
            ..Default::default()
        };
        let page = api.list_events(request).await.expect("list").into_inner();
        ids.extend(page.events.into_iter().map(|event| event.id));
        if page.next_page_token.is_empty() {
            ids.reverse();
            return ids;
        }
        page_token = page.next_page_token;
    }
}

/// Collects the ids of the events `app` streams for `AGENCY` from now on.
async fn watch(app: &TestApp) -> Arc<std::sync::Mutex<Vec<String>>> {
    let request = pb::WatchEventsRequest {
        agency_id: AGENCY.to_owned(),
        ..Default::default()
    };
    let mut stream = app
        .api()
        .await
        .watch_events(request)
        .await
        .expect("watch")
        .into_inner();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let collected = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            collected.lock().expect("not poisoned").push(event.id);
        }
    });
    seen
}

async fn a_stalled_writer_is_never_skipped(backend: Backend) {
    let Some(first) = TestApp::spawn(backend).await else {
        return;
    };
    let db = first.db.share();
    let second = TestApp::spawn_with(db, common::settings(&first.db), Default::default()).await;
    let mut api = first.api().await;
    let (victim, token) = create(&mut api).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(create(&mut api).await.0);
    }
    let started = Instant::now();
    while deny_reason(&authorize(&second, &token, &[]).await).is_some() {
        assert!(started.elapsed() < Duration::from_secs(10), "never created");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = all_event_ids(&first).await;
    let watchers = [watch(&second).await, watch(&second).await];

    // A writer (privint's own store code) writes its revocation and its event, then stalls
    // before committing, as a paused process or a stalled network would.
    let store = privint::store::Store::connect(&first.db.url, &Default::default())
        .await
        .expect("connect");
    let mut tx = store.begin().await.expect("begin");
    let id = IntegrationId::parse("id", &victim.id).expect("id");
    let mut integration = tx
        .lock_integration(&id)
        .await
        .expect("lock")
        .expect("found");
    let change = integration
        .expire(ExpireTarget::All, SystemClock.now())
        .expect("expire");
    tx.save(&integration, &change, "stalled-writer", false)
        .await
        .expect("save");

    // Meanwhile other writers change other integrations through the API.
    let mut writers = Vec::new();
    for other in &others {
        let mut api = first.api().await;
        let request = pb::UpdateIntegrationRequest {
            integration: Some(pb::Integration {
                id: other.id.clone(),
                name: "renamed while a writer stalls".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".to_owned()],
            }),
        };
        writers.push(tokio::spawn(async move {
            api.update_integration(request).await.expect("update");
        }));
    }
    tokio::time::sleep(STALL).await;
    tx.commit().await.expect("the late commit lands");
    let committed = Instant::now();
    for writer in writers {
        writer.await.expect("writer finished");
    }

    // Every replica applies the late revocation, and while one still allows the token, its
    // staleness covers at least the time since the commit.
    for replica in [&first, &second] {
        loop {
            let asked = Instant::now();
            let answer = authorize(replica, &token, &[]).await;
            if deny_reason(&answer) == Some(pb::DenyReason::RevokedToken) {
                break;
            }
            let staleness = answer.index_staleness.expect("staleness");
            let staleness = Duration::new(staleness.seconds as u64, staleness.nanos.max(0) as u32);
            let since_commit = asked.duration_since(committed);
            assert!(
                staleness >= since_commit,
                "allowed a revoked token with a staleness of {staleness:?}, {since_commit:?} after the commit"
            );
            assert!(
                committed.elapsed() < Duration::from_secs(10),
                "the late revocation never reached a replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Every stream delivers every event, the late one included, once and in id order.
    let expected: Vec<String> = all_event_ids(&first)
        .await
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(
        expected.len(),
        4,
        "{expected:?}: the late event and three updates"
    );
    for seen in &watchers {
        let waited = Instant::now();
        loop {
            let seen = seen.lock().expect("not poisoned").clone();
            if seen == expected {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10) && seen.len() <= expected.len(),
                "a watcher saw {seen:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Returns how many times `app` has read the events table.
async fn feed_reads(app: &TestApp) -> u64 {
    let (_, page) = get(app, "/metrics").await;
    page.lines()
        .find_map(|line| line.strip_prefix("privint_change_feed_reads_total "))
        .expect("the feed reads are counted")
        .parse()
        .expect("a count")
}

async fn two_thousand_watchers_share_one_reader(backend: Backend) {
    const WATCHERS: usize = 2_000;
    const CHANGES: usize = 5;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut api = app.api().await;
    let (integration, _) = create(&mut api).await;
    let (done, mut finished) = tokio::sync::mpsc::channel(WATCHERS);
    for _ in 0..WATCHERS / 100 {
        // A hundred streams a connection, as a gateway multiplexing its users would.
        let api = app.api().await;
        for _ in 0..100 {
            let request = pb::WatchEventsRequest {
                integration_id: integration.id.clone(),
                ..Default::default()
            };
            let mut stream = api
                .clone()
                .watch_events(request)
                .await
                .expect("watch")
                .into_inner();
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < CHANGES {
                    stream.message().await.expect("stream").expect("an event");
                    seen += 1;
                }
                done.send(()).await.expect("test waiting");
            });
        }
    }
    let before = feed_reads(&app).await;
    for n in 0..CHANGES {
        let request = pb::UpdateIntegrationRequest {
            integration: Some(pb::Integration {
                id: integration.id.clone(),
                name: format!("change {n}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".to_owned()],
            }),
        };
        api.update_integration(request).await.expect("update");
    }
    for _ in 0..WATCHERS {
        tokio::time::timeout(Duration::from_secs(60), finished.recv())
            .await
            .expect("every stream gets every change")
            .expect("streams running");
    }
    // One reader per replica: a read per change or poll, not a read per stream.
    let reads = feed_reads(&app).await - before;
    assert!(
        reads < 100,
        "{reads} reads of the events table for {CHANGES} changes and {WATCHERS} streams"
    );
}
