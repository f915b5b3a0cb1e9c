//! A QMP client (QEMU's JSON monitor protocol over a Unix socket), plain
//! std: the VM loop uses it to see when the guest has started a device,
//! the e2e suite to hot-add disks, memory and vCPUs the way Kata's runtime
//! does (src/runtime/pkg/govmm/qemu/qmp.go ExecHotplugMemory,
//! ExecuteCPUDeviceAdd, ExecuteQueryHotpluggableCPUs; virtcontainers/qemu.go
//! hotplugAddBlockDevice).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connect, read the greeting and leave capabilities negotiation mode.
    /// `timeout` bounds every read of an answer.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to QMP at {}", path.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        qmp.read_message().context("reading the QMP greeting")?;
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QMP connection closed");
        }
        serde_json::from_str(&line).with_context(|| format!("parsing QMP message {line:?}"))
    }

    /// Run a command; skips asynchronous events until the answer arrives.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let msg = json!({ "execute": command, "arguments": &arguments });
        writeln!(self.writer, "{msg}").with_context(|| format!("sending QMP {command}"))?;
        loop {
            let answer = self.read_message()?;
            if let Some(ret) = answer.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = answer.get("error") {
                bail!("QMP {command} {arguments}: {err}");
            }
        }
    }

    /// Hot-add `size_mib` of RAM as a pc-dimm: `object-add` of a memory
    /// backend, then `device_add pc-dimm` (Kata's hotplugAddMemory in
    /// virtcontainers/qemu.go, ids `mem<slot>` / `dimmmem<slot>`). The
    /// backend is a shared memfd: vhost-user backends (vsock, virtiofsd)
    /// must be able to map every guest RAM region, which is why Kata hot-adds
    /// `memory-backend-file` with `share` when virtio-fs is on (getMemArgs).
    pub fn hotplug_dimm(&mut self, size_mib: u64) -> Result<()> {
        let slot = self.next_memory_slot()?;
        let mem = format!("mem{slot}");
        self.execute(
            "object-add",
            json!({
                "qom-type": "memory-backend-memfd",
                "id": mem,
                "size": size_mib << 20,
                "share": true,
            }),
        )?;
        let added = self.execute(
            "device_add",
            json!({ "driver": "pc-dimm", "id": format!("dimm{mem}"), "memdev": mem }),
        );
        if let Err(e) = added {
            // Leave no backend behind a failed device.
            let _ = self.execute("object-del", json!({ "id": mem }));
            return Err(e);
        }
        Ok(())
    }

    /// The slot a new memory device takes: one past the highest slot in use
    /// (an NVDIMM root is slot 0 on Kata's machine, and its backend is
    /// `mem0`), as Kata's hotplugAddMemory picks it from
    /// `query-memory-devices` (virtcontainers/qemu.go).
    fn next_memory_slot(&mut self) -> Result<u64> {
        let devices = self.execute("query-memory-devices", json!({}))?;
        Ok(next_slot(&devices))
    }

    /// The machine's devices with an id (`-device ...,id=X` and hot-plugged
    /// ones), with their QOM types: ("scsi0", "virtio-scsi-ccw").
    pub fn devices(&mut self) -> Result<Vec<(String, String)>> {
        self.children(PERIPHERAL)
    }

    /// The devices (their QOM children) under `path`, with their types.
    fn children(&mut self, path: &str) -> Result<Vec<(String, String)>> {
        let list = self.execute("qom-list", json!({ "path": path }))?;
        Ok(children(&list))
    }

    /// The device numbers (`fe.<ssid>.<devno>`) the channel subsystem's
    /// devices have, given or assigned by QEMU: named and anonymous
    /// `-device`s, and hot-plugged ones.
    pub fn ccw_devnos(&mut self) -> Result<Vec<String>> {
        let mut devnos = Vec::new();
        for parent in [PERIPHERAL, PERIPHERAL_ANON] {
            for (name, kind) in self.children(parent)? {
                if !kind.ends_with("-ccw") {
                    continue;
                }
                // `devno` reads "<unset>" for a device QEMU numbered itself;
                // `dev_id` is the number it has either way.
                let id = self.execute(
                    "qom-get",
                    json!({ "path": format!("{parent}/{name}"), "property": "dev_id" }),
                )?;
                devnos.extend(id.as_str().map(str::to_string));
            }
        }
        Ok(devnos)
    }

    /// The slot of device `id` on PCI bus 0.
    pub fn root_slot(&mut self, id: &str) -> Result<u64> {
        let pci = self.execute("query-pci", json!({}))?;
        pci.as_array()
            .into_iter()
            .flatten()
            .filter(|bus| bus.get("bus").and_then(Value::as_u64) == Some(0))
            .flat_map(|bus| {
                bus.get("devices")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .find(|d| d.get("qdev_id").and_then(Value::as_str) == Some(id))
            .and_then(|d| d.get("slot").and_then(Value::as_u64))
            .with_context(|| format!("no device {id} on PCI bus 0"))
    }

    /// A raw image file as block node `node` (Kata's hotplugAddBlockDevice
    /// starts with blockdev-add).
    pub fn add_image(&mut self, node: &str, image: &Path) -> Result<()> {
        self.execute(
            "blockdev-add",
            json!({
                "driver": "raw",
                "node-name": node,
                "file": { "driver": "file", "filename": image.display().to_string() },
            }),
        )
        .map(|_| ())
    }

    pub fn device_add(&mut self, args: Value) -> Result<()> {
        self.execute("device_add", args).map(|_| ())
    }

    /// The first free vCPU slot of `query-hotpluggable-cpus` (no qom-path),
    /// as the `device_add` arguments Kata's hotplugAddCPUs builds for it;
    /// None when the machine has no free slot.
    pub fn free_cpu_slot(&mut self, id: &str) -> Result<Option<Value>> {
        let cpus = self.execute("query-hotpluggable-cpus", json!({}))?;
        Ok(free_cpu_slot(&cpus, id))
    }
}

/// Where QEMU keeps the devices given an id, and those without one.
const PERIPHERAL: &str = "/machine/peripheral";
const PERIPHERAL_ANON: &str = "/machine/peripheral-anon";

/// The `child<TYPE>` entries of a `qom-list` answer as (name, TYPE).
fn children(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?;
            let kind = p.get("type")?.as_str()?;
            let kind = kind.strip_prefix("child<")?.strip_suffix('>')?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect()
}

/// The first device number in subchannel set 0 that none of `in_use`
/// (`fe.0.0002`, as `ccw_devnos` reads them) has, counting from 1 as
/// Kata's runtime hands out its CCW bridge's addresses
/// (virtcontainers/types/bridges.go Bridge.AddDevice).
pub fn first_free_devno(in_use: &[String]) -> Option<u16> {
    let taken: Vec<u16> = in_use
        .iter()
        .filter_map(|d| d.strip_prefix("fe.0."))
        .filter_map(|n| u16::from_str_radix(n, 16).ok())
        .collect();
    (1..=u16::MAX).find(|n| !taken.contains(n))
}

/// The device_add arguments for the first slot in a `query-hotpluggable-cpus`
/// answer that no CPU occupies: its type as the driver, its properties
/// (socket-id, core-id, thread-id, ...) as they are.
pub fn free_cpu_slot(cpus: &Value, id: &str) -> Option<Value> {
    let slot = cpus
        .as_array()?
        .iter()
        .find(|c| c.get("qom-path").is_none())?;
    let mut args = slot.get("props")?.as_object()?.clone();
    // node-id is a NUMA property, not a device_add argument.
    args.remove("node-id");
    args.insert("driver".into(), slot.get("type")?.clone());
    args.insert("id".into(), Value::String(id.into()));
    Some(Value::Object(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qom_children_are_named_with_their_types() {
        let list = json!([
            {"name": "type", "type": "string"},
            {"name": "scsi0", "type": "child<virtio-scsi-ccw>"},
            {"name": "rp0", "type": "child<pcie-root-port>"}
        ]);
        assert_eq!(
            children(&list),
            [
                ("scsi0".to_string(), "virtio-scsi-ccw".to_string()),
                ("rp0".to_string(), "pcie-root-port".to_string())
            ]
        );
        assert!(children(&json!({})).is_empty());
    }

    #[test]
    fn a_devno_is_the_lowest_free_one_from_1() {
        let used = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(first_free_devno(&[]), Some(1));
        // QEMU numbers its own from 0; another subchannel set does not count.
        assert_eq!(
            first_free_devno(&used(&["fe.0.0000", "fe.0.0001", "fe.0.0003", "fe.1.0002"])),
            Some(2)
        );
        assert_eq!(first_free_devno(&used(&["fe.0.0001", "<unset>"])), Some(2));
    }

    #[test]
    fn the_first_unoccupied_slot_becomes_device_add_arguments() {
        let cpus = json!([
            {"type": "max-x86_64-cpu", "vcpus-count": 1,
             "props": {"socket-id": 1, "core-id": 0, "thread-id": 0, "node-id": 0}},
            {"type": "max-x86_64-cpu", "vcpus-count": 1, "qom-path": "/machine/unattached/device[0]",
             "props": {"socket-id": 0, "core-id": 0, "thread-id": 0}}
        ]);
        let args = free_cpu_slot(&cpus, "cpu-0").unwrap();
        assert_eq!(
            args,
            json!({"driver": "max-x86_64-cpu", "id": "cpu-0",
                   "socket-id": 1, "core-id": 0, "thread-id": 0})
        );
        let full = json!([{"type": "t", "qom-path": "/x", "props": {"core-id": 0}}]);
        assert_eq!(free_cpu_slot(&full, "cpu-0"), None);
        assert_eq!(free_cpu_slot(&json!({}), "cpu-0"), None);
    }
}

/// One past the highest `data.slot` of a `query-memory-devices` answer, 0
/// when there is none.
fn next_slot(devices: &serde_json::Value) -> u64 {
    devices
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["data"]["slot"].as_u64())
        .max()
        .map_or(0, |m| m + 1)
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    /// Kata's machine has its NVDIMM root in slot 0 (backend mem0): the
    /// hot-added DIMM takes slot 1, not a second `mem0`.
    #[test]
    fn a_dimm_takes_the_slot_after_the_highest_in_use() {
        assert_eq!(next_slot(&json!([])), 0);
        let nvdimm = json!([{"type": "nvdimm", "data": {"slot": 0, "id": "nv0"}}]);
        assert_eq!(next_slot(&nvdimm), 1);
        let two = json!([
            {"type": "dimm", "data": {"slot": 3}},
            {"type": "nvdimm", "data": {"slot": 0}}
        ]);
        assert_eq!(next_slot(&two), 4);
    }
}
