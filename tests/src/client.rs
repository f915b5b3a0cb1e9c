//! The connection to the agent: agent-ctl's ttRPC clients over hybrid vsock,
//! retried while the guest boots (a CONNECT before the agent listens is reset).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use protocols::agent_ttrpc::AgentServiceClient;
use protocols::health::CheckRequest;
use protocols::health_ttrpc::HealthClient;

pub struct Agent {
    pub agent: AgentServiceClient,
    pub health: HealthClient,
}

/// Kata's address form for hybrid vsock.
pub fn address(socket: &Path, port: u32) -> String {
    format!("hvsock://{}:{port}", socket.display())
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
) -> Result<Agent> {
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("agent at {addr} did not answer Health.Check before the deadline: {last}")
}

async fn try_connect(addr: &str) -> Result<Agent> {
    let clients = agent_ctl::connect(addr, Duration::from_secs(2)).await?;
    let agent = Agent {
        agent: clients.agent,
        health: clients.health,
    };
    // The handshake can succeed while the guest side is still coming up:
    // only an answered RPC proves the agent serves.
    let ctx = ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
    agent.health.check(ctx, &CheckRequest::new()).await?;
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
