//! ferrolb's Kubernetes API: the custom resources operators write (`IPAddressPool`,
//! `L2Advertisement`), the status-only `ServiceL2Status` the speakers write, and the names of the
//! annotations and labels ferrolb reads and writes on Services.
//!
//! Everything the apiserver can check on its own lives in the generated CRD schema (OpenAPI
//! constraints and CEL `x-kubernetes-validations`), so a malformed object is rejected at `kubectl
//! apply` time with a message that names the field. What needs more than one object (pools that
//! overlap each other, a pool that no Service may use) is left to the controller, which reports it
//! on the pool's status conditions and as Events.
//!
//! The spec fields have the same names and meanings as MetalLB's `metallb.io/v1beta1`, so a MetalLB
//! manifest converts by changing its `apiVersion`.
//!
//! [`crd`] turns the types into the YAML that `crdgen` writes to `config/crd/`.

pub mod annotations;
pub mod crd;
pub mod l2advertisement;
pub mod pool;
mod schema;
pub mod servicel2status;

pub use l2advertisement::{L2Advertisement, L2AdvertisementSpec};
pub use pool::{IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation};
pub use servicel2status::{
    InterfaceInfo, ServiceL2Status, ServiceL2StatusSpec, ServiceL2StatusStatus,
};

/// The API group of every ferrolb custom resource.
pub const GROUP: &str = "ferrolb.io";
/// The one served (and stored) version of the ferrolb API.
pub const VERSION: &str = "v1beta1";
