//! ferrolb-controller: gives LoadBalancer Services addresses from IPAddressPools.
//!
//! ```text
//! watches (Services, IPAddressPools, Namespaces) ─> engine (pure decisions, ipam allocator)
//!                                                     └─> actions ─> runtime: status patches,
//!                                                                    pool status, Events
//! ```
//!
//! - [`convert`]: Kubernetes objects to allocator inputs; [`convert::ServiceKey`].
//! - [`decide`]: desired status, status patches and Events, as pure functions.
//! - [`engine`]: the state machine that owns the allocator.
//! - [`runtime`]: the loop: watches in, engine, writes out.
//! - [`watch`]: every watch, built one way; relists turned into changes.
//! - [`writes`]: actions carried out as API writes, coalesced per target.
//! - [`retry`]: the backoff queue of failed writes (pure).
//! - [`leader`]: Lease-based leader election; only the leader runs the runtime.
//! - [`error`]: the crate's [`Error`], with a metric label per variant.
//! - [`metrics`]: Prometheus metrics (served by `ferrolb-observe`).

pub mod convert;
pub mod decide;
pub mod engine;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod retry;
pub mod runtime;
pub mod watch;
pub mod writes;

pub use error::Error;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Parser;
use ferrolb_observe::heartbeat::{Heartbeat, STALE_AFTER};

/// Command-line flags; every flag has an environment fallback for the Helm chart.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferrolb-controller",
    version,
    about = "Assigns IPs from IPAddressPools to LoadBalancer Services"
)]
pub struct Args {
    /// Namespace of the IPAddressPools (and of the leader Lease).
    #[arg(long, env = "FERROLB_NAMESPACE", default_value = "ferrolb-system")]
    pub namespace: String,
    /// Handle only Services with this `spec.loadBalancerClass`; empty: only Services without one.
    #[arg(long, env = "FERROLB_LB_CLASS", default_value = "")]
    pub lb_class: String,
    /// Elect a leader among replicas with a Lease; only the leader writes.
    #[arg(long, env = "FERROLB_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Address of /metrics, /healthz and /readyz.
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
    /// This replica's name, for the Lease and Events (the pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds the leader Lease is valid without renewal: how long a crashed or cut-off leader
    /// blocks a successor. The leader stops writing after 2/3 of it without a renewal.
    #[arg(long, env = "FERROLB_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
}

/// The shared observability crate (Events, metrics server), for callers that build a
/// [`writes::Writer`] themselves.
pub use ferrolb_observe as observe;
pub use ferrolb_observe::{init_logging, shutdown_signal};

/// Runs the controller until SIGTERM or Ctrl-C.
///
/// # Errors
/// Start-up failures: no cluster access, the metrics address cannot be bound.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {e}")
    })?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(metrics::Metrics::new(&mut registry));
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr)
        })?;
    let heartbeat = Arc::new(Heartbeat::new("engine loop", STALE_AFTER));
    let health = ferrolb_observe::http::Health {
        registry: Arc::new(registry),
        ready: ready.clone(),
        heartbeats: vec![heartbeat.clone()],
    };
    // The process exits non-zero when this task ends: a controller without /healthz and
    // /metrics is restarted by the kubelet rather than left half alive.
    let mut http = tokio::spawn(ferrolb_observe::http::serve_on(listener, health));
    let http_ended = async move {
        let joined = (&mut http).await;
        tracing::error!(?joined, "the metrics and health server ended");
        Error::TaskEnded("metrics and health server")
    };

    let config = runtime::RuntimeConfig {
        namespace: args.namespace.clone(),
        lb_class: Some(args.lb_class.clone()).filter(|c| !c.is_empty()),
        instance: args.identity.clone(),
        heartbeat,
    };
    tracing::info!(namespace = %args.namespace, lb_class = %args.lb_class, leader_elect = args.leader_elect, "ferrolb-controller starting");
    if args.leader_elect {
        tokio::select! {
            result = leader::run_as_leader(client, &args, config, metrics, ready, async {
                shutdown_signal().await;
                tracing::info!("shutting down: releasing the leader lease");
            }) => result?,
            e = http_ended => return Err(e.into()),
        }
        return Ok(());
    }
    metrics.set_leader(true);
    tokio::select! {
        result = runtime::run(client, config, metrics, ready) => Ok(result?),
        e = http_ended => Err(e.into()),
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}
