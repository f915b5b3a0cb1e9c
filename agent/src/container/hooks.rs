//! OCI hooks, run by the agent in its own namespaces with the container
//! state on stdin: createRuntime and prestart during create (after the
//! container process exists, before its rootfs is set up), poststart after
//! start, poststop on remove.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Hook;
use serde_json::json;

use super::Status;
use crate::reaper;

/// The OCI state document a hook reads on stdin.
pub fn state(
    cid: &str,
    status: Status,
    pid: i32,
    bundle: &std::path::Path,
    spec: &oci_spec::runtime::Spec,
) -> String {
    json!({
        "ociVersion": spec.version(),
        "id": cid,
        "status": status.as_str(),
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}

/// Run `hooks` in order; the first failure stops and is returned.
pub async fn run(kind: &str, hooks: Option<&Vec<Hook>>, state: &str) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(h, state)
            .await
            .with_context(|| format!("{kind} hook {}", h.path().display()))?;
    }
    Ok(())
}

async fn run_one(h: &Hook, state: &str) -> Result<()> {
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some(arg0) = args.first() {
            cmd.arg0(arg0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for e in h.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let ((pid, stdin), mut exit) = reaper::spawn(|| {
        let mut child = cmd.spawn().context("starting the hook")?;
        let pid = child.id() as i32;
        Ok((pid, (pid, child.stdin.take())))
    })?;
    if let Some(mut stdin) = stdin {
        // The state is small (far below a pipe buffer): this write does not block.
        let _ = stdin.write_all(state.as_bytes());
    }
    let code = match h.timeout().filter(|t| *t > 0) {
        Some(secs) => {
            match tokio::time::timeout(Duration::from_secs(secs as u64), reaper::wait(&mut exit))
                .await
            {
                Ok(code) => code?,
                Err(_) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    reaper::wait(&mut exit).await?;
                    bail!("timed out after {secs}s");
                }
            }
        }
        None => reaper::wait(&mut exit).await?,
    };
    if code != 0 {
        bail!("exited with status {code}");
    }
    Ok(())
}
