//! Who is calling a management RPC, and what they may see and change.
//!
//! The JWT is verified elsewhere (`grpc::auth`); this module only holds the verified claims
//! and the policy.

use crate::domain::account::{AccountId, Owner};
use crate::domain::error::Error;

/// The permission an agency admin needs for agency-level integrations, when `permissions` is present.
pub const AGENCY_PERMISSION: &str = "private_integrations.agency";
/// The permission an agency admin needs for location-level integrations, when `permissions` is present.
pub const LOCATIONS_PERMISSION: &str = "private_integrations.locations";

/// A user's role in their agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    AgencyAdmin,
    AgencyUser,
    LocationAdmin,
    LocationUser,
    /// A role privint does not know, or none: it grants nothing.
    None,
}

impl Role {
    /// Parses the `role` claim; anything unknown grants nothing.
    pub fn parse(role: Option<&str>) -> Self {
        match role {
            Some("agency_admin") => Self::AgencyAdmin,
            Some("agency_user") => Self::AgencyUser,
            Some("location_admin") => Self::LocationAdmin,
            Some("location_user") => Self::LocationUser,
            _ => Self::None,
        }
    }
}

/// The verified identity of a management caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The `sub` claim.
    pub user_id: String,
    pub agency_id: Option<AccountId>,
    pub role: Role,
    pub location_ids: Vec<AccountId>,
    /// `None` when the claim is absent, which restricts nothing.
    pub permissions: Option<Vec<String>>,
}

impl Caller {
    /// Returns true if the caller may see what `owner` owns: integrations and their events.
    pub fn can_view(&self, owner: &Owner) -> bool {
        if self.agency_id.as_ref() != Some(&owner.agency_id) {
            return false;
        }
        match self.role {
            Role::AgencyAdmin | Role::AgencyUser => true,
            Role::LocationAdmin | Role::LocationUser => owner
                .location_id
                .as_ref()
                .is_some_and(|location_id| self.location_ids.contains(location_id)),
            Role::None => false,
        }
    }

    /// Returns true if the caller may create, change and delete what `owner` owns.
    pub fn can_manage(&self, owner: &Owner) -> bool {
        if !self.can_view(owner) {
            return false;
        }
        match (self.role, &owner.location_id) {
            (Role::AgencyAdmin, None) => self.has_permission(AGENCY_PERMISSION),
            (Role::AgencyAdmin, Some(_)) => self.has_permission(LOCATIONS_PERMISSION),
            // `can_view` already checked the location is one of the caller's.
            (Role::LocationAdmin, Some(_)) => true,
            _ => false,
        }
    }

    /// Checks the caller may see an existing thing of `owner`, hiding its existence otherwise.
    ///
    /// # Errors
    /// Returns `NotFound` for `entity` `id` if the caller may not see it.
    pub fn check_view(&self, owner: &Owner, entity: &'static str, id: &str) -> Result<(), Error> {
        if self.can_view(owner) {
            Ok(())
        } else {
            Err(Error::NotFound {
                entity,
                id: id.to_owned(),
            })
        }
    }

    /// Checks the caller may change an existing thing of `owner`.
    ///
    /// # Errors
    /// Returns `NotFound` if the caller may not see it, `PermissionDenied` if they may see but not change it.
    pub fn check_manage(&self, owner: &Owner, entity: &'static str, id: &str) -> Result<(), Error> {
        self.check_view(owner, entity, id)?;
        self.check_manage_account(owner)
    }

    /// Checks the caller may manage integrations of the account the request names.
    ///
    /// # Errors
    /// Returns `PermissionDenied` otherwise; the request named the account, so nothing leaks.
    pub fn check_manage_account(&self, owner: &Owner) -> Result<(), Error> {
        if self.can_manage(owner) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(
                "the caller may not manage private integrations of this account",
            ))
        }
    }

    /// Checks the caller may list what the account the request names owns.
    ///
    /// # Errors
    /// Returns `PermissionDenied` otherwise.
    pub fn check_view_account(&self, owner: &Owner) -> Result<(), Error> {
        if self.can_view(owner) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(
                "the caller may not see private integrations of this account",
            ))
        }
    }

    fn has_permission(&self, permission: &str) -> bool {
        self.permissions
            .as_ref()
            .is_none_or(|permissions| permissions.iter().any(|it| it == permission))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> AccountId {
        AccountId::parse("test", id).expect("valid account id")
    }

    fn caller(role: Role, locations: &[&str], permissions: Option<&[&str]>) -> Caller {
        Caller {
            user_id: "user1".into(),
            agency_id: Some(account("agency1")),
            role,
            location_ids: locations.iter().copied().map(account).collect(),
            permissions: permissions.map(|it| it.iter().map(|p| (*p).to_owned()).collect()),
        }
    }

    fn agency_level(agency: &str) -> Owner {
        Owner {
            agency_id: account(agency),
            location_id: None,
        }
    }

    fn location_level(agency: &str, location: &str) -> Owner {
        Owner {
            agency_id: account(agency),
            location_id: Some(account(location)),
        }
    }

    #[track_caller]
    fn check(caller: &Caller, owner: Owner, view: bool, manage: bool) {
        assert_eq!(
            (caller.can_view(&owner), caller.can_manage(&owner)),
            (view, manage),
            "{caller:?} on {owner:?}"
        );
    }

    #[test]
    fn policy() {
        let admin = caller(Role::AgencyAdmin, &[], None);
        check(&admin, agency_level("agency1"), true, true);
        check(&admin, location_level("agency1", "loc9"), true, true);
        check(&admin, agency_level("agency2"), false, false);
        check(&admin, location_level("agency2", "loc9"), false, false);

        let agency_only = caller(Role::AgencyAdmin, &[], Some(&[AGENCY_PERMISSION]));
        check(&agency_only, agency_level("agency1"), true, true);
        check(&agency_only, location_level("agency1", "loc1"), true, false);
        let locations_only = caller(Role::AgencyAdmin, &[], Some(&[LOCATIONS_PERMISSION]));
        check(&locations_only, agency_level("agency1"), true, false);
        check(
            &locations_only,
            location_level("agency1", "loc1"),
            true,
            true,
        );

        let location_admin = caller(Role::LocationAdmin, &["loc1"], None);
        check(
            &location_admin,
            location_level("agency1", "loc1"),
            true,
            true,
        );
        check(
            &location_admin,
            location_level("agency1", "loc2"),
            false,
            false,
        );
        check(&location_admin, agency_level("agency1"), false, false);
        check(
            &location_admin,
            location_level("agency2", "loc1"),
            false,
            false,
        );

        check(
            &caller(Role::AgencyUser, &[], None),
            agency_level("agency1"),
            true,
            false,
        );
        check(
            &caller(Role::LocationUser, &["loc1"], None),
            location_level("agency1", "loc1"),
            true,
            false,
        );
        check(
            &caller(Role::None, &["loc1"], None),
            location_level("agency1", "loc1"),
            false,
            false,
        );
        check(
            &caller(Role::None, &[], None),
            agency_level("agency1"),
            false,
            false,
        );
    }
}
