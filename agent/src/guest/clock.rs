//! SetGuestDateTime: set the guest's wall clock to the host's.

use anyhow::Context;

use crate::error::{Error, Result};

/// Set CLOCK_REALTIME to `sec` seconds and `usec` microseconds after the epoch.
pub fn set_realtime(sec: i64, usec: i64) -> Result<()> {
    if sec < 0 || !(0..1_000_000).contains(&usec) {
        return Err(Error::invalid(format!(
            "SetGuestDateTime: bad time {sec}s {usec}us (need sec >= 0, 0 <= usec < 1000000)"
        )));
    }
    // clock_settime through nix: libc's time_t/suseconds_t differ between
    // glibc and musl.
    let now = std::time::Duration::new(sec as u64, (usec as u32) * 1000);
    nix::time::clock_settime(
        nix::time::ClockId::CLOCK_REALTIME,
        nix::sys::time::TimeSpec::from_duration(now),
    )
    .context("clock_settime")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_out_of_range_is_refused_before_the_clock_is_touched() {
        for (sec, usec) in [(-1, 0), (0, -1), (0, 1_000_000)] {
            let err = set_realtime(sec, usec).expect_err("out of range");
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        }
    }
}
