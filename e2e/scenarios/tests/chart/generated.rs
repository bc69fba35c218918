//! Generated and guarding parts of the chart: its CRDs are the ones generated from the Rust
//! types, and its values schema and `fail` guards refuse bad values naming the key.

use super::chart_py;

#[test]
fn chart_crds_are_the_generated_ones() {
    let out = chart_py(&["check-crds"]);
    assert!(
        out.contains("chart CRDs match config/crd/ (3 CRDs)"),
        "{out}"
    );
}

#[test]
fn schema_and_guards_refuse_bad_values_naming_the_key() {
    let out = chart_py(&["check-schema"]);
    let refused = out.lines().filter(|l| l.starts_with("refused ")).count();
    assert!(refused >= 20, "only {refused} bad value sets tried:\n{out}");
    assert!(
        out.contains("bad value sets were refused with a message naming the key"),
        "{out}"
    );
}
