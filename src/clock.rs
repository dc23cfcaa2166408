//! The wall clock, behind a trait so tests can move time instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, DurationRound, Utc};

/// Tells the time.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current time, to the millisecond (what both databases store exactly).
    fn now(&self) -> DateTime<Utc>;

    /// Returns the current time in Unix milliseconds: what the hot path compares.
    fn now_millis(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate(Utc::now())
    }

    fn now_millis(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
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
