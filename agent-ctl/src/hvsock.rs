//! The hybrid-vsock handshake (Firecracker, Cloud Hypervisor and the
//! vhost-user backends such as vhost-device-vsock): connect to the host's
//! Unix socket, send `CONNECT <port>\n`, expect a line starting `OK `, then
//! the stream is the guest's port.
//!
//! The one implementation: the async client (`connect`) runs it on a
//! blocking thread, the xtask calls it directly. Plain std, so it is
//! available without the `client` feature (no ttRPC, no tokio).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The pause between two handshakes while a booting guest does not listen
/// yet. Kata's runtime redials at once (commonDialer in
/// src/runtime/virtcontainers/pkg/agent/protocols/client/client.go: no
/// sleep, each attempt paced by the guest's reset; its HybridVSockDialer
/// notes ~1,500 redials in a boot), so it sees the agent the moment it
/// listens. A few milliseconds keep the detection that close while a refused
/// dial (the backend's socket not there yet) does not spin a host core that
/// QEMU's vCPU thread needs, and under TCG the guest's resets do not eat its
/// one vCPU.
pub const BOOT_REDIAL_PAUSE: Duration = Duration::from_millis(3);

/// One handshake with `io_timeout` on each read and write. Only the `OK `
/// prefix is checked: vhost-device-vsock answers with the guest port,
/// Firecracker with a host-side one. The stream keeps the timeouts; clear
/// them before handing it to code that expects blocking reads.
pub fn handshake(uds: &Path, port: u32, io_timeout: Duration) -> Result<UnixStream> {
    let mut stream = UnixStream::connect(uds)
        .with_context(|| format!("connecting to hybrid vsock socket {}", uds.display()))?;
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .context("sending CONNECT")?;
    // Read the reply byte by byte: buffering past the newline would eat the
    // first bytes of the guest's stream.
    let mut reply = Vec::new();
    let n = BufReader::with_capacity(1, &stream)
        .read_until(b'\n', &mut reply)
        .with_context(|| format!("reading the answer to CONNECT {port}"))?;
    if n == 0 {
        bail!(
            "hybrid vsock: {} closed the connection after CONNECT {port} \
             (nobody listens on the guest port yet?)",
            uds.display()
        );
    }
    if !reply.starts_with(b"OK ") {
        bail!(
            "hybrid vsock: CONNECT {port} on {} answered {:?} (guest not listening yet?)",
            uds.display(),
            String::from_utf8_lossy(&reply).trim_end()
        );
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::thread;

    /// A fake backend: accepts, reads the CONNECT line, answers `answer`
    /// (closes when it is empty), then echoes five bytes.
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
            if answer.is_empty() {
                return; // closes the connection
            }
            s.write_all(answer.as_bytes()).unwrap();
            let mut buf = [0u8; 5];
            if s.read_exact(&mut buf).is_ok() {
                s.write_all(&buf).unwrap();
            }
        });
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hvsock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn accepts_any_ok_port_and_keeps_the_stream() {
        let dir = temp_dir("ok");
        // The guest's first bytes follow the answer at once: none may be lost.
        let uds = fake_backend(&dir, "OK 1073741824\n");
        let mut s = handshake(&uds, 1024, Duration::from_secs(2)).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_other_answers_and_a_closed_connection() {
        let dir = temp_dir("bad");
        let uds = fake_backend(&dir, "NO\n");
        let err = handshake(&uds, 1024, Duration::from_secs(2)).unwrap_err();
        assert!(format!("{err:#}").contains("answered \"NO\""), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();

        let dir = temp_dir("closed");
        let uds = fake_backend(&dir, "");
        let err = handshake(&uds, 1024, Duration::from_secs(2)).unwrap_err();
        assert!(
            format!("{err:#}").contains("closed the connection"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_socket_names_the_path() {
        let err = handshake(
            Path::new("/nonexistent/vm.vsock"),
            1024,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/vm.vsock"),
            "{err:#}"
        );
    }
}
