//! The namespaces of a new container inside its pod, as Kata's agent sets
//! them (src/agent/src/rpc.rs update_container_namespaces): Kata's runtime
//! strips the `pid` entry from the spec (kata_agent.go handlePidNamespace)
//! and expects the agent to add one, new, or the sandbox's when
//! `sandbox_pidns` is asked for; the IPC and UTS entries point at the
//! pod's shared namespaces.

use std::path::PathBuf;

use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

/// The pod's namespaces a container joins (none without CreateSandbox).
#[derive(Default)]
pub struct PodNamespaces {
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The sandbox PID namespace (CreateSandbox sandbox_pidns).
    pub pid: Option<PathBuf>,
}

/// Rewrite `spec`'s namespaces for the pod. `sandbox_pidns`: the request
/// asks for the shared PID namespace; without one, the pod's first
/// container gets a new one (as in Kata), a later one an error.
pub fn apply(
    spec: &mut Spec,
    pod: &PodNamespaces,
    sandbox_pidns: bool,
    first_container: bool,
) -> Result<()> {
    let Some(linux) = spec.linux_mut().as_mut() else {
        return Ok(());
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    for ns in namespaces.iter_mut() {
        let shared = match ns.typ() {
            LinuxNamespaceType::Ipc => &pod.ipc,
            LinuxNamespaceType::Uts => &pod.uts,
            _ => continue,
        };
        if shared.is_some() {
            ns.set_path(shared.clone());
        }
    }
    namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Pid);
    let pid_path = match (sandbox_pidns, &pod.pid) {
        (true, Some(p)) => Some(p.clone()),
        (true, None) if !first_container => bail!(
            "the container asks for the sandbox PID namespace, but CreateSandbox did not ask for one (sandbox_pidns)"
        ),
        _ => None,
    };
    let mut pid = LinuxNamespace::default();
    pid.set_typ(LinuxNamespaceType::Pid);
    pid.set_path(pid_path);
    namespaces.push(pid);
    linux.set_namespaces(Some(namespaces));
    Ok(())
}
