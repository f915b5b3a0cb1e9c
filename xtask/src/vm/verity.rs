//! `vm test --verity`'s second boot: the measured image with one byte of
//! its root partition flipped (`image::verity::tampered_copy`), booted with
//! the untouched image's root hash, must not come up. The kernel's
//! dm-verity target refuses the block, the root cannot be mounted, the
//! kernel panics and (panic=1, -no-reboot) QEMU exits.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::cleanup::Session;
use super::qemu::{Boot, Console};
use super::start::{self, VmResources};
use super::{accel, serial_log_path, VmOpts};
use crate::ui;

/// What dm-verity prints for a block whose hash does not match
/// (drivers/md/dm-verity-target.c `verity_handle_err`).
const CORRUPTED: &str = " is corrupted";

/// Boot a tampered copy of `res`'s measured image; Ok when the boot fails
/// on dm-verity within the boot budget.
pub fn tampered_boot_fails(res: &VmResources, opts: &VmOpts) -> Result<()> {
    let arch = res.arch;
    let Boot::Image(image) = &res.assets.boot else {
        bail!("--verity boots the disk image, not an initrd");
    };
    if res.assets.verity.is_none() {
        bail!("{} has no measured root", image.display());
    }
    let phase = ui::Phase::start(format!("{arch}: booting a copy with one flipped byte"));
    let mut session = Session::new();
    let dir = session.temp_dir(&format!("verity-{arch}"))?;
    let tampered = dir.join("tampered.img");
    crate::image::verity::tampered_copy(image, &tampered)?;
    let mut bad = res.clone();
    bad.assets.boot = Boot::Image(tampered);
    let serial_log = serial_log_path(arch, "verity-tampered")?;
    let vm = start::start(
        &mut session,
        &bad,
        opts,
        Console::File(serial_log.clone()),
        &[],
    )?;
    let deadline = vm.started + accel::boot_budget(arch, res.accel);
    let exited = loop {
        if let Some(status) = session.exited("qemu") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(session);
    let log = std::fs::read_to_string(&serial_log)
        .with_context(|| format!("reading {}", serial_log.display()))?;
    let refused = log
        .lines()
        .find(|l| l.contains("verity") && l.contains(CORRUPTED));
    match (refused, exited) {
        (Some(line), Some(_)) => {
            phase.done(format!(
                "it did not boot ({:.1} s): {}",
                vm.started.elapsed().as_secs_f64(),
                line.trim()
            ));
            Ok(())
        }
        (None, Some(status)) => bail!(
            "the tampered image did not boot ({status}), but dm-verity said nothing of a \
             corrupted block; serial log: {}",
            serial_log.display()
        ),
        (_, None) => bail!(
            "the tampered image was still running {} s after QEMU's start; serial log: {}",
            accel::boot_budget(arch, res.accel).as_secs(),
            serial_log.display()
        ),
    }
}
