//! The sandbox: CreateSandbox/DestroySandbox, its storages, guest hooks, the agent as
//! PID 1, and DestroySandbox with running containers.

mod destroy_containers;
mod hooks;
mod lifecycle;
mod pid1;
mod pod_storage;
pub(crate) mod storage;
