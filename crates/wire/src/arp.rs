//! ARP for IPv4 over Ethernet ([RFC 826]), with the probe and announcement forms of
//! [RFC 5227].
//!
//! Only the one combination that exists on an Ethernet LAN is handled: hardware type 1
//! (Ethernet), protocol type 0x0800 (IPv4), address lengths 6 and 4, which fixes the packet at
//! 28 bytes:
//!
//! ```text
//!  0      2      4    5    6      8            14         18           24         28
//! +------+------+----+----+------+------------+----------+------------+----------+
//! | htype| ptype|hlen|plen| oper | sender MAC | sender IP| target MAC | target IP|
//! +------+------+----+----+------+------------+----------+------------+----------+
//! ```
//!
//! [`ArpPacket`] reads that fixed layout; [`ArpRepr::parse`] refuses anything whose header says
//! otherwise.
//!
//! [RFC 826]: https://www.rfc-editor.org/rfc/rfc826
//! [RFC 5227]: https://www.rfc-editor.org/rfc/rfc5227

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use crate::ethernet::{EtherType, Mac, mac_at};

/// Hardware type for Ethernet ([RFC 826], IANA "Hardware Types").
///
/// [RFC 826]: https://www.rfc-editor.org/rfc/rfc826
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    use super::Range;

    pub(super) const HTYPE: Range<usize> = 0..2;
    pub(super) const PTYPE: Range<usize> = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Range<usize> = 6..8;
    pub(super) const SHA: Range<usize> = 8..14;
    pub(super) const SPA: Range<usize> = 14..18;
    pub(super) const THA: Range<usize> = 18..24;
    pub(super) const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// Why a buffer is not an Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 28-byte Ethernet/IPv4 packet.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The hardware type is not Ethernet (1).
    UnsupportedHardware {
        /// The hardware type found.
        htype: u16,
    },
    /// The protocol type is not IPv4 (0x0800).
    UnsupportedProtocol {
        /// The protocol type found.
        ptype: u16,
    },
    /// The address lengths are not 6 (MAC) and 4 (IPv4).
    BadAddressLengths {
        /// Hardware address length found.
        hlen: u8,
        /// Protocol address length found.
        plen: u8,
    },
    /// The operation is neither request (1) nor reply (2), for example RARP or InARP.
    UnsupportedOperation {
        /// The operation code found.
        operation: u16,
    },
}

impl Error {
    /// A short `snake_case` name for this failure, stable for use as a metric label.
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "arp_truncated",
            Error::UnsupportedHardware { .. } => "arp_unsupported_hardware",
            Error::UnsupportedProtocol { .. } => "arp_unsupported_protocol",
            Error::BadAddressLengths { .. } => "arp_bad_address_lengths",
            Error::UnsupportedOperation { .. } => "arp_unsupported_operation",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len } => write!(
                f,
                "ARP packet of {len} bytes is shorter than the {PACKET_LEN} bytes of Ethernet/IPv4 ARP"
            ),
            Error::UnsupportedHardware { htype } => {
                write!(f, "ARP hardware type {htype} is not Ethernet (1)")
            }
            Error::UnsupportedProtocol { ptype } => {
                write!(f, "ARP protocol type {ptype:#06x} is not IPv4 (0x0800)")
            }
            Error::BadAddressLengths { hlen, plen } => write!(
                f,
                "ARP address lengths {hlen}/{plen} are not 6/4 (Ethernet/IPv4)"
            ),
            Error::UnsupportedOperation { operation } => {
                write!(
                    f,
                    "ARP operation {operation} is neither request (1) nor reply (2)"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// The ARP operation ([RFC 826], "ar$op").
///
/// [RFC 826]: https://www.rfc-editor.org/rfc/rfc826
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// `ares_op$REQUEST` (1).
    Request,
    /// `ares_op$REPLY` (2).
    Reply,
}

impl ArpOperation {
    /// The operation code on the wire.
    pub const fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet (the fixed 28-byte layout in the module docs).
///
/// After [`ArpPacket::new_checked`] every accessor is panic-free; the accessors do not look at
/// the header's address lengths, [`ArpRepr::parse`] does.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking its length.
    ///
    /// Accessors panic if the buffer is shorter than [`PACKET_LEN`]; use
    /// [`ArpPacket::new_checked`] for input.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking that it holds a whole Ethernet/IPv4 ARP packet. Bytes
    /// after it (Ethernet padding) are allowed and ignored.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if the buffer is shorter than [`PACKET_LEN`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds at least [`PACKET_LEN`] bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if it does not.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < PACKET_LEN {
            Err(Error::Truncated { len })
        } else {
            Ok(())
        }
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, field: Range<usize>) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[field.start], data[field.start + 1]])
    }

    fn ipv4_at(&self, field: Range<usize>) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(self.u16_at(field::PTYPE))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation code (1 request, 2 reply).
    pub fn operation(&self) -> u16 {
        self.u16_at(field::OPER)
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> Mac {
        mac_at(self.buffer.as_ref(), field::SHA)
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ipv4_at(field::SPA)
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> Mac {
        mac_at(self.buffer.as_ref(), field::THA)
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ipv4_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn set_u16_at(&mut self, field: Range<usize>, value: u16) {
        self.buffer.as_mut()[field].copy_from_slice(&value.to_be_bytes());
    }

    /// Writes the hardware type.
    pub fn set_hardware_type(&mut self, htype: u16) {
        self.set_u16_at(field::HTYPE, htype);
    }

    /// Writes the protocol type.
    pub fn set_protocol_type(&mut self, ptype: EtherType) {
        self.set_u16_at(field::PTYPE, ptype.0);
    }

    /// Writes the hardware address length.
    pub fn set_hardware_len(&mut self, hlen: u8) {
        self.buffer.as_mut()[field::HLEN] = hlen;
    }

    /// Writes the protocol address length.
    pub fn set_protocol_len(&mut self, plen: u8) {
        self.buffer.as_mut()[field::PLEN] = plen;
    }

    /// Writes the operation code.
    pub fn set_operation(&mut self, operation: u16) {
        self.set_u16_at(field::OPER, operation);
    }

    /// Writes the sender hardware address.
    pub fn set_sender_mac(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&mac.0);
    }

    /// Writes the sender protocol address.
    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&ip.octets());
    }

    /// Writes the target hardware address.
    pub fn set_target_mac(&mut self, mac: Mac) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&mac.0);
    }

    /// Writes the target protocol address.
    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&ip.octets());
    }
}

/// A parsed Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// The MAC of the host sending the packet (or, for a reply, the answer).
    pub sender_mac: Mac,
    /// The IPv4 address of the sender; `0.0.0.0` in an RFC 5227 probe.
    pub sender_ip: Ipv4Addr,
    /// The MAC of the target; zero (ignored) in requests.
    pub target_mac: Mac,
    /// The IPv4 address asked about (request) or answered to (reply).
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a checked packet, refusing anything but Ethernet/IPv4 requests and replies.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedHardware`], [`Error::UnsupportedProtocol`],
    /// [`Error::BadAddressLengths`] or [`Error::UnsupportedOperation`], checked in that order.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<Self, Error> {
        let htype = packet.hardware_type();
        if htype != HTYPE_ETHERNET {
            return Err(Error::UnsupportedHardware { htype });
        }
        let ptype = packet.protocol_type();
        if ptype != EtherType::IPV4 {
            return Err(Error::UnsupportedProtocol { ptype: ptype.0 });
        }
        let (hlen, plen) = (packet.hardware_len(), packet.protocol_len());
        if (hlen, plen) != (6, 4) {
            return Err(Error::BadAddressLengths { hlen, plen });
        }
        let operation = match packet.operation() {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            operation => return Err(Error::UnsupportedOperation { operation }),
        };
        Ok(ArpRepr {
            operation,
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    /// The packet length, [`PACKET_LEN`].
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into `packet`.
    ///
    /// # Panics
    ///
    /// If the packet's buffer is shorter than [`PACKET_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation.code());
        packet.set_sender_mac(self.sender_mac);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_mac(self.target_mac);
        packet.set_target_ip(self.target_ip);
    }

    /// Whether this is an [RFC 5227 section 2.1.1] probe: a request with sender IP `0.0.0.0`,
    /// sent by a host checking whether `target_ip` is free.
    ///
    /// [RFC 5227 section 2.1.1]: https://www.rfc-editor.org/rfc/rfc5227#section-2.1.1
    pub fn is_probe(&self) -> bool {
        self.operation == ArpOperation::Request && self.sender_ip.is_unspecified()
    }

    /// Whether this is a gratuitous ARP: sender and target IP are the same, announcing the
    /// sender's binding rather than asking ([RFC 5227 section 2.3], [RFC 5944 section 4.6]).
    ///
    /// [RFC 5227 section 2.3]: https://www.rfc-editor.org/rfc/rfc5227#section-2.3
    /// [RFC 5944 section 4.6]: https://www.rfc-editor.org/rfc/rfc5944#section-4.6
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip && !self.sender_ip.is_unspecified()
    }

    /// The reply a host owning `request.target_ip` sends: our MAC for that IP, addressed to
    /// the requester ([RFC 826], "Packet Reception": swap sender and target, fill in the
    /// hardware address, set the opcode to reply).
    ///
    /// For a probe the target IP of the reply is `0.0.0.0`, the prober's sender IP, which is
    /// what an RFC 5227 prober looks for (any ARP whose sender IP is the probed address) and
    /// what Linux sends.
    ///
    /// [RFC 826]: https://www.rfc-editor.org/rfc/rfc826
    pub fn reply_to(request: &ArpRepr, our_mac: Mac) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: request.target_ip,
            target_mac: request.sender_mac,
            target_ip: request.sender_ip,
        }
    }

    /// A gratuitous ARP request, the [RFC 5227 section 2.3] "ARP Announcement": sender and
    /// target IP both `ip`, target MAC zero. Send it to [`Mac::BROADCAST`].
    ///
    /// [RFC 5227 section 2.3]: https://www.rfc-editor.org/rfc/rfc5227#section-2.3
    pub fn gratuitous_request(mac: Mac, ip: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: Mac::ZERO,
            target_ip: ip,
        }
    }

    /// A gratuitous ARP reply ([RFC 5944 section 4.6]): sender and target IP both `ip`, and
    /// sender and target MAC both `mac`. Some hosts update their caches only from replies, so
    /// announcements send both forms. Send it to [`Mac::BROADCAST`].
    ///
    /// [RFC 5944 section 4.6]: https://www.rfc-editor.org/rfc/rfc5944#section-4.6
    pub fn gratuitous_reply(mac: Mac, ip: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: mac,
            target_ip: ip,
        }
    }

    /// An [RFC 5227 section 2.1.1] probe for `ip`: a request with sender IP `0.0.0.0` (so no
    /// cache learns anything from it) and target MAC zero. Send it to [`Mac::BROADCAST`].
    ///
    /// [RFC 5227 section 2.1.1]: https://www.rfc-editor.org/rfc/rfc5227#section-2.1.1
    pub fn probe(mac: Mac, ip: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: Mac::ZERO,
            target_ip: ip,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// "Who has 192.168.1.10? Tell 192.168.1.1", as the ARP payload of a capture.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, // hardware type: Ethernet
        0x08, 0x00, // protocol type: IPv4
        0x06, // hardware address length
        0x04, // protocol address length
        0x00, 0x01, // operation: request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC
        0xc0, 0xa8, 0x01, 0x01, // sender IP 192.168.1.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: unknown
        0xc0, 0xa8, 0x01, 0x0a, // target IP 192.168.1.10
    ];

    /// "192.168.1.10 is at 02:00:00:00:00:01", answering [`REQUEST`].
    const REPLY: [u8; 28] = [
        0x00, 0x01, // hardware type: Ethernet
        0x08, 0x00, // protocol type: IPv4
        0x06, 0x04, // address lengths
        0x00, 0x02, // operation: reply
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
        0xc0, 0xa8, 0x01, 0x0a, // sender IP 192.168.1.10
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // target MAC: the requester
        0xc0, 0xa8, 0x01, 0x01, // target IP 192.168.1.1
    ];

    const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
    const THEIR_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

    fn request() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: THEIR_MAC,
            sender_ip: THEIR_IP,
            target_mac: Mac::ZERO,
            target_ip: OUR_IP,
        }
    }

    fn emit(repr: &ArpRepr) -> [u8; 28] {
        let mut bytes = [0xeeu8; 28];
        repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
        bytes
    }

    fn parse(bytes: &[u8]) -> Result<ArpRepr, Error> {
        ArpRepr::parse(&ArpPacket::new_checked(bytes)?)
    }

    #[test]
    fn packet_accessors_read_a_request() {
        let packet = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), EtherType::IPV4);
        assert_eq!(packet.hardware_len(), 6);
        assert_eq!(packet.protocol_len(), 4);
        assert_eq!(packet.operation(), 1);
        assert_eq!(packet.sender_mac(), THEIR_MAC);
        assert_eq!(packet.sender_ip(), THEIR_IP);
        assert_eq!(packet.target_mac(), Mac::ZERO);
        assert_eq!(packet.target_ip(), OUR_IP);
    }

    #[test]
    fn packet_setters_write_a_request() {
        let mut bytes = [0u8; 28];
        let mut packet = ArpPacket::new_unchecked(&mut bytes[..]);
        packet.set_hardware_type(1);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(1);
        packet.set_sender_mac(THEIR_MAC);
        packet.set_sender_ip(THEIR_IP);
        packet.set_target_mac(Mac::ZERO);
        packet.set_target_ip(OUR_IP);
        assert_eq!(bytes, REQUEST);
    }

    #[test]
    fn request_parses_from_bytes() {
        assert_eq!(parse(&REQUEST), Ok(request()));
    }

    #[test]
    fn request_emits_the_same_bytes() {
        assert_eq!(emit(&request()), REQUEST);
    }

    #[test]
    fn reply_to_a_request_swaps_sender_and_target_and_fills_our_mac() {
        let reply = ArpRepr::reply_to(&request(), OUR_MAC);
        assert_eq!(emit(&reply), REPLY);
        assert_eq!(parse(&REPLY), Ok(reply));
        assert_eq!(reply.operation, ArpOperation::Reply);
    }

    #[test]
    fn trailing_ethernet_padding_is_ignored() {
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REQUEST);
        assert_eq!(parse(&padded), Ok(request()));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..28 {
            assert_eq!(parse(&REQUEST[..len]), Err(Error::Truncated { len }));
        }
    }

    #[test]
    fn non_ethernet_hardware_is_refused() {
        let mut bytes = REQUEST;
        bytes[1] = 6; // IEEE 802
        assert_eq!(parse(&bytes), Err(Error::UnsupportedHardware { htype: 6 }));
    }

    #[test]
    fn non_ipv4_protocol_is_refused() {
        let mut bytes = REQUEST;
        bytes[2..4].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            parse(&bytes),
            Err(Error::UnsupportedProtocol { ptype: 0x86dd })
        );
    }

    #[test]
    fn wrong_address_lengths_are_refused() {
        for (hlen, plen) in [(8u8, 4u8), (6, 16), (0, 0)] {
            let mut bytes = REQUEST;
            bytes[4] = hlen;
            bytes[5] = plen;
            assert_eq!(parse(&bytes), Err(Error::BadAddressLengths { hlen, plen }));
        }
    }

    #[test]
    fn rarp_and_other_operations_are_refused() {
        for operation in [0u16, 3, 4, 8, 9, 0xffff] {
            let mut bytes = REQUEST;
            bytes[6..8].copy_from_slice(&operation.to_be_bytes());
            assert_eq!(
                parse(&bytes),
                Err(Error::UnsupportedOperation { operation })
            );
        }
    }

    #[test]
    fn probe_has_unspecified_sender_ip_and_zero_target_mac() {
        let probe = ArpRepr::probe(OUR_MAC, OUR_IP);
        #[rustfmt::skip]
        let expected: [u8; 28] = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
            0x00, 0x01, // request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
            0x00, 0x00, 0x00, 0x00, // sender IP 0.0.0.0
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: zero
            0xc0, 0xa8, 0x01, 0x0a, // target IP: the probed address
        ];
        assert_eq!(emit(&probe), expected);
        assert!(probe.is_probe());
        assert!(!probe.is_gratuitous());
    }

    #[test]
    fn gratuitous_request_names_the_ip_as_sender_and_target() {
        let announce = ArpRepr::gratuitous_request(OUR_MAC, OUR_IP);
        #[rustfmt::skip]
        let expected: [u8; 28] = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
            0x00, 0x01, // request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
            0xc0, 0xa8, 0x01, 0x0a, // sender IP: ours
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: zero
            0xc0, 0xa8, 0x01, 0x0a, // target IP: ours again
        ];
        assert_eq!(emit(&announce), expected);
        assert!(announce.is_gratuitous());
        assert!(!announce.is_probe());
    }

    #[test]
    fn gratuitous_reply_names_our_mac_as_sender_and_target() {
        let announce = ArpRepr::gratuitous_reply(OUR_MAC, OUR_IP);
        #[rustfmt::skip]
        let expected: [u8; 28] = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
            0x00, 0x02, // reply
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
            0xc0, 0xa8, 0x01, 0x0a, // sender IP: ours
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // target MAC: ours
            0xc0, 0xa8, 0x01, 0x0a, // target IP: ours
        ];
        assert_eq!(emit(&announce), expected);
        assert!(announce.is_gratuitous());
    }

    #[test]
    fn an_ordinary_request_is_neither_probe_nor_gratuitous() {
        assert!(!request().is_probe());
        assert!(!request().is_gratuitous());
    }

    #[test]
    fn reply_to_a_probe_targets_the_unspecified_address() {
        let probe = ArpRepr::probe(THEIR_MAC, OUR_IP);
        let reply = ArpRepr::reply_to(&probe, OUR_MAC);
        assert_eq!(reply.sender_ip, OUR_IP);
        assert_eq!(reply.target_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!(reply.target_mac, THEIR_MAC);
    }
}
