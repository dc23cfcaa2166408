//! The change feed as this replica reads it: one reader (the follower) publishes every event
//! it reads, in id order, to every `WatchEvents` stream, so watchers cost no database queries
//! while they keep up.
//!
//! It holds no history: a watcher that starts in the past, or falls behind the channel's
//! capacity, reads what it missed from the store and then rejoins.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, broadcast};

use crate::domain::event::Event;

/// How many events the channel holds for a slow watcher before it must catch up from the store.
const CAPACITY: usize = 1024;

/// The events this replica's follower has read, as they arrive.
pub struct EventFeed {
    sender: broadcast::Sender<Arc<Event>>,
    /// The id of the last event published; every event up to it has been published.
    cursor: AtomicI64,
    /// Wakes the follower when this replica committed an event, so it reads it at once.
    wake: Notify,
    /// Counts reads of the events table, by the follower and by streams catching up.
    reads: Counter,
}

impl EventFeed {
    /// Returns a feed whose events so far end at `cursor`, counting reads of the events table
    /// in `reads`.
    pub fn new(cursor: i64, reads: Counter) -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
            cursor: AtomicI64::new(cursor),
            wake: Notify::new(),
            reads,
        }
    }

    /// Counts one read of the events table.
    pub fn count_read(&self) {
        self.reads.inc();
    }

    /// Returns a receiver of the events published from now on, and the id of the last event
    /// published before it (every later event reaches the receiver, unless it lags).
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, i64) {
        let receiver = self.sender.subscribe();
        (receiver, self.cursor.load(Ordering::SeqCst))
    }

    /// Publishes `events`, read in id order after the cursor.
    pub fn publish(&self, events: &[Event]) {
        for event in events {
            // No receiver is no error: nobody is watching.
            let _ = self.sender.send(Arc::new(event.clone()));
            self.cursor.store(event.id, Ordering::SeqCst);
        }
    }

    /// Returns the id of the last event published.
    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::SeqCst)
    }

    /// Asks the follower to read the feed now: this replica committed an event.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Completes when [`EventFeed::wake`] was called (at once if it was since the last time).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}
