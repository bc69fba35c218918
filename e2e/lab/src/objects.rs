//! Cluster objects for the lab, built with types instead of YAML strings: pools,
//! advertisements, Services, EndpointSlices, and the Nodes and speaker Pods a kubelet would
//! register. Each builder gives the JSON object kubectl applies ([`Object::to_value`]);
//! [`list`] wraps several in a `v1/List` for one `kubectl apply`.
//!
//! `svc("web").ipv4_only().local()` reads as the Service it makes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::topology::{node_ip, node_ipv6, node_name};

/// The namespace ferrolb runs in, in the lab.
pub const SYSTEM_NAMESPACE: &str = "ferrolb-system";
/// Service IPs handed out in the lab (on the nodes' link, so clients ARP for them).
pub const POOL_V4: &str = "192.0.2.192/27";
/// IPv6 Service IPs.
pub const POOL_V6: &str = "2001:db8::c0/123";

/// Anything the lab can apply.
pub trait Object {
    /// The object as kubectl takes it.
    fn to_value(&self) -> Value;
}

impl Object for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

/// Several objects as one `v1/List` (what `kubectl apply -f -` takes at once).
pub fn list(objects: &[&dyn Object]) -> Value {
    let items: Vec<Value> = objects.iter().map(|o| o.to_value()).collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// An `IPAddressPool` in the system namespace.
#[derive(Debug, Clone)]
pub struct Pool {
    name: String,
    addresses: Vec<String>,
    auto_assign: Option<bool>,
}

/// Pool `name` with no addresses yet.
pub fn pool(name: &str) -> Pool {
    Pool {
        name: name.to_owned(),
        addresses: Vec::new(),
        auto_assign: None,
    }
}

impl Pool {
    /// Adds ranges (CIDRs or `first-last`).
    #[must_use]
    pub fn addresses(mut self, ranges: &[&str]) -> Self {
        self.addresses
            .extend(ranges.iter().map(|r| (*r).to_owned()));
        self
    }

    /// Only Services that ask for this pool get its addresses.
    #[must_use]
    pub fn on_request_only(mut self) -> Self {
        self.auto_assign = Some(false);
        self
    }
}

impl Object for Pool {
    fn to_value(&self) -> Value {
        let mut spec = json!({"addresses": self.addresses});
        if let Some(auto) = self.auto_assign {
            spec["autoAssign"] = json!(auto);
        }
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": self.name, "namespace": SYSTEM_NAMESPACE},
            "spec": spec,
        })
    }
}

/// An `L2Advertisement` in the system namespace; with no pools named it advertises every pool.
#[derive(Debug, Clone)]
pub struct L2Advertisement {
    name: String,
    pools: Vec<String>,
    interfaces: Vec<String>,
}

/// Advertisement `name` of every pool, on every node.
pub fn l2_advertisement(name: &str) -> L2Advertisement {
    L2Advertisement {
        name: name.to_owned(),
        pools: Vec::new(),
        interfaces: Vec::new(),
    }
}

impl L2Advertisement {
    /// Advertises these pools only.
    #[must_use]
    pub fn pools(mut self, pools: &[&str]) -> Self {
        self.pools.extend(pools.iter().map(|p| (*p).to_owned()));
        self
    }

    /// Announces on these interfaces only.
    #[must_use]
    pub fn interfaces(mut self, interfaces: &[&str]) -> Self {
        self.interfaces
            .extend(interfaces.iter().map(|i| (*i).to_owned()));
        self
    }
}

impl Object for L2Advertisement {
    fn to_value(&self) -> Value {
        let mut spec = json!({});
        if !self.pools.is_empty() {
            spec["ipAddressPools"] = json!(self.pools);
        }
        if !self.interfaces.is_empty() {
            spec["interfaces"] = json!(self.interfaces);
        }
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": self.name, "namespace": SYSTEM_NAMESPACE},
            "spec": spec,
        })
    }
}

/// The lab's pool (both families, routed locally on every node) and an advertisement for it.
pub fn lab_pool() -> [Value; 2] {
    [
        pool("lab").addresses(&[POOL_V4, POOL_V6]).to_value(),
        l2_advertisement("lab").to_value(),
    ]
}

/// A `type: LoadBalancer` Service serving port 80.
#[derive(Debug, Clone)]
pub struct Service {
    name: String,
    namespace: String,
    annotations: BTreeMap<String, String>,
    spec: Value,
}

/// Service `default/name` selecting pods `app: name`, port 80, the cluster's default family
/// policy.
pub fn svc(name: &str) -> Service {
    Service {
        name: name.to_owned(),
        namespace: "default".to_owned(),
        annotations: BTreeMap::new(),
        spec: json!({"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80}]}),
    }
}

impl Service {
    /// In namespace `ns`.
    #[must_use]
    pub fn namespace(mut self, ns: &str) -> Self {
        ns.clone_into(&mut self.namespace);
        self
    }

    /// Single-stack IPv4.
    #[must_use]
    pub fn ipv4_only(mut self) -> Self {
        self.spec["ipFamilyPolicy"] = json!("SingleStack");
        self.spec["ipFamilies"] = json!(["IPv4"]);
        self
    }

    /// Single-stack IPv6.
    #[must_use]
    pub fn ipv6_only(mut self) -> Self {
        self.spec["ipFamilyPolicy"] = json!("SingleStack");
        self.spec["ipFamilies"] = json!(["IPv6"]);
        self
    }

    /// Both families, IPv4 first.
    #[must_use]
    pub fn dual_stack(mut self) -> Self {
        self.spec["ipFamilyPolicy"] = json!("RequireDualStack");
        self.spec["ipFamilies"] = json!(["IPv4", "IPv6"]);
        self
    }

    /// `externalTrafficPolicy: Local`.
    #[must_use]
    pub fn local(mut self) -> Self {
        self.spec["externalTrafficPolicy"] = json!("Local");
        self
    }

    /// Serves `port` instead of 80.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.spec["ports"] = json!([{"port": port}]);
        self
    }

    /// Requests these IPs (annotation `ferrolb.io/loadBalancerIPs`).
    #[must_use]
    pub fn requesting_ips(self, ips: &[&str]) -> Self {
        self.annotation("ferrolb.io/loadBalancerIPs", &ips.join(","))
    }

    /// Shares its IPs with Services of the same `key` (annotation `ferrolb.io/allow-shared-ip`).
    #[must_use]
    pub fn sharing(self, key: &str) -> Self {
        self.annotation("ferrolb.io/allow-shared-ip", key)
    }

    /// `spec.loadBalancerIP`.
    #[must_use]
    pub fn requesting(mut self, ip: &str) -> Self {
        self.spec["loadBalancerIP"] = json!(ip);
        self
    }

    /// Allocate from pool `pool` (annotation `ferrolb.io/address-pool`).
    #[must_use]
    pub fn from_pool(self, pool: &str) -> Self {
        self.annotation("ferrolb.io/address-pool", pool)
    }

    /// Any annotation.
    #[must_use]
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }
}

impl Object for Service {
    fn to_value(&self) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.name, "namespace": self.namespace, "annotations": self.annotations},
            "spec": self.spec,
        })
    }
}

/// The EndpointSlice of a Service, with the lab's backends (one per node, port 80) as endpoints:
/// the lab has no endpoints controller, so tests play that part.
#[derive(Debug, Clone)]
pub struct EndpointSlice {
    service: String,
    namespace: String,
    /// (node, ready, serving).
    endpoints: Vec<(u8, bool, bool)>,
}

/// The slice of Service `default/service`, no endpoints yet.
pub fn endpoints(service: &str) -> EndpointSlice {
    EndpointSlice {
        service: service.to_owned(),
        namespace: "default".to_owned(),
        endpoints: Vec::new(),
    }
}

impl EndpointSlice {
    /// In namespace `ns`.
    #[must_use]
    pub fn namespace(mut self, ns: &str) -> Self {
        ns.clone_into(&mut self.namespace);
        self
    }

    /// A ready, serving endpoint on each of nodes 1..=`nodes`.
    #[must_use]
    pub fn on_every_node(mut self, nodes: u8) -> Self {
        self.endpoints.extend((1..=nodes).map(|n| (n, true, true)));
        self
    }

    /// An endpoint on node `node` with these conditions.
    #[must_use]
    pub fn on(mut self, node: u8, ready: bool, serving: bool) -> Self {
        self.endpoints.push((node, ready, serving));
        self
    }
}

impl Object for EndpointSlice {
    fn to_value(&self) -> Value {
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|(node, ready, serving)| {
                json!({
                    "addresses": [node_ip(*node)], "nodeName": node_name(*node),
                    "conditions": {"ready": ready, "serving": serving, "terminating": false},
                })
            })
            .collect();
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-lab", self.service), "namespace": self.namespace,
                "labels": {"kubernetes.io/service-name": self.service},
            },
            "addressType": "IPv4",
            "ports": [{"port": 80, "protocol": "TCP"}],
            "endpoints": endpoints,
        })
    }
}

/// A namespace.
pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// Kubernetes' name for this machine's architecture (`GOARCH`), as the kubelet labels it.
fn kube_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Node `node` as its kubelet registers it: the well-known labels (status goes separately, see
/// [`node_status`]).
pub fn node(node: u8) -> Value {
    let name = node_name(node);
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": kube_arch(),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": kube_arch(),
            "node.kubernetes.io/instance-type": "ferrolb-lab",
        }},
    })
}

/// The status a kubelet writes for node `node`: its lab addresses (InternalIP of each family,
/// Hostname) and a `Ready` condition that is True.
pub fn node_status(node: u8) -> Value {
    let name = node_name(node);
    let now = now();
    json!({"status": {
        "addresses": [
            {"type": "InternalIP", "address": node_ip(node)},
            {"type": "InternalIP", "address": node_ipv6(node)},
            {"type": "Hostname", "address": name},
        ],
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "nodeInfo": {"operatingSystem": "linux", "architecture": kube_arch()},
    }})
}

/// The speaker Pod of node `node` (host network, so its IP is the node's).
pub fn speaker_pod(node: u8) -> Value {
    let name = node_name(node);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("speaker-{name}"), "namespace": SYSTEM_NAMESPACE, "labels": {
            "app.kubernetes.io/name": "ferrolb", "app.kubernetes.io/component": "speaker",
        }},
        "spec": {"nodeName": name, "hostNetwork": true,
                 "containers": [{"name": "speaker", "image": "ferrolb-speaker"}]},
    })
}

/// The status the kubelet writes for a running, ready speaker Pod of node `node`.
pub fn speaker_pod_status(node: u8) -> Value {
    let ip = node_ip(node);
    json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": ip,
        "conditions": [{"type": "Ready", "status": "True"}],
    }})
}

/// Now, to the second, as Kubernetes writes condition times.
fn now() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Second).unwrap_or(now).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_reads_as_it_is_built() {
        let v = svc("web").ipv4_only().local().from_pool("small").to_value();
        assert_eq!(v["spec"]["type"], "LoadBalancer");
        assert_eq!(v["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(v["spec"]["externalTrafficPolicy"], "Local");
        assert_eq!(
            v["metadata"]["annotations"]["ferrolb.io/address-pool"],
            "small"
        );
    }

    #[test]
    fn an_endpoint_slice_names_each_nodes_backend() {
        let v = endpoints("web").on(2, true, false).to_value();
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/service-name"], "web");
        assert_eq!(v["endpoints"][0]["addresses"], json!(["192.0.2.12"]));
        assert_eq!(v["endpoints"][0]["nodeName"], "node-2");
        assert_eq!(v["endpoints"][0]["conditions"]["serving"], false);
    }

    #[test]
    fn a_node_carries_what_a_kubelet_writes() {
        let n = node(1);
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "node-1");
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/os"], "linux");
        let s = node_status(1);
        assert_eq!(s["status"]["addresses"][0]["address"], "192.0.2.11");
        assert_eq!(s["status"]["conditions"][0]["type"], "Ready");
        let time = s["status"]["conditions"][0]["lastTransitionTime"]
            .as_str()
            .unwrap_or_default();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.starts_with("20"),
            "{time}"
        );
    }

    #[test]
    fn a_list_holds_every_object() {
        let l = list(&[&pool("p").addresses(&[POOL_V4]), &l2_advertisement("a")]);
        assert_eq!(l["items"][0]["spec"]["addresses"], json!([POOL_V4]));
        assert_eq!(l["items"][1]["kind"], "L2Advertisement");
    }
}
