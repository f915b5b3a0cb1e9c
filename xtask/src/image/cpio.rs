//! A writer for the cpio "newc" format (what the kernel unpacks as an
//! initramfs): every field is given by the caller, nothing is read from the
//! build machine, so the same entries always give the same bytes.

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};

const MAGIC: &str = "070701";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

pub struct CpioWriter<W: Write> {
    out: W,
    offset: u64,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> CpioWriter<W> {
    /// Every entry gets owner 0:0 and `mtime`; inode numbers count from 1.
    pub fn new(out: W, mtime: i64) -> Result<Self> {
        let mtime = u32::try_from(mtime)
            .with_context(|| format!("mtime {mtime} does not fit cpio's 32-bit field"))?;
        Ok(CpioWriter {
            out,
            offset: 0,
            next_ino: 1,
            mtime,
        })
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> Result<()> {
        self.header(name, S_IFDIR | perm, 2, 0, (0, 0))
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        self.header(name, S_IFLNK | 0o777, 1, target.len() as u64, (0, 0))?;
        self.data(&mut target.as_bytes(), target.len() as u64)
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.header(name, S_IFCHR | perm, 1, 0, (major, minor))
    }

    /// A regular file of exactly `size` bytes read from `content`.
    pub fn file(&mut self, name: &str, perm: u32, size: u64, content: &mut dyn Read) -> Result<()> {
        self.header(name, S_IFREG | perm, 1, size, (0, 0))?;
        self.data(content, size)
    }

    /// The trailer entry; returns the inner writer.
    pub fn finish(mut self) -> Result<W> {
        self.next_ino = 0;
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        Ok(self.out)
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: u64,
        rdev: (u32, u32),
    ) -> Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') {
            bail!("cpio entry name {name:?}: must be relative, non-empty, without NUL");
        }
        let size32 = u32::try_from(size)
            .with_context(|| format!("{name}: {size} bytes is too big for cpio newc"))?;
        let ino = self.next_ino;
        if ino != 0 {
            self.next_ino += 1;
        }
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            self.mtime,
            size32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut head = String::with_capacity(110);
        head.push_str(MAGIC);
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        self.put(head.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    fn data(&mut self, content: &mut dyn Read, size: u64) -> Result<()> {
        let copied =
            io::copy(&mut content.take(size), &mut self.out).context("writing cpio data")?;
        if copied != size {
            bail!("file shrank while archiving: expected {size} bytes, read {copied}");
        }
        self.offset += copied;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).context("writing cpio archive")?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// newc aligns every header and every file body to 4 bytes.
    fn pad(&mut self) -> Result<()> {
        let rem = (4 - self.offset % 4) % 4;
        self.put(&[0u8; 3][..rem as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(mtime: i64) -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new(), mtime).unwrap();
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, 5, &mut &b"hello"[..]).unwrap();
        w.symlink("sbin/init", "/init").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn same_entries_same_bytes() {
        assert_eq!(sample(1_700_000_000), sample(1_700_000_000));
        assert_ne!(sample(1_700_000_000), sample(1_700_000_001));
    }

    #[test]
    fn layout_is_newc() {
        let bytes = sample(16);
        assert_eq!(&bytes[..6], b"070701");
        // first header: ino 1, dir mode, uid 0, gid 0, nlink 2, mtime 0x10
        let head = std::str::from_utf8(&bytes[6..110]).unwrap();
        assert_eq!(&head[..8], "00000001");
        assert_eq!(&head[8..16], "000041ed");
        assert_eq!(&head[16..32], "0000000000000000");
        assert_eq!(&head[40..48], "00000010");
        assert_eq!(&bytes[110..114], b"dev\0");
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("hello"));
    }

    #[test]
    fn cpio_tool_reads_it_back() {
        let Ok(out) = std::process::Command::new("cpio").arg("--version").output() else {
            eprintln!("skipped: no cpio binary to cross-check with");
            return;
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, sample(1_700_000_000)).unwrap();
        let list = crate::testutil::run_ok(
            std::process::Command::new("cpio")
                .args(["-t", "-v", "--quiet", "-F"])
                .arg(&archive),
        );
        let text = String::from_utf8_lossy(&list.stdout);
        for name in ["dev", "dev/console", "init", "sbin/init -> /init"] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.contains("root"), "{text}");
    }

    #[test]
    fn rejects_absolute_and_oversized_names() {
        let mut w = CpioWriter::new(Vec::new(), 0).unwrap();
        assert!(w.dir("/etc", 0o755).is_err());
        assert!(CpioWriter::new(Vec::new(), -1).is_err());
    }
}
