//! Boot the guest in QEMU: `vm test` runs the end-to-end suite (crate `e2e`)
//! against the agent inside the VM over virtio-vsock; `vm run` leaves the VM
//! up with the serial console attached.
//!
//! Pieces: `qemu` (command lines, accelerator), `vsock` (backend + hybrid
//! vsock), `share` (kataShared over 9p or virtio-fs), `busybox` (container
//! rootfs), `cleanup` (every child and temp dir goes away, also on Ctrl-C).

pub mod busybox;
pub mod cleanup;
pub mod kata;
pub mod qemu;
pub mod qmp;
pub mod share;
pub mod vsock;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::arch::{Arch, ArchSelection};
use cleanup::Session;
use qemu::{Accel, Boot, Console, Machine, VmConfig};
use share::ShareKind;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Subcommand)]
enum VmCommand {
    /// Build what changed, boot, run the e2e suite, print a pass/fail table.
    Test(TestArgs),
    /// Boot and leave the VM up with the serial console attached (Ctrl-A X quits).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    #[arg(long, default_value = "x86_64")]
    arch: ArchSelection,
    #[command(flatten)]
    opts: VmOpts,
    /// Run only the e2e tests whose names contain one of these (comma-separated).
    #[arg(long)]
    only: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, default_value = "x86_64")]
    arch: Arch,
    #[command(flatten)]
    opts: VmOpts,
}

/// Options shared by `vm test`, `vm run` and `bench vm`.
#[derive(clap::Args, Clone, Debug)]
pub struct VmOpts {
    /// Root filesystem from the disk image (root=/dev/vda1) or the initrd.
    #[arg(long, default_value = "image")]
    pub boot: BootMode,
    /// Machine: q35, q35-qboot, microvm (x86_64), virt, pseries, s390-ccw-virtio.
    #[arg(long)]
    pub machine: Option<Machine>,
    /// Transport of the kataShared directory.
    #[arg(long, default_value = "9p")]
    pub share: ShareKind,
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// Use this kernel instead of building one.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Use this ELF vmlinux for microvm (PVH entry) instead of building one.
    #[arg(long)]
    pub vmlinux: Option<PathBuf>,
    /// Use this disk image (with --boot image) or initrd (with --boot initrd)
    /// instead of building one.
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Let the kernel print its boot messages (no `quiet`).
    #[arg(long)]
    pub verbose_kernel: bool,
    /// Force TCG even where KVM works.
    #[arg(long)]
    pub tcg: bool,
    /// Options for the agent on the kernel command line, Kata's `kernel_params` style.
    #[arg(long = "agent-param", default_values_t = ["agent.log=debug".to_string()])]
    pub agent_params: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootMode {
    Image,
    Initrd,
}

impl FromStr for BootMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<BootMode> {
        match s {
            "image" => Ok(BootMode::Image),
            "initrd" => Ok(BootMode::Initrd),
            other => bail!("unknown boot mode {other:?} (expected image or initrd)"),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    // QEMU (and virtiofsd's build dependencies), pinned.
    crate::setup::ensure_host_packages(&["vm"])?;
    match args.command {
        VmCommand::Test(t) => test(t),
        VmCommand::Run(r) => run_interactive(r),
    }
}

/// What the guest boots: kernel plus root filesystem.
pub struct GuestAssets {
    pub kernel: PathBuf,
    pub boot: Boot,
}

/// Build (or take from the caches) what changed: agent, rootfs, image; the
/// kernel comes from its content-hash cache. Paths given on the command line win.
pub fn guest_assets(arch: Arch, opts: &VmOpts, machine: Machine) -> Result<GuestAssets> {
    let given = match (&opts.vmlinux, &opts.kernel) {
        (Some(v), _) if machine.wants_vmlinux(arch) => Some(v),
        (_, k) => k.as_ref(),
    };
    let kernel = match given {
        Some(k) => k.clone(),
        None => {
            let built = crate::kernel::ensure_built(arch).context("building the guest kernel")?;
            if machine.wants_vmlinux(arch) {
                built.pvh_vmlinux.with_context(|| {
                    format!(
                        "machine {} needs the PVH vmlinux, and the {arch} kernel step exports none",
                        machine.name()
                    )
                })?
            } else {
                built.image
            }
        }
    };
    let rootfs = match &opts.rootfs {
        Some(r) => r.clone(),
        None => {
            crate::agent::ensure_built(arch).context("building the agent")?;
            crate::image::ensure_built(arch).context("building the guest image")?;
            let name = match opts.boot {
                BootMode::Image => "kata-containers.img",
                BootMode::Initrd => "kata-containers-initrd.img",
            };
            crate::paths::artifacts_dir(arch).join(name)
        }
    };
    for path in [&kernel, &rootfs] {
        if !path.is_file() {
            bail!("guest asset {} does not exist", path.display());
        }
    }
    let boot = match opts.boot {
        BootMode::Image => Boot::Image(rootfs),
        BootMode::Initrd => Boot::Initrd(rootfs),
    };
    Ok(GuestAssets { kernel, boot })
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

/// Everything `boot` needs besides the session.
pub struct BootPlan<'a> {
    pub arch: Arch,
    pub opts: &'a VmOpts,
    pub machine: Machine,
    pub accel: Accel,
    pub assets: &'a GuestAssets,
    pub console: Console,
    pub extra_agent_params: &'a [&'a str],
}

/// Start the vsock backend, the share and QEMU, all owned by `session`.
pub fn boot(session: &mut Session, plan: BootPlan<'_>) -> Result<RunningVm> {
    let arch = plan.arch;
    let dir = session.temp_dir(&format!("vm-{arch}"))?;
    let backend = vsock::start(session, &dir)?;
    let shared_dir = dir.join("shared");
    let share = share::start(session, plan.opts.share, &shared_dir, &dir)?;
    let serial_log = match &plan.console {
        Console::File(p) | Console::Stdio { log: p } => p.clone(),
    };
    let mut agent_params = plan.opts.agent_params.clone();
    agent_params.extend(plan.extra_agent_params.iter().map(|s| s.to_string()));
    let cfg = VmConfig {
        arch,
        machine: plan.machine,
        accel: plan.accel,
        memory_mib: plan.opts.memory,
        smp: plan.opts.smp,
        kernel: plan.assets.kernel.clone(),
        boot: plan.assets.boot.clone(),
        vhost_vsock_socket: backend.vhost_socket.clone(),
        qmp_socket: dir.join("qmp.sock"),
        share_args: share.args(plan.machine.transport()),
        console: plan.console,
        quiet: !plan.opts.verbose_kernel,
        agent_params,
        tsc_khz: qemu::host_tsc_khz(),
    };
    let args = qemu::args(&cfg);
    if let Machine::Kata(_) = cfg.machine {
        for s in kata::substitutions(&cfg, &cfg.kernel) {
            eprintln!("kata machine: {s}");
        }
    }
    let command_line = format!("{} {}", arch.qemu_system(), shell_join(&args));
    let mut cmd = Command::new(arch.qemu_system());
    cmd.args(&args);
    let interactive = matches!(cfg.console, Console::Stdio { .. });
    if !interactive {
        cmd.stdin(Stdio::null());
        cmd.stdout(Stdio::null());
        cmd.stderr(std::fs::File::create(dir.join("qemu.stderr"))?);
    }
    let started = Instant::now();
    let qemu_pid = session.spawn("qemu", cmd)?;
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

/// Quote arguments for a copy-pasteable command line.
fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Build the e2e runner (crate `e2e`) and return its path.
pub fn e2e_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "e2e", "--bin", "e2e"])
        .current_dir(crate::paths::repo_root())
        .status()
        .context("running cargo build -p e2e")?;
    if !status.success() {
        bail!("cargo build -p e2e failed ({status})");
    }
    Ok(crate::paths::target_dir().join("debug").join("e2e"))
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
    wait_vsock_ready(session, vm, vm.started + qemu::boot_budget(arch, accel))?;
    eprintln!(
        "{arch}: the guest started the vsock device {:.1} s after QEMU's start",
        vm.started.elapsed().as_secs_f64()
    );
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

fn serial_log_path(arch: Arch, label: &str) -> Result<PathBuf> {
    let dir = crate::paths::work_dir("vm", arch);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(format!("{label}-serial.log")))
}

struct ArchOutcome {
    arch: Arch,
    result: Result<bool>,
    serial_log: Option<PathBuf>,
}

fn test(args: TestArgs) -> Result<()> {
    let e2e = e2e_binary()?;
    let mut outcomes = Vec::new();
    for arch in args.arch.arches() {
        eprintln!("== vm test --arch {arch}");
        let mut log = None;
        let result = test_arch(arch, &args, &e2e, &mut log);
        if let Err(e) = &result {
            eprintln!("vm test {arch}: {e:#}");
        }
        outcomes.push(ArchOutcome {
            arch,
            result,
            serial_log: log,
        });
    }
    print_summary(&outcomes);
    if outcomes.iter().all(|o| matches!(o.result, Ok(true))) {
        Ok(())
    } else {
        bail!("vm test failed")
    }
}

fn print_summary(outcomes: &[ArchOutcome]) {
    println!("\n| arch | e2e suite | serial log |");
    println!("|---|---|---|");
    for o in outcomes {
        let verdict = match &o.result {
            Ok(true) => "PASS".to_string(),
            Ok(false) => "FAIL".to_string(),
            Err(e) => format!("ERROR: {e:#}"),
        };
        let log = o
            .serial_log
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("| {} | {verdict} | {log} |", o.arch);
    }
}

/// What `vm test`, `vm run` and `bench vm` need before a boot: the machine, the
/// guest assets (built if needed), the busybox rootfs and the accelerator.
pub fn prepare(arch: Arch, opts: &VmOpts) -> Result<(Machine, GuestAssets, PathBuf, Accel)> {
    let machine = opts.machine.unwrap_or(Machine::default_for(arch));
    if !machine.supports(arch) {
        bail!("machine {} is not for {arch}", machine.name());
    }
    let assets = guest_assets(arch, opts, machine)?;
    let busybox = busybox::ensure_rootfs(arch)?;
    let accel = if opts.tcg {
        Accel::Tcg
    } else {
        qemu::choose_accel(arch)
    };
    Ok((machine, assets, busybox, accel))
}

fn test_arch(
    arch: Arch,
    args: &TestArgs,
    e2e: &Path,
    log_out: &mut Option<PathBuf>,
) -> Result<bool> {
    let (machine, assets, busybox, accel) = prepare(arch, &args.opts)?;
    let serial_log = serial_log_path(arch, "test")?;
    *log_out = Some(serial_log.clone());
    let mut session = Session::new();
    let vm = boot(
        &mut session,
        BootPlan {
            arch,
            opts: &args.opts,
            machine,
            accel,
            assets: &assets,
            console: Console::File(serial_log.clone()),
            extra_agent_params: &[],
        },
    )?;
    eprintln!("{}", vm.command_line);
    if let Err(e) = wait_vsock_in_budget(&mut session, &vm, arch, accel) {
        eprintln!("warning: {e:#}");
    }
    let mut cmd = Command::new(e2e);
    cmd.arg("suite");
    guest_args(&mut cmd, &vm, args.opts.share, &busybox);
    cmd.arg("--serial-log")
        .arg(&vm.serial_log)
        .arg("--arch")
        .arg(arch.name())
        .arg("--boot-timeout-secs")
        .arg(qemu::boot_budget(arch, accel).as_secs().to_string())
        .arg("--vm-pid")
        .arg(vm.qemu_pid.to_string())
        .arg("--rpc-timeout-secs")
        .arg(qemu::rpc_budget(accel).as_secs().to_string());
    for p in &args.opts.agent_params {
        cmd.arg("--agent-param").arg(p);
    }
    if let Some(only) = &args.only {
        cmd.arg("--only").arg(only);
    }
    // Through the session: Ctrl-C and errors stop the suite with the VM.
    session.spawn("e2e", cmd)?;
    let status = session.wait("e2e")?;
    let qemu_state = session.exited("qemu");
    let host_logs = if status.success() {
        Vec::new()
    } else {
        keep_host_logs(&vm, &serial_log)
    };
    drop(session);
    if status.success() {
        Ok(true)
    } else {
        if let Some(s) = qemu_state {
            eprintln!("QEMU had exited during the suite ({s})");
        }
        eprintln!(
            "{arch}: e2e suite failed; serial log kept at {}",
            serial_log.display()
        );
        for log in host_logs {
            eprintln!("host log kept at {}", log.display());
        }
        Ok(false)
    }
}

/// The e2e binary's arguments that say where the VM's agent is and what the
/// host shares with it (its `GuestArgs`), after the subcommand.
pub fn guest_args(cmd: &mut Command, vm: &RunningVm, share: ShareKind, busybox: &Path) {
    cmd.arg("--socket")
        .arg(&vm.vsock_uds)
        .arg("--port")
        .arg(vsock::AGENT_PORT.to_string())
        .arg("--shared-dir")
        .arg(&vm.shared_dir)
        .arg("--share")
        .arg(share.name())
        .arg("--busybox")
        .arg(busybox);
}

fn run_interactive(args: RunArgs) -> Result<()> {
    let arch = args.arch;
    let (machine, assets, busybox, accel) = prepare(arch, &args.opts)?;
    let serial_log = serial_log_path(arch, "run")?;
    let mut session = Session::new();
    let vm = boot(
        &mut session,
        BootPlan {
            arch,
            opts: &args.opts,
            machine,
            accel,
            assets: &assets,
            console: Console::Stdio {
                log: serial_log.clone(),
            },
            extra_agent_params: &["agent.debug_console"],
        },
    )?;
    eprintln!("{}", vm.command_line);
    eprintln!("serial log: {}; quit with Ctrl-A X", serial_log.display());
    // The address is printed only once a CONNECT is safe (see `qmp`).
    match wait_vsock_in_budget(&mut session, &vm, arch, accel) {
        Ok(()) => eprintln!("{}", connect_hint(&vm.vsock_uds, &vm.shared_dir, &busybox)),
        Err(e) => eprintln!("warning: {e:#}; the agent is not reachable yet"),
    }
    let status = session.wait("qemu")?;
    eprintln!("QEMU exited ({status})");
    Ok(())
}

/// What a developer needs to drive the agent of a `vm run` VM.
fn connect_hint(uds: &Path, shared_dir: &Path, busybox: &Path) -> String {
    let address = format!("hvsock://{}:{}", uds.display(), vsock::AGENT_PORT);
    format!(
        "agent: hybrid vsock {uds} port {port}; drive it with\n  \
         cargo run -p agent-ctl -- --server-address {address} Check\n\
         kataShared: {shared} (busybox rootfs for containers: {busybox})",
        uds = uds.display(),
        port = vsock::AGENT_PORT,
        shared = shared_dir.display(),
        busybox = busybox.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_join_quotes_only_when_needed() {
        let args = vec!["-append".to_string(), "console=ttyS0 quiet".to_string()];
        assert_eq!(shell_join(&args), "-append 'console=ttyS0 quiet'");
    }

    #[test]
    fn connect_hint_has_the_agent_ctl_command() {
        let hint = connect_hint(
            Path::new("/tmp/kata-vm-x86_64-1/vm.vsock"),
            Path::new("/tmp/kata-vm-x86_64-1/shared"),
            Path::new("/c/busybox/rootfs"),
        );
        assert!(hint.contains(
            "\n  cargo run -p agent-ctl -- --server-address hvsock:///tmp/kata-vm-x86_64-1/vm.vsock:1024 Check\n"
        ));
        assert!(hint.contains("kataShared: /tmp/kata-vm-x86_64-1/shared"));
    }

    #[test]
    fn boot_mode_parses() {
        assert_eq!("initrd".parse::<BootMode>().unwrap(), BootMode::Initrd);
        assert!("floppy".parse::<BootMode>().is_err());
    }
}
