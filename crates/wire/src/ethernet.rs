//! Ethernet II framing (RFC 894 layout): destination MAC, source MAC, EtherType, payload.
//!
//! Frames come from an `AF_PACKET` socket without the trailing FCS. A received frame may carry
//! padding after its payload (the IEEE 802.3 minimum is 60 bytes without FCS); the layers above
//! use their own length fields and ignore it.
//!
//! 802.1Q / 802.1ad tagged frames are not ours: the speaker listens on the interface that
//! carries the addresses (the kernel strips tags for VLAN sub-interfaces), so a tagged frame
//! seen here belongs to some other VLAN and [`EthernetRepr::parse`] refuses it.

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Range;

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`, every station on the link.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    /// `00:00:00:00:00:00`, the "unknown" hardware address of ARP requests (RFC 5227 section
    /// 2.1.1).
    pub const ZERO: Mac = Mac([0; 6]);

    /// The six bytes, first byte first on the wire.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether the group bit (least significant bit of the first byte) is set. Broadcast is a
    /// multicast address too.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is [`Mac::BROADCAST`].
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// The Ethernet multicast address an IPv6 multicast address maps to: `33:33` followed by the
    /// last four bytes of the IPv6 address ([RFC 2464 section 7]).
    ///
    /// [RFC 2464 section 7]: https://www.rfc-editor.org/rfc/rfc2464#section-7
    pub const fn ipv6_multicast(addr: Ipv6Addr) -> Mac {
        let o = addr.octets();
        Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl From<[u8; 6]> for Mac {
    fn from(octets: [u8; 6]) -> Self {
        Mac(octets)
    }
}

impl From<Mac> for [u8; 6] {
    fn from(mac: Mac) -> Self {
        mac.0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

/// The 16-bit EtherType of an Ethernet II frame ([IANA registry]). Kept as the raw number so
/// that every value round-trips; the ones this crate cares about are associated constants.
///
/// [IANA registry]: https://www.iana.org/assignments/ieee-802-numbers/ieee-802-numbers.xhtml
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP (RFC 826).
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6 (RFC 2464).
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service VLAN tag (QinQ).
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// The pre-standard QinQ tag some switches still send.
    pub const QINQ_LEGACY: EtherType = EtherType(0x9100);

    /// Whether this is one of the VLAN tag protocol identifiers, meaning the real EtherType
    /// follows a tag this crate does not parse.
    pub const fn is_vlan_tag(self) -> bool {
        matches!(self.0, 0x8100 | 0x88a8 | 0x9100)
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EtherType({self})")
    }
}

/// Why a buffer is not an Ethernet frame this crate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 14-byte header.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// An 802.1Q / 802.1ad tagged frame: it belongs to another VLAN (see the module docs).
    VlanTagged {
        /// The tag protocol identifier found in the EtherType position.
        tpid: EtherType,
    },
}

impl Error {
    /// A short `snake_case` name for this failure, stable for use as a metric label.
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "ethernet_truncated",
            Error::VlanTagged { .. } => "vlan_tagged",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len } => write!(
                f,
                "Ethernet frame of {len} bytes is shorter than the {HEADER_LEN}-byte header"
            ),
            Error::VlanTagged { tpid } => {
                write!(f, "Ethernet frame carries a VLAN tag ({tpid})")
            }
        }
    }
}

impl std::error::Error for Error {}

mod field {
    use super::Range;

    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The IEEE 802.3 minimum frame length without the 4-byte FCS. Frames built by this crate are
/// zero-padded to it: the kernel hands `AF_PACKET` frames to the driver as they are, and not
/// every driver pads short ones.
pub const MIN_FRAME_LEN: usize = 60;

/// A read (and, over a mutable buffer, write) view of an Ethernet II frame.
///
/// After [`EthernetFrame::new_checked`] every accessor is panic-free.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length.
    ///
    /// Accessors panic if the buffer is shorter than [`HEADER_LEN`]; use it only on buffers
    /// sized by [`EthernetRepr::buffer_len`], and [`EthernetFrame::new_checked`] for input.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds at least the header.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the buffer is shorter than [`HEADER_LEN`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds at least the header.
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

    /// The destination MAC.
    pub fn dst_addr(&self) -> Mac {
        mac_at(self.buffer.as_ref(), field::DESTINATION)
    }

    /// The source MAC.
    pub fn src_addr(&self) -> Mac {
        mac_at(self.buffer.as_ref(), field::SOURCE)
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        let data = self.buffer.as_ref();
        EtherType(u16::from_be_bytes([
            data[field::ETHERTYPE.start],
            data[field::ETHERTYPE.start + 1],
        ]))
    }

    /// Everything after the header, including any padding.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Writes the destination MAC.
    pub fn set_dst_addr(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&mac.0);
    }

    /// Writes the source MAC.
    pub fn set_src_addr(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac.0);
    }

    /// Writes the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Reads a MAC from a six-byte field. Callers pass fields inside a length-checked buffer.
pub(crate) fn mac_at(data: &[u8], field: Range<usize>) -> Mac {
    let mut octets = [0; 6];
    octets.copy_from_slice(&data[field]);
    Mac(octets)
}

/// The parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source MAC.
    pub src: Mac,
    /// Destination MAC.
    pub dst: Mac,
    /// What the payload is.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    ///
    /// # Errors
    ///
    /// [`Error::VlanTagged`] for 802.1Q / 802.1ad tagged frames (see the module docs).
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self, Error> {
        let ethertype = frame.ethertype();
        if ethertype.is_vlan_tag() {
            return Err(Error::VlanTagged { tpid: ethertype });
        }
        Ok(EthernetRepr {
            src: frame.src_addr(),
            dst: frame.dst_addr(),
            ethertype,
        })
    }

    /// The header length, [`HEADER_LEN`]; the payload comes on top.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame`.
    ///
    /// # Panics
    ///
    /// If the frame's buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The header of a broadcast ARP frame, followed by two payload bytes.
    const ARP_HEADER: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source
        0x08, 0x06, // EtherType: ARP
        0xaa, 0xbb, // payload
    ];

    fn repr() -> EthernetRepr {
        EthernetRepr {
            src: Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            dst: Mac::BROADCAST,
            ethertype: EtherType::ARP,
        }
    }

    #[test]
    fn frame_accessors_read_the_header_fields() {
        let frame = EthernetFrame::new_checked(&ARP_HEADER[..]).unwrap();
        assert_eq!(frame.dst_addr(), Mac::BROADCAST);
        assert_eq!(frame.src_addr(), Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(frame.ethertype(), EtherType::ARP);
        assert_eq!(frame.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn frame_setters_write_the_header_bytes() {
        let mut bytes = [0u8; 16];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_dst_addr(Mac::BROADCAST);
        frame.set_src_addr(Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        frame.set_ethertype(EtherType::ARP);
        frame.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, ARP_HEADER);
    }

    #[test]
    fn repr_parses_from_the_header_bytes() {
        let frame = EthernetFrame::new_checked(&ARP_HEADER[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&frame), Ok(repr()));
    }

    #[test]
    fn repr_emits_the_header_bytes() {
        let mut bytes = [0u8; 16];
        bytes[14..].copy_from_slice(&[0xaa, 0xbb]);
        repr().emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, ARP_HEADER);
        assert_eq!(repr().buffer_len(), 14);
    }

    #[test]
    fn a_header_of_exactly_fourteen_bytes_has_an_empty_payload() {
        let frame = EthernetFrame::new_checked(&ARP_HEADER[..14]).unwrap();
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn frames_shorter_than_the_header_are_truncated() {
        for len in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&ARP_HEADER[..len]).unwrap_err(),
                Error::Truncated { len }
            );
        }
    }

    #[test]
    fn vlan_tagged_frames_are_refused() {
        for tpid in [0x8100u16, 0x88a8, 0x9100] {
            let mut bytes = ARP_HEADER;
            bytes[12..14].copy_from_slice(&tpid.to_be_bytes());
            let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                EthernetRepr::parse(&frame),
                Err(Error::VlanTagged {
                    tpid: EtherType(tpid)
                })
            );
        }
    }

    #[test]
    fn mac_displays_as_lowercase_colon_separated_hex() {
        let mac = Mac([0xaa, 0xbb, 0x0c, 0x00, 0x01, 0xff]);
        assert_eq!(mac.to_string(), "aa:bb:0c:00:01:ff");
        assert_eq!(format!("{mac:?}"), "Mac(aa:bb:0c:00:01:ff)");
    }

    #[test]
    fn multicast_is_the_group_bit_of_the_first_byte() {
        assert!(Mac::BROADCAST.is_multicast());
        assert!(Mac::BROADCAST.is_broadcast());
        assert!(Mac([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
        assert!(Mac([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]).is_multicast());
        // Locally administered (bit 1) is not the group bit.
        assert!(!Mac([0x02, 0, 0, 0, 0, 1]).is_multicast());
        assert!(!Mac::ZERO.is_broadcast());
    }

    #[test]
    fn ipv6_multicast_mac_is_3333_and_the_last_four_address_bytes() {
        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(
            Mac::ipv6_multicast(all_nodes),
            Mac([0x33, 0x33, 0, 0, 0, 1])
        );
        let solicited: Ipv6Addr = "ff02::1:ff12:3456".parse().unwrap();
        assert_eq!(
            Mac::ipv6_multicast(solicited),
            Mac([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
    }

    #[test]
    fn ethertype_displays_as_four_hex_digits() {
        assert_eq!(EtherType::ARP.to_string(), "0x0806");
        assert_eq!(EtherType::IPV6.to_string(), "0x86dd");
    }

    #[test]
    fn mac_converts_from_and_to_byte_arrays() {
        let bytes = [2, 0, 0, 0, 0, 1];
        assert_eq!(<[u8; 6]>::from(Mac::from(bytes)), bytes);
        assert_eq!(Mac::from(bytes).octets(), bytes);
    }
}
