//! The input store: every pinned input of a build in one directory keyed by
//! sha256, so a build keeps working when the archive has moved on and runs
//! with no network at all (`cargo xtask image --inputs DIR`).
//!
//! `cargo xtask fetch --arch A --to DIR` fills `DIR/sha256/<hex>` with the
//! recipe's .debs (rootfs/<recipe>.lock), the kernel source tarball
//! (kernel/source.toml) and every registry crate of Cargo.lock, and writes
//! `DIR/index` (`<sha256> <kind> <name> <version>`, sorted) for humans.
//!
//! Where a pinned .deb or the kernel source comes from: this store when
//! `--inputs` names one (read from the store even when cached, so a build
//! from a store proves the store complete; a .deb it lacks falls through),
//! else the cache, else the suite's pool (`apt-get download`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::cache::sha256_file;
use crate::rootfs::{self, recipe, Lock, Recipe};

/// Set by `--inputs DIR` (and inherited by the builds verify-repro starts).
pub const INPUTS_ENV: &str = "KATA_IMAGE_INPUTS";

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "x86_64")]
    arch: ArchSelection,
    #[arg(long, default_value = recipe::DEFAULT_RECIPE)]
    recipe: String,
    /// The input store to fill (created if missing).
    #[arg(long)]
    to: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let recipe = Recipe::load(&args.recipe)?;
    let store = Store::create(&args.to)?;
    let mut index = BTreeSet::new();
    for arch in args.arch.arches() {
        index.extend(store_debs(&store, arch, &recipe)?);
    }
    index.extend(store_kernel_source(&store)?);
    index.extend(store_crates(&store)?);
    let text: String = index.iter().map(|l| format!("{l}\n")).collect();
    let path = args.to.join("index");
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "xtask fetch: {} inputs in {} (see {})",
        index.len(),
        store.dir.display(),
        path.display()
    );
    Ok(())
}

/// Use `dir` as the input store for this process and the ones it starts.
pub fn use_store(dir: &Path) -> Result<()> {
    let store = Store::open(dir)?;
    // Set before any thread is started: the step has not begun yet.
    std::env::set_var(INPUTS_ENV, &store.dir);
    Ok(())
}

/// The store `--inputs` named, if any.
pub fn store() -> Option<Store> {
    let dir = std::env::var_os(INPUTS_ENV)?;
    Some(Store {
        dir: PathBuf::from(dir),
    })
}

pub struct Store {
    /// The store's root (the one `--to` / `--inputs` names).
    pub dir: PathBuf,
}

impl Store {
    fn create(dir: &Path) -> Result<Store> {
        fs::create_dir_all(dir.join("sha256"))
            .with_context(|| format!("creating the input store {}", dir.display()))?;
        Store::open(dir)
    }

    fn open(dir: &Path) -> Result<Store> {
        let dir = fs::canonicalize(dir)
            .with_context(|| format!("input store {} does not exist", dir.display()))?;
        if !dir.join("sha256").is_dir() {
            bail!(
                "{} is not an input store (no sha256/): fill one with `cargo xtask fetch --to DIR`",
                dir.display()
            );
        }
        Ok(Store { dir })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join("sha256").join(sha256)
    }

    /// The stored file with this sha256, checked; None when it is not there.
    pub fn get(&self, sha256: &str) -> Result<Option<PathBuf>> {
        let p = self.path(sha256);
        if !p.is_file() {
            return Ok(None);
        }
        let actual = sha256_file(&p)?;
        if actual != sha256 {
            bail!(
                "input store file {} has sha256 {actual}: the store is corrupt",
                p.display()
            );
        }
        Ok(Some(p))
    }

    /// Copy `from` in under its sha256 (which must be `sha256`).
    fn put(&self, sha256: &str, from: &Path) -> Result<()> {
        let dest = self.path(sha256);
        if self.get(sha256)?.is_some() {
            return Ok(());
        }
        let tmp = dest.with_extension("tmp");
        fs::copy(from, &tmp)
            .with_context(|| format!("copying {} into the store", from.display()))?;
        let actual = sha256_file(&tmp)?;
        if actual != sha256 {
            let _ = fs::remove_file(&tmp);
            bail!(
                "{} has sha256 {actual}, the pin says {sha256}",
                from.display()
            );
        }
        fs::rename(&tmp, &dest).with_context(|| format!("moving {} into place", dest.display()))
    }
}

/// Every package the recipe can unpack for `arch`, debug-console ones too.
fn store_debs(store: &Store, arch: Arch, recipe: &Recipe) -> Result<Vec<String>> {
    let lock = Lock::load(&recipe.name)?;
    let entries = rootfs::packages(arch, recipe, &lock, true)?;
    let debs = rootfs::debs::fetch_all(&entries)?;
    entries
        .iter()
        .zip(&debs)
        .map(|(e, deb)| {
            store.put(&e.sha256, deb)?;
            Ok(format!(
                "{} deb {}:{} {}",
                e.sha256, e.name, e.arch, e.version
            ))
        })
        .collect()
}

fn store_kernel_source(store: &Store) -> Result<Vec<String>> {
    let pin = crate::kernel::read_pin()?;
    store.put(&pin.sha256, &pin.tarball)?;
    Ok(vec![format!(
        "{} kernel-source {} {}",
        pin.sha256, pin.package, pin.version
    )])
}

/// Every registry crate Cargo.lock pins (its checksum is the .crate's sha256).
fn store_crates(store: &Store) -> Result<Vec<String>> {
    let path = crate::paths::repo_root().join("Cargo.lock");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let lock: toml::Value = toml::from_str(&text).context("parsing Cargo.lock")?;
    let packages = lock
        .get("package")
        .and_then(|p| p.as_array())
        .context("Cargo.lock has no [[package]] list")?;
    let mut out = Vec::new();
    for p in packages {
        let field = |k: &str| p.get(k).and_then(|v| v.as_str());
        let (Some(name), Some(version), Some(sum)) =
            (field("name"), field("version"), field("checksum"))
        else {
            continue;
        };
        let file = crate::agent::crate_file(name, version)?;
        store.put(sum, &file)?;
        out.push(format!("{sum} crate {name} {version}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_gives_back_only_what_matches_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let src = dir.path().join("input");
        fs::write(&src, b"a pinned input").unwrap();
        let sum = sha256_file(&src).unwrap();
        assert!(store.get(&sum).unwrap().is_none());
        store.put(&sum, &src).unwrap();
        assert_eq!(
            fs::read(store.get(&sum).unwrap().unwrap()).unwrap(),
            b"a pinned input"
        );
        // A pin that does not match the file is refused and leaves nothing.
        let wrong = "0".repeat(64);
        let err = format!("{:#}", store.put(&wrong, &src).unwrap_err());
        assert!(err.contains(&sum) && err.contains(&wrong), "{err}");
        assert!(store.get(&wrong).unwrap().is_none());
        // A stored file that changed is an error, not an input.
        fs::write(store.path(&sum), b"changed").unwrap();
        assert!(store.get(&sum).is_err());
        // A directory without sha256/ is not a store.
        let other = tempfile::tempdir().unwrap();
        assert!(Store::open(other.path()).is_err());
    }
}
