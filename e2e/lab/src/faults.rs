//! Faults a scenario inflicts on the lab: a node's link cut, gossip blocked between groups of
//! nodes, a process frozen, and a client made to forget what it learnt.

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
