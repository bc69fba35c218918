//! Layer 2 announcements: which interfaces answer ([`interfaces`]), the raw-socket responder
//! ([`responder`]) and what it does per gained IP ([`claim`]), link change notices
//! ([`linkwatch`]) and the kube-proxy IPVS check ([`ipvs`]).

pub mod claim;
pub mod interfaces;
pub mod ipvs;
pub mod linkwatch;
pub mod responder;
