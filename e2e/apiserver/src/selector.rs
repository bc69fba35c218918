//! Label and field selectors as they arrive in `?labelSelector=` and `?fieldSelector=`, parsed into
//! requirements and matched against objects, with kube-apiserver's semantics (all requirements
//! ANDed; `!=` and `notin` match objects without the label).

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::{ApiError, ApiResult};

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    NotExists(String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Greater(String, i64),
    Less(String, i64),
}

/// A parsed `?labelSelector=` query (a list of requirements, all ANDed); the empty query matches
/// everything. Not a `metav1.LabelSelector` object: this is the string form clients send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelQuery(Vec<Requirement>);

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn bad(selector: &str, why: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "unable to parse requirement: {why} in selector \"{selector}\""
    ))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(selector: &str, rest: &str) -> ApiResult<BTreeSet<String>> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(selector, "expected a parenthesised value list"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_requirement(selector: &str, part: &str) -> ApiResult<Requirement> {
    let part = part.trim();
    let single = |v: &str| BTreeSet::from([v.trim().to_owned()]);
    let checked = |key: &str| -> ApiResult<String> {
        let key = key.trim();
        if valid_key(key) {
            Ok(key.to_owned())
        } else {
            Err(bad(selector, &format!("invalid label key \"{key}\"")))
        }
    };
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(checked(key)?));
    }
    for (op, build) in [
        (
            "!=",
            Requirement::NotIn as fn(String, BTreeSet<String>) -> Requirement,
        ),
        ("==", Requirement::In),
        ("=", Requirement::In),
    ] {
        if let Some((key, value)) = part.split_once(op) {
            return Ok(build(checked(key)?, single(value)));
        }
    }
    for (op, greater) in [(">", true), ("<", false)] {
        if let Some((key, value)) = part.split_once(op) {
            let n = value
                .trim()
                .parse()
                .map_err(|_| bad(selector, "expected an integer"))?;
            let key = checked(key)?;
            return Ok(if greater {
                Requirement::Greater(key, n)
            } else {
                Requirement::Less(key, n)
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim_start();
    if rest.is_empty() {
        return Ok(Requirement::Exists(checked(key)?));
    }
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(checked(key)?, parse_set(selector, set)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(Requirement::In(checked(key)?, parse_set(selector, set)?));
    }
    Err(bad(selector, "expected one of =, ==, !=, in, notin"))
}

impl LabelQuery {
    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `?labelSelector=`.
    ///
    /// # Errors
    /// `BadRequest` naming the selector when it does not parse.
    pub fn parse(selector: &str) -> ApiResult<Self> {
        if selector.trim().is_empty() {
            return Ok(Self::default());
        }
        split_top_level(selector)
            .into_iter()
            .map(|part| parse_requirement(selector, part))
            .collect::<ApiResult<_>>()
            .map(Self)
    }

    /// Whether an object (its `metadata.labels`) matches.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
            Requirement::In(k, set) => label(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => label(k).is_none_or(|v| !set.contains(v)),
            Requirement::Greater(k, n) => label(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::Less(k, n) => label(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }
}

/// A parsed field selector over the fields every kind supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Fields selectable on every kind, as in kube-apiserver; other fields are rejected like the real
/// server rejects unknown ones, unless the kind adds them (see [`selectable_fields`]).
const SELECTABLE: &[&str] = &["metadata.name", "metadata.namespace"];

/// Fields a kind can be selected by besides name and namespace, as kube-apiserver registers them
/// (kubectl describe lists Events by `involvedObject.*`).
pub fn selectable_fields(group: &str, kind: &str) -> &'static [&'static str] {
    match (group, kind) {
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Pod") => &[
            "spec.nodeName",
            "status.phase",
            "status.podIP",
            "spec.serviceAccountName",
        ],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Secret") => &["type"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `?fieldSelector=` (`=`, `==`, `!=`, comma separated).
    ///
    /// # Errors
    /// `BadRequest` for a field that cannot be selected or a malformed term.
    pub fn parse(selector: &str, extra: &[&str]) -> ApiResult<Self> {
        let mut terms = Vec::new();
        for part in selector.split(',').filter(|p| !p.trim().is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !SELECTABLE.contains(&field) && !extra.contains(&field) {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether an object matches every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = field
                .split('.')
                .try_fold(object, |v, k| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn set_based_and_equality_requirements_are_anded() {
        let s = LabelQuery::parse("app=web, tier in (a,b),!legacy,env notin (dev)").unwrap();
        assert!(s.matches(&obj(json!({"app": "web", "tier": "b"}))));
        assert!(!s.matches(&obj(json!({"app": "web", "tier": "c"}))));
        assert!(!s.matches(&obj(json!({"app": "web", "tier": "a", "legacy": "1"}))));
        assert!(!s.matches(&obj(json!({"app": "web", "tier": "a", "env": "dev"}))));
    }

    #[test]
    fn not_equal_matches_objects_without_the_label() {
        let s = LabelQuery::parse("app!=web").unwrap();
        assert!(s.matches(&obj(json!({}))));
        assert!(!s.matches(&obj(json!({"app": "web"}))));
    }

    #[test]
    fn malformed_selectors_are_bad_requests() {
        assert!(LabelQuery::parse("app in web").is_err());
        assert!(LabelQuery::parse("a b c").is_err());
        assert!(FieldSelector::parse("spec.nodeName=x", &[]).is_err());
    }

    #[test]
    fn field_selectors_match_name_and_namespace() {
        let s = FieldSelector::parse("metadata.name=a,metadata.namespace!=other", &[]).unwrap();
        assert!(s.matches(&obj(json!({}))));
        let s = FieldSelector::parse("metadata.name==b", &[]).unwrap();
        assert!(!s.matches(&obj(json!({}))));
    }
}
