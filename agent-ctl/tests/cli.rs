//! The `agent-ctl` command line: exit status and message of each case that
//! needs no agent (nothing listens at the addresses used here).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn agent_ctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent-ctl"));
    c.env_remove("AGENT_CTL_SERVER_ADDRESS");
    c.stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = agent_ctl().args(args).output().expect("running agent-ctl");
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An address where nothing listens: connecting fails until the timeout.
fn dead_address(dir: &tempfile::TempDir) -> String {
    format!("unix://{}", dir.path().join("nobody.sock").display())
}

#[test]
fn list_needs_no_address() {
    let (out, _) = run(&["list"]);
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    let names = String::from_utf8_lossy(&out.stdout);
    assert_eq!(names.lines().next(), Some("Check"));
    assert!(names.lines().any(|l| l == "CreateContainer"), "{names}");
}

/// `agent-ctl list | head -1`: the reader is gone before agent-ctl writes.
/// It used to panic ("failed printing to stdout: Broken pipe", status 101).
#[test]
fn list_into_a_closed_pipe_exits_cleanly() {
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    drop(read_end); // every write now fails with EPIPE
    let out = agent_ctl()
        .arg("list")
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("running agent-ctl");
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    assert_eq!(stderr(&out), "", "nothing to say about a closed pipe");
}

#[test]
fn an_rpc_without_an_address_is_a_usage_error() {
    let (out, _) = run(&["Check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("calling Check needs --server-address"),
        "{err}"
    );
}

/// `agent-ctl --server-address ADDR --timeout 30 ARGS...` fails at once
/// (status 1, `expected` in the message) without trying to connect.
fn fails_before_connecting(addr: &str, args: &[&str], expected: &str) {
    let (out, took) = run(&[&["--server-address", addr, "--timeout", "30"], args].concat());
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let err = stderr(&out);
    assert!(err.contains(expected), "{args:?}: {err}");
    assert!(
        !err.contains("connecting"),
        "{args:?} tried to connect: {err}"
    );
    assert!(took < Duration::from_secs(10), "{args:?} took {took:?}");
}

/// Bad JSON is reported at once, not after the connect timeout.
#[test]
fn bad_json_is_rejected_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    fails_before_connecting(
        &dead_address(&dir),
        &["GetGuestDetails", "{not json"],
        "GetGuestDetails: request is not a valid GuestDetailsRequest in JSON",
    );
}

#[test]
fn unknown_rpc_and_bad_address_are_rejected_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    fails_before_connecting(&dead_address(&dir), &["Nope"], "unknown RPC \"Nope\"");
    fails_before_connecting("tcp://1.2.3.4:1", &["Check"], "expected unix:///path");
}

/// `--timeout` bounds the connection attempts.
#[test]
fn timeout_bounds_the_connect_wait() {
    let dir = tempfile::tempdir().unwrap();
    let addr = dead_address(&dir);
    let (out, took) = run(&["--server-address", &addr, "--timeout", "1", "Check"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("gave up after 1s"), "{err}");
    assert!(err.contains("nobody.sock"), "{err}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "took {took:?}"
    );
}
