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

/// A mount namespace of the test's own with a record directory of its own
/// (a tmpfs on `owned::RECORD_DIR`), held by a sleeping process: agents
/// started in it (through `nsenter`) take over only each other's records,
/// and their mounts on the host-wide watchable path stay out of the host's
/// mount table.
struct PrivateMounts(std::process::Child);

impl PrivateMounts {
    fn new() -> PrivateMounts {
        use std::io::BufRead;
        fs::create_dir_all(kata_agent::owned::RECORD_DIR).expect("mkdir the record dir");
        let script = format!(
            "mount -t tmpfs tmpfs {} && echo ready && exec sleep 600",
            kata_agent::owned::RECORD_DIR
        );
        let mut child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line, "ready\n", "the private mount namespace is not ready");
        PrivateMounts(child)
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    fn mounts_at(&self, path: &str) -> usize {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid()))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(path))
            .count()
    }
}

impl Drop for PrivateMounts {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Before the fix the watchable tmpfs (the configMap/secret copies,
/// shared/containers/watchable) was in no record: a killed agent's stayed
/// mounted, and the next agent mounted a second one over it.
#[tokio::test]
async fn a_new_agent_unmounts_a_killed_agents_watchable_tmpfs() {
    use kata_agent::storage::watcher::WATCH_ROOT;
    use protocols::agent::CreateSandboxRequest;
    test_support::require_root!();
    let ns = PrivateMounts::new();
    let pid = ns.pid();
    let wrapper = ["nsenter", "-t", pid.as_str(), "-m", "--"];
    let src = test_support::tempdir();
    fs::write(src.path().join("key"), "value").expect("write");
    let mut sb = CreateSandboxRequest::new();
    sb.storages = vec![storage(
        "watchable-bind",
        &src.path().to_string_lossy(),
        &format!("{WATCH_ROOT}/test-{}-killed", std::process::id()),
        &[],
    )];
    let mut first = TestAgent::start_wrapped("", &wrapper).await;
    first
        .client
        .agent
        .create_sandbox(agent_ctl::context(20), &sb)
        .await
        .expect("CreateSandbox with a watchable storage");
    assert_eq!(
        ns.mounts_at(WATCH_ROOT),
        1,
        "the watchable tmpfs is mounted"
    );
    first.kill9();
    assert_eq!(ns.mounts_at(WATCH_ROOT), 1, "it outlives the agent");
    let second = TestAgent::start_wrapped("", &wrapper).await;
    let left = ns.mounts_at(WATCH_ROOT);
    drop(second);
    assert_eq!(left, 0, "the killed agent's watchable tmpfs stayed");
}
