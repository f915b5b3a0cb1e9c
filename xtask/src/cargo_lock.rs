//! The registry crates a Cargo.lock pins, with their checksums (the sha256
//! of each `.crate`): the workspace's, and the one of the std sources that
//! `-Zbuild-std` builds (its own workspace, with crates from crates.io).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::paths;

/// (name, version) -> checksum of every registry package in Cargo.lock.
pub fn registry_checksums() -> Result<BTreeMap<(String, String), String>> {
    Workspace::repo().registry_checksums()
}

/// A cargo workspace and its lock file.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The directory of its Cargo.toml and Cargo.lock.
    pub dir: PathBuf,
}

impl Workspace {
    /// This repository.
    pub fn repo() -> Workspace {
        Workspace {
            dir: paths::repo_root(),
        }
    }

    /// The std sources under `src` (`<sysroot>/lib/rustlib/src/rust`):
    /// `library/`, what `-Zbuild-std` resolves with its own lock.
    pub fn std_library(src: &Path) -> Workspace {
        Workspace {
            dir: src.join("library"),
        }
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("Cargo.lock")
    }

    /// (name, version) -> checksum of every registry package of its lock.
    pub fn registry_checksums(&self) -> Result<BTreeMap<(String, String), String>> {
        let path = self.lock();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        parse(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

fn parse(text: &str) -> Result<BTreeMap<(String, String), String>> {
    #[derive(Deserialize)]
    struct Lock {
        package: Vec<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        version: String,
        checksum: Option<String>,
    }
    let lock: Lock = toml::from_str(text)?;
    Ok(lock
        .package
        .into_iter()
        .filter_map(|p| Some(((p.name, p.version), p.checksum?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registry_packages_have_checksums() {
        let text = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\
                    source = \"registry+x\"\nchecksum = \"ab\"\n\n[[package]]\nname = \"local\"\n\
                    version = \"0.1.0\"\n";
        let sums = parse(text).unwrap();
        assert_eq!(sums.len(), 1);
        assert_eq!(sums[&("a".to_string(), "1.0.0".to_string())], "ab");
        assert!(registry_checksums().unwrap().len() > 100);
    }
}
