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
    /// Where the start-up work that runs after the listener is up (see
    /// `start_up_in_background`) stands; `Done` when there is none.
    started: tokio::sync::watch::Sender<StartUp>,
}

impl AgentContext {
    pub fn new(config: AgentConfig, logger: Logger, init_daemon: bool) -> Arc<Self> {
        Arc::new(AgentContext {
            sandbox: tokio::sync::Mutex::new(Sandbox::new(&config, logger.clone())),
            config,
            logger,
            init_daemon,
            stop: tokio::sync::watch::Sender::new(false),
            started: tokio::sync::watch::Sender::new(StartUp::Done),
        })
    }

    /// Run `work` on a thread of its own, and make every AgentService RPC
    /// wait until it has finished (`started`), and fail with its error if it
    /// failed. For start-up work the ttRPC listener does not need: the
    /// runtime's first Health.Check is answered while it runs (boot time),
    /// its first real request waits for it.
    ///
    /// The thread runs SCHED_IDLE: with Kata's one vCPU it would otherwise
    /// take half the CPU from the path to the listener (under TCG the
    /// listener came up 50 ms later beside the cgroup mounts); it gets the
    /// CPU whenever the agent waits, which it does from the listener on.
    pub fn start_up_in_background(
        self: &Arc<Self>,
        work: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
    ) {
        self.started.send_replace(StartUp::Running);
        let finished = Finished {
            ctx: Arc::clone(self),
            outcome: StartUp::Failed("the start-up work ended without an outcome".into()),
        };
        let spawned = std::thread::Builder::new()
            .name("start-up".into())
            .spawn(move || {
                // The whole guard into the thread (a closure would capture
                // only the field), dropped when the thread ends.
                let mut finished = finished;
                idle_priority();
                finished.outcome = match work() {
                    Ok(()) => StartUp::Done,
                    Err(e) => StartUp::Failed(format!("{e:#}")),
                };
            });
        if let Err(e) = spawned {
            // The closure, and the guard in it, are dropped: say why.
            self.started.send_replace(StartUp::Failed(format!(
                "starting the start-up thread: {e}"
            )));
        }
    }

    /// Returns once the background start-up work is done (at once if there
    /// is none), with its error if it failed.
    pub async fn started(&self) -> Result<()> {
        let mut rx = self.started.subscribe();
        // The sender lives as long as the context: no error to see.
        let outcome = match rx.wait_for(|s| *s != StartUp::Running).await {
            Ok(s) => s.clone(),
            Err(_) => return Ok(()),
        };
        match outcome {
            StartUp::Failed(why) => Err(Error::internal(format!(
                "the agent's start-up failed: {why}"
            ))),
            _ => Ok(()),
        }
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

/// Where the background start-up work stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StartUp {
    Running,
    Done,
    Failed(String),
}

/// Publishes the start-up work's outcome however the thread ends (a panic
/// too, then with the default "without an outcome"), so no RPC waits
/// forever.
struct Finished {
    ctx: Arc<AgentContext>,
    outcome: StartUp,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let outcome = std::mem::replace(&mut self.outcome, StartUp::Done);
        self.ctx.started.send_replace(outcome);
    }
}

/// The calling thread runs only when nothing else of the guest wants the CPU
/// (SCHED_IDLE). A refusal costs only the ordering: the work runs anyway.
fn idle_priority() {
    // SAFETY: an all-zero sched_param is valid (priority 0, as SCHED_IDLE
    // needs; musl's has more fields than glibc's); pid 0 is the calling
    // thread, and `param` outlives the call.
    unsafe {
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
    };
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
            .expect("no start-up work: nothing to wait for")
            .expect("nothing failed");
    }

    #[tokio::test]
    async fn rpcs_wait_for_the_background_start_up() {
        let ctx = context();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        ctx.start_up_in_background(move || {
            let _ = wait.recv();
            Ok(())
        });
        let early = tokio::time::timeout(Duration::from_millis(200), ctx.started()).await;
        assert!(
            early.is_err(),
            "started() returned while the work still ran"
        );
        release.send(()).expect("the work is waiting");
        tokio::time::timeout(Duration::from_secs(5), ctx.started())
            .await
            .expect("started() once the work finished")
            .expect("the work succeeded");
    }

    /// Start-up work that fails (lo not brought up) must not leave RPCs
    /// running as if the guest were ready: each gets the failure.
    #[tokio::test]
    async fn a_failed_start_up_fails_every_rpc_with_its_cause() {
        let ctx = context();
        ctx.start_up_in_background(|| Err(anyhow::anyhow!("bringing lo up: no such device")));
        for _ in 0..2 {
            let err = tokio::time::timeout(Duration::from_secs(5), ctx.started())
                .await
                .expect("the outcome is published")
                .expect_err("the start-up failed");
            let text = format!("{err:#}");
            assert!(
                text.contains("start-up failed: bringing lo up: no such device"),
                "{text}"
            );
        }
    }

    /// A panic in the work (an unwinding build) still ends the wait.
    #[tokio::test]
    async fn a_panicking_start_up_still_ends_the_wait() {
        let ctx = context();
        ctx.start_up_in_background(|| panic!("start-up work panicked on purpose"));
        let err = tokio::time::timeout(Duration::from_secs(5), ctx.started())
            .await
            .expect("the outcome is published")
            .expect_err("no outcome is a failure");
        assert!(format!("{err:#}").contains("without an outcome"), "{err:#}");
    }

    /// The work runs SCHED_IDLE, so the path to the listener keeps the CPU.
    #[tokio::test]
    async fn the_start_up_work_runs_at_idle_priority() {
        let ctx = context();
        let (tx, rx) = std::sync::mpsc::channel();
        ctx.start_up_in_background(move || {
            // SAFETY: no arguments; reads the calling thread's policy.
            let policy = unsafe { libc::sched_getscheduler(0) };
            let _ = tx.send(policy);
            Ok(())
        });
        let policy = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the work ran");
        assert_eq!(policy, libc::SCHED_IDLE);
    }
}
