//! Address families, inclusive address ranges and the parsing of one pool entry.
//!
//! Every address is handled as a `u128` plus a [`Family`] tag (an IPv4 address is its `u32` value),
//! so ranges, run maps and counters share one integer type and never iterate addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    #[must_use]
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The other family.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::V4 => Self::V6,
            Self::V6 => Self::V4,
        }
    }

    /// Position in per-family arrays (`[v4, v6]`).
    pub(crate) fn index(self) -> usize {
        match self {
            Self::V4 => 0,
            Self::V6 => 1,
        }
    }

    /// The prefix length of a single-address CIDR, for error hints.
    fn host_prefix(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// The integer value of `ip` (IPv4 as its `u32`).
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of `family` whose integer value is `value`.
///
/// Callers only pass values taken from ranges of that family, so an IPv4 value always fits in 32
/// bits; should one not, it is clamped rather than wrapped so it can never alias a low address.
pub(crate) fn from_u128(family: Family, value: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// Whether an IPv4 value ends in `.0` or `.255`: addresses that some buggy client stacks refuse,
/// which pools with `avoidBuggyIPs` never hand out.
pub(crate) fn is_buggy_v4(value: u128) -> bool {
    matches!(value & 0xff, 0x00 | 0xff)
}

/// How many values in `[start, end]` end in `.0` or `.255`, by arithmetic (never by iteration).
fn buggy_v4_count(start: u128, end: u128) -> u128 {
    // Values `<= n` whose low byte is `low`.
    let up_to = |n: u128, low: u128| if n < low { 0 } else { (n - low) / 256 + 1 };
    let below_start = |low| if start == 0 { 0 } else { up_to(start - 1, low) };
    [0x00, 0xff]
        .into_iter()
        .map(|low| up_to(end, low) - below_start(low))
        .sum()
}

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrRange {
    family: Family,
    start: u128,
    end: u128,
}

impl AddrRange {
    /// The range `first..=last`.
    ///
    /// # Errors
    ///
    /// [`EntryError::MixedFamilies`] when the two addresses differ in family,
    /// [`EntryError::StartAfterEnd`] when `first > last`.
    pub fn new(first: IpAddr, last: IpAddr) -> Result<Self, EntryError> {
        let family = Family::of(first);
        if family != Family::of(last) {
            return Err(EntryError::MixedFamilies);
        }
        let (start, end) = (to_u128(first), to_u128(last));
        if start > end {
            return Err(EntryError::StartAfterEnd {
                start: first,
                end: last,
            });
        }
        Ok(Self { family, start, end })
    }

    /// Every address of `net`, network and broadcast address included (host bits are masked).
    #[must_use]
    pub fn from_net(net: IpNet) -> Self {
        let net = net.trunc();
        let family = Family::of(net.network());
        Self {
            family,
            start: to_u128(net.network()),
            end: to_u128(net.broadcast()),
        }
    }

    /// Parses one pool entry: a CIDR (`192.0.2.0/24`, host bits allowed and masked) or a range
    /// `first-last` (whitespace around the dash allowed). Surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// An [`EntryError`] saying why the text is not a usable entry; a bare address is refused
    /// with a hint, because silently reading it as a /32 hides typos in ranges.
    pub fn parse(text: &str) -> Result<Self, EntryError> {
        let text = text.trim();
        if let Some((first, last)) = text.split_once('-') {
            let parse = |s: &str| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| EntryError::NotCidrOrRange)
                    .and_then(refuse_mapped)
            };
            return Self::new(parse(first)?, parse(last)?);
        }
        if text.contains('/') {
            let net = text
                .parse::<IpNet>()
                .map_err(|_| EntryError::NotCidrOrRange)?;
            refuse_mapped(net.addr())?;
            return Ok(Self::from_net(net));
        }
        match text.parse::<IpAddr>() {
            Ok(ip) => Err(EntryError::BareIp {
                ip,
                prefix: Family::of(ip).host_prefix(),
            }),
            Err(_) => Err(EntryError::NotCidrOrRange),
        }
    }

    /// The family of every address in the range.
    #[must_use]
    pub fn family(&self) -> Family {
        self.family
    }

    /// The lowest address.
    #[must_use]
    pub fn first(&self) -> IpAddr {
        from_u128(self.family, self.start)
    }

    /// The highest address.
    #[must_use]
    pub fn last(&self) -> IpAddr {
        from_u128(self.family, self.end)
    }

    pub(crate) fn start(&self) -> u128 {
        self.start
    }

    pub(crate) fn end(&self) -> u128 {
        self.end
    }

    /// Whether `ip` lies in the range.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family && (self.start..=self.end).contains(&to_u128(ip))
    }

    /// The addresses both ranges hold, as `(first, last)`, or `None` when they are disjoint.
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Option<(IpAddr, IpAddr)> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (self.family == other.family && start <= end)
            .then(|| (from_u128(self.family, start), from_u128(self.family, end)))
    }

    /// The number of addresses, saturating at `u128::MAX` for `::/0`.
    #[must_use]
    pub fn size(&self) -> u128 {
        (self.end - self.start).saturating_add(1)
    }

    /// The number of addresses a pool may hand out: all of them, or for IPv4 with
    /// `avoid_buggy_ips` those not ending in `.0` or `.255`.
    pub(crate) fn usable(&self, avoid_buggy_ips: bool) -> u128 {
        if avoid_buggy_ips && self.family == Family::V4 {
            self.size() - buggy_v4_count(self.start, self.end)
        } else {
            self.size()
        }
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first(), self.last())
    }
}

/// Refuses IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`), as Kubernetes' CEL `ip()` and
/// `cidr()` do: the CRD schema rejects them, so the parser must too (one verdict for both).
fn refuse_mapped(ip: IpAddr) -> Result<IpAddr, EntryError> {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Err(EntryError::Ipv4Mapped { ip }),
        ip => Ok(ip),
    }
}

/// Why one pool entry is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Neither `a.b.c.d/n` nor `a-b`.
    #[error("not a CIDR or a range")]
    NotCidrOrRange,
    /// A single address without a prefix length.
    #[error("{ip} is a single address: use {ip}/{prefix} or a range")]
    BareIp {
        /// The address given.
        ip: IpAddr,
        /// The prefix length that would make it a one-address CIDR.
        prefix: u8,
    },
    /// `a-b` with `a > b`.
    #[error("range start {start} is after end {end}")]
    StartAfterEnd {
        /// The first address written.
        start: IpAddr,
        /// The last address written.
        end: IpAddr,
    },
    /// An IPv4-mapped IPv6 address, which Kubernetes refuses too: write the IPv4 address.
    #[error("{ip} is an IPv4-mapped IPv6 address: write the IPv4 address instead")]
    Ipv4Mapped {
        /// The address given.
        ip: IpAddr,
    },
    /// `a-b` with one IPv4 and one IPv6 address.
    #[error("range mixes IPv4 and IPv6")]
    MixedFamilies,
    /// The same addresses as an earlier entry.
    #[error("duplicate entry (same addresses as entry {earlier})")]
    Duplicate {
        /// Index of the earlier entry.
        earlier: usize,
    },
    /// Shares addresses with an earlier entry.
    #[error("entries overlap each other: {earlier} and {this}")]
    Overlap {
        /// The earlier entry's text.
        earlier: String,
        /// This entry's text.
        this: String,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_covers_network_and_broadcast_address() {
        let r = AddrRange::parse("192.0.2.0/24").unwrap();
        assert_eq!((r.first(), r.last()), (ip("192.0.2.0"), ip("192.0.2.255")));
        assert_eq!(r.size(), 256);
    }

    #[test]
    fn cidr_with_host_bits_is_masked() {
        let r = AddrRange::parse(" 192.0.2.77/24 ").unwrap();
        assert_eq!(r.first(), ip("192.0.2.0"));
        let r = AddrRange::parse("2001:db8::5/64").unwrap();
        assert_eq!(r.first(), ip("2001:db8::"));
        assert_eq!(r.last(), ip("2001:db8::ffff:ffff:ffff:ffff"));
    }

    #[test]
    fn range_allows_whitespace_around_the_dash() {
        let r = AddrRange::parse("192.0.2.10 - 192.0.2.20").unwrap();
        assert_eq!(
            (r.first(), r.last(), r.size()),
            (ip("192.0.2.10"), ip("192.0.2.20"), 11)
        );
        let r = AddrRange::parse("2001:db8::1-2001:db8::1").unwrap();
        assert_eq!(r.size(), 1);
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_are_refused_as_kubernetes_refuses_them() {
        for entry in ["::ffff:192.0.2.0/120", "::ffff:192.0.2.1-::ffff:192.0.2.9"] {
            assert!(
                matches!(AddrRange::parse(entry), Err(EntryError::Ipv4Mapped { .. })),
                "{entry}"
            );
        }
    }

    #[test]
    fn bare_address_is_refused_with_a_hint() {
        let e = AddrRange::parse("192.0.2.1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "192.0.2.1 is a single address: use 192.0.2.1/32 or a range"
        );
        let e = AddrRange::parse("2001:db8::1").unwrap_err();
        assert!(e.to_string().contains("2001:db8::1/128 or a range"), "{e}");
    }

    #[test]
    fn garbage_is_not_a_cidr_or_a_range() {
        for text in [
            "",
            "pool",
            "192.0.2.0/33",
            "192.0.2.1-",
            "192.0.2.1-x",
            "192.0.2.0/24-192.0.3.0",
        ] {
            assert_eq!(
                AddrRange::parse(text),
                Err(EntryError::NotCidrOrRange),
                "{text:?}"
            );
        }
    }

    #[test]
    fn reversed_range_names_both_ends() {
        let e = AddrRange::parse("192.0.2.9-192.0.2.1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "range start 192.0.2.9 is after end 192.0.2.1"
        );
    }

    #[test]
    fn range_mixing_families_is_refused() {
        assert_eq!(
            AddrRange::parse("192.0.2.1-2001:db8::1"),
            Err(EntryError::MixedFamilies)
        );
    }

    #[test]
    fn whole_ipv6_space_saturates_its_size() {
        assert_eq!(AddrRange::parse("::/0").unwrap().size(), u128::MAX);
    }

    #[test]
    fn buggy_addresses_are_counted_by_arithmetic() {
        let r = AddrRange::parse("192.0.2.0/24").unwrap();
        assert_eq!(r.usable(true), 254);
        assert_eq!(r.usable(false), 256);
        let r = AddrRange::parse("192.0.2.255-192.0.3.0").unwrap();
        assert_eq!(r.usable(true), 0);
        let r = AddrRange::parse("0.0.0.0/0").unwrap();
        assert_eq!(r.usable(true), (1u128 << 32) - 2 * (1 << 24));
        let r = AddrRange::parse("10.0.0.0/8").unwrap();
        assert_eq!(r.usable(true), (1 << 24) - 2 * (1 << 16));
        // A brute-force count over an odd range agrees.
        let r = AddrRange::parse("192.0.2.254-192.0.5.3").unwrap();
        let brute = (r.start()..=r.end()).filter(|&v| !is_buggy_v4(v)).count();
        assert_eq!(r.usable(true), brute as u128);
        // IPv6 has no such addresses.
        assert_eq!(
            AddrRange::parse("2001:db8::/120").unwrap().usable(true),
            256
        );
    }

    #[test]
    fn intersection_names_the_shared_addresses() {
        let a = AddrRange::parse("192.0.2.0/24").unwrap();
        let b = AddrRange::parse("192.0.2.200-192.0.3.10").unwrap();
        assert_eq!(
            a.intersection(&b),
            Some((ip("192.0.2.200"), ip("192.0.2.255")))
        );
        let c = AddrRange::parse("198.51.100.0/24").unwrap();
        assert_eq!(a.intersection(&c), None);
        let v6 = AddrRange::parse("::/0").unwrap();
        assert_eq!(a.intersection(&v6), None);
    }
}
