//! The test API server's own behaviour, seen through kube-rs, kubectl and raw HTTP. One test
//! binary (one link) with a module per area; a made-up CRD shows it serves any CRD it is given.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod custom;
mod fixture;
mod kubectl;
mod negotiation;
mod objects;
mod watch;
