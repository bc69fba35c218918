//! What converting any `metallb.io` custom resource needs, current ([`crate::crds`]) or
//! deprecated ([`crate::legacy`]'s `AddressPool`): taking the object apart, reporting the fields
//! left out, building a pool ferrolb accepts, and the one reason nothing of BGP converts.

use ferrolb_api::{IPAddressPool, IPAddressPoolSpec};
use ferrolb_ipam::{Pool, PoolSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};

use crate::fields::{Fields, metadata};
use crate::{Conversion, Options, Source};

/// Why nothing of BGP converts.
pub(crate) const NO_BGP: &str =
    "ferrolb announces addresses with ARP and NDP (Layer 2) only and has no BGP speaker";

/// One entry per field of a converted custom resource that was left out.
pub(crate) fn report_unknown(source: &Source, mut unknown: Vec<String>, out: &mut Conversion) {
    unknown.sort();
    for path in unknown {
        let reason = if path.starts_with("metadata.") {
            "metadata not carried over: ferrolb-migrate keeps only the name, labels and \
             annotations"
                .to_owned()
        } else {
            format!(
                "unknown field: not a field of {} {}, so its meaning is unknown; the {} was \
                 converted without it",
                source.api_version, source.kind, source.kind
            )
        };
        out.skip(source.describe_part(&path), reason);
    }
}

/// The metadata, the spec (empty when absent) and the unknown top-level and metadata fields of a
/// custom resource.
pub(crate) fn split(
    document: &Value,
    options: &Options,
) -> Result<(ObjectMeta, Fields, Vec<String>), String> {
    let mut top = Fields::new(document.clone(), "")?;
    top.discard("apiVersion");
    top.discard("kind");
    // Status is written by MetalLB; ferrolb's controller writes its own.
    top.discard("status");
    let mut unknown = vec![];
    let meta = metadata(top.take("metadata"), &options.namespace, &mut unknown)?;
    let spec = Fields::new(
        top.take("spec").unwrap_or(Value::Object(Map::new())),
        "spec",
    )?;
    unknown.extend(top.leftovers());
    Ok((meta, spec, unknown))
}

/// An `IPAddressPool` whose addresses ferrolb's allocator accepts: a pool it would refuse is
/// reported rather than written.
pub(crate) fn pool(meta: ObjectMeta, spec: IPAddressPoolSpec) -> Result<IPAddressPool, String> {
    let name = meta.name.clone().unwrap_or_default();
    let addresses: Vec<&str> = spec.addresses.iter().map(String::as_str).collect();
    Pool::parse(PoolSpec::new(&name, &addresses))
        .map_err(|e| format!("{e}; ferrolb would not use this pool"))?;
    let mut pool = IPAddressPool::new(&name, spec);
    pool.metadata = meta;
    Ok(pool)
}
