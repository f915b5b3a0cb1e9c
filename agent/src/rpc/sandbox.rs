//! Sandbox: create/destroy, storages.
//!
//! CreateSandbox sets up what the whole pod shares: kernel modules, hostname,
//! DNS, storages, the shared PID namespace, the guest hooks directory. Every
//! step is undone if a later one fails, and DestroySandbox undoes all of it,
//! so a second CreateSandbox on the same guest starts from a clean slate.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use protocols::agent::*;
use protocols::empty::Empty;

use super::AgentContext;
use crate::container;
use crate::error::{self, Error, Invalid};
use crate::pidns::PauseProcess;
use crate::sandbox::Sandbox;
use crate::storage::{mountinfo, STORAGE_ROOT};

/// Where the sandbox's resolv.conf is written; it is bind-mounted on
/// /etc/resolv.conf so a read-only guest rootfs works too.
const SANDBOX_DNS_FILE: &str = "/run/kata-containers/sandbox/resolv.conf";
const GUEST_DNS_FILE: &str = "/etc/resolv.conf";
/// Where Kata's runtime mounts the shared directory of containers.
const SHARED_CONTAINERS_DIR: &str = "/run/kata-containers/shared/containers";

pub async fn create_sandbox(ctx: &AgentContext, req: CreateSandboxRequest) -> error::Result<Empty> {
    let mut sandbox = ctx.sandbox.lock().await;
    if sandbox.created {
        return Err(Error::AlreadyExists(format!(
            "sandbox {:?} already exists: DestroySandbox first",
            sandbox.id
        )));
    }
    validate(&req).invalid()?;
    if let Err(e) = setup(&mut sandbox, &req) {
        // Leave nothing half-made behind: the next CreateSandbox must work.
        if let Err(undo) = teardown(&mut sandbox) {
            slog::warn!(ctx.logger, "undoing a failed CreateSandbox"; "error" => format!("{undo:#}"));
        }
        return Err(e.context("CreateSandbox").into());
    }
    sandbox.created = true;
    slog::info!(ctx.logger, "sandbox created"; "sandbox" => &sandbox.id);
    Ok(Empty::new())
}

/// How long DestroySandbox waits for each container's processes to die
/// after SIGKILL.
const CONTAINER_REMOVE_TIMEOUT_SECS: u32 = 10;

pub async fn destroy_sandbox(
    ctx: &AgentContext,
    _req: DestroySandboxRequest,
) -> error::Result<Empty> {
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
        if let Err(f) = container::remove::remove(ctx, &cid, CONTAINER_REMOVE_TIMEOUT_SECS).await {
            errors.push(format!("container {cid}: {f}"));
        }
    }
    let mut sandbox = ctx.sandbox.lock().await;
    if let Err(e) = teardown(&mut sandbox) {
        errors.push(format!("{e:#}"));
    }
    if !errors.is_empty() {
        return Err(Error::internal(format!(
            "DestroySandbox: {}",
            errors.join("; ")
        )));
    }
    slog::info!(ctx.logger, "sandbox destroyed");
    Ok(Empty::new())
}

pub async fn update_ephemeral_mounts(
    ctx: &AgentContext,
    req: UpdateEphemeralMountsRequest,
) -> error::Result<Empty> {
    let mut sandbox = ctx.sandbox.lock().await;
    for s in &req.storages {
        if s.driver != "ephemeral" {
            return Err(Error::invalid(format!(
                "UpdateEphemeralMounts: storage {} has driver {:?}, expected \"ephemeral\"",
                s.mount_point, s.driver
            )));
        }
        sandbox
            .storages
            .update_ephemeral(s)
            .context("UpdateEphemeralMounts")?;
    }
    Ok(Empty::new())
}

pub async fn remove_stale_virtiofs_share_mounts(
    ctx: &AgentContext,
    _req: RemoveStaleVirtiofsShareMountsRequest,
) -> error::Result<Empty> {
    let _sandbox = ctx.sandbox.lock().await;
    let removed = remove_stale_share_mounts(Path::new(SHARED_CONTAINERS_DIR))
        .context("RemoveStaleVirtiofsShareMounts")?;
    slog::info!(ctx.logger, "removed stale virtio-fs share mounts"; "count" => removed);
    Ok(Empty::new())
}

fn validate(req: &CreateSandboxRequest) -> Result<()> {
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
        setup_dns(&req.dns)?;
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
fn teardown(sandbox: &mut Sandbox) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    // destroy_sandbox removed the containers already; one left here failed
    // to go (its error is reported) or this is a failed CreateSandbox.
    sandbox.containers.clear();
    if let Err(e) = sandbox.storages.clear() {
        errors.push(format!("{e:#}"));
    }
    sandbox.sandbox_storages.clear();
    if let Some(pause) = sandbox.pause.take() {
        if let Err(e) = pause.stop() {
            errors.push(format!("{e:#}"));
        }
    }
    if sandbox.dns_mounted {
        if let Err(e) = unmount_all(Path::new(GUEST_DNS_FILE)) {
            errors.push(format!("{e:#}"));
        }
        let _ = std::fs::remove_file(SANDBOX_DNS_FILE);
        // Only if empty: other sandbox files may live there.
        if let Some(dir) = Path::new(SANDBOX_DNS_FILE).parent() {
            let _ = std::fs::remove_dir(dir);
        }
        sandbox.dns_mounted = false;
    }
    sandbox.guest_hook_path = None;
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

/// Write the sandbox resolv.conf and bind it on /etc/resolv.conf (after
/// taking away a bind left by an agent that crashed).
fn setup_dns(lines: &[String]) -> Result<()> {
    let file = Path::new(SANDBOX_DNS_FILE);
    let dir = file.parent().context("DNS file has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    let guest = Path::new(GUEST_DNS_FILE);
    unmount_all(guest)?;
    if !guest.exists() {
        std::fs::write(guest, "").with_context(|| format!("creating {GUEST_DNS_FILE}"))?;
    }
    mount(
        Some(file),
        guest,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("bind mounting {SANDBOX_DNS_FILE} on {GUEST_DNS_FILE}"))
}

fn unmount_all(path: &Path) -> Result<()> {
    while mountinfo::mount_count(path)? > 0 {
        umount2(path, MntFlags::MNT_DETACH)
            .with_context(|| format!("unmounting {}", path.display()))?;
    }
    Ok(())
}

/// Mounts below the shared containers directory whose source went away on
/// the host (stat fails with ENOENT/ESTALE/ENOTCONN): unmount them.
fn remove_stale_share_mounts(shared: &Path) -> Result<usize> {
    let mut removed = 0;
    let mut below: Vec<PathBuf> = mountinfo::mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(shared) && p != shared && p.starts_with(STORAGE_ROOT))
        .collect();
    below.sort();
    below.dedup();
    for p in below.iter().rev() {
        let stale = match std::fs::metadata(p) {
            Ok(_) => false,
            Err(e) => matches!(
                e.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ESTALE) | Some(libc::ENOTCONN)
            ),
        };
        if stale {
            umount2(p.as_path(), MntFlags::MNT_DETACH)
                .with_context(|| format!("unmounting stale share mount {}", p.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}
