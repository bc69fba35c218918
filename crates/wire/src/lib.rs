//! ferrolb's packet byte contract: the ARP and NDP frames a layer-2 speaker reads and writes,
//! and the pure decision of what to answer. No I/O, no sockets, no clock, no dependencies: the
//! speaker's one raw-socket file hands frames in and writes the frames that come out.
//!
//! # Layout
//!
//! Each protocol module follows the same pattern: a zero-copy view `XxxPacket<T: AsRef<[u8]>>`
//! over a buffer, whose `new_checked` checks the length once so that every accessor after it is
//! panic-free, and a `XxxRepr` that holds the parsed fields, with `parse` (validates), `buffer_len`
//! and `emit` (writes into a view of exactly `buffer_len` bytes).
//!
//! - [`ethernet`]: Ethernet II header, [`Mac`], [`EtherType`] (RFC 894; RFC 2464 for IPv6 multicast
//!   MACs). 802.1Q-tagged frames are not ours.
//! - [`arp`]: ARP for IPv4 over Ethernet (RFC 826), RFC 5227 probes and announcements.
//! - [`ipv6`]: the fixed IPv6 header, only as far as NDP needs it (RFC 8200).
//! - [`icmpv6`]: ICMPv6 header and checksum over the IPv6 pseudo-header (RFC 4443 section 2.3).
//! - [`ndp`]: Neighbor Solicitation and Advertisement with link-layer address options (RFC 4861).
//! - [`answer`]: [`Responder::answer`], frame in, [`Verdict`] out.
//! - [`announce`]: frames sent on our own initiative (gratuitous ARP, unsolicited NA, ARP probe,
//!   DAD NS) and [`conflict_from`], which spots another host claiming one of our IPs.
//!
//! # Data flow
//!
//! ```text
//! raw socket ──frame bytes──> Responder::answer ──Verdict::Reply{frame}──> raw socket
//!                                   │
//!                                   └─ Verdict::Ignore(reason) / Verdict::Malformed(reason)
//!                                        ──> counter labelled reason.metric_label()
//! ownership gained ──> announce::{gratuitous_arp, unsolicited_na} ──frames──> raw socket
//! raw socket ──frame bytes──> announce::conflict_from(frame, ip, our_mac) ──Some(mac)──> log/metric
//! ```
//!
//! No input makes any function here panic: malformed bytes become `Err` / [`Verdict::Malformed`].
//! The only documented panics are `emit` methods handed a buffer shorter than `buffer_len`,
//! which is a caller bug, not an input.
//!
//! # Fuzzing
//!
//! `crates/wire/fuzz` is a cargo-fuzz project outside the main workspace; run it with
//! `cd crates/wire/fuzz && cargo +nightly fuzz run answer`. `cargo test` runs a deterministic
//! pseudo-random loop over the same entry points (`tests/no_panic.rs`).

pub mod announce;
pub mod answer;
pub mod arp;
mod checksum;
pub mod ethernet;
mod frame;
pub mod icmpv6;
pub mod ipv6;
pub mod ndp;

pub use announce::{
    arp_probe, conflict_from, dad_ns, gratuitous_arp, is_address_probe, unsolicited_na,
};
pub use answer::{Ignored, Malformed, Responder, Verdict};
pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, Mac};
pub use frame::{arp_frame, ndp_frame};
pub use icmpv6::Icmpv6Packet;
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use ndp::{NaFlags, NdpRepr, NeighborAdvert, NeighborPacket, NeighborSolicit, solicited_node};
