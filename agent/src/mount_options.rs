//! mount(8)-style option lists ("ro", "nosuid", "rprivate", "mode=0755",
//! ...) split into mount(2) flags, propagation flags and the filesystem's
//! data string: the one table for storages and container mounts.
//!
//! The words are Kata's (rustjail's `OPTIONS`/`PROPAGATION` tables in
//! src/agent/rustjail/src/mount.rs, kata-sys-util's `parse_mount_flags`):
//! `defaults` is a no-op and `async`, `atime`, `rw`, ... clear their flag,
//! so none of them reaches a filesystem as data (tmpfs refuses unknown
//! data words).

use nix::mount::MsFlags;

/// What an option list asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// MS_SHARED/MS_PRIVATE/MS_SLAVE/MS_UNBINDABLE (with MS_REC): applied
    /// by a separate mount(2) call after the mount.
    pub propagation: MsFlags,
    /// Every other word, comma-joined, in order.
    pub data: String,
}

enum Word {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
}

fn word(opt: &str) -> Option<Word> {
    use MsFlags as F;
    use Word::{Clear, Propagation, Set};
    Some(match opt {
        "defaults" => Set(F::empty()),
        "ro" => Set(F::MS_RDONLY),
        "rw" => Clear(F::MS_RDONLY),
        "nosuid" => Set(F::MS_NOSUID),
        "suid" => Clear(F::MS_NOSUID),
        "nodev" => Set(F::MS_NODEV),
        "dev" => Clear(F::MS_NODEV),
        "noexec" => Set(F::MS_NOEXEC),
        "exec" => Clear(F::MS_NOEXEC),
        "sync" => Set(F::MS_SYNCHRONOUS),
        "async" => Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Set(F::MS_DIRSYNC),
        "remount" => Set(F::MS_REMOUNT),
        "mand" => Set(F::MS_MANDLOCK),
        "nomand" => Clear(F::MS_MANDLOCK),
        "noatime" => Set(F::MS_NOATIME),
        "atime" => Clear(F::MS_NOATIME),
        "nodiratime" => Set(F::MS_NODIRATIME),
        "diratime" => Clear(F::MS_NODIRATIME),
        "relatime" => Set(F::MS_RELATIME),
        "norelatime" => Clear(F::MS_RELATIME),
        "strictatime" => Set(F::MS_STRICTATIME),
        "nostrictatime" => Clear(F::MS_STRICTATIME),
        "lazytime" => Set(F::MS_LAZYTIME),
        "nolazytime" => Clear(F::MS_LAZYTIME),
        "iversion" => Set(F::MS_I_VERSION),
        "noiversion" => Clear(F::MS_I_VERSION),
        "silent" => Set(F::MS_SILENT),
        "loud" => Clear(F::MS_SILENT),
        "acl" => Set(F::MS_POSIXACL),
        "noacl" => Clear(F::MS_POSIXACL),
        "bind" => Set(F::MS_BIND),
        "rbind" => Set(F::MS_BIND | F::MS_REC),
        "private" => Propagation(F::MS_PRIVATE),
        "rprivate" => Propagation(F::MS_PRIVATE | F::MS_REC),
        "slave" => Propagation(F::MS_SLAVE),
        "rslave" => Propagation(F::MS_SLAVE | F::MS_REC),
        "shared" => Propagation(F::MS_SHARED),
        "rshared" => Propagation(F::MS_SHARED | F::MS_REC),
        "unbindable" => Propagation(F::MS_UNBINDABLE),
        "runbindable" => Propagation(F::MS_UNBINDABLE | F::MS_REC),
        _ => return None,
    })
}

/// Parse `options` (each entry may itself be a comma list); later words win.
pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions::none();
    let mut data: Vec<&str> = Vec::new();
    for opt in options.iter().flat_map(|o| o.split(',')) {
        let opt = opt.trim();
        if opt.is_empty() {
            continue;
        }
        match word(opt) {
            Some(Word::Set(f)) => o.flags.insert(f),
            Some(Word::Clear(f)) => o.flags.remove(f),
            Some(Word::Propagation(f)) => o.propagation.insert(f),
            None => data.push(opt),
        }
    }
    o.data = data.join(",");
    o
}

impl MountOptions {
    fn none() -> MountOptions {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: String::new(),
        }
    }

    /// For a storage mounted in one mount(2) call: the propagation words
    /// count as flags, as kata-sys-util's `parse_mount_options` has them.
    pub fn flags_and_data(self) -> (MsFlags, String) {
        (self.flags | self.propagation, self.data)
    }
}

/// The value of `key=value` in an option list (the last one wins).
pub fn value<'a>(options: &'a [String], key: &str) -> Option<&'a str> {
    options
        .iter()
        .flat_map(|o| o.split(','))
        .filter_map(|o| o.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_flags_propagation_and_data() {
        let opts = strings(&["ro,nosuid", "size=10m", "rprivate", "mode=0755"]);
        let o = parse(&opts);
        assert_eq!(o.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data, "size=10m,mode=0755");
        assert_eq!(value(&opts, "mode"), Some("0755"));
        assert_eq!(value(&opts, "uid"), None);
        assert!(parse(&strings(&["ro", "rw"])).flags.is_empty());
        let o = parse(&strings(&["rbind", "ro"]));
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
    }

    /// Kata (rustjail OPTIONS, kata-sys-util parse_mount_flags): these
    /// words are flags, never data.
    #[test]
    fn defaults_async_atime_are_flags_not_data() {
        let o = parse(&strings(&["sync", "noatime", "defaults", "async", "atime"]));
        assert_eq!(o, MountOptions::none());
    }
}
