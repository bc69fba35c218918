//! The responder's decision: given a received frame, the IPs this node currently owns and its
//! MAC, which frame (if any) to send back. Pure: the speaker reads the frame from its raw
//! socket, calls [`Responder::answer`], writes [`Verdict::Reply`] back and counts the rest by
//! [`Ignored::metric_label`] / [`Malformed::metric_label`].
//!
//! # What gets an answer
//!
//! - An ARP request for an owned IPv4 address, including an [RFC 5227] probe (sender IP
//!   `0.0.0.0`; a defender answers probes so the prober backs off): an ARP reply from our MAC,
//!   unicast to the requester's sender MAC ([RFC 826]).
//! - A Neighbor Solicitation for an owned IPv6 address: a Neighbor Advertisement from the
//!   target address with Solicited and Override set and our MAC in a Target Link-Layer Address
//!   option ([RFC 4861 section 7.2.4]), unicast to the solicitation's source, at the MAC of its
//!   Source Link-Layer Address option or, when it has none (a unicast reachability probe), the
//!   frame's Ethernet source.
//! - A Duplicate Address Detection solicitation (source `::`) for an owned address: the same
//!   advertisement but to all-nodes `ff02::1` with Solicited clear, as section 7.2.4 requires,
//!   so the other host sees its address is taken.
//!
//! Everything else is [`Verdict::Ignore`]d (gratuitous ARP, replies, advertisements, other
//! traffic, targets we do not own, frames we sent ourselves) or [`Verdict::Malformed`].
//!
//! [RFC 826]: https://www.rfc-editor.org/rfc/rfc826
//! [RFC 5227]: https://www.rfc-editor.org/rfc/rfc5227#section-2.4
//! [RFC 4861 section 7.2.4]: https://www.rfc-editor.org/rfc/rfc4861#section-7.2.4

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::wire::Ipv6Repr;

use crate::arp::{ArpOperation, ArpRepr};
use crate::frame::{self, Link, Packet, Rejected};
use crate::mac::Mac;
use crate::ndp::{ALL_NODES, NaFlags, NdpRepr, NeighborAdvert, NeighborSolicit};
use crate::reason::{Ignored, Malformed};

/// What to do with a received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send `frame` (a whole Ethernet frame, without FCS) on the interface it came from: the
    /// answer to a question about `target`, an owned address.
    Reply {
        /// The answer.
        frame: Vec<u8>,
        /// The owned address asked about (per-address request counters).
        target: IpAddr,
    },
    /// Well-formed but not ours to answer.
    Ignore(Ignored),
    /// Failed a check.
    Malformed(Malformed),
}

impl Verdict {
    /// Whether the frame was neighbour traffic from another station: well-formed ARP or NDP
    /// (a question, an answer or an announcement) not sent by this node, as opposed to our own
    /// frames, junk, or a switch's other chatter (LLDP, a port's router solicitations).
    pub fn from_another_station(&self) -> bool {
        match self {
            Verdict::Reply { .. } => true,
            Verdict::Ignore(reason) => matches!(
                reason,
                Ignored::ArpReply
                    | Ignored::ArpAnnouncement
                    | Ignored::NeighborAdvertisement
                    | Ignored::TargetNotOwned { .. }
            ),
            Verdict::Malformed(_) => false,
        }
    }

    /// The frame to send, if any.
    pub fn into_reply(self) -> Option<Vec<u8>> {
        match self {
            Verdict::Reply { frame, .. } => Some(frame),
            Verdict::Ignore(_) | Verdict::Malformed(_) => None,
        }
    }
}

impl From<Rejected> for Verdict {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::Ignore(reason) => Verdict::Ignore(reason),
            Rejected::Malformed(reason) => Verdict::Malformed(reason),
        }
    }
}

/// One interface's answering state: its MAC and the addresses this node owns there. Borrowed
/// so the speaker can keep its sets where they are and build a `Responder` per frame for free.
#[derive(Debug, Clone, Copy)]
pub struct Responder<'a> {
    /// The MAC of the interface; the hardware address in every answer.
    pub mac: Mac,
    /// IPv4 addresses to answer ARP for.
    pub owned_v4: &'a BTreeSet<Ipv4Addr>,
    /// IPv6 addresses to answer Neighbor Solicitations for.
    pub owned_v6: &'a BTreeSet<Ipv6Addr>,
}

impl Responder<'_> {
    /// Decides what to send in answer to `frame` (a whole Ethernet frame, without FCS). Never
    /// panics, whatever the bytes.
    pub fn answer(&self, frame: &[u8]) -> Verdict {
        match self.decide(frame) {
            Ok((frame, target)) => Verdict::Reply { frame, target },
            Err(rejected) => rejected.into(),
        }
    }

    fn decide(&self, frame: &[u8]) -> Result<(Vec<u8>, IpAddr), Rejected> {
        let (link, packet) = frame::parse(frame)?;
        self.check_link(&link)?;
        match packet {
            Packet::Arp(arp) => self.answer_arp(&arp),
            Packet::Ndp {
                ip,
                ndp: NdpRepr::Solicit(ns),
            } => self.answer_ns(&link, &ip, &ns),
            Packet::Ndp {
                ndp: NdpRepr::Advert(_),
                ..
            } => Err(Rejected::Ignore(Ignored::NeighborAdvertisement)),
        }
    }

    fn check_link(&self, eth: &Link) -> Result<(), Rejected> {
        if eth.src == self.mac {
            return Err(Rejected::Ignore(Ignored::FromOurselves));
        }
        if eth.src.is_multicast() {
            return Err(Rejected::Malformed(Malformed::MulticastSource {
                mac: eth.src,
            }));
        }
        if !eth.dst.is_multicast() && eth.dst != self.mac {
            return Err(Rejected::Ignore(Ignored::NotAddressedToUs { dst: eth.dst }));
        }
        Ok(())
    }

    fn answer_arp(&self, arp: &ArpRepr) -> Result<(Vec<u8>, IpAddr), Rejected> {
        if arp.sender_mac == self.mac {
            return Err(Rejected::Ignore(Ignored::FromOurselves));
        }
        if arp.sender_mac.is_multicast() {
            return Err(Rejected::Malformed(Malformed::MulticastSource {
                mac: arp.sender_mac,
            }));
        }
        if arp.operation == ArpOperation::Reply {
            return Err(Rejected::Ignore(Ignored::ArpReply));
        }
        if arp.is_gratuitous() {
            return Err(Rejected::Ignore(Ignored::ArpAnnouncement));
        }
        if !self.owned_v4.contains(&arp.target_ip) {
            return Err(Rejected::Ignore(Ignored::TargetNotOwned {
                target: IpAddr::V4(arp.target_ip),
            }));
        }
        // Probes (sender 0.0.0.0) get the same reply: RFC 5227 section 2.4 has the owner
        // defend its address, and the prober treats any ARP from the address as a conflict.
        let reply = ArpRepr::reply_to(arp, self.mac);
        Ok((
            frame::arp_frame(self.mac, arp.sender_mac, &reply),
            IpAddr::V4(arp.target_ip),
        ))
    }

    fn answer_ns(
        &self,
        eth: &Link,
        ip: &Ipv6Repr,
        ns: &NeighborSolicit,
    ) -> Result<(Vec<u8>, IpAddr), Rejected> {
        if let Some(mac) = ns.source_mac {
            if mac == self.mac {
                return Err(Rejected::Ignore(Ignored::FromOurselves));
            }
            if mac.is_multicast() {
                return Err(Rejected::Malformed(Malformed::MulticastSource { mac }));
            }
        }
        if !self.owned_v6.contains(&ns.target) {
            return Err(Rejected::Ignore(Ignored::TargetNotOwned {
                target: IpAddr::V6(ns.target),
            }));
        }
        // RFC 4861 section 7.2.4: a solicitation from :: (Duplicate Address Detection) is
        // answered to all-nodes with Solicited clear; otherwise to the solicitor, at the MAC it
        // gave or, without one, the MAC the frame came from.
        let (dst_ip, dst_mac, flags) = if ip.src_addr.is_unspecified() {
            (ALL_NODES, Mac::ipv6_multicast(ALL_NODES), NaFlags::OVERRIDE)
        } else {
            (
                ip.src_addr,
                ns.source_mac.unwrap_or(eth.src),
                NaFlags::SOLICITED | NaFlags::OVERRIDE,
            )
        };
        let na = NdpRepr::Advert(NeighborAdvert {
            flags,
            target: ns.target,
            target_mac: Some(self.mac),
        });
        Ok((
            frame::ndp_frame(self.mac, dst_mac, ns.target, dst_ip, &na),
            IpAddr::V6(ns.target),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{arp, ndp, ndp::solicited_node};

    const OUR_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const OTHER_MAC: Mac = Mac([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
    const OUR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const THEIR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn our_v6() -> Ipv6Addr {
        "2001:db8::10".parse().unwrap()
    }

    fn their_v6() -> Ipv6Addr {
        "2001:db8::1".parse().unwrap()
    }

    struct Owned {
        v4: BTreeSet<Ipv4Addr>,
        v6: BTreeSet<Ipv6Addr>,
    }

    impl Owned {
        fn ours() -> Self {
            Owned {
                v4: [OUR_V4].into(),
                v6: [our_v6()].into(),
            }
        }

        fn responder(&self) -> Responder<'_> {
            Responder {
                mac: OUR_MAC,
                owned_v4: &self.v4,
                owned_v6: &self.v6,
            }
        }
    }

    fn answer(frame: &[u8]) -> Verdict {
        Owned::ours().responder().answer(frame)
    }

    #[test]
    fn arp_and_ndp_from_others_are_neighbour_traffic_and_junk_and_our_own_are_not() {
        use crate::announce::{arp_probe, dad_ns, unsolicited_na};
        assert!(answer(&arp_probe(THEIR_MAC, OUR_V4)).from_another_station());
        assert!(answer(&dad_ns(THEIR_MAC, our_v6())).from_another_station());
        assert!(answer(&unsolicited_na(THEIR_MAC, our_v6())).from_another_station());
        assert!(!answer(&[0u8; 60]).from_another_station());
        assert!(!answer(&arp_probe(OUR_MAC, OUR_V4)).from_another_station());
    }

    /// A real-looking capture: "who has 192.0.2.10? tell 192.0.2.1", broadcast, padded
    /// by the sender's NIC to the 60-byte minimum.
    #[rustfmt::skip]
    const ARP_REQUEST: [u8; 60] = [
        // Ethernet
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source: the requester
        0x08, 0x06,                         // EtherType: ARP
        // ARP (RFC 826)
        0x00, 0x01,                         // hardware type: Ethernet
        0x08, 0x00,                         // protocol type: IPv4
        0x06,                               // hardware address length
        0x04,                               // protocol address length
        0x00, 0x01,                         // operation: request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC
        0xc0, 0x00, 0x02, 0x01,             // sender IP 192.0.2.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: unknown
        0xc0, 0x00, 0x02, 0x0a,             // target IP 192.0.2.10
        // Ethernet padding to 60 bytes
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// What we answer to [`ARP_REQUEST`].
    #[rustfmt::skip]
    const ARP_REPLY: [u8; 60] = [
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // destination: the requester
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source: us
        0x08, 0x06,                         // EtherType: ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, 6, 4
        0x00, 0x02,                         // operation: reply
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: us
        0xc0, 0x00, 0x02, 0x0a,             // sender IP 192.0.2.10
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // target MAC: the requester
        0xc0, 0x00, 0x02, 0x01,             // target IP 192.0.2.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // padding
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// A real-looking capture: 2001:db8::1 asks who has 2001:db8::10.
    #[rustfmt::skip]
    const NS: [u8; 86] = [
        // Ethernet
        0x33, 0x33, 0xff, 0x00, 0x00, 0x10, // destination: MAC of ff02::1:ff00:10
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source: the solicitor
        0x86, 0xdd,                         // EtherType: IPv6
        // IPv6
        0x60, 0x00, 0x00, 0x00,             // version 6, traffic class 0, flow label 0
        0x00, 0x20,                         // payload length 32
        0x3a,                               // next header: ICMPv6
        0xff,                               // hop limit 255
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // source 2001:db8::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // destination ff02::1:ff00:10
        0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x10,
        // ICMPv6 Neighbor Solicitation (RFC 4861 section 4.3)
        0x87,                               // type 135
        0x00,                               // code 0
        0x97, 0x4f,                         // checksum (computed independently)
        0x00, 0x00, 0x00, 0x00,             // reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x01, 0x01,                         // option: source link-layer address, 1 unit
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // the solicitor's MAC
    ];

    /// What we answer to [`NS`].
    #[rustfmt::skip]
    const NA: [u8; 86] = [
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // destination: the solicitor
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source: us
        0x86, 0xdd,                         // EtherType: IPv6
        0x60, 0x00, 0x00, 0x00,             // version 6
        0x00, 0x20,                         // payload length 32
        0x3a, 0xff,                         // ICMPv6, hop limit 255
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // source 2001:db8::10 (the target)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // destination: the solicitor
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x88, 0x00,                         // type 136, code 0
        0x8a, 0x56,                         // checksum (computed independently)
        0x60, 0x00, 0x00, 0x00,             // flags: Solicited, Override
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x02, 0x01,                         // option: target link-layer address, 1 unit
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // our MAC
    ];

    fn reply(verdict: Verdict) -> Vec<u8> {
        match verdict {
            Verdict::Reply { frame, .. } => frame,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn arp_frame(src: Mac, dst: Mac, arp: &ArpRepr) -> Vec<u8> {
        frame::arp_frame(src, dst, arp)
    }

    fn ns_frame(
        src_mac: Mac,
        dst_mac: Mac,
        src_ip: Ipv6Addr,
        dst_ip: Ipv6Addr,
        ns: NeighborSolicit,
    ) -> Vec<u8> {
        frame::ndp_frame(src_mac, dst_mac, src_ip, dst_ip, &NdpRepr::Solicit(ns))
    }

    fn parse_ndp(frame: &[u8]) -> (Link, Ipv6Repr, NdpRepr) {
        match frame::parse(frame).unwrap() {
            (eth, Packet::Ndp { ip, ndp }) => (eth, ip, ndp),
            other => panic!("expected NDP, got {other:?}"),
        }
    }

    #[test]
    fn arp_request_for_an_owned_ip_gets_a_unicast_reply_from_our_mac() {
        assert_eq!(reply(answer(&ARP_REQUEST)), ARP_REPLY);
    }

    #[test]
    fn arp_request_unicast_to_our_mac_is_answered() {
        let mut frame = ARP_REQUEST;
        frame[..6].copy_from_slice(&OUR_MAC.0);
        assert_eq!(reply(answer(&frame)), ARP_REPLY);
    }

    #[test]
    fn arp_request_without_padding_is_answered() {
        assert_eq!(reply(answer(&ARP_REQUEST[..42])), ARP_REPLY);
    }

    #[test]
    fn arp_probe_for_an_owned_ip_is_defended() {
        let probe = ArpRepr::probe(THEIR_MAC, OUR_V4);
        let frame = arp_frame(THEIR_MAC, Mac::BROADCAST, &probe);
        let expected = arp_frame(
            OUR_MAC,
            THEIR_MAC,
            &ArpRepr {
                operation: ArpOperation::Reply,
                sender_mac: OUR_MAC,
                sender_ip: OUR_V4,
                target_mac: THEIR_MAC,
                target_ip: Ipv4Addr::UNSPECIFIED,
            },
        );
        assert_eq!(reply(answer(&frame)), expected);
    }

    #[test]
    fn arp_request_for_an_ip_we_do_not_own_is_ignored() {
        let mut frame = ARP_REQUEST;
        frame[41] = 11;
        assert_eq!(
            answer(&frame),
            Verdict::Ignore(Ignored::TargetNotOwned {
                target: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))
            })
        );
    }

    #[test]
    fn nothing_is_answered_when_nothing_is_owned() {
        let empty = Owned {
            v4: BTreeSet::new(),
            v6: BTreeSet::new(),
        };
        assert!(matches!(
            empty.responder().answer(&ARP_REQUEST),
            Verdict::Ignore(Ignored::TargetNotOwned { .. })
        ));
        assert!(matches!(
            empty.responder().answer(&NS),
            Verdict::Ignore(Ignored::TargetNotOwned { .. })
        ));
    }

    #[test]
    fn gratuitous_arp_from_others_is_ignored() {
        for arp in [
            ArpRepr::gratuitous_request(THEIR_MAC, OUR_V4),
            ArpRepr::gratuitous_request(THEIR_MAC, THEIR_V4),
        ] {
            let frame = arp_frame(THEIR_MAC, Mac::BROADCAST, &arp);
            assert_eq!(answer(&frame), Verdict::Ignore(Ignored::ArpAnnouncement));
        }
    }

    #[test]
    fn arp_replies_are_ignored() {
        let frame = arp_frame(
            THEIR_MAC,
            Mac::BROADCAST,
            &ArpRepr::gratuitous_reply(THEIR_MAC, OUR_V4),
        );
        assert_eq!(answer(&frame), Verdict::Ignore(Ignored::ArpReply));
    }

    #[test]
    fn our_own_frames_are_ignored() {
        let probe = ArpRepr::probe(OUR_MAC, OUR_V4);
        let frame = arp_frame(OUR_MAC, Mac::BROADCAST, &probe);
        assert_eq!(answer(&frame), Verdict::Ignore(Ignored::FromOurselves));
        // Our MAC as ARP sender behind another Ethernet source.
        let frame = arp_frame(THEIR_MAC, Mac::BROADCAST, &probe);
        assert_eq!(answer(&frame), Verdict::Ignore(Ignored::FromOurselves));
        // Our MAC as NS source link-layer address.
        let ns = NeighborSolicit {
            target: our_v6(),
            source_mac: Some(OUR_MAC),
        };
        let frame = ns_frame(
            THEIR_MAC,
            Mac::ipv6_multicast(solicited_node(our_v6())),
            their_v6(),
            solicited_node(our_v6()),
            ns,
        );
        assert_eq!(answer(&frame), Verdict::Ignore(Ignored::FromOurselves));
    }

    #[test]
    fn frames_unicast_to_another_station_are_ignored() {
        let mut frame = ARP_REQUEST;
        frame[..6].copy_from_slice(&OTHER_MAC.0);
        assert_eq!(
            answer(&frame),
            Verdict::Ignore(Ignored::NotAddressedToUs { dst: OTHER_MAC })
        );
    }

    #[test]
    fn a_multicast_ethernet_source_is_malformed() {
        let mut frame = ARP_REQUEST;
        frame[6] = 0x01;
        assert!(matches!(
            answer(&frame),
            Verdict::Malformed(Malformed::MulticastSource { .. })
        ));
    }

    #[test]
    fn a_multicast_arp_sender_is_malformed() {
        let mut frame = ARP_REQUEST;
        frame[22..28].copy_from_slice(&Mac::BROADCAST.0);
        assert_eq!(
            answer(&frame),
            Verdict::Malformed(Malformed::MulticastSource {
                mac: Mac::BROADCAST
            })
        );
    }

    #[test]
    fn a_multicast_ns_source_link_layer_address_is_malformed() {
        let ns = NeighborSolicit {
            target: our_v6(),
            source_mac: Some(Mac::BROADCAST),
        };
        let frame = ns_frame(
            THEIR_MAC,
            Mac::ipv6_multicast(solicited_node(our_v6())),
            their_v6(),
            solicited_node(our_v6()),
            ns,
        );
        assert_eq!(
            answer(&frame),
            Verdict::Malformed(Malformed::MulticastSource {
                mac: Mac::BROADCAST
            })
        );
    }

    #[test]
    fn vlan_tagged_frames_are_ignored() {
        let mut frame = ARP_REQUEST.to_vec();
        frame.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
        assert_eq!(answer(&frame), Verdict::Ignore(Ignored::VlanTagged));
    }

    #[test]
    fn ipv4_frames_are_ignored() {
        let mut frame = ARP_REQUEST;
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            answer(&frame),
            Verdict::Ignore(Ignored::UnhandledEthertype { ethertype: 0x0800 })
        );
    }

    #[test]
    fn a_bad_arp_header_is_malformed() {
        let mut frame = ARP_REQUEST;
        frame[15] = 6;
        assert_eq!(
            answer(&frame),
            Verdict::Malformed(Malformed::Arp(arp::Error::UnsupportedHardware { htype: 6 }))
        );
    }

    #[test]
    fn solicitation_for_an_owned_ip_gets_a_solicited_override_advertisement() {
        assert_eq!(reply(answer(&NS)), NA);
    }

    #[test]
    fn the_advertisement_parses_back_with_the_promised_fields() {
        let (eth, ip, ndp) = parse_ndp(&reply(answer(&NS)));
        assert_eq!(eth.src, OUR_MAC);
        assert_eq!(eth.dst, THEIR_MAC);
        assert_eq!(ip.src_addr, our_v6());
        assert_eq!(ip.dst_addr, their_v6());
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(
            ndp,
            NdpRepr::Advert(NeighborAdvert {
                flags: NaFlags::SOLICITED | NaFlags::OVERRIDE,
                target: our_v6(),
                target_mac: Some(OUR_MAC),
            })
        );
    }

    #[test]
    fn the_source_link_layer_option_wins_over_the_ethernet_source() {
        // A solicitation relayed by a bridge that rewrote the Ethernet source.
        let ns = NeighborSolicit {
            target: our_v6(),
            source_mac: Some(THEIR_MAC),
        };
        let frame = ns_frame(
            OTHER_MAC,
            Mac::ipv6_multicast(solicited_node(our_v6())),
            their_v6(),
            solicited_node(our_v6()),
            ns,
        );
        let (eth, ip, _) = parse_ndp(&reply(answer(&frame)));
        assert_eq!(eth.dst, THEIR_MAC);
        assert_eq!(ip.dst_addr, their_v6());
    }

    #[test]
    fn unicast_probe_without_source_option_is_answered_to_the_ethernet_source() {
        let ns = NeighborSolicit {
            target: our_v6(),
            source_mac: None,
        };
        let frame = ns_frame(THEIR_MAC, OUR_MAC, their_v6(), our_v6(), ns);
        let (eth, ip, ndp) = parse_ndp(&reply(answer(&frame)));
        assert_eq!(eth.dst, THEIR_MAC);
        assert_eq!(ip.dst_addr, their_v6());
        assert_eq!(ip.src_addr, our_v6());
        assert!(
            matches!(ndp, NdpRepr::Advert(na) if na.flags == NaFlags::SOLICITED | NaFlags::OVERRIDE)
        );
    }

    #[test]
    fn dad_solicitation_is_answered_to_all_nodes_without_the_solicited_flag() {
        let ns = NeighborSolicit {
            target: our_v6(),
            source_mac: None,
        };
        let dst = solicited_node(our_v6());
        let frame = ns_frame(
            THEIR_MAC,
            Mac::ipv6_multicast(dst),
            Ipv6Addr::UNSPECIFIED,
            dst,
            ns,
        );
        let (eth, ip, ndp) = parse_ndp(&reply(answer(&frame)));
        assert_eq!(eth.dst, Mac([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(eth.src, OUR_MAC);
        assert_eq!(ip.dst_addr, ALL_NODES);
        assert_eq!(ip.src_addr, our_v6());
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(
            ndp,
            NdpRepr::Advert(NeighborAdvert {
                flags: NaFlags::OVERRIDE,
                target: our_v6(),
                target_mac: Some(OUR_MAC),
            })
        );
    }

    #[test]
    fn solicitation_for_an_ip_we_do_not_own_is_ignored() {
        let other: Ipv6Addr = "2001:db8::11".parse().unwrap();
        let ns = NeighborSolicit {
            target: other,
            source_mac: Some(THEIR_MAC),
        };
        let frame = ns_frame(
            THEIR_MAC,
            Mac::ipv6_multicast(solicited_node(other)),
            their_v6(),
            solicited_node(other),
            ns,
        );
        assert_eq!(
            answer(&frame),
            Verdict::Ignore(Ignored::TargetNotOwned {
                target: IpAddr::V6(other)
            })
        );
    }

    #[test]
    fn a_corrupted_ns_checksum_is_malformed() {
        let mut frame = NS;
        frame[57] ^= 0xff;
        assert!(matches!(
            answer(&frame),
            Verdict::Malformed(Malformed::Ndp(ndp::Error::BadChecksum { .. }))
        ));
    }

    #[test]
    fn a_forwarded_ns_with_hop_limit_below_255_is_malformed() {
        let mut frame = NS;
        frame[21] = 254;
        assert_eq!(
            answer(&frame),
            Verdict::Malformed(Malformed::Ndp(ndp::Error::BadHopLimit { hop_limit: 254 }))
        );
    }

    #[test]
    fn neighbor_advertisements_are_ignored() {
        let na = NdpRepr::Advert(NeighborAdvert {
            flags: NaFlags::OVERRIDE,
            target: our_v6(),
            target_mac: Some(THEIR_MAC),
        });
        let frame = frame::ndp_frame(
            THEIR_MAC,
            Mac::ipv6_multicast(ALL_NODES),
            their_v6(),
            ALL_NODES,
            &na,
        );
        assert_eq!(
            answer(&frame),
            Verdict::Ignore(Ignored::NeighborAdvertisement)
        );
    }

    #[test]
    fn other_icmpv6_is_ignored() {
        let mut frame = NS;
        frame[54] = 128; // echo request
        assert_eq!(
            answer(&frame),
            Verdict::Ignore(Ignored::NotNeighborDiscovery { msg_type: 128 })
        );
    }

    #[test]
    fn ipv6_with_extension_headers_is_ignored() {
        let mut frame = NS;
        frame[20] = 0; // hop-by-hop options
        assert_eq!(
            answer(&frame),
            Verdict::Ignore(Ignored::NotIcmpv6 { next_header: 0 })
        );
    }

    #[test]
    fn an_ipv6_payload_too_short_for_icmpv6_is_malformed() {
        let mut frame = NS[..56].to_vec();
        frame[18..20].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(
            answer(&frame),
            Verdict::Malformed(Malformed::Icmpv6Truncated { len: 2 })
        );
    }

    #[test]
    fn a_bad_ip_version_is_malformed() {
        let mut frame = NS;
        frame[14] = 0x40;
        assert_eq!(
            answer(&frame),
            Verdict::Malformed(Malformed::Ipv6BadVersion { version: 4 })
        );
    }

    #[test]
    fn every_truncation_of_valid_frames_is_malformed_never_a_panic() {
        for valid in [&ARP_REQUEST[..42], &NS[..]] {
            for len in 0..valid.len() {
                assert!(
                    matches!(answer(&valid[..len]), Verdict::Malformed(_)),
                    "length {len}"
                );
            }
        }
    }

    #[test]
    fn labels_name_the_reason() {
        assert_eq!(Ignored::ArpReply.metric_label(), "arp_reply");
        assert_eq!(
            Malformed::Ndp(ndp::Error::BadChecksum {
                found: 0,
                expected: 1
            })
            .metric_label(),
            "ndp_bad_checksum"
        );
        assert_eq!(
            Malformed::EthernetTruncated { len: 3 }.to_string(),
            "Ethernet frame of 3 bytes is shorter than the 14-byte header"
        );
    }

    #[test]
    fn into_reply_returns_only_replies() {
        assert!(answer(&ARP_REQUEST).into_reply().is_some());
        assert_eq!(answer(&[]).into_reply(), None);
    }
}
