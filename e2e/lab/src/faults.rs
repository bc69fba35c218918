//! Faults a scenario inflicts on the lab: a node's link cut, gossip blocked between groups of
//! nodes or around one node, a wrong gossip key, nodes gone from the network (links up, every
//! frame dropped), a process frozen or killed, and a client made to forget what it learnt.

use crate::cluster::Lab;
use crate::process::Signal;
use crate::topology::{client_ns, in_ns, node_ip, node_ns};

/// Takes node `node` off the bridge (its bridge port down), or puts it back.
///
/// # Errors
/// When the node is not in the lab or iproute2 fails.
pub fn set_node_link(lab: &Lab, node: u8, up: bool) -> anyhow::Result<()> {
    let topo = lab.topology();
    topo.set_link(topo.host(&node_ns(&topo.prefix, node))?, up)
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

/// Freezes lab process `name` (SIGSTOP): it keeps its sockets and addresses and does nothing,
/// as a process stuck on a dead disk or a paused VM would.
///
/// # Errors
/// When it does not run.
pub fn pause(lab: &Lab, name: &str) -> anyhow::Result<()> {
    lab.processes().signal(name, Signal::Stop)
}

/// Lets a process frozen by [`pause`] run again.
///
/// # Errors
/// When it does not run.
pub fn resume(lab: &Lab, name: &str) -> anyhow::Result<()> {
    lab.processes().signal(name, Signal::Cont)
}

const GOSSIP_OFF_TABLE: &str = "ferrolb_lab_gossip_off";

/// Cuts node `node` off gossip entirely (UDP 7946 dropped both ways in its namespace) while its
/// link, the API and ARP/NDP still work: the node is fine, only gossip is gone.
///
/// # Errors
/// When `nft` is missing or fails.
pub fn isolate_gossip(prefix: &str, node: u8) -> anyhow::Result<()> {
    let t = GOSSIP_OFF_TABLE;
    let script = format!(
        "add table inet {t}; \
         add chain inet {t} input {{ type filter hook input priority 0 ; }} ; \
         add chain inet {t} output {{ type filter hook output priority 0 ; }} ; \
         add rule inet {t} input udp dport 7946 drop ; \
         add rule inet {t} input udp sport 7946 drop ; \
         add rule inet {t} output udp dport 7946 drop ; \
         add rule inet {t} output udp sport 7946 drop"
    );
    in_ns(&node_ns(prefix, node), &["nft", &script])?;
    Ok(())
}

/// Undoes [`isolate_gossip`].
///
/// # Errors
/// When `nft` fails.
pub fn restore_gossip(prefix: &str, node: u8) -> anyhow::Result<()> {
    in_ns(
        &node_ns(prefix, node),
        &["nft", "delete", "table", "inet", GOSSIP_OFF_TABLE],
    )?;
    Ok(())
}

const GONE_TABLE: &str = "ferrolb_lab_gone";

/// Makes nodes `nodes` really gone for everyone else: every frame to or from their bridge ports
/// is dropped by nftables in the bridge namespace, while their links stay up (so the nodes
/// themselves see no carrier loss, as with a dead switch port or a hung host). Done on the
/// bridge rather than inside the nodes because the speaker answers ARP/NDP through a packet
/// socket, which the inet and arp hooks of its own namespace never see.
///
/// # Errors
/// When `nft` is missing or fails.
pub fn drop_all_traffic(lab: &Lab, nodes: &[u8]) -> anyhow::Result<()> {
    let prefix = lab.prefix();
    let ports: Vec<String> = nodes.iter().map(|n| format!("\"{prefix}n{n}v\"")).collect();
    let set = format!("{{ {} }}", ports.join(", "));
    let t = GONE_TABLE;
    let script = format!(
        "add table bridge {t}; \
         add chain bridge {t} forward {{ type filter hook forward priority 0 ; }} ; \
         add chain bridge {t} input {{ type filter hook input priority 0 ; }} ; \
         add chain bridge {t} output {{ type filter hook output priority 0 ; }} ; \
         add rule bridge {t} forward iifname {set} drop ; \
         add rule bridge {t} forward oifname {set} drop ; \
         add rule bridge {t} input iifname {set} drop ; \
         add rule bridge {t} output oifname {set} drop"
    );
    in_ns(&lab.topology().bridge_ns, &["nft", &script])?;
    Ok(())
}

/// Undoes [`drop_all_traffic`].
///
/// # Errors
/// When `nft` fails.
pub fn restore_traffic(lab: &Lab) -> anyhow::Result<()> {
    in_ns(
        &lab.topology().bridge_ns,
        &["nft", "delete", "table", "bridge", GONE_TABLE],
    )?;
    Ok(())
}

/// Restarts node `node`'s speaker with a gossip key the others do not hold: it leaves
/// gracefully (SIGTERM), then comes back a stranger to the group. [`restart_speaker`] brings it
/// back with the lab's key.
///
/// # Errors
/// When it does not stop or start.
pub fn restart_speaker_with_wrong_key(lab: &Lab, node: u8) -> anyhow::Result<()> {
    let wrong = lab.dir().join(format!("wrong-{node}.key"));
    std::fs::write(&wrong, format!("not-the-lab-key-{node}\n"))?;
    stop_speaker(lab, node)?;
    lab.start_speaker(node, &wrong)
}

/// Restarts node `node`'s speaker with the lab's key (after [`restart_speaker_with_wrong_key`]).
///
/// # Errors
/// When it does not stop or start.
pub fn restart_speaker(lab: &Lab, node: u8) -> anyhow::Result<()> {
    stop_speaker(lab, node)?;
    lab.start_speaker(node, &lab.gossip_key())
}

/// Restarts node `node`'s speaker with its wall clock `ahead_secs` seconds ahead of everyone
/// else's (libfaketime preloaded; the monotonic clock, which timers use, is left alone), as on a
/// node whose NTP broke. Every datagram it seals then carries a send time outside the others'
/// replay window, so they drop each one as a replay (`stale`), and it drops theirs alike: its
/// link is fine, its gossip is refused. [`restart_speaker`] brings it back on the true time.
///
/// # Errors
/// When libfaketime is missing and cannot be installed, or the speaker does not stop or start.
pub fn restart_speaker_with_clock_ahead(
    lab: &Lab,
    node: u8,
    ahead_secs: u64,
) -> anyhow::Result<()> {
    let library = faketime_library()?;
    stop_speaker(lab, node)?;
    lab.start_speaker_with_env(
        node,
        &lab.gossip_key(),
        &[
            ("LD_PRELOAD", library.display().to_string()),
            ("FAKETIME", format!("+{ahead_secs}s")),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ],
    )
}

/// Where Debian's `faketime` package puts the preload library, installing it when missing.
fn faketime_library() -> anyhow::Result<std::path::PathBuf> {
    let find = || {
        std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
            .chain([std::path::PathBuf::from(
                "/usr/lib/faketime/libfaketime.so.1",
            )])
            .find(|p| p.exists())
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    crate::cluster::ensure_packages(&[("faketime", "faketime")])?;
    find().ok_or_else(|| anyhow::anyhow!("libfaketime.so.1 not found after installing faketime"))
}

fn stop_speaker(lab: &Lab, node: u8) -> anyhow::Result<()> {
    lab.processes().stop(
        &Lab::speaker(node),
        Signal::Term,
        std::time::Duration::from_secs(15),
    )?;
    Ok(())
}

/// Kills lab process `name` at once (SIGKILL): no goodbye to anyone.
///
/// # Errors
/// When it does not run or does not die.
pub fn kill(lab: &Lab, name: &str) -> anyhow::Result<()> {
    lab.processes()
        .stop(name, Signal::Kill, std::time::Duration::from_secs(5))?;
    Ok(())
}
