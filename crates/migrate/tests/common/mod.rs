//! Shared by the test files: fixtures, and the check that converted objects are valid ferrolb
//! objects (typed read-back and the CRD schema's CEL rules).

use std::path::PathBuf;

use ferrolb_api::crd;
use ferrolb_migrate::{FerrolbObject, yaml};
use kube_cel::Validator;
use serde_json::Value;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name))
        .unwrap_or_else(|e| panic!("fixture {name} is readable: {e}"))
}

fn schema_of(kind: &str) -> Value {
    let crd = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("ferrolb has a CRD for {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap_or_else(|| panic!("the {kind} CRD has a schema"));
    serde_json::to_value(schema).unwrap_or_else(|e| panic!("schema serializes: {e}"))
}

/// Parses multi-document YAML written by ferrolb-migrate into ferrolb-api's types, checking each
/// document against the CRD schema's CEL rules on the way.
pub fn read_ferrolb_yaml(text: &str) -> Vec<FerrolbObject> {
    let documents = yaml::parse_documents(text).unwrap_or_else(|e| panic!("output is YAML: {e}"));
    documents
        .into_iter()
        .map(|document| {
            let kind = document["kind"].as_str().unwrap_or_default().to_owned();
            if let Err(errors) = Validator::new().validate(&schema_of(&kind), &document, None) {
                let messages: Vec<String> =
                    errors.into_vec().into_iter().map(|e| e.message).collect();
                panic!("{kind} breaks the CRD rules: {messages:?}\n{document:#}");
            }
            let text = serde_saphyr::to_string(&document)
                .unwrap_or_else(|e| panic!("document serializes: {e}"));
            yaml::read_back(&text).unwrap_or_else(|e| panic!("not a ferrolb object: {e}"))
        })
        .collect()
}

/// Renders the objects as ferrolb-migrate writes them and checks they read back as valid ferrolb
/// objects equal to what was converted.
#[allow(
    dead_code,
    reason = "tests/cli.rs checks the YAML the binary wrote instead"
)]
pub fn assert_valid_ferrolb(objects: &[FerrolbObject]) {
    let text = yaml::render(objects).unwrap_or_else(|e| panic!("renders: {e}"));
    assert_eq!(read_ferrolb_yaml(&text), objects);
}
