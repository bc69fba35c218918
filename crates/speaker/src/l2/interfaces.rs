//! Which interfaces of a node answer for its IPs. Pure: the responder reads the interfaces from
//! the kernel and asks here.
//!
//! With an L2Advertisement naming interfaces, exactly those (that exist and are usable). Without,
//! every interface that is up, has a MAC, answers ARP (not NOARP), is not enslaved to a bond or
//! bridge (the master answers for it), and does not match the exclude list.

use crate::election::Interfaces;

/// Interface names skipped when no L2Advertisement names interfaces: loopback, container and
/// CNI plumbing, tunnels, and kube-proxy's IPVS dummy.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "lo",
    "docker*",
    "veth*",
    "cali*",
    "flannel*",
    "cni*",
    "cilium*",
    "kube-ipvs*",
    "lxc*",
    "tunl*",
    "vxlan*",
    "nodelocaldns*",
];

/// What the responder knows of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// Administratively and operationally up.
    pub up: bool,
    /// Hardware address, if it has one.
    pub mac: Option<[u8; 6]>,
    /// IFF_NOARP set.
    pub noarp: bool,
    /// Enslaved to a bond or bridge.
    pub has_master: bool,
}

/// Whether `name` matches `pattern` (`*` at the end matches any suffix).
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

fn usable(link: &LinkInfo) -> bool {
    link.up && link.mac.is_some_and(|m| m != [0; 6]) && !link.noarp && !link.has_master
}

/// The interfaces to answer on, in name order.
pub fn select(links: &[LinkInfo], wanted: &Interfaces, excludes: &[String]) -> Vec<String> {
    let mut chosen: Vec<String> = links
        .iter()
        .filter(|l| usable(l))
        .filter(|l| match wanted {
            Interfaces::Named(names) => names.contains(&l.name),
            Interfaces::All => !excludes.iter().any(|p| matches(p, &l.name)),
        })
        .map(|l| l.name.clone())
        .collect();
    chosen.sort();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn link(name: &str) -> LinkInfo {
        LinkInfo {
            name: name.into(),
            up: true,
            mac: Some([2, 0, 0, 0, 0, 1]),
            noarp: false,
            has_master: false,
        }
    }

    fn excludes() -> Vec<String> {
        DEFAULT_EXCLUDES.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn all_means_every_usable_interface_outside_the_exclude_list() {
        let mut down = link("eth2");
        down.up = false;
        let mut enslaved = link("eth3");
        enslaved.has_master = true;
        let mut noarp = link("wg0");
        noarp.noarp = true;
        let mut nomac = link("tun0");
        nomac.mac = None;
        let links = [
            link("eth0"),
            link("bond0"),
            link("lo"),
            link("veth12ab"),
            link("cali9"),
            link("kube-ipvs0"),
            down,
            enslaved,
            noarp,
            nomac,
        ];
        assert_eq!(
            select(&links, &Interfaces::All, &excludes()),
            ["bond0", "eth0"]
        );
    }

    #[test]
    fn named_interfaces_are_used_as_given_if_usable() {
        let links = [link("eth0"), link("eth1"), link("veth0")];
        let wanted = Interfaces::Named(BTreeSet::from([
            "eth1".into(),
            "veth0".into(),
            "missing".into(),
        ]));
        assert_eq!(select(&links, &wanted, &excludes()), ["eth1", "veth0"]);
    }

    #[test]
    fn patterns_match_prefixes_only_with_a_star() {
        assert!(matches("docker*", "docker0"));
        assert!(!matches("lo", "lo0"));
        assert!(matches("lo", "lo"));
    }
}
