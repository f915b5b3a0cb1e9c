//! Guest-wide operations behind the guest RPCs (rpc::guest dispatches here).

pub mod copy_file;
pub mod hooks;
pub mod hotplug;
pub mod metrics;
