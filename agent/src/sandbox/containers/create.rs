//! CreateContainer: validate, mount storages, set up the bundle, create the
//! cgroup, start the container init and wait until it is parked on
//! exec.fifo. Each step registers its undo; on failure all of them run.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use protocols::agent::CreateContainerRequest;

use super::rollback::{Rollback, Undo};
use crate::cgroups;
use crate::container::bundle::Bundle;
use crate::container::init::channel::{InitConfig, Mode};
use crate::container::{hooks, launcher, pod_ns, spec, validator, Container, Status};
use crate::device::{self, Hotplug};
use crate::error::{Error, Invalid, Result};
use crate::process::{Process, ProcessIo};
use crate::reaper;
use crate::sandbox::AgentContext;
use crate::storage;

/// Ids being created right now: a second create of the same id must fail
/// even before the first one is in the sandbox.
static CREATING: Mutex<Option<HashSet<String>>> = Mutex::new(None);

struct Reservation(String);

impl Reservation {
    fn take(cid: &str) -> Option<Reservation> {
        let mut set = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        set.get_or_insert_with(HashSet::new)
            .insert(cid.to_string())
            .then(|| Reservation(cid.to_string()))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut set = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = set.as_mut() {
            s.remove(&self.0);
        }
    }
}

pub async fn create(ctx: &AgentContext, req: CreateContainerRequest) -> Result<()> {
    // Containers need the reaper (a stand-alone agent starts it only now).
    reaper::start()?;
    let cid = req.container_id.clone();
    let Validated {
        oci,
        exec_id,
        cgroup_path,
    } = validate(&req)?;
    if req
        .OCI
        .as_ref()
        .and_then(|s| s.Linux.as_ref())
        .is_some_and(|l| l.Seccomp.is_some())
    {
        // Kata runtimes send it only with guest seccomp enabled (off by default).
        slog::warn!(ctx.logger, "seccomp profiles are not applied by this agent"; "container" => &cid);
    }

    let _reservation = Reservation::take(&cid)
        .ok_or_else(|| Error::invalid(format!("container {cid} is being created already")))?;
    // One cgroup per container: a second one in the same cgroup would take
    // the first one's processes and cgroup down with it on removal (and
    // stop the reaper from seeing its own). Reserved like the id, so two
    // racing creates cannot both pass.
    let _cgroup_reservation =
        Reservation::take(&format!("cgroup:{cgroup_path}")).ok_or_else(|| {
            Error::AlreadyExists(format!(
                "cgroup {cgroup_path} of container {cid} is being created for another container"
            ))
        })?;
    {
        let sandbox = ctx.sandbox.lock().await;
        if sandbox.containers.contains_key(&cid) {
            return Err(Error::invalid(format!("container {cid} already exists")));
        }
        if let Some(other) = sandbox
            .containers
            .values()
            .find(|c| c.cgroup.path() == cgroup_path)
        {
            return Err(Error::AlreadyExists(format!(
                "cgroup {cgroup_path} of container {cid} is the cgroup of container {}: \
                 each container needs its own linux.cgroupsPath",
                other.id
            )));
        }
    }
    let mut rollback = Rollback::default();
    match build(ctx, &req, oci, exec_id, &mut rollback).await {
        Ok(container) => {
            let mut sandbox = ctx.sandbox.lock().await;
            if let Err(e) = sandbox.note_first_container(container.init.pid) {
                drop(sandbox);
                rollback.run(ctx).await;
                return Err(e.context("holding the pod's PID namespace").into());
            }
            rollback.commit();
            sandbox.containers.insert(cid, container);
            Ok(())
        }
        Err(e) => {
            rollback.run(ctx).await;
            Err(e)
        }
    }
}

/// What a CreateContainer request is once its checks passed.
pub struct Validated {
    pub oci: oci_spec::runtime::Spec,
    pub exec_id: String,
    /// The container's cgroup below each hierarchy's root.
    pub cgroup_path: String,
}

/// Every check of a CreateContainer request that needs nothing but the
/// request (ids, the spec and its conversion, the cgroup path): a bad one
/// is refused here, before anything is touched. Pure, so the fuzz targets
/// (`fuzz/`) run exactly these checks.
pub fn validate(req: &CreateContainerRequest) -> Result<Validated> {
    let cid = &req.container_id;
    validator::check_id("container id", cid).invalid()?;
    let grpc = req
        .OCI
        .as_ref()
        .ok_or_else(|| Error::invalid("the request has no OCI spec"))?;
    let oci = spec::spec_from_grpc(grpc).invalid()?;
    validator::check_spec(&oci).invalid()?;
    let exec_id = if req.exec_id.is_empty() {
        cid.clone()
    } else {
        req.exec_id.clone()
    };
    validator::check_id("exec id", &exec_id).invalid()?;
    let cgroup_path = oci
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_deref())
        .and_then(|p| p.to_str())
        .unwrap_or("");
    let cgroup_path = cgroups::path::relative_path(cid, cgroup_path).invalid()?;
    Ok(Validated {
        oci,
        exec_id,
        cgroup_path,
    })
}

/// Wait for the container's devices and disks (the host hot-plugs them,
/// within agent.hotplug_timeout) on a blocking thread, without the
/// sandbox; the spec gets the guest's device numbers, the disk storages
/// their guest nodes (Kata: rpc.rs do_create_container, add_devices first).
async fn find_devices(
    req: &CreateContainerRequest,
    mut oci: oci_spec::runtime::Spec,
    hotplug: Hotplug,
) -> Result<(oci_spec::runtime::Spec, Vec<protocols::agent::Storage>)> {
    let devices = req.devices.clone();
    let storages = req.storages.clone();
    tokio::task::spawn_blocking(move || {
        device::add_devices(&mut oci, &devices, &hotplug)?;
        Ok((oci, storage::find_disks(&storages, &hotplug)?))
    })
    .await
    .map_err(|e| Error::internal(format!("waiting for the container's devices: {e}")))?
}

async fn build(
    ctx: &AgentContext,
    req: &CreateContainerRequest,
    oci: oci_spec::runtime::Spec,
    exec_id: String,
    rollback: &mut Rollback,
) -> Result<Container> {
    let cid = &req.container_id;
    let hotplug = Hotplug::new(ctx.config.hotplug_timeout);
    let (mut oci, storages) = find_devices(req, oci, hotplug).await?;
    let storage_mounts = ctx
        .sandbox
        .lock()
        .await
        .storages
        .add(&storages)
        .context("mounting the container's storages")?;
    rollback.push(Undo::Storages(storage_mounts.clone()));

    {
        let sandbox = ctx.sandbox.lock().await;
        let pause = sandbox.pause.as_ref();
        let pod = pod_ns::PodNamespaces {
            ipc: pause.map(|p| p.ns_path("ipc")),
            uts: pause.map(|p| p.ns_path("uts")),
            pid: sandbox.shared_pid_ns(),
        };
        let first = sandbox.containers.is_empty();
        pod_ns::apply(&mut oci, &pod, req.sandbox_pidns, first).invalid()?;
        // Before the bundle: its config.json shows the hooks that run.
        sandbox
            .guest_hooks()
            .and_then(|h| h.append_to(&mut oci))
            .context("adding the guest hooks")?;
    }
    let bundle = Arc::new(Bundle::create(cid, &mut oci).invalid()?);
    rollback.push(Undo::Bundle(bundle.clone()));

    let linux = oci.linux().clone().unwrap_or_default();
    let cgroup = Arc::new(
        cgroups::Manager::new(
            cid,
            linux
                .cgroups_path()
                .as_deref()
                .and_then(|p| p.to_str())
                .unwrap_or(""),
            linux.resources().as_ref(),
            ctx.config.unified_cgroup_hierarchy,
        )
        .context("creating the container's cgroup")?,
    );
    rollback.push(Undo::Cgroup(cgroup.clone()));

    let process = oci.process().clone().context("the spec has no process")?;
    let (io, stdio) = ProcessIo::for_process(&process, ctx.config.container_pipe_size)?;
    let config = InitConfig {
        mode: Mode::Create {
            spec: Box::new(oci.clone()),
            fifo: bundle.fifo.clone(),
        },
        process,
    };
    let pending = launcher::spawn(config, stdio).await?;
    let (pid, exit) = (pending.pid, pending.exit.clone());
    rollback.push(Undo::Process(pid, exit.clone()));

    cgroup
        .add_process(pid)
        .with_context(|| format!("moving the container init (pid {pid}) into its cgroup"))?;
    let state = hooks::state(cid, Status::Created, pid, &bundle.dir, &oci);
    let oci_hooks = oci.hooks().clone().unwrap_or_default();
    hooks::run("createRuntime", oci_hooks.create_runtime().as_ref(), &state).await?;
    hooks::run("prestart", oci_hooks.prestart().as_ref(), &state).await?;
    let channel = pending.proceed_to_parked().await.map_err(|e| {
        // The container's own setup failed: most often a bad mount or path.
        Error::invalid(format!("setting up container {cid}: {e:#}"))
    })?;

    Ok(Container {
        id: cid.clone(),
        status: Status::Created,
        spec: oci,
        bundle,
        init: Process {
            exec_id,
            pid,
            exit,
            io,
        },
        execs: HashMap::new(),
        cgroup,
        storage_mounts,
        parked: Some(channel),
    })
}
