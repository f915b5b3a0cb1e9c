//! Fetch pinned .debs into a cache keyed by sha256, verify them, unpack them.
//!
//! `apt-get download name:arch=version` fetches; the lock's sha256 decides
//! whether the file is accepted. Cache: `<cache>/debs/<sha256>.deb`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::lock::LockEntry;
use crate::cache::{cache_root, sha256_file};

pub fn deb_cache_dir() -> PathBuf {
    cache_root().join("debs")
}

fn cached_path(entry: &LockEntry) -> PathBuf {
    deb_cache_dir().join(format!("{}.deb", entry.sha256))
}

/// The file name apt-get download gives a package (epoch `:` becomes `%3a`).
pub fn apt_file_name(entry: &LockEntry) -> String {
    format!(
        "{}_{}_{}.deb",
        entry.name,
        entry.version.replace(':', "%3a"),
        entry.arch
    )
}

/// Compare a file's sha256 with the lock's; the error names the package.
pub fn verify(entry: &LockEntry, file: &Path) -> Result<()> {
    let actual = sha256_file(file)?;
    if actual != entry.sha256 {
        bail!(
            "sha256 mismatch for package {} {} ({}): the lock expects {}, {} has {}. \
             The archive changed or the lock is stale: check, then `cargo xtask rootfs lock`.",
            entry.name,
            entry.version,
            entry.arch,
            entry.sha256,
            file.display(),
            actual
        );
    }
    Ok(())
}

/// Make sure every entry is in the cache (downloading the missing ones in one
/// apt call), verified; returns the cached paths in the order given. A cached
/// file that no longer matches its hash is dropped and fetched again; a
/// download that does not match is an error.
/// With an input store (`--inputs`), the files come from there.
pub fn fetch_all(entries: &[LockEntry]) -> Result<Vec<PathBuf>> {
    match crate::fetch::store() {
        Some(store) => from_store(&store, entries),
        None => fetch_cached(entries),
    }
}

fn fetch_cached(entries: &[LockEntry]) -> Result<Vec<PathBuf>> {
    let mut missing: Vec<&LockEntry> = Vec::new();
    for e in entries {
        let path = cached_path(e);
        if path.exists() && verify(e, &path).is_err() {
            eprintln!(
                "xtask rootfs: cached {} is corrupt, fetching it again",
                path.display()
            );
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        if !path.exists() {
            missing.push(e);
        }
    }
    if !missing.is_empty() {
        download(&missing)?;
    }
    Ok(entries.iter().map(cached_path).collect())
}

/// Every entry from the input store (checked); one it lacks from the cache
/// or the archive, as without a store.
fn from_store(store: &crate::fetch::Store, entries: &[LockEntry]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in entries {
        match store.get(&e.sha256)? {
            Some(p) => out.push(p),
            None => {
                eprintln!(
                    "xtask rootfs: {} is not in the input store {}",
                    e.apt_spec(),
                    store.dir.display()
                );
                let mut cached = fetch_cached(std::slice::from_ref(e))?;
                out.append(&mut cached);
            }
        }
    }
    Ok(out)
}

/// From the suite's pool; what it no longer has, from the Debian snapshot
/// archive at the timestamp the lock records for it.
fn download(entries: &[&LockEntry]) -> Result<()> {
    let pool = with_tmp(|tmp| download_into(tmp, entries, &[]));
    let Err(pool_err) = pool else {
        return Ok(());
    };
    let mut by_snapshot: std::collections::BTreeMap<&str, Vec<&LockEntry>> = Default::default();
    for e in entries {
        match &e.snapshot {
            Some(ts) => by_snapshot.entry(ts.as_str()).or_default().push(e),
            None => return Err(pool_err),
        }
    }
    for (ts, group) in by_snapshot {
        eprintln!("xtask rootfs: not in the suite; trying the snapshot archive at {ts}");
        with_tmp(|tmp| {
            let apt = crate::fetch::snapshot_apt(tmp, ts)?;
            download_into(tmp, &group, &apt)
        })
        .with_context(|| format!("{pool_err:#}; and from the snapshot archive at {ts}"))?;
    }
    Ok(())
}

fn with_tmp(f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = deb_cache_dir();
    let tmp = dir.join(format!(".download-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = f(&tmp);
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// `apt-get download` into `tmp` (with `apt_opts`, e.g. another source list),
/// then verify and move each file into the cache.
fn download_into(tmp: &Path, entries: &[&LockEntry], apt_opts: &[String]) -> Result<()> {
    let specs: Vec<String> = entries.iter().map(|e| e.apt_spec()).collect();
    eprintln!("xtask rootfs: apt-get download {}", specs.join(" "));
    let out = Command::new("apt-get")
        .current_dir(tmp)
        .args(apt_opts)
        .args(["download", "-q"])
        .args(&specs)
        .output()
        .context("running apt-get download")?;
    if !out.status.success() {
        bail!(
            "apt-get download {} failed: {}",
            specs.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for entry in entries {
        let file = tmp.join(apt_file_name(entry));
        if !file.exists() {
            bail!(
                "apt-get download did not produce {} for {}",
                file.display(),
                entry.apt_spec()
            );
        }
        verify(entry, &file)?;
        let dest = cached_path(entry);
        fs::rename(&file, &dest)
            .with_context(|| format!("moving {} to {}", file.display(), dest.display()))?;
    }
    Ok(())
}

/// Unpack a .deb's data (no maintainer scripts are run) into `dest`.
pub fn unpack(deb: &Path, dest: &Path) -> Result<()> {
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dest)
        .output()
        .context("running dpkg-deb -x")?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -x {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha256: &str) -> LockEntry {
        LockEntry {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
            arch: "arm64".into(),
            sha256: sha256.into(),
            snapshot: None,
        }
    }

    #[test]
    fn a_store_serves_its_debs_instead_of_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        fs::create_dir_all(store_dir.join("sha256")).unwrap();
        let sum = "ab".repeat(32);
        let deb = store_dir.join("sha256").join(&sum);
        fs::write(&deb, b"x").unwrap();
        let store = crate::fetch::Store { dir: store_dir };
        // The store checks what it serves: "x" does not hash to `sum`.
        assert!(from_store(&store, &[entry(&sum)]).is_err());
        let real = sha256_file(&deb).unwrap();
        fs::rename(&deb, deb.with_file_name(&real)).unwrap();
        let got = from_store(&store, &[entry(&real)]).unwrap();
        assert_eq!(got, [deb.with_file_name(&real)]);
    }

    #[test]
    fn file_name_escapes_epoch() {
        assert_eq!(
            apt_file_name(&entry(&"0".repeat(64))),
            "busybox-static_1%3a1.35.0-4_arm64.deb"
        );
    }

    #[test]
    fn hash_mismatch_names_package_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.deb");
        fs::write(&file, b"not the package").unwrap();
        let actual = sha256_file(&file).unwrap();
        let expected = "1".repeat(64);
        let err = verify(&entry(&expected), &file).unwrap_err().to_string();
        assert!(err.contains("busybox-static"), "{err}");
        assert!(err.contains(&expected) && err.contains(&actual), "{err}");
        verify(&entry(&actual), &file).unwrap();
    }
}
