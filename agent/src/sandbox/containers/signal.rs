//! SignalProcess: to the init, to one exec'd process, or (exec id "") to the
//! init and every process in the container's cgroup.

use std::convert::TryFrom;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::sandbox::AgentContext;

pub async fn signal(ctx: &AgentContext, cid: &str, exec_id: &str, signo: u32) -> Result<()> {
    let sig = i32::try_from(signo)
        .ok()
        .and_then(|s| Signal::try_from(s).ok())
        .ok_or_else(|| Error::invalid(format!("{signo} is not a signal")))?;
    // Exec id "" with SIGKILL is Kata's "all": every process of the container.
    if exec_id.is_empty() && sig == Signal::SIGKILL {
        return kill_all(ctx, cid).await;
    }
    let (targets, is_init, exited) = {
        let sandbox = ctx.sandbox.lock().await;
        let c = sandbox.container(cid)?;
        let p = sandbox.process(cid, exec_id)?;
        let mut targets = vec![p.pid];
        if exec_id.is_empty() {
            // Best effort: the cgroup lists the processes the init may have
            // left behind when it shares the agent's pid namespace.
            targets.extend(
                c.cgroup
                    .pids()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|q| *q != p.pid),
            );
        }
        let exited = p.exit.borrow().is_some();
        (targets, p.pid == c.init.pid, exited)
    };
    if exited {
        // Already gone (the status is waiting for WaitProcess): nothing to signal.
        return Ok(());
    }
    let sig = if is_init && sig == Signal::SIGTERM && !handles(targets[0], sig) {
        // A pid-namespace init ignores signals it has no handler for; a
        // stop request must still stop it (Kata does the same).
        Signal::SIGKILL
    } else {
        sig
    };
    for (i, pid) in targets.iter().enumerate() {
        match kill(Pid::from_raw(*pid), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) if i == 0 => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "sending {sig} to pid {pid}: {e}"
                )))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// SIGKILL to the whole container, whatever the init's state: freeze its
/// cgroup so nothing forks meanwhile, kill every process in it, thaw (also
/// a paused container: the killed processes must run to die) (Kata's
/// agent: src/agent/src/rpc.rs do_signal_process). Without a freezer the
/// processes are killed as they are listed.
async fn kill_all(ctx: &AgentContext, cid: &str) -> Result<()> {
    let (cgroup, init) = {
        let sandbox = ctx.sandbox.lock().await;
        let c = sandbox.container(cid)?;
        (c.cgroup.clone(), c.init.pid)
    };
    tokio::task::spawn_blocking(move || {
        let _ = cgroup.freeze();
        let mut pids = cgroup.pids().unwrap_or_default();
        pids.push(init);
        let mut failed = None;
        for pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => failed = Some(format!("sending SIGKILL to pid {pid}: {e}")),
            }
        }
        cgroup.thaw_if_frozen()?;
        match failed {
            Some(msg) => Err(Error::internal(msg)),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| Error::internal(format!("killing container {cid}: {e}")))?
}

/// The process has a handler for `sig` (SigCgt in /proc/<pid>/status).
fn handles(pid: i32, sig: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (sig as i32 - 1)) != 0)
}
