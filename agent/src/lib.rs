//! Library half of the kata-agent: the pieces that can be unit-tested without
//! running as PID 1 inside a guest.

pub mod config;
