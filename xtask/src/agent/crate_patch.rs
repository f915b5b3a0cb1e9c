//! Source fixes for dependencies that do not compile for one of our targets.
//!
//! The only ones today: nix 0.26.4 (pulled in by ttrpc, up to ttrpc 0.10)
//! and nix 0.25.1 (by cgroups-rs 0.5) do not compile for s390x-musl. It defines the `statfs` accessors twice,
//! under `target_arch = "s390x"` and under `target_env = "musl"` (E0201/E0428);
//! musl's s390x `struct statfs` has 32-bit fields, as the s390x variants say
//! (libc's musl s390x `statfs` agrees), so the musl variants are narrowed to
//! `not(target_arch = "s390x")`. And it takes ptrace's request as glibc's
//! `c_uint` on s390x, where musl's `ptrace()` wants a `c_int`.
//!
//! How it reaches cargo without touching the repository: the pristine
//! `.crate` is checked against Cargo.lock's checksum, unpacked into the
//! content-hash cache and edited by exact text rules (each must match, or the
//! build stops and says which). Cargo then builds in a shadow workspace whose
//! manifest adds `[patch.crates-io]` for it (see `workspace`). Not
//! `--config patch..` with `-Zlockfile-path`: build-std would resolve the
//! standard library against that lockfile too and fail.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::toolchain::{cargo_home, Libc};
use crate::arch::Arch;
use crate::cargo_lock::Workspace;
use crate::{cache, cmd, paths, ui};

/// One text edit in one file of a crate.
#[derive(Clone, Copy)]
struct Edit {
    file: &'static str,
    find: &'static str,
    replace: &'static str,
    /// How many times `find` must occur (all are replaced).
    count: usize,
}

/// A fixed crate version, the targets that need the fix, and its edits.
struct CratePatch {
    name: &'static str,
    version: &'static str,
    needed_for: fn(Arch, Libc) -> bool,
    edits: &'static [Edit],
}

/// Cargo caps a registry crate's lints (`--cap-lints allow`), but a patched
/// crate is a path crate, so its lints come back: nix turns its `unused`
/// warnings (items s390x-musl never uses) into errors, and every build would
/// print its `deprecated` and `unexpected_cfgs` warnings. Allow them all, as
/// cargo does for the pristine crate.
const NIX_LINTS_AS_REGISTRY: Edit = Edit {
    file: "src/lib.rs",
    find: "#![deny(unused)]",
    replace: "#![allow(warnings)]",
    count: 1,
};

/// nix 0.25 and 0.26 share these lines.
const NIX_S390X_MUSL_EDITS: &[Edit] = &[
    NIX_LINTS_AS_REGISTRY,
    // fs_type_t, optimal_transfer_size, block_size, maximum_name_length,
    // and FsType's `any(..)` list (still right with the narrower term).
    Edit {
        file: "src/sys/statfs.rs",
        find: "all(target_os = \"linux\", target_env = \"musl\")",
        replace: "all(target_os = \"linux\", target_env = \"musl\", not(target_arch = \"s390x\"))",
        count: 5,
    },
    // ptrace's request type: c_uint is glibc's on s390x; musl's
    // ptrace() takes a c_int on every arch.
    Edit {
        file: "src/sys/ptrace/linux.rs",
        find: "if #[cfg(any(all(target_os = \"linux\", target_arch = \"s390x\"),",
        replace: "if #[cfg(any(all(target_os = \"linux\", target_arch = \"s390x\", not(target_env = \"musl\")),",
        count: 1,
    },
];

fn s390x_musl(arch: Arch, libc: Libc) -> bool {
    arch == Arch::S390x && libc == Libc::Musl
}

const PATCHES: &[CratePatch] = &[
    // Through ttrpc 0.9 / 0.10.
    CratePatch {
        name: "nix",
        version: "0.26.4",
        needed_for: s390x_musl,
        edits: NIX_S390X_MUSL_EDITS,
    },
    // Through cgroups-rs 0.5.
    CratePatch {
        name: "nix",
        version: "0.25.1",
        needed_for: s390x_musl,
        edits: NIX_S390X_MUSL_EDITS,
    },
];

/// A patched crate ready for cargo.
pub struct Prepared {
    pub name: &'static str,
    pub version: &'static str,
    pub dir: PathBuf,
}

/// The patched sources `arch`/`libc` needs (usually none) for the workspace
/// at `root` (its Cargo.lock pins the versions).
pub fn prepare(root: &Path, arch: Arch, libc: Libc) -> Result<Vec<Prepared>> {
    PATCHES
        .iter()
        .filter(|p| (p.needed_for)(arch, libc))
        .map(|p| {
            prepare_one(root, p)
                .with_context(|| format!("patching {} {} for {arch}", p.name, p.version))
        })
        .collect()
}

fn prepare_one(root: &Path, patch: &CratePatch) -> Result<Prepared> {
    let checksum = lock_checksum(root, patch.name, patch.version)?;
    let mut key = cache::KeyHasher::new("crate-patch");
    key.str(patch.name).str(patch.version).str(&checksum);
    for e in patch.edits {
        key.str(e.file).str(e.find).str(e.replace);
    }
    let key = key.finish();
    let entry = cache::fill("crate-patch", &key, |tmp| {
        // From the input store when `--inputs` names one (checked there).
        let crate_file = match crate::fetch::store() {
            Some(store) => store.crate_file(patch.name, patch.version, &checksum)?,
            None => find_crate_file(&of(root), patch.name, patch.version)?,
        };
        let actual = cache::sha256_file(&crate_file)?;
        if actual != checksum {
            bail!(
                "{} has sha256 {actual}, Cargo.lock says {checksum}",
                crate_file.display()
            );
        }
        crate::fetch::vendor::unpack_crate(&crate_file, tmp)?;
        let src = tmp.join(format!("{}-{}", patch.name, patch.version));
        patch.edits.iter().try_for_each(|e| apply(&src, e))
    })?;
    Ok(Prepared {
        name: patch.name,
        version: patch.version,
        dir: entry.join(format!("{}-{}", patch.name, patch.version)),
    })
}

/// The registry checksum `root`'s Cargo.lock pins for `name` `version`.
fn lock_checksum(root: &Path, name: &str, version: &str) -> Result<String> {
    of(root)
        .registry_checksums()?
        .remove(&(name.to_string(), version.to_string()))
        .with_context(|| {
            format!("Cargo.lock pins no registry {name} {version}: is the patch still needed?")
        })
}

/// The workspace at `root` (this checkout's, or another tree's).
fn of(root: &Path) -> Workspace {
    Workspace {
        dir: root.to_path_buf(),
    }
}

/// The downloaded `.crate` of a registry package `ws`'s lock pins, running
/// `cargo fetch --locked` for `ws` if cargo's registry cache lacks it.
pub fn find_crate_file(ws: &Workspace, name: &str, version: &str) -> Result<PathBuf> {
    let file = format!("{name}-{version}.crate");
    if let Some(found) = search_registry_cache(&file) {
        return Ok(found);
    }
    let phase = ui::Phase::start(format!("cargo fetch --locked ({})", ws.dir.display()));
    cmd::run(
        Command::new(cmd::cargo())
            .current_dir(&ws.dir)
            .arg("fetch")
            .arg("--locked")
            .arg("--manifest-path")
            .arg(ws.dir.join("Cargo.toml"))
            // The std workspace uses nightly cargo features.
            .env("RUSTC_BOOTSTRAP", "1"),
        &paths::host_log("agent", "fetch"),
    )?;
    phase.done("");
    search_registry_cache(&file)
        .with_context(|| format!("{file} is not in cargo's registry cache after cargo fetch"))
}

fn search_registry_cache(file: &str) -> Option<PathBuf> {
    let root = cargo_home()?.join("registry/cache");
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    dirs.into_iter().map(|d| d.join(file)).find(|p| p.is_file())
}

fn apply(src: &Path, edit: &Edit) -> Result<()> {
    let path = src.join(edit.file);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let found = text.matches(edit.find).count();
    if found != edit.count {
        bail!(
            "{}: expected {} occurrence(s) of {:?}, found {found}",
            edit.file,
            edit.count,
            edit.find
        );
    }
    fs::write(&path, text.replace(edit.find, edit.replace))
        .with_context(|| format!("writing {}", path.display()))
}

/// A workspace that builds like the repository's but with `patches` applied:
/// every top-level entry of the repo is symlinked into `dir`, except
/// Cargo.toml (the repo's plus a `[patch.crates-io]` table), Cargo.lock (the
/// repo's with the patched packages turned into path sources, so `--locked`
/// still holds) and target/. The patched sources are linked in as
/// `patched/<name>-<version>`: cargo hashes a path package's location
/// relative to the workspace root into its `-C metadata`, so a cache path
/// (which differs between machines) would change symbol hashes, and with
/// them the code layout of every crate above nix. Returns the repo root itself
/// when there is nothing to patch. The repo's own files are never modified.
pub fn workspace(repo: &Path, patches: &[Prepared], dir: &Path) -> Result<PathBuf> {
    if patches.is_empty() {
        return Ok(repo.to_path_buf());
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    link_entries(repo, dir)?;
    link_patched(patches, &dir.join(PATCHED_DIR))?;
    let manifest = fs::read_to_string(repo.join("Cargo.toml")).context("reading Cargo.toml")?;
    write_if_changed(
        &dir.join("Cargo.toml"),
        &patched_manifest(&manifest, patches)?,
    )?;
    let lock = fs::read_to_string(repo.join("Cargo.lock")).context("reading Cargo.lock")?;
    write_if_changed(&dir.join("Cargo.lock"), &patched_lock(&lock, patches)?)?;
    Ok(dir.to_path_buf())
}

/// Where the shadow workspace links the patched crates (excluded from it).
const PATCHED_DIR: &str = "patched";

fn patched_rel_path(p: &Prepared) -> String {
    format!("{PATCHED_DIR}/{}-{}", p.name, p.version)
}

fn link_patched(patches: &[Prepared], dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for p in patches {
        let link = dir.join(format!("{}-{}", p.name, p.version));
        replace_symlink(&p.dir, &link)?;
    }
    Ok(())
}

/// Point `link` at `target` unless it already does.
fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if fs::read_link(link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).with_context(|| format!("replacing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link).with_context(|| format!("linking {}", link.display()))
}

fn link_entries(repo: &Path, dir: &Path) -> Result<()> {
    for entry in fs::read_dir(repo).with_context(|| format!("listing {}", repo.display()))? {
        let name = entry?.file_name();
        if ["Cargo.toml", "Cargo.lock", "target", ".git"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        replace_symlink(&repo.join(&name), &dir.join(&name))?;
    }
    Ok(())
}

/// The repo's manifest with `[patch.crates-io] <name>-<version> = { package =
/// <name>, path = "patched/<name>-<version>" }`, and `patched` excluded from
/// the workspace.
fn patched_manifest(manifest: &str, patches: &[Prepared]) -> Result<String> {
    let mut doc: toml::Table = toml::from_str(manifest).context("parsing Cargo.toml")?;
    let workspace = doc
        .get_mut("workspace")
        .and_then(|w| w.as_table_mut())
        .context("Cargo.toml has no [workspace] table")?;
    let exclude = workspace
        .entry("exclude")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
        .context("Cargo.toml: workspace.exclude is not a list")?;
    exclude.push(PATCHED_DIR.into());
    let patch = doc
        .entry("patch")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .context("Cargo.toml: [patch] is not a table")?
        .entry("crates-io")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .context("Cargo.toml: [patch.crates-io] is not a table")?;
    for p in patches {
        let mut spec = toml::Table::new();
        spec.insert("package".into(), p.name.into());
        spec.insert("path".into(), patched_rel_path(p).into());
        // One key per version: cargo can patch several versions of a crate.
        let key = format!("{}-{}", p.name, p.version.replace('.', "_"));
        patch.insert(key, toml::Value::Table(spec));
    }
    Ok(format!(
        "# Generated by cargo xtask agent (crate_patch.rs); do not edit.\n{}",
        toml::to_string(&doc).context("writing the patched Cargo.toml")?
    ))
}

/// The repo's lockfile with each patched package's registry `source` and
/// `checksum` lines dropped: that is how Cargo.lock records a path source.
fn patched_lock(lock: &str, patches: &[Prepared]) -> Result<String> {
    let mut blocks: Vec<String> = lock.split("\n\n").map(str::to_string).collect();
    for p in patches {
        let head = format!(
            "[[package]]\nname = \"{}\"\nversion = \"{}\"\n",
            p.name, p.version
        );
        let block = blocks
            .iter_mut()
            .find(|b| b.starts_with(&head))
            .with_context(|| format!("Cargo.lock has no {} {}", p.name, p.version))?;
        *block = block
            .lines()
            .filter(|l| !l.starts_with("source = ") && !l.starts_with("checksum = "))
            .collect::<Vec<_>>()
            .join("\n");
    }
    Ok(blocks.join("\n\n"))
}

/// Keep the mtime of an unchanged file, so cargo sees nothing new.
fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix_patch_only_for_s390x_musl() {
        let needed = |a, l| (PATCHES[0].needed_for)(a, l);
        assert!(needed(Arch::S390x, Libc::Musl));
        assert!(!needed(Arch::S390x, Libc::Gnu));
        assert!(!needed(Arch::Aarch64, Libc::Musl));
    }

    #[test]
    fn edit_with_wrong_count_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src")).unwrap();
        fs::write(dir.path().join("src/a.rs"), "x x").unwrap();
        let edit = Edit {
            file: "src/a.rs",
            find: "x",
            replace: "y",
            count: 1,
        };
        let err = apply(dir.path(), &edit).unwrap_err().to_string();
        assert!(err.contains("src/a.rs") && err.contains("found 2"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join("src/a.rs")).unwrap(),
            "x x"
        );
        let edit = Edit { count: 2, ..edit };
        apply(dir.path(), &edit).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("src/a.rs")).unwrap(),
            "y y"
        );
    }

    #[test]
    fn lock_and_manifest_point_at_the_patched_source() {
        let patches = [Prepared {
            name: "nix",
            version: "0.26.4",
            dir: PathBuf::from("/cache/nix-0.26.4"),
        }];
        let lock = "version = 4\n\n[[package]]\nname = \"nix\"\nversion = \"0.26.4\"\nsource = \"registry+x\"\nchecksum = \"ab\"\ndependencies = [\n \"libc\",\n]\n\n[[package]]\nname = \"nix\"\nversion = \"0.29.0\"\nsource = \"registry+x\"\n";
        let out = patched_lock(lock, &patches).unwrap();
        assert!(out.contains("version = \"0.26.4\"\ndependencies"), "{out}");
        assert!(out.contains("version = \"0.29.0\"\nsource"), "{out}");
        let manifest = patched_manifest("[workspace]\nmembers = []\n", &patches).unwrap();
        let doc: toml::Table = toml::from_str(&manifest).unwrap();
        assert_eq!(
            doc["patch"]["crates-io"]["nix-0_26_4"]["path"].as_str(),
            Some("patched/nix-0.26.4")
        );
        assert_eq!(doc["workspace"]["exclude"][0].as_str(), Some("patched"));
        let missing = patched_lock("version = 4\n", &patches).unwrap_err();
        assert!(missing.to_string().contains("nix 0.26.4"));
    }

    #[test]
    fn lock_pins_the_patched_nix() {
        // Fails when an upgrade drops one: then remove that patch.
        for p in PATCHES {
            let sum = lock_checksum(&paths::repo_root(), p.name, p.version).unwrap();
            assert_eq!(sum.len(), 64);
        }
    }
}
