#![allow(clippy::unwrap_used)]

use super::*;
use crate::pool::{Ineligible, PoolSpec, ServiceAllocation};
use crate::request::{Port, Protocol};
use crate::selector::LabelSelector;

const PREFER: FamilyPolicy = FamilyPolicy::PreferDualStack(Family::V4, Family::V6);
const PREFER_V6: FamilyPolicy = FamilyPolicy::PreferDualStack(Family::V6, Family::V4);
const REQUIRE: FamilyPolicy = FamilyPolicy::RequireDualStack(Family::V4, Family::V6);
const V6_ONLY: FamilyPolicy = FamilyPolicy::SingleStack(Family::V6);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pools(specs: Vec<PoolSpec>) -> Vec<Pool> {
    specs.into_iter().map(|s| Pool::parse(s).unwrap()).collect()
}

fn allocator(specs: Vec<PoolSpec>) -> Allocator {
    let mut a = Allocator::new();
    let update = a.set_pools(pools(specs));
    assert_eq!(update, PoolsUpdate::default());
    a
}

fn svc(name: &str) -> ServiceRequest {
    ServiceRequest::new("ns", name)
}

/// An assignment as `"ip[,ip] @pool"`, for short assertions.
fn show(a: &Assignment) -> String {
    let ips: Vec<String> = a.ips.iter().map(ToString::to_string).collect();
    format!("{} @{}", ips.join(","), a.pool)
}

fn give(a: &mut Allocator, req: &ServiceRequest) -> String {
    show(&a.allocate(req).unwrap())
}

fn held(a: &Allocator, name: &str) -> Option<String> {
    a.lookup(&format!("ns/{name}")).as_ref().map(show)
}

/// Everything observable: assignments, and per pool its stats and number of Services.
type Snapshot = (
    Vec<(String, Assignment)>,
    Vec<(String, Option<PoolStats>, usize)>,
);

/// Captures everything observable, to prove that a failed call changed nothing.
fn snapshot(a: &Allocator) -> Snapshot {
    let stats = a
        .pools()
        .map(|p| (p.to_owned(), a.pool_stats(p), a.assignments_in_pool(p)))
        .collect();
    (a.assignments(), stats)
}

/// Runs `call`, asserts it failed with `expected` and left the allocator as it was.
fn fails(
    a: &mut Allocator,
    expected: AllocError,
    call: impl FnOnce(&mut Allocator) -> Result<Assignment, AllocError>,
) {
    let before = snapshot(a);
    assert_eq!(call(a), Err(expected));
    assert_eq!(snapshot(a), before, "a failed call changed the state");
}

fn admitting(namespaces: &[&str]) -> ServiceAllocation {
    ServiceAllocation {
        namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        ..ServiceAllocation::default()
    }
}

fn prioritized(priority: Option<u32>) -> ServiceAllocation {
    ServiceAllocation {
        priority,
        ..ServiceAllocation::default()
    }
}

// ---- Order within a pool ----

#[test]
fn lowest_free_address_wins_and_ranges_go_in_spec_order() {
    let mut a = allocator(vec![PoolSpec::new(
        "p",
        &["198.51.100.10-198.51.100.11", "192.0.2.0/31"],
    )]);
    let got: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| give(&mut a, &svc(n)))
        .collect();
    assert_eq!(
        got,
        [
            "198.51.100.10 @p",
            "198.51.100.11 @p",
            "192.0.2.0 @p",
            "192.0.2.1 @p"
        ]
    );
}

#[test]
fn released_address_is_reused_lowest_first() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/29"])]);
    for n in ["a", "b", "c", "d"] {
        give(&mut a, &svc(n));
    }
    assert_eq!(
        a.release("ns/c").map(|x| show(&x)),
        Some("192.0.2.2 @p".into())
    );
    assert_eq!(
        a.release("ns/b").map(|x| show(&x)),
        Some("192.0.2.1 @p".into())
    );
    assert_eq!(a.release("ns/b"), None);
    assert_eq!(give(&mut a, &svc("e")), "192.0.2.1 @p");
    assert_eq!(give(&mut a, &svc("f")), "192.0.2.2 @p");
    assert_eq!(give(&mut a, &svc("g")), "192.0.2.4 @p");
}

#[test]
fn allocate_is_idempotent_and_stable() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/29"])]);
    give(&mut a, &svc("a"));
    assert_eq!(give(&mut a, &svc("b")), "192.0.2.1 @p");
    a.release("ns/a");
    // b keeps its address although a lower one is free now.
    assert_eq!(give(&mut a, &svc("b")), "192.0.2.1 @p");
    assert_eq!(give(&mut a, &svc("b")), "192.0.2.1 @p");
    assert_eq!(a.pool_stats("p").unwrap().assigned_v4, 1);
}

// ---- Order of pools ----

#[test]
fn pools_without_service_allocation_are_tried_by_name_and_the_next_when_full() {
    let mut a = allocator(vec![
        PoolSpec::new("zeta", &["198.51.100.0/24"]),
        PoolSpec::new("alpha", &["192.0.2.0/31"]),
    ]);
    assert_eq!(give(&mut a, &svc("a")), "192.0.2.0 @alpha");
    assert_eq!(give(&mut a, &svc("b")), "192.0.2.1 @alpha");
    assert_eq!(give(&mut a, &svc("c")), "198.51.100.0 @zeta");
}

#[test]
fn service_allocation_pools_come_first_by_priority_then_unset_and_zero_then_by_name() {
    let mut a = allocator(vec![
        PoolSpec::new("plain", &["203.0.113.0/32"]),
        PoolSpec::new("unset", &["198.51.100.1/32"]).allocation(prioritized(None)),
        PoolSpec::new("zero", &["198.51.100.0/32"]).allocation(prioritized(Some(0))),
        PoolSpec::new("ten", &["192.0.2.10/32"]).allocation(prioritized(Some(10))),
        PoolSpec::new("two-b", &["192.0.2.3/32"]).allocation(prioritized(Some(2))),
        PoolSpec::new("two-a", &["192.0.2.2/32"]).allocation(prioritized(Some(2))),
    ]);
    let order: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|n| give(&mut a, &svc(n)))
        .collect();
    assert_eq!(
        order,
        [
            "192.0.2.2 @two-a",
            "192.0.2.3 @two-b",
            "192.0.2.10 @ten",
            "198.51.100.1 @unset",
            "198.51.100.0 @zero",
            "203.0.113.0 @plain"
        ]
    );
}

#[test]
fn service_allocation_pool_is_never_used_for_a_service_it_does_not_admit() {
    let mut a = allocator(vec![
        PoolSpec::new("shop-only", &["192.0.2.0/30"]).allocation(admitting(&["shop"])),
        PoolSpec::new("general", &["198.51.100.0/30"]),
    ]);
    assert_eq!(
        give(&mut a, &ServiceRequest::new("shop", "web")),
        "192.0.2.0 @shop-only"
    );
    assert_eq!(give(&mut a, &svc("other")), "198.51.100.0 @general");
    let reason = Ineligible::Namespace {
        namespace: "ns".into(),
    };
    fails(
        &mut a,
        AllocError::PoolNotAllowed {
            ip: None,
            pool: "shop-only".into(),
            reason: reason.clone(),
        },
        |a| a.allocate(&svc("x").in_pool("shop-only")),
    );
    fails(
        &mut a,
        AllocError::PoolNotAllowed {
            ip: Some(ip("192.0.2.3")),
            pool: "shop-only".into(),
            reason,
        },
        |a| a.allocate(&svc("x").requesting(ip("192.0.2.3"))),
    );
    let err = a
        .allocate(&svc("x").requesting(ip("192.0.2.3")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "requested IP 192.0.2.3 is in pool \"shop-only\", which does not admit this service: namespace \"ns\" is not in its namespaces and matches none of its namespaceSelectors"
    );
}

#[test]
fn service_selectors_admit_by_label_and_namespace_selectors_by_namespace_label() {
    let sa = ServiceAllocation {
        namespace_selectors: vec![LabelSelector::labels([("team", "red")])],
        service_selectors: vec![LabelSelector::labels([("app", "web")])],
        ..ServiceAllocation::default()
    };
    let mut a = allocator(vec![PoolSpec::new("red", &["192.0.2.0/30"]).allocation(sa)]);
    let admitted = svc("a").namespace_label("team", "red").label("app", "web");
    assert_eq!(give(&mut a, &admitted), "192.0.2.0 @red");
    let no_label = svc("b").namespace_label("team", "red");
    assert_eq!(
        a.allocate(&no_label),
        Err(AllocError::NoEligiblePool {
            family: Wanted::One(Family::V4)
        })
    );
}

#[test]
fn manual_pool_is_used_only_when_named_or_requested_by_ip() {
    let mut a = allocator(vec![PoolSpec::new("manual", &["192.0.2.0/30"]).manual()]);
    fails(
        &mut a,
        AllocError::NoEligiblePool {
            family: Wanted::One(Family::V4),
        },
        |a| a.allocate(&svc("a")),
    );
    assert_eq!(
        give(&mut a, &svc("a").in_pool("manual")),
        "192.0.2.0 @manual"
    );
    assert_eq!(
        give(&mut a, &svc("b").requesting(ip("192.0.2.3"))),
        "192.0.2.3 @manual"
    );
}

#[test]
fn unknown_requested_pool_is_an_error_naming_it() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/30"])]);
    fails(
        &mut a,
        AllocError::UnknownPool {
            pool: "nope".into(),
        },
        |a| a.allocate(&svc("a").in_pool("nope")),
    );
    let text = a
        .allocate(&svc("a").in_pool("nope"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("\"nope\""), "{text}");
}

#[test]
fn requested_pool_is_used_even_when_another_comes_first() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/30"]),
        PoolSpec::new("b", &["198.51.100.0/30"]),
    ]);
    assert_eq!(give(&mut a, &svc("x").in_pool("b")), "198.51.100.0 @b");
    // Naming another pool later moves the Service there.
    assert_eq!(give(&mut a, &svc("x").in_pool("a")), "192.0.2.0 @a");
    assert_eq!(a.pool_stats("b").unwrap().assigned_v4, 0);
}

#[test]
fn full_requested_pool_is_exhausted_and_one_without_the_family_says_so() {
    let mut a = allocator(vec![
        PoolSpec::new("tiny", &["192.0.2.0/32"]),
        PoolSpec::new("big", &["198.51.100.0/24"]),
    ]);
    give(&mut a, &svc("a").in_pool("tiny"));
    let exhausted = AllocError::PoolExhausted {
        pool: "tiny".into(),
        family: Wanted::One(Family::V4),
    };
    fails(&mut a, exhausted, |a| a.allocate(&svc("b").in_pool("tiny")));
    let lacking = AllocError::FamilyNotInPool {
        pool: "tiny".into(),
        family: Wanted::One(Family::V6),
    };
    fails(&mut a, lacking, |a| {
        a.allocate(&svc("b").in_pool("tiny").families(V6_ONLY))
    });
}

#[test]
fn all_candidates_full_names_every_pool_tried() {
    let mut a = allocator(vec![
        PoolSpec::new("b", &["198.51.100.0/32"]),
        PoolSpec::new("a", &["192.0.2.0/32"]),
        PoolSpec::new("v6", &["2001:db8::/120"]),
        PoolSpec::new("manual", &["203.0.113.0/24"]).manual(),
    ]);
    give(&mut a, &svc("x"));
    give(&mut a, &svc("y"));
    let expected = AllocError::NoAddressAvailable {
        family: Wanted::One(Family::V4),
        pools: vec!["a".into(), "b".into()],
    };
    fails(&mut a, expected, |a| a.allocate(&svc("z")));
    let text = a.allocate(&svc("z")).unwrap_err().to_string();
    assert_eq!(
        text,
        "no free IPv4 address in the pools tried (a, b): add addresses to one of them"
    );
}

#[test]
fn no_candidate_with_the_family_is_no_eligible_pool() {
    let mut a = allocator(vec![PoolSpec::new("v4", &["192.0.2.0/24"])]);
    fails(
        &mut a,
        AllocError::NoEligiblePool {
            family: Wanted::One(Family::V6),
        },
        |a| a.allocate(&svc("x").families(V6_ONLY)),
    );
    fails(
        &mut a,
        AllocError::NoEligiblePool {
            family: Wanted::Both,
        },
        |a| a.allocate(&svc("x").families(REQUIRE)),
    );
    let mut empty = Allocator::new();
    fails(
        &mut empty,
        AllocError::NoEligiblePool {
            family: Wanted::Either,
        },
        |a| a.allocate(&svc("x").families(PREFER)),
    );
}

// ---- Requested IPs ----

#[test]
fn requested_ip_outside_every_pool_is_rejected() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    fails(
        &mut a,
        AllocError::NotInAnyPool {
            ip: ip("198.51.100.1"),
        },
        |a| a.allocate(&svc("a").requesting(ip("198.51.100.1"))),
    );
}

#[test]
fn requested_ip_is_given_even_when_lower_ones_are_free() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    assert_eq!(
        give(&mut a, &svc("a").requesting(ip("192.0.2.77"))),
        "192.0.2.77 @p"
    );
    assert_eq!(
        give(&mut a, &svc("b").requesting_in_spec(ip("192.0.2.78"))),
        "192.0.2.78 @p"
    );
    assert_eq!(give(&mut a, &svc("c")), "192.0.2.0 @p");
}

#[test]
fn annotation_and_spec_together_are_rejected() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    let req = svc("a")
        .requesting(ip("192.0.2.1"))
        .requesting_in_spec(ip("192.0.2.1"));
    fails(&mut a, AllocError::BothAnnotationAndSpec, |a| {
        a.allocate(&req)
    });
}

#[test]
fn two_requested_ips_of_one_family_are_rejected() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    let req = svc("a")
        .families(PREFER)
        .requesting(ip("192.0.2.1"))
        .requesting(ip("192.0.2.2"));
    let expected = AllocError::TwoOfOneFamily {
        family: Family::V4,
        first: ip("192.0.2.1"),
        second: ip("192.0.2.2"),
    };
    fails(&mut a, expected, |a| a.allocate(&req));
}

#[test]
fn requested_ip_of_a_family_the_service_does_not_use_is_rejected() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24", "2001:db8::/64"])]);
    let expected = AllocError::WrongFamily {
        ip: ip("2001:db8::5"),
        policy: FamilyPolicy::SingleStack(Family::V4),
    };
    fails(&mut a, expected, |a| {
        a.allocate(&svc("a").requesting(ip("2001:db8::5")))
    });
}

#[test]
fn requested_buggy_ip_is_rejected_only_when_the_pool_avoids_buggy_ips() {
    let mut a = allocator(vec![
        PoolSpec::new("careful", &["192.0.2.0/24"]).avoiding_buggy_ips(),
        PoolSpec::new("plain", &["198.51.100.0/24"]),
    ]);
    let expected = AllocError::BuggyIp {
        ip: ip("192.0.2.255"),
        pool: "careful".into(),
    };
    fails(&mut a, expected, |a| {
        a.allocate(&svc("a").requesting(ip("192.0.2.255")))
    });
    assert_eq!(
        give(&mut a, &svc("b").requesting(ip("198.51.100.255"))),
        "198.51.100.255 @plain"
    );
}

#[test]
fn dual_requested_ips_must_come_from_one_pool() {
    let mut a = allocator(vec![
        PoolSpec::new("four", &["192.0.2.0/24"]),
        PoolSpec::new("six", &["2001:db8::/64"]),
    ]);
    let req = svc("a")
        .families(REQUIRE)
        .requesting(ip("192.0.2.1"))
        .requesting(ip("2001:db8::1"));
    let expected = AllocError::DifferentPools {
        ip1: ip("192.0.2.1"),
        pool1: "four".into(),
        ip2: ip("2001:db8::1"),
        pool2: "six".into(),
    };
    fails(&mut a, expected, |a| a.allocate(&req));
}

#[test]
fn require_dual_stack_needs_a_requested_ip_of_each_family() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24", "2001:db8::/64"])]);
    let req = svc("a").families(REQUIRE).requesting(ip("192.0.2.1"));
    fails(
        &mut a,
        AllocError::DualStackNeedsBoth {
            missing: Family::V6,
        },
        |a| a.allocate(&req),
    );
    let both = req.requesting(ip("2001:db8::1"));
    assert_eq!(give(&mut a, &both), "192.0.2.1,2001:db8::1 @p");
}

#[test]
fn prefer_dual_stack_with_one_requested_ip_gets_just_that_ip() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24", "2001:db8::/64"])]);
    assert_eq!(
        give(
            &mut a,
            &svc("a").families(PREFER).requesting(ip("2001:db8::9"))
        ),
        "2001:db8::9 @p"
    );
}

#[test]
fn requested_ip_in_another_pool_than_the_requested_one_is_rejected() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/24"]),
        PoolSpec::new("b", &["198.51.100.0/24"]),
    ]);
    let expected = AllocError::NotInRequestedPool {
        ip: ip("192.0.2.1"),
        pool: "a".into(),
        requested: "b".into(),
    };
    fails(&mut a, expected, |a| {
        a.allocate(&svc("x").in_pool("b").requesting(ip("192.0.2.1")))
    });
}

#[test]
fn moving_to_newly_requested_ips_frees_the_old_ones() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/24"]),
        PoolSpec::new("b", &["198.51.100.0/24"]),
    ]);
    assert_eq!(give(&mut a, &svc("x")), "192.0.2.0 @a");
    assert_eq!(
        give(&mut a, &svc("x").requesting(ip("198.51.100.5"))),
        "198.51.100.5 @b"
    );
    assert_eq!(a.pool_stats("a").unwrap().assigned_v4, 0);
    assert_eq!(a.assignments_in_pool("a"), 0);
    assert_eq!(give(&mut a, &svc("y")), "192.0.2.0 @a");
    // Dropping the request afterwards keeps the IP (it is still valid).
    assert_eq!(give(&mut a, &svc("x")), "198.51.100.5 @b");
}

#[test]
fn a_failed_request_keeps_the_old_assignment() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &svc("x"));
    fails(
        &mut a,
        AllocError::NotInAnyPool {
            ip: ip("203.0.113.1"),
        },
        |a| a.allocate(&svc("x").requesting(ip("203.0.113.1"))),
    );
    assert_eq!(held(&a, "x"), Some("192.0.2.0 @p".into()));
}

// ---- avoidBuggyIPs ----

#[test]
fn avoid_buggy_ips_never_hands_out_dot_0_or_dot_255() {
    let mut a = allocator(vec![
        PoolSpec::new("p", &["192.0.2.254-192.0.3.2"]).avoiding_buggy_ips(),
    ]);
    let got: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| give(&mut a, &svc(n)))
        .collect();
    assert_eq!(got, ["192.0.2.254 @p", "192.0.3.1 @p", "192.0.3.2 @p"]);
    assert_eq!(
        a.allocate(&svc("d")).unwrap_err(),
        AllocError::NoAddressAvailable {
            family: Wanted::One(Family::V4),
            pools: vec!["p".into()]
        }
    );
    let stats = a.pool_stats("p").unwrap();
    assert_eq!((stats.assigned_v4, stats.available_v4), (3, 0));
}

#[test]
fn avoid_buggy_ips_leaves_ipv6_alone() {
    let mut a = allocator(vec![
        PoolSpec::new("p", &["2001:db8::ff-2001:db8::100"]).avoiding_buggy_ips(),
    ]);
    assert_eq!(give(&mut a, &svc("a").families(V6_ONLY)), "2001:db8::ff @p");
    assert_eq!(
        give(
            &mut a,
            &svc("b").families(V6_ONLY).requesting(ip("2001:db8::100"))
        ),
        "2001:db8::100 @p"
    );
}

// ---- Dual stack ----

fn dual_pools() -> Allocator {
    allocator(vec![
        PoolSpec::new("a-v4-only", &["192.0.2.0/30"]),
        PoolSpec::new("b-dual", &["198.51.100.0/30", "2001:db8:1::/126"]),
        PoolSpec::new("c-v6-only", &["2001:db8:2::/126"]),
    ])
}

#[test]
fn require_dual_stack_takes_both_families_from_one_pool() {
    let mut a = dual_pools();
    assert_eq!(
        give(&mut a, &svc("x").families(REQUIRE)),
        "198.51.100.0,2001:db8:1:: @b-dual"
    );
}

#[test]
fn ips_are_listed_in_the_service_family_order() {
    let mut a = dual_pools();
    let v6_first = FamilyPolicy::RequireDualStack(Family::V6, Family::V4);
    assert_eq!(
        give(&mut a, &svc("x").families(v6_first)),
        "2001:db8:1::,198.51.100.0 @b-dual"
    );
    // Flipping the order keeps the IPs and reorders them.
    assert_eq!(
        give(&mut a, &svc("x").families(REQUIRE)),
        "198.51.100.0,2001:db8:1:: @b-dual"
    );
}

#[test]
fn prefer_dual_stack_takes_both_when_a_pool_can() {
    let mut a = dual_pools();
    assert_eq!(
        give(&mut a, &svc("x").families(PREFER)),
        "198.51.100.0,2001:db8:1:: @b-dual"
    );
}

#[test]
fn prefer_dual_stack_falls_back_to_its_first_family_then_the_other() {
    let mut a = allocator(vec![
        PoolSpec::new("v6", &["2001:db8::/126"]),
        PoolSpec::new("v4", &["192.0.2.0/30"]),
    ]);
    assert_eq!(give(&mut a, &svc("x").families(PREFER)), "192.0.2.0 @v4");
    assert_eq!(
        give(&mut a, &svc("y").families(PREFER_V6)),
        "2001:db8:: @v6"
    );
    let mut v6_only = allocator(vec![PoolSpec::new("v6", &["2001:db8::/126"])]);
    assert_eq!(
        give(&mut v6_only, &svc("x").families(PREFER)),
        "2001:db8:: @v6"
    );
}

#[test]
fn prefer_dual_stack_adds_the_missing_family_later_from_the_same_pool() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/31", "2001:db8::/128"]),
        PoolSpec::new("b", &["2001:db8:1::/120"]),
    ]);
    assert_eq!(
        give(&mut a, &svc("first").families(V6_ONLY)),
        "2001:db8:: @a"
    );
    // The only dual pool has no IPv6 left: x gets IPv4 only, and not IPv6 from another pool.
    assert_eq!(give(&mut a, &svc("x").families(PREFER)), "192.0.2.0 @a");
    assert_eq!(give(&mut a, &svc("x").families(PREFER)), "192.0.2.0 @a");
    a.release("ns/first");
    assert_eq!(
        give(&mut a, &svc("x").families(PREFER)),
        "192.0.2.0,2001:db8:: @a"
    );
}

#[test]
fn require_dual_stack_completes_a_single_ip_from_its_pool_or_moves() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/31", "2001:db8::/127"]),
        PoolSpec::new("b", &["198.51.100.0/31", "2001:db8:1::/127"]),
    ]);
    // Restored with one IP (the status had one): allocate completes it from the same pool.
    a.restore(&svc("x").families(REQUIRE), &[ip("192.0.2.1")])
        .unwrap();
    assert_eq!(
        give(&mut a, &svc("x").families(REQUIRE)),
        "192.0.2.1,2001:db8:: @a"
    );
    // Pool a has no IPv6 left for y, so y moves to b as a whole.
    give(&mut a, &svc("z").families(V6_ONLY));
    a.restore(&svc("y").families(REQUIRE), &[ip("192.0.2.0")])
        .unwrap();
    assert_eq!(
        give(&mut a, &svc("y").families(REQUIRE)),
        "198.51.100.0,2001:db8:1:: @b"
    );
    assert_eq!(a.pool_stats("a").unwrap().assigned_v4, 1);
}

#[test]
fn switching_to_single_stack_keeps_the_ip_of_that_family() {
    let mut a = dual_pools();
    give(&mut a, &svc("x").families(PREFER));
    assert_eq!(
        give(&mut a, &svc("x").families(V6_ONLY)),
        "2001:db8:1:: @b-dual"
    );
    assert_eq!(a.pool_stats("b-dual").unwrap().assigned_v4, 0);
}

#[test]
fn require_dual_stack_skips_pools_that_cannot_give_both() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/30", "2001:db8::/128"]),
        PoolSpec::new("b", &["198.51.100.0/30", "2001:db8:1::/126"]),
    ]);
    give(&mut a, &svc("v6").families(V6_ONLY));
    assert_eq!(
        give(&mut a, &svc("x").families(REQUIRE)),
        "198.51.100.0,2001:db8:1:: @b"
    );
    give(&mut a, &svc("w").families(REQUIRE));
    give(&mut a, &svc("y").families(REQUIRE));
    give(&mut a, &svc("z").families(REQUIRE));
    let expected = AllocError::NoAddressAvailable {
        family: Wanted::Both,
        pools: vec!["a".into(), "b".into()],
    };
    fails(&mut a, expected, |a| {
        a.allocate(&svc("full").families(REQUIRE))
    });
}

// ---- Sharing ----

fn web(name: &str, port: u16) -> ServiceRequest {
    svc(name).sharing("web").ports(&[Port::tcp(port)])
}

#[test]
fn services_with_one_key_and_disjoint_ports_share_the_lowest_shared_ip() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &svc("first"));
    assert_eq!(give(&mut a, &web("http", 80)), "192.0.2.1 @p");
    assert_eq!(give(&mut a, &web("https", 443)), "192.0.2.1 @p");
    // Same port: not shareable, so a fresh IP.
    assert_eq!(give(&mut a, &web("other-http", 80)), "192.0.2.2 @p");
    // Port 8080 fits on both shared IPs: the lowest wins.
    assert_eq!(give(&mut a, &web("alt", 8080)), "192.0.2.1 @p");
    let stats = a.pool_stats("p").unwrap();
    assert_eq!((stats.assigned_v4, stats.available_v4), (3, 253));
    assert_eq!(a.assignments_in_pool("p"), 5);
}

#[test]
fn sharing_needs_the_same_backend() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &web("a", 80).backend("app=a"));
    assert_eq!(give(&mut a, &web("b", 81).backend("app=b")), "192.0.2.1 @p");
    let expected = AllocError::IpInUse {
        ip: ip("192.0.2.0"),
        holder: "ns/a".into(),
    };
    fails(&mut a, expected, |a| {
        a.allocate(&web("c", 82).backend("app=b").requesting(ip("192.0.2.0")))
    });
    assert_eq!(give(&mut a, &web("d", 83).backend("app=a")), "192.0.2.0 @p");
}

#[test]
fn requested_shared_ip_with_a_port_clash_is_port_in_use() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &web("a", 80));
    let req = web("b", 80).requesting(ip("192.0.2.0"));
    let expected = AllocError::PortInUse {
        ip: ip("192.0.2.0"),
        protocol: Protocol::Tcp,
        port: 80,
        holder: "ns/a".into(),
    };
    fails(&mut a, expected, |a| a.allocate(&req));
    assert_eq!(
        a.allocate(&req).unwrap_err().to_string(),
        "IP 192.0.2.0 already serves TCP/80 for ns/a"
    );
    assert_eq!(
        give(
            &mut a,
            &svc("c")
                .sharing("web")
                .ports(&[Port::udp(80)])
                .requesting(ip("192.0.2.0"))
        ),
        "192.0.2.0 @p"
    );
}

#[test]
fn requested_ip_held_without_a_sharing_key_is_in_use() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &svc("a"));
    let expected = AllocError::IpInUse {
        ip: ip("192.0.2.0"),
        holder: "ns/a".into(),
    };
    fails(&mut a, expected.clone(), |a| {
        a.allocate(&web("b", 80).requesting(ip("192.0.2.0")))
    });
    fails(&mut a, expected, |a| {
        a.allocate(&svc("b").requesting(ip("192.0.2.0")))
    });
}

#[test]
fn sole_holder_may_change_key_backend_and_ports_in_place() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    assert_eq!(give(&mut a, &web("a", 80)), "192.0.2.0 @p");
    assert_eq!(
        give(
            &mut a,
            &svc("a")
                .sharing("other")
                .backend("x")
                .ports(&[Port::tcp(22)])
        ),
        "192.0.2.0 @p"
    );
    // The new key is what others must match now.
    assert_eq!(give(&mut a, &web("b", 80)), "192.0.2.1 @p");
    assert_eq!(
        give(
            &mut a,
            &svc("c")
                .sharing("other")
                .backend("x")
                .ports(&[Port::tcp(80)])
        ),
        "192.0.2.0 @p"
    );
}

#[test]
fn holder_whose_ports_now_clash_moves_to_a_free_ip() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &web("a", 80));
    assert_eq!(give(&mut a, &web("b", 443)), "192.0.2.0 @p");
    assert_eq!(give(&mut a, &web("b", 80)), "192.0.2.1 @p");
    assert_eq!(held(&a, "a"), Some("192.0.2.0 @p".into()));
}

#[test]
fn shared_ip_is_free_only_when_its_last_holder_leaves() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/31"])]);
    give(&mut a, &web("a", 80));
    give(&mut a, &web("b", 81));
    a.release("ns/a");
    assert_eq!(a.pool_stats("p").unwrap().assigned_v4, 1);
    assert_eq!(give(&mut a, &svc("c")), "192.0.2.1 @p");
    a.release("ns/b");
    assert_eq!(give(&mut a, &svc("d")), "192.0.2.0 @p");
    assert_eq!(a.pool_stats("p").unwrap().available_v4, 0);
}

#[test]
fn shared_ips_are_only_reused_within_the_pool_being_tried() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/24"]),
        PoolSpec::new("b", &["198.51.100.0/24"]),
    ]);
    give(&mut a, &web("x", 80).in_pool("b"));
    assert_eq!(give(&mut a, &web("y", 81)), "192.0.2.0 @a");
    assert_eq!(give(&mut a, &web("z", 82).in_pool("b")), "198.51.100.0 @b");
}

/// Allocates twice, asserting that the second call returns the same and changes nothing.
fn give_twice(a: &mut Allocator, req: &ServiceRequest) -> String {
    let first = give(a, req);
    let state = snapshot(a);
    assert_eq!(give(a, req), first, "second allocate differs");
    assert_eq!(snapshot(a), state, "second allocate changed the state");
    first
}

#[test]
fn a_dual_stack_service_leaving_a_shared_ipv4_is_complete_after_one_allocate() {
    // The case `random_sequences_keep_every_rule` found: the first allocate gave IPv4 only,
    // and the second added the IPv6 address the Service had just let go.
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/29", "2001:db8::/126"]),
        PoolSpec::new("b", &["192.0.2.254-192.0.3.1"]).avoiding_buggy_ips(),
        PoolSpec::new("c", &["203.0.113.0/30", "2001:db8:1::/127"]).manual(),
    ]);
    let http = [Port::tcp(80)];
    let dual = svc("dual").families(PREFER).ports(&http);
    assert_eq!(
        give(&mut a, &dual.clone().sharing("key0")),
        "192.0.2.0,2001:db8:: @a"
    );
    assert_eq!(
        give(&mut a, &svc("six1").families(V6_ONLY)),
        "2001:db8::1 @a"
    );
    assert_eq!(
        give(&mut a, &svc("six2").families(V6_ONLY)),
        "2001:db8::2 @a"
    );
    let partner = svc("partner").sharing("key0").ports(&[Port::tcp(443)]);
    assert_eq!(give(&mut a, &partner), "192.0.2.0 @a");
    assert_eq!(
        give(&mut a, &svc("six3").families(V6_ONLY)),
        "2001:db8::3 @a"
    );
    // Without the key it may not share 192.0.2.0 with partner any more: it keeps its own IPv6
    // and gets a free IPv4, both in this one call.
    assert_eq!(give_twice(&mut a, &dual), "192.0.2.1,2001:db8:: @a");
    assert_eq!(held(&a, "partner"), Some("192.0.2.0 @a".into()));
    let stats = a.pool_stats("a").unwrap();
    assert_eq!((stats.assigned_v4, stats.assigned_v6), (2, 4));
}

#[test]
fn a_dual_stack_service_whose_shared_ipv6_became_incompatible_gets_another_from_its_pool() {
    let mut a = allocator(vec![pool_a(), pool_b()]);
    let x = svc("x").families(PREFER).ports(&[Port::tcp(80)]);
    a.restore(
        &x.clone().sharing("web"),
        &[ip("198.51.100.1"), ip("2001:db8:1::1")],
    )
    .unwrap();
    let y = web("y", 443)
        .families(V6_ONLY)
        .requesting(ip("2001:db8:1::1"));
    assert_eq!(give(&mut a, &y), "2001:db8:1::1 @b");
    // x drops its sharing key: it keeps the IPv4 it holds alone, and replaces the IPv6 it may no
    // longer share with the lowest free one of its own pool, although pool a comes first.
    assert_eq!(give_twice(&mut a, &x), "198.51.100.1,2001:db8:1:: @b");
    assert_eq!(held(&a, "y"), Some("2001:db8:1::1 @b".into()));
    assert_eq!(a.assignments_in_pool("a"), 0);
    // The same when ports come to clash: the other family is replaced, what is shareable kept.
    let z = web("z", 80).families(PREFER);
    assert_eq!(give(&mut a, &z), "192.0.2.0,2001:db8:: @a");
    let w = web("w", 8080).requesting(ip("192.0.2.0"));
    assert_eq!(give(&mut a, &w), "192.0.2.0 @a");
    assert_eq!(
        give_twice(&mut a, &web("z", 8080).families(PREFER)),
        "192.0.2.1,2001:db8:: @a"
    );
}

#[test]
fn an_ip_no_longer_shareable_without_a_replacement_in_the_pool_follows_the_family_policy() {
    let one_v6 = || PoolSpec::new("a", &["192.0.2.0/30", "2001:db8::/128"]);
    let setup = |a: &mut Allocator, policy| {
        let req = svc("x")
            .families(policy)
            .sharing("web")
            .ports(&[Port::tcp(80)]);
        assert_eq!(give(a, &req), "192.0.2.0,2001:db8:: @a");
        assert_eq!(give(a, &web("y", 443).families(V6_ONLY)), "2001:db8:: @a");
    };
    // PreferDualStack keeps its IPv4 alone rather than moving, as when a pair cannot be completed.
    let mut a = allocator(vec![one_v6(), pool_b()]);
    setup(&mut a, PREFER);
    assert_eq!(
        give_twice(&mut a, &svc("x").families(PREFER).ports(&[Port::tcp(80)])),
        "192.0.2.0 @a"
    );
    // RequireDualStack moves as a whole to a pool that can give both.
    let mut a = allocator(vec![one_v6(), pool_b()]);
    setup(&mut a, REQUIRE);
    assert_eq!(
        give_twice(&mut a, &svc("x").families(REQUIRE).ports(&[Port::tcp(80)])),
        "198.51.100.0,2001:db8:1:: @b"
    );
    assert_eq!(a.pool_stats("a").unwrap().assigned_v4, 0);
    // A draining pool gives no replacement either.
    let mut a = draining_after(|a| setup(a, PREFER));
    assert_eq!(
        give_twice(&mut a, &svc("x").families(PREFER).ports(&[Port::tcp(80)])),
        "192.0.2.0 @a"
    );
    assert_eq!(held(&a, "y"), Some("2001:db8:: @a".into()));
}

// ---- Restore ----

#[test]
fn restore_records_ips_without_applying_pool_order() {
    let mut a = allocator(vec![
        PoolSpec::new("a", &["192.0.2.0/24"]),
        PoolSpec::new("b", &["198.51.100.0/24"]).manual(),
    ]);
    assert_eq!(
        show(&a.restore(&svc("x"), &[ip("198.51.100.7")]).unwrap()),
        "198.51.100.7 @b"
    );
    assert_eq!(
        show(&a.restore(&svc("y"), &[ip("192.0.2.200")]).unwrap()),
        "192.0.2.200 @a"
    );
    // Allocating afterwards keeps them where they are.
    assert_eq!(give(&mut a, &svc("x")), "198.51.100.7 @b");
    assert_eq!(give(&mut a, &svc("y")), "192.0.2.200 @a");
    assert_eq!(give(&mut a, &svc("z")), "192.0.2.0 @a");
}

#[test]
fn restore_is_idempotent() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24", "2001:db8::/64"])]);
    let req = svc("x")
        .families(PREFER)
        .sharing("k")
        .ports(&[Port::tcp(80)]);
    let addrs = [ip("2001:db8::3"), ip("192.0.2.3")];
    let first = a.restore(&req, &addrs).unwrap();
    let state = snapshot(&a);
    assert_eq!(a.restore(&req, &addrs).unwrap(), first);
    assert_eq!(snapshot(&a), state);
    assert_eq!(show(&first), "192.0.2.3,2001:db8::3 @p");
}

#[test]
fn restore_refuses_what_cannot_be_held_and_changes_nothing() {
    let mut a = allocator(vec![
        PoolSpec::new("p", &["192.0.2.0/24", "2001:db8::/64"]).avoiding_buggy_ips(),
        PoolSpec::new("q", &["198.51.100.0/24"]),
        PoolSpec::new("r", &["203.0.113.0/25"]),
    ]);
    a.restore(&svc("holder"), &[ip("192.0.2.1")]).unwrap();
    let cases: Vec<(Vec<IpAddr>, ServiceRequest, AllocError)> = vec![
        (vec![], svc("x"), AllocError::NoIpsToRestore),
        (
            vec![ip("203.0.113.200")],
            svc("x"),
            AllocError::NotInAnyPool {
                ip: ip("203.0.113.200"),
            },
        ),
        (
            vec![ip("192.0.2.0")],
            svc("x"),
            AllocError::BuggyIp {
                ip: ip("192.0.2.0"),
                pool: "p".into(),
            },
        ),
        (
            vec![ip("2001:db8::1")],
            svc("x"),
            AllocError::WrongFamily {
                ip: ip("2001:db8::1"),
                policy: FamilyPolicy::SingleStack(Family::V4),
            },
        ),
        (
            vec![ip("198.51.100.1"), ip("2001:db8::1")],
            svc("x").families(PREFER),
            AllocError::DifferentPools {
                ip1: ip("198.51.100.1"),
                pool1: "q".into(),
                ip2: ip("2001:db8::1"),
                pool2: "p".into(),
            },
        ),
        (
            vec![ip("192.0.2.1")],
            svc("x"),
            AllocError::IpInUse {
                ip: ip("192.0.2.1"),
                holder: "ns/holder".into(),
            },
        ),
    ];
    for (ips, req, expected) in cases {
        fails(&mut a, expected, |a| a.restore(&req, &ips));
    }
}

#[test]
fn restore_accepts_a_pool_that_no_longer_admits_the_service_and_allocate_moves_it() {
    let mut a = allocator(vec![
        PoolSpec::new("shop", &["192.0.2.0/24"]).allocation(admitting(&["shop"])),
        PoolSpec::new("general", &["198.51.100.0/24"]),
    ]);
    assert_eq!(
        show(&a.restore(&svc("x"), &[ip("192.0.2.9")]).unwrap()),
        "192.0.2.9 @shop"
    );
    assert_eq!(give(&mut a, &svc("x")), "198.51.100.0 @general");
    assert_eq!(a.assignments_in_pool("shop"), 0);
}

#[test]
fn restoring_other_ips_for_a_service_replaces_its_own() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    a.restore(&svc("x"), &[ip("192.0.2.5")]).unwrap();
    a.restore(&svc("x"), &[ip("192.0.2.6")]).unwrap();
    assert_eq!(held(&a, "x"), Some("192.0.2.6 @p".into()));
    assert_eq!(a.pool_stats("p").unwrap().assigned_v4, 1);
}

#[test]
fn restore_ignores_the_requested_ips_and_pool_which_allocate_applies_afterwards() {
    let mut a = allocator(vec![
        PoolSpec::new("p", &["192.0.2.0/24"]),
        PoolSpec::new("q", &["198.51.100.0/24"]),
    ]);
    let req = svc("x").in_pool("q");
    assert_eq!(
        show(&a.restore(&req, &[ip("192.0.2.9")]).unwrap()),
        "192.0.2.9 @p"
    );
    assert_eq!(give(&mut a, &req), "198.51.100.0 @q");
}

// ---- set_pools ----

#[test]
fn overlapping_pool_is_rejected_naming_the_earlier_pool_and_addresses() {
    let mut a = Allocator::new();
    let update = a.set_pools(pools(vec![
        PoolSpec::new("old", &["192.0.2.0/25"]),
        PoolSpec::new("new", &["198.51.100.0/24", "192.0.2.100-192.0.2.200"]),
        PoolSpec::new("old", &["203.0.113.0/24"]),
        PoolSpec::new("v6", &["2001:db8::/64"]),
    ]));
    let rejection = PoolRejection::Overlaps {
        other: "old".into(),
        first: ip("192.0.2.100"),
        last: ip("192.0.2.127"),
    };
    assert_eq!(
        update.rejected,
        vec![
            ("new".to_owned(), rejection.clone()),
            (
                "old".to_owned(),
                PoolRejection::DuplicateName { name: "old".into() }
            ),
        ]
    );
    assert_eq!(
        rejection.to_string(),
        "overlaps pool \"old\" at 192.0.2.100-192.0.2.127; the earlier pool keeps these addresses"
    );
    assert_eq!(a.pools().collect::<Vec<_>>(), ["old", "v6"]);
    // A rejected pool's addresses are in no pool.
    assert_eq!(a.pool_of(ip("198.51.100.1")), None);
    assert_eq!(a.pool_of(ip("192.0.2.120")), Some("old"));
    assert_eq!(a.pool_of(ip("2001:db8::1")), Some("v6"));
    assert_eq!(a.pool_stats("new"), None);
    assert_eq!(
        a.allocate(&svc("x").in_pool("new")),
        Err(AllocError::UnknownPool { pool: "new".into() })
    );
}

#[test]
fn set_pools_keeps_assignments_that_still_fit_and_recounts() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/29"])]);
    give(&mut a, &svc("a"));
    give(&mut a, &svc("b"));
    let update = a.set_pools(pools(vec![PoolSpec::new("p", &["192.0.2.0/24"])]));
    assert_eq!(update, PoolsUpdate::default());
    assert_eq!(held(&a, "b"), Some("192.0.2.1 @p".into()));
    let stats = a.pool_stats("p").unwrap();
    assert_eq!((stats.assigned_v4, stats.available_v4), (2, 254));
    assert_eq!(give(&mut a, &svc("c")), "192.0.2.2 @p");
}

#[test]
fn renamed_or_split_pool_relabels_its_assignments() {
    let mut a = allocator(vec![PoolSpec::new("old", &["192.0.2.0/24"])]);
    a.restore(&svc("low"), &[ip("192.0.2.10")]).unwrap();
    a.restore(&svc("high"), &[ip("192.0.2.200")]).unwrap();
    let update = a.set_pools(pools(vec![PoolSpec::new("renamed", &["192.0.2.0/24"])]));
    assert!(update.evicted.is_empty());
    assert_eq!(held(&a, "low"), Some("192.0.2.10 @renamed".into()));
    assert_eq!(a.assignments_in_pool("renamed"), 2);
    let update = a.set_pools(pools(vec![
        PoolSpec::new("upper", &["192.0.2.128/25"]),
        PoolSpec::new("lower", &["192.0.2.0/25"]),
    ]));
    assert!(update.evicted.is_empty());
    assert_eq!(held(&a, "low"), Some("192.0.2.10 @lower".into()));
    assert_eq!(held(&a, "high"), Some("192.0.2.200 @upper".into()));
    assert_eq!(a.assignments_in_pool("upper"), 1);
    assert_eq!(a.pool_stats("lower").unwrap().assigned_v4, 1);
}

#[test]
fn set_pools_evicts_exactly_what_no_longer_fits_sorted_by_key() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24", "2001:db8::/64"])]);
    a.restore(&svc("z-out"), &[ip("192.0.2.200")]).unwrap();
    a.restore(&svc("in"), &[ip("192.0.2.5")]).unwrap();
    a.restore(&svc("a-out"), &[ip("192.0.2.129")]).unwrap();
    a.restore(
        &svc("split").families(PREFER),
        &[ip("192.0.2.6"), ip("2001:db8::6")],
    )
    .unwrap();
    let update = a.set_pools(pools(vec![
        PoolSpec::new("p", &["192.0.2.0/25"]),
        PoolSpec::new("six", &["2001:db8::/64"]),
    ]));
    let evicted: Vec<(String, Vec<IpAddr>, String)> = update
        .evicted
        .into_iter()
        .map(|e| (e.key, e.ips, e.pool))
        .collect();
    assert_eq!(
        evicted,
        vec![
            (
                "ns/a-out".to_owned(),
                vec![ip("192.0.2.129")],
                "p".to_owned()
            ),
            (
                "ns/split".to_owned(),
                vec![ip("192.0.2.6"), ip("2001:db8::6")],
                "p".to_owned()
            ),
            (
                "ns/z-out".to_owned(),
                vec![ip("192.0.2.200")],
                "p".to_owned()
            ),
        ]
    );
    assert_eq!(a.assignments().len(), 1);
    assert_eq!(held(&a, "in"), Some("192.0.2.5 @p".into()));
    assert_eq!(a.pool_stats("six").unwrap().assigned_v6, 0);
    // The evicted Services are reallocated by the caller.
    assert_eq!(give(&mut a, &svc("split").families(PREFER)), "192.0.2.0 @p");
}

#[test]
fn turning_avoid_buggy_ips_on_evicts_holders_of_dot_0_and_dot_255() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &svc("zero"));
    give(&mut a, &svc("one"));
    a.restore(&svc("top"), &[ip("192.0.2.255")]).unwrap();
    let update = a.set_pools(pools(vec![
        PoolSpec::new("p", &["192.0.2.0/24"]).avoiding_buggy_ips(),
    ]));
    let keys: Vec<&str> = update.evicted.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["ns/top", "ns/zero"]);
    let stats = a.pool_stats("p").unwrap();
    assert_eq!((stats.assigned_v4, stats.available_v4), (1, 253));
    assert_eq!(give(&mut a, &svc("zero")), "192.0.2.2 @p");
}

#[test]
fn service_allocation_change_keeps_the_assignment_until_allocate_moves_it() {
    let mut a = allocator(vec![
        PoolSpec::new("p", &["192.0.2.0/24"]),
        PoolSpec::new("q", &["198.51.100.0/24"]),
    ]);
    give(&mut a, &svc("x"));
    let update = a.set_pools(pools(vec![
        PoolSpec::new("p", &["192.0.2.0/24"]).allocation(admitting(&["shop"])),
        PoolSpec::new("q", &["198.51.100.0/24"]),
    ]));
    assert!(update.evicted.is_empty());
    assert_eq!(held(&a, "x"), Some("192.0.2.0 @p".into()));
    assert_eq!(give(&mut a, &svc("x")), "198.51.100.0 @q");
    assert_eq!(a.pool_stats("p").unwrap().assigned_v4, 0);
}

#[test]
fn removing_every_pool_evicts_everything() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/24"])]);
    give(&mut a, &web("a", 80));
    give(&mut a, &web("b", 81));
    let update = a.set_pools(Vec::new());
    assert_eq!(update.evicted.len(), 2);
    assert!(a.assignments().is_empty());
    assert_eq!(a.pools().count(), 0);
    // The sharing index is empty again: a new pool gives fresh addresses.
    a.set_pools(pools(vec![PoolSpec::new("q", &["198.51.100.0/24"])]));
    assert_eq!(give(&mut a, &web("c", 82)), "198.51.100.0 @q");
}

// ---- Draining pools ----

fn pool_a() -> PoolSpec {
    PoolSpec::new("a", &["192.0.2.0/30", "2001:db8::/126"])
}

fn pool_b() -> PoolSpec {
    PoolSpec::new("b", &["198.51.100.0/30", "2001:db8:1::/126"])
}

/// An allocator over pools `a` (first by name) and `b`, in which `a` starts draining once
/// `setup` ran; asserts that this evicts nothing.
fn draining_after(setup: impl FnOnce(&mut Allocator)) -> Allocator {
    let mut a = allocator(vec![pool_a(), pool_b()]);
    setup(&mut a);
    let update = a.set_pools(pools(vec![pool_a().draining(), pool_b()]));
    assert_eq!(update, PoolsUpdate::default());
    a
}

fn draining(pool: &str) -> AllocError {
    AllocError::PoolDraining { pool: pool.into() }
}

#[test]
fn draining_is_off_unless_asked_for_and_shows_on_the_pool() {
    assert!(!pool_a().draining);
    let [plain, drained] = [pool_a(), pool_a().draining()].map(|s| Pool::parse(s).unwrap());
    assert!(!plain.draining() && drained.draining());
}

#[test]
fn a_pool_starting_to_drain_evicts_nothing_and_keeps_its_counts() {
    let mut a = draining_after(|a| {
        give(a, &svc("x"));
        give(a, &web("y", 80));
        give(a, &web("z", 81));
    });
    assert_eq!(held(&a, "x"), Some("192.0.2.0 @a".into()));
    assert_eq!(held(&a, "z"), Some("192.0.2.1 @a".into()));
    assert_eq!(a.assignments_in_pool("a"), 3);
    assert_eq!(
        a.pool_stats("a").unwrap(),
        PoolStats {
            assigned_v4: 2,
            assigned_v6: 0,
            available_v4: 2,
            available_v6: 4
        }
    );
    // Allocating again keeps every IP where it is.
    assert_eq!(give(&mut a, &svc("x")), "192.0.2.0 @a");
    assert_eq!(give(&mut a, &web("y", 80)), "192.0.2.1 @a");
    assert_eq!(give(&mut a, &web("z", 81)), "192.0.2.1 @a");
    assert_eq!(a.assignments_in_pool("a"), 3);
}

#[test]
fn a_draining_pool_is_no_automatic_candidate() {
    let mut a = draining_after(|a| {
        give(a, &web("y", 80));
    });
    assert_eq!(give(&mut a, &svc("x")), "198.51.100.0 @b");
    // Sharing y's IP would be a new address for z, so z does not get it either.
    assert_eq!(give(&mut a, &web("z", 81)), "198.51.100.1 @b");
    give(&mut a, &svc("v"));
    give(&mut a, &svc("w"));
    // Only pools still giving out addresses are tried, and named when full.
    fails(
        &mut a,
        AllocError::NoAddressAvailable {
            family: Wanted::One(Family::V4),
            pools: vec!["b".into()],
        },
        |a| a.allocate(&svc("full")),
    );
    let mut only = allocator(vec![pool_a().draining()]);
    fails(
        &mut only,
        AllocError::NoEligiblePool {
            family: Wanted::One(Family::V4),
        },
        |a| a.allocate(&svc("x")),
    );
}

#[test]
fn naming_a_draining_pool_is_refused_unless_the_service_keeps_what_it_holds_there() {
    let mut a = draining_after(|a| {
        give(a, &svc("x").in_pool("a"));
    });
    fails(&mut a, draining("a"), |a| {
        a.allocate(&svc("y").in_pool("a"))
    });
    assert_eq!(
        draining("a").to_string(),
        "pool \"a\" is being deleted and gives out no new addresses"
    );
    assert_eq!(give(&mut a, &svc("x").in_pool("a")), "192.0.2.0 @a");
    // A holder needing another address from the pool is refused and keeps what it holds.
    fails(&mut a, draining("a"), |a| {
        a.allocate(&svc("x").in_pool("a").families(V6_ONLY))
    });
    assert_eq!(held(&a, "x"), Some("192.0.2.0 @a".into()));
}

#[test]
fn requested_ip_in_a_draining_pool_is_refused_unless_the_service_holds_exactly_that_ip() {
    let mut a = draining_after(|a| {
        give(a, &web("x", 80));
        give(a, &svc("dual").families(PREFER));
    });
    assert_eq!(held(&a, "dual"), Some("192.0.2.1,2001:db8:: @a".into()));
    // Requesting what it holds changes nothing.
    let before = snapshot(&a);
    let x_again = web("x", 80).requesting(ip("192.0.2.0"));
    assert_eq!(give(&mut a, &x_again), "192.0.2.0 @a");
    let dual = svc("dual").families(PREFER);
    let dual_again = (dual.clone())
        .requesting(ip("192.0.2.1"))
        .requesting(ip("2001:db8::"));
    assert_eq!(give(&mut a, &dual_again), "192.0.2.1,2001:db8:: @a");
    assert_eq!(snapshot(&a), before);
    // Any IP it does not hold yet is refused: free, shareable, or the other half of a pair.
    fails(&mut a, draining("a"), |a| {
        a.allocate(&web("x", 80).requesting(ip("192.0.2.2")))
    });
    fails(&mut a, draining("a"), |a| {
        a.allocate(&web("y", 81).requesting(ip("192.0.2.0")))
    });
    fails(&mut a, draining("a"), |a| {
        a.allocate(
            &(dual.clone())
                .requesting(ip("192.0.2.1"))
                .requesting(ip("2001:db8::1")),
        )
    });
    // Once the Service moved away, its old IP is a new address again.
    assert_eq!(
        give(&mut a, &web("x", 80).requesting(ip("198.51.100.3"))),
        "198.51.100.3 @b"
    );
    assert_eq!(a.pool_stats("a").unwrap().assigned_v4, 1);
    fails(&mut a, draining("a"), |a| a.allocate(&x_again));
}

#[test]
fn a_draining_pool_does_not_complete_a_dual_stack_pair() {
    let mut a = draining_after(|a| {
        a.restore(&svc("p").families(PREFER), &[ip("192.0.2.1")])
            .unwrap();
        a.restore(&svc("r").families(REQUIRE), &[ip("192.0.2.2")])
            .unwrap();
    });
    // PreferDualStack keeps its one IP although the pool has IPv6 free.
    assert_eq!(give(&mut a, &svc("p").families(PREFER)), "192.0.2.1 @a");
    // RequireDualStack moves as a whole to a pool that can give both.
    assert_eq!(
        give(&mut a, &svc("r").families(REQUIRE)),
        "198.51.100.0,2001:db8:1:: @b"
    );
    let stats = a.pool_stats("a").unwrap();
    assert_eq!((stats.assigned_v4, stats.assigned_v6), (1, 0));
    // With nowhere else to go it keeps what it holds and gets an error.
    let mut only = allocator(vec![pool_a()]);
    only.restore(&svc("r").families(REQUIRE), &[ip("192.0.2.2")])
        .unwrap();
    assert_eq!(
        only.set_pools(pools(vec![pool_a().draining()])),
        PoolsUpdate::default()
    );
    fails(
        &mut only,
        AllocError::NoEligiblePool {
            family: Wanted::Both,
        },
        |a| a.allocate(&svc("r").families(REQUIRE)),
    );
    fails(&mut only, draining("a"), |a| {
        a.allocate(&svc("r").families(REQUIRE).in_pool("a"))
    });
    assert_eq!(held(&only, "r"), Some("192.0.2.2 @a".into()));
}

#[test]
fn ips_held_in_a_draining_pool_still_follow_the_eligibility_rules() {
    let mut a = allocator(vec![pool_a(), pool_b()]);
    give(&mut a, &svc("x"));
    let update = a.set_pools(pools(vec![
        pool_a().draining().allocation(admitting(&["shop"])),
        pool_b(),
    ]));
    assert!(update.evicted.is_empty());
    assert_eq!(held(&a, "x"), Some("192.0.2.0 @a".into()));
    assert_eq!(give(&mut a, &svc("x")), "198.51.100.0 @b");
    assert_eq!(a.assignments_in_pool("a"), 0);
}

#[test]
fn restore_accepts_ips_in_a_draining_pool_and_allocate_keeps_them() {
    let mut a = allocator(vec![pool_a().draining(), pool_b()]);
    let x = svc("x").families(PREFER);
    assert_eq!(
        show(
            &a.restore(&x, &[ip("2001:db8::3"), ip("192.0.2.3")])
                .unwrap()
        ),
        "192.0.2.3,2001:db8::3 @a"
    );
    a.restore(&svc("y"), &[ip("192.0.2.2")]).unwrap();
    assert_eq!(give(&mut a, &x), "192.0.2.3,2001:db8::3 @a");
    assert_eq!(give(&mut a, &svc("y")), "192.0.2.2 @a");
    let stats = a.pool_stats("a").unwrap();
    assert_eq!((stats.assigned_v4, stats.assigned_v6), (2, 1));
    assert_eq!(a.assignments_in_pool("a"), 2);
}

#[test]
fn a_draining_pool_still_keeps_its_addresses_from_overlapping_newcomers() {
    let mut a = Allocator::new();
    let update = a.set_pools(pools(vec![
        PoolSpec::new("old", &["192.0.2.0/24"]).draining(),
        PoolSpec::new("new", &["192.0.2.128/25"]),
    ]));
    let rejection = PoolRejection::Overlaps {
        other: "old".into(),
        first: ip("192.0.2.128"),
        last: ip("192.0.2.255"),
    };
    assert_eq!(update.rejected, vec![("new".to_owned(), rejection)]);
    assert_eq!(a.pool_of(ip("192.0.2.200")), Some("old"));
}

#[test]
fn releasing_the_last_holder_leaves_a_draining_pool_unused_and_removable() {
    let mut a = draining_after(|a| {
        give(a, &svc("x"));
        give(a, &svc("y"));
    });
    assert_eq!(
        a.release("ns/x").map(|x| show(&x)),
        Some("192.0.2.0 @a".into())
    );
    assert_eq!(a.assignments_in_pool("a"), 1);
    // The freed address is not handed out again.
    assert_eq!(give(&mut a, &svc("z")), "198.51.100.0 @b");
    a.release("ns/y");
    assert_eq!(a.assignments_in_pool("a"), 0);
    assert_eq!(a.pool_stats("a").unwrap().assigned_v4, 0);
    // Nobody uses it any more: dropping it evicts nothing.
    assert_eq!(a.set_pools(pools(vec![pool_b()])), PoolsUpdate::default());
}

// ---- Stats ----

#[test]
fn stats_saturate_for_a_slash_32_ipv6_pool() {
    let mut a = allocator(vec![
        PoolSpec::new("huge", &["2001:db8::/32", "192.0.2.0/24"]).avoiding_buggy_ips(),
    ]);
    give(&mut a, &svc("x").families(V6_ONLY));
    let stats = a.pool_stats("huge").unwrap();
    assert_eq!(
        stats,
        PoolStats {
            assigned_v4: 0,
            assigned_v6: 1,
            available_v4: 254,
            available_v6: u64::MAX
        }
    );
    let mut small = allocator(vec![PoolSpec::new("s", &["2001:db8::/65"])]);
    give(&mut small, &svc("x").families(V6_ONLY));
    assert_eq!(small.pool_stats("s").unwrap().available_v6, (1 << 63) - 1);
}

#[test]
fn stats_count_a_shared_ip_once_and_services_each() {
    let mut a = allocator(vec![PoolSpec::new("p", &["192.0.2.0/30"])]);
    give(&mut a, &web("a", 80));
    give(&mut a, &web("b", 81));
    give(&mut a, &svc("c"));
    assert_eq!(
        a.pool_stats("p").unwrap(),
        PoolStats {
            assigned_v4: 2,
            assigned_v6: 0,
            available_v4: 2,
            available_v6: 0
        }
    );
    assert_eq!(a.assignments_in_pool("p"), 3);
    assert_eq!(a.assignments_in_pool("unknown"), 0);
    assert_eq!(a.pool_stats("unknown"), None);
}

// ---- Huge pools ----

#[test]
fn huge_ipv4_and_ipv6_pools_allocate_release_and_count_without_iterating() {
    // 10.0.0.0/8 is not a documentation range, but no packet ever leaves this pure test and no
    // documentation range is a /8.
    let mut a = allocator(vec![
        PoolSpec::new("v4", &["10.0.0.0/8"]).avoiding_buggy_ips(),
        PoolSpec::new("v6", &["2001:db8:4000::/48"]),
    ]);
    for i in 0..600 {
        a.allocate(&svc(&format!("s{i}")).families(PREFER)).unwrap();
    }
    // 600 addresses skipping .0 and .255: 254 + 254 + 92.
    assert_eq!(held(&a, "s599"), Some("10.0.2.92 @v4".into()));
    a.release("ns/s300");
    assert_eq!(give(&mut a, &svc("again")), "10.0.1.47 @v4");
    let stats = a.pool_stats("v4").unwrap();
    assert_eq!(stats.assigned_v4, 600);
    assert_eq!(stats.available_v4, (1 << 24) - 2 * (1 << 16) - 600);
    for i in 0..300 {
        give(
            &mut a,
            &svc(&format!("six{i}")).families(V6_ONLY).in_pool("v6"),
        );
    }
    assert_eq!(held(&a, "six299"), Some("2001:db8:4000::12b @v6".into()));
    assert_eq!(a.pool_stats("v6").unwrap().available_v6, u64::MAX);
    // A restore far up the /48 is as cheap as one at the bottom.
    a.restore(
        &svc("far").families(V6_ONLY),
        &[ip("2001:db8:4000:ffff:ffff:ffff:ffff:fffe")],
    )
    .unwrap();
    assert_eq!(a.pool_of(ip("2001:db8:4000:ffff::1")), Some("v6"));
}
