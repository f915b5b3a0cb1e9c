//! A container process as the agent sees it: its pid, its exit status (from
//! the reaper) and its stdio: pipes, or a pty when the process has a
//! terminal.
//!
//! Output stays in the pipe (or pty) until a client reads it, so nothing
//! written before the first ReadStdout is lost; reads wait on the fd's
//! readiness (epoll through tokio), never by polling.

pub mod fd_limit;
mod stream;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Mutex;

use crate::reaper::ExitReceiver;
pub use stream::{FdReader, FdWriter};

/// The child's ends of its stdio, handed to the container init.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The agent's ends.
pub struct ProcessIo {
    /// None once CloseStdin closed it.
    stdin: Mutex<Option<FdWriter>>,
    stdout: Mutex<FdReader>,
    /// None with a terminal (one stream carries both).
    stderr: Option<Mutex<FdReader>>,
    /// The pty master, for TtyWinResize.
    tty: Option<OwnedFd>,
}

pub struct Process {
    pub exec_id: String,
    pub pid: i32,
    pub exit: ExitReceiver,
    pub io: Arc<ProcessIo>,
}

/// Once the process has exited, how long a read still waits for output
/// before it answers EOF: a background child may hold the pipe (or pty)
/// open forever (Kata's agent: 500 ms, src/agent/src/rpc.rs do_read_stream).
pub const EXIT_DRAIN: Duration = Duration::from_millis(500);

/// What a read returns: data, or the end of the stream.
pub enum ReadResult {
    Data(Vec<u8>),
    Eof,
}

impl ProcessIo {
    /// The I/O an OCI process asks for: a pty of its console size when it
    /// wants a terminal, pipes (sized `pipe_size` when > 0) otherwise.
    pub fn for_process(
        process: &oci_spec::runtime::Process,
        pipe_size: i32,
    ) -> Result<(Arc<ProcessIo>, ChildStdio)> {
        let console = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        Self::new(process.terminal().unwrap_or(false), pipe_size, console)
    }

    /// Pipes (sized `pipe_size` when > 0), or a pty of `size` (rows, cols).
    pub fn new(
        terminal: bool,
        pipe_size: i32,
        size: Option<(u16, u16)>,
    ) -> Result<(Arc<ProcessIo>, ChildStdio)> {
        if terminal {
            return Self::new_pty(size);
        }
        let (in_r, in_w) = pipe(pipe_size)?;
        let (out_r, out_w) = pipe(pipe_size)?;
        let (err_r, err_w) = pipe(pipe_size)?;
        let io = ProcessIo {
            stdin: Mutex::new(Some(FdWriter::new(in_w)?)),
            stdout: Mutex::new(FdReader::new(out_r, false)?),
            stderr: Some(Mutex::new(FdReader::new(err_r, false)?)),
            tty: None,
        };
        let child = ChildStdio {
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        };
        Ok((Arc::new(io), child))
    }

    fn new_pty(size: Option<(u16, u16)>) -> Result<(Arc<ProcessIo>, ChildStdio)> {
        let ws = size.map(|(rows, cols)| nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(ws.as_ref(), None).context("opening a pty")?;
        for fd in [&pty.master, &pty.slave] {
            set_cloexec(fd)?;
        }
        let dup = |fd: &OwnedFd| fd.try_clone().context("duplicating a pty fd");
        let io = ProcessIo {
            stdin: Mutex::new(Some(FdWriter::new(dup(&pty.master)?)?)),
            stdout: Mutex::new(FdReader::new(dup(&pty.master)?, true)?),
            stderr: None,
            tty: Some(pty.master),
        };
        let child = ChildStdio {
            stdin: dup(&pty.slave)?,
            stdout: dup(&pty.slave)?,
            stderr: pty.slave,
        };
        Ok((Arc::new(io), child))
    }

    /// Up to `len` bytes of stdout (or stderr); waits until there is some.
    /// Once `exit` reports the process gone (now or while waiting), waits
    /// at most EXIT_DRAIN for more output, then EOF: a `sh -c 'x &'` must
    /// not keep its reader waiting for `x`.
    pub async fn read_until_exit(
        &self,
        stderr: bool,
        len: usize,
        mut exit: ExitReceiver,
    ) -> Result<ReadResult> {
        let reader = match (stderr, &self.stderr) {
            (false, _) => &self.stdout,
            (true, Some(r)) => r,
            // A terminal has no separate stderr.
            (true, None) => return Ok(ReadResult::Eof),
        };
        let mut guard = reader.lock().await;
        let read = guard.read(len.max(1));
        tokio::pin!(read);
        tokio::select! {
            // Output that is there wins over the exit.
            biased;
            r = &mut read => r,
            // A closed channel (the reaper forgot it) counts as exited too.
            // (The guard wait_for returns is not Send: drop it at once.)
            () = async { drop(exit.wait_for(Option::is_some).await) } => {
                match tokio::time::timeout(EXIT_DRAIN, &mut read).await {
                    Ok(r) => r,
                    Err(_) => Ok(ReadResult::Eof),
                }
            }
        }
    }

    pub async fn write_stdin(&self, data: &[u8]) -> Result<usize> {
        let mut guard = self.stdin.lock().await;
        let w = guard.as_mut().context("stdin is closed")?;
        w.write_all(data).await?;
        Ok(data.len())
    }

    pub async fn close_stdin(&self) {
        // With a pty, closing our copy does not hang up the terminal (the
        // reader holds the master too); send EOF (^D) as a terminal would.
        let mut guard = self.stdin.lock().await;
        if self.tty.is_some() {
            if let Some(w) = guard.as_mut() {
                let _ = w.write_all(&[4]).await;
            }
        }
        guard.take();
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let tty = self.tty.as_ref().context("the process has no terminal")?;
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct we own.
        if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(std::io::Error::last_os_error()).context("TIOCSWINSZ");
        }
        Ok(())
    }
}

fn set_cloexec(fd: &OwnedFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("setting FD_CLOEXEC")?;
    Ok(())
}

/// A close-on-exec pipe (read end, write end), sized when asked.
fn pipe(size: i32) -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    if size > 0 {
        nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(size)).with_context(|| {
            format!("setting the pipe size to {size} (agent.container_pipe_size)")
        })?;
    }
    Ok((r, w))
}
