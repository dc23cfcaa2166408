//! The wall clock, behind a trait so tests can move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, DurationRound, Utc};

/// Tells the time.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current time, to the millisecond (what both databases store exactly).
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now())
    }
}

/// The system clock plus an offset that can be moved forward: for tests that need time to pass.
#[derive(Debug, Default)]
pub struct AdjustableClock {
    offset_millis: AtomicI64,
}

impl AdjustableClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset_millis
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now() + Duration::milliseconds(self.offset_millis.load(Ordering::SeqCst)))
    }
}

fn truncate(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(Duration::milliseconds(1))
        .unwrap_or(time)
}
