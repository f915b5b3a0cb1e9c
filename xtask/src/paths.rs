//! Where things live: the repo root, artifacts, per-step work dirs.

use std::path::PathBuf;

use crate::arch::Arch;

/// The workspace root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    let xtask_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().map(PathBuf::from).unwrap_or(xtask_dir)
}

/// `target/` of the workspace (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// `target/artifacts/<arch>/`: the outputs a user ships.
pub fn artifacts_dir(arch: Arch) -> PathBuf {
    target_dir().join("artifacts").join(arch.name())
}

/// `target/xtask/loop/<arch>/`: the agent and images of the edit-to-verdict
/// loop (`vm test`'s default profile), apart from what ships.
pub fn loop_dir(arch: Arch) -> PathBuf {
    work_dir("loop", arch)
}

/// `target/xtask/<step>/<arch>/`: a step's scratch space.
pub fn work_dir(step: &str, arch: Arch) -> PathBuf {
    target_dir().join("xtask").join(step).join(arch.name())
}

/// `target/xtask/<step>/<name>.log`: the log of a host-wide part of a step
/// (apt, host tool builds); per-arch logs live in the step's work dir.
pub fn host_log(step: &str, name: &str) -> PathBuf {
    target_dir()
        .join("xtask")
        .join(step)
        .join(format!("{name}.log"))
}
