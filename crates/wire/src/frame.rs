//! Whole Ethernet frames: the layering shared by [`crate::answer`] and [`crate::announce`].
//! Disassembly peels Ethernet, then ARP or IPv6 + ICMPv6 + NDP, sorting every refusal into
//! "not for us" ([`Ignored`]) or "broken" ([`Malformed`]); assembly stacks the reprs into one
//! buffer. smoltcp's Ethernet and IPv6 views read and write the headers.
//!
//! A received frame comes from an `AF_PACKET` socket without the trailing FCS and may carry
//! padding after its payload (the IEEE 802.3 minimum is 60 bytes without FCS); the layers
//! above use their own length fields and ignore it.

use std::net::Ipv6Addr;

use smoltcp::wire::{
    ETHERNET_HEADER_LEN, EthernetFrame, EthernetProtocol, EthernetRepr, IPV6_HEADER_LEN,
    IpProtocol, Ipv6Packet, Ipv6Repr,
};

use crate::arp::{self, ArpRepr};
use crate::mac::Mac;
use crate::ndp::{self, HOP_LIMIT, NdpRepr};
use crate::reason::{Ignored, Malformed};

/// The IEEE 802.3 minimum frame length without the 4-byte FCS. Frames built here are
/// zero-padded to it: the kernel hands `AF_PACKET` frames to the driver as they are, and not
/// every driver pads short ones.
pub const MIN_FRAME_LEN: usize = 60;

/// EtherTypes of 802.1Q, 802.1ad and the pre-standard QinQ tag some switches still send.
const VLAN_TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// Why a frame went no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    Ignore(Ignored),
    Malformed(Malformed),
}

impl<E: Into<Malformed>> From<E> for Rejected {
    fn from(e: E) -> Self {
        Rejected::Malformed(e.into())
    }
}

/// The Ethernet header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub src: Mac,
    pub dst: Mac,
}

/// The packet inside a frame, parsed and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet {
    Arp(ArpRepr),
    Ndp { ip: Ipv6Repr, ndp: NdpRepr },
}

/// Reads a whole frame: its Ethernet addresses and the ARP or NDP packet it carries.
pub(crate) fn parse(frame: &[u8]) -> Result<(Link, Packet), Rejected> {
    let len = frame.len();
    let frame =
        EthernetFrame::new_checked(frame).map_err(|_| Malformed::EthernetTruncated { len })?;
    let link = Link {
        src: frame.src_addr().into(),
        dst: frame.dst_addr().into(),
    };
    let packet = match frame.ethertype() {
        EthernetProtocol::Arp => Packet::Arp(ArpRepr::parse(frame.payload())?),
        EthernetProtocol::Ipv6 => parse_ipv6(frame.payload())?,
        other => {
            let ethertype = u16::from(other);
            return Err(Rejected::Ignore(if VLAN_TAGS.contains(&ethertype) {
                Ignored::VlanTagged
            } else {
                Ignored::UnhandledEthertype { ethertype }
            }));
        }
    };
    Ok((link, packet))
}

/// Reads the NDP message in an IPv6 packet. ICMPv6 messages other than NS and NA are
/// ignored before their checksum is looked at.
fn parse_ipv6(payload: &[u8]) -> Result<Packet, Rejected> {
    let len = payload.len();
    let packet = Ipv6Packet::new_checked(payload).map_err(|_| {
        // smoltcp's check does not say which length failed.
        let need = if len < IPV6_HEADER_LEN {
            IPV6_HEADER_LEN
        } else {
            IPV6_HEADER_LEN + usize::from(Ipv6Packet::new_unchecked(payload).payload_len())
        };
        Malformed::Ipv6Truncated { len, need }
    })?;
    let version = packet.version();
    if version != 6 {
        return Err(Malformed::Ipv6BadVersion { version }.into());
    }
    let next_header = u8::from(packet.next_header());
    if next_header != u8::from(IpProtocol::Icmpv6) {
        return Err(Rejected::Ignore(Ignored::NotIcmpv6 { next_header }));
    }
    let src = packet.src_addr();
    if src.is_multicast() {
        return Err(Malformed::Ipv6MulticastSource { src }.into());
    }
    // Exactly the declared payload, without Ethernet padding: the checksum covers all of it.
    let message = packet.payload();
    let [msg_type, _, _, _, ..] = *message else {
        return Err(Malformed::Icmpv6Truncated { len: message.len() }.into());
    };
    if msg_type != ndp::NEIGHBOR_SOLICITATION && msg_type != ndp::NEIGHBOR_ADVERTISEMENT {
        return Err(Rejected::Ignore(Ignored::NotNeighborDiscovery { msg_type }));
    }
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: packet.dst_addr(),
        next_header: IpProtocol::Icmpv6,
        payload_len: message.len(),
        hop_limit: packet.hop_limit(),
    };
    let ndp = NdpRepr::parse(&ip, message)?;
    Ok(Packet::Ndp { ip, ndp })
}

/// A zeroed frame of `payload_len` bytes after an Ethernet header from `src` to `dst`,
/// padded to [`MIN_FRAME_LEN`]; the payload starts at [`ETHERNET_HEADER_LEN`].
fn frame_with(src: Mac, dst: Mac, ethertype: EthernetProtocol, payload_len: usize) -> Vec<u8> {
    let mut buffer = vec![0; (ETHERNET_HEADER_LEN + payload_len).max(MIN_FRAME_LEN)];
    EthernetRepr {
        src_addr: src.into(),
        dst_addr: dst.into(),
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut buffer[..]));
    buffer
}

/// An Ethernet frame carrying `arp`, padded to [`MIN_FRAME_LEN`].
pub fn arp_frame(src: Mac, dst: Mac, arp: &ArpRepr) -> Vec<u8> {
    let mut buffer = frame_with(src, dst, EthernetProtocol::Arp, arp::PACKET_LEN);
    arp.emit(&mut buffer[ETHERNET_HEADER_LEN..]);
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
    let ip = Ipv6Repr {
        src_addr: src_ip,
        dst_addr: dst_ip,
        next_header: IpProtocol::Icmpv6,
        payload_len: ndp.buffer_len(),
        hop_limit: HOP_LIMIT,
    };
    let mut buffer = frame_with(
        src_mac,
        dst_mac,
        EthernetProtocol::Ipv6,
        ip.buffer_len() + ip.payload_len,
    );
    let mut packet = Ipv6Packet::new_unchecked(&mut buffer[ETHERNET_HEADER_LEN..]);
    ip.emit(&mut packet);
    ndp.emit(src_ip, dst_ip, packet.payload_mut());
    buffer
}
