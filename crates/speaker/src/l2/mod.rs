//! Layer 2 announcements: which interfaces answer ([`interfaces`]), the raw-socket responder
//! ([`responder`]), what one link shares between its threads ([`link`]), what it does per
//! gained IP ([`claim`]) and how all claims of a link run in one loop ([`claim_set`],
//! [`link_loop`]), link change notices
//! ([`linkwatch`]), the kube-proxy IPVS check ([`ipvs`]), the IPv6 solicited-node group
//! memberships, counted per link ([`groups`]), and the deadline that keeps a thawed speaker
//! from answering on stale ownership ([`freshness`]).

pub mod claim;
pub mod claim_set;
pub mod freshness;
pub mod groups;
pub mod interfaces;
pub mod ipvs;
pub mod link;
pub mod link_loop;
pub mod linkwatch;
pub mod responder;
