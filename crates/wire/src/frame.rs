//! Whole Ethernet frames: the layering shared by [`crate::answer`] and [`crate::announce`].
//! Disassembly peels Ethernet, then ARP or IPv6 + ICMPv6 + NDP, sorting every refusal into
//! "not for us" ([`Ignored`]) or "broken" ([`Malformed`]); assembly stacks the reprs into one
//! buffer.

use std::net::Ipv6Addr;

use crate::answer::{Ignored, Malformed};
use crate::arp::{ArpPacket, ArpRepr};
use crate::ethernet::{self, EtherType, EthernetFrame, EthernetRepr, MIN_FRAME_LEN, Mac};
use crate::icmpv6::{self, Icmpv6Packet};
use crate::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::ndp::{HOP_LIMIT, NdpRepr, NeighborPacket};

/// Why a frame went no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    Ignore(Ignored),
    Malformed(Malformed),
}

/// The packet inside a frame, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet {
    Arp(ArpRepr),
    Ndp { ip: Ipv6Repr, ndp: NdpRepr },
}

/// Reads the Ethernet header and returns it with the payload.
pub(crate) fn parse_ethernet(frame: &[u8]) -> Result<(EthernetRepr, &[u8]), Rejected> {
    let frame = EthernetFrame::new_checked(frame)
        .map_err(|e| Rejected::Malformed(Malformed::Ethernet(e)))?;
    match EthernetRepr::parse(&frame) {
        Ok(eth) => Ok((
            eth,
            frame
                .into_inner()
                .get(ethernet::HEADER_LEN..)
                .unwrap_or_default(),
        )),
        Err(ethernet::Error::VlanTagged { .. }) => Err(Rejected::Ignore(Ignored::VlanTagged)),
        Err(e) => Err(Rejected::Malformed(Malformed::Ethernet(e))),
    }
}

/// Reads the ARP or NDP packet in an Ethernet payload. ICMPv6 messages other than NS and NA
/// are ignored before their checksum is looked at.
pub(crate) fn parse_payload(ethertype: EtherType, payload: &[u8]) -> Result<Packet, Rejected> {
    match ethertype {
        EtherType::ARP => {
            let arp = ArpPacket::new_checked(payload)
                .and_then(|packet| ArpRepr::parse(&packet))
                .map_err(|e| Rejected::Malformed(Malformed::Arp(e)))?;
            Ok(Packet::Arp(arp))
        }
        EtherType::IPV6 => {
            let packet = Ipv6Packet::new_checked(payload)
                .map_err(|e| Rejected::Malformed(Malformed::Ipv6(e)))?;
            let ip = match Ipv6Repr::parse(&packet) {
                Ok(ip) => ip,
                Err(ipv6::Error::NotIcmpv6 { next_header }) => {
                    return Err(Rejected::Ignore(Ignored::NotIcmpv6 { next_header }));
                }
                Err(e) => return Err(Rejected::Malformed(Malformed::Ipv6(e))),
            };
            let message = packet
                .into_inner()
                .get(ipv6::HEADER_LEN..)
                .unwrap_or_default();
            let message = message
                .get(..usize::from(ip.payload_len))
                .unwrap_or_default();
            let icmp = Icmpv6Packet::new_checked(message)
                .map_err(|e| Rejected::Malformed(Malformed::Icmpv6(e)))?;
            let msg_type = icmp.msg_type();
            if msg_type != icmpv6::NEIGHBOR_SOLICITATION
                && msg_type != icmpv6::NEIGHBOR_ADVERTISEMENT
            {
                return Err(Rejected::Ignore(Ignored::NotNeighborDiscovery { msg_type }));
            }
            let ndp = NeighborPacket::new_checked(icmp.into_inner())
                .and_then(|packet| NdpRepr::parse(&ip, &packet))
                .map_err(|e| Rejected::Malformed(Malformed::Ndp(e)))?;
            Ok(Packet::Ndp { ip, ndp })
        }
        ethertype => Err(Rejected::Ignore(Ignored::UnhandledEthertype { ethertype })),
    }
}

/// A zeroed buffer for a frame of `len` bytes, padded to the Ethernet minimum.
fn frame_buffer(len: usize) -> Vec<u8> {
    vec![0; len.max(MIN_FRAME_LEN)]
}

/// An Ethernet frame carrying `arp`, padded to [`MIN_FRAME_LEN`].
pub fn arp_frame(src: Mac, dst: Mac, arp: &ArpRepr) -> Vec<u8> {
    let eth = EthernetRepr {
        src,
        dst,
        ethertype: EtherType::ARP,
    };
    let mut buffer = frame_buffer(eth.buffer_len() + arp.buffer_len());
    let mut frame = EthernetFrame::new_unchecked(&mut buffer[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buffer
}

/// An Ethernet frame carrying `ndp` in an IPv6 packet from `src_ip` to `dst_ip` with hop
/// limit 255 and a correct checksum.
pub fn ndp_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    ndp: &NdpRepr,
) -> Vec<u8> {
    let eth = EthernetRepr {
        src: src_mac,
        dst: dst_mac,
        ethertype: EtherType::IPV6,
    };
    let message_len = ndp.buffer_len();
    let ip = Ipv6Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        // At most 32 bytes: the header and one link-layer option.
        payload_len: message_len as u16,
        hop_limit: HOP_LIMIT,
    };
    let mut buffer = frame_buffer(eth.buffer_len() + ip.buffer_len() + message_len);
    let mut frame = EthernetFrame::new_unchecked(&mut buffer[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet);
    ndp.emit(
        src_ip,
        dst_ip,
        &mut NeighborPacket::new_unchecked(packet.payload_mut()),
    );
    buffer
}
