//! The raw disk image, laid out like Kata's image builder's
//! (tools/osbuilder/image-builder/image_builder.sh, "DAX header"):
//!
//! ```text
//! 0        MBR #1: one Linux partition from 3 MiB to the end   (/dev/vda1)
//! 4 KiB    nd_pfn info block: the namespace's data starts at 2 MiB
//! 2 MiB    MBR #2: one Linux partition from 1 MiB (of this view) to the end
//! 3 MiB    the filesystem                                      (/dev/pmem0p1)
//! ```
//!
//! A disk (virtio-blk, virtio-scsi) reads MBR #1. As an NVDIMM namespace the
//! pmem driver finds the pfn info block, maps the namespace from its data
//! offset, and so reads MBR #2: the same partition, now DAX-capable (ext4
//! mounts with `dax`). The whole image is a multiple of the recipe's alignment.
//!
//! A measured root (Kata's `MEASURED_ROOTFS=yes`) has a second partition
//! after the first, at a MiB boundary, holding the dm-verity hash tree
//! (`/dev/vda2`, `/dev/pmem0p2`); both MBRs list both partitions.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

pub const SECTOR: u64 = 512;
/// The partition's start in the view behind the DAX header (MBR #2).
pub const PART_START: u64 = 1 << 20;
/// The DAX header: MBR #1 and the pfn info block; MBR #2 follows it.
pub const DAX_HEADER: u64 = 2 << 20;
/// Where the filesystem starts in the file (MBR #1's partition).
pub const FS_START: u64 = DAX_HEADER + PART_START;
/// Where the kernel looks for the pfn info block in a namespace.
const PFN_INFO_OFFSET: usize = 4096;
/// The mapping's alignment the info block asks for: 2 MiB, so DAX can use
/// huge pages (and every arch with 4 KiB pages supports it).
const PFN_ALIGN: u32 = 2 << 20;
/// `PFN_MODE_RAM` of the kernel's `enum nd_pfn_mode`: the struct pages of the
/// range live in RAM, nothing is reserved on the device for them.
const PFN_MODE_RAM: u32 = 1;

/// Where each partition after the first starts: a MiB boundary.
pub const PART_ALIGN: u64 = 1 << 20;

/// The 512-byte MBR for up to four Linux partitions, each `(start_lba, sectors)`.
pub fn mbr(disk_id: u32, parts: &[(u32, u32)]) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&disk_id.to_le_bytes());
    for (i, &(start_lba, sectors)) in parts.iter().take(4).enumerate() {
        let e = &mut m[446 + 16 * i..462 + 16 * i];
        e[0] = 0x00; // not bootable: the kernel is booted directly
        e[1..4].copy_from_slice(&chs(start_lba));
        e[4] = 0x83; // Linux
        e[5..8].copy_from_slice(&chs(start_lba + sectors - 1));
        e[8..12].copy_from_slice(&start_lba.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
    }
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

/// The 4 KiB `struct nd_pfn_sb` (drivers/nvdimm/pfn.h) of a namespace whose
/// data starts at `dataoff`: version 0.2 (the `align` field is the last one
/// it reads), no UUIDs (a label-less namespace has none to match), mode RAM,
/// no padding; the kernel fills in the rest when it validates it.
pub fn pfn_info_block(dataoff: u64) -> [u8; 4096] {
    let mut b = [0u8; 4096];
    b[..16].copy_from_slice(b"NVDIMM_PFN_INFO\0");
    b[54..56].copy_from_slice(&2u16.to_le_bytes()); // version_minor
    b[56..64].copy_from_slice(&dataoff.to_le_bytes());
    b[72..76].copy_from_slice(&PFN_MODE_RAM.to_le_bytes());
    b[84..88].copy_from_slice(&PFN_ALIGN.to_le_bytes());
    let sum = fletcher64(&b);
    b[4088..].copy_from_slice(&sum.to_le_bytes());
    b
}

/// The kernel's `nd_fletcher64` over little-endian 32-bit words, the
/// checksum of nvdimm info blocks (computed with the checksum field zero).
fn fletcher64(bytes: &[u8]) -> u64 {
    let (mut lo, mut hi) = (0u32, 0u64);
    for w in bytes.chunks_exact(4) {
        lo = lo.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        hi = hi.wrapping_add(u64::from(lo));
    }
    (hi << 32) | u64::from(lo)
}

/// Write `out`: the DAX header (MBR #1 and the pfn info block), MBR #2 at
/// 2 MiB, then the partitions' contents from 3 MiB on (each but the last
/// padded to a MiB boundary, the last to the aligned end).
pub fn write(parts: &[&Path], out: &Path, align: u64, disk_id: u32) -> Result<u64> {
    if parts.is_empty() || parts.len() > 4 {
        bail!("an MBR holds 1 to 4 partitions, not {}", parts.len());
    }
    let mut spans = Vec::new(); // (start, len) in the file
    let mut at = FS_START;
    for (i, p) in parts.iter().enumerate() {
        let len = fs::metadata(p)
            .with_context(|| format!("stat {}", p.display()))?
            .len();
        let end = if i + 1 == parts.len() {
            (at + len).div_ceil(align) * align
        } else {
            (at + len).div_ceil(PART_ALIGN) * PART_ALIGN
        };
        spans.push((at, end - at));
        at = end;
    }
    let total = at;
    let lbas = |shift: u64| -> Option<Vec<(u32, u32)>> {
        spans
            .iter()
            .map(|&(start, len)| {
                Some((
                    u32::try_from((start - shift) / SECTOR).ok()?,
                    u32::try_from(len / SECTOR).ok()?,
                ))
            })
            .collect()
    };
    let (Some(outer), Some(inner)) = (lbas(0), lbas(DAX_HEADER)) else {
        bail!("a {total}-byte image is too big for an MBR");
    };
    let tmp = out.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&mbr(disk_id, &outer))?;
    f.seek(SeekFrom::Start(PFN_INFO_OFFSET as u64))?;
    f.write_all(&pfn_info_block(DAX_HEADER))?;
    f.seek(SeekFrom::Start(DAX_HEADER))?;
    f.write_all(&mbr(disk_id, &inner))?;
    for (p, &(start, _)) in parts.iter().zip(&spans) {
        f.seek(SeekFrom::Start(start))?;
        let mut src = File::open(p).with_context(|| format!("opening {}", p.display()))?;
        io::copy(&mut src, &mut f)
            .with_context(|| format!("copying {} into the disk image", p.display()))?;
    }
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
        let m = mbr(0x1234_5678, &[(2048, 8192)]);
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
    fn fletcher64_is_the_kernels() {
        // Words 1, 2, 3: lo = 1, 3, 6; hi = 1, 4, 10.
        let bytes: Vec<u8> = [1u32, 2, 3].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(fletcher64(&bytes), (10 << 32) | 6);
        // The 32-bit sum wraps, the 64-bit one keeps its low 32 bits.
        let big: Vec<u8> = [u32::MAX, 2].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(fletcher64(&big), ((u64::from(u32::MAX) + 1) << 32) | 1);
    }

    #[test]
    fn pfn_info_block_fields() {
        let b = pfn_info_block(DAX_HEADER);
        assert_eq!(&b[..16], b"NVDIMM_PFN_INFO\0");
        assert!(b[16..48].iter().all(|&x| x == 0), "no uuid, no parent uuid");
        assert_eq!(u16::from_le_bytes([b[52], b[53]]), 0); // version_major
        assert_eq!(u16::from_le_bytes([b[54], b[55]]), 2); // version_minor
        assert_eq!(u64::from_le_bytes(b[56..64].try_into().unwrap()), 2 << 20);
        assert_eq!(u64::from_le_bytes(b[64..72].try_into().unwrap()), 0); // npfns
        assert_eq!(u32::from_le_bytes(b[72..76].try_into().unwrap()), 1); // RAM
        assert_eq!(u32::from_le_bytes(b[84..88].try_into().unwrap()), 2 << 20);
        let mut zeroed = b;
        zeroed[4088..].fill(0);
        assert_eq!(
            u64::from_le_bytes(b[4088..].try_into().unwrap()),
            fletcher64(&zeroed)
        );
    }

    #[test]
    fn disk_has_the_dax_header_and_holds_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let fs_img = dir.path().join("fs");
        fs::write(&fs_img, vec![7u8; 5000]).unwrap();
        let out = dir.path().join("disk.img");
        let total = write(&[&fs_img], &out, 2 << 20, disk_id("d")).unwrap();
        let bytes = fs::read(&out).unwrap();
        assert_eq!(total, 4 << 20);
        assert_eq!(bytes.len() as u64, total);
        let fs_at = FS_START as usize;
        assert_eq!(&bytes[fs_at..fs_at + 5000], &[7u8; 5000][..]);
        assert!(bytes[fs_at + 5000..].iter().all(|&b| b == 0));
        assert_eq!(disk_id("d"), disk_id("d"));
        // MBR #1 (the disk's view) and MBR #2 (the pmem view behind the
        // header) point at the same bytes and end at the image's end.
        let sectors = ((total - FS_START) / SECTOR) as u32;
        assert_eq!(bytes[..512], mbr(disk_id("d"), &[(6144, sectors)]));
        let dax = DAX_HEADER as usize;
        assert_eq!(bytes[dax..dax + 512], mbr(disk_id("d"), &[(2048, sectors)]));
        assert_eq!(bytes[4096..8192], pfn_info_block(DAX_HEADER));
        let sfdisk = |img: &Path| {
            std::process::Command::new("sfdisk")
                .arg("-d")
                .arg(img)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let inner = dir.path().join("behind-header.img");
        fs::write(&inner, &bytes[dax..]).unwrap();
        if let (Some(outer), Some(inner)) = (sfdisk(&out), sfdisk(&inner)) {
            assert!(
                outer.contains("start=        6144") && outer.contains("type=83"),
                "{outer}"
            );
            assert!(
                inner.contains("start=        2048") && inner.contains("type=83"),
                "{inner}"
            );
        }
    }

    /// Kata's MEASURED_ROOTFS layout: the filesystem on p1, the hash tree on
    /// p2 at the next MiB boundary, in both MBRs.
    #[test]
    fn a_measured_root_has_the_hash_partition_after_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let (fs_img, hash) = (dir.path().join("fs"), dir.path().join("hash"));
        fs::write(&fs_img, vec![7u8; 5000]).unwrap();
        fs::write(&hash, vec![9u8; 4096]).unwrap();
        let out = dir.path().join("disk.img");
        let total = write(&[&fs_img, &hash], &out, 2 << 20, 5).unwrap();
        assert_eq!(total, 6 << 20);
        let bytes = fs::read(&out).unwrap();
        let (p1, p2) = (FS_START as usize, (4 << 20) as usize);
        assert_eq!(&bytes[p1..p1 + 5000], &[7u8; 5000][..]);
        assert!(bytes[p1 + 5000..p2].iter().all(|&b| b == 0));
        assert_eq!(&bytes[p2..p2 + 4096], &[9u8; 4096][..]);
        assert!(bytes[p2 + 4096..].iter().all(|&b| b == 0));
        assert_eq!(bytes[..512], mbr(5, &[(6144, 2048), (8192, 4096)]));
        let dax = DAX_HEADER as usize;
        assert_eq!(bytes[dax..dax + 512], mbr(5, &[(2048, 2048), (4096, 4096)]));
        // The second entry, field by field: Linux, LBA 8192, 4096 sectors.
        assert_eq!(bytes[462 + 4], 0x83);
        assert_eq!(
            u32::from_le_bytes(bytes[470..474].try_into().unwrap()),
            8192
        );
        assert_eq!(
            u32::from_le_bytes(bytes[474..478].try_into().unwrap()),
            4096
        );
        assert!(
            bytes[478..510].iter().all(|&b| b == 0),
            "two partitions only"
        );
        let none: [&Path; 0] = [];
        assert!(write(&none, &out, 2 << 20, 5).is_err());
    }
}
