//! The `ferrolb-lab` command line. Being an integration test of this package also makes
//! `cargo nextest run --workspace` build the binary the scenario tests start.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_lists_the_lab_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-lab"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["up", "demo", "down"] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`{command}` missing from:\n{text}"
        );
    }
}

#[test]
fn an_unknown_command_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrolb-lab"))
        .arg("no-such-command")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
