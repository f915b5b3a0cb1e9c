//! Duties of the agent when it is the guest's init (PID 1): mount the
//! kernel filesystems (/proc before the listener, the rest behind it), set
//! PATH, never die of a signal, and power the VM off when it is done
//! serving. Reaping orphans is the container life cycle's reaper.

use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

use crate::mountinfo;

/// (source, target, fstype, flags, data)
type Mount = (
    &'static str,
    &'static str,
    &'static str,
    MsFlags,
    &'static str,
);

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// /proc: the configuration is /proc/cmdline, and the checks of the other
/// mounts read /proc/self/mountinfo.
const PROC: Mount = ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, "");

/// The kernel filesystems requests need, in order (/dev before what lives
/// inside it). The listener needs none of them.
fn request_mounts() -> Vec<Mount> {
    vec![
        ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
        ("dev", "/dev", "devtmpfs", MsFlags::MS_NOSUID, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "gid=5,mode=0620,ptmxmode=0666",
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=0755",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            "mode=1777",
        ),
    ]
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything PID 1 needs before the configuration can even be read
/// (/proc/cmdline). Call it first thing, from the main thread, before any
/// other thread exists (it sets environment variables). The other kernel
/// filesystems are `mount_for_requests`, behind the listener.
pub fn early_setup() -> Result<()> {
    // A stray SIGTERM must not stop the guest's init (the kernel would panic).
    // SAFETY: SIG_IGN is a valid disposition; no handler code runs.
    unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigIgn,
        )
    }
    .context("ignoring SIGTERM")?;
    prefetch_own_binary();
    mount_once(PROC)?;
    if std::env::var_os("PATH").is_none() {
        // SAFETY: called before the runtime or any other thread starts.
        unsafe { std::env::set_var("PATH", DEFAULT_PATH) };
    }
    Ok(())
}

/// /sys, /dev, /dev/pts, /dev/shm, /run and /tmp, each unless already
/// mounted: start-up work before the first request (after `early_setup`).
/// Kata's agent mounts them before it listens; they took 30 ms of an aarch64
/// boot under TCG on the way to the listener, which needs none of them.
pub fn mount_for_requests() -> Result<()> {
    for m in request_mounts() {
        mount_once(m)?;
    }
    Ok(())
}

/// Ask the kernel to read the whole agent binary into the page cache now,
/// in the background (QEMU reads the disk beside the vCPU). Otherwise each
/// first touch of its code is a page fault that reads 128 KiB from the root
/// disk and waits: 23 such waits on the way to the listener of an aarch64
/// boot under TCG. By argv[0], the path the kernel ran (/proc is not mounted
/// yet); only an optimisation: on failure the faults read it as before.
fn prefetch_own_binary() {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let Some(exe) = std::env::args_os().next() else {
        return;
    };
    if let Ok(file) = std::fs::File::open(exe) {
        let _ = posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
    }
}

/// The end of the guest: flush the filesystems and power off, as Kata's
/// agent does once its server stopped (src/agent/src/main.rs main: sync,
/// reboot(RB_POWER_OFF)). PID 1 must not simply exit (the kernel would
/// panic). Returns only if the kernel refused.
pub fn power_off() -> Result<()> {
    nix::unistd::sync();
    let refused = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    refused.map(|never| match never {}).context("powering off")
}

/// Mount unless something is mounted there already (the initramfs or a
/// previous stage may have done it). /proc comes first, so mountinfo can be
/// read for every later entry.
fn mount_once((source, target, fstype, flags, data): Mount) -> Result<()> {
    let path = Path::new(target);
    let already = if target == "/proc" {
        Path::new("/proc/self/mountinfo").exists()
    } else {
        mountinfo::mount_count(path)? > 0
    };
    if already {
        return Ok(());
    }
    // A /tmp that already holds files belongs to the image: keep it.
    if target == "/tmp"
        && std::fs::read_dir(path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::create_dir_all(path).with_context(|| format!("creating {target}"))?;
    let data = (!data.is_empty()).then_some(data);
    mount(Some(source), path, Some(fstype), flags, data)
        .with_context(|| format!("mounting {fstype} on {target}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn mount_table_is_ordered() {
        assert_eq!(super::PROC.1, "/proc");
        let targets: Vec<&str> = super::request_mounts().iter().map(|m| m.1).collect();
        assert!(!targets.contains(&"/proc"), "/proc is early_setup's");
        let dev = targets.iter().position(|t| *t == "/dev").expect("/dev");
        let pts = targets
            .iter()
            .position(|t| *t == "/dev/pts")
            .expect("/dev/pts");
        assert!(dev < pts, "/dev before what lives inside it");
    }
}
