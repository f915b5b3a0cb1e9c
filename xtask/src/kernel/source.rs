//! The kernel source: the pin in kernel/source.toml (or a tarball given on the
//! command line), its hash check, and the unpacked pristine tree in the cache.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::cache;
use crate::paths::repo_root;

/// Cache kind of unpacked source trees, keyed by the tarball's sha256.
const SOURCE_CACHE_KIND: &str = "kernel-source";

/// kernel/source.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub package: String,
    pub version: String,
    pub tarball: PathBuf,
    pub sha256: String,
    pub source_date_epoch: u64,
}

pub fn pin_path() -> PathBuf {
    repo_root().join("kernel").join("source.toml")
}

pub fn parse_pin(text: &str) -> Result<Pin> {
    let pin: Pin = toml::from_str(text)?;
    check_sha256_syntax(&pin.sha256)?;
    Ok(pin)
}

pub fn read_pin() -> Result<Pin> {
    let path = pin_path();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_pin(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Which tarball to build, with the hash it must have.
#[derive(Debug, Clone)]
pub struct Source {
    /// Human-readable origin, e.g. "linux-source-6.12 6.12.95-1~bpo12+1".
    pub label: String,
    pub tarball: PathBuf,
    pub sha256: String,
    /// Build timestamp; `None` means "the top-level Makefile's mtime in the tarball".
    pub source_date_epoch: Option<u64>,
}

impl Source {
    /// The pinned tarball; from the input store when `--inputs` names one.
    pub fn from_pin(pin: &Pin) -> Result<Source> {
        let sha256 = pin.sha256.to_ascii_lowercase();
        let tarball = match crate::fetch::store() {
            Some(store) => store.get(&sha256)?.with_context(|| {
                format!(
                    "the input store {} has no kernel source {sha256}",
                    store.dir.display()
                )
            })?,
            None => pin.tarball.clone(),
        };
        Ok(Source {
            label: format!("{} {}", pin.package, pin.version),
            tarball,
            sha256,
            source_date_epoch: Some(pin.source_date_epoch),
        })
    }

    /// A tarball given by path (e.g. linux-6.12.x.tar.xz from kernel.org).
    pub fn from_path(tarball: &Path, sha256: &str) -> Result<Source> {
        check_sha256_syntax(sha256).context("--sha256")?;
        let name = tarball
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| tarball.display().to_string());
        Ok(Source {
            label: name,
            tarball: tarball.to_path_buf(),
            sha256: sha256.to_ascii_lowercase(),
            source_date_epoch: None,
        })
    }

    /// Stop unless the tarball has the expected sha256.
    pub fn verify(&self) -> Result<()> {
        let actual = cache::sha256_file(&self.tarball)
            .with_context(|| format!("kernel source tarball {}", self.tarball.display()))?;
        if actual != self.sha256 {
            bail!(
                "kernel source tarball {}: sha256 mismatch: expected {}, actual {} \
                 (update kernel/source.toml only if you meant to change the kernel source)",
                self.tarball.display(),
                self.sha256,
                actual
            );
        }
        Ok(())
    }
}

pub fn check_sha256_syntax(hex: &str) -> Result<()> {
    ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a sha256 (64 hex digits): {hex:?}"
    );
    Ok(())
}

/// The pristine unpacked tree of a verified source, unpacked once per tarball hash.
pub struct SourceTree {
    pub dir: PathBuf,
    pub source_date_epoch: u64,
}

pub fn unpack(source: &Source) -> Result<SourceTree> {
    let entry = cache::fill(SOURCE_CACHE_KIND, &source.sha256, |tmp| {
        eprintln!(
            "kernel: unpacking {} into the cache (once per tarball)",
            source.tarball.display()
        );
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&source.tarball)
            .arg("-C")
            .arg(tmp)
            .status()
            .context("running tar")?;
        ensure!(
            status.success(),
            "tar -xf {} failed: {status}",
            source.tarball.display()
        );
        Ok(())
    })?;
    let dir = top_dir(&entry)?;
    let makefile = dir.join("Makefile");
    let epoch = match source.source_date_epoch {
        Some(e) => e,
        None => {
            let meta = fs::metadata(&makefile)
                .with_context(|| format!("no kernel Makefile at {}", makefile.display()))?;
            u64::try_from(meta.mtime()).context("Makefile mtime before 1970")?
        }
    };
    Ok(SourceTree {
        dir,
        source_date_epoch: epoch,
    })
}

/// The one directory a kernel tarball unpacks to (linux-source-6.12/, linux-6.12.95/).
fn top_dir(entry: &Path) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    for e in fs::read_dir(entry).with_context(|| format!("listing {}", entry.display()))? {
        let e = e?;
        if e.file_type()?.is_dir() {
            dirs.push(e.path());
        }
    }
    match dirs.as_slice() {
        [one] if one.join("Makefile").is_file() => Ok(one.clone()),
        _ => bail!(
            "{}: expected the tarball to unpack to one kernel source directory, found {:?}",
            entry.display(),
            dirs
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_pin_parses() {
        let pin = read_pin().unwrap();
        assert!(pin.package.starts_with("linux-source-"));
        assert!(pin.tarball.is_absolute());
        assert!(pin.source_date_epoch > 1_600_000_000);
    }

    #[test]
    fn bad_hashes_and_fields_are_rejected() {
        assert!(check_sha256_syntax(&"a".repeat(64)).is_ok());
        assert!(check_sha256_syntax("abc").is_err());
        assert!(check_sha256_syntax(&"g".repeat(64)).is_err());
        let text = format!(
            "package = \"p\"\nversion = \"1\"\ntarball = \"/x\"\nsha256 = \"{}\"\n\
             source_date_epoch = 1\nextra = 2\n",
            "0".repeat(64)
        );
        assert!(parse_pin(&text).is_err(), "unknown fields must not pass");
    }

    #[test]
    fn wrong_hash_names_expected_and_actual() {
        let dir = std::env::temp_dir().join(format!("kernel-src-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let tarball = dir.join("linux.tar.xz");
        fs::write(&tarball, b"not a kernel").unwrap();
        let expected = "0".repeat(64);
        let err = Source::from_path(&tarball, &expected)
            .unwrap()
            .verify()
            .unwrap_err();
        let msg = format!("{err:#}");
        let actual = cache::sha256_file(&tarball).unwrap();
        fs::remove_dir_all(&dir).ok();
        assert!(msg.contains(&expected), "{msg}");
        assert!(msg.contains(&actual), "{msg}");
        assert!(msg.contains("linux.tar.xz"), "{msg}");
    }
}
