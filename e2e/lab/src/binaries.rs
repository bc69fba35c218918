//! Finding the workspace's built binaries: the one place that knows where cargo puts them.

use std::path::PathBuf;
use std::process::Command;

/// A binary of this workspace, built next to the running executable (tests run from
/// `target/<profile>/deps`, binaries from `target/<profile>`).
///
/// # Errors
/// When it is not built, with the command that builds it.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory for {}", exe.display()))?;
    for candidate in [dir.join(name), dir.join("..").join(name)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "{name} is not built next to {}: run `cargo build --workspace`",
        exe.display()
    )
}

/// Builds the speaker, controller, API server and lab tool in the calling binary's profile
/// (`cargo run --bin <bench>` builds only that binary, so the others could be stale). Does
/// nothing when not started by cargo.
///
/// # Errors
/// When cargo fails.
pub fn build_lab_binaries() -> anyhow::Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        eprintln!("not started by cargo: using the lab binaries built next to this one");
        return Ok(());
    };
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args(["build", "--quiet"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    for bin in [
        "ferrolb-speaker",
        "ferrolb-controller",
        "test-apiserver",
        "ferrolb-lab",
    ] {
        cmd.args(["--bin", bin]);
    }
    anyhow::ensure!(cmd.status()?.success(), "building the lab binaries failed");
    Ok(())
}
