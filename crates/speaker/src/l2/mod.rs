//! Layer 2 announcements: which interfaces answer ([`interfaces`]), the raw-socket responder
//! ([`responder`]) and what it does per gained IP ([`claim`]), link change notices
//! ([`linkwatch`]), the kube-proxy IPVS check ([`ipvs`]), the IPv6 solicited-node group
//! memberships, counted per link ([`groups`]), and the deadline that keeps a thawed speaker
//! from answering on stale ownership ([`freshness`]).

pub mod claim;
pub mod freshness;
pub mod groups;
pub mod interfaces;
pub mod ipvs;
pub mod linkwatch;
pub mod responder;
