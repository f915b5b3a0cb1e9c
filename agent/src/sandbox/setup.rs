//! CreateSandbox and DestroySandbox.
//!
//! CreateSandbox sets up what the whole pod shares: kernel modules, hostname,
//! DNS, storages, the shared PID namespace, the guest hooks directory. Every
//! step is undone if a later one fails, and DestroySandbox undoes all of it,
//! so a second CreateSandbox on the same guest starts from a clean slate.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use protocols::agent::CreateSandboxRequest;

use super::containers::remove;
use super::{dns, AgentContext, Sandbox};
use crate::error::{self, Error, Invalid};
use crate::pidns::PauseProcess;

pub async fn create(ctx: &AgentContext, req: &CreateSandboxRequest) -> error::Result<()> {
    let mut sandbox = ctx.sandbox.lock().await;
    if sandbox.created {
        return Err(Error::AlreadyExists(format!(
            "sandbox {:?} already exists: DestroySandbox first",
            sandbox.id
        )));
    }
    validate(req).invalid()?;
    if let Err(e) = setup(&mut sandbox, req) {
        // Leave nothing half-made behind: the next CreateSandbox must work.
        if let Err(undo) = teardown(&mut sandbox).await {
            slog::warn!(ctx.logger, "undoing a failed CreateSandbox"; "error" => format!("{undo:#}"));
        }
        return Err(e.context("CreateSandbox").into());
    }
    sandbox.created = true;
    slog::info!(ctx.logger, "sandbox created"; "sandbox" => &sandbox.id);
    Ok(())
}

/// How long DestroySandbox waits for each container's processes to die
/// after SIGKILL.
const CONTAINER_REMOVE_TIMEOUT_SECS: u32 = 10;

pub async fn destroy(ctx: &AgentContext) -> error::Result<()> {
    // Containers first, through their own remove path (kill, wait, poststop
    // hooks, cgroup, bundle, storage references); it takes the lock itself.
    let ids: Vec<String> = ctx
        .sandbox
        .lock()
        .await
        .containers
        .keys()
        .cloned()
        .collect();
    let mut errors = Vec::new();
    for cid in ids {
        if let Err(f) = remove::remove(ctx, &cid, CONTAINER_REMOVE_TIMEOUT_SECS).await {
            errors.push(format!("container {cid}: {f}"));
        }
    }
    let mut sandbox = ctx.sandbox.lock().await;
    if let Err(e) = teardown(&mut sandbox).await {
        errors.push(format!("{e:#}"));
    }
    if !errors.is_empty() {
        return Err(Error::internal(format!(
            "DestroySandbox: {}",
            errors.join("; ")
        )));
    }
    slog::info!(ctx.logger, "sandbox destroyed");
    if ctx.init_daemon {
        // Kata's agent ends its server after DestroySandbox and, as init,
        // powers the VM off (src/agent/src/rpc.rs destroy_sandbox ->
        // main.rs start_sandbox/main). The server answers this request
        // before it stops: its shutdown waits for the requests in flight
        // (a pending GetOOMEvent ends, as Kata closes its event channel).
        slog::info!(ctx.logger, "the sandbox is gone: stopping to power off");
        ctx.request_stop();
    }
    Ok(())
}

/// The checks of a CreateSandbox request that need nothing but the request
/// (pub for the fuzz targets, `fuzz/`).
pub fn validate(req: &CreateSandboxRequest) -> Result<()> {
    if req.hostname.len() > 64 || req.hostname.contains(['/', '\0', '\n']) {
        bail!("hostname {:?} is not a valid host name", req.hostname);
    }
    for d in &req.dns {
        if d.contains('\n') || d.contains('\0') {
            bail!("dns line {d:?} contains a newline or NUL");
        }
    }
    for m in &req.kernel_modules {
        if m.name.is_empty() || m.name.starts_with('-') || m.name.contains(['/', ' ']) {
            bail!("kernel module name {:?} is not valid", m.name);
        }
    }
    if !req.guest_hook_path.is_empty() && !Path::new(&req.guest_hook_path).is_absolute() {
        bail!("guest_hook_path {:?} is not absolute", req.guest_hook_path);
    }
    Ok(())
}

fn setup(sandbox: &mut Sandbox, req: &CreateSandboxRequest) -> Result<()> {
    sandbox.id = req.sandbox_id.clone();
    for m in &req.kernel_modules {
        load_kernel_module(&m.name, &m.parameters)?;
    }
    if !req.hostname.is_empty() {
        nix::unistd::sethostname(&req.hostname)
            .with_context(|| format!("setting the hostname to {:?}", req.hostname))?;
        sandbox.hostname = req.hostname.clone();
    }
    if !req.dns.is_empty() {
        dns::set_up(&req.dns)?;
        sandbox.dns_mounted = true;
    }
    // A block device may take agent.hotplug_timeout to appear: let the
    // runtime move other RPCs off this worker meanwhile.
    let storages = &mut sandbox.storages;
    sandbox.sandbox_storages = tokio::task::block_in_place(|| storages.add(&req.storages))?;
    // After sethostname: the pod's UTS namespace starts as a copy of ours.
    sandbox.pause = Some(PauseProcess::spawn(req.sandbox_pidns)?);
    if !req.guest_hook_path.is_empty() {
        sandbox.guest_hook_path = Some(PathBuf::from(&req.guest_hook_path));
    }
    Ok(())
}

/// Undo everything CreateSandbox did; keeps going after an error and
/// reports them all.
async fn teardown(sandbox: &mut Sandbox) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    // destroy_sandbox removed the containers already; one left here failed
    // to go (its error is reported) or this is a failed CreateSandbox.
    sandbox.containers.clear();
    if let Err(e) = sandbox.storages.clear() {
        errors.push(format!("{e:#}"));
    }
    sandbox.sandbox_storages.clear();
    if let Some(pause) = sandbox.pause.take() {
        if let Err(e) = pause.stop().await {
            errors.push(format!("{e:#}"));
        }
    }
    if sandbox.dns_mounted {
        if let Err(e) = dns::tear_down() {
            errors.push(format!("{e:#}"));
        }
        sandbox.dns_mounted = false;
    }
    sandbox.guest_hook_path = None;
    sandbox.infra_pid_ns = None;
    sandbox.id.clear();
    sandbox.hostname.clear();
    sandbox.created = false;
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

fn load_kernel_module(name: &str, params: &[String]) -> Result<()> {
    let mut cmd = Command::new("modprobe");
    cmd.arg("--").arg(name).args(params);
    // Through the reaper: std's own wait would race with it for the status.
    let out = crate::reaper::output_blocking(cmd, None)
        .with_context(|| format!("running modprobe {name}"))?;
    if !out.status.success() {
        bail!(
            "modprobe {name} {} failed ({}): {}",
            params.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
