//! `--machine kata` / `kata-virtio-blk`: the QEMU command line Kata's Go
//! runtime builds for its default configuration-qemu.toml on this arch, so a
//! boot here is a boot under Kata (Kata 7c6ba40c:
//! src/runtime/virtcontainers/qemu.go, qemu_arch_base.go, qemu_amd64.go,
//! qemu_arm64.go, hypervisor.go GetKernelRootParams; src/runtime/pkg/govmm/qemu;
//! src/runtime/pkg/katautils/config.go and create.go for the kernel
//! parameters; the arch .mk files for KERNELPARAMS and the firmware).
//!
//! Only what this machine cannot have is substituted, and each substitution
//! is printed (`substitutions`): TCG for KVM (and the CPU model `host`),
//! vhost-user-vsock for vhost-vsock (no /dev/vhost-vsock), user networking for
//! the runtime's tap, a log file for the console socket.

use std::path::Path;

use crate::arch::Arch;

use super::accel::Accel;
use super::qemu::{Boot, Console, VmConfig};

/// Kata's `default_memory` (MiB) and `memory_slots`.
const MEMORY_MIB: u32 = 2048;
const MEMORY_SLOTS: u32 = 10;
/// The 1 GiB Kata adds to maxmem for the image's NVDIMM
/// (genericMemoryTopology in qemu.go).
const NVDIMM_OFFSET_MIB: u64 = 1024;
/// Debian's qemu-efi-aarch64 (host-packages.lock): Kata's QEMUFW for arm64.
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";

/// The kata machine's root: the image on an NVDIMM (Kata's default,
/// `disable_image_nvdimm = false`) or on virtio-blk (`= true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootDevice {
    Nvdimm,
    VirtioBlk,
}

/// Kata's KERNELPARAMS (the arch .mk files: the same on every arch), which
/// the configuration's kernel_params replace.
const KATA_KERNEL_PARAMS: &str = "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1";

/// The configuration's `kernel_params` for our assets: what `cargo xtask
/// install` writes into the drop-in, and what `--machine kata` boots with.
///
/// aarch64 adds `acpi=nospcr`: Kata boots arm64 through AAVMF, so the guest
/// sees ACPI, and QEMU virt's SPCR table names its PL011. The arm64 kernel
/// adds that UART as a preferred console in setup_arch, before the command
/// line's `console=hvc0 console=hvc1` are parsed; the preferred one is then
/// the last, hvc1, which never registers (the virtio console is one
/// `struct console`, matched as hvc0), so /dev/console stays the first
/// console that registered: ttyAMA0, which Kata's QEMU (-nodefaults) gives no
/// backend. The agent's stdout (PID 1's /dev/console, or systemd's
/// StandardOutput=tty) was lost, under Kata's own runtime too. With
/// `acpi=nospcr` (Linux 6.10+) the UART stays a tty, not a console, and hvc0
/// is /dev/console, as on x86_64. A device-tree boot ignores it.
///
/// aarch64 and s390x add `cryptomgr.notests`, which Kata's runtime sends on
/// x86_64 and ppc64le only (qemu_amd64.go, qemu_ppc64le.go kernelParams):
/// CRYPTO_FIPS (Kata's crypto.conf) builds the self-tests in, and outside
/// FIPS mode they only cost boot time (64 ms of an aarch64 boot under TCG);
/// with `fips=1` they run regardless.
pub fn kernel_params(arch: Arch) -> String {
    match arch {
        Arch::Aarch64 => format!("{KATA_KERNEL_PARAMS} acpi=nospcr cryptomgr.notests"),
        Arch::S390x => format!("{KATA_KERNEL_PARAMS} cryptomgr.notests"),
        _ => KATA_KERNEL_PARAMS.to_string(),
    }
}

/// Kata's guest memory size: `-m` and the shared RAM backend.
pub fn memory_mib() -> u32 {
    MEMORY_MIB
}

/// Kata's `default_maxvcpus = 0`: the host's CPU count.
fn max_vcpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Kata's `default_maxmemory = 0`: the host's memory, plus the NVDIMM offset.
fn max_memory_mib() -> u64 {
    let host = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(4096, |kib| kib / 1024);
    host + NVDIMM_OFFSET_MIB
}

/// Kata's guest kernel command line, in Kata's order: the arch's parameters,
/// the root parameters (handleImagePath), the console (appendConsole), quiet
/// or debug, panic, nr_cpus, selinux, then the runtime's defaults for an
/// image (systemd unit and masks), scsi_mod.scan for virtio-scsi, the agent's
/// (cdh_api_timeout, and ours from `--agent-param`), and KERNELPARAMS.
pub fn kernel_cmdline(cfg: &VmConfig, root: RootDevice) -> String {
    let mut p: Vec<String> = match cfg.arch {
        Arch::X86_64 => [
            "tsc=reliable",
            "no_timer_check",
            "rcupdate.rcu_expedited=1",
            "i8042.direct=1",
            "i8042.dumbkbd=1",
            "i8042.nopnp=1",
            "i8042.noaux=1",
            "noreplace-smp",
            "reboot=k",
            "cryptomgr.notests",
            "net.ifnames=0",
            "pci=lastbus=0",
        ]
        .map(String::from)
        .to_vec(),
        _ => vec!["iommu.passthrough=0".into()],
    };
    let image = matches!(cfg.boot, Boot::Image(_));
    if image {
        // DAX is off on arm64 in Kata (qemu_arm64.go: a kernel panic in
        // caches_clean_inval_pou), so its nvdimm root mounts without it;
        // a measured root never has it (kernelVerityRootFlags).
        let (dev, hash) = match root {
            RootDevice::Nvdimm => ("/dev/pmem0p1", "/dev/pmem0p2"),
            RootDevice::VirtioBlk => ("/dev/vda1", "/dev/vda2"),
        };
        let dax = root == RootDevice::Nvdimm && cfg.arch == Arch::X86_64 && cfg.verity.is_none();
        let flags = if dax {
            "dax,data=ordered,errors=remount-ro ro"
        } else {
            "data=ordered,errors=remount-ro ro"
        };
        p.extend(super::qemu::root_params(cfg, dev, hash));
        p.push(format!("rootflags={flags}"));
        p.push("rootfstype=ext4".into());
    }
    p.extend(["console=hvc0", "console=hvc1"].map(String::from));
    if cfg.quiet {
        p.push("quiet".into());
        if image {
            p.push("systemd.show_status=false".into());
        }
    } else {
        p.push("debug".into());
        if image {
            p.extend(["systemd.show_status=true", "systemd.log_level=debug"].map(String::from));
        }
    }
    p.push("panic=1".into());
    p.push(format!("nr_cpus={}", max_vcpus()));
    p.push("selinux=0".into());
    if image {
        p.extend(
            [
                "systemd.unit=kata-containers.target",
                "systemd.mask=systemd-networkd.service",
                "systemd.mask=systemd-networkd.socket",
            ]
            .map(String::from),
        );
    }
    p.push("scsi_mod.scan=none".into());
    p.push("agent.cdh_api_timeout=50".into());
    // Not Kata's: what TCG needs for code read over virtio-fs (accel.rs).
    p.extend(cfg.accel.kernel_params().iter().map(|s| s.to_string()));
    p.extend(cfg.agent_params.iter().cloned());
    p.push(kernel_params(cfg.arch));
    p.join(" ")
}

/// The full QEMU argument list (without the binary), in govmm's order.
pub fn args(cfg: &VmConfig, root: RootDevice) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let nvdimm = root == RootDevice::Nvdimm && matches!(cfg.boot, Boot::Image(_));
    let accel = cfg.accel.name();
    let machine = match cfg.arch {
        Arch::X86_64 => format!("q35,accel={accel}"),
        // gic-version=host needs KVM; TCG emulates a GICv3.
        _ => format!(
            "virt,usb=off,accel={accel},gic-version={}",
            if cfg.accel == Accel::Kvm { "host" } else { "3" }
        ),
    };
    let machine = if nvdimm {
        format!("{machine},nvdimm=on")
    } else {
        machine
    };
    push(&["-machine", &machine]);
    push(&["-cpu", &cpu_model(cfg.arch, cfg.accel)]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", cfg.qmp_socket.display()),
    ]);
    let mem = memory_mib();
    push(&[
        "-m",
        &format!("{mem}M,slots={MEMORY_SLOTS},maxmem={}M", max_memory_mib()),
    ]);
    // Bridges first, so they get the first PCI addresses (buildDevices).
    push(&[
        "-device",
        "pci-bridge,bus=pcie.0,id=pci-bridge-0,chassis_nr=1,shpc=off,addr=2,\
         io-reserve=4k,mem-reserve=1m,pref64-reserve=1m",
    ]);
    push(&[
        "-device",
        "virtio-serial-pci,disable-modern=false,id=serial0,max_ports=2",
        "-device",
        "virtconsole,chardev=charconsole0,id=console0",
    ]);
    a.extend(console_chardev(&cfg.console));
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    match &cfg.boot {
        Boot::Image(img) if nvdimm => {
            let size = std::fs::metadata(img).map_or(0, |m| m.len());
            push(&[
                "-device",
                "nvdimm,id=nv0,memdev=mem0,unarmed=on",
                "-object",
                &format!(
                    "memory-backend-file,id=mem0,mem-path={},size={size},readonly=on",
                    img.display()
                ),
            ]);
        }
        Boot::Image(img) => push(&[
            "-device",
            "virtio-blk-pci,disable-modern=false,drive=image-0,config-wce=off,share-rw=on,serial=image-0",
            "-drive",
            &format!(
                "id=image-0,file={},aio=threads,format=raw,if=none,readonly=on",
                img.display()
            ),
        ]),
        Boot::Initrd(_) => {}
    }
    push(&["-device", "virtio-scsi-pci,id=scsi0,disable-modern=false"]);
    push(&[
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
        "-device",
        "virtio-rng-pci,rng=rng0",
    ]);
    // vhost-vsock-pci in Kata; this host has no /dev/vhost-vsock.
    push(&[
        "-chardev",
        &format!("socket,id=vsock,path={}", cfg.vhost_vsock_socket.display()),
        "-device",
        "vhost-user-vsock-pci,chardev=vsock,id=vsock0",
    ]);
    for arg in &cfg.share_args {
        a.push(arg.replace("{transport}", "pci"));
    }
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    // A tap with vhost-net in Kata (the runtime's network namespace); user
    // networking without outside access here.
    push(&[
        "-netdev",
        "user,id=network-0,restrict=on",
        "-device",
        "driver=virtio-net-pci,netdev=network-0,mac=02:00:ca:fe:00:01,disable-modern=false,mq=on,vectors=4",
    ]);
    // One cold-plug root port for hot-plugged devices (pcie_root_port).
    push(&[
        "-device",
        "pcie-root-port,id=rp0,bus=pcie.0,chassis=0,slot=0,multifunction=off",
    ]);
    push(&["-rtc", "base=utc,driftfix=slew,clock=host"]);
    if cfg.arch == Arch::X86_64 && cfg.accel == Accel::Kvm {
        push(&["-global", "kvm-pit.lost_tick_policy=discard"]);
    }
    if cfg.arch == Arch::Aarch64 {
        push(&["-bios", AAVMF_CODE]);
    }
    push(&[
        "-vga",
        "none",
        "-no-user-config",
        "-nodefaults",
        "-nographic",
        "--no-reboot",
    ]);
    // Kata's RAM: file-backed on /dev/shm, shared (vhost-user devices map it).
    push(&[
        "-object",
        &format!("memory-backend-file,id=dimm1,size={mem}M,mem-path=/dev/shm,share=on"),
        "-numa",
        "node,memdev=dimm1",
    ]);
    push(&["-kernel", &cfg.kernel.display().to_string()]);
    if let Boot::Initrd(path) = &cfg.boot {
        push(&["-initrd", &path.display().to_string()]);
    }
    push(&["-append", &kernel_cmdline(cfg, root)]);
    let n = max_vcpus();
    push(&[
        "-smp",
        &format!("1,cores=1,threads=1,sockets={n},maxcpus={n}"),
    ]);
    a
}

fn cpu_model(arch: Arch, accel: Accel) -> String {
    match (arch, accel) {
        (_, Accel::Kvm) => "host,pmu=off".into(),
        // pauth-impdef: QEMU's cheap pointer-auth algorithm under TCG.
        (Arch::Aarch64, Accel::Tcg) => "max,pmu=off,pauth-impdef=on".into(),
        (_, Accel::Tcg) => "max,pmu=off".into(),
    }
}

/// The virtconsole's chardev: Kata's is a socket the runtime reads; here a
/// log file, or the terminal for `vm run`.
fn console_chardev(console: &Console) -> Vec<String> {
    match console {
        Console::File(log) => vec![
            "-chardev".into(),
            format!("file,id=charconsole0,path={}", log.display()),
        ],
        Console::Stdio { log } => vec![
            "-chardev".into(),
            format!(
                "stdio,id=charconsole0,mux=on,signal=off,logfile={}",
                log.display()
            ),
            "-mon".into(),
            "chardev=charconsole0,mode=readline".into(),
        ],
    }
}

/// What differs from Kata's command line on this machine, one line each.
pub fn substitutions(cfg: &VmConfig, kernel: &Path) -> Vec<String> {
    let mut s = Vec::new();
    if cfg.accel == Accel::Tcg {
        s.push(format!(
            "accel=tcg for accel=kvm, -cpu {} for host,pmu=off (no usable KVM here)",
            cpu_model(cfg.arch, cfg.accel)
        ));
        if cfg.arch == Arch::X86_64 {
            s.push("no -global kvm-pit.lost_tick_policy=discard (no KVM PIT under TCG)".into());
        } else {
            s.push("gic-version=3 for gic-version=host (TCG)".into());
        }
    }
    s.push(
        "vhost-user-vsock-pci (vhost-device-vsock) for vhost-vsock-pci (no /dev/vhost-vsock)"
            .into(),
    );
    s.push("-netdev user,restrict=on for the runtime's tap with vhost=on".into());
    s.push("the console chardev is a log file, not the runtime's socket".into());
    s.push(format!("kernel {}", kernel.display()));
    s
}

#[cfg(test)]
mod tests {
    use super::super::qemu::{tests, Machine};
    use super::*;

    fn cfg(arch: Arch, boot: Boot) -> VmConfig {
        tests::cfg(arch, Machine::Kata(RootDevice::Nvdimm), boot)
    }

    /// The x86_64 default: Kata's parameters in Kata's order
    /// (qemu_amd64.go kernelParams, then hypervisor.go's root, then the
    /// console, then qemu.go's panic/nr_cpus/selinux, then katautils').
    #[test]
    fn x86_nvdimm_command_line_is_katas() {
        let c = cfg(Arch::X86_64, Boot::Image("/a/kata-containers.img".into()));
        let line = kernel_cmdline(&c, RootDevice::Nvdimm);
        assert!(line.starts_with(
            "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 i8042.direct=1 \
             i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k \
             cryptomgr.notests net.ifnames=0 pci=lastbus=0 root=/dev/pmem0p1 \
             rootflags=dax,data=ordered,errors=remount-ro ro rootfstype=ext4 \
             console=hvc0 console=hvc1 quiet systemd.show_status=false panic=1 nr_cpus="
        ));
        assert!(line.ends_with(
            "selinux=0 systemd.unit=kata-containers.target \
             systemd.mask=systemd-networkd.service systemd.mask=systemd-networkd.socket \
             scsi_mod.scan=none agent.cdh_api_timeout=50 init_on_alloc=1 agent.log=debug \
             cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
        ));
        let a = args(&c, RootDevice::Nvdimm).join(" ");
        assert!(a.starts_with("-machine q35,accel=tcg,nvdimm=on -cpu max,pmu=off"));
        assert!(a.contains("-m 2048M,slots=10,maxmem="));
        assert!(a.contains("-device nvdimm,id=nv0,memdev=mem0,unarmed=on -object memory-backend-file,id=mem0,mem-path=/a/kata-containers.img,size=0,readonly=on"));
        assert!(a.contains("pci-bridge,bus=pcie.0,id=pci-bridge-0,chassis_nr=1,shpc=off,addr=2"));
        assert!(a.contains("-device virtconsole,chardev=charconsole0,id=console0"));
        assert!(a.contains("-device virtio-scsi-pci,id=scsi0"));
        assert!(a.contains("-device virtio-rng-pci,rng=rng0"));
        assert!(a.contains("mq=on,vectors=4"));
        assert!(a.contains("pcie-root-port,id=rp0"));
        assert!(a.contains("memory-backend-file,id=dimm1,size=2048M,mem-path=/dev/shm,share=on -numa node,memdev=dimm1"));
        assert!(a.contains("-device vhost-user-vsock-pci,chardev=vsock,id=vsock0"));
        assert!(a.contains("virtio-9p-pci,x"));
        assert!(!a.contains("virtio-blk"));
        assert!(!a.contains("kvm-pit"));
    }

    #[test]
    fn virtio_blk_and_initrd_roots() {
        let c = cfg(Arch::X86_64, Boot::Image("/a/img".into()));
        let line = kernel_cmdline(&c, RootDevice::VirtioBlk);
        assert!(line.contains(
            "root=/dev/vda1 rootflags=data=ordered,errors=remount-ro ro rootfstype=ext4"
        ));
        let a = args(&c, RootDevice::VirtioBlk).join(" ");
        assert!(a.starts_with("-machine q35,accel=tcg -cpu"));
        assert!(
            a.contains("-drive id=image-0,file=/a/img,aio=threads,format=raw,if=none,readonly=on")
        );
        let c = cfg(Arch::X86_64, Boot::Initrd("/a/initrd".into()));
        let line = kernel_cmdline(&c, RootDevice::Nvdimm);
        assert!(!line.contains("root=") && !line.contains("systemd.unit"));
        let a = args(&c, RootDevice::Nvdimm).join(" ");
        assert!(a.contains("-initrd /a/initrd") && !a.contains("nvdimm"));
    }

    #[test]
    fn aarch64_boots_through_aavmf_without_dax() {
        let c = cfg(Arch::Aarch64, Boot::Image("/a/img".into()));
        let line = kernel_cmdline(&c, RootDevice::Nvdimm);
        assert!(line.starts_with(
            "iommu.passthrough=0 root=/dev/pmem0p1 rootflags=data=ordered,errors=remount-ro ro"
        ));
        let a = args(&c, RootDevice::Nvdimm).join(" ");
        assert!(a.starts_with("-machine virt,usb=off,accel=tcg,gic-version=3,nvdimm=on"));
        assert!(a.contains(&format!("-bios {AAVMF_CODE}")));
    }

    /// Under AAVMF QEMU's SPCR table names the PL011, and the arm64 kernel
    /// adds it as a preferred console before `console=hvc0 console=hvc1`
    /// are parsed; the last of those (hvc1) never registers, so /dev/console
    /// stayed the first registered console, ttyAMA0 (no backend in Kata's
    /// QEMU), and the agent's output was lost. The installed kernel_params
    /// (KERNELPARAMS plus `acpi=nospcr`) keep hvc0 the console, as on x86_64.
    #[test]
    fn aarch64_console_is_the_virtconsole_not_the_spcr_uart() {
        let c = cfg(Arch::Aarch64, Boot::Image("/a/img".into()));
        let line = kernel_cmdline(&c, RootDevice::Nvdimm);
        assert!(
            line.ends_with(
                "cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 acpi=nospcr cryptomgr.notests"
            ),
            "{line}"
        );
        let x86 = kernel_cmdline(
            &cfg(Arch::X86_64, Boot::Image("/a/img".into())),
            RootDevice::Nvdimm,
        );
        assert!(!x86.contains("acpi=nospcr"), "{x86}");
    }

    /// Every arch boots without crypto self-tests outside FIPS mode: Kata's
    /// runtime sends `cryptomgr.notests` on x86_64 and ppc64le
    /// (qemu_amd64.go, qemu_ppc64le.go kernelParams), our kernel_params add
    /// it on aarch64 and s390x; once on each line.
    #[test]
    fn no_crypto_self_tests_on_any_arch() {
        for arch in [Arch::X86_64, Arch::Aarch64, Arch::S390x] {
            let line = kernel_cmdline(
                &cfg(arch, Boot::Image("/a/img".into())),
                RootDevice::VirtioBlk,
            );
            assert_eq!(
                line.matches("cryptomgr.notests").count(),
                1,
                "{arch}: {line}"
            );
        }
    }

    /// hypervisor.go GetKernelRootParams with kernel_verity_params set: the
    /// verity target over the image's two partitions, root=/dev/dm-0, the
    /// ext4 flags without dax.
    #[test]
    fn a_measured_root_as_katas_runtime_writes_it() {
        for (root, data, hash) in [
            (RootDevice::Nvdimm, "/dev/pmem0p1", "/dev/pmem0p2"),
            (RootDevice::VirtioBlk, "/dev/vda1", "/dev/vda2"),
        ] {
            let mut c = cfg(Arch::X86_64, Boot::Image("/a/img".into()));
            c.verity = Some(super::super::qemu::tests::verity());
            let line = kernel_cmdline(&c, root);
            let expect = format!(
                "pci=lastbus=0 dm-mod.create=\"dm-verity,,,ro,0 24000 verity 1 {data} {hash} \
                 4096 4096 3000 0 sha256 r00t 5a17\" root=/dev/dm-0 \
                 rootflags=data=ordered,errors=remount-ro ro rootfstype=ext4 console=hvc0"
            );
            assert!(line.contains(&expect), "{line}");
        }
    }
}
