//! The directory shared with the guest under mount tag `kataShared`, as Kata
//! does: the agent mounts it (from the `Storage` in CreateSandbox) at
//! /run/kata-containers/shared/containers/. Two transports:
//! - 9p: built into QEMU, nothing else to run (the default: always there);
//! - virtio-fs: `virtiofsd` (vhost-user) — not packaged in Debian bookworm,
//!   so it is installed pinned with `cargo install`, like the vsock backend.
//!   It needs the shared memfd memory backend, which the vsock backend needs too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::cleanup::{wait_for_path, Session};
use crate::arch::Arch;

pub const MOUNT_TAG: &str = "kataShared";
const VIRTIOFSD_VERSION: &str = "1.13.2";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ShareKind {
    /// 9p over virtio (no host daemon).
    #[value(name = "9p")]
    NineP,
    /// virtio-fs through virtiofsd.
    #[value(name = "virtio-fs", alias = "virtiofs")]
    VirtioFs,
}

/// Does virtiofsd on a `host` read a `guest`'s FUSE requests as meant?
/// FUSE carries the guest's open(2) flags and integers as the guest has
/// them; nobody translates. Two mismatches break the share here:
/// - byte order: an s390x guest on a little-endian host mounts the share
///   and finds nothing in it ("the container rootfs ... is not a directory");
/// - O_LARGEFILE, which a 64-bit guest kernel adds to every open: ppc64le's
///   is 0o200000, the host's O_DIRECTORY on x86_64, so each exec and open of
///   a file failed with ENOTDIR. aarch64's O_LARGEFILE is x86_64's
///   O_NOFOLLOW, which a file opened by inode does not notice.
pub fn virtio_fs_understands(guest: Arch, host: Arch) -> bool {
    let big_endian = |a: Arch| a == Arch::S390x;
    big_endian(guest) == big_endian(host)
        && open_flags(guest).largefile & open_flags(host).directory == 0
}

/// The open(2) flags whose values differ across Linux arches
/// (asm-generic/fcntl.h and the arm64 and powerpc overrides).
struct OpenFlags {
    directory: u32,
    largefile: u32,
}

fn open_flags(arch: Arch) -> OpenFlags {
    match arch {
        Arch::X86_64 | Arch::S390x => OpenFlags {
            directory: 0o200000,
            largefile: 0o100000,
        },
        Arch::Aarch64 => OpenFlags {
            directory: 0o40000,
            largefile: 0o400000,
        },
        Arch::Ppc64le => OpenFlags {
            directory: 0o40000,
            largefile: 0o200000,
        },
    }
}

impl ShareKind {
    /// The name the e2e suite takes (`--share`), which picks the Storage driver.
    pub fn name(self) -> &'static str {
        match self {
            ShareKind::NineP => "9p",
            ShareKind::VirtioFs => "virtio-fs",
        }
    }
}

impl FromStr for ShareKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<ShareKind> {
        match s {
            "9p" => Ok(ShareKind::NineP),
            "virtio-fs" | "virtiofs" => Ok(ShareKind::VirtioFs),
            other => bail!("unknown share kind {other:?} (expected 9p or virtio-fs)"),
        }
    }
}

/// A shared directory ready for QEMU: the host path and the QEMU arguments.
pub struct Share {
    pub host_dir: PathBuf,
    /// Arguments without the transport suffix of the device (`-pci`, `-device`, `-ccw`).
    pub qemu_args: Vec<String>,
}

impl Share {
    /// QEMU arguments for the device on `transport` ("pci", "device" or "ccw").
    pub fn args(&self, transport: &str) -> Vec<String> {
        self.qemu_args
            .iter()
            .map(|a| a.replace("{transport}", transport))
            .collect()
    }
}

/// Set up the share of `host_dir` (starting virtiofsd when asked for).
pub fn start(
    session: &mut Session,
    kind: ShareKind,
    host_dir: &Path,
    sock_dir: &Path,
) -> Result<Share> {
    std::fs::create_dir_all(host_dir)
        .with_context(|| format!("creating {}", host_dir.display()))?;
    let path = host_dir.display().to_string();
    if path.contains(',') {
        bail!("shared dir {path} contains a comma, which QEMU's option syntax cannot carry");
    }
    let qemu_args = match kind {
        ShareKind::NineP => nine_p_args(&path),
        ShareKind::VirtioFs => {
            let sock = start_virtiofsd(session, host_dir, sock_dir)?;
            virtio_fs_args(&sock.display().to_string())
        }
    };
    Ok(Share {
        host_dir: host_dir.to_path_buf(),
        qemu_args,
    })
}

fn nine_p_args(path: &str) -> Vec<String> {
    vec![
        "-fsdev".into(),
        format!("local,id=kshare,path={path},security_model=none"),
        "-device".into(),
        format!("virtio-9p-{{transport}},fsdev=kshare,mount_tag={MOUNT_TAG}"),
    ]
}

fn virtio_fs_args(sock: &str) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!("socket,id=kshare,path={sock}"),
        "-device".into(),
        format!("vhost-user-fs-{{transport}},chardev=kshare,tag={MOUNT_TAG}"),
    ]
}

/// virtiofsd, installed pinned on first use (needs libseccomp and libcap-ng
/// headers: the `vm` group of host-packages.lock).
pub fn ensure_virtiofsd() -> Result<PathBuf> {
    crate::setup::ensure_host_packages(&["vm"], &[])?;
    crate::cmd::cargo_install("virtiofsd", VIRTIOFSD_VERSION)
}

fn start_virtiofsd(session: &mut Session, host_dir: &Path, sock_dir: &Path) -> Result<PathBuf> {
    let bin = ensure_virtiofsd()?;
    let sock = sock_dir.join("virtiofsd.sock");
    let mut cmd = Command::new(bin);
    // No sandbox: we run it as root for a throwaway test dir; the namespace
    // sandbox would need more privileges than some CI containers grant.
    cmd.arg("--socket-path")
        .arg(&sock)
        .arg("--shared-dir")
        .arg(host_dir)
        .args(["--cache", "auto", "--sandbox", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sock_dir.join("virtiofsd.log"))?);
    session.spawn("virtiofsd", cmd)?;
    wait_for_path(session, "virtiofsd", &sock, Duration::from_secs(10))?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_p_device_per_transport() {
        let share = Share {
            host_dir: PathBuf::from("/tmp/x"),
            qemu_args: nine_p_args("/tmp/x"),
        };
        let args = share.args("pci");
        assert_eq!(args[1], "local,id=kshare,path=/tmp/x,security_model=none");
        assert_eq!(args[3], "virtio-9p-pci,fsdev=kshare,mount_tag=kataShared");
        assert_eq!(
            share.args("device")[3],
            "virtio-9p-device,fsdev=kshare,mount_tag=kataShared"
        );
        assert!("nfs".parse::<ShareKind>().is_err());
        assert_eq!(
            "virtio-fs".parse::<ShareKind>().unwrap(),
            ShareKind::VirtioFs
        );
    }
}
