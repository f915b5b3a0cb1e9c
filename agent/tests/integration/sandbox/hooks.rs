//! Guest hooks: CreateSandbox's guest_hook_path names a directory whose
//! prestart/, poststart/ and poststop/ executables the agent appends to
//! every container's hooks of that stage, in name order, called as
//! `<file name> <stage>` (Kata's agent: src/agent/src/sandbox.rs
//! add_hooks/find_hooks, src/agent/src/rpc.rs append_guest_hooks).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agent_ctl::context;
use protocols::agent::CreateSandboxRequest;
use protocols::oci;
use test_support::TestAgent;
use test_support::{container as cu, spec};

/// An executable script appending "<tag> <its first argument>" to `log`.
fn script(path: &Path, tag: &str, log: &Path) {
    std::fs::write(
        path,
        format!("#!/bin/sh\necho \"{tag} $1\" >> {}\n", log.display()),
    )
    .expect("writing a hook");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test]
async fn guest_hooks_run_after_the_specs_own_hooks_of_each_stage() {
    test_support::setup!(dir, rootfs);
    let hooks = dir.path().join("guest-hooks");
    let log = dir.path().join("hooks.log");
    for stage in ["prestart", "poststart", "poststop"] {
        std::fs::create_dir_all(hooks.join(stage)).expect("mkdir");
    }
    script(&hooks.join("prestart/20-second"), "second", &log);
    script(&hooks.join("prestart/10-first"), "first", &log);
    std::fs::write(hooks.join("prestart/30-not-executable"), "#!/bin/sh\n").expect("write");
    script(&hooks.join("poststart/10-post"), "post", &log);
    script(&hooks.join("poststop/10-stop"), "stop", &log);
    let own = dir.path().join("own-hook");
    script(&own, "own", &log);

    let agent = TestAgent::start("").await;
    let c = &agent.client;
    let mut sb = CreateSandboxRequest::new();
    sb.guest_hook_path = hooks.display().to_string();
    c.agent
        .create_sandbox(context(20), &sb)
        .await
        .expect("CreateSandbox");

    let id = cu::cid("guest-hooks");
    let mut s = spec::container(&id, &rootfs, &["true"]);
    let mut h = oci::Hook::new();
    h.Path = own.display().to_string();
    h.Args = vec!["own-hook".into(), "spec".into()];
    let mut oci_hooks = oci::Hooks::new();
    oci_hooks.Prestart = vec![h];
    s.Hooks = Some(oci_hooks).into();
    cu::create(c, &id, s).await.expect("create");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        read(),
        "own spec\nfirst prestart\nsecond prestart\n",
        "prestart: the spec's hook, then the guest's in name order"
    );
    cu::start(c, &id).await.expect("start");
    assert_eq!(cu::wait(c, &id, &id).await.expect("wait"), 0);
    cu::remove(c, &id).await.expect("remove");
    assert_eq!(
        read(),
        "own spec\nfirst prestart\nsecond prestart\npost poststart\nstop poststop\n"
    );
}
