//! The lab: one guard, [`Lab`], that owns the network, the processes and the files of one run and
//! removes them all when dropped (also when a test panics; `ferrolb-lab demo` also on Ctrl-C).
//!
//! [`Lab::up`] brings up the whole system on one machine. The API server and the controller run
//! in the bridge namespace on 192.0.2.1, each node namespace holds a speaker and a kube-proxy
//! stand-in (Service IPs routed locally, `arp_ignore` so only the speaker answers ARP, and an
//! HTTP backend that answers with the node's name), and a client namespace reaches Service IPs
//! over the bridge. Nodes and speaker Pods are registered as a kubelet would (labels, addresses,
//! a Ready condition). Nothing is put in the host's own network namespace. [`Lab::network`] is
//! the bare network, for tests that start their own processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use test_apiserver::kubectl::Kubectl;

use crate::binaries::binary;
use crate::objects::{self, Object, POOL_V4, POOL_V6, SYSTEM_NAMESPACE};
use crate::process::{Spec, Supervisor, log_tail};
use crate::topology::{Topology, bridge_ns, delete_all, in_ns, node_name, node_ns};
use crate::wait::poll_until;

/// Address of the API server inside the lab.
pub const API_ADDR: &str = "192.0.2.1:6443";
/// The first controller's `/metrics`.
pub const CONTROLLER_METRICS: &str = "192.0.2.1:7472";

/// Set (to anything) to keep a lab's directory, logs included, when the lab goes down.
pub const KEEP_LOGS: &str = "FERROLB_LAB_KEEP_LOGS";

/// Where the lab of a prefix keeps its kubeconfig, key and logs.
pub fn lab_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferrolb-lab-{prefix}"))
}

/// Removes every namespace and process of the lab with this prefix, and its files (what a
/// crashed run left, or a lab `ferrolb-lab up` left running).
pub fn down(prefix: &str) {
    delete_all(prefix);
    let _ = std::fs::remove_dir_all(lab_dir(prefix));
}

/// A per-run prefix: `tag` and this process's id (short: interface names are at most 15 bytes).
pub fn prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 10_000)
}

/// Tools the lab runs, with the Debian package of each.
const PREREQUISITES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("curl", "curl"),
    ("kubectl", "kubernetes-client"),
    ("sysctl", "procps"),
];

/// Installs missing tools with apt-get when running as root; otherwise says exactly what to
/// install.
///
/// # Errors
/// When a tool is missing and cannot be installed here.
pub fn ensure_prerequisites() -> anyhow::Result<()> {
    ensure_packages(PREREQUISITES)
}

/// Installs the packages of `tools` (command, package) whose command is missing, with apt-get
/// when running as root; otherwise says exactly what to install.
///
/// # Errors
/// When a tool is missing and cannot be installed here.
pub fn ensure_packages(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .status()
        .is_ok_and(|s| s.success());
    anyhow::ensure!(
        ok,
        "the lab needs root and these packages: apt-get install {}",
        missing.join(" ")
    );
    Ok(())
}

/// One lab: its network, processes and files, removed on drop unless attached or detached.
#[derive(Debug)]
pub struct Lab {
    topo: Topology,
    nodes: u8,
    dir: PathBuf,
    procs: Supervisor,
    /// Whether dropping it removes everything (false for a lab someone else made).
    owned: bool,
}

impl Lab {
    /// The bridge namespace alone, under `prefix` (whatever an earlier run left under it is
    /// removed first). Hosts come with [`Lab::add_host`].
    ///
    /// # Errors
    /// When iproute2 fails (not root, no netns support).
    pub fn network(prefix: &str) -> anyhow::Result<Self> {
        down(prefix);
        let dir = lab_dir(prefix);
        std::fs::create_dir_all(&dir)?;
        let topo = Topology::new(prefix).inspect_err(|_| down(prefix))?;
        Ok(Self {
            topo,
            nodes: 0,
            dir,
            procs: Supervisor::new(),
            owned: true,
        })
    }

    /// The whole system with `nodes` node namespaces (see the module header).
    ///
    /// # Errors
    /// When any step fails; what was created so far is removed.
    pub fn up(prefix: &str, nodes: u8) -> anyhow::Result<Self> {
        ensure_prerequisites()?;
        let mut lab = Self::network(prefix)?;
        lab.nodes = nodes;
        let bridge = lab.topo.bridge_ns.clone();
        in_ns(
            &bridge,
            &["ip", "addr", "add", "192.0.2.1/24", "dev", "br0"],
        )?;
        in_ns(
            &bridge,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                "2001:db8::1/64",
                "dev",
                "br0",
                "nodad",
            ],
        )?;
        lab.add_host("cl", 2)?;
        for node in 1..=nodes {
            lab.add_host(&format!("n{node}"), 10 + node)?;
        }
        lab.start_apiserver()?;
        lab.apply(&[&objects::namespace(SYSTEM_NAMESPACE)])?;
        std::fs::write(
            lab.gossip_key(),
            format!("ferrolb-lab-{prefix}-{}\n", std::process::id()),
        )?;
        lab.start_controller("controller-0", CONTROLLER_METRICS)?;
        for node in 1..=nodes {
            lab.register_node(node)?;
            lab.start_node(node)?;
        }
        Ok(lab)
    }

    /// A lab that `up` made earlier under `prefix`, to work with (nothing is created, and
    /// nothing is removed when it is dropped).
    pub fn attach(prefix: &str, nodes: u8) -> Self {
        let mut procs = Supervisor::new();
        procs.detach();
        Self {
            topo: Topology::attach(prefix, nodes),
            nodes,
            dir: lab_dir(prefix),
            procs,
            owned: false,
        }
    }

    /// Leaves the lab running after this process (`ferrolb-lab up`; `down` removes it).
    pub fn detach(mut self) {
        self.procs.detach();
        self.owned = false;
    }

    /// Its per-run prefix.
    pub fn prefix(&self) -> &str {
        &self.topo.prefix
    }

    /// Node namespaces.
    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    /// Names of its nodes.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(node_name).collect()
    }

    /// Its network.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Adds a host `name` with the last address byte `n` (see [`Topology::add_host`]).
    ///
    /// # Errors
    /// When iproute2 fails.
    pub fn add_host(&mut self, name: &str, n: u8) -> anyhow::Result<crate::topology::Host> {
        self.topo.add_host(name, n)
    }

    /// Its directory (kubeconfig, key, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log of process `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// The kubeconfig for its API server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The gossip key file every speaker of the lab reads.
    pub fn gossip_key(&self) -> PathBuf {
        self.dir.join("gossip.key")
    }

    /// kubectl against its API server, run in the bridge namespace.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(self.kubeconfig()).in_netns(bridge_ns(self.prefix()))
    }

    /// Runs kubectl; its standard output.
    ///
    /// # Errors
    /// When kubectl fails (with its standard error).
    pub fn kubectl_run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        self.kubectl().run(args, stdin)
    }

    /// `kubectl get ARGS -o json`.
    ///
    /// # Errors
    /// When kubectl fails or prints no JSON.
    pub fn get_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl_run(&full, None)?)?)
    }

    /// Applies `objects` in one `kubectl apply`.
    ///
    /// # Errors
    /// When kubectl refuses them.
    pub fn apply(&self, objects: &[&dyn Object]) -> anyhow::Result<()> {
        let list = objects::list(objects).to_string();
        // The test API server serves no OpenAPI document for kubectl to validate against.
        self.kubectl_run(&["apply", "--validate=false", "-f", "-"], Some(&list))?;
        Ok(())
    }

    /// Its processes.
    pub fn processes(&self) -> &Supervisor {
        &self.procs
    }

    /// Fine while none of its processes has died unexpectedly.
    ///
    /// # Errors
    /// Naming each that died, with its last log lines.
    pub fn healthy(&self) -> anyhow::Result<()> {
        self.procs.healthy()
    }

    /// [`poll_until`] that also gives up, naming the process, when a lab process dies.
    ///
    /// # Errors
    /// When `probe` has not succeeded within `timeout`, or a process died.
    pub fn poll_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> anyhow::Result<T> {
        poll_until(what, timeout, || match self.healthy() {
            Err(dead) => Ok(Err(dead)),
            Ok(()) => probe().map(Ok),
        })?
        .map_err(|dead| anyhow::anyhow!("while waiting for {what}: {dead}"))
    }

    /// [`Lab::poll_until`] for tests: panics with the message.
    ///
    /// # Panics
    /// When `probe` has not succeeded within `timeout`, or a process died.
    #[track_caller]
    pub fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        match self.poll_until(what, timeout, probe) {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }

    /// The last `lines` lines of every log of the lab.
    pub fn log_tails(&self, lines: usize) -> String {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return String::new();
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| format!("==> {} <==\n{}\n", p.display(), log_tail(p, lines)))
            .collect()
    }

    /// Starts process `name` in namespace `ns`, logging to `<dir>/<name>.log`, supervised.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn(
        &self,
        name: &str,
        ns: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<u32> {
        self.procs.start(Spec {
            name: name.to_owned(),
            ns: ns.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            log: self.log(name),
        })
    }

    fn start_apiserver(&self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig().display().to_string();
        // ferrolb's CRDs as generated from its types (what config/crd/ holds), as JSON
        // documents, which are YAML too.
        let crds = self.dir.join("crds.yaml");
        let mut text = String::new();
        for crd in ferrolb_api::crd::all() {
            text.push_str("---\n");
            text.push_str(&serde_json::to_string(&crd)?);
            text.push('\n');
        }
        std::fs::write(&crds, text)?;
        let crds = crds.display().to_string();
        self.spawn(
            "apiserver",
            &self.topo.bridge_ns,
            &binary("test-apiserver")?,
            &[
                "--listen",
                API_ADDR,
                "--kubeconfig",
                &kubeconfig,
                "--crds",
                &crds,
                // Room for the scale bench's 10,000 Services (a /24 holds 254 ClusterIPs). No
                // ClusterIP is ever routed in the lab, so loopback space keeps the documentation
                // ranges for addresses that are.
                "--service-cluster-ip-range",
                "127.96.0.0/16,2001:db8:96::/108",
            ],
            &[],
        )?;
        self.poll_until("the lab API server", Duration::from_secs(20), || {
            self.kubectl_run(&["get", "ns", "default"], None)
                .map_err(|e| e.to_string())
        })?;
        Ok(())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KUBECONFIG", self.kubeconfig().display().to_string()),
            ("RUST_LOG", "info".to_owned()),
        ]
    }

    /// Starts a controller replica in the bridge namespace under its own `identity` (the Lease
    /// holder name and the process name) with /metrics on `metrics_addr`; a replica restarted
    /// under the same identity appends to its earlier log.
    ///
    /// # Errors
    /// When the binary is missing or cannot be started.
    pub fn start_controller(&self, identity: &str, metrics_addr: &str) -> anyhow::Result<()> {
        self.start_controller_with(identity, metrics_addr, &self.kubeconfig())
    }

    /// [`Lab::start_controller`] with another kubeconfig (one pointing at a recording proxy,
    /// say, so this replica's writes can be told from another's).
    ///
    /// # Errors
    /// When the binary is missing or cannot be started.
    pub fn start_controller_with(
        &self,
        identity: &str,
        metrics_addr: &str,
        kubeconfig: &Path,
    ) -> anyhow::Result<()> {
        let args = [
            "--namespace",
            SYSTEM_NAMESPACE,
            "--metrics-addr",
            metrics_addr,
            "--identity",
            identity,
        ];
        let program = binary("ferrolb-controller")?;
        let mut env = self.env();
        env.retain(|(k, _)| *k != "KUBECONFIG");
        env.push(("KUBECONFIG", kubeconfig.display().to_string()));
        self.spawn(identity, &self.topo.bridge_ns, &program, &args, &env)?;
        Ok(())
    }

    /// A kubeconfig like the lab's whose server is `http://addr` (a proxy in front of the API
    /// server), written to the lab's directory under `name`.
    ///
    /// # Errors
    /// When the lab's kubeconfig cannot be read or the new one written.
    pub fn kubeconfig_via(&self, name: &str, addr: &str) -> anyhow::Result<PathBuf> {
        let text = std::fs::read_to_string(self.kubeconfig())?;
        let via = text.replace(&format!("http://{API_ADDR}"), &format!("http://{addr}"));
        anyhow::ensure!(via != text, "the lab's kubeconfig does not name {API_ADDR}");
        let path = self.dir.join(name);
        std::fs::write(&path, via)?;
        Ok(path)
    }

    /// The process name of node `node`'s speaker.
    pub fn speaker(node: u8) -> String {
        format!("speaker-{}", node_name(node))
    }

    /// Registers node `node` as its kubelet would: the Node with its labels, then its status
    /// (addresses, Ready) through the `/status` subresource; and its speaker Pod, running.
    fn register_node(&self, node: u8) -> anyhow::Result<()> {
        self.apply(&[&objects::node(node), &objects::speaker_pod(node)])?;
        let name = node_name(node);
        let pod = format!("speaker-{name}");
        for (kind, object, namespace, status) in [
            ("node", name.as_str(), None, objects::node_status(node)),
            (
                "pod",
                pod.as_str(),
                Some(SYSTEM_NAMESPACE),
                objects::speaker_pod_status(node),
            ),
        ] {
            let status = status.to_string();
            let mut args = vec![
                "patch",
                kind,
                object,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ];
            if let Some(ns) = namespace {
                args.extend(["-n", ns]);
            }
            self.kubectl_run(&args, None)?;
        }
        Ok(())
    }

    /// The kube-proxy stand-in, the backend and the speaker of node `node`.
    fn start_node(&self, node: u8) -> anyhow::Result<()> {
        let ns = node_ns(self.prefix(), node);
        let name = node_name(node);
        // Service IPs are local on the node, and only the speaker answers ARP/NDP for them.
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ] {
            in_ns(&ns, &["sysctl", "-qw", &format!("{key}={value}")])?;
        }
        in_ns(&ns, &["ip", "route", "add", "local", POOL_V4, "dev", "lo"])?;
        in_ns(
            &ns,
            &["ip", "-6", "route", "add", "local", POOL_V6, "dev", "lo"],
        )?;
        let lab_tool = binary("ferrolb-lab")?;
        self.spawn(
            &format!("backend-{name}"),
            &ns,
            &lab_tool,
            &["backend", "--name", &name],
            &[],
        )?;
        self.start_speaker(node, &self.gossip_key())
    }

    /// Starts node `node`'s speaker (process [`Lab::speaker`]) with the gossip keys in `key`
    /// (the lab's own key file, or another to make it a stranger to the others).
    ///
    /// # Errors
    /// When the binary is missing, or the speaker runs already.
    pub fn start_speaker(&self, node: u8, key: &Path) -> anyhow::Result<()> {
        self.start_speaker_with_env(node, key, &[])
    }

    /// [`Lab::start_speaker`] with variables added to the lab's environment (a preloaded
    /// library that shifts its clock, say).
    ///
    /// # Errors
    /// When the binary is missing or cannot be started.
    pub fn start_speaker_with_env(
        &self,
        node: u8,
        key: &Path,
        extra: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let ns = node_ns(self.prefix(), node);
        let name = node_name(node);
        let ip = crate::topology::node_ip(node);
        let key = key.display().to_string();
        let metrics = format!("{ip}:7472");
        let args = [
            "--node-name",
            &name,
            "--bind-addr",
            &ip,
            "--gossip-key-file",
            &key,
            "--metrics-addr",
            &metrics,
            "--namespace",
            SYSTEM_NAMESPACE,
            "--shutdown-grace",
            "2s",
        ];
        let speaker = binary("ferrolb-speaker")?;
        let mut env = self.env();
        env.extend(extra.iter().cloned());
        self.spawn(&Self::speaker(node), &ns, &speaker, &args, &env)?;
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let deaths = self.procs.deaths();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(40));
        }
        self.procs.shutdown();
        delete_all(self.prefix());
        if std::env::var_os(KEEP_LOGS).is_some() {
            eprintln!("lab logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if !deaths.is_empty() && !std::thread::panicking() {
            let text: Vec<String> = deaths.iter().map(ToString::to_string).collect();
            panic!("{}", text.join("\n"));
        }
    }
}
