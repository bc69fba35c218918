//! The network-namespace lab as a library: a bridge, node namespaces and a client namespace on
//! one machine, with ferrolb running in them, and the tools scenarios use to break it and watch.
//!
//! One module per job:
//! - [`topology`]: namespaces, veth links, the bridge, addresses and names;
//! - [`procstat`]: CPU, memory and threads of a process;
//! - [`process`]: starting, signalling, restarting and supervising processes, their logs;
//! - [`cluster`]: [`Lab`], the one guard that owns a run (network, processes, files) and
//!   removes it on drop; bringing the whole system up;
//! - [`objects`]: typed builders for pools, advertisements, Services, EndpointSlices, Nodes;
//! - [`observe`]: what the lab shows (Service IPs, Events, who answers, who announces);
//! - [`prober`]: the client's view of an outage;
//! - [`faults`]: link cuts, gossip partitions, frozen processes;
//! - [`scrape`]: Prometheus `/metrics` pages read into samples and speaker views;
//! - [`forgery`]: crafted frames and gossip datagrams, captures and replays, junk floods;
//! - [`sweep`]: who answers ARP/NDP for thousands of IPs, from the client;
//! - [`wait`]: the one way to wait for a condition; [`binaries`]: the one way to find binaries.

pub mod apiproxy;
pub mod binaries;
pub mod cluster;
pub mod faults;
pub mod forgery;
pub mod objects;
pub mod observe;
pub mod prober;
pub mod process;
pub mod procstat;
pub mod scenarios;
pub mod scrape;
pub mod sweep;
pub mod topology;
pub mod wait;
pub mod witness;

pub use cluster::Lab;

/// Registers ferrolb's CRDs with a test API server, as `kubectl apply -f config/crd/` would.
///
/// # Errors
/// When a CRD cannot be serialised or is refused.
pub fn register_ferrolb_crds(server: &test_apiserver::ApiServer) -> anyhow::Result<()> {
    let crds = ferrolb_api::crd::all()
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    server.register_crds(crds)
}
