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

/// One Service IP.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IpLabel {
    /// The IP.
    pub ip: String,
}

/// One network interface.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabel {
    /// The interface name.
    pub interface: String,
}

/// Layer 2 counters, shared with the responder's reader threads (families are reference
/// counted, so clones count into the same series).
#[derive(Debug, Clone, Default)]
pub struct L2Metrics {
    /// ARP requests / Neighbor Solicitations received for an owned IP.
    pub requests: Family<IpLabel, Counter>,
    /// Replies sent.
    pub responses: Family<IpLabel, Counter>,
    /// Gratuitous ARP / unsolicited NA sent.
    pub gratuitous: Family<IpLabel, Counter>,
    /// Frames dropped as malformed, by interface.
    pub malformed: Family<InterfaceLabel, Counter>,
    /// Raw sockets that could not be opened and frames that could not be sent, by interface.
    pub link_errors: Family<InterfaceLabel, Counter>,
    /// Address conflicts detected (another MAC claims an IP this node announces).
    pub conflicts: Family<IpLabel, Counter>,
    /// Takeovers held back because another MAC still answers the IP (an owner that gossip calls
    /// dead is alive on the link). Not per IP: a cut-off node re-probes every few hundred ms.
    pub takeover_deferred: Counter,
}

impl L2Metrics {
    /// Counts one event for `ip` in `family`.
    pub fn count(family: &Family<IpLabel, Counter>, ip: std::net::IpAddr) {
        family.get_or_create(&IpLabel { ip: ip.to_string() }).inc();
    }
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
    /// Layer 2 answering.
    pub l2: L2Metrics,
    /// Times this node became the owner of a Service.
    pub owner_changes: Counter,
    /// 1 when kube-proxy runs in IPVS mode without strict ARP on this node.
    pub ipvs_strict_arp_missing: Gauge,
    /// (Service, IP) pairs found outside every IPAddressPool and never answered, once per
    /// change.
    pub ip_not_in_pool: Counter,
    /// 1 while this speaker hears no gossip peer although the API shows other speakers Ready.
    pub gossip_isolated: Gauge,
    /// Times this speaker's loop found it had been frozen and claimed its IPs again.
    pub frozen: Counter,
    /// 1 while this speaker reaches neither a gossip peer nor the API server, and answers
    /// nothing.
    pub stranded: Gauge,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            announced: Family::default(),
            members: Family::default(),
            gossip_dropped: Family::default(),
            insecure: Gauge::default(),
            l2: L2Metrics::default(),
            owner_changes: Counter::default(),
            ipvs_strict_arp_missing: Gauge::default(),
            ip_not_in_pool: Counter::default(),
            gossip_isolated: Gauge::default(),
            frozen: Counter::default(),
            stranded: Gauge::default(),
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
        registry.register(
            "ferrolb_speaker_frozen",
            "Times the speaker found it had been frozen (SIGSTOP, a stalled VM) and claimed its IPs again through the link",
            m.frozen.clone(),
        );
        registry.register(
            "ferrolb_speaker_stranded",
            "1 while the speaker reaches neither a gossip peer nor the API server and answers nothing (its IPs are taken over elsewhere)",
            m.stranded.clone(),
        );
        registry.register(
            "ferrolb_speaker_owner_changes",
            "Times this node became the announcing node of a Service",
            m.owner_changes.clone(),
        );
        registry.register(
            "ferrolb_speaker_ipvs_strict_arp_missing",
            "1 when kube-proxy runs in IPVS mode without strictARP on this node (every node then answers ARP for every Service IP)",
            m.ipvs_strict_arp_missing.clone(),
        );
        registry.register(
            "ferrolb_speaker_ip_not_in_pool",
            "Service IPs found outside every IPAddressPool (another writer put them in status); never answered",
            m.ip_not_in_pool.clone(),
        );
        registry.register(
            "ferrolb_speaker_gossip_isolated",
            "1 while this speaker hears no gossip peer although the API shows other speaker Pods Ready (it then keeps its own IPs and takes over none that another MAC still answers)",
            m.gossip_isolated.clone(),
        );
        registry.register(
            "ferrolb_layer2_takeover_deferred",
            "Takeovers held back because another MAC still answered the IP (its owner is alive on the link though gossip calls it dead)",
            m.l2.takeover_deferred.clone(),
        );
        registry.register(
            "ferrolb_layer2_requests_received",
            "ARP requests and Neighbor Solicitations received for an IP this node announces",
            m.l2.requests.clone(),
        );
        registry.register(
            "ferrolb_layer2_responses_sent",
            "ARP replies and Neighbor Advertisements sent in answer",
            m.l2.responses.clone(),
        );
        registry.register(
            "ferrolb_layer2_gratuitous_sent",
            "Gratuitous ARP and unsolicited Neighbor Advertisements sent",
            m.l2.gratuitous.clone(),
        );
        registry.register(
            "ferrolb_layer2_malformed_frames",
            "ARP/NDP frames dropped as malformed, by interface",
            m.l2.malformed.clone(),
        );
        registry.register(
            "ferrolb_layer2_link_errors",
            "Raw sockets that could not be opened and frames that could not be sent, by interface (each retried)",
            m.l2.link_errors.clone(),
        );
        registry.register(
            "ferrolb_layer2_conflicts",
            "Address conflicts: another MAC answered for an IP this node announces",
            m.l2.conflicts.clone(),
        );
        m
    }
}
