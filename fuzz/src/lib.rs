//! Fuzz targets for what the agent reads from an untrusted peer. Each
//! target is a plain function of the input bytes that panics on a bug (a
//! panic, a broken invariant) and returns on anything else, however bad
//! the input: `cargo xtask fuzz` drives them with libFuzzer
//! (`src/bin/kata-fuzz.rs`), and `cargo test -p kata-fuzz` replays the
//! committed seed corpus (`corpus/<target>/`) and every input a fuzzer
//! once found (`regressions/<target>/`) through them.

pub mod targets;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// What it feeds, in one line.
    pub about: &'static str,
    pub run: fn(&[u8]),
}

/// Every target. The directories `corpus/<name>/` match this list (a test
/// checks it): `cargo xtask fuzz --list` reads them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "ttrpc_frame",
        about: "a byte stream of ttRPC frames, decoded as ttrpc's server does, each request's payload as its RPC's message, then the agent's request checks",
        run: targets::ttrpc_frame::run,
    },
    Target {
        name: "oci_spec",
        about: "a CreateContainer/ExecProcess request (protobuf): spec conversion, the validator, the container environment",
        run: targets::oci_spec::run,
    },
    Target {
        name: "storage_options",
        about: "a storage mount point and its option list (text): mount-point checks, mount(8) option parsing",
        run: targets::storage_options::run,
    },
    Target {
        name: "safe_path",
        about: "a request path (and one symlink's target) in a tree of hostile symlinks: every resolver stays inside the root, openat2 and the walk fallback agree",
        run: targets::safe_path::run,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

pub fn names() -> Vec<&'static str> {
    TARGETS.iter().map(|t| t.name).collect()
}
