//! The connection to the agent: agent-ctl's client over hybrid vsock,
//! retried while the guest boots (a CONNECT before the agent listens is
//! reset) until the agent answers Health.Check.

use std::path::Path;
use std::time::{Duration, Instant};

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

/// The pause between two dials while the agent is not yet listening.
/// Kata's runtime redials at once (commonDialer in
/// src/runtime/virtcontainers/pkg/agent/protocols/client/client.go: no
/// sleep, each attempt paced by the guest's reset), so it sees the agent the
/// moment it listens; 50 ms here made every boot look 25 ms longer on
/// average than Kata's runtime would find it. A few milliseconds keep a
/// refused dial (the vsock socket not there yet) from spinning a host core
/// that QEMU's vCPU thread needs.
const REDIAL_PAUSE: Duration = Duration::from_millis(3);

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
        tokio::time::sleep(REDIAL_PAUSE).await;
    }
    bail!("agent at {addr} did not answer Health.Check before the deadline: {last}")
}

async fn try_connect(addr: &str) -> Result<AgentClient> {
    let agent = agent_ctl::connect(addr, Duration::from_secs(2)).await?;
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
}
