//! The life cycle of the sandbox's containers, one file per verb: create,
//! start, exec, signal, wait, remove, and their cgroup resources. Each verb
//! takes the sandbox lock only to find, add or take a container, never
//! while it waits for a process or the kernel; the work on one container is
//! `crate::container`'s.

pub mod create;
pub mod exec;
pub mod remove;
pub mod resources;
mod rollback;
pub mod signal;
pub mod start;
pub mod wait;
