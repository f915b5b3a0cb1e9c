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

/// Clone the pause process and return once it has armed its death signal:
/// armed after the agent is gone, PR_SET_PDEATHSIG never fires, and a
/// SIGKILLed agent would leave the pod's namespaces held by an orphan. The
/// child says so by closing its end of a pipe (with every other inherited
/// descriptor), which we read to EOF.
fn clone_pause(flags: CloneFlags) -> Result<Pid> {
    let (armed_rx, armed_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .context("creating the pause process hand-shake pipe")?;
    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: the child runs only `pause_main`, which calls async-signal-safe
    // libc functions and never returns into Rust code shared with the
    // parent's other threads.
    let pid =
        unsafe { nix::sched::clone(Box::new(pause_main), &mut stack, flags, Some(libc::SIGCHLD)) }
            .with_context(|| {
                format!("starting the sandbox pause process in new namespaces {flags:?}")
            })?;
    drop(armed_tx);
    let mut byte = [0u8; 1];
    // EOF: the child closed its copy, after the prctl (or died, which the
    // reaper reports like any exit).
    loop {
        match nix::unistd::read(&armed_rx, &mut byte) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => {
                // Not known to be armed: it must not outlive us unseen.
                let _ = kill(pid, Signal::SIGKILL);
                return Err(e).context("waiting for the pause process to start");
            }
        }
    }
    Ok(pid)
}

fn pause_main() -> isize {
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // Inherited descriptors would outlive the agent if we do: the lock
        // on its `owned` record among them, which tells a later agent the
        // writer is dead; and the hand-shake pipe, whose close tells the
        // parent the death signal is armed.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// Set in the re-executed test binary: the helper below runs only there.
    const HELPER_ENV: &str = "KATA_AGENT_PAUSE_HELPER";

    /// Not a test of its own: the body of the process whose death the test
    /// below watches. It spawns a pause process, prints its pid and exits at
    /// once, as a SIGKILLed agent does right after CreateSandbox answers.
    #[test]
    #[ignore = "helper process of spawn_returns_with_the_death_signal_armed"]
    fn pause_then_exit_helper() {
        if std::env::var_os(HELPER_ENV).is_none() {
            return;
        }
        // One CPU for the helper and all it starts; this thread real-time
        // above the spawner thread, the spawner real-time, and what the
        // spawner clones normal. When the spawner hands over the pid, this
        // thread pre-empts it, exits, and the spawner dies next, all before
        // the normal child has run at all, unless `spawn` waits for the
        // child. So the race this test is about happens every time here,
        // not only on a busy machine.
        let mut one_cpu = nix::sched::CpuSet::new();
        let _ = one_cpu.set(0);
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &one_cpu);
        let _ = spawner();
        // The thread names itself once it runs: look until it has.
        let find_spawner = || {
            std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .find(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "pause-spawner")
                })
                .and_then(|t| t.file_name().to_str()?.parse::<i32>().ok())
        };
        let spawner_tid = (0..1000).find_map(|_| {
            find_spawner().or_else(|| {
                std::thread::sleep(Duration::from_millis(1));
                None
            })
        });
        let real_time = |tid: i32, priority: i32, policy: i32| {
            let param = libc::sched_param {
                sched_priority: priority,
            };
            // SAFETY: a plain syscall with a valid parameter.
            unsafe { libc::sched_setscheduler(tid, policy, &param) }
        };
        if let Some(tid) = spawner_tid {
            real_time(tid, 2, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK);
        }
        real_time(0, 3, libc::SCHED_FIFO);
        let line = match PauseProcess::spawn(true) {
            Ok(p) => format!("pid={}\n", p.pid()),
            Err(e) => format!("error={e:#}\n"),
        };
        // SAFETY: write(2) and _exit(2) on our own stdout; no destructors
        // run, as none do for a killed agent.
        unsafe {
            libc::write(1, line.as_ptr().cast(), line.len());
            libc::_exit(0);
        }
    }

    /// A pause process whose parent exits right after `spawn` returns must
    /// die with it: `spawn` must not return before the child has armed
    /// PR_SET_PDEATHSIG (armed after the parent is gone, it never fires, and
    /// the pause process lives on as an orphan of PID 1 holding the pod's
    /// namespaces). CI saw exactly that in
    /// agent/tests/integration/sandbox/lifecycle.rs create_after_a_killed_agent_works.
    #[test]
    fn spawn_returns_with_the_death_signal_armed() {
        test_support::require_root!();
        let exe = std::env::current_exe().expect("the test binary");
        for round in 0..100 {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "pidns::tests::pause_then_exit_helper",
                    "--include-ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HELPER_ENV, "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("re-executing the test binary");
            let stdout = child.stdout.take().expect("piped stdout");
            let line = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                // libtest's "test <name> ... " precedes it on the same line.
                .find(|l| l.contains("pid=") || l.contains("error="))
                .expect("the helper prints the pause pid");
            // ECHILD when another test of this binary started the reaper,
            // which collects every child; the wait below covers the exit.
            let _ = child.wait();
            let pid: i32 = line
                .split_once("pid=")
                .map(|(_, pid)| pid.trim())
                .unwrap_or_else(|| panic!("round {round}: {line}"))
                .parse()
                .expect("a pid");
            let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat"));
            let dead = (0..250).any(|_| {
                let gone = stat().map_or(true, |s| s.contains(") Z"));
                if !gone {
                    std::thread::sleep(Duration::from_millis(20));
                }
                gone
            });
            if !dead {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                panic!(
                    "round {round}: pause process {pid} outlived its parent: {}",
                    stat().unwrap_or_default()
                );
            }
        }
    }
}
