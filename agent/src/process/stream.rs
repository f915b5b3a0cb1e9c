//! Non-blocking fds driven by tokio's reactor (AsyncFd): a read waits for
//! readiness, then reads what is there.

use std::io::ErrorKind;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use tokio::io::unix::AsyncFd;

use super::ReadResult;

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).context("F_GETFL")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).context("F_SETFL O_NONBLOCK")?;
    Ok(())
}

fn register(fd: OwnedFd) -> Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the fd; it deregisters before closing it.
    unsafe { AsyncFd::register(fd) }
        .map_err(|e| anyhow::anyhow!("registering an fd with the reactor: {e}"))
}

pub struct FdReader {
    fd: AsyncFd<OwnedFd>,
    /// A pty master: EIO means the other side is gone (EOF).
    pty: bool,
}

impl FdReader {
    pub fn new(fd: OwnedFd, pty: bool) -> Result<FdReader> {
        set_nonblocking(&fd)?;
        Ok(FdReader {
            fd: register(fd)?,
            pty,
        })
    }

    pub async fn read(&mut self, len: usize) -> Result<ReadResult> {
        let mut buf = vec![0u8; len];
        loop {
            let mut guard = self.fd.readable().await.context("waiting for output")?;
            let res = guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)
            });
            match res {
                Ok(Ok(0)) => return Ok(ReadResult::Eof),
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(ReadResult::Data(buf));
                }
                Ok(Err(e)) if self.pty && e.raw_os_error() == Some(libc::EIO) => {
                    return Ok(ReadResult::Eof)
                }
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e).context("reading process output"),
                Err(_would_block) => continue,
            }
        }
    }
}

pub struct FdWriter {
    fd: AsyncFd<OwnedFd>,
}

impl FdWriter {
    pub fn new(fd: OwnedFd) -> Result<FdWriter> {
        set_nonblocking(&fd)?;
        Ok(FdWriter { fd: register(fd)? })
    }

    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await.context("waiting to write stdin")?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e).context("writing to the process stdin"),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}
