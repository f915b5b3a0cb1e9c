//! What the agent's integration tests (`agent/tests/integration/`), its
//! benches (`agent/benches/`) and the e2e suite (`tests/`) share. One module
//! per idea:
//!
//! - [`skip`]: `SKIPPED: <reason>`, a failure under `KATA_TESTS_STRICT=1`
//!   (`skip!`, `require_root!`, `setup!`);
//! - [`agent`]: a stand-alone `kata-agent` on a unix socket ([`TestAgent`]);
//! - [`rootfs`]: a busybox rootfs;
//! - [`spec`]: the OCI spec builder (protobuf `protocols::oci`);
//! - [`container`]: the container RPCs as one call each, and what is left
//!   after them (bundle, cgroups, mounts, fds, children);
//! - [`cgroup`]: cgroup paths, a child that waits for "go", clean-up, and
//!   re-running a test in a private mount namespace;
//! - [`rpc`]: the status of a failed RPC;
//! - [`sysfs`]: fake sysfs trees (devices, PCI buses, SCSI hosts);
//! - [`loopdev`]: an ext4 loop device standing in for a disk.

pub mod agent;
pub mod cgroup;
pub mod container;
pub mod loopdev;
pub mod rootfs;
pub mod rpc;
pub mod skip;
pub mod spec;
pub mod sysfs;

pub use agent::TestAgent;

/// Is the test running as root (CI runs as root)?
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("creating a temp dir")
}
