//! Which interfaces of a node answer for its IPs. Pure: the responder reads the interfaces from
//! the kernel and asks here.
//!
//! With an L2Advertisement naming interfaces, exactly those (that exist and are usable). Without,
//! every interface that is up, has a MAC, answers ARP (not NOARP), is not enslaved to a bond or
//! bridge (the master answers for it), and does not match the exclude list.

use std::collections::BTreeSet;

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

/// Which interface names may answer when no L2Advertisement names interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFilter {
    /// Only names matching one of these (empty: every name).
    pub include: Vec<String>,
    /// Never names matching one of these.
    pub exclude: Vec<String>,
}

impl Default for NameFilter {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: DEFAULT_EXCLUDES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

impl NameFilter {
    fn allows(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| matches(p, name)))
            && !self.exclude.iter().any(|p| matches(p, name))
    }
}

/// What the responder knows of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// Administratively up (IFF_UP) and with carrier (IFF_RUNNING).
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
pub fn select(links: &[LinkInfo], wanted: &Interfaces, filter: &NameFilter) -> Vec<String> {
    let mut chosen: Vec<String> = links
        .iter()
        .filter(|l| usable(l))
        .filter(|l| match wanted {
            Interfaces::Named(names) => names.contains(&l.name),
            Interfaces::All => filter.allows(&l.name),
        })
        .map(|l| l.name.clone())
        .collect();
    chosen.sort();
    chosen
}

/// The interfaces that can carry Service IPs, for other speakers to read (see
/// [`crate::inputs::USABLE_INTERFACES`]): usable links that the name filter allows or that an
/// L2Advertisement names (`named`), since named interfaces are used whatever the filter says.
pub fn usable_names(
    links: &[LinkInfo],
    filter: &NameFilter,
    named: &BTreeSet<String>,
) -> BTreeSet<String> {
    links
        .iter()
        .filter(|l| usable(l))
        .filter(|l| filter.allows(&l.name) || named.contains(&l.name))
        .map(|l| l.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str) -> LinkInfo {
        LinkInfo {
            name: name.into(),
            up: true,
            mac: Some([2, 0, 0, 0, 0, 1]),
            noarp: false,
            has_master: false,
        }
    }

    fn excludes() -> NameFilter {
        NameFilter::default()
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
    fn an_include_list_narrows_the_default_choice_but_not_named_interfaces() {
        let links = [link("eth0"), link("eth1"), link("ens3"), link("veth0")];
        let filter = NameFilter {
            include: vec!["eth*".into()],
            ..NameFilter::default()
        };
        assert_eq!(select(&links, &Interfaces::All, &filter), ["eth0", "eth1"]);
        let named = Interfaces::Named(BTreeSet::from(["ens3".into()]));
        assert_eq!(select(&links, &named, &filter), ["ens3"]);
    }

    #[test]
    fn patterns_match_prefixes_only_with_a_star() {
        assert!(matches("docker*", "docker0"));
        assert!(!matches("lo", "lo0"));
        assert!(matches("lo", "lo"));
    }

    #[test]
    fn usable_names_are_links_that_could_answer_now() {
        let mut down = link("eth2");
        down.up = false;
        let links = [link("eth0"), link("veth0"), link("veth1"), link("lo"), down];
        let named = BTreeSet::from(["veth1".into(), "eth2".into()]);
        assert_eq!(
            usable_names(&links, &excludes(), &named),
            BTreeSet::from(["eth0".into(), "veth1".into()])
        );
        assert_eq!(usable_names(&[], &excludes(), &named), BTreeSet::new());
    }
}
