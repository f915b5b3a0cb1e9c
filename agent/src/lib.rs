//! kata-agent: a Kata Containers compatible guest agent.
//! See ARCHITECTURE.md for the map of modules.

pub mod cgroups;
pub mod config;
pub mod container;
pub mod debug_console;
pub mod device;
pub mod error;
pub mod guest;
pub mod limits;
pub mod logging;
pub mod mount_options;
pub mod mountinfo;
pub mod network;
pub mod owned;
pub mod pid1;
pub mod pidns;
pub mod process;
pub mod reaper;
pub mod rpc;
pub mod safe_path;
pub mod sandbox;
pub mod server;
pub mod storage;
pub mod uevent;
pub mod version;
