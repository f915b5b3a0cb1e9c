//! Guest hooks (CreateSandbox guest_hook_path): executables in
//! `<dir>/prestart`, `<dir>/poststart` and `<dir>/poststop` that the agent
//! adds to every container's OCI hooks of that stage, in name order. The
//! container life cycle runs them; this module only finds them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct GuestHooks {
    pub prestart: Vec<PathBuf>,
    pub poststart: Vec<PathBuf>,
    pub poststop: Vec<PathBuf>,
}

/// The hooks under `dir`; a missing stage directory means no hooks for it.
pub fn load(dir: &Path) -> Result<GuestHooks> {
    Ok(GuestHooks {
        prestart: stage(&dir.join("prestart"))?,
        poststart: stage(&dir.join("poststart"))?,
        poststop: stage(&dir.join("poststop"))?,
    })
}

fn stage(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("listing guest hooks in {}", dir.display()))
        }
    };
    let mut hooks: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .collect();
    hooks.sort();
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_per_stage_in_order() {
        let t = tempfile::tempdir().expect("tempdir");
        let pre = t.path().join("prestart");
        std::fs::create_dir(&pre).expect("mkdir");
        for (name, mode) in [("20-b", 0o755), ("10-a", 0o700), ("notes.txt", 0o644)] {
            std::fs::write(pre.join(name), "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(pre.join(name), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
        let hooks = load(t.path()).expect("load");
        assert_eq!(hooks.prestart, vec![pre.join("10-a"), pre.join("20-b")]);
        assert!(hooks.poststart.is_empty() && hooks.poststop.is_empty());
    }
}
