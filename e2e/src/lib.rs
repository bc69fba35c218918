//! ferrolb's whole-system test bed.
//!
//! - [`apiserver`]: a Kubernetes API server stand-in, in memory, that kube-rs and kubectl talk to
//!   unchanged. It implements the parts of kube-apiserver's behaviour ferrolb relies on (watch
//!   semantics, optimistic concurrency, subresources, patches, CRD validation, Service defaulting),
//!   because no real apiserver can run on the machines this project is tested on.

pub mod apiserver;
pub mod lab;
