//! `cargo xtask release`: everything a release publishes, in `target/dist/`,
//! byte-identical across builds. The workflow only runs this and uploads.
//!
//! Per arch: `kata-image-<arch>.tar.gz`, exactly what `cargo xtask install
//! --prefix /opt/kata` lays out (install.rs: Kata's names and the config.d
//! drop-in), `manifest-<arch>.json`, `sbom-<arch>.spdx.json`; over all of
//! them one `SHA256SUMS`, and `SHA256SUMS.sig` when `--key` is given.
//!
//! The tarball is deterministic by construction: entries sorted by path,
//! every mtime SOURCE_DATE_EPOCH, uid/gid 0 with no owner names, modes
//! 0644/0755, no atime/ctime, and gzip without a name or a time.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::arch::{Arch, ArchSelection};
use crate::cache::sha256_file;
use crate::install::{self, Item};
use crate::vm::BootMode;
use crate::{image, paths, sbom, sign};

/// Kata's installation prefix, where the tarball unpacks (from /).
pub const PREFIX: &str = "/opt/kata";

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
    /// Build a measured image (dm-verity, as `image --verity`; the recipe's
    /// [image] verity does too): the bundle then carries root_hash.txt and a
    /// drop-in with its kernel_verity_params.
    #[arg(long, conflicts_with = "prebuilt")]
    verity: bool,
}

/// `target/dist/`.
pub fn dist_dir() -> PathBuf {
    paths::target_dir().join("dist")
}

pub fn run(args: Args) -> Result<()> {
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut assets = Vec::new();
    for arch in args.arch.arches() {
        let artifacts = paths::artifacts_dir(arch);
        if args.prebuilt {
            sign::check_sums(&artifacts).context("--prebuilt artifacts")?;
        } else {
            // The agent first (fails fastest), then the kernel, then the image of both.
            let agent = crate::rootfs::agent_binary(arch, None)?;
            let kernel = image::default_kernel(arch, None)?;
            image::ensure_built(arch, &agent, &kernel, args.verity)
                .with_context(|| format!("building the {arch} image"))?;
        }
        assets.extend(bundle(arch, &artifacts, &args.out)?);
    }
    write_sums(&args.out, &assets)?;
    if let Some(key) = &args.key {
        crate::setup::ensure_host_packages(&["release"], &[])?;
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
/// returns their file names. The tarball's time is the artifacts' own
/// SOURCE_DATE_EPOCH (their manifest), so the bundle is a function of them.
pub fn bundle(arch: Arch, artifacts: &Path, out: &Path) -> Result<Vec<String>> {
    let epoch = artifacts_epoch(artifacts)?;
    let items = install::plan(arch, artifacts, Path::new(PREFIX), BootMode::Image)?;
    let tarball = format!("kata-image-{}.tar.gz", arch.name());
    write_tarball(&entries(&items)?, epoch, &out.join(&tarball))
        .with_context(|| format!("writing {tarball}"))?;
    let manifest = format!("manifest-{}.json", arch.name());
    let sbom_name = format!("sbom-{}.spdx.json", arch.name());
    copy(&artifacts.join(image::MANIFEST), &out.join(&manifest))?;
    copy(&artifacts.join(sbom::SBOM), &out.join(&sbom_name))?;
    Ok(vec![tarball, manifest, sbom_name])
}

fn artifacts_epoch(artifacts: &Path) -> Result<i64> {
    let path = artifacts.join(image::MANIFEST);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    m["source_date_epoch"]
        .as_i64()
        .with_context(|| format!("{} has no source_date_epoch", path.display()))
}

/// The install plan keyed by its path inside the tarball (relative to /).
fn entries(items: &[Item]) -> Result<BTreeMap<String, &Item>> {
    items
        .iter()
        .map(|item| {
            let dest = item.dest();
            let rel = dest
                .strip_prefix("/")
                .ok()
                .and_then(|p| p.to_str())
                .with_context(|| {
                    format!("install path {} is not absolute UTF-8", dest.display())
                })?;
            Ok((rel.to_string(), item))
        })
        .collect()
}

/// The tarball: parent directories first, every entry in path order.
pub fn write_tarball(entries: &BTreeMap<String, &Item>, epoch: i64, out: &Path) -> Result<()> {
    let mtime = u64::try_from(epoch).context("SOURCE_DATE_EPOCH before 1970")?;
    let tmp = out.with_extension("tmp");
    let f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(3)
        .write(f, flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut all: BTreeMap<String, Option<&Item>> = BTreeMap::new();
    for path in entries.keys() {
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            all.insert(format!("{}/", d.display()), None);
            dir = d.parent();
        }
    }
    all.extend(entries.iter().map(|(k, v)| (k.clone(), Some(*v))));
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
            Some(Item::Link { target, .. }) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, path, target)?;
            }
            Some(Item::Write { text, .. }) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(text.len() as u64);
                tar.append_data(&mut h, path, text.as_bytes())?;
            }
            Some(Item::Copy { from, .. }) => {
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
        artifacts_at(dir, arch, 1_700_000_000)
    }

    fn artifacts_at(dir: &Path, arch: Arch, epoch: i64) {
        let mut names = vec![image::IMAGE, image::INITRD, "kernel.config", sbom::SBOM];
        names.extend(match arch {
            Arch::X86_64 => &["vmlinux", "vmlinuz"][..],
            Arch::S390x => &["vmlinuz"][..],
            Arch::Aarch64 => &["Image"][..],
            Arch::Ppc64le => &["vmlinux"][..],
        });
        for n in names {
            fs::write(dir.join(n), format!("{n} bytes")).unwrap();
        }
        let manifest = serde_json::json!({
            "arch": arch.name(),
            "source_date_epoch": epoch,
            "kernel": {"release": "6.12.95", "cache_key": "0123456789abcdef"},
            "recipe": {"filesystem": "ext4"},
        });
        fs::write(dir.join(image::MANIFEST), manifest.to_string()).unwrap();
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
        let names = bundle(Arch::X86_64, src.path(), one.path()).unwrap();
        // Another mode and mtime on disk must not reach the tarball.
        let img = src.path().join(image::IMAGE);
        fs::set_permissions(&img, fs::Permissions::from_mode(0o600)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::write(&img, format!("{} bytes", image::IMAGE)).unwrap();
        bundle(Arch::X86_64, src.path(), two.path()).unwrap();
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
            "opt/kata/share/kata-containers/vmlinuz-6.12.95-0123456789ab",
            "opt/kata/share/kata-containers/vmlinuz.container",
            "opt/kata/share/kata-containers/vmlinux.container",
            "opt/kata/share/kata-containers/config-6.12.95-0123456789ab",
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
        artifacts_at(src.path(), Arch::X86_64, 1_700_000_001);
        bundle(Arch::X86_64, src.path(), three.path()).unwrap();
        assert_ne!(
            fs::read(one.path().join("kata-image-x86_64.tar.gz")).unwrap(),
            fs::read(three.path().join("kata-image-x86_64.tar.gz")).unwrap()
        );
    }

    #[test]
    fn every_arch_bundles_and_a_missing_artifact_is_named() {
        for arch in Arch::ALL {
            let src = tempfile::tempdir().unwrap();
            artifacts(src.path(), arch);
            let out = tempfile::tempdir().unwrap();
            bundle(arch, src.path(), out.path()).unwrap();
            let tarball = out
                .path()
                .join(format!("kata-image-{}.tar.gz", arch.name()));
            let paths: Vec<String> = list(&tarball).into_iter().map(|e| e.0).collect();
            for want in ["vmlinux.container", "vmlinuz.container", image::IMAGE] {
                let p = format!("opt/kata/share/kata-containers/{want}");
                assert!(paths.contains(&p), "{arch}: {p} missing from {paths:?}");
            }
        }
        let src = tempfile::tempdir().unwrap();
        artifacts(src.path(), Arch::S390x);
        fs::remove_file(src.path().join("vmlinuz")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            bundle(Arch::S390x, src.path(), out.path()).unwrap_err()
        );
        assert!(err.contains("vmlinuz"), "{err}");
    }
}
