//! Forgery: crafted frames and gossip datagrams a speaker must survive, and replays of real
//! ones.
//!
//! - [`malformed_arp_frames`]: ARP requests truncated at every length, with wrong sizes, bad
//!   opcodes and flipped bytes (what `ferrolb-lab flood` sends);
//! - [`forged`]: gossip datagrams a speaker must drop, each kind for the reason it stands for;
//! - [`captured_udp_payloads`] reads real gossip datagrams off a node's link with tcpdump, and
//!   [`send_from_client`] sends any of them from the client namespace.

use std::net::{IpAddr, SocketAddr};

use crate::binaries::binary;
use crate::prober::now_us;
use crate::topology::{client_ns, in_ns, node_ip, node_ns};

/// A xorshift64 sequence: deterministic bytes for a seed, no RNG dependency.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// `count` malformed ARP frames from `mac`, built by mutating a valid request for 192.0.2.200 in
/// turn: truncated, a wrong hardware size, a bad opcode, one byte flipped.
pub fn malformed_arp_frames(mac: [u8; 6], count: u32) -> impl Iterator<Item = Vec<u8>> {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[192, 0, 2, 250, 0, 0, 0, 0, 0, 0, 192, 0, 2, 200]);
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    (0..count).map(move |i| {
        let seed = next();
        let mut frame = arp.clone();
        match i % 4 {
            0 => frame.truncate(14 + (seed as usize % 28)),
            1 => frame[18] = (seed % 255) as u8 + 1,
            2 => frame[20] = 0xff,
            _ => {
                let at = 14 + (seed as usize % (frame.len() - 14));
                frame[at] ^= (seed >> 8) as u8 | 1;
            }
        }
        frame
    })
}

/// A mix of junk for a link flood, `count` frames to `dst` from `src`, in four kinds taken in
/// turn: IPv4 UDP and IPv6 UDP (other traffic the speaker never looks at), malformed ARP (as
/// [`malformed_arp_frames`]) and Neighbor Solicitations with a wrong checksum (well-formed
/// enough to reach the speaker, which must drop them).
pub fn junk_frames(src: [u8; 6], dst: [u8; 6], count: u32) -> Vec<Vec<u8>> {
    let ethernet = |ethertype: [u8; 2]| {
        let mut frame = dst.to_vec();
        frame.extend_from_slice(&src);
        frame.extend_from_slice(&ethertype);
        frame
    };
    let udp4 = {
        let mut frame = ethernet([0x08, 0x00]);
        // IPv4, 20-byte header, 28 bytes in all, UDP, 192.0.2.2 -> 192.0.2.250, port 9.
        frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        frame.extend_from_slice(&[192, 0, 2, 2, 192, 0, 2, 250, 0x30, 0x39, 0, 9, 0, 8, 0, 0]);
        frame.resize(60, 0);
        frame
    };
    let udp6 = {
        let mut frame = ethernet([0x86, 0xdd]);
        frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        frame.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        frame.extend_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfa,
        ]);
        frame.extend_from_slice(&[0x30, 0x39, 0, 9, 0, 8, 0, 0]);
        frame
    };
    let target: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfa);
    let bad_ns = {
        let mut frame = ferrolb_wire::dad_ns(ferrolb_wire::Mac(src), target);
        frame[..6].copy_from_slice(&dst);
        // The ICMPv6 checksum (bytes 56-57) made wrong.
        frame[56] ^= 0xff;
        frame
    };
    let mut arp = malformed_arp_frames(src, count.div_ceil(4)).map(|mut f| {
        f[..6].copy_from_slice(&dst);
        f
    });
    (0..count)
        .map(|i| match i % 4 {
            0 => udp4.clone(),
            1 => udp6.clone(),
            2 => arp.next().unwrap_or_else(|| udp4.clone()),
            _ => bad_ns.clone(),
        })
        .collect()
}

/// Kinds of datagrams a speaker must drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Random bytes of random length (`malformed`, or `unknown_key` when the first byte happens
    /// to be the version).
    Random,
    /// Well-formed, sealed with a key the speakers do not hold (`unknown_key`).
    WrongKey,
    /// Sealed with another key but carrying the real key's id, as an attacker who copied a
    /// header would send (`forged`).
    SpoofedKeyId,
    /// A captured datagram with one ciphertext byte flipped (`forged`).
    Tampered,
}

/// `count` datagrams of kind `kind`; `captured` (a real datagram) is needed for
/// [`Forgery::SpoofedKeyId`] and [`Forgery::Tampered`].
///
/// # Panics
/// Never for the kinds that need no capture; for the others, when `captured` is too short to be
/// a sealed datagram.
pub fn forged(kind: Forgery, count: usize, seed: u64, captured: Option<&[u8]>) -> Vec<Vec<u8>> {
    use ferrolb_speaker::gossip::seal::{KeyRing, Sealer};
    let mut next = xorshift(seed);
    let wrong = Sealer::new(
        KeyRing::from_lines("not-the-lab-key").expect("a non-empty key text is a key ring"),
        10_000,
    );
    let wall_ms = now_us() / 1000;
    (0..count)
        .map(|_| {
            let mut nonce = [0u8; 24];
            for chunk in nonce.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
            }
            let payload: Vec<u8> = (0..(next() % 200 + 1)).map(|_| next() as u8).collect();
            match kind {
                Forgery::Random => (0..(next() % 1400 + 1)).map(|_| next() as u8).collect(),
                Forgery::WrongKey => wrong.seal(&payload, wall_ms, nonce),
                Forgery::SpoofedKeyId => {
                    let real = captured.expect("a captured datagram for SpoofedKeyId");
                    let mut d = wrong.seal(&payload, wall_ms, nonce);
                    d[1..5].copy_from_slice(&real[1..5]);
                    d
                }
                Forgery::Tampered => {
                    let mut d = captured.expect("a captured datagram for Tampered").to_vec();
                    assert!(d.len() > 30, "a sealed datagram is longer than its header");
                    let at = 29 + (next() as usize % (d.len() - 29));
                    d[at] ^= 1 << (next() % 8);
                    d
                }
            }
        })
        .collect()
}

/// IPv4 packets printed by `tcpdump -x` (hex lines under each packet's summary line).
pub fn tcpdump_packets(text: &str) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if line.starts_with(char::is_whitespace) && trimmed.starts_with("0x") {
            let Some((_, hex)) = trimmed.split_once(':') else {
                continue;
            };
            let bytes = current.get_or_insert_with(Vec::new);
            for word in hex.split_whitespace() {
                for pair in word.as_bytes().chunks(2) {
                    if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(pair), 16) {
                        bytes.push(b);
                    }
                }
            }
        } else if let Some(done) = current.take() {
            packets.push(done);
        }
    }
    packets.extend(current);
    packets
}

/// The UDP payload of an IPv4 packet, with its source and destination.
pub fn udp_payload(packet: &[u8]) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[9] != 17 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let udp = packet.get(ihl..total.min(packet.len()))?;
    if udp.len() < 8 {
        return None;
    }
    let src = IpAddr::from([packet[12], packet[13], packet[14], packet[15]]);
    let dst = IpAddr::from([packet[16], packet[17], packet[18], packet[19]]);
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    let payload = udp.get(8..len.min(udp.len()))?;
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        payload.to_vec(),
    ))
}

/// Captures `count` gossip datagrams arriving at node `node` (with tcpdump in its namespace);
/// the UDP payloads.
///
/// # Errors
/// When tcpdump fails or sees none within 10 s.
pub fn captured_udp_payloads(prefix: &str, node: u8, count: u32) -> anyhow::Result<Vec<Vec<u8>>> {
    let filter = format!("udp dst port 7946 and dst host {}", node_ip(node));
    let out = in_ns(
        &node_ns(prefix, node),
        &[
            "timeout",
            "10",
            "tcpdump",
            "-n",
            "-x",
            "-s",
            "0",
            "-i",
            "eth0",
            "-c",
            &count.to_string(),
            &filter,
        ],
    )?;
    let payloads: Vec<Vec<u8>> = tcpdump_packets(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .filter_map(|p| udp_payload(p).map(|(_, _, payload)| payload))
        .collect();
    anyhow::ensure!(!payloads.is_empty(), "tcpdump captured no gossip datagram");
    Ok(payloads)
}

/// Sends `datagrams` from the client namespace to `to` (one UDP datagram each).
///
/// # Errors
/// When `ferrolb-lab send-udp` fails.
pub fn send_from_client(prefix: &str, to: SocketAddr, datagrams: &[Vec<u8>]) -> anyhow::Result<()> {
    let tool = binary("ferrolb-lab")?.display().to_string();
    let to = to.to_string();
    let hex: Vec<String> = datagrams
        .iter()
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let mut args = vec![tool.as_str(), "send-udp", "--to", to.as_str()];
    for h in &hex {
        args.push("--hex");
        args.push(h);
    }
    in_ns(&client_ns(prefix), &args)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn malformed_frames_are_deterministic_and_some_truncated() {
        let frames: Vec<Vec<u8>> = malformed_arp_frames([2, 0, 0, 0, 0, 1], 400).collect();
        assert_eq!(
            frames,
            malformed_arp_frames([2, 0, 0, 0, 0, 1], 400).collect::<Vec<_>>()
        );
        assert!(
            frames.iter().all(|f| f.len() >= 14),
            "every frame has an Ethernet header"
        );
        assert!(frames.iter().any(|f| f.len() < 42), "some are truncated");
    }

    #[test]
    fn udp_payloads_are_read_from_tcpdump_hex() {
        // 192.0.2.12:7946 -> 192.0.2.11:7946, payload 01 02 03.
        let text = "12:00:00.000000 IP 192.0.2.12.7946 > 192.0.2.11.7946: UDP, length 3
\t0x0000:  4500 001f 0000 4000 4011 0000 c000 020c
\t0x0010:  c000 020b 1f0a 1f0a 000b 0000 0102 03
1 packet captured
";
        let packets = tcpdump_packets(text);
        assert_eq!(packets.len(), 1);
        let (src, dst, payload) = udp_payload(&packets[0]).unwrap();
        assert_eq!(src, "192.0.2.12:7946".parse().unwrap());
        assert_eq!(dst, "192.0.2.11:7946".parse().unwrap());
        assert_eq!(payload, vec![1, 2, 3]);
    }

    #[test]
    fn forgeries_are_rejected_for_the_reason_they_stand_for() {
        use ferrolb_speaker::gossip::seal::{KeyRing, REPLAY_WINDOW_MS, Rejected, Sealer};
        let mut real = Sealer::new(KeyRing::from_lines("lab-key").unwrap(), REPLAY_WINDOW_MS);
        let now = now_us() / 1000;
        let captured = real.seal(b"hello", now, [9; 24]);
        for d in forged(Forgery::WrongKey, 5, 1, None) {
            assert_eq!(real.open(&d, now), Err(Rejected::UnknownKey));
        }
        for d in forged(Forgery::SpoofedKeyId, 5, 2, Some(&captured)) {
            assert_eq!(real.open(&d, now), Err(Rejected::Forged));
        }
        for d in forged(Forgery::Tampered, 5, 3, Some(&captured)) {
            assert_eq!(real.open(&d, now), Err(Rejected::Forged));
        }
        for d in forged(Forgery::Random, 50, 4, None) {
            assert!(real.open(&d, now).is_err());
        }
        assert!(real.open(&captured, now).is_ok());
    }
}
