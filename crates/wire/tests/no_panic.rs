//! No input makes the responder or the conflict check panic: a deterministic pseudo-random
//! loop over random frames and over mutations of valid ones (the same entry points as the
//! cargo-fuzz target in `fuzz/`, which needs nightly; this runs in every `cargo test`).
//!
//! Every reply produced along the way must itself be a well-formed frame.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ferrolb_wire::{
    Mac, Responder, Verdict, arp_probe, conflict_from, dad_ns, gratuitous_arp, unsolicited_na,
};
use smoltcp::wire::Icmpv6Packet;

const OUR_MAC: Mac = Mac([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const THEIR_MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const OUR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const OUR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// Marsaglia's xorshift64: deterministic, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

struct Owned {
    v4: BTreeSet<Ipv4Addr>,
    v6: BTreeSet<Ipv6Addr>,
}

impl Owned {
    fn new() -> Self {
        Owned {
            v4: [OUR_V4].into(),
            v6: [OUR_V6].into(),
        }
    }

    fn responder(&self, mac: Mac) -> Responder<'_> {
        Responder {
            mac,
            owned_v4: &self.v4,
            owned_v6: &self.v6,
        }
    }
}

/// Valid frames another host might send: each one gets an answer from `OUR_MAC`.
fn questions() -> Vec<Vec<u8>> {
    let mut ns = dad_ns(THEIR_MAC, OUR_V6);
    // Turn the DAD probe into an ordinary solicitation from a unicast source.
    let their_v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    ns[22..38].copy_from_slice(&their_v6.octets());
    fix_ndp_checksum(&mut ns);
    vec![
        arp_probe(THEIR_MAC, OUR_V4),
        arp_request(),
        dad_ns(THEIR_MAC, OUR_V6),
        ns,
    ]
}

/// "Who has 192.0.2.10? Tell 192.0.2.1", broadcast.
fn arp_request() -> Vec<u8> {
    let mut frame = arp_probe(THEIR_MAC, OUR_V4);
    frame[28..32].copy_from_slice(&[192, 0, 2, 1]);
    frame
}

/// Valid frames that get no answer but go through every parser.
fn statements() -> Vec<Vec<u8>> {
    let mut frames = gratuitous_arp(THEIR_MAC, OUR_V4).to_vec();
    frames.push(unsolicited_na(THEIR_MAC, OUR_V6));
    frames
}

/// Recomputes the ICMPv6 checksum of an Ethernet + IPv6 + ICMPv6 frame, if it is long enough
/// to have one, so mutations reach the checks after the checksum.
fn fix_ndp_checksum(frame: &mut [u8]) {
    let Some(header) = frame.get(14..54) else {
        return;
    };
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let mut src = [0u8; 16];
    src.copy_from_slice(&header[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&header[24..40]);
    let Some(message) = frame.get_mut(54..54 + payload_len) else {
        return;
    };
    if message.len() < 4 {
        return;
    }
    Icmpv6Packet::new_unchecked(message).fill_checksum(&src.into(), &dst.into());
}

/// What the responder made of a frame: `None` for a reply, else the reason's label.
type Outcome = Option<&'static str>;

/// Runs every entry point on `frame`.
fn exercise(owned: &Owned, frame: &[u8]) -> Outcome {
    for ip in [IpAddr::V4(OUR_V4), IpAddr::V6(OUR_V6)] {
        let _ = conflict_from(frame, ip, OUR_MAC);
    }
    match owned.responder(OUR_MAC).answer(frame) {
        Verdict::Reply { frame: reply, .. } => {
            // Another station receiving our reply finds it well-formed: it is ignored (a
            // reply or advertisement), never malformed, and it claims the address for us.
            let verdict = owned.responder(THEIR_MAC).answer(&reply);
            assert!(
                matches!(verdict, Verdict::Ignore(_)),
                "reply {reply:02x?} to {frame:02x?} is {verdict:?}"
            );
            let claims = [IpAddr::V4(OUR_V4), IpAddr::V6(OUR_V6)]
                .into_iter()
                .filter(|ip| conflict_from(&reply, *ip, THEIR_MAC) == Some(OUR_MAC))
                .count();
            assert_eq!(claims, 1, "reply {reply:02x?} to {frame:02x?}");
            None
        }
        Verdict::Ignore(reason) => Some(reason.metric_label()),
        Verdict::Malformed(reason) => Some(reason.metric_label()),
    }
}

#[test]
fn valid_questions_are_answered_with_well_formed_replies() {
    let owned = Owned::new();
    for frame in questions() {
        assert_eq!(exercise(&owned, &frame), None, "no reply to {frame:02x?}");
    }
    for frame in statements() {
        assert!(exercise(&owned, &frame).is_some());
    }
}

#[test]
fn every_truncation_of_every_valid_frame_is_refused_without_panic() {
    let owned = Owned::new();
    for frame in questions().into_iter().chain(statements()) {
        for len in 0..frame.len() {
            let _ = exercise(&owned, &frame[..len]);
        }
        // Below the end of the packet proper (padding aside) nothing is answered.
        let packet_len = if frame[12..14] == [0x08, 0x06] {
            42
        } else {
            frame.len()
        };
        for len in 0..packet_len {
            assert!(!matches!(
                owned.responder(OUR_MAC).answer(&frame[..len]),
                Verdict::Reply { .. }
            ));
        }
    }
}

#[test]
fn random_bytes_of_random_lengths_never_panic() {
    let owned = Owned::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut frame = Vec::with_capacity(256);
    let mut reasons = BTreeSet::new();
    for i in 0..100_000 {
        frame.clear();
        let len = rng.below(160);
        frame.extend((0..len).map(|_| rng.byte()));
        // Steer three frames in four past the Ethernet checks, and some of those past the
        // fixed ARP or IPv6 header fields, so random bytes reach the deeper parsers.
        if len >= 60 && i % 4 != 0 {
            frame[..6].copy_from_slice(&Mac::BROADCAST.0);
            frame[6] &= 0xfe;
            if i % 2 == 0 {
                frame[12..14].copy_from_slice(&[0x08, 0x06]);
                if i % 8 < 4 {
                    frame[14..20].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 0x06, 0x04]);
                }
            } else {
                frame[12..14].copy_from_slice(&[0x86, 0xdd]);
                frame[14] = 0x60;
                if i % 8 < 4 {
                    let payload_len = (len - 54) as u16;
                    frame[18..20].copy_from_slice(&payload_len.to_be_bytes());
                    frame[20..22].copy_from_slice(&[58, 255]);
                    frame[22] &= 0xfe; // a source that is not multicast
                    frame[54] = 135 + (i % 16 < 8) as u8;
                    frame[55] = 0;
                    fix_ndp_checksum(&mut frame);
                }
            }
        }
        reasons.insert(exercise(&owned, &frame));
    }
    // Random bytes must reach past the outer layers, or the loop proves little.
    for deep in [
        Some("arp_unsupported_operation"),
        Some("ndp_zero_length_option"),
    ] {
        assert!(
            reasons.contains(&deep),
            "never reached {deep:?}: {reasons:?}"
        );
    }
}

#[test]
fn mutated_valid_frames_never_panic_and_sometimes_still_get_answers() {
    let owned = Owned::new();
    let seeds: Vec<Vec<u8>> = questions().into_iter().chain(statements()).collect();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..100_000 {
        let mut frame = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(5) {
                0 | 1 => {
                    let at = rng.below(frame.len());
                    frame[at] = rng.byte();
                }
                2 => {
                    let at = rng.below(frame.len());
                    frame[at] ^= 1 << rng.below(8);
                }
                3 => frame.truncate(rng.below(frame.len() + 1)),
                _ => frame.extend((0..rng.below(24)).map(|_| rng.byte())),
            }
            if frame.is_empty() {
                break;
            }
        }
        if rng.below(2) == 0 {
            fix_ndp_checksum(&mut frame);
        }
        *outcomes.entry(exercise(&owned, &frame)).or_insert(0) += 1;
    }
    // The mutations must not all be rejected early, or the loop proves little: many still get
    // answers, and most reasons to refuse are reached.
    let replies = outcomes.get(&None).copied().unwrap_or(0);
    assert!(replies > 1_000, "only {replies} replies: {outcomes:?}");
    assert!(outcomes.len() > 20, "few distinct outcomes: {outcomes:?}");
}
