//! Containers through the ttRPC API with a busybox rootfs: the life cycle,
//! bad input to CreateContainer, and many cycles leaking nothing.

mod cycles;
mod lifecycle;
mod pod;
mod seccomp;
mod security;
