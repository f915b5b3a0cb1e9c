//! The agent's crates from the input store: a cargo *directory source*
//! (`cargo vendor`'s layout) materialised from `DIR/sha256/`, and the
//! `--config` that replaces crates.io with it, so the build resolves and
//! compiles with no registry and no network.
//!
//! Why a directory source and not a local registry: a local registry needs an
//! index (one JSON line per version, with every dependency and feature, which
//! we would have to generate from each Cargo.toml exactly as crates.io does);
//! a directory source needs only the unpacked crate and its
//! `.cargo-checksum.json` (`package`: the `.crate`'s sha256, which cargo checks
//! against Cargo.lock's `checksum`; `files`: each file's sha256, which cargo
//! checks before it compiles). Both are supported offline by stock cargo.
//!
//! The crates: every registry package of the workspace's Cargo.lock, and of
//! the std sources' Cargo.lock when the build compiles std (`-Zbuild-std`
//! resolves std's own workspace, with crates from crates.io, through the same
//! source replacement). Each `<name>-<version>/` is unpacked once; every build
//! still checks each `.crate` in the store against its pin, so a build from a
//! store proves the store complete and intact.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Store;
use crate::cache::sha256_file;
use crate::cargo_lock::Workspace;

/// The name of the replacement source in cargo's configuration.
const SOURCE_NAME: &str = "kata-image-inputs";

/// The file cargo reads a directory source's checksums from.
const CHECKSUM_FILE: &str = ".cargo-checksum.json";

/// A registry crate a lock pins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pinned {
    pub name: String,
    pub version: String,
    /// The `.crate`'s sha256 (Cargo.lock's `checksum`).
    pub sha256: String,
}

impl Pinned {
    /// `<name>-<version>`: the `.crate`'s top directory and ours.
    fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

/// The registry crates of these workspaces' locks, each once.
pub fn pinned(workspaces: &[Workspace]) -> Result<Vec<Pinned>> {
    let mut all = BTreeMap::new();
    for ws in workspaces {
        for ((name, version), sha256) in ws.registry_checksums()? {
            all.insert(
                (name.clone(), version.clone()),
                Pinned {
                    name,
                    version,
                    sha256,
                },
            );
        }
    }
    Ok(all.into_values().collect())
}

impl Store {
    /// The stored `.crate` of `name` `version`, checked against its pin.
    pub fn crate_file(&self, name: &str, version: &str, sha256: &str) -> Result<PathBuf> {
        let what = || format!("crate {name} {version} (sha256 {sha256})");
        self.get(sha256)
            .with_context(|| format!("{} in the input store", what()))?
            .with_context(|| {
                format!(
                    "the input store {} has no {}: fill it with `cargo xtask fetch --to DIR`",
                    self.dir.display(),
                    what()
                )
            })
    }
}

/// Make `dir` a directory source holding exactly `crates`, from `store`.
pub fn materialise(store: &Store, crates: &[Pinned], dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for c in crates {
        let file = store.crate_file(&c.name, &c.version, &c.sha256)?;
        let dest = dir.join(c.dir_name());
        if package_checksum(&dest).as_deref() == Some(c.sha256.as_str()) {
            continue;
        }
        unpack_one(&file, c, dir, &dest)
            .with_context(|| format!("unpacking crate {} {}", c.name, c.version))?;
    }
    remove_others(dir, crates)
}

/// Unpack `c` into a temporary directory beside `dest`, add its checksums,
/// and move it into place: `dest` is complete or absent.
fn unpack_one(file: &Path, c: &Pinned, dir: &Path, dest: &Path) -> Result<()> {
    let tmp = dir.join(format!(".tmp-{}", c.dir_name()));
    remove_dir_if_present(&tmp)?;
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    unpack_crate(file, &tmp)?;
    let src = tmp.join(c.dir_name());
    if !src.join("Cargo.toml").is_file() {
        bail!(
            "{} holds no {}/Cargo.toml: not the .crate of {} {}",
            file.display(),
            c.dir_name(),
            c.name,
            c.version
        );
    }
    let json = checksum_json(&src, &c.sha256)?;
    fs::write(src.join(CHECKSUM_FILE), json)
        .with_context(|| format!("writing {}/{CHECKSUM_FILE}", src.display()))?;
    remove_dir_if_present(dest)?;
    fs::rename(&src, dest).with_context(|| format!("moving {} into place", dest.display()))?;
    remove_dir_if_present(&tmp)
}

/// Unpack a `.crate` (a gzipped tar of `<name>-<version>/`) into `into`;
/// the tar reader refuses entries that would land outside it.
pub fn unpack_crate(file: &Path, into: &Path) -> Result<()> {
    let f = fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(into)
        .with_context(|| format!("unpacking {} into {}", file.display(), into.display()))
}

/// The `package` checksum of a materialised crate, None when absent or
/// unreadable (then it is unpacked again).
fn package_checksum(crate_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(crate_dir.join(CHECKSUM_FILE)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("package")?.as_str().map(str::to_string)
}

/// `{"files": {<path>: <sha256>, ...}, "package": <sha256 of the .crate>}`.
fn checksum_json(crate_dir: &Path, package: &str) -> Result<String> {
    let mut files = BTreeMap::new();
    collect_files(crate_dir, crate_dir, &mut files)?;
    let json = serde_json::json!({ "files": files, "package": package });
    Ok(json.to_string())
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .context("a file outside the crate")?;
            let rel = rel
                .to_str()
                .with_context(|| format!("{} is not UTF-8", rel.display()))?;
            out.insert(rel.to_string(), sha256_file(&path)?);
        }
    }
    Ok(())
}

/// Drop what an earlier materialisation left that `crates` no longer has:
/// only our own entries (crates with a checksum file, and our temp dirs).
fn remove_others(dir: &Path, crates: &[Pinned]) -> Result<()> {
    let wanted: BTreeSet<String> = crates.iter().map(Pinned::dir_name).collect();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let ours = name.starts_with(".tmp-") || path.join(CHECKSUM_FILE).is_file();
        if ours && !wanted.contains(&name) {
            remove_dir_if_present(&path)?;
        }
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Cargo's arguments that replace crates.io with the directory source `dir`
/// and forbid the network.
pub fn cargo_args(dir: &Path) -> Vec<String> {
    vec![
        "--config".to_string(),
        format!("source.crates-io.replace-with={SOURCE_NAME:?}"),
        "--config".to_string(),
        format!(
            "source.{SOURCE_NAME}.directory={:?}",
            dir.display().to_string()
        ),
        "--offline".to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A `.crate` of `name-version` with a library, and its pin.
    fn make_crate(tmp: &Path, name: &str, version: &str, body: &str) -> (PathBuf, Pinned) {
        let src = tmp.join("src-crates").join(format!("{name}-{version}"));
        fs::create_dir_all(src.join("src")).unwrap();
        fs::write(
            src.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n"),
        )
        .unwrap();
        fs::write(src.join("src/lib.rs"), body).unwrap();
        let file = tmp.join(format!("{name}-{version}.crate"));
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&file).unwrap(),
            flate2::Compression::default(),
        );
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(format!("{name}-{version}"), &src)
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        let sha256 = sha256_file(&file).unwrap();
        let pin = Pinned {
            name: name.into(),
            version: version.into(),
            sha256,
        };
        (file, pin)
    }

    /// What `cargo xtask image --inputs` relies on: stock cargo builds a
    /// crate's dependency from the materialised directory, offline, with
    /// Cargo.lock's checksum checked against the store's key.
    #[test]
    fn cargo_builds_offline_from_the_materialised_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(&tmp.path().join("store")).unwrap();
        let (file, pin) = make_crate(tmp.path(), "kata-dep", "1.2.3", "pub const N: u32 = 7;\n");
        store.put(&pin.sha256, &file).unwrap();
        let vendor = tmp.path().join("vendor");
        materialise(&store, std::slice::from_ref(&pin), &vendor).unwrap();
        assert_eq!(
            package_checksum(&vendor.join("kata-dep-1.2.3")).as_deref(),
            Some(pin.sha256.as_str())
        );

        let app = tmp.path().join("app");
        fs::create_dir_all(app.join("src")).unwrap();
        fs::write(
            app.join("Cargo.toml"),
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             [dependencies]\nkata-dep = \"1\"\n[workspace]\n",
        )
        .unwrap();
        fs::write(
            app.join("src/main.rs"),
            "fn main() { assert_eq!(kata_dep::N, 7); }\n",
        )
        .unwrap();
        // Cargo.lock as crates.io would give it: the replaced source keeps
        // crates.io's identity, so the lock is the normal build's.
        fs::write(
            app.join("Cargo.lock"),
            format!(
                "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\
                 dependencies = [\n \"kata-dep\",\n]\n\n[[package]]\nname = \"kata-dep\"\n\
                 version = \"1.2.3\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
                 checksum = \"{}\"\n",
                pin.sha256
            ),
        )
        .unwrap();
        // `cargo <verb> --locked` of the app from the vendor dir, into `target`.
        let cargo = |verb: &str, target: &str| {
            Command::new(crate::cmd::cargo())
                .current_dir(&app)
                .args(cargo_args(&vendor))
                .args([verb, "--locked", "-q"])
                .env("CARGO_TARGET_DIR", tmp.path().join(target))
                .output()
                .unwrap()
        };
        let out = cargo("run", "target");
        assert!(
            out.status.success(),
            "cargo run from the vendor dir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        // A file changed after materialising: cargo refuses it (a fresh
        // target dir: cargo checks the files when it first builds a crate).
        fs::write(
            vendor.join("kata-dep-1.2.3/src/lib.rs"),
            "pub const N: u32 = 8;\n",
        )
        .unwrap();
        let out = cargo("build", "target-2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("checksum"),
            "a changed vendored file was built: {stderr}"
        );
    }

    #[test]
    fn a_wrong_or_missing_crate_in_the_store_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(&tmp.path().join("store")).unwrap();
        let (file, pin) = make_crate(tmp.path(), "kata-dep", "1.2.3", "");
        let vendor = tmp.path().join("vendor");

        // The error of materialising `pin` must name it and say `why`.
        let refused = |why: &str| {
            let err = format!(
                "{:#}",
                materialise(&store, std::slice::from_ref(&pin), &vendor).unwrap_err()
            );
            assert!(
                err.contains("crate kata-dep 1.2.3") && err.contains(why),
                "{err}"
            );
        };
        // Missing: the error says how to fill the store.
        refused("cargo xtask fetch");

        // Stored under its key but with other bytes (a tampered store).
        let (other, _) = make_crate(tmp.path(), "kata-dep", "1.2.4", "// other\n");
        fs::copy(&other, store.path(&pin.sha256)).unwrap();
        refused("corrupt");
        assert!(!vendor.join("kata-dep-1.2.3").exists());

        // Right bytes: materialised; a crate no longer pinned is removed,
        // anything else in the directory is left alone.
        fs::copy(&file, store.path(&pin.sha256)).unwrap();
        materialise(&store, std::slice::from_ref(&pin), &vendor).unwrap();
        fs::write(vendor.join("notes.txt"), "mine").unwrap();
        materialise(&store, &[], &vendor).unwrap();
        assert!(!vendor.join("kata-dep-1.2.3").exists());
        assert!(vendor.join("notes.txt").exists());
    }

    #[test]
    fn a_crate_of_another_name_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::create(&tmp.path().join("store")).unwrap();
        let (file, mut pin) = make_crate(tmp.path(), "kata-dep", "1.2.3", "");
        store.put(&pin.sha256, &file).unwrap();
        pin.name = "other".into();
        let err = format!(
            "{:#}",
            materialise(&store, std::slice::from_ref(&pin), &tmp.path().join("v")).unwrap_err()
        );
        assert!(
            err.contains("crate other 1.2.3") && err.contains("other-1.2.3/Cargo.toml"),
            "{err}"
        );
    }

    #[test]
    fn the_config_replaces_crates_io() {
        let args = cargo_args(Path::new("/s/vendor"));
        assert!(args.contains(&"source.crates-io.replace-with=\"kata-image-inputs\"".to_string()));
        assert!(args.contains(&"source.kata-image-inputs.directory=\"/s/vendor\"".to_string()));
        assert!(args.contains(&"--offline".to_string()));
    }
}
