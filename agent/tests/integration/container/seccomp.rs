//! linux.seccomp applied to every process of a container (issue 12 point
//! 11), as Kata's agent does with its seccomp feature
//! (rustjail/src/seccomp.rs, applied in rustjail/src/container.rs
//! do_init_child). Needs root; CI runs as root.

use test_support::rpc::code;
use test_support::{container as cu, spec, TestAgent};

/// `mkdir` in the container, its result on stdout.
const MKDIR: &str = "mkdir /made-here 2>&1; echo rc=$?; touch /touched && echo touched";

async fn run_to_end(agent: &TestAgent, id: &str, spec: protocols::oci::Spec) -> (String, i32) {
    let c = &agent.client;
    cu::create(c, id, spec).await.expect("create");
    cu::start(c, id).await.expect("start");
    let out = cu::read_all(c, id, "", false).await;
    let status = cu::wait(c, id, "").await.expect("wait");
    cu::remove(c, id).await.expect("remove");
    (out, status)
}

#[tokio::test]
async fn a_profile_denying_mkdir_makes_mkdir_fail_with_eperm() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    // With noNewPrivileges (the filter goes in right before exec) and
    // without (it goes in while the init still has CAP_SYS_ADMIN).
    for nnp in [true, false] {
        let id = cu::cid(&format!("seccomp-mkdir-{nnp}"));
        let mut s = spec::container(&id, &rootfs, &["sh", "-c", MKDIR]);
        s.Process.as_mut().unwrap().NoNewPrivileges = nnp;
        spec::deny_mkdir(&mut s);
        let (out, status) = run_to_end(&agent, &id, s).await;
        assert!(
            out.contains("Operation not permitted") && out.contains("rc=1"),
            "nnp={nnp}: {out:?}"
        );
        assert!(out.contains("touched"), "other syscalls work: {out:?}");
        assert_eq!(status, 0);
        assert!(!rootfs.join("made-here").exists(), "nnp={nnp}");
        std::fs::remove_file(rootfs.join("touched")).expect("cleanup");
    }
}

#[tokio::test]
async fn errno_ret_is_the_errno_and_exec_gets_the_filter_too() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("seccomp-errno");
    let mut s = spec::container(&id, &rootfs, &["sleep", "60"]);
    let rule = spec::syscall_rule(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", Some(28));
    spec::set_seccomp(&mut s, "SCMP_ACT_ALLOW", vec![rule]);
    cu::create(c, &id, s).await.expect("create");
    cu::start(c, &id).await.expect("start");
    cu::exec(c, &id, "mk", spec::process(&["sh", "-c", MKDIR]))
        .await
        .expect("exec");
    let out = cu::read_all(c, &id, "mk", false).await;
    assert!(out.contains("No space left on device"), "ENOSPC: {out:?}");
    assert_eq!(cu::wait(c, &id, "mk").await.expect("wait"), 0);
    cu::signal(c, &id, "", libc::SIGKILL as u32)
        .await
        .expect("kill");
    cu::wait(c, &id, "").await.expect("wait init");
    cu::remove(c, &id).await.expect("remove");
    let _ = std::fs::remove_file(rootfs.join("touched"));
}

/// A Docker-default-like profile (default ERRNO, an allow list) lets a
/// shell run, and still denies what it leaves out.
#[tokio::test]
async fn an_allow_list_profile_runs_a_shell() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let id = cu::cid("seccomp-docker");
    let mut s = spec::container(
        &id,
        &rootfs,
        &[
            "sh",
            "-c",
            "grep '^Seccomp:' /proc/self/status; swapoff /nothing 2>&1; echo rc=$?",
        ],
    );
    spec::docker_like_seccomp(&mut s);
    let (out, status) = run_to_end(&agent, &id, s).await;
    // Mode 2: a filter is installed.
    assert!(out.starts_with("Seccomp:\t2\n"), "{out:?}");
    assert!(
        out.contains("Operation not permitted") && out.contains("rc=1"),
        "{out:?}"
    );
    assert_eq!(status, 0);
}

/// What the agent cannot apply is refused before any process starts.
#[tokio::test]
async fn an_unusable_profile_is_refused_and_nothing_starts() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    for (name, action) in [("bogus", "SCMP_ACT_BOGUS"), ("notify", "SCMP_ACT_NOTIFY")] {
        let id = cu::cid(&format!("seccomp-{name}"));
        let mut s = spec::container(&id, &rootfs, &["true"]);
        let rule = spec::syscall_rule(&["mkdirat"], action, None);
        spec::set_seccomp(&mut s, "SCMP_ACT_ALLOW", vec![rule]);
        let err = cu::create(&agent.client, &id, s)
            .await
            .expect_err("create must fail");
        assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
        assert!(format!("{err:?}").contains(action), "{err:?}");
        cu::assert_gone(agent.pid(), &id);
        assert_eq!(cu::children(agent.pid()).0, 0, "a process was started");
    }
}
