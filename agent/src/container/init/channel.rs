//! The sync channel between the agent and its `kata-agent init` child: a unix
//! socket pair carrying typed messages, one JSON document per line.
//!
//! Protocol (agent → child / child → agent):
//!   → Config            what to set up
//!   ← Pid               the pid of the process that will become the container
//!                       process (sent by the intermediate process after fork)
//!   → Proceed           the pid is in the cgroup and prestart hooks have run
//!   ← Ready             (create) the rootfs is ready, parked on exec.fifo
//!   ← Error             anything failed (also an execvp failure after start)
//! The child's end is close-on-exec: EOF after Proceed (exec) or after the
//! fifo write (start) means execvp succeeded.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The environment variable naming the child's channel fd.
pub const CHANNEL_FD_ENV: &str = "_KATA_AGENT_INIT_CHANNEL_FD";

#[derive(Serialize, Deserialize, Debug)]
pub enum Mode {
    /// A new container: namespaces, rootfs, then park on `fifo`.
    Create {
        #[serde(deserialize_with = "crate::container::oci_de::boxed_spec")]
        spec: Box<Spec>,
        fifo: PathBuf,
    },
    /// A process in the container whose init is `init_pid`.
    Exec { init_pid: i32 },
}

#[derive(Serialize, Deserialize, Debug)]
pub struct InitConfig {
    pub mode: Mode,
    #[serde(deserialize_with = "crate::container::oci_de::process")]
    pub process: Process,
    /// The container's seccomp filter, installed just before execvp.
    pub seccomp: Option<crate::seccomp::Filter>,
}

#[derive(Serialize, Deserialize, Debug)]
pub enum ToInit {
    Config(Box<InitConfig>),
    Proceed,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub enum FromInit {
    Pid(i32),
    Ready,
    Error(String),
}

/// The child's (blocking) end.
pub struct ChildChannel {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl ChildChannel {
    /// # Safety
    /// `fd` must be an open socket that nothing else owns.
    pub unsafe fn from_raw_fd(fd: RawFd) -> Result<ChildChannel> {
        let stream = UnixStream::from_raw_fd(fd);
        let writer = stream.try_clone().context("duplicating the sync channel")?;
        Ok(ChildChannel {
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn send(&mut self, msg: &FromInit) -> Result<()> {
        let mut line = serde_json::to_vec(msg).context("encoding a sync message")?;
        line.push(b'\n');
        self.writer.write_all(&line).context("writing to the agent")
    }

    pub fn recv(&mut self) -> Result<ToInit> {
        let mut line = String::new();
        if self
            .reader
            .read_line(&mut line)
            .context("reading from the agent")?
            == 0
        {
            bail!("the agent closed the sync channel");
        }
        serde_json::from_str(&line).context("decoding a sync message from the agent")
    }
}

/// The agent's (async) end.
pub struct AgentChannel {
    reader: tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

/// A connected pair: the agent's end, and the child's end as a plain fd (to
/// be inherited across exec).
pub fn pair() -> Result<(AgentChannel, OwnedFd)> {
    let (ours, theirs) = UnixStream::pair().context("creating the sync socket pair")?;
    ours.set_nonblocking(true)
        .context("making the sync socket non-blocking")?;
    let ours = tokio::net::UnixStream::from_std(ours).context("registering the sync socket")?;
    let (r, w) = ours.into_split();
    let theirs = OwnedFd::from(theirs);
    Ok((
        AgentChannel {
            reader: tokio::io::BufReader::new(r),
            writer: w,
        },
        theirs,
    ))
}

impl AgentChannel {
    pub async fn send(&mut self, msg: &ToInit) -> Result<()> {
        let mut line = serde_json::to_vec(msg).context("encoding a sync message")?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .context("writing to the container init")
    }

    /// The next message; None at EOF (the child exec'd or died).
    pub async fn recv(&mut self) -> Result<Option<FromInit>> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .await
            .context("reading from the container init")?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .context("decoding a sync message from the container init")
    }

    /// The next message, which must be `want`; an Error message or EOF
    /// becomes the error.
    pub async fn expect(&mut self, want: FromInit) -> Result<()> {
        match self.recv().await? {
            Some(m) if m == want => Ok(()),
            Some(FromInit::Error(e)) => bail!("{e}"),
            Some(other) => bail!("container init sent {other:?}, expected {want:?}"),
            None => bail!("container init exited before sending {want:?}"),
        }
    }
}
