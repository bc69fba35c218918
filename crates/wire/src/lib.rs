//! ferrolb's packet byte contract: the ARP and NDP frames a layer-2 speaker reads and writes,
//! and the pure decision of what to answer. No I/O, no sockets, no clock: the speaker's one
//! raw-socket file hands frames in and writes the frames that come out.
//!
//! # Layout
//!
//! smoltcp's `wire` module (zero-copy `Packet` views and `Repr`s, fuzzed upstream) reads and
//! writes the Ethernet, ARP, IPv6, ICMPv6 and NDP bytes and computes the checksums. This crate
//! keeps what is ferrolb's own: which frames are refused and why (each refusal a named reason
//! with a metric label, where smoltcp answers a bare `Error`), which request gets which answer,
//! and the frames it sends on its own initiative. Modules form a DAG, each using only those
//! listed before it:
//!
//! - [`mac`]: [`Mac`], displayed as `ip link` prints it.
//! - [`arp`]: ARP for IPv4 over Ethernet (RFC 826), RFC 5227 probes and announcements.
//! - [`ndp`]: Neighbor Solicitation and Advertisement with link-layer address options and the
//!   RFC 4861 validity checks.
//! - [`reason`]: [`Ignored`] and [`Malformed`], why a frame gets no answer.
//! - `frame`: whole frames: parse into (addresses, packet) or build ([`arp_frame`],
//!   [`ndp_frame`]).
//! - [`answer`]: [`Responder::answer`], frame in, [`Verdict`] out.
//! - [`announce`]: frames sent on our own initiative (gratuitous ARP, unsolicited NA, ARP probe,
//!   DAD NS) and [`conflict_from`], which spots another host claiming one of our IPs.
//! - [`filter`]: the classic BPF program that keeps every other frame in the kernel.
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
pub mod filter;
mod frame;
pub mod mac;
pub mod ndp;
pub mod reason;

pub use announce::{
    arp_probe, claim_in, conflict_from, dad_ns, gratuitous_arp, is_address_probe, unsolicited_na,
};
pub use answer::{Responder, Verdict};
pub use arp::{ArpOperation, ArpRepr};
pub use frame::{MIN_FRAME_LEN, arp_frame, ndp_frame};
pub use mac::Mac;
pub use ndp::{NaFlags, NdpRepr, NeighborAdvert, NeighborSolicit, solicited_node};
pub use reason::{Ignored, Malformed};
