//! `l2-bench` (root): how fast a speaker's responder answers, measured from a client namespace
//! over a real veth/bridge link.
//!
//! 1. ARP and NDP reply latency: one question at a time, from send to the matching reply, as
//!    seen by the client's packet socket (the path `arping` and `ndisc6` take).
//! 2. A flood of ARP requests at a fixed rate (default 50,000/s): the replies that come back per
//!    second, and the responder's CPU use meanwhile (from `/proc/<pid>/stat`).
//!
//! The responder runs as `ferrolb-lab responder` (the speaker's L2 code, without Kubernetes) in
//! its own namespace. Ends with one line:
//! `l2-bench arp_p50_us=.. arp_p99_us=.. ndp_p99_us=.. flood_replies_per_s=.. speaker_cpu_pct=..`

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports its figures on stdout"
)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ferrolb_lab::Lab;
use ferrolb_lab::binaries::binary as sibling;
use ferrolb_lab::procstat;
use ferrolb_lab::topology::command_in;
use ferrolb_wire::{ArpOperation, ArpRepr, Mac, NdpRepr, NeighborSolicit, solicited_node};

const SERVICE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const SERVICE_V6: &str = "2001:db8::200";
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const CLIENT_V6: &str = "2001:db8::2";
/// How long the responder's gratuitous ARP repeats last after it gains an IP (3, 1 s apart).
const GRATUITOUS_REPEATS: Duration = Duration::from_millis(3500);

#[derive(Debug, Parser)]
#[command(
    name = "l2-bench",
    about = "ARP/NDP reply latency and flood rate of the responder"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Questions per latency measurement.
    #[arg(long, default_value_t = 2000)]
    samples: u32,
    /// Flood rate, requests per second.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Flood duration, seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The client side (run inside the client namespace by the benchmark itself).
    Client {
        /// Interface.
        #[arg(long)]
        iface: String,
        /// Latency samples.
        #[arg(long)]
        samples: u32,
        /// Flood rate.
        #[arg(long)]
        rate: u64,
        /// Flood seconds.
        #[arg(long)]
        seconds: u64,
    },
}

struct Link {
    mac: Mac,
    tx: Box<dyn pnet_datalink::DataLinkSender>,
    rx: Box<dyn pnet_datalink::DataLinkReceiver>,
}

fn open(iface: &str) -> anyhow::Result<Link> {
    let interfaces = pnet_datalink::interfaces();
    let Some(nic) = interfaces.iter().find(|i| i.name == iface) else {
        anyhow::bail!("no interface {iface}")
    };
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(20)),
        promiscuous: false,
        ..pnet_datalink::Config::default()
    };
    let pnet_datalink::Channel::Ethernet(tx, rx) = pnet_datalink::channel(nic, config)? else {
        anyhow::bail!("not an Ethernet interface");
    };
    let mac = Mac(nic.mac.map(|m| m.octets()).unwrap_or_default());
    Ok(Link { mac, tx, rx })
}

fn arp_request(mac: Mac) -> Vec<u8> {
    ferrolb_wire::arp_frame(
        mac,
        Mac::BROADCAST,
        &ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: mac,
            sender_ip: CLIENT_V4,
            target_mac: Mac::default(),
            target_ip: SERVICE_V4,
        },
    )
}

fn neighbor_solicitation(mac: Mac, target: Ipv6Addr, source: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    ferrolb_wire::ndp_frame(
        mac,
        Mac::ipv6_multicast(group),
        source,
        group,
        &NdpRepr::Solicit(NeighborSolicit {
            target,
            source_mac: Some(mac),
        }),
    )
}

/// An ARP reply for the Service IP (byte offsets of Ethernet II + ARP for IPv4).
fn is_arp_reply(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 2]
        && frame[28..32] == SERVICE_V4.octets()
}

/// A Neighbor Advertisement for `target` (Ethernet II + IPv6 + ICMPv6 type 136).
fn is_na(frame: &[u8], target: Ipv6Addr) -> bool {
    frame.len() >= 78
        && frame[12..14] == [0x86, 0xdd]
        && frame[20] == 58
        && frame[54] == 136
        && frame[62..78] == target.octets()
}

/// Sends `question` `samples` times, one at a time; the microseconds to each reply.
fn latencies(
    link: &mut Link,
    question: &[u8],
    samples: u32,
    is_reply: &dyn Fn(&[u8]) -> bool,
) -> Vec<u64> {
    let mut out = Vec::with_capacity(samples as usize);
    for _ in 0..samples {
        let sent = Instant::now();
        let _ = link.tx.send_to(question, None);
        while sent.elapsed() < Duration::from_millis(100) {
            if let Ok(frame) = link.rx.next()
                && is_reply(frame)
            {
                out.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                break;
            }
        }
    }
    out
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short sorted list"
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn client(iface: &str, samples: u32, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let mut link = open(iface)?;
    let v6: Ipv6Addr = SERVICE_V6.parse()?;
    let arp = arp_request(link.mac);
    let ns = neighbor_solicitation(link.mac, v6, CLIENT_V6.parse()?);
    // Warm the path (the responder's first answer, the client's first send).
    latencies(&mut link, &arp, 10, &is_arp_reply);
    let mut arp_us = latencies(&mut link, &arp, samples, &is_arp_reply);
    let mut ndp_us = latencies(&mut link, &ns, samples, &|f| is_na(f, v6));
    arp_us.sort_unstable();
    ndp_us.sort_unstable();
    println!(
        "latency arp_answered={} ndp_answered={} of {samples} arp_p50_us={} arp_p99_us={} ndp_p50_us={} ndp_p99_us={}",
        arp_us.len(),
        ndp_us.len(),
        percentile(&arp_us, 0.5),
        percentile(&arp_us, 0.99),
        percentile(&ndp_us, 0.5),
        percentile(&ndp_us, 0.99)
    );

    // The flood: a reader counts replies while the sender paces requests in 1 ms batches.
    let Link { mut tx, mut rx, .. } = link;
    let replies = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (replies, stop) = (replies.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(frame) = rx.next()
                    && is_arp_reply(frame)
                {
                    replies.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    println!("flood start");
    let started = Instant::now();
    let total = rate * seconds;
    let mut sent = 0u64;
    while sent < total {
        let due = (u128::from(rate) * started.elapsed().as_micros() / 1_000_000) as u64;
        while sent < due.min(total) {
            if tx.send_to(&arp, None).is_some_and(|r| r.is_ok()) {
                sent += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("flood end");
    // Replies still in flight arrive within milliseconds.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let got = replies.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    let per_s = got as f64 / elapsed;
    println!("flood sent={sent} replies={got} seconds={elapsed:.2} replies_per_s={per_s:.0}");
    Ok(())
}

fn value<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or("0")
}

fn bench(args: &Args) -> anyhow::Result<()> {
    let prefix = ferrolb_lab::cluster::prefix("l2b");
    let mut lab = Lab::network(&prefix)
        .map_err(|e| anyhow::anyhow!("l2-bench needs root (network namespaces): {e}"))?;
    let speaker = lab.add_host("s", 10)?;
    let client_host = lab.add_host("c", 2)?;
    let lab = sibling("ferrolb-lab")?;
    let mut responder = command_in(&speaker.ns, &lab.display().to_string())
        .args([
            "responder",
            "--ip",
            &SERVICE_V4.to_string(),
            "--ip",
            SERVICE_V6,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = responder.id();
    let mut err = BufReader::new(
        responder
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?,
    );
    let mut line = String::new();
    err.read_line(&mut line)?;
    anyhow::ensure!(
        line.contains("responder ready"),
        "responder did not start: {line}"
    );
    std::thread::spawn(move || for _ in err.lines() {});
    // The responder repeats its gratuitous ARP 3 times, 1 s apart, after gaining an IP: a
    // known schedule to stay clear of (so the repeats do not mix with the figures), not a wait
    // for anything the responder reports.
    std::thread::sleep(GRATUITOUS_REPEATS);

    let me = std::env::current_exe()?;
    let mut client = command_in(&client_host.ns, &me.display().to_string())
        .args([
            "client",
            "--iface",
            &client_host.iface,
            "--samples",
            &args.samples.to_string(),
            "--rate",
            &args.rate.to_string(),
            "--seconds",
            &args.seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    let out = BufReader::new(
        client
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
    );
    let (mut latency, mut flood) = (String::new(), String::new());
    let (mut cpu_start, mut cpu_at) = (0.0, Instant::now());
    let mut cpu_pct = 0.0;
    for line in out.lines() {
        let line = line?;
        println!("l2-bench {line}");
        if line.starts_with("latency") {
            latency = line;
        } else if line == "flood start" {
            (cpu_start, cpu_at) = (procstat::cpu_seconds(pid).unwrap_or(0.0), Instant::now());
        } else if line == "flood end" {
            cpu_pct = (procstat::cpu_seconds(pid).unwrap_or(0.0) - cpu_start)
                / cpu_at.elapsed().as_secs_f64()
                * 100.0;
        } else if line.starts_with("flood sent") {
            flood = line;
        }
    }
    let status = client.wait()?;
    drop(responder.stdin.take());
    let _ = responder.wait();
    drop(lab);
    anyhow::ensure!(status.success(), "the client failed");
    println!(
        "l2-bench flood_requests={} flood_replies={}",
        value(&flood, "sent"),
        value(&flood, "replies")
    );
    println!(
        "l2-bench arp_p50_us={} arp_p99_us={} ndp_p99_us={} flood_replies_per_s={} speaker_cpu_pct={cpu_pct:.1}",
        value(&latency, "arp_p50_us"),
        value(&latency, "arp_p99_us"),
        value(&latency, "ndp_p99_us"),
        value(&flood, "replies_per_s"),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match &args.command {
        Some(Command::Client {
            iface,
            samples,
            rate,
            seconds,
        }) => client(iface, *samples, *rate, *seconds),
        None => bench(&args),
    }
}
