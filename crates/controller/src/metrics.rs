//! The controller's Prometheus metrics. Names follow MetalLB's where one exists, with the
//! `ferrolb_` prefix, so dashboards and alerts port over.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A pool label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// Pool name.
    pub pool: String,
}

/// A result label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `error`.
    pub result: &'static str,
}

/// An error label: [`crate::Error::metric_label`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// Which kind of failure.
    pub error: &'static str,
}

/// Every metric the controller exports.
#[derive(Debug)]
pub struct Metrics {
    /// Usable addresses per pool (both families, saturating).
    pub addresses_total: Family<PoolLabel, Gauge>,
    /// Addresses in use per pool.
    pub addresses_in_use: Family<PoolLabel, Gauge>,
    /// Usable IPv4 addresses per pool.
    pub ipv4_total: Family<PoolLabel, Gauge>,
    /// IPv4 addresses in use per pool.
    pub ipv4_in_use: Family<PoolLabel, Gauge>,
    /// Usable IPv6 addresses per pool (saturating).
    pub ipv6_total: Family<PoolLabel, Gauge>,
    /// IPv6 addresses in use per pool.
    pub ipv6_in_use: Family<PoolLabel, Gauge>,
    /// Handled changes, by result.
    pub reconcile: Family<ResultLabel, Counter>,
    /// Time to decide and queue the writes for one change.
    pub reconcile_duration: Histogram,
    /// Writes to the API.
    pub updates: Counter,
    /// Failed writes to the API.
    pub update_errors: Counter,
    /// Failures (writes, watches, Events), by kind.
    pub errors: Family<ErrorLabel, Counter>,
    /// Services that could not get an address (each new reason counts once).
    pub allocation_failures: Counter<u64, AtomicU64>,
    /// 1 once pools and Services are loaded.
    pub config_loaded: Gauge,
    /// 1 on the replica that holds the lease.
    pub is_leader: Gauge,
    /// The same, under the name issue 14 gives it (`ferrolb_controller_leader`).
    pub leader: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            addresses_total: Family::default(),
            addresses_in_use: Family::default(),
            ipv4_total: Family::default(),
            ipv4_in_use: Family::default(),
            ipv6_total: Family::default(),
            ipv6_in_use: Family::default(),
            reconcile: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.000_05, 4.0, 10)),
            updates: Counter::default(),
            update_errors: Counter::default(),
            errors: Family::default(),
            allocation_failures: Counter::default(),
            config_loaded: Gauge::default(),
            is_leader: Gauge::default(),
            leader: Gauge::default(),
        };
        // The `_total` gauge names are MetalLB's; kept so existing dashboards and alerts work.
        registry.register(
            "ferrolb_allocator_addresses_total",
            "Usable addresses in the pool",
            m.addresses_total.clone(),
        );
        registry.register(
            "ferrolb_allocator_addresses_in_use_total",
            "Addresses of the pool held by Services",
            m.addresses_in_use.clone(),
        );
        registry.register(
            "ferrolb_allocator_ipv4_addresses_total",
            "Usable IPv4 addresses in the pool",
            m.ipv4_total.clone(),
        );
        registry.register(
            "ferrolb_allocator_ipv4_addresses_in_use_total",
            "IPv4 addresses of the pool held by Services",
            m.ipv4_in_use.clone(),
        );
        registry.register(
            "ferrolb_allocator_ipv6_addresses_total",
            "Usable IPv6 addresses in the pool (saturating)",
            m.ipv6_total.clone(),
        );
        registry.register(
            "ferrolb_allocator_ipv6_addresses_in_use_total",
            "IPv6 addresses of the pool held by Services",
            m.ipv6_in_use.clone(),
        );
        registry.register(
            "ferrolb_controller_reconcile",
            "Changes handled, by result",
            m.reconcile.clone(),
        );
        registry.register(
            "ferrolb_controller_reconcile_duration_seconds",
            "Time to decide one change",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "ferrolb_k8s_client_updates",
            "Writes made to the Kubernetes API",
            m.updates.clone(),
        );
        registry.register(
            "ferrolb_k8s_client_update_errors",
            "Writes to the Kubernetes API that failed",
            m.update_errors.clone(),
        );
        registry.register(
            "ferrolb_controller_errors",
            "Failed writes, watches and Events, by kind",
            m.errors.clone(),
        );
        registry.register(
            "ferrolb_controller_allocation_failures",
            "Services that could not get an address",
            m.allocation_failures.clone(),
        );
        registry.register(
            "ferrolb_controller_config_loaded",
            "1 when pools and Services are loaded",
            m.config_loaded.clone(),
        );
        registry.register(
            "ferrolb_controller_is_leader",
            "1 on the replica holding the leader lease",
            m.is_leader.clone(),
        );
        registry.register(
            "ferrolb_controller_leader",
            "1 while this replica holds a valid leader lease (0 once a renewal is overdue)",
            m.leader.clone(),
        );
        m
    }

    /// Whether this replica leads (both leader gauges).
    pub fn set_leader(&self, leading: bool) {
        let v = i64::from(leading);
        self.is_leader.set(v);
        self.leader.set(v);
    }

    /// Counts `error` under its label.
    pub fn count(&self, error: &crate::Error) {
        self.errors
            .get_or_create(&ErrorLabel {
                error: error.metric_label(),
            })
            .inc();
    }
}
