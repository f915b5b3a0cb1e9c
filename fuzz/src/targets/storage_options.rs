//! A storage's mount point and options as text: the first line is the
//! mount point, each further line one entry of `options` (an entry may be
//! a comma list itself, as runtimes send them). The mount-point check and
//! the mount(8) option table, with what their users rely on.

use kata_agent::mount_options::{self, MountOptions};
use kata_agent::storage::drivers;
use protocols::agent::Storage;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut s = Storage::new();
    s.mount_point = lines.next().unwrap_or_default().to_string();
    s.options = lines.map(str::to_string).collect();
    // Whether the mount point passes or not, the options are parsed.
    options(&s.options);
    let _ = super::checks::storage(&s);
}

/// The option list as each storage driver parses it, and the invariants:
/// what goes to a filesystem as data holds no word of the flag table
/// (parsing it again gives no flag and the same data), and the options the
/// agent applies itself (`fsgid=`) never reach the filesystem.
pub fn options(opts: &[String]) {
    let parsed = mount_options::parse(opts);
    assert_data_is_stable(&parsed, opts);
    if !parsed.data.is_empty() {
        for word in parsed.data.split(',') {
            assert!(
                !word.is_empty() && word.trim() == word,
                "{opts:?}: data word {word:?} is empty or not trimmed"
            );
        }
    }
    let own = drivers::without_agent_options(opts);
    let fs = mount_options::parse(&own);
    assert!(
        !fs.data.split(',').any(|w| w.starts_with("fsgid=")),
        "{opts:?}: fsgid reaches the filesystem as {:?}",
        fs.data
    );
    assert_data_is_stable(&fs, &own);
    for key in ["fsgid", "mode", "size", "msize", "trans", "version"] {
        if let Some(v) = mount_options::value(opts, key) {
            assert!(!v.contains(','), "{opts:?}: {key}={v:?} spans two words");
        }
    }
    let (flags, _) = mount_options::parse(opts).flags_and_data();
    assert!(flags.contains(parsed.flags | parsed.propagation));
}

fn assert_data_is_stable(parsed: &MountOptions, opts: &[String]) {
    let again = mount_options::parse(std::slice::from_ref(&parsed.data));
    assert!(
        again.flags.is_empty() && again.propagation.is_empty() && again.data == parsed.data,
        "{opts:?}: data {:?} parses again as {again:?}",
        parsed.data
    );
}
