//! What a Service's status should say, whether that differs from what it says, and which Event
//! tells the operator about a change. Pure functions over plain values.

use std::net::IpAddr;

use ferrolb_api::annotations::IP_ALLOCATED_FROM_POOL;
use ferrolb_observe::events::Severity;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

use crate::convert;

/// The part of a Service the controller owns: ingress IPs and the pool annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// IPs in the Service's family order; empty means "no address".
    pub ips: Vec<IpAddr>,
    /// The pool they came from.
    pub pool: Option<String>,
}

impl Desired {
    /// No address.
    pub fn none() -> Self {
        Self::default()
    }

    /// What the Service holds now, as far as ferrolb writes it. Ingress entries without
    /// `ipMode: VIP` do not count as ours, so they are rewritten.
    pub fn observed(svc: &Service) -> Self {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        let all_vip = ingress.into_iter().flatten().all(|i| {
            i.ip_mode.as_deref() == Some("VIP") && i.hostname.is_none() && i.ports.is_none()
        });
        let mut ips = convert::status_ips(svc);
        if !all_vip {
            // Something else is there: compare unequal to anything we would write.
            ips.push(IpAddr::from([0, 0, 0, 0]));
        }
        Self {
            ips,
            pool: convert::status_pool(svc),
        }
    }

    /// The merge patch for the Service's `/status` that makes it say this. The annotation goes
    /// in the same write: kube-apiserver accepts metadata changes through a Service's status.
    pub fn status_patch(&self) -> Value {
        let ingress: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
            .collect();
        json!({
            "metadata": {"annotations": {IP_ALLOCATED_FROM_POOL.name: self.pool}},
            "status": {"loadBalancer": {"ingress": ingress}},
        })
    }
}

/// An Event to publish on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Normal or Warning.
    pub severity: Severity,
    /// PascalCase reason, e.g. `IPAllocated`.
    pub reason: &'static str,
    /// The human text.
    pub note: String,
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Event for a change of a Service's addresses, or None when nothing changed.
pub fn change_notice(before: &Desired, after: &Desired, why_cleared: &str) -> Option<Notice> {
    if before.ips == after.ips && before.pool == after.pool {
        return None;
    }
    let pool = after.pool.as_deref().unwrap_or("?");
    Some(match (before.ips.is_empty(), after.ips.is_empty()) {
        (_, true) => Notice {
            severity: Severity::Normal,
            reason: "ClearAssignment",
            note: format!("released {}: {why_cleared}", join(&before.ips)),
        },
        (true, false) => Notice {
            severity: Severity::Normal,
            reason: "IPAllocated",
            note: format!("assigned IP [{}] from pool {pool}", join(&after.ips)),
        },
        (false, false) if before.ips.iter().all(|ip| after.ips.contains(ip)) => Notice {
            severity: Severity::Normal,
            reason: "IPAllocated",
            note: format!("assigned IP [{}] from pool {pool}", join(&after.ips)),
        },
        (false, false) => Notice {
            severity: Severity::Warning,
            reason: "IPReassigned",
            note: format!(
                "IP changed from [{}] to [{}] (pool {pool})",
                join(&before.ips),
                join(&after.ips)
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(ips: &[&str], pool: &str) -> Desired {
        Desired {
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            pool: Some(pool.into()),
        }
    }

    #[test]
    fn status_patch_writes_vip_ingress_and_pool_annotation() {
        let p = d(&["192.0.2.1", "2001:db8::1"], "lan").status_patch();
        assert_eq!(
            p["status"]["loadBalancer"]["ingress"][1],
            json!({"ip": "2001:db8::1", "ipMode": "VIP"})
        );
        assert_eq!(
            p["metadata"]["annotations"]["ferrolb.io/ip-allocated-from-pool"],
            "lan"
        );
        let cleared = Desired::none().status_patch();
        assert_eq!(
            cleared["metadata"]["annotations"]["ferrolb.io/ip-allocated-from-pool"],
            Value::Null
        );
        assert_eq!(cleared["status"]["loadBalancer"]["ingress"], json!([]));
    }

    #[test]
    fn observed_ingress_without_vip_mode_differs_from_what_we_write() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        }))
        .unwrap();
        assert_ne!(Desired::observed(&svc), d(&["192.0.2.1"], "lan"));
    }

    #[test]
    fn notices_name_what_changed() {
        let none = Desired::none();
        assert_eq!(
            change_notice(&none, &d(&["192.0.2.1"], "lan"), "")
                .unwrap()
                .reason,
            "IPAllocated"
        );
        let moved =
            change_notice(&d(&["192.0.2.1"], "lan"), &d(&["192.0.2.9"], "lan"), "").unwrap();
        assert_eq!(
            (moved.reason, moved.severity),
            ("IPReassigned", Severity::Warning)
        );
        assert!(moved.note.contains("192.0.2.1") && moved.note.contains("192.0.2.9"));
        let cleared =
            change_notice(&d(&["192.0.2.1"], "lan"), &none, "no longer a LoadBalancer").unwrap();
        assert_eq!(cleared.reason, "ClearAssignment");
        assert!(change_notice(&none, &none, "").is_none());
    }
}
