//! Writes the ferrolb CRDs to `config/crd/` (or the directory given as the first argument).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/crd"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    for (name, text) in ferrolb_api::crd::files()? {
        std::fs::write(dir.join(&name), text)?;
        eprintln!("wrote {}", dir.join(&name).display());
    }
    Ok(())
}
