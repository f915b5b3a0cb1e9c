//! Boot the guest in QEMU. One file per verb: `test` (the e2e suite against
//! the agent inside the VM over virtio-vsock) and `run` (the VM left up with
//! the serial console attached); both, and the benches, boot through
//! `start` (resources resolved once per arch, then `start::start`).
//!
//! Pieces: `assets` (kernel and rootfs, each step built once), `qemu`
//! (command lines, values only), `accel` (KVM probe, deadlines), `vsock`
//! (backend + hybrid vsock), `share` (kataShared over 9p or virtio-fs),
//! `busybox` (container rootfs), `qmp`, `cleanup` (every child and temp dir
//! goes away, also on Ctrl-C).

pub mod accel;
pub mod assets;
pub mod busybox;
pub mod cleanup;
pub mod kata;
pub mod qemu;
pub mod qmp;
mod run;
pub mod share;
pub mod start;
mod test;
mod verity;
pub mod vsock;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::agent::Profile;
use crate::arch::{Arch, ArchSelection};
use qemu::Machine;
use share::ShareKind;
pub use start::{check_qemu_alive, keep_host_logs, wait_vsock_ready, RunningVm};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Subcommand)]
enum VmCommand {
    /// Build what changed, boot, run the e2e suite, print a pass/fail table.
    Test(TestArgs),
    /// Boot and leave the VM up with the serial console attached (Ctrl-A X quits).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: ArchSelection,
    #[command(flatten)]
    opts: VmOpts,
    /// Run only the e2e tests whose names contain one of these (comma-separated), and the tests they need.
    #[arg(long)]
    only: Option<String>,
    /// Write the suite's results as JUnit XML here (`-<arch>` is added
    /// before the extension when several arches run).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write the suite's results as JSON here (named as for --junit).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// One arch: the console of one VM is attached to this terminal.
    #[arg(long, value_enum, default_value = "x86_64")]
    arch: Arch,
    #[command(flatten)]
    opts: VmOpts,
}

/// Options shared by `vm test`, `vm run` and `bench vm`.
#[derive(clap::Args, Clone, Debug)]
pub struct VmOpts {
    /// Root filesystem from the disk image or the initrd.
    #[arg(long, value_enum, default_value = "image")]
    pub boot: BootMode,
    /// Machine (default per arch: q35-qboot, virt, pseries, s390-ccw-virtio).
    #[arg(long, value_enum)]
    pub machine: Option<Machine>,
    /// Transport of the kataShared directory: virtio-fs, as Kata's default
    /// (Kata's agent has had no 9p storage handler since 3.29), or 9p.
    /// Default: virtio-fs, but 9p for an s390x guest on a little-endian host.
    #[arg(long, value_enum)]
    pub share: Option<ShareKind>,
    /// Guest memory in MiB (default: 512, 2048 on ppc64le).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// Use this kernel instead of building one.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Build and boot this kernel profile (default: the recipe's `kernel_profile`).
    #[arg(long, value_enum)]
    pub kernel_profile: Option<crate::kernel::Profile>,
    /// Use this ELF vmlinux for microvm (PVH entry) instead of building one.
    #[arg(long)]
    pub vmlinux: Option<PathBuf>,
    /// Use this disk image (with --boot image) or initrd (with --boot initrd)
    /// instead of building one.
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Boot a measured root (dm-verity, Kata's MEASURED_ROOTFS=yes); `vm
    /// test` then also boots a copy with one flipped byte, which must fail.
    #[arg(long)]
    pub verity: bool,
    /// Let the kernel print its boot messages (no `quiet`).
    #[arg(long)]
    pub verbose_kernel: bool,
    /// Force TCG even where KVM works.
    #[arg(long)]
    pub tcg: bool,
    /// Options for the agent on the kernel command line, Kata's `kernel_params` style.
    #[arg(long = "agent-param", default_values_t = ["agent.log=debug".to_string()])]
    pub agent_params: Vec<String>,
    /// Cargo profile of the agent: loop builds in seconds (the default of
    /// `vm test` and `vm run`), release is what `image` ships (the default
    /// of the benches); each has its own image.
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
}

impl VmOpts {
    /// The share transport for `arch`: the one given, else virtio-fs where
    /// virtiofsd on this host reads the guest's FUSE requests as the guest
    /// meant them (`share::virtio_fs_understands`), else 9p, which QEMU
    /// translates. Kata runs each guest on a host of its own arch, where
    /// virtio-fs always fits; the mismatches are TCG cross-arch artifacts.
    pub fn share_for(&self, arch: Arch) -> ShareKind {
        self.share.unwrap_or(match Arch::host() {
            Ok(host) if !share::virtio_fs_understands(arch, host) => ShareKind::NineP,
            _ => ShareKind::VirtioFs,
        })
    }

    /// `--memory`, else 512 MiB, but Kata's `default_memory` (2048 MiB) for
    /// ppc64le: the 6.12 kata-profile pseries kernel with a hot-pluggable
    /// vCPU slot (Kata's `maxcpus`) faults at boot in the page allocator
    /// under TCG with 512 MiB and 1 GiB ("Unable to handle kernel data
    /// access" at a per-cpu address lacking the linear-map base, from
    /// bpf_global_ma_init); it boots with 2 GiB, or with `nr_cpus=1`.
    pub fn memory_for(&self, arch: Arch) -> u32 {
        self.memory.unwrap_or(match arch {
            Arch::Ppc64le => 2048,
            _ => 512,
        })
    }

    /// `--profile`, or release where the caller set no default.
    pub fn agent_profile(&self) -> Profile {
        self.profile.unwrap_or(Profile::Release)
    }

    /// Reject what cannot boot before anything is built: a machine of
    /// another arch, a given file that does not exist.
    pub fn validate(&self, arches: &[Arch]) -> Result<()> {
        if let Some(m) = self.machine {
            if let Some(other) = arches.iter().find(|a| !m.supports(**a)) {
                crate::usage!(
                    "--machine {} is for {}, not {other}; {other} has {} (or leave --machine out)",
                    m.name(),
                    m.arches(),
                    Machine::choices(*other)
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        for (flag, path) in [
            ("--kernel", &self.kernel),
            ("--vmlinux", &self.vmlinux),
            ("--rootfs", &self.rootfs),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    crate::usage!("{flag} {}: no such file", p.display());
                }
            }
        }
        if self.verity && self.rootfs.is_some() {
            crate::usage!("--verity builds its own measured image: leave out --rootfs");
        }
        if self.verity && self.boot == BootMode::Initrd {
            crate::usage!("--verity measures the disk image: not with --boot initrd");
        }
        if let Some(m) = self.memory.filter(|m| *m < 64) {
            crate::usage!("--memory {m}: the guest needs at least 64 MiB");
        }
        if self.smp == 0 {
            crate::usage!("--smp 0: a guest needs at least one vCPU");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BootMode {
    /// The disk image (root=/dev/vda1).
    Image,
    /// The initrd (rootfs in RAM).
    Initrd,
}

pub fn run(mut args: Args) -> Result<()> {
    let (arches, opts) = match &mut args.command {
        VmCommand::Test(t) => (t.arch.arches(), &mut t.opts),
        VmCommand::Run(r) => (vec![r.arch], &mut r.opts),
    };
    // The edit-to-verdict loop: a changed agent line relinks in seconds.
    opts.profile.get_or_insert(Profile::Loop);
    opts.validate(&arches)?;
    // QEMU (and virtiofsd's build dependencies), pinned.
    crate::setup::ensure_host_packages(&["vm"], &arches)?;
    match args.command {
        VmCommand::Test(t) => test::run(t),
        VmCommand::Run(r) => run::run(r),
    }
}

/// Build the e2e runner (crate `e2e`) and return its path.
pub fn e2e_binary() -> Result<PathBuf> {
    crate::cmd::cargo_build_bin("e2e", "e2e", &crate::paths::host_log("vm", "e2e-build"))
}

/// The e2e binary's arguments that say where the VM's agent is and what the
/// host shares with it (its `GuestArgs`), after the subcommand.
pub fn guest_args(cmd: &mut Command, vm: &RunningVm, share: ShareKind, busybox: &Path) {
    cmd.arg("--socket")
        .arg(&vm.vsock_uds)
        .arg("--port")
        .arg(vsock::AGENT_PORT.to_string())
        .arg("--shared-dir")
        .arg(&vm.shared_dir)
        .arg("--share")
        .arg(share.name())
        .arg("--busybox")
        .arg(busybox);
}

fn serial_log_path(arch: Arch, label: &str) -> Result<PathBuf> {
    let dir = crate::paths::work_dir("vm", arch);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(format!("{label}-serial.log")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        vm: VmCommand,
    }

    fn usage_error(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(std::iter::once("vm").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
            .unwrap();
        let (arches, opts) = match &cli.vm {
            VmCommand::Test(t) => (t.arch.arches(), &t.opts),
            VmCommand::Run(r) => (vec![r.arch], &r.opts),
        };
        let err = opts.validate(&arches).unwrap_err();
        assert!(err.is::<crate::Usage>(), "{err:#}");
        err.to_string()
    }

    /// virtio-fs by default (Kata's), 9p for s390x on this little-endian
    /// host (its virtio-fs share came up empty: 6 of 25 e2e tests failed on
    /// "rootfs ... is not a directory", all passed on 9p); a given --share wins.
    /// The VmOpts of `vm <args>`.
    fn opts(args: &[&str]) -> VmOpts {
        match Cli::try_parse_from(std::iter::once("vm").chain(args.iter().copied()))
            .unwrap()
            .vm
        {
            VmCommand::Test(t) => t.opts,
            VmCommand::Run(r) => r.opts,
        }
    }

    #[test]
    fn the_share_defaults_to_virtio_fs_where_virtiofsd_reads_the_guest_as_meant() {
        // The rule, per host: same-arch always fits (Kata's case).
        for a in [Arch::X86_64, Arch::Aarch64, Arch::Ppc64le, Arch::S390x] {
            assert!(share::virtio_fs_understands(a, a), "{a}");
        }
        // On an x86_64 host: aarch64 fits (CI runs it on virtio-fs); s390x
        // (byte order) and ppc64le (O_LARGEFILE is O_DIRECTORY) do not.
        assert!(share::virtio_fs_understands(Arch::Aarch64, Arch::X86_64));
        assert!(!share::virtio_fs_understands(Arch::S390x, Arch::X86_64));
        assert!(!share::virtio_fs_understands(Arch::Ppc64le, Arch::X86_64));
        let default = opts(&["test", "--arch", "all"]);
        if Arch::host().unwrap() == Arch::X86_64 {
            assert_eq!(default.share_for(Arch::X86_64), ShareKind::VirtioFs);
            assert_eq!(default.share_for(Arch::Aarch64), ShareKind::VirtioFs);
            assert_eq!(default.share_for(Arch::S390x), ShareKind::NineP);
            assert_eq!(default.share_for(Arch::Ppc64le), ShareKind::NineP);
        }
        let given = opts(&["test", "--arch", "s390x", "--share", "virtio-fs"]);
        assert_eq!(given.share_for(Arch::S390x), ShareKind::VirtioFs);
    }

    #[test]
    fn ppc64le_guests_get_katas_default_memory_and_a_given_size_wins() {
        let default = opts(&["test", "--arch", "all"]);
        assert_eq!(default.memory_for(Arch::Ppc64le), 2048);
        assert_eq!(default.memory_for(Arch::X86_64), 512);
        let given = opts(&["test", "--arch", "ppc64le", "--memory", "768"]);
        assert_eq!(given.memory_for(Arch::Ppc64le), 768);
    }

    #[test]
    fn a_machine_of_another_arch_is_rejected_with_the_valid_ones() {
        let err = usage_error(&["test", "--arch", "aarch64", "--machine", "microvm"]);
        assert_eq!(
            err,
            "--machine microvm is for x86_64, not aarch64; aarch64 has virt, kata (or leave --machine out)"
        );
    }

    #[test]
    fn verity_needs_a_built_disk_image() {
        let err = usage_error(&["test", "--verity", "--boot", "initrd"]);
        assert_eq!(
            err,
            "--verity measures the disk image: not with --boot initrd"
        );
        let err = usage_error(&["run", "--verity", "--rootfs", "/etc/hostname"]);
        assert_eq!(
            err,
            "--verity builds its own measured image: leave out --rootfs"
        );
    }

    #[test]
    fn a_missing_kernel_file_is_rejected() {
        let err = usage_error(&["run", "--kernel", "/no/such/bzImage"]);
        assert_eq!(err, "--kernel /no/such/bzImage: no such file");
    }

    #[test]
    fn values_are_listed_when_wrong() {
        for (args, listed) in [
            (
                vec!["run", "--arch", "all"],
                "x86_64, aarch64, ppc64le, s390x",
            ),
            (
                vec!["test", "--arch", "mips"],
                "x86_64, aarch64, ppc64le, s390x, all",
            ),
            (vec!["test", "--share", "nfs"], "9p, virtio-fs"),
            (vec!["test", "--boot", "floppy"], "image, initrd"),
            (
                vec!["test", "--machine", "pc"],
                "q35, q35-qboot, microvm, virt",
            ),
        ] {
            let err = Cli::try_parse_from(std::iter::once("vm").chain(args.iter().copied()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(listed), "{args:?}: {err}");
        }
    }
}
