//! CreateSandbox / DestroySandbox through the real client: everything
//! CreateSandbox sets up is gone after DestroySandbox or a failed create,
//! and a new agent can create the sandbox again after the old one was
//! killed with SIGKILL.

use std::path::Path;
use std::process::Command;

use agent_ctl::context;
use protocols::agent::{CreateSandboxRequest, DestroySandboxRequest, Storage};
use test_support::TestAgent;

fn ephemeral(mount_point: &str) -> Storage {
    let mut s = Storage::new();
    s.driver = "ephemeral".into();
    s.source = "tmpfs".into();
    s.fstype = "tmpfs".into();
    s.options = vec!["size=1m".into()];
    s.mount_point = mount_point.into();
    s
}

fn test_dir(name: &str) -> String {
    format!("/run/kata-containers/test-{}-{name}", std::process::id())
}

fn mounted(mountinfo: &str, path: &str) -> bool {
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(path))
}

/// Children of `pid` living in another PID namespace than `pid` (the pause process).
fn children_in_other_pidns(pid: u32) -> Vec<u32> {
    let own = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for k in kids
            .split_whitespace()
            .filter_map(|k| k.parse::<u32>().ok())
        {
            if std::fs::read_link(format!("/proc/{k}/ns/pid")).ok() != own {
                out.push(k);
            }
        }
    }
    out
}

async fn create(agent: &TestAgent, req: &CreateSandboxRequest) -> ttrpc::Result<()> {
    agent
        .client
        .agent
        .create_sandbox(context(20), req)
        .await
        .map(|_| ())
}

async fn destroy(agent: &TestAgent) {
    agent
        .client
        .agent
        .destroy_sandbox(context(20), &DestroySandboxRequest::new())
        .await
        .expect("DestroySandbox");
}

/// The agent writes a sandbox's resolv.conf at one path,
/// /run/kata-containers/sandbox/resolv.conf (agent/src/sandbox/dns.rs), and
/// the test agents of this binary share the host's /run (each has only its
/// own mount namespace): the tests that send DNS take turns, or one reads
/// the other's file through its bind mount.
static SANDBOX_DNS_FILE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn create_then_destroy_leaves_nothing_behind() {
    test_support::require_root!();
    let _dns = SANDBOX_DNS_FILE.lock().await;
    let agent = TestAgent::start_isolated("").await;
    let mp = test_dir("sb-eph");
    let mut req = CreateSandboxRequest::new();
    req.sandbox_id = "sb1".into();
    req.hostname = "kata-test-host".into();
    req.dns = vec!["nameserver 192.0.2.53".into()];
    req.storages = vec![ephemeral(&mp)];
    req.sandbox_pidns = true;
    for round in 0..2 {
        create(&agent, &req)
            .await
            .unwrap_or_else(|e| panic!("CreateSandbox round {round}: {e:?}"));
        let info = agent.mountinfo();
        assert!(mounted(&info, &mp), "storage mounted");
        assert!(mounted(&info, "/etc/resolv.conf"), "resolv.conf bound");
        let pid = agent.pid().to_string();
        let host = Command::new("nsenter")
            .args([
                "-t",
                &pid,
                "-u",
                "-m",
                "cat",
                "/proc/sys/kernel/hostname",
                "/etc/resolv.conf",
            ])
            .output()
            .expect("nsenter");
        let text = String::from_utf8_lossy(&host.stdout);
        assert!(
            text.contains("kata-test-host") && text.contains("nameserver 192.0.2.53"),
            "{text}"
        );
        let pause = children_in_other_pidns(agent.pid());
        assert_eq!(pause.len(), 1, "one pause process in its own PID namespace");

        let again = create(&agent, &req)
            .await
            .expect_err("a second CreateSandbox must fail");
        assert!(format!("{again:?}").contains("already exists"), "{again:?}");

        destroy(&agent).await;
        let info = agent.mountinfo();
        assert!(
            !mounted(&info, &mp),
            "storage unmounted after DestroySandbox"
        );
        assert!(!mounted(&info, "/etc/resolv.conf"), "resolv.conf unbound");
        assert!(
            children_in_other_pidns(agent.pid()).is_empty(),
            "pause process gone"
        );
        assert!(
            !Path::new(&format!("/proc/{}", pause[0])).exists(),
            "pause reaped"
        );
    }
}

#[tokio::test]
async fn failed_create_leaves_nothing_and_the_next_create_works() {
    test_support::require_root!();
    let _dns = SANDBOX_DNS_FILE.lock().await;
    let agent = TestAgent::start_isolated("").await;
    let good = test_dir("fail-good");
    let mut bad_bind = Storage::new();
    bad_bind.driver = "bind".into();
    bad_bind.source = "/no/such/source".into();
    bad_bind.mount_point = test_dir("fail-bad");
    let mut req = CreateSandboxRequest::new();
    req.dns = vec!["nameserver 192.0.2.1".into()];
    req.storages = vec![ephemeral(&good), bad_bind];
    req.sandbox_pidns = true;
    let err = create(&agent, &req)
        .await
        .expect_err("the bind source is missing");
    assert!(format!("{err:?}").contains("/no/such/source"), "{err:?}");
    let info = agent.mountinfo();
    assert!(
        !mounted(&info, &good) && !mounted(&info, "/etc/resolv.conf"),
        "{info}"
    );
    assert!(children_in_other_pidns(agent.pid()).is_empty());

    req.storages.truncate(1);
    create(&agent, &req)
        .await
        .expect("CreateSandbox after a failed one");
    destroy(&agent).await;
    assert!(!mounted(&agent.mountinfo(), &good));
}

#[tokio::test]
async fn bad_requests_are_refused_by_name() {
    test_support::require_root!();
    let agent = TestAgent::start_isolated("").await;
    let mut req = CreateSandboxRequest::new();
    req.storages = vec![ephemeral("/etc/evil")];
    let err = create(&agent, &req)
        .await
        .expect_err("mount point outside the root");
    assert!(format!("{err:?}").contains("/etc/evil"), "{err:?}");
    let mut req = CreateSandboxRequest::new();
    req.hostname = "a/b".into();
    let err = create(&agent, &req).await.expect_err("bad hostname");
    assert!(format!("{err:?}").contains("INVALID_ARGUMENT"), "{err:?}");
    let mut req = CreateSandboxRequest::new();
    let mut m = protocols::agent::KernelModule::new();
    m.name = "kata_no_such_module_xyz".into();
    req.kernel_modules = vec![m];
    let err = create(&agent, &req)
        .await
        .expect_err("missing kernel module");
    assert!(
        format!("{err:?}").contains("kata_no_such_module_xyz"),
        "{err:?}"
    );
}

/// The agent dies with SIGKILL while the sandbox exists (its storage stays
/// mounted); a new agent on the same machine must create the sandbox again
/// and leave nothing behind at the end. Runs in the host mount namespace so
/// the stale mount outlives the first agent, as on a real guest.
#[tokio::test]
async fn create_after_a_killed_agent_works() {
    test_support::require_root!();
    let mp = test_dir("killed");
    let mut req = CreateSandboxRequest::new();
    req.sandbox_id = "sb-killed".into();
    req.storages = vec![ephemeral(&mp)];
    req.sandbox_pidns = true;

    let mut first = TestAgent::start("").await;
    create(&first, &req).await.expect("first CreateSandbox");
    let pause = children_in_other_pidns(first.pid());
    assert_eq!(pause.len(), 1);
    first.kill9();
    // The killed agent's storage stays mounted until an agent starts (which
    // may be another test's: each undoes what dead agents recorded).

    // The pause process: gone or a zombie; bounded, generously: every test of the binary runs
    // at once and the machine may be busy.
    let pause_stat = || std::fs::read_to_string(format!("/proc/{}/stat", pause[0]));
    for _ in 0..500 {
        match pause_stat() {
            Ok(stat) if !stat.contains(") Z") => {}
            _ => break,
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stat = pause_stat().unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the pause process died with its agent: {stat}"
    );

    let second = TestAgent::start("").await;
    let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounted(&host, &mp),
        "a new agent undoes the killed agent's storage mount at start-up"
    );
    create(&second, &req)
        .await
        .expect("CreateSandbox after a killed agent");
    let count = |s: &str| {
        s.lines()
            .filter(|l| l.split(' ').nth(4) == Some(mp.as_str()))
            .count()
    };
    let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert_eq!(count(&host), 1, "the stale mount was replaced, not stacked");
    destroy(&second).await;
    let host = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert_eq!(count(&host), 0, "nothing left after DestroySandbox");
    assert!(!Path::new(&mp).exists());
}

#[tokio::test]
async fn update_ephemeral_mounts_resizes_the_tmpfs() {
    test_support::require_root!();
    let agent = TestAgent::start_isolated("").await;
    let mp = test_dir("resize");
    let mut req = CreateSandboxRequest::new();
    req.storages = vec![ephemeral(&mp)];
    create(&agent, &req).await.expect("CreateSandbox");
    let size_of = |info: &str| {
        info.lines()
            .find(|l| l.split(' ').nth(4) == Some(mp.as_str()))
            .and_then(|l| l.split(' ').next_back().map(str::to_string))
            .unwrap_or_default()
    };
    assert!(
        size_of(&agent.mountinfo()).contains("size=1024k"),
        "{}",
        agent.mountinfo()
    );
    let mut bigger = ephemeral(&mp);
    bigger.options = vec!["size=2m".into()];
    let mut up = protocols::agent::UpdateEphemeralMountsRequest::new();
    up.storages = vec![bigger];
    agent
        .client
        .agent
        .update_ephemeral_mounts(context(10), &up)
        .await
        .expect("UpdateEphemeralMounts");
    assert!(
        size_of(&agent.mountinfo()).contains("size=2048k"),
        "{}",
        agent.mountinfo()
    );

    let mut not_ephemeral = ephemeral(&mp);
    not_ephemeral.driver = "bind".into();
    up.storages = vec![not_ephemeral];
    let err = agent
        .client
        .agent
        .update_ephemeral_mounts(context(10), &up)
        .await
        .expect_err("bind");
    assert!(format!("{err:?}").contains("INVALID_ARGUMENT"), "{err:?}");
    destroy(&agent).await;
    assert!(!mounted(&agent.mountinfo(), &mp));
}
