//! Integrations, their tokens, and every lifecycle transition (create, update, rotate, cancel a
//! rotation, expire, schedule an expiry, delete) as a pure function.
//!
//! A transition changes an [`Integration`] in memory and says what to persist; it does no IO,
//! takes `now` and new ids as parameters, and knows nothing of usage (a read-model concern, see
//! `domain::usage`). The store persists the result in one transaction.
//!
//! Size: the value types of an integration and its state machine read best side by side; the
//! transitions' tests live in `integration/tests.rs`.

use std::fmt;

use crate::domain::account::Owner;
use crate::domain::allowlist::IpAllowlist;
use crate::domain::error::{Error, Violation};
use crate::domain::scope::ScopeSet;
use crate::domain::token::{PlainToken, TokenHash};
use chrono::{DateTime, Duration, Utc};

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

/// Declares a UUID-shaped id type.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(
            // Invariant: a hyphenated lowercase UUID.
            String,
        );

        impl $name {
            /// Returns the id of `uuid`. The caller generates it (a UUIDv7, so ids sort by
            /// creation time): the domain reads no clock.
            pub fn from_uuid(uuid: uuid::Uuid) -> Self {
                Self(uuid.hyphenated().to_string())
            }

            /// Parses an id; `field` names the request field for the error.
            ///
            /// # Errors
            /// Returns `InvalidArgument` unless `id` is a hyphenated UUID.
            pub fn parse(field: &'static str, id: &str) -> Result<Self, Error> {
                match uuid::Uuid::try_parse(id) {
                    Ok(uuid) if id.len() == 36 => Ok(Self(uuid.hyphenated().to_string())),
                    _ => Err(Violation::new(field, "must be an id as returned by privint (a UUID)").into()),
                }
            }

            /// Returns the id.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Returns the id as a UUID, 16 bytes.
            pub fn uuid(&self) -> uuid::Uuid {
                uuid::Uuid::try_parse(&self.0).expect("invariant: a hyphenated UUID")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(
    /// The id of an integration.
    IntegrationId
);
uuid_id!(
    /// The id of a token (not the token itself).
    TokenId
);

/// An integration's name: trimmed, 1..=100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationName(
    // Invariant: trimmed, not blank, at most 100 characters, no control characters.
    String,
);

impl IntegrationName {
    /// Parses a name, trimming surrounding white space.
    ///
    /// # Errors
    /// Returns `InvalidArgument` on `field` if the name is blank, too long or has control characters.
    pub fn parse(field: &'static str, name: &str) -> Result<Self, Error> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Violation::new(field, "must not be blank").into());
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(Violation::new(
                field,
                format!("must be at most {MAX_NAME_CHARS} characters"),
            )
            .into());
        }
        if name.chars().any(char::is_control) {
            return Err(Violation::new(field, "must not contain control characters").into());
        }
        Ok(Self(name.to_owned()))
    }

    /// Returns the name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An integration's description: 0..=1000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(
    // Invariant: at most 1000 characters.
    String,
);

impl Description {
    /// Parses a description.
    ///
    /// # Errors
    /// Returns `InvalidArgument` on `field` if it has more than 1000 characters.
    pub fn parse(field: &'static str, description: &str) -> Result<Self, Error> {
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(Violation::new(
                field,
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            )
            .into());
        }
        Ok(Self(description.to_owned()))
    }

    /// Returns the description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What privint keeps of one token: its digest and metadata, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub hash: TokenHash,
    /// The prefix and the last four characters.
    pub hint: String,
    pub create_time: DateTime<Utc>,
    /// When it stops working by itself; `None` for never.
    pub expire_time: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token never works again.
    pub revoke_time: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Returns the record of a freshly generated token with the id `id`.
    pub fn issue(id: TokenId, token: &PlainToken, now: DateTime<Utc>) -> Self {
        Self {
            id,
            hash: token.hash(),
            hint: token.hint(),
            create_time: now,
            expire_time: None,
            revoke_time: None,
        }
    }

    /// Returns true if the token works at `now`: not revoked and not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoke_time.is_none() && self.expire_time.is_none_or(|expire_time| now < expire_time)
    }
}

/// How a rotation treats the tokens it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldTokens {
    /// Every older token stops working at once.
    ExpireNow,
    /// The current token becomes previous and works for this long.
    ExpireAfter(Duration),
}

/// Which tokens "expire now" expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireTarget {
    /// The current and the previous token.
    All,
    /// Only the previous token of a rotation window.
    Previous,
}

/// The kind of an audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    IntegrationCreated,
    IntegrationUpdated,
    TokenRotated,
    TokenRotationCancelled,
    TokenExpired,
    TokenExpiryScheduled,
    IntegrationDeleted,
    IntegrationDisabled,
    IntegrationEnabled,
}

impl EventKind {
    const ALL: [Self; 9] = [
        Self::IntegrationCreated,
        Self::IntegrationUpdated,
        Self::TokenRotated,
        Self::TokenRotationCancelled,
        Self::TokenExpired,
        Self::TokenExpiryScheduled,
        Self::IntegrationDeleted,
        Self::IntegrationDisabled,
        Self::IntegrationEnabled,
    ];

    /// Returns the event type as stored and shown: `integration.created`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IntegrationCreated => "integration.created",
            Self::IntegrationUpdated => "integration.updated",
            Self::TokenRotated => "token.rotated",
            Self::TokenRotationCancelled => "token.rotation_cancelled",
            Self::TokenExpired => "token.expired",
            Self::TokenExpiryScheduled => "token.expiry_scheduled",
            Self::IntegrationDeleted => "integration.deleted",
            Self::IntegrationDisabled => "integration.disabled",
            Self::IntegrationEnabled => "integration.enabled",
        }
    }

    /// Parses a stored event type.
    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|it| it.as_str() == kind)
    }
}

/// An integration with its live token slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: IntegrationId,
    pub owner: Owner,
    pub name: IntegrationName,
    pub description: Description,
    pub scopes: ScopeSet,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// The user id of the creator.
    pub created_by: String,
    /// Bumped by every change; the etag is derived from it.
    pub version: i64,
    pub current: Option<TokenRecord>,
    /// Set only while a rotation window is open (the token may since have expired by time).
    pub previous: Option<TokenRecord>,
    /// When the integration was disabled: while set, every token of it is refused `DISABLED`,
    /// and its expiry times keep running.
    pub disable_time: Option<DateTime<Utc>>,
    /// The networks its tokens may be used from; `None` for anywhere.
    pub ip_allowlist: Option<IpAllowlist>,
}

/// What a transition did, for the store to persist beside the integration itself.
#[derive(Debug)]
pub struct Change {
    pub kind: EventKind,
    /// Tokens that left the slots (revoked or replaced), to persist as they now are.
    pub retired: Vec<TokenRecord>,
    /// A token this change issued; it is also in the `current` slot.
    pub issued: Option<TokenId>,
    /// Event details: never a token or a digest.
    pub details: Vec<(&'static str, String)>,
}

impl Change {
    fn new(kind: EventKind) -> Self {
        Self {
            kind,
            retired: Vec::new(),
            issued: None,
            details: Vec::new(),
        }
    }

    fn detail(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.details.push((key, value.into()));
        self
    }
}

/// The fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Patch {
    pub name: Option<IntegrationName>,
    pub description: Option<Description>,
    pub scopes: Option<ScopeSet>,
    /// `Some(None)` removes the allowlist.
    pub ip_allowlist: Option<Option<IpAllowlist>>,
}

/// What a new integration is to be: its owner, name, description and granted scopes.
#[derive(Debug, Clone)]
pub struct Draft {
    pub owner: Owner,
    pub name: IntegrationName,
    pub description: Description,
    pub scopes: ScopeSet,
    pub ip_allowlist: Option<IpAllowlist>,
}

impl Integration {
    /// Returns a new integration with the id `id`, made by `created_by`, whose current token is
    /// `token`.
    pub fn create(
        id: IntegrationId,
        draft: Draft,
        created_by: String,
        token: TokenRecord,
        now: DateTime<Utc>,
    ) -> (Self, Change) {
        let integration = Self {
            id,
            owner: draft.owner,
            name: draft.name,
            description: draft.description,
            scopes: draft.scopes,
            create_time: now,
            update_time: now,
            created_by,
            version: 1,
            current: Some(token),
            previous: None,
            disable_time: None,
            ip_allowlist: draft.ip_allowlist,
        };
        let mut change = Change::new(EventKind::IntegrationCreated)
            .detail("name", integration.name.as_str())
            .detail("scopes", integration.scopes.joined());
        change.issued = integration.current.as_ref().map(|token| token.id.clone());
        (integration, change)
    }

    /// Returns the etag clients send back for conditional changes.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }

    /// Returns the previous token if it still works at `now`.
    pub fn live_previous(&self, now: DateTime<Utc>) -> Option<&TokenRecord> {
        self.previous.as_ref().filter(|token| token.is_live(now))
    }

    /// Returns true if the current token is at least `rotation_age` old.
    pub fn rotation_due(&self, rotation_age: Duration, now: DateTime<Utc>) -> bool {
        self.current
            .as_ref()
            .is_some_and(|token| token.create_time + rotation_age <= now)
    }

    /// Changes name, description and/or scopes. The tokens do not change.
    ///
    /// # Errors
    /// Returns `InvalidArgument` if the patch changes nothing.
    pub fn update(&mut self, patch: Patch, now: DateTime<Utc>) -> Result<Change, Error> {
        if patch.name.is_none()
            && patch.description.is_none()
            && patch.scopes.is_none()
            && patch.ip_allowlist.is_none()
        {
            return Err(Violation::new(
                "update_mask",
                "must name at least one of name, description, scopes, ip_allowlist",
            )
            .into());
        }
        let mut change = Change::new(EventKind::IntegrationUpdated);
        if let Some(name) = patch.name {
            change = change.detail("name", name.as_str());
            self.name = name;
        }
        if let Some(description) = patch.description {
            change = change.detail("description", "changed");
            self.description = description;
        }
        if let Some(scopes) = patch.scopes {
            change = change
                .detail("scopes", scopes.joined())
                .detail("previous_scopes", self.scopes.joined());
            self.scopes = scopes;
        }
        if let Some(ip_allowlist) = patch.ip_allowlist {
            let joined = ip_allowlist.as_ref().map(IpAllowlist::joined);
            change = change.detail("ip_allowlist", joined.unwrap_or_default());
            self.ip_allowlist = ip_allowlist;
        }
        self.touch(now);
        Ok(change)
    }

    /// Makes `token` current; older tokens stop now or after a grace period.
    ///
    /// # Errors
    /// Returns `FailedPrecondition` while a previous token is still live.
    pub fn rotate(
        &mut self,
        token: TokenRecord,
        old: OldTokens,
        now: DateTime<Utc>,
    ) -> Result<Change, Error> {
        if self.live_previous(now).is_some() {
            return Err(Error::FailedPrecondition(
                "a rotation is in progress: cancel the rotation or expire the previous token first",
            ));
        }
        let mut change = Change::new(EventKind::TokenRotated).detail("token_id", token.id.as_str());
        change.issued = Some(token.id.clone());
        change.retired.extend(self.previous.take());
        let old_current = self.current.replace(token);
        match (old, old_current) {
            (_, None) => change = change.detail("old_tokens", "none"),
            (OldTokens::ExpireNow, Some(mut old_current)) => {
                old_current.revoke_time.get_or_insert(now);
                change = change
                    .detail("old_tokens", "expired_now")
                    .detail("previous_token_id", old_current.id.as_str());
                change.retired.push(old_current);
            }
            (OldTokens::ExpireAfter(grace), Some(mut old_current)) => {
                change = change.detail("previous_token_id", old_current.id.as_str());
                if old_current.is_live(now) {
                    // A grace period never extends a token's life beyond an expiry it already had.
                    let grace_end = now + grace;
                    let expire_time = old_current
                        .expire_time
                        .map_or(grace_end, |it| it.min(grace_end));
                    old_current.expire_time = Some(expire_time);
                    change = change
                        .detail("old_tokens", "expire_later")
                        .detail("previous_expire_time", expire_time.to_rfc3339());
                    self.previous = Some(old_current);
                } else {
                    change = change.detail("old_tokens", "already_expired");
                    change.retired.push(old_current);
                }
            }
        }
        self.touch(now);
        Ok(change)
    }

    /// Disables the integration: its tokens are refused `DISABLED` until it is enabled again,
    /// and nothing else about them changes.
    ///
    /// # Errors
    /// Returns `FailedPrecondition` if it is disabled already.
    pub fn disable(&mut self, now: DateTime<Utc>) -> Result<Change, Error> {
        if self.disable_time.is_some() {
            return Err(Error::FailedPrecondition(
                "the integration is disabled already",
            ));
        }
        self.disable_time = Some(now);
        self.touch(now);
        Ok(Change::new(EventKind::IntegrationDisabled))
    }

    /// Enables a disabled integration: its tokens work again as they were (any that expired
    /// meanwhile stay expired).
    ///
    /// # Errors
    /// Returns `FailedPrecondition` unless it is disabled.
    pub fn enable(&mut self, now: DateTime<Utc>) -> Result<Change, Error> {
        if self.disable_time.take().is_none() {
            return Err(Error::FailedPrecondition("the integration is not disabled"));
        }
        self.touch(now);
        Ok(Change::new(EventKind::IntegrationEnabled))
    }

    /// Revokes the new token and makes the previous token current again, with no expiry.
    ///
    /// # Errors
    /// Returns `FailedPrecondition` unless a previous token is live.
    pub fn cancel_rotation(&mut self, now: DateTime<Utc>) -> Result<Change, Error> {
        if self.live_previous(now).is_none() {
            return Err(Error::FailedPrecondition(
                "no rotation is in progress: there is no live previous token",
            ));
        }
        let mut previous = self.previous.take().expect("live_previous returned Some");
        previous.expire_time = None;
        let mut change =
            Change::new(EventKind::TokenRotationCancelled).detail("token_id", previous.id.as_str());
        if let Some(mut cancelled) = self.current.replace(previous) {
            cancelled.revoke_time.get_or_insert(now);
            change = change.detail("revoked_token_id", cancelled.id.as_str());
            change.retired.push(cancelled);
        }
        self.touch(now);
        Ok(change)
    }

    /// Revokes every live token, or only the previous one.
    ///
    /// # Errors
    /// Returns `FailedPrecondition` if there is nothing live to expire.
    pub fn expire(&mut self, target: ExpireTarget, now: DateTime<Utc>) -> Result<Change, Error> {
        let change = match target {
            ExpireTarget::Previous => {
                if self.live_previous(now).is_none() {
                    return Err(Error::FailedPrecondition(
                        "no rotation is in progress: there is no live previous token",
                    ));
                }
                Change::new(EventKind::TokenExpired).detail("target", "previous")
            }
            ExpireTarget::All => {
                let any_live = self
                    .current
                    .iter()
                    .chain(&self.previous)
                    .any(|token| token.is_live(now));
                if !any_live {
                    return Err(Error::FailedPrecondition(
                        "the integration has no live token to expire",
                    ));
                }
                let mut change = Change::new(EventKind::TokenExpired).detail("target", "all");
                change.retired.extend(self.current.take());
                change
            }
        };
        let mut change = change;
        change.retired.extend(self.previous.take());
        for token in &mut change.retired {
            if token.is_live(now) {
                token.revoke_time = Some(now);
            }
        }
        self.touch(now);
        Ok(change)
    }

    /// Sets or clears the expiry time of the current token.
    ///
    /// # Errors
    /// Returns `FailedPrecondition` unless the current token is live.
    pub fn schedule_expiry(
        &mut self,
        expire_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Change, Error> {
        let current = self.current.as_mut().filter(|token| token.is_live(now));
        let Some(current) = current else {
            return Err(Error::FailedPrecondition(
                "the integration has no live current token: rotate to issue one",
            ));
        };
        current.expire_time = expire_time;
        let change = Change::new(EventKind::TokenExpiryScheduled)
            .detail("token_id", current.id.as_str())
            .detail(
                "expire_time",
                expire_time.map_or_else(|| "none".to_owned(), |it| it.to_rfc3339()),
            );
        self.touch(now);
        Ok(change)
    }

    /// Revokes every token; the store then hides the integration.
    pub fn delete(&mut self, now: DateTime<Utc>) -> Change {
        let mut change =
            Change::new(EventKind::IntegrationDeleted).detail("name", self.name.as_str());
        change.retired.extend(self.current.take());
        change.retired.extend(self.previous.take());
        for token in &mut change.retired {
            token.revoke_time.get_or_insert(now);
        }
        self.touch(now);
        change
    }

    fn touch(&mut self, now: DateTime<Utc>) {
        self.update_time = now;
        self.version += 1;
    }
}

#[cfg(test)]
mod tests;
