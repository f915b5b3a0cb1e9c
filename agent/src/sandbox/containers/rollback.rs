//! Undo steps for CreateContainer: each step that made something registers
//! how to take it back; on failure they run in reverse, so a failed create
//! leaves no process, cgroup, mount, bundle or storage reference behind.

use std::sync::Arc;

use crate::cgroups;
use crate::reaper::{self, ExitReceiver};
use crate::sandbox::AgentContext;

use crate::container::bundle::Bundle;

pub enum Undo {
    Storages(Vec<String>),
    Bundle(Arc<Bundle>),
    Cgroup(Arc<cgroups::Manager>),
    Process(i32, ExitReceiver),
}

#[derive(Default)]
pub struct Rollback {
    steps: Vec<Undo>,
}

impl Rollback {
    pub fn push(&mut self, undo: Undo) {
        self.steps.push(undo);
    }

    /// Everything worked: keep it all.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    pub async fn run(mut self, ctx: &AgentContext) {
        while let Some(step) = self.steps.pop() {
            if let Err(e) = undo(ctx, step).await {
                slog::warn!(ctx.logger, "undoing a failed create"; "error" => format!("{e:#}"));
            }
        }
    }
}

async fn undo(ctx: &AgentContext, step: Undo) -> anyhow::Result<()> {
    match step {
        Undo::Process(pid, mut exit) => {
            if exit.borrow().is_none() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                reaper::wait(&mut exit).await?;
            }
            Ok(())
        }
        Undo::Cgroup(m) => m.destroy(),
        Undo::Bundle(b) => b.remove(),
        Undo::Storages(mounts) => ctx.sandbox.lock().await.storages.remove(&mounts),
    }
}
