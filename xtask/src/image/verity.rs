//! A measured root: the dm-verity hash tree of the root partition, in the
//! layout of Kata's `MEASURED_ROOTFS=yes` images
//! (tools/osbuilder/image-builder/image_builder.sh `setup_verity`:
//! `veritysetup format --no-superblock <p1> <p2>`): format version 1,
//! sha256, 4 KiB data and hash blocks, no superblock, the tree at offset 0 of
//! the hash partition. Only the salt differs from veritysetup's: it is
//! derived from the rootfs digest instead of drawn at random, so equal
//! inputs give an equal root hash.
//!
//! The format (the kernel's Documentation/admin-guide/device-mapper/verity.rst,
//! drivers/md/dm-verity-target.c `verity_ctr`): level 0 holds
//! sha256(salt || data block) of every data block, each next level the
//! sha256(salt || hash block) of the blocks of the one below, 128 digests to
//! a zero-padded 4 KiB block, until one block is left; its digest is the
//! root hash. The device stores the top level first, level 0 last.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Data and hash block size (Kata's BLOCK_SIZE, veritysetup's default).
pub const BLOCK: u64 = 4096;
const DIGEST: usize = 32;
const DIGESTS_PER_BLOCK: usize = BLOCK as usize / DIGEST;

/// What the kernel needs to set up the verity target: Kata's
/// `kernel_verity_params` fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verity {
    /// Hex sha256 of the top hash block.
    pub root_hash: String,
    pub salt: String,
    pub data_blocks: u64,
    pub data_block_size: u64,
    pub hash_block_size: u64,
    pub hash_algorithm: String,
}

impl Verity {
    /// Kata's `kernel_verity_params` (runtime configuration.toml), as
    /// image_builder.sh `build_kernel_verity_params` writes it to
    /// root_hash_<variant>.txt.
    pub fn kata_params(&self) -> String {
        format!(
            "root_hash={},salt={},data_blocks={},data_block_size={},hash_block_size={}",
            self.root_hash, self.salt, self.data_blocks, self.data_block_size, self.hash_block_size
        )
    }

    /// The kernel command line's root: the verity target over `data_dev`
    /// checked against `hash_dev`, as Kata's runtime writes it
    /// (src/runtime/virtcontainers/hypervisor.go `GetKernelRootParams`):
    /// `dm-mod.create="dm-verity,,,ro,0 <sectors> verity 1 <data> <hash>
    /// <data block> <hash block> <blocks> 0 sha256 <root hash> <salt>"` and
    /// `root=/dev/dm-0`.
    pub fn kernel_params(&self, data_dev: &str, hash_dev: &str) -> [String; 2] {
        let sectors = self.data_blocks * (self.data_block_size / 512);
        [
            format!(
                "dm-mod.create=\"dm-verity,,,ro,0 {sectors} verity 1 {data_dev} {hash_dev} {} {} {} 0 {} {} {}\"",
                self.data_block_size,
                self.hash_block_size,
                self.data_blocks,
                self.hash_algorithm,
                self.root_hash,
                self.salt
            ),
            "root=/dev/dm-0".to_string(),
        ]
    }
}

/// The salt of a rootfs: 32 bytes (veritysetup's default size) from its
/// digest, so the same tree always gets the same salt.
pub fn salt_for(digest: &str) -> [u8; DIGEST] {
    Sha256::digest(format!("dm-verity-salt:{digest}").as_bytes()).into()
}

/// The hash tree of the file `data` (a whole number of blocks) into the
/// file `out`.
pub fn write_tree(data: &Path, salt: &[u8], out: &Path) -> Result<Verity> {
    let len = std::fs::metadata(data)
        .with_context(|| format!("stat {}", data.display()))?
        .len();
    if len % BLOCK != 0 {
        bail!(
            "{} is {len} bytes, not a whole number of {BLOCK}-byte blocks",
            data.display()
        );
    }
    let mut r =
        BufReader::new(File::open(data).with_context(|| format!("opening {}", data.display()))?);
    let mut w =
        BufWriter::new(File::create(out).with_context(|| format!("creating {}", out.display()))?);
    let v = hash_tree(&mut r, len / BLOCK, salt, &mut w)
        .with_context(|| format!("hashing {}", data.display()))?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(v)
}

/// A copy of the disk image `image` at `out` with byte 0 of the root
/// partition flipped. ext4 and erofs both leave their first KiB unused (the
/// superblock is at 1024), so only the hash tree can tell: a boot of the
/// copy must fail on dm-verity and nothing else.
pub fn tampered_copy(image: &Path, out: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    std::fs::copy(image, out)
        .with_context(|| format!("copying {} to {}", image.display(), out.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)
        .with_context(|| format!("opening {}", out.display()))?;
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(super::disk::FS_START))?;
    f.read_exact(&mut byte)
        .with_context(|| format!("{} has no root partition", image.display()))?;
    byte[0] ^= 0xff;
    f.seek(SeekFrom::Start(super::disk::FS_START))?;
    f.write_all(&byte)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Read `data_blocks` blocks from `data`, write their hash tree to `hash`
/// and return the parameters. `data` must hold exactly that many blocks.
pub fn hash_tree(
    data: &mut impl Read,
    data_blocks: u64,
    salt: &[u8],
    hash: &mut impl Write,
) -> Result<Verity> {
    if data_blocks == 0 {
        bail!("dm-verity needs at least one data block");
    }
    let mut block = vec![0u8; BLOCK as usize];
    let mut digests = Vec::with_capacity(usize::try_from(data_blocks)?);
    for i in 0..data_blocks {
        data.read_exact(&mut block)
            .with_context(|| format!("reading data block {i} of {data_blocks}"))?;
        digests.push(salted(salt, &block));
    }
    if data.read(&mut block[..1])? != 0 {
        bail!("the data holds more than {data_blocks} blocks");
    }
    // Level 0 first here; written the other way round.
    let mut levels: Vec<Vec<u8>> = Vec::new();
    while digests.len() > 1 {
        let level = pack(&digests);
        digests = level
            .chunks_exact(BLOCK as usize)
            .map(|b| salted(salt, b))
            .collect();
        levels.push(level);
    }
    for level in levels.iter().rev() {
        hash.write_all(level).context("writing the hash tree")?;
    }
    Ok(Verity {
        root_hash: hex::encode(digests[0]),
        salt: hex::encode(salt),
        data_blocks,
        data_block_size: BLOCK,
        hash_block_size: BLOCK,
        hash_algorithm: "sha256".into(),
    })
}

/// Version 1 hashes the salt first (dm-verity-target.c `verity_hash_init`).
fn salted(salt: &[u8], block: &[u8]) -> [u8; DIGEST] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Digests, 128 to a block, the last block zero-padded.
fn pack(digests: &[[u8; DIGEST]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(DIGESTS_PER_BLOCK);
    let mut out = vec![0u8; blocks * BLOCK as usize];
    for (i, d) in digests.iter().enumerate() {
        out[i * DIGEST..(i + 1) * DIGEST].copy_from_slice(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn data(blocks: u64) -> Vec<u8> {
        (0..blocks * BLOCK).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn tree(bytes: &[u8], salt: &[u8]) -> (Verity, Vec<u8>) {
        let mut out = Vec::new();
        let v = hash_tree(&mut &bytes[..], bytes.len() as u64 / BLOCK, salt, &mut out).unwrap();
        (v, out)
    }

    /// Two data blocks: one hash block holding both digests; its salted
    /// digest is the root.
    #[test]
    fn a_small_tree_by_hand() {
        let bytes = data(2);
        let salt = [9u8; 32];
        let (v, out) = tree(&bytes, &salt);
        let mut expect = vec![0u8; BLOCK as usize];
        expect[..32].copy_from_slice(&salted(&salt, &bytes[..4096]));
        expect[32..64].copy_from_slice(&salted(&salt, &bytes[4096..]));
        assert_eq!(out, expect);
        assert_eq!(v.root_hash, hex::encode(salted(&salt, &expect)));
        assert_eq!(v.data_blocks, 2);
    }

    /// 129 blocks need two levels: two level-0 blocks under one top block,
    /// stored top first (the kernel's hash_level_block order).
    #[test]
    fn levels_are_stored_top_first() {
        let bytes = data(129);
        let (v, out) = tree(&bytes, b"salt");
        assert_eq!(out.len() as u64, 3 * BLOCK);
        let top = &out[..4096];
        assert_eq!(&top[..32], &salted(b"salt", &out[4096..8192]));
        assert_eq!(&top[32..64], &salted(b"salt", &out[8192..12288]));
        assert!(top[64..].iter().all(|&b| b == 0));
        assert_eq!(v.root_hash, hex::encode(salted(b"salt", top)));
        // The 129th digest begins the second level-0 block.
        assert_eq!(&out[8192..8224], &salted(b"salt", &bytes[128 * 4096..]));
    }

    #[test]
    fn one_flipped_byte_changes_the_root_hash_and_bad_sizes_are_errors() {
        let mut bytes = data(300);
        let (a, _) = tree(&bytes, b"s");
        bytes[123_456] ^= 1;
        let (b, _) = tree(&bytes, b"s");
        assert_ne!(a.root_hash, b.root_hash);
        let mut sink = Vec::new();
        let short = hash_tree(&mut &bytes[..100], 1, b"s", &mut sink).unwrap_err();
        assert!(format!("{short:#}").contains("data block 0"), "{short:#}");
        let long = hash_tree(&mut &bytes[..], 2, b"s", &mut sink).unwrap_err();
        assert!(long.to_string().contains("more than 2 blocks"), "{long}");
        assert!(hash_tree(&mut &bytes[..0], 0, b"s", &mut sink).is_err());
        assert_eq!(salt_for("d"), salt_for("d"));
        assert_ne!(salt_for("d"), salt_for("e"));
    }

    /// The strings Kata's runtime parses (hypervisor.go
    /// ParseKernelVerityParams) and writes (GetKernelRootParams).
    #[test]
    fn kata_params_and_kernel_params() {
        let v = Verity {
            root_hash: "ab".into(),
            salt: "cd".into(),
            data_blocks: 92041,
            data_block_size: 4096,
            hash_block_size: 4096,
            hash_algorithm: "sha256".into(),
        };
        assert_eq!(
            v.kata_params(),
            "root_hash=ab,salt=cd,data_blocks=92041,data_block_size=4096,hash_block_size=4096"
        );
        // The example in hypervisor.go's KernelParamFields comment:
        // 92041 blocks of 4 KiB are 736328 sectors.
        assert_eq!(
            v.kernel_params("/dev/vda1", "/dev/vda2"),
            [
                "dm-mod.create=\"dm-verity,,,ro,0 736328 verity 1 /dev/vda1 /dev/vda2 \
                 4096 4096 92041 0 sha256 ab cd\""
                    .to_string(),
                "root=/dev/dm-0".to_string()
            ]
        );
    }

    /// The oracle: veritysetup (cryptsetup-bin, pinned in the `test` group)
    /// formats the same data with the same salt, as Kata's image builder
    /// calls it, into the same tree and root hash; and `veritysetup verify`
    /// refuses the data once one byte is flipped.
    #[test]
    fn equals_veritysetup_and_verify_catches_a_flipped_byte() {
        if Command::new("veritysetup")
            .arg("--version")
            .output()
            .is_err()
        {
            test_support::skip!("veritysetup is not installed (cryptsetup-bin, host group `test`)");
        }
        let dir = tempfile::tempdir().unwrap();
        // 300 blocks: three levels' worth of odd sizes (300 -> 3 -> 1).
        let mut bytes = data(300);
        let salt = salt_for("oracle");
        let (ours, tree_bytes) = tree(&bytes, &salt);
        let (data_file, hash_file) = (dir.path().join("data"), dir.path().join("hash"));
        std::fs::write(&data_file, &bytes).unwrap();
        std::fs::write(&hash_file, b"").unwrap();
        let out = crate::testutil::run_ok(
            Command::new("veritysetup")
                .args(["format", "--no-superblock"])
                .arg(format!("--salt={}", hex::encode(salt)))
                .arg(&data_file)
                .arg(&hash_file),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |label: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{label}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        };
        assert_eq!(field("Root hash"), ours.root_hash);
        assert_eq!(field("Salt"), ours.salt);
        assert_eq!(field("Data blocks"), "300");
        assert_eq!(field("Hash type"), "1");
        let theirs = std::fs::read(&hash_file).unwrap();
        assert_eq!(theirs, tree_bytes, "the hash device differs");
        let verify = |data: &Path| {
            Command::new("veritysetup")
                .args(["verify", "--no-superblock"])
                .arg(format!("--salt={}", hex::encode(salt)))
                .arg(data)
                .arg(&hash_file)
                .arg(&ours.root_hash)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(verify(&data_file));
        bytes[5 * 4096 + 17] ^= 0x80;
        std::fs::write(&data_file, &bytes).unwrap();
        assert!(!verify(&data_file), "a flipped byte passed verification");
    }
}
