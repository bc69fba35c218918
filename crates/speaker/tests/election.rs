//! Election and announcer behaviour, as unit and property tests.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_api::annotations::EXCLUDE_FROM_EXTERNAL_LB_LABEL;
use ferrolb_ipam::LabelSelector;
use ferrolb_speaker::announcer::{Announce, Announcer, Change};
use ferrolb_speaker::election::{
    Advertisement, Cluster, Interfaces, Node, Ownership, ServiceFacts, Silence, decide, owner,
};
use proptest::prelude::*;

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        network_unavailable: false,
    }
}

fn cluster(nodes: &[&str]) -> Cluster {
    Cluster {
        nodes: nodes
            .iter()
            .map(|n| ((*n).to_owned(), node(n, &[])))
            .collect(),
        alive: nodes.iter().map(|n| (*n).to_owned()).collect(),
        speakers: nodes.iter().map(|n| (*n).to_owned()).collect(),
        advertisements: vec![Advertisement {
            name: "all".into(),
            ..Advertisement::default()
        }],
        ..Cluster::default()
    }
}

fn svc(key: &str, ip: &str) -> ServiceFacts {
    ServiceFacts {
        key: key.into(),
        ips: vec![ip.parse().unwrap()],
        pool: Some("lan".into()),
        ..ServiceFacts::default()
    }
}

fn owner_of(c: &Cluster, s: &ServiceFacts) -> Option<String> {
    match decide(c, s) {
        Ownership::Owner { node, .. } => Some(node),
        Ownership::Silent(_) => None,
    }
}

#[test]
fn a_service_is_announced_by_exactly_the_hash_winner() {
    let c = cluster(&["a", "b", "c"]);
    let s = svc("default/web", "192.0.2.10");
    assert_eq!(
        owner_of(&c, &s).as_deref(),
        owner("192.0.2.10", ["a", "b", "c"])
    );
}

#[test]
fn no_advertisement_for_the_pool_means_silence() {
    let mut c = cluster(&["a"]);
    c.advertisements = vec![Advertisement {
        name: "other".into(),
        pools: vec!["other".into()],
        ..Advertisement::default()
    }];
    assert_eq!(
        decide(&c, &svc("default/web", "192.0.2.10")),
        Ownership::Silent(Silence::NoAdvertisement)
    );
}

#[test]
fn pool_selectors_and_service_selectors_choose_advertisements() {
    let mut c = cluster(&["a"]);
    c.pool_labels.insert(
        "lan".into(),
        BTreeMap::from([("tier".into(), "web".into())]),
    );
    c.advertisements = vec![Advertisement {
        name: "web".into(),
        pool_selectors: vec![LabelSelector::labels([("tier", "web")])],
        service_selectors: vec![LabelSelector::labels([("exposed", "yes")])],
        ..Advertisement::default()
    }];
    let mut s = svc("default/web", "192.0.2.10");
    assert_eq!(decide(&c, &s), Ownership::Silent(Silence::NoAdvertisement));
    s.labels.insert("exposed".into(), "yes".into());
    assert_eq!(owner_of(&c, &s).as_deref(), Some("a"));
}

#[test]
fn excluded_and_network_unavailable_nodes_never_announce_unless_told_to_ignore_the_label() {
    let mut c = cluster(&["a", "b"]);
    c.nodes.insert(
        "a".into(),
        node("a", &[(EXCLUDE_FROM_EXTERNAL_LB_LABEL, "")]),
    );
    c.nodes.get_mut("b").unwrap().network_unavailable = true;
    let s = svc("default/web", "192.0.2.10");
    assert_eq!(
        decide(&c, &s),
        Ownership::Silent(Silence::AllCandidatesExcluded)
    );
    c.ignore_exclude_lb = true;
    assert_eq!(owner_of(&c, &s).as_deref(), Some("a"));
}

#[test]
fn node_selectors_limit_candidates_and_interfaces_come_from_the_advertisements() {
    let mut c = cluster(&["a", "b"]);
    c.nodes.insert("b".into(), node("b", &[("rack", "r1")]));
    c.advertisements = vec![
        Advertisement {
            name: "r1".into(),
            node_selectors: vec![LabelSelector::labels([("rack", "r1")])],
            interfaces: vec!["eth1".into()],
            ..Advertisement::default()
        },
        Advertisement {
            name: "r1b".into(),
            node_selectors: vec![LabelSelector::labels([("rack", "r1")])],
            interfaces: vec!["eth2".into()],
            ..Advertisement::default()
        },
    ];
    let v = decide(&c, &svc("default/web", "192.0.2.10"));
    assert_eq!(
        v,
        Ownership::Owner {
            node: "b".into(),
            interfaces: Interfaces::Named(BTreeSet::from(["eth1".into(), "eth2".into()]))
        }
    );
}

#[test]
fn local_traffic_policy_follows_serving_endpoints() {
    let c = cluster(&["a", "b", "c"]);
    let mut s = svc("default/web", "192.0.2.10");
    s.local = true;
    assert_eq!(
        decide(&c, &s),
        Ownership::Silent(Silence::NoServingEndpoint)
    );
    s.serving_nodes = BTreeSet::from(["c".into()]);
    assert_eq!(owner_of(&c, &s).as_deref(), Some("c"));
    s.serving_nodes = BTreeSet::from(["elsewhere".into()]);
    assert_eq!(
        decide(&c, &s),
        Ownership::Silent(Silence::EndpointsWithoutSpeaker)
    );
}

#[test]
fn a_dead_owner_is_replaced_and_nobody_alive_means_silence() {
    let mut c = cluster(&["a", "b", "c"]);
    let s = svc("default/web", "192.0.2.10");
    let first = owner_of(&c, &s).unwrap();
    c.alive.remove(&first);
    let second = owner_of(&c, &s).unwrap();
    assert_ne!(first, second);
    c.alive.clear();
    assert_eq!(decide(&c, &s), Ownership::Silent(Silence::NoLiveCandidate));
}

#[derive(Default)]
struct Recorder(Vec<String>);
impl Announce for Recorder {
    fn gained(&mut self, ip: IpAddr, _: &Interfaces) -> Vec<String> {
        self.0.push(format!("+{ip}"));
        vec!["eth0".into()]
    }
    fn lost(&mut self, ip: IpAddr) {
        self.0.push(format!("-{ip}"));
    }
}

#[test]
fn the_announcer_emits_gained_and_lost_only_on_change() {
    let mut c = cluster(&["a", "b"]);
    let services = vec![svc("default/web", "192.0.2.10")];
    let owner = owner_of(&c, &services[0]).unwrap();
    let mut announcer = Announcer::new(&owner);
    let mut r = Recorder::default();
    Announcer::apply(&announcer.update(&c, &services), &mut r);
    Announcer::apply(&announcer.update(&c, &services), &mut r);
    assert_eq!(r.0, ["+192.0.2.10"]);
    c.alive.remove(&owner);
    let changes = announcer.update(&c, &services);
    assert_eq!(
        changes,
        [Change::Lost {
            ip: "192.0.2.10".parse().unwrap(),
            service: "default/web".into()
        }]
    );
}

#[test]
fn both_ips_of_a_dual_stack_service_go_to_the_owner_of_the_first() {
    let c = cluster(&["a", "b", "c"]);
    let mut s = svc("default/web", "192.0.2.10");
    s.ips.push("2001:db8::10".parse().unwrap());
    let winner = owner_of(&c, &s).unwrap();
    let mut announcer = Announcer::new(&winner);
    assert_eq!(announcer.update(&c, std::slice::from_ref(&s)).len(), 2);
}

fn arb_cluster() -> impl Strategy<Value = (Vec<String>, BTreeSet<String>, String)> {
    (2usize..12, any::<u64>(), 0u32..=255).prop_map(|(n, alive_mask, octet)| {
        let nodes: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
        let alive = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| alive_mask & (1 << i) != 0)
            .map(|(_, n)| n.clone())
            .collect();
        (nodes, alive, format!("192.0.2.{octet}"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_same_view_gives_the_same_owner_whatever_the_order((nodes, alive, ip) in arb_cluster(), seed in any::<u64>()) {
        let mut shuffled = nodes.clone();
        let len = shuffled.len();
        shuffled.rotate_left((seed as usize) % len);
        shuffled.reverse();
        let a = owner(&ip, nodes.iter().filter(|n| alive.contains(*n)).map(String::as_str));
        let b = owner(&ip, shuffled.iter().filter(|n| alive.contains(*n)).map(String::as_str));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn the_owner_is_always_a_candidate_and_none_means_no_owner((nodes, alive, ip) in arb_cluster()) {
        let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let mut c = cluster(&names);
        c.alive = alive.clone();
        let s = svc("default/web", &ip);
        match owner_of(&c, &s) {
            Some(o) => prop_assert!(alive.contains(&o)),
            None => prop_assert!(alive.is_empty()),
        }
    }

    #[test]
    fn removing_a_non_owner_moves_nothing((nodes, alive, ip) in arb_cluster(), pick in any::<usize>()) {
        let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let mut c = cluster(&names);
        c.alive = alive;
        let s = svc("default/web", &ip);
        let before = owner_of(&c, &s);
        let others: Vec<String> = c.alive.iter().filter(|n| Some(*n) != before.as_ref()).cloned().collect();
        if !others.is_empty() {
            c.alive.remove(&others[pick % others.len()]);
            prop_assert_eq!(owner_of(&c, &s), before);
        }
    }
}
