//! One container: its state (`Container`), its spec from the wire
//! (`spec`, `validator`), its bundle, its OCI hooks, the launcher that
//! starts its processes and the `kata-agent init` child that sets it up
//! (`init`). The verbs that add it to or take it from the sandbox are in
//! `sandbox::containers`; nothing here knows the sandbox.

pub mod bundle;
pub mod hooks;
pub mod init;
pub mod launcher;
mod oci_de;
pub mod pod_ns;
pub mod spec;
pub mod validator;

use std::collections::HashMap;
use std::sync::Arc;

use oci_spec::runtime::Spec;

use crate::cgroups;
use crate::process::Process;
use bundle::Bundle;
use init::channel::AgentChannel;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created and parked on exec.fifo.
    Created,
    Running,
    /// The init process exited.
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// One container of the sandbox.
pub struct Container {
    pub id: String,
    pub status: Status,
    pub spec: Spec,
    pub bundle: Arc<Bundle>,
    pub init: Process,
    /// Processes started by ExecProcess, by exec id.
    pub execs: HashMap<String, Process>,
    pub cgroup: Arc<cgroups::Manager>,
    /// Guest mount points of the storages this container holds a reference on.
    pub storage_mounts: Vec<String>,
    /// The sync channel to the parked init, until StartContainer.
    pub parked: Option<AgentChannel>,
    /// linux.seccomp, compiled at create; every process of the container gets it.
    pub seccomp: Option<crate::seccomp::Filter>,
}

impl Container {
    /// The process an RPC names: "" (or the init's own exec id) is the init.
    pub fn process(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() || exec_id == self.init.exec_id {
            return Some(&self.init);
        }
        self.execs.get(exec_id)
    }
}
