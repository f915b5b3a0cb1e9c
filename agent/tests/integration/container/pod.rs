//! Containers inside their pod: the namespaces Kata's agent gives them.

use agent_ctl::context;
use protocols::agent::{CreateContainerRequest, CreateSandboxRequest};
use protocols::oci;
use test_support::TestAgent;
use test_support::{container as cu, spec};

/// A spec as Kata's runtime sends it: without a `pid` namespace entry
/// (kata_agent.go handlePidNamespace removes it).
fn kata_spec(id: &str, rootfs: &std::path::Path, script: &str) -> oci::Spec {
    let mut s = spec::container(id, rootfs, &["sh", "-c", script]);
    if let Some(l) = s.Linux.as_mut() {
        l.Namespaces.retain(|n| n.Type != "pid");
    }
    s
}

async fn run(c: &agent_ctl::AgentClient, id: &str, spec: oci::Spec, sandbox_pidns: bool) -> String {
    let mut req = CreateContainerRequest::new();
    req.container_id = id.into();
    req.exec_id = id.into();
    req.sandbox_pidns = sandbox_pidns;
    req.OCI = Some(spec).into();
    c.agent
        .create_container(context(30), &req)
        .await
        .expect("CreateContainer");
    cu::start(c, id).await.expect("start");
    let out = cu::read_all(c, id, id, false).await;
    assert_eq!(cu::wait(c, id, id).await.expect("wait"), 0, "{out}");
    cu::remove(c, id).await.expect("remove");
    out
}

/// SIGKILL the container's init, wait for it, remove the container.
async fn kill_and_remove(c: &agent_ctl::AgentClient, id: &str) {
    cu::signal(c, id, "", 9).await.expect("kill");
    cu::wait(c, id, "").await.expect("wait init");
    cu::remove(c, id).await.expect("remove");
}

/// Kata's agent adds a new PID namespace to every container whose spec has
/// none (src/agent/src/rpc.rs update_container_namespaces), the sandbox's
/// when sandbox_pidns is set, and points IPC and UTS at the pod's shared
/// ones (sandbox.rs setup_shared_namespaces).
#[tokio::test]
async fn containers_get_their_pid_namespace_and_share_ipc_and_uts() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let mut sb = CreateSandboxRequest::new();
    sb.sandbox_pidns = true;
    sb.hostname = "pod-host".into();
    c.agent
        .create_sandbox(context(20), &sb)
        .await
        .expect("CreateSandbox");

    let script = "echo $$; for n in ipc uts pid; do readlink /proc/self/ns/$n; done";
    let a = cu::cid("ns-a");
    let own = run(c, &a, kata_spec(&a, &rootfs, script), false).await;
    let own: Vec<&str> = own.lines().collect();
    assert_eq!(
        own.first(),
        Some(&"1"),
        "a PID namespace of its own: {own:?}"
    );

    let b = cu::cid("ns-b");
    let shared = run(c, &b, kata_spec(&b, &rootfs, script), true).await;
    let shared: Vec<&str> = shared.lines().collect();
    assert_ne!(
        shared.first(),
        Some(&"1"),
        "the pause process is 1: {shared:?}"
    );
    assert_ne!(own.get(3), shared.get(3), "different PID namespaces");

    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").expect("readlink");
    assert_eq!(own.get(1), shared.get(1), "one IPC namespace for the pod");
    assert_eq!(own.get(2), shared.get(2), "one UTS namespace for the pod");
    assert_ne!(
        own.get(1).copied(),
        host_ipc.to_str(),
        "the pod's IPC namespace is not the agent's"
    );
}

/// `kubectl exec sh -c 'x &'`: the exec'd shell exits while its background
/// child keeps the stdout pipe open. Kata's agent answers a pending or later
/// ReadStdout with EOF at most 500 ms after the exit (src/agent/src/rpc.rs
/// do_read_stream, term_exit_notifier); without that the runtime's copy
/// loop, and kubectl with it, hangs until the child ends.
#[tokio::test]
async fn exec_read_ends_when_the_process_exits_despite_a_background_child() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("bg-exec");
    cu::create(c, &id, spec::container(&id, &rootfs, &["sleep", "60"]))
        .await
        .expect("create");
    cu::start(c, &id).await.expect("start");
    let script = "sleep 30 & echo started";
    cu::exec(c, &id, "bg", spec::process(&["sh", "-c", script]))
        .await
        .expect("exec");
    let start = std::time::Instant::now();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(8),
        cu::read_all(c, &id, "bg", false),
    )
    .await
    .expect("ReadStdout must reach EOF although `sleep 30` holds the pipe");
    assert_eq!(out, "started\n");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(cu::wait(c, &id, "bg").await.expect("wait"), 0);
    kill_and_remove(c, &id).await;
}

/// A process whose environment has no HOME gets its user's home from the
/// container's /etc/passwd, else "/" (Kata's agent:
/// src/agent/rustjail/src/container.rs, HOME_ENV_KEY). The busybox rootfs
/// has root with /root; uid 1234 has no entry.
#[tokio::test]
async fn home_comes_from_the_container_passwd_else_slash() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    for (uid, want) in [(0, "/root\n"), (1234, "/\n")] {
        let id = cu::cid(&format!("home-{uid}"));
        let mut s = spec::container(&id, &rootfs, &["sh", "-c", "echo $HOME"]);
        if let Some(p) = s.Process.as_mut() {
            p.Env.retain(|e| !e.starts_with("HOME="));
            if let Some(u) = p.User.as_mut() {
                u.UID = uid;
            }
        }
        assert_eq!(run(c, &id, s, false).await, want, "uid {uid}");
    }
}

/// A non-root process opens its stdout by path (`echo > /dev/stdout`, what
/// nginx and many images do): its pipes are its user's, as Kata's rustjail
/// makes them (container.rs set_stdio_permissions).
#[tokio::test]
async fn a_non_root_process_can_open_its_stdout_by_path() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("stdio-user");
    let mut s = spec::container(
        &id,
        &rootfs,
        &["sh", "-c", "echo by-path > /proc/self/fd/1"],
    );
    if let Some(u) = s.Process.as_mut().and_then(|p| p.User.as_mut()) {
        u.UID = 1234;
        u.GID = 1234;
    }
    assert_eq!(run(c, &id, s, false).await, "by-path\n");
}

/// SignalProcess(SIGKILL) with an empty exec id kills every process of the
/// container's cgroup, even after its init exited (Kata's agent:
/// src/agent/src/rpc.rs do_signal_process: freeze, kill all, thaw). In the
/// sandbox PID namespace the init's exit leaves its background child alive.
#[tokio::test]
async fn sigkill_to_the_container_kills_its_whole_cgroup_after_the_init_exited() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let mut sb = CreateSandboxRequest::new();
    sb.sandbox_pidns = true;
    c.agent
        .create_sandbox(context(20), &sb)
        .await
        .expect("CreateSandbox");
    let id = cu::cid("kill-all");
    let mut req = CreateContainerRequest::new();
    req.container_id = id.clone();
    req.exec_id = id.clone();
    req.sandbox_pidns = true;
    req.OCI = Some(kata_spec(
        &id,
        &rootfs,
        "sleep 100 >/dev/null 2>&1 & echo bg",
    ))
    .into();
    c.agent
        .create_container(context(30), &req)
        .await
        .expect("CreateContainer");
    cu::start(c, &id).await.expect("start");
    assert_eq!(cu::read_all(c, &id, &id, false).await, "bg\n");
    assert_eq!(cu::wait(c, &id, &id).await.expect("wait"), 0);
    let procs = |id: &str| -> usize {
        cu::cgroup_dirs(id)
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|t| t.lines().count())
            .max()
            .unwrap_or(0)
    };
    assert!(procs(&id) > 0, "the background sleep is in the cgroup");
    cu::signal(c, &id, "", 9)
        .await
        .expect("SIGKILL to the container");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while procs(&id) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cgroup still has processes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cu::remove(c, &id).await.expect("remove");
}

/// An exec runs as the user its own request names, whatever the
/// container's: `kubectl exec` as root into a container whose process runs
/// as uid 1000 (Kata's agent: src/agent/src/rpc.rs do_exec_process builds
/// the process from the request's, rustjail container.rs run -> setid).
#[tokio::test]
async fn an_exec_runs_as_its_own_requests_user() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("exec-user");
    let mut s = spec::container(&id, &rootfs, &["sleep", "60"]);
    if let Some(u) = s.Process.as_mut().and_then(|p| p.User.as_mut()) {
        u.UID = 1000;
        u.GID = 1000;
    }
    cu::create(c, &id, s).await.expect("create");
    cu::start(c, &id).await.expect("start");
    // A pty exec too: its set-up path differs (controlling terminal).
    for (exec_id, uid, gid, tty) in [
        ("as-root", 0, 0, false),
        ("as-other", 1234, 4321, false),
        ("tty-root", 0, 0, true),
    ] {
        let mut p = spec::process(&["sh", "-c", "echo $(id -u) $(id -g)"]);
        p.Terminal = tty;
        if let Some(u) = p.User.as_mut() {
            u.UID = uid;
            u.GID = gid;
        }
        cu::exec(c, &id, exec_id, p).await.expect("exec");
        let out = cu::read_all(c, &id, exec_id, false).await;
        assert_eq!(cu::wait(c, &id, exec_id).await.expect("wait"), 0, "{out}");
        assert_eq!(out.trim_end(), format!("{uid} {gid}"), "exec {exec_id}");
    }
    kill_and_remove(c, &id).await;
}

/// Without a sandbox PID namespace (CreateSandbox without sandbox_pidns,
/// so no pause process holds one), the pod's first container is its infra
/// container: a later container asking for sandbox_pidns joins the first
/// one's PID namespace (Kata's agent: src/agent/src/sandbox.rs
/// update_shared_pidns, rpc.rs update_container_namespaces).
#[tokio::test]
async fn without_a_sandbox_pidns_the_first_container_holds_the_pods() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    c.agent
        .create_sandbox(context(20), &CreateSandboxRequest::new())
        .await
        .expect("CreateSandbox");
    let infra = cu::cid("infra");
    let mut req = CreateContainerRequest::new();
    req.container_id = infra.clone();
    req.exec_id = infra.clone();
    req.OCI = Some(kata_spec(&infra, &rootfs, "exec sleep 60")).into();
    c.agent
        .create_container(context(30), &req)
        .await
        .expect("CreateContainer infra");
    cu::start(c, &infra).await.expect("start infra");

    let b = cu::cid("joins-infra");
    let out = run(c, &b, kata_spec(&b, &rootfs, "cat /proc/1/comm"), true).await;
    assert_eq!(out, "sleep\n", "PID 1 is the first container's process");

    kill_and_remove(c, &infra).await;
}
