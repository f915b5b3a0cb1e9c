//! The storages every real pod sends: configMap/secret volumes
//! (watchable-bind), emptyDir `medium: Memory` with an fsGroup, the sandbox
//! shm, and their resizing by UpdateEphemeralMounts. Mounted in the host's
//! mount namespace (as root) under /run/kata-containers; every test undoes
//! what it mounted.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use kata_agent::storage::watcher::WATCH_ROOT;
use kata_agent::storage::StorageRegistry;

use super::storage::{mounts_at, storage, test_dir};

/// Clears the registry (DestroySandbox) even when an assertion fails.
struct Registry(StorageRegistry);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.clear();
    }
}

/// Wait until `f` holds, polling; the watcher's period is 2 s.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(8);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Kubernetes configMap volume as the kubelet writes it: the keys are
/// links through `..data` to a timestamped directory, swapped on update.
fn config_map(dir: &Path, version: &str, value: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir(&data).expect("mkdir version");
    std::fs::write(data.join("key"), value).expect("write key");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("link");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    if !dir.join("key").exists() {
        std::os::unix::fs::symlink("..data/key", dir.join("key")).expect("key link");
    }
}

/// Kata's runtime sends configMaps and secrets as `watchable-bind` storages
/// whose mount point lies in shared/containers/watchable/
/// (src/runtime/virtcontainers/container.go mountSharedDirMounts); Kata's
/// agent copies the source into a tmpfs there and keeps copying updates
/// (src/agent/src/watcher.rs), and bind-mounts a source past 16 entries or
/// 1 MiB instead. One test: the watchable tmpfs is one path per host.
#[test]
fn watchable_bind_copies_the_source_and_follows_its_updates() {
    test_support::require_root!();
    let src = tempfile::tempdir().expect("tempdir");
    config_map(src.path(), "v1", "one");
    let pid = std::process::id();
    let target = format!("{WATCH_ROOT}/test-{pid}-cm");
    let mut reg = Registry(StorageRegistry::default());
    let s = storage(
        "watchable-bind",
        &src.path().to_string_lossy(),
        &target,
        &[],
    );
    reg.0
        .add(std::slice::from_ref(&s))
        .expect("watchable-bind add");

    assert_eq!(mounts_at(WATCH_ROOT), 1, "the watchable area is a tmpfs");
    assert_eq!(mounts_at(&target), 0, "a copy, not a bind mount");
    let key = format!("{target}/key");
    assert_eq!(std::fs::read_to_string(&key).expect("read copy"), "one");
    assert!(
        std::fs::symlink_metadata(&key)
            .expect("key")
            .file_type()
            .is_symlink(),
        "links are copied as links"
    );

    // The kubelet's update: a new version directory, ..data swapped, the old one removed.
    config_map(src.path(), "v2", "two");
    std::fs::remove_dir_all(src.path().join("..v1")).expect("rm v1");
    eventually("the update reaches the copy", || {
        std::fs::read_to_string(&key).ok().as_deref() == Some("two")
    });
    eventually("the old version leaves the copy", || {
        !Path::new(&format!("{target}/..v1")).exists()
    });

    // A single file source is copied onto a file.
    let file_src = src.path().join("..v2/key");
    let file_target = format!("{WATCH_ROOT}/test-{pid}-file");
    let f = storage(
        "watchable-bind",
        &file_src.to_string_lossy(),
        &file_target,
        &[],
    );
    reg.0.add(std::slice::from_ref(&f)).expect("file add");
    assert_eq!(std::fs::read_to_string(&file_target).expect("read"), "two");
    std::fs::write(&file_src, "three").expect("rewrite");
    eventually("the file update reaches the copy", || {
        std::fs::read_to_string(&file_target).ok().as_deref() == Some("three")
    });

    // Too many entries: bind-mounted instead, still showing the source.
    let big = tempfile::tempdir().expect("tempdir");
    for i in 0..20 {
        std::fs::write(big.path().join(format!("f{i}")), "x").expect("write");
    }
    let big_target = format!("{WATCH_ROOT}/test-{pid}-big");
    let b = storage(
        "watchable-bind",
        &big.path().to_string_lossy(),
        &big_target,
        &[],
    );
    reg.0.add(std::slice::from_ref(&b)).expect("big add");
    assert_eq!(mounts_at(&big_target), 1, "past 16 entries: a bind mount");
    assert!(Path::new(&format!("{big_target}/f19")).exists());

    // The last container going removes the copies, never the sources.
    reg.0
        .remove(&[target.clone(), file_target.clone(), big_target.clone()])
        .expect("remove");
    assert!(!Path::new(&target).exists(), "the copy is removed");
    assert!(!Path::new(&file_target).exists());
    assert_eq!(mounts_at(&big_target), 0);
    assert!(
        big.path().join("f19").exists(),
        "the bound source is intact"
    );
    assert!(src.path().join("..v2/key").exists(), "the source is intact");

    // Outside the watchable area: refused, nothing mounted.
    let stray = storage(
        "watchable-bind",
        &src.path().to_string_lossy(),
        &test_dir("cm"),
        &[],
    );
    let err = reg.0.add(&[stray]).expect_err("not in the watchable area");
    assert!(format!("{err:#}").contains("watchable"), "{err:#}");

    reg.0.clear().expect("clear");
    assert_eq!(
        mounts_at(WATCH_ROOT),
        0,
        "DestroySandbox unmounts the tmpfs"
    );
}

/// An emptyDir with an fsGroup arrives as `fsgid=<gid>` (Kata's runtime:
/// kata_agent.go handleEphemeralStorage); Kata's agent chowns the new tmpfs
/// to that group and sets setgid instead of giving it to tmpfs
/// (src/agent/src/storage/ephemeral_handler.rs). tmpfs answers EINVAL to it.
#[test]
fn ephemeral_fsgid_is_a_group_and_setgid() {
    test_support::require_root!();
    let mp = test_dir("fsgid");
    let mut reg = Registry(StorageRegistry::default());
    reg.0
        .add(&[storage("ephemeral", "tmpfs", &mp, &["fsgid=3000"])])
        .expect("ephemeral with fsgid");
    let meta = std::fs::metadata(&mp).expect("stat");
    assert_eq!(meta.gid(), 3000);
    assert_ne!(meta.mode() & libc::S_ISGID, 0, "setgid: {:o}", meta.mode());
    assert_eq!(mounts_at(&mp), 1);

    let bad = test_dir("fsgid-bad");
    let err = reg
        .0
        .add(&[storage("ephemeral", "tmpfs", &bad, &["fsgid=staff"])])
        .expect_err("not a gid");
    assert!(format!("{err:#}").contains("fsgid"), "{err:#}");
    assert_eq!(mounts_at(&bad), 0, "nothing stays mounted");
}

/// The sandbox shm as Kata's runtime asks for it in CreateSandbox
/// (kata_agent.go startSandbox: noexec,nosuid,nodev,mode=1777,size=<shm_size>),
/// and the resize UpdateEphemeralMounts sends after a memory update
/// (sandbox.go prepareEphemeralMounts: remount, size=<N>M, fsgid=<gid>):
/// remount is a flag, fsgid is not for tmpfs.
#[test]
fn shm_is_sized_and_update_ephemeral_remounts() {
    test_support::require_root!();
    let mp = test_dir("shm");
    let mut reg = Registry(StorageRegistry::default());
    let shm = storage(
        "ephemeral",
        "shm",
        &mp,
        &["noexec", "nosuid", "nodev", "mode=1777", "size=4194304"],
    );
    reg.0.add(&[shm]).expect("shm");
    let size = |p: &str| {
        let st = nix::sys::statvfs::statvfs(p).expect("statvfs");
        st.blocks() as u64 * st.fragment_size() as u64
    };
    assert_eq!(size(&mp), 4 << 20, "the shm has the runtime's size");
    let mode = std::fs::metadata(&mp).expect("stat").mode();
    assert_eq!(mode & 0o7777, 0o1777, "mode {mode:o}");

    let up = storage(
        "ephemeral",
        "shm",
        &mp,
        &["remount", "size=8M", "fsgid=3000"],
    );
    reg.0.update_ephemeral(&up).expect("UpdateEphemeralMounts");
    assert_eq!(size(&mp), 8 << 20, "resized");
    assert_eq!(mounts_at(&mp), 1, "remounted, not mounted again");
}

/// An emptyDir belongs to the sandbox: the app's RemoveContainer (a
/// restart) must leave its content for the next container (Kata's
/// ephemeral storage device has no cleanup: ephemeral_handler.rs; shared
/// storages are kept: sandbox.rs remove_sandbox_storage), as must a
/// storage the runtime marks `shared`.
#[test]
fn emptydir_survives_a_container_restart() {
    test_support::require_root!();
    let mp = test_dir("emptydir");
    let mut reg = Registry(StorageRegistry::default());
    let s = storage("ephemeral", "tmpfs", &mp, &[]);
    reg.0
        .add(std::slice::from_ref(&s))
        .expect("first container");
    std::fs::write(format!("{mp}/state"), "kept").expect("write");
    reg.0
        .remove(std::slice::from_ref(&mp))
        .expect("RemoveContainer");
    reg.0
        .add(std::slice::from_ref(&s))
        .expect("restarted container");
    assert_eq!(
        std::fs::read_to_string(format!("{mp}/state")).expect("read after restart"),
        "kept"
    );
    assert_eq!(mounts_at(&mp), 1, "the same tmpfs, not a new one on top");

    let src = tempfile::tempdir().expect("tempdir");
    let shared_mp = test_dir("shared");
    let mut b = storage("bind", &src.path().to_string_lossy(), &shared_mp, &[]);
    b.shared = true;
    reg.0.add(std::slice::from_ref(&b)).expect("shared bind");
    reg.0
        .remove(std::slice::from_ref(&shared_mp))
        .expect("remove");
    assert_eq!(mounts_at(&shared_mp), 1, "a shared storage is kept");

    reg.0.clear().expect("DestroySandbox");
    assert_eq!(mounts_at(&mp), 0);
    assert_eq!(mounts_at(&shared_mp), 0);
}

/// DestroySandbox of a pod with a configMap: the watchable tmpfs lies
/// inside the shared directory (virtio-fs in a VM), so it must be unmounted
/// before that directory; unmounting the shared directory first took the
/// tmpfs along and `clear` failed with ENOENT (found by the e2e pod
/// scenario). The check mounts a tmpfs in place of the shared directory at
/// its real path, so it runs in a mount namespace of its own: this test
/// re-runs the binary under `unshare --mount` for the ignored one below.
#[test]
fn destroy_sandbox_unmounts_the_watchable_tmpfs_before_the_shared_dir() {
    test_support::require_root!();
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(exe)
        .args([
            "--exact",
            "sandbox::pod_storage::watchable_inside_the_shared_dir_in_a_mount_ns",
            "--ignored",
            "--test-threads=1",
        ])
        .env(OWN_MOUNT_NS, "1")
        .output()
        .expect("running unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run: {text}"
    );
}

/// Set by the test above for the one below.
const OWN_MOUNT_NS: &str = "KATA_TEST_OWN_MOUNT_NS";

#[test]
#[ignore = "run by destroy_sandbox_unmounts_the_watchable_tmpfs_before_the_shared_dir in a mount namespace of its own"]
fn watchable_inside_the_shared_dir_in_a_mount_ns() {
    if std::env::var_os(OWN_MOUNT_NS).is_none() {
        eprintln!(
            "not in a mount namespace of its own: it would mount over the host's {WATCH_ROOT}"
        );
        return;
    }
    let shared = Path::new(WATCH_ROOT)
        .parent()
        .expect("the watchable area has a parent")
        .to_string_lossy()
        .into_owned();
    let mut reg = Registry(StorageRegistry::default());
    reg.0
        .add(&[storage("ephemeral", "tmpfs", &shared, &["size=1m"])])
        .expect("the shared directory's stand-in");
    let src = tempfile::tempdir().expect("tempdir");
    config_map(src.path(), "v1", "one");
    let target = format!("{WATCH_ROOT}/cm");
    reg.0
        .add(&[storage(
            "watchable-bind",
            &src.path().to_string_lossy(),
            &target,
            &[],
        )])
        .expect("watchable-bind add");
    // RemoveContainer, then DestroySandbox.
    reg.0.remove(std::slice::from_ref(&target)).expect("remove");
    reg.0.clear().expect("DestroySandbox clears every storage");
    assert_eq!(mounts_at(WATCH_ROOT), 0);
    assert_eq!(mounts_at(&shared), 0);
}
