//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager). Only the holder runs
//! the controller; when the lease is lost the controller is dropped at once, so no write of a
//! former leader can race the new one's. Dropping the lease channel on shutdown releases the
//! lease, so a rolling update hands over without waiting for it to expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube_lease_manager::LeaseManagerBuilder;

use crate::Args;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::runtime::{self, RuntimeConfig};

/// Lease name in the controller's namespace.
pub const LEASE_NAME: &str = "ferrolb-controller";
/// Seconds a lease is valid without renewal: how long a crashed leader blocks a successor.
const LEASE_DURATION_SECONDS: u64 = 15;
/// Seconds before expiry at which the holder renews.
const LEASE_GRACE_SECONDS: u64 = 5;

/// How long shutdown waits for the lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(4);

/// Runs the controller whenever this replica holds the lease, until `shutdown` resolves; then
/// releases the lease (waiting at most a few seconds) so a successor takes over at once.
///
/// # Errors
/// [`Error::Lease`] when the lease manager cannot be created, [`Error::LeaseManagerStopped`] when
/// it stops, and what [`runtime::run`] returns.
pub async fn run_as_leader(
    client: kube::Client,
    args: &Args,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("ferrolb-controller-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(&args.namespace)
        .with_identity(&identity)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .build()
        .await
        .map_err(|source| Error::Lease {
            namespace: args.namespace.clone(),
            name: LEASE_NAME,
            source,
        })?;
    let (leading, task) = manager.watch().await;
    let result = tokio::select! {
        result = lead(leading, client, &identity, config, metrics.clone(), ready) => result,
        () = shutdown => Ok(()),
    };
    // `lead` is dropped, and with it the channel: the lease manager releases the lease.
    metrics.is_leader.set(0);
    if tokio::time::timeout(RELEASE_TIMEOUT, task).await.is_err() {
        tracing::warn!("lease not released in time; the successor waits for it to expire");
    } else {
        tracing::info!("leader lease released");
    }
    result
}

async fn lead(
    mut leading: tokio::sync::watch::Receiver<bool>,
    client: kube::Client,
    identity: &str,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<(), Error> {
    // A standby is ready: it serves nothing until it leads, and readiness gates rollouts.
    ready.store(true, Ordering::Relaxed);
    loop {
        if *leading.borrow_and_update() {
            tracing::info!(%identity, "became leader");
            metrics.is_leader.set(1);
            ready.store(false, Ordering::Relaxed);
            tokio::select! {
                result = runtime::run(client.clone(), config.clone(), metrics.clone(), ready.clone()) => {
                    result?;
                }
                changed = leading.changed() => {
                    changed.map_err(|_| Error::LeaseManagerStopped)?;
                }
            }
            // Lost the lease (or the runtime ended): stop writing at once.
            tracing::warn!(%identity, "lost leadership; stopped writing");
            metrics.is_leader.set(0);
            metrics.config_loaded.set(0);
            ready.store(true, Ordering::Relaxed);
        } else {
            leading
                .changed()
                .await
                .map_err(|_| Error::LeaseManagerStopped)?;
        }
    }
}
