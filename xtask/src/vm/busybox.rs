//! A busybox container rootfs for the target arch, for the e2e container
//! tests: Debian's statically linked `busybox-static` .deb for that arch,
//! fetched with `apt-get download`, checked against a pinned sha256 and cached
//! by that hash under ~/.cache/kata-image/busybox/.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;

const VERSION: &str = "1:1.35.0-4+deb12u1+b1";

/// sha256 of `busybox-static_<VERSION>_<debian arch>.deb` (bookworm main).
fn pinned_sha256(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744",
        Arch::Aarch64 => "732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5",
        Arch::Ppc64le => "932deb885b840a8cf529708c03a1e87833dc64e66a70585721f8a356d9fe995b",
        Arch::S390x => "65e29a4dea3ca365e9ee73a6b4fa2a42c8cbbd3b13753250e68b4835876fe316",
    }
}

/// The applets the tests call, as symlinks to /bin/busybox (busybox's own
/// `--install` cannot run here for a foreign arch).
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "ls", "true", "false", "id", "hostname", "ps", "kill", "head",
    "wc", "env", "mkdir", "touch", "grep",
];

/// Directory holding `rootfs/` (bin/busybox plus applet links), built once per hash.
pub fn ensure_rootfs(arch: Arch) -> Result<PathBuf> {
    let sha = pinned_sha256(arch);
    let mut key = crate::cache::KeyHasher::new("busybox-rootfs");
    key.str(sha).str(&APPLETS.join(","));
    let key = key.finish();
    let dir = crate::cache::fill("busybox", &key, |tmp| build(arch, tmp))?;
    Ok(dir.join("rootfs"))
}

fn build(arch: Arch, out: &Path) -> Result<()> {
    let dl = out.join("download");
    std::fs::create_dir_all(&dl)?;
    let spec = format!("busybox-static:{}={VERSION}", arch.debian());
    let log = crate::paths::host_log("vm", "busybox");
    crate::cmd::run(
        Command::new("apt-get")
            .args(["download", &spec])
            .current_dir(&dl),
        &log,
    )
    .with_context(|| {
        format!(
            "downloading {spec}: is the {} architecture added (cargo xtask setup --arch {arch})?",
            arch.debian()
        )
    })?;
    let deb = single_deb(&dl)?;
    let got = crate::cache::sha256_file(&deb)?;
    let want = pinned_sha256(arch);
    if got != want {
        bail!(
            "{} has sha256 {got}, pinned {want}: refusing it",
            deb.display()
        );
    }
    let unpacked = out.join("deb");
    crate::cmd::run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        &log,
    )?;
    lay_out(&unpacked.join("bin/busybox"), &out.join("rootfs"))?;
    std::fs::remove_dir_all(&dl)?;
    std::fs::remove_dir_all(&unpacked)?;
    Ok(())
}

fn single_deb(dir: &Path) -> Result<PathBuf> {
    let mut debs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            debs.push(path);
        }
    }
    match debs.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one .deb in {}, found {}",
            dir.display(),
            debs.len()
        ),
    }
}

/// A minimal container rootfs: /bin/busybox, its applet links, and the
/// directories an OCI runtime mounts over.
fn lay_out(busybox: &Path, rootfs: &Path) -> Result<()> {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(busybox, bin.join("busybox"))
        .with_context(|| format!("copying {}", busybox.display()))?;
    for applet in APPLETS {
        symlink("busybox", bin.join(applet))?;
    }
    for d in ["proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_busybox_and_applets() {
        let dir = std::env::temp_dir().join(format!("busybox-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("busybox");
        std::fs::write(&fake, b"\x7fELF").unwrap();
        let rootfs = dir.join("rootfs");
        lay_out(&fake, &rootfs).unwrap();
        assert_eq!(
            std::fs::read(rootfs.join("bin/busybox")).unwrap(),
            b"\x7fELF"
        );
        assert_eq!(
            std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
            PathBuf::from("busybox")
        );
        assert!(rootfs.join("proc").is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_arch_is_pinned() {
        for a in Arch::ALL {
            assert_eq!(pinned_sha256(a).len(), 64);
        }
    }
}
