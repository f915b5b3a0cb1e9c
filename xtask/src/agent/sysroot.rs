//! A Rust sysroot holding Debian's prebuilt std for a foreign arch, for the
//! static glibc route: `libstd-rust-web-dev:<arch>` at the version the lock
//! pins for the host's rustc-web, unpacked (not installed) into the cache.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::cache::{self, KeyHasher};
use crate::setup;

const STD_PACKAGE: &str = "libstd-rust-web-dev";

/// The sysroot dir for `arch` (contains `lib/rustlib/<arch>-unknown-linux-gnu`).
pub fn ensure_gnu_sysroot(arch: Arch) -> Result<PathBuf> {
    // Compiler and std must be the exact same build: take the host's pin.
    let version = setup::pinned_version(STD_PACKAGE)?;
    let spec = format!("{STD_PACKAGE}:{}={version}", arch.debian());
    let triple = arch.rust_target("gnu");
    let key = KeyHasher::new("agent-gnu-sysroot").str(&spec).finish();
    cache::fill("agent-gnu-sysroot", &key, |dir| {
        let unpacked = dir.join("unpacked");
        setup::download_and_extract(&spec, &unpacked)?;
        let from = unpacked.join("usr/lib/rustlib").join(&triple);
        if !from.join("lib").is_dir() {
            bail!("{spec} has no usr/lib/rustlib/{triple}/lib");
        }
        let to = dir.join("lib/rustlib");
        fs::create_dir_all(&to)?;
        fs::rename(&from, to.join(&triple))
            .with_context(|| format!("moving {} into the sysroot", from.display()))?;
        fs::remove_dir_all(&unpacked).ok();
        Ok(())
    })
}
