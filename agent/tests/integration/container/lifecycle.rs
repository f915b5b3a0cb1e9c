//! The container life cycle through the agent's ttRPC API, with a busybox
//! rootfs: create, start, output, exec, stdin, tty, signals, remove. Needs
//! root (namespaces, mounts, cgroups); CI runs as root.

use std::time::Duration;

use test_support::TestAgent;
use test_support::{container as cu, spec};

#[tokio::test]
async fn echo_hello_then_wait_zero_and_remove_leaves_nothing() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("echo");
    cu::create(c, &id, spec::container(&id, &rootfs, &["echo", "hello"]))
        .await
        .expect("create");
    assert!(
        cu::bundle_dir(&id).join("config.json").exists(),
        "config.json in the bundle"
    );
    assert!(
        !cu::cgroup_dirs(&id).is_empty(),
        "the container has a cgroup"
    );
    cu::start(c, &id).await.expect("start");
    assert_eq!(cu::read_all(c, &id, "", false).await, "hello\n");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 0);
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn create_parks_the_process_until_start() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("parked");
    let marker = rootfs.join("started-marker");
    cu::create(
        c,
        &id,
        spec::container(&id, &rootfs, &["touch", "/started-marker"]),
    )
    .await
    .expect("create");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.exists(), "the process ran before StartContainer");
    cu::start(c, &id).await.expect("start");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 0);
    assert!(
        marker.exists(),
        "the process did not run after StartContainer"
    );
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn exec_into_a_running_container_sees_its_namespaces() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("exec");
    cu::create(c, &id, spec::container(&id, &rootfs, &["sleep", "30"]))
        .await
        .expect("create");
    cu::start(c, &id).await.expect("start");
    // Same hostname (uts ns), same pid ns (its init is pid 1 and is sleep).
    let p = spec::process(&[
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo err >&2",
    ]);
    cu::exec(c, &id, "e1", p).await.expect("exec");
    assert_eq!(
        cu::read_all(c, &id, "e1", false).await,
        "kata-test\nsleep 30 \n"
    );
    assert_eq!(cu::read_all(c, &id, "e1", true).await, "err\n");
    assert_eq!(cu::wait(c, &id, "e1").await.expect("wait exec"), 0);
    // A failing exec reports its status too.
    cu::exec(c, &id, "e2", spec::process(&["sh", "-c", "exit 3"]))
        .await
        .expect("exec 2");
    assert_eq!(cu::wait(c, &id, "e2").await.expect("wait exec 2"), 3);
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn stdin_round_trip_through_cat() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("cat");
    cu::create(c, &id, spec::container(&id, &rootfs, &["cat"]))
        .await
        .expect("create");
    cu::start(c, &id).await.expect("start");
    assert_eq!(
        cu::write_stdin(c, &id, "", b"ping\n").await.expect("write"),
        5
    );
    let first = cu::read_once(c, &id, "", false).await.expect("echoed data");
    assert_eq!(first, b"ping\n");
    cu::write_stdin(c, &id, "", b"pong\n")
        .await
        .expect("write 2");
    cu::close_stdin(c, &id, "").await.expect("close stdin");
    assert_eq!(cu::read_all(c, &id, "", false).await, "pong\n");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 0);
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn a_terminal_process_gets_a_pty_that_resizes() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("tty");
    let mut spec = spec::container(
        &id,
        &rootfs,
        &["sh", "-c", "test -t 0 && echo is-a-tty; stty size"],
    );
    spec.Process.as_mut().expect("process").Terminal = true;
    cu::create(c, &id, spec).await.expect("create");
    let mut req = protocols::agent::TtyWinResizeRequest::new();
    req.container_id = id.clone();
    req.row = 40;
    req.column = 100;
    c.agent
        .tty_win_resize(agent_ctl::context(10), &req)
        .await
        .expect("resize");
    cu::start(c, &id).await.expect("start");
    let out = cu::read_all(c, &id, "", false).await;
    assert!(out.contains("is-a-tty"), "output: {out:?}");
    assert!(out.contains("40 100"), "output: {out:?}");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 0);
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn sigkill_gives_137_and_sigterm_stops_an_init_without_handler() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("kill");
    cu::create(c, &id, spec::container(&id, &rootfs, &["sleep", "30"]))
        .await
        .expect("create");
    cu::start(c, &id).await.expect("start");
    cu::signal(c, &id, "", 9).await.expect("signal");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 137);
    cu::remove(c, &id).await.expect("remove");

    let id2 = cu::cid("term");
    cu::create(c, &id2, spec::container(&id2, &rootfs, &["sleep", "30"]))
        .await
        .expect("create 2");
    cu::start(c, &id2).await.expect("start 2");
    cu::signal(c, &id2, "", 15).await.expect("signal 2");
    assert_eq!(cu::wait(c, &id2, "").await.expect("wait 2"), 137);
    cu::remove(c, &id2).await.expect("remove 2");
    cu::assert_gone(agent.pid(), &id);
    cu::assert_gone(agent.pid(), &id2);
}

#[tokio::test]
async fn remove_kills_a_running_container_and_a_second_remove_is_not_found() {
    test_support::setup!(dir, rootfs);
    let mut agent = TestAgent::start("").await;
    let id = cu::cid("rm");
    {
        let c = &agent.client;
        cu::create(c, &id, spec::container(&id, &rootfs, &["sleep", "30"]))
            .await
            .expect("create");
        cu::start(c, &id).await.expect("start");
        cu::exec(c, &id, "bg", spec::process(&["sleep", "30"]))
            .await
            .expect("exec");
        cu::remove(c, &id).await.expect("remove");
        let err = cu::remove(c, &id).await.expect_err("second remove");
        assert_eq!(
            test_support::rpc::code(&err),
            ttrpc::Code::NOT_FOUND,
            "{err:?}"
        );
    }
    assert!(agent.is_running(), "the agent died");
    cu::assert_gone(agent.pid(), &id);
    assert_eq!(cu::children(agent.pid()).1, 0, "zombies left");
}

#[tokio::test]
async fn a_missing_executable_fails_at_start() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("noexe");
    cu::create(c, &id, spec::container(&id, &rootfs, &["/no/such/binary"]))
        .await
        .expect("create");
    let err = cu::start(c, &id).await.expect_err("start must fail");
    assert!(format!("{err:?}").contains("/no/such/binary"), "{err:?}");
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
}

fn hook(out: &std::path::Path) -> protocols::oci::Hook {
    let mut h = protocols::oci::Hook::new();
    h.Path = "/bin/sh".into();
    h.Args = vec!["sh".into(), "-c".into(), format!("cat > {}", out.display())];
    h.Timeout = 10;
    h
}

#[tokio::test]
async fn hooks_see_the_state_and_sysctls_apply_in_the_container() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("hooks");
    let mut spec = spec::container(&id, &rootfs, &["cat", "/proc/sys/kernel/shmmni"]);
    let mut hooks = protocols::oci::Hooks::new();
    let (created, started, stopped) = (
        dir.path().join("created.json"),
        dir.path().join("started.json"),
        dir.path().join("stopped.json"),
    );
    hooks.CreateRuntime = vec![hook(&created)];
    hooks.Poststart = vec![hook(&started)];
    hooks.Poststop = vec![hook(&stopped)];
    spec.Hooks = Some(hooks).into();
    // kernel.shmmni belongs to the ipc namespace: the host's stays as it is.
    spec.Linux
        .as_mut()
        .expect("linux")
        .Sysctl
        .insert("kernel.shmmni".into(), "1234".into());
    cu::create(c, &id, spec).await.expect("create");
    let state = std::fs::read_to_string(&created).expect("createRuntime hook ran");
    assert!(
        state.contains(&format!("\"id\":\"{id}\"")) && state.contains("\"status\":\"created\""),
        "{state}"
    );
    cu::start(c, &id).await.expect("start");
    assert_eq!(cu::read_all(c, &id, "", false).await, "1234\n");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 0);
    let state = std::fs::read_to_string(&started).expect("poststart hook ran");
    assert!(state.contains("\"status\":\"running\""), "{state}");
    assert!(!stopped.exists());
    cu::remove(c, &id).await.expect("remove");
    let state = std::fs::read_to_string(&stopped).expect("poststop hook ran");
    assert!(state.contains("\"status\":\"stopped\""), "{state}");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .expect("host shmmni")
            .trim(),
        "1234"
    );
    cu::assert_gone(agent.pid(), &id);
}

#[tokio::test]
async fn concurrent_life_cycles_on_separate_connections() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let client = agent.connect().await;
        let rootfs = rootfs.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("{}-{i}", cu::cid("conc"));
            let word = format!("word{i}");
            cu::create(
                &client,
                &id,
                spec::container(&id, &rootfs, &["echo", &word]),
            )
            .await
            .expect("create");
            cu::start(&client, &id).await.expect("start");
            assert_eq!(
                cu::read_all(&client, &id, "", false).await,
                format!("{word}\n")
            );
            assert_eq!(cu::wait(&client, &id, "").await.expect("wait"), 0);
            cu::remove(&client, &id).await.expect("remove");
            id
        }));
    }
    for t in tasks {
        let id = t.await.expect("task");
        cu::assert_gone(agent.pid(), &id);
    }
    assert_eq!(cu::children(agent.pid()), (0, 0), "processes left behind");
}

#[tokio::test]
async fn without_a_pid_namespace_remove_kills_and_reaps_every_process() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let id = cu::cid("sharedpid");
    let mut spec = spec::container(
        &id,
        &rootfs,
        &["sh", "-c", "sleep 30 & sleep 30 & echo started; wait"],
    );
    spec.Linux
        .as_mut()
        .expect("linux")
        .Namespaces
        .retain(|n| n.Type != "pid");
    cu::create(c, &id, spec).await.expect("create");
    cu::start(c, &id).await.expect("start");
    assert_eq!(
        cu::read_once(c, &id, "", false).await.expect("output"),
        b"started\n"
    );
    // SIGTERM to the container (exec id ""): sh has no SIGTERM handler, so
    // (as in Kata) it becomes SIGKILL; the sleeps are signalled through the
    // cgroup, and the orphans are reaped by the agent (a subreaper).
    cu::signal(c, &id, "", 15).await.expect("signal");
    assert_eq!(cu::wait(c, &id, "").await.expect("wait"), 137);
    cu::remove(c, &id).await.expect("remove");
    cu::assert_gone(agent.pid(), &id);
    // Orphans are reaped as their SIGCHLD arrives; give them a moment.
    for _ in 0..50 {
        if cu::children(agent.pid()) == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cu::children(agent.pid()), (0, 0), "processes left behind");
}
