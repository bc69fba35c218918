//! Layer 2 announcements: which interfaces answer ([`interfaces`]) and the raw-socket responder
//! ([`responder`]).

pub mod interfaces;
pub mod responder;
