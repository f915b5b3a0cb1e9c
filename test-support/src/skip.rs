//! Skips that can fail. A test that cannot run here (not root, a tool or
//! device missing) prints `SKIPPED: <reason>` and returns, so a developer's
//! `cargo test` stays green. CI runs as root on a provisioned machine, where
//! a skip means the provisioning broke: `cargo xtask test` sets
//! `KATA_TESTS_STRICT=1`, and then a skip panics with its reason instead.
//!
//! The model is youki's contest (`TestResult::Skipped` is its own verdict)
//! and cloud-hypervisor's `test_infra`: the reason is always printed.

use std::fmt::Display;

/// The environment variable that turns skips into failures.
pub const STRICT_ENV: &str = "KATA_TESTS_STRICT";

/// Is `KATA_TESTS_STRICT=1` set?
pub fn strict() -> bool {
    std::env::var(STRICT_ENV).is_ok_and(|v| v == "1")
}

/// The line a skip prints.
pub fn message(reason: impl Display) -> String {
    format!("SKIPPED: {reason}")
}

/// Skip the rest of a test (or one check of it): prints `SKIPPED: <reason>`
/// and returns, the caller then returns or continues. Under
/// `KATA_TESTS_STRICT=1` it panics with the reason instead.
#[track_caller]
pub fn skip(reason: impl Display) {
    let line = message(reason);
    if strict() {
        panic!("{line} (a skip fails under {STRICT_ENV}=1: CI must provide this)");
    }
    eprintln!("{line}");
}

/// A check that does not exist on this kind of machine, not a missing
/// capability: e.g. the cgroup v1 tests on a v2-only host, or a controller
/// the kernel has bound to v1 so that v2 cannot have it. Printed like a skip
/// (`SKIPPED (not applicable here): <reason>`) but never fails, because no
/// provisioning can change it. Use [`skip`] for anything CI could install.
pub fn not_applicable(reason: impl Display) {
    eprintln!("SKIPPED (not applicable here): {reason}");
}

/// `skip!("reason {x}")`: [`skip`] and return from the test.
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        $crate::skip::skip(format!($($reason)+));
        return;
    }};
}

/// Skip (with the reason printed, or fail under strict) unless running as
/// root; CI runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            $crate::skip!("this test needs root (namespaces, mounts, cgroups); CI runs it as root");
        }
    };
}

/// The common start of a container test: root, a temp dir `$dir` and a
/// busybox rootfs `$rootfs` in it; skips when either is missing.
#[macro_export]
macro_rules! setup {
    ($dir:ident, $rootfs:ident) => {
        $crate::require_root!();
        let $dir = $crate::tempdir();
        let $rootfs = match $crate::rootfs::busybox($dir.path()) {
            Ok(root) => root,
            Err(why) => $crate::skip!("{why}"),
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with KATA_TESTS_STRICT set to `value` (or unset), then puts
    /// back what was there. The variable is process-wide: only this test of
    /// the crate touches it.
    fn with_strict<T>(value: Option<&str>, f: impl FnOnce() -> T) -> T {
        let before = std::env::var_os(STRICT_ENV);
        match value {
            Some(v) => std::env::set_var(STRICT_ENV, v),
            None => std::env::remove_var(STRICT_ENV),
        }
        let out = f();
        match before {
            Some(v) => std::env::set_var(STRICT_ENV, v),
            None => std::env::remove_var(STRICT_ENV),
        }
        out
    }

    /// A test body: skips when `missing`, else records that it ran on.
    fn body(missing: bool, ran_on: &mut bool) {
        if missing {
            skip!("no frobnicator (apt-get install frobnicator)");
        }
        *ran_on = true;
    }

    #[test]
    fn skip_returns_unless_strict_then_panics_with_the_reason() {
        assert_eq!(message("no loop device"), "SKIPPED: no loop device");
        for lax in [None, Some("0"), Some("")] {
            let mut ran_on = false;
            with_strict(lax, || body(true, &mut ran_on));
            assert!(!ran_on, "the skip returns from the test ({lax:?})");
        }
        let mut ran_on = false;
        with_strict(Some("1"), || body(false, &mut ran_on));
        assert!(ran_on, "no skip, no effect");

        let err = with_strict(Some("1"), || {
            std::panic::catch_unwind(|| body(true, &mut false))
        })
        .expect_err("a strict skip must panic");
        let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains("SKIPPED: no frobnicator (apt-get install frobnicator)"),
            "{text}"
        );
        assert!(text.contains(STRICT_ENV), "{text}");

        // Not applicable never fails.
        with_strict(Some("1"), || not_applicable("cgroup v2 only machine"));
    }
}
