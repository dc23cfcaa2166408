//! IP allowlists: the networks an integration's tokens may be used from.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::domain::error::{Error, Violation};

/// The most networks one allowlist holds.
pub const MAX_NETWORKS: usize = 100;

/// The networks (IPv4 and IPv6 CIDR ranges) an integration's tokens may be used from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllowlist(
    // Invariant: 1..=MAX_NETWORKS networks, each with its host bits cleared, sorted, no
    // duplicates.
    Vec<IpNet>,
);

impl IpAllowlist {
    /// Parses CIDR ranges (`203.0.113.0/24`, `2001:db8::/32`) or single addresses; an empty
    /// list is no allowlist.
    ///
    /// # Errors
    /// Returns `InvalidArgument` on `field` for a range that does not parse, or more than
    /// [`MAX_NETWORKS`].
    pub fn parse(field: &'static str, ranges: &[String]) -> Result<Option<Self>, Error> {
        if ranges.len() > MAX_NETWORKS {
            return Err(Violation::new(field, format!("at most {MAX_NETWORKS} ranges")).into());
        }
        let mut networks = ranges
            .iter()
            .map(|range| {
                let range = range.trim();
                range
                    .parse::<IpNet>()
                    .or_else(|_| range.parse::<IpAddr>().map(IpNet::from))
                    .map(|it| it.trunc())
                    .map_err(|_| {
                        Violation::new(
                            field,
                            format!(
                                "{:?} is not a CIDR range such as 203.0.113.0/24 or 2001:db8::/32",
                                range.chars().take(64).collect::<String>()
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        networks.sort_unstable();
        networks.dedup();
        Ok((!networks.is_empty()).then_some(Self(networks)))
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|network| network.contains(&ip))
    }

    /// Returns the networks as written back: `203.0.113.0/24`.
    pub fn ranges(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Returns the networks joined by single spaces, as stored.
    pub fn joined(&self) -> String {
        self.ranges().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ranges: &[&str]) -> IpAllowlist {
        let ranges: Vec<String> = ranges.iter().map(|it| (*it).to_owned()).collect();
        IpAllowlist::parse("ip_allowlist", &ranges)
            .expect("valid")
            .expect("not empty")
    }

    #[test]
    fn ranges_of_both_families_match_their_addresses() {
        let allowlist = list(&["203.0.113.7/24", "2001:db8::/32", "198.51.100.1"]);
        assert_eq!(
            allowlist.ranges(),
            ["198.51.100.1/32", "203.0.113.0/24", "2001:db8::/32"]
        );
        for (ip, allowed) in [
            ("203.0.113.200", true),
            ("203.0.114.1", false),
            ("198.51.100.1", true),
            ("198.51.100.2", false),
            ("2001:db8:1::5", true),
            ("2001:db9::1", false),
            ("::ffff:203.0.113.9", true),
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(allowlist.allows(ip), allowed, "{ip}");
        }
    }

    #[test]
    fn bad_ranges_and_long_lists_are_refused() {
        for bad in ["10.0.0.0/33", "not-an-ip", "2001:db8::/129", ""] {
            let ranges = vec![bad.to_owned(), "10.0.0.0/8".to_owned()];
            assert!(
                IpAllowlist::parse("ip_allowlist", &ranges).is_err(),
                "{bad}"
            );
        }
        let many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert!(IpAllowlist::parse("ip_allowlist", &many).is_err());
        assert_eq!(IpAllowlist::parse("ip_allowlist", &[]).ok(), Some(None));
    }
}
