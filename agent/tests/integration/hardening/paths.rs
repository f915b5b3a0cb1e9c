//! Issue 12, finding 1: no escape through the shared area. CopyFile writes
//! only below /run/kata-containers/shared/containers/ (as Kata's agent: its
//! bats test "Copy a file to an unallowed destination beneath
//! /run/kata-containers", tests/functional/kata-agent-apis/api-tests/
//! test_copy_file.bats), and the bundle is made without following links.
//! Needs root; CI runs as root.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use protocols::agent::CopyFileRequest;
use test_support::container as cu;
use test_support::rpc::code;
use test_support::TestAgent;

fn symlink_req(path: &str, target: &str) -> CopyFileRequest {
    let mut r = CopyFileRequest::new();
    r.path = path.into();
    r.file_mode = 0o120777;
    r.data = target.as_bytes().to_vec();
    r.file_size = r.data.len() as i64;
    r.uid = -1;
    r.gid = -1;
    r
}

#[tokio::test]
async fn copy_file_beside_the_containers_dir_is_refused() {
    test_support::require_root!();
    let agent = TestAgent::start_isolated("").await;
    let outside = test_support::tempdir();
    let name = format!("hardening-{}", std::process::id());
    let path = format!("/run/kata-containers/shared/{name}");
    let target = outside.path().display().to_string();
    let err = agent
        .client
        .agent
        .copy_file(agent_ctl::context(10), &symlink_req(&path, &target))
        .await
        .expect_err("a symlink in /run/kata-containers/shared must be refused");
    assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert!(
        format!("{err:?}").contains("/run/kata-containers/shared/containers"),
        "{err:?}"
    );
    let left = fs::symlink_metadata(&path).is_ok();
    let _ = fs::remove_file(&path);
    assert!(!left, "{path} was created");
}

#[tokio::test]
async fn a_container_id_naming_the_shared_area_is_refused() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start_isolated("").await;
    for id in ["shared", "sandbox"] {
        let existed = Path::new("/run/kata-containers").join(id).exists();
        let err = cu::create(
            &agent.client,
            id,
            test_support::spec::container(id, &rootfs, &["true"]),
        )
        .await
        .expect_err("the id of an agent area must be refused");
        assert_eq!(code(&err), ttrpc::Code::INVALID_ARGUMENT, "{id}: {err:?}");
        let config = Path::new("/run/kata-containers")
            .join(id)
            .join("config.json");
        assert!(!config.exists(), "{} was written", config.display());
        if !existed {
            let _ = fs::remove_dir(Path::new("/run/kata-containers").join(id));
        }
    }
}

/// The brief's reproduction with the links planted directly (CopyFile can
/// no longer plant them): before the fix the agent wrote config.json
/// through the link and bind-mounted the rootfs onto the outside dir.
#[tokio::test]
async fn the_bundle_never_follows_a_planted_symlink() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start_isolated("").await;
    let outside = test_support::tempdir();
    let victim = outside.path().join("victim");
    fs::write(&victim, "untouched").expect("victim");
    let victim_dir = outside.path().join("dir");
    fs::create_dir(&victim_dir).expect("victim dir");

    // A planted config.json link, and a planted rootfs link.
    for (entry, target) in [("config.json", &victim), ("rootfs", &victim_dir)] {
        let id = cu::cid(&format!("planted-{}", entry.replace('.', "-")));
        let bundle = cu::bundle_dir(&id);
        fs::create_dir_all(&bundle).expect("bundle");
        symlink(target, bundle.join(entry)).expect("plant");
        let r = cu::create(
            &agent.client,
            &id,
            test_support::spec::container(&id, &rootfs, &["true"]),
        )
        .await;
        let mounted = agent
            .mountinfo()
            .contains(&victim_dir.display().to_string());
        let text = fs::read_to_string(&victim).unwrap_or_default();
        if r.is_ok() {
            let _ = cu::remove(&agent.client, &id).await;
        }
        let _ = fs::remove_file(bundle.join(entry));
        let _ = fs::remove_dir_all(&bundle);
        assert!(r.is_err(), "{entry}: the create must be refused");
        assert_eq!(
            text, "untouched",
            "{entry}: config.json went through the link"
        );
        assert!(
            !mounted,
            "{entry}: the rootfs was mounted on the outside dir"
        );
        assert!(
            fs::read_dir(&victim_dir).expect("dir").next().is_none(),
            "{entry}: something was written to the outside dir"
        );
    }
}
