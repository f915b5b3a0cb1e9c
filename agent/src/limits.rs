//! Bounds on every length and count a request carries. The agent is the
//! guest's PID 1: a request that makes it allocate (or loop over) whatever a
//! number in the request says can abort the whole guest. Each bound is far
//! above what Kata's runtime sends and is checked before anything is
//! allocated; past it the request is refused (INVALID_ARGUMENT) with the
//! bound in the message.

use std::fmt;

/// ReadStdout/ReadStderr `len`. The runtime's copy loops ask for 32 KiB; a
/// reply must also fit ttRPC's 4 MiB frame, so more than 1 MiB is never useful.
pub const MAX_READ_LEN: u64 = 1 << 20;

/// CopyFile `file_size` (and so `offset`, which must lie within it). The
/// runtime copies configuration files, secrets and config maps (Kubernetes
/// caps a config map at 1 MiB).
pub const MAX_COPY_FILE_SIZE: u64 = 1 << 30;

/// Entries of a process's `env`. Linux passes at most a quarter of the stack
/// limit (2 MiB by default) to execve, which holds fewer entries than this.
pub const MAX_ENV_ENTRIES: u64 = 65_536;

/// Entries of a process's `args` (same execve argument space as `env`).
pub const MAX_ARGS: u64 = 65_536;

/// Entries of a spec's `mounts` (a pod's volumes, secrets and the defaults).
pub const MAX_MOUNTS: u64 = 4_096;

/// Device rules in force for one container (its spec's and its updates',
/// after Kata's 13 defaults): one per device the runtime passes, and each
/// costs a few instructions of the container's BPF program.
pub const MAX_DEVICE_RULES: u64 = 1_024;

/// A request value over its bound.
#[derive(Debug)]
pub struct OverLimit {
    pub what: &'static str,
    pub value: u64,
    pub max: u64,
}

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, more than this agent accepts ({})",
            self.what, self.value, self.max
        )
    }
}

impl std::error::Error for OverLimit {}

/// `value` as a usize when it is at most `max`.
pub fn check(what: &'static str, value: u64, max: u64) -> Result<usize, OverLimit> {
    if value > max {
        return Err(OverLimit { what, value, max });
    }
    usize::try_from(value).map_err(|_| OverLimit { what, value, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_bound_passes_and_past_it_fails_naming_both() {
        assert_eq!(check("len", MAX_READ_LEN, MAX_READ_LEN).unwrap(), 1 << 20);
        let e = check("ReadStream len", u32::MAX as u64, MAX_READ_LEN).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("ReadStream len") && msg.contains("4294967295"));
        assert!(msg.contains(&MAX_READ_LEN.to_string()), "{msg}");
    }
}
