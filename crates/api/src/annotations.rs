//! Names of the annotations, labels and finalizers ferrolb reads and writes.
//!
//! For a smooth move from MetalLB, each Service annotation ferrolb reads is also recognised under
//! its `metallb.io/` and legacy `metallb.universe.tf/` spelling. When several spellings are set,
//! ferrolb's own wins, so an operator can override a leftover MetalLB annotation.

use std::collections::BTreeMap;

/// An annotation ferrolb reads, with the MetalLB spellings it also accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotation {
    /// ferrolb's own name, the one it writes and documents.
    pub name: &'static str,
    /// Other accepted names, in order of precedence after `name`.
    pub aliases: [&'static str; 2],
}

impl Annotation {
    const fn with_metallb_aliases(
        name: &'static str,
        metallb: &'static str,
        legacy: &'static str,
    ) -> Self {
        Self {
            name,
            aliases: [metallb, legacy],
        }
    }

    /// The value under the first spelling that is set (ours first), with the spelling found.
    pub fn lookup<'a>(
        &self,
        annotations: &'a BTreeMap<String, String>,
    ) -> Option<(&'static str, &'a str)> {
        std::iter::once(self.name)
            .chain(self.aliases)
            .find_map(|key| annotations.get(key).map(|v| (key, v.as_str())))
    }

    /// The value under the first spelling that is set, ours first.
    pub fn get<'a>(&self, annotations: &'a BTreeMap<String, String>) -> Option<&'a str> {
        self.lookup(annotations).map(|(_, value)| value)
    }
}

/// Requested addresses, comma separated, at most one per family.
pub const LOAD_BALANCER_IPS: Annotation = Annotation::with_metallb_aliases(
    "ferrolb.io/loadBalancerIPs",
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
);

/// Name of the pool to allocate from.
pub const ADDRESS_POOL: Annotation = Annotation::with_metallb_aliases(
    "ferrolb.io/address-pool",
    "metallb.io/address-pool",
    "metallb.universe.tf/address-pool",
);

/// Sharing key: Services with the same key may share an IP when their ports do not collide.
pub const ALLOW_SHARED_IP: Annotation = Annotation::with_metallb_aliases(
    "ferrolb.io/allow-shared-ip",
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
);

/// Written by the controller: the pool the Service's IPs came from. Only ferrolb's spelling is
/// written; the aliases let `lookup` read what MetalLB left behind.
pub const IP_ALLOCATED_FROM_POOL: Annotation = Annotation::with_metallb_aliases(
    "ferrolb.io/ip-allocated-from-pool",
    "metallb.io/ip-allocated-from-pool",
    "metallb.universe.tf/ip-allocated-from-pool",
);

/// Node label that keeps a node from announcing any Service (a Kubernetes well-known label).
pub const EXCLUDE_FROM_EXTERNAL_LB_LABEL: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// Label on a `ServiceL2Status`: the Service's name.
pub const SERVICE_NAME_LABEL: &str = "ferrolb.io/service-name";
/// Label on a `ServiceL2Status`: the Service's namespace.
pub const SERVICE_NAMESPACE_LABEL: &str = "ferrolb.io/service-namespace";
/// Label on a `ServiceL2Status`: the announcing node.
pub const NODE_LABEL: &str = "ferrolb.io/node";

/// Finalizer that holds back deleting a pool while Services still hold its addresses.
pub const POOL_FINALIZER: &str = "ferrolb.io/pool-protection";

/// Server-side apply field manager of the controller.
pub const CONTROLLER_FIELD_MANAGER: &str = "ferrolb-controller";
/// Server-side apply field manager of the speakers.
pub const SPEAKER_FIELD_MANAGER: &str = "ferrolb-speaker";

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn metallb_spellings_are_read_as_aliases() {
        let a = annotations(&[("metallb.universe.tf/address-pool", "legacy")]);
        assert_eq!(ADDRESS_POOL.get(&a), Some("legacy"));
        let a = annotations(&[("metallb.io/allow-shared-ip", "key")]);
        assert_eq!(
            ALLOW_SHARED_IP.lookup(&a),
            Some(("metallb.io/allow-shared-ip", "key"))
        );
    }

    #[test]
    fn ferrolb_spelling_wins_over_every_alias() {
        let a = annotations(&[
            ("metallb.universe.tf/loadBalancerIPs", "192.0.2.3"),
            ("metallb.io/loadBalancerIPs", "192.0.2.2"),
            ("ferrolb.io/loadBalancerIPs", "192.0.2.1"),
        ]);
        assert_eq!(LOAD_BALANCER_IPS.get(&a), Some("192.0.2.1"));
    }

    #[test]
    fn newer_metallb_spelling_wins_over_legacy() {
        let a = annotations(&[
            ("metallb.universe.tf/address-pool", "old"),
            ("metallb.io/address-pool", "new"),
        ]);
        assert_eq!(ADDRESS_POOL.get(&a), Some("new"));
    }

    #[test]
    fn unset_annotation_is_none() {
        assert_eq!(IP_ALLOCATED_FROM_POOL.get(&BTreeMap::new()), None);
    }
}
