//! Address pools: the operator's spec ([`PoolSpec`]), its validation into a [`Pool`], and which
//! Services a pool admits (`serviceAllocation`).

use std::fmt;
use std::net::IpAddr;

use crate::range::{AddrRange, EntryError, Family, is_buggy_v4, to_u128};
use crate::request::ServiceRequest;
use crate::selector::LabelSelector;

/// Which Services may take addresses from a pool, and in which order pools are tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceAllocation {
    /// Lower is tried first; `None` and `Some(0)` come after every positive priority.
    pub priority: Option<u32>,
    /// Namespaces whose Services are admitted.
    pub namespaces: Vec<String>,
    /// Namespaces (by their labels) whose Services are admitted.
    pub namespace_selectors: Vec<LabelSelector>,
    /// Services (by their labels) that are admitted.
    pub service_selectors: Vec<LabelSelector>,
}

/// A pool as the operator wrote it (the `IPAddressPool` spec plus its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// The pool's name.
    pub name: String,
    /// CIDRs (`192.0.2.0/24`) and ranges (`192.0.2.10-192.0.2.20`).
    pub addresses: Vec<String>,
    /// Whether Services that name neither this pool nor one of its IPs may get addresses from it.
    pub auto_assign: bool,
    /// Never hand out (nor accept requests for) IPv4 addresses ending in `.0` or `.255`.
    pub avoid_buggy_ips: bool,
    /// Which Services the pool admits; `None` admits all.
    pub service_allocation: Option<ServiceAllocation>,
    /// The `IPAddressPool` is being deleted (a finalizer holds it while Services use it): the
    /// pool keeps its assignments and its addresses, but gives out no new address.
    pub draining: bool,
}

impl PoolSpec {
    /// An `autoAssign` pool admitting every Service, with the given entries.
    #[must_use]
    pub fn new(name: &str, addresses: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
            draining: false,
        }
    }

    /// Turns `autoAssign` off: only Services naming the pool or one of its IPs use it.
    #[must_use]
    pub fn manual(mut self) -> Self {
        self.auto_assign = false;
        self
    }

    /// Turns `avoidBuggyIPs` on.
    #[must_use]
    pub fn avoiding_buggy_ips(mut self) -> Self {
        self.avoid_buggy_ips = true;
        self
    }

    /// Sets `serviceAllocation`.
    #[must_use]
    pub fn allocation(mut self, allocation: ServiceAllocation) -> Self {
        self.service_allocation = Some(allocation);
        self
    }

    /// Marks the pool as being deleted: it keeps what Services hold and gives out nothing new.
    #[must_use]
    pub fn draining(mut self) -> Self {
        self.draining = true;
        self
    }
}

/// Why a [`PoolSpec`] is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// `addresses` is empty.
    #[error("pool {pool:?} has no addresses")]
    NoAddresses {
        /// The pool's name.
        pool: String,
    },
    /// One entry of `addresses` is unusable.
    #[error("pool {pool:?}, entry {index} ({entry:?}): {reason}")]
    InvalidEntry {
        /// The pool's name.
        pool: String,
        /// Position of the entry in `addresses`.
        index: usize,
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: EntryError,
    },
}

/// Why a pool with `serviceAllocation` does not admit a Service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ineligible {
    /// Neither `namespaces` nor `namespaceSelectors` match.
    #[error(
        "namespace {namespace:?} is not in its namespaces and matches none of its namespaceSelectors"
    )]
    Namespace {
        /// The Service's namespace.
        namespace: String,
    },
    /// No `serviceSelectors` entry matches.
    #[error("the service's labels match none of its serviceSelectors")]
    ServiceLabels,
}

/// A validated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    name: String,
    ranges: Vec<AddrRange>,
    auto_assign: bool,
    avoid_buggy_ips: bool,
    service_allocation: Option<ServiceAllocation>,
    draining: bool,
}

impl Pool {
    /// Validates `spec`: every entry a CIDR or a range, none repeating or overlapping another.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoAddresses`] for an empty list, else [`PoolError::InvalidEntry`] for the
    /// first bad entry (for overlaps: the later of the first overlapping pair).
    pub fn parse(spec: PoolSpec) -> Result<Self, PoolError> {
        let PoolSpec {
            name,
            addresses,
            auto_assign,
            avoid_buggy_ips,
            service_allocation,
            draining,
        } = spec;
        if addresses.is_empty() {
            return Err(PoolError::NoAddresses { pool: name });
        }
        let invalid = |index: usize, reason| PoolError::InvalidEntry {
            pool: name.clone(),
            index,
            entry: addresses[index].clone(),
            reason,
        };
        let mut ranges: Vec<AddrRange> = Vec::with_capacity(addresses.len());
        for (index, text) in addresses.iter().enumerate() {
            let range = AddrRange::parse(text).map_err(|reason| invalid(index, reason))?;
            // Pools hold a handful of entries, so comparing each with the earlier ones is cheap.
            if let Some(earlier) = ranges.iter().position(|r| r.intersection(&range).is_some()) {
                let reason = if ranges[earlier] == range {
                    EntryError::Duplicate { earlier }
                } else {
                    EntryError::Overlap {
                        earlier: addresses[earlier].trim().to_owned(),
                        this: text.trim().to_owned(),
                    }
                };
                return Err(invalid(index, reason));
            }
            ranges.push(range);
        }
        Ok(Self {
            name,
            ranges,
            auto_assign,
            avoid_buggy_ips,
            service_allocation,
            draining,
        })
    }

    /// The pool's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address ranges, in spec order.
    #[must_use]
    pub fn ranges(&self) -> &[AddrRange] {
        &self.ranges
    }

    /// Whether Services naming neither the pool nor its IPs may use it.
    #[must_use]
    pub fn auto_assign(&self) -> bool {
        self.auto_assign
    }

    /// Whether IPv4 addresses ending in `.0` / `.255` are excluded.
    #[must_use]
    pub fn avoid_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips
    }

    /// The `serviceAllocation`, if any.
    #[must_use]
    pub fn service_allocation(&self) -> Option<&ServiceAllocation> {
        self.service_allocation.as_ref()
    }

    /// Whether the pool is being deleted: Services keep the IPs they hold in it, but it gives
    /// out no new address (not automatically, not by name, not by requested IP).
    #[must_use]
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Whether `ip` is one this pool never hands out because of `avoid_buggy_ips`.
    #[must_use]
    pub fn is_buggy(&self, ip: IpAddr) -> bool {
        self.avoid_buggy_ips && Family::of(ip) == Family::V4 && is_buggy_v4(to_u128(ip))
    }

    /// Whether any range of the pool holds `ip`.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether the pool admits the Service: both the namespace part and the service part of
    /// `serviceAllocation` must match. A pool without `serviceAllocation` admits every Service.
    ///
    /// # Errors
    ///
    /// The part that does not match.
    pub fn admits(&self, req: &ServiceRequest) -> Result<(), Ineligible> {
        let Some(sa) = &self.service_allocation else {
            return Ok(());
        };
        let namespace_ok = (sa.namespaces.is_empty() && sa.namespace_selectors.is_empty())
            || sa.namespaces.contains(&req.namespace)
            || sa
                .namespace_selectors
                .iter()
                .any(|s| s.matches(&req.namespace_labels));
        if !namespace_ok {
            return Err(Ineligible::Namespace {
                namespace: req.namespace.clone(),
            });
        }
        if !sa.service_selectors.is_empty()
            && !sa.service_selectors.iter().any(|s| s.matches(&req.labels))
        {
            return Err(Ineligible::ServiceLabels);
        }
        Ok(())
    }

    /// Where the pool sorts among automatic candidates: pools with `serviceAllocation` by
    /// priority (unset or 0 last), then the others; ties by name.
    pub(crate) fn candidate_rank(&self) -> (u8, u32, &str) {
        match &self.service_allocation {
            Some(sa) => match sa.priority {
                Some(p) if p > 0 => (0, p, &self.name),
                _ => (1, 0, &self.name),
            },
            None => (2, 0, &self.name),
        }
    }
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} [", self.name)?;
        for (i, r) in self.ranges.iter().enumerate() {
            write!(f, "{}{r}", if i == 0 { "" } else { ", " })?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::selector::SelectorOperator;

    fn parse(addresses: &[&str]) -> Result<Pool, PoolError> {
        Pool::parse(PoolSpec::new("blue", addresses))
    }

    fn error(addresses: &[&str]) -> String {
        parse(addresses).unwrap_err().to_string()
    }

    #[test]
    fn valid_entries_keep_spec_order() {
        let pool = parse(&[
            "198.51.100.0/24",
            " 192.0.2.10 - 192.0.2.20 ",
            "2001:db8::/64",
        ])
        .unwrap();
        let firsts: Vec<String> = pool
            .ranges()
            .iter()
            .map(|r| r.first().to_string())
            .collect();
        assert_eq!(firsts, ["198.51.100.0", "192.0.2.10", "2001:db8::"]);
        assert_eq!(
            pool.to_string(),
            "\"blue\" [198.51.100.0-198.51.100.255, 192.0.2.10-192.0.2.20, 2001:db8::-2001:db8::ffff:ffff:ffff:ffff]"
        );
    }

    #[test]
    fn empty_address_list_is_an_error() {
        assert_eq!(error(&[]), "pool \"blue\" has no addresses");
    }

    #[test]
    fn bad_entry_error_names_pool_index_text_and_reason() {
        assert_eq!(
            error(&["192.0.2.0/24", "nonsense"]),
            "pool \"blue\", entry 1 (\"nonsense\"): not a CIDR or a range"
        );
        assert_eq!(
            error(&["192.0.2.9-192.0.2.1"]),
            "pool \"blue\", entry 0 (\"192.0.2.9-192.0.2.1\"): range start 192.0.2.9 is after end 192.0.2.1"
        );
        assert!(error(&["192.0.2.1-2001:db8::1"]).ends_with("range mixes IPv4 and IPv6"));
        assert!(error(&["192.0.2.7"]).ends_with("use 192.0.2.7/32 or a range"));
    }

    #[test]
    fn duplicate_entry_is_an_error_even_when_written_differently() {
        let e = parse(&["192.0.2.0/24", "192.0.2.0-192.0.2.255"]).unwrap_err();
        assert!(matches!(
            e,
            PoolError::InvalidEntry {
                index: 1,
                reason: EntryError::Duplicate { earlier: 0 },
                ..
            }
        ));
        assert!(e.to_string().contains("duplicate entry"), "{e}");
    }

    #[test]
    fn overlapping_entries_are_named_both() {
        assert_eq!(
            error(&["192.0.2.0/25", "192.0.2.100-192.0.2.200"]),
            "pool \"blue\", entry 1 (\"192.0.2.100-192.0.2.200\"): entries overlap each other: 192.0.2.0/25 and 192.0.2.100-192.0.2.200"
        );
    }

    #[test]
    fn same_numbers_in_two_families_do_not_overlap() {
        assert!(parse(&["0.0.0.0/30", "::/126"]).is_ok());
    }

    #[test]
    fn buggy_addresses_are_only_ipv4_ending_in_0_or_255_when_avoided() {
        let plain = parse(&["192.0.2.0/24"]).unwrap();
        let avoid = Pool::parse(
            PoolSpec::new("a", &["192.0.2.0/24", "2001:db8::/120"]).avoiding_buggy_ips(),
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(!plain.is_buggy(ip("192.0.2.0")));
        assert!(avoid.is_buggy(ip("192.0.2.0")) && avoid.is_buggy(ip("192.0.2.255")));
        assert!(!avoid.is_buggy(ip("192.0.2.1")) && !avoid.is_buggy(ip("2001:db8::ff")));
    }

    fn allocation_pool(sa: ServiceAllocation) -> Pool {
        Pool::parse(PoolSpec::new("p", &["192.0.2.0/24"]).allocation(sa)).unwrap()
    }

    #[test]
    fn pool_without_service_allocation_admits_everyone() {
        assert!(
            parse(&["192.0.2.0/24"])
                .unwrap()
                .admits(&ServiceRequest::new("any", "svc"))
                .is_ok()
        );
    }

    #[test]
    fn empty_service_allocation_admits_everyone() {
        assert!(
            allocation_pool(ServiceAllocation::default())
                .admits(&ServiceRequest::new("x", "y"))
                .is_ok()
        );
    }

    #[test]
    fn namespace_list_or_selector_admits() {
        let pool = allocation_pool(ServiceAllocation {
            namespaces: vec!["shop".into()],
            namespace_selectors: vec![LabelSelector::labels([("team", "red")])],
            ..ServiceAllocation::default()
        });
        assert!(pool.admits(&ServiceRequest::new("shop", "web")).is_ok());
        assert!(
            pool.admits(&ServiceRequest::new("other", "web").namespace_label("team", "red"))
                .is_ok()
        );
        let e = pool
            .admits(&ServiceRequest::new("other", "web"))
            .unwrap_err();
        assert_eq!(
            e,
            Ineligible::Namespace {
                namespace: "other".into()
            }
        );
    }

    #[test]
    fn service_selectors_must_match_as_well_as_the_namespace() {
        let pool = allocation_pool(ServiceAllocation {
            namespaces: vec!["shop".into()],
            service_selectors: vec![
                LabelSelector::labels([("app", "web")]),
                LabelSelector::default().with_expression("tier", SelectorOperator::In, &["edge"]),
            ],
            ..ServiceAllocation::default()
        });
        assert!(
            pool.admits(&ServiceRequest::new("shop", "a").label("app", "web"))
                .is_ok()
        );
        assert!(
            pool.admits(&ServiceRequest::new("shop", "b").label("tier", "edge"))
                .is_ok()
        );
        assert_eq!(
            pool.admits(&ServiceRequest::new("shop", "c")),
            Err(Ineligible::ServiceLabels)
        );
        let e = pool
            .admits(&ServiceRequest::new("else", "a").label("app", "web"))
            .unwrap_err();
        assert!(matches!(e, Ineligible::Namespace { .. }));
    }

    #[test]
    fn candidate_rank_puts_priorities_first_unset_and_zero_next_plain_pools_last() {
        let with = |p| {
            Pool::parse(
                PoolSpec::new("n", &["192.0.2.0/24"]).allocation(ServiceAllocation {
                    priority: p,
                    ..ServiceAllocation::default()
                }),
            )
            .unwrap()
        };
        let plain = parse(&["192.0.2.0/24"]).unwrap();
        assert!(with(Some(1)).candidate_rank() < with(Some(2)).candidate_rank());
        assert!(with(Some(50)).candidate_rank() < with(Some(0)).candidate_rank());
        assert_eq!(with(Some(0)).candidate_rank(), with(None).candidate_rank());
        assert!(with(None).candidate_rank() < plain.candidate_rank());
    }
}
