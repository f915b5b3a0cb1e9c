//! The libFuzzer driver: one binary for every target (one instrumented
//! link instead of one per target). `KATA_FUZZ_TARGET` names the target;
//! `cargo xtask fuzz --target T` sets it.

#![no_main]

use std::sync::OnceLock;

static TARGET: OnceLock<&'static kata_fuzz::Target> = OnceLock::new();

fn target() -> &'static kata_fuzz::Target {
    TARGET.get_or_init(|| {
        let name = std::env::var("KATA_FUZZ_TARGET").unwrap_or_default();
        match kata_fuzz::target(&name) {
            Some(t) => t,
            None => {
                eprintln!(
                    "KATA_FUZZ_TARGET={name:?}: not a target; targets: {}",
                    kata_fuzz::names().join(", ")
                );
                std::process::exit(2);
            }
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| (target().run)(data));
