//! Who announces a Service's IP: a pure function of what every speaker can see, so every speaker
//! that sees the same cluster computes the same owner without exchanging a single message.
//!
//! candidates = nodes alive in gossip ∩ nodes an applicable L2Advertisement selects ∩ nodes not
//! excluded (label `node.kubernetes.io/exclude-from-external-load-balancers`, or
//! `NetworkUnavailable`) ∩ for `externalTrafficPolicy: Local`, nodes with a serving endpoint.
//! owner = the candidate with the lowest `sha256(node + "#" + ip)`, `ip` being the Service's
//! first ingress IP as status writes it: MetalLB's order, so a fleet in mid-migration agrees.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_api::annotations::EXCLUDE_FROM_EXTERNAL_LB_LABEL;
use ferrolb_ipam::LabelSelector;
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

/// A Service with an address, as the election needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    /// `namespace/name`.
    pub key: String,
    /// Ingress IPs in status order; the first one keys the election.
    pub ips: Vec<IpAddr>,
    /// Pool the IPs came from (the controller's annotation).
    pub pool: Option<String>,
    /// Service labels.
    pub labels: BTreeMap<String, String>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// Nodes with a ready (or serving-while-terminating) endpoint.
    pub serving_nodes: BTreeSet<String>,
}

/// Everything a speaker knows about the cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Nodes by name (from Kubernetes: gossip may not know every member).
    pub nodes: BTreeMap<String, Node>,
    /// Nodes whose speaker is alive in gossip.
    pub alive: BTreeSet<String>,
    /// Nodes that run a speaker at all.
    pub speakers: BTreeSet<String>,
    /// Every L2Advertisement.
    pub advertisements: Vec<Advertisement>,
    /// Pool labels by pool name, for `ipAddressPoolSelectors`.
    pub pool_labels: BTreeMap<String, BTreeMap<String, String>>,
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

/// Why nobody announces a Service that has an IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// No L2Advertisement applies to its pool and labels.
    NoAdvertisement,
    /// `externalTrafficPolicy: Local` and no endpoint is serving anywhere.
    NoServingEndpoint,
    /// Its endpoints are only on nodes that run no speaker.
    EndpointsWithoutSpeaker,
    /// Every node that could announce is excluded (label, NetworkUnavailable) or not selected.
    AllCandidatesExcluded,
    /// No candidate's speaker is alive.
    NoLiveCandidate,
}

impl Silence {
    /// A sentence for Events and logs.
    pub fn explain(self) -> &'static str {
        match self {
            Self::NoAdvertisement => "no L2Advertisement applies to this Service's pool",
            Self::NoServingEndpoint => "externalTrafficPolicy is Local and no endpoint is serving",
            Self::EndpointsWithoutSpeaker => {
                "its endpoints are only on nodes without a ferrolb speaker"
            }
            Self::AllCandidatesExcluded => {
                "every node that could announce it is excluded (node.kubernetes.io/exclude-from-external-load-balancers, NetworkUnavailable, or not selected by the L2Advertisement)"
            }
            Self::NoLiveCandidate => "no speaker that could announce it is alive",
        }
    }
}

/// Who owns a Service's IPs, the election's result: one node and where it answers, or nobody
/// and why.
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

fn applies(ad: &Advertisement, svc: &ServiceFacts, cluster: &Cluster) -> bool {
    let pool_ok = if ad.pools.is_empty() && ad.pool_selectors.is_empty() {
        true
    } else {
        svc.pool.as_ref().is_some_and(|pool| {
            ad.pools.contains(pool)
                || cluster
                    .pool_labels
                    .get(pool)
                    .is_some_and(|labels| ad.pool_selectors.iter().any(|s| s.matches(labels)))
        })
    };
    pool_ok && selects(&ad.service_selectors, &svc.labels)
}

/// Every Service's ownership, keyed by Service.
pub fn decide_all(cluster: &Cluster, services: &[ServiceFacts]) -> BTreeMap<String, Ownership> {
    services
        .iter()
        .map(|s| (s.key.clone(), decide(cluster, s)))
        .collect()
}

/// Decides who announces `svc`.
pub fn decide(cluster: &Cluster, svc: &ServiceFacts) -> Ownership {
    let Some(first_ip) = svc.ips.first() else {
        return Ownership::Silent(Silence::NoLiveCandidate);
    };
    let ads: Vec<&Advertisement> = cluster
        .advertisements
        .iter()
        .filter(|ad| applies(ad, svc, cluster))
        .collect();
    if ads.is_empty() {
        return Ownership::Silent(Silence::NoAdvertisement);
    }
    let selected = |node: &Node| {
        ads.iter()
            .any(|ad| selects(&ad.node_selectors, &node.labels))
    };
    let eligible: Vec<&Node> = cluster
        .nodes
        .values()
        .filter(|n| selected(n))
        .filter(|n| {
            cluster.ignore_exclude_lb || !n.labels.contains_key(EXCLUDE_FROM_EXTERNAL_LB_LABEL)
        })
        .filter(|n| !n.network_unavailable)
        .collect();
    let mut candidates: Vec<&Node> = eligible;
    if svc.local {
        if svc.serving_nodes.is_empty() {
            return Ownership::Silent(Silence::NoServingEndpoint);
        }
        if svc
            .serving_nodes
            .iter()
            .all(|n| !cluster.speakers.contains(n))
        {
            return Ownership::Silent(Silence::EndpointsWithoutSpeaker);
        }
        candidates.retain(|n| svc.serving_nodes.contains(&n.name));
    }
    if candidates.is_empty() {
        return Ownership::Silent(Silence::AllCandidatesExcluded);
    }
    let alive = candidates
        .iter()
        .filter(|n| cluster.alive.contains(&n.name))
        .map(|n| n.name.as_str());
    let Some(winner) = owner(&first_ip.to_string(), alive) else {
        return Ownership::Silent(Silence::NoLiveCandidate);
    };
    let node = &cluster.nodes[winner];
    let mut named = BTreeSet::new();
    let mut all = false;
    for ad in ads
        .iter()
        .filter(|ad| selects(&ad.node_selectors, &node.labels))
    {
        if ad.interfaces.is_empty() {
            all = true;
        }
        named.extend(ad.interfaces.iter().cloned());
    }
    Ownership::Owner {
        node: winner.to_owned(),
        interfaces: if all {
            Interfaces::All
        } else {
            Interfaces::Named(named)
        },
    }
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
}
