//! Election and announcer behaviour, as unit and property tests.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_api::annotations::EXCLUDE_FROM_EXTERNAL_LB_LABEL;
use ferrolb_ipam::{AddrRange, LabelSelector};
use ferrolb_speaker::announcer::{Announce, Announcer, Change};
use ferrolb_speaker::election::{
    Advertisement, Cluster, Interfaces, Node, Ownership, PoolFacts, ServiceFacts, Silence,
    decide_all, decide_ip, owner,
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

fn pool(entries: &[&str]) -> PoolFacts {
    PoolFacts {
        ranges: entries
            .iter()
            .map(|e| AddrRange::parse(e).unwrap())
            .collect(),
        ..PoolFacts::default()
    }
}

/// Nodes, all alive and running a speaker; one advertisement for every pool; pool `lan` holds
/// 192.0.2.0/24 and 2001:db8::/64.
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
        pools: BTreeMap::from([("lan".into(), pool(&["192.0.2.0/24", "2001:db8::/64"]))]),
        ..Cluster::default()
    }
}

fn svc(key: &str, ip: &str) -> ServiceFacts {
    ServiceFacts {
        key: key.into(),
        ips: vec![ip.parse().unwrap()],
        ..ServiceFacts::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The decision for a Service's first IP, the Service alone holding it.
fn decide(c: &Cluster, s: &ServiceFacts) -> Ownership {
    decide_ip(c, s.ips[0], &[s])
}

fn owner_of(c: &Cluster, s: &ServiceFacts) -> Option<String> {
    match decide(c, s) {
        Ownership::Owner { node, .. } => Some(node),
        Ownership::Silent(_) => None,
    }
}

fn owner_of_ip(c: &Cluster, services: &[ServiceFacts], at: &str) -> Ownership {
    decide_all(c, services)[&ip(at)].ownership.clone()
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
    c.pools.get_mut("lan").unwrap().labels = BTreeMap::from([("tier".into(), "web".into())]);
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
            services: BTreeSet::from(["default/web".into()])
        }]
    );
}

// Item 1: only pool addresses are announced.

#[test]
fn an_ip_outside_every_pool_is_never_announced_even_by_an_advertisement_for_every_pool() {
    let c = cluster(&["a", "b"]);
    let foreign = svc("default/web", "203.0.113.7");
    assert_eq!(decide(&c, &foreign), Ownership::Silent(Silence::NotInPool));
    let mut announcer = Announcer::new("a");
    assert_eq!(announcer.update(&c, std::slice::from_ref(&foreign)), []);
    let mut other = Announcer::new("b");
    assert_eq!(other.update(&c, &[foreign]), []);
}

#[test]
fn an_advertisement_naming_a_pool_applies_only_to_addresses_of_that_pool() {
    let mut c = cluster(&["a"]);
    c.pools.insert("dmz".into(), pool(&["198.51.100.0/28"]));
    c.advertisements = vec![Advertisement {
        name: "dmz-only".into(),
        pools: vec!["dmz".into()],
        ..Advertisement::default()
    }];
    // Whatever the Service's pool annotation said, the address decides.
    assert_eq!(
        owner_of(&c, &svc("default/in-dmz", "198.51.100.3")).as_deref(),
        Some("a")
    );
    assert_eq!(
        decide(&c, &svc("default/in-lan", "192.0.2.3")),
        Ownership::Silent(Silence::NoAdvertisement)
    );
    assert_eq!(
        decide(&c, &svc("default/nowhere", "198.51.100.200")),
        Ownership::Silent(Silence::NotInPool)
    );
}

#[test]
fn an_ip_kept_only_by_the_last_valid_addresses_is_still_announced() {
    let mut c = cluster(&["a"]);
    // The spec no longer parses; the addresses last accepted still count.
    c.pools.insert("lan".into(), pool(&["192.0.2.0/28"]));
    assert_eq!(
        owner_of(&c, &svc("default/web", "192.0.2.10")).as_deref(),
        Some("a")
    );
}

// Item 3: one owner per IP, not per Service.

#[test]
fn services_sharing_an_ip_agree_on_one_owner_among_their_common_candidates() {
    let c = cluster(&["a", "b", "c", "d"]);
    let mut web = svc("default/web", "192.0.2.20");
    web.local = true;
    web.serving_nodes = BTreeSet::from(["a".into(), "b".into(), "c".into()]);
    let mut api = svc("default/api", "192.0.2.20");
    api.local = true;
    api.serving_nodes = BTreeSet::from(["b".into(), "c".into(), "d".into()]);
    let expected = owner("192.0.2.20", ["b", "c"]).unwrap();
    let decisions = decide_all(&c, &[web.clone(), api.clone()]);
    let decision = &decisions[&ip("192.0.2.20")];
    assert_eq!(
        decision.services,
        BTreeSet::from(["default/api".into(), "default/web".into()])
    );
    assert!(
        matches!(&decision.ownership, Ownership::Owner { node, .. } if node == expected),
        "{decision:?}"
    );
    // Every node's announcer agrees: exactly one of them answers.
    let answering: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|n| {
            !Announcer::new(n)
                .update(&c, &[web.clone(), api.clone()])
                .is_empty()
        })
        .collect();
    assert_eq!(answering, [expected]);
}

#[test]
fn the_v6_address_of_a_dual_stack_service_shared_with_a_v6_only_service_has_one_owner() {
    let nodes = ["a", "b", "c", "d", "e"];
    let c = cluster(&nodes);
    // Pick addresses whose owners differ, so keying by the Service's first IP would split them.
    let v6 = "2001:db8::20";
    let v6_owner = owner(v6, nodes).unwrap();
    let v4 = (1..=254)
        .map(|i| format!("192.0.2.{i}"))
        .find(|v4| owner(v4, nodes) != Some(v6_owner))
        .unwrap();
    let mut dual = svc("default/dual", &v4);
    dual.ips.push(ip(v6));
    let single = svc("default/v6", v6);
    let services = [dual, single];
    assert!(
        matches!(owner_of_ip(&c, &services, v6), Ownership::Owner { node, .. } if node == v6_owner)
    );
    assert!(
        matches!(owner_of_ip(&c, &services, &v4), Ownership::Owner { node, .. } if node != v6_owner)
    );
    let mut at_v6_owner = Announcer::new(v6_owner);
    let changes = at_v6_owner.update(&c, &services);
    assert_eq!(
        changes,
        [Change::Gained {
            ip: ip(v6),
            services: BTreeSet::from(["default/dual".into(), "default/v6".into()]),
            interfaces: Interfaces::All,
        }]
    );
}

#[test]
fn services_sharing_an_ip_with_no_common_candidate_leave_it_silent() {
    let c = cluster(&["a", "b"]);
    let mut web = svc("default/web", "192.0.2.20");
    web.local = true;
    web.serving_nodes = BTreeSet::from(["a".into()]);
    let mut api = svc("default/api", "192.0.2.20");
    api.local = true;
    api.serving_nodes = BTreeSet::from(["b".into()]);
    assert_eq!(
        owner_of_ip(&c, &[web, api], "192.0.2.20"),
        Ownership::Silent(Silence::NoCommonCandidate)
    );
}

#[test]
fn a_sharing_service_no_advertisement_applies_to_neither_needs_nor_vetoes_the_owner() {
    let mut c = cluster(&["a", "b"]);
    c.advertisements = vec![Advertisement {
        name: "exposed".into(),
        service_selectors: vec![LabelSelector::labels([("exposed", "yes")])],
        ..Advertisement::default()
    }];
    let mut web = svc("default/web", "192.0.2.20");
    web.labels.insert("exposed".into(), "yes".into());
    let hidden = svc("default/hidden", "192.0.2.20");
    let alone = owner_of(&c, &web);
    assert!(alone.is_some());
    assert!(
        matches!(owner_of_ip(&c, &[web, hidden.clone()], "192.0.2.20"), Ownership::Owner { node, .. } if Some(node.clone()) == alone)
    );
    assert_eq!(
        decide(&c, &hidden),
        Ownership::Silent(Silence::NoAdvertisement)
    );
}

#[test]
fn a_service_joining_or_leaving_a_shared_ip_does_not_touch_the_responder() {
    let c = cluster(&["a"]);
    let web = svc("default/web", "192.0.2.20");
    let api = svc("default/api", "192.0.2.20");
    let mut announcer = Announcer::new("a");
    let mut r = Recorder::default();
    Announcer::apply(&announcer.update(&c, std::slice::from_ref(&web)), &mut r);
    let changes = announcer.update(&c, &[web.clone(), api]);
    assert_eq!(
        changes,
        [Change::Holders {
            ip: ip("192.0.2.20"),
            services: BTreeSet::from(["default/api".into(), "default/web".into()]),
            before: BTreeSet::from(["default/web".into()]),
        }]
    );
    Announcer::apply(&changes, &mut r);
    Announcer::apply(&announcer.update(&c, &[web]), &mut r);
    assert_eq!(r.0, ["+192.0.2.20"]);
}

// Item 4: a node that cannot answer does not win.

#[test]
fn a_node_whose_published_interfaces_match_none_of_the_advertisements_is_not_a_candidate() {
    let mut c = cluster(&["a", "b"]);
    c.advertisements[0].interfaces = vec!["eth1".into()];
    let s = svc("default/web", "192.0.2.10");
    let first = owner_of(&c, &s).unwrap();
    let second = if first == "a" { "b" } else { "a" };
    c.usable
        .insert(first.clone(), BTreeSet::from(["eth0".into()]));
    assert_eq!(owner_of(&c, &s).as_deref(), Some(second));
    // A speaker that published nothing (older, or not yet) still counts as able.
    c.usable.remove(&first);
    assert_eq!(owner_of(&c, &s), Some(first.clone()));
    // With no interface named, any usable interface will do; none at all will not.
    c.advertisements[0].interfaces.clear();
    c.usable
        .insert(first.clone(), BTreeSet::from(["eth0".into()]));
    assert_eq!(owner_of(&c, &s), Some(first.clone()));
    c.usable.insert(first, BTreeSet::new());
    assert_eq!(owner_of(&c, &s).as_deref(), Some(second));
}

#[test]
fn no_node_with_a_usable_interface_means_silence_saying_so() {
    let mut c = cluster(&["a", "b"]);
    c.usable.insert("a".into(), BTreeSet::new());
    c.usable.insert("b".into(), BTreeSet::new());
    assert_eq!(
        decide(&c, &svc("default/web", "192.0.2.10")),
        Ownership::Silent(Silence::NoUsableInterface)
    );
}

#[test]
fn the_owner_answers_only_where_the_advertisements_it_can_carry_ask() {
    let mut c = cluster(&["a"]);
    c.advertisements = vec![
        Advertisement {
            name: "eth1".into(),
            interfaces: vec!["eth1".into()],
            ..Advertisement::default()
        },
        Advertisement {
            name: "eth2".into(),
            interfaces: vec!["eth2".into()],
            ..Advertisement::default()
        },
    ];
    c.usable.insert("a".into(), BTreeSet::from(["eth2".into()]));
    assert_eq!(
        decide(&c, &svc("default/web", "192.0.2.10")),
        Ownership::Owner {
            node: "a".into(),
            interfaces: Interfaces::Named(BTreeSet::from(["eth2".into()])),
        }
    );
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

    #[test]
    fn the_owner_of_a_shared_ip_is_a_candidate_of_every_service_holding_it(
        (nodes, alive, at) in arb_cluster(),
        serving in proptest::collection::vec(any::<u16>(), 1..4),
    ) {
        let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let mut c = cluster(&names);
        c.alive = alive;
        let holders: Vec<ServiceFacts> = serving
            .iter()
            .enumerate()
            .map(|(i, mask)| {
                let mut s = svc(&format!("default/s{i}"), &at);
                // Some Services are Local with endpoints on a subset of the nodes.
                if mask & 1 == 1 {
                    s.local = true;
                    s.serving_nodes = nodes
                        .iter()
                        .enumerate()
                        .filter(|(n, _)| mask & (2 << n) != 0)
                        .map(|(_, n)| n.clone())
                        .collect();
                }
                s
            })
            .collect();
        let decisions = decide_all(&c, &holders);
        prop_assert_eq!(decisions.len(), 1);
        if let Ownership::Owner { node, .. } = &decisions[&ip(&at)].ownership {
            // Alone, with only the owner alive, every holder would elect it too.
            let mut only = c.clone();
            only.alive = BTreeSet::from([node.clone()]);
            for h in &holders {
                prop_assert_eq!(owner_of(&only, h), Some(node.clone()));
            }
        }
    }

    #[test]
    fn a_node_that_can_carry_nothing_never_owns(
        (nodes, alive, at) in arb_cluster(),
        unusable in any::<u16>(),
    ) {
        let names: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let mut c = cluster(&names);
        c.alive = alive;
        for (i, n) in nodes.iter().enumerate() {
            if unusable & (1 << i) != 0 {
                c.usable.insert(n.clone(), BTreeSet::new());
            }
        }
        if let Some(o) = owner_of(&c, &svc("default/web", &at)) {
            prop_assert!(c.usable.get(&o).is_none_or(|u| !u.is_empty()));
        }
    }
}
