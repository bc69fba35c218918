//! `L2Advertisement`: which pools are announced in Layer 2 mode, from which nodes, on which
//! interfaces.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;

/// Announce the addresses of some pools with ARP (IPv4) and NDP (IPv6).
///
/// With both `ipAddressPools` and `ipAddressPoolSelectors` empty it applies to every pool; with
/// `nodeSelectors` empty every node may announce; with `interfaces` empty the speaker picks the
/// node's suitable interfaces itself.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    shortname = "l2adv",
    namespaced,
    doc = "An L2Advertisement announces the addresses of some pools with ARP and NDP from selected nodes.",
    status = "L2AdvertisementStatus",
    printcolumn = r#"{"name":"IPAddressPools","type":"string","jsonPath":".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name":"IPAddressPool Selectors","type":"string","jsonPath":".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name":"Interfaces","type":"string","jsonPath":".spec.interfaces"}"#,
    printcolumn = r#"{"name":"Node Selectors","type":"string","jsonPath":".spec.nodeSelectors","priority":10}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Names of the pools to announce.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::name_set")]
    pub ip_address_pools: Vec<String>,

    /// Labels of the pools to announce (in addition to `ipAddressPools`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::selector_list")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,

    /// Labels of the nodes that may announce; empty means every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::selector_list")]
    pub node_selectors: Vec<LabelSelector>,

    /// Interfaces to announce on; empty means every suitable interface of the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::interface_set")]
    pub interfaces: Vec<String>,

    /// Labels of the Services to announce; empty means every Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::selector_list")]
    pub service_selectors: Vec<LabelSelector>,
}

/// Problems the speakers found with the advertisement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementStatus {
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::condition_list")]
    pub conditions: Vec<Condition>,
}
