//! Finding the workspace's built binaries: the one place that knows where cargo puts them.

use std::path::PathBuf;

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
