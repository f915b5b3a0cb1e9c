//! Helpers shared by the cgroup tests: a unique test cgroup path, a child
//! process that waits for "go" (so it runs its real work only once it is in
//! the cgroup), and running a test inside a private mount namespace.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// A cgroup path for this test. v1: below the test process's own memory
/// cgroup, so the test's processes stay inside whatever the machine put us
/// in. v2: at the root, because a v2 cgroup that holds processes (ours)
/// cannot hand controllers to children.
pub fn test_cgroup_path(name: &str, v2: bool) -> String {
    if v2 {
        return format!("kata-agent-test-{name}-{}", std::process::id());
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut parent = String::new();
    for line in own.lines() {
        let f: Vec<&str> = line.splitn(3, ':').collect();
        if f.len() != 3 {
            continue;
        }
        if f[1].split(',').any(|c| c == "memory") {
            parent = f[2].to_string();
            break;
        }
    }
    let leaf = format!("kata-agent-test-{name}-{}", std::process::id());
    match parent.trim_matches('/') {
        "" => leaf,
        p => format!("{p}/{leaf}"),
    }
}

/// A `sh` child that blocks reading a line, then `exec`s `then`.
pub struct Waiting {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Waiting {
    pub fn spawn(then: &str) -> Waiting {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read go; exec {then}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning sh");
        let stdin = child.stdin.take();
        Waiting { child, stdin }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Let it run its command.
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().expect("go() called twice");
        stdin.write_all(b"go\n").expect("writing go");
    }

    /// Wait for it to end; the signal that ended it, if any.
    pub fn wait_signal(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.child.wait().expect("waiting for the child").signal()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        // Bounded: a child in a still-frozen cgroup cannot die yet.
        let _ = self.child.kill();
        for _ in 0..100 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Removes a test cgroup when the test ends, also when it fails: thaws it,
/// kills what is left in it, then removes it and the parent directories the
/// test created in every hierarchy (rmdir only ever removes empty cgroups).
pub struct Cleanup {
    pub path: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let roots = hierarchy_roots();
        for root in &roots {
            let dir = root.join(&self.path);
            let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
            let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
            for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut p = Some(Path::new(&self.path));
        while let Some(rel) = p.filter(|r| !r.as_os_str().is_empty()) {
            for root in &roots {
                let _ = std::fs::remove_dir(root.join(rel));
            }
            p = rel.parent();
        }
    }
}

/// /sys/fs/cgroup itself (v2) or each v1 hierarchy mounted below it.
fn hierarchy_roots() -> Vec<std::path::PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    std::fs::read_dir(base)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

pub fn read_trim(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Run test `inner` of module `module` (its `module_path!()`) of this test
/// binary in a new private mount namespace (with KATA_CGROUP_TEST_NS=1 so
/// it knows); panics with its output if it fails.
pub fn run_in_mount_namespace(module: &str, inner: &str) {
    // libtest names a test by its path without the crate's name.
    let inner = &match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{inner}"),
        None => inner.to_string(),
    };
    let exe = std::env::current_exe().expect("current test binary");
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(exe)
        .args([
            "--exact",
            inner,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KATA_CGROUP_TEST_NS", "1")
        .output()
        .expect("running unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- {inner} in a private mount namespace ---\n{text}");
    assert!(out.status.success(), "{inner} failed in its namespace");
    assert!(text.contains("1 passed"), "{inner} did not run");
}

/// The inner half of `run_in_mount_namespace`: false (with the reason) when
/// not started by it. Not a skip that can fail: the inner tests are
/// `#[ignore]`d, their outer test runs them.
pub fn in_test_namespace() -> bool {
    if std::env::var_os("KATA_CGROUP_TEST_NS").is_none() {
        crate::skip::not_applicable(
            "runs only inside the private mount namespace its outer test creates",
        );
        return false;
    }
    true
}

/// Replace /sys/fs/cgroup in this (private) mount namespace.
pub fn detach_sys_fs_cgroup() {
    nix::mount::umount2("/sys/fs/cgroup", nix::mount::MntFlags::MNT_DETACH)
        .expect("detaching /sys/fs/cgroup in the private namespace");
}
