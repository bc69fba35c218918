//! Gossip timing. Every knob, its default, and why.
//!
//! | knob | default | why |
//! |---|---|---|
//! | `probe_period` | 80 ms | how often each speaker pings one random peer; bounds how soon a dead owner is probed |
//! | `probe_rtt` | 30 ms | wait for a direct ack before asking others to ping (a LAN round trip is well under 1 ms; a busy node answers within tens of ms) |
//! | `indirect_probes` | 3 | peers asked to ping a silent member, so one lost datagram does not make a suspect |
//! | `suspect_to_down` | 200 ms, and 1.25 gossip periods per gossip round a cluster needs (log3 n) when more | time a suspected member has to refute: the suspicion and the refutation must both reach every member, which takes more rounds in a larger cluster |
//! | `gossip_period` | 80 ms | how often updates are pushed to `gossip_fanout` random peers |
//! | `gossip_fanout` | 3 | peers per gossip round |
//! | `max_transmissions` | 12 | times each update is piggybacked; enough to reach 1,000 nodes without tails |
//!
//! With these, a 3-node cluster notices a dead owner in about 360 ms (p50) / 460 ms (p95), and
//! a 1,000-node one in about a second, at a few KB/s per node (see `gossip-sim`).
//!
//! The [`Profile::Fast`] profile (`--gossip-profile fast`) divides the periods by four (probe and
//! gossip every 20 ms, a direct ack awaited 8 ms, suspicion 50 ms): a dead owner is noticed in
//! well under 100 ms, for four times the datagrams (about 4x the gossip bandwidth and CPU, still
//! tens of KB/s and a percent of a core per node).

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use foca::{Config, PeriodicParams};

/// How quickly a silent speaker is called dead, traded against gossip traffic and CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// The module table's timing.
    #[default]
    Standard,
    /// Periods divided by four, for failovers within about 150 ms.
    Fast,
}

impl Profile {
    /// This profile's timing for a cluster of `nodes` speakers: suspicion lasts long enough for
    /// a refutation to cross the cluster, which takes more gossip rounds when it is larger.
    pub fn timing(self, nodes: usize) -> Timing {
        let mut t = match self {
            Self::Standard => Timing::default(),
            Self::Fast => Timing {
                profile: self,
                probe_period: Duration::from_millis(20),
                probe_rtt: Duration::from_millis(8),
                suspect_to_down: Duration::from_millis(50),
                gossip_period: Duration::from_millis(20),
                ..Timing::default()
            },
        };
        let mut rounds = 0u32;
        let mut reach = 1usize;
        while reach < nodes.max(2) {
            reach = reach.saturating_mul(t.gossip_fanout.max(2));
            rounds += 1;
        }
        t.suspect_to_down = t.suspect_to_down.max(t.gossip_period * rounds * 5 / 4);
        t
    }
}

/// The timing of the gossip protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The profile these values come from (they follow the cluster size within it).
    pub profile: Profile,
    /// See the module table.
    pub probe_period: Duration,
    /// See the module table.
    pub probe_rtt: Duration,
    /// See the module table.
    pub indirect_probes: usize,
    /// See the module table.
    pub suspect_to_down: Duration,
    /// See the module table.
    pub gossip_period: Duration,
    /// See the module table.
    pub gossip_fanout: usize,
    /// See the module table.
    pub max_transmissions: u8,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            profile: Profile::Standard,
            probe_period: Duration::from_millis(80),
            probe_rtt: Duration::from_millis(30),
            indirect_probes: 3,
            suspect_to_down: Duration::from_millis(200),
            gossip_period: Duration::from_millis(80),
            gossip_fanout: 3,
            max_transmissions: 12,
        }
    }
}

impl Timing {
    /// The defaults for a cluster of `nodes` speakers (see the module table).
    pub fn for_cluster(nodes: usize) -> Self {
        Profile::Standard.timing(nodes)
    }

    /// The foca configuration.
    pub fn config(&self) -> Config {
        let mut c = Config::simple();
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.num_indirect_probes =
            NonZeroUsize::new(self.indirect_probes.max(1)).unwrap_or(NonZeroUsize::MIN);
        c.suspect_to_down_after = self.suspect_to_down;
        c.max_transmissions =
            NonZeroU8::new(self.max_transmissions.max(1)).unwrap_or(NonZeroU8::MIN);
        c.notify_down_members = true;
        c.periodic_gossip = Some(PeriodicParams {
            frequency: self.gossip_period,
            num_members: NonZeroUsize::new(self.gossip_fanout.max(1)).unwrap_or(NonZeroUsize::MIN),
        });
        // Rejoin paths: a partitioned or restarted node finds its way back.
        c.periodic_announce = Some(PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::MIN,
        });
        c.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::MIN,
        });
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_profile_quarters_the_periods_and_still_lengthens_suspicion_in_large_clusters() {
        let (standard, fast) = (Profile::Standard.timing(3), Profile::Fast.timing(3));
        assert_eq!(standard, Timing::for_cluster(3));
        assert_eq!(fast.probe_period * 4, standard.probe_period);
        assert_eq!(fast.gossip_period * 4, standard.gossip_period);
        assert_eq!(fast.suspect_to_down * 4, standard.suspect_to_down);
        assert!(fast.probe_rtt < fast.probe_period);
        let large = Profile::Fast.timing(1000);
        assert_eq!(large.profile, Profile::Fast);
        assert!(large.suspect_to_down > fast.suspect_to_down);
    }
}
