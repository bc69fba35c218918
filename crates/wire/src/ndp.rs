//! Neighbor Solicitation and Neighbor Advertisement ([RFC 4861]), the IPv6 counterpart of
//! ARP, with the source and target link-layer address options.
//!
//! smoltcp's `Icmpv6Packet`, `NdiscOption` and `NdiscRepr` read and write the bytes and the
//! checksum. What stays here is ferrolb's: [`NdpRepr`] limited to NS and NA on Ethernet, and
//! the checks of [RFC 4861 section 7.1.1] (NS) and [section 7.1.2] (NA), each failing with its
//! own [`Error`]: hop limit 255 (so the message cannot have crossed a router), code 0, a
//! correct checksum, at least 24 bytes, a unicast target, well-formed options (a link-layer
//! address option exactly 8 bytes, the first of each kind wins as in Linux), and the rules for
//! the unspecified source (Duplicate Address Detection) and multicast destinations.
//! smoltcp's `NdiscRepr::parse` leaves those checks to its interface layer and answers a
//! bare `Error`; it also lets the last duplicate option win and takes the first six bytes of
//! a link-layer option of any length.
//!
//! [RFC 4861]: https://www.rfc-editor.org/rfc/rfc4861
//! [RFC 4861 section 7.1.1]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.1
//! [section 7.1.2]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.2

use std::net::Ipv6Addr;

use smoltcp::wire::{
    Icmpv6Message, Icmpv6Packet, Ipv6Repr, NdiscOption, NdiscOptionType, NdiscRepr,
    RawHardwareAddress,
};

use crate::mac::Mac;

/// The flags of a Neighbor Advertisement ([RFC 4861 section 4.4]): `ROUTER`, `SOLICITED`,
/// `OVERRIDE`.
///
/// [RFC 4861 section 4.4]: https://www.rfc-editor.org/rfc/rfc4861#section-4.4
pub type NaFlags = smoltcp::wire::NdiscNeighborFlags;

/// The hop limit every NDP message must be sent and received with ([RFC 4861 section 7.1.1]).
///
/// [RFC 4861 section 7.1.1]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.1
pub const HOP_LIMIT: u8 = 255;

/// Length of an NS or NA without options.
pub const HEADER_LEN: usize = 24;

/// ICMPv6 type of a Neighbor Solicitation ([RFC 4861 section 4.3]).
///
/// [RFC 4861 section 4.3]: https://www.rfc-editor.org/rfc/rfc4861#section-4.3
pub const NEIGHBOR_SOLICITATION: u8 = 135;

/// ICMPv6 type of a Neighbor Advertisement ([RFC 4861 section 4.4]).
///
/// [RFC 4861 section 4.4]: https://www.rfc-editor.org/rfc/rfc4861#section-4.4
pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;

/// The all-nodes link-local multicast address `ff02::1` ([RFC 4291 section 2.7.1]), where
/// unsolicited advertisements and answers to Duplicate Address Detection go.
///
/// [RFC 4291 section 2.7.1]: https://www.rfc-editor.org/rfc/rfc4291#section-2.7.1
pub const ALL_NODES: Ipv6Addr = smoltcp::wire::IPV6_LINK_LOCAL_ALL_NODES;

/// The solicited-node multicast address of `addr`, `ff02::1:ffXX:XXXX` with the low 24 bits
/// of `addr` ([RFC 4291 section 2.7.1]). Solicitations for `addr` are sent there.
///
/// [RFC 4291 section 2.7.1]: https://www.rfc-editor.org/rfc/rfc4291#section-2.7.1
pub const fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    // smoltcp has the same function, but crate-private.
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        ((o[14] as u16) << 8) | o[15] as u16,
    )
}

/// Whether `addr` is a solicited-node multicast address (`ff02::1:ff00:0/104`).
fn is_solicited_node(addr: Ipv6Addr) -> bool {
    addr.octets()[..13] == solicited_node(Ipv6Addr::UNSPECIFIED).octets()[..13]
}

/// Why an ICMPv6 message is not a valid Neighbor Solicitation or Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the 24 bytes of an NS or NA without options.
    #[error("NDP message of {len} bytes is shorter than the {HEADER_LEN}-byte minimum")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Neither type 135 (NS) nor 136 (NA).
    #[error("ICMPv6 type {msg_type} is neither Neighbor Solicitation nor Advertisement")]
    UnsupportedType {
        /// The ICMPv6 type found.
        msg_type: u8,
    },
    /// The IPv6 hop limit is not 255, so the message may come from off-link.
    #[error("NDP message has hop limit {hop_limit}, not {HOP_LIMIT}")]
    BadHopLimit {
        /// The hop limit found.
        hop_limit: u8,
    },
    /// The ICMPv6 code is not 0.
    #[error("NDP message has code {code}, not 0")]
    BadCode {
        /// The code found.
        code: u8,
    },
    /// The ICMPv6 checksum does not match the message.
    #[error("NDP message checksum is {found:#06x}, should be {expected:#06x}")]
    BadChecksum {
        /// The checksum in the message.
        found: u16,
        /// The checksum the message should carry.
        expected: u16,
    },
    /// The target address is multicast.
    #[error("NDP target {target} is a multicast address")]
    MulticastTarget {
        /// The target found.
        target: Ipv6Addr,
    },
    /// An option with length 0, which RFC 4861 section 4.6 says must make the whole message
    /// be discarded (a zero length would loop forever).
    #[error("NDP option of type {kind} has length 0")]
    ZeroLengthOption {
        /// The option type.
        kind: u8,
    },
    /// An option's header or declared length runs past the end of the message.
    #[error("NDP option at offset {offset} runs past the end of the message")]
    OptionOverrun {
        /// Where the option starts, counted from the start of the options.
        offset: usize,
    },
    /// A link-layer address option that is not 1 unit (8 bytes) long, the only size an
    /// Ethernet address option has.
    #[error("NDP link-layer address option (type {kind}) is {units} units long, not 1")]
    BadLinkLayerOptionLength {
        /// The option type (1 source, 2 target).
        kind: u8,
        /// The length found, in units of 8 bytes.
        units: u8,
    },
    /// A Duplicate Address Detection solicitation (unspecified source) carries a source
    /// link-layer address option.
    #[error("Duplicate Address Detection solicitation carries a source link-layer address")]
    DadWithSourceLinkLayer,
    /// A Duplicate Address Detection solicitation is not sent to a solicited-node address.
    #[error("Duplicate Address Detection solicitation sent to {dst}, not a solicited-node address")]
    DadNotToSolicitedNode {
        /// The destination found.
        dst: Ipv6Addr,
    },
    /// An advertisement sent to a multicast address has the Solicited flag set.
    #[error("Neighbor Advertisement to multicast {dst} has the Solicited flag set")]
    SolicitedToMulticast {
        /// The destination found.
        dst: Ipv6Addr,
    },
}

impl Error {
    /// A short `snake_case` name for this failure, stable for use as a metric label.
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "ndp_truncated",
            Error::UnsupportedType { .. } => "ndp_unsupported_type",
            Error::BadHopLimit { .. } => "ndp_bad_hop_limit",
            Error::BadCode { .. } => "ndp_bad_code",
            Error::BadChecksum { .. } => "ndp_bad_checksum",
            Error::MulticastTarget { .. } => "ndp_multicast_target",
            Error::ZeroLengthOption { .. } => "ndp_zero_length_option",
            Error::OptionOverrun { .. } => "ndp_option_overrun",
            Error::BadLinkLayerOptionLength { .. } => "ndp_bad_link_layer_option_length",
            Error::DadWithSourceLinkLayer => "ndp_dad_with_source_link_layer",
            Error::DadNotToSolicitedNode { .. } => "ndp_dad_not_to_solicited_node",
            Error::SolicitedToMulticast { .. } => "ndp_solicited_to_multicast",
        }
    }
}

/// The link-layer address options found in a message.
#[derive(Debug, Default)]
struct LinkLayerOptions {
    source: Option<Mac>,
    target: Option<Mac>,
}

/// Walks the options area ([RFC 4861 section 4.6]): unknown options are skipped, a zero
/// length or an option running past the end invalidates the message.
///
/// [RFC 4861 section 4.6]: https://www.rfc-editor.org/rfc/rfc4861#section-4.6
fn parse_options(options: &[u8]) -> Result<LinkLayerOptions, Error> {
    let mut found = LinkLayerOptions::default();
    let mut offset = 0;
    while let Some(rest) = options.get(offset..).filter(|rest| !rest.is_empty()) {
        let [kind, units, ..] = *rest else {
            return Err(Error::OptionOverrun { offset });
        };
        // Checked before smoltcp sees the option: its length check passes a zero length.
        if units == 0 {
            return Err(Error::ZeroLengthOption { kind });
        }
        let len = usize::from(units) * 8;
        let Some(option) = rest.get(..len) else {
            return Err(Error::OptionOverrun { offset });
        };
        // Bounds checked above (8 bytes or more, all of them present). Not `new_checked`:
        // smoltcp's check also wants each known type's minimum length, and options other
        // than link-layer addresses are skipped here whatever their content.
        let option = NdiscOption::new_unchecked(option);
        let slot = match option.option_type() {
            NdiscOptionType::SourceLinkLayerAddr => Some(&mut found.source),
            NdiscOptionType::TargetLinkLayerAddr => Some(&mut found.target),
            _ => None,
        };
        if let Some(slot) = slot {
            if units != 1 {
                return Err(Error::BadLinkLayerOptionLength { kind, units });
            }
            // One unit holds exactly the six bytes of a MAC after type and length.
            if slot.is_none()
                && let Ok(octets) = <[u8; 6]>::try_from(option.link_layer_addr().as_bytes())
            {
                *slot = Some(Mac(octets));
            }
        }
        offset += len;
    }
    Ok(found)
}

/// A Neighbor Solicitation ([RFC 4861 section 4.3]): "who has `target`?".
///
/// [RFC 4861 section 4.3]: https://www.rfc-editor.org/rfc/rfc4861#section-4.3
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborSolicit {
    /// The address asked about.
    pub target: Ipv6Addr,
    /// The solicitor's MAC from the Source Link-Layer Address option. Absent in Duplicate
    /// Address Detection and allowed to be absent in unicast reachability probes.
    pub source_mac: Option<Mac>,
}

/// A Neighbor Advertisement ([RFC 4861 section 4.4]): "`target` is at `target_mac`".
///
/// [RFC 4861 section 4.4]: https://www.rfc-editor.org/rfc/rfc4861#section-4.4
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighborAdvert {
    /// Router, Solicited and Override flags.
    pub flags: NaFlags,
    /// The address advertised.
    pub target: Ipv6Addr,
    /// The advertiser's MAC from the Target Link-Layer Address option.
    pub target_mac: Option<Mac>,
}

/// A parsed, validated Neighbor Solicitation or Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdpRepr {
    /// Type 135.
    Solicit(NeighborSolicit),
    /// Type 136.
    Advert(NeighborAdvert),
}

impl NdpRepr {
    /// Reads and validates `message`, the whole ICMPv6 message of the IPv6 packet `ip`
    /// (whose addresses and hop limit take part in the checks).
    ///
    /// # Errors
    ///
    /// The [`Error`] naming the first check that failed: length, type, hop limit, code,
    /// checksum, target, options, then the Duplicate Address Detection or multicast rules.
    pub(crate) fn parse(ip: &Ipv6Repr, message: &[u8]) -> Result<Self, Error> {
        let len = message.len();
        if len < HEADER_LEN {
            return Err(Error::Truncated { len });
        }
        let msg_type = message[0];
        if msg_type != NEIGHBOR_SOLICITATION && msg_type != NEIGHBOR_ADVERTISEMENT {
            return Err(Error::UnsupportedType { msg_type });
        }
        // For NS and NA smoltcp checks exactly the 24 bytes checked above.
        let packet = Icmpv6Packet::new_checked(message).map_err(|_| Error::Truncated { len })?;
        if ip.hop_limit != HOP_LIMIT {
            return Err(Error::BadHopLimit {
                hop_limit: ip.hop_limit,
            });
        }
        let code = packet.msg_code();
        if code != 0 {
            return Err(Error::BadCode { code });
        }
        if !packet.verify_checksum(&ip.src_addr, &ip.dst_addr) {
            let mut copy = message.to_vec();
            let mut expected = Icmpv6Packet::new_unchecked(&mut copy[..]);
            expected.fill_checksum(&ip.src_addr, &ip.dst_addr);
            return Err(Error::BadChecksum {
                found: packet.checksum(),
                expected: expected.checksum(),
            });
        }
        let target = packet.target_addr();
        if target.is_multicast() {
            return Err(Error::MulticastTarget { target });
        }
        let options = parse_options(packet.payload())?;
        if packet.msg_type() == Icmpv6Message::NeighborSolicit {
            if ip.src_addr.is_unspecified() {
                if options.source.is_some() {
                    return Err(Error::DadWithSourceLinkLayer);
                }
                if !is_solicited_node(ip.dst_addr) {
                    return Err(Error::DadNotToSolicitedNode { dst: ip.dst_addr });
                }
            }
            Ok(NdpRepr::Solicit(NeighborSolicit {
                target,
                source_mac: options.source,
            }))
        } else {
            let flags = packet.neighbor_flags();
            if ip.dst_addr.is_multicast() && flags.contains(NaFlags::SOLICITED) {
                return Err(Error::SolicitedToMulticast { dst: ip.dst_addr });
            }
            Ok(NdpRepr::Advert(NeighborAdvert {
                flags,
                target,
                target_mac: options.target,
            }))
        }
    }

    fn to_smoltcp(self) -> NdiscRepr<'static> {
        let lladdr = |mac: Option<Mac>| mac.map(|mac| RawHardwareAddress::from_bytes(&mac.0));
        match self {
            NdpRepr::Solicit(ns) => NdiscRepr::NeighborSolicit {
                target_addr: ns.target,
                lladdr: lladdr(ns.source_mac),
            },
            NdpRepr::Advert(na) => NdiscRepr::NeighborAdvert {
                flags: na.flags,
                target_addr: na.target,
                lladdr: lladdr(na.target_mac),
            },
        }
    }

    /// The message length: 24 bytes, plus 8 if a link-layer address is carried. Use it as the
    /// IPv6 payload length.
    pub fn buffer_len(&self) -> usize {
        self.to_smoltcp().buffer_len()
    }

    /// Writes the message into the first [`NdpRepr::buffer_len`] bytes of `buffer`, with the
    /// checksum for a packet from `src` to `dst`.
    ///
    /// # Panics
    ///
    /// If `buffer` is shorter than [`NdpRepr::buffer_len`].
    pub fn emit(&self, src: Ipv6Addr, dst: Ipv6Addr, buffer: &mut [u8]) {
        let mut packet = Icmpv6Packet::new_unchecked(&mut buffer[..self.buffer_len()]);
        self.to_smoltcp().emit(&mut packet);
        packet.fill_checksum(&src, &dst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use smoltcp::wire::IpProtocol;

    use super::*;

    const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
    const THEIR_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x1);
    const OUR_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

    /// A Neighbor Solicitation for 2001:db8::10 from 2001:db8::1 to ff02::1:ff00:10.
    /// Checksum computed independently (Python, RFC 8200 pseudo-header).
    #[rustfmt::skip]
    const NS: [u8; 32] = [
        0x87,                               // type 135: Neighbor Solicitation
        0x00,                               // code 0
        0x97, 0x4f,                         // checksum
        0x00, 0x00, 0x00, 0x00,             // reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x01,                               // option: source link-layer address
        0x01,                               // length: 1 unit of 8 bytes
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // the solicitor's MAC
    ];

    /// The solicited answer to [`NS`], from 2001:db8::10 to 2001:db8::1.
    #[rustfmt::skip]
    const NA: [u8; 32] = [
        0x88,                               // type 136: Neighbor Advertisement
        0x00,                               // code 0
        0x8a, 0x56,                         // checksum
        0x60, 0x00, 0x00, 0x00,             // flags: Solicited, Override; reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x02,                               // option: target link-layer address
        0x01,                               // length: 1 unit of 8 bytes
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // our MAC
    ];

    fn ip(src_addr: Ipv6Addr, dst_addr: Ipv6Addr, payload_len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src_addr,
            dst_addr,
            next_header: IpProtocol::Icmpv6,
            payload_len,
            hop_limit: HOP_LIMIT,
        }
    }

    fn ns_ip() -> Ipv6Repr {
        ip(THEIR_IP, solicited_node(OUR_IP), 32)
    }

    fn na_ip() -> Ipv6Repr {
        ip(OUR_IP, THEIR_IP, 32)
    }

    fn ns() -> NdpRepr {
        NdpRepr::Solicit(NeighborSolicit {
            target: OUR_IP,
            source_mac: Some(THEIR_MAC),
        })
    }

    fn na() -> NdpRepr {
        NdpRepr::Advert(NeighborAdvert {
            flags: NaFlags::SOLICITED | NaFlags::OVERRIDE,
            target: OUR_IP,
            target_mac: Some(OUR_MAC),
        })
    }

    fn emit(repr: &NdpRepr, ip: &Ipv6Repr) -> Vec<u8> {
        let mut bytes = vec![0xee; repr.buffer_len()];
        repr.emit(ip.src_addr, ip.dst_addr, &mut bytes);
        bytes
    }

    /// Rewrites `bytes` with a correct checksum for `ip`, so a test can change a field and
    /// still reach the check after the checksum.
    fn rechecksum(ip: &Ipv6Repr, bytes: &mut [u8]) {
        Icmpv6Packet::new_unchecked(bytes).fill_checksum(&ip.src_addr, &ip.dst_addr);
    }

    #[test]
    fn solicitation_parses_from_bytes() {
        assert_eq!(NdpRepr::parse(&ns_ip(), &NS), Ok(ns()));
    }

    #[test]
    fn solicitation_emits_the_same_bytes() {
        assert_eq!(emit(&ns(), &ns_ip()), NS);
    }

    #[test]
    fn advertisement_parses_from_bytes() {
        assert_eq!(NdpRepr::parse(&na_ip(), &NA), Ok(na()));
    }

    #[test]
    fn advertisement_emits_the_same_bytes() {
        assert_eq!(emit(&na(), &na_ip()), NA);
    }

    #[test]
    fn messages_without_options_are_24_bytes_and_round_trip() {
        let dad = NdpRepr::Solicit(NeighborSolicit {
            target: OUR_IP,
            source_mac: None,
        });
        let ip = ip(Ipv6Addr::UNSPECIFIED, solicited_node(OUR_IP), 24);
        #[rustfmt::skip]
        let expected: [u8; 24] = [
            0x87, 0x00, 0x4c, 0xcf, // NS, code 0, checksum (computed independently)
            0x00, 0x00, 0x00, 0x00, // reserved
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        ];
        assert_eq!(emit(&dad, &ip), expected);
        assert_eq!(NdpRepr::parse(&ip, &expected), Ok(dad));
    }

    #[test]
    fn a_corrupted_checksum_is_refused() {
        let mut bytes = NS;
        bytes[3] ^= 0x01;
        assert_eq!(
            NdpRepr::parse(&ns_ip(), &bytes),
            Err(Error::BadChecksum {
                found: 0x974e,
                expected: 0x974f
            })
        );
    }

    #[test]
    fn a_corrupted_body_fails_the_checksum() {
        let mut bytes = NS;
        bytes[23] ^= 0x01;
        assert!(matches!(
            NdpRepr::parse(&ns_ip(), &bytes),
            Err(Error::BadChecksum { .. })
        ));
    }

    #[test]
    fn every_truncation_below_24_bytes_is_an_error() {
        for len in 0..24 {
            assert_eq!(
                NdpRepr::parse(&ns_ip(), &NS[..len]),
                Err(Error::Truncated { len })
            );
        }
    }

    #[test]
    fn other_icmpv6_types_are_unsupported() {
        let mut bytes = NS;
        bytes[0] = 128; // echo request
        assert_eq!(
            NdpRepr::parse(&ns_ip(), &bytes),
            Err(Error::UnsupportedType { msg_type: 128 })
        );
    }

    #[test]
    fn a_hop_limit_below_255_is_refused() {
        let ip = Ipv6Repr {
            hop_limit: 64,
            ..ns_ip()
        };
        assert_eq!(
            NdpRepr::parse(&ip, &NS),
            Err(Error::BadHopLimit { hop_limit: 64 })
        );
    }

    #[test]
    fn a_nonzero_code_is_refused() {
        let mut bytes = NS;
        bytes[1] = 1;
        rechecksum(&ns_ip(), &mut bytes);
        assert_eq!(
            NdpRepr::parse(&ns_ip(), &bytes),
            Err(Error::BadCode { code: 1 })
        );
    }

    #[test]
    fn a_multicast_target_is_refused() {
        let mut bytes = NS;
        bytes[8] = 0xff;
        rechecksum(&ns_ip(), &mut bytes);
        assert!(matches!(
            NdpRepr::parse(&ns_ip(), &bytes),
            Err(Error::MulticastTarget { .. })
        ));
    }

    /// NS with `options` instead of the source link-layer option, checksummed.
    fn ns_with_options(options: &[u8]) -> (Ipv6Repr, Vec<u8>) {
        let mut bytes = NS[..24].to_vec();
        bytes.extend_from_slice(options);
        let ip = Ipv6Repr {
            payload_len: bytes.len(),
            ..ns_ip()
        };
        rechecksum(&ip, &mut bytes);
        (ip, bytes)
    }

    #[test]
    fn unknown_options_are_skipped() {
        #[rustfmt::skip]
        let (ip, bytes) = ns_with_options(&[
            0x0e, 0x01, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, // nonce option (RFC 3971), skipped
            0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source link-layer address
        ]);
        assert_eq!(NdpRepr::parse(&ip, &bytes), Ok(ns()));
    }

    #[test]
    fn known_options_too_short_for_smoltcp_are_skipped_too() {
        // A one-unit Prefix Information option (type 3): smoltcp's length check wants four
        // units, but an NS does not use it, so it is skipped like any other.
        #[rustfmt::skip]
        let (ip, bytes) = ns_with_options(&[
            0x03, 0x01, 0, 0, 0, 0, 0, 0,
            0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
        ]);
        assert_eq!(NdpRepr::parse(&ip, &bytes), Ok(ns()));
    }

    #[test]
    fn a_zero_length_option_is_refused() {
        let (ip, bytes) = ns_with_options(&[0x0e, 0x00, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Err(Error::ZeroLengthOption { kind: 0x0e })
        );
    }

    #[test]
    fn an_option_longer_than_the_message_is_refused() {
        let (ip, bytes) = ns_with_options(&[0x0e, 0x02, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Err(Error::OptionOverrun { offset: 0 })
        );
    }

    #[test]
    fn a_dangling_option_byte_is_refused() {
        let (ip, bytes) = ns_with_options(&[0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01]);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Err(Error::OptionOverrun { offset: 8 })
        );
    }

    #[test]
    fn a_two_unit_link_layer_option_is_refused_on_ethernet() {
        // smoltcp's NdiscRepr::parse accepts it and takes 01:02:03:04:05:06.
        let (ip, bytes) = ns_with_options(&[0x01, 0x02, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Err(Error::BadLinkLayerOptionLength { kind: 1, units: 2 })
        );
    }

    #[test]
    fn the_first_of_duplicate_link_layer_options_wins() {
        // smoltcp's NdiscRepr::parse keeps the last; Linux keeps the first.
        #[rustfmt::skip]
        let (ip, bytes) = ns_with_options(&[
            0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // first
            0x01, 0x01, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, // duplicate
        ]);
        assert_eq!(NdpRepr::parse(&ip, &bytes), Ok(ns()));
    }

    #[test]
    fn a_target_option_in_a_solicitation_is_ignored() {
        let (ip, bytes) = ns_with_options(&[0x02, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Ok(NdpRepr::Solicit(NeighborSolicit {
                target: OUR_IP,
                source_mac: None
            }))
        );
    }

    #[test]
    fn dad_solicitation_with_a_source_link_layer_option_is_refused() {
        let ip = ip(Ipv6Addr::UNSPECIFIED, solicited_node(OUR_IP), 32);
        let mut bytes = NS;
        rechecksum(&ip, &mut bytes);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Err(Error::DadWithSourceLinkLayer)
        );
    }

    #[test]
    fn dad_solicitation_to_a_unicast_address_is_refused() {
        let ip = ip(Ipv6Addr::UNSPECIFIED, OUR_IP, 24);
        let mut bytes = NS[..24].to_vec();
        rechecksum(&ip, &mut bytes);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Err(Error::DadNotToSolicitedNode { dst: OUR_IP })
        );
    }

    #[test]
    fn solicited_advertisement_to_multicast_is_refused() {
        let ip = ip(OUR_IP, ALL_NODES, 32);
        let mut bytes = NA;
        rechecksum(&ip, &mut bytes);
        assert_eq!(
            NdpRepr::parse(&ip, &bytes),
            Err(Error::SolicitedToMulticast { dst: ALL_NODES })
        );
    }

    #[test]
    fn unsolicited_advertisement_to_all_nodes_is_accepted() {
        let ip = ip(OUR_IP, ALL_NODES, 32);
        let repr = NdpRepr::Advert(NeighborAdvert {
            flags: NaFlags::OVERRIDE,
            target: OUR_IP,
            target_mac: Some(OUR_MAC),
        });
        let bytes = emit(&repr, &ip);
        assert_eq!(bytes[2..4], [0xf9, 0x0c]); // computed independently
        assert_eq!(bytes[4], 0x20);
        assert_eq!(NdpRepr::parse(&ip, &bytes), Ok(repr));
    }

    #[test]
    fn reserved_flag_bits_are_dropped() {
        let ip = ip(OUR_IP, THEIR_IP, 32);
        let mut bytes = NA;
        bytes[4..8].copy_from_slice(&[0xff; 4]);
        rechecksum(&ip, &mut bytes);
        let Ok(NdpRepr::Advert(na)) = NdpRepr::parse(&ip, &bytes) else {
            panic!("not an advertisement");
        };
        assert_eq!(na.flags.bits(), 0xe0);
    }

    #[test]
    fn solicited_node_keeps_the_low_24_bits() {
        assert_eq!(
            solicited_node("2001:db8::abcd:ef12:3456".parse().unwrap()),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            solicited_node(OUR_IP),
            "ff02::1:ff00:10".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn solicited_node_addresses_are_recognised() {
        assert!(is_solicited_node("ff02::1:ff12:3456".parse().unwrap()));
        assert!(!is_solicited_node("ff02::1".parse().unwrap()));
        assert!(!is_solicited_node("ff02::2:ff12:3456".parse().unwrap()));
        assert!(!is_solicited_node(OUR_IP));
    }
}
