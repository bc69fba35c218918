//! Hand-written schema fragments for fields whose constraints the derive cannot express: list
//! semantics (`x-kubernetes-list-type`) and CEL rules over each list item.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Longest address entry accepted: an IPv6 range of two full-length addresses with spaces around
/// the dash fits. A bound is also what lets the apiserver estimate the CEL rules' cost.
const MAX_ADDRESS_LEN: u32 = 100;
/// Bounds the CEL cost the apiserver estimates: the overlap rule compares every pair of entries,
/// so its cost grows with the square of this (32² pairs are estimated at about 6.7·10⁶, under
/// the apiserver's per-expression limit of 10⁷; 64 would not be). A pool needing more than 32
/// entries can be split into several pools.
const MAX_ADDRESSES: u32 = 32;

/// CEL: a CIDR, or `a-b` with two addresses of one family. Surrounding white space is allowed,
/// as the allocator's parser trims it.
pub const ADDRESS_SYNTAX_RULE: &str = "isCIDR(self.trim()) || (self.split('-').size() == 2 \
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

/// CEL: whether the entry `e` is a well-formed IPv4 CIDR or IPv4 range.
fn ipv4_entry(e: &str) -> String {
    let (lo, hi) = (
        format!("{e}.split('-')[0].trim()"),
        format!("{e}.split('-')[1].trim()"),
    );
    format!(
        "((isCIDR({e}) && cidr({e}).ip().family() == 4) || ({e}.split('-').size() == 2 \
         && isIP({lo}) && isIP({hi}) && ip({lo}).family() == 4 && ip({hi}).family() == 4))"
    )
}

/// CEL: the first and last address of the IPv4 entry `e` as numbers (CEL has no ordering on
/// IP values). A CIDR's size comes from a table of powers of two (CEL has no `pow`).
fn ipv4_bounds(e: &str) -> (String, String) {
    let network = ipv4_number(&format!("string(cidr({e}).masked().ip())"));
    let powers = (0..=32)
        .map(|i| (1u64 << i).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let start = format!(
        "(isCIDR({e}) ? {network} : {})",
        ipv4_number(&format!("{e}.split('-')[0].trim()"))
    );
    let end = format!(
        "(isCIDR({e}) ? {network} + [{powers}][32 - cidr({e}).prefixLength()] - 1 : {})",
        ipv4_number(&format!("{e}.split('-')[1].trim()"))
    );
    (start, end)
}

/// CEL: whether the (trimmed) entries `a` and `b` share an address. Complete for IPv4; for
/// IPv6 only CIDR against CIDR: Kubernetes CEL has no ordering on IPv6 addresses and no way to
/// turn one into a number, so overlaps involving an IPv6 range are left to the controller, which
/// refuses such a pool (`Ready=False`, reason `InvalidPool`) and keeps its last valid addresses.
fn entries_overlap(a: &str, b: &str) -> String {
    let (a_start, a_end) = ipv4_bounds(a);
    let (b_start, b_end) = ipv4_bounds(b);
    format!(
        "({a4} && {b4} && {a_start} <= {b_end} && {b_start} <= {a_end}) \
         || (isCIDR({a}) && isCIDR({b}) && cidr({a}).ip().family() == 6 \
             && cidr({b}).ip().family() == 6 \
             && (cidr({a}).masked().containsCIDR(cidr({b}).masked()) \
                 || cidr({b}).masked().containsCIDR(cidr({a}).masked())))",
        a4 = ipv4_entry(a),
        b4 = ipv4_entry(b),
    )
}

/// CEL over the whole `spec.addresses` list: no two entries share an address.
pub fn no_overlap_rule() -> String {
    format!(
        "self.all(a, self.all(b, a == b || !({})))",
        entries_overlap("a.trim()", "b.trim()")
    )
}

/// The message names the entries that overlap.
fn no_overlap_message() -> String {
    format!(
        "'spec.addresses: entries overlap each other: ' + self.filter(a, self.exists(b, a != b \
         && ({}))).join(', ')",
        entries_overlap("a.trim()", "b.trim()")
    )
}

/// `spec.addresses` of an IPAddressPool.
pub fn address_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_ADDRESSES,
        "x-kubernetes-list-type": "set",
        "x-kubernetes-validations": [
            { "rule": no_overlap_rule(), "messageExpression": no_overlap_message() },
        ],
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

/// CEL on one `matchExpressions` entry: the values rule Kubernetes applies to built-in selectors.
pub const SELECTOR_VALUES_RULE: &str = "self.operator in ['In', 'NotIn'] \
    ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)";

const SELECTOR_VALUES_MESSAGE: &str = "'matchExpressions: operator ' + self.operator + \
    (self.operator in ['In', 'NotIn'] ? ' needs at least one value' : ' takes no values') + \
    ' (key \"' + self.key + '\")'";

/// A list of `metav1.LabelSelector`s whose `matchExpressions` the apiserver checks as it checks
/// built-in selectors: `operator` one of the four Kubernetes defines, values only with `In` /
/// `NotIn` and required there. The allocator's selector parser refuses exactly the same.
pub fn selector_list(generator: &mut SchemaGenerator) -> Schema {
    let item =
        generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>();
    let mut item = item.to_value();
    if let Some(requirement) = item.pointer_mut("/properties/matchExpressions/items") {
        if let Some(operator) = requirement.pointer_mut("/properties/operator") {
            operator["enum"] = serde_json::json!(["In", "NotIn", "Exists", "DoesNotExist"]);
        }
        requirement["x-kubernetes-validations"] = serde_json::json!([
            { "rule": SELECTOR_VALUES_RULE, "messageExpression": SELECTOR_VALUES_MESSAGE },
        ]);
    }
    json_schema!({
        "type": "array",
        "items": item,
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
