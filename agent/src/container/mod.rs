//! Containers: the life cycle (create, start, exec, wait, signal, remove),
//! one file per verb, and the `kata-agent init` child that sets a container
//! up (`init`).

pub mod bundle;
pub mod create;
pub mod exec;
pub mod hooks;
pub mod init;
mod launcher;
pub mod pod_ns;
pub mod remove;
mod rollback;
pub mod signal;
pub mod spec;
pub mod start;
pub mod validator;
pub mod wait;

use std::collections::HashMap;
use std::sync::Arc;

use oci_spec::runtime::Spec;

use crate::cgroups;
use crate::error::Error;
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

/// Kata's wording for an unknown container (runtimes match on it).
pub fn unknown_container(cid: &str) -> Error {
    Error::NotFound(format!("Invalid container id {cid}"))
}

pub fn unknown_process(cid: &str, exec_id: &str) -> Error {
    Error::NotFound(format!("Invalid exec id {exec_id} in container {cid}"))
}
