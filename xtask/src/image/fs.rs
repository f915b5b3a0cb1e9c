//! The root filesystem of the disk image: ext4 (mkfs.ext4 -d) or erofs
//! (mkfs.erofs), every identifier and time fixed from the inputs.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::rootfs::recipe::{Filesystem, ImageConfig};
use crate::rootfs::scan::Kind;
use crate::rootfs::Tree;

const MIB: u64 = 1 << 20;
const BLOCK: u64 = 4096;

/// Identifiers derived from the tree digest, so equal trees give equal images.
pub struct Ids {
    pub uuid: String,
    pub hash_seed: String,
}

impl Ids {
    pub fn from_digest(digest: &str) -> Ids {
        Ids {
            uuid: uuid_from(&format!("fs-uuid:{digest}")),
            hash_seed: uuid_from(&format!("ext4-hash-seed:{digest}")),
        }
    }
}

/// A version-4-shaped UUID from the sha256 of `label`.
pub fn uuid_from(label: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut b: [u8; 16] = Sha256::digest(label.as_bytes())[..16]
        .try_into()
        .unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Build the filesystem image file `out` from `tree`; returns its size.
pub fn make(
    fs_kind: Filesystem,
    tree: &Tree,
    cfg: &ImageConfig,
    epoch: i64,
    out: &Path,
) -> Result<u64> {
    let ids = Ids::from_digest(&tree.digest);
    if out.exists() {
        fs::remove_file(out).with_context(|| format!("removing {}", out.display()))?;
    }
    match fs_kind {
        Filesystem::Ext4 => ext4(tree, cfg, &ids, epoch, out),
        Filesystem::Erofs => erofs(tree, cfg, &ids, epoch, out),
    }?;
    Ok(fs::metadata(out)?.len())
}

/// Blocks and inodes the tree needs in ext4 (4 KiB blocks; small symlinks
/// live in the inode).
pub fn ext4_estimate(tree: &Tree) -> (u64, u64) {
    let mut blocks = 0;
    for n in &tree.nodes {
        blocks += match &n.kind {
            Kind::Dir => 1,
            Kind::File { size } => size.div_ceil(BLOCK),
            Kind::Symlink { target } => u64::from(target.len() >= 60),
        };
    }
    (blocks, tree.nodes.len() as u64)
}

/// mke2fs reads its defaults from /etc/mke2fs.conf; ours are fixed here so
/// the host's file cannot change the image. `journal_data_ordered` as a
/// default mount option lets a journal-less ext4 mount with Kata's
/// `rootflags=data=ordered,...`: the kernel refuses an explicit `data=` that
/// differs from the superblock's default when there is no journal (seen:
/// "can't mount with data=, fs mounted w/o journal").
const MKE2FS_CONF: &str = "\
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr,journal_data_ordered
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
	reserved_ratio = 0
	lazy_itable_init = false
	no_discard = true
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
";

fn ext4(tree: &Tree, cfg: &ImageConfig, ids: &Ids, epoch: i64, out: &Path) -> Result<()> {
    if !crate::rootfs::scan::all_root_owned(&tree.root, &tree.nodes)? {
        bail!("the rootfs tree is not owned by root (mkfs.ext4 -d copies owners): build as root, or use --fs erofs");
    }
    let (blocks, inodes) = ext4_estimate(tree);
    let inodes = inodes + inodes / 4 + 64;
    // Metadata (inode tables, bitmaps, group descriptors) plus the recipe's
    // free space, and the journal when wanted.
    let journal = if cfg.ext4_journal { 4 * MIB } else { 0 };
    let mut size = blocks * BLOCK
        + inodes * 256
        + (blocks * BLOCK) / 16
        + journal
        + cfg.free_space_mib * MIB
        + 2 * MIB;
    size = size.div_ceil(MIB) * MIB;
    let conf = out.with_extension("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).with_context(|| format!("writing {}", conf.display()))?;
    // Grow and retry when the estimate was short; same inputs, same sequence.
    for _ in 0..4 {
        match run_mke2fs(tree, cfg, ids, epoch, out, &conf, size, inodes) {
            Ok(()) => {
                fix_times(tree, epoch, out)?;
                return e2fsck(out);
            }
            Err(e)
                if format!("{e:#}").contains("ould not allocate")
                    || format!("{e:#}").contains("space") =>
            {
                size = (size + size / 2).div_ceil(MIB) * MIB;
            }
            Err(e) => return Err(e),
        }
    }
    bail!(
        "mkfs.ext4 kept running out of space (last try {} MiB)",
        size / MIB
    )
}

#[allow(clippy::too_many_arguments)]
fn run_mke2fs(
    tree: &Tree,
    cfg: &ImageConfig,
    ids: &Ids,
    epoch: i64,
    out: &Path,
    conf: &Path,
    size: u64,
    inodes: u64,
) -> Result<()> {
    let _ = fs::remove_file(out);
    let f = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    f.set_len(size)?;
    drop(f);
    let mut cmd = Command::new("mkfs.ext4");
    cmd.env("MKE2FS_CONFIG", conf)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .env_remove("MKE2FS_DEVICE_SECTSIZE")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-I",
            "256",
            "-m",
            "0",
            "-L",
            "kata-rootfs",
        ])
        .arg("-N")
        .arg(inodes.to_string())
        .arg("-U")
        .arg(&ids.uuid)
        .arg("-E")
        .arg(format!(
            "hash_seed={},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard",
            ids.hash_seed
        ));
    if !cfg.ext4_journal {
        cmd.args(["-O", "^has_journal"]);
    }
    cmd.arg("-d").arg(&tree.root).arg(out);
    run(&mut cmd)
}

/// mkfs.ext4 -d copies each inode's ctime and atime from the build tree:
/// ctime is the time of the build (no call can set it) and reading a file
/// (the initrd step, the digest) moves its atime. Rewrite every time to `epoch`.
fn fix_times(tree: &Tree, epoch: i64, img: &Path) -> Result<()> {
    let mut script = String::new();
    for path in std::iter::once("").chain(tree.nodes.iter().map(|n| n.path.as_str())) {
        if path.contains(['"', '\n']) {
            bail!("{path:?}: a quote or newline in a rootfs path cannot be given to debugfs");
        }
        for field in ["atime", "ctime", "mtime", "crtime"] {
            script.push_str(&format!("sif \"/{path}\" {field} @{epoch}\n"));
        }
    }
    let file = img.with_extension("debugfs");
    fs::write(&file, script).with_context(|| format!("writing {}", file.display()))?;
    let out = Command::new("debugfs")
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .arg("-w")
        .arg("-f")
        .arg(&file)
        .arg(img)
        .output()
        .context("running debugfs")?;
    // debugfs exits 0 even when a request fails; its errors go to stderr
    // after the echoed requests.
    let err = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("debugfs") && !l.trim().is_empty())
        .collect();
    if !out.status.success() || !problems.is_empty() {
        bail!(
            "debugfs could not set times in {}: {}",
            img.display(),
            problems.join("; ")
        );
    }
    Ok(())
}

fn e2fsck(img: &Path) -> Result<()> {
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(img)).context("checking the new ext4 image")
}

fn erofs(tree: &Tree, cfg: &ImageConfig, ids: &Ids, epoch: i64, out: &Path) -> Result<()> {
    let mut cmd = Command::new("mkfs.erofs");
    cmd.arg("--quiet")
        // No extended attributes: the build machine's (SELinux labels, ...) stay out.
        .arg("-x-1")
        .arg(format!("-T{epoch}"))
        .arg(format!("-U{}", ids.uuid))
        .arg("--all-root");
    if !cfg.erofs_compression.is_empty() {
        cmd.arg(format!("-z{}", cfg.erofs_compression));
    }
    cmd.arg(out).arg(&tree.root);
    run(&mut cmd)?;
    if Command::new("fsck.erofs").arg("--help").output().is_ok() {
        run(Command::new("fsck.erofs").arg(out)).context("checking the new erofs image")?;
    }
    Ok(())
}

fn run(c: &mut Command) -> Result<()> {
    crate::cmd::output(c).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::scan;
    use std::os::unix::fs::symlink;

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("-V").output().is_ok()
    }

    /// The same small tree, created in a different order in another directory.
    fn tree(dir: &Path, reversed: bool) -> Tree {
        let mut names = vec![
            "etc/hostname",
            "usr/bin/kata-agent",
            "lib/systemd/a\\x2db.slice",
        ];
        if reversed {
            names.reverse();
        }
        for n in names {
            let p = dir.join(n);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, n.repeat(300)).unwrap();
        }
        symlink("/usr/bin/kata-agent", dir.join("init")).unwrap();
        let nodes = scan::scan(dir).unwrap();
        scan::normalise(dir, &nodes, 1_700_000_000).unwrap();
        Tree {
            root: dir.to_path_buf(),
            digest: scan::digest(dir, &nodes).unwrap(),
            nodes,
            init: "/usr/bin/kata-agent".into(),
        }
    }

    fn config() -> ImageConfig {
        ImageConfig {
            filesystem: Filesystem::Ext4,
            ext4_journal: false,
            erofs_compression: String::new(),
            free_space_mib: 1,
            align_mib: 1,
            verity: false,
        }
    }

    fn build_twice(kind: Filesystem) {
        let (a, b, out) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let ta = tree(a.path(), false);
        // ctime has one-second resolution in what mkfs.ext4 copies: make the
        // second tree's differ, as it would on another machine.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let tb = tree(b.path(), true);
        assert_eq!(ta.digest, tb.digest);
        let (fa, fb) = (out.path().join("a.img"), out.path().join("b.img"));
        make(kind, &ta, &config(), 1_700_000_000, &fa).unwrap();
        // Reading the files (as the initrd step does) must not change the result.
        let _ = scan::digest(b.path(), &tb.nodes).unwrap();
        make(kind, &tb, &config(), 1_700_000_000, &fb).unwrap();
        assert!(
            fs::read(&fa).unwrap() == fs::read(&fb).unwrap(),
            "{kind:?} images differ"
        );
    }

    #[test]
    fn ext4_is_reproducible() {
        if !have("mkfs.ext4") || !crate::setup::is_root() {
            eprintln!("skipped: needs mkfs.ext4 and root (mkfs.ext4 -d copies owners)");
            return;
        }
        build_twice(Filesystem::Ext4);
        // Kata mounts the root with rootflags=data=ordered: without a journal
        // that needs data=ordered among the superblock's default mount options.
        let dir = tempfile::tempdir().unwrap();
        let t = tree(&dir.path().join("t"), false);
        let img = dir.path().join("fs.img");
        make(Filesystem::Ext4, &t, &config(), 1_700_000_000, &img).unwrap();
        let out = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&img)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let opts = text
            .lines()
            .find(|l| l.starts_with("Default mount options:"))
            .unwrap_or("");
        assert!(opts.contains("journal_data_ordered"), "{opts}");
        assert!(!text.contains("has_journal"), "no journal was asked for");
    }

    #[test]
    fn erofs_is_reproducible() {
        if !have("mkfs.erofs") {
            eprintln!("skipped: needs mkfs.erofs (cargo xtask setup --group image)");
            return;
        }
        build_twice(Filesystem::Erofs);
    }

    #[test]
    fn uuids_are_stable_and_well_formed() {
        let a = uuid_from("x");
        assert_eq!(a, uuid_from("x"));
        assert_ne!(a, uuid_from("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        let ids = Ids::from_digest("d");
        assert_ne!(ids.uuid, ids.hash_seed);
    }
}
