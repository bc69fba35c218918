//! A deterministic simulation of many speakers' gossip in one process: virtual time, a network
//! with latency and loss, nodes that die, restart or run slowly. Tests and the `gossip-sim`
//! benchmark use it; the nodes are the real [`GossipNode`]s, sealing included.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::member::Member;
use super::node::{Clock, GossipNode, MembershipEvent};
use super::seal::{KeyRing, REPLAY_WINDOW_MS, Sealer};
use super::timing::Timing;

/// Wall clock of the simulation's start (any fixed value works; the replay window compares
/// senders' and receivers' clocks, which here are the same).
const WALL_START_MS: u64 = 1_800_000_000_000;

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of speakers.
    pub nodes: usize,
    /// One-way latency range.
    pub latency: (Duration, Duration),
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Protocol timing (default: [`Timing::for_cluster`] of `nodes`).
    pub timing: Option<Timing>,
    /// Seed for everything random.
    pub seed: u64,
    /// Gossip key file text of every node (`keys[i]` for node i; shorter lists repeat the last).
    pub keys: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            latency: (Duration::from_micros(100), Duration::from_micros(600)),
            loss: 0.0,
            timing: None,
            seed: 1,
            keys: vec!["ferrolb-sim-key".into()],
        }
    }
}

/// Node `i`'s name.
pub fn name(i: usize) -> String {
    format!("node-{i}")
}

fn addr(i: usize) -> SocketAddr {
    // Loopback addresses as plain identifiers: the simulation sends nothing anywhere.
    let port = u16::try_from(10_000 + i).unwrap_or(u16::MAX);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// The simulated cluster.
pub struct Sim {
    cfg: SimConfig,
    nodes: Vec<Option<GossipNode>>,
    incarnations: Vec<u64>,
    now: Duration,
    queue: BTreeMap<(Duration, u64), (usize, Vec<u8>, bool)>,
    seq: u64,
    rng: StdRng,
    /// Until when a node's processing is slowed, and by how much at most.
    slow: BTreeMap<usize, (Duration, Duration)>,
    /// Links cut: (from, to) pairs.
    cut: BTreeSet<(usize, usize)>,
    /// Every datagram delivered or dropped, for the replay tests.
    pub captured: Vec<(usize, Vec<u8>)>,
    capture: bool,
    /// Membership events per node, with the time they happened.
    pub events: Vec<(Duration, usize, MembershipEvent)>,
    bytes: Vec<u64>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// Creates the nodes (not yet joined).
    pub fn new(cfg: SimConfig) -> Self {
        let mut sim = Self {
            nodes: Vec::new(),
            incarnations: vec![1; cfg.nodes],
            now: Duration::ZERO,
            queue: BTreeMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(cfg.seed),
            slow: BTreeMap::new(),
            cut: BTreeSet::new(),
            captured: Vec::new(),
            capture: false,
            events: Vec::new(),
            bytes: vec![0; cfg.nodes],
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            let node = sim.make_node(i);
            sim.nodes.push(Some(node));
        }
        sim
    }

    fn make_node(&mut self, i: usize) -> GossipNode {
        let keys = self
            .cfg
            .keys
            .get(i)
            .or(self.cfg.keys.last())
            .cloned()
            .unwrap_or_default();
        let ring = KeyRing::from_lines(&keys)
            .unwrap_or_else(|_| KeyRing::from_lines("missing").unwrap_or_else(|_| unreachable!()));
        let member = Member {
            node: name(i),
            addr: addr(i),
            incarnation: self.incarnations[i],
        };
        let seed = self
            .cfg
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(i as u64 * 7919 + self.incarnations[i]);
        let timing = self
            .cfg
            .timing
            .unwrap_or_else(|| Timing::for_cluster(self.cfg.nodes));
        GossipNode::new(
            member,
            timing.config(),
            Sealer::new(ring, REPLAY_WINDOW_MS),
            seed,
        )
    }

    fn clock(&self) -> Clock {
        Clock {
            mono: self.now,
            wall_ms: WALL_START_MS + u64::try_from(self.now.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Records every datagram from now on (for replay tests).
    pub fn capture(&mut self, on: bool) {
        self.capture = on;
    }

    /// Every node asks node 0 to let it in (node 0 bootstraps).
    pub fn join_all(&mut self) {
        for i in 1..self.nodes.len() {
            self.join(i, 0);
        }
    }

    /// Nodes that know nobody ask node 0 again, as the speaker retries its peers until it is in.
    pub fn rejoin_lonely(&mut self) {
        let lonely: Vec<usize> = (1..self.nodes.len())
            .filter(|i| {
                self.nodes[*i]
                    .as_ref()
                    .is_some_and(|n| n.alive().len() == 1)
            })
            .collect();
        for i in lonely {
            self.join(i, 0);
        }
    }

    /// Node `i` joins through node `via`.
    pub fn join(&mut self, i: usize, via: usize) {
        let clock = self.clock();
        if let Some(node) = self.nodes[i].as_mut() {
            node.join(addr(via), clock);
        }
        self.flush(i);
    }

    fn flush(&mut self, from: usize) {
        let Some(node) = self.nodes[from].as_mut() else {
            return;
        };
        for event in node.take_events() {
            self.events.push((self.now, from, event));
        }
        let out = node.take_outbox();
        for (to_addr, bytes) in out {
            let to = usize::from(to_addr.port()) - 10_000;
            self.bytes[from] += bytes.len() as u64;
            if self.cut.contains(&(from, to)) || self.rng.random::<f64>() < self.cfg.loss {
                continue;
            }
            let (lo, hi) = self.cfg.latency;
            let span = (hi - lo).as_nanos().max(1);
            let delay = lo
                + Duration::from_nanos(u64::try_from(self.rng.random_range(0..span)).unwrap_or(0));
            if self.capture {
                self.captured.push((to, bytes.clone()));
            }
            self.queue
                .insert((self.now + delay, self.seq), (to, bytes, false));
            self.seq += 1;
        }
    }

    /// Delivers a datagram now, as if from the network (forgeries, replays).
    pub fn inject(&mut self, to: usize, bytes: Vec<u8>) {
        self.queue.insert((self.now, self.seq), (to, bytes, false));
        self.seq += 1;
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Duration) {
        loop {
            let next_delivery = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .nodes
                .iter()
                .flatten()
                .filter_map(GossipNode::next_deadline)
                .min();
            let next = match (next_delivery, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = next.max(self.now);
            if next_delivery == Some(next) {
                let Some(((_, _), (to, bytes, delayed))) = self.queue.pop_first() else {
                    break;
                };
                if let Some(&(until_slow, max_delay)) = self.slow.get(&to)
                    && self.now < until_slow
                    && !delayed
                {
                    // A busy CPU: the datagram is handled late (once), not lost.
                    let max = u64::try_from(max_delay.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    let extra = Duration::from_micros(self.rng.random_range(0..max));
                    self.queue
                        .insert((self.now + extra, self.seq), (to, bytes, true));
                    self.seq += 1;
                    continue;
                }
                let clock = self.clock();
                if let Some(node) = self.nodes[to].as_mut() {
                    let _ = node.receive(&bytes, clock);
                }
                self.flush(to);
            } else {
                let clock = self.clock();
                let due: Vec<usize> = (0..self.nodes.len())
                    .filter(|i| {
                        self.nodes[*i]
                            .as_ref()
                            .and_then(GossipNode::next_deadline)
                            .is_some_and(|d| d <= next)
                    })
                    .collect();
                for i in due {
                    if let Some(node) = self.nodes[i].as_mut() {
                        node.advance(clock);
                    }
                    self.flush(i);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` more.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Stops node `i` dead (crash, power loss): it sends and answers nothing.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Node `i` leaves gracefully, then stops.
    pub fn leave(&mut self, i: usize) {
        let clock = self.clock();
        if let Some(node) = self.nodes[i].as_mut() {
            node.leave(clock);
        }
        self.flush(i);
        self.nodes[i] = None;
    }

    /// Restarts node `i` as a new instance and joins it through `via`.
    pub fn restart(&mut self, i: usize, via: usize) {
        self.incarnations[i] += 1;
        let node = self.make_node(i);
        self.nodes[i] = Some(node);
        self.join(i, via);
    }

    /// Node `i` handles datagrams up to `max_delay` late until `for_how_long` from now (a
    /// saturated CPU).
    pub fn slow_down(&mut self, i: usize, for_how_long: Duration, max_delay: Duration) {
        self.slow.insert(i, (self.now + for_how_long, max_delay));
    }

    /// Cuts (or heals) traffic both ways between two groups.
    pub fn partition(&mut self, a: &[usize], b: &[usize], cut: bool) {
        for &x in a {
            for &y in b {
                if cut {
                    self.cut.insert((x, y));
                    self.cut.insert((y, x));
                } else {
                    self.cut.remove(&(x, y));
                    self.cut.remove(&(y, x));
                }
            }
        }
    }

    /// Whom node `i` believes alive (None if `i` is down).
    pub fn view(&self, i: usize) -> Option<BTreeSet<String>> {
        self.nodes.get(i)?.as_ref().map(GossipNode::alive)
    }

    /// Whether every running node sees exactly `expected` alive.
    pub fn converged(&self, expected: &BTreeSet<String>) -> bool {
        self.nodes.iter().flatten().all(|n| n.alive() == *expected)
    }

    /// Names of the running nodes.
    pub fn running(&self) -> BTreeSet<String> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .map(name)
            .collect()
    }

    /// How many running nodes other than `node` itself still believe `node` alive.
    pub fn still_seen_alive(&self, node: usize) -> usize {
        let who = name(node);
        (0..self.nodes.len())
            .filter(|i| *i != node)
            .filter_map(|i| self.nodes[i].as_ref())
            .filter(|n| n.sees_alive(&who))
            .count()
    }

    /// Whether every running node sees every running node alive (cheap form of `converged`).
    pub fn fully_joined(&self) -> bool {
        let running: Vec<String> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .map(name)
            .collect();
        self.nodes
            .iter()
            .flatten()
            .all(|n| running.iter().all(|r| n.sees_alive(r)))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the simulation has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Bytes sent by node `i` so far.
    pub fn bytes_sent(&self, i: usize) -> u64 {
        self.bytes[i]
    }

    /// Datagrams node `i` rejected, by reason.
    pub fn rejected(&self, i: usize) -> BTreeMap<&'static str, u64> {
        self.nodes[i]
            .as_ref()
            .map(|n| n.stats().rejected.clone())
            .unwrap_or_default()
    }
}
