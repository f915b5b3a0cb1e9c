//! The storage registry as the sandbox uses it: reference counting by mount
//! point, one mount per storage, mount points confined to /run/kata-containers.
//! These tests mount in the host's mount namespace (as root), each under its
//! own directory, and unmount everything they mounted.

use std::path::Path;

use kata_agent::mountinfo;
use kata_agent::storage::StorageRegistry;
use protocols::agent::Storage;

pub(crate) fn storage(driver: &str, source: &str, mount_point: &str, options: &[&str]) -> Storage {
    let mut s = Storage::new();
    s.driver = driver.into();
    s.source = source.into();
    s.mount_point = mount_point.into();
    s.options = options.iter().map(|o| o.to_string()).collect();
    s
}

/// A unique mount point below /run/kata-containers for one test.
pub(crate) fn test_dir(name: &str) -> String {
    format!("/run/kata-containers/test-{}-{name}", std::process::id())
}

pub(crate) fn mounts_at(p: &str) -> usize {
    mountinfo::mount_count(Path::new(p)).expect("reading mountinfo")
}

/// An ephemeral storage (emptyDir, shm) belongs to the sandbox: mounted
/// once, kept when its last container goes (Kata's ephemeral handler hands
/// back a device with no cleanup: src/agent/src/storage/ephemeral_handler.rs),
/// and unmounted by DestroySandbox (`clear`).
#[test]
fn ephemeral_is_mounted_once_and_kept_until_the_sandbox_goes() {
    test_support::require_root!();
    let mp = test_dir("ephemeral");
    let s = storage("ephemeral", "tmpfs", &mp, &["size=1m"]);
    let mut reg = StorageRegistry::default();
    assert_eq!(
        reg.add(std::slice::from_ref(&s)).expect("first add"),
        vec![mp.clone()]
    );
    reg.add(std::slice::from_ref(&s)).expect("second add");
    assert_eq!(
        mounts_at(&mp),
        1,
        "two adds of one storage must mount it once"
    );
    assert_eq!(reg.mounted(), vec![(mp.clone(), 2)]);
    reg.remove(std::slice::from_ref(&mp)).expect("first remove");
    reg.remove(std::slice::from_ref(&mp))
        .expect("second remove");
    assert_eq!(mounts_at(&mp), 1, "the last container keeps it mounted");
    assert!(
        reg.remove(std::slice::from_ref(&mp)).is_err(),
        "a third remove is an error"
    );
    reg.clear().expect("clear");
    assert_eq!(mounts_at(&mp), 0, "DestroySandbox must unmount it");
    assert!(
        !Path::new(&mp).exists(),
        "the mount point we created must be gone"
    );
}

#[test]
fn bind_is_reference_counted_and_read_only_works() {
    test_support::require_root!();
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("f"), "data").expect("write");
    let mp = test_dir("bind");
    let s = storage("bind", &src.path().to_string_lossy(), &mp, &["ro"]);
    let mut reg = StorageRegistry::default();
    reg.add(std::slice::from_ref(&s)).expect("add");
    reg.add(std::slice::from_ref(&s)).expect("add again");
    assert_eq!(mounts_at(&mp), 1);
    assert_eq!(
        std::fs::read_to_string(format!("{mp}/f")).expect("read through"),
        "data"
    );
    assert!(
        std::fs::write(format!("{mp}/g"), "x").is_err(),
        "ro bind must refuse writes"
    );
    reg.remove(std::slice::from_ref(&mp)).expect("remove");
    assert_eq!(mounts_at(&mp), 1);
    reg.clear().expect("clear");
    assert_eq!(mounts_at(&mp), 0);
}

#[test]
fn local_dir_has_its_mode_and_goes_with_the_last_reference() {
    test_support::require_root!();
    use std::os::unix::fs::PermissionsExt;
    let mp = test_dir("local");
    let s = storage("local", "", &mp, &["mode=0750"]);
    let mut reg = StorageRegistry::default();
    reg.add(&[s.clone(), s.clone()])
        .expect("two adds in one call");
    let mode = std::fs::metadata(&mp).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    reg.remove(std::slice::from_ref(&mp)).expect("remove");
    assert!(Path::new(&mp).is_dir(), "the first remove keeps it");
    reg.remove(std::slice::from_ref(&mp)).expect("remove");
    assert!(!Path::new(&mp).exists(), "the last remove deletes it");
}

#[test]
fn a_failing_storage_undoes_the_earlier_ones_of_the_call() {
    test_support::require_root!();
    let good = test_dir("undo-good");
    let bad = test_dir("undo-bad");
    let mut reg = StorageRegistry::default();
    let err = reg
        .add(&[
            storage("ephemeral", "tmpfs", &good, &[]),
            storage("bind", "/definitely/not/here", &bad, &[]),
        ])
        .expect_err("the bind source does not exist");
    assert!(
        format!("{err:#}").contains("/definitely/not/here"),
        "{err:#}"
    );
    assert_eq!(
        mounts_at(&good),
        0,
        "the earlier storage must be unmounted again"
    );
    assert!(reg.mounted().is_empty());
}

#[test]
fn mount_points_outside_the_root_are_refused() {
    test_support::require_root!();
    let mut reg = StorageRegistry::default();
    for mp in [
        "/etc/evil",
        "relative",
        "/run/kata-containers/../../etc/evil",
        "/run/kata-containers",
    ] {
        let err = reg
            .add(&[storage("ephemeral", "tmpfs", mp, &[])])
            .expect_err(mp);
        assert!(format!("{err:#}").contains("mount point"), "{mp}: {err:#}");
    }
    assert_eq!(mounts_at("/etc/evil"), 0);
}

/// A symlink planted inside /run/kata-containers that points at /etc must
/// not carry a mount out: the mount lands inside the root instead.
#[test]
fn symlinked_mount_point_stays_inside_the_root() {
    test_support::require_root!();
    let base = test_dir("symlink");
    std::fs::create_dir_all(&base).expect("mkdir");
    let link = format!("{base}/link");
    std::os::unix::fs::symlink("/etc", &link).expect("symlink");
    let mp = format!("{link}/evil");
    let mut reg = StorageRegistry::default();
    reg.add(&[storage("ephemeral", "tmpfs", &mp, &[])])
        .expect("add");
    assert!(
        !Path::new("/etc/evil").exists(),
        "the mount point escaped to /etc"
    );
    assert_eq!(mounts_at("/etc/evil"), 0);
    assert_eq!(
        mounts_at("/run/kata-containers/etc/evil"),
        1,
        "resolved inside the root"
    );
    reg.clear().expect("clear");
    assert_eq!(mounts_at("/run/kata-containers/etc/evil"), 0);
    let _ = std::fs::remove_dir("/run/kata-containers/etc");
    std::fs::remove_dir_all(&base).expect("cleanup");
}

#[test]
fn blk_by_device_name_mounts_the_filesystem() {
    test_support::require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(dev) = test_support::loopdev::Loop::new(dir.path()) else {
        return;
    };
    let mp = test_dir("blk");
    let mut s = storage("blk", &dev.dev.to_string_lossy(), &mp, &["nodev"]);
    s.fstype = "ext4".into();
    let mut reg = StorageRegistry::default();
    reg.add(std::slice::from_ref(&s))
        .expect("mount the block device");
    reg.add(std::slice::from_ref(&s)).expect("second reference");
    assert_eq!(mounts_at(&mp), 1);
    assert!(
        Path::new(&format!("{mp}/lost+found")).is_dir(),
        "the ext4 filesystem is visible"
    );
    reg.remove(std::slice::from_ref(&mp)).expect("remove");
    reg.remove(std::slice::from_ref(&mp)).expect("remove");
    assert_eq!(mounts_at(&mp), 0);

    let mut missing = storage("blk", "/dev/kata-no-such-disk", &test_dir("blk2"), &[]);
    missing.fstype = "ext4".into();
    let err = reg.add(&[missing]).expect_err("no such device");
    assert!(
        format!("{err:#}").contains("/dev/kata-no-such-disk"),
        "{err:#}"
    );
}
