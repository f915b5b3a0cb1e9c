//! Guest-wide operations behind the guest RPCs (rpc::guest dispatches here).

pub mod clock;
pub mod copy_file;
pub mod entropy;
pub mod hooks;
pub mod hotplug;
pub mod metrics;
pub mod volume;
