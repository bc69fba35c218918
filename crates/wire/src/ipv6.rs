//! The fixed IPv6 header ([RFC 8200 section 3]), only as far as Neighbor Discovery needs it.
//!
//! ```text
//!  0       4               12                              32 bits
//! +-------+---------------+-------------------------------+
//! |version| traffic class |          flow label           |
//! +-------+---------------+-------+-----------+-----------+
//! |        payload length         |next header| hop limit |
//! +-------------------------------+-----------+-----------+
//! |                source address (16 bytes)              |
//! |             destination address (16 bytes)            |
//! +-------------------------------------------------------+
//! ```
//!
//! NDP messages travel directly after this header (next header 58, ICMPv6). Extension headers
//! are not followed: [`Ipv6Repr::parse`] reports any other next header as
//! [`Error::NotIcmpv6`], which the responder treats as "not for us".
//!
//! [RFC 8200 section 3]: https://www.rfc-editor.org/rfc/rfc8200#section-3

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Range;

/// Next header value for ICMPv6 ([RFC 4443 section 1]).
///
/// [RFC 4443 section 1]: https://www.rfc-editor.org/rfc/rfc4443#section-1
pub const NEXT_HEADER_ICMPV6: u8 = 58;

mod field {
    use super::Range;

    pub(super) const VERSION_TC_FLOW: Range<usize> = 0..4;
    pub(super) const PAYLOAD_LEN: Range<usize> = 4..6;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: Range<usize> = 8..24;
    pub(super) const DST: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST.end;

/// Why a buffer is not an IPv6 packet carrying ICMPv6 that this crate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or than the header plus the payload length it declares.
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The version field is not 6.
    BadVersion {
        /// The version found.
        version: u8,
    },
    /// The next header is not ICMPv6: another upper layer, or an extension header this crate
    /// does not follow.
    NotIcmpv6 {
        /// The next header found.
        next_header: u8,
    },
    /// The source address is multicast, which no IPv6 packet may have ([RFC 4291 section
    /// 2.7]).
    ///
    /// [RFC 4291 section 2.7]: https://www.rfc-editor.org/rfc/rfc4291#section-2.7
    MulticastSource {
        /// The source address found.
        src: Ipv6Addr,
    },
}

impl Error {
    /// A short `snake_case` name for this failure, stable for use as a metric label.
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "ipv6_truncated",
            Error::BadVersion { .. } => "ipv6_bad_version",
            Error::NotIcmpv6 { .. } => "ipv6_not_icmpv6",
            Error::MulticastSource { .. } => "ipv6_multicast_source",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len, need } => {
                write!(f, "IPv6 packet has {len} bytes but needs {need}")
            }
            Error::BadVersion { version } => write!(f, "IP version {version} is not 6"),
            Error::NotIcmpv6 { next_header } => write!(
                f,
                "IPv6 next header {next_header} is not ICMPv6 ({NEXT_HEADER_ICMPV6})"
            ),
            Error::MulticastSource { src } => {
                write!(f, "IPv6 source address {src} is multicast")
            }
        }
    }
}

impl std::error::Error for Error {}

/// A view of an IPv6 packet: the fixed header and the payload it declares.
///
/// After [`Ipv6Packet::new_checked`] every accessor is panic-free.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking its length.
    ///
    /// Accessors panic if the buffer is shorter than the header plus the declared payload
    /// length; use [`Ipv6Packet::new_checked`] for input.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds the header and the whole declared payload.
    /// Bytes after the payload (Ethernet padding) are allowed and ignored.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the buffer is too short.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the header and the declared payload.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if it does not.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                len,
                need: HEADER_LEN,
            });
        }
        let need = HEADER_LEN + usize::from(self.payload_len());
        if len < need {
            return Err(Error::Truncated { len, need });
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (6 for IPv6).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TC_FLOW.start] >> 4
    }

    /// The traffic class.
    pub fn traffic_class(&self) -> u8 {
        let d = self.buffer.as_ref();
        (d[0] << 4) | (d[1] >> 4)
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_be_bytes([0, d[1] & 0x0f, d[2], d[3]])
    }

    /// The payload length field.
    pub fn payload_len(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::PAYLOAD_LEN.start], d[field::PAYLOAD_LEN.start + 1]])
    }

    /// The next header (58 for ICMPv6).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::SRC)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        ipv6_at(self.buffer.as_ref(), field::DST)
    }

    /// The payload, exactly as long as the payload length field says.
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Writes the version, traffic class and flow label (the flow label is truncated to 20
    /// bits).
    pub fn set_version_class_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let word = (u32::from(version & 0x0f) << 28)
            | (u32::from(traffic_class) << 20)
            | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VERSION_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    /// Writes the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes the next header.
    pub fn set_next_header(&mut self, next_header: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = next_header;
    }

    /// Writes the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Writes the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Writes the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// The payload, writable; as long as the payload length field says.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Reads an IPv6 address from a 16-byte field. Callers pass fields inside a length-checked
/// buffer.
pub(crate) fn ipv6_at(data: &[u8], field: Range<usize>) -> Ipv6Addr {
    let mut octets = [0; 16];
    octets.copy_from_slice(&data[field]);
    Ipv6Addr::from(octets)
}

/// A parsed IPv6 header whose payload is ICMPv6 (the only kind this crate reads or writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Length of the ICMPv6 message that follows.
    pub payload_len: u16,
    /// Hop limit; NDP requires 255 (see [`crate::ndp`]).
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Reads a checked packet.
    ///
    /// # Errors
    ///
    /// [`Error::BadVersion`], [`Error::NotIcmpv6`] (including every extension header) or
    /// [`Error::MulticastSource`], checked in that order.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self, Error> {
        let version = packet.version();
        if version != 6 {
            return Err(Error::BadVersion { version });
        }
        let next_header = packet.next_header();
        if next_header != NEXT_HEADER_ICMPV6 {
            return Err(Error::NotIcmpv6 { next_header });
        }
        let src = packet.src_addr();
        if src.is_multicast() {
            return Err(Error::MulticastSource { src });
        }
        Ok(Ipv6Repr {
            src_addr: src,
            dst_addr: packet.dst_addr(),
            payload_len: packet.payload_len(),
            hop_limit: packet.hop_limit(),
        })
    }

    /// The header length, [`HEADER_LEN`]; the payload comes on top.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `packet`: version 6, traffic class and flow label zero, next
    /// header ICMPv6.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_version_class_flow(6, 0, 0);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(NEXT_HEADER_ICMPV6);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The IPv6 header of a Neighbor Solicitation from fe80::5054:ff:fe12:3456 to the
    /// solicited-node address of 2001:db8::10, and its 32-byte payload (zeros here).
    #[rustfmt::skip]
    const HEADER: [u8; 40] = [
        0x60, 0x00, 0x00, 0x00, // version 6, traffic class 0, flow label 0
        0x00, 0x20, // payload length 32
        0x3a, // next header: ICMPv6
        0xff, // hop limit 255
        0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // source fe80::5054:ff:fe12:3456
        0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56,
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // destination ff02::1:ff00:10
        0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x10,
    ];

    fn packet_bytes() -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        bytes.extend((0..32).map(|i| i as u8));
        bytes
    }

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "fe80::5054:ff:fe12:3456".parse().unwrap(),
            dst_addr: "ff02::1:ff00:10".parse().unwrap(),
            payload_len: 32,
            hop_limit: 255,
        }
    }

    #[test]
    fn packet_accessors_read_the_header_fields() {
        let bytes = packet_bytes();
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0);
        assert_eq!(packet.flow_label(), 0);
        assert_eq!(packet.payload_len(), 32);
        assert_eq!(packet.next_header(), 58);
        assert_eq!(packet.hop_limit(), 255);
        assert_eq!(packet.src_addr(), repr().src_addr);
        assert_eq!(packet.dst_addr(), repr().dst_addr);
        assert_eq!(packet.payload(), &bytes[40..]);
    }

    #[test]
    fn traffic_class_and_flow_label_straddle_byte_boundaries() {
        let mut bytes = packet_bytes();
        bytes[..4].copy_from_slice(&[0x6a, 0xbc, 0xde, 0xf1]);
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 6);
        assert_eq!(packet.traffic_class(), 0xab);
        assert_eq!(packet.flow_label(), 0xc_def1);

        let mut written = [0u8; 40];
        Ipv6Packet::new_unchecked(&mut written[..]).set_version_class_flow(6, 0xab, 0xc_def1);
        assert_eq!(written[..4], [0x6a, 0xbc, 0xde, 0xf1]);
    }

    #[test]
    fn repr_parses_from_the_header_bytes() {
        let bytes = packet_bytes();
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv6Repr::parse(&packet), Ok(repr()));
    }

    #[test]
    fn repr_emits_the_header_bytes() {
        let mut bytes = [0xeeu8; 40];
        repr().emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, HEADER);
        assert_eq!(repr().buffer_len(), 40);
    }

    #[test]
    fn payload_stops_at_the_declared_length_ignoring_padding() {
        let mut bytes = packet_bytes();
        bytes.extend([0u8; 6]);
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload().len(), 32);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = packet_bytes();
        for len in 0..bytes.len() {
            let need = if len < 40 { 40 } else { 72 };
            assert_eq!(
                Ipv6Packet::new_checked(&bytes[..len]).unwrap_err(),
                Error::Truncated { len, need }
            );
        }
    }

    #[test]
    fn a_payload_length_beyond_the_buffer_is_truncated() {
        let mut bytes = packet_bytes();
        bytes[4..6].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::Truncated {
                len: 72,
                need: 40 + 0xffff
            }
        );
    }

    #[test]
    fn ipv4_version_is_refused() {
        let mut bytes = packet_bytes();
        bytes[0] = 0x45;
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Ipv6Repr::parse(&packet),
            Err(Error::BadVersion { version: 4 })
        );
    }

    #[test]
    fn extension_headers_and_other_protocols_are_not_icmpv6() {
        // Hop-by-hop options, TCP, UDP, routing, fragment, no next header.
        for next_header in [0u8, 6, 17, 43, 44, 59] {
            let mut bytes = packet_bytes();
            bytes[6] = next_header;
            let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                Ipv6Repr::parse(&packet),
                Err(Error::NotIcmpv6 { next_header })
            );
        }
    }

    #[test]
    fn multicast_source_is_refused() {
        let mut bytes = packet_bytes();
        bytes[8] = 0xff;
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert!(matches!(
            Ipv6Repr::parse(&packet),
            Err(Error::MulticastSource { .. })
        ));
    }
}
