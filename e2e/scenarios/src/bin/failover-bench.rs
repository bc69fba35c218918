//! `failover-bench` (root): how long clients lose a Service IP when its node or speaker fails, in
//! the lab topology (3 node namespaces on a bridge, a client namespace), compared with
//! keepalived.
//!
//! A prober in the client namespace (`ferrolb-lab probe`) opens a TCP connection to the IP and
//! sends an HTTP GET every 10 ms; a trial's outage is the longest gap between replies. Per
//! scenario, `--trials` trials (default 20):
//! - `node-cut`: the owner node's bridge port goes down; restored after traffic resumes;
//! - `kill`: the owner's speaker gets `kill -9`; started again after traffic resumes;
//! - `sigterm`: the owner's speaker gets SIGTERM (a rolling restart), exits after its grace
//!   (2 s in the lab) and is started again, all while probing: lost probes are counted too;
//! - `fast-node-cut`: `node-cut` with every speaker restarted on `--gossip-profile fast`;
//! - `stress`: the fast profile for `--stress-minutes` (default 10) with nothing failed while
//!   busy loops (twice as many as cores) keep every core busy: each owner change is a false
//!   failover, and the client's longest gap and lost probes are counted too;
//! - `keepalived-default` / `keepalived-v3-100ms`: keepalived (VRRPv2 defaults; VRRPv3 with
//!   `advert_int 0.1`) in each node namespace holds 198.51.100.10 instead, and the master node is
//!   cut off the same way.
//!
//! Before each trial the lab must be settled (every speaker sees 3 alive, one owner, unchanged
//! for 3.5 s: past the previous owner's gratuitous ARP repeats) or, for keepalived, one master.
//! Ends with one line per measurement:
//! `failover-bench impl=<ferrolb|ferrolb-fast|keepalived-default|keepalived-v3-100ms>
//! scenario=<..> p50_ms=.. p95_ms=.. max_ms=..`, the SIGTERM lost-probe counts,
//! `failover-bench impl=ferrolb-fast scenario=stress false_failovers=..`, then
//! `failover-bench ratio_node_cut_p95_vs_keepalived_default=..` and
//! `failover-bench ratio_fast_node_cut_p95_vs_keepalived_v3=..`.
//!
//! Run with `cargo run --release -p ferrolb-e2e --bin failover-bench` (it builds the other lab
//! binaries of the same profile first when started by cargo). Everything is removed at the end,
//! also on failure; after a crash, `ferrolb-lab down --prefix fb<N>` (the prefix is printed).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports its figures on stdout and its progress on stderr"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use ferrolb_lab::Lab;
use ferrolb_lab::binaries::build_lab_binaries;
use ferrolb_lab::faults::{forget_neighbour, set_node_link};
use ferrolb_lab::prober::{ProbeReport, Prober, now_us};
use ferrolb_lab::process::Signal;
use ferrolb_lab::topology::{client_ns, in_ns, node_ns};

const NODES: u8 = 3;
const INTERVAL: Duration = Duration::from_millis(10);
/// Settled this long before a trial: the previous owner's gratuitous ARP repeats (3, 1 s apart)
/// are over, so one trial does not disturb the next.
const HOLD: Duration = Duration::from_millis(3_500);
/// After the failure, traffic must flow again within this.
const RESUME_DEADLINE: Duration = Duration::from_secs(20);
/// The keepalived virtual IP (on the client's link by an on-link route).
const VIP: &str = "198.51.100.10";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    /// Owner node's link cut.
    #[value(name = "node-cut")]
    NodeCut,
    /// Owner speaker `kill -9`.
    Kill,
    /// Owner speaker SIGTERM and restart.
    Sigterm,
    /// Owner node's link cut, every speaker on the fast gossip profile.
    #[value(name = "fast-node-cut")]
    FastNodeCut,
    /// Fast profile, nothing failed, CPU hogs on every core for `--stress-minutes`: false
    /// failovers.
    Stress,
    /// keepalived, VRRPv2 defaults, master node cut.
    #[value(name = "keepalived-default")]
    KeepalivedDefault,
    /// keepalived, VRRPv3 `advert_int 0.1`, master node cut.
    #[value(name = "keepalived-v3-100ms")]
    KeepalivedV3,
}

impl Scenario {
    fn implementation(self) -> &'static str {
        match self {
            Self::NodeCut | Self::Kill | Self::Sigterm => "ferrolb",
            Self::FastNodeCut | Self::Stress => "ferrolb-fast",
            Self::KeepalivedDefault => "keepalived-default",
            Self::KeepalivedV3 => "keepalived-v3-100ms",
        }
    }

    /// Whether the speakers run the fast gossip profile for this scenario.
    fn fast(self) -> bool {
        matches!(self, Self::FastNodeCut | Self::Stress)
    }

    fn name(self) -> &'static str {
        match self {
            Self::NodeCut | Self::FastNodeCut | Self::KeepalivedDefault | Self::KeepalivedV3 => {
                "node-cut"
            }
            Self::Stress => "stress",
            Self::Kill => "kill",
            Self::Sigterm => "sigterm",
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "failover-bench",
    about = "Client outage when a Service IP's node or speaker fails, ferrolb vs keepalived"
)]
struct Args {
    /// Trials per scenario.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Scenarios to run (comma separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "node-cut,kill,sigterm,fast-node-cut,stress,keepalived-default,keepalived-v3-100ms"
    )]
    scenarios: Vec<Scenario>,
    /// How long the `stress` scenario keeps the cores busy.
    #[arg(long, default_value_t = 10.0)]
    stress_minutes: f64,
    /// Time a probe is given; a lost SYN is retried only after 1 s, so anything well below that
    /// counts real loss, and more than a few ms forgives a busy machine.
    #[arg(long, default_value_t = 250)]
    timeout_ms: u64,
    /// Do not build the lab's other binaries first.
    #[arg(long)]
    no_build: bool,
}

/// One trial's result.
#[derive(Debug)]
struct Trial {
    outage: Duration,
    lost: u64,
    reset: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn describe(report: &ProbeReport) -> String {
    format!(
        "outage {:.0} ms, {} of {} probes lost, {} reset, served by {:?}",
        ms(report.longest_gap),
        report.lost,
        report.sent,
        report.reset,
        report.by_node
    )
}

fn ferrolb_trial(
    lab: &Lab,
    ips: &[String],
    scenario: Scenario,
    timeout: Duration,
) -> anyhow::Result<(Trial, String)> {
    let prefix = lab.prefix();
    let owner = lab.wait_settled(ips, HOLD, Duration::from_secs(90))?[0];
    let speaker = Lab::speaker(owner);
    // A node that kept the IP through the previous trial (never losing it in its own view) does
    // not announce it again, so the client may still use the interim owner's address: start
    // every trial from a client that asks again.
    forget_neighbour(prefix, &ips[0])?;
    let prober = Prober::start(prefix, &ips[0], INTERVAL, timeout)?;
    let serving = prober.wait_replies(20, Duration::from_secs(10))?;
    let at = now_us();
    let mut note = format!("owner node-{owner}");
    if serving != format!("node-{owner}") {
        note.push_str(&format!(" (but {serving} served the client)"));
    }
    match scenario {
        Scenario::NodeCut | Scenario::FastNodeCut => {
            set_node_link(lab, owner, false)?;
            if !prober.wait_flowing(at, Duration::from_secs(2), RESUME_DEADLINE) {
                note.push_str(", traffic did NOT resume");
            }
        }
        Scenario::Kill => {
            lab.processes()
                .stop(&speaker, Signal::Kill, Duration::from_secs(5))?;
            if !prober.wait_flowing(at, Duration::from_secs(2), RESUME_DEADLINE) {
                note.push_str(", traffic did NOT resume");
            }
        }
        Scenario::Sigterm => {
            let took = lab
                .processes()
                .stop(&speaker, Signal::Term, Duration::from_secs(20))?;
            lab.processes().restart(&speaker)?;
            note.push_str(&format!(", exited {:.0} ms after SIGTERM", ms(took)));
            lab.wait_settled(ips, Duration::from_secs(1), Duration::from_secs(60))?;
        }
        _ => anyhow::bail!("not a ferrolb scenario"),
    }
    let report = prober.stop()?;
    // Restore for the next trial.
    match scenario {
        Scenario::NodeCut | Scenario::FastNodeCut => set_node_link(lab, owner, true)?,
        Scenario::Kill => {
            lab.processes().restart(&speaker)?;
        }
        _ => {}
    }
    let trial = Trial {
        outage: report.longest_gap,
        lost: report.lost,
        reset: report.reset,
    };
    Ok((trial, format!("{note}: {}", describe(&report))))
}

// ---------------------------------------------------------------------------------------------
// keepalived

/// keepalived in every node namespace, as supervised lab processes (`keepalived-<impl>-n<N>`):
/// one that dies mid-phase fails the run naming it. Stopped (SIGTERM: it removes the VIP) by
/// [`Keepalived::stop`]; the lab guard kills whatever is left.
struct Keepalived<'a> {
    lab: &'a Lab,
    names: Vec<String>,
}

impl<'a> Keepalived<'a> {
    fn config(scenario: Scenario, node: u8) -> String {
        // VRRPv2 defaults (advert_int 1, version 2), or VRRPv3 with advert_int 0.1. Priorities
        // differ (200, 150, 100), as in any real deployment: with equal ones two backups can take
        // over at the same instant, one then yields and drops the VIP, and a client that took its
        // gratuitous ARP is cut off until the winner repeats its own 5 s later. Every node
        // starts as BACKUP with nopreempt, so a node back on the network does not take the VIP
        // back (a second, unmeasured move before the next trial); that changes nothing in a
        // failover.
        let (version, advert) = match scenario {
            Scenario::KeepalivedV3 => (3, "0.1"),
            _ => (2, "1"),
        };
        let priority = 250 - 50 * u32::from(node);
        format!(
            "global_defs {{\n  router_id node-{node}\n  vrrp_version {version}\n}}\n\
             vrrp_instance lab {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
             priority {priority}\n  advert_int {advert}\n  nopreempt\n  virtual_ipaddress {{\n    \
             {VIP}/32 dev eth0\n  }}\n}}\n"
        )
    }

    fn start(lab: &'a Lab, scenario: Scenario) -> anyhow::Result<Self> {
        let dir = lab.dir();
        let mut names = Vec::new();
        for node in 1..=NODES {
            let name = format!("{}-n{node}", scenario.implementation());
            let conf = dir.join(format!("{name}.conf"));
            std::fs::write(&conf, Self::config(scenario, node))?;
            let path = |suffix: &str| dir.join(format!("{name}{suffix}")).display().to_string();
            let (conf, pid, vrrp_pid) = (path(".conf"), path(".pid"), path("-vrrp.pid"));
            lab.spawn(
                &name,
                &node_ns(lab.prefix(), node),
                Path::new("keepalived"),
                &[
                    "--dont-fork",
                    "--log-console",
                    "--vrrp",
                    "--no-syslog",
                    "-f",
                    &conf,
                    "-p",
                    &pid,
                    "-r",
                    &vrrp_pid,
                ],
                &[],
            )
            .map_err(|e| anyhow::anyhow!("{e} (apt-get install keepalived)"))?;
            names.push(name);
        }
        Ok(Self { lab, names })
    }

    /// The nodes holding the VIP now.
    fn holders(prefix: &str) -> Vec<u8> {
        (1..=NODES)
            .filter(|n| {
                in_ns(
                    &node_ns(prefix, *n),
                    &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                )
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {VIP}/")))
            })
            .collect()
    }

    /// Waits until one node has held the VIP, alone, for `hold`; that node.
    fn wait_master(lab: &Lab, hold: Duration, deadline: Duration) -> anyhow::Result<u8> {
        let mut since: Option<(Instant, u8)> = None;
        lab.poll_until("keepalived to settle on one master", deadline, || {
            match (Self::holders(lab.prefix()).as_slice(), since) {
                ([one], Some((at, before))) if *one == before && at.elapsed() >= hold => {
                    return Ok(*one);
                }
                ([one], Some((_, before))) if *one == before => {}
                ([one], _) => since = Some((Instant::now(), *one)),
                _ => since = None,
            }
            Err(format!("holders {:?}", Self::holders(lab.prefix())))
        })
    }

    /// SIGTERM to each (keepalived stops its VRRP child and removes the VIP), waiting for all.
    fn stop(self) -> anyhow::Result<()> {
        for name in &self.names {
            self.lab
                .processes()
                .stop(name, Signal::Term, Duration::from_secs(5))?;
        }
        Ok(())
    }
}

fn keepalived_trial(lab: &Lab, timeout: Duration) -> anyhow::Result<(Trial, String)> {
    let prefix = lab.prefix();
    let master = Keepalived::wait_master(lab, Duration::from_secs(3), Duration::from_secs(60))?;
    forget_neighbour(prefix, VIP)?;
    let prober = Prober::start(prefix, VIP, INTERVAL, timeout)?;
    let serving = prober.wait_replies(20, Duration::from_secs(10))?;
    let at = now_us();
    set_node_link(lab, master, false)?;
    let mut note = format!("master node-{master}");
    if serving != format!("node-{master}") {
        note.push_str(&format!(" (but {serving} served the client)"));
    }
    if !prober.wait_flowing(at, Duration::from_secs(2), RESUME_DEADLINE) {
        note.push_str(", traffic did NOT resume");
    }
    let report = prober.stop()?;
    set_node_link(lab, master, true)?;
    let trial = Trial {
        outage: report.longest_gap,
        lost: report.lost,
        reset: report.reset,
    };
    Ok((trial, format!("{note}: {}", describe(&report))))
}

/// Restarts every speaker with the gossip profile `scenario` needs (SIGTERM, so each hands its
/// IPs over as in a rolling update), then waits for the lab to settle.
fn use_profile(lab: &Lab, ips: &[String], fast: bool) -> anyhow::Result<()> {
    let profile = if fast { "fast" } else { "standard" };
    eprintln!("speakers restarted with --gossip-profile {profile}");
    for node in 1..=NODES {
        lab.processes()
            .stop(&Lab::speaker(node), Signal::Term, Duration::from_secs(20))?;
        lab.start_speaker_with_env(
            node,
            &lab.gossip_key(),
            &[("FERROLB_GOSSIP_PROFILE", profile.to_owned())],
        )?;
        lab.wait_settled(ips, Duration::from_secs(1), Duration::from_secs(60))?;
    }
    Ok(())
}

/// Busy loops on every core (twice as many as cores) until dropped.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start() -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let mut hogs = Self(Vec::new());
        for _ in 0..2 * cores {
            hogs.0.push(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()?,
            );
        }
        Ok(hogs)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

/// The fast profile with every core kept busy and nothing failed: each owner change any speaker
/// counts is a false failover (a speaker called dead while it was only slow).
fn stress(lab: &Lab, ips: &[String], minutes: f64, timeout: Duration) -> anyhow::Result<String> {
    let prefix = lab.prefix();
    lab.wait_settled(ips, HOLD, Duration::from_secs(90))?;
    let changes = |lab: &Lab| -> Vec<u64> {
        lab.speaker_views()
            .iter()
            .map(|v| v.as_ref().map_or(0, |v| v.owner_changes))
            .collect()
    };
    let before = changes(lab);
    forget_neighbour(prefix, &ips[0])?;
    let prober = Prober::start(prefix, &ips[0], INTERVAL, timeout)?;
    prober.wait_replies(20, Duration::from_secs(10))?;
    let hogs = Hogs::start()?;
    let load_start = loadavg();
    let span = Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    // Every second: a speaker that sees fewer than every member alive suspects a live one.
    let mut short_views = 0u64;
    while started.elapsed() < span {
        std::thread::sleep(Duration::from_secs(1));
        short_views += lab
            .speaker_views()
            .iter()
            .filter(|v| {
                v.as_ref()
                    .is_some_and(|v| v.alive != Some(u64::from(NODES)))
            })
            .count() as u64;
    }
    let load = loadavg();
    drop(hogs);
    let report = prober.stop()?;
    let after = changes(lab);
    // Each speaker counts each owner change of the IP once: the most any one counted.
    let false_failovers = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .max()
        .unwrap_or(0);
    eprintln!(
        "  stress {minutes} min, load average {load_start} at the start, {load} at the end: {}",
        describe(&report)
    );
    Ok(format!(
        "failover-bench impl=ferrolb-fast scenario=stress minutes={minutes} false_failovers={false_failovers} views_missing_a_member={short_views} longest_gap_ms={:.0} lost_probes={}",
        ms(report.longest_gap),
        report.lost
    ))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run(args: &Args) -> anyhow::Result<Vec<String>> {
    let prefix = ferrolb_lab::cluster::prefix("fb");
    eprintln!(
        "lab {prefix}: {NODES} nodes and a client (remove it by hand after a crash: ferrolb-lab down --prefix {prefix})"
    );
    // The one guard: dropped at the end, also on an error, it stops every process and removes
    // the namespaces (printing the logs' tails when a process died).
    let lab = Lab::up(&prefix, NODES)?;
    let result = measure(args, &lab);
    if result.is_err() {
        eprintln!("{}", lab.log_tails(30));
    }
    result
}

fn measure(args: &Args, lab: &Lab) -> anyhow::Result<Vec<String>> {
    let prefix = lab.prefix();
    let ips = lab.serve(0)?;
    eprintln!("Service IP {}", ips[0]);
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut scenarios = args.scenarios.clone();
    scenarios.sort();
    scenarios.dedup();
    let mut results: Vec<(Scenario, Vec<Trial>)> = Vec::new();
    let mut stress_lines = Vec::new();
    let mut fast = false;
    for scenario in scenarios {
        if scenario.fast() != fast && scenario.implementation().starts_with("ferrolb") {
            fast = scenario.fast();
            use_profile(lab, &ips, fast)?;
        }
        if scenario == Scenario::Stress {
            let line = stress(lab, &ips, args.stress_minutes, timeout)?;
            // Printed at once too: a later scenario that fails must not lose it.
            println!("{line}");
            stress_lines.push(line);
            continue;
        }
        let keepalived = match scenario {
            Scenario::KeepalivedDefault | Scenario::KeepalivedV3 => {
                in_ns(
                    &client_ns(prefix),
                    &["ip", "route", "replace", "198.51.100.0/24", "dev", "eth0"],
                )?;
                Some(Keepalived::start(lab, scenario)?)
            }
            _ => None,
        };
        let mut trials = Vec::new();
        for i in 1..=args.trials {
            let (trial, note) = if keepalived.is_some() {
                keepalived_trial(lab, timeout)?
            } else {
                ferrolb_trial(lab, &ips, scenario, timeout)?
            };
            // A lab that lost a process measures nothing: stop, naming it.
            lab.healthy().map_err(|dead| {
                anyhow::anyhow!("{} trial {i}: {dead}", scenario.implementation())
            })?;
            eprintln!(
                "  {} {} trial {i}/{}: {note}",
                scenario.implementation(),
                scenario.name(),
                args.trials
            );
            trials.push(trial);
        }
        if let Some(keepalived) = keepalived {
            keepalived.stop()?;
        }
        let mut outages: Vec<Duration> = trials.iter().map(|t| t.outage).collect();
        outages.sort();
        println!(
            "{} {} done: p50_ms={:.0} p95_ms={:.0} max_ms={:.0}",
            scenario.implementation(),
            scenario.name(),
            ms(percentile(&outages, 0.5)),
            ms(percentile(&outages, 0.95)),
            ms(outages.last().copied().unwrap_or_default())
        );
        results.push((scenario, trials));
    }
    let mut lines = Vec::new();
    let mut p95 = BTreeMap::new();
    for (scenario, trials) in &results {
        let mut outages: Vec<Duration> = trials.iter().map(|t| t.outage).collect();
        outages.sort();
        let p = percentile(&outages, 0.95);
        p95.insert(*scenario, p);
        lines.push(format!(
            "failover-bench impl={} scenario={} p50_ms={:.0} p95_ms={:.0} max_ms={:.0}",
            scenario.implementation(),
            scenario.name(),
            ms(percentile(&outages, 0.5)),
            ms(p),
            ms(outages.last().copied().unwrap_or_default())
        ));
        if *scenario == Scenario::Sigterm {
            lines.push(format!(
                "failover-bench impl=ferrolb scenario=sigterm lost_probes={} trials_with_lost={}/{} reset_probes={}",
                trials.iter().map(|t| t.lost).sum::<u64>(),
                trials.iter().filter(|t| t.lost > 0).count(),
                trials.len(),
                trials.iter().map(|t| t.reset).sum::<u64>()
            ));
        }
    }
    lines.extend(stress_lines);
    if let (Some(ours), Some(theirs)) = (
        p95.get(&Scenario::NodeCut),
        p95.get(&Scenario::KeepalivedDefault),
    ) && !theirs.is_zero()
    {
        lines.push(format!(
            "failover-bench ratio_node_cut_p95_vs_keepalived_default={:.2}",
            ours.as_secs_f64() / theirs.as_secs_f64()
        ));
    }
    if let (Some(ours), Some(theirs)) = (
        p95.get(&Scenario::FastNodeCut),
        p95.get(&Scenario::KeepalivedV3),
    ) && !theirs.is_zero()
    {
        lines.push(format!(
            "failover-bench ratio_fast_node_cut_p95_vs_keepalived_v3={:.2}",
            ours.as_secs_f64() / theirs.as_secs_f64()
        ));
    }
    Ok(lines)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    anyhow::ensure!(
        root,
        "failover-bench creates network namespaces: run it as root"
    );
    if !args.no_build {
        build_lab_binaries()?;
    }
    let load_before = loadavg();
    let started = Instant::now();
    let lines = run(&args)?;
    println!(
        "# {} trials per scenario in {:.0} s; load average before {load_before}, after {} ({} CPUs)",
        args.trials,
        started.elapsed().as_secs_f64(),
        loadavg(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
