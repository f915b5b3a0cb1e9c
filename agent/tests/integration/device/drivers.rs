//! Each driver finds its disk the way the guest's kernel shows it. The
//! sysfs tree is fake (the host has no virtio-blk at 02/00, no SCSI host,
//! no NVDIMM); the disk it names is a real loop device with ext4 on it, so
//! the node, its numbers and the mount are real.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use kata_agent::device::{self, ccw, Hotplug};
use kata_agent::error::Error;
use kata_agent::storage::{self, StorageRegistry};
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec,
};
use protocols::agent::{Device, FSGroup};
use test_support::loopdev::Loop;
use test_support::sysfs;

use crate::sandbox::storage::{mounts_at, storage, test_dir};

const ROOT_BUS: &str = "/devices/pci0000:00";

/// A root port at 00:02.0 leading to bus 01 (where PCI path 02/00 is).
fn root_port_02(root: &Path) {
    sysfs::add_pci_root_bus(root, ROOT_BUS, "0000:00").expect("root bus");
    sysfs::add_pci_bridge(root, &format!("{ROOT_BUS}/0000:00:02.0"), "0000:01").expect("bridge");
}

/// The virtio-blk disk at PCI path 02/00: behind the root port, at 01:00.0.
fn disk_at_02_00(root: &Path, name: &str) {
    sysfs::add_device(
        root,
        "block",
        &format!("{ROOT_BUS}/0000:00:02.0/0000:01:00.0/virtio3/block/{name}"),
        name,
        None,
    )
    .expect("disk");
}

fn virtio_blk_at_02_00(root: &Path, name: &str) {
    root_port_02(root);
    disk_at_02_00(root, name);
}

/// The SCSI disk at 0:0 on host0 of a virtio-scsi controller at 00:03.0.
fn scsi_disk_at_0_0(root: &Path, name: &str) {
    sysfs::add_scsi_host(root, "host0").expect("host");
    sysfs::add_device(
        root,
        "block",
        &format!("{ROOT_BUS}/0000:00:03.0/virtio0/host0/target0:0:0/0:0:0:0/block/{name}"),
        name,
        None,
    )
    .expect("disk");
}

fn spec_with_device(path: &str, host: (i64, i64)) -> Spec {
    let dev = LinuxDeviceBuilder::default()
        .path(path)
        .typ(LinuxDeviceType::B)
        .major(host.0)
        .minor(host.1)
        .build()
        .expect("device");
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(LinuxDeviceType::B));
    rule.set_major(Some(host.0));
    rule.set_minor(Some(host.1));
    rule.set_access(Some("rwm".into()));
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(vec![rule]));
    let mut spec = Spec::default();
    spec.set_linux(Some(
        LinuxBuilder::default()
            .devices(vec![dev])
            .resources(resources)
            .build()
            .expect("linux"),
    ));
    spec
}

fn device(typ: &str, id: &str, vm_path: &str, container_path: &str) -> Device {
    let mut d = Device::new();
    d.type_ = typ.into();
    d.id = id.into();
    d.vm_path = vm_path.into();
    d.container_path = container_path.into();
    d
}

/// The (major, minor) the spec's device and its first rule end up with.
fn numbers(spec: &Spec) -> ((i64, i64), (Option<i64>, Option<i64>)) {
    let linux = spec.linux().as_ref().expect("linux");
    let dev = &linux.devices().as_ref().expect("devices")[0];
    let rule = &linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().as_ref())
        .expect("rules")[0];
    ((dev.major(), dev.minor()), (rule.major(), rule.minor()))
}

/// Every CreateContainer device driver puts the guest disk's numbers where
/// the host's were, in linux.devices and in the cgroup rule, and allows
/// the guest disk (Kata: device/mod.rs add_devices, update_spec_devices).
#[test]
fn each_device_driver_renumbers_the_spec() {
    test_support::require_root!();
    let dir = test_support::tempdir();
    let Some(disk) = Loop::new(dir.path()) else {
        return;
    };
    let (major, minor) = disk.numbers();
    let guest = (i64::from(major), i64::from(minor));
    let fake = test_support::tempdir();
    virtio_blk_at_02_00(fake.path(), &disk.name());
    let hp = Hotplug::with_sysfs(fake.path(), Duration::from_secs(2));
    let node = disk.dev.to_string_lossy().into_owned();
    let cases = [
        device("blk", "02/00", "", "/dev/xda"),
        device("mmioblk", "", &node, "/dev/xda"),
        device("nvdimm", "", &node, "/dev/xda"),
    ];
    for d in cases {
        let mut spec = spec_with_device("/dev/xda", (8, 0));
        device::add_devices(&mut spec, std::slice::from_ref(&d), &hp)
            .unwrap_or_else(|e| panic!("{}: {e}", d.type_));
        assert_eq!(
            numbers(&spec),
            (guest, (Some(guest.0), Some(guest.1))),
            "{}",
            d.type_
        );
        let rules = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        let added = rules
            .and_then(|r| r.devices().as_ref())
            .and_then(|r| r.last());
        assert_eq!(
            added.map(|r| (r.allow(), r.typ(), r.major(), r.minor())),
            Some((true, Some(LinuxDeviceType::B), Some(guest.0), Some(guest.1))),
            "{}",
            d.type_
        );
    }

    // scsi: the agent asks host0 to scan 0 0 0, then finds the disk.
    let fake = test_support::tempdir();
    scsi_disk_at_0_0(fake.path(), &disk.name());
    let hp = Hotplug::with_sysfs(fake.path(), Duration::from_secs(2));
    let mut spec = spec_with_device("/dev/xda", (8, 0));
    device::add_devices(&mut spec, &[device("scsi", "0:0", "", "/dev/xda")], &hp).expect("scsi");
    assert_eq!(numbers(&spec).0, guest);
    let scan = fake.path().join("class/scsi_host/host0/scan");
    assert_eq!(std::fs::read_to_string(scan).expect("scan"), "0 0 0");

    // blk-ccw: s390x's; its path is the same function everywhere.
    let fake = test_support::tempdir();
    sysfs::add_device(
        fake.path(),
        "block",
        &format!(
            "/devices/css0/0.0.0001/0.0.0005/virtio1/block/{}",
            disk.name()
        ),
        &disk.name(),
        None,
    )
    .expect("ccw disk");
    let hp = Hotplug::with_sysfs(fake.path(), Duration::from_secs(2));
    assert_eq!(ccw::ccw_disk(&hp, "0.0.0005").expect("ccw"), disk.dev);
    let mut spec = spec_with_device("/dev/xda", (8, 0));
    let ccw = device::add_devices(
        &mut spec,
        &[device("blk-ccw", "0.0.0005", "", "/dev/xda")],
        &hp,
    );
    if cfg!(target_arch = "s390x") {
        assert_eq!(numbers(&spec).0, guest, "{ccw:?}");
    } else {
        let err = ccw.expect_err("ccw off s390x");
        assert!(format!("{err}").contains("s390x"), "{err}");
    }
}

/// A disk that shows up after the wait began, with no uevent at all (the
/// fake tree gets no events), is found by the rescan, promptly.
#[test]
fn a_late_disk_is_found_by_rescanning() {
    test_support::require_root!();
    let dir = test_support::tempdir();
    let Some(disk) = Loop::new(dir.path()) else {
        return;
    };
    let fake = test_support::tempdir();
    root_port_02(fake.path());
    let hp = Hotplug::with_sysfs(fake.path(), Duration::from_secs(10));
    let root = fake.path().to_path_buf();
    let name = disk.name();
    let plug = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        disk_at_02_00(&root, &name);
    });
    let start = Instant::now();
    let found = device::blk::pci_disk(&hp, "02/00").expect("the late disk");
    plug.join().expect("plug");
    assert_eq!(found, disk.dev);
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// No disk within agent.hotplug_timeout: DEADLINE_EXCEEDED, naming the
/// device, the PCI path and the option; nothing is mounted.
#[test]
fn a_missing_disk_times_out_by_name() {
    test_support::require_root!();
    let fake = test_support::tempdir();
    root_port_02(fake.path());
    let hp = Hotplug::with_sysfs(fake.path(), Duration::from_millis(400));
    let start = Instant::now();
    let mut spec = spec_with_device("/dev/xda", (8, 0));
    let err = device::add_devices(&mut spec, &[device("blk", "02/00", "", "/dev/xda")], &hp)
        .expect_err("no disk");
    assert!(start.elapsed() >= Duration::from_millis(400));
    let Error::DeadlineExceeded(msg) = &err else {
        panic!("not a deadline: {err:?}");
    };
    for want in [
        "/dev/xda",
        "PCI path 02/00",
        "400ms",
        "agent.hotplug_timeout",
    ] {
        assert!(msg.contains(want), "{want} in {msg}");
    }
    assert_eq!(numbers(&spec).0, (8, 0), "the spec is untouched");

    let mp = test_dir("blk-timeout");
    let mut s = storage("scsi", "0:0", &mp, &[]);
    s.fstype = "ext4".into();
    sysfs::add_scsi_host(fake.path(), "host0").expect("host");
    let err = storage::find_disks(&[s.clone()], &hp).expect_err("no scsi disk");
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err:?}");
    assert!(format!("{err}").contains("SCSI disk at 0:0:0:0"), "{err}");
    let mut reg = StorageRegistry::default();
    reg.hotplug = hp;
    assert!(reg.add(&[s]).is_err());
    assert_eq!(mounts_at(&mp), 0);
    assert!(!Path::new(&mp).exists(), "the mount point it made is gone");
}

/// Disk storages of each driver mount the filesystem on the disk the
/// driver finds (Kata: storage/block_handler.rs), and give it to the
/// fsGroup.
#[test]
fn disk_storages_mount_with_their_fs_group() {
    test_support::require_root!();
    let dir = test_support::tempdir();
    let Some(disk) = Loop::new(dir.path()) else {
        return;
    };
    // One disk, one name: a tree where it is virtio-blk, one where it is SCSI.
    let pci = test_support::tempdir();
    virtio_blk_at_02_00(pci.path(), &disk.name());
    let scsi = test_support::tempdir();
    scsi_disk_at_0_0(scsi.path(), &disk.name());
    let node = disk.dev.to_string_lossy().into_owned();
    let mut reg = StorageRegistry::default();
    for (i, (driver, source)) in [
        ("blk", "02/00"),
        ("scsi", "0:0"),
        ("mmioblk", node.as_str()),
        ("nvdimm", node.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        let tree = if driver == "scsi" {
            scsi.path()
        } else {
            pci.path()
        };
        reg.hotplug = Hotplug::with_sysfs(tree, Duration::from_secs(2));
        let mp = test_dir(&format!("disk-{driver}"));
        let mut s = storage(driver, source, &mp, &["nodev"]);
        s.fstype = "ext4".into();
        let mut g = FSGroup::new();
        g.group_id = 3000 + i as u32;
        s.fs_group = Some(g).into();
        reg.add(std::slice::from_ref(&s))
            .unwrap_or_else(|e| panic!("{driver}: {e:#}"));
        assert_eq!(mounts_at(&mp), 1, "{driver}");
        let top = std::fs::metadata(&mp).expect("mounted root");
        assert!(
            Path::new(&mp).join("lost+found").is_dir(),
            "{driver}: the ext4 on the disk"
        );
        assert_eq!(top.gid(), 3000 + i as u32, "{driver}: fsGroup");
        assert_eq!(
            top.permissions().mode() & 0o2070,
            0o2070,
            "{driver}: setgid, group rwx"
        );
        reg.remove(std::slice::from_ref(&mp)).expect("remove");
        assert_eq!(mounts_at(&mp), 0);
    }
    // What find_disks gives the registry: the guest node as the source.
    let s = storage("scsi", "0:0", &test_dir("disk-found"), &[]);
    let hp = Hotplug::with_sysfs(scsi.path(), Duration::from_secs(2));
    let found = storage::find_disks(&[s], &hp).expect("found");
    assert_eq!(found[0].source, node);
}

/// The local driver with Kata runtime's options ["mode=0777", "fsgid=N"]
/// (kata_agent.go handleLocalStorage): the directory is the group's,
/// setgid (Kata: storage/local_handler.rs).
#[test]
fn local_storage_takes_the_fsgid_option() {
    test_support::require_root!();
    let mp = test_dir("local-fsgid");
    let s = storage("local", "local", &mp, &["mode=0777", "fsgid=2345"]);
    let mut reg = StorageRegistry::default();
    reg.add(std::slice::from_ref(&s)).expect("local");
    let meta = std::fs::metadata(&mp).expect("dir");
    assert_eq!(meta.gid(), 2345);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o2777);
    reg.remove(std::slice::from_ref(&mp)).expect("remove");
    let bad = storage("local", "local", &test_dir("local-badgid"), &["fsgid=x"]);
    let err = reg.add(&[bad]).expect_err("bad gid");
    assert!(format!("{err:#}").contains("fsgid"), "{err:#}");
}
