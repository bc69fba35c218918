//! [`Mac`], the hardware address in every answer, verdict and conflict report.
//!
//! smoltcp's `EthernetAddress` carries the same six bytes but displays them as
//! `02-00-00-00-00-01`; a `Mac` displays as `02:00:00:00:00:01`, the form `ip link` prints and
//! operators search for in logs and Kubernetes Events. The codec modules convert at their edge.

use std::fmt;
use std::net::Ipv6Addr;

use smoltcp::wire::EthernetAddress;

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

impl From<EthernetAddress> for Mac {
    fn from(addr: EthernetAddress) -> Self {
        Mac(addr.0)
    }
}

impl From<Mac> for EthernetAddress {
    fn from(mac: Mac) -> Self {
        EthernetAddress(mac.0)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn mac_displays_as_lowercase_colon_separated_hex_unlike_smoltcp() {
        let mac = Mac([0xaa, 0xbb, 0x0c, 0x00, 0x01, 0xff]);
        assert_eq!(mac.to_string(), "aa:bb:0c:00:01:ff");
        assert_eq!(format!("{mac:?}"), "Mac(aa:bb:0c:00:01:ff)");
        // The reason this type exists.
        assert_eq!(EthernetAddress::from(mac).to_string(), "aa-bb-0c-00-01-ff");
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
    fn mac_converts_from_and_to_byte_arrays_and_smoltcp() {
        let bytes = [2, 0, 0, 0, 0, 1];
        assert_eq!(<[u8; 6]>::from(Mac::from(bytes)), bytes);
        assert_eq!(Mac::from(bytes).octets(), bytes);
        assert_eq!(Mac::from(EthernetAddress(bytes)), Mac(bytes));
    }
}
