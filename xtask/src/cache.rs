//! Content-addressed cache outside the work tree:
//! `${XDG_CACHE_HOME:-~/.cache}/kata-image/<kind>/<key>/`.
//! A step hashes all of its inputs into a key; an entry exists only once it is
//! complete (built in a temp dir, then renamed), so an interrupted build never
//! leaves a half entry behind.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("KATA_IMAGE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("kata-image")
}

/// Incremental hasher for cache keys; feed it every input of a step.
#[derive(Default)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    pub fn new(kind: &str) -> Self {
        let mut h = KeyHasher(Sha256::new());
        h.str(kind);
        h
    }

    /// Hash a labelled string (length-prefixed, so concatenations cannot collide).
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }

    /// Hash a file's name (relative to nothing: callers pass a label) and content.
    pub fn file(&mut self, label: &str, path: &Path) -> Result<&mut Self> {
        self.str(label);
        self.str(&sha256_file(path)?);
        Ok(self)
    }

    pub fn finish(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A cache entry directory for `kind`/`key`. Returns `Some(dir)` when it is complete.
pub fn lookup(kind: &str, key: &str) -> Option<PathBuf> {
    let dir = cache_root().join(kind).join(key);
    dir.join(".complete").exists().then_some(dir)
}

/// Build a cache entry: `build` fills a fresh temp dir; on success it is marked
/// complete and renamed into place atomically.
pub fn fill(kind: &str, key: &str, build: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    if let Some(dir) = lookup(kind, key) {
        return Ok(dir);
    }
    let parent = cache_root().join(kind);
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".tmp-{key}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).ok();
    }
    fs::create_dir_all(&tmp)?;
    build(&tmp).with_context(|| format!("building cache entry {kind}/{key}"))?;
    fs::write(tmp.join(".complete"), key)?;
    let dest = parent.join(key);
    if dest.exists() {
        fs::remove_dir_all(&dest).ok();
    }
    fs::rename(&tmp, &dest)
        .with_context(|| format!("moving cache entry into {}", dest.display()))?;
    Ok(dest)
}
