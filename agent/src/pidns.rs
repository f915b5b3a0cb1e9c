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
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::reaper::{self, ExitReceiver};

/// How long `stop` waits for the reaper to report the killed pause process.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PauseProcess {
    pid: Pid,
    /// It is PID 1 of its own PID namespace (sandbox_pidns).
    pid_ns: bool,
    /// Its exit status, from the reaper (which collects every child).
    exit: ExitReceiver,
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
        let (pid, exit) = reply_rx
            .recv()
            .context("the pause spawner thread did not answer")??;
        Ok(PauseProcess { pid, pid_ns, exit })
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

    /// Kill it (which kills every process left in its namespace) and wait
    /// until the reaper has collected it.
    pub async fn stop(mut self) -> Result<()> {
        match kill(self.pid, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(e).with_context(|| format!("killing pause process {}", self.pid)),
        }
        match tokio::time::timeout(STOP_TIMEOUT, reaper::wait(&mut self.exit)).await {
            Ok(status) => status.map(|_| ()),
            Err(_) => {
                reaper::forget(self.pid.as_raw());
                anyhow::bail!(
                    "pause process {} was not reaped within {STOP_TIMEOUT:?} of SIGKILL",
                    self.pid
                )
            }
        }
    }
}

type Reply = (CloneFlags, mpsc::Sender<Result<(Pid, ExitReceiver)>>);

/// The one thread that creates pause processes; it never exits.
fn spawner() -> &'static Mutex<mpsc::Sender<Reply>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Reply>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name("pause-spawner".into())
            .spawn(move || {
                for (flags, reply) in rx {
                    // Registered with the reaper before it can exit.
                    let pause = reaper::spawn(|| clone_pause(flags).map(|pid| (pid.as_raw(), pid)));
                    let _ = reply.send(pause);
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
        // Inherited descriptors would outlive the agent if we do: the lock
        // on its `owned` record among them, which tells a later agent the
        // writer is dead.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
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
