//! manifest.json (every input and output of an image build, by hash) and
//! SHA256SUMS. Key order is fixed by the structs and BTreeMaps; the only
//! time in it is SOURCE_DATE_EPOCH.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::paths;

#[derive(Serialize)]
pub struct Manifest {
    pub schema: u32,
    pub arch: String,
    pub source_date_epoch: i64,
    pub git: Git,
    pub recipe: RecipeInfo,
    pub packages: Vec<Package>,
    pub agent: Hashed,
    pub kernel: KernelInfo,
    pub rootfs: RootfsInfo,
    /// A measured root's dm-verity parameters (root hash, salt, blocks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verity: Option<super::verity::Verity>,
    pub toolchain: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, Output>,
}

#[derive(Serialize)]
pub struct Git {
    pub commit: String,
    /// Uncommitted changes in the tree that built this (a release must say false).
    pub dirty: bool,
}

#[derive(Serialize)]
pub struct RecipeInfo {
    pub name: String,
    pub file_sha256: String,
    pub lock_sha256: String,
    pub init: String,
    pub filesystem: String,
    pub debug_console: bool,
}

#[derive(Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub sha256: String,
}

#[derive(Serialize)]
pub struct Hashed {
    pub sha256: String,
}

#[derive(Serialize)]
pub struct KernelInfo {
    /// File name -> sha256 (the image, vmlinux, kernel.config).
    pub files: BTreeMap<String, String>,
    pub release: String,
    /// Where the source came from (package and version).
    pub source: String,
    /// sha256 of the source tarball (kernel/source.toml), when pinned there.
    pub source_sha256: Option<String>,
    pub config_sha256: Option<String>,
    /// The kernel step's cache key: the hash of all of its inputs.
    pub cache_key: String,
}

#[derive(Serialize)]
pub struct RootfsInfo {
    pub digest: String,
    pub entries: usize,
    pub fs_uuid: String,
}

#[derive(Serialize)]
pub struct Output {
    pub sha256: String,
    pub size: u64,
}

impl Manifest {
    pub fn to_json(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(self).context("serialising manifest.json")?;
        s.push('\n');
        Ok(s)
    }
}

/// `<sha256>  <name>` lines, sorted by name (sha256sum -c reads it).
pub fn sha256sums(files: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (name, sum) in files {
        let _ = writeln!(out, "{sum}  {name}");
    }
    out
}

pub fn git() -> Git {
    let root = paths::repo_root();
    let commit = capture(
        Command::new("git")
            .current_dir(&root)
            .args(["rev-parse", "HEAD"]),
    )
    .unwrap_or_else(|| "unknown".to_string());
    let dirty = capture(Command::new("git").current_dir(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_some_and(|s| !s.is_empty());
    Git { commit, dirty }
}

/// Versions of the tools that shaped the outputs (first line of each).
pub fn toolchain() -> BTreeMap<String, String> {
    let probes: [(&str, &str, &[&str]); 7] = [
        ("rustc", "rustc", &["-V"]),
        ("rustc-debian", "/usr/bin/rustc", &["-V"]),
        ("gcc", "gcc", &["--version"]),
        ("mkfs.ext4", "mke2fs", &["-V"]),
        ("mkfs.erofs", "mkfs.erofs", &["-V"]),
        ("dpkg-deb", "dpkg-deb", &["--version"]),
        ("apt", "apt-get", &["--version"]),
    ];
    probes
        .iter()
        .filter_map(|(key, prog, args)| {
            let out = Command::new(prog).args(*args).output().ok()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())?
                .trim()
                .to_string();
            Some((key.to_string(), line))
        })
        .collect()
}

fn capture(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            schema: 1,
            arch: "x86_64".into(),
            source_date_epoch: 1_700_000_000,
            git: Git {
                commit: "c".into(),
                dirty: false,
            },
            recipe: RecipeInfo {
                name: "agent-init".into(),
                file_sha256: "r".into(),
                lock_sha256: "l".into(),
                init: "/usr/bin/kata-agent".into(),
                filesystem: "ext4".into(),
                debug_console: false,
            },
            packages: vec![Package {
                name: "ca-certificates".into(),
                version: "1".into(),
                arch: "all".into(),
                sha256: "p".into(),
            }],
            agent: Hashed { sha256: "a".into() },
            kernel: KernelInfo {
                files: BTreeMap::from([("vmlinuz".into(), "k".into())]),
                release: "6.12.95".into(),
                source: "linux-source-6.12 6.12.95-1~bpo12+1".into(),
                source_sha256: None,
                config_sha256: Some("cfg".into()),
                cache_key: "key".into(),
            },
            rootfs: RootfsInfo {
                digest: "d".into(),
                entries: 3,
                fs_uuid: "u".into(),
            },
            verity: None,
            toolchain: BTreeMap::from([("rustc".into(), "rustc 1.85".into())]),
            outputs: BTreeMap::from([
                (
                    "kata-containers.img".into(),
                    Output {
                        sha256: "i".into(),
                        size: 2,
                    },
                ),
                (
                    "kata-containers-initrd.img".into(),
                    Output {
                        sha256: "j".into(),
                        size: 1,
                    },
                ),
            ]),
        }
    }

    #[test]
    fn manifest_shape_and_key_order_are_stable() {
        let json = sample().to_json().unwrap();
        assert_eq!(json, sample().to_json().unwrap());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "schema",
            "arch",
            "source_date_epoch",
            "git",
            "recipe",
            "packages",
            "agent",
            "kernel",
            "rootfs",
            "toolchain",
            "outputs",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["outputs"]["kata-containers.img"]["sha256"], "i");
        assert_eq!(v["kernel"]["config_sha256"], "cfg");
        // Top-level keys come in declaration order, nested maps sorted.
        let arch = json.find("\"arch\"").unwrap();
        let outputs = json.find("\"outputs\"").unwrap();
        assert!(arch < outputs);
        let initrd = json.find("kata-containers-initrd.img").unwrap();
        let img = json.find("\"kata-containers.img\"").unwrap();
        assert!(initrd < img);
    }

    /// A measured root's parameters are in the manifest; an image without
    /// one has no `verity` key (its manifest is unchanged).
    #[test]
    fn a_measured_root_is_in_the_manifest() {
        assert!(!sample().to_json().unwrap().contains("verity"));
        let mut m = sample();
        m.verity = Some(super::super::verity::Verity {
            root_hash: "r".into(),
            salt: "s".into(),
            data_blocks: 7,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_algorithm: "sha256".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&m.to_json().unwrap()).unwrap();
        assert_eq!(v["verity"]["root_hash"], "r");
        assert_eq!(v["verity"]["salt"], "s");
        assert_eq!(v["verity"]["data_blocks"], 7);
        assert_eq!(v["verity"]["hash_algorithm"], "sha256");
    }

    #[test]
    fn sha256sums_format() {
        let files = BTreeMap::from([
            ("b".to_string(), "22".to_string()),
            ("a".to_string(), "11".to_string()),
        ]);
        assert_eq!(sha256sums(&files), "11  a\n22  b\n");
    }
}
