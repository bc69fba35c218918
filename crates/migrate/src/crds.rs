//! MetalLB's `metallb.io` custom resources: `IPAddressPool` and `L2Advertisement` convert field
//! for field (ferrolb's spec fields are MetalLB's), the BGP and status kinds are reported with the
//! reason they have no ferrolb counterpart.

use ferrolb_api::{IPAddressPoolSpec, L2Advertisement, L2AdvertisementSpec, ServiceAllocation};
use serde_json::Value;

use crate::fields::{Fields, selectors};
use crate::resource::{NO_BGP, pool, report_unknown, split};
use crate::{Conversion, FerrolbObject, Options, Source, legacy};

/// Longest Linux interface name (`IFNAMSIZ` less the terminating NUL).
const MAX_INTERFACE_NAME: usize = 15;

/// Converts or reports one `metallb.io` object.
pub(crate) fn convert(document: &Value, source: &Source, options: &Options, out: &mut Conversion) {
    let what = source.describe();
    match (source.kind.as_str(), source.version()) {
        ("IPAddressPool", "v1beta1") => {
            let result = ip_address_pool(document, options);
            finish(result, source, out);
        }
        ("L2Advertisement", "v1beta1") => {
            let result = l2_advertisement(document, options);
            finish(result, source, out);
        }
        ("AddressPool", "v1alpha1" | "v1beta1") => {
            legacy::address_pool(document, source, options, out);
        }
        ("IPAddressPool" | "L2Advertisement", version) => out.skip(
            what,
            format!(
                "unsupported version {version}: ferrolb-migrate reads metallb.io/v1beta1, the \
                 version every MetalLB release with this kind serves"
            ),
        ),
        ("BGPAdvertisement", _) => out.skip(what, bgp_advertisement_reason(document)),
        ("BGPPeer", _) => out.skip(what, format!("BGP peering session: {NO_BGP}")),
        ("BFDProfile", _) => out.skip(
            what,
            format!("BFD profile, used only by BGP sessions: {NO_BGP}"),
        ),
        ("Community", _) => out.skip(what, format!("BGP community aliases: {NO_BGP}")),
        ("ServiceL2Status", _) => out.skip(
            what,
            "status written by MetalLB's speakers, not configuration: ferrolb's speakers write \
             their own ferrolb.io ServiceL2Status",
        ),
        ("ServiceBGPStatus", _) => out.skip(
            what,
            format!("status written by MetalLB's BGP speakers, not configuration: {NO_BGP}"),
        ),
        ("ConfigurationState", _) => out.skip(
            what,
            "status written by MetalLB about its own configuration, not configuration",
        ),
        (kind, _) => out.skip(
            what,
            format!(
                "unknown MetalLB kind {kind:?}: ferrolb-migrate converts IPAddressPool, \
                 L2Advertisement and AddressPool"
            ),
        ),
    }
}

/// Records a converted object and each field it was converted without, or the whole object as
/// not converted.
fn finish(
    result: Result<(FerrolbObject, Vec<String>), String>,
    source: &Source,
    out: &mut Conversion,
) {
    match result {
        Ok((object, unknown)) => {
            report_unknown(source, unknown, out);
            out.add(source.describe(), object);
        }
        Err(reason) => out.skip(source.describe(), format!("invalid: {reason}")),
    }
}

fn ip_address_pool(
    document: &Value,
    options: &Options,
) -> Result<(FerrolbObject, Vec<String>), String> {
    let (meta, mut spec, mut unknown) = split(document, options)?;
    let addresses = spec.require("addresses")?;
    let auto_assign = spec.take_as("autoAssign")?.unwrap_or(true);
    let avoid_buggy_ips = spec.take_as("avoidBuggyIPs")?.unwrap_or(false);
    let service_allocation = spec
        .take("serviceAllocation")
        .map(|value| service_allocation(value, "spec.serviceAllocation", &mut unknown))
        .transpose()?;
    unknown.extend(spec.leftovers());
    let pool = pool(
        meta,
        IPAddressPoolSpec {
            addresses,
            auto_assign,
            avoid_buggy_ips,
            service_allocation,
        },
    )?;
    Ok((FerrolbObject::IPAddressPool(pool), unknown))
}

fn service_allocation(
    value: Value,
    path: &str,
    unknown: &mut Vec<String>,
) -> Result<ServiceAllocation, String> {
    let mut fields = Fields::new(value, path)?;
    let priority: Option<i32> = fields.take_as("priority")?;
    if let Some(priority) = priority
        && priority < 0
    {
        return Err(format!(
            "{}: {priority} is negative; ferrolb accepts 0 (tried last) or more",
            fields.path_of("priority")
        ));
    }
    let namespaces = fields.take_as("namespaces")?.unwrap_or_default();
    let namespace_selectors = match fields.take("namespaceSelectors") {
        Some(value) => selectors(value, &fields.path_of("namespaceSelectors"), unknown)?,
        None => vec![],
    };
    let service_selectors = match fields.take("serviceSelectors") {
        Some(value) => selectors(value, &fields.path_of("serviceSelectors"), unknown)?,
        None => vec![],
    };
    unknown.extend(fields.leftovers());
    Ok(ServiceAllocation {
        priority,
        namespaces,
        namespace_selectors,
        service_selectors,
    })
}

fn l2_advertisement(
    document: &Value,
    options: &Options,
) -> Result<(FerrolbObject, Vec<String>), String> {
    let (meta, mut spec, mut unknown) = split(document, options)?;
    let ip_address_pools = spec.take_as("ipAddressPools")?.unwrap_or_default();
    let ip_address_pool_selectors = match spec.take("ipAddressPoolSelectors") {
        Some(value) => selectors(value, "spec.ipAddressPoolSelectors", &mut unknown)?,
        None => vec![],
    };
    let node_selectors = match spec.take("nodeSelectors") {
        Some(value) => selectors(value, "spec.nodeSelectors", &mut unknown)?,
        None => vec![],
    };
    let interfaces: Vec<String> = spec.take_as("interfaces")?.unwrap_or_default();
    for (i, interface) in interfaces.iter().enumerate() {
        let valid = (1..=MAX_INTERFACE_NAME).contains(&interface.len())
            && !interface.contains(|c: char| c == '/' || c.is_whitespace());
        if !valid {
            return Err(format!(
                "spec.interfaces[{i}]: {interface:?} is not a Linux interface name (1 to \
                 {MAX_INTERFACE_NAME} bytes, no '/' or white space)"
            ));
        }
    }
    // `serviceSelectors` is ferrolb's own addition: MetalLB has no such field, so one found on a
    // MetalLB object is left over and reported like any other unknown field.
    unknown.extend(spec.leftovers());
    let mut l2 = L2Advertisement::new(
        meta.name.as_deref().unwrap_or_default(),
        L2AdvertisementSpec {
            ip_address_pools,
            ip_address_pool_selectors,
            node_selectors,
            interfaces,
            service_selectors: vec![],
        },
    );
    l2.metadata = meta;
    Ok((FerrolbObject::L2Advertisement(l2), unknown))
}

/// Names the pools a `BGPAdvertisement` announces, so the user knows which addresses lose their
/// announcement.
fn bgp_advertisement_reason(document: &Value) -> String {
    let pools: Vec<&str> = document
        .pointer("/spec/ipAddressPools")
        .and_then(Value::as_array)
        .map(|pools| pools.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let by_label = document
        .pointer("/spec/ipAddressPoolSelectors")
        .and_then(Value::as_array)
        .is_some_and(|selectors| !selectors.is_empty());
    let which = match (pools.is_empty(), by_label) {
        (false, false) => format!("pool(s) {}", pools.join(", ")),
        (false, true) => format!("pool(s) {} and pools selected by label", pools.join(", ")),
        (true, true) => "pools selected by label".to_owned(),
        (true, false) => "every pool".to_owned(),
    };
    format!(
        "BGP advertisement of {which}: {NO_BGP}; the pools themselves are converted, but their \
         addresses are reachable only where an L2Advertisement announces them"
    )
}
