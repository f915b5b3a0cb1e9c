//! virtio-vsock without /dev/vhost-vsock: rust-vmm's `vhost-device-vsock`
//! backend (vhost-user) and the hybrid-vsock handshake on its Unix socket.
//! Why: hosts without the kernel's vhost-vsock (such as the CI machines)
//! still get virtio-vsock this way. Quirks of the backend (0.3.0): a CONNECT
//! before the guest listens is dropped, so the host retries with a deadline;
//! it outlives QEMU, so the session stops it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cleanup::{wait_for_path, Session};

const VERSION: &str = "0.3.0";
/// The guest CID; any value > 2 works, one VM per backend.
pub const GUEST_CID: u32 = 3;
/// Kata's agent port (`agent.server_addr` default `vsock://-1:1024`).
pub const AGENT_PORT: u32 = 1024;

/// The backend binary, installed with `cargo install --locked` when missing.
pub fn ensure_installed() -> Result<PathBuf> {
    crate::cmd::cargo_install("vhost-device-vsock", VERSION)
}

/// A running backend: QEMU connects to `vhost_socket`; the host reaches guest
/// ports through `uds` (hybrid vsock).
pub struct Backend {
    pub vhost_socket: PathBuf,
    pub uds: PathBuf,
}

/// Start the backend in `dir`, owned by `session`; returns once its vhost-user
/// socket exists, so QEMU can connect.
pub fn start(session: &mut Session, dir: &Path) -> Result<Backend> {
    let bin = ensure_installed()?;
    let backend = Backend {
        vhost_socket: dir.join("vhost.sock"),
        uds: dir.join("vm.vsock"),
    };
    let mut cmd = Command::new(bin);
    cmd.arg("--guest-cid")
        .arg(GUEST_CID.to_string())
        .arg("--socket")
        .arg(&backend.vhost_socket)
        .arg("--uds-path")
        .arg(&backend.uds)
        // Its debug log is what explains a stalled connection.
        .env(
            "RUST_LOG",
            std::env::var("VSOCK_LOG").unwrap_or_else(|_| "debug".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("vhost-device-vsock.log"))?);
    session.spawn("vhost-device-vsock", cmd)?;
    wait_for_path(
        session,
        "vhost-device-vsock",
        &backend.vhost_socket,
        Duration::from_secs(10),
    )?;
    Ok(backend)
}

/// One hybrid-vsock handshake: `CONNECT <port>\n`, then a line starting `OK `.
/// Only the prefix is checked: this backend answers with the guest port,
/// Firecracker with a host-side one.
pub fn connect_once(uds: &Path, port: u32, io_timeout: Duration) -> Result<UnixStream> {
    let mut stream =
        UnixStream::connect(uds).with_context(|| format!("connecting to {}", uds.display()))?;
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .context("sending CONNECT")?;
    let mut line = Vec::new();
    // Read byte by byte: anything after the newline belongs to the guest.
    let mut reader = BufReader::with_capacity(1, &stream);
    reader
        .read_until(b'\n', &mut line)
        .context("reading the CONNECT answer")?;
    if !line.starts_with(b"OK ") {
        bail!(
            "hybrid vsock CONNECT {port} on {} answered {:?} (guest not listening yet?)",
            uds.display(),
            String::from_utf8_lossy(&line)
        );
    }
    Ok(stream)
}

/// Retry the handshake until `deadline`: a CONNECT before the guest listens
/// is reset with no text. `alive` lets the caller stop early when QEMU died.
pub fn connect(
    uds: &Path,
    port: u32,
    deadline: Instant,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<UnixStream> {
    let mut last_err = None;
    while Instant::now() < deadline {
        alive()?;
        match connect_once(uds, port, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) => last_err = Some(e),
        }
        thread::sleep(Duration::from_millis(20));
    }
    let err = last_err.unwrap_or_else(|| anyhow::anyhow!("no attempt made"));
    Err(err.context(format!(
        "guest vsock port {port} not reachable through {} before the deadline",
        uds.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    /// A fake backend: accepts, reads the CONNECT line, answers `answer`, then echoes.
    fn fake_backend(dir: &Path, answer: &'static str) -> PathBuf {
        let path = dir.join("fake.vsock");
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
                line.push(b[0]);
            }
            assert_eq!(line, b"CONNECT 1024");
            s.write_all(answer.as_bytes()).unwrap();
            let mut buf = [0u8; 5];
            if s.read_exact(&mut buf).is_ok() {
                s.write_all(&buf).unwrap();
            }
        });
        path
    }

    #[test]
    fn handshake_accepts_any_ok_port_and_keeps_the_stream() {
        let dir = std::env::temp_dir().join(format!("vsock-test-ok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let uds = fake_backend(&dir, "OK 1073741824\n");
        let mut s = connect_once(&uds, 1024, Duration::from_secs(2)).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn handshake_rejects_other_answers() {
        let dir = std::env::temp_dir().join(format!("vsock-test-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let uds = fake_backend(&dir, "NO\n");
        let err = connect_once(&uds, 1024, Duration::from_secs(2)).unwrap_err();
        assert!(format!("{err:#}").contains("answered"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
