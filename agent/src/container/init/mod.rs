//! `kata-agent init`: the process the agent re-executes itself as to start a
//! container process. It talks to the agent over the sync channel (see
//! `channel`), enters or creates the namespaces, forks (so the container
//! process is inside a new pid namespace), and the forked process waits for
//! the agent's go-ahead (it is in the cgroup by then), sets up the rootfs and
//! the process attributes, parks on exec.fifo (create) and finally execvp's
//! the container's process.
//!
//! This runs single-threaded, before any runtime: setns and unshare need it.

pub mod channel;
mod namespaces;
mod rootfs;
mod setup;

/// The environment a container process is exec'd with (pub for the fuzz
/// targets, `fuzz/`).
pub use setup::environment;

use std::fs::File;
use std::io::Read;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::unistd::{fork, ForkResult};

use channel::{ChildChannel, FromInit, InitConfig, Mode, ToInit, CHANNEL_FD_ENV};

/// Entry point of `kata-agent init`; never returns on success (execvp).
pub fn main() -> std::process::ExitCode {
    let fd: RawFd = match std::env::var(CHANNEL_FD_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(fd) => fd,
        None => {
            eprintln!("kata-agent init: {CHANNEL_FD_ENV} is not set; only the agent runs this");
            return std::process::ExitCode::FAILURE;
        }
    };
    // SAFETY: the agent passed us this fd for the channel, and nothing else uses it.
    let mut ch = match unsafe { ChildChannel::from_raw_fd(fd) } {
        Ok(ch) => ch,
        Err(e) => {
            eprintln!("kata-agent init: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = run(&mut ch) {
        let _ = ch.send(&FromInit::Error(format!("{e:#}")));
    }
    std::process::ExitCode::from(127)
}

fn run(ch: &mut ChildChannel) -> Result<()> {
    close_stray_fds()?;
    reset_signals();
    let config = match ch.recv()? {
        ToInit::Config(c) => *c,
        other => bail!("expected the configuration, got {other:?}"),
    };
    let InitConfig { mode, process } = config;
    let root = match &mode {
        Mode::Create { spec, .. } => {
            let linux = spec
                .linux()
                .as_ref()
                .context("the spec has no linux section")?;
            namespaces::enter(linux.namespaces().as_deref().unwrap_or_default())?;
            None
        }
        Mode::Exec { init_pid } => Some(namespaces::join_process(*init_pid)?),
    };
    // SAFETY: single-threaded; the child only continues this function.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => {
            ch.send(&FromInit::Pid(child.as_raw()))?;
            std::process::exit(0);
        }
        ForkResult::Child => {}
    }
    match ch.recv()? {
        ToInit::Proceed => {}
        other => bail!("expected the go-ahead, got {other:?}"),
    }
    let fifo = match &mode {
        Mode::Create { spec, fifo } => Some(prepare_container(spec, fifo)?),
        Mode::Exec { .. } => {
            enter_root(root.as_ref().context("no container root")?)?;
            None
        }
    };
    setup::apply(&process)?;
    if let Some(mut fifo) = fifo {
        ch.send(&FromInit::Ready)?;
        let mut byte = [0u8; 1];
        fifo.read_exact(&mut byte).context("waiting on exec.fifo")?;
    }
    setup::exec(&process)
}

/// The rootfs and hostname of a new container; returns exec.fifo, opened
/// (read+write, so the open does not block) before the bundle disappears
/// from view with pivot_root.
fn prepare_container(spec: &oci_spec::runtime::Spec, fifo: &Path) -> Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo)
        .with_context(|| format!("opening {}", fifo.display()))?;
    let declared = spec.linux().as_ref().and_then(|l| l.namespaces().clone());
    namespaces::cgroup_ns_on_v2(declared.as_deref().unwrap_or_default())?;
    rootfs::setup(spec)?;
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        setup::set_hostname(h)?;
    }
    Ok(f)
}

fn enter_root(root: &OwnedFd) -> Result<()> {
    nix::unistd::fchdir(root).context("fchdir to the container root")?;
    nix::unistd::chroot(".").context("chroot into the container root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// Nothing but stdio and the channel may reach the container process: mark
/// every other inherited fd close-on-exec (the channel too: EOF on it tells
/// the agent execvp succeeded).
fn close_stray_fds() -> Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .context("listing /proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: the fd is open (listed just now) and only borrowed here.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}

/// The agent's signal dispositions must not leak into the container:
/// Rust ignores SIGPIPE, and the mask must be empty.
fn reset_signals() {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    // SAFETY: restoring default dispositions installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
