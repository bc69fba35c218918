//! Who announces each Service IP: a pure function of what every speaker can see, so every
//! speaker that sees the same cluster computes the same owner without exchanging a single message.
//!
//! The election is per IP, not per Service: every Service holding an IP (`allow-shared-ip`, and
//! the IPv6 address of a dual-stack Service shared with an IPv6-only one) gets the same owner.
//!
//! For one IP:
//! - it must lie in an IPAddressPool (its parseable `spec.addresses` or the
//!   `status.lastValidAddresses` the controller last accepted); otherwise nobody answers for it,
//!   whatever Service status says ([`Silence::NotInPool`]);
//! - for each Service holding it, the candidates are the nodes an applicable L2Advertisement
//!   (one selecting a pool that holds the IP, and the Service) selects, that are not excluded
//!   (label `node.kubernetes.io/exclude-from-external-load-balancers`, or `NetworkUnavailable`),
//!   that have a serving endpoint for `externalTrafficPolicy: Local`, and whose published usable
//!   interfaces can carry that advertisement (a speaker that publishes none counts as able);
//! - the IP's candidates are the intersection over its Services; a Service no L2Advertisement
//!   applies to is not announced in layer 2 and constrains nothing;
//! - owner = the live candidate with the lowest `sha256(node + "#" + ip)` (MetalLB's order, so a
//!   fleet in mid-migration agrees).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_api::annotations::EXCLUDE_FROM_EXTERNAL_LB_LABEL;
use ferrolb_ipam::{AddrRange, LabelSelector};
use sha2::{Digest, Sha256};

/// A Kubernetes Node as the election needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// The `NetworkUnavailable` condition is True.
    pub network_unavailable: bool,
}

/// An `L2Advertisement` as the election needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertisement {
    /// Name, for messages.
    pub name: String,
    /// `ipAddressPools`.
    pub pools: Vec<String>,
    /// `ipAddressPoolSelectors`.
    pub pool_selectors: Vec<LabelSelector>,
    /// `nodeSelectors`; empty selects every node.
    pub node_selectors: Vec<LabelSelector>,
    /// `interfaces`; empty means every suitable interface.
    pub interfaces: Vec<String>,
    /// `serviceSelectors`; empty selects every Service.
    pub service_selectors: Vec<LabelSelector>,
}

/// An `IPAddressPool` as the election needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolFacts {
    /// Pool labels, for `ipAddressPoolSelectors`.
    pub labels: BTreeMap<String, String>,
    /// Its addresses: the entries of `spec.addresses` that parse, and those of
    /// `status.lastValidAddresses`.
    pub ranges: Vec<AddrRange>,
}

impl PoolFacts {
    /// Whether `ip` is one of the pool's addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }
}

/// A Service with an address, as the election needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    /// `namespace/name`.
    pub key: String,
    /// Ingress IPs in status order.
    pub ips: Vec<IpAddr>,
    /// Service labels.
    pub labels: BTreeMap<String, String>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// Nodes with a ready (or serving-while-terminating) endpoint.
    pub serving_nodes: BTreeSet<String>,
}

/// Everything a speaker knows about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// Nodes by name (from Kubernetes: gossip may not know every member).
    pub nodes: BTreeMap<String, Node>,
    /// Nodes whose speaker is alive in gossip.
    pub alive: BTreeSet<String>,
    /// Nodes that run a speaker at all.
    pub speakers: BTreeSet<String>,
    /// Every L2Advertisement.
    pub advertisements: Vec<Advertisement>,
    /// Every IPAddressPool, by name.
    pub pools: BTreeMap<String, PoolFacts>,
    /// The usable interfaces each node's speaker published (`ferrolb.io/usable-interfaces`); a
    /// node absent here has not published any and counts as able to answer anywhere.
    pub usable: BTreeMap<String, BTreeSet<String>>,
    /// `--ignore-exclude-lb`.
    pub ignore_exclude_lb: bool,
}

/// Where to answer on the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interfaces {
    /// Every suitable interface of the node.
    All,
    /// Only these.
    Named(BTreeSet<String>),
}

impl Interfaces {
    /// Where to answer for two advertisements at once: everywhere either one answers.
    fn union(self, other: Self) -> Self {
        match (self, other) {
            (Self::Named(mut a), Self::Named(b)) => {
                a.extend(b);
                Self::Named(a)
            }
            _ => Self::All,
        }
    }

    fn of(ad: &Advertisement) -> Self {
        if ad.interfaces.is_empty() {
            Self::All
        } else {
            Self::Named(ad.interfaces.iter().cloned().collect())
        }
    }
}

/// Why nobody announces an IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Silence {
    /// The IP lies in no IPAddressPool: it was not allocated by ferrolb (another controller, a
    /// hand edit) and is never answered.
    NotInPool,
    /// No L2Advertisement applies to its pool and labels.
    NoAdvertisement,
    /// `externalTrafficPolicy: Local` and no endpoint is serving anywhere.
    NoServingEndpoint,
    /// Its endpoints are only on nodes that run no speaker.
    EndpointsWithoutSpeaker,
    /// Every node that could announce is excluded (label, NetworkUnavailable) or not selected.
    AllCandidatesExcluded,
    /// Every node that could announce has published no usable interface the advertisement names.
    NoUsableInterface,
    /// The Services sharing the IP have no candidate node in common.
    NoCommonCandidate,
    /// No candidate's speaker is alive.
    NoLiveCandidate,
}

impl Silence {
    /// A sentence for Events and logs.
    pub fn explain(self) -> &'static str {
        match self {
            Self::NotInPool => {
                "it lies in no IPAddressPool (it was not allocated by ferrolb); no node answers for it"
            }
            Self::NoAdvertisement => "no L2Advertisement applies to this Service's pool",
            Self::NoServingEndpoint => "externalTrafficPolicy is Local and no endpoint is serving",
            Self::EndpointsWithoutSpeaker => {
                "its endpoints are only on nodes without a ferrolb speaker"
            }
            Self::AllCandidatesExcluded => {
                "every node that could announce it is excluded (node.kubernetes.io/exclude-from-external-load-balancers, NetworkUnavailable, or not selected by the L2Advertisement)"
            }
            Self::NoUsableInterface => {
                "no node that could announce it has a usable interface the L2Advertisement names (link down, or no such interface)"
            }
            Self::NoCommonCandidate => {
                "the Services sharing this IP have no node that may announce it for all of them"
            }
            Self::NoLiveCandidate => "no speaker that could announce it is alive",
        }
    }
}

/// Who owns an IP, the election's result: one node and where it answers, or nobody and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// This node announces it on these interfaces.
    Owner {
        /// The owner node.
        node: String,
        /// Where it answers.
        interfaces: Interfaces,
    },
    /// Nobody does, and why.
    Silent(Silence),
}

/// The election's result for one IP: the Services holding it and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Every Service holding the IP, `namespace/name`.
    pub services: BTreeSet<String>,
    /// Who answers for it.
    pub ownership: Ownership,
}

/// The decision for every Service IP.
pub type Decisions = BTreeMap<IpAddr, Decision>;

/// The election key of a node for an IP: MetalLB's `sha256(node + "#" + ip)`.
fn rank(node: &str, ip: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(b"#");
    h.update(ip.as_bytes());
    h.finalize().into()
}

/// The owner among `candidates`: the lowest hash, ties (impossible in practice) by name.
pub fn owner<'a>(ip: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .min_by(|a, b| (rank(a, ip), *a).cmp(&(rank(b, ip), *b)))
}

fn selects(selectors: &[LabelSelector], labels: &BTreeMap<String, String>) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

/// Whether `ad` selects the pool `name` (no pool selection at all: every pool).
fn selects_pool(ad: &Advertisement, name: &str, pool: &PoolFacts) -> bool {
    (ad.pools.is_empty() && ad.pool_selectors.is_empty())
        || ad.pools.iter().any(|p| p == name)
        || ad.pool_selectors.iter().any(|s| s.matches(&pool.labels))
}

/// Whether `node` can answer where `ad` asks, going by the interfaces its speaker published.
fn can_carry(cluster: &Cluster, node: &str, ad: &Advertisement) -> bool {
    match cluster.usable.get(node) {
        // Not published (an older speaker, or not yet): eligible, as before.
        None => true,
        Some(usable) if ad.interfaces.is_empty() => !usable.is_empty(),
        Some(usable) => ad.interfaces.iter().any(|i| usable.contains(i)),
    }
}

/// The nodes that may announce `ip` for `svc` (liveness aside), with where each would answer,
/// or why none may. `pools`: the pools holding `ip`.
fn candidates<'c>(
    cluster: &'c Cluster,
    svc: &ServiceFacts,
    pools: &[(&str, &PoolFacts)],
) -> Result<BTreeMap<&'c str, Interfaces>, Silence> {
    let ads: Vec<&Advertisement> = cluster
        .advertisements
        .iter()
        .filter(|ad| {
            pools
                .iter()
                .any(|(name, pool)| selects_pool(ad, name, pool))
        })
        .filter(|ad| selects(&ad.service_selectors, &svc.labels))
        .collect();
    if ads.is_empty() {
        return Err(Silence::NoAdvertisement);
    }
    let mut nodes: Vec<&Node> = cluster
        .nodes
        .values()
        .filter(|n| ads.iter().any(|ad| selects(&ad.node_selectors, &n.labels)))
        .filter(|n| {
            cluster.ignore_exclude_lb || !n.labels.contains_key(EXCLUDE_FROM_EXTERNAL_LB_LABEL)
        })
        .filter(|n| !n.network_unavailable)
        .collect();
    if svc.local {
        if svc.serving_nodes.is_empty() {
            return Err(Silence::NoServingEndpoint);
        }
        if svc
            .serving_nodes
            .iter()
            .all(|n| !cluster.speakers.contains(n))
        {
            return Err(Silence::EndpointsWithoutSpeaker);
        }
        nodes.retain(|n| svc.serving_nodes.contains(&n.name));
    }
    if nodes.is_empty() {
        return Err(Silence::AllCandidatesExcluded);
    }
    let able: BTreeMap<&str, Interfaces> = nodes
        .iter()
        .filter_map(|n| {
            ads.iter()
                .filter(|ad| selects(&ad.node_selectors, &n.labels))
                .filter(|ad| can_carry(cluster, &n.name, ad))
                .map(|ad| Interfaces::of(ad))
                .reduce(Interfaces::union)
                .map(|interfaces| (n.name.as_str(), interfaces))
        })
        .collect();
    if able.is_empty() {
        return Err(Silence::NoUsableInterface);
    }
    Ok(able)
}

/// Decides who announces `ip`, held by `holders`.
pub fn decide_ip(cluster: &Cluster, ip: IpAddr, holders: &[&ServiceFacts]) -> Ownership {
    let pools: Vec<(&str, &PoolFacts)> = cluster
        .pools
        .iter()
        .filter(|(_, p)| p.contains(ip))
        .map(|(name, p)| (name.as_str(), p))
        .collect();
    if pools.is_empty() {
        return Ownership::Silent(Silence::NotInPool);
    }
    let mut common: Option<BTreeMap<&str, Interfaces>> = None;
    for svc in holders {
        let nodes = match candidates(cluster, svc, &pools) {
            Ok(nodes) => nodes,
            // Not announced in layer 2: it neither needs nor vetoes an owner.
            Err(Silence::NoAdvertisement) => continue,
            // Nowhere for this Service means nowhere for the IP (the intersection is empty).
            Err(silence) => return Ownership::Silent(silence),
        };
        common = Some(match common {
            None => nodes,
            Some(mut so_far) => {
                so_far.retain(|node, _| nodes.contains_key(node));
                for (node, interfaces) in &mut so_far {
                    *interfaces =
                        std::mem::replace(interfaces, Interfaces::All).union(nodes[node].clone());
                }
                so_far
            }
        });
    }
    let Some(common) = common else {
        return Ownership::Silent(Silence::NoAdvertisement);
    };
    if common.is_empty() {
        return Ownership::Silent(Silence::NoCommonCandidate);
    }
    let alive = common
        .keys()
        .copied()
        .filter(|n| cluster.alive.contains(*n));
    match owner(&ip.to_string(), alive) {
        Some(winner) => Ownership::Owner {
            node: winner.to_owned(),
            interfaces: common[winner].clone(),
        },
        None => Ownership::Silent(Silence::NoLiveCandidate),
    }
}

/// Every Service IP's decision.
pub fn decide_all(cluster: &Cluster, services: &[ServiceFacts]) -> Decisions {
    let mut holders: BTreeMap<IpAddr, Vec<&ServiceFacts>> = BTreeMap::new();
    for svc in services {
        for ip in &svc.ips {
            holders.entry(*ip).or_default().push(svc);
        }
    }
    holders
        .into_iter()
        .map(|(ip, mut svcs)| {
            svcs.sort_by(|a, b| a.key.cmp(&b.key));
            svcs.dedup_by(|a, b| a.key == b.key);
            let decision = Decision {
                services: svcs.iter().map(|s| s.key.clone()).collect(),
                ownership: decide_ip(cluster, ip, &svcs),
            };
            (ip, decision)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_follows_metallbs_hash_order() {
        // Computed outside this code (Python hashlib): sha256("node-c#192.0.2.1") = 22e614dd…,
        // node-a = 9028b03e…, node-b = fbbfaaba…, so node-c owns the IP, whatever the order.
        let ip = "192.0.2.1";
        assert_eq!(owner(ip, ["node-a", "node-b", "node-c"]), Some("node-c"));
        assert_eq!(owner(ip, ["node-b", "node-c", "node-a"]), Some("node-c"));
        assert_eq!(owner(ip, ["node-a", "node-b"]), Some("node-a"));
        assert_eq!(owner(ip, []), None);
    }

    #[test]
    fn the_key_is_node_hash_ip() {
        let mut h = Sha256::new();
        h.update(b"worker-1#2001:db8::1");
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(rank("worker-1", "2001:db8::1"), expected);
    }

    #[test]
    fn interfaces_union_is_everywhere_either_answers() {
        let named = |n: &[&str]| Interfaces::Named(n.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(
            named(&["eth0"]).union(named(&["eth1"])),
            named(&["eth0", "eth1"])
        );
        assert_eq!(named(&["eth0"]).union(Interfaces::All), Interfaces::All);
    }
}
