//! Enough QMP for the host's side of a hot-plug, as Kata's runtime does it
//! (virtcontainers/qemu.go hotplugAddBlockDevice: blockdev-add, then
//! device_add of a virtio-blk-pci on a root port or a scsi-hd on the
//! virtio-scsi bus).

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
    pub fn connect(path: &Path) -> Result<Qmp> {
        let stream = UnixStream::connect(path)
            .with_context(|| format!("connecting to QMP at {}", path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        qmp.read().context("reading the QMP greeting")?;
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QMP connection closed");
        }
        serde_json::from_str(&line).with_context(|| format!("parsing QMP message {line:?}"))
    }

    /// Run a command; asynchronous events before its answer are skipped.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").with_context(|| format!("sending QMP {command}"))?;
        loop {
            let answer = self.read()?;
            if let Some(ret) = answer.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = answer.get("error") {
                bail!("QMP {command} {arguments}: {err}");
            }
        }
    }

    /// The ids of the machine's `-device`s.
    pub fn device_ids(&mut self) -> Result<Vec<String>> {
        let list = self.execute("qom-list", json!({ "path": "/machine/peripheral" }))?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
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

    /// A raw image file as block node `node`.
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
}
