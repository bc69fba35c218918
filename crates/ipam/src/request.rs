//! What the controller asks of the allocator for one Service, as plain data filled at the edge
//! from the Service, its Namespace and its annotations.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::range::Family;

/// A transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// One Service port, as far as IP sharing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The protocol.
    pub protocol: Protocol,
    /// The port number.
    pub port: u16,
}

impl Port {
    /// A TCP port.
    #[must_use]
    pub fn tcp(port: u16) -> Self {
        Self {
            protocol: Protocol::Tcp,
            port,
        }
    }

    /// A UDP port.
    #[must_use]
    pub fn udp(port: u16) -> Self {
        Self {
            protocol: Protocol::Udp,
            port,
        }
    }
}

/// The Service's IP families (`spec.ipFamilyPolicy` with `spec.ipFamilies` in order).
///
/// In the dual-stack variants the first family is the preferred one; the second is taken to be
/// the other family whatever is written there, because a Service has at most one IP per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyPolicy {
    /// One IP of this family.
    SingleStack(Family),
    /// One IP of each family when possible, else one.
    PreferDualStack(Family, Family),
    /// One IP of each family, or none.
    RequireDualStack(Family, Family),
}

impl FamilyPolicy {
    /// The family the Service lists first.
    #[must_use]
    pub fn first(self) -> Family {
        match self {
            Self::SingleStack(f) | Self::PreferDualStack(f, _) | Self::RequireDualStack(f, _) => f,
        }
    }

    /// Whether the Service may hold an IP of `family`.
    #[must_use]
    pub fn allows(self, family: Family) -> bool {
        match self {
            Self::SingleStack(f) => f == family,
            Self::PreferDualStack(..) | Self::RequireDualStack(..) => true,
        }
    }

    /// Whether the Service wants one IP of each family.
    #[must_use]
    pub fn is_dual(self) -> bool {
        !matches!(self, Self::SingleStack(_))
    }
}

impl fmt::Display for FamilyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.first();
        match self {
            Self::SingleStack(_) => write!(f, "SingleStack {first}"),
            Self::PreferDualStack(..) => write!(f, "PreferDualStack {first},{}", first.other()),
            Self::RequireDualStack(..) => write!(f, "RequireDualStack {first},{}", first.other()),
        }
    }
}

/// Addresses the Service asks for explicitly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestedIps {
    /// From the `loadBalancerIPs` annotation, in the order written.
    pub from_annotation: Vec<IpAddr>,
    /// From the deprecated `spec.loadBalancerIP`.
    pub from_spec: Option<IpAddr>,
}

/// Everything the allocator needs to know about one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    /// `namespace/name`, unique per Service.
    pub key: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's labels (for pools' `serviceSelectors`).
    pub labels: BTreeMap<String, String>,
    /// The namespace's labels (for pools' `namespaceSelectors`).
    pub namespace_labels: BTreeMap<String, String>,
    /// The Service's ports.
    pub ports: Vec<Port>,
    /// The `allow-shared-ip` annotation; an empty string means none.
    pub sharing_key: Option<String>,
    /// For `externalTrafficPolicy: Local`, the Service selector as a canonical string (Services
    /// sharing an IP must select the same backends); `None` otherwise.
    pub backend_key: Option<String>,
    /// The IP families wanted, in the Service's order.
    pub families: FamilyPolicy,
    /// Addresses asked for explicitly.
    pub requested_ips: RequestedIps,
    /// The `address-pool` annotation.
    pub requested_pool: Option<String>,
}

impl ServiceRequest {
    /// A single-stack IPv4 Service `namespace/name` with no ports, labels or requests; refine it
    /// with the builder methods.
    #[must_use]
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            key: format!("{namespace}/{name}"),
            namespace: namespace.to_owned(),
            labels: BTreeMap::new(),
            namespace_labels: BTreeMap::new(),
            ports: Vec::new(),
            sharing_key: None,
            backend_key: None,
            families: FamilyPolicy::SingleStack(Family::V4),
            requested_ips: RequestedIps::default(),
            requested_pool: None,
        }
    }

    /// The sharing key, with an empty annotation read as none.
    #[must_use]
    pub fn sharing_key(&self) -> Option<&str> {
        self.sharing_key.as_deref().filter(|k| !k.is_empty())
    }

    /// Adds `ip` to the `loadBalancerIPs` annotation.
    #[must_use]
    pub fn requesting(mut self, ip: IpAddr) -> Self {
        self.requested_ips.from_annotation.push(ip);
        self
    }

    /// Sets `spec.loadBalancerIP`.
    #[must_use]
    pub fn requesting_in_spec(mut self, ip: IpAddr) -> Self {
        self.requested_ips.from_spec = Some(ip);
        self
    }

    /// Sets the `address-pool` annotation.
    #[must_use]
    pub fn in_pool(mut self, pool: &str) -> Self {
        self.requested_pool = Some(pool.to_owned());
        self
    }

    /// Sets the IP family policy.
    #[must_use]
    pub fn families(mut self, families: FamilyPolicy) -> Self {
        self.families = families;
        self
    }

    /// Replaces the ports.
    #[must_use]
    pub fn ports(mut self, ports: &[Port]) -> Self {
        self.ports = ports.to_vec();
        self
    }

    /// Sets the `allow-shared-ip` key.
    #[must_use]
    pub fn sharing(mut self, key: &str) -> Self {
        self.sharing_key = Some(key.to_owned());
        self
    }

    /// Sets the backend key (`externalTrafficPolicy: Local`).
    #[must_use]
    pub fn backend(mut self, key: &str) -> Self {
        self.backend_key = Some(key.to_owned());
        self
    }

    /// Adds a Service label.
    #[must_use]
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a label of the Service's namespace.
    #[must_use]
    pub fn namespace_label(mut self, key: &str, value: &str) -> Self {
        self.namespace_labels
            .insert(key.to_owned(), value.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sharing_annotation_means_no_sharing() {
        assert_eq!(
            ServiceRequest::new("ns", "a").sharing("").sharing_key(),
            None
        );
        assert_eq!(
            ServiceRequest::new("ns", "a").sharing("k").sharing_key(),
            Some("k")
        );
    }

    #[test]
    fn dual_stack_policies_allow_both_families_single_stack_one() {
        let single = FamilyPolicy::SingleStack(Family::V6);
        assert!(single.allows(Family::V6) && !single.allows(Family::V4));
        let prefer = FamilyPolicy::PreferDualStack(Family::V6, Family::V4);
        assert!(prefer.allows(Family::V4) && prefer.is_dual() && prefer.first() == Family::V6);
        assert_eq!(prefer.to_string(), "PreferDualStack IPv6,IPv4");
    }

    #[test]
    fn builder_keys_the_service_by_namespace_and_name() {
        let r = ServiceRequest::new("shop", "web")
            .label("app", "web")
            .in_pool("p");
        assert_eq!(r.key, "shop/web");
        assert_eq!(r.namespace, "shop");
        assert_eq!(r.requested_pool.as_deref(), Some("p"));
        assert_eq!(r.labels.get("app").map(String::as_str), Some("web"));
    }
}
