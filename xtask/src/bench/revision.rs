//! What `bench compare --base/--head` names: an agent binary, or a git
//! revision whose agent the bench builds itself.
//!
//! A value that is an existing file is the binary; anything else must be a
//! revision of this repository. A revision is checked out as a detached
//! worktree under `target/xtask/compare/<sha>/` (reused when it is there) and
//! its agent built by this xtask's agent plan (`agent::build_tree`, the
//! release profile, the same flags and remapping as `cargo xtask agent`) in
//! that worktree's own `target/`, so a second run finds it fresh. Only the
//! agent comes from the revision: the image recipe, the kernel and the e2e
//! harness are this checkout's, so both sides run one workload.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::{cmd, paths, ui};

/// One side of the comparison, as resolved from its flag's value.
#[derive(Debug, PartialEq, Eq)]
pub enum Side {
    /// An agent binary given as a file.
    File(PathBuf),
    /// A git revision: what the user wrote and the commit it names.
    Revision { name: String, sha: String },
}

impl Side {
    /// `value` of `flag` (`--base`, `--head`): an existing file, else a
    /// revision `git rev-parse` finds in `repo`; neither is a usage error.
    pub fn resolve(flag: &str, value: &str, repo: &Path) -> Result<Side> {
        let path = Path::new(value);
        if path.is_file() {
            return Ok(Side::File(path.to_path_buf()));
        }
        match rev_parse(repo, value) {
            Ok(Some(sha)) => Ok(Side::Revision {
                name: value.to_string(),
                sha,
            }),
            Ok(None) => crate::usage!(
                "{flag} {value}: neither a file nor a git revision of {} \
                 (give an agent binary, or a commit, branch or tag)",
                repo.display()
            ),
            Err(e) => crate::usage!("{flag} {value}: no such file, and no revision: {e:#}"),
        }
    }

    /// The agent binary of this side: the file, or the revision's agent
    /// (checked out and built on first use).
    pub fn agent(&self, repo: &Path, arch: Arch) -> Result<PathBuf> {
        match self {
            Side::File(p) => Ok(p.clone()),
            Side::Revision { name, sha } => {
                let what = label(name, sha);
                let dir =
                    checkout(repo, sha).with_context(|| format!("checking out revision {what}"))?;
                let tree = crate::agent::Tree {
                    target: dir.join("target"),
                    root: dir.clone(),
                };
                crate::agent::build_tree(&tree, arch).with_context(|| {
                    format!(
                        "building the {arch} agent of revision {what} in {}",
                        dir.display()
                    )
                })
            }
        }
    }

    /// How the table names this side.
    pub fn describe(&self) -> String {
        match self {
            Side::File(p) => format!("`{}`", p.display()),
            Side::Revision { name, sha } => {
                format!(
                    "revision {} (its agent built by this xtask)",
                    label(name, sha)
                )
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Side::File(p) => serde_json::json!({ "path": p }),
            Side::Revision { name, sha } => serde_json::json!({ "revision": name, "commit": sha }),
        }
    }
}

/// A revision as the user wrote it and, when that was not the full id, the
/// commit it names.
fn label(name: &str, sha: &str) -> String {
    if name == sha {
        format!("`{sha}`")
    } else {
        format!("`{name}` = `{sha}`")
    }
}

/// The commit `value` names in `repo`: `None` when git knows no such
/// revision, an error when git cannot answer (no repository, no git).
pub fn rev_parse(repo: &Path, value: &str) -> Result<Option<String>> {
    let out = Command::new("git")
        .current_dir(repo)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{value}^{{commit}}"))
        .output()
        .context("running git rev-parse (is git installed?)")?;
    match out.status.code() {
        Some(0) => {
            let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("git rev-parse printed {sha:?}, not a commit id");
            }
            Ok(Some(sha))
        }
        Some(1) if out.stderr.is_empty() => Ok(None),
        _ => bail!(
            "git rev-parse in {} failed ({}): {}",
            repo.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// `target/xtask/compare/<sha>/`: where revision `sha` is checked out.
fn checkout_dir(sha: &str) -> PathBuf {
    paths::target_dir().join("xtask/compare").join(sha)
}

/// A detached worktree of `repo` at `sha`, made unless it is there already
/// (clean and at `sha`). A directory that is something else is left alone.
fn checkout(repo: &Path, sha: &str) -> Result<PathBuf> {
    let dir = checkout_dir(sha);
    if dir.exists() {
        check_reusable(&dir, sha)?;
        return Ok(dir);
    }
    let parent = dir.parent().context("checkout dir has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let phase = ui::Phase::start(format!("git worktree add --detach {}", dir.display()));
    // --force: the worktree may still be registered after its directory
    // was deleted (git refuses to add it again otherwise).
    cmd::output(
        Command::new("git")
            .current_dir(repo)
            .args(["worktree", "add", "--detach", "--force"])
            .arg(&dir)
            .arg(sha),
    )?;
    phase.done("");
    Ok(dir)
}

/// `dir` is a worktree (its own `.git` file: otherwise git would answer
/// for the repository around target/) whose HEAD is `sha`, with no change
/// to a tracked file (its target/ is ignored).
fn check_reusable(dir: &Path, sha: &str) -> Result<()> {
    let git = |args: &[&str]| cmd::read(Command::new("git").current_dir(dir).args(args));
    let reuse = dir.join(".git").is_file()
        && git(&["rev-parse", "HEAD"]).ok().as_deref() == Some(sha)
        && git(&["status", "--porcelain", "--untracked-files=no"])
            .ok()
            .is_some_and(|s| s.is_empty());
    if !reuse {
        bail!(
            "{} is not a clean checkout of {sha}: remove it and run again",
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with two commits; the second one's id.
    fn repo_with_commits(dir: &Path) -> String {
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .current_dir(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        git(&["init", "-q", "-b", "main"]);
        for n in ["one", "two"] {
            std::fs::write(dir.join("f"), n).unwrap();
            git(&["add", "f"]);
            git(&["commit", "-q", "-m", n]);
        }
        git(&["tag", "v1", "HEAD~1"]);
        git(&["rev-parse", "HEAD"])
    }

    #[test]
    fn a_file_is_a_binary_and_anything_else_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let head = repo_with_commits(dir.path());
        let file = dir.path().join("f");
        let given = file.to_str().unwrap();
        assert_eq!(
            Side::resolve("--base", given, dir.path()).unwrap(),
            Side::File(file.clone())
        );
        let side = Side::resolve("--base", "main", dir.path()).unwrap();
        assert_eq!(
            side,
            Side::Revision {
                name: "main".into(),
                sha: head.clone()
            }
        );
        // Short ids, tags and relative names resolve to the full commit id.
        let parent = rev_parse(dir.path(), "HEAD~1").unwrap().unwrap();
        assert_ne!(parent, head);
        assert_eq!(parent.len(), head.len());
        let by_tag = Side::resolve("--head", "v1", dir.path()).unwrap();
        assert_eq!(
            by_tag,
            Side::Revision {
                name: "v1".into(),
                sha: parent.clone()
            }
        );
        let short = Side::resolve("--head", &head[..10], dir.path()).unwrap();
        assert!(matches!(&short, Side::Revision { sha, .. } if *sha == head));
        // The table names what was written and the commit, once each.
        assert!(side.describe().contains(&format!("`main` = `{head}`")));
        let full = Side::resolve("--head", &head, dir.path()).unwrap();
        assert_eq!(full.describe().matches(head.as_str()).count(), 1);
    }

    #[test]
    fn an_unknown_revision_is_a_usage_error_naming_both_readings() {
        let dir = tempfile::tempdir().unwrap();
        repo_with_commits(dir.path());
        for bad in ["no-such-branch", "/no/such/agent", "--help", "HEAD~9"] {
            let err = Side::resolve("--base", bad, dir.path()).unwrap_err();
            assert!(err.is::<crate::Usage>(), "{bad}: {err:#}");
            let msg = format!("{err:#}");
            assert!(
                msg.contains(&format!("--base {bad}: neither a file nor a git revision")),
                "{msg}"
            );
        }
        // A directory is not an agent binary: it is looked up as a revision.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(Side::resolve("--head", sub.to_str().unwrap(), dir.path()).is_err());
    }

    #[test]
    fn outside_a_repository_the_error_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = Side::resolve("--head", "main", dir.path()).unwrap_err();
        assert!(err.is::<crate::Usage>(), "{err:#}");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("--head main: no such file, and no revision"),
            "{msg}"
        );
        assert!(msg.contains("not a git repository"), "{msg}");
    }

    #[test]
    fn a_checkout_is_reused_only_when_clean_and_at_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        let head = repo_with_commits(&repo);
        let wt = dir.path().join("wt");
        cmd::output(
            Command::new("git")
                .current_dir(&repo)
                .args(["worktree", "add", "--detach", "-q"])
                .arg(&wt)
                .arg(&head),
        )
        .unwrap();
        check_reusable(&wt, &head).unwrap();
        let parent = rev_parse(&repo, "HEAD~1").unwrap().unwrap();
        let err = check_reusable(&wt, &parent).unwrap_err().to_string();
        assert!(err.contains("is not a clean checkout of"), "{err}");
        std::fs::write(wt.join("f"), "edited").unwrap();
        assert!(check_reusable(&wt, &head).is_err());
        // A plain directory inside a repository is not taken for a checkout.
        let plain = repo.join("plain");
        std::fs::create_dir(&plain).unwrap();
        assert!(check_reusable(&plain, &head).is_err());
    }
}
