//! Client side of the kata-agent API: parse a server address, connect (also
//! through a hybrid-vsock Unix socket), and get typed ttRPC clients.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let agent = agent_ctl::connect("unix:///run/agent.sock", std::time::Duration::from_secs(5)).await?;
//! let resp = agent.health.check(agent_ctl::context(5), &Default::default()).await?;
//! # Ok(()) }
//! ```
//!
//! Without the default `client` feature only [`address`], [`hvsock`] and
//! [`qmp`] remain (plain std: what the xtask needs to reach a guest port
//! and QEMU's monitor).

pub mod address;
pub mod hvsock;
pub mod qmp;

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub mod error;
#[cfg(feature = "client")]
pub mod rpc_table;

pub use address::Address;
#[cfg(feature = "client")]
pub use client::{connect, context, dial, AgentClient};
#[cfg(feature = "client")]
pub use error::{describe, RpcResultExt};
