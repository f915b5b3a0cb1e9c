//! Starting a VM, the one way `vm test`, `vm run` and the benches do it.
//! Modelled on Firecracker's `build_microvm_for_boot(&VmResources)`: first
//! [`resources`] resolves everything a boot needs once per arch (machine,
//! guest assets, busybox rootfs, accelerator); then [`start`] turns those
//! resources plus a console into a running VM, as often as a caller wants,
//! without building or probing anything again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::accel::{self, Accel};
use super::assets::{self, GuestAssets};
use super::cleanup::Session;
use super::qemu::{self, Console, Machine, VmConfig};
use super::{busybox, kata, qmp, share, vsock, VmOpts};
use crate::arch::Arch;
use crate::{cmd, ui};

/// Everything a boot of one arch needs, resolved once.
#[derive(Clone, Debug)]
pub struct VmResources {
    pub arch: Arch,
    pub machine: Machine,
    pub assets: GuestAssets,
    /// The agent inside the assets, when this run built it.
    pub agent: Option<PathBuf>,
    /// The busybox rootfs the e2e suite runs containers from.
    pub busybox: PathBuf,
    pub accel: Accel,
}

impl VmResources {
    /// The same resources on another machine of the arch.
    pub fn on(&self, machine: Machine) -> VmResources {
        VmResources {
            machine,
            ..self.clone()
        }
    }
}

/// Resolve the machine, build what changed (agent, kernel, image, each
/// once), fetch busybox and choose the accelerator (one probe).
pub fn resources(arch: Arch, opts: &VmOpts) -> Result<VmResources> {
    let machine = opts.machine.unwrap_or(Machine::default_for(arch));
    if !machine.supports(arch) {
        crate::usage!(
            "--machine {} is for {}, not {arch}; {arch} has {}",
            machine.name(),
            machine.arches(),
            Machine::choices(arch)
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (assets, agent) = assets::resolve(arch, opts)?;
    let busybox = busybox::ensure_rootfs(arch)?;
    let accel = if opts.tcg {
        Accel::Tcg
    } else {
        accel::choose_accel(arch)
    };
    Ok(VmResources {
        arch,
        machine,
        assets,
        agent,
        busybox,
        accel,
    })
}

/// A booted VM: where to reach the agent and what the host shares with it.
pub struct RunningVm {
    pub qemu_pid: u32,
    /// The run's temp dir (sockets, backend logs); removed with the session.
    pub dir: PathBuf,
    pub qmp_socket: PathBuf,
    pub vsock_uds: PathBuf,
    pub shared_dir: PathBuf,
    pub serial_log: PathBuf,
    pub command_line: String,
    pub started: Instant,
}

/// Start the vsock backend, the share and QEMU, all owned by `session`.
pub fn start(
    session: &mut Session,
    res: &VmResources,
    opts: &VmOpts,
    console: Console,
    extra_agent_params: &[&str],
) -> Result<RunningVm> {
    let arch = res.arch;
    let dir = session.temp_dir(&format!("vm-{arch}"))?;
    let backend = vsock::start(session, &dir)?;
    let shared_dir = dir.join("shared");
    let share = share::start(session, opts.share_for(arch), &shared_dir, &dir)?;
    let serial_log = match &console {
        Console::File(p) | Console::Stdio { log: p } => p.clone(),
    };
    let mut agent_params = opts.agent_params.clone();
    agent_params.extend(extra_agent_params.iter().map(|s| s.to_string()));
    let cfg = VmConfig {
        arch,
        machine: res.machine,
        accel: res.accel,
        memory_mib: opts.memory_for(arch),
        smp: opts.smp,
        kernel: res.assets.kernel_for(res.machine, arch)?.to_path_buf(),
        boot: res.assets.boot.clone(),
        vhost_vsock_socket: backend.vhost_socket.clone(),
        qmp_socket: dir.join("qmp.sock"),
        share_args: share.args(res.machine.transport()),
        console,
        quiet: !opts.verbose_kernel,
        agent_params,
        tsc_khz: accel::host_tsc_khz(),
        verity: res.assets.verity.clone(),
    };
    if let Machine::Kata(_) = cfg.machine {
        for s in kata::substitutions(&cfg, &cfg.kernel) {
            ui::info(format!("kata machine: {s}"));
        }
    }
    let mut qemu_cmd = Command::new(arch.qemu_system());
    qemu_cmd.args(qemu::args(&cfg));
    let command_line = cmd::line(&qemu_cmd);
    ui::detail(format!("$ {command_line}"));
    let interactive = matches!(cfg.console, Console::Stdio { .. });
    if !interactive {
        qemu_cmd.stdin(Stdio::null());
        qemu_cmd.stdout(Stdio::null());
        let stderr = dir.join("qemu.stderr");
        qemu_cmd.stderr(
            std::fs::File::create(&stderr)
                .with_context(|| format!("creating {}", stderr.display()))?,
        );
    }
    let started = Instant::now();
    let qemu_pid = session.spawn("qemu", qemu_cmd)?;
    Ok(RunningVm {
        qemu_pid,
        dir: dir.clone(),
        qmp_socket: dir.join("qmp.sock"),
        vsock_uds: backend.uds,
        shared_dir: share.host_dir,
        serial_log,
        command_line,
        started,
    })
}

/// Copy the host-side logs of a failed run (vsock backend, QEMU's stderr,
/// virtiofsd) next to `serial_log` before the temp dir goes away.
pub fn keep_host_logs(vm: &RunningVm, serial_log: &Path) -> Vec<PathBuf> {
    let mut kept = Vec::new();
    for name in ["vhost-device-vsock.log", "qemu.stderr", "virtiofsd.log"] {
        let src = vm.dir.join(name);
        let dest = serial_log.with_extension(name.replace('.', "-") + ".log");
        if src.exists() && std::fs::copy(&src, &dest).is_ok() {
            kept.push(dest);
        }
    }
    kept
}

/// Wait until the guest has started the vsock device: a CONNECT before that
/// wedges vhost-device-vsock 0.3.0 for the rest of the boot (see `qmp`).
pub fn wait_vsock_ready(session: &mut Session, vm: &RunningVm, deadline: Instant) -> Result<()> {
    qmp::wait_driver_ok(&vm.qmp_socket, &qmp::VSOCK_PATHS, deadline, || {
        check_qemu_alive(session, vm)
    })
}

/// `wait_vsock_ready` within the boot budget of `arch` on `accel`, saying
/// how long the guest took. The caller decides what a failure means: the
/// suite still runs (its table says what did not answer), `vm run` leaves
/// the console to the developer, the life-cycle bench stops.
pub fn wait_vsock_in_budget(
    session: &mut Session,
    vm: &RunningVm,
    arch: Arch,
    accel: Accel,
) -> Result<()> {
    let phase = ui::Phase::start(format!("{arch}: booting (until the vsock device is up)"));
    wait_vsock_ready(session, vm, vm.started + accel::boot_budget(arch, accel))?;
    phase.done(format!(
        "the guest started the vsock device {:.1} s after QEMU's start",
        vm.started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Error out with QEMU's stderr if QEMU has exited.
pub fn check_qemu_alive(session: &mut Session, vm: &RunningVm) -> Result<()> {
    if let Some(status) = session.exited("qemu") {
        bail!(
            "QEMU exited ({status}); serial log: {}",
            vm.serial_log.display()
        );
    }
    Ok(())
}
