//! Neighbor Solicitation and Neighbor Advertisement ([RFC 4861]), the IPv6 counterpart of
//! ARP, with the source and target link-layer address options.
//!
//! Both messages share one layout ([RFC 4861 section 4.3], [section 4.4]):
//!
//! ```text
//!  0        8        16                32 bits
//! +--------+--------+-----------------+
//! |  type  |  code  |    checksum     |   type 135 (NS) or 136 (NA), code 0
//! +--------+--------+-----------------+
//! |R|S|O|        reserved             |   flags in NA only; all zero in NS
//! +-----------------------------------+
//! |     target address (16 bytes)     |
//! +-----------------------------------+
//! |  options: type, length in units   |
//! |  of 8 bytes, value ...            |
//! ```
//!
//! [`NdpRepr::parse`] applies the cheap checks of [RFC 4861 section 7.1.1] (NS) and
//! [section 7.1.2] (NA): hop limit 255 (so the message cannot have crossed a router), code 0,
//! a correct checksum, at least 24 bytes, a unicast target, no zero-length option, and the
//! rules for the unspecified source (Duplicate Address Detection) and multicast destinations.
//!
//! [RFC 4861]: https://www.rfc-editor.org/rfc/rfc4861
//! [RFC 4861 section 4.3]: https://www.rfc-editor.org/rfc/rfc4861#section-4.3
//! [section 4.4]: https://www.rfc-editor.org/rfc/rfc4861#section-4.4
//! [RFC 4861 section 7.1.1]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.1
//! [section 7.1.2]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.2

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::{BitOr, Range};

use crate::ethernet::{Mac, mac_at};
use crate::icmpv6::{self, NEIGHBOR_ADVERTISEMENT, NEIGHBOR_SOLICITATION};
use crate::ipv6::{Ipv6Repr, ipv6_at};

/// The hop limit every NDP message must be sent and received with ([RFC 4861 section 7.1.1]).
///
/// [RFC 4861 section 7.1.1]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.1
pub const HOP_LIMIT: u8 = 255;

/// Option type of the Source Link-Layer Address option ([RFC 4861 section 4.6.1]).
///
/// [RFC 4861 section 4.6.1]: https://www.rfc-editor.org/rfc/rfc4861#section-4.6.1
pub const OPTION_SOURCE_LINK_LAYER: u8 = 1;
/// Option type of the Target Link-Layer Address option ([RFC 4861 section 4.6.1]).
///
/// [RFC 4861 section 4.6.1]: https://www.rfc-editor.org/rfc/rfc4861#section-4.6.1
pub const OPTION_TARGET_LINK_LAYER: u8 = 2;

/// Length of a link-layer address option carrying a MAC: type, length, six bytes.
pub const LINK_LAYER_OPTION_LEN: usize = 8;

mod field {
    use super::Range;

    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Range<usize> = 2..4;
    pub(super) const FLAGS: usize = 4;
    pub(super) const RESERVED: Range<usize> = 5..8;
    pub(super) const TARGET: Range<usize> = 8..24;
    pub(super) const OPTIONS: usize = 24;
}

/// Length of an NS or NA without options.
pub const HEADER_LEN: usize = field::OPTIONS;

/// The all-nodes link-local multicast address `ff02::1` ([RFC 4291 section 2.7.1]), where
/// unsolicited advertisements and answers to Duplicate Address Detection go.
///
/// [RFC 4291 section 2.7.1]: https://www.rfc-editor.org/rfc/rfc4291#section-2.7.1
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The solicited-node multicast address of `addr`, `ff02::1:ffXX:XXXX` with the low 24 bits
/// of `addr` ([RFC 4291 section 2.7.1]). Solicitations for `addr` are sent there.
///
/// [RFC 4291 section 2.7.1]: https://www.rfc-editor.org/rfc/rfc4291#section-2.7.1
pub const fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
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
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    addr.octets()[..13] == solicited_node(Ipv6Addr::UNSPECIFIED).octets()[..13]
}

/// The flags of a Neighbor Advertisement ([RFC 4861 section 4.4]).
///
/// [RFC 4861 section 4.4]: https://www.rfc-editor.org/rfc/rfc4861#section-4.4
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NaFlags(u8);

impl NaFlags {
    /// No flag set.
    pub const NONE: NaFlags = NaFlags(0);
    /// R: the sender is a router.
    pub const ROUTER: NaFlags = NaFlags(0x80);
    /// S: sent in response to a Neighbor Solicitation from a unicast address.
    pub const SOLICITED: NaFlags = NaFlags(0x40);
    /// O: the receiver should replace a cached link-layer address with this one.
    pub const OVERRIDE: NaFlags = NaFlags(0x20);

    /// The flags byte on the wire.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The flags from a wire byte, dropping the reserved bits.
    pub const fn from_bits_truncate(bits: u8) -> NaFlags {
        NaFlags(bits & 0xe0)
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: NaFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for NaFlags {
    type Output = NaFlags;

    fn bitor(self, rhs: NaFlags) -> NaFlags {
        NaFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for NaFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (NaFlags::ROUTER, "ROUTER"),
            (NaFlags::SOLICITED, "SOLICITED"),
            (NaFlags::OVERRIDE, "OVERRIDE"),
        ];
        f.write_str("NaFlags(")?;
        let mut first = true;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// Why an ICMPv6 message is not a valid Neighbor Solicitation or Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 24 bytes of an NS or NA without options.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Neither type 135 (NS) nor 136 (NA).
    UnsupportedType {
        /// The ICMPv6 type found.
        msg_type: u8,
    },
    /// The IPv6 hop limit is not 255, so the message may come from off-link.
    BadHopLimit {
        /// The hop limit found.
        hop_limit: u8,
    },
    /// The ICMPv6 code is not 0.
    BadCode {
        /// The code found.
        code: u8,
    },
    /// The ICMPv6 checksum does not match the message.
    BadChecksum {
        /// The checksum in the message.
        found: u16,
        /// The checksum the message should carry.
        expected: u16,
    },
    /// The target address is multicast.
    MulticastTarget {
        /// The target found.
        target: Ipv6Addr,
    },
    /// An option with length 0, which RFC 4861 section 4.6 says must make the whole message
    /// be discarded (a zero length would loop forever).
    ZeroLengthOption {
        /// The option type.
        kind: u8,
    },
    /// An option's header or declared length runs past the end of the message.
    OptionOverrun {
        /// Where the option starts, counted from the start of the options.
        offset: usize,
    },
    /// A link-layer address option that is not 1 unit (8 bytes) long, the only size an
    /// Ethernet address option has.
    BadLinkLayerOptionLength {
        /// The option type (1 source, 2 target).
        kind: u8,
        /// The length found, in units of 8 bytes.
        units: u8,
    },
    /// A Duplicate Address Detection solicitation (unspecified source) carries a source
    /// link-layer address option.
    DadWithSourceLinkLayer,
    /// A Duplicate Address Detection solicitation is not sent to a solicited-node address.
    DadNotToSolicitedNode {
        /// The destination found.
        dst: Ipv6Addr,
    },
    /// An advertisement sent to a multicast address has the Solicited flag set.
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len } => write!(
                f,
                "NDP message of {len} bytes is shorter than the {HEADER_LEN}-byte minimum"
            ),
            Error::UnsupportedType { msg_type } => write!(
                f,
                "ICMPv6 type {msg_type} is neither Neighbor Solicitation nor Advertisement"
            ),
            Error::BadHopLimit { hop_limit } => {
                write!(f, "NDP message has hop limit {hop_limit}, not {HOP_LIMIT}")
            }
            Error::BadCode { code } => write!(f, "NDP message has code {code}, not 0"),
            Error::BadChecksum { found, expected } => write!(
                f,
                "NDP message checksum is {found:#06x}, should be {expected:#06x}"
            ),
            Error::MulticastTarget { target } => {
                write!(f, "NDP target {target} is a multicast address")
            }
            Error::ZeroLengthOption { kind } => {
                write!(f, "NDP option of type {kind} has length 0")
            }
            Error::OptionOverrun { offset } => write!(
                f,
                "NDP option at offset {offset} runs past the end of the message"
            ),
            Error::BadLinkLayerOptionLength { kind, units } => write!(
                f,
                "NDP link-layer address option (type {kind}) is {units} units long, not 1"
            ),
            Error::DadWithSourceLinkLayer => f.write_str(
                "Duplicate Address Detection solicitation carries a source link-layer address",
            ),
            Error::DadNotToSolicitedNode { dst } => write!(
                f,
                "Duplicate Address Detection solicitation sent to {dst}, not a solicited-node address"
            ),
            Error::SolicitedToMulticast { dst } => write!(
                f,
                "Neighbor Advertisement to multicast {dst} has the Solicited flag set"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// A view of a Neighbor Solicitation or Advertisement: the whole ICMPv6 message.
///
/// After [`NeighborPacket::new_checked`] every accessor is panic-free.
#[derive(Debug, Clone)]
pub struct NeighborPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NeighborPacket<T> {
    /// Wraps a buffer without checking its length.
    ///
    /// Accessors panic if the buffer is shorter than [`HEADER_LEN`]; use
    /// [`NeighborPacket::new_checked`] for input.
    pub const fn new_unchecked(buffer: T) -> Self {
        NeighborPacket { buffer }
    }

    /// Wraps a buffer, which must be the whole ICMPv6 message (the checksum covers all of
    /// it), after checking that it holds at least [`HEADER_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if it does not.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds at least [`HEADER_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if it does not.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            Err(Error::Truncated { len })
        } else {
            Ok(())
        }
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The ICMPv6 type (135 or 136 for a valid message).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The ICMPv6 code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::CHECKSUM.start], d[field::CHECKSUM.start + 1]])
    }

    /// The advertisement flags (meaningless, and zero when well-formed, in a solicitation).
    pub fn flags(&self) -> NaFlags {
        NaFlags::from_bits_truncate(self.buffer.as_ref()[field::FLAGS])
    }

    /// The target address.
    pub fn target_addr(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::TARGET)
    }

    /// The raw options area.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NeighborPacket<T> {
    /// Writes the ICMPv6 type.
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.buffer.as_mut()[field::TYPE] = msg_type;
    }

    /// Writes the ICMPv6 code.
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Writes the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    /// Writes the flags byte and zeroes the reserved bytes after it.
    pub fn set_flags(&mut self, flags: NaFlags) {
        let data = self.buffer.as_mut();
        data[field::FLAGS] = flags.bits();
        data[field::RESERVED].fill(0);
    }

    /// Writes the target address.
    pub fn set_target_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&addr.octets());
    }

    /// The options area, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::OPTIONS..]
    }

    /// Computes and writes the ICMPv6 checksum for a message from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let checksum = icmpv6::compute_checksum(src, dst, self.buffer.as_ref());
        self.set_checksum(checksum);
    }
}

/// The link-layer address options found in a message; the first of each kind wins, as in
/// Linux (a duplicate is ignored, not an error).
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
        if units == 0 {
            return Err(Error::ZeroLengthOption { kind });
        }
        let len = usize::from(units) * 8;
        let Some(option) = rest.get(..len) else {
            return Err(Error::OptionOverrun { offset });
        };
        if kind == OPTION_SOURCE_LINK_LAYER || kind == OPTION_TARGET_LINK_LAYER {
            if units != 1 {
                return Err(Error::BadLinkLayerOptionLength { kind, units });
            }
            let slot = if kind == OPTION_SOURCE_LINK_LAYER {
                &mut found.source
            } else {
                &mut found.target
            };
            if slot.is_none() {
                *slot = Some(mac_at(option, 2..8));
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
    /// Reads and validates a message carried in the IPv6 packet `ip` (whose addresses and hop
    /// limit take part in the checks), per [RFC 4861 section 7.1.1] and [section 7.1.2].
    ///
    /// # Errors
    ///
    /// The [`Error`] naming the first check that failed: type, hop limit, code, checksum,
    /// target, options, then the Duplicate Address Detection or multicast rules.
    ///
    /// [RFC 4861 section 7.1.1]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.1
    /// [section 7.1.2]: https://www.rfc-editor.org/rfc/rfc4861#section-7.1.2
    pub fn parse<T: AsRef<[u8]>>(ip: &Ipv6Repr, packet: &NeighborPacket<T>) -> Result<Self, Error> {
        let msg_type = packet.msg_type();
        if msg_type != NEIGHBOR_SOLICITATION && msg_type != NEIGHBOR_ADVERTISEMENT {
            return Err(Error::UnsupportedType { msg_type });
        }
        if ip.hop_limit != HOP_LIMIT {
            return Err(Error::BadHopLimit {
                hop_limit: ip.hop_limit,
            });
        }
        let code = packet.code();
        if code != 0 {
            return Err(Error::BadCode { code });
        }
        let message = packet.buffer.as_ref();
        if !icmpv6::verify_checksum(ip.src_addr, ip.dst_addr, message) {
            return Err(Error::BadChecksum {
                found: packet.checksum(),
                expected: icmpv6::compute_checksum(ip.src_addr, ip.dst_addr, message),
            });
        }
        let target = packet.target_addr();
        if target.is_multicast() {
            return Err(Error::MulticastTarget { target });
        }
        let options = parse_options(packet.options())?;

        if msg_type == NEIGHBOR_SOLICITATION {
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
            let flags = packet.flags();
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

    /// The message length: [`HEADER_LEN`] plus [`LINK_LAYER_OPTION_LEN`] if a link-layer
    /// address is carried. Use it as the IPv6 payload length.
    pub const fn buffer_len(&self) -> usize {
        let has_option = match self {
            NdpRepr::Solicit(ns) => ns.source_mac.is_some(),
            NdpRepr::Advert(na) => na.target_mac.is_some(),
        };
        if has_option {
            HEADER_LEN + LINK_LAYER_OPTION_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the message into `packet` and fills in the checksum for a packet from `src`
    /// to `dst`.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than [`NdpRepr::buffer_len`]. A longer buffer gets
    /// bytes that are not covered here, and a checksum over all of them.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        packet: &mut NeighborPacket<T>,
    ) {
        packet.set_code(0);
        let option = match self {
            NdpRepr::Solicit(ns) => {
                packet.set_msg_type(NEIGHBOR_SOLICITATION);
                packet.set_flags(NaFlags::NONE);
                packet.set_target_addr(ns.target);
                ns.source_mac.map(|mac| (OPTION_SOURCE_LINK_LAYER, mac))
            }
            NdpRepr::Advert(na) => {
                packet.set_msg_type(NEIGHBOR_ADVERTISEMENT);
                packet.set_flags(na.flags);
                packet.set_target_addr(na.target);
                na.target_mac.map(|mac| (OPTION_TARGET_LINK_LAYER, mac))
            }
        };
        if let Some((kind, mac)) = option {
            let option = &mut packet.options_mut()[..LINK_LAYER_OPTION_LEN];
            option[0] = kind;
            option[1] = 1;
            option[2..].copy_from_slice(&mac.0);
        }
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);

    fn their_ip() -> Ipv6Addr {
        "fe80::5054:ff:fe12:3456".parse().unwrap()
    }

    fn our_ip() -> Ipv6Addr {
        "2001:db8::10".parse().unwrap()
    }

    /// A Neighbor Solicitation for 2001:db8::10 from fe80::5054:ff:fe12:3456 to
    /// ff02::1:ff00:10. Checksum computed independently (Python, RFC 8200 pseudo-header).
    #[rustfmt::skip]
    const NS: [u8; 32] = [
        0x87, // type 135: Neighbor Solicitation
        0x00, // code 0
        0x42, 0xcc, // checksum
        0x00, 0x00, 0x00, 0x00, // reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x01, // option: source link-layer address
        0x01, // length: 1 unit of 8 bytes
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // the solicitor's MAC
    ];

    /// The solicited answer to [`NS`], from 2001:db8::10 to fe80::5054:ff:fe12:3456.
    #[rustfmt::skip]
    const NA: [u8; 32] = [
        0x88, // type 136: Neighbor Advertisement
        0x00, // code 0
        0x35, 0xd3, // checksum
        0x60, 0x00, 0x00, 0x00, // flags: Solicited, Override; reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x02, // option: target link-layer address
        0x01, // length: 1 unit of 8 bytes
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // our MAC
    ];

    fn ns_ip() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: their_ip(),
            dst_addr: solicited_node(our_ip()),
            payload_len: 32,
            hop_limit: 255,
        }
    }

    fn na_ip() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: our_ip(),
            dst_addr: their_ip(),
            payload_len: 32,
            hop_limit: 255,
        }
    }

    fn ns() -> NdpRepr {
        NdpRepr::Solicit(NeighborSolicit {
            target: our_ip(),
            source_mac: Some(THEIR_MAC),
        })
    }

    fn na() -> NdpRepr {
        NdpRepr::Advert(NeighborAdvert {
            flags: NaFlags::SOLICITED | NaFlags::OVERRIDE,
            target: our_ip(),
            target_mac: Some(OUR_MAC),
        })
    }

    fn parse(ip: &Ipv6Repr, bytes: &[u8]) -> Result<NdpRepr, Error> {
        NdpRepr::parse(ip, &NeighborPacket::new_checked(bytes)?)
    }

    fn emit(repr: &NdpRepr, ip: &Ipv6Repr) -> Vec<u8> {
        let mut bytes = vec![0xee; repr.buffer_len()];
        repr.emit(
            ip.src_addr,
            ip.dst_addr,
            &mut NeighborPacket::new_unchecked(&mut bytes[..]),
        );
        bytes
    }

    /// Rewrites `bytes` with a correct checksum for `ip`, so a test can change a field and
    /// still reach the check after the checksum.
    fn rechecksum(ip: &Ipv6Repr, bytes: &mut [u8]) {
        NeighborPacket::new_unchecked(bytes).fill_checksum(ip.src_addr, ip.dst_addr);
    }

    #[test]
    fn packet_accessors_read_a_solicitation() {
        let packet = NeighborPacket::new_checked(&NS[..]).unwrap();
        assert_eq!(packet.msg_type(), 135);
        assert_eq!(packet.code(), 0);
        assert_eq!(packet.checksum(), 0x42cc);
        assert_eq!(packet.flags(), NaFlags::NONE);
        assert_eq!(packet.target_addr(), our_ip());
        assert_eq!(packet.options(), &NS[24..]);
    }

    #[test]
    fn packet_setters_write_an_advertisement() {
        let mut bytes = [0u8; 32];
        let mut packet = NeighborPacket::new_unchecked(&mut bytes[..]);
        packet.set_msg_type(136);
        packet.set_code(0);
        packet.set_flags(NaFlags::SOLICITED | NaFlags::OVERRIDE);
        packet.set_target_addr(our_ip());
        packet.options_mut().copy_from_slice(&NA[24..]);
        packet.fill_checksum(our_ip(), their_ip());
        assert_eq!(bytes, NA);
    }

    #[test]
    fn solicitation_parses_from_bytes() {
        assert_eq!(parse(&ns_ip(), &NS), Ok(ns()));
    }

    #[test]
    fn solicitation_emits_the_same_bytes() {
        assert_eq!(emit(&ns(), &ns_ip()), NS);
    }

    #[test]
    fn advertisement_parses_from_bytes() {
        assert_eq!(parse(&na_ip(), &NA), Ok(na()));
    }

    #[test]
    fn advertisement_emits_the_same_bytes() {
        assert_eq!(emit(&na(), &na_ip()), NA);
    }

    #[test]
    fn messages_without_options_are_24_bytes_and_round_trip() {
        let dad = NdpRepr::Solicit(NeighborSolicit {
            target: our_ip(),
            source_mac: None,
        });
        let ip = Ipv6Repr {
            src_addr: Ipv6Addr::UNSPECIFIED,
            dst_addr: solicited_node(our_ip()),
            payload_len: 24,
            hop_limit: 255,
        };
        #[rustfmt::skip]
        let expected: [u8; 24] = [
            0x87, 0x00, 0x4c, 0xcf, // NS, code 0, checksum (computed independently)
            0x00, 0x00, 0x00, 0x00, // reserved
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        ];
        assert_eq!(emit(&dad, &ip), expected);
        assert_eq!(parse(&ip, &expected), Ok(dad));
    }

    #[test]
    fn a_corrupted_checksum_is_refused() {
        let mut bytes = NS;
        bytes[3] ^= 0x01;
        assert_eq!(
            parse(&ns_ip(), &bytes),
            Err(Error::BadChecksum {
                found: 0x42cd,
                expected: 0x42cc
            })
        );
    }

    #[test]
    fn a_corrupted_body_fails_the_checksum() {
        let mut bytes = NS;
        bytes[23] ^= 0x01;
        assert!(matches!(
            parse(&ns_ip(), &bytes),
            Err(Error::BadChecksum { .. })
        ));
    }

    #[test]
    fn every_truncation_below_24_bytes_is_an_error() {
        for len in 0..24 {
            assert_eq!(parse(&ns_ip(), &NS[..len]), Err(Error::Truncated { len }));
        }
    }

    #[test]
    fn other_icmpv6_types_are_unsupported() {
        let mut bytes = NS;
        bytes[0] = 128; // echo request
        assert_eq!(
            parse(&ns_ip(), &bytes),
            Err(Error::UnsupportedType { msg_type: 128 })
        );
    }

    #[test]
    fn a_hop_limit_below_255_is_refused() {
        let ip = Ipv6Repr {
            hop_limit: 64,
            ..ns_ip()
        };
        assert_eq!(parse(&ip, &NS), Err(Error::BadHopLimit { hop_limit: 64 }));
    }

    #[test]
    fn a_nonzero_code_is_refused() {
        let mut bytes = NS;
        bytes[1] = 1;
        rechecksum(&ns_ip(), &mut bytes);
        assert_eq!(parse(&ns_ip(), &bytes), Err(Error::BadCode { code: 1 }));
    }

    #[test]
    fn a_multicast_target_is_refused() {
        let mut bytes = NS;
        bytes[8] = 0xff;
        rechecksum(&ns_ip(), &mut bytes);
        assert!(matches!(
            parse(&ns_ip(), &bytes),
            Err(Error::MulticastTarget { .. })
        ));
    }

    /// NS with `options` instead of the source link-layer option, checksummed.
    fn ns_with_options(options: &[u8]) -> (Ipv6Repr, Vec<u8>) {
        let mut bytes = NS[..24].to_vec();
        bytes.extend_from_slice(options);
        let ip = Ipv6Repr {
            payload_len: bytes.len() as u16,
            ..ns_ip()
        };
        rechecksum(&ip, &mut bytes);
        (ip, bytes)
    }

    #[test]
    fn unknown_options_are_skipped() {
        let (ip, bytes) = ns_with_options(&[
            0x0e, 0x01, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
            0xff, // nonce option (RFC 3971), skipped
            0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source link-layer address
        ]);
        assert_eq!(parse(&ip, &bytes), Ok(ns()));
    }

    #[test]
    fn a_zero_length_option_is_refused() {
        let (ip, bytes) = ns_with_options(&[0x0e, 0x00, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse(&ip, &bytes),
            Err(Error::ZeroLengthOption { kind: 0x0e })
        );
    }

    #[test]
    fn an_option_longer_than_the_message_is_refused() {
        let (ip, bytes) = ns_with_options(&[0x0e, 0x02, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&ip, &bytes), Err(Error::OptionOverrun { offset: 0 }));
    }

    #[test]
    fn a_dangling_option_byte_is_refused() {
        let (ip, bytes) = ns_with_options(&[0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01]);
        assert_eq!(parse(&ip, &bytes), Err(Error::OptionOverrun { offset: 8 }));
    }

    #[test]
    fn a_two_unit_link_layer_option_is_refused_on_ethernet() {
        let (ip, bytes) = ns_with_options(&[0x01, 0x02, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse(&ip, &bytes),
            Err(Error::BadLinkLayerOptionLength { kind: 1, units: 2 })
        );
    }

    #[test]
    fn the_first_of_duplicate_link_layer_options_wins() {
        let (ip, bytes) = ns_with_options(&[
            0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // first
            0x01, 0x01, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, // duplicate
        ]);
        assert_eq!(parse(&ip, &bytes), Ok(ns()));
    }

    #[test]
    fn a_target_option_in_a_solicitation_is_ignored() {
        let (ip, bytes) = ns_with_options(&[0x02, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(
            parse(&ip, &bytes),
            Ok(NdpRepr::Solicit(NeighborSolicit {
                target: our_ip(),
                source_mac: None
            }))
        );
    }

    fn dad_ip(dst: Ipv6Addr, payload_len: u16) -> Ipv6Repr {
        Ipv6Repr {
            src_addr: Ipv6Addr::UNSPECIFIED,
            dst_addr: dst,
            payload_len,
            hop_limit: 255,
        }
    }

    #[test]
    fn dad_solicitation_with_a_source_link_layer_option_is_refused() {
        let ip = dad_ip(solicited_node(our_ip()), 32);
        let mut bytes = NS;
        rechecksum(&ip, &mut bytes);
        assert_eq!(parse(&ip, &bytes), Err(Error::DadWithSourceLinkLayer));
    }

    #[test]
    fn dad_solicitation_to_a_unicast_address_is_refused() {
        let ip = dad_ip(our_ip(), 24);
        let mut bytes = NS[..24].to_vec();
        rechecksum(&ip, &mut bytes);
        assert_eq!(
            parse(&ip, &bytes),
            Err(Error::DadNotToSolicitedNode { dst: our_ip() })
        );
    }

    #[test]
    fn solicited_advertisement_to_multicast_is_refused() {
        let ip = Ipv6Repr {
            dst_addr: ALL_NODES,
            ..na_ip()
        };
        let mut bytes = NA;
        rechecksum(&ip, &mut bytes);
        assert_eq!(
            parse(&ip, &bytes),
            Err(Error::SolicitedToMulticast { dst: ALL_NODES })
        );
    }

    #[test]
    fn unsolicited_advertisement_to_all_nodes_is_accepted() {
        let ip = Ipv6Repr {
            dst_addr: ALL_NODES,
            ..na_ip()
        };
        let repr = NdpRepr::Advert(NeighborAdvert {
            flags: NaFlags::OVERRIDE,
            target: our_ip(),
            target_mac: Some(OUR_MAC),
        });
        let bytes = emit(&repr, &ip);
        assert_eq!(bytes[2..4], [0xf9, 0x0c]); // computed independently
        assert_eq!(bytes[4], 0x20);
        assert_eq!(parse(&ip, &bytes), Ok(repr));
    }

    #[test]
    fn reserved_flag_bits_are_dropped() {
        assert_eq!(NaFlags::from_bits_truncate(0xff).bits(), 0xe0);
        assert_eq!(NaFlags::from_bits_truncate(0x1f), NaFlags::NONE);
    }

    #[test]
    fn flags_debug_names_each_set_flag() {
        assert_eq!(
            format!("{:?}", NaFlags::SOLICITED | NaFlags::OVERRIDE),
            "NaFlags(SOLICITED | OVERRIDE)"
        );
        assert_eq!(format!("{:?}", NaFlags::NONE), "NaFlags()");
    }

    #[test]
    fn solicited_node_keeps_the_low_24_bits() {
        assert_eq!(
            solicited_node("2001:db8::abcd:ef12:3456".parse().unwrap()),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            solicited_node(our_ip()),
            "ff02::1:ff00:10".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn solicited_node_addresses_are_recognised() {
        assert!(is_solicited_node("ff02::1:ff12:3456".parse().unwrap()));
        assert!(!is_solicited_node("ff02::1".parse().unwrap()));
        assert!(!is_solicited_node("ff02::2:ff12:3456".parse().unwrap()));
        assert!(!is_solicited_node(our_ip()));
    }
}
