//! `verify-repro`: build the images twice, in two fresh detached worktrees of
//! HEAD under target/xtask/repro/ (different paths, different target dirs),
//! and compare every artifact byte for byte.
//!
//! The kernel is taken from the current tree (the kernel step's shared
//! content-hash cache) unless --rebuild-kernel; the agent likewise unless
//! --rebuild-agent: rebuilding either twice costs minutes, the image step seconds.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::{cmd, paths};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchSelection,
    /// The recipe in osbuilder-configs/.
    #[arg(long, default_value = crate::rootfs::recipe::DEFAULT_RECIPE,
          value_parser = crate::rootfs::recipe::arg_parser())]
    recipe: String,
    /// The disk image's filesystem (default: the recipe's).
    #[arg(long, value_enum)]
    fs: Option<crate::rootfs::recipe::Filesystem>,
    /// Build a measured root (`image --verity`) and compare its root hash.
    #[arg(long)]
    verity: bool,
    /// Build the kernel in each tree too, with a private cache (about 10 min each).
    #[arg(long)]
    rebuild_kernel: bool,
    /// Cross-build the agent in each tree too.
    #[arg(long)]
    rebuild_agent: bool,
}

pub fn run(args: Args) -> Result<()> {
    crate::rootfs::recipe::check_name(&args.recipe)?;
    let base = paths::target_dir().join("xtask").join("repro");
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    if crate::image::manifest::git().dirty {
        eprintln!("verify-repro: note: uncommitted changes are not built; both trees are HEAD");
    }
    let mut failures = Vec::new();
    for arch in args.arch.arches() {
        if let Err(e) = verify_arch(&args, arch, &base) {
            eprintln!("verify-repro: {arch}: {e:#}");
            failures.push(arch.name());
        }
    }
    if !failures.is_empty() {
        bail!(
            "not reproducible (or not built) for: {}",
            failures.join(", ")
        );
    }
    Ok(())
}

fn verify_arch(args: &Args, arch: Arch, base: &Path) -> Result<()> {
    let seed = Seed::prepare(args, arch)?;
    let trees = Worktrees::add(base, arch)?;
    for dir in [&trees.a, &trees.b] {
        let start = Instant::now();
        build_in(dir, base, arch, args, &seed)?;
        eprintln!(
            "verify-repro: {arch}: built in {} in {:.1} s",
            dir.display(),
            start.elapsed().as_secs_f64()
        );
    }
    let (da, db) = (artifacts(&trees.a, arch), artifacts(&trees.b, arch));
    let keep = base.join(format!("{arch}-differences"));
    let _ = fs::remove_dir_all(&keep);
    let mut diffs = compare_dirs(&da, &db)?;
    if args.verity {
        diffs.extend(compare_root_hashes(&da, &db)?);
    }
    if diffs.is_empty() {
        eprintln!("verify-repro: {arch}: both builds are identical, byte for byte");
        return Ok(());
    }
    keep_copies(&diffs, &da, &db, &keep);
    bail!(
        "{} artifact(s) differ: {}; copies kept in {}",
        diffs.len(),
        diffs
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        keep.display()
    )
}

/// What both builds share when it is not rebuilt: the agent binary and the
/// kernel files of the current tree.
struct Seed {
    agent: Option<PathBuf>,
    kernel_files: Vec<PathBuf>,
}

impl Seed {
    fn prepare(args: &Args, arch: Arch) -> Result<Seed> {
        let agent = if args.rebuild_agent {
            eprintln!("verify-repro: {arch}: the agent is rebuilt in each tree");
            None
        } else {
            let a = fs::canonicalize(crate::rootfs::agent_binary(arch, None)?)?;
            eprintln!(
                "verify-repro: {arch}: agent NOT rebuilt: both trees use {} (--rebuild-agent to include it)",
                a.display()
            );
            Some(a)
        };
        let kernel_files = if args.rebuild_kernel {
            eprintln!(
                "verify-repro: {arch}: the kernel is rebuilt in each tree with a private cache"
            );
            Vec::new()
        } else {
            eprintln!(
                "verify-repro: {arch}: kernel NOT rebuilt: taken from the shared cache (--rebuild-kernel to include it)"
            );
            let k = crate::image::default_kernel(arch, None)?;
            let mut files = vec![k.image, k.config];
            files.extend(k.pvh_vmlinux);
            files.retain(|f| f.is_file());
            files
        };
        Ok(Seed {
            agent,
            kernel_files,
        })
    }
}

/// Two detached worktrees of HEAD; removed again when dropped, also on error.
struct Worktrees {
    a: PathBuf,
    b: PathBuf,
}

impl Worktrees {
    fn add(base: &Path, arch: Arch) -> Result<Worktrees> {
        let t = Worktrees {
            a: base.join(format!("{arch}-a")),
            b: base.join(format!("{arch}-b")),
        };
        for dir in [&t.a, &t.b] {
            remove_worktree(dir);
            git(&["worktree", "add", "--detach", "--quiet"], Some(dir))?;
        }
        Ok(t)
    }
}

impl Drop for Worktrees {
    fn drop(&mut self) {
        for dir in [&self.a, &self.b] {
            remove_worktree(dir);
        }
    }
}

fn remove_worktree(dir: &Path) {
    if dir.exists() {
        let _ = git(&["worktree", "remove", "--force"], Some(dir));
        let _ = fs::remove_dir_all(dir);
    }
    let _ = git(&["worktree", "prune"], None);
}

fn git(args: &[&str], path: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new("git");
    cmd.current_dir(paths::repo_root()).args(args);
    if let Some(p) = path {
        cmd.arg(p);
    }
    cmd::output(&mut cmd).map(|_| ())
}

fn artifacts(tree: &Path, arch: Arch) -> PathBuf {
    tree.join("target").join("artifacts").join(arch.name())
}

/// Build the xtask of `tree` (compiled dependencies are shared between the
/// two trees and across runs) and run its steps with the tree's own target dir.
fn build_in(tree: &Path, base: &Path, arch: Arch, args: &Args, seed: &Seed) -> Result<()> {
    let shared_target = base.join("cargo-target");
    cmd::run_attached(
        Command::new(cmd::cargo())
            .current_dir(tree)
            .env("CARGO_TARGET_DIR", &shared_target)
            .args(["build", "--quiet", "-p", "xtask"]),
    )
    .with_context(|| format!("building the xtask of {}", tree.display()))?;
    let exe = tree.join("target").join("xtask-bin");
    fs::create_dir_all(tree.join("target"))?;
    fs::copy(shared_target.join("debug").join("xtask"), &exe)
        .with_context(|| format!("copying the xtask binary to {}", exe.display()))?;
    let out_dir = artifacts(tree, arch);
    fs::create_dir_all(&out_dir)?;
    for f in &seed.kernel_files {
        if let Some(name) = f.file_name() {
            fs::copy(f, out_dir.join(name)).with_context(|| format!("copying {}", f.display()))?;
        }
    }
    let step = |words: &[&str]| -> Result<()> {
        let mut cmd = Command::new(&exe);
        cmd.current_dir(tree)
            .env("CARGO_TARGET_DIR", tree.join("target"))
            .args(words)
            .args(["--arch", arch.name()]);
        if let Some(a) = &seed.agent {
            cmd.env("KATA_IMAGE_AGENT", a);
        }
        if args.rebuild_kernel {
            cmd.env(
                "KATA_IMAGE_CACHE",
                tree.join("target").join("private-cache"),
            );
        }
        cmd::run_attached(&mut cmd)
            .with_context(|| format!("`cargo xtask {}` in {}", words.join(" "), tree.display()))
    };
    if args.rebuild_agent {
        step(&["agent"])?;
    }
    if args.rebuild_kernel {
        step(&["kernel"])?;
    }
    let mut words = vec!["image", "--recipe", &args.recipe];
    if let Some(fs) = args.fs {
        words.extend(["--fs", fs.name()]);
    }
    if args.verity {
        words.push("--verity");
    }
    step(&words)
}

/// The measured root's hash in both builds' manifests: equal, or a
/// difference (a missing one is one too).
fn compare_root_hashes(a: &Path, b: &Path) -> Result<Option<Difference>> {
    let (ha, hb) = (root_hash(a)?, root_hash(b)?);
    match (&ha, &hb) {
        (Some(x), Some(y)) if x == y => {
            eprintln!("verify-repro:   root hash  {x}  equal in both builds");
            Ok(None)
        }
        _ => Ok(Some(Difference::RootHash { a: ha, b: hb })),
    }
}

/// `verity.root_hash` of the manifest in `dir`, if it has one.
fn root_hash(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(crate::image::MANIFEST);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(v["verity"]["root_hash"].as_str().map(str::to_string))
}

/// One artifact that is not the same in both builds.
#[derive(Debug, PartialEq, Eq)]
pub enum Difference {
    Missing {
        name: String,
        only_in: &'static str,
    },
    Size {
        name: String,
        a: u64,
        b: u64,
        first: Option<u64>,
    },
    Bytes {
        name: String,
        first: u64,
    },
    /// The measured roots' hashes (None: that manifest has none).
    RootHash {
        a: Option<String>,
        b: Option<String>,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { name, only_in } => write!(f, "{name}: only in build {only_in}"),
            Difference::Size { name, a, b, first } => match first {
                Some(o) => write!(f, "{name}: sizes {a} vs {b}, first difference at byte {o}"),
                None => write!(f, "{name}: sizes {a} vs {b}, one is a prefix of the other"),
            },
            Difference::Bytes { name, first } => {
                write!(f, "{name}: first difference at byte {first} (0x{first:x})")
            }
            Difference::RootHash { a, b } => {
                let or_none = |h: &Option<String>| h.clone().unwrap_or_else(|| "none".into());
                write!(f, "root hash: {} vs {}", or_none(a), or_none(b))
            }
        }
    }
}

/// Compare every file of two artifact directories; prints a line per file.
pub fn compare_dirs(a: &Path, b: &Path) -> Result<Vec<Difference>> {
    let names = |d: &Path| -> Result<BTreeSet<String>> {
        let mut s = BTreeSet::new();
        for e in fs::read_dir(d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            if e.file_type()?.is_file() {
                s.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(s)
    };
    let (na, nb) = (names(a)?, names(b)?);
    let mut diffs = Vec::new();
    for name in na.union(&nb) {
        let d = match (na.contains(name), nb.contains(name)) {
            (true, false) => Some(Difference::Missing {
                name: name.clone(),
                only_in: "a",
            }),
            (false, true) => Some(Difference::Missing {
                name: name.clone(),
                only_in: "b",
            }),
            _ => compare_files(name, &a.join(name), &b.join(name))?,
        };
        match &d {
            None => eprintln!(
                "verify-repro:   identical  {}  {name}",
                crate::cache::sha256_file(&a.join(name))?
            ),
            Some(d) => eprintln!("verify-repro:   DIFFERENT  {d}"),
        }
        diffs.extend(d);
    }
    Ok(diffs)
}

fn compare_files(name: &str, a: &Path, b: &Path) -> Result<Option<Difference>> {
    let (la, lb) = (fs::metadata(a)?.len(), fs::metadata(b)?.len());
    let first = first_difference(a, b)?;
    Ok(match (first, la == lb) {
        (None, true) => None,
        (first, false) => Some(Difference::Size {
            name: name.to_string(),
            a: la,
            b: lb,
            first,
        }),
        (Some(first), true) => Some(Difference::Bytes {
            name: name.to_string(),
            first,
        }),
    })
}

/// Offset of the first differing byte within the common length, if any.
pub fn first_difference(a: &Path, b: &Path) -> Result<Option<u64>> {
    let open = |p: &Path| {
        File::open(p)
            .map(BufReader::new)
            .with_context(|| format!("opening {}", p.display()))
    };
    let (mut ra, mut rb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut ra, &mut ba)?;
        let m = read_full(&mut rb, &mut bb)?;
        let common = n.min(m);
        if let Some(i) = (0..common).find(|&i| ba[i] != bb[i]) {
            return Ok(Some(offset + i as u64));
        }
        if n != m || n == 0 {
            return Ok(None);
        }
        offset += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Keep both versions of each differing file (the worktrees are removed), and
/// run diffoscope on them when it is installed.
fn keep_copies(diffs: &[Difference], a: &Path, b: &Path, keep: &Path) {
    let _ = fs::remove_dir_all(keep);
    for d in diffs {
        let name = match d {
            Difference::Missing { name, .. }
            | Difference::Size { name, .. }
            | Difference::Bytes { name, .. } => name,
            // Both manifests differ too and are kept under their name.
            Difference::RootHash { .. } => continue,
        };
        for (side, dir) in [("a", a), ("b", b)] {
            let dest = keep.join(side);
            let _ = fs::create_dir_all(&dest);
            let _ = fs::copy(dir.join(name), dest.join(name));
        }
        if Command::new("diffoscope").arg("--version").output().is_ok() {
            let report = keep.join(format!("{name}.diffoscope.txt"));
            let _ = Command::new("diffoscope")
                .arg("--text")
                .arg(&report)
                .arg(keep.join("a").join(name))
                .arg(keep.join("b").join(name))
                .status();
            eprintln!("verify-repro:   diffoscope report: {}", report.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_differing_offset() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let mut x = vec![1u8; 200_000];
        fs::write(&a, &x).unwrap();
        fs::write(&b, &x).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), None);
        x[150_001] = 2;
        fs::write(&b, &x).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), Some(150_001));
        fs::write(&b, &x[..100]).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), None);
    }

    /// Two empty artifact dirs `a` and `b` in a temp dir (kept alive by the first).
    fn two_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        (d, a, b)
    }

    #[test]
    fn compares_directories_and_names_each_difference() {
        let (_d, a, b) = two_dirs();
        for dir in [&a, &b] {
            fs::write(dir.join("same"), b"xyz").unwrap();
        }
        fs::write(a.join("img"), b"abcd").unwrap();
        fs::write(b.join("img"), b"abXd").unwrap();
        fs::write(a.join("short"), b"abcd").unwrap();
        fs::write(b.join("short"), b"ab").unwrap();
        fs::write(a.join("only"), b"1").unwrap();
        let diffs = compare_dirs(&a, &b).unwrap();
        assert_eq!(
            diffs,
            vec![
                Difference::Bytes {
                    name: "img".into(),
                    first: 2
                },
                Difference::Missing {
                    name: "only".into(),
                    only_in: "a"
                },
                Difference::Size {
                    name: "short".into(),
                    a: 4,
                    b: 2,
                    first: None
                },
            ]
        );
        assert!(diffs[0].to_string().contains("byte 2"));
    }

    #[test]
    fn root_hashes_are_compared_from_the_manifests() {
        let (_d, a, b) = two_dirs();
        let manifest = |dir: &Path, json: &str| fs::write(dir.join("manifest.json"), json).unwrap();
        manifest(&a, r#"{"verity": {"root_hash": "aa"}}"#);
        manifest(&b, r#"{"verity": {"root_hash": "aa"}}"#);
        assert_eq!(compare_root_hashes(&a, &b).unwrap(), None);
        manifest(&b, r#"{"verity": {"root_hash": "bb"}}"#);
        let diff = compare_root_hashes(&a, &b).unwrap().unwrap();
        assert_eq!(diff.to_string(), "root hash: aa vs bb");
        // No measured root at all is a difference when one was asked for.
        manifest(&a, "{}");
        manifest(&b, "{}");
        let diff = compare_root_hashes(&a, &b).unwrap().unwrap();
        assert_eq!(diff.to_string(), "root hash: none vs none");
    }
}
