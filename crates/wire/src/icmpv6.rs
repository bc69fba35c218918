//! The ICMPv6 header and checksum ([RFC 4443 section 2]).
//!
//! ```text
//!  0        8        16                32 bits
//! +--------+--------+-----------------+
//! |  type  |  code  |    checksum     |
//! +--------+--------+-----------------+
//! |           message body            |
//! ```
//!
//! The checksum covers an IPv6 pseudo-header (source, destination, upper-layer length, next
//! header 58; [RFC 8200 section 8.1]) followed by the whole ICMPv6 message
//! ([RFC 4443 section 2.3]). Which messages this crate reads is decided in [`crate::ndp`].
//!
//! [RFC 4443 section 2]: https://www.rfc-editor.org/rfc/rfc4443#section-2
//! [RFC 4443 section 2.3]: https://www.rfc-editor.org/rfc/rfc4443#section-2.3
//! [RFC 8200 section 8.1]: https://www.rfc-editor.org/rfc/rfc8200#section-8.1

use std::fmt;
use std::net::Ipv6Addr;
use std::ops::Range;

use crate::checksum;
use crate::ipv6::NEXT_HEADER_ICMPV6;

/// ICMPv6 type of a Router Solicitation ([RFC 4861 section 4.1]).
///
/// [RFC 4861 section 4.1]: https://www.rfc-editor.org/rfc/rfc4861#section-4.1
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement ([RFC 4861 section 4.2]).
///
/// [RFC 4861 section 4.2]: https://www.rfc-editor.org/rfc/rfc4861#section-4.2
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// ICMPv6 type of a Neighbor Solicitation ([RFC 4861 section 4.3]).
///
/// [RFC 4861 section 4.3]: https://www.rfc-editor.org/rfc/rfc4861#section-4.3
pub const NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement ([RFC 4861 section 4.4]).
///
/// [RFC 4861 section 4.4]: https://www.rfc-editor.org/rfc/rfc4861#section-4.4
pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;

mod field {
    use super::Range;

    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Range<usize> = 2..4;
}

/// Length of the ICMPv6 header (type, code, checksum).
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// Why a buffer is not an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the 4-byte header.
    Truncated {
        /// Bytes available.
        len: usize,
    },
}

impl Error {
    /// A short `snake_case` name for this failure, stable for use as a metric label.
    pub const fn metric_label(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "icmpv6_truncated",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { len } => write!(
                f,
                "ICMPv6 message of {len} bytes is shorter than the {HEADER_LEN}-byte header"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// The running sum of the IPv6 pseudo-header for an upper-layer message of `len` bytes
/// ([RFC 8200 section 8.1]).
///
/// [RFC 8200 section 8.1]: https://www.rfc-editor.org/rfc/rfc8200#section-8.1
fn pseudo_header_sum(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> u64 {
    // An ICMPv6 message inside one IPv6 packet is at most 65535 bytes, so the length fits;
    // saturating only matters for callers that hand in something no packet could carry.
    let upper_len = u32::try_from(len).unwrap_or(u32::MAX);
    let mut sum = checksum::add(0, &src.octets());
    sum = checksum::add(sum, &dst.octets());
    sum = checksum::add(sum, &upper_len.to_be_bytes());
    checksum::add(sum, &[0, 0, 0, NEXT_HEADER_ICMPV6])
}

/// The checksum `message` (the whole ICMPv6 message) should carry when sent from `src` to
/// `dst`: computed as if its checksum field were zero, whatever it holds
/// ([RFC 4443 section 2.3]). A `message` shorter than the header is summed as it is.
///
/// [RFC 4443 section 2.3]: https://www.rfc-editor.org/rfc/rfc4443#section-2.3
pub fn compute_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum = pseudo_header_sum(src, dst, message.len());
    match (
        message.get(..field::CHECKSUM.start),
        message.get(field::CHECKSUM.end..),
    ) {
        // Both parts start at even offsets, so the 16-bit words line up as in the message.
        (Some(before), Some(after)) => {
            sum = checksum::add(sum, before);
            sum = checksum::add(sum, after);
        }
        _ => sum = checksum::add(sum, message),
    }
    !checksum::fold(sum)
}

/// Whether `message`, received from `src` for `dst`, carries a correct checksum: the sum over
/// pseudo-header and message, checksum included, is all ones.
pub fn verify_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> bool {
    let sum = pseudo_header_sum(src, dst, message.len());
    checksum::fold(checksum::add(sum, message)) == 0xffff
}

/// A view of an ICMPv6 message.
///
/// After [`Icmpv6Packet::new_checked`] every accessor is panic-free.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking its length.
    ///
    /// Accessors panic if the buffer is shorter than [`HEADER_LEN`]; use
    /// [`Icmpv6Packet::new_checked`] for input.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds at least the header. The buffer is the
    /// whole message (the IPv6 payload), since the checksum covers all of it.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] if it is shorter than [`HEADER_LEN`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
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

    /// The message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::CHECKSUM.start], d[field::CHECKSUM.start + 1]])
    }

    /// Everything after the header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum is correct for a message from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        verify_checksum(src, dst, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Writes the message type.
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.buffer.as_mut()[field::TYPE] = msg_type;
    }

    /// Writes the message code.
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Writes the checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    /// Everything after the header, writable.
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and writes the checksum for a message from `src` to `dst`. Call it last, once
    /// the rest of the message is written.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let checksum = compute_checksum(src, dst, self.buffer.as_ref());
        self.set_checksum(checksum);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn src() -> Ipv6Addr {
        "fe80::5054:ff:fe12:3456".parse().unwrap()
    }

    fn dst() -> Ipv6Addr {
        "ff02::1:ff00:10".parse().unwrap()
    }

    /// A Neighbor Solicitation for 2001:db8::10 with a source link-layer address option. The
    /// checksum 0x42cc was computed independently of this crate (a Python one-liner over the
    /// RFC 8200 pseudo-header).
    #[rustfmt::skip]
    const NS: [u8; 32] = [
        0x87, // type 135
        0x00, // code 0
        0x42, 0xcc, // checksum
        0x00, 0x00, 0x00, 0x00, // reserved
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // target 2001:db8::10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source link-layer address option
    ];

    #[test]
    fn accessors_read_type_code_checksum_and_body() {
        let packet = Icmpv6Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(packet.msg_type(), NEIGHBOR_SOLICITATION);
        assert_eq!(packet.code(), 0);
        assert_eq!(packet.checksum(), 0x42cc);
        assert_eq!(packet.body(), &NS[4..]);
    }

    #[test]
    fn setters_write_type_code_and_checksum() {
        let mut bytes = NS;
        bytes[..4].fill(0);
        let mut packet = Icmpv6Packet::new_unchecked(&mut bytes[..]);
        packet.set_msg_type(135);
        packet.set_code(0);
        packet.fill_checksum(src(), dst());
        assert_eq!(bytes, NS);
    }

    #[test]
    fn a_known_good_checksum_verifies() {
        assert!(verify_checksum(src(), dst(), &NS));
        assert!(
            Icmpv6Packet::new_checked(&NS[..])
                .unwrap()
                .verify_checksum(src(), dst())
        );
    }

    #[test]
    fn compute_ignores_whatever_the_checksum_field_holds() {
        let mut bytes = NS;
        for junk in [0x0000u16, 0xffff, 0x1234] {
            bytes[2..4].copy_from_slice(&junk.to_be_bytes());
            assert_eq!(compute_checksum(src(), dst(), &bytes), 0x42cc);
        }
    }

    #[test]
    fn any_flipped_bit_fails_verification() {
        for byte in 0..NS.len() {
            for bit in 0..8 {
                let mut bytes = NS;
                bytes[byte] ^= 1 << bit;
                assert!(
                    !verify_checksum(src(), dst(), &bytes),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn the_checksum_covers_the_pseudo_header_addresses() {
        let other: Ipv6Addr = "fe80::1".parse().unwrap();
        assert!(!verify_checksum(other, dst(), &NS));
        assert!(!verify_checksum(src(), other, &NS));
    }

    #[test]
    fn the_checksum_covers_the_length() {
        let mut longer = NS.to_vec();
        longer.extend([0u8; 8]);
        assert!(!verify_checksum(src(), dst(), &longer));
    }

    #[test]
    fn odd_length_messages_checksum_and_verify() {
        let mut bytes = [128u8, 0, 0, 0, 1, 2, 3];
        let mut packet = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        packet.fill_checksum(src(), dst());
        assert!(packet.verify_checksum(src(), dst()));
    }

    #[test]
    fn messages_shorter_than_the_header_are_truncated() {
        for len in 0..4 {
            assert_eq!(
                Icmpv6Packet::new_checked(&NS[..len]).unwrap_err(),
                Error::Truncated { len }
            );
        }
    }
}
