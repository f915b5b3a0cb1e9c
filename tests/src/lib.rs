//! End-to-end suite: the agent inside a QEMU VM, driven over hybrid vsock
//! by `cargo xtask vm test` (which boots the VM and runs the `e2e` binary).

pub mod client;
pub mod fixture;
pub mod hotplug;
pub mod lifecycle;
pub mod pod;
pub mod report;
pub mod serial;
pub mod suite;
