//! Membership by SWIM gossip (foca) over sealed UDP datagrams.
//!
//! - [`backoff`]: retry delays (exponential, jittered, capped).
//! - [`member`]: a speaker's identity.
//! - [`seal`]: authenticated encryption and the replay window.
//! - [`node`]: the sans-IO membership state machine.
//! - [`timing`]: the protocol's timing knobs and their defaults.

pub mod backoff;
pub mod member;
pub mod node;
pub mod seal;
pub mod sim;
pub mod timing;
pub mod udp;
