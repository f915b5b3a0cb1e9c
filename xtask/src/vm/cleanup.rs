//! Everything a VM run starts is owned by a [`Session`]: child processes are
//! stopped and temp dirs removed when it drops (normal return, error, panic)
//! and on Ctrl-C / SIGTERM, through a process-wide registry the signal
//! handler can reach. Children also get `PR_SET_PDEATHSIG`, so a `kill -9` of
//! the xtask does not leave QEMU or a backend behind.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// What the signal handler must clean up: pids of live children, temp dirs.
static LIVE: Mutex<Registry> = Mutex::new(Registry {
    pids: Vec::new(),
    dirs: Vec::new(),
});
static HANDLER: Once = Once::new();

struct Registry {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A poisoned lock only means another thread panicked mid-update: the
    // lists are still usable for cleanup.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Install the Ctrl-C / SIGTERM handler once per process.
fn install_handler() {
    HANDLER.call_once(|| {
        let res = ctrlc::set_handler(|| {
            eprintln!("\ninterrupted: stopping VM processes and removing temp dirs");
            let reg = registry();
            for &pid in &reg.pids {
                // SAFETY: kill(2) on a pid we spawned; no memory is touched.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            for dir in &reg.dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        });
        if let Err(e) = res {
            eprintln!("warning: cannot install the Ctrl-C handler: {e}");
        }
    });
}

/// A named child process owned by a session.
struct Owned {
    name: String,
    child: Child,
}

/// Owns the processes and temp dirs of one VM run.
pub struct Session {
    children: Vec<Owned>,
    dirs: Vec<PathBuf>,
}

impl Session {
    pub fn new() -> Session {
        install_handler();
        Session {
            children: Vec::new(),
            dirs: Vec::new(),
        }
    }

    /// A fresh temp dir, removed with the session. Kept short: it holds Unix
    /// sockets, whose paths must fit in 108 bytes.
    pub fn temp_dir(&mut self, label: &str) -> Result<PathBuf> {
        let dir = std::env::temp_dir().join(format!("kata-{label}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing stale {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        registry().dirs.push(dir.clone());
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// Spawn `cmd` as a child that dies with us.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<u32> {
        // SAFETY: prctl in the forked child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        let pid = child.id();
        registry().pids.push(pid);
        self.children.push(Owned {
            name: name.to_string(),
            child,
        });
        Ok(pid)
    }

    /// Has the named child exited? Returns its status text if so.
    pub fn exited(&mut self, name: &str) -> Option<String> {
        let owned = self.children.iter_mut().find(|o| o.name == name)?;
        match owned.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Wait for the named child to exit by itself (e.g. QEMU in `vm run`).
    pub fn wait(&mut self, name: &str) -> Result<std::process::ExitStatus> {
        let owned = self
            .children
            .iter_mut()
            .find(|o| o.name == name)
            .with_context(|| format!("no child named {name}"))?;
        owned
            .child
            .wait()
            .with_context(|| format!("waiting for {name}"))
    }

    /// Stop one child: SIGTERM, a grace period, then SIGKILL; always reaped.
    fn stop(owned: &mut Owned) {
        let pid = owned.child.id();
        if let Ok(None) = owned.child.try_wait() {
            // SAFETY: signalling our own, not yet reaped, child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if !matches!(owned.child.try_wait(), Ok(None)) {
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = owned.child.try_wait() {
                eprintln!("{} (pid {pid}) ignored SIGTERM: killing it", owned.name);
                let _ = owned.child.kill();
            }
        }
        let _ = owned.child.wait();
        registry().pids.retain(|&p| p != pid);
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Reverse order: QEMU before the backends it uses.
        while let Some(mut owned) = self.children.pop() {
            Session::stop(&mut owned);
        }
        for dir in self.dirs.drain(..) {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if dir.exists() {
                    eprintln!("warning: cannot remove {}: {e}", dir.display());
                }
            }
            registry().dirs.retain(|d| d != &dir);
        }
    }
}

/// Wait until `path` exists (a backend creating its socket), or the child died.
pub fn wait_for_path(
    session: &mut Session,
    child: &str,
    path: &Path,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if let Some(status) = session.exited(child) {
            anyhow::bail!(
                "{child} exited ({status}) before creating {}",
                path.display()
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{child} did not create {} within {timeout:?}",
                path.display()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_stops_children_and_removes_dirs() {
        let dir;
        let pid;
        {
            let mut s = Session::new();
            dir = s.temp_dir("cleanup-test").unwrap();
            std::fs::write(dir.join("f"), b"x").unwrap();
            let mut cmd = Command::new("sleep");
            cmd.arg("60");
            pid = s.spawn("sleep", cmd).unwrap();
            assert!(s.exited("sleep").is_none());
        }
        assert!(!dir.exists(), "temp dir survived the session");
        // The pid is reaped: signal 0 reports no such process.
        // SAFETY: kill with signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
        assert!(!alive, "child {pid} survived the session");
        assert!(!registry().pids.contains(&pid));
    }
}
