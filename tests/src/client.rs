//! The connection to the agent: agent-ctl's client over hybrid vsock,
//! retried while the guest boots (a CONNECT before the agent listens is
//! reset) until the agent answers Health.Check.

use std::path::Path;
use std::time::Instant;

use agent_ctl::{Address, AgentClient, RpcResultExt};
use anyhow::{bail, Result};
use protocols::health::CheckRequest;

/// Kata's address form for hybrid vsock.
pub fn address(socket: &Path, port: u32) -> String {
    Address::HybridVsock {
        uds: socket.to_path_buf(),
        port,
    }
    .to_string()
}

/// Is the VM process still running? (Gone, or a zombie, means it exited:
/// a guest panic exits QEMU with -no-reboot.)
pub fn vm_alive(pid: Option<u32>) -> bool {
    let Some(pid) = pid else { return true };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Connect and get a first Health.Check answer before `deadline`; give up
/// early when the VM (`vm_pid`) has exited.
pub async fn connect_until(
    socket: &Path,
    port: u32,
    deadline: Instant,
    vm_pid: Option<u32>,
) -> Result<AgentClient> {
    let addr = address(socket, port);
    let mut last = String::from("no attempt made");
    while Instant::now() < deadline {
        if !vm_alive(vm_pid) {
            bail!("the VM exited before the agent answered (last error: {last})");
        }
        match try_connect(&addr).await {
            Ok(agent) => return Ok(agent),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(agent_ctl::hvsock::BOOT_REDIAL_PAUSE).await;
    }
    bail!("agent at {addr} did not answer Health.Check before the deadline: {last}")
}

async fn try_connect(addr: &str) -> Result<AgentClient> {
    // One handshake per attempt, paced by the loop above, as Kata's runtime
    // dials (agent-ctl's `connect` retries inside with a backoff to 100 ms).
    let agent = agent_ctl::dial(addr).await?;
    // The handshake can succeed while the guest side is still coming up:
    // only an answered RPC proves the agent serves.
    agent
        .health
        .check(agent_ctl::context(5), &CheckRequest::new())
        .await
        .rpc("Health.Check")?;
    Ok(agent)
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_liveness_from_proc() {
        assert!(super::vm_alive(Some(std::process::id())));
        assert!(super::vm_alive(None));
        assert!(!super::vm_alive(Some(u32::MAX - 1)));
    }

    #[test]
    fn hvsock_address() {
        assert_eq!(
            super::address(std::path::Path::new("/tmp/d/vm.vsock"), 1024),
            "hvsock:///tmp/d/vm.vsock:1024"
        );
    }

    /// A hybrid-vsock backend whose guest does not listen yet: it reads each
    /// CONNECT and closes, as vhost-device-vsock does on the guest's reset.
    /// Returns the socket and the count of connections it took.
    fn refusing_backend(
        dir: &std::path::Path,
    ) -> (
        std::path::PathBuf,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::io::Read;
        let path = dir.join("vm.vsock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut b = [0u8; 1];
                while conn.read(&mut b).is_ok_and(|n| n == 1) && b[0] != b'\n' {}
            }
        });
        (path, count)
    }

    /// Regression: each attempt of the boot probe was agent-ctl's `connect`
    /// with a 2 s budget, which retried inside with its own backoff (5 ms
    /// doubling to 100 ms), so the 3 ms pause between attempts paced nothing
    /// and the first answer came on average ~50 ms after the agent listened
    /// (seen as a 6-103 ms gap between "agent is serving" and the first
    /// accept in aarch64 boots). One attempt must be one handshake.
    #[test]
    fn one_attempt_is_one_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let (uds, count) = refusing_backend(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = super::address(&uds, 1024);
        let Err(err) = rt.block_on(super::try_connect(&addr)) else {
            panic!("a refusing backend was answered")
        };
        assert!(
            format!("{err:#}").contains("closed the connection"),
            "{err:#}"
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
