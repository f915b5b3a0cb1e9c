//! A stand-alone agent for a test: started on a unix socket in a temp dir,
//! connected through agent-ctl's client, stopped when the test ends (also
//! when it fails).

use std::fs;
use std::path::PathBuf;
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
        Self::spawn(cmdline, env, &[]).await
    }

    /// Start the agent in new network, mount (private propagation) and UTS
    /// namespaces (`unshare`, which execs the agent: same pid), so tests can
    /// change links, routes, mounts and the hostname without touching the
    /// host. Run commands inside with `nsenter -t <pid> -n -m -u`.
    pub async fn start_isolated(cmdline: &str) -> TestAgent {
        Self::spawn(
            cmdline,
            &[],
            &[
                "unshare",
                "--net",
                "--uts",
                "--mount",
                "--propagation",
                "private",
                "--",
            ],
        )
        .await
    }

    /// Start the agent as PID 1 of new PID and mount namespaces, as it runs
    /// as a guest's init.
    pub async fn start_as_pid1(cmdline: &str) -> TestAgent {
        Self::spawn(cmdline, &[], &Self::pid1_wrapper(&[])).await
    }

    /// As `start_as_pid1`, in a new network namespace too (only `lo`, down).
    pub async fn start_as_pid1_isolated(cmdline: &str) -> TestAgent {
        Self::spawn(cmdline, &[], &Self::pid1_wrapper(&["--net"])).await
    }

    /// `unshare` making the agent PID 1 of new PID and mount namespaces
    /// (private propagation), plus `extra` namespaces.
    fn pid1_wrapper<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut w = vec![
            "unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--propagation",
            "private",
        ];
        w.extend_from_slice(extra);
        w.push("--");
        w
    }

    /// Start the agent through `wrapper` (a program that execs its
    /// arguments, e.g. `prlimit --nofile=1024:4096 --`: same pid).
    pub async fn start_wrapped(cmdline: &str, wrapper: &[&str]) -> TestAgent {
        Self::spawn(cmdline, &[], wrapper).await
    }

    async fn spawn(cmdline: &str, env: &[(&str, &str)], wrapper: &[&str]) -> TestAgent {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let socket = dir.path().join("agent.sock");
        let addr = format!("unix://{}", socket.display());
        let cmdline_file = dir.path().join("cmdline");
        fs::write(&cmdline_file, cmdline).expect("writing the test cmdline");
        let log = dir.path().join("agent.log");
        let log_file = fs::File::create(&log).expect("creating the agent log");
        let agent = agent_binary();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(agent);
                c
            }
            None => Command::new(agent),
        };
        let child = command
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

    /// Wait up to `timeout` for the agent process to end on its own; its
    /// exit status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the agent with SIGKILL (no clean-up) and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The agent's mount table (its own mount namespace when isolated).
    pub fn mountinfo(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap_or_default()
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

/// The `kata-agent` binary under test. Cargo builds a package's binaries
/// before its integration tests and benches and puts them two levels above
/// the test executable (`target/<profile>/deps/<test>` next to
/// `target/<profile>/kata-agent`); only those targets get
/// `CARGO_BIN_EXE_kata-agent`, at compile time, and this crate is not one.
/// `KATA_AGENT_BIN` overrides the lookup.
pub fn agent_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("KATA_AGENT_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("locating the test executable");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("kata-agent"))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} does not exist: run the agent's tests through cargo test -p kata-agent \
         (or set KATA_AGENT_BIN)",
        bin.display()
    );
    bin
}
