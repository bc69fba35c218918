//! The sweep: who answers ARP/NDP for thousands of IPs, as the client's link sees it.
//!
//! `ferrolb-lab sweep` ([`run_sweep`]) runs in the client namespace. It asks about its targets
//! in turn (an ARP request or a Neighbor Solicitation each), at most `rate` a second, and
//! prints every answer it hears, solicited or not (a gratuitous ARP or unsolicited NA is an
//! answer too), as a [`Record::Answer`] line. Targets come and go on its stdin (`add IP...`,
//! `del IP...`), so a bench asks only about what it still waits for; with no targets it just
//! listens. At the end it prints `sent n=N`.
//!
//! [`Sweep`] starts it and reads its lines.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrolb_wire::Mac;

use crate::binaries::binary;
use crate::prober::now_us;
use crate::process::LineTool;
use crate::topology::{client_ns, command_in};
use crate::witness::{Record, answer_in, request};

/// The targets, in the order they are asked about.
#[derive(Debug, Default)]
struct Targets {
    order: Vec<IpAddr>,
    at: HashMap<IpAddr, usize>,
}

impl Targets {
    fn add(&mut self, ip: IpAddr) {
        if !self.at.contains_key(&ip) {
            self.at.insert(ip, self.order.len());
            self.order.push(ip);
        }
    }

    fn remove(&mut self, ip: IpAddr) {
        if let Some(i) = self.at.remove(&ip) {
            self.order.swap_remove(i);
            if let Some(moved) = self.order.get(i) {
                self.at.insert(*moved, i);
            }
        }
    }
}

/// The client's link: its name, MAC and addresses.
fn client_link(iface: &str) -> anyhow::Result<(pnet_datalink::NetworkInterface, Mac)> {
    let nic = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| anyhow::anyhow!("no interface {iface}"))?;
    let mac = Mac(nic
        .mac
        .ok_or_else(|| anyhow::anyhow!("{iface} has no MAC"))?
        .octets());
    Ok((nic, mac))
}

/// Runs the sweep on `iface` until `commands` ends (see the module header).
///
/// # Errors
/// When the link cannot be opened.
pub fn run_sweep(
    iface: &str,
    rate: u32,
    commands: impl BufRead,
    out: &Mutex<dyn Write + Send>,
) -> anyhow::Result<()> {
    let (nic, mac) = client_link(iface)?;
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
        read_buffer_size: 65536,
        // Only ARP and NS/NA from other stations: the frames this host sends (its requests,
        // and a flood sent from the same link) would queue in front of the answers.
        socket_fd: Some(ferrolb_speaker::l2::responder::filtered_socket()?),
        ..pnet_datalink::Config::default()
    };
    let pnet_datalink::Channel::Ethernet(mut tx, mut rx) = pnet_datalink::channel(&nic, config)?
    else {
        anyhow::bail!("{iface} is not an Ethernet interface");
    };
    let targets = Mutex::new(Targets::default());
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match rx.next() {
                    Ok(frame) => {
                        if let Some((ip, from)) = answer_in(frame)
                            && from != mac
                        {
                            let line = Record::Answer {
                                ip,
                                mac: from.to_string(),
                                at_us: now_us(),
                            }
                            .line();
                            if let Ok(mut out) = out.lock() {
                                let _ = writeln!(out, "{line}");
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        if let Ok(mut out) = out.lock() {
                            let _ = out.flush();
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        scope.spawn(|| {
            // Paced in 1 ms batches: request i leaves no earlier than i / rate s after start.
            let started = Instant::now();
            let mut next = 0usize;
            let mut count: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
                let batch: Vec<IpAddr> = {
                    let Ok(targets) = targets.lock() else { break };
                    let n = targets.order.len();
                    (count..due)
                        .take(if n == 0 { 0 } else { 4096 })
                        .map(|_| {
                            next = (next + 1) % n;
                            targets.order[next]
                        })
                        .collect()
                };
                if batch.is_empty() {
                    // Nothing to ask: the clock still runs, so the next target is not burst.
                    count = due;
                }
                for ip in batch {
                    if let Some(Ok(())) = tx.send_to(&request(ip, mac, ip4, ip6), None) {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    count += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        for line in commands.lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            let verb = words.next();
            let ips = words.filter_map(|w| w.parse::<IpAddr>().ok());
            let Ok(mut targets) = targets.lock() else {
                break;
            };
            match verb {
                Some("add") => ips.for_each(|ip| targets.add(ip)),
                Some("del") => ips.for_each(|ip| targets.remove(ip)),
                _ => {}
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    if let Ok(mut out) = out.lock() {
        let _ = writeln!(out, "sent n={}", sent.load(Ordering::Relaxed));
        let _ = out.flush();
    }
    Ok(())
}

/// A line of the sweep: an answer, or the count of requests sent at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepLine {
    /// Someone answered (or announced) an IP.
    Answer(Record),
    /// Requests sent in all.
    Sent(u64),
}

fn parse(line: &str) -> Option<SweepLine> {
    if let Some(n) = line.strip_prefix("sent n=") {
        return n.parse().ok().map(SweepLine::Sent);
    }
    Record::parse(line).map(SweepLine::Answer)
}

/// A running `ferrolb-lab sweep` in the client namespace of lab `prefix`.
#[derive(Debug)]
pub struct Sweep {
    tool: LineTool<SweepLine>,
}

impl Sweep {
    /// Starts a sweep on the client's link asking at most `rate` a second.
    ///
    /// # Errors
    /// When the tool cannot be started.
    pub fn start(prefix: &str, rate: u32) -> anyhow::Result<Self> {
        let tool = binary("ferrolb-lab")?;
        let mut command = command_in(&client_ns(prefix), &tool.display().to_string());
        command.args(["sweep", "--iface", "eth0", "--rate", &rate.to_string()]);
        Ok(Self {
            tool: LineTool::spawn(command, "sweep", parse)?,
        })
    }

    /// Asks about `ips` from now on.
    ///
    /// # Errors
    /// When the tool is gone.
    pub fn add(&mut self, ips: &[IpAddr]) -> anyhow::Result<()> {
        self.tell("add", ips)
    }

    /// Stops asking about `ips`.
    ///
    /// # Errors
    /// When the tool is gone.
    pub fn remove(&mut self, ips: &[IpAddr]) -> anyhow::Result<()> {
        self.tell("del", ips)
    }

    fn tell(&mut self, verb: &str, ips: &[IpAddr]) -> anyhow::Result<()> {
        for chunk in ips.chunks(256) {
            let words: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            self.tool
                .send_line(&format!("{verb} {}", words.join(" ")))?;
        }
        Ok(())
    }

    /// Answers heard from record `from` on, as (ip, mac, µs), and where the next call starts.
    pub fn answers_since(&self, from: usize) -> (Vec<(IpAddr, String, u64)>, usize) {
        let (lines, next) = self.tool.since(from);
        let answers = lines
            .into_iter()
            .filter_map(|l| match l {
                SweepLine::Answer(Record::Answer { ip, mac, at_us }) => Some((ip, mac, at_us)),
                _ => None,
            })
            .collect();
        (answers, next)
    }

    /// Stops it; the requests it sent in all.
    ///
    /// # Errors
    /// When it does not exit cleanly.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.tool.finish()?;
        let (lines, _) = self.tool.since(0);
        lines
            .into_iter()
            .find_map(|l| match l {
                SweepLine::Sent(n) => Some(n),
                SweepLine::Answer(_) => None,
            })
            .ok_or_else(|| anyhow::anyhow!("the sweep did not say what it sent"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_removed_from_the_middle_keep_the_rest_in_turn() {
        let mut t = Targets::default();
        let ips: Vec<IpAddr> = (1..=4)
            .map(|n| IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, n)))
            .collect();
        for ip in &ips {
            t.add(*ip);
        }
        t.add(ips[0]);
        t.remove(ips[1]);
        assert_eq!(t.order.len(), 3);
        for (i, ip) in t.order.iter().enumerate() {
            assert_eq!(t.at[ip], i);
        }
        assert!(!t.at.contains_key(&ips[1]));
    }

    #[test]
    fn lines_are_told_apart() {
        assert_eq!(parse("sent n=12"), Some(SweepLine::Sent(12)));
        assert!(matches!(
            parse("answer ip=192.0.2.5 mac=02:00:00:00:00:01 at_us=5"),
            Some(SweepLine::Answer(_))
        ));
    }
}
