//! The lab's network: namespaces, veth pairs, a bridge and addresses, made with iproute2.
//!
//! Every name carries a per-run prefix; [`delete_all`] removes a prefix's namespaces and what runs
//! in them. The one owner that calls it is [`crate::cluster::Lab`] (on drop, also on panic), and
//! `ferrolb-lab down` after a crash. Addresses are documentation ranges only: 192.0.2.0/24 and
//! 2001:db8::/64 on the bridge.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Runs a command, failing with its stderr.
///
/// # Errors
/// When it cannot start or exits non-zero.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Runs `args` inside namespace `ns`.
///
/// # Errors
/// As [`run`].
pub fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// A `Command` that runs inside namespace `ns` (for long-running processes), in a process group
/// of its own: a Ctrl-C at the terminal, or any tool signalling its own process group (as
/// `kill(0, sig)` does), reaches the lab's owner only, which then stops everything in order,
/// instead of killing lab processes behind its back.
pub fn command_in(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]).process_group(0);
    c
}

/// Namespace of node `node` (1-based) of lab `prefix`.
pub fn node_ns(prefix: &str, node: u8) -> String {
    format!("{prefix}n{node}")
}

/// IPv4 address of node `node` (1-based): 192.0.2.(10 + node).
pub fn node_ip(node: u8) -> String {
    format!("192.0.2.{}", 10 + u16::from(node))
}

/// IPv6 address of node `node` (1-based): 2001:db8::(10 + node), in hex.
pub fn node_ipv6(node: u8) -> String {
    format!("2001:db8::{:x}", 10 + u16::from(node))
}

/// The Kubernetes name of node `node` (1-based).
pub fn node_name(node: u8) -> String {
    format!("node-{node}")
}

/// The client namespace of lab `prefix`.
pub fn client_ns(prefix: &str) -> String {
    format!("{prefix}cl")
}

/// The bridge namespace of lab `prefix` (API server, controllers).
pub fn bridge_ns(prefix: &str) -> String {
    format!("{prefix}br")
}

/// The MAC address of `iface` in namespace `ns`, lower case.
///
/// # Errors
/// When the interface does not exist.
pub fn mac_of(ns: &str, iface: &str) -> anyhow::Result<String> {
    let out = in_ns(ns, &["cat", &format!("/sys/class/net/{iface}/address")])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_lowercase())
}

/// Namespaces that exist now whose name starts with `prefix`.
pub fn existing(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Deletes every namespace named with `prefix` (processes inside die with their network).
pub fn delete_all(prefix: &str) {
    for ns in existing(prefix) {
        // Kill what runs inside first, so nothing keeps the namespace alive.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    }
}

/// One node or client: a namespace linked to the lab bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Interface inside the namespace.
    pub iface: String,
    /// IPv4 address (without prefix length).
    pub ipv4: String,
    /// IPv6 address (without prefix length).
    pub ipv6: String,
}

/// A bridge namespace and hosts attached to it: 192.0.2.0/24 and 2001:db8::/64. Plain data:
/// [`crate::cluster::Lab`] owns it and removes it.
#[derive(Debug)]
pub struct Topology {
    /// Per-run prefix of every name.
    pub prefix: String,
    /// The namespace holding the bridge.
    pub bridge_ns: String,
    /// Hosts by creation order.
    pub hosts: Vec<Host>,
}

impl Topology {
    /// Creates the bridge namespace. `prefix` should be short (interface names are at most 15
    /// bytes) and unique per run.
    ///
    /// # Errors
    /// When iproute2 fails (not root, no netns support).
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let bridge_ns = bridge_ns(prefix);
        run("ip", &["netns", "add", &bridge_ns])?;
        let topo = Self {
            prefix: prefix.to_owned(),
            bridge_ns,
            hosts: Vec::new(),
        };
        in_ns(
            &topo.bridge_ns,
            &["ip", "link", "add", "br0", "type", "bridge"],
        )?;
        in_ns(&topo.bridge_ns, &["ip", "link", "set", "br0", "up"])?;
        in_ns(&topo.bridge_ns, &["ip", "link", "set", "lo", "up"])?;
        Ok(topo)
    }

    /// The topology of a lab that `up` made earlier, to work with it (nothing is created).
    pub fn attach(prefix: &str, nodes: u8) -> Self {
        let host = |name: &str, n: u8| Host {
            ns: format!("{prefix}{name}"),
            iface: "eth0".into(),
            ipv4: format!("192.0.2.{n}"),
            ipv6: format!("2001:db8::{n:x}"),
        };
        let mut hosts = vec![host("cl", 2)];
        hosts.extend((1..=nodes).map(|i| host(&format!("n{i}"), 10 + i)));
        Self {
            prefix: prefix.to_owned(),
            bridge_ns: bridge_ns(prefix),
            hosts,
        }
    }

    /// Adds a host `name` with the last address byte `n` (192.0.2.n, 2001:db8::n).
    ///
    /// # Errors
    /// When iproute2 fails.
    pub fn add_host(&mut self, name: &str, n: u8) -> anyhow::Result<Host> {
        let ns = format!("{}{name}", self.prefix);
        run("ip", &["netns", "add", &ns])?;
        let outside = format!("{}{name}v", self.prefix);
        // Create the pair in the bridge namespace, then move one end into the host.
        in_ns(
            &self.bridge_ns,
            &[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", "eth0",
            ],
        )?;
        in_ns(
            &self.bridge_ns,
            &["ip", "link", "set", "eth0", "netns", &ns],
        )?;
        in_ns(
            &self.bridge_ns,
            &["ip", "link", "set", &outside, "master", "br0", "up"],
        )?;
        let ipv4 = format!("192.0.2.{n}");
        let ipv6 = format!("2001:db8::{n:x}");
        in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        in_ns(
            &ns,
            &["ip", "addr", "add", &format!("{ipv4}/24"), "dev", "eth0"],
        )?;
        // nodad: the address is usable at once, the lab does not wait for DAD.
        in_ns(
            &ns,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{ipv6}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
        in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
        let host = Host {
            ns,
            iface: "eth0".into(),
            ipv4,
            ipv6,
        };
        self.hosts.push(host.clone());
        Ok(host)
    }

    /// The host in namespace `ns`.
    ///
    /// # Errors
    /// When there is none.
    pub fn host(&self, ns: &str) -> anyhow::Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.ns == ns)
            .ok_or_else(|| anyhow::anyhow!("no host {ns} in lab {}", self.prefix))
    }

    /// Gives `host` a second link to the bridge, named `name` inside it, up, without addresses
    /// (an interface some nodes have and others lack). Its bridge side is `<prefix><host>x`.
    ///
    /// # Errors
    /// When iproute2 fails.
    pub fn add_link(&self, host: &Host, name: &str) -> anyhow::Result<()> {
        let short = host.ns.strip_prefix(&self.prefix).unwrap_or(&host.ns);
        let outside = format!("{}{short}x", self.prefix);
        in_ns(
            &self.bridge_ns,
            &[
                "ip", "link", "add", &outside, "type", "veth", "peer", "name", name,
            ],
        )?;
        in_ns(
            &self.bridge_ns,
            &["ip", "link", "set", name, "netns", &host.ns],
        )?;
        in_ns(
            &self.bridge_ns,
            &["ip", "link", "set", &outside, "master", "br0", "up"],
        )?;
        in_ns(&host.ns, &["ip", "link", "set", name, "up"])?;
        Ok(())
    }

    /// Cuts a host off the network (its bridge port down), or restores it.
    ///
    /// # Errors
    /// When iproute2 fails.
    pub fn set_link(&self, host: &Host, up: bool) -> anyhow::Result<()> {
        let name = host.ns.strip_prefix(&self.prefix).unwrap_or(&host.ns);
        let outside = format!("{}{name}v", self.prefix);
        in_ns(
            &self.bridge_ns,
            &[
                "ip",
                "link",
                "set",
                &outside,
                if up { "up" } else { "down" },
            ],
        )?;
        Ok(())
    }
}
