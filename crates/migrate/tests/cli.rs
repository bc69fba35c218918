//! The `ferrolb-migrate` binary as a user runs it: input on stdin, in files and directories,
//! output on stdout or in a file, the report on stderr, and the exit code.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{fixture, fixture_path, read_ferrolb_yaml};

fn migrate(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolb-migrate"))
        .args(args)
        .env_remove("FERROLB_NAMESPACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ferrolb-migrate starts: {e}"));
    child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("stdin is piped"))
        .write_all(stdin.as_bytes())
        .unwrap_or_else(|e| panic!("stdin is writable: {e}"));
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("ferrolb-migrate finishes: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| panic!("output is UTF-8: {e}"))
}

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ferrolb-migrate-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn mixed_bgp_setup_on_stdin_writes_what_converts_and_exits_2() {
    let output = migrate(&[], &fixture("bgp-mixed.yaml"));
    assert_eq!(output.status.code(), Some(2));
    let objects = read_ferrolb_yaml(&text(&output.stdout));
    let names: Vec<String> = objects.iter().map(|o| o.describe()).collect();
    assert_eq!(
        names,
        [
            "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/routed",
            "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/lan",
            "ferrolb.io/v1beta1 L2Advertisement ferrolb-system/lan",
        ]
    );
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("    reason: "))
        .collect();
    assert_eq!(
        lines,
        [
            "converted: metallb.io/v1beta1 IPAddressPool metallb-system/routed -> \
             ferrolb.io/v1beta1 IPAddressPool ferrolb-system/routed",
            "converted: metallb.io/v1beta1 IPAddressPool metallb-system/lan -> \
             ferrolb.io/v1beta1 IPAddressPool ferrolb-system/lan",
            "converted: metallb.io/v1beta1 L2Advertisement metallb-system/lan -> \
             ferrolb.io/v1beta1 L2Advertisement ferrolb-system/lan",
            "NOT converted: metallb.io/v1beta2 BGPPeer metallb-system/tor-a",
            "NOT converted: metallb.io/v1beta1 BGPPeer metallb-system/tor-b",
            "NOT converted: metallb.io/v1beta1 BGPAdvertisement metallb-system/routed",
            "NOT converted: metallb.io/v1beta1 BFDProfile metallb-system/fast",
            "NOT converted: metallb.io/v1beta1 Community metallb-system/communities",
            "summary: 3 ferrolb object(s) written, 5 item(s) not converted",
        ]
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("    reason: "))
            .count(),
        5
    );
}

#[test]
fn complete_conversion_to_a_file_exits_0_and_leaves_stdout_empty() {
    let dir = TempDir::new("to-file");
    let out = dir.path().join("ferrolb.yaml");
    let out_arg = out.to_string_lossy().into_owned();
    let input = fixture_path("l2-two-pools.yaml");
    let output = migrate(
        &[
            &input.to_string_lossy(),
            "-o",
            &out_arg,
            "--namespace",
            "lb",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    let written = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("output file: {e}"));
    let objects = read_ferrolb_yaml(&written);
    assert_eq!(objects.len(), 4);
    assert!(
        objects
            .iter()
            .all(|o| o.describe().starts_with("ferrolb.io/v1beta1 ")
                && o.describe().contains(" lb/")),
        "{objects:?}"
    );
    assert!(
        text(&output.stderr)
            .ends_with("summary: 4 ferrolb object(s) written, 0 item(s) not converted\n")
    );
}

#[test]
fn files_directories_and_stdin_are_read_together() {
    let dir = TempDir::new("dir");
    std::fs::write(dir.path().join("b-pool.yaml"), fixture("list.yaml"))
        .unwrap_or_else(|e| panic!("write: {e}"));
    std::fs::write(dir.path().join("a-notes.txt"), "not a manifest")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let legacy = fixture_path("legacy-configmap.yaml");
    let output = migrate(
        &[
            &dir.path().to_string_lossy(),
            &legacy.to_string_lossy(),
            "-",
        ],
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
         metadata: {name: stdin-pool, namespace: metallb-system}\n\
         spec: {addresses: [198.51.100.0/28]}\n",
    );
    assert_eq!(output.status.code(), Some(2));
    let names: Vec<String> = read_ferrolb_yaml(&text(&output.stdout))
        .iter()
        .map(|o| o.describe())
        .collect();
    assert_eq!(
        names,
        [
            "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/first-pool",
            "ferrolb.io/v1beta1 L2Advertisement ferrolb-system/example",
            "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/default",
            "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/reserved",
            "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/routed",
            "ferrolb.io/v1beta1 L2Advertisement ferrolb-system/config-layer2",
            "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/stdin-pool",
        ]
    );
}

#[test]
fn unreadable_input_exits_1_and_writes_nothing() {
    let missing = migrate(&["/nonexistent/metallb.yaml"], "");
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(text(&missing.stdout), "");
    assert!(
        text(&missing.stderr)
            .starts_with("ferrolb-migrate: error: cannot read /nonexistent/metallb.yaml"),
        "{}",
        text(&missing.stderr)
    );

    let broken = migrate(
        &["-"],
        &format!("{}\nspec: [unclosed\n", fixture("list.yaml")),
    );
    assert_eq!(broken.status.code(), Some(1));
    assert_eq!(text(&broken.stdout), "");
    assert!(
        text(&broken.stderr)
            .starts_with("ferrolb-migrate: error: cannot read standard input: not valid YAML"),
        "{}",
        text(&broken.stderr)
    );
}

#[test]
fn a_usage_error_exits_1_not_2_which_means_partly_converted() {
    let output = migrate(&["--namespace", ""], "");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    assert!(
        text(&output.stderr).contains("--namespace"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn help_names_what_is_left_out_silently_and_the_exit_codes() {
    let output = migrate(&["--help"], "");
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    for needle in [
        "managedFields",
        "last-applied-configuration",
        "status",
        "Exit status: 0",
        "--namespace",
        "[env: FERROLB_NAMESPACE=]",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}
