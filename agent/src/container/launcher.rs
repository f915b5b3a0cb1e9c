//! The agent's side of starting a container process: re-execute
//! /proc/self/exe as `kata-agent init` with the sync channel, learn the
//! pid of the future container process, and drive the handshake.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::init::channel::{self, AgentChannel, FromInit, InitConfig, ToInit, CHANNEL_FD_ENV};
use crate::process::ChildStdio;
use crate::reaper::{self, ExitReceiver};

/// A started init whose process waits for the go-ahead.
pub struct Pending {
    pub pid: i32,
    pub exit: ExitReceiver,
    channel: AgentChannel,
}

/// Start `kata-agent init` and send it `config`; returns once the pid of the
/// container process is known (it is registered with the reaper).
pub async fn spawn(config: InitConfig, stdio: ChildStdio) -> Result<Pending> {
    let (mut chan, child_end) = channel::pair()?;
    let raw = child_end.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("init")
        .env_clear()
        .env(CHANNEL_FD_ENV, raw.to_string())
        .stdin(Stdio::from(stdio.stdin))
        .stdout(Stdio::from(stdio.stdout))
        .stderr(Stdio::from(stdio.stderr));
    // SAFETY: only fcntl and setrlimit (async-signal-safe) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            crate::process::fd_limit::restore_in_child()
        });
    }
    let (_, intermediate) = reaper::spawn(|| {
        let child = cmd.spawn().context("starting kata-agent init")?;
        Ok((child.id() as i32, ()))
    })?;
    // Our copies of the child's stdio and channel end must go now, or EOF
    // would never come.
    drop(cmd);
    drop(child_end);
    // The intermediate process exits as soon as it reported the pid; its
    // status is of no interest.
    drop(intermediate);
    chan.send(&ToInit::Config(Box::new(config))).await?;
    let pid = match chan.recv().await? {
        Some(FromInit::Pid(pid)) => pid,
        Some(FromInit::Error(e)) => bail!("{e}"),
        Some(other) => bail!("container init sent {other:?} instead of its pid"),
        None => bail!("container init exited before reporting its pid"),
    };
    Ok(Pending {
        pid,
        exit: reaper::register(pid),
        channel: chan,
    })
}

impl Pending {
    /// Let a new container's process set up its rootfs; returns the channel
    /// once it is parked on exec.fifo.
    pub async fn proceed_to_parked(mut self) -> Result<AgentChannel> {
        self.channel.send(&ToInit::Proceed).await?;
        self.channel.expect(FromInit::Ready).await?;
        Ok(self.channel)
    }

    /// Let an exec'd process run: EOF on the channel means execvp worked.
    pub async fn proceed_to_exec(mut self) -> Result<()> {
        self.channel.send(&ToInit::Proceed).await?;
        finish_exec(&mut self.channel).await
    }
}

/// After the go-ahead or the fifo write: EOF (the close-on-exec channel went
/// with execvp) is success, an Error message is the reason it failed.
pub async fn finish_exec(channel: &mut AgentChannel) -> Result<()> {
    match channel.recv().await? {
        None => Ok(()),
        Some(FromInit::Error(e)) => bail!("{e}"),
        Some(other) => bail!("container init sent {other:?} instead of executing"),
    }
}
