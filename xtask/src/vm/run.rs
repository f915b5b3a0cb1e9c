//! `cargo xtask vm run`: boot and leave the VM up with the serial console
//! attached, printing how to reach the agent once that is safe.

use std::path::Path;

use anyhow::Result;

use super::cleanup::Session;
use super::qemu::Console;
use super::start;
use super::{serial_log_path, vsock, RunArgs};
use crate::ui;

pub fn run(args: RunArgs) -> Result<()> {
    let arch = args.arch;
    let res = start::resources(arch, &args.opts)?;
    let serial_log = serial_log_path(arch, "run")?;
    let mut session = Session::new();
    let vm = start::start(
        &mut session,
        &res,
        &args.opts,
        Console::Stdio {
            log: serial_log.clone(),
        },
        &["agent.debug_console"],
    )?;
    eprintln!("{}", vm.command_line);
    eprintln!("serial log: {}; quit with Ctrl-A X", serial_log.display());
    // The address is printed only once a CONNECT is safe (see `qmp`).
    match start::wait_vsock_in_budget(&mut session, &vm, arch, res.accel) {
        Ok(()) => eprintln!(
            "{}",
            connect_hint(&vm.vsock_uds, &vm.shared_dir, &res.busybox)
        ),
        Err(e) => ui::warn(format!("{e:#}; the agent is not reachable yet")),
    }
    let status = session.wait("qemu")?;
    eprintln!("QEMU exited ({status})");
    Ok(())
}

/// What a developer needs to drive the agent of a `vm run` VM.
fn connect_hint(uds: &Path, shared_dir: &Path, busybox: &Path) -> String {
    let address = format!("hvsock://{}:{}", uds.display(), vsock::AGENT_PORT);
    format!(
        "agent: hybrid vsock {uds} port {port}; drive it with\n  \
         cargo run -p agent-ctl -- --server-address {address} Check\n\
         kataShared: {shared} (busybox rootfs for containers: {busybox})",
        uds = uds.display(),
        port = vsock::AGENT_PORT,
        shared = shared_dir.display(),
        busybox = busybox.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_hint_has_the_agent_ctl_command() {
        let hint = connect_hint(
            Path::new("/tmp/kata-vm-x86_64-1/vm.vsock"),
            Path::new("/tmp/kata-vm-x86_64-1/shared"),
            Path::new("/c/busybox/rootfs"),
        );
        assert!(hint.contains(
            "\n  cargo run -p agent-ctl -- --server-address hvsock:///tmp/kata-vm-x86_64-1/vm.vsock:1024 Check\n"
        ));
        assert!(hint.contains("kataShared: /tmp/kata-vm-x86_64-1/shared"));
    }
}
