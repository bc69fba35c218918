//! ferrolb-speaker: every node's agent. It agrees with the other speakers, by SWIM gossip, which
//! of them are alive; computes from that and the cluster's objects which node owns each Service
//! IP ([`election`]); and turns ownership changes into announcements ([`announcer`]).

pub mod announcer;
pub mod election;
pub mod gossip;
pub mod inputs;
