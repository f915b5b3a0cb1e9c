//! The sandbox's shared namespaces: a tiny pause process in new IPC and UTS
//! namespaces that every container of the pod joins (Kata's agent shares
//! them across the pod: src/agent/src/sandbox.rs setup_shared_namespaces),
//! and, with CreateSandbox `sandbox_pidns`, PID 1 of a new PID namespace
//! too. Containers join through `/proc/<pid>/ns/<type>`. It reaps whatever
//! gets re-parented to it.
//!
//! Nothing is bind-mounted to keep the namespace alive (Kata's persistent
//! `/run/sandbox-ns` mounts outlive a crashed agent and break the next
//! CreateSandbox): the namespace lives exactly as long as the pause process,
//! which dies with the agent (PR_SET_PDEATHSIG).

use std::path::PathBuf;
use std::sync::{mpsc, Mutex, OnceLock};

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

pub struct PauseProcess {
    pid: Pid,
    /// It is PID 1 of its own PID namespace (sandbox_pidns).
    pid_ns: bool,
}

impl PauseProcess {
    /// Start the pause process (from the agent's spawner thread: the death
    /// signal fires when the *thread* that created the child exits, so it
    /// must be one that lives as long as the agent, not a pool thread).
    pub fn spawn(pid_ns: bool) -> Result<PauseProcess> {
        let (reply_tx, reply_rx) = mpsc::channel();
        let mut flags = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
        if pid_ns {
            flags |= CloneFlags::CLONE_NEWPID;
        }
        spawner()
            .lock()
            .map_err(|_| anyhow::anyhow!("the pause spawner lock is poisoned"))?
            .send((flags, reply_tx))
            .context("the pause spawner thread is gone")?;
        let pid = reply_rx
            .recv()
            .context("the pause spawner thread did not answer")??;
        Ok(PauseProcess { pid, pid_ns })
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The PID namespace containers of the sandbox join, if it has one.
    pub fn pid_ns_path(&self) -> Option<PathBuf> {
        self.pid_ns.then(|| self.ns_path("pid"))
    }

    /// `/proc/<pid>/ns/<kind>` ("ipc", "uts", "pid").
    pub fn ns_path(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
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

type Reply = (CloneFlags, mpsc::Sender<Result<Pid>>);

/// The one thread that creates pause processes; it never exits.
fn spawner() -> &'static Mutex<mpsc::Sender<Reply>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Reply>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name("pause-spawner".into())
            .spawn(move || {
                for (flags, reply) in rx {
                    let _ = reply.send(clone_pause(flags));
                }
                // The sender lives in a static: this line is never reached,
                // and the thread never exits.
            })
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("kata-agent: cannot start the pause spawner: {e}"));
        Mutex::new(tx)
    })
}

fn clone_pause(flags: CloneFlags) -> Result<Pid> {
    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: the child runs only `pause_main`, which calls async-signal-safe
    // libc functions and never returns into Rust code shared with the
    // parent's other threads.
    unsafe { nix::sched::clone(Box::new(pause_main), &mut stack, flags, Some(libc::SIGCHLD)) }
        .with_context(|| format!("starting the sandbox pause process in new namespaces {flags:?}"))
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
