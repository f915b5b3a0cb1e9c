//! `cargo xtask`: the kata-image pipeline. One module per step; each step is a
//! function of its inputs and writes its artifact under `target/artifacts/<arch>/`.
//! See ARCHITECTURE.md for the data flow.

mod agent;
mod arch;
mod bench;
mod cache;
mod cargo_lock;
mod doctor;
mod fetch;
mod image;
mod install;
mod kernel;
mod paths;
mod release;
mod repro;
mod rootfs;
mod sbom;
mod setup;
mod sign;
mod test;
#[cfg(test)]
mod testutil;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, test and ship kata-image guest assets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the pinned host packages (all groups, or those given).
    Setup(setup::Args),
    /// Show which build routes and tools are available and what is missing.
    Doctor(doctor::Args),
    /// Cross-compile the agent: target/artifacts/<arch>/kata-agent.
    Agent(agent::Args),
    /// Build the guest kernel (cached by content hash).
    Kernel(kernel::Args),
    /// Assemble the guest rootfs; `rootfs lock` refreshes a package lock.
    Rootfs(rootfs::Args),
    /// Put every pinned input (.debs, kernel source, crates) into a store keyed by sha256.
    Fetch(fetch::Args),
    /// Build the disk image, initrd, manifest.json and SHA256SUMS.
    Image(image::Args),
    /// The release assets in target/dist/: per-arch tarball (Kata's layout), manifest, SBOM, SHA256SUMS, signature.
    Release(release::Args),
    /// Sign a release's SHA256SUMS with an SSH key (ssh-keygen -Y sign).
    Sign(sign::SignArgs),
    /// Check a downloaded release: the signature of SHA256SUMS and every sum.
    Verify(sign::VerifyArgs),
    /// Install one arch's assets into Kata's layout with a configuration.toml drop-in.
    Install(install::Args),
    /// Build everything twice in two directories and compare byte for byte.
    VerifyRepro(repro::Args),
    /// Boot the guest in QEMU (`vm test`, `vm run`).
    Vm(vm::Args),
    /// Benchmarks that write a table (`bench vm`: boot time, filesystems, container life cycles).
    Bench(bench::Args),
    /// The whole test suite as CI runs it (provisions what it needs).
    Test(test::Args),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup(args) => setup::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Kernel(args) => kernel::run(args),
        Command::Rootfs(args) => rootfs::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Image(args) => image::run(args),
        Command::Release(args) => release::run(args),
        Command::Sign(args) => sign::run_sign(args),
        Command::Verify(args) => sign::run_verify(args),
        Command::Install(args) => install::run(args),
        Command::VerifyRepro(args) => repro::run(args),
        Command::Vm(args) => vm::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Test(args) => test::run(args),
    }
}
