//! Client side of the kata-agent API: parse a server address, connect (also
//! through a hybrid-vsock Unix socket), and get typed ttRPC clients.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let agent = agent_ctl::connect("unix:///run/agent.sock", std::time::Duration::from_secs(5)).await?;
//! let resp = agent.health.check(agent_ctl::context(5), &Default::default()).await?;
//! # Ok(()) }
//! ```

pub mod address;
pub mod rpc_table;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use protocols::agent_ttrpc::AgentServiceClient;
use protocols::health_ttrpc::HealthClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use ttrpc::r#async::transport::Socket;

pub use address::Address;

/// The two services of one agent connection.
#[derive(Clone)]
pub struct AgentClient {
    pub agent: AgentServiceClient,
    pub health: HealthClient,
}

/// A ttRPC context whose deadline is `secs` seconds away (0: no deadline).
pub fn context(secs: u64) -> ttrpc::context::Context {
    if secs == 0 {
        ttrpc::context::Context::default()
    } else {
        ttrpc::context::with_timeout(Duration::from_secs(secs).as_nanos() as i64)
    }
}

/// Connect to an agent at `addr`, retrying until `timeout` (a guest that is
/// still booting refuses or resets connections).
pub async fn connect(addr: &str, timeout: Duration) -> Result<AgentClient> {
    let address: Address = addr.parse()?;
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        match connect_once(&address).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() + delay < deadline => {
                let _ = e;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e.context(format!(
                    "connecting to the agent at {addr} (gave up after {timeout:?})"
                )))
            }
        }
    }
}

async fn connect_once(address: &Address) -> Result<AgentClient> {
    let socket = match address {
        Address::HybridVsock { uds, port } => {
            Socket::new(hybrid_vsock_handshake(uds, *port).await?)
        }
        other => Socket::connect(other.ttrpc_addr())
            .await
            .with_context(|| format!("connecting to {other}"))?,
    };
    let client = ttrpc::r#async::Client::new(socket);
    Ok(AgentClient {
        agent: AgentServiceClient::new(client.clone()),
        health: HealthClient::new(client),
    })
}

/// Hybrid vsock (Firecracker, Cloud Hypervisor, vhost-user backends): connect
/// to the host socket, send `CONNECT <port>\n`, expect a line starting `OK `
/// (the number after it differs between implementations), then the stream is
/// the guest's port.
pub async fn hybrid_vsock_handshake(uds: &std::path::Path, port: u32) -> Result<UnixStream> {
    let mut stream = UnixStream::connect(uds)
        .await
        .with_context(|| format!("connecting to hybrid vsock socket {}", uds.display()))?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .context("sending CONNECT")?;
    // Read the reply byte by byte: buffering past the newline would eat the
    // first bytes of the ttRPC stream.
    let mut reply = Vec::new();
    let mut reader = BufReader::with_capacity(1, &mut stream);
    let n = tokio::time::timeout(Duration::from_secs(5), reader.read_until(b'\n', &mut reply))
        .await
        .context("timed out waiting for the hybrid vsock reply")?
        .context("reading the hybrid vsock reply")?;
    if n == 0 {
        bail!("hybrid vsock: connection closed after CONNECT {port} (nobody listens on the guest port yet?)");
    }
    let text = String::from_utf8_lossy(&reply);
    if !text.starts_with("OK ") {
        bail!(
            "hybrid vsock: unexpected reply to CONNECT {port}: {:?}",
            text.trim_end()
        );
    }
    Ok(stream)
}
