//! The controller's one error type. Runtime failures (a write, a watch, an Event) are logged,
//! counted under [`Error::metric_label`] and retried; only leader-election set-up and a runtime
//! that cannot go on end [`crate::runtime::run`] or [`crate::leader::run_as_leader`].

use kube::runtime::watcher;

use crate::convert::ServiceKey;

/// Everything that can go wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Patching a Service's status (and pool annotation) failed.
    #[error("writing the status of Service {service}: {source}")]
    ServiceStatus {
        /// Which Service.
        service: ServiceKey,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Patching an IPAddressPool's status failed.
    #[error("writing the status of IPAddressPool {pool}: {source}")]
    PoolStatus {
        /// Pool name.
        pool: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Patching an IPAddressPool's finalizers failed.
    #[error("writing the finalizers of IPAddressPool {pool}: {source}")]
    PoolFinalizer {
        /// Pool name.
        pool: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// Publishing an Event failed (logged only: an Event never blocks a write).
    #[error("publishing Event {reason}: {source}")]
    Event {
        /// The Event's reason.
        reason: &'static str,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// A watch failed; the watcher retries it with backoff.
    #[error("watching {watch}: {source}")]
    Watch {
        /// What is watched (`services`, `ipaddresspools`, `namespaces`).
        watch: &'static str,
        /// Why.
        #[source]
        source: watcher::Error,
    },
    /// The watch streams ended, which watchers never do while the runtime runs.
    #[error("the watch streams ended")]
    WatchesEnded,
    /// The leader Lease cannot be set up.
    #[error("cannot set up the leader lease {namespace}/{name}: {source}")]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: &'static str,
        /// Why.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The lease manager stopped telling whether this replica leads.
    #[error("the lease manager stopped")]
    LeaseManagerStopped,
}

impl Error {
    /// The `error` label of `ferrolb_controller_errors_total`: one stable value per variant.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ServiceStatus { .. } => "service_status",
            Self::PoolStatus { .. } => "pool_status",
            Self::PoolFinalizer { .. } => "pool_finalizer",
            Self::Event { .. } => "event",
            Self::Watch { .. } => "watch",
            Self::WatchesEnded => "watches_ended",
            Self::Lease { .. } => "lease",
            Self::LeaseManagerStopped => "lease_manager_stopped",
        }
    }
}
