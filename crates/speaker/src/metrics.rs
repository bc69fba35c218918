//! The speaker's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One announced IP.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnnouncedLabels {
    /// `namespace/name`.
    pub service: String,
    /// This node.
    pub node: String,
    /// The IP.
    pub ip: String,
    /// `ipv4` or `ipv6`.
    pub protocol: &'static str,
}

/// Gossip member state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `alive`.
    pub state: &'static str,
}

/// Why a datagram was dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `forged`, `unknown_key`, `stale`, `replayed`, `malformed`.
    pub reason: &'static str,
}

/// Every metric the speaker exports.
#[derive(Debug)]
pub struct Metrics {
    /// 1 per IP this node announces.
    pub announced: Family<AnnouncedLabels, Gauge>,
    /// Gossip members by state.
    pub members: Family<StateLabel, Gauge>,
    /// Gossip datagrams dropped, by reason (authentication failures among them).
    pub gossip_dropped: Family<ReasonLabel, Counter>,
    /// 1 when gossip runs without a key (`--insecure-gossip`).
    pub insecure: Gauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            announced: Family::default(),
            members: Family::default(),
            gossip_dropped: Family::default(),
            insecure: Gauge::default(),
        };
        registry.register(
            "ferrolb_speaker_announced",
            "IPs this node announces (1 per IP)",
            m.announced.clone(),
        );
        registry.register(
            "ferrolb_speaker_gossip_members",
            "Gossip members this node sees, by state",
            m.members.clone(),
        );
        registry.register("ferrolb_speaker_gossip_dropped", "Gossip datagrams dropped, by reason (forged and unknown_key are authentication failures)", m.gossip_dropped.clone());
        registry.register(
            "ferrolb_speaker_gossip_insecure",
            "1 when gossip is neither authenticated nor encrypted",
            m.insecure.clone(),
        );
        m
    }
}
