//! Bad input to CreateContainer: path escapes are refused or stay inside the
//! rootfs, and a failed create leaves nothing behind. Needs root; CI runs as
//! root.

use test_support::rpc::code;
use test_support::TestAgent;
use test_support::{container as cu, spec};

/// No bundle, cgroup, mount, or child process of the agent is left.
fn assert_nothing_left(agent: &TestAgent, id: &str, children_before: usize) {
    cu::assert_gone(agent.pid(), id);
    assert_eq!(
        cu::children(agent.pid()).0,
        children_before,
        "a process was left behind"
    );
}

#[tokio::test]
async fn a_mount_destination_climbing_out_is_refused() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let id = cu::cid("climb");
    let mut spec = spec::container(&id, &rootfs, &["true"]);
    spec::add_mount(
        &mut spec,
        "/../../../tmp/kata-escape",
        "tmpfs",
        "tmpfs",
        &[],
    );
    let err = cu::create(&agent.client, &id, spec)
        .await
        .expect_err("create must fail");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert!(
        format!("{err:?}").contains(".."),
        "the reason names the problem: {err:?}"
    );
    assert_nothing_left(&agent, &id, 0);
}

#[tokio::test]
async fn an_absolute_symlink_in_the_rootfs_resolves_inside_it() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("symlink");
    std::os::unix::fs::symlink("/etc", rootfs.join("etc-link")).expect("symlink");
    let host_target = std::path::Path::new("/etc/kata-escape-test");
    assert!(!host_target.exists());
    let mut spec = spec::container(
        &id,
        &rootfs,
        &[
            "sh",
            "-c",
            "grep -c ' /etc/kata-escape-test ' /proc/self/mountinfo",
        ],
    );
    spec::add_mount(
        &mut spec,
        "/etc-link/kata-escape-test",
        "tmpfs",
        "tmpfs",
        &[],
    );
    cu::create(c, &id, spec).await.expect("create");
    cu::start(c, &id).await.expect("start");
    // The mount is the container's /etc/kata-escape-test, not the host's.
    assert_eq!(cu::read_all(c, &id, "", false).await, "1\n");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 0);
    assert!(
        !host_target.exists(),
        "a mount point was created in the host's /etc"
    );
    assert!(
        rootfs.join("etc/kata-escape-test").is_dir(),
        "mount point inside the rootfs"
    );
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn bad_ids_and_specs_are_invalid_arguments() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    for bad in ["..", "a/b", "-x", ""] {
        let err = cu::create(c, bad, spec::container("x", &rootfs, &["true"]))
            .await
            .expect_err(bad);
        assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{bad}: {err:?}");
    }
    let id = cu::cid("noargs");
    let err = cu::create(c, &id, spec::container(&id, &rootfs, &[]))
        .await
        .expect_err("no args");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT);
    let mut spec = spec::container(&id, &rootfs, &["true"]);
    spec.Process
        .as_mut()
        .expect("process")
        .Capabilities
        .as_mut()
        .expect("caps")
        .Bounding = vec!["CAP_NOT_A_CAP".into()];
    let err = cu::create(c, &id, spec).await.expect_err("bad capability");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT);
    assert_nothing_left(&agent, &id, 0);
}

#[tokio::test]
async fn a_failed_create_leaves_nothing_behind() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    // A rootfs that does not exist: fails at the bundle step.
    let id = cu::cid("norootfs");
    let spec = spec::container(&id, dir.path().join("missing"), &["true"]);
    let err = cu::create(c, &id, spec)
        .await
        .expect_err("create must fail");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert_nothing_left(&agent, &id, 0);

    // A mount the kernel refuses: fails inside the container init, after the
    // bundle, the cgroup and the process exist.
    let id = cu::cid("badmount");
    let mut spec = spec::container(&id, &rootfs, &["true"]);
    spec::add_mount(&mut spec, "/mnt", "no-such-fs", "none", &[]);
    let err = cu::create(c, &id, spec)
        .await
        .expect_err("create must fail");
    assert!(
        format!("{err:?}").contains("/mnt"),
        "the reason names the mount: {err:?}"
    );
    assert_nothing_left(&agent, &id, 0);

    // The same id works afterwards.
    cu::create(c, &id, spec::container(&id, &rootfs, &["true"]))
        .await
        .expect("create after failure");
    cu::remove(c, &id).await.expect("remove");
    assert_nothing_left(&agent, &id, 0);
}

#[tokio::test]
async fn a_duplicate_id_is_refused_and_the_first_container_survives() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("dup");
    cu::create(c, &id, spec::container(&id, &rootfs, &["echo", "first"]))
        .await
        .expect("create");
    let err = cu::create(c, &id, spec::container(&id, &rootfs, &["echo", "second"]))
        .await
        .expect_err("duplicate create");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert!(format!("{err:?}").contains("already exists"), "{err:?}");
    cu::start(c, &id).await.expect("start");
    assert_eq!(cu::read_all(c, &id, "", false).await, "first\n");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 0);
    let err = cu::start(c, &id).await.expect_err("second start");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    cu::remove(c, &id).await.expect("remove");
    assert_nothing_left(&agent, &id, 0);
}

/// A container in a user namespace of its own (Kubernetes `hostUsers:
/// false`: a `user` namespace with uid/gid mappings) is refused before
/// anything is made, and the reason says why; mappings without a user
/// namespace are refused as Kata's validator refuses them
/// (src/agent/rustjail/src/validator.rs usernamespace: "No user namespace,
/// but uid or gid mapping exists").
#[tokio::test]
async fn user_namespaces_are_refused_with_the_reason() {
    use protocols::oci;
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let mapping = || {
        let mut m = oci::LinuxIDMapping::new();
        m.ContainerID = 0;
        m.HostID = 100_000;
        m.Size = 65_536;
        m
    };
    let id = cu::cid("userns");
    let mut s = spec::container(&id, &rootfs, &["true"]);
    if let Some(l) = s.Linux.as_mut() {
        let mut user = oci::LinuxNamespace::new();
        user.Type = "user".into();
        l.Namespaces.push(user);
        l.UIDMappings = vec![mapping()];
        l.GIDMappings = vec![mapping()];
    }
    let err = cu::create(c, &id, s).await.expect_err("a user namespace");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert!(
        format!("{err:?}").contains("hostUsers: false"),
        "the reason names the feature: {err:?}"
    );
    assert_nothing_left(&agent, &id, 0);

    let id = cu::cid("mappings-only");
    let mut s = spec::container(&id, &rootfs, &["true"]);
    if let Some(l) = s.Linux.as_mut() {
        l.UIDMappings = vec![mapping()];
    }
    let err = cu::create(c, &id, s)
        .await
        .expect_err("mappings without a user namespace");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert!(format!("{err:?}").contains("uidMappings"), "{err:?}");
    assert_nothing_left(&agent, &id, 0);
}
