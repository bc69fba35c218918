//! Random sequences of allocate / release / restore / set_pools over small pools, checked after
//! every step against rules restated here independently of the allocator's own code:
//! no IP held by two Services that may not share it, every IP inside its accepted pool, stats
//! equal to a recount, allocate idempotent, a draining pool never giving a Service an address it
//! did not hold; and at the end, restoring the whole state into a fresh allocator reproduces it,
//! and running the same sequence twice gives the same results.
//!
//! The cases come from a fixed seed (see [`config`]), so CI is deterministic; environment
//! variables pick other seeds and more cases for exploratory runs.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_ipam::{
    AllocError, Allocator, Assignment, Family, FamilyPolicy, LabelSelector, Pool, PoolSpec,
    PoolStats, PoolsUpdate, Port, ServiceAllocation, ServiceRequest,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::RngSeed;

/// Addresses a request or restore may name: inside and outside the pools, buggy ones, IPv6.
const ADDRS: &[&str] = &[
    "192.0.2.0",
    "192.0.2.1",
    "192.0.2.5",
    "192.0.2.7",
    "192.0.2.254",
    "192.0.2.255",
    "192.0.3.1",
    "198.51.100.1",
    "203.0.113.1",
    "203.0.113.9",
    "2001:db8::1",
    "2001:db8::3",
    "2001:db8:1::1",
    "2001:db8:9::1",
];

const POOL_NAMES: &[&str] = &["a", "b", "c", "a-low", "a-high", "nope"];

/// The pool lists `set_pools` is called with, in creation order: renames, shrinking, splits, an
/// overlapping newcomer, avoidBuggyIPs and serviceAllocation changes, a pool being deleted while
/// in use (draining, and still keeping an overlapping newcomer out), and no pools at all.
fn layout(n: u8) -> Vec<PoolSpec> {
    let a = || PoolSpec::new("a", &["192.0.2.0/29", "2001:db8::/126"]);
    let b = || PoolSpec::new("b", &["192.0.2.254-192.0.3.1"]).avoiding_buggy_ips();
    let c = || PoolSpec::new("c", &["203.0.113.0/30", "2001:db8:1::/127"]).manual();
    let red_first = ServiceAllocation {
        priority: Some(1),
        namespaces: vec!["red".into()],
        ..Default::default()
    };
    let web_only = ServiceAllocation {
        service_selectors: vec![LabelSelector::labels([("app", "web")])],
        ..Default::default()
    };
    match n % 7 {
        0 => vec![a(), b(), c()],
        1 => vec![
            PoolSpec::new("a-low", &["192.0.2.0/30", "2001:db8::/126"]),
            b().allocation(red_first),
            c(),
        ],
        2 => vec![
            PoolSpec::new("a-low", &["192.0.2.0/30"]),
            PoolSpec::new("a-high", &["192.0.2.4/30", "2001:db8::/127"]),
            PoolSpec::new("newcomer", &["192.0.2.6/31"]),
            c(),
        ],
        3 => vec![],
        4 => vec![a().avoiding_buggy_ips().allocation(web_only), c()],
        5 => vec![c(), PoolSpec::new("a", &["192.0.2.0/29"]), b()],
        _ => vec![
            a().draining(),
            PoolSpec::new("newcomer", &["192.0.2.6/31"]),
            b(),
            c(),
        ],
    }
}

/// How a Service looks in one request; the Service itself (its key) is chosen separately.
#[derive(Debug, Clone)]
struct Shape {
    policy: u8,
    sharing: Option<u8>,
    backend: Option<u8>,
    ports: u8,
    web: bool,
    requested: Vec<u8>,
    in_spec: bool,
    pool: Option<u8>,
}

#[derive(Debug, Clone)]
enum Op {
    Allocate(u8, Shape),
    Restore(u8, Shape, Vec<u8>),
    Release(u8),
    SetPools(u8),
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        0u8..5,
        prop::option::weighted(0.6, 0u8..2),
        prop::option::weighted(0.2, 0u8..2),
        0u8..4,
        any::<bool>(),
        // Most requests name no IP, so that pool order gets exercised too.
        prop::option::weighted(0.3, prop::collection::vec(0u8..ADDRS.len() as u8, 1..3))
            .prop_map(Option::unwrap_or_default),
        any::<bool>(),
        prop::option::weighted(0.25, 0u8..POOL_NAMES.len() as u8),
    )
        .prop_map(
            |(policy, sharing, backend, ports, web, requested, in_spec, pool)| Shape {
                policy,
                sharing,
                backend,
                ports,
                web,
                requested,
                in_spec,
                pool,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..10, shape()).prop_map(|(s, sh)| Op::Allocate(s, sh)),
        2 => (0u8..10, shape(), prop::collection::vec(0u8..ADDRS.len() as u8, 0..3)).prop_map(|(s, sh, ips)| Op::Restore(s, sh, ips)),
        2 => (0u8..10).prop_map(Op::Release),
        1 => (0u8..7).prop_map(Op::SetPools),
    ]
}

fn addr(i: u8) -> IpAddr {
    ADDRS[usize::from(i)].parse().unwrap()
}

/// Even Services live in namespace `red` (admitted by the red-only pool), odd ones in `blue`.
fn namespace(svc: u8) -> &'static str {
    if svc.is_multiple_of(2) { "red" } else { "blue" }
}

fn request(svc: u8, s: &Shape) -> ServiceRequest {
    let namespace = namespace(svc);
    let (v4, v6) = (Family::V4, Family::V6);
    let policy = match s.policy {
        0 => FamilyPolicy::SingleStack(v4),
        1 => FamilyPolicy::SingleStack(v6),
        2 => FamilyPolicy::PreferDualStack(v4, v6),
        3 => FamilyPolicy::PreferDualStack(v6, v4),
        _ => FamilyPolicy::RequireDualStack(v4, v6),
    };
    let ports = match s.ports {
        0 => vec![Port::tcp(80)],
        1 => vec![Port::tcp(443)],
        2 => vec![Port::udp(80)],
        _ => vec![Port::tcp(80), Port::tcp(443)],
    };
    let mut req = ServiceRequest::new(namespace, &format!("svc{svc}"))
        .families(policy)
        .ports(&ports);
    if let Some(k) = s.sharing {
        req = req.sharing(&format!("key{k}"));
    }
    if let Some(b) = s.backend {
        req = req.backend(&format!("app=b{b}"));
    }
    if s.web {
        req = req.label("app", "web");
    }
    match (s.requested.as_slice(), s.in_spec) {
        ([one], true) => req = req.requesting_in_spec(addr(*one)),
        (ips, _) => {
            for &i in ips {
                req = req.requesting(addr(i));
            }
        }
    }
    if let Some(p) = s.pool {
        req = req.in_pool(POOL_NAMES[usize::from(p)]);
    }
    req
}

/// What one step returned, to compare two runs of the same sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Assigned(Result<Assignment, AllocError>),
    Released(Option<Assignment>),
    Pools(PoolsUpdate),
}

/// The test's own record of the last request each Service succeeded with (its sharing terms
/// and families) and of the pools in force.
#[derive(Debug, Default)]
struct Model {
    requests: BTreeMap<String, ServiceRequest>,
    pools: Vec<Pool>,
    /// Successful allocations that left a Service in a draining pool (to guard the generator).
    kept_draining: usize,
}

impl Model {
    /// Whether the accepted pool of that name is draining (the first of a name is accepted).
    fn draining(&self, pool: &str) -> bool {
        self.pools
            .iter()
            .find(|p| p.name() == pool)
            .is_some_and(Pool::draining)
    }
}

fn parse(specs: Vec<PoolSpec>) -> Vec<Pool> {
    specs.into_iter().map(|s| Pool::parse(s).unwrap()).collect()
}

fn apply(a: &mut Allocator, model: &mut Model, op: &Op) -> Outcome {
    match op {
        Op::Allocate(svc, shape) => {
            let req = request(*svc, shape);
            let held = a.lookup(&req.key);
            let result = a.allocate(&req);
            if let Ok(got) = &result
                && model.draining(&got.pool)
            {
                // A draining pool gives out nothing new: only what the Service held there.
                let before = held.filter(|h| h.pool == got.pool).map(|h| h.ips);
                assert!(
                    got.ips
                        .iter()
                        .all(|ip| before.iter().flatten().any(|h| h == ip)),
                    "{}: {got:?} from draining pool, held {before:?}",
                    req.key
                );
                model.kept_draining += 1;
            }
            if result.is_ok() {
                // Idempotent: the same request again returns the same and changes nothing.
                let before = a.assignments();
                assert_eq!(a.allocate(&req), result, "second allocate differs");
                assert_eq!(a.assignments(), before);
                model.requests.insert(req.key.clone(), req);
            }
            Outcome::Assigned(result)
        }
        Op::Restore(svc, shape, ips) => {
            let req = request(*svc, shape);
            let ips: Vec<IpAddr> = ips.iter().map(|&i| addr(i)).collect();
            let result = a.restore(&req, &ips);
            if result.is_ok() {
                model.requests.insert(req.key.clone(), req);
            }
            Outcome::Assigned(result)
        }
        Op::Release(svc) => {
            let key = format!("{}/svc{svc}", namespace(*svc));
            model.requests.remove(&key);
            Outcome::Released(a.release(&key))
        }
        Op::SetPools(n) => {
            model.pools = parse(layout(*n));
            let update = a.set_pools(model.pools.clone());
            for e in &update.evicted {
                assert!(
                    model.requests.remove(&e.key).is_some(),
                    "evicted an unknown service {}",
                    e.key
                );
            }
            Outcome::Pools(update)
        }
    }
}

/// Whether two Services may hold one IP, restated from the sharing rule.
fn may_share(x: &ServiceRequest, y: &ServiceRequest) -> bool {
    let key = |r: &ServiceRequest| r.sharing_key.clone().filter(|k| !k.is_empty());
    key(x).is_some()
        && key(x) == key(y)
        && x.backend_key == y.backend_key
        && x.ports.iter().all(|p| !y.ports.contains(p))
}

/// Every address of a small pool, counted one by one.
fn usable(pool: &Pool, family: Family) -> u64 {
    let mut n = 0;
    for r in pool.ranges().iter().filter(|r| r.family() == family) {
        let (first, last) = (to_u128(r.first()), to_u128(r.last()));
        n += (first..=last)
            .filter(|&v| !pool.is_buggy(from_u128(family, v)))
            .count() as u64;
    }
    n
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from(u32::try_from(v).unwrap().to_be_bytes()),
        Family::V6 => IpAddr::from(v.to_be_bytes()),
    }
}

fn check_invariants(a: &Allocator, model: &Model) {
    let all = a.assignments();
    let keys: Vec<&String> = all.iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        model.requests.keys().collect::<Vec<_>>(),
        "holders differ from the model"
    );
    let accepted: BTreeMap<&str, &Pool> = model
        .pools
        .iter()
        .filter(|p| a.pools().any(|n| n == p.name()))
        .map(|p| (p.name(), p))
        .collect();
    let mut holders: BTreeMap<IpAddr, Vec<&String>> = BTreeMap::new();
    for (key, assignment) in &all {
        let req = &model.requests[key];
        let pool = accepted
            .get(assignment.pool.as_str())
            .unwrap_or_else(|| panic!("{key} in unknown pool {}", assignment.pool));
        assert!(
            matches!(assignment.ips.len(), 1 | 2),
            "{key}: {assignment:?}"
        );
        let families: BTreeSet<Family> = assignment.ips.iter().map(|&ip| Family::of(ip)).collect();
        assert_eq!(
            families.len(),
            assignment.ips.len(),
            "{key}: two IPs of one family"
        );
        if assignment.ips.len() == 2 {
            assert_eq!(
                Family::of(assignment.ips[0]),
                req.families.first(),
                "{key}: not in family order"
            );
        }
        for &ip in &assignment.ips {
            assert!(
                req.families.allows(Family::of(ip)),
                "{key}: {ip} not allowed by {}",
                req.families
            );
            assert!(
                pool.contains(ip) && !pool.is_buggy(ip),
                "{key}: {ip} unusable in {}",
                pool.name()
            );
            assert_eq!(a.pool_of(ip), Some(pool.name()));
            holders.entry(ip).or_default().push(key);
        }
    }
    for (ip, keys) in &holders {
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                assert!(
                    may_share(&model.requests[*x], &model.requests[*y]),
                    "{ip} held by {x} and {y}"
                );
            }
        }
    }
    for (name, pool) in &accepted {
        let used = |family| {
            holders
                .keys()
                .filter(|&&ip| Family::of(ip) == family && pool.contains(ip))
                .count() as u64
        };
        let (v4, v6) = (used(Family::V4), used(Family::V6));
        let expected = PoolStats {
            assigned_v4: v4,
            assigned_v6: v6,
            available_v4: usable(pool, Family::V4) - v4,
            available_v6: usable(pool, Family::V6) - v6,
        };
        assert_eq!(a.pool_stats(name), Some(expected), "stats of {name}");
        let services = all.iter().filter(|(_, x)| x.pool == *name).count();
        assert_eq!(a.assignments_in_pool(name), services, "services in {name}");
        for family in [Family::V4, Family::V6] {
            check_lowest_free(a, pool, family, &holders);
        }
    }
}

/// A new Service naming the pool gets its lowest free usable address (ranges in spec order),
/// found here by scanning every address; or, from a draining pool, nothing.
fn check_lowest_free(
    a: &Allocator,
    pool: &Pool,
    family: Family,
    holders: &BTreeMap<IpAddr, Vec<&String>>,
) {
    let expected = (pool.ranges().iter())
        .filter(|r| r.family() == family)
        .flat_map(|r| (to_u128(r.first())..=to_u128(r.last())).map(move |v| from_u128(family, v)))
        .find(|ip| !pool.is_buggy(*ip) && !holders.contains_key(ip));
    // The probe is admitted by every pool of every layout.
    let probe = ServiceRequest::new("red", "probe")
        .label("app", "web")
        .in_pool(pool.name())
        .families(FamilyPolicy::SingleStack(family));
    let got = a.clone().allocate(&probe);
    if pool.draining() {
        let refused = AllocError::PoolDraining {
            pool: pool.name().to_owned(),
        };
        assert_eq!(
            got,
            Err(refused),
            "new address from draining {}",
            pool.name()
        );
        return;
    }
    let got = got.ok().map(|x| x.ips[0]);
    assert_eq!(
        got,
        expected,
        "lowest free {family} address of {}",
        pool.name()
    );
}

/// Restoring every assignment, with each Service's last request, into a fresh allocator with
/// the same pools gives the same assignments and stats.
fn check_restore(a: &Allocator, model: &Model) {
    let mut fresh = Allocator::new();
    fresh.set_pools(model.pools.clone());
    for (key, assignment) in a.assignments() {
        let restored = fresh.restore(&model.requests[&key], &assignment.ips);
        assert_eq!(restored, Ok(assignment.clone()), "restoring {key}");
        // Twice is the same as once.
        assert_eq!(
            fresh.restore(&model.requests[&key], &assignment.ips),
            Ok(assignment)
        );
    }
    assert_eq!(fresh.assignments(), a.assignments());
    for name in a.pools() {
        assert_eq!(
            fresh.pool_stats(name),
            a.pool_stats(name),
            "stats of {name} after restore"
        );
        assert_eq!(fresh.assignments_in_pool(name), a.assignments_in_pool(name));
    }
}

fn run(ops: &[Op]) -> (Vec<Outcome>, Allocator, Model) {
    let mut a = Allocator::new();
    let mut model = Model::default();
    let mut outcomes = vec![apply(&mut a, &mut model, &Op::SetPools(0))];
    for op in ops {
        outcomes.push(apply(&mut a, &mut model, op));
        check_invariants(&a, &model);
    }
    (outcomes, a, model)
}

/// The seed CI runs with: the same 96 cases every time, so a failure is never a matter of luck
/// and always reproduces (seed 42 is one that caught the dual-stack completion bug).
const SEED: u64 = 42;

/// 96 cases from [`SEED`], unless `PROPTEST_RNG_SEED=<u64>` or `PROPTEST_CASES=<n>` is set for an
/// exploratory run (e.g. `for s in $(seq 1 30); do PROPTEST_RNG_SEED=$s cargo test -p
/// ferrolb-ipam --test properties || break; done`). Proptest reads those variables into
/// `ProptestConfig::default()`, but fields set here would override them, hence the checks.
/// Failures are still recorded in `properties.proptest-regressions` and replayed first.
fn config() -> ProptestConfig {
    let from_env = ProptestConfig::default();
    let set = |var| std::env::var_os(var).is_some();
    ProptestConfig {
        cases: if set("PROPTEST_CASES") {
            from_env.cases
        } else {
            96
        },
        rng_seed: if set("PROPTEST_RNG_SEED") {
            from_env.rng_seed
        } else {
            RngSeed::Fixed(SEED)
        },
        ..from_env
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_sequences_keep_every_rule(ops in prop::collection::vec(op(), 1..60)) {
        let (outcomes, a, model) = run(&ops);
        check_restore(&a, &model);
        // Same sequence, new allocator (with other hash seeds): same results throughout.
        let (again, b, _) = run(&ops);
        prop_assert_eq!(outcomes, again);
        prop_assert_eq!(a.assignments(), b.assignments());
    }
}

#[test]
fn the_generated_sequences_reach_sharing_dual_stack_evictions_and_draining() {
    // Guards the property test against a generator that never exercises the interesting cases.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut shared, mut dual, mut evicted, mut errors) = (0, 0, 0, 0);
    let (mut kept_draining, mut refused_draining) = (0, 0);
    for _ in 0..40 {
        let ops = prop::collection::vec(op(), 40)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let (outcomes, _, model) = run(&ops);
        kept_draining += model.kept_draining;
        for o in &outcomes {
            match o {
                Outcome::Assigned(Ok(x)) if x.ips.len() == 2 => dual += 1,
                Outcome::Assigned(Err(AllocError::PoolDraining { .. })) => {
                    refused_draining += 1;
                    errors += 1;
                }
                Outcome::Assigned(Err(_)) => errors += 1,
                Outcome::Pools(u) => evicted += u.evicted.len(),
                _ => {}
            }
        }
        let (_, a, _) = run(&ops);
        let all = a.assignments();
        let ips: Vec<IpAddr> = all.iter().flat_map(|(_, x)| x.ips.clone()).collect();
        shared += ips.len() - ips.iter().collect::<BTreeSet<_>>().len();
    }
    assert!(
        shared > 0
            && dual > 0
            && evicted > 0
            && errors > 0
            && kept_draining > 0
            && refused_draining > 0,
        "shared {shared} dual {dual} evicted {evicted} errors {errors} \
         kept in draining {kept_draining} refused by draining {refused_draining}"
    );
}
