//! The sandbox: the state of the one pod this agent serves, the context
//! every RPC gets, and every operation that changes that state: set-up and
//! teardown (`setup`, `dns`), its storages (`mounts`) and the life cycle of
//! its containers (`containers`).
//!
//! Each field of [`Sandbox`] belongs to one module, which owns its type and
//! its logic: containers to `container`, storages to `storage`, the pause
//! process to `pidns`, the rest to `setup`. The modules below the sandbox
//! (container, storage, process, cgroups, ...) never see it.

pub mod containers;
mod dns;
pub mod mounts;
pub mod setup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use slog::Logger;

use crate::config::AgentConfig;
use crate::container::Container;
use crate::error::{Error, Result};
use crate::pidns::PauseProcess;
use crate::process::{Process, ProcessIo};
use crate::storage::StorageRegistry;

/// Everything an RPC handler may need, shared by all connections.
pub struct AgentContext {
    pub config: AgentConfig,
    pub logger: Logger,
    /// The one sandbox this agent serves (Kata runs one agent per pod VM).
    pub sandbox: tokio::sync::Mutex<Sandbox>,
    /// The agent runs as PID 1 (the guest's init).
    pub init_daemon: bool,
    /// Set when the agent is done serving: as PID 1 after DestroySandbox
    /// (then the guest powers off, as Kata's does).
    stop: tokio::sync::watch::Sender<bool>,
    /// Set once the start-up work that runs after the listener is up (see
    /// `start_up_in_background`) has finished; true when there is none.
    started: tokio::sync::watch::Sender<bool>,
}

impl AgentContext {
    pub fn new(config: AgentConfig, logger: Logger, init_daemon: bool) -> Arc<Self> {
        Arc::new(AgentContext {
            sandbox: tokio::sync::Mutex::new(Sandbox::new(&config, logger.clone())),
            config,
            logger,
            init_daemon,
            stop: tokio::sync::watch::Sender::new(false),
            started: tokio::sync::watch::Sender::new(true),
        })
    }

    /// Run `work` on a blocking thread, and make every AgentService RPC
    /// wait until it has finished (`started`). For start-up work the ttRPC
    /// listener does not need: the runtime's first Health.Check is answered
    /// while it runs (boot time), its first real request waits for it.
    /// Call before serving, from inside the runtime.
    pub fn start_up_in_background(self: &Arc<Self>, work: impl FnOnce() + Send + 'static) {
        /// Marks the start-up finished however `work` ends (a panic too),
        /// so no RPC waits forever.
        struct Finished(Arc<AgentContext>);
        impl Drop for Finished {
            fn drop(&mut self) {
                self.0.started.send_replace(true);
            }
        }
        self.started.send_replace(false);
        let finished = Finished(Arc::clone(self));
        tokio::task::spawn_blocking(move || {
            let _finished = finished;
            work();
        });
    }

    /// Returns once the background start-up work is done (at once if there
    /// is none).
    pub async fn started(&self) {
        let mut rx = self.started.subscribe();
        // The sender lives as long as the context: no error to see.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// The agent is done serving (the server stops, as PID 1 the guest
    /// powers off).
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Returns once `request_stop` was called (at once if it was already).
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        // The sender lives as long as the context: no error to see.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// The stdio of a process, taken out of the sandbox (an Arc) so that a
    /// blocked read or write never holds the sandbox lock.
    pub async fn process_io(&self, cid: &str, exec_id: &str) -> Result<Arc<ProcessIo>> {
        Ok(self.sandbox.lock().await.process(cid, exec_id)?.io.clone())
    }

    /// `process_io` with the process's exit status (a read ends when the
    /// process is gone and its output drained).
    pub async fn process_io_and_exit(
        &self,
        cid: &str,
        exec_id: &str,
    ) -> Result<(Arc<ProcessIo>, crate::reaper::ExitReceiver)> {
        let sandbox = self.sandbox.lock().await;
        let p = sandbox.process(cid, exec_id)?;
        Ok((p.io.clone(), p.exit.clone()))
    }
}

pub struct Sandbox {
    pub logger: Logger,
    /// Set by CreateSandbox; empty before.
    pub id: String,
    pub hostname: String,
    pub containers: HashMap<String, Container>,
    pub storages: StorageRegistry,
    pub config: AgentConfig,
    /// CreateSandbox ran and DestroySandbox did not yet.
    pub created: bool,
    /// Mount points of the CreateSandbox storages (released by DestroySandbox).
    pub sandbox_storages: Vec<String>,
    /// The pause process holding the pod's IPC and UTS namespaces, and its
    /// PID namespace with sandbox_pidns (started by CreateSandbox).
    pub pause: Option<PauseProcess>,
    /// Directory of OCI hooks to add to every container (guest_hook_path):
    /// its prestart/, poststart/, poststop/ subdirectories hold executables.
    pub guest_hook_path: Option<PathBuf>,
    /// /etc/resolv.conf is bind-mounted from the sandbox's DNS file.
    pub dns_mounted: bool,
    /// Without a pause PID namespace (CreateSandbox without sandbox_pidns)
    /// the first container's, held open: later containers asking for
    /// sandbox_pidns join it, as in Kata (sandbox.rs update_shared_pidns).
    pub infra_pid_ns: Option<std::fs::File>,
}

impl Sandbox {
    pub fn new(config: &AgentConfig, logger: Logger) -> Self {
        let mut storages = StorageRegistry::default();
        storages.hotplug = crate::device::Hotplug::new(config.hotplug_timeout);
        storages.watcher.logger = Some(logger.clone());
        Sandbox {
            logger,
            id: String::new(),
            hostname: String::new(),
            containers: HashMap::new(),
            storages,
            config: config.clone(),
            created: false,
            sandbox_storages: Vec::new(),
            pause: None,
            guest_hook_path: None,
            dns_mounted: false,
            infra_pid_ns: None,
        }
    }

    /// The PID namespace a container asking for sandbox_pidns joins: the
    /// pause process's when CreateSandbox asked for one, else the first
    /// container's (through the agent's descriptor: its init's pid may be
    /// reused once it exits).
    pub fn shared_pid_ns(&self) -> Option<PathBuf> {
        self.pause
            .as_ref()
            .and_then(PauseProcess::pid_ns_path)
            .or_else(|| {
                self.infra_pid_ns.as_ref().map(|f| {
                    use std::os::fd::AsRawFd;
                    PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()))
                })
            })
    }

    /// The first container of a sandbox without a pause PID namespace holds
    /// the pod's (Kata: sandbox.rs update_shared_pidns).
    pub fn note_first_container(&mut self, init_pid: i32) -> anyhow::Result<()> {
        use anyhow::Context;
        if !self.containers.is_empty() || self.shared_pid_ns().is_some() {
            return Ok(());
        }
        let path = format!("/proc/{init_pid}/ns/pid");
        let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        self.infra_pid_ns = Some(ns);
        Ok(())
    }

    /// The guest hooks to add to a new container's spec (none without a
    /// guest_hook_path). Read at each call: the directory may change.
    pub fn guest_hooks(&self) -> anyhow::Result<crate::guest::hooks::GuestHooks> {
        match &self.guest_hook_path {
            Some(dir) => crate::guest::hooks::load(dir),
            None => Ok(Default::default()),
        }
    }

    /// The container an RPC names; Kata's wording when there is none
    /// (runtimes match on it).
    pub fn container(&self, cid: &str) -> Result<&Container> {
        self.containers
            .get(cid)
            .ok_or_else(|| unknown_container(cid))
    }

    pub fn container_mut(&mut self, cid: &str) -> Result<&mut Container> {
        self.containers
            .get_mut(cid)
            .ok_or_else(|| unknown_container(cid))
    }

    /// Take the container out of the sandbox (RemoveContainer).
    pub fn take_container(&mut self, cid: &str) -> Result<Container> {
        self.containers
            .remove(cid)
            .ok_or_else(|| unknown_container(cid))
    }

    /// The process an RPC names: exec id "" (or the init's own) is the
    /// container's init.
    pub fn process(&self, cid: &str, exec_id: &str) -> Result<&Process> {
        self.container(cid)?
            .process(exec_id)
            .ok_or_else(|| Error::NotFound(format!("Invalid exec id {exec_id} in container {cid}")))
    }
}

fn unknown_container(cid: &str) -> Error {
    Error::NotFound(format!("Invalid container id {cid}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn context() -> Arc<AgentContext> {
        let logger = Logger::root(slog::Discard, slog::o!());
        AgentContext::new(AgentConfig::default(), logger, false)
    }

    #[tokio::test]
    async fn started_at_once_without_background_work() {
        let ctx = context();
        tokio::time::timeout(Duration::from_secs(5), ctx.started())
            .await
            .expect("no start-up work: nothing to wait for");
    }

    #[tokio::test]
    async fn rpcs_wait_for_the_background_start_up() {
        let ctx = context();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        ctx.start_up_in_background(move || {
            let _ = wait.recv();
        });
        let early = tokio::time::timeout(Duration::from_millis(200), ctx.started()).await;
        assert!(
            early.is_err(),
            "started() returned while the work still ran"
        );
        release.send(()).expect("the work is waiting");
        tokio::time::timeout(Duration::from_secs(5), ctx.started())
            .await
            .expect("started() once the work finished");
    }
}
