//! One speaker's gossip membership, sans I/O: datagrams and the clock go in, datagrams to send
//! and membership changes come out. The UDP task and the simulator drive it the same way, so
//! what the simulator measures is what runs.
//!
//! foca owns the SWIM protocol; this wraps it with sealing (see [`super::seal`]), one ordered
//! timer queue, and a view of which nodes are alive.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Config, Foca, NoCustomBroadcast, Notification, PostcardCodec, Runtime, Timer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::member::Member;
use super::seal::{Rejected, Sealer};

/// Time as the node sees it: a monotonic reading for timers and the wall clock for the replay
/// window (other nodes compare against theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Monotonic time since an arbitrary start.
    pub mono: Duration,
    /// Milliseconds since the UNIX epoch.
    pub wall_ms: u64,
}

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A node's speaker is alive.
    Up(String),
    /// A node's speaker was declared down.
    Down(String),
}

/// Counters for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Datagrams sealed and queued.
    pub sent: u64,
    /// Bytes sealed and queued.
    pub sent_bytes: u64,
    /// Datagrams accepted.
    pub received: u64,
    /// Datagrams dropped, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

/// Collects what foca asks for during one call.
#[derive(Default)]
struct Scratch {
    sends: Vec<(Member, Vec<u8>)>,
    timers: Vec<(Timer<Member>, Duration)>,
    events: Vec<Change>,
}

/// What foca reported about one member.
enum Change {
    Up(Member),
    Down(Member),
    /// The same address under a newer identity (a restart).
    Renamed(Member, Member),
}

impl Runtime<Member> for Scratch {
    fn notify(&mut self, notification: Notification<'_, Member>) {
        match notification {
            Notification::MemberUp(m) => self.events.push(Change::Up(m.clone())),
            Notification::MemberDown(m) => self.events.push(Change::Down(m.clone())),
            Notification::Rename(old, new) => {
                self.events.push(Change::Renamed(old.clone(), new.clone()));
            }
            _ => {}
        }
    }

    fn send_to(&mut self, to: Member, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Member>, after: Duration) {
        self.timers.push((event, after));
    }
}

/// One speaker's membership.
pub struct GossipNode {
    me: String,
    foca: Foca<Member, PostcardCodec, StdRng, NoCustomBroadcast>,
    sealer: Sealer,
    nonces: StdRng,
    timers: BTreeMap<(Duration, u64), Timer<Member>>,
    next_seq: u64,
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    alive: BTreeMap<String, Member>,
    events: Vec<MembershipEvent>,
    stats: GossipStats,
}

impl std::fmt::Debug for GossipNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipNode")
            .field("me", &self.me)
            .field("alive", &self.alive.keys())
            .finish_non_exhaustive()
    }
}

impl GossipNode {
    /// A node that knows nobody yet. `seed` makes its randomness reproducible (the real speaker
    /// seeds from the OS).
    pub fn new(identity: Member, config: Config, sealer: Sealer, seed: u64) -> Self {
        let me = identity.node.clone();
        let foca = Foca::new(identity, config, StdRng::seed_from_u64(seed), PostcardCodec);
        Self {
            me,
            foca,
            sealer,
            nonces: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            timers: BTreeMap::new(),
            next_seq: 0,
            outbox: Vec::new(),
            alive: BTreeMap::new(),
            events: Vec::new(),
            stats: GossipStats::default(),
        }
    }

    fn absorb(&mut self, scratch: Scratch, clock: Clock) {
        for (to, data) in scratch.sends {
            let mut nonce = [0u8; 24];
            self.nonces.fill_bytes(&mut nonce);
            let sealed = self.sealer.seal(&data, clock.wall_ms, nonce);
            self.stats.sent += 1;
            self.stats.sent_bytes += sealed.len() as u64;
            self.outbox.push((to.addr, sealed));
        }
        for (timer, after) in scratch.timers {
            self.timers
                .insert((clock.mono + after, self.next_seq), timer);
            self.next_seq += 1;
        }
        for change in scratch.events {
            match change {
                Change::Up(member) => {
                    if self
                        .alive
                        .insert(member.node.clone(), member.clone())
                        .is_none()
                    {
                        self.events.push(MembershipEvent::Up(member.node));
                    }
                }
                Change::Down(member) => {
                    if self.alive.get(&member.node) == Some(&member) {
                        self.alive.remove(&member.node);
                        self.events.push(MembershipEvent::Down(member.node));
                    }
                }
                Change::Renamed(old, new) => {
                    // Follow the newer instance; its liveness comes as its own Up/Down.
                    if self.alive.get(&old.node) == Some(&old) {
                        self.alive.remove(&old.node);
                        if old.node == new.node {
                            self.alive.insert(new.node.clone(), new);
                        } else {
                            self.events.push(MembershipEvent::Down(old.node));
                        }
                    }
                }
            }
        }
    }

    /// Asks a peer at `addr` to let us in (the peer's identity is not known yet).
    pub fn join(&mut self, addr: SocketAddr, clock: Clock) {
        let mut scratch = Scratch::default();
        let placeholder = Member {
            node: String::new(),
            addr,
            incarnation: 0,
        };
        if let Err(e) = self.foca.announce(placeholder, &mut scratch) {
            tracing_free_log(&e);
        }
        self.absorb(scratch, clock);
    }

    /// Handles one received datagram.
    ///
    /// # Errors
    /// Why it was dropped; membership is unchanged then.
    pub fn receive(&mut self, datagram: &[u8], clock: Clock) -> Result<(), Rejected> {
        let payload = match self.sealer.open(datagram, clock.wall_ms) {
            Ok(p) => p,
            Err(e) => {
                *self.stats.rejected.entry(rejection_name(e)).or_default() += 1;
                return Err(e);
            }
        };
        let mut scratch = Scratch::default();
        let result = self.foca.handle_data(&payload, &mut scratch);
        self.absorb(scratch, clock);
        match result {
            Ok(()) => {
                self.stats.received += 1;
                Ok(())
            }
            Err(_) => {
                *self.stats.rejected.entry("malformed").or_default() += 1;
                Err(Rejected::Malformed)
            }
        }
    }

    /// Fires every timer due at `clock`.
    pub fn advance(&mut self, clock: Clock) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > clock.mono {
                break;
            }
            let timer = entry.remove();
            let mut scratch = Scratch::default();
            if let Err(e) = self.foca.handle_timer(timer, &mut scratch) {
                tracing_free_log(&e);
            }
            self.absorb(scratch, clock);
        }
    }

    /// Changes the protocol's timing (the cluster grew or shrank). Timers already set keep
    /// their time; the next ones follow the new configuration.
    ///
    /// # Errors
    /// When foca refuses the configuration (a bug in [`super::timing::Timing`]).
    pub fn set_config(&mut self, config: Config) -> Result<(), String> {
        self.foca.set_config(config).map_err(|e| e.to_string())
    }

    /// When the next timer is due.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Datagrams to send, by destination.
    pub fn take_outbox(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    /// Membership changes since the last call.
    pub fn take_events(&mut self) -> Vec<MembershipEvent> {
        std::mem::take(&mut self.events)
    }

    /// Nodes alive, this one included.
    pub fn alive(&self) -> BTreeSet<String> {
        self.alive
            .keys()
            .cloned()
            .chain(std::iter::once(self.me.clone()))
            .collect()
    }

    /// Whether this node believes `node` alive (cheaper than [`Self::alive`] for one node).
    pub fn sees_alive(&self, node: &str) -> bool {
        node == self.me || self.alive.contains_key(node)
    }

    /// Counters.
    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    /// Leaves the group gracefully (SIGTERM): peers mark this node down at once.
    pub fn leave(&mut self, clock: Clock) {
        let mut scratch = Scratch::default();
        if let Err(e) = self.foca.leave_cluster(&mut scratch) {
            tracing_free_log(&e);
        }
        self.absorb(scratch, clock);
    }
}

fn rejection_name(e: Rejected) -> &'static str {
    match e {
        Rejected::Malformed => "malformed",
        Rejected::UnknownKey => "unknown_key",
        Rejected::Forged => "forged",
        Rejected::Stale => "stale",
        Rejected::Replayed => "replayed",
    }
}

/// foca's errors here are protocol noise (late timers after a rename, and the like); they are
/// counted by the caller through stats where they matter and otherwise ignored.
fn tracing_free_log(_e: &foca::Error) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::seal::KeyRing;
    use crate::gossip::timing::Timing;

    #[test]
    fn timing_for_a_larger_cluster_is_accepted_at_run_time() {
        let member = Member {
            node: "a".into(),
            addr: SocketAddr::from(([192, 0, 2, 10], 7946)),
            incarnation: 1,
        };
        let sealer = Sealer::new(
            KeyRing::from_lines("k").unwrap_or_else(|e| panic!("{e}")),
            10_000,
        );
        let mut node = GossipNode::new(member, Timing::for_cluster(3).config(), sealer, 7);
        for size in [100, 1000, 3] {
            assert_eq!(node.set_config(Timing::for_cluster(size).config()), Ok(()));
        }
    }
}
