//! agent.debug_console: a root shell for debugging the guest, on the
//! serial console (agent.debug_console_vport=0) or on a vsock port, one
//! shell per connection, each on its own pseudo-terminal (as Kata's
//! `kata-runtime exec` expects: raw bytes both ways).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use slog::Logger;

use crate::reaper::{self, ExitReceiver};

const SHELLS: &[&str] = &["/bin/bash", "/bin/sh", "/usr/bin/bash", "/usr/bin/sh"];

fn shell() -> Result<&'static str> {
    SHELLS
        .iter()
        .copied()
        .find(|s| Path::new(s).exists())
        .with_context(|| format!("no shell in the guest (looked for {})", SHELLS.join(", ")))
}

/// Start the console in the background (a thread: it blocks on accept or on
/// the shell); errors are logged, never fatal to the agent.
pub fn start(vport: u32, logger: Logger) {
    std::thread::spawn(move || {
        let result = if vport == 0 {
            serve_console(&logger)
        } else {
            serve_vsock(vport, &logger)
        };
        if let Err(e) = result {
            slog::error!(logger, "debug console stopped"; "error" => format!("{e:#}"));
        }
    });
}

/// A shell on /dev/console, started again whenever it exits.
fn serve_console(logger: &Logger) -> Result<()> {
    let sh = shell()?;
    loop {
        let console = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
            .context("opening /dev/console")?;
        let mut cmd = Command::new(sh);
        cmd.stdin(Stdio::from(console.try_clone()?))
            .stdout(Stdio::from(console.try_clone()?))
            .stderr(Stdio::from(console));
        let (_, mut exit) = reaper::spawn(|| {
            let child = cmd
                .spawn()
                .with_context(|| format!("running {sh} on the console"))?;
            Ok((child.id() as i32, ()))
        })?;
        drop(cmd);
        let status = reaper::wait_blocking(&mut exit);
        slog::info!(logger, "debug console shell exited"; "status" => format!("{status:?}"));
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn serve_vsock(port: u32, logger: &Logger) -> Result<()> {
    let listener = vsock::VsockListener::bind_with_cid_port(libc::VMADDR_CID_ANY, port)
        .with_context(|| format!("listening on vsock port {port}"))?;
    slog::info!(logger, "debug console listening"; "vport" => port);
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let logger = logger.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_shell(stream) {
                        slog::warn!(logger, "debug console session"; "error" => format!("{e:#}"));
                    }
                });
            }
            Err(e) => slog::warn!(logger, "debug console accept"; "error" => e.to_string()),
        }
    }
    Ok(())
}

/// Run a shell on a new pty and copy bytes between it and `stream` until
/// the shell exits or the peer hangs up.
pub fn serve_shell<S>(stream: S) -> Result<()>
where
    S: Read + Write + AsRawFd + Send + Sync + 'static,
    for<'a> &'a S: Read + Write,
{
    let pty = nix::pty::openpty(None, None).context("opening a pseudo-terminal")?;
    let (pid, mut exit) = spawn_on_tty(shell()?, &pty.slave)?;
    drop(pty.slave);
    let master = std::fs::File::from(pty.master);
    let stream = std::sync::Arc::new(stream);
    let to_shell = {
        let (stream, mut master) = (stream.clone(), master.try_clone()?);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut &*stream, &mut master);
        })
    };
    // Reading the master fails with EIO once the shell (the last slave
    // holder) is gone: that ends the session.
    let _ = std::io::copy(&mut &master, &mut &*stream);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = reaper::wait_blocking(&mut exit);
    // SAFETY: shutdown on a socket we own; it unblocks the other copy thread.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_RDWR) };
    let _ = to_shell.join();
    Ok(())
}

/// The shell's pid and its exit status (from the reaper).
fn spawn_on_tty(sh: &str, tty: &OwnedFd) -> Result<(i32, ExitReceiver)> {
    let fd = || -> Result<Stdio> { Ok(Stdio::from(tty.try_clone().context("dup of the pty")?)) };
    let mut cmd = Command::new(sh);
    cmd.arg("-i")
        .stdin(fd()?)
        .stdout(fd()?)
        .stderr(fd()?)
        .env("TERM", "vt100");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (pid, exit) = reaper::spawn(|| {
        let child = cmd.spawn().with_context(|| format!("starting {sh}"))?;
        Ok((child.id() as i32, child.id() as i32))
    })?;
    Ok((pid, exit))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    #[test]
    fn shell_session_over_a_socket() {
        // The shell's exit status comes from the reaper.
        crate::reaper::start_for_tests();
        let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
        let server = std::thread::spawn(move || super::serve_shell(theirs));
        ours.write_all(b"echo kata-$((6*7))\n").expect("write");
        ours.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains("kata-42") {
            let mut buf = [0u8; 512];
            if let Ok(n) = ours.read(&mut buf) {
                seen.extend_from_slice(&buf[..n]);
            }
        }
        assert!(
            String::from_utf8_lossy(&seen).contains("kata-42"),
            "{}",
            String::from_utf8_lossy(&seen)
        );
        ours.write_all(b"exit\n").expect("exit");
        server.join().expect("thread").expect("session");
    }
}
