//! `cargo xtask install`: put one arch's built assets into Kata's layout so
//! a Kata installation uses them with nothing else changed:
//!
//! ```text
//! <prefix>/share/kata-containers/
//!   kata-containers.img, kata-containers-initrd.img
//!   vmlinux-<release>-<key>, vmlinuz-<release>-<key>, config-<release>-<key>
//!   vmlinux.container -> vmlinux-..., vmlinuz.container -> vmlinuz-...
//! <prefix>/share/defaults/kata-containers/config.d/50-kata-image.toml
//! ```
//!
//! (Kata's names: tools/packaging/kernel/build-kernel.sh install_kata, and
//! the runtime's drop-in directory `config.d/` next to configuration.toml.)
//! What it installed is recorded with its hash in `.kata-image-install.json`;
//! it never replaces a file it did not install, or one changed since, unless
//! `--force`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::cache::sha256_file;
use crate::image;
use crate::paths;

const RECORD: &str = ".kata-image-install.json";
const DROP_IN: &str = "50-kata-image.toml";

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "x86_64")]
    arch: Arch,
    /// Kata's installation prefix.
    #[arg(long, default_value = "/opt/kata")]
    prefix: PathBuf,
    /// Which root the drop-in points the runtime at (Kata takes one of the two).
    #[arg(long, default_value = "image")]
    boot: crate::vm::BootMode,
    /// Replace files this command did not install (or that changed since).
    #[arg(long)]
    force: bool,
    /// Take the assets from here instead of target/artifacts/<arch>/.
    #[arg(long)]
    from: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| paths::artifacts_dir(args.arch));
    let plan = plan(args.arch, &from, &args.prefix, args.boot)?;
    let done = apply(&plan, &args.prefix, args.force)?;
    for line in done {
        println!("{line}");
    }
    Ok(())
}

/// One thing to put in place (also what `cargo xtask release` packs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Copy { from: PathBuf, to: PathBuf },
    Link { target: String, at: PathBuf },
    Write { text: String, to: PathBuf },
}

impl Item {
    pub fn dest(&self) -> &Path {
        match self {
            Item::Copy { to, .. } | Item::Write { to, .. } => to,
            Item::Link { at, .. } => at,
        }
    }
}

/// What an installed path was: a file's sha256 or a link's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Installed {
    File(String),
    Link(String),
}

fn share_dir(prefix: &Path) -> PathBuf {
    prefix.join("share").join("kata-containers")
}

fn drop_in_dir(prefix: &Path) -> PathBuf {
    prefix
        .join("share")
        .join("defaults")
        .join("kata-containers")
        .join("config.d")
}

/// The kernel files of `arch` in the artifacts: (uncompressed, compressed)
/// names; arches that export one image use it for both, as Kata does on ppc64le.
fn kernel_sources(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => ("vmlinux", "vmlinuz"),
        Arch::Aarch64 => ("Image", "Image"),
        Arch::Ppc64le => ("vmlinux", "vmlinux"),
        Arch::S390x => ("vmlinuz", "vmlinuz"),
    }
}

/// The parts of manifest.json (image step) the install needs.
#[derive(Deserialize)]
struct Built {
    arch: String,
    kernel: BuiltKernel,
    recipe: BuiltRecipe,
    /// A measured root's parameters (absent for an image without one).
    #[serde(default)]
    verity: Option<image::verity::Verity>,
}

#[derive(Deserialize)]
struct BuiltKernel {
    release: String,
    cache_key: String,
}

#[derive(Deserialize)]
struct BuiltRecipe {
    filesystem: String,
}

pub fn plan(
    arch: Arch,
    from: &Path,
    prefix: &Path,
    boot: crate::vm::BootMode,
) -> Result<Vec<Item>> {
    let manifest_path = from.join(image::MANIFEST);
    let text = fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {} (build the assets first: cargo xtask image --arch {arch})",
            manifest_path.display()
        )
    })?;
    let m: Built = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    if m.arch != arch.name() {
        bail!("{} is for {}, not {arch}", manifest_path.display(), m.arch);
    }
    let share = share_dir(prefix);
    let key = &m.kernel.cache_key;
    let version = format!("{}-{}", m.kernel.release, key.get(..12).unwrap_or(key));
    let mut items = Vec::new();
    for name in [image::IMAGE, image::INITRD] {
        items.push(Item::Copy {
            from: from.join(name),
            to: share.join(name),
        });
    }
    let (vmlinux, vmlinuz) = kernel_sources(arch);
    for (kind, src) in [("vmlinux", vmlinux), ("vmlinuz", vmlinuz)] {
        let versioned = format!("{kind}-{version}");
        items.push(Item::Copy {
            from: from.join(src),
            to: share.join(&versioned),
        });
        items.push(Item::Link {
            target: versioned,
            at: share.join(format!("{kind}.container")),
        });
    }
    items.push(Item::Copy {
        from: from.join("kernel.config"),
        to: share.join(format!("config-{version}")),
    });
    // A measured image's parameters beside it, as Kata's root_hash_<variant>.txt.
    if m.verity.is_some() {
        items.push(Item::Copy {
            from: from.join(image::ROOT_HASH),
            to: share.join(image::ROOT_HASH),
        });
    }
    items.push(Item::Write {
        text: drop_in(&share, &m.recipe.filesystem, boot, arch, m.verity.as_ref()),
        to: drop_in_dir(prefix).join(DROP_IN),
    });
    Ok(items)
}

/// The configuration.toml drop-in: Kata's runtime reads config.d/*.toml over
/// its base configuration, so only these keys change. A measured image
/// brings its `kernel_verity_params`, from which the runtime writes the
/// dm-verity root (hypervisor.go GetKernelRootParams).
fn drop_in(
    share: &Path,
    filesystem: &str,
    boot: crate::vm::BootMode,
    arch: Arch,
    verity: Option<&image::verity::Verity>,
) -> String {
    let image = share.join(image::IMAGE);
    let initrd = share.join(image::INITRD);
    // Kata refuses a configuration with both image and initrd set.
    let (root, other) = match boot {
        crate::vm::BootMode::Image => (
            format!("image = \"{}\"", image.display()),
            format!("# initrd = \"{}\"", initrd.display()),
        ),
        crate::vm::BootMode::Initrd => (
            format!("initrd = \"{}\"", initrd.display()),
            format!("# image = \"{}\"", image.display()),
        ),
    };
    let verity = match (boot, verity) {
        (crate::vm::BootMode::Image, Some(v)) => {
            format!("kernel_verity_params = \"{}\"\n", v.kata_params())
        }
        _ => String::new(),
    };
    format!(
        "# Written by `cargo xtask install` (kata-image): the guest kernel and\n\
         # root filesystem of this installation. Remove this file to go back.\n\
         [hypervisor.qemu]\n\
         kernel = \"{}\"\n\
         {root}\n\
         {other}\n\
         rootfs_type = \"{filesystem}\"\n\
         kernel_params = \"{}\"\n\
         {verity}",
        share.join("vmlinux.container").display(),
        crate::vm::kata::kernel_params(arch),
    )
}

fn read_record(path: &Path) -> Result<BTreeMap<PathBuf, Installed>> {
    match fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// What is at `path` now, in the record's terms (None: nothing).
fn current(path: &Path) -> Result<Option<Installed>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    if meta.file_type().is_symlink() {
        let t = fs::read_link(path).with_context(|| format!("readlink {}", path.display()))?;
        return Ok(Some(Installed::Link(t.display().to_string())));
    }
    if meta.is_dir() {
        bail!("{} is a directory", path.display());
    }
    Ok(Some(Installed::File(sha256_file(path)?)))
}

/// Check every destination first (nothing is touched if one is foreign),
/// then put the items in place and write the record. Returns what it did.
fn apply(items: &[Item], prefix: &Path, force: bool) -> Result<Vec<String>> {
    let record_path = share_dir(prefix).join(RECORD);
    let mut record = read_record(&record_path)?;
    let mut foreign = Vec::new();
    for item in items {
        let dest = item.dest();
        if let Some(now) = current(dest)? {
            if record.get(dest) != Some(&now) {
                foreign.push(dest.display().to_string());
            }
        }
    }
    if !foreign.is_empty() && !force {
        bail!(
            "not replacing what `cargo xtask install` did not install (or what changed \
             since); pass --force to replace:\n  {}",
            foreign.join("\n  ")
        );
    }
    let mut done = Vec::new();
    for item in items {
        let dest = item.dest();
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let tmp = dest.with_file_name(format!(
            ".{}.kata-image-tmp",
            dest.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ));
        let _ = fs::remove_file(&tmp);
        let installed = match item {
            Item::Copy { from, .. } => {
                fs::copy(from, &tmp)
                    .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
                Installed::File(sha256_file(&tmp)?)
            }
            Item::Write { text, .. } => {
                fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
                Installed::File(sha256_file(&tmp)?)
            }
            Item::Link { target, .. } => {
                std::os::unix::fs::symlink(target, &tmp)
                    .with_context(|| format!("linking {}", tmp.display()))?;
                Installed::Link(target.clone())
            }
        };
        // A rename replaces atomically: Kata never sees a half-written asset.
        fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
        done.push(format!("installed {}", dest.display()));
        record.insert(dest.to_path_buf(), installed);
    }
    let text = serde_json::to_string_pretty(&record).context("serialising the install record")?;
    fs::write(&record_path, text).with_context(|| format!("writing {}", record_path.display()))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::BootMode;

    /// A fake artifacts dir: the files `plan` takes, with a manifest.
    fn artifacts(dir: &Path) -> PathBuf {
        let from = dir.join("artifacts");
        fs::create_dir_all(&from).unwrap();
        for (n, body) in [
            (image::IMAGE, "img"),
            (image::INITRD, "initrd"),
            ("vmlinux", "elf"),
            ("vmlinuz", "bz"),
            ("kernel.config", "CONFIG_A=y\n"),
        ] {
            fs::write(from.join(n), body).unwrap();
        }
        let manifest = serde_json::json!({
            "schema": 1, "arch": "x86_64", "source_date_epoch": 0,
            "git": {"commit": "c", "dirty": false},
            "recipe": {"name": "agent-init", "file_sha256": "", "lock_sha256": "",
                       "init": "agent", "filesystem": "ext4", "debug_console": false},
            "packages": [], "agent": {"sha256": ""},
            "kernel": {"files": {}, "release": "6.12.95", "source": "s",
                       "cache_key": "0123456789abcdef"},
            "rootfs": {"digest": "d", "entries": 1, "fs_uuid": "u"},
            "toolchain": {}, "outputs": {}
        });
        fs::write(from.join(image::MANIFEST), manifest.to_string()).unwrap();
        from
    }

    #[test]
    fn installs_katas_layout_and_drop_in() {
        let dir = tempfile::tempdir().unwrap();
        let from = artifacts(dir.path());
        let prefix = dir.path().join("opt/kata");
        let items = plan(Arch::X86_64, &from, &prefix, BootMode::Image).unwrap();
        apply(&items, &prefix, false).unwrap();
        let share = share_dir(&prefix);
        assert_eq!(
            fs::read_to_string(share.join("kata-containers.img")).unwrap(),
            "img"
        );
        assert_eq!(
            fs::read_link(share.join("vmlinux.container")).unwrap(),
            PathBuf::from("vmlinux-6.12.95-0123456789ab")
        );
        assert_eq!(
            fs::read_to_string(share.join("vmlinux.container")).unwrap(),
            "elf"
        );
        assert_eq!(
            fs::read_to_string(share.join("vmlinuz.container")).unwrap(),
            "bz"
        );
        assert!(share.join("config-6.12.95-0123456789ab").is_file());
        let conf = fs::read_to_string(drop_in_dir(&prefix).join(DROP_IN)).unwrap();
        let v: toml::Value = toml::from_str(&conf).unwrap();
        let q = &v["hypervisor"]["qemu"];
        assert_eq!(
            q["image"].as_str().unwrap(),
            share.join("kata-containers.img").display().to_string()
        );
        assert!(
            q.get("initrd").is_none(),
            "Kata refuses image and initrd together"
        );
        assert_eq!(
            q["kernel"].as_str().unwrap(),
            share.join("vmlinux.container").display().to_string()
        );
        assert_eq!(q["rootfs_type"].as_str(), Some("ext4"));
        assert!(
            q.get("kernel_verity_params").is_none(),
            "not a measured image"
        );
        // Installing again replaces only what it installed: no --force needed.
        apply(&items, &prefix, false).unwrap();
        let initrd = plan(Arch::X86_64, &from, &prefix, BootMode::Initrd).unwrap();
        apply(&initrd, &prefix, false).unwrap();
        let conf = fs::read_to_string(drop_in_dir(&prefix).join(DROP_IN)).unwrap();
        assert!(conf.contains("\ninitrd = ") && conf.contains("\n# image = "));
    }

    /// A measured image's drop-in sets Kata's kernel_verity_params
    /// (configuration-qemu-coco-dev.toml.in), for the image only.
    #[test]
    fn a_measured_image_brings_its_kernel_verity_params() {
        let dir = tempfile::tempdir().unwrap();
        let from = artifacts(dir.path());
        let path = from.join(image::MANIFEST);
        let mut m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        m["verity"] = serde_json::json!({
            "root_hash": "ab", "salt": "cd", "data_blocks": 9,
            "data_block_size": 4096, "hash_block_size": 4096, "hash_algorithm": "sha256"
        });
        fs::write(&path, m.to_string()).unwrap();
        let prefix = dir.path().join("opt/kata");
        let conf = |boot| {
            let items = plan(Arch::X86_64, &from, &prefix, boot).unwrap();
            let text = items
                .iter()
                .find_map(|i| match i {
                    Item::Write { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .unwrap();
            toml::from_str::<toml::Value>(&text).unwrap()["hypervisor"]["qemu"].clone()
        };
        assert_eq!(
            conf(BootMode::Image)["kernel_verity_params"].as_str(),
            Some("root_hash=ab,salt=cd,data_blocks=9,data_block_size=4096,hash_block_size=4096")
        );
        assert!(conf(BootMode::Initrd).get("kernel_verity_params").is_none());
        // root_hash.txt ships beside the image; an unmeasured one has none.
        let copies = |from: &Path| -> Vec<PathBuf> {
            plan(Arch::X86_64, from, &prefix, BootMode::Image)
                .unwrap()
                .into_iter()
                .filter_map(|i| match i {
                    Item::Copy { to, .. } => Some(to),
                    _ => None,
                })
                .collect()
        };
        assert!(copies(&from).contains(&share_dir(&prefix).join(image::ROOT_HASH)));
        let plain = artifacts(&dir.path().join("plain"));
        assert!(!copies(&plain).iter().any(|p| p.ends_with(image::ROOT_HASH)));
    }

    #[test]
    fn refuses_foreign_or_changed_files_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let from = artifacts(dir.path());
        let prefix = dir.path().join("opt/kata");
        let share = share_dir(&prefix);
        fs::create_dir_all(&share).unwrap();
        // Kata's own image, installed by its packages.
        fs::write(share.join("kata-containers.img"), "kata's").unwrap();
        let items = plan(Arch::X86_64, &from, &prefix, BootMode::Image).unwrap();
        let err = apply(&items, &prefix, false).unwrap_err().to_string();
        assert!(
            err.contains("kata-containers.img") && err.contains("--force"),
            "{err}"
        );
        // Nothing was touched.
        assert_eq!(
            fs::read_to_string(share.join("kata-containers.img")).unwrap(),
            "kata's"
        );
        assert!(!share.join("vmlinux.container").exists());
        apply(&items, &prefix, true).unwrap();
        assert_eq!(
            fs::read_to_string(share.join("kata-containers.img")).unwrap(),
            "img"
        );
        // Changed after we installed it: foreign again.
        fs::write(share.join("kata-containers-initrd.img"), "edited").unwrap();
        assert!(apply(&items, &prefix, false).is_err());
        fs::remove_file(share.join("vmlinux.container")).unwrap();
        std::os::unix::fs::symlink("elsewhere", share.join("vmlinux.container")).unwrap();
        let err = apply(&items, &prefix, true).map(|_| ());
        assert!(err.is_ok());
        assert_eq!(
            fs::read_link(share.join("vmlinux.container")).unwrap(),
            PathBuf::from("vmlinux-6.12.95-0123456789ab")
        );
    }

    /// The drop-in's kernel_params are the ones `--machine kata` boots with:
    /// on aarch64 they keep the virtconsole as /dev/console (vm::kata).
    #[test]
    fn drop_in_kernel_params_are_the_kata_machines() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let conf = drop_in(Path::new("/s"), "ext4", BootMode::Image, arch, None);
            let v: toml::Value = toml::from_str(&conf).unwrap();
            assert_eq!(
                v["hypervisor"]["qemu"]["kernel_params"].as_str(),
                Some(crate::vm::kata::kernel_params(arch).as_str())
            );
        }
        assert!(drop_in(
            Path::new("/s"),
            "ext4",
            BootMode::Image,
            Arch::Aarch64,
            None
        )
        .contains(
            "kernel_params = \"cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 acpi=nospcr \
             cryptomgr.notests\""
        ));
    }

    #[test]
    fn wrong_arch_or_missing_assets_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let from = artifacts(dir.path());
        let prefix = dir.path().join("p");
        assert!(plan(Arch::Aarch64, &from, &prefix, BootMode::Image).is_err());
        let empty = dir.path().join("empty");
        let err = plan(Arch::X86_64, &empty, &prefix, BootMode::Image).unwrap_err();
        assert!(format!("{err:#}").contains("cargo xtask image"));
    }
}
