//! Accounts as privint sees them: the ids of agencies and locations (owned by another system),
//! the owner of an integration, and the level it is owned at.
//!
//! It knows nothing of scopes or tokens; `scope` and `integration` build on it.

use std::fmt;

use serde::Deserialize;

use crate::domain::error::{Error, Violation};

/// The id of an agency or a location, owned by another system.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(
    // Invariant: 1..=64 characters of `[A-Za-z0-9_-]`. Ids of up to 23 bytes (most) live inline,
    // longer ones are shared: either way a copy costs no allocation.
    smol_str::SmolStr,
);

impl AccountId {
    /// Parses an account id; `field` names the request field for the error.
    ///
    /// # Errors
    /// Returns `InvalidArgument` unless `id` is 1..=64 characters of `[A-Za-z0-9_-]`.
    pub fn parse(field: &'static str, id: &str) -> Result<Self, Error> {
        Self::check(field, id)?;
        Ok(Self(smol_str::SmolStr::new(id)))
    }

    /// Checks that `id` is an account id, without copying it.
    ///
    /// # Errors
    /// Returns `InvalidArgument` unless `id` is 1..=64 characters of `[A-Za-z0-9_-]`.
    pub fn check(field: &'static str, id: &str) -> Result<(), Error> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(Violation::new(
                field,
                "must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -",
            )
            .into())
        }
    }

    /// Parses an optional account id: the empty string is `None`.
    ///
    /// # Errors
    /// As [`AccountId::parse`] for a non-empty `id`.
    pub fn parse_optional(field: &'static str, id: &str) -> Result<Option<Self>, Error> {
        if id.is_empty() {
            Ok(None)
        } else {
            Self::parse(field, id).map(Some)
        }
    }

    /// Returns the id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The level an integration is owned at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Agency,
    Location,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Agency => "agency",
            Self::Location => "location",
        })
    }
}

/// Who owns an integration: an agency, or one location of an agency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub agency_id: AccountId,
    /// `None` for an agency-level integration.
    pub location_id: Option<AccountId>,
}

impl Owner {
    /// Returns the level this owner implies.
    pub fn level(&self) -> Level {
        if self.location_id.is_some() {
            Level::Location
        } else {
            Level::Agency
        }
    }
}
