//! Layer 2 announcements: which interfaces answer ([`interfaces`]).

pub mod interfaces;
