//! The classic BPF program a speaker attaches to its packet sockets, so the kernel drops what
//! it never answers before it reaches user space: a flood of other traffic (or of ARP/NDP
//! whose fixed header is wrong) costs the kernel a few instructions per frame and the speaker
//! nothing, and the client's real questions are not queued behind it.
//!
//! What passes (everything else is dropped, and so is every frame this host sends):
//! - ARP for IPv4 over Ethernet (hardware type 1, protocol 0x0800, sizes 6 and 4), requests
//!   and replies, at least 42 bytes: questions to answer, and the replies and announcements
//!   that show another station claiming an IP (conflicts, takeover witnesses);
//! - IPv6 packets carrying ICMPv6 directly with hop limit 255 (RFC 4861 section 7.1.1 drops
//!   any other), of type Neighbor Solicitation (135) or Advertisement (136), at least 78
//!   bytes (Ethernet, IPv6 and the 24-byte NS/NA body).
//!
//! [`program`] gives the instructions (as `struct sock_filter` holds them); [`run`] executes
//! them the way the kernel does, for tests.

/// One classic BPF instruction: `struct sock_filter` of `<linux/filter.h>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Operation.
    pub code: u16,
    /// Instructions to skip when a jump's condition holds.
    pub jt: u8,
    /// Instructions to skip when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

// Opcode parts, from `<linux/bpf_common.h>`.
const LD: u16 = 0x00;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const LEN: u16 = 0x80;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;

/// Where the kernel's ancillary data starts (`SKF_AD_OFF`), and the packet type in it
/// (`SKF_AD_PKTTYPE`, compared with `PACKET_OUTGOING`).
const AD_PKTTYPE: u32 = 0xffff_f000 + 4;
/// `PACKET_OUTGOING`: a frame this host sends, looped back to its packet sockets.
pub const PACKET_OUTGOING: u32 = 4;

/// Bytes kept of a frame that passes: whole frames (ARP and NDP are far shorter).
const ACCEPT: u32 = 0xffff;

/// A jump target while the program is written: the next instruction, or a named one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Accept,
    Drop,
    Arp,
    Ipv6,
}

/// One instruction as written, before jumps become offsets.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Load (code, k) into the accumulator.
    Load(u16, u32),
    /// Jump (code, k, when true, when false).
    Jump(u16, u32, To, To),
    /// Return k.
    Ret(u32),
    /// A label: where `To` of the same name lands (no instruction).
    Label(To),
}

fn written() -> Vec<Step> {
    use Step::{Jump, Label, Load, Ret};
    vec![
        Load(LD | B | ABS, AD_PKTTYPE),
        Jump(JMP | JEQ, PACKET_OUTGOING, To::Drop, To::Next),
        Load(LD | H | ABS, 12),
        Jump(JMP | JEQ, 0x0806, To::Arp, To::Next),
        Jump(JMP | JEQ, 0x86dd, To::Ipv6, To::Drop),
        Label(To::Arp),
        Load(LD | W | LEN, 0),
        Jump(JMP | JGE, 42, To::Next, To::Drop),
        Load(LD | H | ABS, 14),
        Jump(JMP | JEQ, 1, To::Next, To::Drop),
        Load(LD | H | ABS, 16),
        Jump(JMP | JEQ, 0x0800, To::Next, To::Drop),
        Load(LD | H | ABS, 18),
        Jump(JMP | JEQ, 0x0604, To::Next, To::Drop),
        Load(LD | H | ABS, 20),
        Jump(JMP | JEQ, 1, To::Accept, To::Next),
        Jump(JMP | JEQ, 2, To::Accept, To::Drop),
        Label(To::Ipv6),
        Load(LD | W | LEN, 0),
        Jump(JMP | JGE, 78, To::Next, To::Drop),
        Load(LD | B | ABS, 20),
        Jump(JMP | JEQ, 58, To::Next, To::Drop),
        Load(LD | B | ABS, 21),
        Jump(JMP | JEQ, 255, To::Next, To::Drop),
        Load(LD | B | ABS, 54),
        Jump(JMP | JEQ, 135, To::Accept, To::Next),
        Jump(JMP | JEQ, 136, To::Accept, To::Drop),
        Label(To::Accept),
        Ret(ACCEPT),
        Label(To::Drop),
        Ret(0),
    ]
}

/// The filter's instructions, jumps resolved.
pub fn program() -> Vec<Insn> {
    let steps = written();
    // Index of each instruction, labels taking none.
    let mut labels = Vec::new();
    let mut index = 0usize;
    for step in &steps {
        match step {
            Step::Label(to) => labels.push((*to, index)),
            _ => index += 1,
        }
    }
    let at = |to: To, from: usize| -> u8 {
        let target = match to {
            To::Next => from + 1,
            named => labels
                .iter()
                .find(|(name, _)| *name == named)
                .map_or(from + 1, |(_, at)| *at),
        };
        // Every jump goes forward, and the program is far shorter than 256 instructions.
        u8::try_from(target - from - 1).unwrap_or(0)
    };
    let mut out = Vec::new();
    for step in steps {
        let here = out.len();
        match step {
            Step::Load(code, k) => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Step::Jump(code, k, yes, no) => out.push(Insn {
                code,
                jt: at(yes, here),
                jf: at(no, here),
                k,
            }),
            Step::Ret(k) => out.push(Insn {
                code: RET,
                jt: 0,
                jf: 0,
                k,
            }),
            Step::Label(_) => {}
        }
    }
    out
}

/// Runs `program` over `frame` as the kernel does (the subset used here); `pkttype` is the
/// frame's packet type (0 for one addressed to this host). Returns the bytes kept: 0 drops it.
/// A load past the end of the frame drops it, as in the kernel.
pub fn run(program: &[Insn], frame: &[u8], pkttype: u32) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    while let Some(insn) = program.get(pc) {
        pc += 1;
        let class = insn.code & 0x07;
        match class {
            c if c == LD => {
                let size = insn.code & 0x18;
                if insn.code & 0xe0 == LEN {
                    acc = u32::try_from(frame.len()).unwrap_or(u32::MAX);
                    continue;
                }
                if insn.k == AD_PKTTYPE {
                    acc = pkttype;
                    continue;
                }
                let Ok(at) = usize::try_from(insn.k) else {
                    return 0;
                };
                let width = match size {
                    s if s == W => 4,
                    s if s == H => 2,
                    _ => 1,
                };
                let Some(bytes) = frame.get(at..at + width) else {
                    return 0;
                };
                acc = bytes.iter().fold(0, |a, b| (a << 8) | u32::from(*b));
            }
            c if c == JMP => {
                let holds = match insn.code & 0xf0 {
                    op if op == JEQ => acc == insn.k,
                    op if op == JGE => acc >= insn.k,
                    _ => return 0,
                };
                pc += usize::from(if holds { insn.jt } else { insn.jf });
            }
            c if c == RET => return insn.k,
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{Mac, arp_probe, dad_ns, gratuitous_arp, unsolicited_na};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MAC: Mac = Mac([0x02, 0, 0, 0, 0, 1]);
    const V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

    fn v6() -> Ipv6Addr {
        "2001:db8::10".parse().unwrap()
    }

    fn passes(frame: &[u8]) -> bool {
        run(&program(), frame, 0) > 0
    }

    #[test]
    fn arp_requests_replies_and_neighbour_solicitations_and_adverts_pass() {
        assert!(passes(&arp_probe(MAC, V4)));
        for frame in gratuitous_arp(MAC, V4) {
            assert!(passes(&frame));
        }
        assert!(passes(&dad_ns(MAC, v6())));
        assert!(passes(&unsolicited_na(MAC, v6())));
    }

    #[test]
    fn frames_this_host_sends_are_dropped() {
        assert_eq!(run(&program(), &arp_probe(MAC, V4), PACKET_OUTGOING), 0);
    }

    #[test]
    fn other_traffic_is_dropped() {
        let mut ipv4_udp = vec![0xff; 12];
        ipv4_udp.extend_from_slice(&[0x08, 0x00]);
        ipv4_udp.resize(60, 0);
        assert!(!passes(&ipv4_udp));
        let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 1, 0x88, 0xcc];
        lldp.resize(60, 0);
        assert!(!passes(&lldp));
        assert!(!passes(&[0u8; 10]));
    }

    #[test]
    fn arp_with_a_wrong_fixed_header_or_opcode_is_dropped() {
        let good = arp_probe(MAC, V4);
        for (at, value) in [(15, 6), (17, 0xdd), (18, 8), (19, 16), (21, 3)] {
            let mut bad = good.clone();
            bad[at] = value;
            assert!(!passes(&bad), "byte {at} = {value}");
        }
        assert!(!passes(&good[..41]));
    }

    #[test]
    fn ndp_other_than_ns_and_na_or_with_a_routed_hop_limit_is_dropped() {
        let good = dad_ns(MAC, v6());
        let mut router_solicitation = good.clone();
        router_solicitation[54] = 133;
        assert!(!passes(&router_solicitation));
        let mut forwarded = good.clone();
        forwarded[21] = 254;
        assert!(!passes(&forwarded));
        let mut not_icmp = good.clone();
        not_icmp[20] = 17;
        assert!(!passes(&not_icmp));
        assert!(!passes(&good[..77]));
    }

    #[test]
    fn every_jump_lands_inside_the_program() {
        let program = program();
        for (at, insn) in program.iter().enumerate() {
            if insn.code & 0x07 == JMP {
                assert!(at + 1 + usize::from(insn.jt) < program.len());
                assert!(at + 1 + usize::from(insn.jf) < program.len());
            }
        }
        assert_eq!(program.last().map(|i| i.code), Some(RET));
    }
}
