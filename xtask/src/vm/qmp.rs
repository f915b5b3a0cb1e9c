//! When the guest has started the vsock device, asked over QMP.
//!
//! Why: vhost-device-vsock 0.3.0 handles a host CONNECT that arrives before
//! QEMU has sent it the guest memory table (which happens when the guest
//! driver sets DRIVER_OK) by failing its worker ("Received a backend event
//! before vring initialization"); every later CONNECT then hangs with no
//! answer. Seen in about 1 boot in 10 under TCG. So the host waits for
//! DRIVER_OK on the device before its first CONNECT.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use agent_ctl::qmp::Qmp;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// QOM paths of the vsock device (id `vsock0`) as a VirtIODevice: a PCI
/// proxy holds it as `virtio-backend`; an mmio `-device` is one itself.
pub const VSOCK_PATHS: [&str; 2] = [
    "/machine/peripheral/vsock0/virtio-backend",
    "/machine/peripheral/vsock0",
];

/// Does an `x-query-virtio-status` answer show DRIVER_OK?
pub fn driver_ok(status: &Value) -> bool {
    status
        .get("status")
        .and_then(|s| s.get("statuses"))
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .any(|s| s.starts_with("VIRTIO_CONFIG_S_DRIVER_OK"))
        })
}

/// Wait until the guest driver has started the device at the first of
/// `qom_paths` QEMU knows. `alive` stops the wait early when QEMU has exited.
pub fn wait_driver_ok(
    qmp_socket: &Path,
    qom_paths: &[&str],
    deadline: Instant,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut qmp = loop {
        alive()?;
        match Qmp::connect(qmp_socket, Duration::from_secs(5)) {
            Ok(q) => break q,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    let mut last = None;
    let path = qom_paths
        .iter()
        .find(
            |p| match qmp.execute("x-query-virtio-status", json!({ "path": p })) {
                Ok(_) => true,
                Err(e) => {
                    last = Some(e);
                    false
                }
            },
        )
        .with_context(|| format!("no virtio device among {qom_paths:?}: {last:?}"))?;
    while Instant::now() < deadline {
        alive()?;
        let status = qmp.execute("x-query-virtio-status", json!({ "path": path }))?;
        if driver_ok(&status) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    bail!("the guest did not start the vsock device ({path}) before the deadline")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_ok_only_when_listed() {
        let booting = json!({"status": {"statuses": [
            "VIRTIO_CONFIG_S_ACKNOWLEDGE: Valid virtio device found",
            "VIRTIO_CONFIG_S_DRIVER: Guest OS compatible with device"
        ]}});
        assert!(!driver_ok(&booting));
        let up = json!({"status": {"statuses": [
            "VIRTIO_CONFIG_S_DRIVER: Guest OS compatible with device",
            "VIRTIO_CONFIG_S_DRIVER_OK: Driver ready"
        ]}});
        assert!(driver_ok(&up));
        assert!(!driver_ok(&json!({})));
    }
}
