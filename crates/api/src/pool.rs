//! `IPAddressPool`: a set of addresses the controller may hand to Services, and which Services may
//! use them. The controller reports how full each pool is in its status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;

/// The addresses of a pool and the rules for handing them out.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    shortname = "ipp",
    namespaced,
    doc = "An IPAddressPool is a set of addresses ferrolb may give to LoadBalancer Services.",
    status = "IPAddressPoolStatus",
    printcolumn = r#"{"name":"Auto Assign","type":"boolean","jsonPath":".spec.autoAssign"}"#,
    printcolumn = r#"{"name":"Avoid Buggy IPs","type":"boolean","jsonPath":".spec.avoidBuggyIPs"}"#,
    printcolumn = r#"{"name":"Addresses","type":"string","jsonPath":".spec.addresses"}"#,
    printcolumn = r#"{"name":"Assigned IPv4","type":"integer","jsonPath":".status.assignedIPv4"}"#,
    printcolumn = r#"{"name":"Assigned IPv6","type":"integer","jsonPath":".status.assignedIPv6"}"#,
    printcolumn = r#"{"name":"Available IPv4","type":"integer","jsonPath":".status.availableIPv4"}"#,
    printcolumn = r#"{"name":"Available IPv6","type":"integer","jsonPath":".status.availableIPv6"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// The addresses of the pool: each entry is a CIDR (`192.0.2.0/24`, `2001:db8::/120`) or an
    /// inclusive range of one family (`192.0.2.10-192.0.2.20`). A bare IP is not accepted: write
    /// `192.0.2.7/32`. IPv4 and IPv6 entries may be mixed for dual-stack Services.
    #[schemars(schema_with = "schema::address_list")]
    pub addresses: Vec<String>,

    /// Whether the controller may hand out addresses from this pool to Services that do not ask
    /// for it by name or by IP.
    #[serde(default = "default_true")]
    pub auto_assign: bool,

    /// Never hand out IPv4 addresses ending in `.0` or `.255`, which some old clients and routers
    /// treat as network or broadcast addresses.
    #[serde(rename = "avoidBuggyIPs", default)]
    pub avoid_buggy_ips: bool,

    /// Restricts the pool to some Services and orders it against other pools. A pool with a
    /// `serviceAllocation` is never used for a Service it does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

fn default_true() -> bool {
    true
}

/// Which Services may take addresses from a pool, and in which order pools are tried.
///
/// A Service matches when its namespace matches (`namespaces` or `namespaceSelectors`; both empty
/// means every namespace) and its labels match one of `serviceSelectors` (empty means every
/// Service).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Order among pools that match a Service: lower numbers are tried first; 0 or unset comes
    /// after every positive priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub priority: Option<i32>,

    /// Namespaces whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::name_set")]
    pub namespaces: Vec<String>,

    /// Labels of namespaces whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::selector_list")]
    pub namespace_selectors: Vec<LabelSelector>,

    /// Labels of Services that may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::selector_list")]
    pub service_selectors: Vec<LabelSelector>,
}

/// How full the pool is, and whether the controller uses it. Written by the controller only.
///
/// Counts are of distinct addresses (an IP shared by several Services counts once) and saturate at
/// the largest int64 for very large IPv6 pools.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    /// IPv4 addresses of the pool held by Services.
    #[serde(rename = "assignedIPv4", default)]
    pub assigned_ipv4: i64,
    /// IPv6 addresses of the pool held by Services.
    #[serde(rename = "assignedIPv6", default)]
    pub assigned_ipv6: i64,
    /// IPv4 addresses of the pool still free.
    #[serde(rename = "availableIPv4", default)]
    pub available_ipv4: i64,
    /// IPv6 addresses of the pool still free.
    #[serde(rename = "availableIPv6", default)]
    pub available_ipv6: i64,
    /// The `spec.addresses` the controller last accepted as valid. While the current spec is
    /// invalid (an entry that does not parse, an overlap with another pool), the controller keeps
    /// serving the Services that hold addresses from these, across restarts and leader changes,
    /// and gives out no new ones; speakers keep announcing them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_valid_addresses: Option<Vec<String>>,
    /// `Ready` (the pool is in use), `Overlapping` (it shares addresses with an older pool and is
    /// not used), `InUse` (held back from deletion while Services hold its addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::condition_list")]
    pub conditions: Vec<Condition>,
}
