//! The input store: every pinned input of a build in one directory keyed by
//! sha256, so a build keeps working when the archive has moved on and runs
//! with no network at all (`cargo xtask image --inputs DIR`).
//!
//! `cargo xtask fetch --arch A --to DIR` fills `DIR/sha256/<hex>` with the
//! recipe's .debs (rootfs/<recipe>.lock), the kernel source tarball
//! (kernel/source.toml) and every registry crate of Cargo.lock and of the
//! std sources' Cargo.lock (what `-Zbuild-std` compiles), and writes
//! `DIR/index` (`<sha256> <kind> <name> <version>`, sorted) for humans.
//!
//! The agent's crates come from the store through cargo's source replacement
//! (vendor.rs): a build with `--inputs` reaches no registry.
//!
//! Where a pinned .deb or the kernel source comes from: this store when
//! `--inputs` names one (read from the store even when cached, so a build
//! from a store proves the store complete; a .deb it lacks falls through),
//! else the cache, else the suite's pool (`apt-get download`), else the
//! Debian snapshot archive at the time the lock line records
//! (`snapshot_apt`: apt with a private source list of
//! `snapshot.debian.org/archive/debian/<time>/`). That last route is
//! untested: snapshot.debian.org is not reachable from the build machine.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::cache::sha256_file;
use crate::cargo_lock::Workspace;
use crate::rootfs::{self, recipe, Lock, Recipe};

pub mod vendor;

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

/// Every registry crate the agent build can need: Cargo.lock's, and those
/// of the std sources `-Zbuild-std` compiles (when Debian's are installed).
fn store_crates(store: &Store) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for ws in crate_workspaces(true)? {
        for c in vendor::pinned(std::slice::from_ref(&ws))? {
            let file = crate::agent::crate_file(&ws, &c.name, &c.version)?;
            store.put(&c.sha256, &file)?;
            out.push(format!("{} crate {} {}", c.sha256, c.name, c.version));
        }
    }
    Ok(out)
}

/// The workspaces whose locked crates a build takes from the store: the
/// repository, and with `build_std` the std sources of Debian's rustc.
fn crate_workspaces(build_std: bool) -> Result<Vec<Workspace>> {
    let mut out = vec![Workspace::repo()];
    if build_std {
        let src = crate::agent::toolchain::rust_src_dir(crate::agent::toolchain::DEBIAN_RUSTC)?;
        let std = Workspace::std_library(&src);
        if std.lock().is_file() {
            out.push(std);
        } else {
            eprintln!(
                "xtask fetch: no {} (rust-web-src is not installed): std's crates not stored",
                std.lock().display()
            );
        }
    }
    Ok(out)
}

/// With an input store (`--inputs`): the agent's crates materialised from it
/// as a cargo directory source under target/, and that directory; None
/// without a store. `build_std`: std's crates too.
pub fn crate_source(build_std: bool) -> Result<Option<PathBuf>> {
    let Some(store) = store() else {
        return Ok(None);
    };
    let crates = vendor::pinned(&crate_workspaces(build_std)?)?;
    let dir = crate::paths::target_dir().join("xtask/agent/vendor");
    vendor::materialise(&store, &crates, &dir).with_context(|| {
        format!(
            "taking the agent's crates from the input store {}",
            store.dir.display()
        )
    })?;
    Ok(Some(dir))
}

/// The snapshot time `rootfs lock` records for a newly locked line: the
/// newest `Date:` of apt's Release files (the archive state the candidates
/// came from) plus six hours, because snapshot.debian.org imports the archive
/// four times a day and resolves a time to the last import before it.
/// None when apt has no lists.
pub fn snapshot_of_apt_lists() -> Result<Option<String>> {
    let dir = Path::new("/var/lib/apt/lists");
    let Ok(read) = fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut newest: Option<time::OffsetDateTime> = None;
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.ends_with("_InRelease") || name.ends_with("_Release")) {
            continue;
        }
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        if let Some(date) = text.lines().find_map(|l| l.strip_prefix("Date:")) {
            let t = parse_release_date(date.trim())
                .with_context(|| format!("the Date of {}", e.path().display()))?;
            newest = newest.max(Some(t));
        }
    }
    newest
        .map(|t| snapshot_timestamp(t + time::Duration::hours(6)))
        .transpose()
}

/// `Mon, 30 Nov 2026 02:21:41 UTC` (Release files say UTC, RFC 2822 +0000).
fn parse_release_date(date: &str) -> Result<time::OffsetDateTime> {
    let normalised = date.replace(" UTC", " +0000");
    time::OffsetDateTime::parse(&normalised, &time::format_description::well_known::Rfc2822)
        .with_context(|| format!("{date:?} is not an RFC 2822 date"))
}

fn snapshot_timestamp(t: time::OffsetDateTime) -> Result<String> {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(&f).context("formatting a snapshot time")
}

/// `YYYYMMDDTHHMMSSZ`, as snapshot.debian.org's archive URLs take it.
pub fn check_snapshot_timestamp(ts: &str) -> Result<()> {
    let b = ts.as_bytes();
    let ok = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    if !ok {
        bail!("{ts:?} is not a snapshot time (YYYYMMDDTHHMMSSZ)");
    }
    Ok(())
}

/// The source list of the snapshot archive at `ts`: the suites the locks
/// take packages from.
fn snapshot_sources(ts: &str) -> String {
    let base = "https://snapshot.debian.org/archive";
    format!(
        "deb {base}/debian/{ts}/ bookworm main\n\
         deb {base}/debian/{ts}/ bookworm-updates main\n\
         deb {base}/debian/{ts}/ bookworm-backports main\n\
         deb {base}/debian-security/{ts}/ bookworm-security main\n"
    )
}

/// Point a private apt state in `tmp` at the snapshot archive at `ts`, update
/// it, and return the options that make `apt-get download` use it.
pub fn snapshot_apt(tmp: &Path, ts: &str) -> Result<Vec<String>> {
    check_snapshot_timestamp(ts)?;
    let list = tmp.join("snapshot.list");
    fs::write(&list, snapshot_sources(ts))
        .with_context(|| format!("writing {}", list.display()))?;
    for d in ["lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(tmp.join(d))?;
    }
    let opts: Vec<String> = [
        format!("Dir::Etc::SourceList={}", list.display()),
        "Dir::Etc::SourceParts=/nonexistent".to_string(),
        format!("Dir::State::Lists={}", tmp.join("lists").display()),
        format!("Dir::Cache={}", tmp.join("cache").display()),
        // Snapshot Release files are past their Valid-Until by design.
        "Acquire::Check-Valid-Until=false".to_string(),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_string(), o])
    .collect();
    let out = std::process::Command::new("apt-get")
        .args(&opts)
        .args(["update", "-q"])
        .output()
        .context("running apt-get update for the snapshot archive")?;
    if !out.status.success() {
        bail!(
            "apt-get update from the snapshot archive at {ts} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(opts)
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

    #[test]
    fn snapshot_times_come_from_release_dates() {
        let t = parse_release_date("Mon, 30 Nov 2026 02:21:41 UTC").unwrap();
        let ts = snapshot_timestamp(t + time::Duration::hours(6)).unwrap();
        assert_eq!(ts, "20261130T082141Z");
        check_snapshot_timestamp(&ts).unwrap();
        for bad in ["2026-11-30", "20261130T082141", "2026113xT082141Z"] {
            assert!(check_snapshot_timestamp(bad).is_err(), "{bad}");
        }
        assert!(parse_release_date("yesterday").is_err());
        let list = snapshot_sources(&ts);
        assert!(list.contains(
            "deb https://snapshot.debian.org/archive/debian/20261130T082141Z/ bookworm main\n"
        ));
        assert!(list.contains("/archive/debian-security/20261130T082141Z/ bookworm-security main"));
    }
}
