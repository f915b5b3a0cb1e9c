//! ReseedRandomDev: mix the runtime's random bytes into the kernel pool,
//! credit them, then ask the kernel to reseed its CRNG from the pool.

use std::io::Write;

use anyhow::{Context, Result};

pub fn reseed(data: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/random")
        .context("opening /dev/random")?;
    f.write_all(data).context("writing to /dev/random")?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // The bytes come from the host's CSPRNG: credit them (8 bits each),
    // so a fresh guest's pool counts as initialised, as Kata's agent does.
    nix::ioctl_write_ptr!(rnd_add_to_ent_cnt, b'R', 0x01, libc::c_int);
    let bits = libc::c_int::try_from(data.len().saturating_mul(8)).unwrap_or(libc::c_int::MAX);
    // SAFETY: RNDADDTOENTCNT reads one int through the pointer.
    unsafe { rnd_add_to_ent_cnt(fd, &bits) }.context("ioctl RNDADDTOENTCNT on /dev/random")?;
    // RNDRESEEDCRNG = _IO('R', 0x07)
    nix::ioctl_none!(rnd_reseed_crng, b'R', 0x07);
    // SAFETY: an argument-less ioctl on an open /dev/random.
    unsafe { rnd_reseed_crng(fd) }.context("ioctl RNDRESEEDCRNG on /dev/random")?;
    Ok(())
}
