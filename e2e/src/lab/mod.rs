//! The network-namespace lab: a bridge, node namespaces and a client namespace on one machine,
//! with ferrolb running in them.

pub mod cluster;
pub mod failure;
pub mod netns;
