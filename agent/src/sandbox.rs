//! The sandbox: the state of the one pod this agent serves.
//!
//! Each field belongs to one module, which owns its type and its logic:
//! containers to `container`, storages to `storage`, the pause process to
//! `pidns`, the rest to `rpc::sandbox`.

use std::collections::HashMap;
use std::path::PathBuf;

use slog::Logger;

use crate::config::AgentConfig;
use crate::container::Container;
use crate::pidns::PauseProcess;
use crate::storage::StorageRegistry;

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
}

impl Sandbox {
    pub fn new(config: &AgentConfig, logger: Logger) -> Self {
        let mut storages = StorageRegistry::default();
        storages.hotplug_timeout = config.hotplug_timeout;
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
        }
    }

    /// The PID namespace every container of the sandbox joins, when
    /// CreateSandbox asked for one (sandbox_pidns).
    pub fn shared_pid_ns(&self) -> Option<PathBuf> {
        self.pause.as_ref().and_then(PauseProcess::pid_ns_path)
    }

    /// The guest hooks to add to a new container's spec (none without a
    /// guest_hook_path). Read at each call: the directory may change.
    pub fn guest_hooks(&self) -> anyhow::Result<crate::guest::hooks::GuestHooks> {
        match &self.guest_hook_path {
            Some(dir) => crate::guest::hooks::load(dir),
            None => Ok(Default::default()),
        }
    }
}
