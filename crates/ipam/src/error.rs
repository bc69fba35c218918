//! Why the allocator refused a request. The texts are shown to users (Events, pool status), so
//! each names the IP or pool concerned and what to change.

use std::fmt;
use std::net::IpAddr;

use crate::pool::Ineligible;
use crate::range::Family;
use crate::request::{FamilyPolicy, Protocol};
use crate::sharing::Conflict;

/// What a Service needed when no pool could give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wanted {
    /// One address of this family.
    One(Family),
    /// One address of each family, from the same pool (`RequireDualStack`).
    Both,
    /// An address of either family (`PreferDualStack`).
    Either,
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(family) => write!(f, "{family} address"),
            Self::Both => f.write_str("pair of IPv4 and IPv6 addresses"),
            Self::Either => f.write_str("IPv4 or IPv6 address"),
        }
    }
}

/// Why a Service got no (or not the asked-for) addresses. On any error the allocator's state is
/// unchanged: a Service keeps what it held before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// A requested IP lies in no accepted pool.
    #[error("requested IP {ip} is not in any address pool")]
    NotInAnyPool {
        /// The IP.
        ip: IpAddr,
    },
    /// The pool's `serviceAllocation` does not admit the Service.
    #[error("{}does not admit this service: {reason}", not_admitting(*.ip, .pool))]
    PoolNotAllowed {
        /// The requested IP, when the pool was reached through one.
        ip: Option<IpAddr>,
        /// The pool.
        pool: String,
        /// Which part of `serviceAllocation` does not match.
        reason: Ineligible,
    },
    /// The requested pool does not exist (or was rejected because it overlaps an earlier one).
    #[error("address pool {pool:?} does not exist or was rejected")]
    UnknownPool {
        /// The name asked for.
        pool: String,
    },
    /// A requested IP lies in another pool than the one the Service names.
    #[error("requested IP {ip} is in pool {pool:?}, not in the requested pool {requested:?}")]
    NotInRequestedPool {
        /// The IP.
        ip: IpAddr,
        /// The pool holding it.
        pool: String,
        /// The pool the Service names.
        requested: String,
    },
    /// A requested (or restored) IP's family is not one the Service uses.
    #[error("IP {ip} does not fit the service's IP families ({policy})")]
    WrongFamily {
        /// The IP.
        ip: IpAddr,
        /// The Service's family policy.
        policy: FamilyPolicy,
    },
    /// The IP ends in `.0` or `.255` and its pool avoids such addresses.
    #[error("IP {ip} ends in .0 or .255, which pool {pool:?} never hands out (avoidBuggyIPs)")]
    BuggyIp {
        /// The IP.
        ip: IpAddr,
        /// Its pool.
        pool: String,
    },
    /// Both the annotation and `spec.loadBalancerIP` are set.
    #[error(
        "both the loadBalancerIPs annotation and spec.loadBalancerIP are set: use only the annotation"
    )]
    BothAnnotationAndSpec,
    /// Two addresses of one family were given.
    #[error("two {family} addresses given ({first} and {second}): at most one per family")]
    TwoOfOneFamily {
        /// The family.
        family: Family,
        /// The first address of that family.
        first: IpAddr,
        /// The second.
        second: IpAddr,
    },
    /// `RequireDualStack` with requested IPs of one family only.
    #[error(
        "RequireDualStack needs a requested IP of each family, but no {missing} address is given"
    )]
    DualStackNeedsBoth {
        /// The family without a requested IP.
        missing: Family,
    },
    /// The two addresses lie in different pools.
    #[error(
        "IPs {ip1} (pool {pool1:?}) and {ip2} (pool {pool2:?}) are in different pools: both must come from one pool"
    )]
    DifferentPools {
        /// The first IP.
        ip1: IpAddr,
        /// Its pool.
        pool1: String,
        /// The second IP.
        ip2: IpAddr,
        /// Its pool.
        pool2: String,
    },
    /// Another Service holds the IP and does not share it with this one.
    #[error(
        "IP {ip} is in use by {holder}, which does not share it (allow-shared-ip keys or Local traffic policy selectors differ)"
    )]
    IpInUse {
        /// The IP.
        ip: IpAddr,
        /// A Service holding it.
        holder: String,
    },
    /// Another Service uses the same protocol and port on the IP.
    #[error("IP {ip} already serves {protocol}/{port} for {holder}")]
    PortInUse {
        /// The IP.
        ip: IpAddr,
        /// The protocol.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The Service using it.
        holder: String,
    },
    /// The pool is being deleted: it keeps the IPs Services hold in it but gives out no new one
    /// (when named in the request, holding a requested IP the Service does not hold already, or
    /// needed to complete a dual-stack pair).
    #[error("pool {pool:?} is being deleted and gives out no new addresses")]
    PoolDraining {
        /// The pool.
        pool: String,
    },
    /// The requested pool has no free address of the needed family.
    #[error("pool {pool:?} has no free {family}")]
    PoolExhausted {
        /// The pool.
        pool: String,
        /// What was needed.
        family: Wanted,
    },
    /// The requested pool has no addresses of the needed family at all.
    #[error("pool {pool:?} offers no {family} at all")]
    FamilyNotInPool {
        /// The pool.
        pool: String,
        /// What was needed.
        family: Wanted,
    },
    /// Every candidate pool is full.
    #[error("no free {family} in the pools tried ({}): add addresses to one of them", pools.join(", "))]
    NoAddressAvailable {
        /// What was needed.
        family: Wanted,
        /// The pools tried, in order.
        pools: Vec<String>,
    },
    /// No autoAssign pool admitting the Service has the needed family (pools being deleted
    /// are not candidates).
    #[error("no autoAssign address pool admitting this service offers any {family}")]
    NoEligiblePool {
        /// What was needed.
        family: Wanted,
    },
    /// `restore` was given no IPs.
    #[error("nothing to restore: no IPs given")]
    NoIpsToRestore,
}

fn not_admitting(ip: Option<IpAddr>, pool: &str) -> String {
    match ip {
        Some(ip) => format!("requested IP {ip} is in pool {pool:?}, which "),
        None => format!("pool {pool:?} "),
    }
}

impl From<Conflict> for AllocError {
    fn from(c: Conflict) -> Self {
        match c {
            Conflict::IpInUse { ip, holder } => Self::IpInUse { ip, holder },
            Conflict::PortInUse {
                ip,
                protocol,
                port,
                holder,
            } => Self::PortInUse {
                ip,
                protocol,
                port,
                holder,
            },
        }
    }
}
