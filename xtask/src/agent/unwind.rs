//! `libunwind.a` for Debian's musl route: Rust's musl std links `-lunwind`
//! and Debian's rustc has no self-contained copy. We take the cross gcc's
//! `libgcc_eh.a` and add one object (dl_find_object.c) that supplies what
//! musl lacks. Built once per arch into the content-hash cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::toolchain::{cross_ar, cross_gcc, musl_gcc, tool_output};
use crate::arch::Arch;
use crate::cache::{self, KeyHasher};
use crate::cmd;

const SHIM_SOURCE: &str = include_str!("dl_find_object.c");
const SHIM_CFLAGS: [&str; 4] = ["-O2", "-fPIC", "-ffile-prefix-map=.=.", "-c"];

/// The cache dir holding `libunwind.a` for `arch` (pass it to rustc with -L).
pub fn ensure_libunwind(arch: Arch) -> Result<PathBuf> {
    let gcc = cross_gcc(arch);
    let libgcc_eh = PathBuf::from(
        tool_output(&gcc, &["-print-file-name=libgcc_eh.a"])
            .with_context(|| format!("asking {gcc} for libgcc_eh.a"))?,
    );
    if !libgcc_eh.is_absolute() || !libgcc_eh.is_file() {
        bail!(
            "{gcc} has no libgcc_eh.a (got {}); install the cross gcc package",
            libgcc_eh.display()
        );
    }
    let mut key = KeyHasher::new("agent-libunwind");
    key.str(arch.name())
        .str(SHIM_SOURCE)
        .str(&SHIM_CFLAGS.join(" "))
        .str(&tool_output(&gcc, &["--version"])?)
        .file("libgcc_eh.a", &libgcc_eh)?;
    let key = key.finish();
    cache::fill("agent-libunwind", &key, |dir| build(arch, &libgcc_eh, dir))
}

fn build(arch: Arch, libgcc_eh: &Path, dir: &Path) -> Result<()> {
    fs::write(dir.join("dl_find_object.c"), SHIM_SOURCE)?;
    // Compile inside `dir` with relative names so no temp path gets recorded.
    run(Command::new(musl_gcc(arch))
        .current_dir(dir)
        .args(SHIM_CFLAGS)
        .args(["dl_find_object.c", "-o", "dl_find_object.o"]))?;
    let lib = dir.join("libunwind.a");
    fs::copy(libgcc_eh, &lib).with_context(|| format!("copying {}", libgcc_eh.display()))?;
    // `D`: deterministic member headers (no timestamps, uids, modes).
    run(Command::new(cross_ar(arch)).current_dir(dir).args([
        "rD",
        "libunwind.a",
        "dl_find_object.o",
    ]))?;
    fs::remove_file(dir.join("dl_find_object.o")).ok();
    Ok(())
}

fn run(c: &mut Command) -> Result<()> {
    cmd::output(c).map(|_| ())
}
