//! Feeds arbitrary bytes to the responder's decision function and the conflict check: no input
//! may panic, and every reply must be a frame another station accepts as well-formed.
//!
//! Run with `cd crates/wire/fuzz && cargo +nightly fuzz run answer` (needs `cargo install
//! cargo-fuzz`). `tests/no_panic.rs` runs a deterministic version of this on stable.
//!
//! cargo-fuzz builds with `cfg(fuzzing)`, under which smoltcp accepts every ICMPv6 checksum, so
//! random bytes reach the NDP checks behind it; `tests/no_panic.rs` fixes checksums instead.

#![no_main]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_wire::{Mac, Responder, Verdict, conflict_from};
use libfuzzer_sys::fuzz_target;

const OUR_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const OUR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const OUR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

fuzz_target!(|frame: &[u8]| {
    let owned_v4: BTreeSet<Ipv4Addr> = [OUR_V4].into();
    let owned_v6: BTreeSet<Ipv6Addr> = [OUR_V6].into();
    let us = Responder {
        mac: OUR_MAC,
        owned_v4: &owned_v4,
        owned_v6: &owned_v6,
    };
    for ip in [IpAddr::V4(OUR_V4), IpAddr::V6(OUR_V6)] {
        let _ = conflict_from(frame, ip, OUR_MAC);
    }
    if let Verdict::Reply { frame: reply, .. } = us.answer(frame) {
        let them = Responder {
            mac: THEIR_MAC,
            ..us
        };
        let verdict = them.answer(&reply);
        assert!(
            matches!(verdict, Verdict::Ignore(_)),
            "our reply {reply:02x?} is {verdict:?} to another station"
        );
    }
});
