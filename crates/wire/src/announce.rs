//! Frames a speaker sends on its own initiative, and the check that tells it another host
//! claims one of its addresses.
//!
//! - When a node gains an address it announces it so that neighbours (and switches) move
//!   their caches at once instead of waiting for entries to expire: [`gratuitous_arp`] for
//!   IPv4, [`unsolicited_na`] for IPv6.
//! - Before or while holding an address it can look for someone else using it:
//!   [`arp_probe`] and [`dad_ns`] ask without claiming, and [`conflict_from`] reads the frames
//!   that come back (or any other frame) for a different MAC claiming the address.
//!
//! Every builder returns a whole Ethernet frame (without FCS), padded to the 60-byte minimum.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::arp::ArpRepr;
use crate::frame::{self, Packet};
use crate::mac::Mac;
use crate::ndp::{ALL_NODES, NaFlags, NdpRepr, NeighborAdvert, NeighborSolicit, solicited_node};

/// The two gratuitous ARP frames announcing that `ip` is at `mac`, both broadcast: first an
/// [RFC 5227 section 2.3] announcement (a request), then a gratuitous reply ([RFC 5944 section
/// 4.6]), because some hosts update their caches from only one of the two.
///
/// [RFC 5227 section 2.3]: https://www.rfc-editor.org/rfc/rfc5227#section-2.3
/// [RFC 5944 section 4.6]: https://www.rfc-editor.org/rfc/rfc5944#section-4.6
pub fn gratuitous_arp(mac: Mac, ip: Ipv4Addr) -> [Vec<u8>; 2] {
    [
        frame::arp_frame(mac, Mac::BROADCAST, &ArpRepr::gratuitous_request(mac, ip)),
        frame::arp_frame(mac, Mac::BROADCAST, &ArpRepr::gratuitous_reply(mac, ip)),
    ]
}

/// An unsolicited Neighbor Advertisement ([RFC 4861 section 7.2.6]) that `ip` is at `mac`:
/// from `ip` to all-nodes `ff02::1` (MAC `33:33:00:00:00:01`), Override set so that caches
/// replace the old owner's MAC, Solicited clear, with a Target Link-Layer Address option.
///
/// [RFC 4861 section 7.2.6]: https://www.rfc-editor.org/rfc/rfc4861#section-7.2.6
pub fn unsolicited_na(mac: Mac, ip: Ipv6Addr) -> Vec<u8> {
    let na = NdpRepr::Advert(NeighborAdvert {
        flags: NaFlags::OVERRIDE,
        target: ip,
        target_mac: Some(mac),
    });
    frame::ndp_frame(mac, Mac::ipv6_multicast(ALL_NODES), ip, ALL_NODES, &na)
}

/// An [RFC 5227 section 2.1.1] ARP probe for `ip`, broadcast: asks who has `ip` without
/// putting `ip` in anyone's cache (sender IP `0.0.0.0`).
///
/// [RFC 5227 section 2.1.1]: https://www.rfc-editor.org/rfc/rfc5227#section-2.1.1
pub fn arp_probe(mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    frame::arp_frame(mac, Mac::BROADCAST, &ArpRepr::probe(mac, ip))
}

/// A Duplicate Address Detection Neighbor Solicitation for `ip` ([RFC 4862 section 5.4.2],
/// [RFC 4861 section 4.3]): from `::` to the solicited-node address of `ip` (and its
/// `33:33:ff..` MAC), without a Source Link-Layer Address option, which RFC 4861 forbids when
/// the source is unspecified.
///
/// [RFC 4862 section 5.4.2]: https://www.rfc-editor.org/rfc/rfc4862#section-5.4.2
/// [RFC 4861 section 4.3]: https://www.rfc-editor.org/rfc/rfc4861#section-4.3
pub fn dad_ns(mac: Mac, ip: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(ip);
    let ns = NdpRepr::Solicit(NeighborSolicit {
        target: ip,
        source_mac: None,
    });
    frame::ndp_frame(
        mac,
        Mac::ipv6_multicast(dst),
        Ipv6Addr::UNSPECIFIED,
        dst,
        &ns,
    )
}

/// Whether `frame` is an address probe: an ARP request from `0.0.0.0` ([`arp_probe`]) or a
/// duplicate-address Neighbor Solicitation from `::` ([`dad_ns`]). Malformed frames are not.
pub fn is_address_probe(frame: &[u8]) -> bool {
    match frame::parse(frame) {
        Ok((_, Packet::Arp(arp))) => arp.is_probe(),
        Ok((
            _,
            Packet::Ndp {
                ip,
                ndp: NdpRepr::Solicit(_),
            },
        )) => ip.src_addr.is_unspecified(),
        _ => false,
    }
}

/// The MAC of another host claiming `ip`, if `frame` is such a claim (see [`claim_in`]).
pub fn conflict_from(frame: &[u8], ip: IpAddr, our_mac: Mac) -> Option<Mac> {
    claim_in(frame)
        .filter(|(claimed, mac)| *claimed == ip && *mac != our_mac)
        .map(|(_, mac)| mac)
}

/// The address `frame` claims and the MAC claiming it, if it is a claim:
///
/// - an ARP request or reply: its sender IP and sender MAC (including gratuitous ARP and
///   answers to [`arp_probe`]; a probe, from `0.0.0.0`, claims nothing);
/// - a valid Neighbor Advertisement: its target and its Target Link-Layer Address option (or,
///   without one, Ethernet source) (including answers to [`dad_ns`]).
///
/// Anything else, including every malformed, truncated or VLAN-tagged frame, is `None`.
pub fn claim_in(frame: &[u8]) -> Option<(IpAddr, Mac)> {
    let (eth, packet) = frame::parse(frame).ok()?;
    match packet {
        Packet::Arp(arp) if !arp.sender_ip.is_unspecified() => {
            Some((IpAddr::V4(arp.sender_ip), arp.sender_mac))
        }
        Packet::Ndp {
            ndp: NdpRepr::Advert(na),
            ..
        } => Some((IpAddr::V6(na.target), na.target_mac.unwrap_or(eth.src))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::answer::{Responder, Verdict};
    use crate::arp::ArpOperation;
    use crate::reason::Ignored;
    use std::collections::BTreeSet;

    const OUR_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const OUR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    fn our_v6() -> Ipv6Addr {
        "2001:db8::10".parse().unwrap()
    }

    #[test]
    fn probes_are_told_from_questions() {
        assert!(is_address_probe(&arp_probe(OUR_MAC, OUR_V4)));
        assert!(is_address_probe(&dad_ns(OUR_MAC, our_v6())));
        for frame in gratuitous_arp(OUR_MAC, OUR_V4) {
            assert!(!is_address_probe(&frame));
        }
        assert!(!is_address_probe(&unsolicited_na(OUR_MAC, our_v6())));
        assert!(!is_address_probe(&[0u8; 10]));
    }

    #[test]
    fn gratuitous_arp_is_a_broadcast_request_then_a_broadcast_reply() {
        #[rustfmt::skip]
        let request: [u8; 60] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source: us
            0x08, 0x06,                         // EtherType: ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, 6, 4
            0x00, 0x01,                         // request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: us
            0xc0, 0x00, 0x02, 0x0a,             // sender IP 192.0.2.10
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: zero (RFC 5227)
            0xc0, 0x00, 0x02, 0x0a,             // target IP 192.0.2.10
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // padding
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let mut reply = request;
        reply[21] = 0x02; // reply
        reply[32..38].copy_from_slice(&OUR_MAC.0); // target MAC: us (RFC 5944)
        assert_eq!(
            gratuitous_arp(OUR_MAC, OUR_V4),
            [request.to_vec(), reply.to_vec()]
        );
    }

    #[test]
    fn unsolicited_na_goes_to_all_nodes_with_override_and_our_mac() {
        #[rustfmt::skip]
        let expected: [u8; 86] = [
            0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // destination: MAC of ff02::1
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source: us
            0x86, 0xdd,                         // EtherType: IPv6
            0x60, 0x00, 0x00, 0x00,             // version 6
            0x00, 0x20, 0x3a, 0xff,             // payload 32, ICMPv6, hop limit 255
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // source 2001:db8::10
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
            0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // destination ff02::1
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
            0x88, 0x00, 0xf9, 0x0c,             // NA, code 0, checksum (computed independently)
            0x20, 0x00, 0x00, 0x00,             // flags: Override only
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
            0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // target link-layer address: us
        ];
        assert_eq!(unsolicited_na(OUR_MAC, our_v6()), expected);
    }

    #[test]
    fn arp_probe_is_a_broadcast_request_from_the_unspecified_address() {
        let frame = arp_probe(OUR_MAC, OUR_V4);
        assert_eq!(frame.len(), 60);
        assert_eq!(frame[..6], Mac::BROADCAST.0);
        assert_eq!(frame[6..12], OUR_MAC.0);
        let arp = match frame::parse(&frame).unwrap() {
            (_, Packet::Arp(arp)) => arp,
            other => panic!("expected ARP, got {other:?}"),
        };
        assert_eq!(arp, ArpRepr::probe(OUR_MAC, OUR_V4));
        assert_eq!(arp.operation, ArpOperation::Request);
    }

    #[test]
    fn dad_ns_goes_from_unspecified_to_the_solicited_node_address() {
        #[rustfmt::skip]
        let expected: [u8; 78] = [
            0x33, 0x33, 0xff, 0x00, 0x00, 0x10, // destination: MAC of ff02::1:ff00:10
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source: us
            0x86, 0xdd,                         // EtherType: IPv6
            0x60, 0x00, 0x00, 0x00,             // version 6
            0x00, 0x18, 0x3a, 0xff,             // payload 24, ICMPv6, hop limit 255
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // source ::
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // destination ff02::1:ff00:10
            0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x10,
            0x87, 0x00, 0x4c, 0xcf,             // NS, code 0, checksum (computed independently)
            0x00, 0x00, 0x00, 0x00,             // reserved
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        ];
        assert_eq!(dad_ns(OUR_MAC, our_v6()), expected);
    }

    #[test]
    fn a_defender_answers_our_probes_and_we_see_the_conflict() {
        let v4: BTreeSet<Ipv4Addr> = [OUR_V4].into();
        let v6: BTreeSet<Ipv6Addr> = [our_v6()].into();
        let other = Responder {
            mac: THEIR_MAC,
            owned_v4: &v4,
            owned_v6: &v6,
        };
        let defence = other
            .answer(&arp_probe(OUR_MAC, OUR_V4))
            .into_reply()
            .unwrap();
        assert_eq!(
            conflict_from(&defence, OUR_V4.into(), OUR_MAC),
            Some(THEIR_MAC)
        );
        let defence = other
            .answer(&dad_ns(OUR_MAC, our_v6()))
            .into_reply()
            .unwrap();
        assert_eq!(
            conflict_from(&defence, our_v6().into(), OUR_MAC),
            Some(THEIR_MAC)
        );
    }

    #[test]
    fn our_own_announcements_are_no_conflict() {
        for frame in gratuitous_arp(OUR_MAC, OUR_V4) {
            assert_eq!(conflict_from(&frame, OUR_V4.into(), OUR_MAC), None);
        }
        assert_eq!(
            conflict_from(&unsolicited_na(OUR_MAC, our_v6()), our_v6().into(), OUR_MAC),
            None
        );
    }

    #[test]
    fn another_hosts_gratuitous_arp_or_na_is_a_conflict() {
        for frame in gratuitous_arp(THEIR_MAC, OUR_V4) {
            assert_eq!(
                conflict_from(&frame, OUR_V4.into(), OUR_MAC),
                Some(THEIR_MAC)
            );
        }
        assert_eq!(
            conflict_from(
                &unsolicited_na(THEIR_MAC, our_v6()),
                our_v6().into(),
                OUR_MAC
            ),
            Some(THEIR_MAC)
        );
    }

    #[test]
    fn an_ordinary_arp_request_from_the_ip_is_a_conflict() {
        let request = ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: THEIR_MAC,
            sender_ip: OUR_V4,
            target_mac: Mac::ZERO,
            target_ip: Ipv4Addr::new(192, 0, 2, 1),
        };
        let frame = frame::arp_frame(THEIR_MAC, Mac::BROADCAST, &request);
        assert_eq!(
            conflict_from(&frame, OUR_V4.into(), OUR_MAC),
            Some(THEIR_MAC)
        );
    }

    #[test]
    fn frames_about_other_addresses_or_families_are_no_conflict() {
        let frame = &gratuitous_arp(THEIR_MAC, Ipv4Addr::new(192, 0, 2, 11))[0];
        assert_eq!(conflict_from(frame, OUR_V4.into(), OUR_MAC), None);
        assert_eq!(conflict_from(frame, our_v6().into(), OUR_MAC), None);
        let na = unsolicited_na(THEIR_MAC, our_v6());
        assert_eq!(conflict_from(&na, OUR_V4.into(), OUR_MAC), None);
        let other: Ipv6Addr = "2001:db8::11".parse().unwrap();
        assert_eq!(conflict_from(&na, other.into(), OUR_MAC), None);
    }

    #[test]
    fn a_claim_names_its_address_and_mac_and_a_probe_claims_nothing() {
        for frame in gratuitous_arp(THEIR_MAC, OUR_V4) {
            assert_eq!(claim_in(&frame), Some((OUR_V4.into(), THEIR_MAC)));
        }
        assert_eq!(
            claim_in(&unsolicited_na(THEIR_MAC, our_v6())),
            Some((our_v6().into(), THEIR_MAC))
        );
        assert_eq!(claim_in(&arp_probe(THEIR_MAC, OUR_V4)), None);
        assert_eq!(claim_in(&dad_ns(THEIR_MAC, our_v6())), None);
        assert_eq!(claim_in(&[0u8; 20]), None);
    }

    #[test]
    fn someone_elses_probe_is_no_conflict() {
        // Their sender IP is 0.0.0.0: they ask, they do not claim.
        let probe = arp_probe(THEIR_MAC, OUR_V4);
        assert_eq!(conflict_from(&probe, OUR_V4.into(), OUR_MAC), None);
        let dad = dad_ns(THEIR_MAC, our_v6());
        assert_eq!(conflict_from(&dad, our_v6().into(), OUR_MAC), None);
    }

    #[test]
    fn an_na_without_target_option_is_attributed_to_its_ethernet_source() {
        let na = NdpRepr::Advert(NeighborAdvert {
            flags: NaFlags::OVERRIDE,
            target: our_v6(),
            target_mac: None,
        });
        let frame = frame::ndp_frame(
            THEIR_MAC,
            Mac::ipv6_multicast(ALL_NODES),
            our_v6(),
            ALL_NODES,
            &na,
        );
        assert_eq!(
            conflict_from(&frame, our_v6().into(), OUR_MAC),
            Some(THEIR_MAC)
        );
    }

    #[test]
    fn a_corrupted_na_is_no_conflict() {
        let mut frame = unsolicited_na(THEIR_MAC, our_v6());
        frame[56] ^= 0x01; // checksum
        assert_eq!(conflict_from(&frame, our_v6().into(), OUR_MAC), None);
    }

    #[test]
    fn truncated_claims_are_no_conflict() {
        let claims = [
            gratuitous_arp(THEIR_MAC, OUR_V4)[0].clone(),
            unsolicited_na(THEIR_MAC, our_v6()),
        ];
        for (claim, ip) in claims.iter().zip([IpAddr::V4(OUR_V4), our_v6().into()]) {
            // 42 bytes is the unpadded ARP frame, still a whole claim.
            let whole = if ip.is_ipv4() { 42 } else { claim.len() };
            for len in 0..whole {
                assert_eq!(
                    conflict_from(&claim[..len], ip, OUR_MAC),
                    None,
                    "length {len}"
                );
            }
            assert_eq!(conflict_from(&claim[..whole], ip, OUR_MAC), Some(THEIR_MAC));
        }
    }

    #[test]
    fn we_do_not_answer_our_own_announcements() {
        let v4: BTreeSet<Ipv4Addr> = [OUR_V4].into();
        let v6: BTreeSet<Ipv6Addr> = [our_v6()].into();
        let us = Responder {
            mac: OUR_MAC,
            owned_v4: &v4,
            owned_v6: &v6,
        };
        let mut frames = gratuitous_arp(OUR_MAC, OUR_V4).to_vec();
        frames.push(unsolicited_na(OUR_MAC, our_v6()));
        frames.push(arp_probe(OUR_MAC, OUR_V4));
        frames.push(dad_ns(OUR_MAC, our_v6()));
        for frame in frames {
            assert_eq!(us.answer(&frame), Verdict::Ignore(Ignored::FromOurselves));
        }
    }
}
