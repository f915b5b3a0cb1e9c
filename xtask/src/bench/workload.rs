//! The second half of `bench vm`: one VM, `e2e lifecycle` inside it
//! (create+start+wait of busybox `true`, N times), the agent's RSS after the
//! runs, and the sizes of the guest assets. Renders a Markdown section; a
//! failure becomes a line of that section, so the boot table still lands.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::vm::accel::{self, Accel};
use crate::vm::cleanup::Session;
use crate::vm::qemu::{Console, Machine};
use crate::vm::start::{self, VmResources};
use crate::vm::{self as vm, VmOpts};

/// What `e2e lifecycle` prints (its `LifecycleReport`).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Report {
    pub runs: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub agent_rss_bytes: u64,
}

/// The section as Markdown, and the report when the VM ran.
pub struct Section {
    pub markdown: String,
    pub report: Option<Report>,
}

pub fn section(res: &VmResources, opts: &VmOpts, runs: usize, e2e: &Path) -> Section {
    let mut s = String::from("\n## create+start+wait of busybox `true` inside one VM");
    let measured = measure(res, opts, runs, e2e);
    let report = measured.as_ref().ok().map(|m| m.report.clone());
    match measured {
        Ok(m) => {
            let _ = writeln!(
                s,
                " ({}, {}, boot {:?})\n",
                m.machine.name(),
                m.accel.name().to_uppercase(),
                opts.boot
            );
            let r = m.report;
            let _ = writeln!(s, "| runs | min | p50 | p99 | max | agent RSS after |");
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            let _ = writeln!(
                s,
                "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} kB |",
                r.runs,
                r.min_ms,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.agent_rss_bytes / 1024
            );
            let _ = writeln!(s, "\nQEMU: `{}`", m.command_line);
        }
        Err(e) => {
            let _ = writeln!(s, "\n\nNot measured: {e:#}");
        }
    }
    s.push_str(&sizes(res.arch));
    Section {
        markdown: s,
        report,
    }
}

/// One measured VM: where it ran and what `e2e lifecycle` reported.
struct Measured {
    machine: Machine,
    accel: Accel,
    report: Report,
    command_line: String,
}

fn measure(res: &VmResources, opts: &VmOpts, runs: usize, e2e: &Path) -> Result<Measured> {
    // The resources the boot rows used: nothing is built or probed again.
    let (arch, machine, accel) = (res.arch, res.machine, res.accel);
    let log_dir = crate::paths::work_dir("bench-vm", arch);
    std::fs::create_dir_all(&log_dir)?;
    let serial_log = log_dir.join("lifecycle.log");
    let mut session = Session::new();
    let vm = start::start(
        &mut session,
        res,
        opts,
        Console::File(serial_log.clone()),
        &[],
    )?;
    start::wait_vsock_in_budget(&mut session, &vm, arch, accel)?;
    let report = lifecycle(res, &vm, opts, runs, e2e).map_err(|e| {
        let kept = serial_log.with_extension("failed.log");
        let _ = std::fs::copy(&serial_log, &kept);
        e.context(format!("serial log: {}", kept.display()))
    })?;
    Ok(Measured {
        machine,
        accel,
        report,
        command_line: vm.command_line.clone(),
    })
}

/// `e2e lifecycle` against a running VM: `runs` life cycles, then the
/// agent's RSS.
pub fn lifecycle(
    res: &VmResources,
    vm: &vm::RunningVm,
    opts: &VmOpts,
    runs: usize,
    e2e: &Path,
) -> Result<Report> {
    let (arch, accel) = (res.arch, res.accel);
    let mut cmd = Command::new(e2e);
    cmd.arg("lifecycle");
    vm::guest_args(&mut cmd, vm, opts.share_for(arch), &res.busybox);
    let output = cmd
        .arg("--runs")
        .arg(runs.to_string())
        .arg("--boot-timeout-secs")
        .arg(accel::boot_budget(arch, accel).as_secs().to_string())
        .arg("--rpc-timeout-secs")
        .arg((2 * accel::rpc_budget(accel).as_secs()).to_string())
        .arg("--vm-pid")
        .arg(vm.qemu_pid.to_string())
        .output()
        .context("running e2e lifecycle")?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        bail!("e2e lifecycle failed ({}): {}", output.status, err.trim());
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "e2e lifecycle printed {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Sizes of the arch's artifacts that exist (the kernel under its arch name).
fn sizes(arch: Arch) -> String {
    let dir = crate::paths::artifacts_dir(arch);
    let mut s = String::from("\n| asset | bytes |\n|---|---|\n");
    let mut names = vec![
        "kata-containers.img",
        "kata-containers-initrd.img",
        "kata-agent",
    ];
    names.extend(["vmlinuz", "vmlinux", "Image"]);
    for name in names {
        if let Ok(meta) = std::fs::metadata(dir.join(name)) {
            let _ = writeln!(s, "| {name} | {} |", meta.len());
        }
    }
    s
}
