//! The management use cases: create, read, list, and every lifecycle action, each one
//! transaction with one audit event, applied to this replica's token index before the call
//! returns.
//!
//! Size: one short method per lifecycle action, all through the one `change` transaction.

use std::sync::Arc;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Duration};
use ring::rand::SystemRandom;
use tracing::{info, warn};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::account::{Level, Owner};
use crate::domain::allowlist::IpAllowlist;
use crate::domain::caller::Caller;
use crate::domain::error::{Error, Violation};
use crate::domain::event::Event;
use crate::domain::integration::{
    Change, Description, Draft, EventKind, ExpireTarget, Integration, IntegrationId,
    IntegrationName, OldTokens, Patch, TokenId, TokenRecord,
};
use crate::domain::request_id::RequestId;
use crate::domain::scope::{Catalog, Scope, ScopeEntry};
use crate::domain::token::PlainToken;
use crate::index::TokenIndex;
use crate::service::events::Events;
use crate::service::usage::{IntegrationView, Usage};
use crate::store::{self, Store};

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

/// The shortest grace period a rotation may ask for.
pub const MIN_GRACE: Duration = Duration::minutes(1);

/// What a new integration is to be.
#[derive(Debug)]
pub struct NewIntegration {
    pub owner: Owner,
    pub name: IntegrationName,
    pub description: Description,
    /// Validated against the catalog at the owner's level.
    pub scopes: Vec<Scope>,
    pub ip_allowlist: Option<IpAllowlist>,
    /// The client's id for this request: a retry with it within [`REQUEST_ID_WINDOW`] returns
    /// the integration the first attempt created.
    pub request_id: Option<RequestId>,
}

/// Which integrations a listing keeps, beyond the account.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Only those with a live token that expires between now and this time.
    pub expiring_before: Option<DateTime<chrono::Utc>>,
    /// Only those whose current token is due for rotation.
    pub rotation_due: bool,
}

/// How long a client request id of a create is remembered.
pub const REQUEST_ID_WINDOW: Duration = Duration::hours(24);

/// What a create did.
#[derive(Debug)]
pub enum Created {
    /// A new integration and its token (shown this once).
    New(IntegrationView, PlainToken),
    /// The integration an earlier request with the same request id created; its token was
    /// issued then.
    Replayed(IntegrationView),
}

/// The fields an update changes; scopes are validated against the integration's level.
#[derive(Debug, Default)]
pub struct Update {
    pub name: Option<IntegrationName>,
    pub description: Option<Description>,
    pub scopes: Option<Vec<Scope>>,
    /// `Some(None)` removes the allowlist.
    pub ip_allowlist: Option<Option<IpAllowlist>>,
}

/// How a rotation treats the old token, as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl<T, C> Page<T, C> {
    /// Returns the page of `items` read with a limit of `page_size + 1`: one more item than
    /// fits means there is a next page, starting after the cursor of the last item kept.
    pub fn of(mut items: Vec<T>, page_size: u64, cursor: impl Fn(&T) -> C) -> Self {
        let next = if items.len() as u64 > page_size {
            items.truncate(page_size as usize);
            items.last().map(cursor)
        } else {
            None
        };
        Self { items, next }
    }
}

/// Manages integrations for callers allowed to.
pub struct Integrations {
    store: Store,
    index: Arc<TokenIndex>,
    catalog: Arc<Catalog>,
    policy: RotationPolicy,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    usage: Usage,
    events: Arc<Events>,
}

impl Integrations {
    /// Returns the service; `events` is woken by every change this replica commits.
    pub fn new(
        store: Store,
        index: Arc<TokenIndex>,
        catalog: Arc<Catalog>,
        policy: RotationPolicy,
        clock: Arc<dyn Clock>,
        events: Arc<Events>,
    ) -> Self {
        let usage = Usage::new(
            store.clone(),
            Arc::clone(&index),
            Arc::clone(&clock),
            policy.rotation_age,
        );
        Self {
            store,
            index,
            catalog,
            policy,
            clock,
            rng: SystemRandom::new(),
            usage,
            events,
        }
    }

    /// Returns the audit log and its stream.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Creates an integration with a new current token, or returns the one an earlier request
    /// of the caller with the same request id created within [`REQUEST_ID_WINDOW`].
    ///
    /// # Errors
    /// `PermissionDenied` if the caller may not manage the owner's integrations,
    /// `InvalidArgument` for bad scopes, `FailedPrecondition` if the request id was used for
    /// another owner or name, or its integration was deleted, `Unavailable` if the database is
    /// down.
    pub async fn create(&self, caller: &Caller, new: NewIntegration) -> Result<Created, Error> {
        caller.check_manage_account(&new.owner)?;
        let scopes = self
            .catalog
            .grant("scopes", &new.scopes, new.owner.level())?;
        let now = self.clock.now();
        let token = self.generate_token()?;
        let record = TokenRecord::issue(TokenId::from_uuid(Uuid::now_v7()), &token, now);
        let draft = Draft {
            owner: new.owner,
            name: new.name,
            description: new.description,
            scopes,
            ip_allowlist: new.ip_allowlist,
        };
        let id = IntegrationId::from_uuid(Uuid::now_v7());
        let (integration, change) =
            Integration::create(id, draft, caller.user_id.clone(), record, now);
        let mut tx = self.store.begin().await?;
        if let Some(request_id) = &new.request_id {
            let since = now - REQUEST_ID_WINDOW;
            tx.forget_request_ids(since).await?;
            let claimed = tx
                .claim_request_id(&caller.user_id, request_id, &integration.id, now, since)
                .await?;
            if let Some(earlier) = claimed {
                let earlier =
                    tx.lock_integration(&earlier)
                        .await?
                        .ok_or(Error::FailedPrecondition(
                            "the integration this request_id created has been deleted",
                        ))?;
                drop(tx);
                if earlier.owner != integration.owner || earlier.name != integration.name {
                    return Err(Error::FailedPrecondition(
                        "this request_id was used to create another integration",
                    ));
                }
                return Ok(Created::Replayed(self.usage.view(earlier).await));
            }
        }
        let event = tx
            .insert_integration(&integration, &change, &caller.user_id)
            .await?;
        tx.commit().await?;
        self.applied(&integration, &change, &event);
        Ok(Created::New(self.usage.view(integration).await, token))
    }

    /// Returns an integration the caller may see.
    ///
    /// # Errors
    /// `NotFound` if it does not exist, was deleted, or is out of the caller's reach.
    pub async fn get(&self, caller: &Caller, id: &IntegrationId) -> Result<IntegrationView, Error> {
        let integration = self
            .store
            .find_integration(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        caller.check_view(&integration.owner, "integration", id.as_str())?;
        Ok(self.usage.view(integration).await)
    }

    /// Lists the integrations of an agency (all levels) or of one of its locations, in creation order.
    ///
    /// # Errors
    /// `PermissionDenied` if the caller may not see that account.
    pub async fn list(
        &self,
        caller: &Caller,
        account: &Owner,
        filter: &ListFilter,
        after: Option<IntegrationId>,
        page_size: u64,
    ) -> Result<Page<IntegrationView, IntegrationId>, Error> {
        // A whole agency is listed only by agency roles; location roles name their location.
        caller.check_view_account(account)?;
        let now = self.clock.now();
        let filter = store::ListFilter {
            expiring: filter.expiring_before.map(|before| (now, before)),
            rotation_due_since: filter.rotation_due.then(|| now - self.policy.rotation_age),
        };
        let items = self
            .store
            .list_integrations(account, &filter, after.as_ref(), page_size + 1)
            .await?;
        let page = Page::of(items, page_size, |it| it.id.clone());
        Ok(Page {
            items: self.usage.views(page.items).await,
            next: page.next,
        })
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
    ) -> Result<IntegrationView, Error> {
        self.change(caller, id, etag, |integration, now| {
            let scopes = match &update.scopes {
                Some(scopes) => Some(self.catalog.grant(
                    "integration.scopes",
                    scopes,
                    integration.owner.level(),
                )?),
                None => None,
            };
            let patch = Patch {
                name: update.name,
                description: update.description,
                scopes,
                ip_allowlist: update.ip_allowlist,
            };
            integration.update(patch, now)
        })
        .await
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
            Ok(integration.delete(now))
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
    ) -> Result<(IntegrationView, PlainToken), Error> {
        let old = match mode {
            RotateMode::ExpireNow => OldTokens::ExpireNow,
            RotateMode::ExpireAfter(grace) => OldTokens::ExpireAfter(self.grace_period(grace)?),
        };
        let token = self.generate_token()?;
        let token_id = TokenId::from_uuid(Uuid::now_v7());
        let view = self
            .change(caller, id, etag, |integration, now| {
                integration.rotate(TokenRecord::issue(token_id, &token, now), old, now)
            })
            .await?;
        Ok((view, token))
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
    ) -> Result<IntegrationView, Error> {
        self.change(caller, id, etag, |integration, now| {
            integration.cancel_rotation(now)
        })
        .await
    }

    /// Disables an integration: its tokens deny `DISABLED` until it is enabled.
    ///
    /// # Errors
    /// `FailedPrecondition` if it is disabled already, and as [`Integrations::update`].
    pub async fn disable(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
    ) -> Result<IntegrationView, Error> {
        self.change(caller, id, etag, |integration, now| {
            integration.disable(now)
        })
        .await
    }

    /// Enables a disabled integration: its tokens work again as they were.
    ///
    /// # Errors
    /// `FailedPrecondition` unless it is disabled, and as [`Integrations::update`].
    pub async fn enable(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
    ) -> Result<IntegrationView, Error> {
        self.change(caller, id, etag, |integration, now| integration.enable(now))
            .await
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
    ) -> Result<IntegrationView, Error> {
        self.change(caller, id, etag, |integration, now| {
            integration.expire(target, now)
        })
        .await
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
        expire_time: Option<DateTime<chrono::Utc>>,
    ) -> Result<IntegrationView, Error> {
        let max_expiry = self.policy.max_expiry;
        self.change(caller, id, etag, |integration, now| {
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
            integration.schedule_expiry(expire_time, now)
        })
        .await
    }

    /// Returns the scope catalog, or the part of it allowed at `level`.
    pub fn list_scopes(&self, level: Option<Level>) -> Vec<ScopeEntry> {
        self.catalog.entries(level).cloned().collect()
    }

    /// Runs one lifecycle action: lock, check reach and etag, transition, save, commit, apply.
    async fn change(
        &self,
        caller: &Caller,
        id: &IntegrationId,
        etag: Option<&str>,
        transition: impl FnOnce(&mut Integration, DateTime<chrono::Utc>) -> Result<Change, Error>,
    ) -> Result<IntegrationView, Error> {
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
        let change = transition(&mut integration, now)?;
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
        Ok(self.usage.view(integration).await)
    }

    /// Reloads one integration into the index in the background, retrying with exponential
    /// back-off while the database is unavailable (the next start-up reloads everything anyway).
    fn reconcile(&self, id: IntegrationId) {
        let (store, index, clock) = (
            self.store.clone(),
            Arc::clone(&self.index),
            Arc::clone(&self.clock),
        );
        tokio::spawn(async move {
            let backoff = ExponentialBuilder::default()
                .with_max_delay(std::time::Duration::from_secs(30))
                .with_max_times(200);
            let loaded = (|| store.load_integration(&id))
                .retry(backoff)
                .when(|err| matches!(err, Error::Unavailable(_)))
                .await;
            match loaded {
                Ok(Some(loaded)) => index.apply(&loaded.integration, &loaded.retired, clock.now()),
                Ok(None) => {}
                Err(err) => {
                    warn!(integration.id = %id, error = ?err, "gave up reconciling the token index");
                }
            }
        });
    }

    /// Makes a committed change visible: to this replica's Authorize at once, and to watchers.
    fn applied(&self, integration: &Integration, change: &Change, event: &Event) {
        self.index
            .apply(integration, &change.retired, integration.update_time);
        self.events.published();
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

/// Returns the error for an integration that does not exist or is out of the caller's reach.
pub(crate) fn not_found(id: &IntegrationId) -> Error {
    Error::NotFound {
        entity: "integration",
        id: id.as_str().to_owned(),
    }
}
