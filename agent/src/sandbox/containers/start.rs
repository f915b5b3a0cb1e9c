//! StartContainer: write exec.fifo; the parked container process execvp's.
//! Poststart hooks run afterwards.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;

use crate::container::{hooks, launcher, Status};
use crate::error::{Error, Result};
use crate::sandbox::AgentContext;

pub async fn start(ctx: &AgentContext, cid: &str) -> Result<()> {
    let (mut channel, fifo, bundle_dir, pid) = {
        let mut sandbox = ctx.sandbox.lock().await;
        let c = sandbox.container_mut(cid)?;
        if c.status != Status::Created {
            return Err(Error::invalid(format!(
                "container {cid} is {}, not created",
                c.status.as_str()
            )));
        }
        let channel = c
            .parked
            .take()
            .ok_or_else(|| Error::invalid(format!("container {cid} is being started already")))?;
        (
            channel,
            c.bundle.fifo.clone(),
            c.bundle.dir.clone(),
            c.init.pid,
        )
    };
    // The parked process holds the fifo open for reading, so a non-blocking
    // open succeeds while it lives (ENXIO: it is gone).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .with_context(|| {
            format!(
                "opening {} (is the container process still alive?)",
                fifo.display()
            )
        })?;
    f.write_all(&[0]).context("writing exec.fifo")?;
    drop(f);
    let started = launcher::finish_exec(&mut channel).await;

    let mut sandbox = ctx.sandbox.lock().await;
    let c = sandbox.container_mut(cid)?;
    c.bundle.remove_fifo();
    if let Err(e) = started {
        c.status = Status::Stopped;
        return Err(Error::Internal(
            e.context(format!("starting container {cid}")),
        ));
    }
    c.status = Status::Running;
    let state = hooks::state(cid, Status::Running, pid, &bundle_dir, &c.spec);
    let poststart = c.spec.hooks().as_ref().and_then(|h| h.poststart().clone());
    drop(sandbox);
    // A failing poststart hook is reported but does not stop the container
    // (OCI: the runtime logs it and continues).
    if let Err(e) = hooks::run("poststart", poststart.as_ref(), &state).await {
        slog::warn!(ctx.logger, "poststart hook failed"; "container" => cid, "error" => format!("{e:#}"));
    }
    Ok(())
}
