//! Writes usage to the database in batches: when tokens were last used and when scopes were
//! last required. Authorize only raises atomics in memory; this task records what changed every
//! `interval` and at shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::Clock;
use crate::domain::error::Error;
use crate::domain::usage::DailyUsage;
use crate::index::TokenIndex;
use crate::store::Store;

/// Writes the uses not yet recorded; returns how many token and scope uses it wrote.
///
/// # Errors
/// Returns `Unavailable` or `Internal` if the database fails; the uses are kept for next time.
pub async fn record_uses(
    store: &Store,
    index: &TokenIndex,
    today: NaiveDate,
) -> Result<usize, Error> {
    let uses = index.unrecorded_uses();
    let scope_uses = index.unrecorded_scope_uses();
    if uses.is_empty() && scope_uses.is_empty() {
        return Ok(0);
    }
    let last_uses: Vec<_> = uses
        .iter()
        .filter_map(|it| Some((it.token_id.clone(), it.time?)))
        .collect();
    let scope_batch: Vec<_> = scope_uses
        .iter()
        .map(|it| (it.integration_id.clone(), it.scope.clone(), it.time))
        .collect();
    // Counts go to the day they are written on: at most one interval off around midnight UTC.
    let calls: Vec<_> = uses
        .iter()
        .filter(|it| it.allowed > 0 || it.denied > 0)
        .map(|it| {
            (
                it.token_id.clone(),
                DailyUsage {
                    date: today,
                    allowed: it.allowed,
                    denied: it.denied,
                },
            )
        })
        .collect();
    if let Err(err) = store.record_usage(&last_uses, &scope_batch, &calls).await {
        for unrecorded in &uses {
            unrecorded.restore();
        }
        return Err(err);
    }
    for recorded in &uses {
        recorded.recorded();
    }
    for recorded in &scope_uses {
        recorded.recorded();
    }
    Ok(uses.len() + scope_uses.len())
}

/// Records uses every `interval` until `stop` is cancelled, then once more.
pub async fn run(
    store: Store,
    index: Arc<TokenIndex>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(interval) => false,
            () = stop.cancelled() => true,
        };
        if let Err(err) = record_uses(&store, &index, clock.now().date_naive()).await {
            warn!(error = ?err, "cannot record token uses; keeping them for the next round");
        }
        if stopping {
            return;
        }
    }
}
