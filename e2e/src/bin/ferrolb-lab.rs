//! The lab's tool (run as root). Subcommands used inside network namespaces:
//! - `responder --ip IP...`: answer ARP/NDP for these IPs on every interface until stdin closes;
//!   a line `lose IP` or `gain IP` changes ownership. Prints counters at exit.
//! - `flood --iface IF --count N`: send malformed and truncated ARP/NDP frames.

#![allow(
    clippy::print_stdout,
    reason = "the responder reports its counters on stdout for the test that runs it"
)]

use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::IpAddr;

use clap::{Parser, Subcommand};
use ferrolb_speaker::announcer::Announce;
use ferrolb_speaker::election::Interfaces;
use ferrolb_speaker::l2::responder::{L2Config, L2Responder};

#[derive(Debug, Parser)]
#[command(name = "ferrolb-lab", about = "ferrolb's network-namespace lab tool")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the lab: namespaces, API server, controller, a speaker per node, a client.
    Up {
        /// Node namespaces.
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Prefix of every name (default: derived from the process id).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Remove everything of a lab (also after a crash).
    Down {
        /// The lab's prefix, as `up` printed it.
        #[arg(long)]
        prefix: String,
    },
    /// HTTP backend answering with the node's name (runs inside a node namespace).
    Backend {
        /// Node name to answer with.
        #[arg(long)]
        name: String,
        /// Port.
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// Answer ARP/NDP for IPs on every interface until stdin closes.
    Responder {
        /// IPs to own from the start.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
    },
    /// Send malformed and truncated frames on an interface.
    Flood {
        /// Interface.
        #[arg(long)]
        iface: String,
        /// Frames to send.
        #[arg(long, default_value_t = 10_000)]
        count: u32,
    },
}

fn responder(ips: Vec<IpAddr>) -> anyhow::Result<()> {
    let mut l2 = L2Responder::new(L2Config {
        excludes: vec!["lo".into()],
        ..L2Config::default()
    });
    let mut owned: BTreeSet<IpAddr> = BTreeSet::new();
    for ip in ips {
        l2.gained(ip, &Interfaces::All);
        owned.insert(ip);
    }
    eprintln!("responder ready");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|w| w.parse::<IpAddr>().ok()),
        ) {
            (Some("gain"), Some(ip)) => {
                l2.gained(ip, &Interfaces::All);
                owned.insert(ip);
            }
            (Some("lose"), Some(ip)) => {
                l2.lost(ip);
                owned.remove(&ip);
            }
            _ => eprintln!("unknown command: {line}"),
        }
        eprintln!("ok {line}");
    }
    let counters = l2.counters();
    let malformed: u64 = counters
        .malformed
        .lock()
        .map(|m| m.values().sum())
        .unwrap_or(0);
    println!(
        "responses={} malformed={malformed}",
        counters
            .responses
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

fn flood(iface: &str, count: u32) -> anyhow::Result<()> {
    let interfaces = pnet_datalink::interfaces();
    let Some(nic) = interfaces.iter().find(|i| i.name == iface) else {
        anyhow::bail!("no interface {iface}")
    };
    let pnet_datalink::Channel::Ethernet(mut tx, _rx) =
        pnet_datalink::channel(nic, pnet_datalink::Config::default())?
    else {
        anyhow::bail!("not an Ethernet interface");
    };
    let mac = nic.mac.map(|m| m.octets()).unwrap_or_default();
    // A valid ARP request to mutate: truncated at every length, wrong sizes, bad opcodes.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[192, 0, 2, 250, 0, 0, 0, 0, 0, 0, 192, 0, 2, 200]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..count {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
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
        if frame.len() < 14 {
            continue;
        }
        if let Some(Err(e)) = tx.send_to(&frame, None) {
            anyhow::bail!("send failed: {e}");
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Responder { ips } => responder(ips),
        Command::Flood { iface, count } => flood(&iface, count),
        Command::Up { nodes, prefix } => {
            let prefix = prefix.unwrap_or_else(|| format!("fl{}", std::process::id() % 10_000));
            match ferrolb_e2e::lab::cluster::up(&prefix, nodes) {
                Ok(topo) => {
                    // The lab outlives this command; `down` removes it.
                    std::mem::forget(topo);
                    let kc = ferrolb_e2e::lab::cluster::lab_dir(&prefix).join("kubeconfig");
                    println!("lab {prefix} is up: kubeconfig {}", kc.display());
                    println!(
                        "  ip netns exec {prefix}br kubectl --kubeconfig {} get nodes",
                        kc.display()
                    );
                    println!("  remove it with: ferrolb-lab down --prefix {prefix}");
                    Ok(())
                }
                Err(e) => {
                    ferrolb_e2e::lab::cluster::down(&prefix);
                    Err(e)
                }
            }
        }
        Command::Down { prefix } => {
            ferrolb_e2e::lab::cluster::down(&prefix);
            Ok(())
        }
        Command::Backend { name, port } => ferrolb_e2e::lab::cluster::backend(&name, port),
    }
}
