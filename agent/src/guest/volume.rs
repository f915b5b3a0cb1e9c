//! GetVolumeStats: bytes and inodes of the filesystem a volume is on.

use std::path::Path;

use anyhow::Context;
use protocols::csi;

use crate::error::{Error, Result};

pub fn stats(path: &str) -> Result<csi::VolumeStatsResponse> {
    if !Path::new(path).is_absolute() {
        return Err(Error::invalid(format!(
            "GetVolumeStats: {path:?} is not an absolute path"
        )));
    }
    let st =
        nix::sys::statvfs::statvfs(Path::new(path)).with_context(|| format!("statvfs {path}"))?;
    let frag = st.fragment_size() as u64;
    let usage = |unit, total: u64, free: u64, avail: u64| {
        let mut u = csi::VolumeUsage::new();
        u.unit = unit;
        u.total = total;
        u.available = avail;
        u.used = total.saturating_sub(free);
        u
    };
    let mut resp = csi::VolumeStatsResponse::new();
    resp.usage = vec![
        usage(
            csi::volume_usage::Unit::BYTES.into(),
            st.blocks() as u64 * frag,
            st.blocks_free() as u64 * frag,
            st.blocks_available() as u64 * frag,
        ),
        usage(
            csi::volume_usage::Unit::INODES.into(),
            st.files() as u64,
            st.files_free() as u64,
            st.files_available() as u64,
        ),
    ];
    Ok(resp)
}
