//! `cargo run --release -p ferrolb-speaker --bin gossip-sim`
//!
//! Simulates N speakers (3, 100, 1,000) on a LAN with 1% datagram loss, using the real gossip
//! code with virtual time. For each N it measures:
//! - detection: a random node dies; time until every survivor has stopped seeing it alive (and so
//!   has moved its IPs), over several trials;
//! - false positives: nodes declared down while all are alive, over 10 simulated minutes;
//! - gossip bytes sent per node per second over those minutes.
//!
//! `GOSSIP_SIM_NODES=3,100` limits the sizes; `GOSSIP_SIM_MINUTES` shortens the quiet period.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use ferrolb_speaker::gossip::node::MembershipEvent;
use ferrolb_speaker::gossip::sim::{Sim, SimConfig};
use ferrolb_speaker::gossip::timing::Timing;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn run(n: usize, minutes: u64) {
    let started = Instant::now();
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        loss: 0.01,
        seed: 42 + n as u64,
        timing: Some(timing(n)),
        ..SimConfig::default()
    });
    sim.join_all();
    let mut waited = Duration::ZERO;
    while !sim.fully_joined() {
        sim.run_for(Duration::from_millis(500));
        sim.rejoin_lonely();
        waited += Duration::from_millis(500);
        assert!(
            waited < Duration::from_secs(120),
            "n={n}: the cluster did not converge"
        );
    }
    sim.run_for(Duration::from_secs(5));

    // Quiet period: everyone alive, 1% loss. Any Down is a false positive.
    let events_before = sim.events.len();
    let bytes_before: u64 = (0..n).map(|i| sim.bytes_sent(i)).sum();
    let quiet = Duration::from_secs(60 * minutes);
    sim.run_for(quiet);
    let false_positives = sim.events[events_before..]
        .iter()
        .filter(|(_, _, e)| matches!(e, MembershipEvent::Down(_)))
        .count();
    let bytes: u64 = (0..n).map(|i| sim.bytes_sent(i)).sum::<u64>() - bytes_before;
    let bytes_per_node_s = bytes as f64 / n as f64 / quiet.as_secs_f64();

    // Detection trials.
    let trials = match n {
        0..=10 => 40,
        11..=200 => 20,
        _ => 10,
    };
    let mut rng = StdRng::seed_from_u64(7 + n as u64);
    let mut times = Vec::new();
    // Small clusters restart each victim before the next trial; large ones lose distinct nodes
    // (a restarted node must be re-learnt by all 999 peers, which tests rejoin, not detection).
    let restart = n <= 10;
    let mut dead = std::collections::BTreeSet::new();
    for _ in 0..trials {
        let mut victim = rng.random_range(1..n);
        while dead.contains(&victim) {
            victim = rng.random_range(1..n);
        }
        sim.kill(victim);
        let since = sim.now();
        while sim.still_seen_alive(victim) > 0 {
            sim.run_for(Duration::from_millis(5));
            assert!(
                sim.now() - since < Duration::from_secs(60),
                "n={n}: death never noticed"
            );
        }
        times.push((sim.now() - since).as_secs_f64() * 1000.0);
        if !restart {
            dead.insert(victim);
            continue;
        }
        sim.restart(victim, 0);
        let mut waited = Duration::ZERO;
        while !sim.fully_joined() {
            sim.run_for(Duration::from_millis(200));
            sim.rejoin_lonely();
            waited += Duration::from_millis(200);
            assert!(
                waited < Duration::from_secs(60),
                "n={n}: restarted node never rejoined"
            );
        }
        sim.run_for(Duration::from_secs(1));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "gossip-sim n={n} detect_p50_ms={:.0} detect_p95_ms={:.0} false_positives={false_positives} bytes_per_node_s={:.0}",
        percentile(&times, 50.0),
        percentile(&times, 95.0),
        bytes_per_node_s
    );
    eprintln!(
        "  (n={n}: {trials} trials, {minutes} quiet minutes, simulated in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// The speaker's default timing, with `GOSSIP_*_MS` overrides for tuning experiments.
fn timing(n: usize) -> Timing {
    let mut t = Timing::for_cluster(n);
    let ms = |var: &str| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    if let Some(v) = ms("GOSSIP_PROBE_MS") {
        t.probe_period = v;
    }
    if let Some(v) = ms("GOSSIP_RTT_MS") {
        t.probe_rtt = v;
    }
    if let Some(v) = ms("GOSSIP_SUSPECT_MS") {
        t.suspect_to_down = v;
    }
    if let Some(v) = ms("GOSSIP_GOSSIP_MS") {
        t.gossip_period = v;
    }
    t
}

fn main() {
    let sizes: Vec<usize> = std::env::var("GOSSIP_SIM_NODES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![3, 100, 1000]);
    let minutes = std::env::var("GOSSIP_SIM_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    for n in sizes {
        run(n, minutes);
    }
}
