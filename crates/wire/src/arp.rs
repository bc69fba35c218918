//! ARP for IPv4 over Ethernet ([RFC 826]), with the probe and announcement forms of
//! [RFC 5227].
//!
//! smoltcp's `ArpPacket` / `ArpRepr` read and write the bytes. What stays here is ferrolb's:
//! [`ArpRepr`] as plain data limited to what a LAN carries (hardware type 1, protocol 0x0800,
//! lengths 6 and 4, request or reply: a fixed 28-byte packet), the RFC 5227 forms built from
//! it, and an [`Error`] naming the first field that is not so. smoltcp's parser answers a bare
//! `Error` and passes unknown operations (RARP, InARP) through, so the checks are made here on
//! its accessors before it decodes.
//!
//! [RFC 826]: https://www.rfc-editor.org/rfc/rfc826
//! [RFC 5227]: https://www.rfc-editor.org/rfc/rfc5227

use std::net::Ipv4Addr;

use smoltcp::wire::{self as smol, ArpHardware, ArpPacket, EthernetProtocol};

use crate::mac::Mac;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// Why a buffer is not an Ethernet/IPv4 ARP request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the 28-byte Ethernet/IPv4 packet.
    #[error(
        "ARP packet of {len} bytes is shorter than the {PACKET_LEN} bytes of Ethernet/IPv4 ARP"
    )]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The hardware type is not Ethernet (1).
    #[error("ARP hardware type {htype} is not Ethernet (1)")]
    UnsupportedHardware {
        /// The hardware type found.
        htype: u16,
    },
    /// The protocol type is not IPv4 (0x0800).
    #[error("ARP protocol type {ptype:#06x} is not IPv4 (0x0800)")]
    UnsupportedProtocol {
        /// The protocol type found.
        ptype: u16,
    },
    /// The address lengths are not 6 (MAC) and 4 (IPv4).
    #[error("ARP address lengths {hlen}/{plen} are not 6/4 (Ethernet/IPv4)")]
    BadAddressLengths {
        /// Hardware address length found.
        hlen: u8,
        /// Protocol address length found.
        plen: u8,
    },
    /// The operation is neither request (1) nor reply (2), for example RARP or InARP.
    #[error("ARP operation {operation} is neither request (1) nor reply (2)")]
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

/// The ARP operation ([RFC 826], "ar$op"): only the two a LAN host answers or sends.
///
/// [RFC 826]: https://www.rfc-editor.org/rfc/rfc826
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// `ares_op$REQUEST` (1).
    Request,
    /// `ares_op$REPLY` (2).
    Reply,
}

impl From<ArpOperation> for smol::ArpOperation {
    fn from(operation: ArpOperation) -> Self {
        match operation {
            ArpOperation::Request => smol::ArpOperation::Request,
            ArpOperation::Reply => smol::ArpOperation::Reply,
        }
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
    /// Reads an ARP packet (an Ethernet payload, padding allowed), refusing anything but
    /// Ethernet/IPv4 requests and replies.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`], [`Error::UnsupportedHardware`], [`Error::UnsupportedProtocol`],
    /// [`Error::BadAddressLengths`] or [`Error::UnsupportedOperation`], checked in that order.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let len = bytes.len();
        if len < PACKET_LEN {
            return Err(Error::Truncated { len });
        }
        // The fixed header fields sit in the first 8 bytes, inside the 28 just checked.
        let packet = ArpPacket::new_unchecked(bytes);
        if let ArpHardware::Unknown(htype) = packet.hardware_type() {
            return Err(Error::UnsupportedHardware { htype });
        }
        let ptype = packet.protocol_type();
        if ptype != EthernetProtocol::Ipv4 {
            return Err(Error::UnsupportedProtocol {
                ptype: ptype.into(),
            });
        }
        let (hlen, plen) = (packet.hardware_len(), packet.protocol_len());
        if (hlen, plen) != (6, 4) {
            return Err(Error::BadAddressLengths { hlen, plen });
        }
        // Every check smoltcp makes has passed, so its parse cannot fail; should it ever,
        // the bytes are still refused.
        let Ok(smol::ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_hardware_addr,
            target_protocol_addr,
        }) = smol::ArpRepr::parse(&packet)
        else {
            return Err(Error::Truncated { len });
        };
        let operation = match operation {
            smol::ArpOperation::Request => ArpOperation::Request,
            smol::ArpOperation::Reply => ArpOperation::Reply,
            smol::ArpOperation::Unknown(operation) => {
                return Err(Error::UnsupportedOperation { operation });
            }
        };
        Ok(ArpRepr {
            operation,
            sender_mac: source_hardware_addr.into(),
            sender_ip: source_protocol_addr,
            target_mac: target_hardware_addr.into(),
            target_ip: target_protocol_addr,
        })
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buffer`.
    ///
    /// # Panics
    ///
    /// If `buffer` is shorter than [`PACKET_LEN`].
    pub fn emit(&self, buffer: &mut [u8]) {
        smol::ArpRepr::EthernetIpv4 {
            operation: self.operation.into(),
            source_hardware_addr: self.sender_mac.into(),
            source_protocol_addr: self.sender_ip,
            target_hardware_addr: self.target_mac.into(),
            target_protocol_addr: self.target_ip,
        }
        .emit(&mut ArpPacket::new_unchecked(buffer));
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

    /// "Who has 192.0.2.10? Tell 192.0.2.1", as the ARP payload of a capture.
    #[rustfmt::skip]
    const REQUEST: [u8; 28] = [
        0x00, 0x01,                         // hardware type: Ethernet
        0x08, 0x00,                         // protocol type: IPv4
        0x06,                               // hardware address length
        0x04,                               // protocol address length
        0x00, 0x01,                         // operation: request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC
        0xc0, 0x00, 0x02, 0x01,             // sender IP 192.0.2.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: unknown
        0xc0, 0x00, 0x02, 0x0a,             // target IP 192.0.2.10
    ];

    /// "192.0.2.10 is at 02:00:00:00:00:01", answering [`REQUEST`].
    #[rustfmt::skip]
    const REPLY: [u8; 28] = [
        0x00, 0x01,                         // hardware type: Ethernet
        0x08, 0x00,                         // protocol type: IPv4
        0x06, 0x04,                         // address lengths
        0x00, 0x02,                         // operation: reply
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
        0xc0, 0x00, 0x02, 0x0a,             // sender IP 192.0.2.10
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // target MAC: the requester
        0xc0, 0x00, 0x02, 0x01,             // target IP 192.0.2.1
    ];

    const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
    const THEIR_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

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
        repr.emit(&mut bytes);
        bytes
    }

    #[test]
    fn request_parses_from_bytes() {
        assert_eq!(ArpRepr::parse(&REQUEST), Ok(request()));
    }

    #[test]
    fn request_emits_the_same_bytes() {
        assert_eq!(emit(&request()), REQUEST);
    }

    #[test]
    fn reply_to_a_request_swaps_sender_and_target_and_fills_our_mac() {
        let reply = ArpRepr::reply_to(&request(), OUR_MAC);
        assert_eq!(emit(&reply), REPLY);
        assert_eq!(ArpRepr::parse(&REPLY), Ok(reply));
        assert_eq!(reply.operation, ArpOperation::Reply);
    }

    #[test]
    fn trailing_ethernet_padding_is_ignored() {
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REQUEST);
        assert_eq!(ArpRepr::parse(&padded), Ok(request()));
    }

    #[test]
    fn every_truncation_is_an_error() {
        for len in 0..28 {
            assert_eq!(
                ArpRepr::parse(&REQUEST[..len]),
                Err(Error::Truncated { len })
            );
        }
    }

    #[test]
    fn non_ethernet_hardware_is_refused() {
        let mut bytes = REQUEST;
        bytes[1] = 6; // IEEE 802
        assert_eq!(
            ArpRepr::parse(&bytes),
            Err(Error::UnsupportedHardware { htype: 6 })
        );
    }

    #[test]
    fn non_ipv4_protocol_is_refused() {
        let mut bytes = REQUEST;
        bytes[2..4].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            ArpRepr::parse(&bytes),
            Err(Error::UnsupportedProtocol { ptype: 0x86dd })
        );
    }

    #[test]
    fn wrong_address_lengths_are_refused() {
        // (255, 255) would make smoltcp's own length check ask for 528 bytes: the lengths are
        // named, not reported as a truncation.
        for (hlen, plen) in [(8u8, 4u8), (6, 16), (0, 0), (255, 255)] {
            let mut bytes = REQUEST;
            bytes[4] = hlen;
            bytes[5] = plen;
            assert_eq!(
                ArpRepr::parse(&bytes),
                Err(Error::BadAddressLengths { hlen, plen })
            );
        }
    }

    #[test]
    fn rarp_and_other_operations_are_refused() {
        // smoltcp's own parse accepts these as `ArpOperation::Unknown`.
        for operation in [0u16, 3, 4, 8, 9, 0xffff] {
            let mut bytes = REQUEST;
            bytes[6..8].copy_from_slice(&operation.to_be_bytes());
            assert_eq!(
                ArpRepr::parse(&bytes),
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
            0x00, 0x01,                         // request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
            0x00, 0x00, 0x00, 0x00,             // sender IP 0.0.0.0
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: zero
            0xc0, 0x00, 0x02, 0x0a,             // target IP: the probed address
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
            0x00, 0x01,                         // request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
            0xc0, 0x00, 0x02, 0x0a,             // sender IP: ours
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: zero
            0xc0, 0x00, 0x02, 0x0a,             // target IP: ours again
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
            0x00, 0x02,                         // reply
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC: ours
            0xc0, 0x00, 0x02, 0x0a,             // sender IP: ours
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // target MAC: ours
            0xc0, 0x00, 0x02, 0x0a,             // target IP: ours
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
