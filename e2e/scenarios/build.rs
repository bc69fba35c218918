//! Sets `cfg(lab_root)` when the build runs as root (effective uid 0), so the network-namespace
//! tests run there and count as ignored elsewhere (`#[cfg_attr(not(lab_root), ignore = ...)]`)
//! instead of passing without testing anything. Tests and build run as the same user.

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    // `Uid:` real, effective, saved, filesystem.
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn main() {
    println!("cargo:rustc-check-cfg=cfg(lab_root)");
    println!("cargo:rerun-if-env-changed=USER");
    println!("cargo:rerun-if-env-changed=SUDO_UID");
    if effective_uid() == Some(0) {
        println!("cargo:rustc-cfg=lab_root");
    }
}
