//! The agent's own open-file limit. A guest's init starts with the kernel's
//! 1024 (soft): each ttRPC connection, stream and container costs fds, and
//! at the limit ttrpc's accept loop fails with EMFILE over and over. The
//! agent raises its soft limit to the hard one (as root also the hard one,
//! to fs.nr_open); a container process gets back the limit the agent was
//! started with, so raising ours changes nothing for containers.

use std::sync::OnceLock;

use anyhow::{Context, Result};

/// The limit the agent was started with (restored in container processes).
static ORIGINAL: OnceLock<libc::rlimit> = OnceLock::new();

/// Most the hard limit is raised to (fs.nr_open is usually 1,048,576).
const MAX_HARD: u64 = 1 << 20;

/// Raise RLIMIT_NOFILE; returns (old soft, new soft).
pub fn raise() -> Result<(u64, u64)> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) } < 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_NOFILE)");
    }
    let _ = ORIGINAL.set(old);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(MAX_HARD)
        .min(MAX_HARD);
    // rlim_t is u64 on every arch the agent is built for (all 64-bit).
    let hard = nr_open.max(old.rlim_max);
    let wanted = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        return Ok((old.rlim_cur, wanted.rlim_cur));
    }
    // Not root (no CAP_SYS_RESOURCE): the soft limit can still reach the hard one.
    let soft = libc::rlimit {
        rlim_cur: old.rlim_max,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } < 0 {
        return Err(std::io::Error::last_os_error()).context("setrlimit(RLIMIT_NOFILE)");
    }
    Ok((old.rlim_cur, soft.rlim_cur))
}

/// In a child between fork and exec: put back the limit the agent was
/// started with. Async-signal-safe (one syscall, no allocation).
pub fn restore_in_child() -> std::io::Result<()> {
    if let Some(original) = ORIGINAL.get() {
        // SAFETY: setrlimit reads a struct that lives in a static.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, original) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
