//! The one SOURCE_DATE_EPOCH rule of the pipeline (every timestamp an
//! artifact contains comes from here):
//!
//! 1. `SOURCE_DATE_EPOCH` in the environment, when set, is the time of every
//!    artifact: agent, kernel and image.
//! 2. Otherwise each artifact takes the time of its own pinned input, so a
//!    new commit does not rebuild what it did not change: the image the
//!    commit time of HEAD; the kernel the `source_date_epoch` of
//!    `kernel/source.toml` (the tarball's Makefile mtime for `--source`);
//!    the agent [`AGENT_DEFAULT`] (its sources have no single date, and a
//!    moving value would defeat cargo's freshness).

use std::process::Command;

use anyhow::{Context, Result};

use crate::{cmd, paths};

pub const VAR: &str = "SOURCE_DATE_EPOCH";
/// The agent's time when the environment gives none (2023-11-14).
pub const AGENT_DEFAULT: i64 = 1_700_000_000;

/// The environment's value, if set (an error if it is not a number).
fn from_env() -> Result<Option<i64>> {
    match std::env::var(VAR) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{VAR}={v:?} is not a number of seconds since 1970")),
        Err(_) => Ok(None),
    }
}

/// The image's time: rule 1, else HEAD's commit time.
pub fn image() -> Result<i64> {
    if let Some(v) = from_env()? {
        return Ok(v);
    }
    let text = cmd::read(Command::new("git").current_dir(paths::repo_root()).args([
        "log",
        "-1",
        "--format=%ct",
        "HEAD",
    ]))
    .with_context(|| format!("reading HEAD's commit time (or set {VAR})"))?;
    text.parse()
        .with_context(|| format!("git log printed {text:?}, not a time"))
}

/// The kernel's time: rule 1, else the pinned source's.
pub fn kernel(pinned: u64) -> Result<u64> {
    Ok(match from_env()? {
        Some(v) => u64::try_from(v).with_context(|| format!("{VAR}={v} is before 1970"))?,
        None => pinned,
    })
}

/// The agent's time: rule 1, else [`AGENT_DEFAULT`].
pub fn agent() -> Result<i64> {
    Ok(from_env()?.unwrap_or(AGENT_DEFAULT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_wins_everywhere_else_each_input_decides() {
        // The only test that touches the variable, so none races on it.
        std::env::remove_var(VAR);
        assert!(image().unwrap() > 1_600_000_000);
        assert_eq!(kernel(42).unwrap(), 42);
        assert_eq!(agent().unwrap(), AGENT_DEFAULT);
        std::env::set_var(VAR, "1800000000");
        assert_eq!(image().unwrap(), 1_800_000_000);
        assert_eq!(kernel(42).unwrap(), 1_800_000_000);
        assert_eq!(agent().unwrap(), 1_800_000_000);
        std::env::set_var(VAR, "yesterday");
        let err = image().unwrap_err().to_string();
        assert!(err.contains("yesterday"), "{err}");
        assert!(agent().is_err());
        std::env::remove_var(VAR);
    }
}
