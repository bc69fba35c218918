//! Issue 14, rules 1 and 3 to 7 in the lab (one test per rule; the scenario code is
//! `fault-bench`'s, run once): an address outside every pool is never answered and is reported;
//! an IP shared by a dual-stack and a v6-only Service has one answerer; a node lacking the
//! advertised interface does not win; an invalid pool keeps its IPs across a controller
//! restart; a deposed leader lands no write; withdrawing one of two IPs of one solicited-node
//! group keeps the group joined.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::Duration;

use ferrolb_lab::scenarios::{self, Options, Scenario};

/// One lab at a time: each scenario brings up a whole cluster, and two at once on a 2-core
/// machine would measure the machine, not ferrolb.
static ONE_LAB: Mutex<()> = Mutex::new(());

/// Runs `scenario` once and fails with every target it missed.
fn holds(scenario: Scenario) {
    let _one = ONE_LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let options = Options {
        api_outage: API_OUTAGE,
        tag: TAG.into(),
    };
    let outcome = scenarios::run(scenario, &options).unwrap();
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

/// Not used by these scenarios.
const API_OUTAGE: Duration = Duration::from_secs(20);
const TAG: &str = "fc";

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn an_ip_outside_every_pool_in_service_status_is_never_answered_and_is_reported() {
    holds(Scenario::ForeignIpInStatus);
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_v6_address_shared_by_a_dual_stack_and_a_v6_only_service_has_one_answerer() {
    holds(Scenario::SharedIpDualStack);
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_node_lacking_the_advertised_interface_does_not_win_the_ip() {
    holds(Scenario::NoUsableInterface);
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_pool_made_invalid_keeps_its_ips_across_a_controller_restart() {
    holds(Scenario::InvalidPoolRestart);
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_deposed_leader_lands_no_write_after_its_lease_expired() {
    holds(Scenario::DeposedLeader);
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn withdrawing_one_of_two_ips_of_a_solicited_node_group_keeps_the_other_answered_and_joined() {
    holds(Scenario::SolicitedNodeShared);
}
