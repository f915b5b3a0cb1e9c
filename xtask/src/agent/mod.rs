//! `cargo xtask agent`: cross-compile the agent, static, stripped, for each
//! arch, to target/artifacts/<arch>/kata-agent; `--smoke` then runs each one
//! under qemu-user (see smoke.rs).
//!
//! Modules: toolchain (route probing, tool names), unwind (libunwind shim for
//! Debian's musl route), sysroot (foreign gnu std), crate_patch (source fixes
//! for dependencies that do not build for a target), compile (the cargo run),
//! elf (header checks), smoke (qemu-user tests).
//!
//! Every build compiles a [`Tree`]: this checkout (into the artifacts), or
//! another one (`bench compare --base REV`: left where cargo put it).

mod compile;
mod crate_patch;
pub mod elf;
mod smoke;
mod sysroot;
pub mod toolchain;
mod unwind;

/// A registry crate's `.crate` file (for the input store).
pub use crate_patch::find_crate_file as crate_file;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::{paths, setup, ui};
use compile::Plan;
pub use compile::Profile;
use toolchain::{probe, Libc};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchSelection,
    /// C library to link statically (musl is what the image ships).
    #[arg(long, value_enum, default_value = "musl")]
    libc: Libc,
    /// After building, run each binary under qemu-user: `--version` must name
    /// the arch and a stand-alone agent must answer Health.Check.
    #[arg(long)]
    smoke: bool,
    /// Cargo profile: release (what the image ships) or loop (fast to
    /// rebuild, installed under target/xtask/loop/<arch>/, never shipped).
    #[arg(long, value_enum, default_value = "release")]
    profile: Profile,
}

pub fn run(args: Args) -> Result<()> {
    let arches = args.arch.arches();
    let mut built = Vec::new();
    for &arch in &arches {
        let started = Instant::now();
        let path = build(arch, args.libc, args.profile)?;
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        ui::info(format!(
            "xtask agent: {arch} {}: {} ({size} bytes, {:.1} s)",
            args.libc.name(),
            path.display(),
            started.elapsed().as_secs_f64()
        ));
        built.push((arch, path));
    }
    if args.smoke {
        let agent_ctl = smoke::build_agent_ctl()?;
        for (arch, path) in &built {
            smoke::run(*arch, path, &agent_ctl)
                .with_context(|| format!("smoke test of the {arch} agent"))?;
        }
    }
    Ok(())
}

/// The musl agent for `arch`, built if anything changed; the image step's entry.
pub fn ensure_built(arch: Arch) -> Result<PathBuf> {
    build(arch, Libc::Musl, Profile::Release)
}

/// The musl agent of `profile` for `arch` (`vm test` builds the loop one).
pub fn ensure_built_profile(arch: Arch, profile: Profile) -> Result<PathBuf> {
    build(arch, Libc::Musl, profile)
}

/// Check an agent built elsewhere (`image --agent`, Kata's AGENT_SOURCE_BIN)
/// like our own: an ELF for `arch`, statically linked, and `--version` runs
/// under qemu-user and names the arch.
pub fn check_given(arch: Arch, path: &Path) -> Result<()> {
    setup::ensure_host_packages(&["cross"], &[arch])?;
    elf::check_static(path, arch)
        .with_context(|| format!("{} cannot be the {arch} guest agent", path.display()))?;
    smoke::version(arch, path)
        .with_context(|| format!("{} cannot be the {arch} guest agent", path.display()))
}

/// A source tree the agent is built from, and the target dir of that build.
pub struct Tree {
    /// The workspace root (Cargo.toml, Cargo.lock, agent/).
    pub root: PathBuf,
    /// Its `target/`: cargo's output goes under `xtask/agent/<route>/`, logs
    /// under `xtask/agent/<arch>/`, as for this checkout.
    pub target: PathBuf,
}

impl Tree {
    /// This checkout and its target dir.
    pub fn this() -> Tree {
        Tree {
            root: paths::repo_root(),
            target: paths::target_dir(),
        }
    }
}

/// Provision, plan, run cargo, check the ELF, install the artifact.
fn build(arch: Arch, libc: Libc, profile: Profile) -> Result<PathBuf> {
    let out = compile_checked(&Tree::this(), arch, libc, profile)?;
    let dest = artifact_path(arch, libc, profile);
    install_if_changed(&out, &dest)?;
    Ok(dest)
}

/// The release musl agent of another checkout (`bench compare --base REV`),
/// built by this xtask's plan exactly as this checkout's would be, and left
/// where cargo put it under `tree.target`: never installed as an artifact.
pub fn build_tree(tree: &Tree, arch: Arch) -> Result<PathBuf> {
    compile_checked(tree, arch, Libc::Musl, Profile::Release)
}

/// Provision, plan, run cargo in `tree`, check the ELF; cargo's output path.
fn compile_checked(tree: &Tree, arch: Arch, libc: Libc, profile: Profile) -> Result<PathBuf> {
    setup::ensure_host_packages(&["cross"], &[arch])?;
    let route = probe(arch, libc);
    let plan = Plan::new(tree, arch, libc, route, profile)
        .with_context(|| format!("preparing the {} build for {arch}", libc.name()))?;
    // One log per profile: a loop build and a release one may run at once.
    let name = match profile {
        Profile::Release => format!("cargo-{}.log", libc.name()),
        Profile::Loop => format!("cargo-{}-{}.log", libc.name(), profile.name()),
    };
    let log = tree.target.join("xtask/agent").join(arch.name()).join(name);
    let out = plan.run(&log)?;
    elf::check(&out, arch).with_context(|| format!("cargo built a wrong binary for {arch}"))?;
    Ok(out)
}

/// The image ships the musl agent at target/artifacts/<arch>/kata-agent; a
/// gnu build goes next to it, under gnu/, so it never replaces that one. A
/// loop build is never shipped: it lives under target/xtask/loop/<arch>/.
fn artifact_path(arch: Arch, libc: Libc, profile: Profile) -> PathBuf {
    let dir = match profile {
        Profile::Release => paths::artifacts_dir(arch),
        Profile::Loop => paths::loop_dir(arch),
    };
    match libc {
        Libc::Musl => dir.join(compile::BINARY),
        Libc::Gnu => dir.join("gnu").join(compile::BINARY),
    }
}

/// Copy `from` to `to` only when the bytes differ, so an unchanged agent keeps
/// its mtime and later steps stay fresh. Atomic: write a temp file, rename.
fn install_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if fs::read(to).map(|old| old == new).unwrap_or(false) {
        return Ok(());
    }
    let dir = to.parent().context("artifact path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", compile::BINARY));
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&new)?;
    f.sync_all()?;
    drop(f);
    set_executable(&tmp)?;
    fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))
}

fn set_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_build_does_not_replace_the_shipped_agent() {
        let musl = artifact_path(Arch::Aarch64, Libc::Musl, Profile::Release);
        let gnu = artifact_path(Arch::Aarch64, Libc::Gnu, Profile::Release);
        assert!(musl.ends_with("aarch64/kata-agent"), "{musl:?}");
        assert!(gnu.ends_with("aarch64/gnu/kata-agent"), "{gnu:?}");
    }

    #[test]
    fn loop_build_stays_out_of_the_artifacts() {
        let shipped = artifact_path(Arch::X86_64, Libc::Musl, Profile::Release);
        let looped = artifact_path(Arch::X86_64, Libc::Musl, Profile::Loop);
        assert!(
            !looped.starts_with(paths::artifacts_dir(Arch::X86_64)),
            "{looped:?}"
        );
        assert!(looped.ends_with("loop/x86_64/kata-agent"), "{looped:?}");
        assert_ne!(shipped, looped);
    }

    #[test]
    fn install_keeps_mtime_when_unchanged() {
        let dir = std::env::temp_dir().join(format!("xtask-install-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (src, dst) = (dir.join("src"), dir.join("out/kata-agent"));
        fs::write(&src, b"one").unwrap();
        install_if_changed(&src, &dst).unwrap();
        let first = fs::metadata(&dst).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        install_if_changed(&src, &dst).unwrap();
        assert_eq!(fs::metadata(&dst).unwrap().modified().unwrap(), first);
        fs::write(&src, b"two").unwrap();
        install_if_changed(&src, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"two");
        fs::remove_dir_all(&dir).ok();
    }
}
