//! The raw disk image: an MBR with one Linux partition (Kata boots it as
//! root=/dev/vda1, or /dev/pmem0p1) starting at 1 MiB that holds the
//! filesystem; the whole image is a multiple of the recipe's alignment.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const SECTOR: u64 = 512;
pub const PART_START: u64 = 1 << 20;

/// The 512-byte MBR for one partition of `sectors` starting at `start_lba`.
pub fn mbr(disk_id: u32, start_lba: u32, sectors: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&disk_id.to_le_bytes());
    let e = &mut m[446..462];
    e[0] = 0x00; // not bootable: the kernel is booted directly
    e[1..4].copy_from_slice(&chs(start_lba));
    e[4] = 0x83; // Linux
    e[5..8].copy_from_slice(&chs(start_lba + sectors - 1));
    e[8..12].copy_from_slice(&start_lba.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// CHS address in the usual 255-head, 63-sector geometry, saturated past 8 GiB.
fn chs(lba: u32) -> [u8; 3] {
    let (heads, spt) = (255u32, 63u32);
    let c = lba / (heads * spt);
    if c > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let h = (lba / spt) % heads;
    let s = lba % spt + 1;
    [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
}

/// The disk id (MBR signature) from the tree digest; never 0.
pub fn disk_id(digest: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("mbr-disk-id:{digest}").as_bytes());
    u32::from_le_bytes([h[0], h[1], h[2], h[3]]).max(1)
}

/// Write `out`: MBR, zeros up to 1 MiB, the filesystem, zeros up to the aligned end.
pub fn write(fs_image: &Path, out: &Path, align: u64, disk_id: u32) -> Result<u64> {
    let fs_len = fs::metadata(fs_image)
        .with_context(|| format!("stat {}", fs_image.display()))?
        .len();
    let total = (PART_START + fs_len).div_ceil(align) * align;
    let sectors = (total - PART_START) / SECTOR;
    let (Ok(start), Ok(sectors)) = (u32::try_from(PART_START / SECTOR), u32::try_from(sectors))
    else {
        bail!("a {total}-byte image is too big for an MBR");
    };
    let tmp = out.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&mbr(disk_id, start, sectors))?;
    f.seek(SeekFrom::Start(PART_START))?;
    let mut src =
        File::open(fs_image).with_context(|| format!("opening {}", fs_image.display()))?;
    io::copy(&mut src, &mut f).context("copying the filesystem into the disk image")?;
    f.set_len(total)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_has_one_linux_partition() {
        let m = mbr(0x1234_5678, 2048, 8192);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(&m[440..444], &0x1234_5678u32.to_le_bytes());
        assert_eq!(m[446 + 4], 0x83);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 8192);
        assert!(m[462..510].iter().all(|&b| b == 0), "only one partition");
        // LBA 2048 = C0 H32 S33 in 255/63 geometry.
        assert_eq!(chs(2048), [32, 33, 0]);
        assert_eq!(chs(u32::MAX), [0xfe, 0xff, 0xff]);
    }

    #[test]
    fn disk_is_aligned_and_holds_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let fs_img = dir.path().join("fs");
        fs::write(&fs_img, vec![7u8; 5000]).unwrap();
        let out = dir.path().join("disk.img");
        let total = write(&fs_img, &out, 2 << 20, disk_id("d")).unwrap();
        let bytes = fs::read(&out).unwrap();
        assert_eq!(total, 2 << 20);
        assert_eq!(bytes.len() as u64, total);
        assert_eq!(
            &bytes[PART_START as usize..PART_START as usize + 5000],
            &[7u8; 5000][..]
        );
        assert_eq!(disk_id("d"), disk_id("d"));
        if let Ok(o) = std::process::Command::new("sfdisk")
            .arg("-d")
            .arg(&out)
            .output()
        {
            let t = String::from_utf8_lossy(&o.stdout);
            assert!(
                t.contains("start=        2048") && t.contains("type=83"),
                "{t}"
            );
        }
    }
}
