//! `fault-bench` (root): ferrolb under the faults of issue 14, as the client's link sees them.
//!
//! Each scenario (`ferrolb_lab::scenarios`) brings up its own lab, inflicts one fault while a
//! witness in the client namespace asks for every Service IP by ARP/NDP every 10 ms and records
//! every MAC that answers, heals, and checks the rule. `--runs` runs per scenario (default 5),
//! then one line each:
//!
//! `fault-bench scenario=<name> runs=5 passed=<n> double_answer_ms=<max> unanswered_ms=<max>
//! ips_changed=<n> deposed_writes=<n>`
//!
//! - `double_answer_ms`: the longest time two different MACs answered one IP (a round of
//!   requests answered by two MACs is double; double rounds within 50 ms of each other are one
//!   stretch);
//! - `unanswered_ms`: the longest time an IP that should be answered went without an answer
//!   (a round unanswered within 50 ms starts a silence, the next answer ends it);
//! - `ips_changed`: Service IPs that changed; `deposed_writes`: writes of the frozen-then-resumed
//!   controller that the API server accepted (counted by a recording proxy in front of it).
//!
//! The maxima are over all runs; a run that failed outright (lab error) counts as not passed
//! and adds nothing to them. Targets (a run passes when it meets them and its scenario's own
//! checks): double ≤ 1000 ms in gossip-blocked, wrong-key, replayed-gossip, two-node-split and
//! split-without-api, 0 elsewhere; unanswered ≤ 1000 ms in those five, ≤ 2000 ms in majority-loss, ≤ 3000 ms in
//! owner-killed and owner-stopped, 0 in api-down-60s; no IP changed; no deposed write. Why a
//! run failed goes to stderr.
//!
//! `cargo run --release -p ferrolb-e2e --bin fault-bench -- --scenarios gossip-blocked,wrong-key
//! --runs 2` (it builds the other lab binaries of the same profile first when started by
//! cargo). Everything is removed at the end of each run, also on failure; after a crash,
//! `ferrolb-lab down --prefix fb<N>` (prefixes are printed).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports its figures on stdout and its progress on stderr"
)]

use std::time::{Duration, Instant};

use clap::Parser;
use ferrolb_lab::binaries::build_lab_binaries;
use ferrolb_lab::scenarios::{self, Options, Scenario};

#[derive(Debug, Parser)]
#[command(about = "ferrolb under faults: double answers, silences, moved IPs, deposed writes")]
struct Args {
    /// Scenarios to run, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Runs per scenario.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// How long api-down-60s keeps the API server frozen, seconds.
    #[arg(long, default_value_t = 60)]
    api_outage_secs: u64,
}

/// The bench's figures for one scenario.
#[derive(Debug, Default)]
struct Tally {
    runs: u32,
    passed: u32,
    double_answer_ms: u64,
    unanswered_ms: u64,
    ips_changed: u64,
    deposed_writes: u64,
}

impl Tally {
    fn line(&self, scenario: Scenario) -> String {
        format!(
            "fault-bench scenario={} runs={} passed={} double_answer_ms={} unanswered_ms={} ips_changed={} deposed_writes={}",
            scenario.name(),
            self.runs,
            self.passed,
            self.double_answer_ms,
            self.unanswered_ms,
            self.ips_changed,
            self.deposed_writes
        )
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let chosen: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios
            .iter()
            .map(|name| {
                Scenario::named(name).ok_or_else(|| {
                    let all: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    anyhow::anyhow!("no scenario {name}; there are {}", all.join(", "))
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    ferrolb_lab::cluster::ensure_prerequisites()?;
    build_lab_binaries()?;
    let options = Options {
        api_outage: Duration::from_secs(args.api_outage_secs),
        ..Options::default()
    };
    let mut lines = Vec::new();
    for scenario in chosen {
        let mut tally = Tally::default();
        for run in 1..=args.runs {
            let started = Instant::now();
            tally.runs += 1;
            match scenarios::run(scenario, &options) {
                Ok(outcome) => {
                    let failures = outcome.failures(scenario);
                    tally.double_answer_ms = tally.double_answer_ms.max(outcome.double_answer_ms);
                    tally.unanswered_ms = tally.unanswered_ms.max(outcome.unanswered_ms);
                    tally.ips_changed += outcome.ips_changed;
                    tally.deposed_writes += outcome.deposed_writes;
                    eprintln!(
                        "{} run {run}: {} in {:.0} s",
                        scenario.name(),
                        if failures.is_empty() {
                            "passed"
                        } else {
                            "FAILED"
                        },
                        started.elapsed().as_secs_f64()
                    );
                    for d in &outcome.detail {
                        eprintln!("    {d}");
                    }
                    if failures.is_empty() {
                        tally.passed += 1;
                    }
                    for f in failures {
                        eprintln!("  - {f}");
                    }
                }
                Err(e) => eprintln!("{} run {run}: ERROR {e:#}", scenario.name()),
            }
        }
        let line = tally.line(scenario);
        println!("{line}");
        lines.push(line);
    }
    if lines.len() > 1 {
        eprintln!("== summary");
        for line in &lines {
            println!("{line}");
        }
    }
    Ok(())
}
