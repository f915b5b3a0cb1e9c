//! virtio-vsock without /dev/vhost-vsock: rust-vmm's `vhost-device-vsock`
//! backend (vhost-user) and the hybrid-vsock handshake on its Unix socket.
//! Why: hosts without the kernel's vhost-vsock (such as the CI machines)
//! still get virtio-vsock this way. Quirks of the backend (0.3.0): a CONNECT
//! before the guest listens is dropped, so the host retries with a deadline;
//! it outlives QEMU, so the session stops it.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

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

/// One hybrid-vsock handshake: agent-ctl's (the one implementation).
pub fn connect_once(uds: &Path, port: u32, io_timeout: Duration) -> Result<UnixStream> {
    agent_ctl::hvsock::handshake(uds, port, io_timeout)
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
        thread::sleep(agent_ctl::hvsock::BOOT_REDIAL_PAUSE);
    }
    let err = last_err.unwrap_or_else(|| anyhow::anyhow!("no attempt made"));
    Err(err.context(format!(
        "guest vsock port {port} not reachable through {} before the deadline",
        uds.display()
    )))
}
