//! Why a received frame gets no answer: [`Ignored`] (well-formed, not ours to answer) or
//! [`Malformed`] (failed a check). The frame parser sorts refusals into these while it peels
//! the layers, and [`crate::answer`] adds the ones that depend on what this node owns; the
//! speaker counts both by `metric_label()`.

use std::net::{IpAddr, Ipv6Addr};

use smoltcp::wire::ETHERNET_HEADER_LEN;

use crate::mac::Mac;
use crate::{arp, ndp};

/// Why a well-formed frame gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// An 802.1Q / 802.1ad tagged frame. The speaker listens on the interface that carries
    /// the addresses (the kernel strips tags for VLAN sub-interfaces), so a tagged frame seen
    /// there belongs to some other VLAN.
    #[error("VLAN-tagged frame")]
    VlanTagged,
    /// Neither ARP nor IPv6.
    #[error("EtherType {ethertype:#06x} is neither ARP nor IPv6")]
    UnhandledEthertype {
        /// The EtherType found.
        ethertype: u16,
    },
    /// Sent from our own MAC: a raw socket also sees outgoing frames, and answering our own
    /// probe would defend an address against ourselves.
    #[error("frame sent by this node")]
    FromOurselves,
    /// Unicast to another station (seen in promiscuous mode).
    #[error("frame unicast to {dst}")]
    NotAddressedToUs {
        /// The destination MAC.
        dst: Mac,
    },
    /// An ARP reply: it answers someone else's question.
    #[error("ARP reply")]
    ArpReply,
    /// A gratuitous ARP request (sender IP = target IP): an announcement, not a question.
    #[error("gratuitous ARP announcement")]
    ArpAnnouncement,
    /// IPv6 that is not ICMPv6 directly after the fixed header (extension headers are not
    /// followed).
    #[error("IPv6 next header {next_header} is not ICMPv6")]
    NotIcmpv6 {
        /// The next header found.
        next_header: u8,
    },
    /// ICMPv6 other than Neighbor Solicitation and Advertisement.
    #[error("ICMPv6 type {msg_type} is not neighbor discovery")]
    NotNeighborDiscovery {
        /// The ICMPv6 type found.
        msg_type: u8,
    },
    /// A Neighbor Advertisement: an answer or announcement, never a question.
    #[error("Neighbor Advertisement")]
    NeighborAdvertisement,
    /// A question about an address this node does not own.
    #[error("target {target} is not owned here")]
    TargetNotOwned {
        /// The address asked about.
        target: IpAddr,
    },
}

impl Ignored {
    /// A short `snake_case` name for this reason, stable for use as a metric label.
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Ignored::VlanTagged => "vlan_tagged",
            Ignored::UnhandledEthertype { .. } => "unhandled_ethertype",
            Ignored::FromOurselves => "from_ourselves",
            Ignored::NotAddressedToUs { .. } => "not_addressed_to_us",
            Ignored::ArpReply => "arp_reply",
            Ignored::ArpAnnouncement => "arp_announcement",
            Ignored::NotIcmpv6 { .. } => "not_icmpv6",
            Ignored::NotNeighborDiscovery { .. } => "not_neighbor_discovery",
            Ignored::NeighborAdvertisement => "neighbor_advertisement",
            Ignored::TargetNotOwned { .. } => "target_not_owned",
        }
    }
}

/// Why a frame failed a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    #[error("Ethernet frame of {len} bytes is shorter than the {ETHERNET_HEADER_LEN}-byte header")]
    EthernetTruncated {
        /// Bytes available.
        len: usize,
    },
    /// A group (multicast) MAC where only a station's own MAC may be: the Ethernet source, the
    /// ARP sender hardware address, or an NS source link-layer address. Answering would send
    /// a "unicast" reply to a group.
    #[error("multicast MAC {mac} used as a source address")]
    MulticastSource {
        /// The MAC found.
        mac: Mac,
    },
    /// A bad ARP packet.
    #[error(transparent)]
    Arp(#[from] arp::Error),
    /// Shorter than the IPv6 header, or than the header plus the payload length it declares.
    #[error("IPv6 packet has {len} bytes but needs {need}")]
    Ipv6Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The IP version field is not 6.
    #[error("IP version {version} is not 6")]
    Ipv6BadVersion {
        /// The version found.
        version: u8,
    },
    /// A multicast IPv6 source address, which no packet may have ([RFC 4291 section 2.7]).
    ///
    /// [RFC 4291 section 2.7]: https://www.rfc-editor.org/rfc/rfc4291#section-2.7
    #[error("IPv6 source address {src} is multicast")]
    Ipv6MulticastSource {
        /// The source address found.
        src: Ipv6Addr,
    },
    /// An IPv6 payload too short for an ICMPv6 header.
    #[error("ICMPv6 message of {len} bytes is shorter than the 4-byte header")]
    Icmpv6Truncated {
        /// Bytes available.
        len: usize,
    },
    /// A Neighbor Solicitation or Advertisement failing RFC 4861 validation.
    #[error(transparent)]
    Ndp(#[from] ndp::Error),
}

impl Malformed {
    /// A short `snake_case` name for this failure, stable for use as a metric label.
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Malformed::EthernetTruncated { .. } => "ethernet_truncated",
            Malformed::MulticastSource { .. } => "multicast_source_mac",
            Malformed::Arp(e) => e.metric_label(),
            Malformed::Ipv6Truncated { .. } => "ipv6_truncated",
            Malformed::Ipv6BadVersion { .. } => "ipv6_bad_version",
            Malformed::Ipv6MulticastSource { .. } => "ipv6_multicast_source",
            Malformed::Icmpv6Truncated { .. } => "icmpv6_truncated",
            Malformed::Ndp(e) => e.metric_label(),
        }
    }
}
