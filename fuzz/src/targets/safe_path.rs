//! A request path resolved inside a root full of hostile symlinks (to
//! `/`, climbing with `..`, loops, a file, dangling), one of whose
//! symlinks the input also shapes: `<link target> NUL <path>` (no NUL: the
//! whole input is the path). Whatever resolves must stay inside the root,
//! and `open_in_root`'s two resolvers (openat2 and the walk fallback) must
//! agree.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kata_agent::safe_path;

struct Tree {
    _dir: tempfile::TempDir,
    /// `<tmp>/root`, canonical; `<tmp>/outside` is its sibling.
    root: PathBuf,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let base = dir.path().canonicalize().expect("canonical temp dir");
        let root = base.join("root");
        let make = || -> std::io::Result<()> {
            std::fs::create_dir_all(base.join("outside/dir"))?;
            std::fs::write(base.join("outside/secret"), "outside")?;
            std::fs::create_dir_all(root.join("dir/sub"))?;
            std::fs::write(root.join("dir/file"), "inside")?;
            for (link, target) in [
                ("abs", "/etc"),
                ("rel", "../../.."),
                ("out", "../outside"),
                ("loop1", "loop2"),
                ("loop2", "loop1"),
                ("dirlink", "/dir"),
                ("filelink", "dir/file"),
                ("dangling", "/nonexistent/x"),
                ("dotdot", ".."),
                ("self", "."),
                ("dir/sub/up", "../../.."),
                ("fz", "dir"),
            ] {
                symlink(target, root.join(link))?;
            }
            Ok(())
        };
        make().expect("building the symlink tree");
        Tree { _dir: dir, root }
    })
}

/// Point `root/fz` at `target` (atomically, as a racing tenant would).
fn set_link(root: &Path, target: &[u8]) -> bool {
    let tmp = root.join(".fz.new");
    let _ = std::fs::remove_file(&tmp);
    symlink(OsStr::from_bytes(target), &tmp).is_ok()
        && std::fs::rename(&tmp, root.join("fz")).is_ok()
}

pub fn run(data: &[u8]) {
    let t = tree();
    let (link, path) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"dir"[..], data),
    };
    if link.is_empty() || !set_link(&t.root, link) {
        return;
    }
    // The path as a request carries it: NUL-free (a CString refuses it).
    if path.contains(&0) {
        return;
    }
    let path = Path::new(OsStr::from_bytes(path));
    for flags in [libc::O_PATH, libc::O_PATH | libc::O_DIRECTORY] {
        resolvers_agree(&t.root, path, flags);
    }
    secure_join_stays_inside(&t.root, path);
    if let Some(text) = path.to_str() {
        relative_below_stays_below(&t.root, text);
    }
}

fn inside(root: &Path, what: &str, path: &Path, got: &Path) {
    assert!(
        got.starts_with(root),
        "{what} of {} escaped to {}",
        path.display(),
        got.display()
    );
}

fn resolvers_agree(root: &Path, path: &Path, flags: i32) {
    let [at2, walk] = safe_path::open_in_root_each(root, path, flags).expect("the root opens");
    let at2 = at2.map(|fd| safe_path::fd_path(&fd).expect("the fd's path"));
    let walk = walk.map(|fd| safe_path::fd_path(&fd).expect("the fd's path"));
    for got in [&at2, &walk].into_iter().flatten() {
        inside(root, "open_in_root", path, got);
    }
    // openat2 refuses a whole path longer than PATH_MAX; the walk takes
    // one component at a time and has no such bound.
    if path.as_os_str().len() >= libc::PATH_MAX as usize {
        return;
    }
    assert_eq!(
        at2, walk,
        "openat2 and the walk resolve {:?} (flags {flags:#o}) differently",
        path
    );
}

fn secure_join_stays_inside(root: &Path, path: &Path) {
    let Ok(joined) = safe_path::secure_join(root, path) else {
        return;
    };
    inside(root, "secure_join", path, &joined);
    // What a caller then opens by that path must be inside too.
    if let Ok(real) = joined.canonicalize() {
        inside(root, "the canonical secure_join", path, &real);
    }
}

fn relative_below_stays_below(root: &Path, path: &str) {
    let Ok(rel) = safe_path::relative_below(root, "path", path) else {
        return;
    };
    assert!(
        rel.is_relative()
            && rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
        "relative_below({path:?}) = {rel:?}"
    );
    inside(root, "relative_below", Path::new(path), &root.join(&rel));
}
