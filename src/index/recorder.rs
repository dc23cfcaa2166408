//! Writes usage to the database in batches: when tokens were last used, their calls, and which
//! scopes allowed calls required. Authorize only raises atomics in memory and lists what it
//! touched first; this task records what changed every `interval` and at shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::Clock;
use crate::domain::error::Error;
use crate::domain::usage::DailyUsage;
use crate::index::TokenIndex;
use crate::store::Store;

/// Writes the use not yet recorded; returns how many token and integration uses it wrote.
/// The work is proportional to the tokens used since the last round.
///
/// # Errors
/// Returns `Unavailable` or `Internal` if the database fails; the use is kept for next time.
pub async fn record_uses(
    store: &Store,
    index: &TokenIndex,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    let (uses, scopes) = index.take_unrecorded();
    if uses.is_empty() && scopes.is_empty() {
        return Ok(0);
    }
    let last_uses: Vec<_> = uses
        .iter()
        .filter_map(|it| Some((it.token_id.clone(), it.time?, it.caller.clone())))
        .collect();
    // Scopes count as required when they are written: at most one interval late.
    let scope_batch: Vec<_> = scopes
        .iter()
        .flat_map(|it| {
            it.scopes
                .iter()
                .map(|scope| (it.integration_id.clone(), scope.clone(), now))
        })
        .collect();
    // Counts go to the day they are written on: at most one interval off around midnight UTC.
    let calls: Vec<_> = uses
        .iter()
        .filter(|it| it.allowed > 0 || it.denied > 0)
        .map(|it| {
            (
                it.token_id.clone(),
                DailyUsage {
                    date: now.date_naive(),
                    allowed: it.allowed,
                    denied: it.denied,
                },
            )
        })
        .collect();
    if let Err(err) = store.record_usage(&last_uses, &scope_batch, &calls).await {
        index.restore(&uses, &scopes);
        return Err(err);
    }
    Ok(uses.len() + scopes.len())
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
        if let Err(err) = record_uses(&store, &index, clock.now()).await {
            warn!(error = ?err, "cannot record token uses; keeping them for the next round");
        }
        if stopping {
            return;
        }
    }
}
