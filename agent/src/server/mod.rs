//! The ttRPC server: binds `agent.server_addr` (vsock by default, a unix
//! socket for stand-alone runs), serves AgentService and Health until told to
//! stop. ttrpc serves the connections; the accept loop (`listener`, which
//! waits out EMFILE) and the bound on each connection's requests in flight
//! (`bounded`) are the agent's, around it.

mod bounded;
mod listener;

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use protocols::{agent_ttrpc, health_ttrpc};
use tokio::signal::unix::{signal, SignalKind};
use ttrpc::r#async::Server;

use crate::rpc::health::HealthService;
use crate::rpc::AgentService;
use crate::sandbox::AgentContext;

/// Check an address before handing it to ttrpc, so a typo gives a clear error.
/// Accepted: `vsock://CID:PORT` (CID -1 = any), `unix:///path`, `unix://@name`.
pub fn validate_server_addr(addr: &str) -> Result<()> {
    if let Some(rest) = addr.strip_prefix("vsock://") {
        let (cid, port) = rest
            .split_once(':')
            .with_context(|| format!("server address {addr:?}: expected vsock://CID:PORT"))?;
        if cid != "-1" {
            cid.parse::<u32>()
                .with_context(|| format!("server address {addr:?}: bad CID {cid:?}"))?;
        }
        port.parse::<u32>()
            .with_context(|| format!("server address {addr:?}: bad port {port:?}"))?;
        return Ok(());
    }
    if let Some(path) = addr.strip_prefix("unix://") {
        if path.is_empty() || path == "@" {
            bail!("server address {addr:?}: empty socket path");
        }
        return Ok(());
    }
    bail!("server address {addr:?}: expected vsock://CID:PORT, unix:///path or unix://@name")
}

/// For a filesystem unix socket: create the parent directory and remove a
/// stale socket left by a previous run (binding would fail with EADDRINUSE).
fn prepare_socket_path(addr: &str) -> Result<()> {
    let Some(path) = addr.strip_prefix("unix://") else {
        return Ok(());
    };
    if path.starts_with('@') {
        return Ok(());
    }
    let path = Path::new(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating socket directory {}", parent.display()))?;
    }
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    Ok(())
}

/// How long a PID-1 agent keeps serving after DestroySandbox asked it to
/// stop, so that the reply reaches the runtime before the power-off.
const REPLY_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Start serving; returns when the agent is asked to stop: SIGTERM/SIGINT in
/// stand-alone runs, `ctx.stop` (DestroySandbox as PID 1).
pub async fn serve(ctx: Arc<AgentContext>) -> Result<()> {
    let addr = ctx.config.server_addr.clone();
    validate_server_addr(&addr)?;
    prepare_socket_path(&addr)?;

    let agent = agent_ttrpc::create_agent_service(Arc::new(AgentService::new(ctx.clone())));
    let health = health_ttrpc::create_health(Arc::new(HealthService));
    let mut server = Server::new()
        .add_listener(listener::bind(&addr, ctx.logger.clone())?)
        .register_service(agent)
        .register_service(health);
    server
        .start()
        .await
        .with_context(|| format!("starting the ttRPC server on {addr}"))?;
    slog::info!(ctx.logger, "agent is serving"; "address" => &addr);

    wait_for_stop(&ctx).await?;
    if ctx.init_daemon {
        // The stop comes from inside DestroySandbox's handler: its reply is
        // written by ttrpc after the handler returns, and a shutdown at once
        // cut it off ("early eof" at the runtime, seen in 1 of 20 boots).
        tokio::time::sleep(REPLY_GRACE).await;
    }
    slog::info!(ctx.logger, "stopping the agent");
    server
        .shutdown()
        .await
        .context("shutting down the server")?;
    if let Some(path) = addr.strip_prefix("unix://").filter(|p| !p.starts_with('@')) {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

async fn wait_for_stop(ctx: &AgentContext) -> Result<()> {
    if ctx.init_daemon {
        // PID 1 ignores signals (a stray SIGTERM must not end the guest).
        ctx.stopped().await;
        return Ok(());
    }
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
        _ = ctx.stopped() => {},
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        for good in [
            "vsock://-1:1024",
            "vsock://3:1024",
            "unix:///run/a.sock",
            "unix://@agent",
        ] {
            assert!(validate_server_addr(good).is_ok(), "{good}");
        }
        for bad in [
            "vsock://x:1",
            "vsock://-1",
            "vsock://1:port",
            "unix://",
            "tcp://1.2.3.4:5",
            "/tmp/a",
        ] {
            assert!(validate_server_addr(bad).is_err(), "{bad}");
        }
    }
}
