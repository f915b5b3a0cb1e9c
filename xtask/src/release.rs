//! `cargo xtask release`: everything a release publishes, in `target/dist/`,
//! byte-identical across builds. The workflow only runs this and uploads.
//!
//! Per arch: `kata-image-<arch>.tar.gz` in Kata's install layout,
//! `manifest-<arch>.json`, `sbom-<arch>.spdx.json`; over all of them one
//! `SHA256SUMS`, and `SHA256SUMS.sig` when `--key` is given.
//!
//! The tarball is deterministic by construction: entries sorted by path,
//! every mtime SOURCE_DATE_EPOCH, uid/gid 0 with no owner names, modes
//! 0644/0755, no atime/ctime, and gzip without a name or a time.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::cache::sha256_file;
use crate::{image, paths, sbom, sign};

/// Where Kata's static tarball puts the guest assets and the runtime's
/// configuration (tools/packaging/kata-deploy: /opt/kata/share/...).
pub const ASSETS_DIR: &str = "opt/kata/share/kata-containers";
pub const CONFIG_D: &str = "opt/kata/share/defaults/kata-containers/config.d";
/// The drop-in the runtime merges over configuration.toml
/// (src/runtime/pkg/katautils/config.go: `config.d` beside the base file).
pub const DROP_IN: &str = "50-kata-image.toml";

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "x86_64")]
    arch: ArchSelection,
    /// Sign SHA256SUMS with this SSH private key (see `cargo xtask sign`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The release directory.
    #[arg(long, default_value_os_t = dist_dir())]
    out: PathBuf,
    /// Bundle the artifacts already in target/artifacts/<arch>/ (checked
    /// against their SHA256SUMS) instead of building them: CI publishes the
    /// bytes its build jobs tested.
    #[arg(long)]
    prebuilt: bool,
}

/// `target/dist/`.
pub fn dist_dir() -> PathBuf {
    paths::target_dir().join("dist")
}

pub fn run(args: Args) -> Result<()> {
    let epoch = crate::rootfs::source_date_epoch()?;
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut assets = Vec::new();
    for arch in args.arch.arches() {
        let artifacts = paths::artifacts_dir(arch);
        if args.prebuilt {
            sign::check_sums(&artifacts).context("--prebuilt artifacts")?;
        } else {
            image::ensure_built(arch).with_context(|| format!("building the {arch} image"))?;
        }
        assets.extend(bundle(arch, &artifacts, epoch, &args.out)?);
    }
    write_sums(&args.out, &assets)?;
    if let Some(key) = &args.key {
        crate::setup::ensure_host_packages(&["release"])?;
        sign::sign(&args.out, key)?;
    } else {
        remove_if_present(&args.out.join(sign::SIG))?;
    }
    for name in assets.iter().chain([&sign::SUMS.to_string()]) {
        let p = args.out.join(name);
        eprintln!("xtask release: {}  {}", sha256_file(&p)?, p.display());
    }
    Ok(())
}

/// One arch's release assets from its artifacts dir, written to `out`;
/// returns their file names.
pub fn bundle(arch: Arch, artifacts: &Path, epoch: i64, out: &Path) -> Result<Vec<String>> {
    let entries = layout(arch, artifacts)?;
    let tarball = format!("kata-image-{}.tar.gz", arch.name());
    write_tarball(&entries, epoch, &out.join(&tarball))
        .with_context(|| format!("writing {tarball}"))?;
    let manifest = format!("manifest-{}.json", arch.name());
    let sbom_name = format!("sbom-{}.spdx.json", arch.name());
    copy(&artifacts.join(image::MANIFEST), &out.join(&manifest))?;
    copy(&artifacts.join(sbom::SBOM), &out.join(&sbom_name))?;
    Ok(vec![tarball, manifest, sbom_name])
}

/// One entry of the tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { from: PathBuf },
    Text(String),
    Link(String),
}

/// Kata's names for our artifacts (tools/packaging/kernel/build-kernel.sh
/// installs `vmlinuz-<version>`, `vmlinux-<version>`, `config-<version>` and
/// the `vmlinuz.container`/`vmlinux.container` links the configuration names;
/// osbuilder's images are kata-containers.img and kata-containers-initrd.img),
/// plus the config.d drop-in pointing the runtime at them.
pub fn layout(arch: Arch, artifacts: &Path) -> Result<BTreeMap<String, Entry>> {
    let manifest_path = artifacts.join(image::MANIFEST);
    let text = fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    let release = manifest["kernel"]["release"]
        .as_str()
        .with_context(|| format!("{} has no kernel.release", manifest_path.display()))?;

    let mut e = BTreeMap::new();
    let asset = |name: &str| format!("{ASSETS_DIR}/{name}");
    for name in [image::IMAGE, image::INITRD] {
        e.insert(asset(name), file(artifacts, name)?);
    }
    // The bootable image is compressed (vmlinuz) on x86_64 and s390x; the
    // aarch64 Image and the ppc64le vmlinux are not.
    let (boot, compressed) = match arch {
        Arch::X86_64 | Arch::S390x => ("vmlinuz", true),
        Arch::Aarch64 => ("Image", false),
        Arch::Ppc64le => ("vmlinux", false),
    };
    let boot_name = if compressed {
        format!("vmlinuz-{release}")
    } else {
        format!("vmlinux-{release}")
    };
    e.insert(asset(&boot_name), file(artifacts, boot)?);
    let container = if compressed {
        "vmlinuz.container"
    } else {
        "vmlinux.container"
    };
    e.insert(asset(container), Entry::Link(boot_name.clone()));
    if arch == Arch::X86_64 {
        let vmlinux = format!("vmlinux-{release}");
        e.insert(asset(&vmlinux), file(artifacts, "vmlinux")?);
        e.insert(asset("vmlinux.container"), Entry::Link(vmlinux));
    }
    e.insert(
        asset(&format!("config-{release}")),
        file(artifacts, "kernel.config")?,
    );
    e.insert(
        format!("{CONFIG_D}/{DROP_IN}"),
        Entry::Text(drop_in(container)),
    );
    Ok(e)
}

fn file(dir: &Path, name: &str) -> Result<Entry> {
    let from = dir.join(name);
    if !from.is_file() {
        bail!(
            "{} is missing: build it with `cargo xtask image`",
            from.display()
        );
    }
    Ok(Entry::File { from })
}

/// The runtime drop-in: our kernel and disk image for QEMU.
fn drop_in(kernel: &str) -> String {
    format!(
        "# kata-image guest assets (cargo xtask release). The Kata runtime merges\n\
         # config.d/*.toml over configuration.toml.\n\
         [hypervisor.qemu]\n\
         kernel = \"/{ASSETS_DIR}/{kernel}\"\n\
         image = \"/{ASSETS_DIR}/{}\"\n",
        image::IMAGE
    )
}

/// The tarball: parent directories first, every entry in path order.
pub fn write_tarball(entries: &BTreeMap<String, Entry>, epoch: i64, out: &Path) -> Result<()> {
    let mtime = u64::try_from(epoch).context("SOURCE_DATE_EPOCH before 1970")?;
    let tmp = out.with_extension("tmp");
    let f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(f, flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut all: BTreeMap<String, Option<&Entry>> = BTreeMap::new();
    for path in entries.keys() {
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            all.insert(format!("{}/", d.display()), None);
            dir = d.parent();
        }
    }
    all.extend(entries.iter().map(|(k, v)| (k.clone(), Some(v))));
    for (path, entry) in &all {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        match entry {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, path, std::io::empty())?;
            }
            Some(Entry::Link(target)) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, path, target)?;
            }
            Some(Entry::Text(text)) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(text.len() as u64);
                tar.append_data(&mut h, path, text.as_bytes())?;
            }
            Some(Entry::File { from }) => {
                let f =
                    fs::File::open(from).with_context(|| format!("opening {}", from.display()))?;
                let len = f.metadata()?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(len);
                tar.append_data(&mut h, path, f)
                    .with_context(|| format!("adding {}", from.display()))?;
            }
        }
    }
    let gz = tar.into_inner().context("finishing the tar stream")?;
    let mut f = gz.finish().context("finishing the gzip stream")?;
    f.flush()?;
    f.sync_all()?;
    fs::rename(&tmp, out).with_context(|| format!("moving {} into place", out.display()))
}

/// SHA256SUMS over the release assets.
fn write_sums(dir: &Path, names: &[String]) -> Result<()> {
    let sums = names
        .iter()
        .map(|n| Ok((n.clone(), sha256_file(&dir.join(n))?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let path = dir.join(sign::SUMS);
    fs::write(&path, image::manifest::sha256sums(&sums))
        .with_context(|| format!("writing {}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn remove_if_present(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the stale {}", p.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake artifacts dir of `arch` (what `cargo xtask image` leaves).
    fn artifacts(dir: &Path, arch: Arch) {
        let mut names = vec![image::IMAGE, image::INITRD, "kernel.config", sbom::SBOM];
        names.push(match arch {
            Arch::X86_64 | Arch::S390x => "vmlinuz",
            Arch::Aarch64 => "Image",
            Arch::Ppc64le => "vmlinux",
        });
        if arch == Arch::X86_64 {
            names.push("vmlinux");
        }
        for n in names {
            fs::write(dir.join(n), format!("{n} bytes")).unwrap();
        }
        fs::write(
            dir.join(image::MANIFEST),
            r#"{"kernel": {"release": "6.12.95"}}"#,
        )
        .unwrap();
    }

    fn list(tarball: &Path) -> Vec<(String, u64, u64, u64, u32, String)> {
        let f = fs::File::open(tarball).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                    h.username().unwrap().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn two_bundles_are_byte_identical_whatever_the_files_on_disk_say() {
        let src = tempfile::tempdir().unwrap();
        artifacts(src.path(), Arch::X86_64);
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let names = bundle(Arch::X86_64, src.path(), 1_700_000_000, one.path()).unwrap();
        // Another mode and mtime on disk must not reach the tarball.
        let img = src.path().join(image::IMAGE);
        fs::set_permissions(&img, fs::Permissions::from_mode(0o600)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(&img, format!("{} bytes", image::IMAGE)).unwrap();
        bundle(Arch::X86_64, src.path(), 1_700_000_000, two.path()).unwrap();
        for n in &names {
            let (a, b) = (
                fs::read(one.path().join(n)).unwrap(),
                fs::read(two.path().join(n)).unwrap(),
            );
            assert!(a == b, "{n} differs between two builds");
        }
        let entries = list(&one.path().join("kata-image-x86_64.tar.gz"));
        let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted, "entries are not in path order");
        for want in [
            "opt/kata/share/kata-containers/kata-containers.img",
            "opt/kata/share/kata-containers/kata-containers-initrd.img",
            "opt/kata/share/kata-containers/vmlinuz-6.12.95",
            "opt/kata/share/kata-containers/vmlinuz.container",
            "opt/kata/share/kata-containers/vmlinux.container",
            "opt/kata/share/kata-containers/config-6.12.95",
            "opt/kata/share/defaults/kata-containers/config.d/50-kata-image.toml",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
        for (path, mtime, uid, gid, mode, user) in &entries {
            assert_eq!(
                (*mtime, *uid, *gid, user.as_str()),
                (1_700_000_000, 0, 0, ""),
                "{path}"
            );
            assert!([0o644, 0o755, 0o777].contains(mode), "{path}: {mode:o}");
        }
        // Another epoch is another tarball.
        let three = tempfile::tempdir().unwrap();
        bundle(Arch::X86_64, src.path(), 1_700_000_001, three.path()).unwrap();
        assert_ne!(
            fs::read(one.path().join("kata-image-x86_64.tar.gz")).unwrap(),
            fs::read(three.path().join("kata-image-x86_64.tar.gz")).unwrap()
        );
    }

    #[test]
    fn each_arch_gets_kata_names_and_a_missing_artifact_is_named() {
        for arch in Arch::ALL {
            let src = tempfile::tempdir().unwrap();
            artifacts(src.path(), arch);
            let l = layout(arch, src.path()).unwrap();
            let link = l
                .iter()
                .find_map(|(k, v)| match v {
                    Entry::Link(t) if k.ends_with(".container") => Some(t.clone()),
                    _ => None,
                })
                .unwrap();
            assert!(
                l.contains_key(&format!("{ASSETS_DIR}/{link}")),
                "{arch}: {link}"
            );
            let drop_in = l.values().find_map(|v| match v {
                Entry::Text(t) => Some(t.clone()),
                _ => None,
            });
            let drop_in = drop_in.unwrap();
            let conf: toml::Value = toml::from_str(&drop_in).unwrap();
            let kernel = conf["hypervisor"]["qemu"]["kernel"].as_str().unwrap();
            assert!(
                l.contains_key(kernel.trim_start_matches('/')),
                "{arch}: {kernel}"
            );
        }
        let src = tempfile::tempdir().unwrap();
        artifacts(src.path(), Arch::S390x);
        fs::remove_file(src.path().join("vmlinuz")).unwrap();
        let err = format!("{:#}", layout(Arch::S390x, src.path()).unwrap_err());
        assert!(err.contains("vmlinuz"), "{err}");
    }
}
