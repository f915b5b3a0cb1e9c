//! What `--version`, Health.Version and GetGuestDetails report.

/// Version of the agent binary.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `--version` line: `kata-agent version <v> (api version <api>, arch <arch>)`.
/// `arch` is the CPU the binary was built for, so a cross build can be checked
/// under qemu-user.
pub fn version_line() -> String {
    format!(
        "kata-agent version {AGENT_VERSION} (api version {}, arch {})",
        protocols::API_VERSION,
        std::env::consts::ARCH
    )
}
