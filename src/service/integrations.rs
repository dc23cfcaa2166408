//! The management use cases: every lifecycle action of SPEC §3, each one transaction with one
//! audit event, applied to this replica's token index before the call returns.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ring::rand::SystemRandom;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::domain::caller::Caller;
use crate::domain::error::{Error, Violation};
use crate::domain::event::{Event, EventFilter, deliverable};
use crate::domain::integration::{
    AccountId, Change, DailyUsage, Description, EventKind, ExpireTarget, Integration,
    IntegrationId, IntegrationName, Level, OldTokens, Owner, Patch, TokenId, TokenRecord,
};
use crate::domain::scope::{Catalog, Scope, ScopeEntry, ScopeSet};
use crate::domain::token::PlainToken;
use crate::index::TokenIndex;
use crate::service::clock::Clock;
use crate::store::Store;

/// The bounds of token lifetimes, from configuration.
#[derive(Debug, Clone)]
pub struct RotationPolicy {
    /// How long an old token keeps working after a rotation when the request names no period.
    pub default_grace: Duration,
    /// The longest grace period a request may ask for (the shortest is one minute).
    pub max_grace: Duration,
    /// Current tokens older than this are flagged `rotation_due`.
    pub rotation_age: Duration,
    /// How far ahead an expiry may be scheduled.
    pub max_expiry: Duration,
}

/// How many events one read of the feed returns at most.
const FEED_BATCH: u64 = 500;

/// Granted scopes that no allowed call required within this long are reported unused.
pub const UNUSED_SCOPE_WINDOW: Duration = Duration::days(30);

/// The shortest grace period a rotation may ask for.
pub const MIN_GRACE: Duration = Duration::minutes(1);

/// What a new integration is to be.
#[derive(Debug)]
pub struct NewIntegration {
    pub owner: Owner,
    pub name: IntegrationName,
    pub description: Description,
    /// Validated against the catalog at the owner's level.
    pub scopes: Vec<String>,
}

/// The fields an update changes; scopes are validated against the integration's level.
#[derive(Debug, Default)]
pub struct Update {
    pub name: Option<IntegrationName>,
    pub description: Option<Description>,
    pub scopes: Option<Vec<String>>,
}

/// How a rotation treats the old token, as requested.
#[derive(Debug, Clone, Copy)]
pub enum RotateMode {
    ExpireNow,
    /// `None` means the configured default grace period.
    ExpireAfter(Option<Duration>),
}

/// A page of a listing: the items and the cursor of the next page, if any.
#[derive(Debug)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// Manages integrations for callers allowed to.
pub struct Integrations {
    store: Store,
    index: Arc<TokenIndex>,
    catalog: Arc<Catalog>,
    policy: RotationPolicy,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    /// The id of the newest event this replica knows of; watchers wake on changes.
    last_event: watch::Sender<i64>,
    /// Set on shutdown: event streams end so the server can drain.
    stopping: watch::Sender<bool>,
}

impl Integrations {
    /// Returns the service; `last_event_id` is the newest event id in the store.
    pub fn new(
        store: Store,
        index: Arc<TokenIndex>,
        catalog: Arc<Catalog>,
        policy: RotationPolicy,
        clock: Arc<dyn Clock>,
        last_event_id: i64,
    ) -> Self {
        let (last_event, _) = watch::channel(last_event_id);
        let (stopping, _) = watch::channel(false);
        Self {
            store,
            index,
            catalog,
            policy,
            clock,
            rng: SystemRandom::new(),
            last_event,
            stopping,
        }
    }

    /// Ends every event stream (WatchEvents), as the server shuts down.
    pub fn stop_watchers(&self) {
        self.stopping.send_replace(true);
    }

    /// Returns the current time, as this service sees it.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Returns true if the current token of `integration` is older than the rotation age at `now`.
    pub fn rotation_due(&self, integration: &Integration, now: DateTime<Utc>) -> bool {
        integration.rotation_due(self.policy.rotation_age, now)
    }

    /// Creates an integration with a new current token.
    ///
    /// # Errors
    /// `PermissionDenied` if the caller may not manage the owner's integrations,
    /// `InvalidArgument` for bad scopes, `Unavailable` if the database is down.
    pub async fn create(
        &self,
        caller: &Caller,
        new: NewIntegration,
    ) -> Result<(Integration, PlainToken), Error> {
        caller.check_manage_account(&new.owner)?;
        let scopes = self
            .catalog
            .grant("scopes", &new.scopes, new.owner.level())?;
        let now = self.clock.now();
        let token = self.generate_token()?;
        let record = TokenRecord::issue(&token, now);
        let (integration, change) = Integration::create(
            new.owner,
            new.name,
            new.description,
            scopes,
            caller.user_id.clone(),
            record,
            now,
        );
        let mut tx = self.store.begin().await?;
        let event = tx
            .insert_integration(&integration, &change, &caller.user_id)
            .await?;
        tx.commit().await?;
        self.applied(&integration, &change, &event);
        Ok((self.with_usage_of(integration).await, token))
    }

    /// Returns an integration the caller may see.
    ///
    /// # Errors
    /// `NotFound` if it does not exist, was deleted, or is out of the caller's reach.
    pub async fn get(&self, caller: &Caller, id: &IntegrationId) -> Result<Integration, Error> {
        let integration = self
            .store
            .find_integration(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        caller.check_view(&integration.owner, "integration", id.as_str())?;
        Ok(self.with_usage_of(integration).await)
    }

    /// Lists the integrations of an agency (all levels) or of one of its locations, in creation order.
    ///
    /// # Errors
    /// `PermissionDenied` if the caller may not see that account.
    pub async fn list(
        &self,
        caller: &Caller,
        agency_id: AccountId,
        location_id: Option<AccountId>,
        after: Option<IntegrationId>,
        page_size: u64,
    ) -> Result<Page<Integration, IntegrationId>, Error> {
        let account = Owner {
            agency_id,
            location_id,
        };
        // A whole agency is listed only by agency roles; location roles name their location.
        caller.check_view_account(&account)?;
        let mut items = self
            .store
            .list_integrations(
                &account.agency_id,
                account.location_id.as_ref(),
                after.as_ref(),
                page_size + 1,
            )
            .await?;
        let next = if items.len() as u64 > page_size {
            items.truncate(page_size as usize);
            items.last().map(|it| it.id.clone())
        } else {
            None
        };
        let items = self.with_usage(items).await;
        Ok(Page { items, next })
    }

    /// Changes name, description and/or scopes; a scope change takes effect for Authorize at once.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Aborted` for a stale etag, `InvalidArgument` for bad scopes.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
        update: Update,
    ) -> Result<Integration, Error> {
        let (integration, ()) = self
            .change(caller, id, etag, |integration, now| {
                let scopes = match &update.scopes {
                    Some(names) => Some(self.catalog.grant(
                        "integration.scopes",
                        names,
                        integration.owner.level(),
                    )?),
                    None => None,
                };
                let patch = Patch {
                    name: update.name,
                    description: update.description,
                    scopes,
                };
                Ok((integration.update(patch, now)?, ()))
            })
            .await?;
        Ok(integration)
    }

    /// Deletes an integration: every token stops working at once; its events stay.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Aborted` for a stale etag.
    pub async fn delete(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
    ) -> Result<(), Error> {
        self.change(caller, id, etag, |integration, now| {
            Ok((integration.delete(now), ()))
        })
        .await?;
        Ok(())
    }

    /// Issues a new current token; older tokens stop now or after a grace period.
    ///
    /// # Errors
    /// `FailedPrecondition` while a previous token is live, `InvalidArgument` for a grace period
    /// out of range, and as [`Integrations::update`].
    pub async fn rotate_token(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
        mode: RotateMode,
    ) -> Result<(Integration, PlainToken), Error> {
        let old = match mode {
            RotateMode::ExpireNow => OldTokens::ExpireNow,
            RotateMode::ExpireAfter(grace) => OldTokens::ExpireAfter(self.grace_period(grace)?),
        };
        let token = self.generate_token()?;
        self.change(caller, id, etag, |integration, now| {
            let change = integration.rotate(TokenRecord::issue(&token, now), old, now)?;
            Ok((change, ()))
        })
        .await
        .map(|(integration, ())| (integration, token))
    }

    /// Revokes the newest token and makes the previous one current again, with no expiry.
    ///
    /// # Errors
    /// `FailedPrecondition` unless a previous token is live, and as [`Integrations::update`].
    pub async fn cancel_rotation(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
    ) -> Result<Integration, Error> {
        let (integration, ()) = self
            .change(caller, id, etag, |integration, now| {
                Ok((integration.cancel_rotation(now)?, ()))
            })
            .await?;
        Ok(integration)
    }

    /// Expires every live token now, or only the previous one.
    ///
    /// # Errors
    /// `FailedPrecondition` if there is nothing live to expire, and as [`Integrations::update`].
    pub async fn expire_token(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
        target: ExpireTarget,
    ) -> Result<Integration, Error> {
        let (integration, ()) = self
            .change(caller, id, etag, |integration, now| {
                Ok((integration.expire(target, now)?, ()))
            })
            .await?;
        Ok(integration)
    }

    /// Sets (or with `None` clears) the expiry time of the current token.
    ///
    /// # Errors
    /// `InvalidArgument` for a time in the past or beyond the configured maximum,
    /// `FailedPrecondition` without a live current token, and as [`Integrations::update`].
    pub async fn schedule_token_expiry(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
        expire_time: Option<DateTime<Utc>>,
    ) -> Result<Integration, Error> {
        let max_expiry = self.policy.max_expiry;
        let (integration, ()) = self
            .change(caller, id, etag, |integration, now| {
                if let Some(expire_time) = expire_time {
                    if expire_time <= now {
                        return Err(Violation::new("expire_time", "must be in the future").into());
                    }
                    if expire_time > now + max_expiry {
                        let days = max_expiry.num_days();
                        return Err(Violation::new(
                            "expire_time",
                            format!("must be at most {days} days ahead"),
                        )
                        .into());
                    }
                }
                Ok((integration.schedule_expiry(expire_time, now)?, ()))
            })
            .await?;
        Ok(integration)
    }

    /// Returns the scope catalog, or the part of it allowed at `level`.
    pub fn list_scopes(&self, level: Option<Level>) -> Vec<ScopeEntry> {
        self.catalog.entries(level).cloned().collect()
    }

    /// Lists the events of an integration or an account, newest first, older than `before`.
    ///
    /// # Errors
    /// `NotFound` for an integration out of reach, `PermissionDenied` for an account out of reach.
    pub async fn list_events(
        &self,
        caller: &Caller,
        filter: &EventFilter,
        before: Option<i64>,
        page_size: u64,
    ) -> Result<Page<Event, i64>, Error> {
        self.check_events_reach(caller, filter).await?;
        let mut items = self
            .store
            .list_events(filter, before, page_size + 1)
            .await?;
        let next = if items.len() as u64 > page_size {
            items.truncate(page_size as usize);
            items.last().map(|it| it.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Streams the events matching `filter` after `after` (or from now on), oldest first,
    /// until the receiver is dropped.
    ///
    /// # Errors
    /// As [`Integrations::list_events`], checked once before the stream starts.
    pub async fn watch_events(
        &self,
        caller: &Caller,
        filter: EventFilter,
        after: Option<i64>,
    ) -> Result<mpsc::Receiver<Result<Event, Error>>, Error> {
        self.check_events_reach(caller, &filter).await?;
        let mut last_seen = match after {
            Some(after) => after,
            None => self.store.last_event_id().await?,
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

    async fn check_events_reach(&self, caller: &Caller, filter: &EventFilter) -> Result<(), Error> {
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

    /// Runs one lifecycle action: lock, check reach and etag, transition, save, commit, apply.
    async fn change<T>(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
        transition: impl FnOnce(&mut Integration, DateTime<Utc>) -> Result<(Change, T), Error>,
    ) -> Result<(Integration, T), Error> {
        let mut tx = self.store.begin().await?;
        // The clock is read after the lock is taken, so changes are stamped in commit order.
        let mut integration = tx
            .lock_integration(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let now = self.clock.now();
        caller.check_manage(&integration.owner, "integration", id.as_str())?;
        if etag.is_some_and(|etag| etag != integration.etag()) {
            return Err(Error::Aborted);
        }
        let (change, extra) = transition(&mut integration, now)?;
        let deleted = change.kind == EventKind::IntegrationDeleted;
        let event = tx
            .save(&integration, &change, &caller.user_id, deleted)
            .await?;
        if let Err(err) = tx.commit().await {
            // The commit may have succeeded before the connection failed: bring the index in
            // line with whatever the database now holds, so a revocation is never missed.
            warn!(integration.id = %id, "commit failed; reconciling the token index with the database");
            self.reconcile(id.clone());
            return Err(err);
        }
        self.applied(&integration, &change, &event);
        Ok((self.with_usage_of(integration).await, extra))
    }

    /// Reloads one integration into the index in the background, retrying until the database
    /// answers (for up to an hour; the next start-up reloads everything anyway).
    fn reconcile(&self, id: IntegrationId) {
        let (store, index) = (self.store.clone(), Arc::clone(&self.index));
        tokio::spawn(async move {
            for _ in 0..3600 {
                match store.load_integration(&id).await {
                    Ok(Some(loaded)) => return index.apply(&loaded.integration, &loaded.retired),
                    Ok(None) => return,
                    Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                }
            }
            warn!(integration.id = %id, "gave up reconciling the token index");
        });
    }

    /// Adds usage: when tokens were last used and their daily call counts (including what this replica saw but has not
    /// written yet, which it does every few seconds) and which granted scopes went unused for
    /// `UNUSED_SCOPE_WINDOW`. If the database cannot say, `unused_scopes` stays unknown.
    async fn with_usage_of(&self, integration: Integration) -> Integration {
        let mut integrations = self.with_usage(vec![integration]).await;
        integrations.pop().expect("one integration in, one out")
    }

    /// As [`Integrations::with_usage_of`], for a page of integrations in one read.
    async fn with_usage(&self, mut integrations: Vec<Integration>) -> Vec<Integration> {
        let now = self.clock.now();
        let since = now - UNUSED_SCOPE_WINDOW;
        let ids: Vec<&IntegrationId> = integrations.iter().map(|it| &it.id).collect();
        let token_ids: Vec<&TokenId> = integrations
            .iter()
            .flat_map(|it| it.current.iter().chain(&it.previous))
            .map(|token| &token.id)
            .collect();
        let recorded = async {
            let scopes = self.store.scopes_required_since(&ids, since).await?;
            let calls = self
                .store
                .daily_usage_since(&token_ids, since.date_naive())
                .await?;
            Ok::<_, Error>((scopes, calls))
        };
        let recorded = match recorded.await {
            Ok(recorded) => Some(recorded),
            Err(err) => {
                warn!(error = ?err, "cannot read usage; unused scopes and daily counts left unknown");
                None
            }
        };
        for integration in &mut integrations {
            for token in integration
                .current
                .iter_mut()
                .chain(integration.previous.iter_mut())
            {
                token.last_used_time = token.last_used_time.max(self.index.last_used(&token.hash));
                if let Some((_, calls)) = &recorded {
                    token.daily_usage = daily_usage(
                        &token.id,
                        calls,
                        self.index.unrecorded_calls(&token.hash),
                        now,
                    );
                }
            }
            let Some((scopes_required, _)) = &recorded else {
                continue;
            };
            let local = self.index.scopes_required_since(&integration.id, since);
            let used = |scope: &Scope| {
                local.contains(scope)
                    || scopes_required
                        .iter()
                        .any(|(id, name)| *id == integration.id && name == scope.as_str())
            };
            let unused = integration
                .scopes
                .as_slice()
                .iter()
                .filter(|scope| !used(scope))
                .cloned();
            integration.unused_scopes = Some(ScopeSet::new(unused));
        }
        integrations
    }

    /// Makes a committed change visible: to this replica's Authorize at once, and to watchers.
    fn applied(&self, integration: &Integration, change: &Change, event: &Event) {
        self.index.apply(integration, &change.retired);
        self.last_event.send_if_modified(|last| {
            let newer = event.id > *last;
            *last = (*last).max(event.id);
            newer
        });
        info!(integration.id = %integration.id, event.id = event.id, event.kind = change.kind.as_str(), "integration changed");
    }

    fn grace_period(&self, requested: Option<Duration>) -> Result<Duration, Error> {
        let grace = requested.unwrap_or(self.policy.default_grace);
        if grace < MIN_GRACE || grace > self.policy.max_grace {
            let max_minutes = self.policy.max_grace.num_minutes();
            return Err(Violation::new(
                "grace_period",
                format!("must be from 1 to {max_minutes} minutes"),
            )
            .into());
        }
        Ok(grace)
    }

    fn generate_token(&self) -> Result<PlainToken, Error> {
        PlainToken::generate(&self.rng).map_err(|err| Error::Internal(err.into()))
    }
}

/// Returns a token's daily counts: what the database has, plus what this replica counted and has
/// not written yet (counted as today's).
fn daily_usage(
    token_id: &TokenId,
    recorded: &[(TokenId, DailyUsage)],
    (allowed, denied): (u64, u64),
    now: DateTime<Utc>,
) -> Vec<DailyUsage> {
    let mut days: Vec<DailyUsage> = recorded
        .iter()
        .filter(|(id, _)| id == token_id)
        .map(|(_, day)| day.clone())
        .collect();
    if allowed > 0 || denied > 0 {
        let today = now.date_naive();
        match days.iter_mut().find(|day| day.date == today) {
            Some(day) => {
                day.allowed += allowed;
                day.denied += denied;
            }
            None => days.push(DailyUsage {
                date: today,
                allowed,
                denied,
            }),
        }
    }
    days
}

fn not_found(id: &IntegrationId) -> Error {
    Error::NotFound {
        entity: "integration",
        id: id.as_str().to_owned(),
    }
}
