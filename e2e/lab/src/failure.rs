//! Failures for the lab, and what a client sees of them.
//!
//! - [`Prober`]: `ferrolb-lab probe` in the client namespace opens a TCP connection to a Service
//!   IP every 10 ms and sends an HTTP GET; each answer names the node whose backend served it.
//!   [`ProbeReport`] turns the records into the outage (longest gap between replies) and the lost
//!   probe count. The arithmetic is pure ([`ProbeReport::from_records`]).
//! - [`Speaker`]: one node's speaker process: SIGKILL, SIGTERM (and wait), restart with the same
//!   command line and environment (read from `/proc` before it is stopped).
//! - Links and gossip: [`set_node_link`] takes a node off the bridge; [`block_gossip`] drops UDP
//!   7946 between two groups of nodes with nftables inside their namespaces.
//! - Ownership: [`SpeakerView`] is what one speaker's `/metrics` says (members alive, IPs
//!   announced, gossip datagrams dropped); [`announcers`] asks every speaker who announces an IP.
//! - Gossip forgeries: [`forged`] builds datagrams a speaker must drop, [`captured_udp_payloads`]
//!   reads datagrams out of `tcpdump -x` output for replays.
//!
//! Why TCP and not ICMP or UDP echo: a new TCP connection needs the client's neighbour entry to
//! point at a node that serves the IP, exactly like client traffic; a lost SYN is only retried
//! after 1 s, so a probe that times out (any timeout well under 1 s) is traffic that did not get
//! through, and probes are independent (each its own connection, sent on schedule even while
//! earlier ones wait).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::netns::{Topology, command_in, in_ns, run};
use crate::binaries::binary as sibling;
use crate::cluster::{DEMO_OBJECTS, kubectl, lab_dir, publish_backends};

/// Microseconds since the UNIX epoch: one clock for the prober (another process) and its
/// caller on the same machine.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Namespace of node `i` (1-based) of lab `prefix`.
pub fn node_ns(prefix: &str, node: u8) -> String {
    format!("{prefix}n{node}")
}

/// IPv4 address of node `i`.
pub fn node_ip(node: u8) -> String {
    format!("192.0.2.{}", 10 + u16::from(node))
}

/// The client namespace of lab `prefix`.
pub fn client_ns(prefix: &str) -> String {
    format!("{prefix}cl")
}

// ---------------------------------------------------------------------------------------------
// Probing

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend answered: the node's name.
    Served(String),
    /// The connection was made (the IP was reachable) but broken before the answer, e.g. reset
    /// by a node that took over the IP mid-connection and has no state for it: why.
    Reset(String),
    /// No connection within the timeout (or refused): why.
    Lost(String),
}

/// One probe: when it was sent, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    /// Sequence number (0, 1, ...), one per interval.
    pub seq: u64,
    /// Wall clock at sending, µs since the epoch.
    pub sent_us: u64,
    /// Time to the answer ([`Outcome::Served`]) or to the connection ([`Outcome::Reset`]), µs.
    pub rtt_us: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl ProbeRecord {
    /// When the IP answered (the backend's answer, or the connection of a reset probe), if it
    /// did.
    pub fn reply_us(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Lost(_) => None,
            _ => self.rtt_us.map(|rtt| self.sent_us + rtt),
        }
    }

    /// The node that served it.
    pub fn node(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Served(node) => Some(node),
            _ => None,
        }
    }

    /// The line `ferrolb-lab probe` prints for it.
    pub fn line(&self) -> String {
        let rtt = self.rtt_us.unwrap_or(0);
        match &self.outcome {
            Outcome::Served(node) => format!(
                "probe seq={} sent_us={} rtt_us={rtt} node={node}",
                self.seq, self.sent_us
            ),
            Outcome::Reset(why) => format!(
                "probe seq={} sent_us={} rtt_us={rtt} reset={why}",
                self.seq, self.sent_us
            ),
            Outcome::Lost(why) => {
                format!("probe seq={} sent_us={} lost={why}", self.seq, self.sent_us)
            }
        }
    }

    /// Parses a line printed by [`Self::line`].
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("probe ")?;
        let fields: BTreeMap<&str, &str> = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let seq = fields.get("seq")?.parse().ok()?;
        let sent_us = fields.get("sent_us")?.parse().ok()?;
        let rtt = || fields.get("rtt_us").and_then(|r| r.parse().ok());
        let (rtt_us, outcome) = if let Some(node) = fields.get("node") {
            (Some(rtt()?), Outcome::Served((*node).to_owned()))
        } else if let Some(why) = fields.get("reset") {
            (Some(rtt()?), Outcome::Reset((*why).to_owned()))
        } else {
            (None, Outcome::Lost((*fields.get("lost")?).to_owned()))
        };
        Some(Self {
            seq,
            sent_us,
            rtt_us,
            outcome,
        })
    }
}

/// What a run of probes amounts to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeReport {
    /// Probes sent.
    pub sent: u64,
    /// Probes the backend answered in time.
    pub answered: u64,
    /// Probes that connected but were reset before the answer (the IP moved mid-connection).
    pub reset: u64,
    /// Probes with no connection in time: traffic that did not get through.
    pub lost: u64,
    /// The longest time without a reply (an answer, or a connection that was then reset):
    /// between two consecutive replies, or from the first probe
    /// to the first reply, or from the last reply to the end of the run (the last probe's send
    /// time plus the timeout) when probes were lost after it.
    pub longest_gap: Duration,
    /// When the longest gap began (µs since the epoch).
    pub gap_start_us: u64,
    /// Replies by node.
    pub by_node: BTreeMap<String, u64>,
    /// Every record, by sequence number.
    pub records: Vec<ProbeRecord>,
}

impl ProbeReport {
    /// The report of `records` (in any order) of probes that time out after `timeout`.
    pub fn from_records(mut records: Vec<ProbeRecord>, timeout: Duration) -> Self {
        records.sort_by_key(|r| r.seq);
        let mut report = Self {
            sent: records.len() as u64,
            ..Self::default()
        };
        let mut replies: Vec<u64> = Vec::new();
        for r in &records {
            match &r.outcome {
                Outcome::Served(node) => {
                    report.answered += 1;
                    *report.by_node.entry(node.clone()).or_default() += 1;
                }
                Outcome::Reset(_) => report.reset += 1,
                Outcome::Lost(_) => report.lost += 1,
            }
            replies.extend(r.reply_us());
        }
        replies.sort_unstable();
        let timeout_us = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
        let Some(first_sent) = records.first().map(|r| r.sent_us) else {
            return report;
        };
        let end = records
            .iter()
            .map(|r| r.reply_us().unwrap_or(r.sent_us.saturating_add(timeout_us)))
            .max()
            .unwrap_or(first_sent);
        // Boundaries: the run's start, every reply, the run's end.
        let mut points = Vec::with_capacity(replies.len() + 2);
        points.push(first_sent);
        points.extend(&replies);
        points.push(end.max(replies.last().copied().unwrap_or(0)));
        let (start, gap) = points
            .windows(2)
            .map(|w| (w[0], w[1].saturating_sub(w[0])))
            .max_by_key(|(_, gap)| *gap)
            .unwrap_or((first_sent, 0));
        report.longest_gap = Duration::from_micros(gap);
        report.gap_start_us = start;
        report.records = records;
        report
    }

    /// Replies sent at or after `since_us`, in order, with the node that answered.
    pub fn replies_since(&self, since_us: u64) -> Vec<(u64, &str)> {
        self.records
            .iter()
            .filter(|r| r.sent_us >= since_us)
            .filter_map(|r| Some((r.reply_us()?, r.node()?)))
            .collect()
    }
}

/// One HTTP probe of `target`: how it ended, and when (since `start`) it connected or was
/// answered.
fn probe_once(target: SocketAddr, timeout: Duration) -> (Outcome, Option<Duration>) {
    let start = Instant::now();
    let connected = match TcpStream::connect_timeout(&target, timeout) {
        Ok(stream) => stream,
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout",
                std::io::ErrorKind::ConnectionRefused => "refused",
                _ => "connect",
            };
            return (Outcome::Lost(why.to_owned()), None);
        }
    };
    let connect_time = start.elapsed();
    match exchange(connected, start, timeout) {
        Ok(node) => (Outcome::Served(node), Some(start.elapsed())),
        Err(why) => (Outcome::Reset(why.to_owned()), Some(connect_time)),
    }
}

/// The HTTP request and answer on a connected stream, within what is left of `timeout`.
fn exchange(
    mut stream: TcpStream,
    start: Instant,
    timeout: Duration,
) -> Result<String, &'static str> {
    let left = || {
        timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
    };
    stream
        .set_write_timeout(Some(left().ok_or("timeout")?))
        .map_err(|_| "socket")?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: ferrolb-lab\r\n\r\n")
        .map_err(|_| "write")?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        stream
            .set_read_timeout(Some(left().ok_or("timeout")?))
            .map_err(|_| "socket")?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timeout");
            }
            Err(_) => return Err("read"),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("bad-answer")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err("bad-status");
    }
    let node = body.trim();
    if node.is_empty() || node.contains(char::is_whitespace) {
        return Err("bad-answer");
    }
    Ok(node.to_owned())
}

/// The body of `ferrolb-lab probe`: probes `target` every `interval` until `stop` is set or
/// `duration` has passed, printing a [`ProbeRecord`] line per probe to `out` as results come in,
/// then a summary line.
///
/// # Errors
/// When `out` cannot be written.
pub fn run_prober(
    target: SocketAddr,
    interval: Duration,
    timeout: Duration,
    duration: Option<Duration>,
    stop: &AtomicBool,
    out: &mut impl Write,
) -> std::io::Result<ProbeReport> {
    let (tx, rx) = mpsc::channel::<ProbeRecord>();
    let start = Instant::now();
    let mut records = Vec::new();
    let mut seq = 0u64;
    let mut next = start;
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < d) {
        let sent_us = now_us();
        let tx = tx.clone();
        let this = seq;
        // A thread per probe: probes never wait for each other, so a lost one does not delay
        // the next (at most timeout / interval of them are in flight).
        std::thread::spawn(move || {
            let (outcome, rtt) = probe_once(target, timeout);
            let _ = tx.send(ProbeRecord {
                seq: this,
                sent_us,
                rtt_us: rtt.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                outcome,
            });
        });
        seq += 1;
        for record in rx.try_iter() {
            writeln!(out, "{}", record.line())?;
            records.push(record);
        }
        out.flush()?;
        // Fixed schedule: a late tick does not shift the ones after it.
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    drop(tx);
    // Every probe ends within its timeout; the channel closes when the last thread is done.
    for record in rx {
        writeln!(out, "{}", record.line())?;
        records.push(record);
    }
    let report = ProbeReport::from_records(records, timeout);
    writeln!(
        out,
        "summary sent={} answered={} reset={} lost={} longest_gap_ms={:.1}",
        report.sent,
        report.answered,
        report.reset,
        report.lost,
        report.longest_gap.as_secs_f64() * 1000.0
    )?;
    out.flush()?;
    Ok(report)
}

/// `ferrolb-lab probe` running in the client namespace; its records are collected as they come.
#[derive(Debug)]
pub struct Prober {
    child: Child,
    stdin: Option<ChildStdin>,
    records: Arc<Mutex<Vec<ProbeRecord>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    timeout: Duration,
}

impl Prober {
    /// Starts probing `target` port 80 from the client namespace of lab `prefix`, every
    /// `interval`, each probe given `timeout`.
    ///
    /// # Errors
    /// When `ferrolb-lab` is not built or cannot start.
    pub fn start(
        prefix: &str,
        target: &str,
        interval: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let tool = sibling("ferrolb-lab")?;
        let mut child = command_in(&client_ns(prefix), &tool.display().to_string())
            .args([
                "probe",
                "--target",
                target,
                "--port",
                "80",
                "--interval-ms",
                &interval.as_millis().to_string(),
                "--timeout-ms",
                &timeout.as_millis().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from the prober"))?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(record) = ProbeRecord::parse(&line)
                    && let Ok(mut all) = sink.lock()
                {
                    all.push(record);
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            records,
            reader: Some(reader),
            timeout,
        })
    }

    /// The records so far.
    pub fn records(&self) -> Vec<ProbeRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Replies (reply time, node) so far, by reply time.
    fn replies(&self) -> Vec<(u64, String)> {
        let mut replies: Vec<(u64, String)> = self
            .records()
            .iter()
            .filter_map(|r| Some((r.reply_us()?, r.node()?.to_owned())))
            .collect();
        replies.sort();
        replies
    }

    /// Waits until `n` replies have come (within `deadline`); the node of the last one.
    ///
    /// # Errors
    /// When they do not come in time.
    pub fn wait_replies(&self, n: usize, deadline: Duration) -> anyhow::Result<String> {
        let until = Instant::now() + deadline;
        loop {
            let replies = self.replies();
            if replies.len() >= n
                && let Some((_, node)) = replies.last()
            {
                return Ok(node.clone());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "only {} of {n} probes answered within {deadline:?}",
                replies.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until traffic flows again after an event at `since_us`: at least `window` has
    /// passed since it, and replies came steadily over the last 400 ms (at least 10 of them, the
    /// last within 150 ms). False when that does not happen within `deadline` of the event.
    pub fn wait_flowing(&self, since_us: u64, window: Duration, deadline: Duration) -> bool {
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        let deadline_us = u64::try_from(deadline.as_micros()).unwrap_or(u64::MAX);
        loop {
            let now = now_us();
            if now >= since_us.saturating_add(window_us) {
                let recent: Vec<u64> = self
                    .replies()
                    .into_iter()
                    .map(|(at, _)| at)
                    .filter(|at| *at >= since_us && *at + 400_000 >= now)
                    .collect();
                if recent.len() >= 10 && recent.last().is_some_and(|at| at + 150_000 >= now) {
                    return true;
                }
            }
            if now >= since_us.saturating_add(deadline_us) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops probing (probes in flight finish) and reports.
    ///
    /// # Errors
    /// When the prober does not exit.
    pub fn stop(mut self) -> anyhow::Result<ProbeReport> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        anyhow::ensure!(status.success(), "the prober failed: {status}");
        Ok(ProbeReport::from_records(self.records(), self.timeout))
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        if self.reader.is_some() {
            // Stopped by unwinding, not by `stop`: end it now.
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Speaker processes

/// One node's speaker: its process and how to start it again.
#[derive(Debug)]
pub struct Speaker {
    /// Node index (1-based).
    pub node: u8,
    /// Its namespace.
    pub ns: String,
    /// Its process id now.
    pub pid: u32,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: PathBuf,
    /// Set when this helper started it (so it can be reaped).
    child: Option<Child>,
}

fn split_nul(bytes: &[u8]) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| std::ffi::OsStr::from_bytes(s).to_os_string())
        .collect()
}

/// Process ids running in namespace `ns`.
fn pids_in(ns: &str) -> Vec<u32> {
    run("ip", &["netns", "pids", ns])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether process `pid` runs (a zombie does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    run("kill", &[sig, &pid.to_string()])?;
    Ok(())
}

impl Speaker {
    /// The speaker of node `node` in lab `prefix`, with its command line and environment.
    ///
    /// # Errors
    /// When no speaker runs there.
    pub fn find(prefix: &str, node: u8) -> anyhow::Result<Self> {
        let ns = node_ns(prefix, node);
        for pid in pids_in(&ns) {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let argv = split_nul(&cmdline);
            let is_speaker = argv.first().is_some_and(|a| {
                std::path::Path::new(a)
                    .file_name()
                    .is_some_and(|f| f == "ferrolb-speaker")
            });
            if !is_speaker || !running(pid) {
                continue;
            }
            let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
            let env = split_nul(&environ)
                .into_iter()
                .filter_map(|kv| {
                    let kv = kv.to_string_lossy().into_owned();
                    let (k, v) = kv.split_once('=')?;
                    Some((OsString::from(k), OsString::from(v)))
                })
                .collect();
            return Ok(Self {
                node,
                ns,
                pid,
                argv,
                env,
                log: lab_dir(prefix).join(format!("speaker-node-{node}.log")),
                child: None,
            });
        }
        anyhow::bail!("no speaker runs in {ns}")
    }

    /// Whether it runs.
    pub fn is_running(&mut self) -> bool {
        if let Some(child) = &mut self.child
            && let Ok(Some(_)) = child.try_wait()
        {
            return false;
        }
        running(self.pid)
    }

    /// Waits until it has exited; how long that took.
    fn wait_exit(&mut self, deadline: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        while self.is_running() {
            anyhow::ensure!(
                start.elapsed() < deadline,
                "speaker of node-{} (pid {}) still runs after {deadline:?}",
                self.node,
                self.pid
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        Ok(start.elapsed())
    }

    /// `kill -9`, and waits until it is gone.
    ///
    /// # Errors
    /// When the signal cannot be sent or the process survives.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        signal(self.pid, "-KILL")?;
        self.wait_exit(Duration::from_secs(5))?;
        Ok(())
    }

    /// SIGTERM, and waits until it has exited (after its grace period); how long it took.
    ///
    /// # Errors
    /// When the signal cannot be sent or it does not exit within `deadline`.
    pub fn terminate(&mut self, deadline: Duration) -> anyhow::Result<Duration> {
        signal(self.pid, "-TERM")?;
        self.wait_exit(deadline)
    }

    /// Starts it again, in the same namespace, with the same command line and environment;
    /// output is appended to its log.
    ///
    /// # Errors
    /// When it is still running or cannot start.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.is_running(),
            "speaker of node-{} still runs",
            self.node
        );
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("empty command line"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = command_in(&self.ns, &program.to_string_lossy());
        cmd.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn()?;
        // `ip netns exec` execs the program: the child's pid is the speaker's.
        self.pid = child.id();
        self.child = Some(child);
        Ok(())
    }
}

/// Makes the client forget the link-layer address of `ip`, so its next packet asks again (and
/// reaches whoever answers ARP/NDP for it now, not the node it learnt earlier).
///
/// # Errors
/// When iproute2 fails.
pub fn forget_neighbour(prefix: &str, ip: &str) -> anyhow::Result<()> {
    in_ns(&client_ns(prefix), &["ip", "neigh", "flush", "to", ip])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Links and gossip partitions

/// Takes node `node` off the bridge (its bridge port down), or puts it back.
///
/// # Errors
/// When the node is not in `topo` or iproute2 fails.
pub fn set_node_link(topo: &Topology, node: u8, up: bool) -> anyhow::Result<()> {
    let ns = node_ns(&topo.prefix, node);
    let host = topo
        .hosts
        .iter()
        .find(|h| h.ns == ns)
        .ok_or_else(|| anyhow::anyhow!("no host {ns}"))?;
    topo.set_link(host, up)
}

const PARTITION_TABLE: &str = "ferrolb_lab_partition";

/// Drops gossip (UDP 7946) between nodes of `a` and nodes of `b`, in both directions, with an
/// nftables table in each node's namespace (everything else still flows).
///
/// # Errors
/// When `nft` is missing or fails.
pub fn block_gossip(prefix: &str, a: &[u8], b: &[u8]) -> anyhow::Result<()> {
    for (mine, theirs) in [(a, b), (b, a)] {
        let others: Vec<String> = theirs.iter().map(|n| node_ip(*n)).collect();
        let set = format!("{{ {} }}", others.join(", "));
        let script = format!(
            "add table inet {PARTITION_TABLE}; \
             add chain inet {PARTITION_TABLE} input {{ type filter hook input priority 0 ; }} ; \
             add chain inet {PARTITION_TABLE} output {{ type filter hook output priority 0 ; }} ; \
             add rule inet {PARTITION_TABLE} input ip saddr {set} udp dport 7946 drop ; \
             add rule inet {PARTITION_TABLE} input ip saddr {set} udp sport 7946 drop ; \
             add rule inet {PARTITION_TABLE} output ip daddr {set} udp dport 7946 drop"
        );
        for node in mine {
            in_ns(&node_ns(prefix, *node), &["nft", &script])?;
        }
    }
    Ok(())
}

/// Removes what [`block_gossip`] added in these nodes.
///
/// # Errors
/// When `nft` fails.
pub fn heal_gossip(prefix: &str, nodes: &[u8]) -> anyhow::Result<()> {
    for node in nodes {
        in_ns(
            &node_ns(prefix, *node),
            &["nft", "delete", "table", "inet", PARTITION_TABLE],
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// What speakers say

/// One speaker's view, from its `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpeakerView {
    /// `ferrolb_speaker_gossip_members{state="alive"}`.
    pub alive: Option<u64>,
    /// IPs in `ferrolb_speaker_announced`.
    pub announced: BTreeSet<String>,
    /// `ferrolb_speaker_gossip_dropped_total` by reason.
    pub dropped: BTreeMap<String, u64>,
    /// `ferrolb_speaker_owner_changes_total`.
    pub owner_changes: u64,
    /// Sum of `ferrolb_layer2_malformed_frames_total`.
    pub l2_malformed: u64,
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let labels = line.split_once('{')?.1.rsplit_once('}')?.0;
    let key = format!("{name}=\"");
    let at = labels.find(&key)? + key.len();
    labels[at..].split('"').next()
}

fn value(line: &str) -> Option<u64> {
    let v = line.rsplit(' ').next()?;
    v.parse::<u64>()
        .ok()
        .or_else(|| v.parse::<f64>().ok().map(|f| f as u64))
}

impl SpeakerView {
    /// Reads the Prometheus text of a speaker's `/metrics`.
    pub fn parse(text: &str) -> Self {
        let mut view = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            match name {
                "ferrolb_speaker_gossip_members" if label(line, "state") == Some("alive") => {
                    view.alive = value(line);
                }
                "ferrolb_speaker_announced" => {
                    if let Some(ip) = label(line, "ip")
                        && value(line).unwrap_or(0) > 0
                    {
                        view.announced.insert(ip.to_owned());
                    }
                }
                "ferrolb_speaker_gossip_dropped_total" => {
                    if let (Some(reason), Some(n)) = (label(line, "reason"), value(line)) {
                        view.dropped.insert(reason.to_owned(), n);
                    }
                }
                "ferrolb_speaker_owner_changes_total" => {
                    view.owner_changes = value(line).unwrap_or(0);
                }
                "ferrolb_layer2_malformed_frames_total" => {
                    view.l2_malformed += value(line).unwrap_or(0);
                }
                _ => {}
            }
        }
        view
    }

    /// Dropped datagrams of one reason.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }
}

/// Node `node`'s speaker view, or `None` when its metrics do not answer (it is not running).
pub fn speaker_view(prefix: &str, node: u8) -> Option<SpeakerView> {
    let url = format!("http://{}:7472/metrics", node_ip(node));
    let out = in_ns(&node_ns(prefix, node), &["curl", "-sf", "-m", "2", &url]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("ferrolb_speaker")
        .then(|| SpeakerView::parse(&text))
}

/// Every node's view (index 0 is node 1).
pub fn speaker_views(prefix: &str, nodes: u8) -> Vec<Option<SpeakerView>> {
    (1..=nodes).map(|n| speaker_view(prefix, n)).collect()
}

/// The nodes whose running speaker announces `ip`.
pub fn announcers(views: &[Option<SpeakerView>], ip: &str) -> Vec<u8> {
    views
        .iter()
        .zip(1u8..)
        .filter(|(v, _)| v.as_ref().is_some_and(|v| v.announced.contains(ip)))
        .map(|(_, n)| n)
        .collect()
}

/// Whether every speaker runs and sees `nodes` alive, and each IP has exactly one announcer;
/// then the owner of each IP.
pub fn settled(views: &[Option<SpeakerView>], ips: &[String]) -> Option<Vec<u8>> {
    let n = views.len() as u64;
    if !views
        .iter()
        .all(|v| v.as_ref().is_some_and(|v| v.alive == Some(n)))
    {
        return None;
    }
    ips.iter()
        .map(|ip| match announcers(views, ip).as_slice() {
            [one] => Some(*one),
            _ => None,
        })
        .collect()
}

/// Waits until the lab is settled ([`settled`]) and has stayed the same for `hold`; the owner
/// of each IP.
///
/// # Errors
/// When that does not happen within `deadline`.
pub fn wait_settled(
    prefix: &str,
    nodes: u8,
    ips: &[String],
    hold: Duration,
    deadline: Duration,
) -> anyhow::Result<Vec<u8>> {
    let start = Instant::now();
    let mut since: Option<(Instant, Vec<u8>)> = None;
    loop {
        let views = speaker_views(prefix, nodes);
        match (settled(&views, ips), &since) {
            (Some(owners), Some((at, before))) if owners == *before => {
                if at.elapsed() >= hold {
                    return Ok(owners);
                }
            }
            (Some(owners), _) => since = Some((Instant::now(), owners)),
            (None, _) => since = None,
        }
        if start.elapsed() > deadline {
            let summary: Vec<String> = views
                .iter()
                .zip(1..)
                .map(|(v, i)| match v {
                    Some(v) => format!("node-{i}: alive={:?} announces={:?}", v.alive, v.announced),
                    None => format!("node-{i}: metrics do not answer"),
                })
                .collect();
            anyhow::bail!(
                "the lab did not settle within {deadline:?}: {}",
                summary.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The external IP of Service `namespace/name`, waiting for it up to `deadline`.
///
/// # Errors
/// When it gets none in time.
pub fn service_ip(
    prefix: &str,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let ip = kubectl(
            prefix,
            &[
                "get",
                "svc",
                name,
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
            None,
        )?;
        if !ip.trim().is_empty() {
            return Ok(ip.trim().to_owned());
        }
        anyhow::ensure!(
            start.elapsed() < deadline,
            "Service {namespace}/{name} got no IP"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Applies the demo objects plus `extra` Services (`web-1`, `web-2`, ...) in lab `prefix` of
/// `nodes` nodes, publishes their backends, and waits until every speaker sees all nodes alive,
/// each Service IP has one announcer, and the client reaches the first one. The IPs, `web`'s
/// first.
///
/// # Errors
/// When any of that does not happen within a minute.
pub fn serve(prefix: &str, nodes: u8, extra: usize) -> anyhow::Result<Vec<String>> {
    let mut manifest = DEMO_OBJECTS.to_owned();
    let mut names = vec!["web".to_owned()];
    for i in 1..=extra {
        let name = format!("web-{i}");
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\n"
        ));
        names.push(name);
    }
    kubectl(prefix, &["apply", "-f", "-"], Some(&manifest))?;
    let mut ips = Vec::new();
    for name in &names {
        publish_backends(prefix, "default", name, nodes)?;
        ips.push(service_ip(
            prefix,
            "default",
            name,
            Duration::from_secs(30),
        )?);
    }
    wait_settled(
        prefix,
        nodes,
        &ips,
        Duration::from_millis(500),
        Duration::from_secs(60),
    )?;
    let start = Instant::now();
    let url = format!("http://{}/", ips[0]);
    loop {
        if let Ok(out) = in_ns(&client_ns(prefix), &["curl", "-sf", "-m", "1", &url])
            && String::from_utf8_lossy(&out.stdout).starts_with("node-")
        {
            return Ok(ips);
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "the client never reached {url}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `lines` lines of every log of lab `prefix` (to print when a test fails).
pub fn log_tails(prefix: &str, lines: usize) -> String {
    let mut out = String::new();
    let Ok(dir) = std::fs::read_dir(lab_dir(prefix)) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        out.push_str(&format!("==> {} <==\n", path.display()));
        for line in &all[all.len().saturating_sub(lines)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Gossip forgeries and replays

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
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
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
    let tool = sibling("ferrolb-lab")?.display().to_string();
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

    fn ok(seq: u64, sent_ms: u64, rtt_ms: u64, node: &str) -> ProbeRecord {
        ProbeRecord {
            seq,
            sent_us: sent_ms * 1000,
            rtt_us: Some(rtt_ms * 1000),
            outcome: Outcome::Served(node.into()),
        }
    }

    fn lost(seq: u64, sent_ms: u64) -> ProbeRecord {
        ProbeRecord {
            seq,
            sent_us: sent_ms * 1000,
            rtt_us: None,
            outcome: Outcome::Lost("timeout".into()),
        }
    }

    #[test]
    fn probe_lines_round_trip() {
        let reset = ProbeRecord {
            seq: 5,
            sent_us: 1_020_000,
            rtt_us: Some(300),
            outcome: Outcome::Reset("read".into()),
        };
        for r in [ok(3, 1_000, 2, "node-1"), lost(4, 1_010), reset] {
            assert_eq!(ProbeRecord::parse(&r.line()), Some(r));
        }
        assert_eq!(ProbeRecord::parse("summary sent=1"), None);
    }

    #[test]
    fn the_outage_is_the_longest_gap_between_replies_and_lost_probes_are_counted() {
        let mut records = vec![ok(0, 0, 1, "node-1"), ok(1, 10, 1, "node-1")];
        records.extend((2..50).map(|i| lost(i, i * 10)));
        records.push(ok(50, 500, 3, "node-2"));
        records.push(ok(51, 510, 1, "node-2"));
        let report = ProbeReport::from_records(records, Duration::from_millis(50));
        assert_eq!(report.sent, 52);
        assert_eq!(report.lost, 48);
        assert_eq!(report.answered, 4);
        // From the reply at 11 ms to the one at 503 ms.
        assert_eq!(report.longest_gap, Duration::from_millis(492));
        assert_eq!(report.gap_start_us, 11_000);
        assert_eq!(report.by_node.get("node-2"), Some(&2));
        assert_eq!(report.replies_since(500_000).len(), 2);
    }

    #[test]
    fn a_reset_probe_is_not_lost_but_serves_nobody() {
        let records = vec![
            ok(0, 0, 1, "node-1"),
            ProbeRecord {
                seq: 1,
                sent_us: 10_000,
                rtt_us: Some(1_000),
                outcome: Outcome::Reset("read".into()),
            },
            ok(2, 20, 1, "node-2"),
        ];
        let report = ProbeReport::from_records(records, Duration::from_millis(50));
        assert_eq!((report.answered, report.reset, report.lost), (2, 1, 0));
        assert_eq!(report.longest_gap, Duration::from_millis(10));
        assert_eq!(report.by_node.len(), 2);
    }

    #[test]
    fn an_outage_that_lasts_until_the_end_is_not_hidden() {
        let mut records = vec![ok(0, 0, 1, "node-1")];
        records.extend((1..=100).map(|i| lost(i, i * 10)));
        let report = ProbeReport::from_records(records, Duration::from_millis(50));
        // The last probe was sent at 1,000 ms and given up at 1,050 ms.
        assert_eq!(report.longest_gap, Duration::from_millis(1_049));
        let none = ProbeReport::from_records(vec![lost(0, 0)], Duration::from_millis(50));
        assert_eq!(none.longest_gap, Duration::from_millis(50));
    }

    #[test]
    fn speaker_metrics_are_read() {
        let text = r#"# HELP ferrolb_speaker_announced IPs
ferrolb_speaker_announced{service="default/web",node="node-1",ip="192.0.2.192",protocol="ipv4"} 1
ferrolb_speaker_gossip_members{state="alive"} 3
ferrolb_speaker_gossip_dropped_total{reason="forged"} 7
ferrolb_speaker_gossip_dropped_total{reason="replayed"} 1
ferrolb_speaker_owner_changes_total 2
ferrolb_layer2_malformed_frames_total{interface="eth0"} 5
ferrolb_layer2_malformed_frames_total{interface="eth1"} 1
# EOF
"#;
        let view = SpeakerView::parse(text);
        assert_eq!(view.alive, Some(3));
        assert_eq!(view.announced, BTreeSet::from(["192.0.2.192".to_owned()]));
        assert_eq!(view.dropped("forged"), 7);
        assert_eq!(view.dropped("stale"), 0);
        assert_eq!(view.owner_changes, 2);
        assert_eq!(view.l2_malformed, 6);
        let views = vec![Some(view.clone()), None, Some(SpeakerView::default())];
        assert_eq!(announcers(&views, "192.0.2.192"), vec![1]);
    }

    #[test]
    fn settled_needs_every_speaker_alive_and_one_announcer_per_ip() {
        let mut a = SpeakerView::parse(
            "ferrolb_speaker_gossip_members{state=\"alive\"} 2\nferrolb_speaker_announced{ip=\"192.0.2.192\"} 1\n",
        );
        let b = SpeakerView::parse("ferrolb_speaker_gossip_members{state=\"alive\"} 2\n");
        let ips = vec!["192.0.2.192".to_owned()];
        assert_eq!(
            settled(&[Some(a.clone()), Some(b.clone())], &ips),
            Some(vec![1])
        );
        assert_eq!(settled(&[Some(a.clone()), None], &ips), None);
        assert_eq!(settled(&[Some(a.clone()), Some(a.clone())], &ips), None);
        a.alive = Some(1);
        assert_eq!(settled(&[Some(a), Some(b)], &ips), None);
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
        use ferrolb_speaker::gossip::seal::{KeyRing, Rejected, Sealer};
        let mut real = Sealer::new(KeyRing::from_lines("lab-key").unwrap(), 10_000);
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
