//! Shared harness for the agent's integration tests: start a stand-alone
//! agent on a unix socket in a temp dir, connect the real client, stop the
//! agent when the test ends (also when it fails).
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent_ctl::AgentClient;

pub struct TestAgent {
    child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub client: AgentClient,
}

impl TestAgent {
    /// Start `kata-agent` with `cmdline` as its kernel command line.
    pub async fn start(cmdline: &str) -> TestAgent {
        Self::start_with_env(cmdline, &[]).await
    }

    pub async fn start_with_env(cmdline: &str, env: &[(&str, &str)]) -> TestAgent {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let socket = dir.path().join("agent.sock");
        let addr = format!("unix://{}", socket.display());
        let cmdline_file = dir.path().join("cmdline");
        fs::write(&cmdline_file, cmdline).expect("writing the test cmdline");
        let log = dir.path().join("agent.log");
        let log_file = fs::File::create(&log).expect("creating the agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_kata-agent"))
            .arg("--cmdline")
            .arg(&cmdline_file)
            .env("KATA_AGENT_SERVER_ADDR", &addr)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawning kata-agent");
        let client = match agent_ctl::connect(&addr, Duration::from_secs(20)).await {
            Ok(c) => c,
            Err(e) => panic!(
                "agent did not come up: {e:#}\nlog:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        TestAgent {
            child,
            dir,
            addr,
            socket,
            log,
            client,
        }
    }

    /// A fresh connection to the same agent (for concurrency tests).
    pub async fn connect(&self) -> AgentClient {
        agent_ctl::connect(&self.addr, Duration::from_secs(10))
            .await
            .expect("connecting a second client")
    }

    /// The agent process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        // SIGTERM first so the agent tidies up (removes its socket), then make sure.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..50 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip (with a printed reason) unless running as root; CI runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            eprintln!(
                "SKIPPED: this test needs root (namespaces, mounts, cgroups); CI runs it as root"
            );
            return;
        }
    };
}

/// A minimal busybox rootfs under `dir`: Debian's busybox-static as
/// /bin/busybox plus one symlink per applet. None (with the reason printed)
/// when busybox-static is not installed.
pub fn busybox_rootfs(dir: &Path) -> Option<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        eprintln!("busybox-static is not installed (apt-get install busybox-static)");
        return None;
    }
    let root = dir.join("rootfs");
    for d in [
        "bin", "sbin", "usr/bin", "proc", "sys", "dev", "tmp", "etc", "root",
    ] {
        fs::create_dir_all(root.join(d)).expect("creating rootfs dirs");
    }
    fs::copy(busybox, root.join("bin/busybox")).expect("copying busybox");
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link).expect("creating applet link");
        }
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("writing passwd");
    fs::write(root.join("etc/group"), "root:x:0:\n").expect("writing group");
    Some(root)
}
