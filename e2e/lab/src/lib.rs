//! The network-namespace lab: a bridge, node namespaces and a client namespace on one machine,
//! with ferrolb running in them.

pub mod binaries;
pub mod cluster;
pub mod failure;
pub mod netns;
pub mod wait;

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
