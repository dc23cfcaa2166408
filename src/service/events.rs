//! The audit log and its live stream: `ListEvents` pages through it, `WatchEvents` follows it.
//!
//! Reach is checked once, before a listing or a stream starts; events never carry a token.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::domain::account::Owner;
use crate::domain::caller::Caller;
use crate::domain::error::Error;
use crate::domain::event::{Event, EventFilter, deliverable};
use crate::service::lifecycle::{Page, not_found};
use crate::store::Store;

/// How many events one read of the feed returns at most.
const FEED_BATCH: u64 = 500;

/// Reads and streams audit events for callers allowed to see them.
pub struct Events {
    store: Store,
    clock: Arc<dyn Clock>,
    /// The id of the newest event this replica knows of; watchers wake on changes.
    last_event: watch::Sender<i64>,
    /// Set on shutdown: event streams end so the server can drain.
    stopping: watch::Sender<bool>,
}

impl Events {
    /// Returns the event service; `last_event_id` is the newest event id in the store.
    pub fn new(store: Store, clock: Arc<dyn Clock>, last_event_id: i64) -> Self {
        let (last_event, _) = watch::channel(last_event_id);
        let (stopping, _) = watch::channel(false);
        Self {
            store,
            clock,
            last_event,
            stopping,
        }
    }

    /// Wakes the watchers: an event with id `event_id` was committed by this replica.
    pub fn published(&self, event_id: i64) {
        self.last_event.send_if_modified(|last| {
            let newer = event_id > *last;
            *last = (*last).max(event_id);
            newer
        });
    }

    /// Ends every event stream (WatchEvents), as the server shuts down.
    pub fn stop_watchers(&self) {
        self.stopping.send_replace(true);
    }

    /// Lists the events of an integration or an account, newest first, older than `before`.
    ///
    /// # Errors
    /// `NotFound` for an integration out of reach, `PermissionDenied` for an account out of reach.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: &EventFilter,
        before: Option<i64>,
        page_size: u64,
    ) -> Result<Page<Event, i64>, Error> {
        self.check_reach(caller, filter).await?;
        let items = self
            .store
            .list_events(filter, before, page_size + 1)
            .await?;
        Ok(Page::of(items, page_size, |event| event.id))
    }

    /// Streams the events matching `filter` after `after` (or from now on), oldest first,
    /// until the receiver is dropped.
    ///
    /// # Errors
    /// As [`Events::list`], checked once before the stream starts.
    pub async fn watch(
        &self,
        caller: &Caller,
        filter: EventFilter,
        after: Option<i64>,
    ) -> Result<mpsc::Receiver<Result<Event, Error>>, Error> {
        self.check_reach(caller, &filter).await?;
        let mut last_seen = match after {
            Some(after) => after,
            None => self.store.last_event_id(None).await?,
        };
        let (sender, receiver) = mpsc::channel(64);
        let store = self.store.clone();
        let clock = Arc::clone(&self.clock);
        let mut wake = self.last_event.subscribe();
        let mut stopping = self.stopping.subscribe();
        tokio::spawn(async move {
            loop {
                if *stopping.borrow_and_update() {
                    return;
                }
                // The whole feed is read so that gaps in the ids can be seen; the filter applies after.
                let events = match store.events_after(last_seen, FEED_BATCH).await {
                    Ok(events) => events,
                    Err(err) => {
                        let _ = sender.send(Err(err)).await;
                        return;
                    }
                };
                let ready = deliverable(&events, last_seen, clock.now());
                let caught_up = ready == events.len() && events.len() < FEED_BATCH as usize;
                for event in events.into_iter().take(ready) {
                    last_seen = event.id;
                    if filter.matches(&event) && sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if ready == 0 || caught_up {
                    // Wake on this replica's own changes, and poll as a safety net (and to
                    // retry a gap that may be filled by a late commit).
                    let pause = if caught_up {
                        std::time::Duration::from_secs(1)
                    } else {
                        std::time::Duration::from_millis(100)
                    };
                    tokio::select! {
                        _ = wake.changed() => {}
                        () = tokio::time::sleep(pause) => {}
                        () = sender.closed() => return,
                        _ = stopping.changed() => {}
                    }
                }
            }
        });
        Ok(receiver)
    }

    async fn check_reach(&self, caller: &Caller, filter: &EventFilter) -> Result<(), Error> {
        match filter {
            EventFilter::Integration(id) => {
                let owner = self
                    .store
                    .find_owner(id)
                    .await?
                    .ok_or_else(|| not_found(id))?;
                caller.check_view(&owner, "integration", id.as_str())
            }
            EventFilter::Account {
                agency_id,
                location_id,
            } => caller.check_view_account(&Owner {
                agency_id: agency_id.clone(),
                location_id: location_id.clone(),
            }),
        }
    }
}
