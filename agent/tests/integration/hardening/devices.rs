//! Issue 12, finding 10: a root container with CAP_MKNOD makes a node for
//! the guest's root disk and opens it. The agent now denies every device
//! but Kata's defaults and the spec's rules (Kata's list:
//! src/agent/rustjail/src/cgroups/fs/mod.rs `setup_devcg_whitelist`,
//! DEFAULT_ALLOWED_DEVICES, and src/agent/rustjail/src/container.rs
//! DEFAULT_DEVICES): through the devices controller on cgroup v1, through a
//! BPF device program on cgroup v2, where Kata's agent enforces nothing.
//! Before the fix the open succeeded on both. Needs root; CI runs as root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use protocols::oci;
use test_support::container as cu;
use test_support::TestAgent;

/// A disk of this machine that the test itself can read: the root disk
/// (the guest's, in a VM) or else the first whole disk that opens (some
/// sandboxes refuse even root a read of their root disk). None: no disk.
fn readable_disk() -> Option<(u64, u64)> {
    let root = std::fs::metadata("/").ok().map(|m| m.dev());
    let mut disks: Vec<(String, u64)> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let (major, minor) = dev.trim().split_once(':')?;
            let dev = nix::sys::stat::makedev(major.parse().ok()?, minor.parse().ok()?);
            Some((name, dev))
        })
        .collect();
    disks.sort_by_key(|(_, dev)| Some(*dev) != root);
    disks
        .into_iter()
        .find(|(name, _)| std::fs::File::open(Path::new("/dev").join(name)).is_ok())
        .map(|(_, dev)| (nix::sys::stat::major(dev), nix::sys::stat::minor(dev)))
}

/// Run, as root in a container, mknod of the root disk, a read of it and a
/// write to /dev/null; the output says which worked.
async fn try_the_disk(
    agent: &TestAgent,
    rootfs: &Path,
    name: &str,
    (major, minor): (u64, u64),
    rules: Vec<oci::LinuxDeviceCgroup>,
) -> String {
    let script = format!(
        "mknod /dev/disk b {major} {minor}; echo mknod=$?; \
         dd if=/dev/disk of=/dev/null bs=512 count=1 2>&1; echo read=$?; \
         echo x > /dev/null; echo null=$?"
    );
    let id = cu::cid(name);
    let mut spec = test_support::spec::container(&id, rootfs, &["sh", "-c", &script]);
    let mut resources = oci::LinuxResources::new();
    resources.Devices = rules;
    spec.Linux.as_mut().expect("linux").Resources = Some(resources).into();
    cu::create(&agent.client, &id, spec).await.expect("create");
    cu::start(&agent.client, &id).await.expect("start");
    let out = cu::read_all(&agent.client, &id, "", false).await;
    cu::wait(&agent.client, &id, "").await.expect("wait");
    cu::remove(&agent.client, &id).await.expect("remove");
    eprintln!("{name}: {out}");
    out
}

fn rule(allow: bool, typ: &str, major: i64, minor: i64, access: &str) -> oci::LinuxDeviceCgroup {
    let mut r = oci::LinuxDeviceCgroup::new();
    r.Allow = allow;
    r.Type = typ.into();
    r.Major = major;
    r.Minor = minor;
    r.Access = access.into();
    r
}

/// What containerd sends (deny all) and what this test adds for the disk.
fn allow_disk_read((major, minor): (u64, u64)) -> Vec<oci::LinuxDeviceCgroup> {
    vec![
        rule(false, "a", -1, -1, "rwm"),
        rule(true, "b", major as i64, minor as i64, "r"),
    ]
}

/// mknod is allowed (Kata allows `m` on every node, so the init can create
/// the spec's devices), opening the disk is not, /dev/null still works; a
/// spec rule allowing the disk is honoured after containerd's deny-all.
async fn check(agent: &TestAgent, rootfs: &Path, tag: &str, disk: (u64, u64)) {
    let out = try_the_disk(agent, rootfs, &format!("dev-deny-{tag}"), disk, vec![]).await;
    assert!(out.contains("mknod=0"), "{out}");
    assert!(out.contains("read=1"), "the root disk was readable: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("null=0"), "/dev/null must stay usable: {out}");
    let name = format!("dev-allow-{tag}");
    let out = try_the_disk(agent, rootfs, &name, disk, allow_disk_read(disk)).await;
    assert!(
        out.contains("read=0"),
        "the spec's rule was not applied: {out}"
    );
    assert!(
        out.contains("null=0"),
        "deny-all removed the defaults: {out}"
    );
}

#[tokio::test]
async fn a_disk_is_refused_on_cgroup_v1() {
    test_support::setup!(dir, rootfs);
    if !Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        test_support::skip::not_applicable(
            "no v1 devices controller here (cgroup v2 only): the v2 test covers it",
        );
        return;
    }
    let Some(disk) = readable_disk() else {
        test_support::skip!("no disk here that root can read");
    };
    let agent = TestAgent::start("").await;
    check(&agent, &rootfs, "v1", disk).await;
}

/// The agent in a mount namespace whose /sys/fs/cgroup is cgroup2 (the
/// host's unified hierarchy), as in a guest booted with cgroup_no_v1=all.
#[tokio::test]
async fn a_disk_is_refused_on_cgroup_v2() {
    test_support::setup!(dir, rootfs);
    let Some(disk) = readable_disk() else {
        test_support::skip!("no disk here that root can read");
    };
    let fs = nix::sys::statfs::statfs("/sys/fs/cgroup").expect("statfs /sys/fs/cgroup");
    let on_v2 = fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC;
    let remount =
        "umount -l /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" \"$@\"";
    let wrapper: &[&str] = if on_v2 {
        &[]
    } else {
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            remount,
        ]
    };
    let agent = TestAgent::start_wrapped("", wrapper).await;
    check(&agent, &rootfs, "v2", disk).await;
}
