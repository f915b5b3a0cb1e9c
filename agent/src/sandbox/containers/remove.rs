//! RemoveContainer: kill what still runs (SIGKILL), wait for it within the
//! request's timeout, run poststop hooks, then take everything down: the
//! container's cgroup, the bundle (and the rootfs bind mount) and its
//! storage references. A second remove of the same id answers NotFound.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use tokio::sync::watch;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::container::{hooks, Container, Status};
use crate::error::{Error, Result};
use crate::reaper;
use crate::sandbox::AgentContext;

/// How long to wait for cgroup members the agent did not start.
const OTHERS_GRACE: Duration = Duration::from_secs(2);

/// The outcome of a removal in flight, for a retry to wait on.
type Outcome = watch::Receiver<Option<std::result::Result<(), String>>>;

/// Removals in flight, by container id. The RPC runs detached (see
/// `rpc::run!`), so a call cut by its deadline still finishes; its retry
/// waits for that outcome instead of answering NOT_FOUND mid-way.
static REMOVING: StdMutex<Option<HashMap<String, Outcome>>> = StdMutex::new(None);

fn removing() -> std::sync::MutexGuard<'static, Option<HashMap<String, Outcome>>> {
    REMOVING.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn remove(ctx: &AgentContext, cid: &str, timeout_secs: u32) -> Result<()> {
    let (container, done) = {
        let mut sandbox = ctx.sandbox.lock().await;
        match sandbox.take_container(cid) {
            Ok(c) => {
                let (tx, rx) = watch::channel(None);
                removing()
                    .get_or_insert_with(HashMap::new)
                    .insert(cid.to_string(), rx);
                (c, tx)
            }
            Err(not_found) => {
                let in_flight = removing().as_ref().and_then(|m| m.get(cid).cloned());
                drop(sandbox);
                return match in_flight {
                    Some(rx) => outcome_of(rx).await,
                    None => Err(not_found),
                };
            }
        }
    };
    let result = remove_taken(ctx, cid, timeout_secs, container).await;
    if let Some(m) = removing().as_mut() {
        m.remove(cid);
    }
    let _ = done.send(Some(
        result.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")),
    ));
    result
}

async fn outcome_of(mut rx: Outcome) -> Result<()> {
    let outcome = rx
        .wait_for(Option::is_some)
        .await
        .map(|o| o.clone())
        .map_err(|_| Error::internal("the removal in flight ended without an outcome"))?;
    match outcome {
        Some(Ok(())) | None => Ok(()),
        Some(Err(e)) => Err(Error::internal(e)),
    }
}

async fn remove_taken(
    ctx: &AgentContext,
    cid: &str,
    timeout_secs: u32,
    container: Container,
) -> Result<()> {
    let stopped = stop_all(&container);
    let stopped = if timeout_secs == 0 {
        Ok(stopped.await)
    } else {
        tokio::time::timeout(Duration::from_secs(timeout_secs.into()), stopped).await
    };
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            ctx.sandbox
                .lock()
                .await
                .containers
                .insert(cid.to_string(), container);
            return Err(Error::Internal(e));
        }
        Err(_) => {
            // Keep it so that a later remove can finish the job.
            ctx.sandbox
                .lock()
                .await
                .containers
                .insert(cid.to_string(), container);
            return Err(Error::Internal(anyhow::anyhow!(
                "container {cid}: its processes did not exit within {timeout_secs}s"
            )));
        }
    }
    let state = hooks::state(
        cid,
        Status::Stopped,
        container.init.pid,
        &container.bundle.dir,
        &container.spec,
    );
    let poststop = container
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().clone());
    if let Err(e) = hooks::run("poststop", poststop.as_ref(), &state).await {
        slog::warn!(ctx.logger, "poststop hook failed"; "container" => cid, "error" => format!("{e:#}"));
    }
    release(ctx, container).await
}

/// SIGKILL every process of the container and wait until each is reaped.
/// Processes the agent did not start (children of the container's
/// processes) are in the cgroup; they become the agent's children when their
/// parents die (it is a subreaper), so the reaper reports them too.
async fn stop_all(c: &Container) -> anyhow::Result<()> {
    let known: Vec<&crate::process::Process> =
        std::iter::once(&c.init).chain(c.execs.values()).collect();
    let mut exits = Vec::new();
    let mut others = Vec::new();
    let mut pids = Vec::new();
    for p in &known {
        if p.exit.borrow().is_none() {
            pids.push(p.pid);
            exits.push(p.exit.clone());
        }
    }
    for pid in c.cgroup.pids().unwrap_or_default() {
        if !known.iter().any(|p| p.pid == pid) {
            others.push((pid, reaper::register(pid)));
            pids.push(pid);
        }
    }
    for pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let cgroup = c.cgroup.clone();
    tokio::task::spawn_blocking(move || cgroup.thaw_if_frozen())
        .await
        .context("thawing after SIGKILL")??;
    for mut exit in exits {
        reaper::wait(&mut exit).await?;
    }
    // A process that never becomes our child (a cgroupsPath shared with
    // processes outside the container) is not reaped here: do not wait
    // for it forever.
    for (pid, mut exit) in others {
        if tokio::time::timeout(OTHERS_GRACE, reaper::wait(&mut exit))
            .await
            .is_err()
        {
            reaper::forget(pid);
        }
    }
    Ok(())
}

async fn release(ctx: &AgentContext, c: Container) -> Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = c.cgroup.destroy() {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = c.bundle.remove() {
        errors.push(format!("{e:#}"));
    }
    if let Err(e) = ctx.sandbox.lock().await.storages.remove(&c.storage_mounts) {
        errors.push(format!("{e:#}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Internal(anyhow::anyhow!(
            "removing container {}: {}",
            c.id,
            errors.join("; ")
        )))
    }
}
