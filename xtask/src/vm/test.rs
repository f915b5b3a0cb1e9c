//! `cargo xtask vm test`: per arch, resolve the VM's resources once, boot,
//! run the e2e suite (crate `e2e`) against the agent over virtio-vsock, and
//! print a pass/fail table.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Result};

use super::accel;
use super::cleanup::Session;
use super::qemu::Console;
use super::start::{self, RunningVm, VmResources};
use super::{e2e_binary, guest_args, serial_log_path, TestArgs};
use crate::arch::Arch;
use crate::ui;

struct ArchOutcome {
    arch: Arch,
    result: Result<bool>,
    serial_log: Option<PathBuf>,
}

pub fn run(args: TestArgs) -> Result<()> {
    let e2e = e2e_binary()?;
    let arches = args.arch.arches();
    let mut outcomes = Vec::new();
    for &arch in &arches {
        ui::info(format!("== vm test --arch {arch}"));
        let mut log = None;
        let result = test_arch(arch, &args, &e2e, arches.len() > 1, &mut log);
        if let Err(e) = &result {
            ui::warn(format!("vm test {arch}: {e:#}"));
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
            // One line: the full error (with its log's tail) is above.
            Err(e) => format!(
                "ERROR: {}",
                format!("{e:#}").lines().next().unwrap_or_default()
            ),
        };
        let log = o
            .serial_log
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("| {} | {verdict} | {log} |", o.arch);
    }
}

/// `PATH` for one arch, or `PATH` with `-<arch>` before its extension when
/// several arches share the flag.
pub fn report_path(path: &Path, arch: Arch, several: bool) -> PathBuf {
    if !several {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{arch}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{arch}"),
    };
    path.with_file_name(name)
}

fn test_arch(
    arch: Arch,
    args: &TestArgs,
    e2e: &Path,
    several: bool,
    log_out: &mut Option<PathBuf>,
) -> Result<bool> {
    let res = start::resources(arch, &args.opts)?;
    let serial_log = serial_log_path(arch, "test")?;
    *log_out = Some(serial_log.clone());
    let mut session = Session::new();
    let vm = start::start(
        &mut session,
        &res,
        &args.opts,
        Console::File(serial_log.clone()),
        &[],
    )?;
    if let Err(e) = start::wait_vsock_in_budget(&mut session, &vm, arch, res.accel) {
        ui::warn(format!("{e:#}"));
    }
    let suite = suite_command(e2e, &vm, &res, args, several);
    // Through the session: Ctrl-C and errors stop the suite with the VM.
    let phase = ui::Phase::start(format!("{arch}: e2e suite"));
    session.spawn("e2e", suite)?;
    let status = session.wait("e2e")?;
    let qemu_state = session.exited("qemu");
    let host_logs = if status.success() {
        phase.done("");
        Vec::new()
    } else {
        drop(phase);
        start::keep_host_logs(&vm, &serial_log)
    };
    drop(session);
    if status.success() {
        if args.opts.verity {
            super::verity::tampered_boot_fails(&res, &args.opts)?;
        }
        return Ok(true);
    }
    if let Some(s) = qemu_state {
        ui::warn(format!("QEMU had exited during the suite ({s})"));
    }
    ui::warn(format!(
        "{arch}: e2e suite failed; serial log kept at {}",
        serial_log.display()
    ));
    for log in host_logs {
        ui::warn(format!("host log kept at {}", log.display()));
    }
    Ok(false)
}

/// `e2e suite` with the VM's addresses, budgets and the report files.
fn suite_command(
    e2e: &Path,
    vm: &RunningVm,
    res: &VmResources,
    args: &TestArgs,
    several: bool,
) -> Command {
    let arch = res.arch;
    let mut cmd = Command::new(e2e);
    cmd.arg("suite");
    guest_args(&mut cmd, vm, args.opts.share_for(arch), &res.busybox);
    cmd.arg("--serial-log")
        .arg(&vm.serial_log)
        .arg("--arch")
        .arg(arch.name())
        .arg("--boot-timeout-secs")
        .arg(accel::boot_budget(arch, res.accel).as_secs().to_string())
        .arg("--vm-pid")
        .arg(vm.qemu_pid.to_string())
        .arg("--qmp-socket")
        .arg(&vm.qmp_socket)
        .arg("--rpc-timeout-secs")
        .arg(accel::rpc_budget(res.accel).as_secs().to_string());
    for p in &args.opts.agent_params {
        cmd.arg("--agent-param").arg(p);
    }
    if res.machine.cpu_hotplug() {
        cmd.arg("--cpu-hotplug");
    }
    if res.machine.dimm_hotplug(arch) {
        cmd.arg("--dimm-hotplug");
    }
    if let Some(only) = &args.only {
        cmd.arg("--only").arg(only);
    }
    if let Some(p) = &args.junit {
        cmd.arg("--junit").arg(report_path(p, arch, several));
    }
    if let Some(p) = &args.json {
        cmd.arg("--json").arg(report_path(p, arch, several));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_paths_get_the_arch_only_when_several_share_them() {
        let p = Path::new("out/vm.xml");
        assert_eq!(report_path(p, Arch::Aarch64, false), p);
        assert_eq!(
            report_path(p, Arch::Aarch64, true),
            Path::new("out/vm-aarch64.xml")
        );
    }
}
