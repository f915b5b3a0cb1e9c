//! `cargo xtask`: the kata-image pipeline. One module per step; each step is a
//! function of its inputs and writes its artifact under `target/artifacts/<arch>/`.
//! See ARCHITECTURE.md for the data flow.

mod agent;
mod arch;
mod bench;
mod cache;
mod cargo_lock;
mod cmd;
mod doctor;
mod epoch;
mod fetch;
mod fuzz;
mod image;
mod install;
mod kernel;
mod lock;
mod paths;
mod release;
mod report;
mod repro;
mod rootfs;
mod sbom;
mod setup;
mod sign;
mod test;
#[cfg(test)]
mod testutil;
mod ui;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Exit codes: 0 success, 1 a step failed, 2 bad usage (arguments, names,
/// recipes: rejected before any work).
const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build, test and ship kata-image guest assets",
    after_help = "Exit status: 0 success, 1 a step failed, 2 bad usage \
                  (rejected before any download, install or build)."
)]
struct Cli {
    /// Only warnings and errors (no progress, no phase lines).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Also show every command line and log path.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Coloring: auto, always, never (default: CARGO_TERM_COLOR, else auto).
    #[arg(long, global = true, value_enum, value_name = "WHEN")]
    color: Option<ui::ColorChoice>,
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
    /// Coverage-guided fuzzing of what the agent reads from the wire (`fuzz --list`, `fuzz --target T --time 10m`).
    Fuzz(fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ui::init(cli.quiet, cli.verbose, cli.color);
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} {e:#}", ui::styled("error:", 31));
            if e.chain().any(|c| c.is::<Usage>()) {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// A usage error found by our own validation (after clap's): exit code 2.
/// Its message names the thing, the valid values and what to do.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Return a [`Usage`] error.
#[macro_export]
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::Usage(format!($($arg)*))))
    };
}

fn dispatch(command: Command) -> Result<()> {
    match command {
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
        Command::Fuzz(args) => fuzz::run(args),
    }
}
