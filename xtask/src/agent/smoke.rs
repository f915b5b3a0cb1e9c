//! Smoke test of a built agent under qemu-user (no VM, no root):
//! 1. `kata-agent --version` must name the arch it was built for;
//! 2. the agent started stand-alone on a Unix socket must answer
//!    Health.Check from the host's `agent-ctl ... check`.
//!
//! The agent process is always killed afterwards (a guard kills it on drop).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::toolchain::{cargo, which};
use crate::arch::Arch;
use crate::paths;

/// Generous: qemu-user on a busy 2-core machine starts slowly.
const SERVE_DEADLINE: Duration = Duration::from_secs(60);
const VERSION_DEADLINE: Duration = Duration::from_secs(30);

/// Rust's `std::env::consts::ARCH` for the target: what the agent reports.
pub fn std_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "aarch64",
        Arch::Ppc64le => "powerpc64",
        Arch::S390x => "s390x",
    }
}

/// `kata-agent version <v> (api version <api>, arch <A>)`; the first skeleton
/// printed `machine=<A>`, also accepted.
pub fn reports_arch(version_output: &str, arch: Arch) -> bool {
    let a = std_arch(arch);
    let line = version_output.lines().next().unwrap_or("");
    line.contains(&format!("arch {a})")) || line.contains(&format!("machine={a}"))
}

/// Build the host's control tool (debug) and return its path.
pub fn build_agent_ctl() -> Result<PathBuf> {
    let status = Command::new(cargo())
        .current_dir(paths::repo_root())
        .args(["build", "-p", "agent-ctl"])
        .status()
        .context("spawning cargo build -p agent-ctl")?;
    if !status.success() {
        bail!("cargo build -p agent-ctl failed: {status}");
    }
    let bin = paths::target_dir().join("debug/agent-ctl");
    if !bin.is_file() {
        bail!(
            "{} does not exist: the agent-ctl crate has no binary yet",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn run(arch: Arch, agent: &Path, agent_ctl: &Path) -> Result<()> {
    let qemu = which(arch.qemu_user()).with_context(|| {
        format!(
            "{} not found: install qemu-user-static (cargo xtask setup --group cross)",
            arch.qemu_user()
        )
    })?;
    let tmp = TempDir::new(&format!("kata-agent-smoke-{arch}"))?;
    check_version(arch, &qemu, agent, &tmp.0)?;
    check_serving(&qemu, agent, agent_ctl, &tmp.0)?;
    eprintln!("xtask agent: smoke {arch}: --version and Health.Check ok");
    Ok(())
}

/// `agent --version` under qemu-user only (for an agent built elsewhere).
pub fn version(arch: Arch, agent: &Path) -> Result<()> {
    let qemu = which(arch.qemu_user()).with_context(|| {
        format!(
            "{} not found: install qemu-user-static (cargo xtask setup --group cross)",
            arch.qemu_user()
        )
    })?;
    let tmp = TempDir::new(&format!("kata-agent-version-{arch}"))?;
    check_version(arch, &qemu, agent, &tmp.0)
}

fn check_version(arch: Arch, qemu: &Path, agent: &Path, tmp: &Path) -> Result<()> {
    let log = tmp.join("version.out");
    let child = Command::new(qemu)
        .arg(agent)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {} {}", qemu.display(), agent.display()))?;
    let mut guard = Killed(child);
    let status = wait_deadline(&mut guard.0, VERSION_DEADLINE)?.with_context(|| {
        format!(
            "{} --version did not exit in {VERSION_DEADLINE:?}",
            agent.display()
        )
    })?;
    let out = fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        bail!("{} --version failed ({status}): {out}", agent.display());
    }
    if !reports_arch(&out, arch) {
        bail!(
            "{} --version printed {:?}: expected arch {}",
            agent.display(),
            out.trim(),
            std_arch(arch)
        );
    }
    eprintln!("xtask agent: smoke {arch}: {}", out.trim());
    Ok(())
}

fn check_serving(qemu: &Path, agent: &Path, agent_ctl: &Path, tmp: &Path) -> Result<()> {
    let addr = format!("unix://{}", tmp.join("agent.sock").display());
    let log = tmp.join("agent.log");
    let child = Command::new(qemu)
        .arg(agent)
        .env("KATA_AGENT_SERVER_ADDR", &addr)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::create(tmp.join("agent.err"))?)
        .spawn()
        .with_context(|| format!("starting {} {} on {addr}", qemu.display(), agent.display()))?;
    let mut guard = Killed(child);
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < SERVE_DEADLINE {
        if let Some(status) = guard.0.try_wait()? {
            bail!("agent exited early ({status}); log:\n{}", agent_logs(tmp));
        }
        let out = Command::new(agent_ctl)
            .args(["--server-address", &addr, "check"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", agent_ctl.display()))?;
        if out.status.success() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        sleep(Duration::from_millis(500));
    }
    bail!(
        "no Health.Check answer on {addr} within {SERVE_DEADLINE:?}; last agent-ctl error: {last}\nagent log:\n{}",
        agent_logs(tmp)
    )
}

fn agent_logs(tmp: &Path) -> String {
    let read = |n: &str| fs::read_to_string(tmp.join(n)).unwrap_or_default();
    format!("{}{}", read("agent.log"), read("agent.err"))
}

fn wait_deadline(
    child: &mut Child,
    deadline: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() > deadline {
            return Ok(None);
        }
        sleep(Duration::from_millis(50));
    }
}

/// Kills and reaps the process when dropped, on success and on every error.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.0.kill().ok();
        }
        self.0.wait().ok();
    }
}

/// A fresh directory under $TMPDIR, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        fs::remove_dir_all(&self.0).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_version_formats_for_the_right_arch_only() {
        let new = "kata-agent version 0.1.0 (api version 0.0.1, arch powerpc64)\n";
        assert!(reports_arch(new, Arch::Ppc64le));
        assert!(!reports_arch(new, Arch::X86_64));
        assert!(reports_arch("kata-agent 0.1.0 machine=s390x", Arch::S390x));
        assert!(!reports_arch(
            "kata-agent 0.1.0 machine=s390x",
            Arch::Aarch64
        ));
        assert!(!reports_arch("", Arch::X86_64));
    }
}
