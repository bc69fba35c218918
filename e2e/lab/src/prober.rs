//! The prober: what a client sees of a Service IP while something fails.
//!
//! `ferrolb-lab probe` ([`run_prober`]) runs in the client namespace and opens a TCP connection
//! to a Service IP every 10 ms and sends an HTTP GET; each answer names the node whose backend
//! served it. [`Prober`] starts it and collects its records; [`ProbeReport`] turns them into the
//! outage (longest gap between replies) and the lost probe count. The arithmetic is pure
//! ([`ProbeReport::from_records`]).
//!
//! Why TCP and not ICMP or UDP echo: a new TCP connection needs the client's neighbour entry to
//! point at a node that serves the IP, exactly like client traffic; a lost SYN is only retried
//! after 1 s, so a probe that times out (any timeout well under 1 s) is traffic that did not get
//! through, and probes are independent (each its own connection, sent on schedule even while
//! earlier ones wait).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::binaries::binary;
use crate::process::LineTool;
use crate::topology::{client_ns, command_in};
use crate::wait::poll_until;

/// Microseconds since the UNIX epoch: one clock for the prober (another process) and its
/// caller on the same machine.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

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
    tool: LineTool<ProbeRecord>,
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
        let tool = binary("ferrolb-lab")?;
        let mut command = command_in(&client_ns(prefix), &tool.display().to_string());
        command.args([
            "probe",
            "--target",
            target,
            "--port",
            "80",
            "--interval-ms",
            &interval.as_millis().to_string(),
            "--timeout-ms",
            &timeout.as_millis().to_string(),
        ]);
        let tool = LineTool::spawn(command, "prober", ProbeRecord::parse)?;
        Ok(Self { tool, timeout })
    }

    /// The records so far.
    pub fn records(&self) -> Vec<ProbeRecord> {
        self.tool.records()
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
        poll_until(&format!("{n} probes answered"), deadline, || {
            let replies = self.replies();
            match replies.last() {
                Some((_, node)) if replies.len() >= n => Ok(node.clone()),
                _ => Err(format!("{} answered", replies.len())),
            }
        })
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
        self.tool
            .finish()
            .map_err(|e| anyhow::anyhow!("the prober failed: {e}"))?;
        Ok(ProbeReport::from_records(self.records(), self.timeout))
    }
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
}
