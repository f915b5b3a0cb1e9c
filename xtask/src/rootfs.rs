//! Assemble the guest rootfs from a recipe (osbuilder-configs/<recipe>.toml)
//! and its package lock (rootfs/<recipe>.lock); `rootfs lock` refreshes the lock.

mod apt;
mod chrony;
pub mod debs;
pub mod lock;
pub mod recipe;
pub mod scan;
pub mod tree;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::paths;
pub use lock::{Lock, LockEntry};
pub use recipe::Recipe;
pub use tree::Tree;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Build the rootfs tree under target/xtask/rootfs/<arch>/<recipe>/tree.
    Build(BuildArgs),
    /// Refresh rootfs/<recipe>.lock from apt's current candidates (all arches).
    Lock(LockArgs),
}

#[derive(clap::Args)]
pub struct BuildArgs {
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchSelection,
    /// The recipe in osbuilder-configs/.
    #[arg(long, default_value = recipe::DEFAULT_RECIPE, value_parser = recipe::arg_parser())]
    recipe: String,
    /// Add the recipe's debug_console packages and /bin/sh.
    #[arg(long)]
    debug_console: bool,
}

#[derive(clap::Args)]
pub struct LockArgs {
    /// The recipe to lock; every recipe in osbuilder-configs/ when omitted.
    #[arg(long, value_parser = recipe::arg_parser())]
    recipe: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Sub::Build(a) => {
            let recipe = Recipe::load(&a.recipe)?;
            Lock::load(&recipe.name)?;
            for arch in a.arch.arches() {
                let agent = agent_binary(arch, None)?;
                let t = build(arch, &recipe, &agent, a.debug_console)?;
                eprintln!(
                    "xtask rootfs: {} ({}): {} ({} entries, digest {})",
                    recipe.name,
                    recipe.recipe.description,
                    t.root.display(),
                    t.nodes.len(),
                    t.digest
                );
            }
            Ok(())
        }
        Sub::Lock(a) => {
            let names = match a.recipe {
                Some(r) => {
                    recipe::check_name(&r)?;
                    vec![r]
                }
                None => recipe::names()?,
            };
            names.iter().try_for_each(|n| relock(n))
        }
    }
}

/// The packages a build of `recipe` for `arch` unpacks, from the lock: the
/// recipe's list (plus the debug-console packages when asked), or, for a
/// recipe that resolves dependencies or has `extra` packages, the whole locked closure of the arch
/// (the debug-console packages themselves only when asked; a dependency they
/// share with the rest stays).
pub fn packages(
    arch: Arch,
    recipe: &Recipe,
    lock: &Lock,
    debug_console: bool,
) -> Result<Vec<LockEntry>> {
    let mut wanted = recipe.packages.install.clone();
    wanted.extend(recipe.packages.extra.iter().cloned());
    if debug_console {
        wanted.extend(recipe.packages.debug_console.iter().cloned());
    }
    let mut entries = lock.select(arch, &wanted)?;
    if recipe.takes_closure() {
        let optional = &recipe.packages.debug_console;
        entries = lock
            .for_arch(arch)
            .into_iter()
            .filter(|e| debug_console || !optional.contains(&e.name))
            .collect();
    }
    entries.sort();
    Ok(entries)
}

/// Build the tree of `recipe` for `arch` in its work dir.
pub fn build(
    arch: Arch,
    recipe: &Recipe,
    agent: &std::path::Path,
    debug_console: bool,
) -> Result<Tree> {
    let lock = Lock::load(&recipe.name)?;
    let entries = packages(arch, recipe, &lock, debug_console)?;
    let root = paths::work_dir("rootfs", arch)
        .join(&recipe.name)
        .join("tree");
    let inputs = tree::TreeInputs {
        recipe,
        packages: &entries,
        agent,
        debug_console,
        epoch: crate::epoch::image()?,
    };
    tree::build(&root, &inputs)
        .with_context(|| format!("building the {} rootfs for {arch}", recipe.name))
}

/// Refresh the lock of one recipe for all four arches.
fn relock(name: &str) -> Result<()> {
    let recipe = Recipe::load(name)?;
    let old = Lock::load(name).unwrap_or_default();
    let now = crate::fetch::snapshot_of_apt_lists()?;
    let mut entries = Vec::new();
    for arch in Arch::ALL {
        eprintln!("xtask rootfs lock: resolving {name} for {}", arch.debian());
        for (roots, follow) in recipe.lock_groups() {
            for e in apt::resolve(arch, &roots, follow, &recipe.packages.exclude)? {
                if !entries.contains(&e) {
                    entries.push(e);
                }
            }
        }
    }
    // A line that did not change keeps the snapshot time it was locked at.
    for e in &mut entries {
        e.snapshot = old
            .entries
            .iter()
            .find(|o| {
                (&o.name, &o.version, &o.arch, &o.sha256)
                    == (&e.name, &e.version, &e.arch, &e.sha256)
            })
            .and_then(|o| o.snapshot.clone())
            .or_else(|| now.clone());
    }
    let lock = Lock { entries };
    let path = lock::lock_path(name);
    std::fs::write(&path, lock.render(name))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "xtask rootfs lock: wrote {} ({} lines)",
        path.display(),
        lock.entries.len()
    );
    Ok(())
}

/// The agent binary to install: `given` (`image --agent PATH`), else
/// `KATA_IMAGE_AGENT` when set (verify-repro hands both builds the same one),
/// else the agent step's artifact. A given agent is checked like a built one
/// (`agent::check_given`).
pub fn agent_binary(arch: Arch, given: Option<&Path>) -> Result<PathBuf> {
    let (p, from) = match (given, std::env::var_os("KATA_IMAGE_AGENT")) {
        (Some(p), _) => (p.to_path_buf(), "--agent"),
        (None, Some(p)) => (PathBuf::from(p), "KATA_IMAGE_AGENT"),
        (None, None) => return crate::agent::ensure_built(arch),
    };
    if !p.is_file() {
        bail!("{from} {} is not a file", p.display());
    }
    crate::agent::check_given(arch, &p).with_context(|| format!("checking the {from} agent"))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A given agent is checked like a built one: a dynamically linked host
    /// binary, or one for another arch, is refused before it reaches an image.
    #[test]
    fn given_agent_must_be_a_static_binary_for_the_arch() {
        let ls = Path::new("/bin/ls");
        let err = format!("{:#}", agent_binary(Arch::X86_64, Some(ls)).unwrap_err());
        assert!(
            err.contains("PT_INTERP") || err.contains("e_machine"),
            "{err}"
        );
        let err = format!("{:#}", agent_binary(Arch::Aarch64, Some(ls)).unwrap_err());
        assert!(err.contains("e_machine"), "{err}");
        let err = agent_binary(Arch::X86_64, Some(Path::new("/nonexistent/agent")));
        assert!(format!("{:#}", err.unwrap_err()).contains("is not a file"));
    }

    fn lock() -> Lock {
        let h = "ab".repeat(32);
        Lock::parse(&format!(
            "busybox-static 1 amd64 {h}\nca-certificates 2 all {h}\nlibc6 3 amd64 {h}\nlibc6 3 arm64 {h}\n"
        ))
        .unwrap()
    }

    #[test]
    fn selects_listed_packages_or_the_closure() {
        let mut r = Recipe::load("agent-init").unwrap();
        r.packages.extra.clear();
        let names = |v: Vec<LockEntry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
        let plain = packages(Arch::X86_64, &r, &lock(), false).unwrap();
        assert_eq!(names(plain), ["ca-certificates"]);
        let debug = packages(Arch::X86_64, &r, &lock(), true).unwrap();
        assert_eq!(names(debug), ["busybox-static", "ca-certificates"]);
        r.packages.resolve_dependencies = true;
        let closure = packages(Arch::X86_64, &r, &lock(), false).unwrap();
        assert_eq!(names(closure), ["ca-certificates", "libc6"]);
        // EXTRA_PKGS bring their closure into a recipe that lists exactly.
        r.packages.resolve_dependencies = false;
        r.packages.extra = vec!["libc6".into()];
        let extra = packages(Arch::X86_64, &r, &lock(), false).unwrap();
        assert_eq!(names(extra), ["ca-certificates", "libc6"]);
        assert!(packages(Arch::S390x, &r, &lock(), true).is_err());
    }
}
