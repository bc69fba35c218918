//! The fault scenarios of issue 14: each brings up its own lab, inflicts one fault while the
//! [witness](crate::witness) asks for every Service IP every 10 ms, heals, and returns an
//! [`Outcome`]: the longest double answer and the longest silence of any IP, Service IPs that
//! changed, writes a deposed leader landed, and what else the rule says must hold.
//! [`Outcome::failures`] holds them against the targets; `fault-bench` runs each scenario five
//! times and the lab tests in `e2e/scenarios/tests/faults.rs` once.
//!
//! One module per kind of fault: [`gossip`] (gossip lost, nodes gone, speakers killed or
//! frozen, the API server frozen), [`config`] (what the cluster's objects say: foreign IPs,
//! shared IPs, interfaces, pools) and [`leader`] (a deposed controller).

pub mod config;
pub mod gossip;
pub mod leader;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Lab;
use crate::cluster::prefix;
use crate::prober::now_us;
use crate::witness::{Verdict, Witness};

/// A scenario of the fault bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// UDP 7946 dropped on one of three nodes (the owner of an IP).
    GossipBlocked,
    /// One node's speaker restarted with a gossip key the others do not hold.
    WrongKey,
    /// One node's speaker restarted with its clock 30 s ahead: its datagrams rejected as
    /// replays (outside the replay window) by the others, theirs by it.
    ReplayedGossip,
    /// Two nodes, two speakers that cannot gossip.
    TwoNodeSplit,
    /// Two nodes that cannot gossip while the API server is down too (as when it ran on a node
    /// that failed): each still hears its clients, so neither falls silent.
    SplitWithoutApi,
    /// Two of three nodes gone (every frame dropped, links up).
    MajorityLoss,
    /// The owner's speaker killed (SIGKILL), later started again.
    OwnerKilled,
    /// The owner's speaker frozen (SIGSTOP) for 8 s, then resumed.
    OwnerStopped,
    /// The API server frozen (SIGSTOP) for [`Options::api_outage`].
    ApiDown,
    /// An address outside every pool written into a Service's status, the controller stopped.
    ForeignIpInStatus,
    /// A dual-stack Service and a v6-only Service sharing the v6 address.
    SharedIpDualStack,
    /// An L2Advertisement naming an interface only some nodes have.
    NoUsableInterface,
    /// A pool edited to overlap another, then the controller restarted.
    InvalidPoolRestart,
    /// Two controllers; the leader frozen past its lease, then resumed.
    DeposedLeader,
    /// Two IPv6 Service IPs with one solicited-node group on one node; one withdrawn.
    SolicitedNodeShared,
}

impl Scenario {
    /// Every scenario, in bench order.
    pub const ALL: [Self; 15] = [
        Self::GossipBlocked,
        Self::WrongKey,
        Self::ReplayedGossip,
        Self::TwoNodeSplit,
        Self::SplitWithoutApi,
        Self::MajorityLoss,
        Self::OwnerKilled,
        Self::OwnerStopped,
        Self::ApiDown,
        Self::ForeignIpInStatus,
        Self::SharedIpDualStack,
        Self::NoUsableInterface,
        Self::InvalidPoolRestart,
        Self::DeposedLeader,
        Self::SolicitedNodeShared,
    ];

    /// Its name on the bench's command line and output.
    pub fn name(self) -> &'static str {
        match self {
            Self::GossipBlocked => "gossip-blocked",
            Self::WrongKey => "wrong-key",
            Self::ReplayedGossip => "replayed-gossip",
            Self::TwoNodeSplit => "two-node-split",
            Self::SplitWithoutApi => "split-without-api",
            Self::MajorityLoss => "majority-loss",
            Self::OwnerKilled => "owner-killed",
            Self::OwnerStopped => "owner-stopped",
            Self::ApiDown => "api-down-60s",
            Self::ForeignIpInStatus => "foreign-ip-in-status",
            Self::SharedIpDualStack => "shared-ip-dual-stack",
            Self::NoUsableInterface => "no-usable-interface",
            Self::InvalidPoolRestart => "invalid-pool-restart",
            Self::DeposedLeader => "deposed-leader",
            Self::SolicitedNodeShared => "solicited-node-shared",
        }
    }

    /// The scenario called `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The longest double answer allowed, ms: a second while gossip is lost (views take that
    /// long to agree), none anywhere else.
    pub fn double_target_ms(self) -> u64 {
        if self.loses_gossip_only() { 1_000 } else { 0 }
    }

    /// Whether gossip between live nodes is lost (the links are fine).
    fn loses_gossip_only(self) -> bool {
        matches!(
            self,
            Self::GossipBlocked
                | Self::WrongKey
                | Self::ReplayedGossip
                | Self::TwoNodeSplit
                | Self::SplitWithoutApi
        )
    }

    /// The longest silence of an IP allowed, ms, where the issue sets one. `owner-killed` and
    /// `owner-stopped`: "within the usual failover time", taken as 3 s (SWIM declares a silent
    /// member dead after about 1 s in the lab; a loaded 2-core machine doubles that).
    pub fn unanswered_target_ms(self) -> Option<u64> {
        match self {
            _ if self.loses_gossip_only() => Some(1_000),
            Self::MajorityLoss => Some(2_000),
            Self::OwnerKilled | Self::OwnerStopped => Some(3_000),
            Self::ApiDown => Some(0),
            _ => None,
        }
    }
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long `api-down-60s` keeps the API server frozen (60 s in the bench; tests shorten it).
    pub api_outage: Duration,
    /// Prefix tag of the lab (per-run uniqueness comes from the process id and a counter).
    pub tag: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_outage: Duration::from_secs(60),
            tag: "fb".into(),
        }
    }
}

/// What one run of a scenario showed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Longest time two MACs answered one IP, ms (max over the IPs watched).
    pub double_answer_ms: u64,
    /// Longest time an IP that should be answered went unanswered, ms.
    pub unanswered_ms: u64,
    /// Service IPs that changed.
    pub ips_changed: u64,
    /// Writes of the deposed leader that the API server accepted after its lease expired.
    pub deposed_writes: u64,
    /// What else the rule requires and did not hold.
    pub violations: Vec<String>,
    /// Per-IP verdicts and notes, for the log.
    pub detail: Vec<String>,
}

impl Outcome {
    /// Every target this run missed, in words (empty: the run passed).
    pub fn failures(&self, scenario: Scenario) -> Vec<String> {
        let mut failures = self.violations.clone();
        if self.double_answer_ms > scenario.double_target_ms() {
            failures.push(format!(
                "two MACs answered one IP for {} ms (target {} ms)",
                self.double_answer_ms,
                scenario.double_target_ms()
            ));
        }
        if let Some(target) = scenario.unanswered_target_ms()
            && self.unanswered_ms > target
        {
            failures.push(format!(
                "an IP went unanswered for {} ms (target {target} ms)",
                self.unanswered_ms
            ));
        }
        if self.ips_changed > 0 {
            failures.push(format!("{} Service IP(s) changed", self.ips_changed));
        }
        if self.deposed_writes > 0 {
            failures.push(format!(
                "the deposed leader landed {} write(s) after its lease expired",
                self.deposed_writes
            ));
        }
        failures
    }

    /// Takes the witness's verdicts on `ips` (double and silence) into the outcome; the detail
    /// gives when the longest of each began, in seconds after `from_us`.
    pub fn witnessed(
        &mut self,
        verdicts: &BTreeMap<std::net::IpAddr, Verdict>,
        ips: &[String],
        from_us: u64,
    ) {
        let after = |us: u64| us.saturating_sub(from_us) as f64 / 1e6;
        for ip in ips {
            let Some(v) = ip.parse().ok().and_then(|ip| verdicts.get(&ip)) else {
                self.violations
                    .push(format!("the witness never asked for {ip}"));
                continue;
            };
            self.double_answer_ms = self.double_answer_ms.max(v.double_ms);
            self.unanswered_ms = self.unanswered_ms.max(v.unanswered_ms);
            self.detail.push(format!(
                "{ip}: rounds={} double_ms={} (at {:.2} s) unanswered_ms={} (at {:.2} s) \
                 answers={:?}",
                v.rounds,
                v.double_ms,
                after(v.double_from_us),
                v.unanswered_ms,
                after(v.unanswered_from_us),
                v.answers
            ));
        }
    }
}

/// Runs `scenario` once, as a test: prints its detail and panics naming every target it missed.
/// One lab at a time in this process: each scenario brings up a whole cluster, and two at once
/// on a 2-core machine would measure the machine, not ferrolb.
///
/// # Panics
/// When the lab cannot run the scenario or a target is missed.
pub fn assert_holds(scenario: Scenario, options: &Options) {
    static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let outcome = match run(scenario, options) {
        Ok(outcome) => outcome,
        Err(e) => panic!("{}: the lab could not run it: {e:#}", scenario.name()),
    };
    for d in &outcome.detail {
        eprintln!("{}: {d}", scenario.name());
    }
    let failures = outcome.failures(scenario);
    assert!(
        failures.is_empty(),
        "{}: {}",
        scenario.name(),
        failures.join("; ")
    );
}

/// Runs `scenario` once.
///
/// # Errors
/// When the lab cannot be brought up or a step of the scenario fails outright (a process dies,
/// a tool fails); a rule that does not hold is an [`Outcome`] with failures, not an error.
pub fn run(scenario: Scenario, options: &Options) -> anyhow::Result<Outcome> {
    match scenario {
        Scenario::GossipBlocked => gossip::gossip_blocked(options),
        Scenario::WrongKey => gossip::wrong_key(options),
        Scenario::ReplayedGossip => gossip::replayed_gossip(options),
        Scenario::TwoNodeSplit => gossip::two_node_split(options),
        Scenario::SplitWithoutApi => gossip::split_without_api(options),
        Scenario::MajorityLoss => gossip::majority_loss(options),
        Scenario::OwnerKilled => gossip::owner_killed(options),
        Scenario::OwnerStopped => gossip::owner_stopped(options),
        Scenario::ApiDown => gossip::api_down(options),
        Scenario::ForeignIpInStatus => config::foreign_ip_in_status(options),
        Scenario::SharedIpDualStack => config::shared_ip_dual_stack(options),
        Scenario::NoUsableInterface => config::no_usable_interface(options),
        Scenario::InvalidPoolRestart => config::invalid_pool_restart(options),
        Scenario::DeposedLeader => leader::deposed_leader(options),
        Scenario::SolicitedNodeShared => config::solicited_node_shared(options),
    }
}

/// How long anything the system does by itself may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A lab for one run: `nodes` nodes under a fresh prefix.
fn lab(options: &Options, nodes: u8) -> anyhow::Result<Lab> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    Lab::up(&prefix(&format!("{}{}", options.tag, run % 10)), nodes)
}

/// A settled lab serving `1 + extra` IPv4 Services, watched by a witness that has heard every
/// IP answered: the starting point of the gossip scenarios.
struct Stage {
    lab: Lab,
    ips: Vec<String>,
    owners: Vec<u8>,
    witness: Witness,
    from_us: u64,
    services: BTreeMap<String, (Vec<String>, String)>,
    /// What the scenario did when, for the detail.
    marks: Vec<String>,
}

impl Stage {
    fn up(options: &Options, nodes: u8, extra: usize) -> anyhow::Result<Self> {
        let lab = lab(options, nodes)?;
        let ips = lab.serve(extra)?;
        let owners = lab.wait_settled(&ips, Duration::from_secs(1), PATIENCE)?;
        let witness = Witness::start(lab.prefix(), &ips)?;
        let from_us = now_us();
        answered(&lab, &witness, &ips, from_us)?;
        let services = lab.services()?;
        Ok(Self {
            lab,
            ips,
            owners,
            witness,
            from_us,
            services,
            marks: Vec::new(),
        })
    }

    /// Notes that the scenario did `what` now (seconds after the witness started).
    fn mark(&mut self, what: &str) {
        let at = now_us().saturating_sub(self.from_us) as f64 / 1e6;
        self.marks.push(format!("at {at:.2} s: {what}"));
    }

    /// Waits until the lab settles again (a violation if it does not), holds a second, and
    /// returns the outcome from the start of the witness.
    fn finish(self) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        if let Err(e) = self
            .lab
            .wait_settled(&self.ips, Duration::from_secs(1), PATIENCE)
        {
            outcome
                .violations
                .push(format!("the lab did not settle after the fault: {e}"));
        }
        outcome.witnessed(
            &self.witness.verdicts_since(self.from_us),
            &self.ips,
            self.from_us,
        );
        outcome.detail.extend(self.marks);
        outcome.ips_changed = ips_changed(&self.services, &self.lab.services()?);
        self.lab.healthy()?;
        Ok(outcome)
    }
}

/// How long a speaker may take to answer an IP that has an owner: once elected it answers at
/// once, so this is the loaded machine's slack, not a protocol's time (and a scenario whose
/// rule is that the IP be answered fails after it, not after [`PATIENCE`]).
const ANSWER_PATIENCE: Duration = Duration::from_secs(15);

/// Waits until the witness has heard each of `ips` answered since `from_us`.
fn answered(lab: &Lab, witness: &Witness, ips: &[String], from_us: u64) -> anyhow::Result<()> {
    lab.poll_until("the witness to hear every IP", ANSWER_PATIENCE, || {
        let silent: Vec<&String> = ips
            .iter()
            .filter(|ip| witness.answerers_since(ip, from_us).is_empty())
            .collect();
        if silent.is_empty() {
            Ok(())
        } else {
            Err(format!("nobody answered {silent:?}"))
        }
    })
}

/// Services (of `before`) whose IPs differ in `after` (a Service gone counts).
fn ips_changed(
    before: &BTreeMap<String, (Vec<String>, String)>,
    after: &BTreeMap<String, (Vec<String>, String)>,
) -> u64 {
    before
        .iter()
        .filter(|(name, (ips, _))| after.get(*name).map(|(a, _)| a) != Some(ips))
        .count() as u64
}

/// The fault lasting: a scenario's fault is held for a fixed time (it is the fault, not a wait
/// for anything), while the lab's processes are watched.
fn hold(lab: &Lab, how_long: Duration) -> anyhow::Result<()> {
    let end = std::time::Instant::now() + how_long;
    while std::time::Instant::now() < end {
        lab.healthy()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_name_that_finds_it() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::named(s.name()), Some(s));
        }
        assert_eq!(Scenario::named("nope"), None);
    }

    #[test]
    fn a_double_answer_passes_only_where_gossip_alone_is_lost() {
        let outcome = Outcome {
            double_answer_ms: 400,
            unanswered_ms: 900,
            ..Outcome::default()
        };
        assert!(outcome.failures(Scenario::GossipBlocked).is_empty());
        assert_eq!(outcome.failures(Scenario::OwnerKilled).len(), 1);
        assert_eq!(outcome.failures(Scenario::ApiDown).len(), 2);
    }

    #[test]
    fn changed_ips_and_deposed_writes_fail_every_scenario() {
        let outcome = Outcome {
            ips_changed: 1,
            deposed_writes: 2,
            violations: vec!["the Event is missing".into()],
            ..Outcome::default()
        };
        assert_eq!(outcome.failures(Scenario::InvalidPoolRestart).len(), 3);
    }

    #[test]
    fn a_service_that_lost_or_changed_its_ip_counts_once() {
        let svc = |ip: &str| (vec![ip.to_owned()], "1".to_owned());
        let before = BTreeMap::from([
            ("a".to_owned(), svc("192.0.2.192")),
            ("b".to_owned(), svc("192.0.2.193")),
            ("c".to_owned(), svc("192.0.2.194")),
        ]);
        let after = BTreeMap::from([
            ("a".to_owned(), svc("192.0.2.192")),
            ("b".to_owned(), svc("192.0.2.195")),
        ]);
        assert_eq!(ips_changed(&before, &after), 2);
    }
}
