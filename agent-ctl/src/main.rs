//! `agent-ctl`: call any kata-agent RPC from the command line.
//!
//! ```text
//! agent-ctl --server-address unix:///tmp/agent.sock check
//! agent-ctl --server-address hvsock:///tmp/vm.vsock:1024 GetGuestDetails '{"memBlockSize": true}'
//! ```

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(name = "agent-ctl", version, about = "Drive a kata-agent over ttRPC")]
struct Cli {
    /// unix:///path, unix://@name, vsock://CID:PORT or hvsock:///path:PORT (hybrid vsock).
    #[arg(long, env = "AGENT_CTL_SERVER_ADDRESS")]
    server_address: String,
    /// Seconds to keep trying to connect, and the deadline of the call.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// RPC name (Check, Version, CreateContainer, ...; case-insensitive), or `list`.
    rpc: String,
    /// The request as JSON; `-` reads it from stdin; empty means the default request.
    request: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.rpc == "list" {
        for name in agent_ctl::rpc_table::RPC_NAMES {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    match run(cli) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agent-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<String> {
    let request = match cli.request.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the request from stdin")?;
            s
        }
        Some(s) => s.to_string(),
        None => String::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let client =
            agent_ctl::connect(&cli.server_address, Duration::from_secs(cli.timeout)).await?;
        agent_ctl::rpc_table::call(&client, &cli.rpc, &request, cli.timeout).await
    })
}
