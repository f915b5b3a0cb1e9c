//! Guest hooks (CreateSandbox guest_hook_path): executables in
//! `<dir>/prestart`, `<dir>/poststart` and `<dir>/poststop` that the agent
//! appends to every container's OCI hooks of that stage, in name order, as
//! Kata's agent does (src/agent/src/sandbox.rs add_hooks/find_hooks,
//! rpc.rs append_guest_hooks). The container life cycle runs them; this
//! module finds them and adds them to a spec.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::{Hook, Spec};

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

/// Regular executable files only: symlinks and directories are skipped,
/// as Kata's find_hooks skips them.
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
        .filter(|e| {
            e.file_type().is_ok_and(|t| t.is_file())
                && e.metadata()
                    .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        })
        .map(|e| e.path())
        .collect();
    hooks.sort();
    Ok(hooks)
}

/// An OCI hook for a guest hook file: argv is `<file name> <stage>`, as
/// Kata's agent calls them.
fn hook(path: &Path, stage: &str) -> Result<Hook> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("guest hook {} has no UTF-8 name", path.display()))?;
    let mut h = Hook::default();
    h.set_path(path.to_path_buf());
    h.set_args(Some(vec![name.to_string(), stage.to_string()]));
    Ok(h)
}

impl GuestHooks {
    pub fn is_empty(&self) -> bool {
        self.prestart.is_empty() && self.poststart.is_empty() && self.poststop.is_empty()
    }

    /// Append the guest hooks of each stage after the spec's own hooks of
    /// that stage.
    pub fn append_to(&self, spec: &mut Spec) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let mut hooks = spec.hooks().clone().unwrap_or_default();
        let add = |own: &Option<Vec<Hook>>, guest: &[PathBuf], stage: &str| -> Result<_> {
            let mut all = own.clone().unwrap_or_default();
            for p in guest {
                all.push(hook(p, stage)?);
            }
            Ok((!all.is_empty()).then_some(all))
        };
        let prestart = add(hooks.prestart(), &self.prestart, "prestart")?;
        let poststart = add(hooks.poststart(), &self.poststart, "poststart")?;
        let poststop = add(hooks.poststop(), &self.poststop, "poststop")?;
        hooks.set_prestart(prestart);
        hooks.set_poststart(poststart);
        hooks.set_poststop(poststop);
        spec.set_hooks(Some(hooks));
        Ok(())
    }
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
        std::os::unix::fs::symlink(pre.join("10-a"), pre.join("30-link")).expect("symlink");
        let hooks = load(t.path()).expect("load");
        assert_eq!(hooks.prestart, vec![pre.join("10-a"), pre.join("20-b")]);
        assert!(hooks.poststart.is_empty() && hooks.poststop.is_empty());
    }
}
