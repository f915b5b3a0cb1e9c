//! WaitProcess: the exit status of a container's init or exec'd process,
//! delivered by the reaper (no polling). An exec'd process is forgotten once
//! waited for, as in Kata.

use super::{unknown_container, unknown_process, Status};
use crate::error::Result;
use crate::reaper;
use crate::rpc::AgentContext;

pub async fn wait(ctx: &AgentContext, cid: &str, exec_id: &str) -> Result<i32> {
    let (mut exit, is_init) = {
        let sandbox = ctx.sandbox.lock().await;
        let c = sandbox
            .containers
            .get(cid)
            .ok_or_else(|| unknown_container(cid))?;
        let p = c
            .process(exec_id)
            .ok_or_else(|| unknown_process(cid, exec_id))?;
        (p.exit.clone(), p.pid == c.init.pid)
    };
    let status = reaper::wait(&mut exit).await?;
    let mut sandbox = ctx.sandbox.lock().await;
    if let Some(c) = sandbox.containers.get_mut(cid) {
        if is_init {
            c.status = Status::Stopped;
        } else {
            c.execs.remove(exec_id);
        }
    }
    Ok(status)
}
