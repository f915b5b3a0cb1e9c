//! ExecProcess: one more process in a running container's namespaces and
//! cgroup, through the same `kata-agent init` path (without the fifo).

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use protocols::agent::ExecProcessRequest;

use crate::container::init::channel::{InitConfig, Mode};
use crate::container::{launcher, spec, validator, Status};
use crate::error::{Error, Invalid, Result};
use crate::process::{Process, ProcessIo};
use crate::reaper;
use crate::sandbox::AgentContext;

/// Every check of an ExecProcess request that needs nothing but the
/// request; the process it asks for. Pure, so the fuzz targets (`fuzz/`)
/// run exactly these checks.
pub fn validate(req: &ExecProcessRequest) -> Result<oci_spec::runtime::Process> {
    validator::check_id("exec id", &req.exec_id).invalid()?;
    let grpc = req
        .process
        .as_ref()
        .ok_or_else(|| Error::invalid("the request has no process"))?;
    let process = spec::process_from_grpc(grpc).invalid()?;
    validator::check_process(&process).invalid()?;
    Ok(process)
}

pub async fn exec(ctx: &AgentContext, req: ExecProcessRequest) -> Result<()> {
    let cid = &req.container_id;
    let process = validate(&req)?;

    let (init_pid, cgroup) = {
        let sandbox = ctx.sandbox.lock().await;
        let c = sandbox.container(cid)?;
        if c.status != Status::Running {
            return Err(Error::invalid(format!(
                "container {cid} is {}, not running",
                c.status.as_str()
            )));
        }
        if c.process(&req.exec_id).is_some() {
            return Err(Error::invalid(format!(
                "exec id {} is in use in container {cid}",
                req.exec_id
            )));
        }
        (c.init.pid, c.cgroup.clone())
    };
    let (io, stdio) = ProcessIo::for_process(&process, ctx.config.container_pipe_size)?;
    let config = InitConfig {
        mode: Mode::Exec { init_pid },
        process,
    };
    let pending = launcher::spawn(config, stdio).await?;
    let (pid, mut exit) = (pending.pid, pending.exit.clone());
    let result = async {
        cgroup
            .add_process(pid)
            .with_context(|| format!("moving exec'd process {pid} into the container's cgroup"))?;
        pending.proceed_to_exec().await
    }
    .await;
    if let Err(e) = result {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = reaper::wait(&mut exit).await;
        return Err(Error::Internal(
            e.context(format!("exec {} in container {cid}", req.exec_id)),
        ));
    }
    let mut sandbox = ctx.sandbox.lock().await;
    match sandbox.container_mut(cid) {
        Ok(c) => {
            c.execs.insert(
                req.exec_id.clone(),
                Process {
                    exec_id: req.exec_id.clone(),
                    pid,
                    exit,
                    io,
                },
            );
            Ok(())
        }
        Err(gone) => {
            // Removed meanwhile: its processes are being killed.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            Err(gone)
        }
    }
}
