//! What a resource URL names. Paths are parsed by hand because `namespaces/{name}/…` is
//! ambiguous to a router (a namespace's subresource or a namespaced collection).

use std::sync::Arc;

use serde_json::Value;

use super::discovery::resource_list;
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::store::{Store, Subresource};

/// A request's target after path parsing.
pub(super) struct Target {
    pub(super) rt: Arc<ResourceType>,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Subresource,
}

/// What a path under `/api` or `/apis` addresses.
pub(super) enum Addressed {
    /// Objects of a served type.
    Objects(Target),
    /// A group version itself: its APIResourceList.
    Discovery(Value),
}

pub(super) fn parse_target(store: &Store, path: &str) -> ApiResult<Addressed> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found_path(path)),
    };
    let lookup = |plural: &str| {
        store
            .resource(group, version, plural)
            .ok_or_else(|| not_found_path(path))
    };
    let sub = |s: &str| match s {
        "status" => Ok(Subresource::Status),
        _ => Err(not_found_path(path)),
    };
    let target = |rt, namespace: Option<&str>, name: Option<&str>, subresource| Target {
        rt,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource,
    };
    Ok(Addressed::Objects(match rest {
        [] => {
            return resource_list(store, group, version)
                .map(Addressed::Discovery)
                .ok_or_else(|| not_found_path(path));
        }
        [plural] => target(lookup(plural)?, None, None, Subresource::Main),
        ["namespaces", ns, plural] if *plural != "status" && *plural != "finalize" => {
            target(lookup(plural)?, Some(ns), None, Subresource::Main)
        }
        ["namespaces", ns, plural, name] => {
            target(lookup(plural)?, Some(ns), Some(name), Subresource::Main)
        }
        ["namespaces", ns, plural, name, s] => {
            target(lookup(plural)?, Some(ns), Some(name), sub(s)?)
        }
        [plural, name] => target(lookup(plural)?, None, Some(name), Subresource::Main),
        [plural, name, s] => target(lookup(plural)?, None, Some(name), sub(s)?),
        _ => return Err(not_found_path(path)),
    }))
}

pub(super) fn not_found_path(path: &str) -> ApiError {
    ApiError::NotFound {
        resource: "the server could not find the requested resource".into(),
        name: path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::StoreConfig;

    fn parse(path: &str) -> Target {
        let store = Store::new(&StoreConfig::default()).unwrap();
        match parse_target(&store, path).unwrap() {
            Addressed::Objects(t) => t,
            Addressed::Discovery(_) => panic!("{path} is not discovery"),
        }
    }

    #[test]
    fn a_namespace_status_and_a_namespaced_collection_are_told_apart() {
        let status = parse("/api/v1/namespaces/default/status");
        assert_eq!(status.rt.plural, "namespaces");
        assert_eq!(status.subresource, Subresource::Status);
        let services = parse("/api/v1/namespaces/default/services");
        assert_eq!(services.rt.plural, "services");
        assert_eq!(services.namespace.as_deref(), Some("default"));
        assert!(services.name.is_none());
    }

    #[test]
    fn unknown_resources_and_subresources_are_not_found() {
        let store = Store::new(&StoreConfig::default()).unwrap();
        for path in [
            "/api/v1/widgets",
            "/api/v1/namespaces/default/services/web/scale",
        ] {
            assert!(matches!(
                parse_target(&store, path),
                Err(ApiError::NotFound { .. })
            ));
        }
    }
}
