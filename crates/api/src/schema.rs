//! Hand-written schema fragments for fields whose constraints the derive cannot express: list
//! semantics (`x-kubernetes-list-type`) and CEL rules over each list item.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Longest address entry accepted: an IPv6 range of two full-length addresses with spaces around
/// the dash fits. A bound is also what lets the apiserver estimate the CEL rules' cost.
const MAX_ADDRESS_LEN: u32 = 100;
/// Bounds the per-item CEL cost the apiserver estimates for the whole list.
const MAX_ADDRESSES: u32 = 1024;

/// CEL: a CIDR, or `a-b` with two addresses of one family.
pub const ADDRESS_SYNTAX_RULE: &str = "isCIDR(self) || (self.split('-').size() == 2 \
    && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) \
    && ip(self.split('-')[0].trim()).family() == ip(self.split('-')[1].trim()).family())";

/// CEL message naming the rejected value: the apiserver prints only the field path and the type
/// of the value for CEL failures, so the value itself must be in the message.
const ADDRESS_SYNTAX_MESSAGE: &str = "'spec.addresses: \"' + self + '\" must be a CIDR \
    (192.0.2.0/24) or a range of one family (192.0.2.10-192.0.2.20); write a single address \
    as 192.0.2.7/32'";

/// CEL: the dotted quad `x` as a number.
fn ipv4_number(x: &str) -> String {
    (0..4)
        .map(|i| match 3 - i {
            0 => format!("int({x}.split('.')[{i}])"),
            octet => format!("int({x}.split('.')[{i}]) * {}", 1u64 << (8 * octet)),
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// CEL: an IPv4 range must not run backwards. CEL has no ordering on IP values, so the dotted
/// quads are turned into numbers; backwards IPv6 ranges are reported by the controller instead.
pub fn ipv4_range_order_rule() -> String {
    let start = "self.split('-')[0].trim()";
    let end = "self.split('-')[1].trim()";
    format!(
        "!(self.split('-').size() == 2 && isIP({start}) && isIP({end}) \
         && ip({start}).family() == 4 && ip({end}).family() == 4) \
         || {} <= {}",
        ipv4_number(start),
        ipv4_number(end)
    )
}

const IPV4_RANGE_ORDER_MESSAGE: &str =
    "'spec.addresses: range \"' + self + '\" starts after it ends'";

/// `spec.addresses` of an IPAddressPool.
pub fn address_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_ADDRESSES,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ADDRESS_LEN,
            "x-kubernetes-validations": [
                { "rule": ADDRESS_SYNTAX_RULE, "messageExpression": ADDRESS_SYNTAX_MESSAGE },
                { "rule": ipv4_range_order_rule(), "messageExpression": IPV4_RANGE_ORDER_MESSAGE },
            ],
        },
    })
}

/// A list of Kubernetes object names where a duplicate is a mistake.
pub fn name_set(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "items": { "type": "string", "minLength": 1, "maxLength": 253 },
    })
}

/// Network interface names: Linux allows at most 15 bytes and no slash or white space.
pub fn interface_set(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 15,
            "pattern": "^[^/\\s]+$",
        },
    })
}

/// Standard `metav1.Condition` list, merged by `type` like every built-in status.
pub fn condition_list(generator: &mut SchemaGenerator) -> Schema {
    let item =
        generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>();
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": item,
    })
}
