//! The change-feed follower: keeps this replica's token index in line with changes other
//! replicas commit, by reading the events table in id order and reloading each changed
//! integration, with a periodic full reload as a safety net; it also publishes every event it
//! reads to this replica's `WatchEvents` streams (`feed`).
//!
//! Event ids are handed out in commit order (see `store::events`), so a read that sees an event
//! sees every event before it: the follower never waits at a gap, and never skips a change
//! however late its commit lands.
//!
//! Staleness bound: a change committed on another replica is applied here within about one
//! poll interval (default 250 ms; on PostgreSQL a NOTIFY wakes the follower at once), and in
//! any case by the next full reload (default 5 minutes) if its event was lost. The index
//! records the time before its last complete read of the feed, and Authorize reports the
//! difference as its staleness: a change committed since may be missing, and the staleness
//! says so.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::domain::error::Error;
use crate::domain::integration::IntegrationId;
use crate::index::feed::EventFeed;
use crate::index::{RangeDigest, TokenIndex};
use crate::store::Store;

/// How many integrations one read of a load or resync takes: a chunk's rows are all that is in
/// memory besides the index.
const LOAD_CHUNK: u64 = 5_000;

/// Applies every integration in the store to `index`, chunk by chunk, which is then complete up
/// to `started` (a time taken before the first read): the start-up load and the periodic full
/// reload. A change committed while it reads is applied by the follower, which starts from the
/// last event committed before the load.
///
/// # Errors
/// Returns `Unavailable` or `Internal` if the database fails; the index keeps what it had.
pub async fn reload(
    store: &Store,
    index: &TokenIndex,
    started: DateTime<Utc>,
) -> Result<(), Error> {
    if index.is_empty() {
        let count = store.count_integrations().await?;
        index.reserve(usize::try_from(count).unwrap_or(usize::MAX));
    }
    // The next chunk is read while this one is applied: the database and the index work at once.
    let read = |after: Option<IntegrationId>| {
        let store = store.clone();
        tokio::spawn(async move { store.load_chunk(after.as_ref(), LOAD_CHUNK).await })
    };
    let mut next = Some(read(None));
    while let Some(reading) = next.take() {
        let chunk = reading.await.map_err(|err| Error::Internal(err.into()))??;
        if let Some(last) = chunk.last().filter(|_| chunk.len() as u64 == LOAD_CHUNK) {
            next = Some(read(Some(last.integration.id.clone())));
        }
        for loaded in &chunk {
            index.apply(&loaded.integration, &loaded.retired, started);
        }
    }
    index.drop_ended(started);
    index.mark_synced(started);
    Ok(())
}

/// Brings the index in line with the store where the feed could have missed a change (an
/// event row removed by hand): compares, range by range, how many integrations have a current
/// token and the sum of their versions, and reloads only the ranges that differ. The index is
/// then complete up to `started` (a time taken before the read). Returns how many ranges were
/// reloaded.
///
/// # Errors
/// Returns `Unavailable` or `Internal` if the database fails; the index keeps what it had.
pub async fn resync(
    store: &Store,
    index: &TokenIndex,
    started: DateTime<Utc>,
) -> Result<usize, Error> {
    index.drop_ended(started);
    let mut stored = vec![RangeDigest::default(); 256];
    for digest in store.range_digests().await? {
        stored[usize::from(digest.range)] = RangeDigest {
            integrations: digest.integrations,
            versions: digest.versions,
        };
    }
    // A version the index has and the store has not yet is a change committed after the read:
    // its range is reloaded too, harmlessly.
    let held = index.range_digests();
    let mut reloaded = 0;
    for (range, (stored, held)) in stored.iter().zip(&held).enumerate() {
        if stored == held {
            continue;
        }
        let range = u8::try_from(range).expect("256 ranges");
        for loaded in store.load_range(range).await? {
            index.apply(&loaded.integration, &loaded.retired, started);
        }
        reloaded += 1;
    }
    if reloaded > 0 {
        info!(
            ranges = reloaded,
            "resync reloaded ranges the change feed had not brought up to date"
        );
    }
    index.mark_synced(started);
    Ok(reloaded)
}

/// How many events one poll reads at most.
const BATCH: u64 = 500;

/// How often the follower polls and reloads everything.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    pub poll_interval: Duration,
    pub resync_interval: Duration,
}

/// Follows the events table into the token index.
pub struct Follower {
    store: Store,
    index: Arc<TokenIndex>,
    clock: Arc<dyn Clock>,
    settings: FeedSettings,
    /// Where the events read are published; its cursor is the id of the last event applied.
    feed: Arc<EventFeed>,
}

impl Follower {
    /// Returns a follower that starts after the cursor of `feed`.
    pub fn new(
        store: Store,
        index: Arc<TokenIndex>,
        clock: Arc<dyn Clock>,
        settings: FeedSettings,
        feed: Arc<EventFeed>,
    ) -> Self {
        Self {
            store,
            index,
            clock,
            settings,
            feed,
        }
    }

    /// Follows the feed until `stop` is cancelled. Database errors are logged once per outage
    /// and retried; meanwhile the index's staleness grows.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut wakeups = None;
        let mut last_resync = Instant::now();
        let mut failing = false;
        loop {
            if wakeups.is_none() {
                wakeups = self.store.event_wakeups().await.ok().flatten();
            }
            let result = if last_resync.elapsed() >= self.settings.resync_interval {
                last_resync = Instant::now();
                self.resync().await
            } else {
                self.poll().await
            };
            match (result, failing) {
                (Ok(()), true) => {
                    info!("change feed reachable again");
                    failing = false;
                }
                (Err(err), false) => {
                    warn!(error = ?err, "change feed unreachable; Authorize answers from the index as it is");
                    failing = true;
                    wakeups = None;
                }
                _ => {}
            }
            let until_resync = self
                .settings
                .resync_interval
                .saturating_sub(last_resync.elapsed());
            let listener_failed = {
                let wakeup = async {
                    match wakeups.as_mut() {
                        Some(wakeups) => wakeups.next().await.is_err(),
                        None => std::future::pending::<bool>().await,
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(self.settings.poll_interval.min(until_resync)) => false,
                    failed = wakeup => failed,
                    () = self.feed.woken() => false,
                    () = stop.cancelled() => return,
                }
            };
            if listener_failed {
                // Polling goes on; the listener is reopened on the next round.
                wakeups = None;
            }
        }
    }

    /// Applies the integrations changed by new events and publishes the events; marks the index
    /// synced up to the time before the read when it has read everything.
    async fn poll(&mut self) -> Result<(), Error> {
        loop {
            let started = self.clock.now();
            self.feed.count_read();
            let events = self.store.events_after(self.feed.cursor(), BATCH).await?;
            let changed: BTreeSet<_> = events
                .iter()
                .map(|event| event.integration_id.clone())
                .collect();
            for id in changed {
                if let Some(loaded) = self.store.load_integration(&id).await? {
                    self.index
                        .apply(&loaded.integration, &loaded.retired, self.clock.now());
                }
            }
            self.feed.publish(&events);
            if events.len() < BATCH as usize {
                // Every event committed before `started` was in this read.
                self.index.mark_synced(started);
                return Ok(());
            }
        }
    }

    /// Reloads every integration: catches anything the feed could have missed.
    async fn resync(&mut self) -> Result<(), Error> {
        // The cursor stays: the feed goes on from where it was.
        resync(&self.store, &self.index, self.clock.now()).await?;
        Ok(())
    }
}
