//! Scenarios where speakers lose each other: gossip cut around one node (nftables, a wrong key,
//! a clock far enough ahead that its datagrams are refused as replays),
//! a two-node cluster split, two of three nodes gone, the owner's speaker killed or frozen, and
//! the API server frozen (which must change nothing at all).

use std::time::Duration;

use super::{Options, Outcome, Stage, hold};
use crate::Lab;
use crate::faults::{
    block_gossip, drop_all_traffic, heal_gossip, isolate_gossip, kill, pause, restart_speaker,
    restart_speaker_with_clock_ahead, restart_speaker_with_wrong_key, restore_gossip,
    restore_traffic, resume,
};
use crate::topology::node_name;

/// How long a lost-gossip fault lasts: well past the 5 s after which today's speaker answers
/// for every IP it hears no owner of (seen within 8 s in the lab).
const GOSSIP_LOST_FOR: Duration = Duration::from_secs(12);
/// How long the owner's speaker stays frozen.
const FROZEN_FOR: Duration = Duration::from_secs(8);

/// UDP 7946 dropped on the owner of the first IP, everything else fine; then restored.
pub fn gossip_blocked(options: &Options) -> anyhow::Result<Outcome> {
    let stage = Stage::up(options, 3, 2)?;
    let node = stage.owners[0];
    isolate_gossip(stage.lab.prefix(), node)?;
    hold(&stage.lab, GOSSIP_LOST_FOR)?;
    restore_gossip(stage.lab.prefix(), node)?;
    let mut outcome = stage.finish()?;
    outcome
        .detail
        .push(format!("gossip cut around {}", node_name(node)));
    Ok(outcome)
}

/// The owner of the first IP restarted with a gossip key nobody else holds; then restarted with
/// the right one.
pub fn wrong_key(options: &Options) -> anyhow::Result<Outcome> {
    let mut stage = Stage::up(options, 3, 2)?;
    let node = stage.owners[0];
    restart_speaker_with_wrong_key(&stage.lab, node)?;
    stage.mark("restarted with a wrong key");
    hold(&stage.lab, GOSSIP_LOST_FOR)?;
    restart_speaker(&stage.lab, node)?;
    stage.mark("restarted with the right key");
    let mut outcome = stage.finish()?;
    outcome
        .detail
        .push(format!("{} ran with a wrong key", node_name(node)));
    Ok(outcome)
}

/// How far ahead the replaying node's clock runs: three times the replay window, so every
/// datagram it seals is refused, not just some.
const CLOCK_AHEAD_SECS: u64 = 3 * ferrolb_speaker::gossip::seal::REPLAY_WINDOW_MS / 1_000;

/// The owner of the first IP restarted with its wall clock [`CLOCK_AHEAD_SECS`] ahead: the
/// others reject each of its datagrams as a replay (outside their replay window) and it rejects
/// theirs, while its link is fine; then restarted on the true time. The others' `stale` drop
/// counters must show the fault took (a violation otherwise: the run would prove nothing).
pub fn replayed_gossip(options: &Options) -> anyhow::Result<Outcome> {
    let mut stage = Stage::up(options, 3, 2)?;
    let node = stage.owners[0];
    let others: Vec<u8> = (1..=3).filter(|n| *n != node).collect();
    let stale_before = stale_drops(&stage.lab, &others);
    restart_speaker_with_clock_ahead(&stage.lab, node, CLOCK_AHEAD_SECS)?;
    stage.mark("restarted with its clock ahead");
    hold(&stage.lab, GOSSIP_LOST_FOR)?;
    let stale = stale_drops(&stage.lab, &others).saturating_sub(stale_before);
    restart_speaker(&stage.lab, node)?;
    stage.mark("restarted on the true time");
    let mut outcome = stage.finish()?;
    if stale == 0 {
        outcome.violations.push(format!(
            "no other speaker dropped a datagram of {} as stale: the fault did not take",
            node_name(node)
        ));
    }
    outcome.detail.push(format!(
        "{} ran {CLOCK_AHEAD_SECS} s ahead; the others dropped {stale} of its datagrams as stale",
        node_name(node)
    ));
    Ok(outcome)
}

/// Datagrams the speakers of `nodes` dropped as outside their replay window, so far.
fn stale_drops(lab: &Lab, nodes: &[u8]) -> u64 {
    nodes
        .iter()
        .filter_map(|n| crate::scrape::speaker_view(lab.prefix(), *n))
        .map(|v| v.dropped("stale"))
        .sum()
}

/// Two nodes that cannot gossip with each other; then healed.
pub fn two_node_split(options: &Options) -> anyhow::Result<Outcome> {
    let stage = Stage::up(options, 2, 2)?;
    block_gossip(stage.lab.prefix(), &[1], &[2])?;
    hold(&stage.lab, GOSSIP_LOST_FOR)?;
    heal_gossip(stage.lab.prefix(), &[1, 2])?;
    stage.finish()
}

/// Two nodes that cannot gossip with each other while the API server is frozen too; then both
/// healed. Neither may fall silent: each still hears its clients on the link.
pub fn split_without_api(options: &Options) -> anyhow::Result<Outcome> {
    let mut stage = Stage::up(options, 2, 2)?;
    pause(&stage.lab, "apiserver")?;
    block_gossip(stage.lab.prefix(), &[1], &[2])?;
    stage.mark("gossip blocked and the API server frozen");
    let held = hold(&stage.lab, GOSSIP_LOST_FOR);
    resume(&stage.lab, "apiserver")?;
    held?;
    heal_gossip(stage.lab.prefix(), &[1, 2])?;
    stage.mark("healed");
    stage.finish()
}

/// The two nodes that are not the owner of the first IP gone (every frame dropped at the
/// bridge); the survivor must answer every IP within 2 s. Then they come back.
pub fn majority_loss(options: &Options) -> anyhow::Result<Outcome> {
    let mut stage = Stage::up(options, 3, 2)?;
    let survivor = stage.owners[0];
    let gone: Vec<u8> = (1..=3).filter(|n| *n != survivor).collect();
    drop_all_traffic(&stage.lab, &gone)?;
    stage.mark("the others' traffic dropped");
    hold(&stage.lab, GOSSIP_LOST_FOR)?;
    restore_traffic(&stage.lab)?;
    stage.mark("the others' traffic restored");
    let mut outcome = stage.finish()?;
    outcome.detail.push(format!(
        "nodes {gone:?} gone, {} survived",
        node_name(survivor)
    ));
    Ok(outcome)
}

/// The owner's speaker killed; once another node answers (or 20 s), started again.
pub fn owner_killed(options: &Options) -> anyhow::Result<Outcome> {
    let stage = Stage::up(options, 3, 0)?;
    let node = stage.owners[0];
    let speaker = Lab::speaker(node);
    let ip = stage.ips[0].clone();
    let killed_us = crate::prober::now_us();
    kill(&stage.lab, &speaker)?;
    let took_over = other_answers(&stage, node, killed_us);
    hold(&stage.lab, Duration::from_secs(2))?;
    stage.lab.processes().restart(&speaker)?;
    let mut outcome = stage.finish()?;
    if !took_over {
        outcome.violations.push(format!(
            "no other node answered {ip} within 20 s of killing {speaker}"
        ));
    }
    Ok(outcome)
}

/// The owner's speaker frozen for 8 s (it keeps its socket and its idea of what it owns), then
/// resumed: another node takes over, and the resumed speaker must not answer alongside it.
pub fn owner_stopped(options: &Options) -> anyhow::Result<Outcome> {
    let stage = Stage::up(options, 3, 0)?;
    let node = stage.owners[0];
    let speaker = Lab::speaker(node);
    pause(&stage.lab, &speaker)?;
    hold(&stage.lab, FROZEN_FOR)?;
    resume(&stage.lab, &speaker)?;
    stage.finish()
}

/// The API server frozen for [`Options::api_outage`]: every IP answered throughout, by the
/// same node.
pub fn api_down(options: &Options) -> anyhow::Result<Outcome> {
    let stage = Stage::up(options, 3, 2)?;
    pause(&stage.lab, "apiserver")?;
    let outage = hold(&stage.lab, options.api_outage);
    resume(&stage.lab, "apiserver")?;
    outage?;
    hold(&stage.lab, Duration::from_secs(3))?;
    let macs = stage.lab.node_macs()?;
    let owners = stage.owners.clone();
    let ips = stage.ips.clone();
    let answerers: Vec<_> = ips
        .iter()
        .map(|ip| stage.witness.answerers_since(ip, stage.from_us))
        .collect();
    let mut outcome = stage.finish()?;
    for ((ip, owner), macs_seen) in ips.iter().zip(owners).zip(answerers) {
        let names: Vec<&str> = macs_seen
            .keys()
            .map(|m| macs.get(m).map_or(m.as_str(), String::as_str))
            .collect();
        if names != [node_name(owner).as_str()] {
            outcome.violations.push(format!(
                "{ip} was answered by {names:?}, not by its owner {} alone",
                node_name(owner)
            ));
        }
    }
    outcome.detail.push(format!(
        "API server frozen for {} s",
        options.api_outage.as_secs()
    ));
    Ok(outcome)
}

/// Whether a node other than `owner` answers the first IP within 20 s of `since_us`.
fn other_answers(stage: &Stage, owner: u8, since_us: u64) -> bool {
    let Ok(macs) = stage.lab.node_macs() else {
        return false;
    };
    let owner = node_name(owner);
    stage
        .lab
        .poll_until("another node to answer", Duration::from_secs(20), || {
            let others = stage
                .witness
                .answerers_since(&stage.ips[0], since_us)
                .into_keys()
                .filter(|m| macs.get(m).is_some_and(|n| *n != owner))
                .count();
            if others > 0 {
                Ok(())
            } else {
                Err("only the owner, or nobody".into())
            }
        })
        .is_ok()
}
