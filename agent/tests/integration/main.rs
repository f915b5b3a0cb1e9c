//! The agent's integration tests: one test binary (one link, one
//! `cargo test -p kata-agent --test integration`), one module per family.
//! Each test starts its own stand-alone agent (`test_support::TestAgent`) or
//! drives a library part (cgroups, storage) directly. Shared helpers live in
//! the `test-support` crate, not here.
//!
//! Where a new test goes: the family of the RPC or part it exercises
//! (`cgroups`, `container`, `device`, `guest`, `network`, `sandbox`, `server`); a new
//! family is a new module here. All tests of the binary run in one process:
//! ids, paths and cgroup names must be unique across families
//! (`container::cid`, `cgroup::test_cgroup_path` add the pid, the name makes
//! them unique). A test that cannot run here says why with
//! `test_support::skip` (a failure under `KATA_TESTS_STRICT=1`).

mod cgroups;
mod container;
mod device;
mod guest;
mod hardening;
mod network;
mod sandbox;
mod server;
