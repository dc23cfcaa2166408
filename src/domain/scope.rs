//! Scopes, sets of scopes, and the scope catalog they are checked against.
//!
//! The catalog is data (`scopes.toml`, overridable by config); this module only validates it
//! and answers questions about it. It does not read files.
//!
//! Size: the catalog and the set arithmetic, each with its table-driven and property tests.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::domain::account::Level;
use crate::domain::error::{Error, Violation};

/// The longest scope name accepted.
const MAX_SCOPE_LEN: usize = 100;
/// The most scopes one integration or one Authorize request may name.
pub const MAX_SCOPES: usize = 200;

/// A scope name such as `contacts.readonly` or `calendars/events.write`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(
    // Invariant: 1..=100 characters of `[A-Za-z0-9._/-]`.
    String,
);

impl Scope {
    /// Parses a scope name; it says nothing of whether the catalog knows it.
    ///
    /// # Errors
    /// Returns `None` unless `name` is 1..=100 characters of `[A-Za-z0-9._/-]`.
    pub fn parse(name: &str) -> Option<Self> {
        is_valid_name(name).then(|| Self(name.to_owned()))
    }

    /// Parses the scope names of a request field: at most `MAX_SCOPES`, each a scope name.
    ///
    /// # Errors
    /// Returns `InvalidArgument` on `field` if there are too many, or for the first name that
    /// cannot be a scope (so no catalog knows it).
    pub fn parse_list(field: &'static str, names: &[String]) -> Result<Vec<Self>, Error> {
        if names.len() > MAX_SCOPES {
            return Err(
                Violation::new(field, format!("at most {MAX_SCOPES} scopes are allowed")).into(),
            );
        }
        names
            .iter()
            .map(|name| {
                Self::parse(name).ok_or_else(|| {
                    Violation::new(field, format!("unknown scope {:?}", truncated(name))).into()
                })
            })
            .collect()
    }

    /// Returns the scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Returns true if `name` is 1..=100 characters of `[A-Za-z0-9._/-]`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCOPE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// `Scope` orders as its name does, so maps keyed by `Scope` can be searched by `&str`.
impl Borrow<str> for Scope {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of scopes, kept sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(
    // Invariant: sorted ascending, no duplicates.
    Vec<Scope>,
);

impl ScopeSet {
    /// Returns the set of the given scopes.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let set: BTreeSet<Scope> = scopes.into_iter().collect();
        Self(set.into_iter().collect())
    }

    /// Returns the scopes in ascending order.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// Returns true if the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns true if the scope named `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.0
            .binary_search_by(|scope| scope.as_str().cmp(name))
            .is_ok()
    }

    /// Returns the names joined by single spaces, as stored and shown in events.
    pub fn joined(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(Scope::as_str).collect();
        names.join(" ")
    }
}

/// The most scopes a catalog may list: a grant is a set of bits, one per catalog scope.
pub const MAX_CATALOG_SCOPES: usize = 128;

/// A set of catalog scopes as bits, one per scope in the catalog's order: what the token index
/// keeps and the decision compares, without a string in sight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeBits(
    // Two words rather than a u128, whose 16-byte alignment would pad every grant.
    [u64; 2],
);

impl ScopeBits {
    /// Returns the scopes of `required` this set lacks.
    pub fn missing(self, required: Self) -> Self {
        Self([required.0[0] & !self.0[0], required.0[1] & !self.0[1]])
    }

    /// Returns true if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == [0, 0]
    }

    /// Returns the set as two words (positions 0 to 63, then 64 to 127), for atomics.
    pub fn words(self) -> [u64; 2] {
        self.0
    }

    /// Returns the set of two words (positions 0 to 63, then 64 to 127).
    pub fn from_words(words: [u64; 2]) -> Self {
        Self(words)
    }

    fn with(mut self, position: usize) -> Self {
        self.0[position / 64] |= 1 << (position % 64);
        self
    }

    fn positions(self) -> impl Iterator<Item = usize> {
        (0..MAX_CATALOG_SCOPES)
            .filter(move |position| self.0[position / 64] & (1 << (position % 64)) != 0)
    }
}

/// One entry of the scope catalog, as written in `scopes.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeEntry {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The levels at which the scope may be granted: `agency`, `location` or both.
    pub levels: Vec<Level>,
}

/// The file form of the catalog.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    scope: Vec<ScopeEntry>,
}

/// The scope catalog: every scope that may be granted, and at which levels.
#[derive(Debug, Clone)]
pub struct Catalog {
    // Invariant: every key is a valid `Scope` and every entry has at least one level; at most
    // `MAX_CATALOG_SCOPES` entries.
    entries: BTreeMap<Scope, ScopeEntry>,
    /// The scopes in order: a scope's position is its bit in `ScopeBits`.
    scopes: Vec<Scope>,
    /// Each scope's position, found without walking the tree (hashed with foldhash: the names
    /// are the catalog's, not an attacker's choice of keys).
    positions: HashMap<Scope, usize>,
}

impl Catalog {
    /// Parses a catalog from its TOML text.
    ///
    /// # Errors
    /// Returns a message naming the first bad entry.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|err| format!("invalid scope catalog: {err}"))?;
        let mut entries = BTreeMap::new();
        for entry in file.scope {
            let scope = Scope::parse(&entry.name)
                .ok_or_else(|| format!("invalid scope name {:?}", entry.name))?;
            if entry.levels.is_empty() {
                return Err(format!("scope {scope} has no level"));
            }
            if entries.insert(scope.clone(), entry).is_some() {
                return Err(format!("scope {scope} is listed twice"));
            }
        }
        if entries.is_empty() {
            return Err("the scope catalog is empty".to_owned());
        }
        if entries.len() > MAX_CATALOG_SCOPES {
            return Err(format!(
                "the scope catalog lists {} scopes; at most {MAX_CATALOG_SCOPES} are supported",
                entries.len()
            ));
        }
        let scopes: Vec<Scope> = entries.keys().cloned().collect();
        let positions = scopes
            .iter()
            .enumerate()
            .map(|(position, scope)| (scope.clone(), position))
            .collect();
        Ok(Self {
            entries,
            scopes,
            positions,
        })
    }

    /// Returns the bits of the catalog scopes in `scopes`; a scope the catalog no longer lists
    /// has no bit (it cannot be required either).
    pub fn bits(&self, scopes: &ScopeSet) -> ScopeBits {
        scopes
            .as_slice()
            .iter()
            .filter_map(|scope| self.positions.get(scope.as_str()))
            .fold(ScopeBits::default(), |bits, position| bits.with(*position))
    }

    /// Returns the scopes of `bits`, in catalog order.
    pub fn scopes(&self, bits: ScopeBits) -> impl Iterator<Item = &Scope> {
        bits.positions()
            .filter_map(|position| self.scopes.get(position))
    }

    /// Returns the entries allowed at `level` (all of them for `None`), ordered by name.
    pub fn entries(&self, level: Option<Level>) -> impl Iterator<Item = &ScopeEntry> {
        self.entries
            .values()
            .filter(move |entry| level.is_none_or(|level| entry.levels.contains(&level)))
    }

    /// Returns true if the catalog knows the scope named `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Returns the scopes an Authorize request requires: each must be in the catalog, at any
    /// level. Nothing is copied.
    ///
    /// # Errors
    /// Returns `InvalidArgument` on `field` if there are too many or one is unknown.
    pub fn required(&self, field: &'static str, names: &[String]) -> Result<ScopeBits, Error> {
        if names.len() > MAX_SCOPES {
            return Err(
                Violation::new(field, format!("at most {MAX_SCOPES} scopes are allowed")).into(),
            );
        }
        let mut bits = ScopeBits::default();
        for name in names {
            match self.positions.get(name.as_str()) {
                Some(position) => bits = bits.with(*position),
                None => {
                    let message = format!("unknown scope {:?}", truncated(name));
                    return Err(Violation::new(field, message).into());
                }
            }
        }
        Ok(bits)
    }

    /// Checks the scopes an integration at `level` is to be granted.
    ///
    /// # Errors
    /// Returns `InvalidArgument` on `field` if the set is empty or if a scope is unknown or not
    /// allowed at `level`.
    pub fn grant(
        &self,
        field: &'static str,
        scopes: &[Scope],
        level: Level,
    ) -> Result<ScopeSet, Error> {
        if scopes.is_empty() {
            return Err(Violation::new(field, "at least one scope is required").into());
        }
        for scope in scopes {
            let Some(entry) = self.entries.get(scope) else {
                return Err(
                    Violation::new(field, format!("unknown scope {:?}", scope.as_str())).into(),
                );
            };
            if !entry.levels.contains(&level) {
                return Err(Violation::new(
                    field,
                    format!("scope {scope} is not allowed at {level} level"),
                )
                .into());
            }
        }
        Ok(ScopeSet::new(scopes.iter().cloned()))
    }
}

/// Returns at most 100 characters of untrusted input, for an error message.
pub(crate) fn truncated(input: &str) -> String {
    input.chars().take(MAX_SCOPE_LEN).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // The set arithmetic Authorize once ran on names, kept as the oracle the scope bits are
    // checked against.
    impl ScopeSet {
        fn permits<S: AsRef<str>>(&self, required: &[S]) -> bool {
            required.iter().all(|name| self.contains(name.as_ref()))
        }

        fn missing<'a, S: AsRef<str>>(
            &'a self,
            required: &'a [S],
        ) -> impl Iterator<Item = &'a str> + 'a {
            required
                .iter()
                .map(AsRef::as_ref)
                .filter(|name| !self.contains(name))
        }
    }

    fn set(names: &[&str]) -> ScopeSet {
        ScopeSet::new(
            names
                .iter()
                .map(|name| Scope::parse(name).expect("valid scope")),
        )
    }

    #[track_caller]
    fn check_permits(granted: &[&str], required: &[&str], expect: bool) {
        assert_eq!(
            set(granted).permits(set(required).as_slice()),
            expect,
            "{granted:?} permits {required:?}"
        );
    }

    #[test]
    fn permits() {
        check_permits(&["a.readonly"], &[], true);
        check_permits(&["a.readonly", "b.write"], &["b.write"], true);
        check_permits(&["a.readonly", "b.write"], &["b.write", "a.readonly"], true);
        check_permits(&["a.readonly"], &["a.write"], false);
        check_permits(&[], &["a.readonly"], false);
        check_permits(&["a.readonly"], &["a.readonly", "b.write"], false);
    }

    #[test]
    fn scope_name_syntax() {
        for good in [
            "contacts.readonly",
            "calendars/events.write",
            "saas/company.read",
            "x",
        ] {
            assert!(Scope::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "contacts readonly",
            "contacts.readonly\n",
            "ü",
            &"a".repeat(101),
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_shipped_catalog_parses() {
        let catalog = Catalog::from_toml(include_str!("../../scopes.toml")).expect("valid catalog");
        assert!(catalog.knows("companies.readonly"));
        assert!(!catalog.knows("companies.write"));
        assert!(
            catalog
                .grant(
                    "scopes",
                    &[Scope::parse("companies.readonly").expect("valid")],
                    Level::Location
                )
                .is_err()
        );
        assert!(
            catalog
                .grant(
                    "scopes",
                    &[Scope::parse("companies.readonly").expect("valid")],
                    Level::Agency
                )
                .is_ok()
        );
    }

    fn shipped() -> Catalog {
        Catalog::from_toml(include_str!("../../scopes.toml")).expect("valid catalog")
    }

    /// Up to eight names from the shipped catalog.
    fn catalog_names() -> impl Strategy<Value = Vec<String>> {
        let names: Vec<String> = shipped()
            .scopes
            .iter()
            .map(|it| it.as_str().to_owned())
            .collect();
        prop::collection::vec(prop::sample::select(names), 0..8)
    }

    fn scope_names() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[a-e]{1,2}\\.(readonly|write)", 0..8)
    }

    proptest! {
        #[test]
        fn subset_implies_permits(granted in scope_names(), pick in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            let granted_set = ScopeSet::new(granted.iter().filter_map(|name| Scope::parse(name)));
            let required: Vec<Scope> = if granted_set.is_empty() { vec![] } else {
                pick.iter().map(|index| index.get(granted_set.as_slice()).clone()).collect()
            };
            prop_assert!(granted_set.permits(ScopeSet::new(required).as_slice()));
        }

        #[test]
        fn permits_iff_nothing_missing(granted in scope_names(), required in scope_names()) {
            let granted = ScopeSet::new(granted.iter().filter_map(|name| Scope::parse(name)));
            prop_assert_eq!(granted.permits(&required), granted.missing(&required).next().is_none());
        }

        #[test]
        fn bits_agree_with_sets(granted in catalog_names(), required in catalog_names()) {
            let catalog = shipped();
            let set = |names: &[String]| ScopeSet::new(names.iter().filter_map(|name| Scope::parse(name)));
            let (granted_set, required_set) = (set(&granted), set(&required));
            let (granted_bits, required_bits) = (catalog.bits(&granted_set), catalog.required("f", &required).expect("known"));
            prop_assert_eq!(required_bits, catalog.bits(&required_set));
            let missing = granted_bits.missing(required_bits);
            prop_assert_eq!(missing.is_empty(), granted_set.permits(&required));
            let missing_names: Vec<&str> = catalog.scopes(missing).map(Scope::as_str).collect();
            let expected: Vec<&str> = required_set.as_slice().iter().map(Scope::as_str).filter(|name| !granted_set.contains(name)).collect();
            prop_assert_eq!(missing_names, expected);
        }

        #[test]
        fn sets_are_sorted_and_deduplicated(names in scope_names()) {
            let scopes = ScopeSet::new(names.iter().filter_map(|name| Scope::parse(name)));
            prop_assert!(scopes.as_slice().windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
