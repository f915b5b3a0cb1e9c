//! Issue 12, findings 2 and 9: the agent never deletes what it did not make
//! (local storage content, files behind a mount below it, a mount that was
//! there before), and what a killed agent provably made (its recorded
//! bundle, rootfs bind mount, storage mounts) is undone by the next agent
//! at start-up. These mount in the host's mount namespace (as root), each
//! under its own directory. CI runs as root.

use std::fs;
use std::path::Path;

use crate::sandbox::storage::{mounts_at, storage};
use kata_agent::storage::StorageRegistry;
use test_support::container as cu;
use test_support::TestAgent;

fn test_dir(name: &str) -> String {
    format!(
        "/run/kata-containers/hardening-{}-{name}",
        std::process::id()
    )
}

/// Before the fix the local driver's undo was remove_dir_all of the mount
/// point, whoever made it (Kata never deletes local storage content it did
/// not make: src/agent/src/storage/local_handler.rs only creates).
#[test]
fn a_local_storage_on_an_existing_dir_keeps_its_content() {
    test_support::require_root!();
    let mp = test_dir("local-existing");
    fs::create_dir_all(&mp).expect("mkdir");
    fs::write(format!("{mp}/precious"), "data").expect("write");
    let mut reg = StorageRegistry::default();
    reg.add(&[storage("local", "local", &mp, &[])])
        .expect("add");
    reg.remove(std::slice::from_ref(&mp)).expect("remove");
    let kept = fs::read_to_string(format!("{mp}/precious")).ok();
    let _ = fs::remove_dir_all(&mp);
    assert_eq!(kept.as_deref(), Some("data"), "the pod's file was deleted");
}

/// A bind storage of an outside directory mounted below a local storage:
/// removing the local storage first must not delete through the mount.
#[test]
fn removing_a_local_storage_never_crosses_a_mount_below_it() {
    test_support::require_root!();
    let outside = test_support::tempdir();
    fs::write(outside.path().join("outside-file"), "data").expect("write");
    let local = test_dir("local-new");
    let below = format!("{local}/sub/bound");
    let mut reg = StorageRegistry::default();
    let mps = reg
        .add(&[
            storage("local", "local", &local, &[]),
            storage("bind", &outside.path().to_string_lossy(), &below, &[]),
        ])
        .expect("add");
    fs::write(format!("{local}/made-by-the-container"), "x").expect("write");
    let removed_local = reg.remove(&mps[..1]);
    let survived = outside.path().join("outside-file").exists();
    let gone_file = !Path::new(&format!("{local}/made-by-the-container")).exists();
    reg.remove(&mps[1..]).expect("remove bind");
    let _ = fs::remove_dir_all(&local);
    removed_local.expect("remove local");
    assert!(
        survived,
        "the outside file was deleted through the bind mount"
    );
    assert!(
        gone_file,
        "what the container made in the local storage is removed"
    );
    assert_eq!(mounts_at(&below), 0);
}

/// A storage whose mount fails must not take away a mount that was on its
/// mount point before the request (before the fix the agent unmounted it as
/// "stale", then failed).
#[test]
fn a_failed_storage_leaves_a_mount_it_did_not_make() {
    test_support::require_root!();
    let mp = test_dir("foreign");
    fs::create_dir_all(&mp).expect("mkdir");
    nix::mount::mount(
        Some("tmpfs"),
        mp.as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mounting the foreign tmpfs");
    fs::write(format!("{mp}/foreign-file"), "data").expect("write");
    let mut reg = StorageRegistry::default();
    let err = reg.add(&[
        storage("ephemeral", "tmpfs", &mp, &["size=1m"]),
        storage("9p", "", &test_dir("foreign-bad"), &[]),
    ]);
    let count = mounts_at(&mp);
    let file = fs::read_to_string(format!("{mp}/foreign-file")).ok();
    while mounts_at(&mp) > 0 {
        let _ = nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_dir(&mp);
    assert!(err.is_err(), "the 9p storage has no source and must fail");
    assert_eq!(count, 1, "the foreign mount must stay, alone");
    assert_eq!(file.as_deref(), Some("data"));
}

/// Before the fix a killed agent's bundle dir and rootfs bind mount stayed
/// forever.
#[tokio::test]
async fn a_new_agent_undoes_a_killed_agents_bundle() {
    test_support::setup!(dir, rootfs);
    let id = cu::cid("killed-bundle");
    let mut first = TestAgent::start("").await;
    cu::create(
        &first.client,
        &id,
        test_support::spec::container(&id, &rootfs, &["true"]),
    )
    .await
    .expect("create");
    let bundle = cu::bundle_dir(&id);
    let bundle_rootfs = bundle.join("rootfs").display().to_string();
    assert!(bundle.join("config.json").exists());
    first.kill9();
    assert_eq!(
        mounts_at(&bundle_rootfs),
        1,
        "the rootfs outlives the agent"
    );

    let second = TestAgent::start("").await;
    let left_mounts = mounts_at(&bundle_rootfs);
    let left_bundle = bundle.exists();
    // The parked init and its cgroup are not the bundle's: stop them here.
    for cg in cu::cgroup_dirs(&id) {
        let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    for cg in cu::cgroup_dirs(&id) {
        let _ = fs::remove_dir(cg);
    }
    drop(second);
    assert_eq!(
        left_mounts, 0,
        "the killed agent's rootfs bind mount stayed"
    );
    assert!(
        !left_bundle,
        "the killed agent's bundle {} stayed",
        bundle.display()
    );
}
