//! Walks over the whole index: counting live tokens, the range digests the resync compares with
//! the store, and dropping tokens past the retention. None runs on the Authorize path.

use chrono::{DateTime, Duration, Utc};

/// How long a token may stay past the retention so that drops come in batches.
const DROP_BATCH: Duration = Duration::hours(1);

use crate::index::{RangeDigest, TokenIndex, is_current, lock};

impl TokenIndex {
    /// Returns how many tokens authorize at `now`: not revoked and not expired. Scans the index.
    pub fn live_count(&self, now: DateTime<Utc>) -> usize {
        let now = now.timestamp_millis();
        let mut live = 0;
        self.tokens.for_each(|slot| {
            if slot.state().is_live(now) {
                live += 1;
            }
        });
        live
    }

    /// Drops the tokens out of their integration's current slot (retired, or previous) that
    /// ended before `now` minus the retention: Authorize answers UNKNOWN_TOKEN for them from then
    /// on. A current token stays until its integration moves on, expired or not (one per
    /// integration at most). Returns how many were dropped.
    ///
    /// It scans the index only when a token is due, and then not before it has been due for
    /// `DROP_BATCH` (or the retention, when shorter), so drops come in batches, at most one
    /// scan per batch period.
    pub fn drop_ended(&self, now: DateTime<Utc>) -> usize {
        let cutoff = (now - self.retention).timestamp_millis();
        let mut writer = lock(&self.writer);
        let batch = DROP_BATCH.min(self.retention).num_milliseconds();
        if cutoff < writer.next_end_millis.saturating_add(batch) {
            return 0;
        }
        let mut next_end_millis = i64::MAX;
        let dropped = self.tokens.retain(|slot| {
            let keep = is_current(&slot.state()) || slot.end_millis >= cutoff;
            if keep && !is_current(&slot.state()) {
                next_end_millis = next_end_millis.min(slot.end_millis);
            }
            keep
        });
        writer.next_end_millis = next_end_millis;
        dropped
    }

    /// Returns, for each range of integrations (see `store::range_of`), how many have a current
    /// token here and the sum of their versions: what the store counts the same way, so a range
    /// that differs is one to reload. Kept up to date by the writers: no scan.
    pub fn range_digests(&self) -> Vec<RangeDigest> {
        lock(&self.writer).ranges.clone()
    }

    /// Returns the range digests counted afresh from every slot: what `range_digests` must equal.
    #[cfg(test)]
    pub(super) fn range_digests_by_scan(&self) -> Vec<RangeDigest> {
        let mut ranges = vec![RangeDigest::default(); 256];
        self.tokens.for_each(|slot| {
            if let Some((range, version)) = crate::index::counted(slot) {
                ranges[range].add(version, 1);
            }
        });
        ranges
    }
}
