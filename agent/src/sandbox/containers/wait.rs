//! WaitProcess: the exit status of a container's init or exec'd process,
//! delivered by the reaper (no polling). An exec'd process is forgotten once
//! waited for, as in Kata.

use crate::container::Status;
use crate::error::Result;
use crate::reaper;
use crate::sandbox::AgentContext;

pub async fn wait(ctx: &AgentContext, cid: &str, exec_id: &str) -> Result<i32> {
    let (mut exit, is_init) = {
        let sandbox = ctx.sandbox.lock().await;
        let c = sandbox.container(cid)?;
        let p = sandbox.process(cid, exec_id)?;
        (p.exit.clone(), p.pid == c.init.pid)
    };
    let status = reaper::wait(&mut exit).await?;
    let mut sandbox = ctx.sandbox.lock().await;
    if let Ok(c) = sandbox.container_mut(cid) {
        if is_init {
            c.status = Status::Stopped;
        } else {
            c.execs.remove(exec_id);
        }
    }
    Ok(status)
}
