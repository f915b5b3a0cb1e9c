//! The child reaper. The agent is a child subreaper (PR_SET_CHILD_SUBREAPER),
//! so every process of every container ends up as its child when its parent
//! goes; as PID 1 it is also the parent of every orphan of the guest.
//!
//! One task waits for SIGCHLD and then `waitpid(-1, WNOHANG)`s until nothing
//! is left, delivering each exit status to whoever registered the pid. No
//! polling: the task sleeps until the kernel signals a child change.
//!
//! Registration races: a child can exit before its pid is registered. Spawns
//! therefore go through [`spawn`], which holds the reaper lock from fork to
//! registration; the reaping task takes the same lock before delivering, so a
//! status reaped meanwhile waits for its waiter. Pids learned later (the
//! container init reports its pid over the sync channel) are looked up in a
//! short list of recently reaped unclaimed statuses.
//!
//! Caveat for other modules: a child spawned with std/tokio `Command` and then
//! waited for by them may be reaped here first (their wait gets ECHILD). Run
//! such commands through [`output`], [`run_command`] or [`spawn`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::watch;

/// How many unclaimed exit statuses to remember (orphans nobody waits for
/// are forgotten after this many).
const UNCLAIMED_KEEP: usize = 256;

/// The exit status of a process: Some(code) once it has exited; a signalled
/// process reports 128 + signal number, like a shell.
pub type ExitReceiver = watch::Receiver<Option<i32>>;

#[derive(Default)]
struct State {
    waiters: HashMap<i32, watch::Sender<Option<i32>>>,
    unclaimed: VecDeque<(i32, i32)>,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();
static STARTED: OnceLock<()> = OnceLock::new();

fn state() -> MutexGuard<'static, State> {
    // A poisoned lock only means a panic elsewhere while holding it; the map
    // itself is still consistent (every operation is a single insert/remove).
    STATE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Become a child subreaper and start the reaping task (idempotent; needs a
/// tokio runtime).
pub fn start() -> Result<()> {
    if STARTED.get().is_some() {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .context("installing the SIGCHLD handler")?;
    if STARTED.set(()).is_err() {
        return Ok(());
    }
    tokio::spawn(async move {
        // Reap once at start: children may have exited before the handler.
        reap_all();
        while sigchld.recv().await.is_some() {
            reap_all();
        }
    });
    Ok(())
}

/// The status a shell would show: exit code, or 128 + signal.
fn exit_code(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                if let Some((pid, code)) = exit_code(status) {
                    deliver(pid, code);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

fn deliver(pid: i32, code: i32) {
    let mut st = state();
    match st.waiters.remove(&pid) {
        Some(tx) => {
            let _ = tx.send(Some(code));
        }
        None => {
            if st.unclaimed.len() == UNCLAIMED_KEEP {
                st.unclaimed.pop_front();
            }
            st.unclaimed.push_back((pid, code));
        }
    }
}

fn register_locked(st: &mut State, pid: i32) -> ExitReceiver {
    if let Some(i) = st.unclaimed.iter().position(|(p, _)| *p == pid) {
        let (_, code) = st.unclaimed.remove(i).unwrap_or((pid, 0));
        return watch::channel(Some(code)).1;
    }
    let (tx, rx) = watch::channel(None);
    st.waiters.insert(pid, tx);
    rx
}

/// Watch `pid`, a process that became our child some other way (the
/// container init, reparented to us when its intermediate parent exits).
pub fn register(pid: i32) -> ExitReceiver {
    register_locked(&mut state(), pid)
}

/// Run `spawn` (which forks and returns the child's pid) with the reaper lock
/// held, and register the pid before any status can be delivered for it.
pub fn spawn<T>(spawn: impl FnOnce() -> Result<(i32, T)>) -> Result<(T, ExitReceiver)> {
    let mut st = state();
    let (pid, value) = spawn()?;
    let rx = register_locked(&mut st, pid);
    Ok((value, rx))
}

/// Stop watching `pid` (its status is of no interest any more).
pub fn forget(pid: i32) {
    state().waiters.remove(&pid);
}

/// Wait for the exit status on `rx`.
pub async fn wait(rx: &mut ExitReceiver) -> Result<i32> {
    let status = rx
        .wait_for(Option::is_some)
        .await
        .context("the reaper stopped before the process exited")?;
    Ok(status.unwrap_or(-1))
}

/// [`wait`] for plain threads (the debug console): blocks this thread.
pub fn wait_blocking(rx: &mut ExitReceiver) -> Result<i32> {
    block_on(wait(rx))
}

/// Run a command to completion through the reaper; returns its exit status.
pub async fn run_command(mut cmd: std::process::Command) -> Result<i32> {
    let (_, mut rx) = spawn(|| {
        let child = cmd
            .spawn()
            .with_context(|| format!("running {:?}", cmd.get_program()))?;
        Ok((child.id() as i32, ()))
    })?;
    wait(&mut rx).await
}

/// `Command::output()` for code running inside the agent: std's own wait
/// would race with the reaper. Signalled commands report 128 + signal as
/// their exit code.
pub async fn output(cmd: std::process::Command) -> Result<std::process::Output> {
    tokio::task::spawn_blocking(move || output_blocking(cmd, None))
        .await
        .context("the command's worker thread failed")?
}

/// [`output`] for synchronous code (worker threads, set-up paths): runs `cmd`
/// to completion through the reaper, feeding it `stdin` when given.
pub fn output_blocking(
    mut cmd: std::process::Command,
    stdin: Option<Vec<u8>>,
) -> Result<std::process::Output> {
    use std::io::{Read, Write};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let program = cmd.get_program().to_owned();
    let ((input, out, err), mut rx) = spawn(|| {
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {program:?}"))?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        Ok((child.id() as i32, pipes))
    })?;
    let feeder = std::thread::spawn(move || {
        if let (Some(mut pipe), Some(data)) = (input, stdin) {
            let _ = pipe.write_all(&data);
        }
    });
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(out.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(err.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let code = block_on(wait(&mut rx))?;
    let _ = feeder.join();
    Ok(std::process::Output {
        status: std::process::ExitStatus::from_raw((code & 0xff) << 8),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Drive one future to completion on this thread (tokio's sync primitives
/// work without a runtime); for waiting on the reaper from plain threads.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// The reaper for unit tests: one runtime for the whole test binary runs
/// it, so no test's reaper dies with that test's runtime.
#[cfg(test)]
pub(crate) fn start_for_tests() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the reaper's test runtime");
        rt.block_on(async { start() }).expect("starting the reaper");
        rt
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalled_processes_report_128_plus_signal() {
        let pid = Pid::from_raw(42);
        assert_eq!(
            exit_code(WaitStatus::Signaled(
                pid,
                nix::sys::signal::Signal::SIGKILL,
                false
            )),
            Some((42, 137))
        );
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some((42, 3)));
    }

    #[test]
    fn output_runs_a_command_through_the_reaper() {
        let rt = start_for_tests();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = rt.block_on(output(cmd)).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");

        // The blocking variant, from a plain thread, with stdin.
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "cat; echo err >&2; exit 4"]);
        let out = output_blocking(cmd, Some(b"in\n".to_vec())).unwrap();
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(out.stdout, b"in\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn an_early_exit_is_kept_for_a_late_registration() {
        deliver(999_999, 7);
        let rx = register(999_999);
        assert_eq!(*rx.borrow(), Some(7));
    }
}
