//! ferrolb-speaker: every node's agent. It agrees with the other speakers, by SWIM gossip, which
//! of them are alive; computes from that and the cluster's objects which node owns each Service
//! IP ([`election`]); and turns ownership changes into announcements ([`announcer`]).

pub mod announcer;
pub mod cache;
pub mod election;
pub mod gossip;
pub mod inputs;
pub mod isolation;
pub mod l2;
pub mod lean;
pub mod ledger;
pub mod metrics;
pub mod publish;
pub mod reach;
pub mod runtime;
pub mod touch;
pub mod visibility;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;

use crate::gossip::seal::{KeyRing, REPLAY_WINDOW_MS, Sealer};
use crate::gossip::timing::Profile;

/// Command-line flags; every flag has an environment fallback for the DaemonSet.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferrolb-speaker",
    version,
    about = "Announces LoadBalancer IPs with ARP/NDP from the node that owns them"
)]
pub struct Args {
    /// This node's name (downward API `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Address to bind gossip to: the pod IP (the speaker runs on the host network).
    #[arg(long, env = "POD_IP")]
    pub bind_addr: IpAddr,
    /// Gossip UDP port.
    #[arg(long, env = "FERROLB_GOSSIP_PORT", default_value_t = 7946)]
    pub gossip_port: u16,
    /// File with the gossip keys, one per line: the first seals, all open (rotate by adding the
    /// new key second everywhere, then first, then removing the old one).
    #[arg(long, env = "FERROLB_GOSSIP_KEY_FILE")]
    pub gossip_key_file: Option<PathBuf>,
    /// Run gossip without authentication or encryption (refused unless given).
    #[arg(long, env = "FERROLB_INSECURE_GOSSIP")]
    pub insecure_gossip: bool,
    /// Gossip timing: `standard` notices a dead node in about 0.5 s; `fast` in under 0.1 s, for
    /// about four times the gossip traffic and CPU (see `gossip::timing`).
    #[arg(long, env = "FERROLB_GOSSIP_PROFILE", value_enum, default_value_t = Profile::Standard)]
    pub gossip_profile: Profile,
    /// Static peers (`ip:port`, comma separated), besides those found from the speaker pods.
    #[arg(long, env = "FERROLB_PEERS", value_delimiter = ',')]
    pub peers: Vec<SocketAddr>,
    /// Label selector of the speaker pods, in `--namespace`.
    #[arg(
        long,
        env = "FERROLB_SPEAKER_SELECTOR",
        default_value = "app.kubernetes.io/name=ferrolb,app.kubernetes.io/component=speaker"
    )]
    pub speaker_selector: String,
    /// Namespace of the pools, advertisements and speaker pods.
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = "ferrolb-system")]
    pub namespace: String,
    /// Handle only Services with this `spec.loadBalancerClass`; empty: only Services without one.
    #[arg(long, env = "FERROLB_LB_CLASS", default_value = "")]
    pub lb_class: String,
    /// Announce even from nodes labelled `node.kubernetes.io/exclude-from-external-load-balancers`.
    #[arg(long, env = "FERROLB_IGNORE_EXCLUDE_LB")]
    pub ignore_exclude_lb: bool,
    /// How long to keep answering after leaving gossip on SIGTERM, so the next owner has taken
    /// over before this one stops.
    #[arg(long, env = "FERROLB_SHUTDOWN_GRACE", default_value = "2s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Address of /metrics, /healthz and /readyz (`IP:port`; an IPv6 address may be followed
    /// by `:port` without brackets, as the chart writes the node's IP).
    #[arg(
        long,
        env = "FERROLB_METRICS_ADDR",
        default_value = "0.0.0.0:7472",
        value_parser = ferrolb_observe::listen::listen_addr
    )]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "FERROLB_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// This speaker's pod (downward API `metadata.name`): owner of its ServiceL2Status objects.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// When another host already answers for a newly gained IP: `warn` (announce anyway) or
    /// `withdraw` (stay silent until it stops).
    #[arg(long, env = "FERROLB_CONFLICT_POLICY", value_enum, default_value_t = l2::claim::ConflictPolicy::Warn)]
    pub conflict_policy: l2::claim::ConflictPolicy,
    /// Interface name patterns (`*` at the end matches any suffix) never used when an
    /// L2Advertisement names no interfaces.
    #[arg(
        long,
        env = "FERROLB_EXCLUDE_INTERFACES",
        value_delimiter = ',',
        default_values = l2::interfaces::DEFAULT_EXCLUDES
    )]
    pub exclude_interfaces: Vec<String>,
    /// If given, only interfaces matching these patterns are used when an L2Advertisement names
    /// no interfaces.
    #[arg(long, env = "FERROLB_INCLUDE_INTERFACES", value_delimiter = ',')]
    pub include_interfaces: Vec<String>,
    /// Gratuitous ARP / unsolicited NA repeats after the first, 1 s apart.
    #[arg(long, env = "FERROLB_GRATUITOUS_REPEATS", default_value_t = 3)]
    pub gratuitous_repeats: u32,
    /// Re-announce every owned IP this often after the repeats (`0s`: never).
    #[arg(long, env = "FERROLB_REFRESH_INTERVAL", default_value = "0s", value_parser = parse_duration)]
    pub refresh_interval: Duration,
}

impl Args {
    /// The responder settings the flags ask for.
    pub fn l2_config(&self) -> l2::responder::L2Config {
        l2::responder::L2Config {
            filter: l2::interfaces::NameFilter {
                include: self
                    .include_interfaces
                    .iter()
                    .filter(|p| !p.is_empty())
                    .cloned()
                    .collect(),
                exclude: self
                    .exclude_interfaces
                    .iter()
                    .filter(|p| !p.is_empty())
                    .cloned()
                    .collect(),
            },
            timing: l2::claim::ClaimTiming {
                repeats: self.gratuitous_repeats,
                refresh: Some(self.refresh_interval).filter(|d| !d.is_zero()),
                policy: self.conflict_policy,
                // The fast profile halves the wait for a presumed-dead owner's answer too: a
                // live one answers in under a millisecond, and a later answer still silences
                // this node at once (`witness_watch`).
                witness_wait: match self.gossip_profile {
                    Profile::Standard => l2::claim::ClaimTiming::default().witness_wait,
                    Profile::Fast => Duration::from_millis(15),
                },
                ..l2::claim::ClaimTiming::default()
            },
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(format!("not a duration (use ms or s): {s}")),
    }
}

/// The gossip sealer the flags ask for.
///
/// # Errors
/// No key file and no `--insecure-gossip`, or an unreadable or empty key file.
pub fn sealer(args: &Args, metrics: &metrics::Metrics) -> anyhow::Result<Sealer> {
    let ring = match (&args.gossip_key_file, args.insecure_gossip) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read --gossip-key-file {}: {e}", path.display())
            })?;
            KeyRing::from_lines(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        (None, true) => {
            tracing::warn!(
                "gossip runs WITHOUT authentication or encryption (--insecure-gossip): anyone on the network can change membership"
            );
            metrics.insecure.set(1);
            KeyRing::from_lines("ferrolb-insecure-gossip").map_err(anyhow::Error::msg)?
        }
        (None, false) => anyhow::bail!(
            "no gossip key: give --gossip-key-file (a mounted Secret), or --insecure-gossip to run without one"
        ),
    };
    Ok(Sealer::new(ring, REPLAY_WINDOW_MS))
}

/// Runs the speaker until SIGTERM.
///
/// # Errors
/// Start-up failures, with what to fix.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(metrics::Metrics::new(&mut registry));
    let sealer = sealer(&args, &metrics)?;
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {e}")
    })?;
    let ready = Arc::new(AtomicBool::new(false));
    let heartbeat = Arc::new(ferrolb_observe::heartbeat::Heartbeat::new(
        "speaker loop",
        ferrolb_observe::heartbeat::STALE_AFTER,
    ));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr)
        })?;
    tokio::spawn(ferrolb_observe::http::serve_on(
        listener,
        ferrolb_observe::http::Health {
            registry: Arc::new(registry),
            ready: ready.clone(),
            heartbeats: vec![heartbeat.clone()],
        },
    ));
    let bind = SocketAddr::new(args.bind_addr, args.gossip_port);
    let gossip = gossip::udp::spawn(
        bind,
        &args.node_name,
        args.gossip_profile.timing(args.peers.len().max(3)),
        sealer,
        args.peers.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot bind gossip to {bind}: {e}"))?;
    tracing::info!(node = %args.node_name, %bind, "ferrolb-speaker starting");
    let config = runtime::RuntimeConfig {
        node: args.node_name.clone(),
        namespace: args.namespace.clone(),
        lb_class: Some(args.lb_class.clone()).filter(|c| !c.is_empty()),
        ignore_exclude_lb: args.ignore_exclude_lb,
        speaker_selector: args.speaker_selector.clone(),
        gossip_port: args.gossip_port,
        static_peers: args.peers.clone(),
        grace: args.shutdown_grace,
        pod_name: args.pod_name.clone(),
        check_ipvs: true,
        heartbeat,
    };
    let (mut responder, reports) =
        l2::responder::L2Responder::new(args.l2_config(), metrics.l2.clone())
            .map_err(|e| anyhow::anyhow!("cannot start the Layer 2 responder: {e}"))?;
    let (links_tx, links) = tokio::sync::mpsc::unbounded_channel();
    if let Err(e) = l2::linkwatch::spawn(links_tx) {
        tracing::warn!(error = %e, "cannot watch link changes; interfaces are rescanned every 30 s");
    }
    runtime::run(
        client,
        config,
        gossip,
        metrics,
        ready,
        &mut responder,
        runtime::L2Feedback { reports, links },
        ferrolb_observe::shutdown_signal(),
    )
    .await
}
