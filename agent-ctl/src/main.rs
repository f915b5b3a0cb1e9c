//! `agent-ctl`: call any kata-agent RPC from the command line.
//!
//! ```text
//! agent-ctl --server-address unix:///tmp/agent.sock check
//! agent-ctl --server-address hvsock:///tmp/vm.vsock:1024 GetGuestDetails '{"memBlockSize": true}'
//! agent-ctl list
//! ```
//!
//! Everything that can be checked without the agent (the RPC's name, the
//! request's JSON, the address's syntax) is checked before connecting.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use agent_ctl::rpc_table::{Request, RPC_NAMES};
use agent_ctl::Address;
use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

#[derive(Parser)]
#[command(name = "agent-ctl", version, about = "Drive a kata-agent over ttRPC")]
struct Cli {
    /// unix:///path, unix://@name, vsock://CID:PORT or hvsock:///path:PORT
    /// (hybrid vsock). Needed by every RPC, not by `list`.
    #[arg(long, env = "AGENT_CTL_SERVER_ADDRESS")]
    server_address: Option<String>,
    /// Seconds to keep trying to connect, and the deadline of the call
    /// (0: one connection attempt, no deadline).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// RPC name (Check, Version, CreateContainer, ...; case-insensitive), or
    /// `list` for the names.
    rpc: String,
    /// The request as JSON; `-` reads it from stdin; empty means the default request.
    request: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = if cli.rpc == "list" {
        Ok(RPC_NAMES.join("\n"))
    } else {
        run(cli)
    };
    match output {
        Ok(text) => print_out(&text),
        Err(e) => {
            eprintln!("agent-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Print `text` and a newline. A reader that went away (`agent-ctl list |
/// head`) is not an error: stop quietly, like a tool killed by SIGPIPE
/// would, but with status 0 (Rust ignores SIGPIPE, so the write fails with
/// EPIPE instead).
fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-ctl: writing the answer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<String> {
    let json = read_request(cli.request.as_deref())?;
    let request = Request::parse(&cli.rpc, &json)?;
    let Some(addr) = cli.server_address else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!(
                    "calling {} needs --server-address (or AGENT_CTL_SERVER_ADDRESS)",
                    request.name()
                ),
            )
            .exit()
    };
    addr.parse::<Address>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let client = agent_ctl::connect(&addr, Duration::from_secs(cli.timeout)).await?;
        request.call(&client, cli.timeout).await
    })
}

/// The request's JSON: the argument, stdin for `-`, or empty.
fn read_request(arg: Option<&str>) -> Result<String> {
    match arg {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the request from stdin")?;
            Ok(s)
        }
        Some(s) => Ok(s.to_string()),
        None => Ok(String::new()),
    }
}
