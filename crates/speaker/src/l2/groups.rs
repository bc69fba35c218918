//! IPv6 solicited-node multicast memberships, counted per link. Two IPs whose last 24 bits agree
//! share one group (`ff02::1:ffXX:XXXX`, RFC 4291 section 2.7.1): the group is joined for the
//! first of them on a link and left only when the last one is withdrawn there, so withdrawing one
//! never stops Neighbor Solicitations for the other from arriving. Pure: the responder holds the
//! sockets and asks here when to open or close one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

/// Which answered IPs need each (solicited-node group, link index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships {
    members: BTreeMap<(Ipv6Addr, u32), BTreeSet<Ipv6Addr>>,
}

impl Memberships {
    /// Notes that `ip` is answered on link `index`; returns the group to join when it is the
    /// first IP of its group there.
    pub fn add(&mut self, ip: Ipv6Addr, index: u32) -> Option<Ipv6Addr> {
        let group = ferrolb_wire::solicited_node(ip);
        let members = self.members.entry((group, index)).or_default();
        let first = members.is_empty();
        members.insert(ip);
        first.then_some(group)
    }

    /// Notes that `ip` is no longer answered on link `index`; returns the group to leave when it
    /// was the last IP of its group there.
    pub fn remove(&mut self, ip: Ipv6Addr, index: u32) -> Option<Ipv6Addr> {
        let group = ferrolb_wire::solicited_node(ip);
        let members = self.members.get_mut(&(group, index))?;
        if !members.remove(&ip) || !members.is_empty() {
            return None;
        }
        self.members.remove(&(group, index));
        Some(group)
    }

    /// Forgets link `index` (it is gone: its memberships went with it).
    pub fn forget_link(&mut self, index: u32) {
        self.members.retain(|(_, i), _| *i != index);
    }

    /// Whether the group of `ip` is needed on link `index`.
    pub fn joined(&self, ip: Ipv6Addr, index: u32) -> bool {
        self.members
            .contains_key(&(ferrolb_wire::solicited_node(ip), index))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn withdrawing_one_of_two_ips_sharing_a_group_keeps_it_joined() {
        let mut m = Memberships::default();
        // Same last 24 bits: the same group ff02::1:ff00:10.
        let (a, b) = (ip("2001:db8::10"), ip("2001:db8:1::10"));
        assert_eq!(m.add(a, 2), Some(ip("ff02::1:ff00:10")));
        assert_eq!(m.add(b, 2), None);
        assert_eq!(m.remove(a, 2), None);
        assert!(m.joined(b, 2));
        assert_eq!(m.remove(b, 2), Some(ip("ff02::1:ff00:10")));
        assert!(!m.joined(b, 2));
    }

    #[test]
    fn links_are_counted_apart() {
        let mut m = Memberships::default();
        let a = ip("2001:db8::10");
        assert!(m.add(a, 2).is_some());
        assert!(m.add(a, 3).is_some());
        assert!(m.remove(a, 2).is_some());
        assert!(m.joined(a, 3));
        m.forget_link(3);
        assert!(!m.joined(a, 3));
        // Removing what was never added leaves nothing to do.
        assert_eq!(m.remove(a, 3), None);
    }

    proptest! {
        /// After any sequence of adds and removes, a group is joined on a link exactly while
        /// some IP of it is answered there, and every join is matched by at most one leave.
        #[test]
        fn a_group_is_joined_exactly_while_one_of_its_ips_is_answered(
            ops in proptest::collection::vec((any::<bool>(), 0u8..6, 0u32..2), 0..60)
        ) {
            let mut m = Memberships::default();
            let mut answered: BTreeSet<(Ipv6Addr, u32)> = BTreeSet::new();
            let mut joined: BTreeSet<(Ipv6Addr, u32)> = BTreeSet::new();
            for (add, n, link) in ops {
                // Six IPs in two groups (last 24 bits 0x10 or 0x11).
                let v6 = Ipv6Addr::new(0x2001, 0xdb8, u16::from(n / 2), 0, 0, 0, 0, 0x10 + u16::from(n % 2));
                if add {
                    if let Some(g) = m.add(v6, link) {
                        prop_assert!(joined.insert((g, link)));
                    }
                    answered.insert((v6, link));
                } else {
                    if let Some(g) = m.remove(v6, link) {
                        prop_assert!(joined.remove(&(g, link)));
                    }
                    answered.remove(&(v6, link));
                }
                let needed: BTreeSet<(Ipv6Addr, u32)> = answered
                    .iter()
                    .map(|(a, l)| (ferrolb_wire::solicited_node(*a), *l))
                    .collect();
                prop_assert_eq!(&needed, &joined);
            }
        }
    }
}
