//! CreateContainer as Kata's runtime sends it for a disk given as a device
//! (`devices`, kata_agent.go appendBlockDevice) and a disk given as a
//! volume (a Storage, handleDeviceBlockVolume / handleBlkOCIMounts), on
//! the host's real /sys: a loop device, named by its node as the mmioblk
//! driver names disks.

use protocols::agent::{CreateContainerRequest, Device, Storage};
use protocols::oci;
use test_support::container as cu;
use test_support::loopdev::Loop;
use test_support::{spec, TestAgent};

use crate::sandbox::storage::test_dir;

#[tokio::test(flavor = "multi_thread")]
async fn create_container_with_a_disk_device_and_a_disk_volume() {
    test_support::setup!(dir, rootfs);
    let Some(disk) = Loop::new(dir.path()) else {
        return;
    };
    let (major, minor) = disk.numbers();
    let node = disk.dev.to_string_lossy().into_owned();
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("disk-device");

    // The disk as /dev/xda, with the host's numbers (8:0) in the spec and
    // in its cgroup rule; the container reads ext4's magic (0xef53 at
    // byte 1080) through it, and lists the volume.
    let mut s = spec::container(
        &id,
        &rootfs,
        &[
            "sh",
            "-c",
            "ls -l /dev/xda; head -c 1082 /dev/xda | tail -c 2 | od -x; ls /data",
        ],
    );
    let mut xda = oci::LinuxDevice::new();
    xda.Path = "/dev/xda".into();
    xda.Type = "b".into();
    xda.Major = 8;
    xda.Minor = 0;
    xda.FileMode = 0o660;
    let mut rule = oci::LinuxDeviceCgroup::new();
    rule.Allow = true;
    rule.Type = "b".into();
    rule.Major = 8;
    rule.Minor = 0;
    rule.Access = "rwm".into();
    let linux = s.Linux.as_mut().expect("linux");
    linux.Devices.push(xda);
    linux.Resources.mut_or_insert_default().Devices.push(rule);
    let volume = test_dir("disk-volume");
    spec::add_mount(&mut s, "/data", "bind", &volume, &["rbind", "ro"]);

    let mut d = Device::new();
    d.type_ = "mmioblk".into();
    d.id = node.clone();
    d.vm_path = node.clone();
    d.container_path = "/dev/xda".into();
    let mut st = Storage::new();
    st.driver = "blk".into();
    st.source = node.clone();
    st.fstype = "ext4".into();
    st.options = vec!["ro".into()];
    st.mount_point = volume.clone();

    let mut req = CreateContainerRequest::new();
    req.container_id = id.clone();
    req.exec_id = id.clone();
    req.OCI = Some(s).into();
    req.devices = vec![d];
    req.storages = vec![st];
    c.agent
        .create_container(agent_ctl::context(30), &req)
        .await
        .expect("create with a device and a disk volume");
    cu::start(c, &id).await.expect("start");
    let out = cu::read_all(c, &id, &id, false).await;
    let err = cu::read_all(c, &id, &id, true).await;
    assert_eq!(cu::wait(c, &id, &id).await.expect("wait"), 0, "{out}{err}");
    assert!(
        out.contains(&format!("{major}, {minor}")) || out.contains(&format!("{major},   {minor}")),
        "the guest's numbers {major}:{minor} on /dev/xda: {out}"
    );
    assert!(out.contains("ef53"), "ext4 read through /dev/xda: {out}");
    assert!(out.contains("lost+found"), "the volume's ext4: {out}");
    cu::remove(c, &id).await.expect("remove");
    assert!(
        cu::mounts_mentioning(agent.pid(), &volume).is_empty(),
        "the disk volume is unmounted with its container"
    );
}
