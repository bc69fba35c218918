//! The election's results kept between rounds: every Service's facts and every IP's decision,
//! decided again only where an input changed. A changed Service decides again only the IPs it
//! holds (before or now); a changed cluster (membership, nodes, pools, advertisements) decides
//! every IP again, which costs one hash per candidate per IP and nothing else. What a round
//! passes on is only the decisions that came out different, so the announcer, the claims, the
//! Events and the statuses after it see work in proportion to what changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::election::{Cluster, Decision, Decisions, Ownership, ServiceFacts, decide_ip};

/// Every Service's facts and every IP's decision.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    facts: HashMap<String, ServiceFacts>,
    /// IP → the Services whose status holds it.
    holders: BTreeMap<IpAddr, BTreeSet<String>>,
    decisions: Decisions,
}

/// What a change moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// IPs whose decision is not what it was (decided differently, new, or gone).
    pub ips: BTreeSet<IpAddr>,
    /// The Services holding one of those IPs, before or now.
    pub services: BTreeSet<String>,
}

impl Ledger {
    /// The current decision of every IP a Service holds.
    pub fn decisions(&self) -> &Decisions {
        &self.decisions
    }

    /// The facts of `service`, if it has an IP and is ours.
    pub fn facts(&self, service: &str) -> Option<&ServiceFacts> {
        self.facts.get(service)
    }

    /// Every Service with facts.
    pub fn services(&self) -> impl Iterator<Item = &String> {
        self.facts.keys()
    }

    /// The facts of the Services holding `ip`, by key.
    pub fn holders(&self, ip: IpAddr) -> Vec<&ServiceFacts> {
        self.holders
            .get(&ip)
            .into_iter()
            .flatten()
            .filter_map(|key| self.facts.get(key))
            .collect()
    }

    /// Takes in the new facts of `changed` Services (`None`: gone, not ours, or no IP yet) and
    /// decides again their IPs, or with `everything`, every IP (the cluster changed).
    pub fn update(
        &mut self,
        cluster: &Cluster,
        changed: impl IntoIterator<Item = (String, Option<ServiceFacts>)>,
        everything: bool,
    ) -> Moved {
        let mut touched: BTreeSet<IpAddr> = BTreeSet::new();
        for (key, facts) in changed {
            if let Some(old) = self.facts.remove(&key) {
                for ip in &old.ips {
                    if let Some(keys) = self.holders.get_mut(ip) {
                        keys.remove(&key);
                        if keys.is_empty() {
                            self.holders.remove(ip);
                        }
                    }
                    touched.insert(*ip);
                }
            }
            if let Some(facts) = facts {
                for ip in &facts.ips {
                    self.holders.entry(*ip).or_default().insert(key.clone());
                    touched.insert(*ip);
                }
                self.facts.insert(key, facts);
            }
        }
        if everything {
            touched.extend(self.decisions.keys().copied());
            touched.extend(self.holders.keys().copied());
        }
        let mut moved = Moved::default();
        for ip in touched {
            let now = self.decide(cluster, ip);
            let before = match now {
                Some(decision) => self.decisions.insert(ip, decision),
                None => self.decisions.remove(&ip),
            };
            let now = self.decisions.get(&ip);
            if before.as_ref() == now {
                continue;
            }
            moved.ips.insert(ip);
            for decision in before.iter().chain(now) {
                moved.services.extend(decision.services.iter().cloned());
            }
        }
        moved
    }

    /// The decision for `ip` from its holders now; `None` when no Service holds it.
    fn decide(&self, cluster: &Cluster, ip: IpAddr) -> Option<Decision> {
        let holders = self.holders(ip);
        if holders.is_empty() {
            return None;
        }
        Some(Decision {
            services: holders.iter().map(|s| s.key.clone()).collect(),
            ownership: decide_ip(cluster, ip, &holders),
        })
    }

    /// The owner of `ip` in the current decisions.
    pub fn owner(&self, ip: IpAddr) -> Option<&str> {
        match &self.decisions.get(&ip)?.ownership {
            Ownership::Owner { node, .. } => Some(node),
            Ownership::Silent(_) => None,
        }
    }

    /// Service → the nodes announcing any of its IPs, for `services`.
    pub fn owners_of<'s>(
        &self,
        services: impl IntoIterator<Item = &'s String>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        services
            .into_iter()
            .filter_map(|service| {
                let facts = self.facts.get(service)?;
                let nodes: BTreeSet<String> = facts
                    .ips
                    .iter()
                    .filter_map(|ip| self.owner(*ip))
                    .map(str::to_owned)
                    .collect();
                Some((service.clone(), nodes))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::election::{Advertisement, Node, PoolFacts, decide_all};
    use ferrolb_ipam::AddrRange;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cluster(alive: &[&str]) -> Cluster {
        let names = ["a", "b", "c"];
        let range = AddrRange::parse("192.0.2.0/24").unwrap();
        Cluster {
            nodes: names
                .iter()
                .map(|n| {
                    let node = Node {
                        name: (*n).to_owned(),
                        ..Node::default()
                    };
                    ((*n).to_owned(), node)
                })
                .collect(),
            alive: alive.iter().map(|n| (*n).to_owned()).collect(),
            speakers: names.iter().map(|n| (*n).to_owned()).collect(),
            advertisements: vec![Advertisement::default()],
            pools: [(
                "pool".to_owned(),
                PoolFacts {
                    ranges: vec![range],
                    ..PoolFacts::default()
                },
            )]
            .into(),
            ..Cluster::default()
        }
    }

    fn service(key: &str, ips: &[&str]) -> ServiceFacts {
        ServiceFacts {
            key: key.to_owned(),
            ips: ips.iter().map(|s| ip(s)).collect(),
            ..ServiceFacts::default()
        }
    }

    fn some(facts: &ServiceFacts) -> (String, Option<ServiceFacts>) {
        (facts.key.clone(), Some(facts.clone()))
    }

    #[test]
    fn a_new_service_moves_only_its_own_ips() {
        let c = cluster(&["a", "b", "c"]);
        let mut ledger = Ledger::default();
        let web = service("ns/web", &["192.0.2.1", "192.0.2.2"]);
        let moved = ledger.update(&c, [some(&web)], false);
        assert_eq!(moved.ips, [ip("192.0.2.1"), ip("192.0.2.2")].into());
        assert_eq!(moved.services, ["ns/web".to_owned()].into());
        let api = service("ns/api", &["192.0.2.3"]);
        let moved = ledger.update(&c, [some(&api)], false);
        assert_eq!(moved.ips, [ip("192.0.2.3")].into());
        assert_eq!(*ledger.decisions(), decide_all(&c, &[web, api]));
    }

    #[test]
    fn an_unchanged_service_moves_nothing() {
        let c = cluster(&["a", "b", "c"]);
        let mut ledger = Ledger::default();
        let web = service("ns/web", &["192.0.2.1"]);
        ledger.update(&c, [some(&web)], false);
        assert_eq!(ledger.update(&c, [some(&web)], false), Moved::default());
        assert_eq!(ledger.update(&c, [], true), Moved::default());
    }

    #[test]
    fn a_shared_ip_stays_while_one_holder_remains() {
        let c = cluster(&["a", "b", "c"]);
        let mut ledger = Ledger::default();
        let web = service("ns/web", &["192.0.2.1"]);
        let dns = service("ns/dns", &["192.0.2.1"]);
        ledger.update(&c, [some(&web), some(&dns)], false);
        let moved = ledger.update(&c, [("ns/web".to_owned(), None)], false);
        assert_eq!(moved.ips, [ip("192.0.2.1")].into());
        assert_eq!(
            moved.services,
            ["ns/web".to_owned(), "ns/dns".to_owned()].into()
        );
        assert_eq!(
            ledger.decisions()[&ip("192.0.2.1")].services,
            ["ns/dns".to_owned()].into()
        );
        let moved = ledger.update(&c, [("ns/dns".to_owned(), None)], false);
        assert_eq!(moved.ips, [ip("192.0.2.1")].into());
        assert!(ledger.decisions().is_empty());
        assert!(ledger.holders(ip("192.0.2.1")).is_empty());
    }

    #[test]
    fn a_member_lost_moves_only_the_ips_it_owned() {
        let all = cluster(&["a", "b", "c"]);
        let mut ledger = Ledger::default();
        let services: Vec<ServiceFacts> = (1..=60)
            .map(|i| service(&format!("ns/s{i}"), &[&format!("192.0.2.{i}")]))
            .collect();
        ledger.update(&all, services.iter().map(some), false);
        let owned_by_b: BTreeSet<IpAddr> = ledger
            .decisions()
            .keys()
            .copied()
            .filter(|ip| ledger.owner(*ip) == Some("b"))
            .collect();
        assert!(!owned_by_b.is_empty());
        let without_b = cluster(&["a", "c"]);
        let moved = ledger.update(&without_b, [], true);
        assert_eq!(moved.ips, owned_by_b);
        assert_eq!(*ledger.decisions(), decide_all(&without_b, &services));
    }

    #[test]
    fn owners_of_a_service_are_the_owners_of_its_ips() {
        let c = cluster(&["a", "b", "c"]);
        let mut ledger = Ledger::default();
        let web = service("ns/web", &["192.0.2.1", "192.0.2.2"]);
        ledger.update(&c, [some(&web)], false);
        let expected: BTreeSet<String> = ["192.0.2.1", "192.0.2.2"]
            .iter()
            .filter_map(|s| ledger.owner(ip(s)))
            .map(str::to_owned)
            .collect();
        let key = "ns/web".to_owned();
        assert_eq!(ledger.owners_of([&key])[&key], expected);
        assert!(ledger.owners_of([&"ns/none".to_owned()]).is_empty());
    }
}
