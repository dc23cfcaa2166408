//! The audit log and its live stream: `ListEvents` pages through it, `WatchEvents` follows it.
//!
//! Reach is checked once, before a listing or a stream starts; events never carry a token.

use std::sync::Arc;

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::domain::account::Owner;
use crate::domain::caller::Caller;
use crate::domain::error::Error;
use crate::domain::event::{Event, EventFilter};
use crate::index::feed::EventFeed;
use crate::service::lifecycle::{Page, not_found};
use crate::store::Store;

/// How many events one catch-up read returns at most.
const CATCH_UP_BATCH: u64 = 500;

/// Reads and streams audit events for callers allowed to see them.
pub struct Events {
    store: Store,
    /// What this replica's follower reads, fanned out to every stream.
    feed: Arc<EventFeed>,
    /// Cancelled on shutdown: event streams end so the server can drain.
    stopping: CancellationToken,
    /// One permit per open stream, up to the configured cap.
    subscribers: Arc<Semaphore>,
}

impl Events {
    /// Returns the event service over the follower's `feed`, streaming to at most
    /// `max_subscribers` watchers at once.
    pub fn new(store: Store, feed: Arc<EventFeed>, max_subscribers: usize) -> Self {
        Self {
            store,
            feed,
            stopping: CancellationToken::new(),
            subscribers: Arc::new(Semaphore::new(max_subscribers)),
        }
    }

    /// Tells watchers that this replica committed an event: the follower reads it at once.
    pub fn published(&self) {
        self.feed.wake();
    }

    /// Ends every event stream (WatchEvents), as the server shuts down.
    pub fn stop_watchers(&self) {
        self.stopping.cancel();
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
    /// until the receiver is dropped or the server stops.
    ///
    /// Events come from the follower's feed; the store is read only to start (the last event id,
    /// or what came after `after`) and after falling behind the feed's capacity, so a watcher
    /// that keeps up costs no query.
    ///
    /// # Errors
    /// As [`Events::list`], checked once before the stream starts; `ResourceExhausted` when
    /// this replica streams to as many watchers as it may.
    pub async fn watch(
        &self,
        caller: &Caller,
        filter: EventFilter,
        after: Option<i64>,
    ) -> Result<mpsc::Receiver<Result<Event, Error>>, Error> {
        let subscriber = Arc::clone(&self.subscribers)
            .try_acquire_owned()
            .map_err(|_| {
                Error::ResourceExhausted("too many event streams on this replica; retry later")
            })?;
        self.check_reach(caller, &filter).await?;
        // Subscribed before anything is read, so no event falls between the store and the feed.
        let (live, published) = self.feed.subscribe();
        // "From now on" starts after the last event committed, which the follower may not have
        // read yet: events up to it that reach the feed are passed over.
        let last_seen = match after {
            Some(after) => after,
            None => self.store.last_event_id().await?,
        };
        let watcher = Watcher {
            store: self.store.clone(),
            feed: Arc::clone(&self.feed),
            filter,
            last_seen,
            caught_up: last_seen >= published,
        };
        let (sender, receiver) = mpsc::channel(64);
        let stopping = self.stopping.clone();
        tokio::spawn(async move {
            let _subscriber = subscriber;
            tokio::select! {
                () = watcher.run(live, &sender) => {}
                () = sender.closed() => {}
                () = stopping.cancelled() => {}
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

/// One `WatchEvents` stream.
struct Watcher {
    store: Store,
    feed: Arc<EventFeed>,
    filter: EventFilter,
    /// The id of the last event delivered or passed over; later ones are delivered in id order.
    last_seen: i64,
    /// False while events after `last_seen` may be missing from the feed's receiver.
    caught_up: bool,
}

impl Watcher {
    /// Delivers events until the receiver is gone or the store fails (the error is delivered).
    async fn run(
        mut self,
        mut live: broadcast::Receiver<Arc<Event>>,
        sender: &mpsc::Sender<Result<Event, Error>>,
    ) {
        loop {
            if !self.caught_up {
                match self.catch_up(sender).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(err) => {
                        let _ = sender.send(Err(err)).await;
                        return;
                    }
                }
            }
            match live.recv().await {
                Ok(event) => {
                    if event.id > self.last_seen && !self.deliver(&event, sender).await {
                        return;
                    }
                }
                // Fell behind the feed's capacity: read what was missed from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up = false,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Reads the store after `last_seen` until it runs out; returns false if the receiver is gone.
    async fn catch_up(
        &mut self,
        sender: &mpsc::Sender<Result<Event, Error>>,
    ) -> Result<bool, Error> {
        loop {
            self.feed.count_read();
            let events = self
                .store
                .events_after(self.last_seen, CATCH_UP_BATCH)
                .await?;
            let complete = events.len() < CATCH_UP_BATCH as usize;
            for event in &events {
                if !self.deliver(event, sender).await {
                    return Ok(false);
                }
            }
            if complete {
                self.caught_up = true;
                return Ok(true);
            }
        }
    }

    /// Sends `event` if it passes the filter; returns false if the receiver is gone.
    async fn deliver(
        &mut self,
        event: &Event,
        sender: &mpsc::Sender<Result<Event, Error>>,
    ) -> bool {
        self.last_seen = event.id;
        !self.filter.matches(event) || sender.send(Ok(event.clone())).await.is_ok()
    }
}
