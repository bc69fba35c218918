//! Gossip membership in a deterministic simulation: real nodes, virtual time, seeded randomness.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use ferrolb_speaker::gossip::node::MembershipEvent;
use ferrolb_speaker::gossip::sim::{Sim, SimConfig, name};

fn names(ids: &[usize]) -> BTreeSet<String> {
    ids.iter().map(|i| name(*i)).collect()
}

fn joined(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        seed,
        ..SimConfig::default()
    });
    sim.join_all();
    sim.run_for(Duration::from_secs(3));
    let all: Vec<usize> = (0..n).collect();
    assert!(
        sim.converged(&names(&all)),
        "{n} nodes converge after joining"
    );
    sim
}

/// Time from `since` until every running node stopped seeing `dead` alive.
fn detection(sim: &mut Sim, dead: usize, limit: Duration) -> Option<Duration> {
    let since = sim.now();
    while sim.now() - since < limit {
        sim.run_for(Duration::from_millis(5));
        let alive: Vec<usize> = (0..64)
            .filter(|i| sim.view(*i).is_some_and(|v| v.contains(&name(dead))))
            .collect();
        if alive.is_empty() {
            return Some(sim.now() - since);
        }
    }
    None
}

#[test]
fn nodes_join_through_one_peer() {
    joined(5, 1);
}

#[test]
fn a_dead_node_is_noticed_by_every_survivor_within_900_ms_in_each_of_20_seeded_runs() {
    let mut worst = Duration::ZERO;
    for seed in 1..=20 {
        let mut sim = joined(3, seed);
        sim.kill(0);
        let took = detection(&mut sim, 0, Duration::from_secs(5)).expect("death detected");
        worst = worst.max(took);
    }
    assert!(
        worst < Duration::from_millis(900),
        "slowest detection over 20 runs: {worst:?}"
    );
}

#[test]
fn a_slow_but_alive_node_is_not_declared_dead() {
    for seed in 1..=10 {
        let mut sim = joined(3, seed);
        // 2 s of a saturated CPU: every datagram handled up to 80 ms late.
        sim.slow_down(1, Duration::from_secs(2), Duration::from_millis(80));
        sim.run_for(Duration::from_secs(4));
        let downs: Vec<_> = sim
            .events
            .iter()
            .filter(|(_, _, e)| matches!(e, MembershipEvent::Down(n) if n == &name(1)))
            .collect();
        assert!(
            downs.is_empty(),
            "seed {seed}: slow node declared down: {downs:?}"
        );
    }
}

#[test]
fn a_graceful_leave_is_seen_at_once() {
    let mut sim = joined(3, 7);
    sim.leave(2);
    let took = detection(&mut sim, 2, Duration::from_secs(2)).expect("leave seen");
    assert!(took < Duration::from_millis(50), "{took:?}");
}

#[test]
fn a_restarted_speaker_rejoins_as_a_new_instance() {
    let mut sim = joined(3, 3);
    sim.kill(2);
    detection(&mut sim, 2, Duration::from_secs(5)).unwrap();
    sim.restart(2, 0);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.converged(&names(&[0, 1, 2])));
}

#[test]
fn keys_rotate_without_a_split() {
    // The rotation: add the new key second everywhere, then put it first everywhere, then drop
    // the old one. Every mix of neighbouring steps must hold together.
    for keys in [
        ["old", "old\nnew", "old\nnew"],
        ["old\nnew", "new\nold", "new\nold"],
        ["new\nold", "new", "new"],
    ] {
        let mut sim = Sim::new(SimConfig {
            nodes: 3,
            keys: keys.map(str::to_owned).to_vec(),
            ..SimConfig::default()
        });
        sim.join_all();
        sim.run_for(Duration::from_secs(3));
        assert!(sim.converged(&names(&[0, 1, 2])), "{keys:?}");
    }
}

#[test]
fn a_node_without_the_key_cannot_join_or_change_anything() {
    let mut sim = Sim::new(SimConfig {
        nodes: 3,
        keys: vec!["k".into(), "k".into(), "wrong".into()],
        ..SimConfig::default()
    });
    sim.join_all();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.view(0).unwrap(), names(&[0, 1]));
    assert_eq!(sim.view(2).unwrap(), names(&[2]));
    assert!(sim.rejected(0).get("unknown_key").copied().unwrap_or(0) > 0);
}

#[test]
fn forged_and_replayed_datagrams_are_dropped_and_change_nothing() {
    let mut sim = joined(3, 11);
    sim.capture(true);
    sim.run_for(Duration::from_secs(1));
    sim.capture(false);
    let captured = sim.captured.clone();
    // Node 2 dies; replaying its old datagrams (within and after the replay window) and forging
    // random ones must not bring it back.
    sim.kill(2);
    detection(&mut sim, 2, Duration::from_secs(5)).unwrap();
    for (to, bytes) in captured.iter().filter(|(to, _)| *to != 2).take(200) {
        sim.inject(*to, bytes.clone());
        let mut forged = bytes.clone();
        let last = forged.len() - 1;
        forged[last] ^= 0xff;
        sim.inject(*to, forged);
        sim.inject(*to, vec![1, 2, 3]);
    }
    sim.run_for(Duration::from_secs(1));
    assert!(sim.converged(&names(&[0, 1])), "{:?}", sim.view(0));
    let rejected = sim.rejected(0);
    assert!(
        rejected.get("replayed").copied().unwrap_or(0) > 0,
        "{rejected:?}"
    );
    assert!(
        rejected.get("forged").copied().unwrap_or(0) > 0,
        "{rejected:?}"
    );
    assert!(
        rejected.get("malformed").copied().unwrap_or(0) > 0,
        "{rejected:?}"
    );
}

#[test]
fn a_healed_partition_converges() {
    let mut sim = joined(4, 5);
    sim.partition(&[0, 1], &[2, 3], true);
    sim.run_for(Duration::from_secs(5));
    sim.partition(&[0, 1], &[2, 3], false);
    sim.run_for(Duration::from_secs(15));
    assert!(
        sim.converged(&names(&[0, 1, 2, 3])),
        "{:?} {:?}",
        sim.view(0),
        sim.view(2)
    );
}
