//! Declarative rootfs recipes: `osbuilder-configs/<name>.toml`, one section per
//! concern (packages, init, skeleton, image, initrd).

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::kernel::Profile;
use crate::paths::repo_root;

pub const DEFAULT_RECIPE: &str = "agent-init";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Taken from the file name, not from the file.
    #[serde(skip)]
    pub name: String,
    pub recipe: About,
    pub packages: Packages,
    pub init: Init,
    pub skeleton: Skeleton,
    pub image: ImageConfig,
    pub initrd: InitrdConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct About {
    pub description: String,
    /// The kernel the image ships and `vm test` boots: `kata` (Kata's guest
    /// kernel feature set, the default) or `minimal`; `--kernel-profile`
    /// overrides it.
    #[serde(default = "default_kernel_profile")]
    pub kernel_profile: Profile,
}

fn default_kernel_profile() -> Profile {
    Profile::Kata
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    pub install: Vec<String>,
    /// Kata's EXTRA_PKGS (rootfs-builder/rootfs.sh): packages added to the
    /// recipe's, always with their Depends/Pre-Depends closure (less
    /// `exclude`), as debootstrap's --include takes them, even in a recipe
    /// that takes `install` as it is. Locked like the rest.
    #[serde(default)]
    pub extra: Vec<String>,
    #[serde(default)]
    pub debug_console: Vec<String>,
    #[serde(default)]
    pub resolve_dependencies: bool,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub strip: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitMode {
    Agent,
    Systemd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Init {
    pub mode: InitMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skeleton {
    pub dirs: Vec<String>,
    /// Symlinks made after the dirs: path inside the rootfs -> link target.
    #[serde(default)]
    pub links: std::collections::BTreeMap<String, String>,
    pub hostname: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    Ext4,
    Erofs,
}

impl Filesystem {
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Erofs => "erofs",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    pub filesystem: Filesystem,
    #[serde(default)]
    pub ext4_journal: bool,
    #[serde(default)]
    pub erofs_compression: String,
    pub free_space_mib: u64,
    pub align_mib: u64,
    /// A measured root: the dm-verity hash tree on a second partition
    /// (Kata's MEASURED_ROOTFS=yes).
    #[serde(default)]
    pub verity: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitrdConfig {
    pub compression: String,
}

impl Recipe {
    pub fn path(name: &str) -> PathBuf {
        repo_root()
            .join("osbuilder-configs")
            .join(format!("{name}.toml"))
    }

    pub fn load(name: &str) -> Result<Recipe> {
        check_name(name)?;
        let path = Recipe::path(name);
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading recipe {name:?} ({})", path.display()))?;
        Recipe::parse(name, &text).with_context(|| format!("in recipe {}", path.display()))
    }

    pub fn parse(name: &str, text: &str) -> Result<Recipe> {
        let mut recipe: Recipe = toml::from_str(text)?;
        recipe.name = name.to_string();
        recipe.validate()?;
        Ok(recipe)
    }

    /// Every package the lock must pin: the base list plus the optional ones.
    pub fn lock_roots(&self) -> Vec<String> {
        let mut all = self.packages.install.clone();
        all.extend(self.packages.debug_console.iter().cloned());
        all.extend(self.packages.extra.iter().cloned());
        all.sort();
        all.dedup();
        all
    }

    /// The lock's roots, each with whether its dependencies are followed:
    /// `install` and `debug_console` as `resolve_dependencies` says, `extra`
    /// always.
    pub fn lock_groups(&self) -> Vec<(Vec<String>, bool)> {
        let mut base = self.packages.install.clone();
        base.extend(self.packages.debug_console.iter().cloned());
        let mut groups = vec![(base, self.packages.resolve_dependencies)];
        if !self.packages.extra.is_empty() {
            groups.push((self.packages.extra.clone(), true));
        }
        groups
    }

    /// Whether a build takes the whole locked closure of its arch rather
    /// than the listed names only.
    pub fn takes_closure(&self) -> bool {
        self.packages.resolve_dependencies || !self.packages.extra.is_empty()
    }

    fn validate(&self) -> Result<()> {
        for p in self.lock_roots() {
            check_package_name(&p)?;
        }
        for d in self
            .skeleton
            .dirs
            .iter()
            .chain(self.skeleton.links.keys())
            .chain(&self.packages.strip)
        {
            check_relative(d)?;
        }
        if let Some((link, _)) = self.skeleton.links.iter().find(|(_, t)| t.is_empty()) {
            bail!("[skeleton] links: {link:?} has an empty target");
        }
        if self.image.align_mib == 0 {
            bail!("[image] align_mib must be at least 1");
        }
        if !matches!(self.image.erofs_compression.as_str(), "" | "lz4" | "lz4hc") {
            bail!(
                "[image] erofs_compression {:?}: expected \"\", \"lz4\" or \"lz4hc\"",
                self.image.erofs_compression
            );
        }
        if self.initrd.compression != "gzip" {
            bail!(
                "[initrd] compression {:?}: only \"gzip\" is supported",
                self.initrd.compression
            );
        }
        if self.skeleton.hostname.is_empty() || self.skeleton.hostname.contains('/') {
            bail!(
                "[skeleton] hostname {:?} is not a host name",
                self.skeleton.hostname
            );
        }
        Ok(())
    }
}

/// Recipe names become file names: keep them plain.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        crate::usage!("recipe name {name:?}: use letters, digits, '-' and '_' only");
    }
    if !Recipe::path(name).is_file() {
        let known = names().unwrap_or_default();
        crate::usage!(
            "unknown recipe {name:?}: osbuilder-configs/ has {} (add osbuilder-configs/{name}.toml to make a new one)",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
    }
    Ok(())
}

/// `--recipe`: one of the recipes that exist, listed in `--help` and in the
/// error for any other name.
pub fn arg_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        names()
            .unwrap_or_default()
            .into_iter()
            .map(clap::builder::PossibleValue::new),
    )
}

/// The recipes that exist: `osbuilder-configs/<name>.toml`.
pub fn names() -> Result<Vec<String>> {
    let dir = repo_root().join("osbuilder-configs");
    let mut names = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "toml") {
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Debian package names: lower-case letters, digits, `+ - .` (Policy 5.6.1).
pub fn check_package_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        bail!("{name:?} is not a Debian package name");
    }
    Ok(())
}

/// A path inside the rootfs, given relative to `/`: no `..`, no leading `/`.
pub fn check_relative(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        bail!("{path:?}: expected a relative path inside the rootfs without `.`, `..` or `//`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[recipe]
description = "t"
[packages]
install = ["ca-certificates"]
debug_console = ["busybox-static"]
[init]
mode = "agent"
[skeleton]
dirs = ["proc", "run/kata-containers"]
hostname = "h"
[image]
filesystem = "erofs"
free_space_mib = 1
align_mib = 1
[initrd]
compression = "gzip"
"#;

    #[test]
    fn parses_minimal_recipe() {
        let r = Recipe::parse("t", MINIMAL).unwrap();
        assert_eq!(r.init.mode, InitMode::Agent);
        assert_eq!(r.image.filesystem, Filesystem::Erofs);
        assert_eq!(r.lock_roots(), vec!["busybox-static", "ca-certificates"]);
        assert!(
            !r.image.verity,
            "a measured root is asked for, not the default"
        );
        let measured = MINIMAL.replace("align_mib = 1", "align_mib = 1\nverity = true");
        assert!(Recipe::parse("t", &measured).unwrap().image.verity);
    }

    /// `kernel_profile` defaults to kata; only the two profiles parse.
    #[test]
    fn kernel_profile_is_kata_unless_the_recipe_says_minimal() {
        assert_eq!(
            Recipe::parse("t", MINIMAL).unwrap().recipe.kernel_profile,
            Profile::Kata
        );
        let minimal = MINIMAL.replace(
            "description = \"t\"",
            "description = \"t\"\nkernel_profile = \"minimal\"",
        );
        assert_eq!(
            Recipe::parse("t", &minimal).unwrap().recipe.kernel_profile,
            Profile::Minimal
        );
        let bad = MINIMAL.replace(
            "description = \"t\"",
            "description = \"t\"\nkernel_profile = \"big\"",
        );
        let err = format!("{:#}", Recipe::parse("t", &bad).unwrap_err());
        assert!(err.contains("big"), "{err}");
    }

    /// EXTRA_PKGS: locked with their closure even where `install` is taken
    /// as it is; a bad name is refused like any other.
    #[test]
    fn extra_packages_are_locked_with_their_dependencies() {
        let r = Recipe::parse("t", MINIMAL).unwrap();
        assert!(!r.takes_closure());
        assert_eq!(r.lock_groups().len(), 1);
        let extra = MINIMAL.replace(
            "debug_console = ",
            "extra = [\"iptables\"]\ndebug_console = ",
        );
        let r = Recipe::parse("t", &extra).unwrap();
        assert!(r.takes_closure());
        assert_eq!(
            r.lock_roots(),
            vec!["busybox-static", "ca-certificates", "iptables"]
        );
        assert_eq!(
            r.lock_groups(),
            vec![
                (
                    vec!["ca-certificates".to_string(), "busybox-static".to_string()],
                    false
                ),
                (vec!["iptables".to_string()], true)
            ]
        );
        let bad = MINIMAL.replace(
            "debug_console = ",
            "extra = [\"Bad Name\"]\ndebug_console = ",
        );
        assert!(Recipe::parse("t", &bad).is_err());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_paths() {
        let extra = MINIMAL.replace("[init]", "[init]\nshell = true");
        assert!(Recipe::parse("t", &extra).is_err());
        let escape = MINIMAL.replace("\"proc\"", "\"../etc\"");
        let err = format!("{:#}", Recipe::parse("t", &escape).unwrap_err());
        assert!(err.contains("../etc"), "{err}");
        assert!(check_relative("/etc").is_err());
        assert!(check_relative("a//b").is_err());
        assert!(check_relative("run/kata-containers").is_ok());
    }

    #[test]
    fn checks_names() {
        assert!(check_name("agent-init").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_package_name("libc6").is_ok());
        assert!(check_package_name("Libc6").is_err());
        assert!(check_package_name("a b").is_err());
    }

    #[test]
    fn shipped_recipes_parse() {
        for name in ["agent-init", "systemd"] {
            Recipe::load(name).unwrap();
        }
    }

    /// Kata's rootfs builder makes /var/run a link to /run
    /// (tools/osbuilder/rootfs-builder/ubuntu/rootfs_lib.sh); programs
    /// that write pid files or sockets there expect it.
    #[test]
    fn every_recipe_links_var_run_to_run() {
        for entry in std::fs::read_dir(repo_root().join("osbuilder-configs")).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
                continue;
            };
            let r = Recipe::load(name).unwrap();
            assert_eq!(
                r.skeleton.links.get("var/run").map(String::as_str),
                Some("/run"),
                "{name}"
            );
        }
    }

    /// Kata's image builder rounds the image up to 128 MiB
    /// (IMAGE_SIZE_ALIGNMENT_MB, tools/osbuilder/image-builder/image_builder.sh):
    /// booted as an NVDIMM the image sits in the memory hot-plug area, and a
    /// DIMM hot-added after it must start on a 128 MiB memory-block boundary
    /// (else the guest says "unaligned hotplug range" and ignores it).
    #[test]
    fn every_recipe_aligns_its_image_for_memory_hotplug() {
        for name in names().unwrap() {
            let r = Recipe::load(&name).unwrap();
            assert_eq!(
                r.image.align_mib % 128,
                0,
                "{name}: align_mib {}",
                r.image.align_mib
            );
        }
    }
}
