//! `ServiceL2Status`: which node announces a Service's IP, and on which interfaces. Written by the
//! announcing speaker only; operators read it with `kubectl get servicel2status`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Empty: the object exists to carry its status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    plural = "servicel2statuses",
    namespaced,
    doc = "A ServiceL2Status says which node announces a Service in Layer 2 mode; written by ferrolb-speaker.",
    status = "ServiceL2StatusStatus",
    printcolumn = r#"{"name":"Allocated Node","type":"string","jsonPath":".status.node"}"#,
    printcolumn = r#"{"name":"Service Name","type":"string","jsonPath":".status.serviceName"}"#,
    printcolumn = r#"{"name":"Service Namespace","type":"string","jsonPath":".status.serviceNamespace"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ServiceL2StatusSpec {}

/// The node announcing a Service, as last written by that node's speaker.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceL2StatusStatus {
    /// Name of the announcing node.
    #[serde(default)]
    pub node: String,
    /// Name of the announced Service.
    #[serde(default)]
    pub service_name: String,
    /// Namespace of the announced Service.
    #[serde(default)]
    pub service_namespace: String,
    /// Interfaces the node answers ARP/NDP on for the Service's IPs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceInfo>,
}

/// One announcing interface.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InterfaceInfo {
    /// Interface name on the node, e.g. `eth0`.
    pub name: String,
}
