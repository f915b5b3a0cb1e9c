//! QEMU command lines per architecture, built from values alone (no probing,
//! no processes: see `accel` for that): machine and firmware choice, devices
//! on the machine's transport, and the guest kernel command line with the
//! agent's options the way Kata's `kernel_params` carry them.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Result};

use super::accel::Accel;
use crate::arch::Arch;
use crate::image::verity::Verity;

use super::kata::{self, RootDevice};

/// Machine (and firmware) choices; which ones exist depends on the arch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// x86_64 q35 with SeaBIOS (QEMU's default firmware).
    Q35,
    /// x86_64 q35 with qboot, a minimal firmware that only loads the kernel.
    Q35Qboot,
    /// x86_64 microvm: no PCI, no firmware, PVH entry of an ELF vmlinux.
    Microvm,
    /// aarch64 virt.
    Virt,
    /// ppc64le pseries.
    Pseries,
    /// s390x s390-ccw-virtio.
    S390,
    /// The command line Kata's runtime builds for its default configuration
    /// (q35 on x86_64, virt with UEFI on aarch64), see `kata`.
    Kata(RootDevice),
}

const QBOOT: &str = "/usr/share/qemu/qboot.rom";

impl Machine {
    pub const ALL: [Machine; 8] = [
        Machine::Q35,
        Machine::Q35Qboot,
        Machine::Microvm,
        Machine::Virt,
        Machine::Pseries,
        Machine::S390,
        Machine::Kata(RootDevice::Nvdimm),
        Machine::Kata(RootDevice::VirtioBlk),
    ];

    /// The arches this machine exists for, for messages ("x86_64, aarch64").
    pub fn arches(self) -> String {
        Arch::ALL
            .into_iter()
            .filter(|a| self.supports(*a))
            .map(Arch::name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn default_for(arch: Arch) -> Machine {
        match arch {
            Arch::X86_64 => Machine::Q35Qboot,
            Arch::Aarch64 => Machine::Virt,
            Arch::Ppc64le => Machine::Pseries,
            Arch::S390x => Machine::S390,
        }
    }

    /// The choices worth measuring for an arch.
    pub fn choices(arch: Arch) -> Vec<Machine> {
        match arch {
            Arch::X86_64 => vec![
                Machine::Q35,
                Machine::Q35Qboot,
                Machine::Microvm,
                Machine::Kata(RootDevice::Nvdimm),
            ],
            Arch::Aarch64 => vec![Machine::Virt, Machine::Kata(RootDevice::Nvdimm)],
            _ => vec![Machine::default_for(arch)],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Q35Qboot => "q35-qboot",
            Machine::Microvm => "microvm",
            Machine::Virt => "virt",
            Machine::Pseries => "pseries",
            Machine::S390 => "s390-ccw-virtio",
            Machine::Kata(RootDevice::Nvdimm) => "kata",
            Machine::Kata(RootDevice::VirtioBlk) => "kata-virtio-blk",
        }
    }

    /// Whether this machine exists for `arch`.
    pub fn supports(self, arch: Arch) -> bool {
        match self {
            Machine::Q35 | Machine::Q35Qboot | Machine::Microvm => arch == Arch::X86_64,
            Machine::Virt => arch == Arch::Aarch64,
            Machine::Pseries => arch == Arch::Ppc64le,
            Machine::S390 => arch == Arch::S390x,
            Machine::Kata(_) => matches!(arch, Arch::X86_64 | Arch::Aarch64),
        }
    }

    /// Does the guest see a vCPU hot-added through QMP? Not on x86_64 q35
    /// under TCG (the kernel finds no hot-pluggable slot: "Allowing 1
    /// present CPUs plus 0 hotplug CPUs"), nor on aarch64 virt (QEMU 10
    /// has no vCPU hot-plug there); pseries and s390x have it.
    pub fn cpu_hotplug(self) -> bool {
        matches!(self, Machine::Pseries | Machine::S390)
    }

    /// Does the guest see a pc-dimm hot-added through QMP (ACPI memory
    /// hot-plug)? q35, and Kata's machine on x86_64 (its q35 has
    /// `slots=10`); aarch64 virt boots without firmware here, so without
    /// ACPI, and microvm has no ACPI hot-plug.
    pub fn dimm_hotplug(self, arch: Arch) -> bool {
        match self {
            Machine::Q35 | Machine::Q35Qboot => true,
            Machine::Kata(_) => arch == Arch::X86_64,
            _ => false,
        }
    }

    /// Device suffix for virtio devices on this machine's bus.
    pub fn transport(self) -> &'static str {
        match self {
            Machine::Microvm => "device",
            Machine::S390 => "ccw",
            _ => "pci",
        }
    }

    /// The vhost-user vsock device. On s390x it is the only device not on
    /// channel I/O: QEMU has no vhost-user-vsock-ccw (10.0 has only
    /// vhost-vsock-ccw, for the kernel's vhost-vsock, which this host lacks),
    /// so it goes on zPCI, which s390-ccw-virtio offers when the CPU model
    /// has the zpci facility (TCG's `max` does).
    pub fn vsock_device(self) -> String {
        match self {
            Machine::S390 => "vhost-user-vsock-pci".into(),
            _ => format!("vhost-user-vsock-{}", self.transport()),
        }
    }

    /// microvm boots the uncompressed ELF vmlinux through PVH, and so does
    /// Kata on x86_64 (its vmlinux.container); others a bzImage/Image.
    pub fn wants_vmlinux(self, arch: Arch) -> bool {
        match self {
            Machine::Microvm => true,
            Machine::Kata(_) => arch == Arch::X86_64,
            _ => false,
        }
    }

    /// Where the e2e suite hot-plugs disks, as Kata's runtime has them on
    /// this machine's arch (the kata machine has its own, from Kata's
    /// command line; microvm has no PCI): the virtio-scsi controller scsi0
    /// (qemu_arch_base.go appendSCSIController, on the channel subsystem in
    /// qemu_s390x.go), and on q35 and virt a PCIe root port on pcie.0 for a
    /// virtio-blk (Kata's pcie_root_port). s390x needs no port: a
    /// virtio-blk-ccw goes on the channel subsystem itself; pseries takes
    /// no hot-plugged PCI device (see the e2e suite's `hotplug`).
    fn hotplug_devices(self) -> &'static [&'static str] {
        match self {
            Machine::Q35 | Machine::Q35Qboot | Machine::Virt => &[
                "pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1",
                "virtio-scsi-pci,id=scsi0",
            ],
            Machine::Pseries => &["virtio-scsi-pci,id=scsi0"],
            Machine::S390 => &["virtio-scsi-ccw,id=scsi0"],
            Machine::Microvm | Machine::Kata(_) => &[],
        }
    }

    fn machine_arg(self, accel: Accel) -> String {
        let a = accel.name();
        match self {
            // (The kata machine's whole command line comes from `kata`.)
            Machine::Q35 | Machine::Q35Qboot | Machine::Kata(_) => {
                format!("q35,accel={a},memory-backend=mem,vmport=off,smm=off")
            }
            // No legacy PIT/PIC/RTC: the kernel enters through PVH and uses
            // the virtio-mmio devices.
            Machine::Microvm => format!(
                "microvm,accel={a},memory-backend=mem,pit=off,pic=off,rtc=off,isa-serial=on"
            ),
            Machine::Virt => format!("virt,accel={a},memory-backend=mem"),
            // x-vof: QEMU's Virtual Open Firmware instead of SLOF. It only
            // hands the device tree to the -kernel ELF, where SLOF probes
            // every device first (seconds under TCG). TCG implements none of
            // the Spectre mitigations the pseries defaults ask for: say
            // "broken" rather than get a warning per cap.
            Machine::Pseries => {
                let mut m = format!("pseries,accel={a},memory-backend=mem,x-vof=on");
                if accel == Accel::Tcg {
                    m.push_str(
                        ",cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off",
                    );
                }
                m
            }
            Machine::S390 => format!("s390-ccw-virtio,accel={a},memory-backend=mem"),
        }
    }
}

/// `--machine` lists its values in `--help` and rejects others with them.
impl clap::ValueEnum for Machine {
    fn value_variants<'a>() -> &'a [Self] {
        &Machine::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let v = clap::builder::PossibleValue::new(self.name()).help(self.arches());
        Some(match self {
            Machine::Q35 => v.alias("q35-seabios"),
            Machine::Q35Qboot => v.alias("qboot"),
            _ => v,
        })
    }
}

impl FromStr for Machine {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Machine> {
        Ok(match s {
            "q35" | "q35-seabios" => Machine::Q35,
            "q35-qboot" | "qboot" => Machine::Q35Qboot,
            "microvm" => Machine::Microvm,
            "virt" => Machine::Virt,
            "pseries" => Machine::Pseries,
            "s390-ccw-virtio" => Machine::S390,
            "kata" => Machine::Kata(RootDevice::Nvdimm),
            "kata-virtio-blk" => Machine::Kata(RootDevice::VirtioBlk),
            other => bail!(
                "unknown machine {other:?} (q35, q35-qboot, microvm, virt, pseries, \
                 s390-ccw-virtio, kata, kata-virtio-blk)"
            ),
        })
    }
}

/// Serial console per arch (Kata's choice of console device).
pub fn console_device(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
        Arch::Ppc64le => "hvc0",
        Arch::S390x => "ttysclp0",
    }
}

/// How the guest gets its root filesystem.
#[derive(Clone, Debug)]
pub enum Boot {
    /// Disk image, rootfs on partition 1 (`root=/dev/vda1`).
    Image(PathBuf),
    /// initramfs; the kernel runs its /init.
    Initrd(PathBuf),
}

/// Where the serial console goes.
#[derive(Clone, Debug)]
pub enum Console {
    /// To a log file only (tests).
    File(PathBuf),
    /// To the terminal, interactive, and copied to a log (`vm run`).
    Stdio { log: PathBuf },
}

pub struct VmConfig {
    pub arch: Arch,
    pub machine: Machine,
    pub accel: Accel,
    pub memory_mib: u32,
    pub smp: u32,
    pub kernel: PathBuf,
    pub boot: Boot,
    pub vhost_vsock_socket: PathBuf,
    /// QMP control socket (to see when the guest has started the vsock device).
    pub qmp_socket: PathBuf,
    /// Extra device arguments (the share) with `{transport}` placeholders.
    pub share_args: Vec<String>,
    pub console: Console,
    pub quiet: bool,
    /// `agent.*` options, e.g. `agent.log=debug`.
    pub agent_params: Vec<String>,
    /// Host TSC frequency, for microvm (see vm.md: TSC calibration hangs).
    pub tsc_khz: Option<u64>,
    /// The image's measured root: the kernel sets up dm-verity over
    /// partition 1 against partition 2 and mounts that.
    pub verity: Option<Verity>,
}

/// `root=<data_dev>`, or for a measured root the verity target over
/// `data_dev` and `hash_dev` with `root=/dev/dm-0` (Kata's parameters).
pub fn root_params(cfg: &VmConfig, data_dev: &str, hash_dev: &str) -> Vec<String> {
    match &cfg.verity {
        Some(v) => v.kernel_params(data_dev, hash_dev).to_vec(),
        None => vec![format!("root={data_dev}")],
    }
}

/// The guest kernel command line.
pub fn kernel_cmdline(cfg: &VmConfig) -> String {
    if let Machine::Kata(root) = cfg.machine {
        return kata::kernel_cmdline(cfg, root);
    }
    let mut p: Vec<String> = vec![format!("console={}", console_device(cfg.arch))];
    // Exit QEMU on a panic (with -no-reboot) instead of hanging a test.
    p.push("panic=1".into());
    if let Boot::Image(_) = cfg.boot {
        p.extend(root_params(cfg, "/dev/vda1", "/dev/vda2"));
        p.extend(["ro", "rootwait"].map(String::from));
    }
    // No crypto self-tests outside FIPS mode (`fips=1` runs them still), as
    // Kata's x86_64 and ppc64le kernelParams: CRYPTO_FIPS (Kata's
    // crypto.conf) keeps them built in, and on aarch64 virt under TCG they
    // took 64 ms of crypto_algapi_init.
    p.push("cryptomgr.notests".into());
    if cfg.arch == Arch::X86_64 {
        // Skip probes that only cost time in a VM, and Kata's TSC and RCU
        // choices (its qemu_amd64.go kernelParams): a reliable TSC needs no
        // watchdog nor the refined calibration that switched clocksource
        // while the agent started, and expedited grace periods stay on
        // after the boot.
        p.extend(
            [
                "tsc=reliable",
                "no_timer_check",
                "rcupdate.rcu_expedited=1",
                "noreplace-smp",
                "reboot=k",
                "i8042.noaux",
                "i8042.nomux",
                "i8042.nopnp",
                "i8042.dumbkbd",
            ]
            .map(String::from),
        );
        if cfg.machine != Machine::Microvm {
            p.push("pci=lastbus=0".into());
        }
        if cfg.machine.dimm_hotplug(cfg.arch) {
            // The DIMM room ends above 4 GiB, so the kernel reserves 64 MiB
            // of bounce buffers for 32-bit DMA (pci_swiotlb_detect) and
            // zeroes them at boot: 190 ms of a q35-qboot boot under TCG. No
            // device of these machines bounces (virtio without
            // ACCESS_PLATFORM uses no DMA API); 512 slabs (1 MiB) keep the
            // pool for one that would.
            p.push("swiotlb=512".into());
        }
        let has_hpet = matches!(cfg.machine, Machine::Q35 | Machine::Q35Qboot);
        if cfg.accel == Accel::Tcg && cfg.smp == 1 && has_hpet {
            // TCG has no TSC-deadline timer, so the kernel calibrates the
            // local APIC timer against the PIT for 100 ms of jiffies (129 ms
            // of a q35-qboot boot). One vCPU needs no per-CPU timer: q35's
            // HPET ticks instead, and the calibration is skipped. (KVM has
            // TSC-deadline and never calibrates; with more vCPUs the APIC
            // timers stay, as the HPET would have to broadcast; microvm,
            // without PIT, keeps its APIC timer.)
            p.push("noapictimer".into());
        }
    }
    if !cfg.machine.hotplug_devices().is_empty() {
        // With the virtio-scsi controller, as Kata (katautils/config.go, on
        // every arch): no SCSI scan at boot, the agent scans for the disks
        // it is asked for (the scan of the empty bus took 66 ms of an
        // aarch64 virt boot under TCG).
        p.push("scsi_mod.scan=none".into());
    }
    if let (Machine::Microvm, Some(khz)) = (cfg.machine, cfg.tsc_khz) {
        p.push(format!("tsc_early_khz={khz}"));
    }
    if cfg.quiet {
        p.push("quiet".into());
    }
    p.extend(cfg.accel.kernel_params().iter().map(|s| s.to_string()));
    p.extend(cfg.agent_params.iter().cloned());
    p.join(" ")
}

/// The full QEMU argument list (without the binary).
pub fn args(cfg: &VmConfig) -> Vec<String> {
    if let Machine::Kata(root) = cfg.machine {
        return kata::args(cfg, root);
    }
    let t = cfg.machine.transport();
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-machine", &cfg.machine.machine_arg(cfg.accel)]);
    push(&["-cpu", cpu_model(cfg.arch, cfg.accel)]);
    // Debian ships no bios-microvm.bin (microvm's default firmware, which is
    // qboot): without -bios the guest never starts and says nothing.
    if matches!(cfg.machine, Machine::Q35Qboot | Machine::Microvm) {
        push(&["-bios", QBOOT]);
    }
    push(&["-smp", &smp_arg(cfg), "-m", &memory_arg(cfg)]);
    // vhost-user needs guest memory in a shared memfd, or vsock stays dead
    // with only a log line (vm.md).
    push(&[
        "-object",
        &format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            cfg.memory_mib
        ),
    ]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    push(&["-kernel", &cfg.kernel.display().to_string()]);
    push(&["-append", &kernel_cmdline(cfg)]);
    match &cfg.boot {
        Boot::Initrd(path) => push(&["-initrd", &path.display().to_string()]),
        Boot::Image(path) => {
            push(&[
                "-drive",
                &format!(
                    "file={},if=none,id=root,format=raw,readonly=on",
                    path.display()
                ),
                "-device",
                &format!("virtio-blk-{t},drive=root"),
            ]);
        }
    }
    push(&[
        "-chardev",
        &format!("socket,id=vsock,path={}", cfg.vhost_vsock_socket.display()),
        "-device",
        &format!("{},chardev=vsock,id=vsock0", cfg.machine.vsock_device()),
    ]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", cfg.qmp_socket.display()),
    ]);
    for device in cfg.machine.hotplug_devices() {
        push(&["-device", device]);
    }
    for arg in &cfg.share_args {
        a.push(arg.replace("{transport}", t));
    }
    a.extend(console_args(&cfg.console));
    a
}

/// `-smp`: one more possible vCPU where the guest can take a hot-added one.
fn smp_arg(cfg: &VmConfig) -> String {
    if cfg.machine.cpu_hotplug() {
        format!("{},maxcpus={}", cfg.smp, cfg.smp + 1)
    } else {
        cfg.smp.to_string()
    }
}

/// `-m`: with DIMM slots and room above the boot memory where the machine
/// takes a pc-dimm (Kata: `-m <size>,slots=10,maxmem=<host+...>`).
fn memory_arg(cfg: &VmConfig) -> String {
    if cfg.machine.dimm_hotplug(cfg.arch) {
        format!(
            "{}M,slots={DIMM_SLOTS},maxmem={}M",
            cfg.memory_mib,
            cfg.memory_mib + DIMM_ROOM_MIB
        )
    } else {
        format!("{}M", cfg.memory_mib)
    }
}

const DIMM_SLOTS: u32 = 2;
const DIMM_ROOM_MIB: u32 = 1024;

fn cpu_model(arch: Arch, accel: Accel) -> &'static str {
    match (arch, accel) {
        (_, Accel::Kvm) => "host",
        // pauth-impdef: QEMU's own pointer-auth algorithm, much cheaper under
        // TCG than the architected QARMA5.
        (Arch::Aarch64, Accel::Tcg) => "max,pauth-impdef=on",
        (Arch::Ppc64le, Accel::Tcg) => "POWER9",
        (Arch::S390x, Accel::Tcg) => "max",
        (Arch::X86_64, Accel::Tcg) => "max",
    }
}

fn console_args(console: &Console) -> Vec<String> {
    let chardev = match console {
        Console::File(log) => format!("file,id=con,path={}", log.display()),
        // signal=off: Ctrl-C goes to the guest; Ctrl-A X quits QEMU.
        Console::Stdio { log } => {
            format!("stdio,id=con,mux=on,signal=off,logfile={}", log.display())
        }
    };
    let mut a = vec![
        "-chardev".to_string(),
        chardev,
        "-serial".into(),
        "chardev:con".into(),
    ];
    if matches!(console, Console::Stdio { .. }) {
        a.extend(["-mon".to_string(), "chardev=con,mode=readline".into()]);
    } else {
        a.extend(["-monitor".to_string(), "none".into()]);
    }
    a
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A VmConfig with test paths (also for the kata machine's tests).
    pub(in crate::vm) fn cfg(arch: Arch, machine: Machine, boot: Boot) -> VmConfig {
        VmConfig {
            arch,
            machine,
            accel: Accel::Tcg,
            memory_mib: 512,
            smp: 1,
            kernel: PathBuf::from("/k"),
            boot,
            vhost_vsock_socket: PathBuf::from("/d/vhost.sock"),
            qmp_socket: PathBuf::from("/d/qmp.sock"),
            share_args: vec!["-device".into(), "virtio-9p-{transport},x".into()],
            console: Console::File(PathBuf::from("/d/serial.log")),
            quiet: true,
            agent_params: vec!["agent.log=debug".into()],
            tsc_khz: Some(2_000_000),
            verity: None,
        }
    }

    /// A measured root's parameters (values of no real image).
    pub(in crate::vm) fn verity() -> Verity {
        Verity {
            root_hash: "r00t".into(),
            salt: "5a17".into(),
            data_blocks: 3000,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_algorithm: "sha256".into(),
        }
    }

    #[test]
    fn a_measured_root_is_the_verity_target_over_vda1_and_vda2() {
        let mut c = cfg(
            Arch::X86_64,
            Machine::Q35Qboot,
            Boot::Image("/a/img".into()),
        );
        c.verity = Some(verity());
        let line = kernel_cmdline(&c);
        assert!(
            line.starts_with(
                "console=ttyS0 panic=1 dm-mod.create=\"dm-verity,,,ro,0 24000 verity 1 \
                 /dev/vda1 /dev/vda2 4096 4096 3000 0 sha256 r00t 5a17\" root=/dev/dm-0 ro rootwait "
            ),
            "{line}"
        );
        assert!(!line.contains("root=/dev/vda1"));
    }

    #[test]
    fn x86_image_boot_command_line() {
        let c = cfg(
            Arch::X86_64,
            Machine::Q35Qboot,
            Boot::Image("/a/kata-containers.img".into()),
        );
        let line = kernel_cmdline(&c);
        assert!(line.starts_with("console=ttyS0 panic=1 root=/dev/vda1 ro"));
        // Under TCG pages are zeroed when allocated (accel.rs: virtio-fs code).
        assert!(line.ends_with("quiet init_on_alloc=1 agent.log=debug"));
        let kvm = VmConfig {
            accel: Accel::Kvm,
            ..cfg(Arch::X86_64, Machine::Q35Qboot, Boot::Initrd("/i".into()))
        };
        assert!(!kernel_cmdline(&kvm).contains("init_on_alloc"));
        assert!(!kernel_cmdline(&kvm).contains("noapictimer"));
        assert!(!line.contains("tsc_early_khz"));
        let a = args(&c).join(" ");
        assert!(a.contains("-bios /usr/share/qemu/qboot.rom"));
        assert!(a.contains("memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(a.contains("-smp 1 -m 512M,slots=2,maxmem=1536M"));
        assert!(a.contains("-device vhost-user-vsock-pci,chardev=vsock,id=vsock0"));
        assert!(a.contains("-qmp unix:/d/qmp.sock,server=on,wait=off"));
        assert!(a.contains("file=/a/kata-containers.img,if=none,id=root,format=raw,readonly=on"));
        assert!(a.contains("virtio-9p-pci,x"));
        assert!(a.contains("-serial chardev:con -monitor none"));
        assert!(a.contains("-device pcie-root-port,id=rp0,bus=pcie.0"));
        assert!(a.contains("-device virtio-scsi-pci,id=scsi0"));
        assert!(line.contains("scsi_mod.scan=none"));
        // Kata's TSC and RCU choices, and a small bounce-buffer pool.
        assert!(line.contains(" tsc=reliable no_timer_check rcupdate.rcu_expedited=1 "));
        assert!(line.contains(" swiotlb=512 "));
        // One vCPU under TCG: the HPET ticks, no APIC timer calibration.
        assert!(line.contains(" noapictimer "));
        let two = VmConfig {
            smp: 2,
            ..cfg(Arch::X86_64, Machine::Q35Qboot, Boot::Initrd("/i".into()))
        };
        assert!(!kernel_cmdline(&two).contains("noapictimer"));
    }

    #[test]
    fn microvm_uses_mmio_and_tsc_khz() {
        let c = cfg(Arch::X86_64, Machine::Microvm, Boot::Initrd("/i".into()));
        let line = kernel_cmdline(&c);
        assert!(line.contains("tsc=reliable"));
        assert!(line.contains("tsc_early_khz=2000000"));
        // No DIMM room, so no bounce buffers to shrink; no HPET to tick.
        assert!(!line.contains("swiotlb"));
        assert!(!line.contains("noapictimer"));
        assert!(!line.contains("root="));
        let a = args(&c).join(" ");
        assert!(a.contains("vhost-user-vsock-device"));
        assert!(a.contains("-initrd /i"));
        assert!(a.contains("virtio-9p-device,x"));
        assert!(Machine::Microvm.wants_vmlinux(Arch::X86_64));
    }

    #[test]
    fn consoles_per_arch() {
        let c = cfg(Arch::Aarch64, Machine::Virt, Boot::Initrd("/i".into()));
        assert!(kernel_cmdline(&c).starts_with("console=ttyAMA0"));
        // virt has the virtio-scsi controller too: no scan at boot, as Kata.
        assert!(kernel_cmdline(&c).contains("scsi_mod.scan=none"));
        // No crypto self-tests outside FIPS mode, on every machine of ours
        // (Kata's x86_64 and ppc64le kernelParams send it too).
        for (arch, machine) in [
            (Arch::Aarch64, Machine::Virt),
            (Arch::X86_64, Machine::Q35Qboot),
            (Arch::X86_64, Machine::Microvm),
        ] {
            let line = kernel_cmdline(&cfg(arch, machine, Boot::Initrd("/i".into())));
            assert_eq!(line.matches("cryptomgr.notests").count(), 1, "{line}");
        }
        // An x86 option the arm64 kernel does not know would reach the
        // agent (init) as an argument.
        assert!(!kernel_cmdline(&c).contains("noapictimer"));
        assert!(args(&c).join(" ").contains("max,pauth-impdef=on"));
        assert_eq!(console_device(Arch::Ppc64le), "hvc0");
        assert_eq!(console_device(Arch::S390x), "ttysclp0");
        assert_eq!(Machine::S390.transport(), "ccw");
        assert!("pc".parse::<Machine>().is_err());
    }

    #[test]
    fn pseries_uses_vof_hvc0_and_pci() {
        let c = cfg(
            Arch::Ppc64le,
            Machine::Pseries,
            Boot::Image("/a/kata-containers.img".into()),
        );
        assert!(kernel_cmdline(&c).starts_with("console=hvc0 panic=1 root=/dev/vda1"));
        let a = args(&c).join(" ");
        assert!(
            a.contains("-machine pseries,accel=tcg,memory-backend=mem,x-vof=on,cap-cfpc=broken")
        );
        assert!(a.contains("-cpu POWER9"));
        assert!(a.contains("virtio-blk-pci,drive=root"));
        assert!(a.contains("-device vhost-user-vsock-pci,chardev=vsock,id=vsock0"));
        assert!(a.contains("virtio-9p-pci,x"));
        // Only SCSI disks are hot-plugged there.
        assert!(a.contains("-device virtio-scsi-pci,id=scsi0"));
        assert!(!a.contains("rp0") && !a.contains("bridge"));
        assert!(kernel_cmdline(&c).contains(" scsi_mod.scan=none"));
        // The TCG-only caps would turn off mitigations a POWER host has under KVM.
        let kvm = Machine::Pseries.machine_arg(Accel::Kvm);
        assert_eq!(kvm, "pseries,accel=kvm,memory-backend=mem,x-vof=on");
    }

    #[test]
    fn s390x_puts_only_vsock_on_zpci() {
        let c = cfg(
            Arch::S390x,
            Machine::S390,
            Boot::Image("/a/kata-containers.img".into()),
        );
        assert!(kernel_cmdline(&c).starts_with("console=ttysclp0 "));
        let a = args(&c).join(" ");
        assert!(a.contains("-device vhost-user-vsock-pci,chardev=vsock,id=vsock0"));
        assert!(!a.contains("vsock-ccw"));
        assert!(a.contains("virtio-blk-ccw,drive=root"));
        assert!(a.contains("virtio-9p-ccw,x"));
        assert!(a.contains("-cpu max"));
        // A scsi-hd goes on the controller, a virtio-blk-ccw on the
        // channel subsystem itself.
        assert!(a.contains("-device virtio-scsi-ccw,id=scsi0"));
        assert!(!a.contains("pci-bridge") && !a.contains("rp0"));
        assert!(kernel_cmdline(&c).contains(" scsi_mod.scan=none"));
        assert_eq!(Machine::Virt.vsock_device(), "vhost-user-vsock-pci");
        assert_eq!(Machine::Microvm.vsock_device(), "vhost-user-vsock-device");
    }
}
