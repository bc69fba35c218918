//! MetalLB's configuration from before `IPAddressPool`: the ConfigMap (`metallb-system/config`,
//! a YAML document in `data.config`, MetalLB up to 0.12) and the deprecated `AddressPool` kind
//! (0.12 and 0.13). Both give each pool a `protocol`.
//!
//! A `layer2` pool becomes an `IPAddressPool` plus an `L2Advertisement` naming it. A `bgp` pool
//! becomes an `IPAddressPool` too, so that the Services holding its addresses keep them, and is
//! reported as not announced. Peers, communities and BGP advertisement settings are reported.

use ferrolb_api::{IPAddressPoolSpec, L2Advertisement, L2AdvertisementSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::fields::{Fields, list, type_name};
use crate::resource::{NO_BGP, pool, report_unknown, split};
use crate::{Conversion, FerrolbObject, Options, Source};

/// How a protocol pool spells its fields: kebab-case in the ConfigMap, camelCase in the CRD.
struct Keys {
    protocol: &'static str,
    addresses: &'static str,
    auto_assign: &'static str,
    avoid_buggy_ips: &'static str,
    bgp_advertisements: &'static str,
}

const CONFIG_MAP_KEYS: Keys = Keys {
    protocol: "protocol",
    addresses: "addresses",
    auto_assign: "auto-assign",
    avoid_buggy_ips: "avoid-buggy-ips",
    bgp_advertisements: "bgp-advertisements",
};

const ADDRESS_POOL_KEYS: Keys = Keys {
    protocol: "protocol",
    addresses: "addresses",
    auto_assign: "autoAssign",
    avoid_buggy_ips: "avoidBuggyIPs",
    bgp_advertisements: "bgpAdvertisements",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Layer2,
    Bgp,
}

/// A pool with a protocol, taken out of its fields.
struct ProtocolPool {
    protocol: Protocol,
    spec: IPAddressPoolSpec,
    /// Where BGP advertisement settings were found, if any.
    bgp_advertisements: Option<String>,
}

fn protocol_pool(fields: &mut Fields, keys: &Keys) -> Result<ProtocolPool, String> {
    let protocol = match fields.require::<String>(keys.protocol)?.as_str() {
        "layer2" => Protocol::Layer2,
        "bgp" => Protocol::Bgp,
        other => {
            return Err(format!(
                "{}: unknown protocol {other:?} (MetalLB knows layer2 and bgp)",
                fields.path_of(keys.protocol)
            ));
        }
    };
    let spec = IPAddressPoolSpec {
        addresses: fields.require(keys.addresses)?,
        auto_assign: fields.take_as(keys.auto_assign)?.unwrap_or(true),
        avoid_buggy_ips: fields.take_as(keys.avoid_buggy_ips)?.unwrap_or(false),
        service_allocation: None,
    };
    let bgp_advertisements = fields
        .take(keys.bgp_advertisements)
        .filter(|value| value.as_array().is_none_or(|items| !items.is_empty()))
        .map(|_| fields.path_of(keys.bgp_advertisements));
    Ok(ProtocolPool {
        protocol,
        spec,
        bgp_advertisements,
    })
}

fn not_announced_reason(name: &str) -> String {
    format!(
        "protocol bgp: converted to IPAddressPool {name} so that its addresses stay allocated to \
         the Services holding them, but not announced: {NO_BGP}; name the pool in an \
         L2Advertisement if its addresses should be announced in Layer 2"
    )
}

fn bgp_settings_reason() -> String {
    format!("BGP advertisement settings: {NO_BGP}")
}

/// A deprecated `metallb.io` `AddressPool`.
pub(crate) fn address_pool(
    document: &Value,
    source: &Source,
    options: &Options,
    out: &mut Conversion,
) {
    let result = split(document, options).and_then(|(meta, mut spec, mut unknown)| {
        let taken = protocol_pool(&mut spec, &ADDRESS_POOL_KEYS)?;
        unknown.extend(spec.leftovers());
        Ok((meta, taken, unknown))
    });
    let (meta, taken, unknown) = match result {
        Ok(parts) => parts,
        Err(reason) => return out.skip(source.describe(), format!("invalid: {reason}")),
    };
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let ipp = match pool(meta, taken.spec) {
        Ok(ipp) => ipp,
        Err(reason) => return out.skip(source.describe(), format!("invalid: {reason}")),
    };
    report_unknown(source, unknown, out);
    out.add(source.describe(), FerrolbObject::IPAddressPool(ipp));
    match taken.protocol {
        Protocol::Layer2 => out.add(
            source.describe(),
            l2_advertisement(&name, &namespace, vec![name.clone()]),
        ),
        Protocol::Bgp => out.skip(source.describe(), not_announced_reason(&name)),
    }
    if let Some(path) = taken.bgp_advertisements {
        out.skip(source.describe_part(&path), bgp_settings_reason());
    }
}

fn l2_advertisement(name: &str, namespace: &str, pools: Vec<String>) -> FerrolbObject {
    let mut l2 = L2Advertisement::new(
        name,
        L2AdvertisementSpec {
            ip_address_pools: pools,
            ..L2AdvertisementSpec::default()
        },
    );
    l2.metadata.namespace = Some(namespace.to_owned());
    FerrolbObject::L2Advertisement(l2)
}

fn legacy_unknown_reason() -> &'static str {
    "unknown field: not part of MetalLB's configuration ConfigMap format, so its meaning is \
     unknown; converted without it"
}

/// MetalLB's configuration ConfigMap. A ConfigMap without `data.config` is reported as not a
/// MetalLB configuration. The ConfigMap's own metadata is not carried over: it names the
/// configuration, not a pool.
pub(crate) fn config_map(
    document: &Value,
    source: &Source,
    options: &Options,
    out: &mut Conversion,
) {
    let config = match config_text(document) {
        Ok((config, unknown)) => {
            for path in unknown {
                out.skip(source.describe_part(&path), legacy_unknown_reason());
            }
            config
        }
        Err(reason) => return out.skip(source.describe(), reason),
    };
    let config: Value = match serde_saphyr::from_str(&config) {
        Ok(Value::Null) => return,
        Ok(config) => config,
        Err(e) => {
            return out.skip(
                source.describe(),
                format!("invalid: data.config is not readable YAML: {e}"),
            );
        }
    };
    let mut config = match Fields::new(config, "data.config") {
        Ok(fields) => fields,
        Err(reason) => return out.skip(source.describe(), format!("invalid: {reason}")),
    };

    if let Some(peers) = config.take("peers") {
        let path = config.path_of("peers");
        match peers {
            Value::Array(peers) => {
                for (i, peer) in peers.iter().enumerate() {
                    let address = peer.get("peer-address").and_then(Value::as_str);
                    let asn = peer.get("peer-asn").map(Value::to_string);
                    let label = match (address, asn) {
                        (Some(address), Some(asn)) => format!(" ({address}, AS {asn})"),
                        (Some(address), None) => format!(" ({address})"),
                        _ => String::new(),
                    };
                    out.skip(
                        source.describe_part(&format!("{path}[{i}]{label}")),
                        format!("BGP peer: {NO_BGP}"),
                    );
                }
            }
            _ => out.skip(source.describe_part(&path), format!("BGP peers: {NO_BGP}")),
        }
    }
    for (key, what) in [
        ("bgp-communities", "BGP community aliases"),
        ("peer-autodiscovery", "BGP peer autodiscovery"),
    ] {
        if config.take(key).is_some() {
            out.skip(
                source.describe_part(&config.path_of(key)),
                format!("{what}: {NO_BGP}"),
            );
        }
    }

    let mut layer2 = vec![];
    if let Some(pools) = config.take("address-pools") {
        let path = config.path_of("address-pools");
        let items = list(pools, &path, |item, path| Ok((item, path.to_owned())));
        match items {
            Ok(items) => {
                for (item, path) in items {
                    if let Some(name) = config_map_pool(item, &path, source, options, out) {
                        layer2.push(name);
                    }
                }
            }
            Err(reason) => out.skip(source.describe(), format!("invalid: {reason}")),
        }
    }
    for path in config.leftovers() {
        out.skip(source.describe_part(&path), legacy_unknown_reason());
    }

    if !layer2.is_empty() {
        let name = format!("{}-layer2", source.name.as_deref().unwrap_or("config"));
        out.add(
            source.describe_part("data.config.address-pools with protocol layer2"),
            l2_advertisement(&name, &options.namespace, layer2),
        );
    }
}

/// `data.config` and the paths of the ConfigMap's other keys, which MetalLB never read.
fn config_text(document: &Value) -> Result<(String, Vec<String>), String> {
    const NOT_METALLB: &str = "not a MetalLB configuration: MetalLB's ConfigMap holds its \
                               configuration as YAML text in data.config";
    let mut top = Fields::new(document.clone(), "").map_err(|e| format!("invalid: {e}"))?;
    for key in ["apiVersion", "kind", "metadata"] {
        top.discard(key);
    }
    let data = top.take("data").ok_or(NOT_METALLB)?;
    let mut data = Fields::new(data, "data").map_err(|e| format!("invalid: {e}"))?;
    let config = match data.take("config") {
        Some(Value::String(config)) => config,
        Some(other) => {
            return Err(format!(
                "invalid: data.config: expected YAML text, found {}",
                type_name(&other)
            ));
        }
        None => return Err(NOT_METALLB.to_owned()),
    };
    let mut unknown = top.leftovers();
    unknown.extend(data.leftovers());
    Ok((config, unknown))
}

/// One entry of `address-pools`; returns the pool's name when it is to be announced in Layer 2.
fn config_map_pool(
    item: Value,
    path: &str,
    source: &Source,
    options: &Options,
    out: &mut Conversion,
) -> Option<String> {
    let name = item.get("name").and_then(Value::as_str).map(str::to_owned);
    let what = match &name {
        Some(name) => format!("{path} ({name})"),
        None => path.to_owned(),
    };
    let result = Fields::new(item, path).and_then(|mut fields| {
        let name: String = fields.require("name")?;
        let taken = protocol_pool(&mut fields, &CONFIG_MAP_KEYS)?;
        let meta = ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(options.namespace.clone()),
            ..ObjectMeta::default()
        };
        let ipp = pool(meta, taken.spec.clone())?;
        Ok((name, taken, ipp, fields.leftovers()))
    });
    let (name, taken, ipp, unknown) = match result {
        Ok(parts) => parts,
        Err(reason) => {
            out.skip(source.describe_part(&what), format!("invalid: {reason}"));
            return None;
        }
    };
    for path in unknown {
        out.skip(source.describe_part(&path), legacy_unknown_reason());
    }
    out.add(
        source.describe_part(&what),
        FerrolbObject::IPAddressPool(ipp),
    );
    if taken.protocol == Protocol::Bgp {
        out.skip(source.describe_part(&what), not_announced_reason(&name));
    }
    if let Some(path) = taken.bgp_advertisements {
        out.skip(source.describe_part(&path), bgp_settings_reason());
    }
    (taken.protocol == Protocol::Layer2).then_some(name)
}
