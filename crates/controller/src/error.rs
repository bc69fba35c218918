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
    /// The lease manager stopped telling whether this replica leads.
    #[error("the lease manager stopped")]
    LeaseManagerStopped,
    /// Reading or writing the leader Lease failed; leadership ends at the renew deadline
    /// unless a later attempt succeeds.
    #[error("leader lease {what}: {source}")]
    LeaseRenew {
        /// `read`, `create` or `update`.
        what: &'static str,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// A request to the leader Lease did not answer in time.
    #[error("leader lease {what}: no answer within {seconds:.1} s")]
    LeaseTimeout {
        /// `read`, `create` or `update`.
        what: &'static str,
        /// The timeout.
        seconds: f64,
    },
    /// A write was not sent: this replica's lease is not (or no longer) known to be valid.
    #[error("not sent: this replica does not hold a valid leader lease")]
    NotLeader,
    /// A task the controller needs ended.
    #[error("the {0} task ended")]
    TaskEnded(&'static str),
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
            Self::LeaseManagerStopped => "lease_manager_stopped",
            Self::LeaseRenew { .. } => "lease",
            Self::LeaseTimeout { .. } => "lease_timeout",
            Self::NotLeader => "not_leader",
            Self::TaskEnded(_) => "task_ended",
        }
    }

    /// Whether the apiserver refused the write as stale (409 Conflict): the object changed
    /// since it was read. Such a write is never retried as it was; the newer version is read.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::ServiceStatus { source, .. }
            | Self::PoolStatus { source, .. }
            | Self::PoolFinalizer { source, .. } => {
                matches!(source, kube::Error::Api(e) if e.code == 409)
            }
            _ => false,
        }
    }
}
