//! The resource types the server serves: the built-in kinds ferrolb and its chart use, and every
//! kind registered through a CustomResourceDefinition.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::crd_schema::CrdSchema;

/// How a write to the `/status` subresource is merged into the stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusScope {
    /// Built-in kinds: a status write may not change `spec` (but may change metadata).
    ResetSpec,
    /// Custom resources: a status write changes `status` and nothing else.
    StatusOnly,
}

/// How objects of a type are checked before they are stored.
#[derive(Debug, Clone)]
pub enum Admission {
    /// A built-in kind: the object must deserialize as its k8s-openapi type.
    Typed(fn(&Value) -> Result<(), String>),
    /// A custom kind: its CRD schema.
    Schema(Arc<CrdSchema>),
}

/// A CRD's `additionalPrinterColumns` entry, used for kubectl's table output.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// JSONPath into the object, e.g. `.status.node`.
    pub json_path: String,
    /// OpenAPI type of the column.
    pub column_type: String,
    /// 0 shows by default; higher only with `-o wide`.
    pub priority: i64,
}

/// Where a type's objects are kept when another type shares its storage (the two Event APIs).
#[derive(Debug, Clone, Copy)]
pub struct SharedStorage {
    /// Storage key of the type whose shape is stored.
    pub key: &'static str,
    /// This type's shape to the stored one.
    pub to_storage: fn(&Value) -> Value,
    /// The stored shape to this type's.
    pub present: fn(&Value) -> Value,
}

/// One served resource (a group, version and plural).
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Service`.
    pub kind: String,
    /// Plural resource name in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// How `/status` writes merge, when the type has that subresource.
    pub status: Option<StatusScope>,
    /// Validation before storage.
    pub admission: Admission,
    /// Table columns besides Name and Age.
    pub columns: Vec<PrinterColumn>,
    /// Set when the objects live in another type's storage.
    pub shared: Option<SharedStorage>,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key objects of this type are stored under: all versions of a resource share storage.
    pub fn storage_key(&self) -> String {
        match &self.shared {
            Some(shared) => shared.key.to_owned(),
            None => format!("{}/{}", self.group, self.plural),
        }
    }

    /// A stored object as this type shows it.
    pub fn present(&self, stored: &Value) -> Value {
        let mut o = match &self.shared {
            Some(shared) => (shared.present)(stored),
            None => stored.clone(),
        };
        o["apiVersion"] = json!(self.api_version());
        o["kind"] = json!(self.kind);
        o
    }

    /// An object of this type in the shape it is stored in.
    pub fn persist(&self, object: &Value) -> Value {
        match &self.shared {
            Some(shared) => (shared.to_storage)(object),
            None => object.clone(),
        }
    }

    /// `plural.group`, as kube-apiserver names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The APIResource entry of discovery documents.
    pub fn api_resource(&self) -> Value {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        verbs.sort_unstable();
        json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
        })
    }
}

fn typed<T: DeserializeOwned>(object: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(object.clone())
        .map(drop)
        .map_err(|e| e.to_string())
}

fn builtin<T>(short_names: &[&str], status: bool) -> ResourceType
where
    T: k8s_openapi::Resource + DeserializeOwned + 'static,
{
    ResourceType {
        group: T::GROUP.to_owned(),
        version: T::VERSION.to_owned(),
        kind: T::KIND.to_owned(),
        plural: T::URL_PATH_SEGMENT.to_owned(),
        singular: T::KIND.to_ascii_lowercase(),
        short_names: short_names.iter().map(|s| (*s).to_owned()).collect(),
        namespaced: TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        status: status.then_some(StatusScope::ResetSpec),
        admission: Admission::Typed(typed::<T>),
        columns: Vec::new(),
        shared: None,
    }
}

/// The built-in kinds: what ferrolb reads and writes, and what its Helm chart creates.
pub fn builtins() -> Vec<ResourceType> {
    use k8s_openapi::api::{
        apps::v1 as apps, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
        policy::v1 as policy, rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    vec![
        builtin::<core::Namespace>(&["ns"], true),
        builtin::<core::Node>(&["no"], true),
        builtin::<core::Service>(&["svc"], true),
        builtin::<core::Pod>(&["po"], true),
        builtin::<core::Secret>(&[], false),
        builtin::<core::ConfigMap>(&["cm"], false),
        builtin::<core::ServiceAccount>(&["sa"], false),
        builtin::<core::Event>(&["ev"], false),
        ResourceType {
            shared: Some(SharedStorage {
                key: "/events",
                to_storage: super::events::to_core,
                present: super::events::to_events_v1,
            }),
            ..builtin::<events::Event>(&["ev"], false)
        },
        builtin::<discovery::EndpointSlice>(&[], false),
        builtin::<coordination::Lease>(&[], false),
        builtin::<apps::Deployment>(&["deploy"], true),
        builtin::<apps::DaemonSet>(&["ds"], true),
        builtin::<rbac::ClusterRole>(&[], false),
        builtin::<rbac::ClusterRoleBinding>(&[], false),
        builtin::<rbac::Role>(&[], false),
        builtin::<rbac::RoleBinding>(&[], false),
        builtin::<policy::PodDisruptionBudget>(&["pdb"], true),
        builtin::<networking::NetworkPolicy>(&["netpol"], false),
        builtin::<apiextensions::CustomResourceDefinition>(&["crd", "crds"], true),
    ]
}

/// The types a CRD defines, one per served version.
///
/// # Errors
/// A message naming the version whose schema does not compile.
pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let plural = text(&names["plural"]);
    let kind = text(&names["kind"]);
    let mut types = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"] == Value::Bool(false) {
            continue;
        }
        let name = text(&version["name"]);
        let openapi = version["schema"]["openAPIV3Schema"].clone();
        let schema = CrdSchema::compile(&openapi)
            .map_err(|e| format!("spec.versions[{name}].schema.openAPIV3Schema: {e}"))?;
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| PrinterColumn {
                name: text(&c["name"]),
                json_path: text(&c["jsonPath"]),
                column_type: text(&c["type"]),
                priority: c["priority"].as_i64().unwrap_or(0),
            })
            .collect();
        types.push(ResourceType {
            group: text(&spec["group"]),
            version: name,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: names["singular"]
                .as_str()
                .map_or_else(|| kind.to_ascii_lowercase(), str::to_owned),
            short_names: names["shortNames"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect(),
            namespaced: spec["scope"] != "Cluster",
            status: version["subresources"]
                .get("status")
                .map(|_| StatusScope::StatusOnly),
            admission: Admission::Schema(Arc::new(schema)),
            columns,
            shared: None,
        });
    }
    Ok(types)
}

/// Every served type, by `(group, version, plural)`.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    /// A registry of the built-in kinds.
    pub fn with_builtins() -> Self {
        let mut registry = Self::default();
        for t in builtins() {
            registry.insert(t);
        }
        registry
    }

    /// Adds or replaces a type.
    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert(
            (t.group.clone(), t.version.clone(), t.plural.clone()),
            Arc::new(t),
        );
    }

    /// Removes every version of `plural.group`.
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// Looks a type up by its URL parts.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// Every type, ordered by group, version and plural.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }
}
