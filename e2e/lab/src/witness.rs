//! The witness: who answers ARP/NDP for each Service IP, as the client's link sees it.
//!
//! `ferrolb-lab witness` ([`run_witness`]) runs in the client namespace, sends an ARP request
//! (IPv4) or a Neighbor Solicitation (IPv6) for every watched IP each round (10 ms apart), and
//! prints one line per request sent and per answer heard: which MAC claimed the IP, and when.
//! [`Witness`] starts it and collects the lines; [`verdict`] turns one IP's record into the two
//! numbers the fault bench reports. The arithmetic is pure and tested here.
//!
//! What counts:
//! - an answer is an ARP reply whose sender IP is the watched IP, or a Neighbor Advertisement
//!   whose target is it (solicited or not: a gratuitous reply moves a cache as surely);
//! - an answer belongs to the latest round sent for its IP before it arrived (a lab reply takes
//!   about a millisecond, a round lasts ten);
//! - a round is *double* when two different MACs answered it. Double rounds less than
//!   [`WINDOW`] apart form one double stretch (two MACs both answering within one sliding
//!   50 ms window are one double answer, even when each round happened to hear only one);
//!   `double_ms` is the longest stretch, from its first answer to its last, at least 1 ms. A
//!   clean handover (the old MAC's last answer in one round, the new MAC's first in a later one)
//!   is not double;
//! - a round is *unanswered* when no answer for its IP came within [`WINDOW`] of sending it;
//!   `unanswered_ms` is the longest silence that makes up: from the first unanswered round's
//!   send to the next answer (or the end of the record). A steady owner gives 0, a lost frame
//!   on a busy machine too.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_wire::{ArpOperation, ArpRepr, Mac, NdpRepr, NeighborSolicit, solicited_node};

use crate::binaries::binary;
use crate::prober::now_us;
use crate::process::LineTool;
use crate::topology::{client_ns, command_in};

/// The sliding window of the double and unanswered rules.
pub const WINDOW: Duration = Duration::from_millis(50);
/// Time between rounds.
pub const INTERVAL: Duration = Duration::from_millis(10);

/// One line of the witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A request for `ip` left at `at_us`.
    Sent {
        /// The IP asked about.
        ip: IpAddr,
        /// µs since the epoch.
        at_us: u64,
    },
    /// `mac` answered for `ip` at `at_us`.
    Answer {
        /// The IP answered for.
        ip: IpAddr,
        /// Who answered, `aa:bb:..`.
        mac: String,
        /// µs since the epoch.
        at_us: u64,
    },
}

impl Record {
    /// The line `ferrolb-lab witness` prints.
    pub fn line(&self) -> String {
        match self {
            Self::Sent { ip, at_us } => format!("sent ip={ip} at_us={at_us}"),
            Self::Answer { ip, mac, at_us } => format!("answer ip={ip} mac={mac} at_us={at_us}"),
        }
    }

    /// Parses a line printed by [`Self::line`].
    pub fn parse(line: &str) -> Option<Self> {
        let (kind, rest) = line.split_once(' ')?;
        let fields: BTreeMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let ip = fields.get("ip")?.parse().ok()?;
        let at_us = fields.get("at_us")?.parse().ok()?;
        match kind {
            "sent" => Some(Self::Sent { ip, at_us }),
            "answer" => Some(Self::Answer {
                ip,
                mac: (*fields.get("mac")?).to_owned(),
                at_us,
            }),
            _ => None,
        }
    }

    fn ip(&self) -> IpAddr {
        match self {
            Self::Sent { ip, .. } | Self::Answer { ip, .. } => *ip,
        }
    }

    fn at_us(&self) -> u64 {
        match self {
            Self::Sent { at_us, .. } | Self::Answer { at_us, .. } => *at_us,
        }
    }
}

/// What one IP's record amounts to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Rounds sent.
    pub rounds: u64,
    /// Answers heard, by MAC.
    pub answers: BTreeMap<String, u64>,
    /// Longest double stretch, ms (0: never two MACs).
    pub double_ms: u64,
    /// Longest silence, ms (0: every round answered within the window).
    pub unanswered_ms: u64,
    /// When the longest double stretch began, µs (0: none).
    pub double_from_us: u64,
    /// When the longest silence began, µs (0: none).
    pub unanswered_from_us: u64,
}

/// The verdict on one IP from its request times and its answers `(time, mac)`, both in µs, over
/// a record that ended at `end_us`.
pub fn verdict(sent: &[u64], answers: &[(u64, String)], end_us: u64) -> Verdict {
    let mut sent = sent.to_vec();
    sent.sort_unstable();
    let mut answers = answers.to_vec();
    answers.sort();
    let window = u64::try_from(WINDOW.as_micros()).unwrap_or(u64::MAX);
    let mut v = Verdict {
        rounds: sent.len() as u64,
        ..Verdict::default()
    };
    for (_, mac) in &answers {
        *v.answers.entry(mac.clone()).or_default() += 1;
    }
    // Answers by round: the latest round sent at or before each answer.
    let mut rounds: Vec<Vec<(u64, &str)>> = vec![Vec::new(); sent.len()];
    for (at, mac) in &answers {
        let i = sent.partition_point(|s| s <= at);
        if i > 0 {
            rounds[i - 1].push((*at, mac));
        }
    }
    // Double stretches: (first answer, last answer) of double rounds, merged within the window.
    let mut stretch: Option<(u64, u64)> = None;
    for round in &rounds {
        let mut macs: Vec<&str> = round.iter().map(|(_, m)| *m).collect();
        macs.sort_unstable();
        macs.dedup();
        if macs.len() < 2 {
            continue;
        }
        let first = round.iter().map(|(at, _)| *at).min().unwrap_or(0);
        let last = round.iter().map(|(at, _)| *at).max().unwrap_or(0);
        stretch = match stretch {
            Some((s, e)) if first <= e + window => Some((s, e.max(last))),
            Some((s, e)) => {
                v.double_stretch(s, e);
                Some((first, last))
            }
            None => Some((first, last)),
        };
    }
    if let Some((s, e)) = stretch {
        v.double_stretch(s, e);
    }
    // Silences: a round with no answer within the window, to the next answer after it.
    let answer_times: Vec<u64> = answers.iter().map(|(at, _)| *at).collect();
    let mut i = 0;
    while i < sent.len() {
        let s = sent[i];
        let next = answer_times.partition_point(|a| *a < s);
        let answered = answer_times.get(next).is_some_and(|a| *a < s + window);
        if answered {
            i += 1;
            continue;
        }
        // Observed only if the window after it lies inside the record.
        if s + window > end_us {
            break;
        }
        let until = answer_times
            .get(next)
            .copied()
            .unwrap_or(end_us)
            .min(end_us);
        let ms = (until - s).div_ceil(1000);
        if ms > v.unanswered_ms {
            v.unanswered_ms = ms;
            v.unanswered_from_us = s;
        }
        // Skip the rounds inside this silence.
        i = sent.partition_point(|x| *x < until);
    }
    v
}

impl Verdict {
    /// Takes a double stretch from `from_us` to `to_us` into the verdict.
    fn double_stretch(&mut self, from_us: u64, to_us: u64) {
        let ms = (to_us - from_us).div_ceil(1000).max(1);
        if ms > self.double_ms {
            self.double_ms = ms;
            self.double_from_us = from_us;
        }
    }
}

/// Verdicts per IP over the records between `from_us` and `to_us`.
pub fn verdicts(records: &[Record], from_us: u64, to_us: u64) -> BTreeMap<IpAddr, Verdict> {
    /// Request times and answers (time, MAC) of one IP.
    type Heard = (Vec<u64>, Vec<(u64, String)>);
    let mut per_ip: BTreeMap<IpAddr, Heard> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| (from_us..=to_us).contains(&r.at_us()))
    {
        let entry = per_ip.entry(r.ip()).or_default();
        match r {
            Record::Sent { at_us, .. } => entry.0.push(*at_us),
            Record::Answer { at_us, mac, .. } => entry.1.push((*at_us, mac.clone())),
        }
    }
    per_ip
        .into_iter()
        .map(|(ip, (sent, answers))| (ip, verdict(&sent, &answers, to_us)))
        .collect()
}

/// The request for `ip` from `mac`/`ip4`/`ip6` (the client's own addresses).
pub fn request(ip: IpAddr, mac: Mac, ip4: std::net::Ipv4Addr, ip6: std::net::Ipv6Addr) -> Vec<u8> {
    match ip {
        IpAddr::V4(target) => ferrolb_wire::arp_frame(
            mac,
            Mac::BROADCAST,
            &ArpRepr {
                operation: ArpOperation::Request,
                sender_mac: mac,
                sender_ip: ip4,
                target_mac: Mac::ZERO,
                target_ip: target,
            },
        ),
        IpAddr::V6(target) => {
            let group = solicited_node(target);
            ferrolb_wire::ndp_frame(
                mac,
                Mac::ipv6_multicast(group),
                ip6,
                group,
                &NdpRepr::Solicit(NeighborSolicit {
                    target,
                    source_mac: Some(mac),
                }),
            )
        }
    }
}

/// The answer a frame carries, if it is one: (IP claimed, MAC claiming it). For NDP the MAC is
/// the Target Link-Layer Address option's, else the frame's source.
pub fn answer_in(frame: &[u8]) -> Option<(IpAddr, Mac)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let src = Mac(frame.get(6..12)?.try_into().ok()?);
    match ethertype {
        0x0806 => {
            let arp = ArpRepr::parse(frame.get(14..)?).ok()?;
            (arp.operation == ArpOperation::Reply)
                .then_some((IpAddr::V4(arp.sender_ip), arp.sender_mac))
        }
        0x86dd => {
            let ip6 = frame.get(14..)?;
            // Next header ICMPv6, type 136 (Neighbor Advertisement).
            if *ip6.get(6)? != 58 || *ip6.get(40)? != 136 {
                return None;
            }
            let icmp = ip6.get(40..)?;
            let target: [u8; 16] = icmp.get(8..24)?.try_into().ok()?;
            // Options after the 24-byte header: type 2 is the Target Link-Layer Address.
            let mut mac = src;
            let mut opts = icmp.get(24..).unwrap_or_default();
            while let [kind, len, ..] = *opts {
                let size = usize::from(len) * 8;
                if size == 0 || opts.len() < size {
                    break;
                }
                if kind == 2 && size >= 8 {
                    mac = Mac(opts[2..8].try_into().ok()?);
                }
                opts = &opts[size..];
            }
            Some((IpAddr::V6(target.into()), mac))
        }
        _ => None,
    }
}

/// The body of `ferrolb-lab witness`: asks for every IP of `ips` on `iface` each `interval`
/// until `stop` is set, printing a [`Record`] line per request and per answer to `out`.
///
/// # Errors
/// When the interface is missing or has no addresses, or the channel cannot be opened.
pub fn run_witness(
    iface: &str,
    ips: &[IpAddr],
    interval: Duration,
    stop: &AtomicBool,
    out: &Mutex<dyn Write + Send>,
) -> anyhow::Result<()> {
    let interfaces = pnet_datalink::interfaces();
    let nic = interfaces
        .iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| anyhow::anyhow!("no interface {iface}"))?;
    let mac = Mac(nic
        .mac
        .ok_or_else(|| anyhow::anyhow!("{iface} has no MAC"))?
        .octets());
    let ip4 = nic
        .ips
        .iter()
        .find_map(|n| match n.ip() {
            IpAddr::V4(v) => Some(v),
            IpAddr::V6(_) => None,
        })
        .ok_or_else(|| anyhow::anyhow!("{iface} has no IPv4 address"))?;
    let ip6 = nic
        .ips
        .iter()
        .find_map(|n| match n.ip() {
            IpAddr::V6(v) if !v.is_unicast_link_local() => Some(v),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("{iface} has no global IPv6 address"))?;
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(20)),
        promiscuous: false,
        ..pnet_datalink::Config::default()
    };
    let pnet_datalink::Channel::Ethernet(mut tx, mut rx) = pnet_datalink::channel(nic, config)?
    else {
        anyhow::bail!("{iface} is not an Ethernet interface");
    };
    let print = |r: &Record| {
        if let Ok(mut out) = out.lock() {
            let _ = writeln!(out, "{}", r.line());
            let _ = out.flush();
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match rx.next() {
                    Ok(frame) => {
                        if let Some((ip, from)) = answer_in(frame)
                            && from != mac
                            && ips.contains(&ip)
                        {
                            print(&Record::Answer {
                                ip,
                                mac: from.to_string(),
                                at_us: now_us(),
                            });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let frames: Vec<(IpAddr, Vec<u8>)> = ips
            .iter()
            .map(|ip| (*ip, request(*ip, mac, ip4, ip6)))
            .collect();
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            for (ip, frame) in &frames {
                let at_us = now_us();
                if let Some(Ok(())) = tx.send_to(frame, None) {
                    print(&Record::Sent { ip: *ip, at_us });
                }
            }
            next += interval;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    });
    Ok(())
}

/// `ferrolb-lab witness` running in the client namespace; its records are collected as they
/// come.
#[derive(Debug)]
pub struct Witness {
    tool: LineTool<Record>,
    started_us: u64,
}

impl Witness {
    /// Starts watching `ips` from the client namespace of lab `prefix`, every [`INTERVAL`].
    ///
    /// # Errors
    /// When `ferrolb-lab` is not built or cannot start.
    pub fn start(prefix: &str, ips: &[String]) -> anyhow::Result<Self> {
        let tool = binary("ferrolb-lab")?;
        let mut command = command_in(&client_ns(prefix), &tool.display().to_string());
        command.args(["witness", "--iface", "eth0"]);
        for ip in ips {
            command.args(["--ip", ip]);
        }
        let tool = LineTool::spawn(command, "witness", Record::parse)?;
        Ok(Self {
            tool,
            started_us: now_us(),
        })
    }

    /// When it started (µs since the epoch).
    pub fn started_us(&self) -> u64 {
        self.started_us
    }

    /// The records so far.
    pub fn records(&self) -> Vec<Record> {
        self.tool.records()
    }

    /// Verdicts per IP over the records from `from_us` until now.
    pub fn verdicts_since(&self, from_us: u64) -> BTreeMap<IpAddr, Verdict> {
        verdicts(&self.records(), from_us, now_us())
    }

    /// The MACs that answered for `ip` at or after `from_us`, with their answer counts.
    pub fn answerers_since(&self, ip: &str, from_us: u64) -> BTreeMap<String, u64> {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return BTreeMap::new();
        };
        let mut macs = BTreeMap::new();
        for r in self.records() {
            if let Record::Answer { ip: i, mac, at_us } = r
                && i == ip
                && at_us >= from_us
            {
                *macs.entry(mac).or_default() += 1;
            }
        }
        macs
    }

    /// Stops it; every record.
    ///
    /// # Errors
    /// When it failed.
    pub fn stop(mut self) -> anyhow::Result<Vec<Record>> {
        self.tool
            .finish()
            .map_err(|e| anyhow::anyhow!("the witness failed: {e}"))?;
        Ok(self.records())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "02:00:00:00:00:0a";
    const B: &str = "02:00:00:00:00:0b";

    /// Rounds every 10 ms from 0 to `until_ms` (exclusive), in µs.
    fn rounds(until_ms: u64) -> Vec<u64> {
        (0..until_ms).step_by(10).map(|ms| ms * 1000).collect()
    }

    /// An answer from `mac` 1 ms after each round in `from_ms..until_ms`.
    fn answers(mac: &str, from_ms: u64, until_ms: u64) -> Vec<(u64, String)> {
        (from_ms..until_ms)
            .step_by(10)
            .map(|ms| (ms * 1000 + 1000, mac.to_owned()))
            .collect()
    }

    #[test]
    fn a_steady_owner_is_neither_double_nor_unanswered() {
        let v = verdict(&rounds(1000), &answers(A, 0, 1000), 1_000_000);
        assert_eq!((v.double_ms, v.unanswered_ms, v.rounds), (0, 0, 100));
        assert_eq!(v.answers.get(A), Some(&100));
    }

    #[test]
    fn a_clean_handover_is_not_double_and_its_gap_is_the_silence() {
        let mut all = answers(A, 0, 500);
        all.extend(answers(B, 800, 1500));
        let v = verdict(&rounds(1500), &all, 1_500_000);
        assert_eq!(v.double_ms, 0);
        // From the round at 500 ms to B's first answer at 801 ms.
        assert_eq!(v.unanswered_ms, 301);
    }

    #[test]
    fn a_handover_from_one_round_to_the_next_is_not_double() {
        let mut all = answers(A, 0, 500);
        all.extend(answers(B, 500, 1000));
        let v = verdict(&rounds(1000), &all, 1_000_000);
        assert_eq!((v.double_ms, v.unanswered_ms), (0, 0));
    }

    #[test]
    fn two_macs_answering_the_same_rounds_are_double_for_as_long_as_they_both_answer() {
        let mut all = answers(A, 0, 1000);
        all.extend(
            answers(B, 300, 700)
                .into_iter()
                .map(|(at, m)| (at + 200, m)),
        );
        let v = verdict(&rounds(1000), &all, 1_000_000);
        // Rounds 300..690 ms are double: from A's answer at 301 ms to B's at 691.2 ms.
        assert_eq!(v.double_ms, 391);
    }

    #[test]
    fn two_macs_alternating_within_the_window_are_one_double_stretch() {
        // Each round hears one MAC, but both answer all along: rounds where both answered
        // (every 40 ms) lie within 50 ms of each other.
        let mut all = Vec::new();
        for ms in (0..1000).step_by(10) {
            all.push((ms * 1000 + 1000, A.to_owned()));
            if ms % 40 == 0 {
                all.push((ms * 1000 + 2000, B.to_owned()));
            }
        }
        let v = verdict(&rounds(1000), &all, 1_000_000);
        assert!(v.double_ms >= 960, "{v:?}");
    }

    #[test]
    fn one_double_round_counts_as_at_least_a_millisecond() {
        let mut all = answers(A, 0, 1000);
        all.push((500_000 + 1_200, B.to_owned()));
        let v = verdict(&rounds(1000), &all, 1_000_000);
        assert_eq!(v.double_ms, 1);
    }

    #[test]
    fn silence_until_the_end_is_counted_to_the_end_and_one_lost_answer_is_not() {
        let mut all = answers(A, 0, 300);
        all.extend(answers(A, 310, 600));
        let v = verdict(&rounds(1000), &all, 1_000_000);
        // Round 300 lost its answer but 310's came within the window: no silence there; from
        // 600 ms to the end (1,000 ms) nobody answered.
        assert_eq!(v.unanswered_ms, 400);
        let never = verdict(&rounds(1000), &[], 1_000_000);
        assert_eq!(never.unanswered_ms, 1000);
    }

    #[test]
    fn records_round_trip_and_verdicts_split_by_ip() {
        let ip: IpAddr = "192.0.2.193".parse().unwrap();
        let six: IpAddr = "2001:db8::c1".parse().unwrap();
        let records = vec![
            Record::Sent { ip, at_us: 0 },
            Record::Answer {
                ip,
                mac: A.into(),
                at_us: 900,
            },
            Record::Sent { ip: six, at_us: 10 },
        ];
        for r in &records {
            assert_eq!(Record::parse(&r.line()).as_ref(), Some(r));
        }
        let v = verdicts(&records, 0, 100_000);
        assert_eq!(v[&ip].unanswered_ms, 0);
        assert_eq!(v[&six].unanswered_ms, 100);
    }

    #[test]
    fn requests_are_answered_by_frames_the_witness_recognises() {
        let me = Mac([2, 0, 0, 0, 0, 2]);
        let owner = Mac([2, 0, 0, 0, 0, 0x0b]);
        let v4: std::net::Ipv4Addr = "192.0.2.193".parse().unwrap();
        let v6: std::net::Ipv6Addr = "2001:db8::c1".parse().unwrap();
        let owned_v4 = std::collections::BTreeSet::from([v4]);
        let owned_v6 = std::collections::BTreeSet::from([v6]);
        let responder = |frame: &[u8]| {
            ferrolb_wire::Responder {
                mac: owner,
                owned_v4: &owned_v4,
                owned_v6: &owned_v6,
            }
            .answer(frame)
            .into_reply()
        };
        for ip in [IpAddr::V4(v4), IpAddr::V6(v6)] {
            let ask = request(
                ip,
                me,
                "192.0.2.2".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            );
            assert_eq!(answer_in(&ask), None, "a request is no answer");
            let reply = responder(&ask).unwrap();
            assert_eq!(answer_in(&reply), Some((ip, owner)), "{ip}");
        }
        let [_, gratuitous] = ferrolb_wire::gratuitous_arp(owner, v4);
        assert_eq!(answer_in(&gratuitous), Some((IpAddr::V4(v4), owner)));
        let na = ferrolb_wire::unsolicited_na(owner, v6);
        assert_eq!(answer_in(&na), Some((IpAddr::V6(v6), owner)));
    }
}
