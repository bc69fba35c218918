//! Converts a MetalLB configuration into ferrolb objects, and says exactly what it could not
//! convert and why.
//!
//! Input is parsed YAML documents ([`yaml::parse_documents`]): `metallb.io` custom resources
//! (`IPAddressPool`, `L2Advertisement`, the deprecated `AddressPool`, and the BGP and status kinds)
//! and MetalLB's legacy configuration ConfigMap (`data.config`). [`convert`] is a pure function
//! from those documents to a [`Conversion`]: the ferrolb objects, each with the MetalLB object it
//! came from, and a [`Skipped`] entry for everything that was not carried over, down to single
//! unknown fields. Nothing is dropped without an entry, except the metadata the apiserver writes
//! itself ([`SERVER_MANAGED_METADATA`]) and kubectl's last-applied annotation.
//!
//! Every object is built through ferrolb-api's types and its addresses are checked with the same
//! parser the controller uses (`ferrolb-ipam`), so what is written is what ferrolb accepts;
//! [`yaml::render`] checks once more that the YAML it writes reads back into the same objects.
//!
//! The `ferrolb-migrate` binary is the I/O around this: read files or stdin, write the YAML and the
//! [`report`].

mod crds;
mod fields;
mod legacy;
mod resource;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ferrolb_api::{IPAddressPool, L2Advertisement};
use serde::Serialize;
use serde_json::Value;

pub use fields::SERVER_MANAGED_METADATA;

/// The namespace ferrolb runs in by default; its controller and speakers read their
/// `IPAddressPool`s and `L2Advertisement`s only from their own namespace.
pub const DEFAULT_NAMESPACE: &str = "ferrolb-system";

/// Annotation kubectl writes on `kubectl apply`. It holds the MetalLB object as last applied, so it
/// is not carried over; kubectl writes a fresh one when the ferrolb object is applied.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Namespace of every ferrolb object written. MetalLB reads its configuration only from the
    /// namespace it runs in (`metallb-system` by default), ferrolb only from its own, so every
    /// object lands in this one namespace whatever namespace it came from.
    pub namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }
}

/// A ferrolb object ready to be written.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum FerrolbObject {
    /// A pool of addresses.
    IPAddressPool(IPAddressPool),
    /// An announcement of some pools in Layer 2 mode.
    L2Advertisement(L2Advertisement),
}

/// The custom resource roots do not derive `PartialEq`; their parts do.
impl PartialEq for FerrolbObject {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::IPAddressPool(a), Self::IPAddressPool(b)) => {
                a.metadata == b.metadata && a.spec == b.spec && a.status == b.status
            }
            (Self::L2Advertisement(a), Self::L2Advertisement(b)) => {
                a.metadata == b.metadata && a.spec == b.spec && a.status == b.status
            }
            _ => false,
        }
    }
}

impl FerrolbObject {
    /// The object's kind.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IPAddressPool(_) => "IPAddressPool",
            Self::L2Advertisement(_) => "L2Advertisement",
        }
    }

    fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Self::IPAddressPool(pool) => &pool.metadata,
            Self::L2Advertisement(l2) => &l2.metadata,
        }
    }

    /// `ferrolb.io/v1beta1 <Kind> <namespace>/<name>`, as the report names it.
    #[must_use]
    pub fn describe(&self) -> String {
        let meta = self.metadata();
        format!(
            "{}/{} {} {}/{}",
            ferrolb_api::GROUP,
            ferrolb_api::VERSION,
            self.kind(),
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        )
    }
}

/// One ferrolb object and the MetalLB object (or part of the legacy ConfigMap) it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The MetalLB source, e.g. `metallb.io/v1beta1 IPAddressPool metallb-system/lan` or
    /// `v1 ConfigMap metallb-system/config: data.config.address-pools[0] (lan)`.
    pub from: String,
    /// The ferrolb object.
    pub object: FerrolbObject,
}

/// Something from the input that is not in the output, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The object, or the object and the path of the field, e.g.
    /// `metallb.io/v1beta1 IPAddressPool metallb-system/lan: spec.fooBar`.
    pub what: String,
    /// Why it was not converted, and what that means for the user.
    pub reason: String,
}

/// The result of [`convert`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversion {
    /// The ferrolb objects, in input order.
    pub objects: Vec<Converted>,
    /// Everything not carried over, in input order.
    pub skipped: Vec<Skipped>,
}

impl Conversion {
    /// Whether everything in the input was converted.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty()
    }

    /// The ferrolb objects alone.
    #[must_use]
    pub fn ferrolb_objects(&self) -> Vec<FerrolbObject> {
        self.objects.iter().map(|c| c.object.clone()).collect()
    }

    fn skip(&mut self, what: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            what: what.into(),
            reason: reason.into(),
        });
    }

    fn add(&mut self, from: impl Into<String>, object: FerrolbObject) {
        self.objects.push(Converted {
            from: from.into(),
            object,
        });
    }
}

/// Converts MetalLB objects (one parsed YAML document each, `List`s already flattened) into ferrolb
/// objects. Never fails: whatever cannot be converted is listed in [`Conversion::skipped`].
#[must_use]
pub fn convert(documents: &[Value], options: &Options) -> Conversion {
    let mut out = Conversion::default();
    for (index, document) in documents.iter().enumerate() {
        let source = Source::of(document, index);
        match (source.group(), source.kind.as_str()) {
            (Some("metallb.io"), _) => crds::convert(document, &source, options, &mut out),
            (None, "ConfigMap") if source.api_version == "v1" => {
                legacy::config_map(document, &source, options, &mut out);
            }
            _ => out.skip(
                source.describe(),
                "not a MetalLB object: ferrolb-migrate converts metallb.io resources and \
                 MetalLB's legacy configuration ConfigMap",
            ),
        }
    }
    drop_duplicates(&mut out);
    out
}

/// MetalLB objects from several namespaces (or a ConfigMap and CRDs both defining a pool) can
/// give two ferrolb objects the same name in the one target namespace; writing both would let the
/// later silently replace the earlier on `kubectl apply`, so the later is reported instead.
fn drop_duplicates(out: &mut Conversion) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let objects = std::mem::take(&mut out.objects);
    for converted in objects {
        let key = converted.object.describe();
        if let Some(first) = seen.get(&key) {
            let reason = format!(
                "duplicate: {key} was already converted from {first}; rename one of them and run \
                 ferrolb-migrate again"
            );
            out.skip(converted.from, reason);
        } else {
            seen.insert(key, converted.from.clone());
            out.objects.push(converted);
        }
    }
}

/// What the report calls an input document, read leniently so that even a malformed document
/// gets a recognisable name.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    /// Position among the input documents, for documents without a name.
    pub(crate) index: usize,
}

impl Source {
    fn of(document: &Value, index: usize) -> Self {
        let text = |pointer: &str| {
            document
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Self {
            api_version: text("/apiVersion").unwrap_or_default(),
            kind: text("/kind").unwrap_or_default(),
            namespace: text("/metadata/namespace"),
            name: text("/metadata/name"),
            index,
        }
    }

    /// The API group, `None` for the core group (`v1`).
    pub(crate) fn group(&self) -> Option<&str> {
        self.api_version.split_once('/').map(|(group, _)| group)
    }

    /// The version part of `apiVersion`.
    pub(crate) fn version(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or(self.api_version.as_str(), |(_, version)| version)
    }

    /// `<apiVersion> <Kind> <namespace>/<name>`, with placeholders for what is missing.
    pub(crate) fn describe(&self) -> String {
        let api_version = if self.api_version.is_empty() {
            "<no apiVersion>"
        } else {
            &self.api_version
        };
        let kind = if self.kind.is_empty() {
            "<no kind>"
        } else {
            &self.kind
        };
        let name = match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => format!("{ns}/{name}"),
            (None, Some(name)) => name.clone(),
            (_, None) => format!("(document {} has no metadata.name)", self.index + 1),
        };
        format!("{api_version} {kind} {name}")
    }

    /// [`Self::describe`] followed by a field path or part of the object.
    pub(crate) fn describe_part(&self, part: &str) -> String {
        format!("{}: {part}", self.describe())
    }
}

/// The human report: one line per converted object, one entry per item not converted with its
/// reason, and a summary line. Written to stderr by the binary.
#[must_use]
pub fn report(conversion: &Conversion) -> String {
    let mut text = String::new();
    for converted in &conversion.objects {
        let _ = writeln!(
            text,
            "converted: {} -> {}",
            converted.from,
            converted.object.describe()
        );
    }
    for skipped in &conversion.skipped {
        let _ = writeln!(text, "NOT converted: {}", skipped.what);
        let _ = writeln!(text, "    reason: {}", skipped.reason);
    }
    let _ = writeln!(
        text,
        "summary: {} ferrolb object(s) written, {} item(s) not converted",
        conversion.objects.len(),
        conversion.skipped.len()
    );
    text
}
