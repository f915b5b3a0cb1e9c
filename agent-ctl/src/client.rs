//! Connecting: the address's transport, retried until a deadline, and the
//! typed clients of one connection.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use protocols::agent_ttrpc::AgentServiceClient;
use protocols::health_ttrpc::HealthClient;
use ttrpc::r#async::transport::Socket;

use crate::{hvsock, Address};

/// How long one hybrid-vsock handshake may wait for the backend's answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

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
/// still booting refuses or resets connections) with a backoff from 5 ms to
/// 100 ms: for a command line. A boot probe redials with `dial` instead.
pub async fn connect(addr: &str, timeout: Duration) -> Result<AgentClient> {
    let address: Address = addr.parse()?;
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        match connect_once(&address).await {
            Ok(client) => return Ok(client),
            Err(_) if Instant::now() + delay < deadline => {
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

/// One attempt to connect to the agent at `addr`, no retry: the caller paces
/// its redials (see `hvsock::BOOT_REDIAL_PAUSE`).
pub async fn dial(addr: &str) -> Result<AgentClient> {
    connect_once(&addr.parse()?).await
}

async fn connect_once(address: &Address) -> Result<AgentClient> {
    let socket = match address {
        Address::HybridVsock { uds, port } => Socket::new(hybrid_vsock(uds.clone(), *port).await?),
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

/// [`hvsock::handshake`] on a blocking thread, then the stream for tokio.
async fn hybrid_vsock(uds: std::path::PathBuf, port: u32) -> Result<tokio::net::UnixStream> {
    let stream =
        tokio::task::spawn_blocking(move || hvsock::handshake(&uds, port, HANDSHAKE_TIMEOUT))
            .await
            .context("the hybrid vsock handshake thread failed")??;
    // tokio drives the stream from here: no timeouts, non-blocking.
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    stream.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(stream).context("handing the stream to tokio")
}
