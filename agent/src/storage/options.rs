//! mount(8)-style option lists ("ro", "nosuid", "mode=0755", ...) split into
//! mount(2) flags and the filesystem's data string.

use nix::mount::MsFlags;

/// Flags for the words mount(2) knows; every other option goes to `data`.
pub fn parse(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for opt in options.iter().flat_map(|o| o.split(',')) {
        let opt = opt.trim();
        if opt.is_empty() {
            continue;
        }
        match flag_of(opt) {
            Some((f, true)) => flags.insert(f),
            Some((f, false)) => flags.remove(f),
            None => data.push(opt),
        }
    }
    (flags, data.join(","))
}

/// (flag, set?) for one option word.
fn flag_of(opt: &str) -> Option<(MsFlags, bool)> {
    Some(match opt {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "atime" => (MsFlags::MS_NOATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "bind" => (MsFlags::MS_BIND, true),
        "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, true),
        "remount" => (MsFlags::MS_REMOUNT, true),
        "defaults" => (MsFlags::empty(), true),
        _ => return None,
    })
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

    #[test]
    fn splits_flags_and_data() {
        let opts = vec![
            "ro,nosuid".to_string(),
            "size=10m".into(),
            "mode=0755".into(),
        ];
        let (flags, data) = parse(&opts);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(data, "size=10m,mode=0755");
        assert_eq!(value(&opts, "mode"), Some("0755"));
        assert_eq!(value(&opts, "uid"), None);
        let (flags, _) = parse(&["ro".to_string(), "rw".into()]);
        assert!(flags.is_empty());
    }
}
