//! Text in and out: MetalLB manifests (multi-document YAML or JSON, `List`s flattened) into
//! documents, ferrolb objects into multi-document YAML that is checked to read back into the same
//! objects.

use ferrolb_api::{IPAddressPool, L2Advertisement};
use serde_json::Value;

use crate::FerrolbObject;

/// Why input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not YAML (or JSON).
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_saphyr::Error),
}

/// Why output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Serializing failed.
    #[error("cannot write {object} as YAML: {source}")]
    Serialize {
        /// The object, as the report names it.
        object: String,
        /// The serializer's error.
        #[source]
        source: serde_saphyr::SerializeError,
    },
    /// The YAML written does not read back into the same object: a bug, reported rather than
    /// letting a wrong manifest out.
    #[error("{object} does not read back from the YAML written for it ({detail}); this is a bug")]
    RoundTrip {
        /// The object, as the report names it.
        object: String,
        /// What went wrong.
        detail: String,
    },
}

/// Every object in `text`: one per YAML document, with the items of any `List` (kubectl's
/// `kind: List`, or an API list such as `IPAddressPoolList`) in place of the list. Empty documents
/// are skipped.
///
/// # Errors
///
/// [`ParseError::Yaml`] when the text is not YAML.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)?;
    let mut objects = vec![];
    for document in documents {
        flatten(document, &mut objects);
    }
    Ok(objects)
}

fn flatten(document: Value, objects: &mut Vec<Value>) {
    let is_list = document
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"))
        && document.get("items").is_some_and(Value::is_array);
    match document {
        Value::Null => {}
        Value::Object(mut map) if is_list => {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    flatten(item, objects);
                }
            }
        }
        other => objects.push(other),
    }
}

/// The objects as multi-document YAML, each document starting with `---`. Each document is read
/// back into ferrolb-api's type and compared with the object, so that what is written is exactly
/// what `kubectl apply` will send.
///
/// # Errors
///
/// [`RenderError`] when an object cannot be serialized or does not read back unchanged.
pub fn render(objects: &[FerrolbObject]) -> Result<String, RenderError> {
    let mut text = String::new();
    for object in objects {
        let document =
            serde_saphyr::to_string(object).map_err(|source| RenderError::Serialize {
                object: object.describe(),
                source,
            })?;
        let back = read_back(&document).map_err(|detail| RenderError::RoundTrip {
            object: object.describe(),
            detail,
        })?;
        if back != *object {
            return Err(RenderError::RoundTrip {
                object: object.describe(),
                detail: "it reads back different".to_owned(),
            });
        }
        text.push_str("---\n");
        text.push_str(&document);
        if !document.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(text)
}

/// Reads one ferrolb object written by [`render`], by its `apiVersion` and `kind`.
///
/// # Errors
///
/// A message when the document is not YAML, not a ferrolb object, or not valid for its type.
pub fn read_back(document: &str) -> Result<FerrolbObject, String> {
    let value: Value = serde_saphyr::from_str(document).map_err(|e| e.to_string())?;
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let expected = format!("{}/{}", ferrolb_api::GROUP, ferrolb_api::VERSION);
    if api_version != Some(expected.as_str()) {
        return Err(format!("apiVersion is {api_version:?}, not {expected}"));
    }
    match value.get("kind").and_then(Value::as_str) {
        Some("IPAddressPool") => serde_json::from_value::<IPAddressPool>(value)
            .map(FerrolbObject::IPAddressPool)
            .map_err(|e| e.to_string()),
        Some("L2Advertisement") => serde_json::from_value::<L2Advertisement>(value)
            .map(FerrolbObject::L2Advertisement)
            .map_err(|e| e.to_string()),
        other => Err(format!("unexpected kind {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_flattened_and_empty_documents_skipped() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- {kind: A}\n\
                    - {kind: BList, items: [{kind: C}]}\n---\nkind: D\n";
        let kinds: Vec<String> = parse_documents(text)
            .unwrap_or_else(|e| panic!("valid YAML: {e}"))
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(kinds, ["A", "C", "D"]);
    }

    #[test]
    fn json_input_is_read() {
        let docs = parse_documents(r#"{"kind": "List", "items": [{"kind": "A"}]}"#)
            .unwrap_or_else(|e| panic!("valid JSON: {e}"));
        assert_eq!(docs, [serde_json::json!({"kind": "A"})]);
    }

    #[test]
    fn broken_yaml_is_an_error() {
        assert!(parse_documents("kind: [unclosed\n").is_err());
    }
}
