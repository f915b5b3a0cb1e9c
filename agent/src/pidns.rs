//! The sandbox PID namespace (CreateSandbox `sandbox_pidns`): a tiny pause
//! process, PID 1 of a new PID namespace, that containers join through
//! `/proc/<pid>/ns/pid`. It reaps whatever gets re-parented to it.
//!
//! Nothing is bind-mounted to keep the namespace alive (Kata's persistent
//! `/run/sandbox-ns` mounts outlive a crashed agent and break the next
//! CreateSandbox): the namespace lives exactly as long as the pause process,
//! which dies with the agent (PR_SET_PDEATHSIG).

use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

pub struct PauseProcess {
    pid: Pid,
}

impl PauseProcess {
    /// Start the pause process. Call it from a thread that lives as long as
    /// the agent (a runtime worker thread): the death signal fires when the
    /// creating thread exits.
    pub fn spawn() -> Result<PauseProcess> {
        let mut stack = vec![0u8; 64 * 1024];
        // SAFETY: the child runs only `pause_main`, which calls
        // async-signal-safe libc functions and never returns into Rust code
        // shared with the parent's other threads.
        let pid = unsafe {
            nix::sched::clone(
                Box::new(pause_main),
                &mut stack,
                CloneFlags::CLONE_NEWPID,
                Some(libc::SIGCHLD),
            )
        }
        .context("starting the sandbox pause process in a new PID namespace")?;
        Ok(PauseProcess { pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The PID namespace containers of the sandbox join.
    pub fn pid_ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/pid", self.pid))
    }

    /// Kill it (which kills every process left in its namespace) and reap it.
    pub fn stop(self) -> Result<()> {
        match kill(self.pid, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(e).with_context(|| format!("killing pause process {}", self.pid)),
        }
        // ECHILD: the agent's reaper got there first.
        match waitpid(self.pid, None) {
            Ok(_) | Err(nix::errno::Errno::ECHILD) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("reaping pause process {}", self.pid)),
        }
    }
}

fn pause_main() -> isize {
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        loop {
            if libc::wait(std::ptr::null_mut()) < 0 {
                // No children: sleep; orphans re-parented meanwhile wait a second.
                let t = libc::timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                libc::nanosleep(&t, std::ptr::null_mut());
            }
        }
    }
}
