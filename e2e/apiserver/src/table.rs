//! `meta.k8s.io/v1` Table output, which kubectl asks for on `get`: a CRD's printer columns, a few
//! built-in columns for the kinds operators look at, and Name and Age for the rest.

use serde_json::{Value, json};

use super::resources::{PrinterColumn, ResourceType};

fn column(name: &str, json_path: &str, column_type: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.to_owned(),
        json_path: json_path.to_owned(),
        column_type: column_type.to_owned(),
        priority: 0,
    }
}

/// Columns for a type: its own (CRDs), or the built-in ones kube-apiserver prints.
fn columns(rt: &ResourceType) -> Vec<PrinterColumn> {
    if !rt.columns.is_empty() {
        return rt.columns.clone();
    }
    let mut cols = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Service") => vec![
            column("Type", ".spec.type", "string"),
            column("Cluster-IP", ".spec.clusterIP", "string"),
            column(
                "External-IP",
                ".status.loadBalancer.ingress[*].ip",
                "string",
            ),
            column("Ports", ".spec.ports[*].port", "string"),
        ],
        ("", "Pod") => vec![
            column("Status", ".status.phase", "string"),
            column("IP", ".status.podIP", "string"),
            column("Node", ".spec.nodeName", "string"),
        ],
        ("", "Node") => vec![column(
            "Internal-IP",
            ".status.addresses[0].address",
            "string",
        )],
        ("", "Namespace") => vec![column("Status", ".status.phase", "string")],
        ("", "Event") => vec![
            column("Type", ".type", "string"),
            column("Reason", ".reason", "string"),
            column("Object", ".involvedObject.name", "string"),
            column("Message", ".message", "string"),
        ],
        _ => vec![],
    };
    cols.push(column("Age", ".metadata.creationTimestamp", "date"));
    cols
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0].b`, `.a[*].b`.
pub fn json_path(object: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![object.clone()];
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, Some(rest.trim_end_matches(']'))),
            None => (part, None),
        };
        current = current
            .iter()
            .filter_map(|v| {
                if field.is_empty() {
                    Some(v.clone())
                } else {
                    v.get(field).cloned()
                }
            })
            .flat_map(|v| match index {
                None => vec![v],
                Some("*") => v.as_array().cloned().unwrap_or_default(),
                Some(i) => i
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| v.get(i).cloned())
                    .into_iter()
                    .collect(),
            })
            .collect();
    }
    current
}

fn human_age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(values: &[Value], column_type: &str) -> Value {
    if values.is_empty() {
        return json!("<none>");
    }
    if column_type == "date" {
        return json!(human_age(values[0].as_str().unwrap_or_default()));
    }
    if values.len() == 1 && !values[0].is_array() && !values[0].is_object() {
        return values[0].clone();
    }
    let text: Vec<String> = values
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .collect();
    json!(text.join(","))
}

/// A Table of the objects.
pub fn table(rt: &ResourceType, items: &[Value], rv: u64) -> Value {
    let cols = columns(rt);
    let mut definitions = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}),
    ];
    definitions.extend(cols.iter().map(|c| {
        json!({"name": c.name, "type": c.column_type, "format": "", "description": c.name, "priority": c.priority})
    }));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(
                cols.iter()
                    .map(|c| cell(&json_path(o, &c.json_path), &c.column_type)),
            );
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_handles_indexes_and_wildcards() {
        let o = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"ip": "2001:db8::1"}]}}});
        assert_eq!(json_path(&o, ".status.loadBalancer.ingress[*].ip").len(), 2);
        assert_eq!(
            json_path(&o, ".status.loadBalancer.ingress[1].ip"),
            vec![json!("2001:db8::1")]
        );
        assert!(json_path(&o, ".spec.missing").is_empty());
    }
}
