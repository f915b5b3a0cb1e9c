//! What this agent made on the guest's file systems (mounts, directories,
//! files), recorded so that an agent started after a crash can tell, with
//! proof, which leftovers are an agent's own: only those are undone.
//!
//! Each agent keeps its record in `RECORD_DIR/<pid>` and holds an exclusive
//! flock on it while it lives. At start-up an agent takes over every record
//! it can lock (its writer is dead), undoes what it lists (unmount, unlink,
//! rmdir; never recursive, never through a symlink) and deletes it. The
//! directory is outside /run/kata-containers, where requests can write.
//!
//! Until `open` is called (the agent's start-up) recording does nothing, so
//! library users such as the storage tests leave no record.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{umount2, MntFlags};

pub const RECORD_DIR: &str = "/run/kata-agent/owned";

/// One thing the agent made. Order matters for undoing: mounts go first,
/// then files, then directories deepest first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Made {
    Mount(PathBuf),
    File(PathBuf),
    Dir(PathBuf),
}

struct Record {
    /// Locked while this agent lives.
    file: Flock<fs::File>,
    path: PathBuf,
    entries: BTreeSet<Made>,
}

static RECORD: Mutex<Option<Record>> = Mutex::new(None);

/// Start recording (the agent's start-up), after undoing what dead agents
/// left. Returns what was undone, for the log.
pub fn open() -> Result<Vec<String>> {
    open_in(Path::new(RECORD_DIR))
}

fn open_in(dir: &Path) -> Result<Vec<String>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let undone = take_over_dead(dir)?;
    let path = dir.join(std::process::id().to_string());
    let file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let file = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {}", path.display()))?;
    let mut guard = RECORD.lock().unwrap_or_else(|p| p.into_inner());
    *guard = Some(Record {
        file,
        path,
        entries: BTreeSet::new(),
    });
    Ok(undone)
}

/// Note that the agent made these.
pub fn record(made: &[Made]) {
    update(|entries| entries.extend(made.iter().cloned()));
}

/// Note that the agent undid these itself.
pub fn forget(made: &[Made]) {
    update(|entries| {
        for m in made {
            entries.remove(m);
        }
    });
}

fn update(change: impl FnOnce(&mut BTreeSet<Made>)) {
    let mut guard = RECORD.lock().unwrap_or_else(|p| p.into_inner());
    let Some(record) = guard.as_mut() else {
        return;
    };
    change(&mut record.entries);
    // The record is a help for a later agent, not a condition of this
    // one's work: a failed write only loses that help.
    let _ = rewrite(record);
}

fn rewrite(record: &mut Record) -> Result<()> {
    let mut text = String::new();
    for m in &record.entries {
        let (kind, p) = match m {
            Made::Mount(p) => ("mount", p),
            Made::File(p) => ("file", p),
            Made::Dir(p) => ("dir", p),
        };
        // Paths with a newline cannot be recorded in a line; the agent
        // never makes one (ids and mount points are checked).
        if let Some(s) = p.to_str().filter(|s| !s.contains('\n')) {
            text.push_str(kind);
            text.push(' ');
            text.push_str(s);
            text.push('\n');
        }
    }
    record.file.set_len(0)?;
    nix::sys::uio::pwrite(&*record.file, text.as_bytes(), 0)?;
    (&*record.file).flush()?;
    Ok(())
}

fn parse(text: &str) -> Vec<Made> {
    text.lines()
        .filter_map(|l| {
            let (kind, p) = l.split_once(' ')?;
            let p = PathBuf::from(p);
            if !p.is_absolute() {
                return None;
            }
            match kind {
                "mount" => Some(Made::Mount(p)),
                "file" => Some(Made::File(p)),
                "dir" => Some(Made::Dir(p)),
                _ => None,
            }
        })
        .collect()
}

/// Undo and delete every record whose writer is dead (we get its lock).
fn take_over_dead(dir: &Path) -> Result<Vec<String>> {
    let mut undone = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        let Ok(_lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue; // a live agent's
        };
        let text = fs::read_to_string(&path).unwrap_or_default();
        undone.extend(undo(parse(&text)));
        let _ = fs::remove_file(&path);
    }
    Ok(undone)
}

/// Undo in order: mounts (all stacked on the path), files, directories
/// deepest first. Whatever fails stays; nothing is removed recursively.
fn undo(mut made: Vec<Made>) -> Vec<String> {
    made.sort_by(|a, b| match (a, b) {
        (Made::Dir(x), Made::Dir(y)) => y.cmp(x),
        _ => a.cmp(b),
    });
    let mut done = Vec::new();
    for m in made {
        let ok = match &m {
            Made::Mount(p) => {
                let mut n = 0;
                while n < 16 && umount2(p, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_ok()
                {
                    n += 1;
                }
                n > 0
            }
            Made::File(p) => fs::remove_file(p).is_ok(),
            Made::Dir(p) => fs::remove_dir(p).is_ok(),
        };
        if ok {
            done.push(format!("{m:?}"));
        }
    }
    done
}

/// Stop recording and delete the record (a clean exit with nothing left).
pub fn close_if_empty() {
    let mut guard = RECORD.lock().unwrap_or_else(|p| p.into_inner());
    if guard.as_ref().is_some_and(|r| r.entries.is_empty()) {
        if let Some(r) = guard.take() {
            let _ = fs::remove_file(&r.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_record_is_undone_and_a_live_one_is_kept() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("owned");
        fs::create_dir_all(&dir).unwrap();
        let made = base.path().join("bundle");
        fs::create_dir_all(made.join("rootfs")).unwrap();
        fs::write(made.join("config.json"), "{}").unwrap();
        fs::write(made.join("not-ours"), "x").unwrap();
        let other = base.path().join("other");
        fs::create_dir(&other).unwrap();
        // A dead agent's record (nobody holds its lock).
        fs::write(
            dir.join("1"),
            format!(
                "dir {0}\ndir {0}/rootfs\nfile {0}/config.json\ngarbage\nfile relative\n",
                made.display()
            ),
        )
        .unwrap();
        // A live agent's record.
        let live = fs::File::create(dir.join("2")).unwrap();
        let _live = Flock::lock(live, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap();
        fs::write(dir.join("2"), format!("dir {}\n", other.display())).unwrap();

        let undone = take_over_dead(&dir).unwrap();
        assert_eq!(undone.len(), 2, "{undone:?}"); // config.json and rootfs/
        assert!(!made.join("config.json").exists() && !made.join("rootfs").exists());
        assert!(made.join("not-ours").exists(), "only recorded entries go");
        assert!(made.exists(), "a non-empty directory stays");
        assert!(!dir.join("1").exists(), "the dead record is deleted");
        assert!(
            other.exists() && dir.join("2").exists(),
            "a live record is kept"
        );
    }
}
